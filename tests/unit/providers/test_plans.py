"""The plan-token part alone (`providers/plans.py`): what a reader declares and which account a
token names, without a provider around it."""

import pytest

from tollgate.providers import PROVIDERS
from tollgate.providers.chatgpt import ChatGPTPlans
from tollgate.providers.copilot import CopilotPlans
from tollgate.providers.plans import NO_ACCOUNT, PlanAccount, PlanReader


def test_a_plain_reader_names_no_account() -> None:
    reader = PlanReader("tok-", tenant_header=b"x-allowed")
    assert reader.account("tok-abc", {b"x-allowed": b"acme"}, "api.example.com") is NO_ACCOUNT
    assert (reader.token_prefix, reader.tenant_header, reader.asks_account, reader.tier_endpoint) == (
        "tok-",
        b"x-allowed",
        False,
        None,
    )


def test_copilots_reader_names_the_plan_of_its_host() -> None:
    reader = CopilotPlans()
    assert reader.token_prefix == ""
    assert reader.account("gho_abc", {}, "api.business.githubcopilot.com") == PlanAccount(plan="business")
    assert reader.account("gho_abc", {}, "api.githubcopilot.com") is NO_ACCOUNT


def test_chatgpts_reader_names_the_account_its_header_names() -> None:
    reader = ChatGPTPlans()
    assert reader.token_prefix == "eyJ"
    # Not a JWT: the header alone names the account, which is also its tenant.
    assert reader.account("eyJnot-a-jwt", {b"chatgpt-account-id": b"ws-1"}) == PlanAccount("ws-1", None, None, "ws-1")


@pytest.mark.parametrize(
    ("name", "prefix", "tenant_header", "asks"),
    [
        ("anthropic", "sk-ant-oat", b"anthropic-allowed-org-ids", False),
        ("chatgpt", "eyJ", b"chatgpt-allowed-workspace-id", False),
        ("copilot", "", b"sec-github-allowed-enterprise", False),
        ("code_assist", "ya29.", b"x-geminicodeassist-allowed-domains", True),
    ],
)
def test_the_vendors_that_take_plans_declare_a_reader(name: str, prefix: str, tenant_header: bytes, asks: bool) -> None:
    reader = PROVIDERS[name].plan
    assert reader is not None
    assert (reader.token_prefix, reader.tenant_header, reader.asks_account) == (prefix, tenant_header, asks)


def test_the_others_declare_none() -> None:
    takes = {name for name, p in PROVIDERS.items() if p.plan is not None}
    assert takes == {"anthropic", "chatgpt", "copilot", "code_assist"}
