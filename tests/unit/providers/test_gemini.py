"""Gemini: classification, request facts and usage; plain data in, plain data out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.gemini_generate.answer import usage_from_object
from tollgate.formats.request_facts import Classification
from tollgate.providers.credentials import Presented

from .common import (
    EMPTY_USAGE,
    GEMINI,
    GEMINI_VERSIONS,
    NO_FACTS,
    classify,
    facts,
    headers,
    j,
    usage_tuple,
)


@pytest.mark.parametrize("version", GEMINI_VERSIONS)
@pytest.mark.parametrize(
    ("method", "stream"),
    [
        ("generateContent", False),
        ("streamGenerateContent", True),
        ("countTokens", False),
        ("embedContent", False),
        ("batchEmbedContents", False),
    ],
)
def test_gemini_model_call(version: str, method: str, stream: bool) -> None:
    c = classify(GEMINI, "POST", f"/{version}/models/gemini-2.0-flash-001:{method}", j({}))
    assert c.endpoint == method
    assert c.model == "gemini-2.0-flash-001"
    assert c.wire_format == "gemini-generate"
    assert c.facts.stream is stream


@pytest.mark.parametrize("version", GEMINI_VERSIONS)
def test_gemini_tuned_model(version: str) -> None:
    c = classify(GEMINI, "POST", f"/{version}/tunedModels/my-tuned-model-abc123:generateContent", j({"contents": []}))
    assert c.endpoint == "generateContent"
    assert c.model == "my-tuned-model-abc123"
    assert c.facts.message_count == 0


@pytest.mark.parametrize("version", GEMINI_VERSIONS)
def test_gemini_models_get(version: str) -> None:
    c = classify(GEMINI, "GET", f"/{version}/models/gemini-1.5-pro-002", None)
    assert c.endpoint == "models.get"
    assert c.model == "gemini-1.5-pro-002"
    assert facts(c) == NO_FACTS


@pytest.mark.parametrize("version", GEMINI_VERSIONS)
def test_gemini_model_listing(version: str) -> None:
    c = classify(GEMINI, "GET", f"/{version}/models", None)
    assert c.endpoint == "models"
    assert c.model is None


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1beta/cachedContents", "cachedContents"),
        ("/v1beta/files/abc-123", "files"),
        ("/v1beta/tunedModels", "tunedModels"),
    ],
)
def test_gemini_other_paths(path: str, endpoint: str | None) -> None:
    c = classify(GEMINI, "GET", path, None)
    assert c.endpoint == endpoint
    assert c.model is None


def test_gemini_generate_content_facts() -> None:
    body = j(
        {
            "contents": [
                {"role": "user", "parts": [{"text": "a"}]},
                {"role": "model", "parts": [{"text": "b"}]},
                {"role": "user", "parts": [{"text": "c"}]},
            ],
            "systemInstruction": {"parts": [{"text": "secret"}]},
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "generationConfig": {"maxOutputTokens": 300, "temperature": 0.1},
        }
    )
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.5-pro:generateContent", body)
    assert facts(c) == (3, True, True, False, 300)


def test_gemini_snake_case_body() -> None:
    body = j(
        {
            "contents": [{"parts": [{"text": "a"}]}],
            "system_instruction": {"parts": [{"text": "s"}]},
            "generation_config": {"max_output_tokens": 12},
        }
    )
    c = classify(GEMINI, "POST", "/v1/models/gemini-2.0-flash:streamGenerateContent", body)
    assert facts(c) == (1, True, False, True, 12)


def test_gemini_minimal_body() -> None:
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.0-flash:generateContent", j({"contents": [{"parts": []}]}))
    assert facts(c) == (1, False, False, False, None)


def test_gemini_model_call_without_body_still_has_model_and_stream() -> None:
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", None)
    assert (c.endpoint, c.model) == ("streamGenerateContent", "gemini-2.0-flash")
    assert facts(c) == (None, None, None, True, None)


@pytest.mark.parametrize(
    "body",
    [
        {"generationConfig": {"maxOutputTokens": 5}, "generation_config": {"maxOutputTokens": 50000}},
        {"generationConfig": {"maxOutputTokens": 5, "max_output_tokens": 50000}},
        {"systemInstruction": {}, "system_instruction": {"parts": [{"text": "s"}]}},
    ],
)
def test_gemini_a_field_under_both_its_names_is_refused(body: dict) -> None:
    with pytest.raises(Unreadable, match="sets both"):
        GEMINI.classify("POST", "/v1beta/models/gemini-2.0-flash:generateContent", body)


def test_gemini_wrong_types_in_body() -> None:
    body = j({"contents": "x", "generationConfig": [1], "systemInstruction": "", "tools": 0})
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.0-flash:generateContent", body)
    assert facts(c) == (None, False, False, False, None)


@pytest.mark.parametrize("version", GEMINI_VERSIONS)
def test_gemini_openai_compatible_chat(version: str) -> None:
    body = j(
        {
            "model": "gemini-2.0-flash",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "stream": True,
            "max_tokens": 99,
        }
    )
    c = classify(GEMINI, "POST", f"/{version}/openai/chat/completions", body)
    assert c.endpoint == "chat.completions"
    assert c.model == "gemini-2.0-flash"
    assert c.wire_format == "openai-api"
    assert facts(c) == (2, True, False, True, 99)


def test_gemini_openai_compatible_embeddings_and_models() -> None:
    c = classify(GEMINI, "POST", "/v1beta/openai/embeddings", j({"model": "text-embedding-004", "input": "x"}))
    assert (c.endpoint, c.model, c.wire_format) == ("embeddings", "text-embedding-004", "openai-api")
    c = classify(GEMINI, "GET", "/v1beta/openai/models", None)
    assert (c.endpoint, c.model, c.wire_format) == ("models", None, "openai-api")


def test_gemini_native_usage() -> None:
    body = j(
        {
            "candidates": [{"content": {"parts": [{"text": "secret"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 20,
                "totalTokenCount": 45,
                "cachedContentTokenCount": 4,
                "thoughtsTokenCount": 15,
            },
        }
    )
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", None)
    # output_tokens counts thinking too (15), as OpenAI's completion_tokens does.
    assert usage_tuple(GEMINI.cost.usage(c, headers(), body)) == (10, 35, 45, 4, 15, "STOP")


def test_gemini_tool_use_prompt_is_input() -> None:
    # A search's or code execution's results fed back to the model are billed as input.
    body = j(
        {
            "candidates": [{"content": {"parts": [{"text": "Paris"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 12,
                "toolUsePromptTokenCount": 340,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 360,
            },
        }
    )
    c = classify(GEMINI, "POST", "/v1beta/models/gemini-2.5-flash:generateContent", None)
    assert usage_tuple(GEMINI.cost.usage(c, headers(), body)) == (352, 8, 360, None, 5, "STOP")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"promptTokenCount": 2, "toolUsePromptTokenCount": 7, "totalTokenCount": 9}, (9, None, 9)),
        ({"toolUsePromptTokenCount": 7, "candidatesTokenCount": 1, "totalTokenCount": 8}, (7, 1, 8)),
        # A count given that cannot be read leaves its side unknown: never taken for none.
        ({"promptTokenCount": 2, "toolUsePromptTokenCount": "many", "candidatesTokenCount": 1}, (None, 1, None)),
        ({"promptTokenCount": 2, "candidatesTokenCount": 1, "thoughtsTokenCount": 1.5}, (2, None, None)),
        ({"promptTokenCount": 2, "toolUsePromptTokenCount": None, "candidatesTokenCount": 1}, (2, 1, 3)),
    ],
)
def test_gemini_usage_sides_are_their_counts_summed(meta: dict, expected: tuple) -> None:
    u = usage_from_object({"usageMetadata": meta})
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == expected


def test_gemini_usage_without_candidates_count() -> None:
    # All output went to thinking: candidatesTokenCount is left out.
    body = j(
        {
            "candidates": [{"finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 25, "thoughtsTokenCount": 15},
        }
    )
    u = GEMINI.cost.usage(Classification(endpoint="generateContent", wire_format="gemini-generate"), headers(), body)
    assert usage_tuple(u) == (10, 15, 25, None, 15, "MAX_TOKENS")


def test_gemini_usage_total_computed() -> None:
    body = j({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}})
    u = GEMINI.cost.usage(Classification(endpoint="generateContent", wire_format="gemini-generate"), headers(), body)
    assert usage_tuple(u) == (3, 4, 7, None, None, None)


def test_gemini_usage_from_object_is_the_stream_element_parser() -> None:
    u = usage_from_object({"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}})
    assert usage_tuple(u) == (1, 2, 3, None, None, None)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}}, id="error body"),
        pytest.param(
            {
                "usageMetadata": {"promptTokenCount": "x", "candidatesTokenCount": None},
                "candidates": [{"finishReason": 3}],
            },
            id="wrong types",
        ),
        pytest.param({"usageMetadata": [1, 2], "candidates": "no"}, id="wrong shapes"),
    ],
)
def test_gemini_answer_without_usage_it_can_read_has_none(answer: dict[str, Any]) -> None:
    generate = Classification(endpoint="generateContent", wire_format="gemini-generate")
    assert usage_tuple(GEMINI.cost.usage(generate, headers(), j(answer))) == EMPTY_USAGE


def test_gemini_openai_compatible_usage() -> None:
    c = classify(GEMINI, "POST", "/v1beta/openai/chat/completions", j({"model": "gemini-2.0-flash", "messages": []}))
    body = j(
        {
            "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
        }
    )
    assert usage_tuple(GEMINI.cost.usage(c, headers(), body)) == (4, 6, 10, None, None, "stop")


# A thinking model's usage on the OpenAI-compatible endpoint: completion_tokens leave out the
# thoughts (completion_tokens_details.reasoning_tokens), which its total holds; Gemini bills them as output.
THOUGHTS_BESIDE = {"prompt_tokens": 1240, "completion_tokens": 4, "total_tokens": 2107,
                   "completion_tokens_details": {"reasoning_tokens": 863}}  # fmt: skip


def test_gemini_openai_compatible_thoughts_are_output() -> None:
    c = classify(GEMINI, "POST", "/v1beta/openai/chat/completions", j({"model": "gemini-2.5-flash", "messages": []}))
    answer = j({"choices": [{"finish_reason": "stop"}], "usage": THOUGHTS_BESIDE})
    u = GEMINI.cost.usage(c, headers(), answer)
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens) == (1240, 867, 863, 2107)
    reader = GEMINI.cost.usage_reader(c, headers(("content-type", "text/event-stream")))
    chunk = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": THOUGHTS_BESIDE}
    reader.feed(f"data: {json.dumps(chunk)}\n\n".encode())
    reader.feed(b"data: [DONE]\n\n")
    u = reader.result()
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.total_tokens) == (1240, 867, 863, 2107)
    # Where its total says the completion held them, they are not counted twice.
    held = j({"choices": [], "usage": {**THOUGHTS_BESIDE, "completion_tokens": 867}})
    assert GEMINI.cost.usage(c, headers(), held).output_tokens == 867
    assert GEMINI.cost.billed_usage(c, GEMINI.cost.usage(c, headers(), answer)).output_tokens == 867


def test_gemini_presented_in_each_position() -> None:
    assert GEMINI.credentials.caller.presented(headers(("X-Goog-Api-Key", "AIza-h")), {}) == [
        Presented("AIza-h", "x-goog-api-key")
    ]
    assert GEMINI.credentials.caller.presented(headers(), {"key": "AIza-q"}) == [Presented("AIza-q", "query:key")]
    assert GEMINI.credentials.caller.presented(headers(("Authorization", "Bearer ya29.tok")), {}) == [
        Presented("ya29.tok", "authorization")
    ]
    both = GEMINI.credentials.caller.presented(
        headers(("x-goog-api-key", " AIza-h "), ("authorization", "Bearer b")), {"key": "AIza-q"}
    )
    assert both == [
        Presented("AIza-h", "x-goog-api-key"),
        Presented("b", "authorization"),
        Presented("AIza-q", "query:key"),
    ]
    assert GEMINI.credentials.caller.presented(headers(("x-goog-api-key", "   ")), {"key": ""}) == []


@pytest.mark.parametrize(
    "query",
    [
        "alt=sse",
        "alt=json",
        "%24alt=json%3Benum-encoding%3Dint",  # Google's REST clients
        "prettyPrint=false&%24.xgafv=2",
        "",
    ],
)
def test_gemini_model_call_query_asking_for_an_answer_tollgate_reads(query: str) -> None:
    c = GEMINI.classify("POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", {}, query)
    assert (c.endpoint, c.model) == ("streamGenerateContent", "gemini-2.0-flash")


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("fields=candidates", "partial answer"),
        ("alt=sse&%24fields=candidates.content", "partial answer"),
        ("Fields=candidates", "partial answer"),
        ("alt=proto", "answer format"),
        ("%24alt=media", "answer format"),
        ("alt=sse&alt=proto", "answer format"),
        ("callback=f", "JSONP"),
        ("alt=sse;fields=candidates", "partial answer"),  # ";" separates parameters too
    ],
)
def test_gemini_model_call_query_asking_for_an_answer_without_readable_usage_is_refused(query: str, why: str) -> None:
    with pytest.raises(Unreadable, match=why):
        GEMINI.classify("POST", "/v1beta/models/gemini-2.0-flash:generateContent", {}, query)
    with pytest.raises(Unreadable, match=why):  # the OpenAI-compatible API's answers are read too
        GEMINI.classify("POST", "/v1beta/openai/chat/completions", {"model": "gemini-2.0-flash"}, query)
    # Elsewhere the answer is not read for usage: a file's bytes come with alt=media.
    assert GEMINI.classify("GET", "/v1beta/files/abc:download", None, query).endpoint == "files"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("%24httpMethod=POST", "another method"),
        ("$HTTPMETHOD=POST", "another method"),
        ("alt=sse;$httpMethod=GET", "another method"),
        ("%24ct=application%2Fx-protobuf", "another Content-Type"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1beta/models/gemini-2.0-flash:generateContent"),  # a POST to Google: facts unread
        ("POST", "/v1beta/models/gemini-2.0-flash:countTokens"),
        ("POST", "/v1beta/files/abc"),
        ("POST", "/upload/v1beta/files"),
        ("POST", "/v1beta/openai/chat/completions"),
    ],
)
def test_gemini_query_asking_google_to_read_the_request_otherwise_is_refused_on_every_path(
    method: str, path: str, query: str, why: str
) -> None:
    with pytest.raises(Unreadable, match=why):
        GEMINI.classify(method, path, None, query)


def test_gemini_the_service_tier_asked_for_is_read_exactly() -> None:
    path = "/v1beta/models/gemini-3.8-flash-tts:generateContent"
    facts = GEMINI.classify("POST", path, {"contents": [], "serviceTier": "SERVICE_TIER_PRIORITY"}).facts
    assert facts.service_tier == "SERVICE_TIER_PRIORITY"  # as written, for the policy
    assert facts.price_context() == (("service_tier", "priority"),)  # as the price table names it
    with pytest.raises(Unreadable, match="both 'serviceTier' and 'service_tier'"):
        GEMINI.classify("POST", path, {"serviceTier": "flex", "service_tier": "priority"})
    with pytest.raises(Unreadable, match="'serviceTier' is not a string"):
        GEMINI.classify("POST", path, {"serviceTier": 2})


def test_gemini_answer_names_its_service_tier_in_a_header() -> None:
    assert b"x-gemini-service-tier" in GEMINI.cost.response_headers
    assert GEMINI.cost.answer_service_tier({"x-gemini-service-tier": "standard"}) == "standard"
    assert GEMINI.cost.answer_service_tier({}) is None


def test_gemini_field_mask_header_is_refused() -> None:
    with pytest.raises(Unreadable, match="X-Goog-FieldMask"):
        GEMINI.check_headers({b"x-goog-fieldmask": b"candidates"})
    GEMINI.check_headers({b"x-goog-api-key": b"k"})


@pytest.mark.parametrize("content_type", [b"application/x-protobuf", b"application/vnd.google.Protobuf; proto=x"])
def test_gemini_body_declared_protobuf_is_refused(content_type: bytes) -> None:
    with pytest.raises(Unreadable, match="declared protobuf"):
        GEMINI.check_headers({b"content-type": content_type})
    GEMINI.check_headers({b"content-type": b"application/json; charset=utf-8"})
