"""Provider modules: hosts, classification, model extraction, request facts, usage, refusals and
credential positions. Plain data in, plain data out: no proxy involved."""

from __future__ import annotations

import base64
import json
import re
import string
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from tollgate.call import Classification, RequestFacts, Usage
from tollgate.exact_reading import Unreadable, as_int, count
from tollgate.json_codec import encode_json, parse_json, read_request_json
from tollgate.providers import PROVIDERS, allow_hosts, provider_for
from tollgate.providers import anthropic as anthropic_mod
from tollgate.providers import base as base_mod
from tollgate.providers import bedrock as bedrock_mod
from tollgate.providers import gemini as gemini_mod
from tollgate.providers import openai as openai_mod
from tollgate.providers.base import (
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_SIGNATURE,
    MISCONFIGURED,
    NO_UPSTREAM_CREDENTIAL,
    POLICY_DENIED,
    STATUS,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    Presented,
    bearer,
)
from tollgate.raw_headers import decoded, header_index, with_header
from tollgate.usage_readers import add_totals

OPENAI = PROVIDERS["openai"]
GEMINI = PROVIDERS["gemini"]
ANTHROPIC = PROVIDERS["anthropic"]
BEDROCK = PROVIDERS["bedrock"]


def classify(provider: Any, method: str, target: str, body: bytes | None) -> Classification:
    """A request as the Classify stage hands it over: its path and query apart, its body parsed once."""
    path, _, query = target.partition("?")
    return provider.classify(method, path, read_request_json(body), query)


REASONS = (
    UNAUTHENTICATED,
    POLICY_DENIED,
    NO_UPSTREAM_CREDENTIAL,
    MISCONFIGURED,
    INVALID_SIGNATURE,
    INTERNAL_ERROR,
    UPSTREAM_UNREACHABLE,
    UPSTREAM_TIMEOUT,
    BAD_REQUEST,
    AUDIT_UNAVAILABLE,
)


def bedrock_model(raw_path: str) -> str | None:
    """The model Bedrock's classification reads from a raw path (the query is not part of it)."""
    return classify(PROVIDERS["bedrock"], "POST", raw_path.split("?", 1)[0], None).model


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in pairs:
        h.add(name, value)
    return h


def facts(c: Classification) -> tuple:
    f = c.facts
    return (f.message_count, f.has_system, f.has_tools, f.stream, f.max_tokens)


NO_FACTS = (None, None, None, None, None)


# --- hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.openai.com", 443, "openai"),
        ("API.OpenAI.com", 443, "openai"),
        ("generativelanguage.googleapis.com", 443, "gemini"),
        ("api.anthropic.com", 443, "anthropic"),
        ("bedrock-runtime.us-east-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime.eu-central-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime-fips.us-east-1.amazonaws.com", 443, "bedrock"),
        ("api.openai.com", 80, "openai"),  # refused as plain HTTP, not passed by
        ("api.openai.com", 8443, "openai"),
        ("api.openai.com.", 443, "openai"),
        ("API.OPENAI.COM.", 443, "openai"),
        ("Bedrock-Runtime.US-East-1.amazonaws.com.", 443, "bedrock"),
        ("api.openai.com..", 443, None),
        ("api.openai.com.evil.example", 443, None),
        ("evilapi.openai.com", 443, None),
        ("xapi.anthropic.com", 443, None),
        ("files.openai.com", 443, None),
        ("bedrock.us-east-1.amazonaws.com", 443, None),  # control plane, not runtime
        ("bedrock-agent-runtime.us-east-1.amazonaws.com", 443, None),
        ("bedrock-runtime.us-east-1.amazonaws.com.evil.example", 443, None),
        ("s3.amazonaws.com", 443, None),
        ("example.com", 443, None),
        ("aiplatform.googleapis.com", 443, None),
    ],
)
def test_provider_for(host: str, port: int, expected: str | None) -> None:
    provider = provider_for(host)
    assert (provider.name if provider else None) == expected


@pytest.mark.parametrize(
    ("address", "decrypted"),
    [
        ("api.openai.com:443", True),
        ("API.OpenAI.com.:443", True),
        ("api.openai.com:80", True),
        ("generativelanguage.googleapis.com:8443", True),
        ("bedrock-runtime-fips.us-east-1.amazonaws.com.:443", True),
        ("api.anthropic.com:443", True),
        ("api.openai.com.evil.example:443", False),
        ("evilapi.openai.com:443", False),
        ("example.com:443", False),
    ],
)
def test_allow_hosts_decrypt_every_provider_host_on_any_port(address: str, decrypted: bool) -> None:
    # As mitmproxy's next_layer matches them: re.search, ignoring case.
    assert any(re.search(pattern, address, re.IGNORECASE) for pattern in allow_hosts()) is decrypted
    assert sorted(PROVIDERS) == ["anthropic", "bedrock", "gemini", "openai"]


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("bedrock-runtime.us-east-1.amazonaws.com", "us-east-1"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("bedrock.us-east-1.amazonaws.com", None),
        ("api.openai.com", None),
    ],
)
def test_bedrock_region_of(host: str, region: str | None) -> None:
    assert bedrock_mod.region_of(host) == region


def test_side_headers() -> None:
    assert OPENAI.side_header == "X-OpenAI-Key"
    assert GEMINI.side_header == "X-Gemini-Key"
    assert ANTHROPIC.side_header == "X-Anthropic-Key"
    assert BEDROCK.side_header == "X-AWS-Bearer-Token"


# --- base helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        (b"", None),
        (b"{}", {}),
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", None),
        (b'"text"', None),
        (b"42", None),
        (b"null", None),
        (b'{"a": ', None),
        (b"not json", None),
        (b"\xff\xfe\x00garbage", None),
        (b"\xef\xbb\xbf{}", {}),  # a UTF-8 BOM is accepted
        ('{"m": "grüß"}'.encode(), {"m": "grüß"}),
        ('{"m": "grüß"}'.encode("utf-16-le"), {"m": "grüß"}),  # as json.loads detects it
        ('{"m": "grüß"}'.encode("utf-32-le"), {"m": "grüß"}),
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
        (b'{"n": ' + b"9" * 5000 + b"}", None),
    ],
)
def test_parse_json(body: bytes | None, expected: Any) -> None:
    assert parse_json(body) == expected
    assert read_request(body) == (expected if expected is not None or not body else "refused")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"model": "gpt-4o-mini", "model": "gpt-5"}', "repeats a key"),
        (b'{"a": {"b": 1, "b": 2}}', "repeats a key"),
        (b'{"m": "x\xffy"}', "not UTF-8"),
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
        (b"[1]", "not a JSON object"),
        (b'{"a": 1} {"b": 2}', "not one JSON object"),
        (b"model=gpt-5", "not a JSON object"),
    ],
)
def test_an_unreadable_request_body_is_refused_with_the_reason(body: bytes, why: str) -> None:
    with pytest.raises(Unreadable, match=why):
        read_request_json(body)


