"""Codex signed in with ChatGPT, as the official openai SDK sends its calls to
`https://chatgpt.com/backend-api/codex` (a bearer access token that is a JWT, `ChatGPT-Account-ID`
beside it): each governed as a subscription call over HTTP (server-sent events) and over the
Responses WebSocket, the token and the body going upstream as they came, pinned to the company's
workspaces; the web app's other paths passing unread, with no call record."""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from tests.support.fake_realtime import FakeRealtime, HttpRequest, responding, responses_usage
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.guardrail_samples import AWS_KEY_ID, AWS_SECRET
from tests.support.proxy import ROOT

from tollgate.common.fingerprint import fingerprint

RESOLVE = ROOT / "tests" / "support" / "resolve.py"
WORKSPACE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PINNED = f"{WORKSPACE},ws-second"
ANSWERS = ["COMPLETION-TEXT-plan-answer-a1", "COMPLETION-TEXT-plan-answer-b2", "COMPLETION-TEXT-plan-answer-c3"]
USAGES = [responses_usage(100, 20, cached=40), responses_usage(150, 30, reasoning=12), responses_usage(60, 9)]
MODEL = "gpt-5"


def segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def access_token(account: str, email: str, plan: str = "team") -> str:
    """An unsigned JWT shaped as ChatGPT's access tokens are (OpenAI would verify it; Tollgate reads it)."""
    claims = {
        "https://api.openai.com/auth": {
            "chatgpt_account_id": account,
            "chatgpt_plan_type": plan,
            "user_id": "u-5ecret",
        },
        "https://api.openai.com/profile": {"email": email, "email_verified": True},
        "exp": 4102444800,
    }
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}.5ecret-signature"


ALICE = access_token(WORKSPACE, "Alice@Corp.example")  # her e-mail in another case than `accounts`
STRANGER = access_token(WORKSPACE, "stranger@elsewhere.example", "plus")
PERSONAL = access_token("personal-acct-77", "alice@corp.example", "plus")
TOKENS = [ALICE, STRANGER, PERSONAL]


