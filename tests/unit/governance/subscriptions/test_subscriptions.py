"""Plans, not keys: the `subscriptions:` settings and `clients[].accounts`, how a plan's token is
recognised, the tenant header, and what the audit records of a plan call."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from mitmproxy.http import Headers

from tollgate.calls.call import Call, Caller, Route
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import ConfigError, parse_config
from tollgate.formats.bodies.raw_headers import with_pinned_header
from tollgate.formats.refusals import KIND, STATUS, TENANT_DENIED
from tollgate.formats.request_facts import Classification
from tollgate.governance.identity.clients import Directory
from tollgate.governance.subscriptions.plan import (
    PLANS_REFUSED_MESSAGE,
    PLANS_REFUSED_REASON,
    PlanCall,
    PlanToken,
    Subscription,
    found_plan,
    plan_call,
    plan_only_refusal,
    plan_token,
    read_plan,
    tenant_pins,
)
from tollgate.providers import PROVIDERS
from tollgate.providers.code_assist import envelope_project
from tollgate.providers.credentials import Presented
from tollgate.records.audit.audit_record import RECORD_FIELDS, audit_record

ORG = "c8b3a9f0-1111-4222-8333-944455556666"

# Each provider's tenant header, as the runtime gives them.
HEADERS = {name: p.plan.tenant_header if p.plan else None for name, p in PROVIDERS.items()}


def error_of(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    return str(info.value)


def test_plans_are_allowed_and_pin_nothing_by_default() -> None:
    subscriptions = parse_config({}).subscriptions
    assert subscriptions.allow is True
    assert subscriptions.anthropic.organizations == ()
    assert tenant_pins(subscriptions, HEADERS) == {}


def test_the_anthropic_organizations_make_its_tenant_header() -> None:
    data = {"subscriptions": {"allow": False, "anthropic": {"organizations": [ORG, "org-2"], "govern": True}}}
    subscriptions = parse_config(data).subscriptions
    assert subscriptions.allow is False
    assert tenant_pins(subscriptions, HEADERS) == {"anthropic": (b"anthropic-allowed-org-ids", f"{ORG},org-2".encode())}


def test_the_tenant_header_replaces_every_spelling_of_it_the_client_sent() -> None:
    pin = (b"anthropic-allowed-org-ids", ORG.encode())
    fields = [
        (b"Anthropic_Allowed_Org_Ids", b"theirs-1"),
        (b"x-api-key", b"k"),
        (b"anthropic-allowed-org-ids", b"theirs-2"),
        (b"anthropic_allowed-org_ids", b"theirs-3"),
        (b"anthropic-allowed-org-idsx", b"kept"),
    ]
    assert with_pinned_header(fields, *pin) == (
        (b"anthropic-allowed-org-ids", ORG.encode()),
        (b"x-api-key", b"k"),
        (b"anthropic-allowed-org-idsx", b"kept"),
    )
    assert with_pinned_header([(b"x-api-key", b"k")], *pin) == ((b"x-api-key", b"k"), pin)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"subscriptions": {"alow": True}}, "subscriptions.alow"),
        ({"subscriptions": {"anthropic": {"organisations": [ORG]}}}, "subscriptions.anthropic.organisations"),
        ({"subscriptions": {"chatgpt": {"workspace": ["w"]}}}, "subscriptions.chatgpt.workspace"),
        ({"clients": [{"name": "a", "acounts": ["a@corp.example"]}]}, "clients.0.acounts"),
    ],
)
def test_unknown_keys_are_errors_naming_the_field(data: dict, field: str) -> None:
    assert f"{field}: unknown key" in error_of(data)


@pytest.mark.parametrize("org", ["", "a,b", "a b", "a\tb"])
def test_an_organization_that_cannot_be_one_entry_of_the_header_is_refused(org: str) -> None:
    message = error_of({"subscriptions": {"anthropic": {"organizations": ["ok", org]}}})
    assert "subscriptions.anthropic.organizations.1" in message and "comma" in message


def test_anthropics_plans_cannot_be_left_ungoverned() -> None:
    message = error_of({"subscriptions": {"anthropic": {"govern": False}}})
    assert "subscriptions.anthropic.govern" in message and "always governed" in message


def test_a_clients_accounts_are_a_list_of_strings_each_one_clients() -> None:
    config = parse_config({"clients": [{"name": "alice", "accounts": ["alice@corp.example", "acct-1"]}]})
    assert config.clients[0].accounts == ("alice@corp.example", "acct-1")
    twice = {"clients": [{"name": "a", "accounts": ["x@corp.example"]}, {"name": "b", "accounts": ["x@corp.example"]}]}
    assert "clients.1.accounts.0: 'x@corp.example' is listed twice" in error_of(twice)
    assert "clients.0.accounts.0" in error_of({"clients": [{"name": "a", "accounts": [""]}]})


def presented(**headers: str) -> list:
    return PROVIDERS["anthropic"].credentials.caller.presented(Headers(**headers), {})


@pytest.mark.parametrize(
    ("headers", "plan"),
    [
        ({"authorization": "Bearer sk-ant-oat01-abc"}, "sk-ant-oat01-abc"),
        ({"authorization": "bearer  sk-ant-oat01-abc "}, "sk-ant-oat01-abc"),
        ({"x_api_key": "sk-ant-oat01-abc"}, "sk-ant-oat01-abc"),  # a token is one in either position
        ({"authorization": "Bearer sk-ant-api03-abc"}, None),  # an API key
        ({"x_api_key": "sk-ant-admin01-abc"}, None),
        ({"authorization": "Bearer tg-virtual-key"}, None),
        # A plan's token in any scheme, or none, is one all the same (refused where plans are).
        ({"authorization": "Basic sk-ant-oat01-abc"}, "sk-ant-oat01-abc"),
        ({"authorization": "sk-ant-oat01-abc"}, "sk-ant-oat01-abc"),
        ({}, None),
    ],
)
def test_an_anthropic_plans_token_is_known_by_its_prefix(headers: dict[str, str], plan: str | None) -> None:
    prefix = PROVIDERS["anthropic"].plan.token_prefix
    assert prefix == "sk-ant-oat"
    token = plan_token(presented(**headers), prefix)
    assert (token.value if token else None) == plan


@pytest.mark.parametrize(
    ("provider", "authorization", "plan"),
    [
        ("copilot", "token gho_copilot-user-token", "gho_copilot-user-token"),  # GitHub's own scheme
        (
            "copilot",
            "Bearer tid=1;proxy-ep=proxy.business.githubcopilot.com:mac",
            "tid=1;proxy-ep=proxy.business.githubcopilot.com:mac",
        ),
        ("chatgpt", "eyJhbGciOiJub25lIn0.e30.sig", "eyJhbGciOiJub25lIn0.e30.sig"),  # a bare JWT
        ("chatgpt", "Bearer eyJhbGciOiJub25lIn0.e30.sig", "eyJhbGciOiJub25lIn0.e30.sig"),
        ("chatgpt", "Bearer sk-not-a-plan", None),
        ("openai", "eyJhbGciOiJub25lIn0.e30.sig", None),  # a vendor of no plans reads bearers only
    ],
)
def test_a_plan_token_is_read_in_any_authorization_scheme(provider: str, authorization: str, plan: str | None) -> None:
    p = PROVIDERS[provider]
    found = p.credentials.caller.presented(Headers(authorization=authorization), {})
    token = plan_token(found, p.plan.token_prefix) if p.plan is not None else None
    assert (token.value if token else None) == plan


def test_the_providers_that_take_plan_tokens() -> None:
    takes = {name: p.plan.token_prefix for name, p in PROVIDERS.items() if p.plan is not None}
    # Copilot takes no API key: every credential on its hosts is a user's.
    assert takes == {"anthropic": "sk-ant-oat", "chatgpt": "eyJ", "code_assist": "ya29.", "copilot": ""}


def test_tenant_denied_is_a_403_permission_refusal_in_anthropics_shape() -> None:
    assert (STATUS[TENANT_DENIED], KIND[TENANT_DENIED]) == (403, "permission")
    refusal = PROVIDERS["anthropic"].refusal(TENANT_DENIED, "no plans here")
    assert refusal.status == 403 and refusal.headers["x-tollgate-error"] == "tenant_denied"
    assert b'"type": "permission_error"' in refusal.body


def _call(caller: Caller) -> Call:
    return Call(
        Route.as_called("anthropic", "claude-sonnet-4-5"),
        "api.anthropic.com",
        "POST",
        "/v1/messages",
        classification=Classification(endpoint="messages", model="claude-sonnet-4-5", wire_format="anthropic"),
        caller=caller,
    )


def test_every_call_record_has_account_plan_and_tenant() -> None:
    keyed = audit_record(_call(Caller(client="alice", auth="virtual_key")))
    assert (keyed["auth"], keyed["account"], keyed["plan"], keyed["tenant"]) == ("virtual_key", None, None, None)
    plan = Subscription("chatgpt", "acct-1", "a@corp.example", "team", "ws-1")
    record = audit_record(_call(Caller(client="alice", auth="subscription", subscription=plan)))
    assert (record["auth"], record["account"], record["plan"], record["tenant"]) == (
        "subscription",
        "acct-1",
        "team",
        "ws-1",
    )
    assert tuple(record) == RECORD_FIELDS


# --- a plan call's token, found once ---------------------------------------------------------------

PLAN_TOKEN = "sk-ant-oat01-" + "p" * 40
VIRTUAL_KEY = "tg-alice-virtual"


def plans_directory() -> Directory:
    return Directory(parse_config({"clients": [{"name": "alice", "keys": [VIRTUAL_KEY]}]}, {}))


def test_a_plans_token_is_found_where_no_virtual_key_stands_beside_it() -> None:
    anthropic, directory = PROVIDERS["anthropic"], plans_directory()
    token = Presented(PLAN_TOKEN, "authorization")
    assert found_plan(anthropic, [token], directory) == token
    # A virtual key beside it names the caller of a call made with Tollgate's keys: no plan call.
    assert found_plan(anthropic, [Presented(VIRTUAL_KEY, "x-api-key"), token], directory) is None
    assert found_plan(anthropic, [Presented("sk-ant-api03-key", "x-api-key")], directory) is None
    # A provider that takes no plans has none, whatever the credential.
    assert found_plan(PROVIDERS["openai"], [token], directory) is None


def test_a_call_keeps_the_tokens_fingerprint_and_an_asked_about_tokens_hash_never_the_token() -> None:
    kept = PlanToken.of(PLAN_TOKEN, asked=False)
    assert kept == PlanToken(fingerprint(PLAN_TOKEN), None)
    google = PlanToken.of("ya29.a-google-token", asked=True)
    assert google.upstream_key == fingerprint("ya29.a-google-token")
    assert google.sha256 == hashlib.sha256(b"ya29.a-google-token").hexdigest()
    assert "ya29" not in repr(google) and google.sha256 not in repr(google)


def test_a_plans_request_naming_two_accounts_is_read_as_the_tokens_account_and_why() -> None:
    claims = {"https://api.openai.com/auth": {"chatgpt_account_id": "ws-1", "chatgpt_plan_type": "team"}}
    token = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode() for part in ({"alg": "none"}, claims)
    )
    token += ".sig"
    chatgpt = PROVIDERS["chatgpt"]
    plan, foreign = read_plan(chatgpt, token, {b"chatgpt-account-id": b"ws-1"}, "chatgpt.com")
    assert (plan, foreign) == (Subscription("chatgpt", "ws-1", None, "team", "ws-1"), None)
    plan, foreign = read_plan(chatgpt, token, {b"chatgpt-account-id": b"ws-2"}, "chatgpt.com")
    assert plan == Subscription("chatgpt", "ws-1", None, "team", "ws-1")  # the token's, as the audit records it
    assert foreign == "the ChatGPT-Account-ID header names another account than the access token"


def test_a_plan_call_is_refused_when_plans_are_not_allowed_or_it_is_outside_the_tenants() -> None:
    plan = Subscription("chatgpt", "ws-1", None, "team", "ws-1")
    assert parse_config({}).subscriptions.refusal(plan, None) is None
    refused = parse_config({"subscriptions": {"allow": False}}).subscriptions
    assert refused.refusal(plan, None) == (PLANS_REFUSED_REASON, PLANS_REFUSED_MESSAGE)
    pinned = parse_config({"subscriptions": {"chatgpt": {"workspaces": ["ws-2"]}}}).subscriptions
    outside = "ChatGPT workspace ws-1 is not one of subscriptions.chatgpt.workspaces"
    assert pinned.refusal(plan, None) == (outside, f"Tollgate: {outside}; sign in to the company's account.")
    assert parse_config({}).subscriptions.refusal(plan, "two accounts") == (
        "two accounts",
        "Tollgate: two accounts; sign in to the company's account.",
    )


def test_a_code_assist_envelope_names_its_project_a_service_call_none() -> None:
    assert envelope_project({"project": "proj-1", "request": {}}, service=False) == "proj-1"
    assert envelope_project({"project": "proj-1"}, service=True) is None
    assert envelope_project({"project": 7}, service=False) is None
    assert envelope_project(None, service=False) is None


def test_a_plan_call_is_read_once_into_its_plan_and_what_the_call_keeps() -> None:
    anthropic, directory = PROVIDERS["anthropic"], plans_directory()
    plan = plan_call(anthropic, [Presented(PLAN_TOKEN, "authorization")], {}, "api.anthropic.com", directory)
    assert plan == PlanCall(PLAN_TOKEN, Subscription("anthropic"), None, PlanToken(fingerprint(PLAN_TOKEN)))
    assert PLAN_TOKEN not in repr(plan)
    keyed = [Presented(VIRTUAL_KEY, "x-api-key")]
    assert plan_call(anthropic, keyed, {}, "api.anthropic.com", directory) is None


def test_an_asked_accounts_email_tier_and_envelope_project_are_its_account_plan_and_tenant() -> None:
    plan, reader = Subscription("code_assist"), PROVIDERS["code_assist"].plan
    assert reader is not None
    body = {"project": "proj-1", "request": {}}
    tenant = reader.tenant_in_body(body, service=False)
    assert plan.with_asked_account("a@corp.example", "standard-tier", tenant) == Subscription(
        "code_assist", "a@corp.example", "a@corp.example", "standard-tier", "proj-1"
    )
    tenant = reader.tenant_in_body(body, service=True)
    assert plan.with_asked_account(None, None, tenant) == Subscription("code_assist")


# --- a path only a plan's own token takes -----------------------------------------------------------


class CountedHeaders(dict):
    """A request's headers that count how often its Authorization header is read."""

    def __init__(self, fields: dict[bytes, bytes]) -> None:
        super().__init__(fields)
        self.reads = 0

    def _counted(self, name: object) -> None:
        if isinstance(name, (bytes, str)) and (name.decode() if isinstance(name, bytes) else name) == "authorization":
            self.reads += 1

    def get(self, name: object, default: object = None) -> object:
        self._counted(name)
        return super().get(name, default)

    def __getitem__(self, name: object) -> object:
        self._counted(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._counted(name)
        return super().__contains__(name)


def test_a_plan_only_paths_token_is_read_once_where_the_plan_call_is_read() -> None:
    # Claude Code's /api/ path Tollgate does not know: Classify's read of its headers (the
    # provider's `read_headers`) does not read its token; the plan call read once tells.
    anthropic = PROVIDERS["anthropic"]
    classification = anthropic.classify("GET", "/api/oauth/profile", None)
    assert classification.plan_only
    headers = CountedHeaders({b"authorization": f"Bearer {PLAN_TOKEN}".encode()})
    anthropic.read_headers(headers, classification)
    assert headers.reads == 0
    decoded = CountedHeaders({"authorization": f"Bearer {PLAN_TOKEN}"})
    presented = anthropic.credentials.caller.presented(decoded, {})
    plan = plan_call(anthropic, presented, headers, "api.anthropic.com", plans_directory())
    assert plan is not None and plan.alone and decoded.reads == 1 and headers.reads == 0
    assert plan_only_refusal(anthropic, classification, plan) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"x-api-key": VIRTUAL_KEY},
        {"authorization": f"Bearer {VIRTUAL_KEY}"},
        {"authorization": f"Bearer {PLAN_TOKEN}", "x-api-key": VIRTUAL_KEY},
        {"authorization": f"Bearer {PLAN_TOKEN}", "x-api-key": "sk-ant-api03-key"},
        {"authorization": f"Basic {PLAN_TOKEN}"},
        {},
    ],
)
def test_a_plan_only_path_with_any_other_credential_is_refused(fields: dict[str, str]) -> None:
    anthropic = PROVIDERS["anthropic"]
    classification = anthropic.classify("GET", "/api/oauth/profile", None)
    presented = anthropic.credentials.caller.presented(
        Headers(**{k.replace("-", "_"): v for k, v in fields.items()}), {}
    )
    plan = plan_call(anthropic, presented, {}, "api.anthropic.com", plans_directory())
    assert plan_only_refusal(anthropic, classification, plan) == (
        "api.oauth.profile is not a path of Anthropic's service Tollgate knows: only a Claude plan's own token goes"
        " there, never a key"
    )
    # A known service path, or a model API call, goes with any credential.
    for known in (anthropic.classify("GET", "/api/claude_code/settings", None), Classification("messages")):
        assert plan_only_refusal(anthropic, known, plan) is None
