"""OpenAI's Codex CLI (`codex exec`), unchanged, signed in with ChatGPT: `~/.codex/auth.json` as
`codex login` writes it, its tokens unsigned JWTs of test claims with a far expiry and a fresh
`last_refresh` (Codex refreshes neither). It calls chatgpt.com through Tollgate, whose `chatgpt`
provider sends that host to a fake: first `/backend-api/wham/accounts/check` (the workspace's
routing, without which Codex does not ask) and its settings, models, plugins and analytics (answered
404: Codex carries on), then `/backend-api/codex/responses` over its WebSocket, or over HTTP with
server-sent events where its provider says so. Each response is a subscription call: the person's
token goes upstream unchanged, pinned to the company's workspaces, audited with exact tokens. Its
`wham` calls are Codex service calls; its plugins (`/backend-api/ps/…`) the web app's, unread. A
long session compacts in its Responses stream, read as any other answer."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.codex import clean_env, installed_codex, run_in_session
from tests.support.fake_realtime import FakeRealtime, HttpRequest, not_found, responding, responses_usage
from tests.support.guardrail_samples import AWS_KEY_ID, AWS_SECRET
from tests.support.leaks import stopped_texts
from tests.support.proxy import free_port
from tests.support.raw import send

from tollgate.common.fingerprint import fingerprint

WORKSPACE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PINNED = f"{WORKSPACE},ws-second"
EMAIL = "alice@corp.example"
ANSWER = "Hello from the fake ChatGPT."
PROMPT = "Say hello"
# Over its WebSocket Codex warms the connection up first (`generate: false`), then asks.
SOCKET_USAGES = [responses_usage(1900, 0), responses_usage(1950, 7, cached=1792, reasoning=3)]
SERVICE_EVENTS = "codex.analytics-events.events"  # its analytics: a service call
# What it asks of `/backend-api/wham/` at start-up: its workspace's routing and its settings.
WHAM = {"wham.accounts.check", "wham.settings.user"}
HTTP_USAGES = [responses_usage(2100, 9, cached=1024, reasoning=4)]
# A refusal in OpenAI's error shape, but for its message.
UNREAD_ERROR = {"type": "permission_denied", "code": "content_denied", "param": None}


def segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(account: str, signature: str) -> str:
    """An unsigned JWT with the claims ChatGPT's id and access tokens carry (OpenAI would verify
    the signature; Codex and Tollgate only read the claims)."""
    claims = {
        "https://api.openai.com/auth": {
            "chatgpt_account_id": account,
            "chatgpt_plan_type": "team",
            "chatgpt_user_id": "user-codex-1",
        },
        "https://api.openai.com/profile": {"email": EMAIL, "email_verified": True},
        "email": EMAIL,
        "exp": 4102444800,  # 2100: far from expiring
    }
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}.{signature}"


ACCESS = jwt(WORKSPACE, "access-5ecret-signature")
ID_TOKEN = jwt(WORKSPACE, "id-5ecret-signature")
PERSONAL = jwt("personal-acct-77", "personal-5ecret-signature")  # her own plan, outside the company
REFRESH = "rt-codex-5ecret-refresh"
METRICS = f"127.0.0.1:{free_port()}"
LOGIN_PASSWORD = "pr0xy-PASSWORD-codex"
SECRETS = [ACCESS, ID_TOKEN, PERSONAL, REFRESH, *(t.split(".")[2] for t in (ACCESS, ID_TOKEN, PERSONAL))]


def sign_in(home: Path, access: str = ACCESS, id_token: str = ID_TOKEN) -> None:
    """`~/.codex/auth.json` as `codex login` with ChatGPT leaves it."""
    account = json.loads(base64.urlsafe_b64decode(access.split(".")[1] + "=="))["https://api.openai.com/auth"]
    auth = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": id_token,
            "access_token": access,
            "refresh_token": REFRESH,
            "account_id": account["chatgpt_account_id"],
        },
        "last_refresh": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "auth.json").write_text(json.dumps(auth))


def chatgpt_com(fake: FakeRealtime):
    """chatgpt.com over HTTP: the workspace's routing (the account the caller names, at chatgpt.com),
    Codex's responses as server-sent events; everything else not found."""

    def answer(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        path = request.target.partition("?")[0]
        if path == "/backend-api/wham/accounts/check":
            account = {
                "id": request.headers.get("chatgpt-account-id"),
                "workspace_backend_origin": "https://chatgpt.com",
                "account_routing_override": "NO_CONSTRAINT",
            }
            return 200, {"content-type": "application/json"}, json.dumps({"accounts": [account]}).encode()
        if request.method == "POST" and path == "/backend-api/codex/responses":
            events = fake.script({**json.loads(request.body), "type": "response.create"})
            sse = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
            return 200, {"content-type": "text/event-stream"}, sse
        return not_found(request)

    return answer


@pytest.fixture(scope="module")
def codex() -> Path:
    return installed_codex()


@pytest.fixture(scope="module")
def fake(realtime_fake: FakeRealtime) -> FakeRealtime:
    realtime_fake.http = chatgpt_com(realtime_fake)
    return realtime_fake


@pytest.fixture(scope="module")
def gw(start_gateway, fake):
    config = {
        "providers": {"chatgpt": {"upstream": fake.url}},
        "clients": [{"name": "alice", "keys": ["tg-alice-VIRTUAL-5ecret"], "accounts": [EMAIL]}],
        "allow_anonymous": False,
        "subscriptions": {"allow": True, "chatgpt": {"workspaces": [WORKSPACE, "ws-second"]}},
        # Every built-in secrets detector: Codex's own instructions must set off none of them. Its
        # answers are read too: its start-up service calls go on, known to carry no model text.
        "guardrails": [{"on": ["request", "answer"], "detect": ["secrets"], "action": "redact"}],
        "metrics": {"listen": METRICS},
    }
    return start_gateway(config, providers=(), save_flows=True)


@pytest.fixture
def g(gw, fake):
    fake.requests.clear()
    fake.sessions.clear()
    return gw


def run_codex(codex: Path, gw, home: Path, *options: str, prompt: str = PROMPT):
    """`codex exec` as a user runs it through Tollgate: HTTPS_PROXY and the CA bundle (what
    `./run.sh env` exports), its own home."""
    env = clean_env(HOME=str(home), CODEX_HOME=str(home / ".codex"), HTTPS_PROXY=gw.proxy.proxy_url,
                    SSL_CERT_FILE=str(gw.bundle), NO_PROXY="")  # fmt: skip
    return run_in_session([str(codex), "exec", "--skip-git-repo-check", *options, prompt], home, env)


def responses_records(gw, since: int, count: int, endpoint: str = "responses") -> list[dict]:
    """The audit's records of `endpoint` after the first `since`, once there are `count` of them."""
    deadline = time.monotonic() + 10
    while True:
        records = [r for r in gw.audit()[since:] if r["endpoint"] == endpoint]
        if len(records) >= count or time.monotonic() >= deadline:
            return records
        time.sleep(0.05)


def assert_every_request_carried_the_token_and_the_pin(fake: FakeRealtime, token: str) -> None:
    seen = [*fake.requests, *fake.sessions]
    assert any(r.target.startswith("/backend-api/wham/accounts/check") for r in fake.requests)
    assert {(r.headers["authorization"], r.headers["chatgpt-allowed-workspace-id"]) for r in seen} == {
        (f"Bearer {token}", PINNED)
    }


def test_codex_signed_in_with_chatgpt_over_its_websocket_is_governed_per_response(codex, g, fake, tmp_path):
    fake.script = responding([ANSWER] * 2, SOCKET_USAGES)
    sign_in(tmp_path)
    before = len(g.audit())
    done = run_codex(codex, g, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    assert "Falling back from WebSockets" not in done.stderr
    [session] = fake.sessions
    assert session.target == "/backend-api/codex/responses"
    assert session.headers["chatgpt-account-id"] == WORKSPACE
    assert_every_request_carried_the_token_and_the_pin(fake, ACCESS)
    assert not [r for r in fake.requests if r.target.startswith("/backend-api/codex/responses")]
    sent = [json.loads(m) for m in session.received]
    assert [(m["type"], m.get("generate", True)) for m in sent] == [
        ("response.create", False),
        ("response.create", True),
    ]
    records = responses_records(g, before, 2)
    assert [(r["client"], r["auth"], r["account"], r["plan"], r["tenant"]) for r in records] == [
        ("alice", "subscription", WORKSPACE, "team", WORKSPACE)
    ] * 2
    assert [(r["provider"], r["transport"], r["model"], r["decision"], r["status"], r["upstream_key"]) for r in records] == [
        ("chatgpt", "websocket", sent[1]["model"], "allow", 200, fingerprint(ACCESS))
    ] * 2  # fmt: skip
    assert [(r["findings"], r["redacted"]) for r in records] == [({}, 0)] * 2
    # Its models list and its analytics are service calls; the web app's paths it calls have no record.
    services = [*responses_records(g, before, 1, "codex.models"), *responses_records(g, before, 1, SERVICE_EVENTS)]
    assert {(r["client"], r["auth"], r["model"], r["input_tokens"]) for r in services} == {
        ("alice", "subscription", None, None)
    }
    assert {r["endpoint"] for r in g.audit()[before:]} == {"responses", "codex.models", SERVICE_EVENTS, *WHAM}
    # Under the answer rule they went on all the same (the fake answers them 404), known to carry no
    # model text.
    assert {(r["decision"], r["status"]) for r in services} == {("allow", 404)}
    assert {r.target.partition("?")[0] for r in fake.requests} >= {
        "/backend-api/codex/models", "/backend-api/codex/analytics-events/events"}  # fmt: skip
    # Its workspace's routing and settings: Codex service calls of its account, gone on unread.
    wham = [r for r in g.audit()[before:] if r["endpoint"] in WHAM]
    assert {(r["endpoint"], r["client"], r["auth"], r["account"], r["model"], r["decision"]) for r in wham} == {
        (endpoint, "alice", "subscription", WORKSPACE, None, "allow") for endpoint in WHAM}  # fmt: skip
    assert {r["status"] for r in wham if r["endpoint"] == "wham.accounts.check"} == {200}
    # Its plugins are the web app's: gone on unread, with no record.
    assert "ps" in {r.target.split("/")[2] for r in fake.requests}
    assert [(r["input_tokens"], r["output_tokens"], r["cached_tokens"], r["reasoning_tokens"]) for r in records] == [
        (1900, 0, 0, 0),
        (1950, 7, 1792, 3),
    ]


def test_a_codex_service_call_that_may_carry_model_text_is_refused_unread(g, fake):
    """Under the answer rule Codex works under, a service path not known to carry no model text (a
    cloud task's turns, which hold what the model wrote) is refused before it goes upstream."""
    before = len(g.audit())
    headers = {"Authorization": f"Bearer {ACCESS}", "ChatGPT-Account-ID": WORKSPACE}
    got = send(g.proxy.port, g.bundle, "chatgpt.com", "/backend-api/codex/tasks/task_e_68a1b2c3d4/turns",
               method="GET", headers=headers)  # fmt: skip
    why = (
        "an answer guardrail applies and Tollgate cannot read the answer of the service call codex.tasks.turns,"
        " which may carry model text"
    )
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")
    assert json.loads(got.body)["error"] == UNREAD_ERROR | {"message": f"Tollgate refused this call: {why}."}
    assert not [r for r in fake.requests if "/tasks/" in r.target]
    [record] = responses_records(g, before, 1, "codex.tasks.turns")  # the session's analytics may come after
    assert (record["endpoint"], record["client"], record["auth"], record["status"], record["decision"]) == (
        "codex.tasks.turns", "alice", "subscription", 403, "deny")  # fmt: skip
    assert (record["deny_reasons"], record["answer_findings"]) == ([why], None)


COMPACTED = {"type": "compaction", "id": "cmp_2", "encrypted_content": "gAAAAB-opaque-to-codex-and-tollgate"}


def compacting(input_tokens: int) -> Callable[[dict], list[dict]]:
    """The Responses WebSocket of a long session: the warm-up, then a tool call (Codex must follow
    it up), a compaction where Codex asks for one (its input ends with `compaction_trigger`), else
    the answer; every response reports `input_tokens`, over Codex's limit for compacting."""
    answered = iter(range(10))

    def script(event: dict) -> list[dict]:
        if event.get("type") != "response.create":
            return []
        n = next(answered)
        lane = {"stream_id": event["stream_id"]} if "stream_id" in event else {}
        last = (event.get("input") or [{}])[-1]
        if last.get("type") == "compaction_trigger":
            item = COMPACTED
        elif n == 1:
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look_up", "arguments": "{}",
                    "status": "completed"}  # fmt: skip
        else:
            item = {"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}  # fmt: skip
        response = {"id": f"resp_{n}", "object": "response", "status": "completed", "output": [item],
                    "usage": responses_usage(input_tokens, 10)}  # fmt: skip
        return [
            {"type": "response.created", **lane, "response": {**response, "status": "in_progress", "output": []}},
            {"type": "response.output_item.added", **lane, "output_index": 0, "item": item},
            {"type": "response.output_item.done", **lane, "output_index": 0, "item": item},
            {"type": "response.completed", **lane, "response": response},
        ]

    return script


def test_a_long_codex_session_compacts_in_its_responses_stream_under_the_answer_rule(codex, g, fake, tmp_path):
    """Codex compacts on OpenAI's side in its Responses stream (remote compaction v2): a response
    whose input ends with `compaction_trigger`, answered with a `compaction` item whose content only
    OpenAI reads. Under the answer rule that answer is read as any other: the item reaches Codex as
    it came, and Codex sends it back in its next response."""
    fake.script = compacting(50000)
    sign_in(tmp_path)
    before = len(g.audit())
    done = run_codex(codex, g, tmp_path, "-c", "model_auto_compact_token_limit=20000")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    [session] = fake.sessions
    sent = [json.loads(m) for m in session.received]
    assert [m.get("generate", True) for m in sent] == [False, True, True, True]
    assert sent[2]["input"][-1] == {"type": "compaction_trigger"}
    assert sent[3]["input"][-1] == COMPACTED  # the compaction as OpenAI gave it, back to OpenAI
    records = responses_records(g, before, 4)
    assert [(r["decision"], r["status"], r["answer_findings"], r["input_tokens"]) for r in records] == [
        ("allow", 200, {}, 50000)] * 4  # fmt: skip


# Codex's own provider for ChatGPT's backend with its WebSocket off: the same sign-in, over HTTP.
OVER_HTTP = (
    "model_providers.chatgpt_http={name='ChatGPT over HTTP', base_url='https://chatgpt.com/backend-api/codex',"
    " wire_api='responses', requires_openai_auth=true, supports_websockets=false}"
)


def test_codex_signed_in_with_chatgpt_over_http_is_governed_with_its_events_read(codex, g, fake, tmp_path):
    fake.script = responding([ANSWER], HTTP_USAGES)
    sign_in(tmp_path)
    before = len(g.audit())
    done = run_codex(codex, g, tmp_path, "-c", "model_provider=chatgpt_http", "-c", OVER_HTTP)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    assert fake.sessions == []
    [post] = [r for r in fake.requests if r.target == "/backend-api/codex/responses"]
    assert post.headers["chatgpt-account-id"] == WORKSPACE
    assert post.headers["accept"] == "text/event-stream"
    assert_every_request_carried_the_token_and_the_pin(fake, ACCESS)
    [record] = responses_records(g, before, 1)
    assert (record["client"], record["auth"], record["account"], record["plan"], record["tenant"]) == (
        "alice", "subscription", WORKSPACE, "team", WORKSPACE
    )  # fmt: skip
    assert (record["transport"], record["stream"], record["model"], record["decision"], record["status"]) == (
        "http", True, json.loads(post.body)["model"], "allow", 200
    )  # fmt: skip
    assert (record["upstream_key"], record["finish_reason"]) == (fingerprint(ACCESS), "completed")
    assert (record["findings"], record["redacted"]) == ({}, 0)
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"], record["reasoning_tokens"]) == (
        2100, 9, 1024, 4
    )  # fmt: skip


def test_a_key_pair_in_a_codex_prompt_is_redacted_before_it_reaches_openai(codex, g, fake, tmp_path):
    fake.script = responding([ANSWER] * 2, SOCKET_USAGES)
    sign_in(tmp_path)
    before = len(g.audit())
    prompt = f"deploy with AWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    done = run_codex(codex, g, tmp_path, prompt=prompt)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    [session] = fake.sessions
    asked = session.received[-1]
    assert "deploy with AWS_ACCESS_KEY_ID=" in asked
    assert AWS_KEY_ID not in asked and AWS_SECRET not in asked
    records = responses_records(g, before, 2)
    assert [(r["decision"], r["findings"], r["redacted"]) for r in records] == [
        ("allow", {}, 0),  # the warm-up carries no prompt
        ("allow", {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}, 2),
    ]


def test_codex_signed_in_to_another_workspace_is_refused_from_its_first_call(codex, g, fake, tmp_path):
    """Its workspace's routing (`wham.accounts.check`, without which Codex asks for no response) is
    refused already, as every Codex call of that account: Codex gives up before it asks."""
    fake.script = responding([ANSWER] * 20, [responses_usage(1, 1)] * 20)
    sign_in(tmp_path, PERSONAL, PERSONAL)
    before = len(g.audit())
    done = run_codex(codex, g, tmp_path)
    assert done.returncode != 0
    assert ANSWER not in done.stdout
    assert "403 Forbidden: Tollgate: ChatGPT workspace personal-acct-77 is not one of" in done.stderr
    assert fake.sessions == []
    assert not [r for r in fake.requests if r.target.startswith(("/backend-api/codex/", "/backend-api/wham/"))]
    records = responses_records(g, before, 1, "wham.accounts.check")
    assert records
    # This account's records only: a record of the test before may be written after `before`.
    refused = [r for r in g.audit()[before:] if r["account"] != WORKSPACE]
    assert {(r["client"], r["auth"], r["account"], r["tenant"], r["decision"], r["status"]) for r in refused} == {
        ("alice", "subscription", "personal-acct-77", "personal-acct-77", "deny", 403)
    }
    assert {tuple(r["deny_reasons"]) for r in refused} == {
        ("ChatGPT workspace personal-acct-77 is not one of subscriptions.chatgpt.workspaces",)
    }
    assert "responses" not in {r["endpoint"] for r in refused}


def test_codex_behind_a_proxy_login_is_that_clients_whoever_its_account(codex, start_gateway, fake, tmp_path):
    fake.requests.clear()
    fake.sessions.clear()
    fake.script = responding([ANSWER] * 2, SOCKET_USAGES)
    config = {
        "providers": {"chatgpt": {"upstream": fake.url}},
        "clients": [{"name": "carol"}],  # no accounts: the login names her
        "allow_anonymous": False,
        "subscriptions": {"chatgpt": {"workspaces": [WORKSPACE]}},
    }
    gateway = start_gateway(config, "--set", f"proxyauth=carol:{LOGIN_PASSWORD}", providers=())
    sign_in(tmp_path)
    login = gateway.proxy.proxy_url.replace("http://", f"http://carol:{LOGIN_PASSWORD}@")
    env = clean_env(HOME=str(tmp_path), CODEX_HOME=str(tmp_path / ".codex"), HTTPS_PROXY=login,
                    SSL_CERT_FILE=str(gateway.bundle), NO_PROXY="")  # fmt: skip
    done = run_in_session([str(codex), "exec", "--skip-git-repo-check", PROMPT], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    assert "Falling back from WebSockets" not in done.stderr  # its WebSocket, too, gives the login
    [session] = fake.sessions
    assert session.headers["authorization"] == f"Bearer {ACCESS}"
    assert not any(LOGIN_PASSWORD in value for value in session.headers.values())
    records = responses_records(gateway, 0, 2)
    assert [(r["client"], r["auth"], r["transport"], r["account"], r["decision"]) for r in records] == [
        ("carol", "subscription", "websocket", WORKSPACE, "allow")
    ] * 2
    console = gateway.proxy.console()
    gateway.proxy.stop()
    assert LOGIN_PASSWORD not in console and ACCESS not in console


def test_no_token_reaches_the_console_the_audit_saved_flows_or_metrics(gw):
    """Last: it stops the gateway (flushing the saved flows)."""
    outputs = stopped_texts(gw, METRICS)
    assert '"auth":"subscription"' in outputs["audit"] and "/backend-api/codex/responses" in outputs["saved flows"]
    assert 'client="alice"' in outputs["metrics"] and 'provider="chatgpt"' in outputs["metrics"]  # its calls counted
    for name, text in outputs.items():
        for secret in [*SECRETS, ANSWER, AWS_KEY_ID, AWS_SECRET]:
            assert secret not in text, (name, secret[:12])
