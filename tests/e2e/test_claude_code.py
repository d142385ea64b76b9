"""Claude Code and the other calls it makes to api.anthropic.com: its settings, limits, feature flags
and event logging (`/api/…`) are identified, their credential swapped, decided and audited as their
own endpoints, and counted against no limit; an `/api/…` path Tollgate does not know is refused to a
key, and goes with a Claude plan's own token. Then the real `claude` CLI through `./run.sh env`: with
a virtual key, with a plan's token in its environment, and signed in with a plan by the credentials
file its `/login` writes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.configs import with_policy
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.npm_cli import NODE_CLIENTS, npm_command
from tests.support.proxy import ROOT
from tests.support.raw import send
from tests.support.run_sh import run_sh_listening

from tollgate.common.fingerprint import fingerprint
from tollgate.records.audit.auditlog import PROCESS_EVENTS

REAL_KEY = "sk-ant-REAL-claude-code"
POLICY = """package tollgate

import rego.v1

deny contains "interns may not reach Anthropic's service" if {
\tstartswith(input.endpoint, "api.")
\t"interns" in input.client.groups
}
"""
ANSWERS_READ = [{"on": ["answer"], "detect": ["secrets"], "action": "redact"}]
# What a user's shell may carry that would route Claude Code without run.sh's help.
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NODE_USE_ENV_PROXY", "NODE_OPTIONS")


def anthropic_service(r: Received) -> Reply:
    """Anthropic as Claude Code meets it: a streamed message, and `{}` from its service's paths."""
    path = r.path.split("?", 1)[0]
    if path == "/v1/messages" and r.json().get("stream"):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.anthropic())
    if path.startswith(("/api/", "/mcp-registry/")):
        return Reply(200, {})
    return provider_answers(r)


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"anthropic": {"upstream": urls["anthropic"], "keys": [REAL_KEY]}},
        "clients": [
            {"name": "coder", "keys": ["tg-coder-1"], "groups": ["dev"]},
            {"name": "intern", "keys": ["tg-intern-1"], "groups": ["interns"]},
        ],
        # Any call would exceed this at once: the service's calls count against no limit.
        "limits": [{"name": "tiny", "match": {"client": "coder"}, "tokens_per_day": 1, "requests_per_day": 1}],
        "policy": {"rego": ["policy.rego"]},
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = with_policy(start_gateway(config, providers=("anthropic",)), config, POLICY)
    gateway.fakes["anthropic"].handler = anthropic_service
    return gateway


def test_a_service_call_goes_with_the_real_key_is_decided_and_audited_as_its_endpoint(gw):
    result = gw.run("""
        import anthropic
        client = anthropic.Anthropic(api_key="tg-coder-1", max_retries=0)
        answers = [client.get(path, cast_to=object) for path in (
            "/api/claude_code/settings", "/api/claude_code/policy_limits", "/api/claude_code/settings")]
        sent = client.post("/api/event_logging/v2/batch", body={"events": [{"event_type": "x"}]}, cast_to=object)
        try:
            client.get("/api/claude_code/settings", cast_to=object,
                       options={"headers": {"x-api-key": "tg-intern-1"}})
        except anthropic.PermissionDeniedError as e:
            report(answers=answers, sent=sent, denied=[e.status_code, e.body["error"]["message"]])
    """)
    assert result == {
        "answers": [{}, {}, {}],
        "sent": {},
        "denied": [403, "Tollgate policy denied this call: interns may not reach Anthropic's service"],
    }
    received = gw.fakes["anthropic"].received[-4:]
    assert [(r.method, r.path) for r in received] == [
        ("GET", "/api/claude_code/settings"),
        ("GET", "/api/claude_code/policy_limits"),
        ("GET", "/api/claude_code/settings"),
        ("POST", "/api/event_logging/v2/batch"),
    ]
    assert {r.headers["x-api-key"] for r in received} == {REAL_KEY}
    records = gw.new_audit(5)
    assert [
        (r["client"], r["endpoint"], r["model"], r["decision"], r["deny_reasons"], r["status"], r["total_tokens"])
        for r in records
    ] == [
        ("coder", "api.claude_code.settings", None, "allow", [], 200, None),
        ("coder", "api.claude_code.policy_limits", None, "allow", [], 200, None),
        ("coder", "api.claude_code.settings", None, "allow", [], 200, None),
        ("coder", "api.event_logging.batch", None, "allow", [], 200, None),
        ("intern", "api.claude_code.settings", None, "deny", ["interns may not reach Anthropic's service"], 403, None),
    ]


