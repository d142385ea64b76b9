"""OpenAI: classification, request facts and usage; plain data in, plain data out."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification
from tollgate.providers import openai as openai_mod
from tollgate.providers.credentials import Presented

from .common import (
    EMPTY_USAGE,
    NO_FACTS,
    OPENAI,
    classify,
    facts,
    headers,
    j,
    usage_tuple,
)


@pytest.mark.parametrize(
    ("rest", "endpoint"),
    [
        ("chat/completions", "chat.completions"),
        ("chat/completions/chatcmpl-abc123/messages", "chat.completions"),
        ("responses", "responses"),
        ("responses/resp_abc123", "responses"),
        ("responses/resp_abc123/input_items", "responses"),
        ("embeddings", "embeddings"),
        ("completions", "completions"),
        ("moderations", "moderations"),
        ("images/generations", "images.generations"),
        ("images/edits", "images.edits"),
        ("audio/speech", "audio.speech"),
        ("audio/transcriptions", "audio.transcriptions"),
        ("audio/translations", "audio.translations"),
        ("models", "models"),
        ("models/gpt-4o", "models"),
        ("files", "files"),
        ("files/file-abc123/content", "files.content"),
        ("batches/batch-123/cancel", "batches.cancel"),
        ("vector_stores/vs-1/files", "vector_stores.files"),
        ("", None),
        ("123/456", None),
    ],
)
def test_openai_endpoint_of(rest: str, endpoint: str | None) -> None:
    assert openai_mod.endpoint_of(rest.split("/")) == endpoint


def test_openai_endpoint_prefixes_do_not_nest() -> None:
    """endpoint_of takes the first prefix that matches: that is the only one, and so the longest,
    only while no prefix begins another (("images",) before ("images", "edits") would shadow it)."""
    prefixes = [prefix for prefix, _ in openai_mod._ENDPOINTS]
    for a in prefixes:
        for b in prefixes:
            assert a == b or b[: len(a)] != a, (a, b)


def test_openai_chat_completions_facts() -> None:
    body = j(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "secret system prompt"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "stream": True,
            "max_completion_tokens": 256,
        }
    )
    c = classify(OPENAI, "POST", "/v1/chat/completions", body)
    assert c.endpoint == "chat.completions"
    assert c.model == "gpt-4o"
    assert c.wire_format == "openai-api"
    assert facts(c) == (3, True, True, True, 256)


def test_openai_chat_completions_minimal() -> None:
    c = classify(OPENAI, "POST", "/v1/chat/completions", j({"model": "gpt-4o-mini", "messages": [{"role": "user"}]}))
    assert c.model == "gpt-4o-mini"
    assert facts(c) == (1, False, False, False, None)


def test_openai_max_tokens_fallback_and_functions_and_developer_role() -> None:
    body = j(
        {
            "model": "o3",
            "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}],
            "functions": [{"name": "f"}],
            "max_tokens": 100,
        }
    )
    c = classify(OPENAI, "POST", "/v1/chat/completions", body)
    assert facts(c) == (2, True, True, False, 100)


def test_openai_a_limit_set_twice_binds_at_the_larger() -> None:
    body = j({"model": "m", "messages": [], "max_tokens": 100, "max_completion_tokens": 50})
    assert classify(OPENAI, "POST", "/v1/chat/completions", body).facts.max_tokens == 100
    body = j({"model": "m", "messages": [], "max_tokens": 10, "max_completion_tokens": 50})
    assert classify(OPENAI, "POST", "/v1/chat/completions", body).facts.max_tokens == 50


def test_openai_empty_tools_is_no_tools() -> None:
    c = classify(OPENAI, "POST", "/v1/chat/completions", j({"model": "m", "messages": [], "tools": []}))
    assert c.facts.has_tools is False


def test_openai_responses_string_input() -> None:
    body = j({"model": "gpt-4.1", "input": "hello", "instructions": "be brief", "max_output_tokens": 64})
    c = classify(OPENAI, "POST", "/v1/responses", body)
    assert c.endpoint == "responses"
    assert c.model == "gpt-4.1"
    assert facts(c) == (1, True, False, False, 64)


def test_openai_responses_list_input_with_system_message_and_tools() -> None:
    body = j(
        {
            "model": "gpt-4.1",
            "input": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
            "tools": [{"type": "web_search"}],
            "stream": True,
        }
    )
    c = classify(OPENAI, "POST", "/v1/responses", body)
    assert facts(c) == (2, True, True, True, None)


def test_openai_responses_without_system() -> None:
    c = classify(OPENAI, "POST", "/v1/responses", j({"model": "m", "input": [{"role": "user", "content": "y"}]}))
    assert facts(c) == (1, False, False, False, None)


def test_openai_embeddings() -> None:
    c = classify(OPENAI, "POST", "/v1/embeddings", j({"model": "text-embedding-3-small", "input": ["a", "b"]}))
    assert c.endpoint == "embeddings"
    assert c.model == "text-embedding-3-small"
    assert facts(c) == (None, None, None, False, None)


def test_openai_legacy_completions() -> None:
    c = classify(
        OPENAI, "POST", "/v1/completions", j({"model": "gpt-3.5-turbo-instruct", "prompt": "x", "max_tokens": 7})
    )
    assert c.endpoint == "completions"
    assert facts(c) == (None, None, None, False, 7)


def test_openai_get_has_no_body_facts() -> None:
    c = classify(OPENAI, "GET", "/v1/models", None)
    assert (c.endpoint, c.model, c.wire_format) == ("models", None, "openai-api")
    assert facts(c) == NO_FACTS
    # A body on a GET is not read.
    c = classify(OPENAI, "GET", "/v1/models/gpt-4o", j({"model": "gpt-4o"}))
    assert (c.endpoint, c.model) == ("models", None)


def test_openai_query_is_ignored() -> None:
    assert classify(OPENAI, "POST", "/v1/chat/completions?foo=bar", None).endpoint == "chat.completions"


def test_openai_path_without_version_prefix_is_refused() -> None:
    with pytest.raises(Unreadable, match="start with /v1/"):
        classify(OPENAI, "POST", "/chat/completions", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": 42, "messages": []}, "'model' is not a string"),
        ({"model": ["gpt-4o"]}, "'model' is not a string"),
        ({"model": "gpt-4o\ud800"}, "'model' is not valid Unicode"),
        ({"model": "m", "stream": "yes"}, "'stream' is not a boolean"),
        ({"model": "m", "stream": 1}, "'stream' is not a boolean"),
        ({"model": "m", "max_tokens": "many"}, "'max_tokens' is not an integer"),
        ({"model": "m", "max_tokens": True}, "'max_tokens' is not an integer"),
        ({"model": "m", "max_completion_tokens": 1.5}, "'max_completion_tokens' is not an integer"),
        ({"model": "m", "max_tokens": 2**63}, "'max_tokens' is out of range"),
        ({"model": "m", "max_tokens": 1e300}, "'max_tokens' is out of range"),
    ],
)
def test_openai_a_fact_of_the_wrong_type_is_refused(body: dict, field: str) -> None:
    with pytest.raises(Unreadable, match=field):
        OPENAI.classify("POST", "/v1/chat/completions", body)


@pytest.mark.parametrize(("value", "read"), [(2**63 - 1, 2**63 - 1), (256.0, 256), ("256", 256), (None, None)])
def test_openai_max_tokens_is_read_exactly(value: Any, read: int | None) -> None:
    assert OPENAI.classify("POST", "/v1/chat/completions", {"model": "m", "max_tokens": value}).facts.max_tokens == read


def test_openai_facts_of_other_shapes_are_none_or_false() -> None:
    body = {"model": None, "messages": {"role": "system"}, "tools": None, "stream": None}
    c = OPENAI.classify("POST", "/v1/chat/completions", body)
    assert (c.model, c.facts.message_count, c.facts.has_system, c.facts.stream) == (None, None, False, False)


def test_openai_chat_usage_with_cached_and_reasoning() -> None:
    body = j(
        {
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "secret"}}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 32},
            },
        }
    )
    c = classify(OPENAI, "POST", "/v1/chat/completions", None)
    assert usage_tuple(OPENAI.cost.usage(c, headers(), body)) == (100, 50, 150, 64, 32, "stop")


@pytest.mark.parametrize(
    ("endpoint", "path", "tier", "read"),
    [
        ("chat.completions", "/v1/chat/completions", "priority", "priority"),
        ("responses", "/v1/responses", "flex", "flex"),
        ("chat.completions", "/v1/chat/completions", 1, None),
    ],
)
def test_openai_usage_tells_the_service_tier_the_call_ran_at(
    endpoint: str, path: str, tier: Any, read: str | None
) -> None:
    body = j({"object": "x", "service_tier": tier, "usage": {"prompt_tokens": 1, "input_tokens": 1}})
    assert (
        OPENAI.cost.usage(Classification(endpoint=endpoint, wire_format="openai-api"), headers(), body).service_tier
        == read
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
def test_openai_the_service_tier_asked_for_is_read_exactly(path: str) -> None:
    body = {"model": "gpt-4.1", "service_tier": "priority"}
    assert classify(OPENAI, "POST", path, j(body)).facts.service_tier == "priority"
    with pytest.raises(Unreadable, match="'service_tier' is not a string"):
        classify(OPENAI, "POST", path, j({**body, "service_tier": 1}))


def test_openai_chat_usage_total_computed_when_missing() -> None:
    body = j({"choices": [{"finish_reason": "length"}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    u = OPENAI.cost.usage(Classification(endpoint="chat.completions", wire_format="openai-api"), headers(), body)
    assert usage_tuple(u) == (7, 3, 10, None, None, "length")


def test_openai_chat_tool_calls_finish_reason() -> None:
    body = j({"choices": [{"finish_reason": "tool_calls"}, {"finish_reason": "stop"}]})
    u = OPENAI.cost.usage(Classification(endpoint="chat.completions", wire_format="openai-api"), headers(), body)
    assert usage_tuple(u) == (None, None, None, None, None, "tool_calls")


def test_openai_responses_usage() -> None:
    body = j(
        {
            "object": "response",
            "status": "completed",
            "incomplete_details": None,
            "usage": {
                "input_tokens": 36,
                "input_tokens_details": {"cached_tokens": 16},
                "output_tokens": 87,
                "output_tokens_details": {"reasoning_tokens": 40},
                "total_tokens": 123,
            },
        }
    )
    u = OPENAI.cost.usage(Classification(endpoint="responses", wire_format="openai-api"), headers(), body)
    assert usage_tuple(u) == (36, 87, 123, 16, 40, "completed")


def test_openai_responses_incomplete_reason() -> None:
    body = j(
        {
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 5, "output_tokens": 9},
        }
    )
    u = OPENAI.cost.usage(Classification(endpoint="responses", wire_format="openai-api"), headers(), body)
    assert usage_tuple(u) == (5, 9, 14, None, None, "max_output_tokens")


def test_openai_embeddings_usage() -> None:
    body = j({"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    u = OPENAI.cost.usage(Classification(endpoint="embeddings", wire_format="openai-api"), headers(), body)
    assert usage_tuple(u) == (8, 0, 8, None, None, None)


def test_openai_error_body_has_no_usage() -> None:
    body = j({"error": {"message": "x", "type": "invalid_request_error", "code": "invalid_api_key"}})
    assert (
        usage_tuple(
            OPENAI.cost.usage(Classification(endpoint="chat.completions", wire_format="openai-api"), headers(), body)
        )
        == EMPTY_USAGE
    )


@pytest.mark.parametrize(
    "body",
    [
        {"usage": {"prompt_tokens": "many", "completion_tokens": 1.5, "total_tokens": None}},
        {"usage": {"prompt_tokens_details": "x", "completion_tokens_details": [1]}},
        {"usage": "lots", "choices": "none"},
        {"usage": [], "choices": [None]},
        {"choices": [{"finish_reason": 1}]},
    ],
)
def test_openai_usage_wrong_types_are_none(body: dict) -> None:
    for endpoint in ("chat.completions", "responses"):
        assert (
            usage_tuple(
                OPENAI.cost.usage(Classification(endpoint=endpoint, wire_format="openai-api"), headers(), j(body))
            )
            == EMPTY_USAGE
        )


def test_openai_usage_numeric_strings_are_read() -> None:
    body = j({"usage": {"prompt_tokens": "12", "completion_tokens": "3"}})
    u = OPENAI.cost.usage(Classification(endpoint="chat.completions", wire_format="openai-api"), headers(), body)
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (12, 3, 15)


def test_openai_usage_odd_digit_string_does_not_raise() -> None:
    body = j({"usage": {"prompt_tokens": "²", "completion_tokens": 1}})
    u = OPENAI.cost.usage(Classification(endpoint="chat.completions", wire_format="openai-api"), headers(), body)
    assert u.input_tokens is None


def test_openai_presented() -> None:
    assert OPENAI.credentials.caller.presented(headers(("Authorization", "Bearer sk-abc")), {}) == [
        Presented("sk-abc", "authorization")
    ]
    assert OPENAI.credentials.caller.presented(headers(("authorization", "Basic x")), {}) == []
    assert OPENAI.credentials.caller.presented(headers(), {}) == []
    # A `key` query parameter is not an OpenAI credential position.
    assert OPENAI.credentials.caller.presented(headers(), {"key": "sk-abc"}) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/batches", {"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        ("/v1/threads/runs", {"assistant_id": "asst_1"}),
        ("/v1/threads/thread_1/runs", {"assistant_id": "asst_1"}),
        ("/v1/threads/thread_1/runs/run_1/submit_tool_outputs", {"tool_outputs": []}),
        ("/v1/responses", {"prompt": {"id": "pmpt_1"}, "input": "hi"}),
        ("/v1/moderations", {"input": "hi"}),
        ("/v1/images/generations", {"prompt": "a cat"}),
    ],
)
def test_openai_a_call_whose_model_the_provider_takes_from_elsewhere_has_its_model_unread(
    path: str, body: dict
) -> None:
    c = OPENAI.classify("POST", path, body)
    assert (c.model, c.unread) == (None, ("model",))


@pytest.mark.parametrize(
    ("method", "path", "body", "model"),
    [
        ("POST", "/v1/threads/thread_1/runs", {"assistant_id": "asst_1", "model": "gpt-4o"}, "gpt-4o"),
        ("POST", "/v1/moderations", {"input": "hi", "model": "omni-moderation-latest"}, "omni-moderation-latest"),
        ("POST", "/v1/responses/resp_1/cancel", {}, None),  # no call of a model
        ("POST", "/v1/batches/batch_1/cancel", {}, None),
        ("GET", "/v1/batches", None, None),
        ("POST", "/v1/chat/completions/chatcmpl_1", {"metadata": {}}, None),
    ],
)
def test_openai_a_call_that_names_its_model_or_calls_none_reads_as_it_is(
    method: str, path: str, body: dict | None, model: str | None
) -> None:
    c = OPENAI.classify(method, path, body)
    assert (c.model, c.unread) == (model, ())
