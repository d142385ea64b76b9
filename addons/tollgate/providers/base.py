"""What every provider module offers; plain Python that knows nothing of mitmproxy.

Headers are any case-insensitive mutable mapping (mitmproxy's `Headers` in the proxy) and the
query any mutable mapping of parameter names to values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from ..call import Classification, Usage
from ..streams import SSEFramer, parse_sse_block, split_events

Headers = MutableMapping[str, str]
Query = MutableMapping[str, str]


@dataclass(slots=True)  # not frozen: made on every call, and a frozen one costs twice as much to make
class Presented:
    """A credential the client put into the request, and where."""

    value: str
    position: str  # e.g. "authorization", "x-api-key", "query:key"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    headers: dict[str, str]
    body: bytes


# Why Tollgate refused or failed a call, as sent in `X-Tollgate-Error`.
UNAUTHENTICATED = "unauthenticated"
POLICY_DENIED = "policy_denied"
NO_UPSTREAM_CREDENTIAL = "no_upstream_credential"
MISCONFIGURED = "misconfigured"
INVALID_SIGNATURE = "invalid_signature"
INTERNAL_ERROR = "internal_error"
UPSTREAM_UNREACHABLE = "upstream_unreachable"
UPSTREAM_TIMEOUT = "upstream_timeout"
# A request Tollgate cannot read exactly (body, encoding, path, host, upgrade): refused, never guessed at.
BAD_REQUEST = "bad_request"
# The audit cannot be written: a call that cannot be recorded is not served.
AUDIT_UNAVAILABLE = "audit_unavailable"

STATUS = {
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


REDACTED = "[redacted by Tollgate]"


def _lookup(headers: Headers, query: Query, position: str) -> str | None:
    if position.startswith("query:"):
        return query.get(position.removeprefix("query:"))
    return headers.get(position)


Fields = Sequence[tuple[bytes, bytes]]


def header_index(fields: Fields) -> dict[bytes, bytes]:
    """Raw header fields by lower-case name, in one pass; a repeated header's values joined as
    mitmproxy's `Headers.get` joins them. Values stay bytes: decoding each one cost more than the
    pass, and few are read (`decoded`)."""
    index = {name.lower(): value for name, value in fields}
    if len(index) < len(fields):  # a repeated header
        index = {}
        for name, value in fields:
            lower = name.lower()
            index[lower] = index[lower] + b", " + value if lower in index else value
    return index


def decoded(index: dict[bytes, bytes], names: Collection[bytes]) -> dict[str, str]:
    """Those of the (lower-case) names an index holds, as text, as mitmproxy's `Headers` decodes them."""
    return {name.decode("latin-1"): index[name].decode("utf-8", "surrogateescape") for name in names if name in index}


def with_header(fields: Fields, name: bytes, value: bytes, add: bool = True) -> tuple[tuple[bytes, bytes], ...]:
    """The fields with `name` (lower-case) set to `value` in one pass: in place of its first
    occurrence, its others dropped (as mitmproxy's `Headers` sets), or added when absent if `add`."""
    names = [f[0].lower() for f in fields]  # the one pass in Python (a list comprehension runs inline)
    if name not in names:
        return (*fields, (name, value)) if add else tuple(fields)
    first = names.index(name)
    out = list(fields)
    out[first] = (fields[first][0], value)
    if names.count(name) > 1:
        out = [f for i, f in enumerate(out) if i == first or names[i] != name]
    return tuple(out)


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
_scan = _EXACT.scan_once
_JSON_SPACE = " \t\n\r"


class Unreadable(ValueError):
    """A request Tollgate cannot read exactly as the provider would read it: refused, never guessed
    at. The message says what is wrong, never what the request holds; `endpoint` is the endpoint its
    path names, where the path was read before the fault was found (the audit shows it)."""

    endpoint: str | None = None

    def at(self, endpoint: str | None) -> Unreadable:
        """This fault, found while reading a request of that endpoint."""
        self.endpoint = self.endpoint or endpoint
        return self


def read_request_json(body: bytes | None) -> dict[str, Any] | None:
    """A request body's JSON object, exactly as the standard library reads it (every integer whole,
    NaN and lone surrogates as sent); None for no body. The request's facts are judged by the
    policy, and the object is what `encode_json` writes back when Tollgate changes it."""
    if not body:
        return None
    if body[:1] != b"{" or body[1:2] == b"\x00":  # not plain UTF-8 (BOM, UTF-16...), or not an object
        return _read_leniently(body)
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


def request_model(data: dict[str, Any], key: str = "model") -> str | None:
    """A request body's model name: a string in valid Unicode, else refused (a lone surrogate reads
    as another name to a parser that replaces it)."""
    value = data.get(key)
    if value is None or (type(value) is str and (value.isascii() or _is_unicode(value))):
        return value
    raise Unreadable(f"'{key}' is not a string" if type(value) is not str else f"'{key}' is not valid Unicode")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_INT64 = 2**63


