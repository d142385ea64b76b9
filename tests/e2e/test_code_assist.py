"""Gemini CLI signed in with Google: its calls to Code Assist (cloudcode-pa.googleapis.com), sent
as Gemini CLI sends them (a bearer Google token, Gemini's request inside an envelope, streams as
server-sent events), governed as subscription calls: the token and body going upstream as they
came, the account named by Google's token information endpoint (a fake), pinned to the company's
projects and domains."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from tests.support import guardrail_samples as samples
from tests.support.fake_upstream import FakeUpstream, Received, Reply

from tollgate.common.fingerprint import fingerprint

TOKEN = "ya29.a0AfB_PLAN-5ecret-google-token-u1"
OTHER_TOKEN = "ya29.a0AfB_PLAN-5ecret-google-token-v2"
PROJECT = "corp-code-assist-4711"
DOMAINS = ["corp.example", "corp-labs.example"]
EMAIL = "alice@corp.example"
HOST = "cloudcode-pa.googleapis.com"
URL = f"https://{HOST}/v1internal"
RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
AWS_PAIR = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"

# An answer as Code Assist streams it: each event an envelope around a GenerateContentResponse, the
# last one with the usage.
EVENTS = [
    {"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}, "traceId": "t1"},
    {
        "response": {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "lo!"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 30,
                "thoughtsTokenCount": 12,
                "cachedContentTokenCount": 1000,
                "totalTokenCount": 1242,
            },
            "modelVersion": "gemini-2.5-pro",
        },
        "traceId": "t1",
    },
]
WHOLE = {
    "response": {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 5, "totalTokenCount": 45},
    },
    "traceId": "t2",
}
LOADED = {
    "currentTier": {"id": "standard-tier", "name": "Gemini Code Assist Standard"},
    "cloudaicompanionProject": PROJECT,
}


def code_assist(r: Received) -> Reply:
    method = r.path.partition(":")[2].partition("?")[0]
    if method == "streamGenerateContent":
        chunks = [f"data: {json.dumps(e)}\r\n\r\n".encode() for e in EVENTS]
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=chunks)
    if method == "generateContent":
        return Reply(200, WHOLE)
    if method == "loadCodeAssist":
        return Reply(200, LOADED)
    return Reply(200, {})


class TokenInfo:
    """Google's token information endpoint: an e-mail per token, each ask counted."""

    def __init__(self, ca) -> None:
        self.asked: list[str] = []
        self._lock = threading.Lock()
        self.fake = FakeUpstream(ca, self.answer)

    def answer(self, r: Received) -> Reply:
        token = dict(p.split("=", 1) for p in r.body.decode().split("&")).get("access_token", "")
        with self._lock:
            self.asked.append(token)
        email = {TOKEN: EMAIL, OTHER_TOKEN: "bob@elsewhere.example"}.get(token)
        if email is None:
            return Reply(400, {"error": "invalid_token"})
        return Reply(200, {"email": email, "email_verified": "true", "expires_in": "3599", "scope": "openid"})


def config(urls: dict[str, str], tokeninfo: str, ca_file: str, **extra) -> dict:
    return {
        "providers": {"code_assist": {"upstream": urls["code_assist"]}},
        "clients": [{"name": "alice", "keys": ["tg-alice-VIRTUAL-0001"], "groups": ["dev"], "accounts": [EMAIL]}],
        "allow_anonymous": True,
        "subscriptions": {
            "code_assist": {"projects": [PROJECT], "domains": DOMAINS, "tokeninfo": tokeninfo, "ca_file": ca_file}
        },
        "guardrails": [{"detect": ["secrets.aws_access_key_id", "secrets.aws_secret_access_key"], "action": "redact"}],
        **extra,
    }


@pytest.fixture(scope="module")
def tokeninfo(upstream_ca):
    info = TokenInfo(upstream_ca)
    yield info
    info.fake.close()


POLICY = """package tollgate
import rego.v1

deny contains "no Pro on the free tier" if {
	input.subscription == {"vendor": "code_assist", "account": "bob@elsewhere.example",
		"email": "bob@elsewhere.example", "plan": "free-tier", "tenant": "corp-code-assist-4711"}
	input.client.auth == "subscription"
	input.model == "gemini-2.5-pro"
}
"""