def read_request(body: bytes | None) -> Any:
    """A request body as Tollgate reads it: its object, None for no body, "refused" when unreadable."""
    try:
        return read_request_json(body)
    except Unreadable:
        return "refused"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"seed": 123456789012345678901234567890}', {"seed": 123456789012345678901234567890}),
        (b'{"n": -9223372036854775809}', {"n": -9223372036854775809}),
        (b'{"m": "\\ud800x"}', {"m": "\ud800x"}),  # a lone surrogate, as the client escaped it
        (b' \r\n{"a": 1} \t\n', {"a": 1}),
        (b'{"a": 1} x', None),
        (b'{"a": 1}{}', None),
        (b'{"a": 1,}', None),
        (b'{"a": "\xff"}', None),  # not UTF-8
    ],
)
def test_read_request_json_reads_as_the_standard_library_does(body: bytes, expected: Any) -> None:
    assert read_request(body) == (expected if expected is not None else "refused")
    assert json.loads(body) == expected if expected is not None else True


def test_answers_read_integers_beyond_64_bits_as_floats_and_usage_does_not_count_them() -> None:
    assert parse_json(b'{"n": 18446744073709551615, "m": 18446744073709551616}') == {
        "n": 18446744073709551615,
        "m": 1.8446744073709552e19,
    }
    assert openai_mod.usage_of("chat.completions", b'{"usage": {"prompt_tokens": 18446744073709551616}}') == Usage()


def test_a_rewritten_request_keeps_what_orjson_would_not_write_as_it_came() -> None:
    body = (
        b'{"a":NaN,"b":-Infinity,"c":1e400,"d":123456789012345678901234567890,"e":"\\udcff","f":"gr\xc3\xbc\xc3\x9f"}'
    )
    parsed = read_request_json(body)
    assert parsed is not None and parsed["a"] != parsed["a"] and parsed["b"] == float("-inf")
    assert encode_json(parsed) == (
        b'{"a":NaN,"b":-Infinity,"c":Infinity,"d":123456789012345678901234567890,"e":"\\udcff","f":"gr\\u00fc\\u00df"}'
    )
    assert encode_json({"f": "grüß", "n": [1, 2.5, None, True]}) == '{"f":"grüß","n":[1,2.5,null,true]}'.encode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6), st.booleans())
def test_a_request_body_round_trips_exactly(obj: dict[str, Any], ascii_only: bool) -> None:
    body = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    parsed = read_request_json(body)
    assert repr(parsed) == repr(json.loads(body))  # repr: 2**70 == float(2**70), and 0.0 == -0.0
    assert repr(json.loads(encode_json(parsed))) == repr(parsed)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (0, 0),
        ("12", 12),
        ("007", 7),
        (True, None),
        (False, None),
        (1.5, None),
        (2.0, None),
        ("1.5", None),
        ("-3", None),
        ("", None),
        (" 12", None),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_as_int(value: Any, expected: int | None) -> None:
    assert as_int(value) == expected


@pytest.mark.parametrize("value", ["²", "١٢³", "9" * 5000], ids=["superscript-two", "mixed-digits", "5000-digits"])
def test_as_int_never_raises(value: str) -> None:
    result = as_int(value)
    assert result is None or isinstance(result, int)


def test_count() -> None:
    assert count([1, 2, 3]) == 3
    assert count([]) == 0
    assert count("abc") is None
    assert count({"a": 1}) is None
    assert count(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer sk-abc", "sk-abc"),
        ("bearer sk-abc", "sk-abc"),
        ("BEARER   sk-abc  ", "sk-abc"),
        ("Bearer ", None),
        ("Bearer", None),
        ("Basic dXNlcjpwYXNz", None),
        ("AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/bedrock/aws4_request", None),
        ("sk-abc", None),
    ],
)
def test_bearer(value: str, expected: str | None) -> None:
    assert bearer(headers(("Authorization", value))) == expected


def test_bearer_absent() -> None:
    assert bearer(headers()) is None


def test_add_totals() -> None:
    assert add_totals(Usage(input_tokens=3, output_tokens=4)).total_tokens == 7
    assert add_totals(Usage(input_tokens=3, output_tokens=4, total_tokens=10)).total_tokens == 10
    assert add_totals(Usage(input_tokens=3)).total_tokens is None
    assert add_totals(Usage(output_tokens=3)).total_tokens is None


# --- OpenAI classification ------------------------------------------------------------------------


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
    assert c.wire_format == "openai"
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
    assert (c.endpoint, c.model, c.wire_format) == ("models", None, "openai")
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


# --- Gemini classification ------------------------------------------------------------------------

GEMINI_VERSIONS = ("v1", "v1beta", "v1alpha")


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
    assert c.wire_format is None
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
    assert c.wire_format == "openai"
    assert facts(c) == (2, True, False, True, 99)


def test_gemini_openai_compatible_embeddings_and_models() -> None:
    c = classify(GEMINI, "POST", "/v1beta/openai/embeddings", j({"model": "text-embedding-004", "input": "x"}))
    assert (c.endpoint, c.model, c.wire_format) == ("embeddings", "text-embedding-004", "openai")
    c = classify(GEMINI, "GET", "/v1beta/openai/models", None)
    assert (c.endpoint, c.model, c.wire_format) == ("models", None, "openai")


# --- Anthropic classification ---------------------------------------------------------------------


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
    assert (c.endpoint, c.model, c.wire_format) == ("messages", "claude-sonnet-4-20250514", None)
    assert facts(c) == (2, True, True, True, 1024)


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
    [
        ("POST", "/v1/messages", "messages"),
        ("POST", "/v1/messages/count_tokens", "messages.count_tokens"),
        ("POST", "/v1/messages/batches", "messages.batches"),
        ("GET", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d", "messages.batches"),
        ("POST", "/v1/complete", "completions"),
        ("GET", "/v1/models", "models"),
        ("GET", "/v1/models/claude-3-5-sonnet-20241022", "models"),
    ],
)
def test_anthropic_endpoints(method: str, path: str, endpoint: str) -> None:
    assert classify(ANTHROPIC, method, path, None).endpoint == endpoint


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
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "claude-opus-4-1", "openai")
    assert facts(c) == (2, True, False, False, None)


