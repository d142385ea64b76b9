"""ChatGPT plans (Codex signed in with ChatGPT): the access token's claims read without verifying
it, the account the header names, `subscriptions.chatgpt`, which paths of chatgpt.com are calls,
and the host left tunnelled with `govern: false`."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.bodies.exact import Unreadable
from tollgate.governance.subscriptions.plan import Subscription, tenant_pins
from tollgate.providers import PROVIDERS, Hosts, provider_for
from tollgate.providers.chatgpt import chatgpt_account, token_claims
from tollgate.providers.plans import NO_ACCOUNT, ForeignAccount, PlanAccount

WORKSPACE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def segment(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims: object) -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}.sig"


CLAIMS = {
    "https://api.openai.com/auth": {"chatgpt_account_id": WORKSPACE, "chatgpt_plan_type": "team", "user_id": "u-1"},
    "https://api.openai.com/profile": {"email": "alice@corp.example", "email_verified": True},
    "exp": 4102444800,
}


def test_an_access_tokens_claims_name_the_account_email_and_plan() -> None:
    assert token_claims(jwt(CLAIMS)) == PlanAccount(WORKSPACE, "alice@corp.example", "team", WORKSPACE)


def test_an_id_tokens_top_level_email_is_read_where_the_profile_has_none() -> None:
    claims = {"email": "bob@corp.example", "https://api.openai.com/auth": {"chatgpt_plan_type": "plus"}}
    assert token_claims(jwt(claims)) == PlanAccount(None, "bob@corp.example", "plus", None)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJub25lIn0.!!!not-base64!!!.sig",
        f"{segment({'alg': 'none'})}.{segment(b'not json')}.sig",
        f"{segment({'alg': 'none'})}.{segment([1, 2])}.sig",
        jwt({"https://api.openai.com/auth": "a string", "https://api.openai.com/profile": 7}),
        jwt({"https://api.openai.com/auth": {"chatgpt_account_id": 12, "chatgpt_plan_type": ""}}),
        jwt({}),
    ],
)
def test_a_token_that_cannot_be_read_names_nothing(token: str) -> None:
    assert token_claims(token) == NO_ACCOUNT


@given(st.text(max_size=300))
def test_reading_any_text_never_fails(token: str) -> None:
    assert isinstance(token_claims(token), PlanAccount)


def test_the_account_is_the_tokens_account_plan_and_workspace() -> None:
    account = PROVIDERS["chatgpt"].plan.account(jwt(CLAIMS), {b"chatgpt-account-id": WORKSPACE.encode()})
    assert Subscription.of("chatgpt", account) == Subscription(
        "chatgpt", WORKSPACE, "alice@corp.example", "team", WORKSPACE
    )
    assert chatgpt_account("unreadable", None) == NO_ACCOUNT
    # The header names the account where the token does not.
    assert chatgpt_account("unreadable", b" acct-9 ") == PlanAccount("acct-9", None, None, "acct-9")


def test_a_header_naming_another_account_than_the_token_is_foreign() -> None:
    with pytest.raises(ForeignAccount) as info:
        chatgpt_account(jwt(CLAIMS), b"another-workspace")
    assert info.value.account.account == WORKSPACE  # the token's, as the audit records it


def test_the_workspaces_pin_chatgpt_and_refuse_any_other() -> None:
    subscriptions = parse_config({"subscriptions": {"chatgpt": {"workspaces": [WORKSPACE, "ws-2"]}}}).subscriptions
    headers = {name: p.plan.tenant_header if p.plan else None for name, p in PROVIDERS.items()}
    assert tenant_pins(subscriptions, headers) == {
        "chatgpt": (b"chatgpt-allowed-workspace-id", f"{WORKSPACE},ws-2".encode())
    }
    assert subscriptions.outside(Subscription("chatgpt", tenant=WORKSPACE)) is None
    assert subscriptions.outside(Subscription("chatgpt", tenant="elsewhere")) == (
        "ChatGPT workspace elsewhere is not one of subscriptions.chatgpt.workspaces"
    )
    assert "names no workspace" in (subscriptions.outside(Subscription("chatgpt")) or "")
    # Without workspaces, any workspace goes.
    assert parse_config({}).subscriptions.outside(Subscription("chatgpt", tenant="elsewhere")) is None


@pytest.mark.parametrize("workspace", ["", "a,b", "a b"])
def test_a_workspace_that_cannot_be_one_entry_of_the_header_is_refused(workspace: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"subscriptions": {"chatgpt": {"workspaces": [workspace]}}}, {})
    assert "subscriptions.chatgpt.workspaces.0" in str(info.value)


CHATGPT = PROVIDERS["chatgpt"]


@pytest.mark.parametrize(
    ("path", "governed"),
    [
        ("/backend-api/codex/responses", True),
        ("/backend-api/codex/models", True),
        ("/backend-api/codex", True),
        ("/backend-api//codex/responses", True),  # a server might read it as Codex's: governed, then refused
        ("/Backend-API/%63odex/responses", True),
        ("/backend-api/conversation", False),
        ("/backend-api/codexes", False),
        ("/", False),
        ("/backend-api/wham/usage", True),
        ("/backend-api/wham/tasks/task_e_1", True),
        ("/backend-api/WHAM/usage", True),  # governed, then refused
        ("/backend-api/whammy", False),
        ("/backend-api/ps/plugins/installed", False),
    ],
)
def test_only_codexs_paths_are_calls(path: str, governed: bool) -> None:
    assert CHATGPT.governs_path(path) is governed


def test_codexs_responses_path_is_the_responses_api_and_the_rest_service_calls() -> None:
    body = {"model": "gpt-5-codex", "input": "hi", "stream": True}
    c = CHATGPT.classify("POST", "/backend-api/codex/responses", body)
    assert (c.endpoint, c.model, c.service, c.facts.stream) == ("responses", "gpt-5-codex", False, True)
    session = CHATGPT.classify("GET", "/backend-api/codex/responses", None)
    assert (session.endpoint, session.session) == ("responses", True)
    models = CHATGPT.classify("GET", "/backend-api/codex/models", None)
    assert (models.endpoint, models.model, models.service) == ("codex.models", None, True)
    with pytest.raises(Unreadable):
        CHATGPT.classify("POST", "/backend-api//codex/responses", body)
    with pytest.raises(Unreadable):
        CHATGPT.classify("GET", "/backend-api/WHAM/usage", None)


def test_codexs_compaction_is_a_model_call_and_wham_a_service() -> None:
    body = {"model": "gpt-5-codex", "input": [{"role": "user", "content": "hi"}], "instructions": "sum up"}
    c = CHATGPT.classify("POST", "/backend-api/codex/responses/compact", body)
    assert (c.endpoint, c.model, c.service, c.facts.stream, c.facts.has_system) == (
        "responses.compact", "gpt-5-codex", False, False, True)  # fmt: skip
    usage = CHATGPT.classify("GET", "/backend-api/wham/usage", None)
    assert (usage.endpoint, usage.model, usage.service) == ("wham.usage", None, True)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/backend-api/codex/analytics-events/events", "codex.analytics-events.events"),  # what Codex posts
        ("/backend-api/codex/tasks/task_e_68a1b2c3d4/turns", "codex.tasks.turns"),  # an id is left out
        ("/backend-api/codex/environments/0a1b2c3d-4e5f-4a6b/by-repo", "codex.environments.by-repo"),
        ("/backend-api/wham/usage", "wham.usage"),
        ("/backend-api/wham/tasks/task_e_68a1b2c3d4", "wham.tasks"),
        ("/backend-api/wham/tasks/task_e_1/turns/turn_2/sibling_turns", "wham.tasks.turns.sibling_turns"),
        ("/backend-api/wham/environments/by-repo/github/openai/codex", "wham.environments.by-repo.github"),  # no repo
    ],
)
def test_a_service_call_is_named_by_its_paths_fixed_words(path: str, endpoint: str) -> None:
    assert CHATGPT.classify("POST", path, None).endpoint == endpoint


def test_govern_false_leaves_chatgpt_com_tunnelled() -> None:
    assert provider_for("chatgpt.com") is CHATGPT
    governed = Loaded.build(parse_config({})).hosts
    assert governed.provider_for("chatgpt.com") is CHATGPT
    assert any("chatgpt" in pattern for pattern in governed.allow_hosts())
    loaded = Loaded.build(parse_config({"subscriptions": {"chatgpt": {"govern": False}}}))
    assert loaded.hosts.provider_for("chatgpt.com") is None
    assert loaded.hosts.provider_for("api.openai.com") is PROVIDERS["openai"]
    assert not any("chatgpt" in pattern for pattern in loaded.hosts.allow_hosts())
    # With hosts a configuration adds, too.
    added = Hosts({"openai": ("llm.corp.example",)}, PROVIDERS, frozenset(("chatgpt",)))
    assert added.provider_for("chatgpt.com") is None and added.provider_for("llm.corp.example") is PROVIDERS["openai"]