@pytest.fixture(scope="module")
def gw(start_gateway, tokeninfo, upstream_ca_pem, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "code_assist.rego"
    policy.write_text(POLICY)
    return start_gateway(
        lambda urls: (
            config(urls, f"{tokeninfo.fake.url}/tokeninfo", str(upstream_ca_pem)) | {"policy": {"rego": [str(policy)]}}
        ),
        providers=("code_assist",),
    )


@pytest.fixture
def g(gw, tokeninfo):
    gw.reset()
    gw.fakes["code_assist"].handler = code_assist
    tokeninfo.asked.clear()
    return gw


# Gemini CLI's requests (`code_assist/server.ts`), made with urllib: a POST of JSON to `…/v1internal:{method}`, the
# user's token as a bearer, streams asked for with `alt=sse`.
CALL = """
    import json, urllib.error, urllib.request
    results = []
    for method, body, token in {calls!r}:
        query = "?alt=sse" if method == "streamGenerateContent" else ""
        data = json.dumps(body).encode()
        request = urllib.request.Request({url!r} + ":" + method + query, data=data, method="POST",
            headers={{"Authorization": "Bearer " + token, "Content-Type": "application/json",
                "X-GeminiCodeAssist-Allowed-Domains": "someone-else.example"}})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status, text, kind = r.status, r.read().decode(), r.headers.get("x-tollgate-error")
        except urllib.error.HTTPError as e:
            status, text, kind = e.code, e.read().decode(), e.headers.get("x-tollgate-error")
        results.append(dict(status=status, body=text, sent=data.hex(), kind=kind))
    report(results=results)
"""


def envelope(text: str = "hi", project: str = PROJECT, model: str = "gemini-2.5-pro") -> dict:
    return {
        "model": model,
        "project": project,
        "user_prompt_id": "f00d-1",
        "request": {
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"temperature": 0, "maxOutputTokens": 512},
            "session_id": "s-1",
        },
    }


def calls(gateway, *calls: tuple[str, dict, str]) -> list[dict]:
    result = gateway.run(CALL.format(calls=list(calls), url=URL))
    assert "results" in result, result
    return result["results"]


def test_a_streamed_call_goes_as_it_came_and_is_audited_with_its_account_plan_and_tokens(g, tokeninfo):
    load = {"cloudaicompanionProject": PROJECT, "metadata": {"ideType": "IDE_UNSPECIFIED", "pluginType": "GEMINI"}}
    first, second = calls(g, ("loadCodeAssist", load, TOKEN), ("streamGenerateContent", envelope(), TOKEN))
    assert (first["status"], second["status"]) == (200, 200), (first, second)
    assert [json.loads(line[6:]) for line in second["body"].splitlines() if line.startswith("data: ")] == EVENTS
    seen_load, seen = g.fakes["code_assist"].received
    assert seen.path == "/v1internal:streamGenerateContent?alt=sse"
    # The token unchanged, the body byte for byte, the company's domains in place of the client's.
    for received in (seen_load, seen):
        assert received.headers["authorization"] == f"Bearer {TOKEN}"
        assert received.headers["x-geminicodeassist-allowed-domains"] == ",".join(DOMAINS)
    assert seen.body == bytes.fromhex(second["sent"])
    service, record = g.new_audit(2)
    assert (service["endpoint"], service["model"], service["auth"], service["client"]) == (
        "loadCodeAssist",
        None,
        "subscription",
        "alice",
    )
    assert (service["input_tokens"], service["status"]) == (None, 200)
    assert (record["client"], record["auth"], record["groups"]) == ("alice", "subscription", ["dev"])
    assert (record["provider"], record["endpoint"], record["model"], record["stream"]) == (
        "code_assist",
        "streamGenerateContent",
        "gemini-2.5-pro",
        True,
    )
    # The plan from the loadCodeAssist answer before it, the account from the token information.
    assert (record["account"], record["plan"], record["tenant"]) == (EMAIL, "standard-tier", PROJECT)
    assert record["upstream_key"] == fingerprint(TOKEN)
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"], record["total_tokens"]) == (
        1200,
        42,
        1000,
        1242,
    )
    assert record["reasoning_tokens"] == 12
    assert record["cost_usd"] is not None and record["cost_usd"] > 0
    # One token asked about once, for both calls.
    assert tokeninfo.asked == [TOKEN]
    console = g.proxy.console()
    assert TOKEN not in console and TOKEN not in json.dumps(g.audit())


