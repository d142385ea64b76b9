"""Gemini CLI itself (`@google/gemini-cli` from npm), signed in with Google by the files its own
sign-in leaves (`~/.gemini/oauth_creds.json`, the auth type in `~/.gemini/settings.json`), through
Tollgate to a fake of Code Assist (cloudcode-pa.googleapis.com): its calls governed as plan calls,
the user's token going upstream unchanged, the account named by Google's token information.

Gemini CLI checks its token with Google itself (`oauth2.googleapis.com/tokeninfo`) and asks who its
user is (`www.googleapis.com/oauth2/v2/userinfo`): hosts Tollgate tunnels untouched. A small proxy
in front of Tollgate (`support/front_proxy.py`) sends those two CONNECTs to a fake of Google's that
holds certificates for both names, which Gemini CLI trusts, and relays every other one to Tollgate
unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.front_proxy import FrontProxy
from tests.support.leaks import stopped_texts
from tests.support.npm_cli import NODE_CLIENTS, npm_command
from tests.support.proxy import ROOT, free_port
from tests.support.raw import send

from tollgate.common.fingerprint import fingerprint
from tollgate.governance.subscriptions.plan import PLANS_REFUSED_MESSAGE, PLANS_REFUSED_REASON
from tollgate.proxy.certs import CA_CERT

TOKEN = "ya29.a0AfB_GEMINI-CLI-5ecret-access-token-q7"
REFRESH = "1//0g-GEMINI-CLI-5ecret-refresh-token-z3"
EMAIL = "alice@corp.example"
PROJECT = "corp-code-assist-4711"
DOMAINS = ["corp.example", "corp-labs.example"]
TIER = "standard-tier"
OTHER_PROJECT = "someone-elses-project-99"
ANSWER = "Hello from the fake Code Assist"
PROMPT = "Say hello PROMPT-TEXT-that-must-not-leak-g7"
METRICS = f"127.0.0.1:{free_port()}"
GOOGLE_HOSTS = ("oauth2.googleapis.com", "www.googleapis.com")
# What a user's shell may carry that would route or sign in Gemini CLI otherwise.
CLEARED = ("_PROXY", "GEMINI_", "GOOGLE_", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "CLOUDSDK_")


def usage(prompt: int, output: int, thoughts: int, cached: int) -> dict:
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "thoughtsTokenCount": thoughts,
        "cachedContentTokenCount": cached,
        "totalTokenCount": prompt + output + thoughts,
    }


# Code Assist's streamed answer: each event an envelope around a GenerateContentResponse.
EVENTS = [
    {"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER[:9]}]}}]}, "traceId": "t"},
    {
        "response": {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": ANSWER[9:]}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": usage(3210, 17, 40, 2048),
            "modelVersion": "gemini-2.5-pro",
        },
        "traceId": "t",
    },
]
# Its first streamed answer: a call of one of Gemini CLI's read-only tools, which the CLI runs and
# sends the result of in a second stream.
TOOL_EVENTS = [
    {
        "response": {
            "candidates": [{
                "content": {"role": "model", "parts": [{"functionCall": {"name": "list_directory", "args": {"dir_path": "."}}}]},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": usage(2900, 11, 25, 0),
            "modelVersion": "gemini-2.5-pro",
        },
        "traceId": "u",
    }
]  # fmt: skip
# Its whole answer to Gemini CLI's router, which asks a small model which model the prompt needs.
ROUTED = {
    "response": {
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": json.dumps({"reasoning": "simple", "model_choice": "pro"})}]},
            "finishReason": "STOP",
        }],
        "usageMetadata": usage(612, 21, 0, 0),
    },
    "traceId": "r",
}  # fmt: skip


class CodeAssist:
    """cloudcode-pa.googleapis.com as Gemini CLI meets it: its tier and project from loadCodeAssist
    (the project the CLI asked for, where it named one), a streamed tool call and, once the tool's
    result comes, a streamed answer; `{}` to the rest."""

    def __call__(self, r: Received) -> Reply:
        method = r.path.partition(":")[2].partition("?")[0]
        if method == "loadCodeAssist":
            asked = r.json().get("cloudaicompanionProject")
            return Reply(200, {
                "currentTier": {"id": TIER, "name": "Gemini Code Assist Standard", "hasOnboardedPreviously": True},
                "allowedTiers": [{"id": TIER, "isDefault": True}],
                "cloudaicompanionProject": asked or PROJECT,
            })  # fmt: skip
        if method == "streamGenerateContent":
            events = EVENTS if "functionResponse" in r.body.decode() else TOOL_EVENTS
            chunks = [f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events]
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=chunks)
        if method == "generateContent":
            return Reply(200, ROUTED)
        if method == "countTokens":
            return Reply(200, {"totalTokens": 7})
        return Reply(200, {})


class Google:
    """Google's token information and user information endpoints: asked by Gemini CLI (its token as
    a bearer) and by Tollgate (a form POST), each ask recorded."""

    def __init__(self, ca) -> None:
        self.asked: list[tuple[str, str]] = []  # (who, token)
        self._lock = threading.Lock()
        self.fake = FakeUpstream(ca, self.answer, names=GOOGLE_HOSTS)

    def answer(self, r: Received) -> Reply:
        bearer = r.headers.get("authorization", "").removeprefix("Bearer ")
        form = dict(parse_qsl(r.body.decode())) if r.body else {}
        token = form.get("access_token") or bearer
        with self._lock:
            self.asked.append(("form" if "access_token" in form else r.headers.get("host", ""), token))
        if token != TOKEN:
            return Reply(400, {"error": "invalid_token"})
        if r.path.startswith("/oauth2/v2/userinfo"):
            return Reply(200, {"id": "1", "email": EMAIL, "verified_email": True})
        return Reply(200, {
            "azp": "gemini-cli", "aud": "gemini-cli", "sub": "1", "email": EMAIL, "email_verified": "true",
            "expires_in": "3599", "access_type": "offline",
            "scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email"
            " https://www.googleapis.com/auth/userinfo.profile openid",
        })  # fmt: skip


@pytest.fixture(scope="module")
def gemini() -> Path:
    """The `gemini` command of `@google/gemini-cli`, installed from npm once."""
    return npm_command(NODE_CLIENTS / "gemini-cli", "@google/gemini-cli", "gemini")


@pytest.fixture(scope="module")
def google(upstream_ca):
    fake = Google(upstream_ca)
    yield fake
    fake.fake.close()


def config(urls: dict[str, str], google: Google, ca_file: str) -> dict:
    return {
        "providers": {"code_assist": {"upstream": urls["code_assist"]}},
        "clients": [{"name": "alice", "keys": ["tg-alice-VIRTUAL-0001"], "groups": ["dev"], "accounts": [EMAIL]}],
        "metrics": {"listen": METRICS},
        # Its answers are read: its service calls at start-up go on, known to carry no model text.
        "guardrails": [{"on": ["answer"], "detect": ["secrets"], "action": "redact"}],
        "subscriptions": {
            "code_assist": {
                "projects": [PROJECT],
                "domains": DOMAINS,
                "tokeninfo": f"{google.fake.url}/tokeninfo",
                "ca_file": ca_file,
            }
        },
    }


@pytest.fixture(scope="module")
def gw(start_gateway, google, upstream_ca_pem, tmp_path_factory):
    saved = tmp_path_factory.mktemp("saved") / "flows.mitm"
    gateway = start_gateway(
        lambda urls: config(urls, google, str(upstream_ca_pem)),
        "--set", f"save_stream_file={saved}", "--set", "flow_detail=4",
        providers=("code_assist",),
    )  # fmt: skip
    gateway.saved = saved
    gateway.outputs = []  # what Gemini CLI printed, each run's
    gateway.front = FrontProxy(gateway.proxy.port, dict.fromkeys(GOOGLE_HOSTS, google.fake.port))
    yield gateway
    gateway.front.close()


@pytest.fixture
def g(gw, google):
    gw.fakes["code_assist"].received.clear()
    gw.fakes["code_assist"].handler = CodeAssist()
    google.asked.clear()
    gw.done = len(gw.audit())
    gw.front.connects.clear()
    return gw


@pytest.fixture(scope="module")
def trusted(tmp_path_factory, confdir, upstream_ca_pem) -> Path:
    """What Gemini CLI trusts beyond the system's roots: Tollgate's CA, and the fake Google's."""
    path = tmp_path_factory.mktemp("trust") / "extra-ca.pem"
    path.write_text((confdir / CA_CERT).read_text() + upstream_ca_pem.read_text())
    return path


