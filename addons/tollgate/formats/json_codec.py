"""JSON bodies: answers read fast, requests read and written back exactly as the provider reads them."""

from __future__ import annotations

import json
from typing import Any

import orjson

from tollgate.formats.exact import Unreadable


def json_object(value: Any) -> dict[str, Any]:
    """A JSON value where an object is expected: the object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def parse_json(body: bytes | None) -> dict[str, Any] | None:
    """An answer's body or a stream event as a JSON object, or None when it is not one.

    For what Tollgate only reads token counts and names from: orjson reads it several times faster
    than the standard library, which still reads what orjson refuses (NaN, UTF-16, ...). Integers
    beyond 64 bits read as floats here; request bodies are read by `read_request_json`."""
    if not body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return _read_leniently(body)
        except Unreadable:
            return None
    return value if type(value) is dict else None


class NonFinite(float):
    """NaN, Infinity or an overflowing number in a request body: the standard library writes it
    back as it read it (orjson would write null)."""


def _finite_or_marked(text: str) -> float:
    value = float(text)
    return value if value - value == 0 else NonFinite(value)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers differ on a repeated key (the first wins here, the last there): a body that repeats
    # one may mean another model to the provider than to Tollgate.
    value = dict(pairs)
    if len(value) != len(pairs):
        raise Unreadable("the JSON body repeats a key in one object")
    return value


# The standard library's reader, but for the non-finite numbers it marks and repeated keys it refuses.
_EXACT = json.JSONDecoder(
    parse_float=_finite_or_marked, parse_constant=NonFinite, object_pairs_hook=_object_without_duplicates
)
_scan = _EXACT.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__, not in its stubs
_JSON_SPACE = " \t\n\r"


def read_request_json(body: bytes | None) -> dict[str, Any] | None:
    """A request body's JSON object, exactly as the standard library reads it (every integer whole,
    NaN and lone surrogates as sent); None for no body. The request's facts are judged by the
    policy, and the object is what `encode_json` writes back when Tollgate changes it."""
    if not body:
        return None
    if body[:1] != b"{" or body[1:2] == b"\x00":  # space first, another encoding, or not an object
        return _read_spaced(body)
    try:
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise Unreadable("the body is not UTF-8") from None
    try:
        # json.loads without its two wrappers and two regular expressions: an object from the first byte
        value, end = _scan(text, 0)
    except RecursionError:
        raise Unreadable("the JSON body is nested too deeply") from None
    except (StopIteration, ValueError) as e:
        raise e if isinstance(e, Unreadable) else Unreadable("the body is not a JSON object") from None
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise Unreadable("the body is not one JSON object")
    if not isinstance(value, dict):
        raise Unreadable("the body is not a JSON object")
    return value


def _read_leniently(body: bytes) -> dict[str, Any]:
    """As json.loads reads bytes: the encoding detected, a UTF-8 BOM skipped."""
    try:
        value = _EXACT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:
        raise Unreadable("the JSON body is nested too deeply") from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError among them
        raise e if isinstance(e, Unreadable) else Unreadable("the body is not a JSON object") from None
    if not isinstance(value, dict):
        raise Unreadable("the body is not a JSON object")
    return value


# What `json.detect_encoding` tells from a body's first bytes, as a refusal says it.
_OTHER_ENCODINGS = {
    "utf-8-sig": "the body begins with a byte order mark",
    "utf-16": "the body is UTF-16",
    "utf-16-le": "the body is UTF-16",
    "utf-16-be": "the body is UTF-16",
    "utf-32": "the body is UTF-32",
    "utf-32-le": "the body is UTF-32",
    "utf-32-be": "the body is UTF-32",
}


def _read_spaced(body: bytes) -> dict[str, Any]:
    """A request body that does not begin with `{`: UTF-8 JSON after white space, else refused.

    JSON between systems is UTF-8 without a byte order mark (RFC 8259, 8.1). The guardrails read a
    body's bytes as UTF-8: a body in UTF-16 or UTF-32 would pass them unread while the provider,
    reading it as the standard library does, took its model and messages. A UTF-8 byte order mark
    is refused too: providers' parsers differ on it, and no SDK sends one."""
    encoding = json.detect_encoding(body)
    if encoding != "utf-8":
        if not _reads_as(body, encoding):  # its first bytes only looked like another encoding's
            raise Unreadable("the body is not a JSON object")
        said = _OTHER_ENCODINGS.get(encoding, f"the body is {encoding}")
        raise Unreadable(f"{said}; Tollgate reads JSON in UTF-8 with no byte order mark (RFC 8259)")
    try:
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise Unreadable("the body is not UTF-8") from None
    try:
        value = _EXACT.decode(text)
    except RecursionError:
        raise Unreadable("the JSON body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError among them
        raise e if isinstance(e, Unreadable) else Unreadable("the body is not a JSON object") from None
    if not isinstance(value, dict):
        raise Unreadable("the body is not a JSON object")
    return value


def _reads_as(body: bytes, encoding: str) -> bool:
    """Whether the body is JSON in that encoding (as the standard library would read it)."""
    try:
        json.loads(body.decode(encoding))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def encode_json(value: Any) -> bytes:
    """A JSON object as compact UTF-8, as SDKs send it, written back exactly as it was read."""
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits, lone surrogates, NonFinite
        return _encode_exactly(value).encode()


# ASCII: a lone surrogate goes as the escape it came as.
_encode_exactly = json.JSONEncoder(separators=(",", ":")).encode
