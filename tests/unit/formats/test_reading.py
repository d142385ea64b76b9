"""Reading requests and answers exactly: the JSON codec, the exact readers of request facts, raw
header fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers
from tests.support.examples import examples
from tests.unit.providers.common import (
    _header_names,
    _json_values,
    headers,
    read_request,
)

from tollgate.formats import openai_api as openai_mod
from tollgate.formats.bodies.exact import Unreadable, as_int, count
from tollgate.formats.bodies.json_codec import encode_json, parse_json, read_request_json
from tollgate.formats.bodies.raw_headers import decoded, header_index, with_header
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals
from tollgate.providers.credentials import bearer


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
        ('{"m": "grüß"}'.encode(), {"m": "grüß"}),
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
        (b'{"n": ' + b"9" * 5000 + b"}", None),
    ],
)
def test_parse_json(body: bytes | None, expected: Any) -> None:
    assert parse_json(body) == expected
    assert read_request(body) == (expected if expected is not None or not body else "refused")


@pytest.mark.parametrize(
    "body",
    [b"\xef\xbb\xbf{}", '{"m": "grüß"}'.encode("utf-16-le"), '{"m": "grüß"}'.encode("utf-32-le")],
)
def test_an_answer_is_read_in_any_encoding_json_loads_detects(body: bytes) -> None:
    assert parse_json(body) == json.loads(body)


_OTHER_ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-8-sig"]


@pytest.mark.parametrize("encoding", _OTHER_ENCODINGS)
@pytest.mark.parametrize("spaced", [False, True])
def test_a_request_body_in_another_encoding_than_utf8_is_refused(encoding: str, spaced: bool) -> None:
    # The guardrails read a body as UTF-8: one the provider reads in another encoding would pass
    # them unread. A UTF-8 byte order mark is refused too (RFC 8259 forbids sending one).
    text = (" \n" if spaced else "") + '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    why = "byte order mark" if encoding == "utf-8-sig" else encoding[:6].upper()
    with pytest.raises(Unreadable, match=why):
        read_request_json(text.encode(encoding))


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6), st.sampled_from(_OTHER_ENCODINGS))
@pytest.mark.slow
def test_no_json_object_is_read_from_a_request_in_another_encoding(obj: dict[str, Any], encoding: str) -> None:
    assert read_request(json.dumps(obj).encode(encoding, "surrogatepass")) == "refused"


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


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6), st.booleans())
@pytest.mark.slow
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


@settings(max_examples=examples(200), deadline=None)
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


@settings(max_examples=examples(300), deadline=None)
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