# --- Bedrock classification -----------------------------------------------------------------------

BEDROCK_OPS = ("invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens")
STREAMING_OPS = ("invoke-with-response-stream", "converse-stream")

BEDROCK_MODELS = [
    # (raw path segment(s), decoded model id)
    ("anthropic.claude-3-haiku-20240307-v1%3A0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("amazon.nova-lite-v1%3A0", "amazon.nova-lite-v1:0"),
    ("meta.llama3-8b-instruct-v1%3A0", "meta.llama3-8b-instruct-v1:0"),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2%3A0", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20241022-v2%3A0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Famazon.titan-text-express-v1",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6",
        "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprovisioned-model%2Fxyz789",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz789",
    ),
    # An ARN's ':' may come unencoded (its '/' may not: that is another path, refused).
    (
        "arn:aws:bedrock:us-east-1::foundation-model%2Famazon.titan-text-express-v1",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
    ),
    # Decoded exactly once.
    ("model%253Awith%252Fescapes", "model%3Awith%2Fescapes"),
    ("anthropic.claude-v2%25", "anthropic.claude-v2%"),
]


@pytest.mark.parametrize("op", BEDROCK_OPS)
@pytest.mark.parametrize(("segment", "model"), BEDROCK_MODELS)
def test_bedrock_model_from_raw_path(segment: str, model: str, op: str) -> None:
    path = f"/model/{segment}/{op}"
    c = classify(BEDROCK, "POST", path, None)
    assert c.endpoint == op
    assert c.model == model
    assert c.wire_format is None
    assert c.facts.stream is (op in STREAMING_OPS)
    assert bedrock_model(path) == model
    assert bedrock_model(path + "?x=1") == model


@pytest.mark.parametrize(
    "path",
    [
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/unknown-op",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0",
        "/model//converse",
        "/models/x/converse",
        "/model/arn:aws:bedrock:eu-west-1::foundation-model/mistral.mistral-large-2402-v1:0/invoke",
        "/model/x%2/converse",
        "/model/x%ff/converse",
        "/",
    ],
)
def test_bedrock_paths_that_are_no_operation_are_refused(path: str) -> None:
    with pytest.raises(Unreadable):
        bedrock_model(path)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/async-invoke", "async-invoke"),
        ("/async-invoke/arn%3Ax", "async-invoke"),
    ],
)
def test_bedrock_other_endpoints(path: str, endpoint: str | None) -> None:
    assert classify(BEDROCK, "GET", path, None).endpoint == endpoint


@pytest.mark.parametrize(
    "path",
    [
        "/guardrail/gr1/version/1/apply",
        "/guardrail/abcdef123456/version/DRAFT/apply",
        "/guardrail/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aguardrail%2Fabc/version/2/apply",
    ],
)
def test_bedrock_guardrail_apply(path: str) -> None:
    body = j({"source": "INPUT", "content": [{"text": {"text": "x"}}]})
    c = classify(BEDROCK, "POST", path, body)
    assert c.endpoint == "apply-guardrail"
    assert c.model is None
    assert facts(c) == NO_FACTS


def test_bedrock_openai_chat_completions() -> None:
    body = j(
        {
            "model": "openai.gpt-oss-120b-1:0",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "tools": [{"type": "function"}],
            "max_completion_tokens": 64,
            "stream": True,
        }
    )
    c = classify(BEDROCK, "POST", "/openai/v1/chat/completions", body)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "openai.gpt-oss-120b-1:0", "openai")
    assert facts(c) == (2, True, True, True, 64)


def test_bedrock_converse_facts() -> None:
    body = j(
        {
            "messages": [{"role": "user", "content": [{"text": "a"}]}] * 3,
            "system": [{"text": "secret"}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "t"}}]},
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.5},
        }
    )
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse", body)
    assert facts(c) == (3, True, True, False, 256)
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse-stream", body)
    assert facts(c) == (3, True, True, True, 256)


def test_bedrock_converse_minimal() -> None:
    body = j({"messages": [{"role": "user", "content": [{"text": "a"}]}]})
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse", body)
    assert facts(c) == (1, False, False, False, None)


def test_bedrock_invoke_claude_body() -> None:
    body = j(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 512,
            "system": "secret",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "tools": [{"name": "t"}],
        }
    )
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", body)
    assert facts(c) == (2, True, True, False, 512)
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream", body)
    assert facts(c) == (2, True, True, True, 512)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Amazon Nova
        (
            {
                "messages": [{"role": "user", "content": [{"text": "a"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"max_new_tokens": 100},
            },
            (1, True, False, False, 100),
        ),
        # Amazon Titan
        ({"inputText": "hello", "textGenerationConfig": {"maxTokenCount": 50}}, (1, False, False, False, 50)),
        # Meta Llama
        ({"prompt": "<s>[INST] hi [/INST]", "max_gen_len": 64}, (1, False, False, False, 64)),
        # Mistral
        ({"prompt": "<s>[INST] hi [/INST]", "max_tokens": 32}, (1, False, False, False, 32)),
        # OpenAI-style messages with a system role (e.g. gpt-oss via InvokeModel)
        (
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "max_tokens": 8},
            (2, True, False, False, 8),
        ),
        # Nothing recognisable
        ({"foo": "bar"}, (None, False, False, False, None)),
    ],
)
def test_bedrock_invoke_model_families(body: dict, expected: tuple) -> None:
    c = classify(BEDROCK, "POST", "/model/some.model-v1%3A0/invoke", j(body))
    assert facts(c) == expected


def test_bedrock_count_tokens_converse_input() -> None:
    body = j(
        {
            "input": {
                "converse": {
                    "messages": [{"role": "user", "content": [{"text": "a"}]}],
                    "system": [{"text": "s"}],
                }
            }
        }
    )
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens", body)
    assert c.endpoint == "count-tokens"
    assert c.model == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert facts(c) == (1, True, False, False, None)


def test_bedrock_count_tokens_empty_input() -> None:
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", j({"input": {}}))
    assert facts(c) == (None, False, False, False, None)


_CLAUDE_INVOKE = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 10,
    "system": "s",
    "messages": [{"role": "user", "content": "hi"}],
}


def test_bedrock_count_tokens_invoke_input_as_json_text() -> None:
    body = j({"input": {"invokeModel": {"body": json.dumps(_CLAUDE_INVOKE)}}})
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", body)
    assert facts(c) == (1, True, False, False, 10)


def test_bedrock_count_tokens_invoke_input_as_botocore_sends_it() -> None:
    encoded = base64.b64encode(json.dumps(_CLAUDE_INVOKE).encode()).decode()
    body = j({"input": {"invokeModel": {"body": encoded}}})
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", body)
    assert facts(c) == (1, True, False, False, 10)


