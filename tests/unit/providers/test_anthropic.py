"""Anthropic: classification, request facts and usage; plain data in, plain data out."""

from __future__ import annotations

import pytest
from tests.support.grouped_cases import flat_cases

from tollgate.formats.anthropic_messages import usage_from_object
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification
from tollgate.providers.anthropic import PLAN_ONLY
from tollgate.providers.credentials import Presented

from .common import (
    ANTHROPIC,
    EMPTY_USAGE,
    NO_FACTS,
    classify,
    facts,
    headers,
    j,
    usage_tuple,
)


def test_anthropic_messages_facts() -> None:
    body = j(
        {
            "model": "claude-sonnet-4-20250514",
            "system": "secret",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "tools": [{"name": "t", "input_schema": {}}],
            "stream": True,
            "max_tokens": 1024,
        }
    )
    c = classify(ANTHROPIC, "POST", "/v1/messages", body)
    assert (c.endpoint, c.model, c.wire_format) == ("messages", "claude-sonnet-4-20250514", "anthropic-messages")
    assert facts(c) == (2, True, True, True, 1024)


def test_anthropic_messages_tier_and_speed() -> None:
    body = {"model": "claude-opus-5", "messages": [], "max_tokens": 5, "service_tier": "auto", "speed": "fast"}
    c = classify(ANTHROPIC, "POST", "/v1/messages", j(body))
    assert (c.facts.service_tier, c.facts.speed) == ("auto", "fast")
    assert c.facts.price_context() == (("service_tier", "auto"), ("speed", "fast"))
    with pytest.raises(Unreadable, match="'speed' is not a string"):
        classify(ANTHROPIC, "POST", "/v1/messages", j({**body, "speed": ["fast"]}))


def test_anthropic_messages_minimal() -> None:
    c = classify(
        ANTHROPIC, "POST", "/v1/messages", j({"model": "claude-3-5-haiku-latest", "messages": [{}], "max_tokens": 5})
    )
    assert facts(c) == (1, False, False, False, 5)


def test_anthropic_system_as_blocks() -> None:
    body = j({"model": "m", "system": [{"type": "text", "text": "s"}], "messages": []})
    assert classify(ANTHROPIC, "POST", "/v1/messages", body).facts.has_system is True


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    flat_cases(
        {
            "POST": [
                ("/v1/messages", "messages"),
                ("/v1/messages/count_tokens", "messages.count_tokens"),
                ("/v1/messages/batches", "messages.batches"),
                ("/v1/complete", "completions"),
            ],
            "GET": [
                ("/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d", "messages.batches"),
                ("/v1/models", "models"),
                ("/v1/models/claude-3-5-sonnet-20241022", "models"),
            ],
        }
    ),
)
def test_anthropic_endpoints(method: str, path: str, endpoint: str) -> None:
    assert classify(ANTHROPIC, method, path, None).endpoint == endpoint


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    flat_cases(
        {  # what Claude Code 2.1 calls beside its model calls, recorded
            "GET": [
                ("/api/claude_code/settings", "api.claude_code.settings"),
                ("/api/claude_code/policy_limits", "api.claude_code.policy_limits"),
                ("/api/claude_code/organizations/metrics_enabled", "api.claude_code.organizations.metrics_enabled"),
                ("/api/claude_cli/bootstrap", "api.claude_cli.bootstrap"),
                ("/api/claude_code_penguin_mode", "api.claude_code_penguin_mode"),
            ],
            "POST": [
                ("/api/event_logging/v2/batch", "api.event_logging.batch"),
                ("/api/eval/sdk-zAZezfDKGoZuXXKe", "api.eval"),
            ],
        }
    ),
)
def test_anthropic_service_endpoints_name_no_model(method: str, path: str, endpoint: str) -> None:
    body = {"model": "claude-opus-4-8", "events": []} if method == "POST" else None
    assert ANTHROPIC.classify(method, path, body) == Classification(
        endpoint=endpoint, wire_format="anthropic-messages", service=True
    )


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("GET", "/api/claude_code/unknown", "api.claude_code.unknown"),
        ("PUT", "/api/claude_code/settings", "api.claude_code.settings"),  # a key of Tollgate's must not write settings
        ("POST", "/api/claude_code/settings", "api.claude_code.settings"),
        ("GET", "/api/event_logging/v2/batch", "api.event_logging.batch"),
        ("POST", "/api/eval/sdk-", "api.eval"),
        ("POST", "/api/eval/key-1", "api.eval"),
        ("POST", "/api/eval/sdk-1/more", "api.eval.more"),
        ("GET", "/api/Claude_code/settings", "api.settings"),
        ("GET", "/api", "api"),
        ("GET", "/api/oauth/profile", "api.oauth.profile"),  # what Claude Code signed in with a plan asks
        ("GET", "/api/oauth/organizations/5f0e-org/roles", "api.oauth.organizations.roles"),
    ],
)
def test_anthropic_unknown_service_paths_are_a_plan_tokens_alone(method: str, path: str, endpoint: str) -> None:
    c = ANTHROPIC.classify(method, path, None)
    # Refused with any other credential than a plan's own token, as the plan call read once tells
    # (tests/unit/governance/subscriptions/test_subscriptions.py).
    assert (c.endpoint, c.service, c.plan_only, c.mints_credential) == (endpoint, True, True, False)
    assert ANTHROPIC.plan is not None and ANTHROPIC.plan.plan_only == PLAN_ONLY


def test_anthropic_a_known_service_path_goes_with_any_credential() -> None:
    c = ANTHROPIC.classify("GET", "/api/claude_code/settings", None)
    assert (c.endpoint, c.service, c.plan_only) == ("api.claude_code.settings", True, False)


