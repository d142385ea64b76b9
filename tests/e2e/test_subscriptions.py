"""Claude Code signed in with a Claude plan, as the official SDK sends it (`auth_token`: a bearer
`sk-ant-oat…` token): governed as a subscription call, the token and the request going upstream as
they came, pinned to the company's organizations."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tollgate.common.fingerprint import fingerprint

TOKEN = "sk-ant-oat01-PLAN-5ecret-token-q7"
POOL = "sk-ant-api03-POOL-5ecret-key-r8"
VIRTUAL = "tg-coder-VIRTUAL-5ecret-s9"
PASSWORD = "pr0xy-PLAN-password-t0"
ORGS = ["c8b3a9f0-1111-4222-8333-944455556666", "org-second"]
PINNED = ",".join(ORGS)
POLICY = """package tollgate
import rego.v1

deny contains "no Opus on a plan" if {
	input.subscription.vendor == "anthropic"
	input.model == "claude-opus-4-1"
}
"""


def config(urls: dict[str, str], policy: str, **extra) -> dict:
    providers = {name: {"upstream": url} for name, url in urls.items()}
    providers["anthropic"]["keys"] = [POOL]  # a pool key, which never takes a plan's token's place
    return {
        "providers": providers,
        "clients": [{"name": "coder", "keys": [VIRTUAL], "groups": ["dev"]}],
        "allow_anonymous": False,
        "subscriptions": {"anthropic": {"organizations": ORGS}},
        # A rule matching the model: it rewrites a keyed call's, never a plan's.
        "overrides": [{"match": {"provider": "anthropic", "model": "claude-sonnet-4-5"}, "model": "claude-haiku-4-5"}],
        "policy": {"rego": [policy]},
        "guardrails": [{"detect": ["pii.email"], "action": "redact"}],
        # A month's window: two calls never straddle its edge, as they may a minute's.
        "limits": [{"match": {"model": "claude-3-haiku-20240307"}, "requests_per_month": 1}],
        **extra,
    }


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("policy") / "plans.rego"
    path.write_text(POLICY)
    return str(path)


@pytest.fixture(scope="module")
def gw(start_gateway, policy):
    return start_gateway(lambda urls: config(urls, policy), providers=("anthropic",))


@pytest.fixture(scope="module")
def gw_login(start_gateway, policy, tmp_path_factory):
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    htpasswd = tmp_path_factory.mktemp("auth") / ".htpasswd"
    htpasswd.write_text(f"coder:{{SHA}}{digest}\n")
    return start_gateway(
        lambda urls: config(urls, policy), "--set", f"proxyauth=@{htpasswd}", providers=("anthropic",), save_flows=True
    )


@pytest.fixture(scope="module")
def gw_closed(start_gateway):
    # No clients: anonymous callers are allowed, but no plan is.
    return start_gateway(
        lambda urls: {
            "providers": {"anthropic": {"upstream": urls["anthropic"], "keys": [POOL]}},
            "subscriptions": {"allow": False},
        },
        providers=("anthropic",),
    )


@pytest.fixture
def g(gw):
    gw.reset()
    return gw


@pytest.fixture
def g_login(gw_login):
    gw_login.reset()
    return gw_login


def login_url(gateway) -> str:
    return gateway.proxy.proxy_url.replace("http://", f"http://coder:{PASSWORD}@")


# The SDK as Claude Code uses it signed in with a plan: the token as a bearer. An event hook keeps
# the request as the client sent it, to compare with what the upstream got.
PLAN_CALL = """
    import anthropic
    sent = []
    def keep(request):
        sent.append(request)
    client = anthropic.Anthropic(
        auth_token={token!r}, max_retries=0,
        default_headers={{"anthropic-beta": "oauth-2025-04-20", "anthropic-allowed-org-ids": "someone-elses-org",
                         "anthropic_allowed_org_ids": "another-org"}},
        http_client=anthropic.DefaultHttpxClient(event_hooks={{"request": [keep]}}),
    )
    try:
        r = client.messages.create(model={model!r}, max_tokens=64, system="be brief",
            messages=[{{"role": "user", "content": {content!r}}}])
        outcome = dict(text=r.content[0].text, model=r.model)
    except anthropic.APIStatusError as e:
        outcome = dict(error=type(e).__name__, status=e.status_code, kind=e.response.headers.get("x-tollgate-error"),
            type=e.body.get("error", {{}}).get("type") if isinstance(e.body, dict) else None)
    request = sent[-1]
    report(**outcome, body=request.content.hex(), headers=[[k, v] for k, v in request.headers.multi_items()])