@pytest.mark.parametrize("op", BEDROCK_OPS)
@pytest.mark.parametrize("body", [None, b""])
def test_bedrock_no_body_keeps_model_and_stream(op: str, body: bytes | None) -> None:
    c = classify(BEDROCK, "POST", f"/model/amazon.nova-lite-v1%3A0/{op}", body)
    assert (c.endpoint, c.model) == (op, "amazon.nova-lite-v1:0")
    assert facts(c) == (None, None, None, op in STREAMING_OPS, None)


def test_bedrock_wrong_types_in_converse() -> None:
    body = j({"messages": "x", "system": [], "inferenceConfig": "fast", "max_tokens": 5})
    c = classify(BEDROCK, "POST", "/model/m/converse", body)
    assert facts(c) == (None, False, False, False, 5)


# -- paths exactly as botocore builds them ----------------------------------------------------------


class _Sent(Exception):
    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(url)
        self.url = url
        self.body = body


@pytest.fixture(scope="module")
def bedrock_client() -> Any:
    botocore_session = pytest.importorskip("botocore.session")
    session = botocore_session.get_session()
    client = session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )

    def stop(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else (request.body or b"")
        raise _Sent(request.url, body)

    client.meta.events.register("before-send", stop)
    return client


def _sent(client: Any, operation: str, **kwargs: Any) -> tuple[str, bytes]:
    with pytest.raises(_Sent) as info:
        getattr(client, operation)(**kwargs)
    parts = urlsplit(info.value.url)
    return parts.path, info.value.body


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
@pytest.mark.parametrize(
    ("operation", "endpoint", "kwargs"),
    [
        (
            "converse",
            "converse",
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"maxTokens": 5},
            },
        ),
        (
            "converse_stream",
            "converse-stream",
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"maxTokens": 5},
            },
        ),
        ("invoke_model", "invoke", {"body": json.dumps(_CLAUDE_INVOKE).encode()}),
        (
            "invoke_model_with_response_stream",
            "invoke-with-response-stream",
            {"body": json.dumps(_CLAUDE_INVOKE).encode()},
        ),
        (
            "count_tokens",
            "count-tokens",
            {
                "input": {
                    "converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "s"}]}
                }
            },
        ),
    ],
)
def test_bedrock_paths_as_botocore_sends_them(
    bedrock_client: Any, model_id: str, operation: str, endpoint: str, kwargs: dict
) -> None:
    path, body = _sent(bedrock_client, operation, modelId=model_id, **kwargs)
    c = classify(BEDROCK, "POST", path, body)
    assert c.endpoint == endpoint
    assert c.model == model_id
    expected_max = None if operation == "count_tokens" else (5 if operation.startswith("converse") else 10)
    assert facts(c) == (1, True, False, endpoint in STREAMING_OPS, expected_max)


def test_bedrock_guardrail_as_botocore_sends_it(bedrock_client: Any) -> None:
    path, body = _sent(
        bedrock_client,
        "apply_guardrail",
        guardrailIdentifier="gr1",
        guardrailVersion="1",
        source="INPUT",
        content=[{"text": {"text": "x"}}],
    )
    assert classify(BEDROCK, "POST", path, body).endpoint == "apply-guardrail"


# --- usage ----------------------------------------------------------------------------------------


def usage_tuple(u: Usage) -> tuple:
    return (u.input_tokens, u.output_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens, u.finish_reason)


EMPTY_USAGE = (None, None, None, None, None, None)


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
    assert usage_tuple(OPENAI.usage(c, headers(), body)) == (100, 50, 150, 64, 32, "stop")