def signed_in_home(home: Path) -> Path:
    """A home whose Gemini CLI is signed in with Google, as its own sign-in leaves it."""
    gemini_dir = home / ".gemini"
    gemini_dir.mkdir(parents=True)
    far = int((time.time() + 10 * 365 * 24 * 3600) * 1000)
    creds = {
        "access_token": TOKEN,
        "refresh_token": REFRESH,
        "scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email"
        " https://www.googleapis.com/auth/userinfo.profile openid",
        "token_type": "Bearer",
        "expiry_date": far,
    }
    (gemini_dir / "oauth_creds.json").write_text(json.dumps(creds))
    settings = {
        "security": {"auth": {"selectedType": "oauth-personal"}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    (gemini_dir / "settings.json").write_text(json.dumps(settings))
    return home


def gemini_p(gemini: Path, gw, trusted: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
    """`gemini -p PROMPT` in a shell that evaluated `./run.sh env` for the proxy in front of Tollgate,
    in a home of its own. It trusts the fake Google's CA besides Tollgate's (`trusted`)."""
    environment = {k: v for k, v in os.environ.items() if not any(c in k.upper() for c in CLEARED)}
    environment.update(
        HOME=str(home),
        GEMINI_CLI_NO_RELAUNCH="true",  # else it starts itself again in a child process
        GEMINI_CLI_TRUST_WORKSPACE="true",
        NO_COLOR="1",
        TMPDIR=str(home),  # where it writes its reports of failed calls
        **env,
    )
    port = gw.front.port
    shell = (
        f'eval "$("{ROOT}/run.sh" env -p {port})" && export NODE_EXTRA_CA_CERTS="{trusted}"'
        f' && exec "{gemini}" -p "{PROMPT}" --output-format text'
    )
    done = subprocess.run(
        ["bash", "-c", shell],
        cwd=home,
        env=environment,
        stdin=subprocess.DEVNULL,  # else it reads a prompt from standard input
        capture_output=True,
        text=True,
        timeout=180,
    )
    gw.outputs += [done.stdout, done.stderr]
    return done


def method_of(r: Received) -> str:
    return r.path.partition(":")[2].partition("?")[0]


def records_of(gw, count: int) -> list[dict]:
    """The records of the calls the last run made, once `count` of them are written."""
    return gw.wait_audit(gw.done + count)[gw.done :]


def test_gemini_cli_signed_in_with_google_is_governed_as_a_plan(gemini, g, google, trusted, tmp_path):
    done = gemini_p(gemini, g, trusted, signed_in_home(tmp_path / "home"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ANSWER
    received = list(g.fakes["code_assist"].received)
    methods = [method_of(r) for r in received]
    assert methods[0] == "loadCodeAssist" and methods.count("streamGenerateContent") == 2, methods
    # Every call went with the user's token, unchanged, and the company's domains Tollgate added.
    for r in received:
        assert r.headers["authorization"] == f"Bearer {TOKEN}", method_of(r)
        assert r.headers["x-geminicodeassist-allowed-domains"] == ",".join(DOMAINS), method_of(r)
    streams = [r for r in received if method_of(r) == "streamGenerateContent"]
    assert {r.path for r in streams} == {"/v1internal:streamGenerateContent?alt=sse"}
    envelopes = [r.json() for r in streams]
    assert [e["project"] for e in envelopes] == [PROJECT, PROJECT]
    assert PROMPT in json.dumps(envelopes[0]["request"]["contents"])
    # The tool ran: its result went in the second stream.
    assert '"functionResponse"' in streams[1].body.decode() and '"functionResponse"' not in streams[0].body.decode()
    records = records_of(g, len(received))
    assert len(records) == len(received)  # each call that went upstream, none refused
    assert sorted(r["endpoint"] for r in records) == sorted(methods)  # some of its service calls overlap
    for record in records:
        assert (record["client"], record["auth"], record["account"]) == ("alice", "subscription", EMAIL), record
        assert (record["decision"], record["status"]) == ("allow", 200), record
        assert record["upstream_key"] == fingerprint(TOKEN)
    # One record per stream, each with its own exact tokens.
    streamed = [r for r in records if r["endpoint"] == "streamGenerateContent"]
    assert [(r["model"], r["stream"], r["plan"], r["tenant"]) for r in streamed] == [
        (e["model"], True, TIER, PROJECT) for e in envelopes
    ]
    assert [
        (r["input_tokens"], r["output_tokens"], r["reasoning_tokens"], r["cached_tokens"], r["total_tokens"])
        for r in streamed
    ] == [(2900, 36, 25, 0, 2936), (3210, 57, 40, 2048, 3267)]
    assert all(r["cost_usd"] > 0 for r in streamed)  # what the same tokens cost with a key
    # The router's question: a whole answer, its tokens as exact.
    for routed in (r for r in records if r["endpoint"] == "generateContent"):
        assert (routed["stream"], routed["tenant"], routed["input_tokens"], routed["output_tokens"]) == (
            False, PROJECT, 612, 21
        ), routed  # fmt: skip
    # Its service calls (the tier and project, quota, experiments): their endpoint, no model, no tokens.
    service = [r for r in records if r["endpoint"] not in ("streamGenerateContent", "generateContent")]
    assert {r["endpoint"] for r in service} >= {"loadCodeAssist", "retrieveUserQuota"}
    for record in service:
        assert (record["model"], record["total_tokens"], record["tenant"]) == (None, None, None), record
    # The CLI waits for loadCodeAssist before its other calls: its own answer names the tier they carry.
    assert (records[0]["endpoint"], records[0]["plan"]) == ("loadCodeAssist", None)
    assert {r["plan"] for r in records[1:]} == {TIER}
    # Gemini CLI checked its token with Google itself; Tollgate asked about the token once, for all
    # its calls.
    assert ("oauth2.googleapis.com", TOKEN) in google.asked
    assert "oauth2.googleapis.com:443" in g.front.connects and "cloudcode-pa.googleapis.com:443" in g.front.connects
    assert [token for who, token in google.asked if who == "form"] == [TOKEN]


def test_a_code_assist_method_that_may_carry_model_text_is_refused_unread(g):
    """Under the answer rule Gemini CLI works under, a method not known to carry no model text (an
    IDE's code generation) is refused before it goes upstream, in Google's error shape."""
    body = json.dumps({"project": PROJECT, "request": {"prompt": "a function that adds"}}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    got = send(g.proxy.port, g.bundle, "cloudcode-pa.googleapis.com", "/v1internal:generateCode",
               headers=headers, body=body)  # fmt: skip
    why = (
        "an answer guardrail applies and Tollgate cannot read the answer of the service call generateCode,"
        " which may carry model text"
    )
    assert (got.status, got.headers.get("x-tollgate-error")) == (403, "content_denied")
    assert json.loads(got.body) == {
        "error": {"code": 403, "message": f"Tollgate refused this call: {why}.", "status": "PERMISSION_DENIED"}
    }
    assert g.fakes["code_assist"].received == []
    deadline = time.monotonic() + 10  # its record, written moments after the refusal
    while not (found := [r for r in g.audit()[g.done :] if r["endpoint"] == "generateCode"]):
        assert time.monotonic() < deadline, "no record of the refused call"
        time.sleep(0.05)
    [record] = found
    assert (record["endpoint"], record["client"], record["auth"], record["account"]) == (
        "generateCode", "alice", "subscription", EMAIL)  # fmt: skip
    assert (record["status"], record["decision"], record["deny_reasons"], record["answer_findings"]) == (
        403, "deny", [why], None)  # fmt: skip


def test_a_project_outside_the_companys_is_refused_and_the_cli_says_so(gemini, g, trusted, tmp_path):
    # The user picks a Google Cloud project of their own; Code Assist would accept it.
    done = gemini_p(gemini, g, trusted, signed_in_home(tmp_path / "home"), GOOGLE_CLOUD_PROJECT=OTHER_PROJECT)
    assert done.returncode != 0
    reason = f"Google Cloud project {OTHER_PROJECT} is not one of subscriptions.code_assist.projects"
    assert f"Tollgate: {reason}; sign in to the company's account." in done.stderr, done.stderr[-3000:]
    received = list(g.fakes["code_assist"].received)
    assert {method_of(r) for r in received}.isdisjoint({"streamGenerateContent", "generateContent"})
    assert received[0].json()["cloudaicompanionProject"] == OTHER_PROJECT
    # Its router's question and its streamed call, each refused once (a 403 is not asked again).
    records = records_of(g, len(received) + 2)
    denied = [r for r in records if r["decision"] == "deny"]
    assert [r["endpoint"] for r in denied] == ["generateContent", "streamGenerateContent"]
    for record in denied:
        assert (record["status"], record["auth"], record["tenant"], record["account"]) == (
            403, "subscription", OTHER_PROJECT, EMAIL
        ), record  # fmt: skip
        assert record["deny_reasons"] == [reason]


def test_where_plans_are_refused_the_cli_says_so_whoever_calls(gemini, g, google, trusted, tmp_path, upstream_ca_pem):
    # No plan is allowed, and anonymous callers are not: no login could make the call pass, so the
    # refusal says the plan is refused (403), not who must call (401).
    g.reconfigure(lambda urls: config(urls, google, str(upstream_ca_pem)) | {"subscriptions": {"allow": False}})
    try:
        done = gemini_p(gemini, g, trusted, signed_in_home(tmp_path / "home"))
    finally:
        g.reconfigure(lambda urls: config(urls, google, str(upstream_ca_pem)))
    assert done.returncode != 0
    assert PLANS_REFUSED_MESSAGE in done.stderr, done.stderr[-3000:]
    assert g.fakes["code_assist"].received == []
    assert [who for who, _ in google.asked if who == "form"] == []  # no account is looked up for a refused plan
    records = records_of(g, 1)
    assert {r["endpoint"] for r in records} == {"loadCodeAssist"}  # asked again by the CLI, refused each time
    for record in records:
        assert (record["client"], record["auth"], record["decision"], record["status"]) == (
            None, "subscription", "deny", 403
        ), record  # fmt: skip
        assert record["deny_reasons"] == [PLANS_REFUSED_REASON]


def test_no_token_reaches_any_output(gw):
    """Last: it stops the gateway (flushing the saved flows)."""
    assert gw.outputs, "Gemini CLI did not run"
    outputs = {**stopped_texts(gw, METRICS), "gemini cli": "\n".join(gw.outputs)}
    assert 'provider="code_assist"' in outputs["metrics"]
    assert '"auth": "subscription"' in outputs["audit"] or '"auth":"subscription"' in outputs["audit"]
    assert "v1internal:streamGenerateContent" in outputs["saved flows"]
    for name, text in outputs.items():
        for secret in (TOKEN, REFRESH, "5ecret"):
            assert secret not in text, (name, secret[:12])
        if name != "gemini cli":
            assert PROMPT not in text, name