def web_and_codex(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
    """chatgpt.com over HTTP: Codex's responses as server-sent events, its models, and the web app."""
    path = request.target.partition("?")[0]
    if request.method == "POST" and path == "/backend-api/codex/responses":
        events = list(FAKE_SCRIPT[0]({**json.loads(request.body), "type": "response.create"}))
        return (
            200,
            {"content-type": "text/event-stream"},
            [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events],
        )
    if path == "/backend-api/codex/models":
        return 200, {"content-type": "application/json"}, b'{"models": [{"slug": "gpt-5"}]}'
    return 200, {"content-type": "application/json"}, WEB_APP_ANSWER


FAKE_SCRIPT: list = [responding(ANSWERS, USAGES)]
WEB_APP_ANSWER = b'{"items": [], "web": "WEB-APP-ANSWER"}'


@pytest.fixture(scope="module")
def fake(realtime_fake: FakeRealtime) -> FakeRealtime:
    realtime_fake.http = web_and_codex
    return realtime_fake


POLICY = """package tollgate
import rego.v1

deny contains "gpt-5-pro is not for the team plan" if {
	input.subscription.vendor == "chatgpt"
	input.subscription.plan == "team"
	input.model == "gpt-5-pro"
}
"""


def config(upstream: str, policy: str | None = None, allow: bool = True, **subscriptions) -> dict:
    return {
        **({"policy": {"rego": [policy]}} if policy else {}),
        "providers": {"chatgpt": {"upstream": upstream}},
        "clients": [{"name": "alice", "keys": ["tg-alice-VIRTUAL-5ecret"], "groups": ["dev"],
                     "accounts": ["alice@corp.example"]}],
        "allow_anonymous": False,
        "subscriptions": {"allow": allow, "chatgpt": {"workspaces": [WORKSPACE, "ws-second"], **subscriptions}},
        "guardrails": [{"detect": ["secrets.aws_access_key_id", "secrets.aws_secret_access_key"], "action": "deny"}],
        "limits": [{"match": {"model": "gpt-5-mini"}, "requests_per_month": 1}],
    }  # fmt: skip


@pytest.fixture(scope="module")
def gw(start_gateway, fake, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "plans.rego"
    policy.write_text(POLICY)
    return start_gateway(lambda urls: config(fake.url, str(policy)), providers=(), save_flows=True)


@pytest.fixture
def g(gw, fake):
    fake.requests.clear()
    fake.sessions.clear()
    FAKE_SCRIPT[0] = fake.script = responding(ANSWERS, USAGES)
    return gw


# The SDK as Codex calls chatgpt.com: the access token as its key, the account in a header; an
# event hook keeps the request as sent, to compare with what the upstream got.
SSE_CALL = """
    import openai
    sent = []
    client = openai.OpenAI(
        api_key={token!r}, base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
        default_headers={{"ChatGPT-Account-ID": {account!r}, "ChatGPT-Allowed-Workspace-Id": "someone-elses"}},
        http_client=openai.DefaultHttpxClient(event_hooks={{"request": [sent.append]}}),
    )
    try:
        text = ""
        with client.responses.create(model={model!r}, input={prompt!r}, instructions="be brief", stream=True) as s:
            for event in s:
                if event.type == "response.output_text.delta":
                    text += event.delta
        outcome = dict(text=text)
    except openai.APIStatusError as e:
        outcome = dict(error=type(e).__name__, status=e.status_code, kind=e.response.headers.get("x-tollgate-error"),
                       code=e.body.get("code") if isinstance(e.body, dict) else None)
    report(**outcome, body=sent[-1].content.hex(), headers=[[k, v] for k, v in sent[-1].headers.multi_items()])
"""


def sse_call(g, token: str = ALICE, account: str = WORKSPACE, prompt: str = "hi", model: str = MODEL) -> dict:
    return g.run(SSE_CALL.format(token=token, account=account, model=model, prompt=prompt))


def test_a_codex_call_over_sse_goes_upstream_as_it_came_pinned_and_audited(g, fake):
    result = sse_call(g)
    assert (result.get("text"), result.get("error")) == (ANSWERS[0], None), result
    [seen] = fake.requests
    assert seen.target == "/backend-api/codex/responses"
    assert seen.headers["authorization"] == f"Bearer {ALICE}"  # the plan's token, unchanged
    assert seen.body == bytes.fromhex(result["body"])  # byte for byte
    assert seen.headers["chatgpt-account-id"] == WORKSPACE
    assert seen.headers["chatgpt-allowed-workspace-id"] == PINNED  # Tollgate's, in place of the client's
    record = g.last_audit()
    assert (record["client"], record["auth"], record["groups"]) == ("alice", "subscription", ["dev"])
    assert (record["account"], record["plan"], record["tenant"]) == (WORKSPACE, "team", WORKSPACE)
    assert (record["provider"], record["endpoint"], record["model"], record["stream"]) == (
        "chatgpt", "responses", MODEL, True
    )  # fmt: skip
    assert (record["decision"], record["status"], record["upstream_key"]) == ("allow", 200, fingerprint(ALICE))
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (100, 20, 40)
    # gpt-5 at list price ($ per Mtok): 60 x 1.25 + 40 cached x 0.125 + 20 x 10
    assert record["cost_usd"] == 0.00028


def test_a_workspace_outside_the_companys_is_refused_tenant_denied(g, fake):
    result = sse_call(g, PERSONAL, "personal-acct-77")
    assert (result["error"], result["status"], result["kind"], result["code"]) == (
        "PermissionDeniedError", 403, "tenant_denied", "tenant_denied"
    )  # fmt: skip
    assert fake.requests == []
    record = g.last_audit()
    assert (record["client"], record["auth"], record["decision"], record["status"]) == (
        "alice", "subscription", "deny", 403
    )  # fmt: skip
    assert (record["account"], record["tenant"]) == ("personal-acct-77", "personal-acct-77")
    assert record["deny_reasons"] == [
        "ChatGPT workspace personal-acct-77 is not one of subscriptions.chatgpt.workspaces"
    ]


def test_a_header_naming_another_account_than_the_token_is_refused(g, fake):
    result = sse_call(g, ALICE, "ws-second")  # a workspace of the company's, but not the token's
    assert (result["error"], result["status"], result["kind"]) == ("PermissionDeniedError", 403, "tenant_denied")
    assert fake.requests == []
    record = g.last_audit()
    assert (record["decision"], record["account"]) == ("deny", WORKSPACE)
    assert record["deny_reasons"] == ["the ChatGPT-Account-ID header names another account than the access token"]


def test_a_token_no_client_lists_is_refused_where_anonymous_callers_are_not(g, fake):
    result = sse_call(g, STRANGER)
    assert (result["error"], result["status"], result["kind"]) == ("AuthenticationError", 401, "unauthenticated")
    assert fake.requests == []
    record = g.last_audit()
    assert (record["client"], record["auth"], record["decision"]) == (None, "subscription", "deny")


def test_the_policy_reads_the_plan(g, fake):
    result = sse_call(g, model="gpt-5-pro")
    assert (result["error"], result["status"], result["kind"]) == ("PermissionDeniedError", 403, "policy_denied")
    assert fake.requests == []
    assert g.last_audit()["deny_reasons"] == ["gpt-5-pro is not for the team plan"]


def test_a_limit_counts_codexs_calls(g, fake):
    first = sse_call(g, model="gpt-5-mini")
    assert first.get("text") == ANSWERS[0], first
    counted = g.last_audit()
    second = sse_call(g, model="gpt-5-mini")
    assert (second["error"], second["status"], second["kind"]) == ("RateLimitError", 429, "budget_exceeded")
    assert len(fake.requests) == 1
    assert [(r["client"], r["auth"], r["decision"], r["status"]) for r in (counted, g.last_audit())] == [
        ("alice", "subscription", "allow", 200),
        ("alice", "subscription", "deny", 429),
    ]


def test_with_plans_not_allowed_a_codex_call_is_refused(start_gateway, fake):
    fake.requests.clear()
    closed = start_gateway(lambda urls: config(fake.url, allow=False), providers=())
    result = sse_call(closed)
    assert (result["error"], result["status"], result["kind"]) == ("PermissionDeniedError", 403, "tenant_denied")
    assert fake.requests == []
    record = closed.last_audit()
    assert (record["client"], record["auth"], record["decision"]) == ("alice", "subscription", "deny")
    assert record["deny_reasons"] == ["calls made with a plan are not allowed (subscriptions.allow)"]
    closed.proxy.stop()


def test_a_guardrail_refuses_a_codex_prompt_carrying_an_aws_key_pair(g, fake):
    prompt = f"deploy with AWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
    result = sse_call(g, prompt=prompt)
    assert (result["error"], result["status"], result["kind"]) == ("PermissionDeniedError", 403, "content_denied")
    assert fake.requests == []
    record = g.last_audit()
    assert (record["auth"], record["decision"]) == ("subscription", "deny")
    assert record["findings"] == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}


def test_a_service_path_is_audited_without_a_model(g, fake):
    result = g.run(f"""
        import json, urllib.request
        r = urllib.request.urlopen(urllib.request.Request(
            "https://chatgpt.com/backend-api/codex/models?client_version=0.50.0",
            headers={{"Authorization": "Bearer {ALICE}", "ChatGPT-Account-ID": "{WORKSPACE}"}}))
        report(status=r.status, body=json.loads(r.read()))
    """)
    assert result == {"status": 200, "body": {"models": [{"slug": "gpt-5"}]}}
    [seen] = fake.requests
    assert seen.headers["authorization"] == f"Bearer {ALICE}"
    assert seen.headers["chatgpt-allowed-workspace-id"] == PINNED
    record = g.last_audit()
    assert (record["client"], record["auth"], record["endpoint"], record["model"]) == (
        "alice", "subscription", "codex.models", None
    )  # fmt: skip
    assert (record["decision"], record["status"], record["input_tokens"]) == ("allow", 200, None)


def test_a_web_app_path_goes_on_unread_with_no_call_record(g, fake):
    before = len(g.audit())
    result = g.run(f"""
        import json, urllib.request
        r = urllib.request.urlopen(urllib.request.Request(
            "https://chatgpt.com/backend-api/conversations?offset=0",
            headers={{"Authorization": "Bearer {STRANGER}", "Cookie": "session=5ecret-cookie",
                     "ChatGPT-Allowed-Workspace-Id": "someone-elses", "chatgpt_allowed_workspace_id": "another"}}))
        report(status=r.status, body=json.loads(r.read()))
    """)
    assert result == {"status": 200, "body": {"items": [], "web": "WEB-APP-ANSWER"}}
    [seen] = fake.requests
    assert seen.target == "/backend-api/conversations?offset=0"
    assert seen.headers["authorization"] == f"Bearer {STRANGER}"  # no caller needed: it is no call
    assert seen.headers["cookie"] == "session=5ecret-cookie"
    assert seen.headers["chatgpt-allowed-workspace-id"] == PINNED
    assert "chatgpt_allowed_workspace_id" not in seen.headers  # nor the client's, spelled with underscores
    assert len(g.audit()) == before
    # No call made on it: its connection, decrypted, is recorded as a connection.
    [record] = g.connections(1, since_run=True)
    assert (record["host"], record["port"], record["service"], record["decision"], record["refused"]) == (
        "chatgpt.com", 443, "chatgpt", "allow", 0
    )  # fmt: skip
    assert (record["bytes_sent"], record["bytes_received"]) == (0, len(WEB_APP_ANSWER))


def test_a_connection_with_a_call_on_it_is_recorded_as_its_call_alone(g, fake):
    """The web app's request, then a call, on one connection: the call's record, and no connection's."""
    before = len(g.connections())
    result = g.run(f"""
        import requests
        with requests.Session() as s:
            web = s.get("https://chatgpt.com/backend-api/conversations", headers={{"Authorization": "Bearer {ALICE}"}})
            models = s.get("https://chatgpt.com/backend-api/codex/models",
                           headers={{"Authorization": "Bearer {ALICE}", "ChatGPT-Account-ID": "{WORKSPACE}"}})
        report(status=[web.status_code, models.status_code])
    """)
    assert result == {"status": [200, 200]}
    assert g.last_audit()["endpoint"] == "codex.models"
    # Another connection with no call on it, recorded after the first closed: its record alone.
    g.run(f"""
        import urllib.request
        urllib.request.urlopen(urllib.request.Request("https://chatgpt.com/backend-api/conversations",
                                                      headers={{"Authorization": "Bearer {ALICE}"}})).read()
        report()
    """)
    [record] = g.connections(before + 1)[before:]
    assert (record["host"], record["bytes_received"]) == ("chatgpt.com", len(WEB_APP_ANSWER))


SOCKET_SESSION = """
    import asyncio
    from openai import AsyncOpenAI

    async def session():
        client = AsyncOpenAI(api_key={token!r}, base_url="https://chatgpt.com/backend-api/codex", max_retries=0,
                             default_headers={{"ChatGPT-Account-ID": {account!r}}})
        got = []
        async with client.responses.connect() as conn:
            for text in {inputs!r}:
                await conn.response.create(model={model!r}, input=text)
                out = ""
                while True:
                    event = await asyncio.wait_for(conn.recv(), 20)
                    if event.type == "response.output_text.delta":
                        out += event.delta
                    if event.type == "error":
                        got.append(dict(error=event.model_dump(exclude_none=True)))
                        break
                    if event.type == "response.completed":
                        got.append(dict(text=out))
                        break
        return got

    try:
        report(got=asyncio.run(session()))
    except Exception as e:
        report(failed=type(e).__name__, status=getattr(getattr(e, "response", None), "status_code", None))
"""


def test_codexs_websocket_is_governed_per_response(g, fake):
    inputs = ["first", f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n", "third"]
    result = g.run(SOCKET_SESSION.format(token=ALICE, account=WORKSPACE, model=MODEL, inputs=inputs))
    got = result.get("got")
    assert got is not None, result
    assert got[0] == {"text": ANSWERS[0]} and got[2] == {"text": ANSWERS[1]}
    assert got[1]["error"]["error"]["code"] == "content_denied"
    [session] = fake.sessions
    assert session.target == "/backend-api/codex/responses"
    assert session.headers["authorization"] == f"Bearer {ALICE}"
    assert session.headers["chatgpt-allowed-workspace-id"] == PINNED
    records = [r for r in g.new_audit(3) if r["endpoint"] == "responses"]
    assert [(r["client"], r["auth"], r["transport"], r["decision"]) for r in records] == [
        ("alice", "subscription", "websocket", "allow"),
        ("alice", "subscription", "websocket", "deny"),
        ("alice", "subscription", "websocket", "allow"),
    ]
    assert {(r["account"], r["plan"], r["tenant"]) for r in records} == {(WORKSPACE, "team", WORKSPACE)}
    assert [(r["input_tokens"], r["output_tokens"]) for r in records] == [(100, 20), (None, None), (150, 30)]


def test_a_websocket_of_another_workspace_is_refused_at_its_upgrade(g, fake):
    result = g.run(SOCKET_SESSION.format(token=PERSONAL, account="personal-acct-77", model=MODEL, inputs=["hi"]))
    assert result.get("got") is None and result.get("status") in (403, None), result
    assert fake.sessions == []
    record = g.last_audit()
    assert (record["decision"], record["status"], record["tenant"]) == ("deny", 403, "personal-acct-77")


@pytest.fixture(scope="module")
def gw_tunnelled(start_gateway, upstream_ca):
    """`govern: false`, chatgpt.com resolved to a fake whose certificate names it."""
    named = FakeUpstream(upstream_ca, lambda r: Reply(200, {"tunnelled": True}), names=("chatgpt.com",))
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps({"chatgpt.com": named.port})}
    # chatgpt.com is on this machine (a fake on loopback): named, to be reached.
    tunnelled = config("https://127.0.0.1:9", govern=False) | {"egress": {"allow": ["chatgpt.com"]}}
    gateway = start_gateway(lambda urls: tunnelled, "-s", str(RESOLVE),
                            env=env, providers=())  # fmt: skip
    gateway.named = named
    yield gateway
    named.close()


def issuer_through(proxy_url: str, host: str) -> str:
    """The issuer of the certificate a client sees for `host` through the proxy (CONNECT)."""
    address = proxy_url.removeprefix("http://").rstrip("/")
    proxy_host, _, port = address.rpartition(":")
    with socket.create_connection((proxy_host, int(port)), timeout=10) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(f"GET /backend-api/codex/models HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE}\r\n"
                        "Connection: close\r\n\r\n".encode())  # fmt: skip
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert b'"tunnelled": true' in answer
    cert = x509.load_der_x509_certificate(der)
    return cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value


def test_govern_false_leaves_chatgpt_com_tunnelled(gw_tunnelled):
    issuer = issuer_through(gw_tunnelled.proxy.proxy_url, "chatgpt.com")
    assert "mitmproxy" not in issuer.lower()  # the fake's own certificate, not one Tollgate made
    [seen] = gw_tunnelled.named.received
    assert seen.headers["authorization"] == f"Bearer {ALICE}" and "chatgpt-allowed-workspace-id" not in seen.headers
    # No call read: the tunnel to a catalogued AI service is recorded as a connection, nothing more.
    assert gw_tunnelled.audit() == []
    [record] = gw_tunnelled.connections(1)
    assert (record["event"], record["host"], record["service"], record["decision"]) == (
        "connection",
        "chatgpt.com",
        "chatgpt",
        "allow",
    )


def test_no_token_reaches_the_console_the_audit_or_saved_flows(gw, gw_tunnelled):
    """Last: it stops the gateway (flushing the saved flows)."""
    console = gw.proxy.console()
    gw.proxy.stop()
    outputs = {"console": console, "audit": gw.audit_path.read_text(), "saved": gw.saved.read_bytes().decode("latin-1")}
    assert '"auth":"subscription"' in outputs["audit"] and "/backend-api/codex/responses" in outputs["saved"]
    for name, text in outputs.items():
        for secret in [*TOKENS, "5ecret", "WEB-APP-ANSWER", *ANSWERS]:
            assert secret not in text, (name, secret[:12])
