"""GitHub Copilot: its hosts and the plan each names, the plan a Copilot token names on the shared
host and the older completions host, which paths are calls and in which format, the refusal's shape by path, and
`subscriptions.copilot`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.refusals import TENANT_DENIED
from tollgate.governance.limits.pricing import table_rate
from tollgate.governance.subscriptions.plan import Subscription, tenant_pins
from tollgate.providers import PROVIDERS, Hosts, provider_for
from tollgate.providers.copilot import copilot_plan, token_plan
from tollgate.providers.plans import NO_ACCOUNT, PlanAccount

COPILOT = PROVIDERS["copilot"]
HEADERS = {name: p.plan.tenant_header if p.plan else None for name, p in PROVIDERS.items()}


def copilot_token(proxy: str = "proxy.business.githubcopilot.com") -> str:
    """Shaped as GitHub's Copilot tokens (v2): `key=value;…:mac`."""
    return f"tid=0f1e2d3c4b5a69788796a5b4c3d2e1f0;exp=4102444800;sku=copilot_for_business_seat;proxy-ep={proxy};st=dotcom;chat=1;8kp=1:5ecret-mac"


@pytest.mark.parametrize(
    "host",
    ["api.githubcopilot.com", "api.individual.githubcopilot.com", "api.business.githubcopilot.com",
     "API.Enterprise.GithubCopilot.com", "api.enterprise.githubcopilot.com.",
     "proxy.individual.githubcopilot.com", "proxy.business.githubcopilot.com", "proxy.enterprise.githubcopilot.com",
     "copilot-proxy.githubusercontent.com", "Copilot-Proxy.GitHubUserContent.com."],
)  # fmt: skip
def test_copilots_api_hosts_are_its(host: str) -> None:
    assert provider_for(host) is COPILOT


@pytest.mark.parametrize(
    "host",
    ["proxy.other.githubcopilot.com", "api.other.githubcopilot.com", "githubcopilot.com", "api.github.com",
     "githubusercontent.com", "raw.githubusercontent.com", "x.copilot-proxy.githubusercontent.com"],
)  # fmt: skip
def test_other_hosts_are_not(host: str) -> None:
    assert provider_for(host) is None


@pytest.mark.parametrize(
    ("token", "host", "plan"),
    [
        ("gho_abc", "api.individual.githubcopilot.com", "individual"),
        ("gho_abc", "api.business.githubcopilot.com", "business"),
        (copilot_token(), "api.enterprise.githubcopilot.com", "enterprise"),  # the host's, not the token's
        (copilot_token(), "proxy.individual.githubcopilot.com", "individual"),  # inline completions': the host's
        (copilot_token(), "api.githubcopilot.com", "business"),  # the shared host: the token's
        (copilot_token("proxy.individual.githubcopilot.com"), "api.githubcopilot.com", "individual"),
        (copilot_token("proxy.other.githubcopilot.com"), "api.githubcopilot.com", None),
        (copilot_token("proxy.business.example.com"), "api.githubcopilot.com", None),
        ("gho_abc", "api.githubcopilot.com", None),  # a GitHub OAuth token names no plan
        (copilot_token(), "copilot-proxy.githubusercontent.com", "business"),  # the older host: the token's
        (copilot_token("proxy.individual.githubcopilot.com"), "copilot-proxy.githubusercontent.com", "individual"),
        (copilot_token("copilot-proxy.githubusercontent.com"), "copilot-proxy.githubusercontent.com", None),
        ("gho_abc", "copilot-proxy.githubusercontent.com", None),
        ("github_pat_abc", "api.githubcopilot.com", None),
    ],
)
def test_the_plan_is_the_hosts_else_the_tokens(token: str, host: str, plan: str | None) -> None:
    expected = NO_ACCOUNT if plan is None else PlanAccount(plan=plan)
    assert copilot_plan(token, host) == expected
    assert COPILOT.plan.account(token, {}, host) == expected


def test_a_token_too_long_to_be_a_copilot_tokens_is_not_read() -> None:
    assert token_plan(copilot_token() + "x" * 5000) is None