"""


def plan_call(gateway, model: str = "claude-sonnet-4-5", proxy_url: str | None = None, content: str = "hi") -> dict:
    return gateway.run(PLAN_CALL.format(token=TOKEN, model=model, content=content), proxy_url=proxy_url)


def keyed_call(gateway, key: str, model: str = "claude-sonnet-4-5") -> dict:
    """A call with an API key (no plan's): the answer's text."""
    return gateway.run(f"""
        import anthropic
        r = anthropic.Anthropic(api_key="{key}", max_retries=0).messages.create(
            model="{model}", max_tokens=64, messages=[{{"role": "user", "content": "hi"}}])
        report(text=r.content[0].text)
    """)


def refused_unnamed(gateway, status: int, reason: str) -> None:
    """A plan's call that names no caller was refused `status` for `reason`, nothing sent upstream."""
    assert gateway.fakes["anthropic"].received == []
    record = gateway.last_audit()
    assert (record["client"], record["auth"], record["decision"], record["status"]) == (
        None,
        "subscription",
        "deny",
        status,
    )
    assert record["deny_reasons"] == [reason]


def test_a_plan_call_goes_upstream_as_it_came_with_its_own_token_and_the_org_header(g_login):
    result = plan_call(g_login, proxy_url=login_url(g_login))
    assert (result.get("text"), result.get("error")) == ("Hello!", None), result
    client_headers = {k.lower(): v for k, v in result["headers"]}
    # The SDK sends the plan's token as a bearer, and no API key.
    assert client_headers["authorization"] == f"Bearer {TOKEN}" and "x-api-key" not in client_headers
    [seen] = g_login.fakes["anthropic"].received
    # The token unchanged (no pool key in its place), the body byte for byte: the model the client
    # asked for, although an override rule matches it.
    assert seen.headers["authorization"] == f"Bearer {TOKEN}" and "x-api-key" not in seen.headers
    assert seen.body == bytes.fromhex(result["body"])
    assert seen.json()["model"] == "claude-sonnet-4-5"
    # Every header the client sent arrives as sent, but the tenant header, which Tollgate sets in
    # place of each the client sent, in whatever spelling a server may read as it.
    assert seen.headers["anthropic-allowed-org-ids"] == PINNED
    assert client_headers["anthropic_allowed_org_ids"] == "another-org"
    assert "anthropic_allowed_org_ids" not in seen.headers
    for name, value in client_headers.items():
        if name not in ("anthropic-allowed-org-ids", "anthropic_allowed_org_ids", "host"):
            assert seen.headers.get(name) == value, name
    record = g_login.last_audit()
    assert (record["client"], record["auth"], record["groups"]) == ("coder", "subscription", ["dev"])
    assert (record["account"], record["plan"], record["tenant"]) == (None, None, None)
    assert (record["decision"], record["status"], record["model"]) == ("allow", 200, "claude-sonnet-4-5")
    assert record["upstream_key"] == fingerprint(TOKEN)
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (125, 11, 100)
    # claude-sonnet-4-5 at list price ($ per Mtok): 25 x 3 + 11 x 15 + 100 cache reads x 0.30
    assert record["cost_usd"] == 0.00027


def test_a_guardrail_redacts_a_plan_calls_body_and_nothing_else_changes(g_login):
    result = plan_call(g_login, proxy_url=login_url(g_login), content="write to bob@acme-corp.com")
    assert result.get("text") == "Hello!", result
    [seen] = g_login.fakes["anthropic"].received
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    sent = bytes.fromhex(result["body"])
    assert b"bob@acme-corp.com" in sent and b"bob@acme-corp.com" not in seen.body
    assert seen.json()["messages"][0]["content"] == "write to [REDACTED:pii.email]"
    assert {k: v for k, v in seen.json().items() if k != "messages"} == {
        k: v for k, v in json.loads(sent).items() if k != "messages"
    }
    record = g_login.last_audit()
    assert (record["auth"], record["findings"], record["redacted"]) == ("subscription", {"pii.email": 1}, 1)


def test_a_keyed_call_is_pinned_too_and_its_override_applies(g):
    result = keyed_call(g, VIRTUAL)
    assert result == {"text": "Hello!"}
    [seen] = g.fakes["anthropic"].received
    assert seen.headers["x-api-key"] == POOL and "authorization" not in seen.headers
    assert seen.headers["anthropic-allowed-org-ids"] == PINNED
    assert seen.json()["model"] == "claude-haiku-4-5"  # the rule a plan's call is spared
    record = g.last_audit()
    assert (record["client"], record["auth"], record["upstream_key"]) == ("coder", "virtual_key", fingerprint(POOL))


def test_a_plan_call_without_a_login_is_refused_where_anonymous_callers_are_not(g):
    result = plan_call(g)
    assert (result["error"], result["status"], result["kind"]) == ("AuthenticationError", 401, "unauthenticated")
    refused_unnamed(g, 401, "a plan's token names no caller, and anonymous callers are not allowed")


def test_the_policy_reads_input_subscription(g, g_login):
    result = plan_call(g_login, "claude-opus-4-1", proxy_url=login_url(g_login))
    assert (result["error"], result["status"], result["kind"]) == ("PermissionDeniedError", 403, "policy_denied")
    assert g_login.fakes["anthropic"].received == []
    record = g_login.last_audit()
    assert (record["auth"], record["decision"], record["deny_reasons"]) == (
        "subscription",
        "deny",
        ["no Opus on a plan"],
    )
    # The same model with a key is no plan's call: the rule does not hold.
    keyed = keyed_call(g, VIRTUAL, "claude-opus-4-1")
    assert keyed == {"text": "Hello!"}


def test_a_limit_counts_a_plans_calls(g_login):
    first = plan_call(g_login, "claude-3-haiku-20240307", proxy_url=login_url(g_login))
    assert first.get("text") == "Hello!", first
    counted = g_login.last_audit()
    second = plan_call(g_login, "claude-3-haiku-20240307", proxy_url=login_url(g_login))
    assert (second["error"], second["status"], second["kind"]) == ("RateLimitError", 429, "budget_exceeded")
    assert len(g_login.fakes["anthropic"].received) == 1
    refused = g_login.last_audit()
    assert [(r["client"], r["auth"], r["decision"], r["status"]) for r in (counted, refused)] == [
        ("coder", "subscription", "allow", 200),
        ("coder", "subscription", "deny", 429),
    ]


def test_with_plans_not_allowed_a_plan_call_is_refused_tenant_denied(gw_closed):
    gw_closed.reset()
    result = plan_call(gw_closed)
    assert (result["error"], result["status"], result["kind"], result["type"]) == (
        "PermissionDeniedError",
        403,
        "tenant_denied",
        "permission_error",
    )
    refused_unnamed(gw_closed, 403, "calls made with a plan are not allowed (subscriptions.allow)")
    # Keys still go: an anonymous caller's call goes with the pool's key.
    keyed = keyed_call(gw_closed, "sk-ant-api03-callers-own")
    assert keyed == {"text": "Hello!"}
    assert gw_closed.fakes["anthropic"].received[-1].headers["x-api-key"] == POOL


def test_the_token_is_in_no_output(gw, gw_login, gw_closed):
    """Last: it stops the gateways (flushing the saved flows)."""
    gateways = {"gw": gw, "login": gw_login, "closed": gw_closed}
    outputs = {f"{name} console": gateway.proxy.console() for name, gateway in gateways.items()}
    for gateway in gateways.values():
        gateway.proxy.stop()
    outputs.update({f"{name} audit": gateway.audit_path.read_text() for name, gateway in gateways.items()})
    outputs["saved flows"] = gw_login.saved.read_bytes().decode("latin-1")
    assert '"auth":"subscription"' in outputs["login audit"] and "/v1/messages" in outputs["saved flows"]
    for name, text in outputs.items():
        assert TOKEN not in text and "5ecret" not in text, name


# ---- plans refused, whatever form their token takes, on every vendor's hosts

ANTHROPIC_PLAN = "sk-ant-oat01-SECOND-header-5ecret-u1"
COPILOT_TOKEN = "gho_COPILOT-user-5ecret-token-u2"
# A ChatGPT access token: an unsigned JWT naming a workspace (OpenAI would verify it).
CHATGPT_TOKEN = (
    base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    + "."
    + base64.urlsafe_b64encode(json.dumps({"https://api.openai.com/auth": {"chatgpt_account_id": "ws-1"}}).encode())
    .rstrip(b"=")
    .decode()
    + ".5ecret-signature-u3"
)
CHAT = json.dumps({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def gw_no_plans(start_gateway):
    """Plans refused, anonymous callers allowed: a plan's token Tollgate did not see as one would go
    upstream as an anonymous caller's own credential."""
    return start_gateway(
        lambda urls: {
            "providers": {
                "anthropic": {"upstream": urls["anthropic"], "keys": [POOL]},
                "openai": {"upstream": urls["openai"], "keys": ["sk-openai-POOL-5ecret-u4"]},
                "copilot": {"upstream": urls["copilot"]},
                "chatgpt": {"upstream": urls["chatgpt"]},
            },
            "clients": [{"name": "coder", "keys": [VIRTUAL]}],
            "subscriptions": {"allow": False},
        },
        providers=("anthropic", "openai", "copilot", "chatgpt"),
    )


# (host, target, body, headers, status, X-Tollgate-Error, the audit's deny reason)
NO_PLANS = [
    # A second Authorization header, on every governed host: a virtual key and a plan's token.
    ("api.anthropic.com", "/v1/messages", MESSAGES.encode(),
     [("Authorization", f"Bearer {VIRTUAL}"), ("Authorization", f"Bearer {ANTHROPIC_PLAN}")], 400, "bad_request",
     "bad request: the request carries more than one Authorization header"),
    ("api.openai.com", "/v1/chat/completions", CHAT,
     [("Authorization", f"Bearer {VIRTUAL}"), ("Authorization", "Bearer sk-callers-own-u5")], 400, "bad_request",
     "bad request: the request carries more than one Authorization header"),
    ("chatgpt.com", "/backend-api/conversation", b"{}",
     [("Authorization", f"Bearer {VIRTUAL}"), ("Authorization", f"Bearer {CHATGPT_TOKEN}")], 400, "bad_request",
     "bad request: the request carries more than one Authorization header"),
    # Copilot's clients send GitHub's `token` scheme; Codex's token without a scheme.
    ("api.githubcopilot.com", "/chat/completions", CHAT, [("Authorization", f"token {COPILOT_TOKEN}")], 403,
     "tenant_denied", None),
    ("chatgpt.com", "/backend-api/codex/responses", b'{"model": "gpt-5", "input": "hi"}',
     [("Authorization", CHATGPT_TOKEN)], 403, "tenant_denied", None),
    # ChatGPT's web app, whose paths are no calls: refused with a plan's token all the same.
    ("chatgpt.com", "/backend-api/conversation", b"{}", [("Authorization", f"Bearer {CHATGPT_TOKEN}")], 403,
     "tenant_denied", None),
    ("chatgpt.com", "/backend-api/f/conversation", b"{}", [("Authorization", f"Bearer {CHATGPT_TOKEN}")], 403,
     "tenant_denied", None),
]  # fmt: skip


@pytest.mark.parametrize(("host", "target", "body", "headers", "status", "kind", "error"), NO_PLANS)
def test_with_plans_not_allowed_no_plans_token_passes_in_any_form(gw_no_plans, host, target, body, headers, status,
                                                                   kind, error):  # fmt: skip
    from tests.support.raw import send

    gw_no_plans.reset()
    before = len(gw_no_plans.audit())
    headers = [*headers, ("Content-Type", "application/json")]
    answer = send(gw_no_plans.proxy.port, gw_no_plans.bundle, host, target, body=body, headers=headers)
    assert (answer.status, answer.headers.get("x-tollgate-error")) == (status, kind), answer.body[:300]
    assert not any(fake.received for fake in gw_no_plans.fakes.values())
    (record,) = gw_no_plans.wait_audit(before + 1)[before:]
    assert (record["host"], record["path"], record["decision"], record["status"]) == (host, target, "deny", status)
    if error is None:
        assert record["deny_reasons"] == ["calls made with a plan are not allowed (subscriptions.allow)"]
        assert record["auth"] == "subscription"
    else:
        assert record["error"] == error
        assert (record["client"], record["auth"]) == (None, "anonymous")  # two credentials name no one caller
