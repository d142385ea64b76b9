"""JSON bodies: answers read fast, requests read and written back exactly as the provider reads them."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from tollgate.formats.bodies.exact import Unreadable


def json_object(value: Any) -> dict[str, Any]:
    """A JSON value where an object is expected: the object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def parse_json(body: bytes | None) -> dict[str, Any] | None:
    """An answer's body or a stream event as a JSON object, or None when it is not one.

    For what Tollgate only reads token counts and names from: orjson reads it several times faster
    than the standard library, which still reads what orjson refuses (NaN, UTF-16, ...). Integers
    beyond 64 bits read as floats here; request bodies are read by `read_request_json`. An object
    that repeats a key is no object read (`keys_once`): parsers differ on which value they keep."""
    if not body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return _read_leniently(body)
        except Unreadable:
            return None
    return value if type(value) is dict and keys_once(body, value) else None


# A run of 19 digits: where a number may be an integer orjson reads otherwise (past 64 bits, as a
# float). Looked for as 19 zeros once every digit is written `0`: two passes in C, where a regular
# expression tries a match at each digit (an answer's ids, times and counts hold many).
_NINETEEN_ZEROS = b"0" * 19
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _long_digits(data: str | bytes) -> bool:
    """Whether the text holds a run of 19 ASCII digits. A text's UTF-8 holds the same runs: every
    byte of a character past ASCII is past ASCII too (a lone surrogate, which JSON may write, kept)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return _NINETEEN_ZEROS in raw.translate(_DIGITS_AS_ZERO)


def json_loads(data: str | bytes) -> Any:
    """`json.loads(data)`, the same value, read by orjson (several times as fast) where it reads the
    same: a text with a run of 19 digits (an integer past 64 bits, which orjson reads as a float),
    and one orjson refuses (NaN, a lone surrogate, a byte order mark, nested too deep), are read by
    the standard library. Raises as `json.loads` does."""
    if not _long_digits(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


class RepeatedKey(orjson.JSONDecodeError):
    """A JSON text one of whose objects repeats a key: parsers differ on which value they keep (the
    last, mostly), so what Tollgate reads of it may not be what a client reads. Never read."""


def loads_once(data: bytes) -> Any:
    """A JSON text's value as `json.loads` reads bytes (orjson first, several times faster; the
    standard library where orjson refuses: NaN, a byte order mark, UTF-16), but `RepeatedKey` (a
    ValueError) where an object repeats a key."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return _ONCE.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
        except Unreadable:
            raise RepeatedKey("an object repeats a key", "", 0) from None
    if not keys_once(data, value):
        raise RepeatedKey("an object repeats a key", "", 0)
    return value


def object_once(data: bytes) -> dict[str, Any] | None:
    """A JSON text's object as `loads_once` reads it; None where the text is no object or cannot be
    read (not JSON, too deep, or an object in it repeats a key)."""
    try:
        value = loads_once(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def text_object_once(text: str) -> dict[str, Any] | None:
    """A JSON text's object exactly as `json.loads` reads it (every integer whole); None where the
    text is no object or cannot be read (not JSON, too deep, or an object in it repeats a key)."""
    try:
        value = _ONCE.decode(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# A colon written as its escape: the text's strings may then hold more colons than it shows.
_COLON_ESCAPED = re.compile(rb"\\u003[aA]")


def keys_once(data: bytes, value: Any) -> bool:
    """Whether no object of the JSON text `data` (as orjson read it into `value`, keeping the last
    of a repeated key's values) repeats a key. A pass or two in C over most texts:

    - what orjson writes of the value repeats no key: where it is the text, byte for byte (compact
      JSON without escapes, as most providers stream it), none is repeated;
    - else the colons are counted: one follows each key, the others are in strings. orjson writes
      a string's colons as they are; where the text writes none as its escape (`\\u003a`), its
      strings hold every colon orjson's do, and more where a member was dropped. So a text with as
      many colons as orjson's has no key more than orjson kept;
    - else (a colon escaped, or more of them), the standard library reads it, refusing a repeated
      key."""
    written = orjson.dumps(value)
    if written == data:
        return True
    if data.count(b":") == written.count(b":") and (b"\\u003" not in data or _COLON_ESCAPED.search(data) is None):
        return True
    try:
        _ONCE.decode(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):  # a key repeated (`Unreadable`), or nested past its depth
        return False
    return True


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
# The standard library's reader but for repeated keys, which it refuses (`Unreadable`).
_ONCE = json.JSONDecoder(object_pairs_hook=_object_without_duplicates)
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