def test_anthropic_making_an_api_key_through_its_service_mints_a_credential() -> None:
    c = ANTHROPIC.classify("POST", "/api/oauth/claude_cli/create_api_key", {})
    assert (c.endpoint, c.plan_only, c.mints_credential) == ("api.oauth.claude_cli.create_api_key", True, True)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/mcp-registry/v0/servers"), ("GET", "/mcp-registry/v0/servers/x")]
)
def test_anthropic_unknown_paths_are_refused(method: str, path: str) -> None:
    with pytest.raises(Unreadable):
        ANTHROPIC.classify(method, path, None)


def test_anthropic_the_mcp_registry_is_outside_the_model_api() -> None:
    assert ANTHROPIC.classify("GET", "/mcp-registry/v0/servers", None) == Classification(
        wire_format="anthropic-messages", passthrough=True
    )


def test_anthropic_get_has_no_facts() -> None:
    c = classify(ANTHROPIC, "GET", "/v1/models", None)
    assert c.model is None
    assert facts(c) == NO_FACTS


@pytest.mark.parametrize("body", [{"model": 3}, {"model": "m", "max_tokens": "lots"}, {"model": "m", "stream": "true"}])
def test_anthropic_facts_of_the_wrong_type_are_refused(body: dict) -> None:
    with pytest.raises(Unreadable):
        ANTHROPIC.classify("POST", "/v1/messages", body)


def test_anthropic_other_shapes_give_no_facts() -> None:
    c = classify(ANTHROPIC, "POST", "/v1/messages", j({"model": "m", "messages": "x", "system": ""}))
    assert facts(c) == (None, False, False, False, None)


def test_anthropic_openai_compatible_chat() -> None:
    body = j(
        {"model": "claude-opus-4-1", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    )
    c = classify(ANTHROPIC, "POST", "/v1/chat/completions", body)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "claude-opus-4-1", "openai-api")
    assert facts(c) == (2, True, False, False, None)


def test_anthropic_usage_normalised() -> None:
    body = j(
        {
            "type": "message",
            "content": [{"type": "text", "text": "secret"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 50,
                "cache_read_input_tokens": 100,
                "output_tokens": 20,
            },
        }
    )
    c = classify(ANTHROPIC, "POST", "/v1/messages", None)
    u = ANTHROPIC.cost.usage(c, headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((160, 20, 180, 100, None, "end_turn"), 50)


def test_anthropic_usage_without_cache() -> None:
    body = j({"stop_reason": "max_tokens", "usage": {"input_tokens": 12, "output_tokens": 30}})
    u = ANTHROPIC.cost.usage(Classification(endpoint="messages", wire_format="anthropic-messages"), headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((12, 30, 42, None, None, "max_tokens"), None)


def test_anthropic_usage_cache_zero_and_null() -> None:
    body = j(
        {
            "stop_reason": "tool_use",
            "usage": {
                "input_tokens": 12,
                "output_tokens": 3,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": None,
            },
        }
    )
    u = ANTHROPIC.cost.usage(Classification(endpoint="messages", wire_format="anthropic-messages"), headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((12, 3, 15, 0, None, "tool_use"), None)


def test_anthropic_count_tokens_usage() -> None:
    u = ANTHROPIC.cost.usage(
        Classification(endpoint="messages.count_tokens", wire_format="anthropic-messages"),
        headers(),
        j({"input_tokens": 42}),
    )
    assert usage_tuple(u) == (42, None, None, None, None, None)


def test_anthropic_error_body_has_no_usage() -> None:
    body = j({"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    assert (
        usage_tuple(
            ANTHROPIC.cost.usage(Classification(endpoint="messages", wire_format="anthropic-messages"), headers(), body)
        )
        == EMPTY_USAGE
    )


def test_anthropic_usage_from_object() -> None:
    assert usage_tuple(usage_from_object(None)) == EMPTY_USAGE
    assert usage_tuple(usage_from_object({"output_tokens": 5})) == (None, 5, None, None, None, None)
    assert usage_tuple(usage_from_object({"input_tokens": 5, "cache_read_input_tokens": 2})) == (
        7,
        None,
        None,
        2,
        None,
        None,
    )


def test_anthropic_presented_in_each_position() -> None:
    assert ANTHROPIC.credentials.caller.presented(headers(("X-Api-Key", "sk-ant-1")), {}) == [
        Presented("sk-ant-1", "x-api-key")
    ]
    assert ANTHROPIC.credentials.caller.presented(headers(("Authorization", "Bearer sk-ant-2")), {}) == [
        Presented("sk-ant-2", "authorization")
    ]


def batch(*models: object) -> dict:
    return {"requests": [{"custom_id": str(i), "params": {"model": m, "max_tokens": 5}} for i, m in enumerate(models)]}


@pytest.mark.parametrize(
    ("body", "model", "unread"),
    [
        (batch("claude-haiku-4-5", "claude-haiku-4-5"), "claude-haiku-4-5", ()),
        (batch("claude-haiku-4-5", "claude-opus-4-1"), None, ("model",)),  # several: no one model to decide on
        (batch("claude-haiku-4-5", None), None, ("model",)),
        ({"requests": [{"custom_id": "0"}]}, None, ("model",)),
        ({"requests": "not a list"}, None, ("model",)),
        ({"requests": []}, None, ("model",)),
    ],
)
def test_anthropic_a_message_batch_is_decided_on_its_requests_model(
    body: dict, model: str | None, unread: tuple
) -> None:
    c = ANTHROPIC.classify("POST", "/v1/messages/batches", body)
    assert (c.endpoint, c.model, c.unread) == ("messages.batches", model, unread)


def test_anthropic_a_message_batch_model_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(Unreadable, match="'model' is not a string"):
        ANTHROPIC.classify("POST", "/v1/messages/batches", batch(7))