def request_int(value: Any, name: str) -> int | None:
    """An integer the request asks for (a token limit), read as the provider reads it: a JSON integer,
    a float with no fraction, or a string of digits; None when absent. Anything else, or a number
    beyond 64 bits (the policy engine wraps those), is refused rather than read as absent."""
    if value is None:
        return None
    if type(value) is int:
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20
    ):
        number = int(value)
    else:
        raise Unreadable(f"'{name}' is not an integer")
    if not -_INT64 <= number < _INT64:
        raise Unreadable(f"'{name}' is out of range")
    return number


def request_flag(value: Any, name: str) -> bool:
    """A boolean the request sets (`stream`): absent or null is false; anything but a boolean is
    refused (a server that reads "true" would stream what Tollgate took for a whole answer)."""
    if value is None:
        return False
    if type(value) is bool:
        return value
    raise Unreadable(f"'{name}' is not a boolean")


# A path in canonical form: segments of unreserved characters (and '%' where a provider takes it),
# no empty, '.' or '..' segment, no trailing '/', no ';' parameters.
_CANONICAL_PATH = re.compile(r"(?:/[A-Za-z0-9._~:@%-]+)+")


def path_segments(path: str, percent: bool = False) -> list[str]:
    """The segments of a path in canonical form, else refused: a server that normalises paths
    serves `//v1/./chat/completions/` as `/v1/chat/completions`, which Tollgate would have misread."""
    if _CANONICAL_PATH.fullmatch(path) is None:
        raise Unreadable(_path_problem(path))
    segments = path[1:].split("/")
    if "." in segments or ".." in segments:
        raise Unreadable("the path has a '.' or '..' segment")
    if not percent and "%" in path:
        raise Unreadable("the path is percent-encoded")
    return segments


def _path_problem(path: str) -> str:
    if not path.startswith("/"):
        return "the path does not start with '/'"
    if "//" in path:
        return "the path has an empty segment ('//')"
    if path.endswith("/"):
        return "the path ends in '/'"
    if ";" in path:
        return "the path has ';' parameters"
    return "the path has characters outside A-Z a-z 0-9 . _ ~ : @ % -"


def words(*names: str) -> dict[str, str]:
    """A provider's fixed path words by their lower-case form, for `check_case`."""
    return {name.lower(): name for name in names}


def check_case(segments: Iterable[str], fixed: Mapping[str, str]) -> None:
    """Refuse a segment that is one of the provider's fixed words in another letter case: a
    server that ignores case would serve an endpoint Tollgate did not recognise."""
    for segment in segments:
        word = fixed.get(segment.lower())
        if word is not None and segment != word:
            raise Unreadable(f"'{segment}' is not written '{word}'")


def encode_json(value: Any) -> bytes:
    """A JSON object as compact UTF-8, as SDKs send it, written back exactly as it was read."""
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits, lone surrogates, NonFinite
        return _encode_exactly(value).encode()


# ASCII: a lone surrogate goes as the escape it came as.
_encode_exactly = json.JSONEncoder(separators=(",", ":")).encode


def as_int(value: Any) -> int | None:
    if type(value) is int:  # what JSON gives nearly always: one test
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def largest(*values: int | None) -> int | None:
    """The largest of the values given (a limit set twice binds at the larger), or None."""
    given = [v for v in values if v is not None]
    return max(given) if given else None


# The facts of a body streamed unread, as the policy input's `unread` names them.
UNREAD_BODY = ("model", "request")
UNREAD_FACTS = ("request",)


def count(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def add_totals(usage: Usage) -> Usage:
    if usage.total_tokens is None and usage.input_tokens is not None and usage.output_tokens is not None:
        usage.total_tokens = usage.input_tokens + usage.output_tokens
    return usage


class UsageReader:
    """Reads token usage from a response body as it passes, chunk by chunk."""

    error: str | None = None

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self) -> Usage:
        raise NotImplementedError


class WholeBodyReader(UsageReader):
    """A non-streamed answer: keeps a bounded copy and parses it once it is complete."""

    LIMIT = 16 * 1024 * 1024

    def __init__(self, parse: Callable[[bytes | None], Usage]) -> None:
        self._parse = parse
        # The chunks as they came, joined at the end: most answers come in one, which is not copied.
        self._chunks: list[bytes] | None = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._chunks is None:
            return
        self._size += len(chunk)
        if self._size > self.LIMIT:
            self._chunks = None
            self.error = "answer larger than 16 MiB, not read for usage"
        else:
            self._chunks.append(chunk)

    def result(self) -> Usage:
        return self._parse(b"".join(self._chunks) if self._chunks is not None else None)