def test_openai_chat_usage_total_computed_when_missing() -> None:
    body = j({"choices": [{"finish_reason": "length"}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    u = OPENAI.usage(Classification(endpoint="chat.completions"), headers(), body)
    assert usage_tuple(u) == (7, 3, 10, None, None, "length")


def test_openai_chat_tool_calls_finish_reason() -> None:
    body = j({"choices": [{"finish_reason": "tool_calls"}, {"finish_reason": "stop"}]})
    u = OPENAI.usage(Classification(endpoint="chat.completions"), headers(), body)
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
    u = OPENAI.usage(Classification(endpoint="responses"), headers(), body)
    assert usage_tuple(u) == (36, 87, 123, 16, 40, "completed")


def test_openai_responses_incomplete_reason() -> None:
    body = j(
        {
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 5, "output_tokens": 9},
        }
    )
    u = OPENAI.usage(Classification(endpoint="responses"), headers(), body)
    assert usage_tuple(u) == (5, 9, 14, None, None, "max_output_tokens")


def test_openai_embeddings_usage() -> None:
    body = j({"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    u = OPENAI.usage(Classification(endpoint="embeddings"), headers(), body)
    assert usage_tuple(u) == (8, 0, 8, None, None, None)


def test_openai_error_body_has_no_usage() -> None:
    body = j({"error": {"message": "x", "type": "invalid_request_error", "code": "invalid_api_key"}})
    assert usage_tuple(OPENAI.usage(Classification(endpoint="chat.completions"), headers(), body)) == EMPTY_USAGE


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
        assert usage_tuple(OPENAI.usage(Classification(endpoint=endpoint), headers(), j(body))) == EMPTY_USAGE


def test_openai_usage_numeric_strings_are_read() -> None:
    body = j({"usage": {"prompt_tokens": "12", "completion_tokens": "3"}})
    u = OPENAI.usage(Classification(endpoint="chat.completions"), headers(), body)
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (12, 3, 15)


def test_openai_usage_odd_digit_string_does_not_raise() -> None:
    body = j({"usage": {"prompt_tokens": "²", "completion_tokens": 1}})
    u = OPENAI.usage(Classification(endpoint="chat.completions"), headers(), body)
    assert u.input_tokens is None


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
    assert usage_tuple(GEMINI.usage(c, headers(), body)) == (10, 35, 45, 4, 15, "STOP")


def test_gemini_usage_without_candidates_count() -> None:
    # All output went to thinking: candidatesTokenCount is left out.
    body = j(
        {
            "candidates": [{"finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 25, "thoughtsTokenCount": 15},
        }
    )
    u = GEMINI.usage(Classification(endpoint="generateContent"), headers(), body)
    assert usage_tuple(u) == (10, 15, 25, None, 15, "MAX_TOKENS")


def test_gemini_usage_total_computed() -> None:
    body = j({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}})
    u = GEMINI.usage(Classification(endpoint="generateContent"), headers(), body)
    assert usage_tuple(u) == (3, 4, 7, None, None, None)


def test_gemini_usage_from_object_is_the_stream_element_parser() -> None:
    u = gemini_mod.usage_from_object(
        {"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}}
    )
    assert usage_tuple(u) == (1, 2, 3, None, None, None)


def test_gemini_error_body_has_no_usage() -> None:
    body = j({"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}})
    assert usage_tuple(GEMINI.usage(Classification(endpoint="generateContent"), headers(), body)) == EMPTY_USAGE


def test_gemini_usage_wrong_types() -> None:
    body = j(
        {"usageMetadata": {"promptTokenCount": "x", "candidatesTokenCount": None}, "candidates": [{"finishReason": 3}]}
    )
    assert usage_tuple(GEMINI.usage(Classification(endpoint="generateContent"), headers(), body)) == EMPTY_USAGE
    body = j({"usageMetadata": [1, 2], "candidates": "no"})
    assert usage_tuple(GEMINI.usage(Classification(endpoint="generateContent"), headers(), body)) == EMPTY_USAGE


def test_gemini_openai_compatible_usage() -> None:
    c = classify(GEMINI, "POST", "/v1beta/openai/chat/completions", j({"model": "gemini-2.0-flash", "messages": []}))
    body = j(
        {
            "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
        }
    )
    assert usage_tuple(GEMINI.usage(c, headers(), body)) == (4, 6, 10, None, None, "stop")


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
    assert usage_tuple(ANTHROPIC.usage(c, headers(), body)) == (160, 20, 180, 100, None, "end_turn")


def test_anthropic_usage_without_cache() -> None:
    body = j({"stop_reason": "max_tokens", "usage": {"input_tokens": 12, "output_tokens": 30}})
    u = ANTHROPIC.usage(Classification(endpoint="messages"), headers(), body)
    assert usage_tuple(u) == (12, 30, 42, None, None, "max_tokens")


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
    u = ANTHROPIC.usage(Classification(endpoint="messages"), headers(), body)
    assert usage_tuple(u) == (12, 3, 15, 0, None, "tool_use")


def test_anthropic_count_tokens_usage() -> None:
    u = ANTHROPIC.usage(Classification(endpoint="messages.count_tokens"), headers(), j({"input_tokens": 42}))
    assert usage_tuple(u) == (42, None, None, None, None, None)


def test_anthropic_error_body_has_no_usage() -> None:
    body = j({"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    assert usage_tuple(ANTHROPIC.usage(Classification(endpoint="messages"), headers(), body)) == EMPTY_USAGE


def test_anthropic_usage_from_object() -> None:
    assert usage_tuple(anthropic_mod.usage_from_object(None)) == EMPTY_USAGE
    assert usage_tuple(anthropic_mod.usage_from_object({"output_tokens": 5})) == (None, 5, None, None, None, None)
    assert usage_tuple(anthropic_mod.usage_from_object({"input_tokens": 5, "cache_read_input_tokens": 2})) == (
        7,
        None,
        None,
        2,
        None,
        None,
    )


def test_bedrock_converse_usage() -> None:
    body = j(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "secret"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30, "cacheReadInputTokens": 5},
            "metrics": {"latencyMs": 100},
        }
    )
    c = classify(BEDROCK, "POST", "/model/amazon.nova-lite-v1%3A0/converse", None)
    # Bedrock counts cache reads apart from inputTokens; the audit's input_tokens has them all.
    assert usage_tuple(BEDROCK.usage(c, headers(), body)) == (15, 20, 30, 5, None, "end_turn")


def test_bedrock_converse_usage_total_computed() -> None:
    body = j({"stopReason": "max_tokens", "usage": {"inputTokens": 2, "outputTokens": 3}})
    u = BEDROCK.usage(Classification(endpoint="converse"), headers(), body)
    assert usage_tuple(u) == (2, 3, 5, None, None, "max_tokens")


def test_bedrock_invoke_usage_from_headers() -> None:
    h = headers(
        ("X-Amzn-Bedrock-Input-Token-Count", "12"),
        ("X-Amzn-Bedrock-Output-Token-Count", "34"),
        ("X-Amzn-Bedrock-Invocation-Latency", "500"),
    )
    body = j({"stop_reason": "end_turn", "usage": {"input_tokens": 999, "output_tokens": 999}})
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", None)
    assert usage_tuple(BEDROCK.usage(c, h, body)) == (12, 34, 46, None, None, "end_turn")


def test_bedrock_invoke_usage_cache_read_header() -> None:
    h = headers(
        ("x-amzn-bedrock-input-token-count", "100"),
        ("x-amzn-bedrock-output-token-count", "1"),
        ("x-amzn-bedrock-cache-read-input-token-count", "64"),
    )
    u = BEDROCK.usage(Classification(endpoint="invoke"), h, j({}))
    assert usage_tuple(u) == (100, 1, 101, 64, None, None)


def test_bedrock_invoke_usage_from_claude_body_without_headers() -> None:
    body = j(
        {"stop_reason": "end_turn", "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 2}}
    )
    u = BEDROCK.usage(Classification(endpoint="invoke"), headers(), body)
    assert usage_tuple(u) == (15, 2, 17, 5, None, "end_turn")


def test_bedrock_invoke_usage_headers_and_non_json_body() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "3"), ("x-amzn-bedrock-output-token-count", "4"))
    assert usage_tuple(BEDROCK.usage(Classification(endpoint="invoke"), h, b"\x89PNG...")) == (
        3,
        4,
        7,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"stop_reason": "end_turn"}, "end_turn"),  # Claude
        ({"stopReason": "end_turn", "output": {}}, "end_turn"),  # Nova
        ({"stop_reason": "stop", "generation": "x"}, "stop"),  # Llama
        ({"results": [{"completionReason": "FINISH"}]}, "FINISH"),  # Titan
        ({"outputs": [{"text": "x", "stop_reason": "length"}]}, "length"),  # Mistral
        ({"generations": [{"finish_reason": "COMPLETE"}]}, "COMPLETE"),  # Cohere
        ({"choices": [{"finish_reason": "stop"}]}, "stop"),  # OpenAI-style
        ({"completionReason": "LENGTH"}, "LENGTH"),
        ({"results": []}, None),
        ({"stop_reason": 1}, None),
        ({}, None),
    ],
)
def test_bedrock_invoke_finish_reason(body: dict, reason: str | None) -> None:
    assert bedrock_mod.invoke_finish_reason(body) == reason
    assert BEDROCK.usage(Classification(endpoint="invoke"), headers(), j(body)).finish_reason == reason


def test_bedrock_count_tokens_usage() -> None:
    u = BEDROCK.usage(Classification(endpoint="count-tokens"), headers(), j({"inputTokens": 7}))
    assert usage_tuple(u) == (7, None, None, None, None, None)


@pytest.mark.parametrize("endpoint", ["converse-stream", "invoke-with-response-stream", "apply-guardrail", None])
def test_bedrock_other_endpoints_have_no_body_usage(endpoint: str | None) -> None:
    body = j({"usage": {"inputTokens": 1, "outputTokens": 2}, "stopReason": "end_turn"})
    assert usage_tuple(BEDROCK.usage(Classification(endpoint=endpoint), headers(), body)) == EMPTY_USAGE


def test_bedrock_openai_usage() -> None:
    c = classify(BEDROCK, "POST", "/openai/v1/chat/completions", j({"model": "openai.gpt-oss-20b-1:0", "messages": []}))
    body = j(
        {
            "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 2}},
        }
    )
    assert usage_tuple(BEDROCK.usage(c, headers(), body)) == (5, 5, 10, None, 2, "stop")


def test_bedrock_usage_wrong_types() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "lots"), ("x-amzn-bedrock-output-token-count", "-1"))
    assert usage_tuple(BEDROCK.usage(Classification(endpoint="invoke"), h, b"[]")) == EMPTY_USAGE
    body = j({"usage": "x", "stopReason": ["end_turn"]})
    assert usage_tuple(BEDROCK.usage(Classification(endpoint="converse"), headers(), body)) == EMPTY_USAGE
    assert (
        usage_tuple(BEDROCK.usage(Classification(endpoint="count-tokens"), headers(), j({"inputTokens": "7x"})))
        == EMPTY_USAGE
    )


def test_bedrock_invoke_odd_digit_header_does_not_raise() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "²"))
    assert BEDROCK.usage(Classification(endpoint="invoke"), h, j({})).input_tokens is None


