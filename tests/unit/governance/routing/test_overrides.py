"""Override rules: matching, precedence, routes, and where each provider keeps the model."""

from __future__ import annotations

import pytest

from tollgate.calls.routes import client_request
from tollgate.configuration.config import ConfigError, Override, parse_config
from tollgate.governance.routing.overrides import RuleBook, find_rule, fitted_for, routed_path
from tollgate.providers import PROVIDERS


def rules(*raw: dict) -> tuple[Override, ...]:
    return parse_config({"overrides": list(raw)}, {}).overrides


RULES = rules(
    {"match": {"provider": "openai", "model": "gpt-4*", "client": "ci-*"}, "model": "gpt-4o-mini"},
    {"match": {"provider": "openai", "model": "gpt-4*", "group": "research"}, "model": "gpt-4.1"},
    {"match": {"provider": "openai", "model": "gemini-*"}, "provider": "gemini"},
    {"match": {"model": "claude-*"}, "model": "claude-haiku-4-5"},
    {"match": {"provider": "gemini", "model": "gpt-5*"}, "provider": "openai"},
    {
        "match": {"provider": "openai", "model": "nova-*"},
        "provider": "bedrock",
        "api": "native",
        "upstream": "https://b.example",
    },
)


@pytest.mark.parametrize(
    ("provider", "model", "client", "groups", "endpoint", "expected"),
    [
        ("openai", "gpt-4o", "ci-nightly", (), "chat.completions", 0),
        ("openai", "gpt-4o", "ci-nightly", ("research",), "chat.completions", 0),  # first match wins
        ("openai", "gpt-4o", "alice", ("research", "x"), "chat.completions", 1),
        ("openai", "gpt-4o", None, (), "chat.completions", None),  # anonymous: no client glob matches
        ("openai", "gpt-3.5-turbo", "ci-nightly", (), "chat.completions", None),
        ("gemini", "gpt-4o", "ci-nightly", (), "generateContent", None),  # provider must match
        ("openai", "gemini-2.0-flash", "alice", (), "chat.completions", 2),
        ("openai", "gemini-2.0-flash", "alice", (), "responses", None),  # not on Gemini's OpenAI API
        ("openai", "gemini-embedding-001", "alice", (), "embeddings", 2),
        ("anthropic", "claude-opus-4-1", None, (), "messages", 3),  # no provider in match: any
        ("bedrock", None, "alice", (), "converse", None),
        ("openai", "GPT-4o", "ci-nightly", (), "chat.completions", None),  # globs are case-sensitive
        # Routes that translate: any chat call, in any provider's format
        ("gemini", "gpt-5", None, (), "generateContent", 4),
        ("gemini", "gpt-5", None, (), "streamGenerateContent", 4),
        ("gemini", "gpt-5", None, (), "embedContent", None),  # not a chat call: nothing to translate
        ("openai", "nova-lite", None, (), "chat.completions", 5),
        ("openai", "nova-lite", None, (), "embeddings", None),  # api: native takes only chat calls
    ],
)
def test_find_rule(provider, model, client, groups, endpoint, expected):
    found = find_rule(RULES, provider, model, client, groups, endpoint)
    assert found is (None if expected is None else RULES[expected])
    book = RuleBook(RULES)
    # The book answers as find_rule does, the first time and from memory
    assert [book.find(provider, model, client, groups, endpoint) for _ in range(2)] == [found, found]


def test_a_rule_book_remembers_a_bounded_number_of_call_shapes(monkeypatch):
    book = RuleBook(RULES)
    book.memo.limit = 3
    for i in range(10):
        assert book.find("openai", f"gpt-4o-{i}", "ci-x", (), "chat.completions") is RULES[0]
        assert len(book.memo.found) <= 3


def test_no_rules_no_change():
    assert find_rule((), "openai", "gpt-4o", "a", ("g",), "chat.completions") is None


@pytest.mark.parametrize(
    ("target", "path", "expected"),
    [
        ("gemini", "/v1/chat/completions", "/v1beta/openai/chat/completions"),
        ("gemini", "/v1/embeddings?x=1", "/v1beta/openai/embeddings?x=1"),
        ("anthropic", "/v1/chat/completions", "/v1/chat/completions"),
        ("bedrock", "/v1/chat/completions", "/openai/v1/chat/completions"),
    ],
)
def test_routed_path(target, path, expected):
    assert routed_path(PROVIDERS[target], path) == expected