class SSEReader(UsageReader):
    """Server-sent events. Providers report usage and the finish reason in a stream's last events,
    so the reader only frames the stream and keeps a window of its latest complete events; nothing
    is searched while the stream flows (what a large stream costs). `first` sees every region as
    it passes, for what only a stream's start holds. At the end, the window's events that hold one
    of the `wanted` byte strings go to `keep`, and `read` parses what it kept."""

    WINDOW = 64 * 1024
    wanted: ClassVar[tuple[bytes, ...]]

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self._window = b""

    def feed(self, chunk: bytes) -> None:
        region = self._framer.feed_region(chunk)
        if region:
            self.first(region)
            window = self._window + region
            if len(window) > self.WINDOW:
                # Cut at an event boundary, and never into the last event: the one that
                # reports usage may be large (a Responses API `response.completed` repeats all).
                last = window.rfind(b"\n\n", 0, len(window) - 2) + 2
                window = window[min(window.find(b"\n\n", len(window) - self.WINDOW) + 2, last) :]
            self._window = window
        self.error = self.error or self._framer.error

    def first(self, region: bytes) -> None:
        pass

    def keep(self, block: bytes) -> None:
        raise NotImplementedError

    def read(self) -> Usage:
        raise NotImplementedError

    def result(self) -> Usage:
        for block in split_events(self._window):
            if any(w in block for w in self.wanted):
                self.keep(block)
        return self.read()

    @staticmethod
    def data(block: bytes | None) -> dict[str, Any] | None:
        if block is None:
            return None
        event = parse_sse_block(block)
        return parse_json(event.data.encode()) if event else None


def is_event_stream(headers: Headers) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


class Provider:
    """One LLM provider: its hosts, wire format, credentials and error shape."""

    name: ClassVar[str]
    # Regular expression over the host name in lower case without a trailing dot; any port.
    host_pattern: ClassVar[str]
    # Header a client may send its own upstream key in (removed before forwarding).
    side_header: ClassVar[str]
    # Where clients put API keys: header names ("authorization" holds a Bearer token), or
    # "query:<parameter>"; `positions` adds what else carries a secret there.
    key_positions: ClassVar[tuple[str, ...]]
    positions: ClassVar[tuple[str, ...]]
    # Where Tollgate puts the upstream key for the provider's own wire format.
    key_header: ClassVar[str]
    # Where a call routed here goes when no upstream is configured (None: it must be).
    default_host: ClassVar[str | None] = None
    # The response headers `usage_reader` and `usage` read (lower-case), and content-encoding.
    response_headers: ClassVar[frozenset[bytes]] = frozenset((b"content-type", b"content-encoding"))

    # Where the native format names the model in the path (a `model` group), if it does.
    model_in_path: ClassVar[re.Pattern[str] | None] = None

    def path_with_model(self, path: str, model: str) -> str | None:
        """The path calling another model; None where the model is named in the body."""
        raw, _, query = path.partition("?")
        m = self.model_in_path.match(raw) if self.model_in_path else None
        if m is None:
            return None
        # One path segment, ":" and "/" percent-encoded, as botocore and the Gemini SDKs send it.
        rewritten = f"{raw[: m.start('model')]}{quote(model, safe='-_.~')}{raw[m.end('model') :]}"
        return f"{rewritten}?{query}" if query else rewritten

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        """What the request is, read from its path (without the query), its query and its JSON
        body (None: no body, or one streamed unread); `Unreadable` when it cannot be read exactly."""
        raise NotImplementedError

    def streams_unread(self, method: str, path: str) -> bool:
        """Whether this endpoint's body goes upstream as it arrives, unread: only endpoints that take
        files or audio, whose model and facts the policy then sees as unread."""
        return False

    def presented(self, headers: Headers, query: Query) -> list[Presented]:
        """Every credential the client put where this provider's key goes."""
        found = []
        for position in self.key_positions:
            if position == "authorization":
                value = bearer(headers)
            else:
                value = (_lookup(headers, query, position) or "").strip()
            if value:
                found.append(Presented(value, position))
        return found

    @cached_property
    def header_positions(self) -> frozenset[bytes]:
        """The headers of `positions`, lower-case, as raw header names are compared."""
        return frozenset(p.encode() for p in self.positions if not p.startswith("query:"))

    @cached_property
    def query_positions(self) -> tuple[str, ...]:
        return tuple(p.removeprefix("query:") for p in self.positions if p.startswith("query:"))

    def injected(self, key: str, classification: Classification) -> tuple[str, str]:
        """The header carrying the upstream key where the call's wire format wants it: `Authorization:
        Bearer` for the OpenAI format (every provider's OpenAI-compatible endpoints too), else the
        provider's header."""
        if classification.wire_format == "openai" or self.key_header == "authorization":
            return "authorization", f"Bearer {key}"
        return self.key_header, key

    def refusal(self, reason: str, message: str) -> Refusal:
        raise NotImplementedError

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        """Usage from a whole, non-streamed answer."""
        raise NotImplementedError

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        """What reads usage from this answer as it streams by."""
        return WholeBodyReader(lambda body: self.usage(classification, headers, body))

    def _json_refusal(self, reason: str, payload: dict[str, Any], **headers: str) -> Refusal:
        return Refusal(
            STATUS[reason],
            {
                "content-type": "application/json",
                "x-tollgate-error": reason,
                # The official SDKs retry 5xx answers unless told not to: a refusal or a missing
                # credential does not heal by retrying, an unreachable upstream may.
                **({"x-should-retry": "false"} if STATUS[reason] < 502 else {}),
                **headers,
            },
            json.dumps(payload).encode(),
        )