# --- refusals -----------------------------------------------------------------------------------


def test_status_per_reason() -> None:
    assert STATUS == {
        UNAUTHENTICATED: 401,
        POLICY_DENIED: 403,
        NO_UPSTREAM_CREDENTIAL: 500,
        MISCONFIGURED: 500,
        INVALID_SIGNATURE: 403,
        INTERNAL_ERROR: 500,
        UPSTREAM_UNREACHABLE: 502,
        UPSTREAM_TIMEOUT: 504,
        BAD_REQUEST: 400,
        AUDIT_UNAVAILABLE: 503,
    }


OPENAI_REFUSALS = {
    UNAUTHENTICATED: (401, "invalid_request_error", "invalid_api_key"),
    POLICY_DENIED: (403, "permission_denied", "policy_denied"),
    NO_UPSTREAM_CREDENTIAL: (500, "server_error", "no_upstream_credential"),
    MISCONFIGURED: (500, "server_error", "misconfigured"),
    INVALID_SIGNATURE: (403, "server_error", "invalid_signature"),
    INTERNAL_ERROR: (500, "server_error", "internal_error"),
    UPSTREAM_UNREACHABLE: (502, "server_error", "upstream_unreachable"),
    UPSTREAM_TIMEOUT: (504, "server_error", "upstream_timeout"),
    BAD_REQUEST: (400, "invalid_request_error", "bad_request"),
    AUDIT_UNAVAILABLE: (503, "server_error", "audit_unavailable"),
}
GEMINI_REFUSALS = {
    UNAUTHENTICATED: (401, "UNAUTHENTICATED"),
    POLICY_DENIED: (403, "PERMISSION_DENIED"),
    NO_UPSTREAM_CREDENTIAL: (500, "INTERNAL"),
    MISCONFIGURED: (500, "INTERNAL"),
    INVALID_SIGNATURE: (403, "UNAUTHENTICATED"),
    INTERNAL_ERROR: (500, "INTERNAL"),
    UPSTREAM_UNREACHABLE: (502, "UNAVAILABLE"),
    UPSTREAM_TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    BAD_REQUEST: (400, "INVALID_ARGUMENT"),
    AUDIT_UNAVAILABLE: (503, "UNAVAILABLE"),
}
ANTHROPIC_REFUSALS = {
    UNAUTHENTICATED: (401, "authentication_error"),
    POLICY_DENIED: (403, "permission_error"),
    NO_UPSTREAM_CREDENTIAL: (500, "api_error"),
    MISCONFIGURED: (500, "api_error"),
    INVALID_SIGNATURE: (403, "authentication_error"),
    INTERNAL_ERROR: (500, "api_error"),
    UPSTREAM_UNREACHABLE: (502, "api_error"),
    UPSTREAM_TIMEOUT: (504, "timeout_error"),
    BAD_REQUEST: (400, "invalid_request_error"),
    AUDIT_UNAVAILABLE: (503, "api_error"),
}
BEDROCK_REFUSALS = {
    UNAUTHENTICATED: (403, "UnrecognizedClientException"),
    POLICY_DENIED: (403, "AccessDeniedException"),
    NO_UPSTREAM_CREDENTIAL: (500, "InternalServerException"),
    MISCONFIGURED: (500, "InternalServerException"),
    INVALID_SIGNATURE: (403, "InvalidSignatureException"),
    INTERNAL_ERROR: (500, "InternalServerException"),
    UPSTREAM_UNREACHABLE: (502, "ServiceUnavailableException"),
    UPSTREAM_TIMEOUT: (504, "ModelTimeoutException"),
    BAD_REQUEST: (400, "ValidationException"),
    AUDIT_UNAVAILABLE: (503, "ServiceUnavailableException"),
}

MESSAGE = 'Tollgate: "no" — reasons: a, b'


def test_every_reason_has_a_status_and_an_entry_in_every_providers_error_table() -> None:
    """A table keyed by a literal string instead of the constant drifts from it when the constant
    changes, and a refusal for that reason then fails with a KeyError instead of answering."""
    defined = {
        value
        for name, value in vars(base_mod).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str) and re.fullmatch("[a-z_]+", value)
    }
    assert defined == set(STATUS) == set(REASONS)
    tables = {
        "openai": openai_mod._ERROR_TYPES,
        "gemini": gemini_mod._REASONS,
        "anthropic": anthropic_mod._ERROR_TYPES,
        "bedrock": bedrock_mod._ERRORS,
    }
    assert tables.keys() == PROVIDERS.keys()
    for name, table in tables.items():
        assert set(table) == defined, name


def _common_refusal_headers(refusal: Any, reason: str) -> None:
    assert refusal.headers["content-type"] == "application/json"
    assert refusal.headers["x-tollgate-error"] == reason