def test_a_call_naming_another_project_is_refused_in_googles_shape_and_never_sent(g):
    [result] = calls(g, ("generateContent", envelope(project="someone-elses-project"), TOKEN))
    assert (result["status"], result["kind"]) == (403, "tenant_denied")
    assert json.loads(result["body"])["error"]["status"] == "PERMISSION_DENIED"
    assert g.fakes["code_assist"].received == []
    record = g.last_audit()
    assert (record["decision"], record["status"], record["tenant"]) == ("deny", 403, "someone-elses-project")
    assert record["auth"] == "subscription"


def test_an_account_no_client_lists_calls_anonymously_and_whole_answers_are_counted(g, tokeninfo):
    [result] = calls(g, ("generateContent", envelope(), OTHER_TOKEN))
    assert result["status"] == 200, result
    record = g.last_audit()
    assert (record["client"], record["auth"], record["account"]) == (None, "subscription", "bob@elsewhere.example")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (40, 5, 45)
    assert record["plan"] is None  # no loadCodeAssist answer for this token yet
    assert tokeninfo.asked == [OTHER_TOKEN]


def test_the_policy_sees_the_subscription(g):
    free = dict(LOADED, currentTier={"id": "free-tier"})
    g.fakes["code_assist"].handler = lambda r: Reply(200, free) if "loadCodeAssist" in r.path else code_assist(r)
    results = calls(
        g,
        ("loadCodeAssist", {"cloudaicompanionProject": PROJECT}, OTHER_TOKEN),
        ("generateContent", envelope(model="gemini-2.5-pro"), OTHER_TOKEN),
        ("generateContent", envelope(model="gemini-2.5-flash"), OTHER_TOKEN),
    )
    assert [(r["status"], r["kind"]) for r in results] == [(200, None), (403, "policy_denied"), (200, None)]
    paths = [r.path for r in g.fakes["code_assist"].received]
    assert paths == ["/v1internal:loadCodeAssist", "/v1internal:generateContent"]
    _, denied, allowed = g.new_audit(3)
    assert (denied["decision"], denied["deny_reasons"], denied["plan"]) == (
        "deny",
        ["no Pro on the free tier"],
        "free-tier",
    )
    assert (allowed["decision"], allowed["model"], allowed["plan"]) == ("allow", "gemini-2.5-flash", "free-tier")


def test_a_guardrail_redacts_an_aws_key_pair_inside_the_envelope(g):
    body = envelope(text=f"deploy with\n{AWS_PAIR}")
    [result] = calls(g, ("generateContent", body, TOKEN))
    assert result["status"] == 200, result
    [seen] = g.fakes["code_assist"].received
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    sent = seen.json()
    assert sent["request"]["contents"][0]["parts"][0]["text"] == (
        "deploy with\nAWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
    )
    assert {k: v for k, v in sent.items() if k != "request"} == {k: v for k, v in body.items() if k != "request"}
    record = g.last_audit()
    assert record["redacted"] == 2
    assert record["findings"] == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gw_blind(start_gateway, upstream_ca_pem):
    # Google's token information endpoint cannot be reached.
    unreachable = f"https://127.0.0.1:{closed_port()}/tokeninfo"
    return start_gateway(lambda urls: config(urls, unreachable, str(upstream_ca_pem)), providers=("code_assist",))


@pytest.fixture(scope="module")
def gw_limited(start_gateway, upstream_ca_pem):
    # One call a month to Code Assist (a month's window: two calls never straddle its edge, as they
    # may a minute's): a service call counts against no limit.
    limits = {"limits": [{"match": {"provider": "code_assist"}, "requests_per_month": 1}]}
    return start_gateway(
        lambda urls: config(urls, f"https://127.0.0.1:{closed_port()}/", str(upstream_ca_pem)) | limits,
        providers=("code_assist",),
    )