@given(st.text(max_size=300))
def test_any_token_reads_as_a_plan_or_none_never_an_error(token: str) -> None:
    assert token_plan(token) in (None, "individual", "business", "enterprise")


@pytest.mark.parametrize(
    ("method", "path", "body", "endpoint", "model", "wire"),
    [
        ("POST", "/chat/completions", {"model": "gpt-4o", "messages": []}, "chat.completions", "gpt-4o", "openai-api"),
        ("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}, "chat.completions", "gpt-4o",
         "openai-api"),
        ("POST", "/responses", {"model": "gpt-5-mini", "input": "hi"}, "responses", "gpt-5-mini", "openai-api"),
        ("POST", "/embeddings", {"model": "text-embedding-3-small", "input": "hi"}, "embeddings",
         "text-embedding-3-small", "openai-api"),
        ("POST", "/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 5, "messages": []}, "messages",
         "claude-sonnet-4", "anthropic-messages"),
        ("POST", "/v1/messages/count_tokens", {"model": "claude-sonnet-4", "messages": []},
         "messages.count_tokens", "claude-sonnet-4", "anthropic-messages"),
    ],
)  # fmt: skip
def test_the_model_calls_in_their_three_formats(method, path, body, endpoint, model, wire) -> None:
    c = COPILOT.classify(method, path, body)
    assert (c.endpoint, c.model, c.wire_format, c.service) == (endpoint, model, wire, False)


@pytest.mark.parametrize(
    ("body", "model"),
    [({"prompt": "def f(", "max_tokens": 64, "n": 2, "stream": True}, "gpt-41-copilot"),
     ({"prompt": "def f(", "model": "gpt-41-copilot", "stream": True}, "gpt-41-copilot")],
)  # fmt: skip
def test_an_inline_completion_is_legacy_completions_of_the_paths_model(body: dict, model: str) -> None:
    c = COPILOT.classify("POST", "/v1/engines/gpt-41-copilot/completions", body)
    assert (c.endpoint, c.model, c.wire_format, c.service) == ("completions", model, "openai-api", False)
    assert c.facts.stream is True


@pytest.mark.parametrize(
    ("method", "path", "body", "endpoint", "model", "service"),
    [("POST", "/v1/engines/copilot-codex/completions", {"prompt": "def f(", "stream": True}, "completions",
      "copilot-codex", False),
     ("GET", "/v1/engines", None, "engines", None, True),
     ("GET", "/_ping", None, "_ping", None, True)],
)  # fmt: skip
def test_the_older_completions_hosts_calls_are_copilots(method, path, body, endpoint, model, service) -> None:
    """`copilot-proxy.githubusercontent.com`, which older editor plugins call: its inline completions
    are Copilot's as on `proxy.<plan>.githubcopilot.com`, its other paths service calls."""
    provider = provider_for("copilot-proxy.githubusercontent.com")
    assert provider is COPILOT
    c = provider.classify(method, path, body)
    assert (c.endpoint, c.model, c.wire_format, c.service) == (endpoint, model, "openai-api", service)


def test_an_inline_completion_whose_body_names_another_model_than_its_path_is_refused() -> None:
    with pytest.raises(Unreadable, match="the body names the model 'gpt-4o-mini', the path 'gpt-41-copilot'"):
        COPILOT.classify("POST", "/v1/engines/gpt-41-copilot/completions", {"prompt": "x", "model": "gpt-4o-mini"})


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [("GET", "/models", "models"), ("GET", "/_ping", "_ping"), ("POST", "/models/session", "models.session"),
     ("GET", "/agents/abc123/skills", "agents.skills")],
)  # fmt: skip
def test_every_other_path_is_a_service_call(method: str, path: str, endpoint: str) -> None:
    c = COPILOT.classify(method, path, None)
    assert (c.endpoint, c.model, c.service) == (endpoint, None, True)