def test_an_unknown_service_path_is_refused_and_audited_as_denied(gw):
    before = len(gw.fakes["anthropic"].received)
    result = gw.run("""
        import anthropic
        client = anthropic.Anthropic(api_key="tg-coder-1", max_retries=0)
        refused = []
        for method, path in (("get", "/api/oauth/profile"), ("put", "/api/claude_code/settings")):
            try:
                getattr(client, method)(path, cast_to=object, **({"body": {}} if method == "put" else {}))
            except anthropic.BadRequestError as e:
                refused.append([e.status_code, e.response.headers["x-tollgate-error"], e.body["error"]["message"]])
        report(refused=refused)
    """)
    assert result == {
        "refused": [
            [
                400,
                "bad_request",
                f"Tollgate cannot read this request exactly and did not forward it: {endpoint} is not a path of"
                " Anthropic's service Tollgate knows: only a Claude plan's own token goes there, never a key.",
            ]
            for endpoint in ("api.oauth.profile", "api.claude_code.settings")
        ]
    }
    assert len(gw.fakes["anthropic"].received) == before  # nothing reached Anthropic
    records = gw.new_audit(2)
    assert [(r["decision"], r["deny_reasons"], r["status"]) for r in records] == [("deny", ["bad_request"], 400)] * 2


# --- Claude Code itself, from npm --------------------------------------------------------------------


@pytest.fixture(scope="module")
def claude() -> Path:
    """The `claude` command of `@anthropic-ai/claude-code`, installed from npm once."""
    return npm_command(NODE_CLIENTS / "claude-code", "@anthropic-ai/claude-code", "claude")


@contextmanager
def run_sh_proxy(directory: Path, fake: FakeUpstream, upstream_ca_pem: Path, settings: dict) -> Iterator[int]:
    """`./run.sh` on a free port, with these settings as tollgate.yaml in `directory` (the audit lands
    there too), the Anthropic upstream `fake`. An answer rule reads every answer: Claude Code's
    service calls go on all the same, known to carry no model text."""
    providers = {"anthropic": {"upstream": fake.url, **settings.pop("anthropic", {})}}
    (directory / "tollgate.yaml").write_text(yaml.safe_dump({"providers": providers, "guardrails": ANSWERS_READ,
                                                             **settings}))  # fmt: skip
    with run_sh_listening(directory, upstream_ca_pem) as port:
        yield port