@pytest.mark.parametrize("reason", REASONS)
def test_openai_refusal(reason: str) -> None:
    status, kind, code = OPENAI_REFUSALS[reason]
    r = OPENAI.refusal(reason, MESSAGE)
    assert r.status == status
    _common_refusal_headers(r, reason)
    assert json.loads(r.body) == {"error": {"message": MESSAGE, "type": kind, "param": None, "code": code}}


@pytest.mark.parametrize("reason", REASONS)
def test_gemini_refusal(reason: str) -> None:
    status, text = GEMINI_REFUSALS[reason]
    r = GEMINI.refusal(reason, MESSAGE)
    assert r.status == status
    _common_refusal_headers(r, reason)
    assert json.loads(r.body) == {"error": {"code": status, "message": MESSAGE, "status": text}}


@pytest.mark.parametrize("reason", REASONS)
def test_anthropic_refusal(reason: str) -> None:
    status, kind = ANTHROPIC_REFUSALS[reason]
    r = ANTHROPIC.refusal(reason, MESSAGE)
    assert r.status == status
    _common_refusal_headers(r, reason)
    assert json.loads(r.body) == {"type": "error", "error": {"type": kind, "message": MESSAGE}}


@pytest.mark.parametrize("reason", REASONS)
def test_bedrock_refusal(reason: str) -> None:
    status, error_type = BEDROCK_REFUSALS[reason]
    r = BEDROCK.refusal(reason, MESSAGE)
    assert r.status == status
    _common_refusal_headers(r, reason)
    assert r.headers["x-amzn-errortype"] == error_type
    assert json.loads(r.body) == {"message": MESSAGE}


@pytest.mark.parametrize("provider", [OPENAI, GEMINI, ANTHROPIC])
@pytest.mark.parametrize("reason", REASONS)
def test_sdk_retry_hint(provider: Any, reason: str) -> None:
    # Refusals and a missing credential do not heal by retrying; an unreachable upstream may.
    r = provider.refusal(reason, "m")
    if STATUS[reason] < 502:
        assert r.headers["x-should-retry"] == "false"
    else:
        assert "x-should-retry" not in r.headers


@pytest.mark.parametrize("provider", list(PROVIDERS.values()), ids=list(PROVIDERS))
@pytest.mark.parametrize("reason", REASONS)
def test_refusal_body_is_json_and_keeps_any_message(provider: Any, reason: str) -> None:
    message = 'quote " backslash \\ newline \n unicode é ✓'
    body = json.loads(provider.refusal(reason, message).body)
    found = body["message"] if provider is BEDROCK else body["error"]["message"]
    assert found == message


# --- credentials ----------------------------------------------------------------------------------


def test_positions() -> None:
    assert OPENAI.key_positions == OPENAI.positions == ("authorization",)
    assert GEMINI.key_positions == GEMINI.positions == ("x-goog-api-key", "authorization", "query:key")
    assert ANTHROPIC.key_positions == ANTHROPIC.positions == ("x-api-key", "authorization")
    assert BEDROCK.key_positions == ("authorization",)
    assert BEDROCK.positions == ("authorization", "x-amz-security-token")


def test_openai_presented() -> None:
    assert OPENAI.presented(headers(("Authorization", "Bearer sk-abc")), {}) == [Presented("sk-abc", "authorization")]
    assert OPENAI.presented(headers(("authorization", "Basic x")), {}) == []
    assert OPENAI.presented(headers(), {}) == []
    # A `key` query parameter is not an OpenAI credential position.
    assert OPENAI.presented(headers(), {"key": "sk-abc"}) == []


def test_gemini_presented_in_each_position() -> None:
    assert GEMINI.presented(headers(("X-Goog-Api-Key", "AIza-h")), {}) == [Presented("AIza-h", "x-goog-api-key")]
    assert GEMINI.presented(headers(), {"key": "AIza-q"}) == [Presented("AIza-q", "query:key")]
    assert GEMINI.presented(headers(("Authorization", "Bearer ya29.tok")), {}) == [
        Presented("ya29.tok", "authorization")
    ]
    both = GEMINI.presented(headers(("x-goog-api-key", " AIza-h "), ("authorization", "Bearer b")), {"key": "AIza-q"})
    assert both == [
        Presented("AIza-h", "x-goog-api-key"),
        Presented("b", "authorization"),
        Presented("AIza-q", "query:key"),
    ]
    assert GEMINI.presented(headers(("x-goog-api-key", "   ")), {"key": ""}) == []


def test_anthropic_presented_in_each_position() -> None:
    assert ANTHROPIC.presented(headers(("X-Api-Key", "sk-ant-1")), {}) == [Presented("sk-ant-1", "x-api-key")]
    assert ANTHROPIC.presented(headers(("Authorization", "Bearer sk-ant-2")), {}) == [
        Presented("sk-ant-2", "authorization")
    ]


def test_bedrock_presented() -> None:
    assert BEDROCK.presented(headers(("Authorization", "Bearer ABSK-token")), {}) == [
        Presented("ABSK-token", "authorization")
    ]
    sigv4 = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc"
    )
    h = headers(("Authorization", sigv4), ("X-Amz-Security-Token", "session"), ("X-Amz-Date", "20240101T000000Z"))
    assert BEDROCK.presented(h, {}) == []


def test_credential_positions_as_headers_and_query_parameters() -> None:
    assert GEMINI.header_positions == {b"x-goog-api-key", b"authorization"}
    assert GEMINI.query_positions == ("key",)
    assert BEDROCK.header_positions == {b"authorization", b"x-amz-security-token"}
    assert ANTHROPIC.header_positions == {b"x-api-key", b"authorization"} and ANTHROPIC.query_positions == ()
    assert OPENAI.header_positions == {b"authorization"}


def test_injected_header_follows_the_wire_format() -> None:
    native = Classification()
    compat = Classification(wire_format="openai")
    assert OPENAI.injected("sk-real", compat) == ("authorization", "Bearer sk-real")
    assert GEMINI.injected("AIza-real", native) == ("x-goog-api-key", "AIza-real")
    assert GEMINI.injected("AIza-real", compat) == ("authorization", "Bearer AIza-real")
    assert ANTHROPIC.injected("sk-ant-real", native) == ("x-api-key", "sk-ant-real")
    assert ANTHROPIC.injected("sk-ant-real", compat) == ("authorization", "Bearer sk-ant-real")
    assert BEDROCK.injected("ABSK-real", native) == ("authorization", "Bearer ABSK-real")


# --- robustness: nothing a client or upstream sends raises ----------------------------------------