@pytest.mark.parametrize(
    ("provider", "path", "model", "expected"),
    [
        (
            "gemini",
            "/v1beta/models/gemini-2.5-pro:generateContent",
            "gemini-2.0-flash",
            "/v1beta/models/gemini-2.0-flash:generateContent",
        ),
        (
            "gemini",
            "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            "gemini-2.0-flash",
            "/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        ),
        ("gemini", "/v1alpha/tunedModels/mine:generateContent", "other", "/v1alpha/tunedModels/other:generateContent"),
        (
            "bedrock",
            "/model/amazon.nova-pro-v1%3A0/converse-stream",
            "amazon.nova-micro-v1:0",
            "/model/amazon.nova-micro-v1%3A0/converse-stream",
        ),
        (
            "bedrock",
            "/model/x/invoke",
            "arn:aws:bedrock:us-east-1:1:inference-profile/us.meta.llama3-70b:0",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.meta.llama3-70b%3A0/invoke",
        ),
        ("openai", "/v1/chat/completions", "gpt-4o", None),  # in the body
        ("anthropic", "/v1/messages", "claude-haiku-4-5", None),
        ("gemini", "/v1beta/models", "x", None),
    ],
)
def test_path_with_model(provider, path, model, expected):
    assert PROVIDERS[provider].models.path_with_model(path, model) == expected


def test_bedrock_rewritten_path_classifies_back_to_the_model():
    model = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3"
    path = PROVIDERS["bedrock"].models.path_with_model("/model/m/converse", model)
    assert PROVIDERS["bedrock"].classify("POST", path, None).model == model


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"match": {"provider": "gemini"}, "provider": "openai", "api": "openai_compatible"},
            "overrides.0: openai has no OpenAI-compatible API: use api: native",
        ),
        (
            {"match": {"provider": "anthropic"}, "provider": "gemini", "api": "openai_compatible"},
            "overrides.0: api: openai_compatible takes OpenAI's calls: set match.provider: openai",
        ),
        (
            {"match": {"provider": "openai"}, "model": "x", "api": "native"},
            "overrides.0: api: applies to a route (provider: another provider than match.provider)",
        ),
        ({"match": {"provider": "openai"}, "provider": "bedrock"}, "overrides.0: a route to bedrock needs upstream"),
        ({"match": {"provider": "openai"}}, "overrides.0: a rule must set model, provider, upstream or fallbacks"),
        ({"match": {"provider": "nosuch"}, "model": "x"}, "overrides.0: unknown provider 'nosuch'"),
        ({"match": {"provider": "openai", "modle": "x"}, "model": "y"}, "overrides.0.match.modle: unknown key"),
        ({"match": {"provider": "openai"}, "upstream": "ftp://x"}, "overrides.0.upstream: must look like"),
    ],
)
def test_bad_rules_stop_start_up(rule, message):
    with pytest.raises(ConfigError) as e:
        parse_config({"overrides": [rule]}, {})
    assert str(e.value).startswith(message)


def test_route_to_same_provider_with_upstream_is_fine():
    (rule,) = rules(
        {
            "match": {"provider": "openai", "model": "gpt-4o"},
            "provider": "openai",
            "upstream": "https://eu.api.openai.com",
        }
    )
    assert rule.upstream == "https://eu.api.openai.com"


def test_a_request_kept_for_fallbacks_holds_no_credential_nor_tollgates_own_headers():
    fields = (
        (b"Host", b"api.openai.com"), (b"Authorization", b"Bearer tg-virtual"), (b"X-Tollgate-Rollup", b"off"),
        (b"Proxy-Authorization", b"Basic eA=="), (b"X-Tollgate-Anthropic-Key", b"sk-ant-side"),
        (b"Content-Length", b"2"), (b"User-Agent", b"OpenAI/Python"),
    )  # fmt: skip
    kept = client_request(
        PROVIDERS["openai"], ("https", "api.openai.com", 443), "/v1/chat/completions", fields, b"{}",
        frozenset((b"x-tollgate-anthropic-key",)),
    )  # fmt: skip
    assert kept.fields == ((b"Host", b"api.openai.com"), (b"User-Agent", b"OpenAI/Python"))


@pytest.mark.parametrize(
    ("target", "endpoint", "body", "expected"),
    [
        # Mistral bounds the output with max_tokens and refuses the fields it does not know.
        (
            "mistral",
            "chat.completions",
            {"model": "m", "max_completion_tokens": 40, "stream": True, "stream_options": {"include_usage": True}},
            {"model": "m", "max_tokens": 40, "stream": True},
        ),
        ("mistral", "chat.completions", {"model": "m", "max_tokens": 9}, None),
        ("groq", "chat.completions", {"model": "m", "max_completion_tokens": 40}, None),
        ("gemini", "chat.completions", {"model": "m", "max_completion_tokens": 40}, None),
        ("mistral", "embeddings", {"model": "m", "max_completion_tokens": 40}, None),  # no chat: as it came
    ],
)
def test_a_chat_body_going_as_it_came_is_fitted_to_its_target(target, endpoint, body, expected):
    before = dict(body)
    assert fitted_for(PROVIDERS[target], endpoint, body) is (expected is not None)
    assert body == (expected if expected is not None else before)
    assert fitted_for(PROVIDERS[target], endpoint, None) is False