def claude_p(claude: Path, port: int, home: Path, **env: str) -> subprocess.CompletedProcess:
    """`claude -p hi` in a shell that evaluated `./run.sh env`, with a home of its own."""
    home.mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    environment.update(HOME=str(home), **env)
    return subprocess.run(
        ["bash", "-c", f'eval "$("{ROOT}/run.sh" env -p {port})" && exec "{claude}" -p hi'],
        cwd=home,
        env=environment,
        stdin=subprocess.DEVNULL,  # else it waits for a prompt on standard input
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def fake(upstream_ca) -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(upstream_ca, anthropic_service)
    yield upstream
    upstream.close()


def audit_records(path: Path, done: int, timeout: float = 10) -> list[dict]:
    """The calls' records, once `done` of them are written (the writer writes moments later)."""
    deadline = time.monotonic() + timeout
    records: list[dict] = []
    while time.monotonic() < deadline:
        # Whole lines: the last may be being written.
        lines = path.read_text().rpartition("\n")[0].splitlines() if path.exists() else []
        records = [r for r in map(json.loads, lines) if r["event"] not in (*PROCESS_EVENTS, "connection")]
        if len(records) >= done:
            return records
        time.sleep(0.05)
    raise AssertionError(f"expected {done} audit records in {path}, have {len(records)}")


def record_of(path: Path, endpoint: str, timeout: float = 10) -> list[dict]:
    """The records of `endpoint`, once there is one."""
    deadline = time.monotonic() + timeout
    while not (found := [r for r in audit_records(path, 0) if r["endpoint"] == endpoint]):
        assert time.monotonic() < deadline, f"no record of {endpoint}"
        time.sleep(0.05)
    return found


def test_claude_code_through_run_sh_env(claude, fake, upstream_ca_pem, tmp_path):
    settings = {"anthropic": {"keys": [REAL_KEY]}, "clients": [{"name": "coder", "keys": ["tg-coder-1"]}]}
    with run_sh_proxy(tmp_path, fake, upstream_ca_pem, settings) as port:
        done = claude_p(claude, port, tmp_path / "home", ANTHROPIC_API_KEY="tg-coder-1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Hello"
        received = list(fake.received)
        records = audit_records(tmp_path / "audit.jsonl", len(received))
    model_calls = [r for r in received if r.path.startswith("/v1/messages")]
    side_calls = [r for r in received if r.path.startswith("/api/")]
    assert len(model_calls) == 1 and len(side_calls) >= 3, [r.path for r in received]
    assert {r.headers.get("x-api-key") for r in model_calls + side_calls} == {REAL_KEY}
    assert len(records) == len(received)  # each call that went upstream, and nothing refused
    messages = [r for r in records if r["endpoint"] == "messages"]
    assert [
        (r["client"], r["decision"], r["status"], r["input_tokens"], r["cached_tokens"], r["output_tokens"],
         r["total_tokens"])
        for r in messages
    ] == [("coder", "allow", 200, 80, 50, 9, 89)]  # fmt: skip
    service = [r for r in records if r["endpoint"] != "messages"]
    assert {r["endpoint"] for r in service} >= {"api.claude_code.settings", "api.claude_code.policy_limits"}
    for record in service:
        assert record["status"] == 200 and record["decision"] == "allow", record
        assert record["total_tokens"] is None and record["model"] is None, record
        if record["endpoint"] is None:  # the public MCP registry, read without a credential
            assert record["client"] is None, record
        else:
            assert record["endpoint"].startswith("api.") and record["client"] == "coder", record


def test_claude_code_signed_in_by_subscription_goes_with_its_own_token_as_a_subscription_call(
    claude, fake, upstream_ca_pem, tmp_path
):
    # What its `/login` with a Claude subscription leaves it with: an OAuth token, sent as a bearer.
    token = "sk-ant-oat01-subscription-token"
    with run_sh_proxy(tmp_path, fake, upstream_ca_pem, {}) as port:  # pure audit mode: no keys, no clients
        done = claude_p(claude, port, tmp_path / "home", CLAUDE_CODE_OAUTH_TOKEN=token)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Hello"
        received = list(fake.received)
        records = audit_records(tmp_path / "audit.jsonl", len(received))
    model_call = next(r for r in received if r.path.startswith("/v1/messages"))
    assert model_call.headers["authorization"] == f"Bearer {token}"
    assert "oauth-2025-04-20" in model_call.headers["anthropic-beta"]
    [messages] = [r for r in records if r["endpoint"] == "messages"]
    assert (messages["client"], messages["auth"], messages["total_tokens"]) == (None, "subscription", 89)
    assert all(r["decision"] == "allow" and r["status"] == 200 for r in records), records


ORGS = ["c8b3a9f0-1111-4222-8333-944455556666", "org-second"]


def sign_in_with_a_plan(home: Path, token: str) -> None:
    """What Claude Code's `/login` with a Claude plan leaves on Linux: `~/.claude/.credentials.json`
    holding an OAuth access token (`sk-ant-oat01-…`), its refresh token and when it expires (ms)."""
    (home / ".claude").mkdir(parents=True)
    credentials = home / ".claude" / ".credentials.json"
    credentials.write_text(json.dumps({"claudeAiOauth": {
        "accessToken": token,
        "refreshToken": "sk-ant-ort01-PLAN-5ecret-refresh-token",
        "expiresAt": 4102444800000,  # 2100: never refreshed in a test
        "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
        "subscriptionType": "max",
    }}))  # fmt: skip
    credentials.chmod(0o600)


def test_claude_code_signed_in_with_a_plan_by_its_credentials_file(claude, fake, upstream_ca_pem, tmp_path):
    token = "sk-ant-oat01-PLAN-5ecret-credentials-token"
    home = tmp_path / "home"
    sign_in_with_a_plan(home, token)
    # A pool key, which never takes a plan's token's place; the company's organizations pinned.
    settings = {"anthropic": {"keys": [REAL_KEY]}, "subscriptions": {"anthropic": {"organizations": ORGS}}}
    with run_sh_proxy(tmp_path, fake, upstream_ca_pem, settings) as port:
        done = claude_p(claude, port, home)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Hello"
        received = list(fake.received)
        records = audit_records(tmp_path / "audit.jsonl", len(received))
        # Under the answer rule its session worked under, a path that may carry model text (a shared
        # session's transcript) is refused before it goes upstream, with the plan's token too.
        shared = send(port, ROOT / "certs" / "ca-bundle.pem", "api.anthropic.com",
                      "/api/claude_code_shared_session_transcripts", method="GET",
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        [refused] = record_of(tmp_path / "audit.jsonl", "api.claude_code_shared_session_transcripts")
    assert len(fake.received) == len(received)  # it never reached Anthropic
    why = (
        "an answer guardrail applies and Tollgate cannot read the answer of the service call"
        " api.claude_code_shared_session_transcripts, which may carry model text"
    )
    assert (shared.status, shared.headers.get("x-tollgate-error")) == (403, "content_denied")
    assert json.loads(shared.body) == {
        "type": "error", "error": {"type": "permission_error", "message": f"Tollgate refused this call: {why}."}
    }  # fmt: skip
    assert (refused["endpoint"], refused["auth"], refused["status"], refused["decision"]) == (
        "api.claude_code_shared_session_transcripts", "subscription", 403, "deny")  # fmt: skip
    assert (refused["deny_reasons"], refused["answer_findings"]) == ([why], None)
    assert len(records) == len(received), ([r.path for r in received], [r["endpoint"] for r in records])
    [model_call] = [r for r in received if r.path.startswith("/v1/messages")]
    # Every request went with the plan's own token, none with the pool's key, and each carries the
    # company's organizations.
    for request in received:
        if request.path.startswith(("/v1/", "/api/")):
            assert request.headers.get("authorization") == f"Bearer {token}", request.path
            assert "x-api-key" not in request.headers, request.path
        assert request.headers["anthropic-allowed-org-ids"] == ",".join(ORGS), request.path
    assert "oauth-2025-04-20" in model_call.headers["anthropic-beta"]
    [messages] = [r for r in records if r["endpoint"] == "messages"]
    assert (messages["client"], messages["auth"], messages["decision"], messages["status"]) == (
        None, "subscription", "allow", 200
    )  # fmt: skip
    assert (messages["input_tokens"], messages["cached_tokens"], messages["output_tokens"]) == (80, 50, 9)
    assert messages["upstream_key"] == fingerprint(token)
    service = [r for r in records if r["endpoint"] != "messages"]
    # Its account's profile, a path of Anthropic's service no key of Tollgate's would be let reach.
    assert "api.oauth.profile" in {r["endpoint"] for r in service}, [r.path for r in received]
    for record in service:
        assert (record["decision"], record["status"], record["model"], record["total_tokens"]) == (
            "allow", 200, None, None
        ), [(r["endpoint"], r["decision"], r["deny_reasons"]) for r in records]  # fmt: skip
    assert {r["auth"] for r in service if r["endpoint"] is not None} == {"subscription"}
    audit = (tmp_path / "audit.jsonl").read_text()
    for output in (audit, done.stdout, done.stderr):
        assert "5ecret" not in output