@pytest.mark.parametrize("path", ["/Chat/completions", "/v1/Messages", "/RESPONSES", "//chat/completions", "/a/./b"])
def test_a_call_path_written_otherwise_is_refused_not_taken_for_a_service_call(path: str) -> None:
    with pytest.raises(Unreadable):
        COPILOT.classify("POST", path, {"model": "gpt-4o", "messages": []})


def test_a_refusal_is_in_the_shape_of_the_calls_format() -> None:
    anthropic = COPILOT.refusal(TENANT_DENIED, "no", "/v1/messages")
    openai = COPILOT.refusal(TENANT_DENIED, "no", "/chat/completions")
    assert anthropic.status == openai.status == 403
    assert b'"type": "error"' in anthropic.body and b'"permission_error"' in anthropic.body
    assert b'"code": "tenant_denied"' in openai.body


def test_a_plan_call_is_not_asked_for_usage_it_did_not_ask_for() -> None:
    c = COPILOT.classify("POST", "/chat/completions", {"model": "gpt-4o", "messages": [], "stream": True})
    body = {"model": "gpt-4o", "messages": [], "stream": True}
    assert COPILOT.prepare(c, body, {}, True) is False
    assert body == {"model": "gpt-4o", "messages": [], "stream": True}


def test_the_enterprises_make_its_tenant_header_and_the_plans_what_is_refused() -> None:
    subscriptions = parse_config({"subscriptions": {"copilot": {"enterprises": ["4242", "corp-ent"],
                                                                "plans": ["business", "enterprise"]}}}).subscriptions  # fmt: skip
    assert tenant_pins(subscriptions, HEADERS) == {"copilot": (b"sec-github-allowed-enterprise", b"4242,corp-ent")}
    assert subscriptions.outside(Subscription("copilot", plan="business")) is None
    assert subscriptions.outside(Subscription("copilot", plan="individual")) == (
        "Copilot plan individual is not one of subscriptions.copilot.plans"
    )
    assert "names no plan" in (subscriptions.outside(Subscription("copilot")) or "")
    anything = parse_config({"subscriptions": {"copilot": {"enterprises": ["4242"]}}}).subscriptions
    assert anything.outside(Subscription("copilot")) is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"plans": ["pro"]}, "subscriptions.copilot.plans.0"),
        ({"enterprises": ["a,b"]}, "subscriptions.copilot.enterprises.0"),
        ({"enterprises": [str(i) for i in range(21)]}, "subscriptions.copilot.enterprises"),
        ({"enterprise": ["a"]}, "subscriptions.copilot.enterprise"),
    ],
)
def test_bad_settings_are_errors_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"subscriptions": {"copilot": data}}, {})
    assert field in str(info.value)


def test_govern_false_leaves_copilots_hosts_tunnelled() -> None:
    subscriptions = parse_config({"subscriptions": {"copilot": {"govern": False}}}).subscriptions
    hosts = Hosts(ungoverned=subscriptions.ungoverned())
    assert subscriptions.ungoverned() == frozenset({"copilot"})
    assert hosts.provider_for("api.business.githubcopilot.com") is None
    assert hosts.provider_for("copilot-proxy.githubusercontent.com") is None
    assert not any("githubcopilot" in pattern or "githubusercontent" in pattern for pattern in hosts.allow_hosts())


@pytest.mark.parametrize(
    ("model", "source"),
    [
        ("claude-sonnet-4", "genai-prices github-copilot/claude-sonnet-4"),  # Copilot's own price
        ("gpt-4o", "genai-prices openai/gpt-4o"),  # one Copilot's table lists unpriced: OpenAI's
        ("gemini-2.5-pro", "genai-prices google/gemini-2.5-pro"),
    ],
)
def test_a_model_is_priced_by_copilots_table_else_by_its_vendors(model: str, source: str) -> None:
    rate = table_rate("copilot", model, 1.8e9)
    assert rate is not None and rate.source == source


def test_a_model_no_table_prices_has_no_price() -> None:
    assert table_rate("copilot", "copilot-internal-model-x", 1.8e9) is None