_FIELD_NAMES = [
    "model",
    "messages",
    "stream",
    "tools",
    "functions",
    "system",
    "instructions",
    "input",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "output_tokens_details",
    "choices",
    "finish_reason",
    "status",
    "incomplete_details",
    "reason",
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "maxOutputTokens",
    "max_output_tokens",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
    "thoughtsTokenCount",
    "candidates",
    "finishReason",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "stop_reason",
    "stopReason",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "cacheReadInputTokens",
    "inferenceConfig",
    "maxTokens",
    "max_new_tokens",
    "toolConfig",
    "converse",
    "invokeModel",
    "body",
    "inputText",
    "prompt",
    "textGenerationConfig",
    "maxTokenCount",
    "max_gen_len",
    "results",
    "generations",
    "outputs",
    "completionReason",
    "role",
]

# Strings are ASCII here: non-ASCII digit strings have their own tests above.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=string.printable, max_size=12)
    | st.sampled_from(["system", "developer", "user", "12", "0", "", "STOP", "end_turn"])
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), json_values, max_size=8)


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


json_bodies = (
    json_objects.map(_dump)
    | json_values.map(_dump)
    | st.binary(max_size=200)
    | json_objects.map(_dump).flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n]))
    | st.none()
)

PATHS = {
    "openai": [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/models",
        "/v1/files/file-1/content",
    ],
    "gemini": [
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1/models/gemini-2.0-flash:streamGenerateContent",
        "/v1alpha/models/gemini-2.0-flash:countTokens",
        "/v1beta/models/text-embedding-004:embedContent",
        "/v1beta/tunedModels/t1:generateContent",
        "/v1beta/models/gemini-2.0-flash",
        "/v1beta/models",
        "/v1beta/openai/chat/completions",
        "/v1beta/openai/embeddings",
    ],
    "anthropic": ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches", "/v1/complete", "/v1/models"],
    "bedrock": [
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
        "/model/amazon.nova-lite-v1%3A0/converse",
        "/model/amazon.nova-lite-v1%3A0/converse-stream",
        "/model/amazon.nova-lite-v1%3A0/count-tokens",
        "/guardrail/g/version/1/apply",
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
    ],
}

ALL_ENDPOINTS = [
    "chat.completions",
    "responses",
    "embeddings",
    "completions",
    "models",
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "models.get",
    "messages",
    "messages.count_tokens",
    "invoke",
    "invoke-with-response-stream",
    "converse",
    "converse-stream",
    "count-tokens",
    "apply-guardrail",
    None,
]

header_texts = st.text(alphabet=string.printable, max_size=8)


@pytest.mark.parametrize("name", list(PROVIDERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), body=json_bodies, method=st.sampled_from(["POST", "GET", "PUT"]))
def test_classify_reads_or_refuses(name: str, data: st.DataObject, body: bytes | None, method: str) -> None:
    provider = PROVIDERS[name]
    path = data.draw(st.sampled_from(PATHS[name]) | st.text(max_size=40).map(lambda s: "/" + s))
    try:
        c = classify(provider, method, path, body)
    except Unreadable:
        return
    assert isinstance(c, Classification)
    assert isinstance(c.facts, RequestFacts)
    assert c.model is None or isinstance(c.model, str)
    for value in (c.facts.message_count, c.facts.max_tokens):
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    for value in (c.facts.has_system, c.facts.has_tools, c.facts.stream):
        assert value is None or isinstance(value, bool)


@pytest.mark.parametrize("name", list(PROVIDERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=json_bodies,
    endpoint=st.sampled_from(ALL_ENDPOINTS),
    wire=st.sampled_from([None, "openai"]),
    header_pairs=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "x-amzn-bedrock-input-token-count",
                    "x-amzn-bedrock-output-token-count",
                    "x-amzn-bedrock-cache-read-input-token-count",
                    "content-type",
                ]
            ),
            header_texts,
        ),
        max_size=3,
    ),
)
def test_usage_never_raises(
    name: str, body: bytes | None, endpoint: str | None, wire: str | None, header_pairs: list[tuple[str, str]]
) -> None:
    provider = PROVIDERS[name]
    u = provider.usage(Classification(endpoint=endpoint, wire_format=wire), headers(*header_pairs), body)
    assert isinstance(u, Usage)
    for value in (u.input_tokens, u.output_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens):
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    assert u.finish_reason is None or isinstance(u.finish_reason, str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_json_never_raises(body: bytes) -> None:
    result = parse_json(body)
    assert result is None or isinstance(result, dict)
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError):
        expected = None
    if isinstance(expected, dict):
        assert repr(read_request_json(body)) == repr(expected)
    elif body:
        with pytest.raises(Unreadable):
            read_request_json(body)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_bedrock_model_id_is_read_or_refused(path: str) -> None:
    try:
        result = bedrock_model(path)
    except Unreadable:
        return
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="?", blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_bedrock_model_id_round_trips_through_percent_encoding(model: str) -> None:
    from urllib.parse import quote

    assume(model not in (".", ".."))  # a dot segment, refused: servers resolve it away

    path = f"/model/{quote(model, safe='')}/converse"
    assert bedrock_model(path) == model
    assert classify(BEDROCK, "POST", path, None).model == model


def test_a_header_index_reads_raw_fields_as_mitmproxys_headers_do() -> None:
    h = headers(("Content-Type", "application/json"), ("X-Api-Key", "k1"), ("x-api-key", "k2"), ("Via", "caf\u00e9"))
    index = header_index(h.fields)
    assert index == {b"content-type": b"application/json", b"x-api-key": b"k1, k2", b"via": "caf\u00e9".encode()}
    assert decoded(index, index.keys()) == {
        "content-type": h["content-type"],
        "x-api-key": h["x-api-key"],
        "via": h["via"],
    }
    assert decoded(index, {b"x-api-key", b"authorization"}) == {"x-api-key": "k1, k2"}
    assert header_index(()) == {}


_header_names = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Accept", b"X-A"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_header_names, st.binary(max_size=5)), max_size=8),
    st.sampled_from([b"host", b"content-length", b"x-new"]),
    st.binary(max_size=5),
)
def test_with_header_sets_a_header_as_mitmproxys_headers_do(
    fields: list[tuple[bytes, bytes]], name: bytes, value: bytes
) -> None:
    expected = Headers(fields)
    expected[name] = value  # in place of the first, the others dropped, added at the end if absent
    assert with_header(tuple(fields), name, value) == expected.fields
    present = any(n.lower() == name for n, _ in fields)
    assert with_header(tuple(fields), name, value, add=False) == (expected.fields if present else tuple(fields))