def test_a_call_goes_on_with_no_email_where_the_token_information_cannot_be_had(gw_blind):
    gw_blind.reset()
    gw_blind.fakes["code_assist"].handler = code_assist
    [result] = calls(gw_blind, ("generateContent", envelope(), TOKEN))
    assert result["status"] == 200, result
    [seen] = gw_blind.fakes["code_assist"].received
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    record = gw_blind.last_audit()
    assert (record["client"], record["auth"], record["account"], record["tenant"]) == (
        None,
        "subscription",
        None,
        PROJECT,
    )
    assert (record["decision"], record["input_tokens"], record["output_tokens"]) == ("allow", 40, 5)


def test_a_limit_counts_model_calls_and_no_service_call(gw_limited):
    gw_limited.fakes["code_assist"].handler = code_assist
    results = calls(
        gw_limited,
        ("loadCodeAssist", {"cloudaicompanionProject": PROJECT}, OTHER_TOKEN),
        ("retrieveUserQuota", {"project": PROJECT}, OTHER_TOKEN),
        ("generateContent", envelope(), OTHER_TOKEN),
        ("generateContent", envelope(), OTHER_TOKEN),
    )
    statuses = [(r["status"], r["kind"]) for r in results]
    assert statuses == [(200, None), (200, None), (200, None), (429, "budget_exceeded")]
    assert len(gw_limited.fakes["code_assist"].received) == 3


@pytest.fixture(scope="module")
def gw_tunnelled(start_gateway, upstream_ca, upstream_ca_pem):
    # Code Assist's own host, named so by a fake that holds a certificate for it.
    host = FakeUpstream(upstream_ca, code_assist, names=(HOST,))
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps({HOST: host.port})}
    gateway = start_gateway(
        lambda urls: (
            config(urls, "https://127.0.0.1:1/tokeninfo", str(upstream_ca_pem))
            | {"subscriptions": {"code_assist": {"govern": False, "projects": [PROJECT]}}}
            # Its host is on this machine (a fake on loopback): named, to be reached.
            | {"egress": {"allow": [HOST]}}
        ),
        "-s",
        str(RESOLVE),
        env=env,
        providers=("code_assist",),
    )
    gateway.host = host
    yield gateway
    host.close()


def test_govern_false_leaves_code_assist_tunnelled_untouched(gw_tunnelled, upstream_ca_pem):
    # The client trusts the upstream's CA alone: only a connection Tollgate does not decrypt holds.
    body = envelope(project="someone-elses-project", text=f"deploy with\n{AWS_PAIR}")
    result = gw_tunnelled.run(
        CALL.format(calls=[("generateContent", body, TOKEN)], url=URL), env={"SSL_CERT_FILE": str(upstream_ca_pem)}
    )
    [answer] = result["results"]
    assert answer["status"] == 200, answer
    [seen] = gw_tunnelled.host.received
    assert seen.body == json.dumps(body).encode()  # not redacted, not refused
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["x-geminicodeassist-allowed-domains"] == "someone-else.example"
    assert [r for r in gw_tunnelled.audit() if r.get("event") == "llm_call"] == []


@pytest.fixture(scope="module")
def gw_closed(start_gateway, tokeninfo, upstream_ca_pem):
    return start_gateway(
        lambda urls: (
            config(urls, f"{tokeninfo.fake.url}/tokeninfo", str(upstream_ca_pem)) | {"subscriptions": {"allow": False}}
        ),
        providers=("code_assist",),
    )


def test_no_plan_is_allowed_where_subscriptions_allow_is_false(gw_closed, tokeninfo):
    tokeninfo.asked.clear()
    gw_closed.fakes["code_assist"].handler = code_assist
    results = calls(
        gw_closed,
        ("loadCodeAssist", {"cloudaicompanionProject": PROJECT}, TOKEN),
        ("streamGenerateContent", envelope(), TOKEN),
    )
    assert [(r["status"], r["kind"]) for r in results] == [(403, "tenant_denied")] * 2
    assert json.loads(results[1]["body"])["error"]["status"] == "PERMISSION_DENIED"
    assert gw_closed.fakes["code_assist"].received == [] and tokeninfo.asked == []
    service, record = gw_closed.new_audit(2)
    assert (record["decision"], record["auth"], record["deny_reasons"]) == (
        "deny",
        "subscription",
        ["calls made with a plan are not allowed (subscriptions.allow)"],
    )
    assert (service["decision"], service["endpoint"]) == ("deny", "loadCodeAssist")
