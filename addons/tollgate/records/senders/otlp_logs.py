"""An audit record as an OpenTelemetry log record (`audit.otlp`): what the exporter
(`audit_otlp.py`) sends, over OTLP/HTTP in protobuf, to `<endpoint>/v1/logs`.

The log record's body is the record's line exactly as the audit file holds it (a string, without
its newline); its time is the record's `ts`; `event.name` is its `event`; `tollgate.record_id`
names the line (`record_id`), the same for every copy of it, so that a receiver drops duplicates by
it. A call's fields that the GenAI (and HTTP) semantic conventions name are attributes under those
names (`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, …), and those a
receiver most often filters by (`TOLLGATE_ATTRIBUTES`) as `tollgate.<field>`; a null field is left
out (OpenTelemetry has no null). Every field is in the body: an attribute per field would cost the
export more than the call's whole record keeping (each is encoded on every record). The resource says who
wrote the record: `service.name` (tollgate) and `service.instance.id` (the record's `instance`)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from tollgate.configuration.records_settings import DEFAULT_SERVICE_NAME
from tollgate.providers import semconv_name
from tollgate.records.audit.auditlog import tollgate_version
from tollgate.records.audit.kinds import read_record
from tollgate.records.telemetry.traces import operation_name

LOGS_PATH = "/v1/logs"
SCOPE = "tollgate.audit"
SEVERITY_INFO = 9  # SeverityNumber INFO: an audit record reports, it does not warn

# The fields every record has that the log record carries in its own places.
EVENT, INSTANCE, TS, CHAIN = "event", "instance", "ts", "chain"
OWN_PLACES = frozenset((EVENT, INSTANCE, TS, CHAIN))

# A call's fields under the GenAI (and HTTP, server) semantic conventions' names.
LLM_CALL_NAMES = {
    "provider": "gen_ai.provider.name",
    "requested_model": "gen_ai.request.model",
    "model": "gen_ai.response.model",  # the model called (an override's, if one applied)
    "max_tokens": "gen_ai.request.max_tokens",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cached_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    "finish_reason": "gen_ai.response.finish_reasons",
    "status": "http.response.status_code",
    "method": "http.request.method",
    "host": "server.address",
    "path": "url.path",
}
# An MCP server's request's (`mcp_call`).
MCP_CALL_NAMES = {
    "method": "mcp.method.name",
    "tool": "gen_ai.tool.name",
    "status": "http.response.status_code",
}
NAMES_BY_EVENT = {"llm_call": LLM_CALL_NAMES, "mcp_call": MCP_CALL_NAMES}
# Besides those, the fields receivers filter calls by, as `tollgate.<field>`.
TOLLGATE_ATTRIBUTES = {
    "llm_call": frozenset(("request_id", "client", "decision", "error", "cost_usd")),
    "mcp_call": frozenset(("request_id", "client", "server", "decision", "error")),
}


def carried(event: Any, field: str) -> bool:
    """Whether a record's field is an attribute of its log record (every field is in its body)."""
    if not isinstance(event, str) or field in OWN_PLACES:
        return False
    names = NAMES_BY_EVENT.get(event)
    return (names is not None and field in names) or field in TOLLGATE_ATTRIBUTES.get(event, ())


def record_id(line: bytes, record: Mapping[str, Any] | None) -> str:
    """`tollgate.record_id` of a line: its record's `chain` (unique, by the chain's construction),
    else the SHA-256 (hex) of the line's bytes: equal for every copy of the line, and unique as long
    as no two records are byte for byte the same (each names its time and request)."""
    chain = record.get(CHAIN) if record is not None else None
    if isinstance(chain, str) and chain:
        return chain
    return hashlib.sha256(line).hexdigest()


def attribute_name(event: Any, field: str) -> str:
    """The attribute a record's field goes under: its semantic conventions' name for the record's
    event, else `tollgate.<field>`."""
    names = NAMES_BY_EVENT.get(event) if isinstance(event, str) else None
    name = names.get(field) if names is not None else None
    return f"tollgate.{field}" if name is None else name


def attribute_value(name: str, value: Any) -> Any:
    """A field's value as its attribute holds it: a provider by the conventions' name for it, a
    finish reason in a list (`gen_ai.response.finish_reasons`)."""
    if name == "gen_ai.provider.name" and isinstance(value, str):
        return semconv_name(value)
    if name == "gen_ai.response.finish_reasons":
        return [value]
    return value


def attributes(record: Mapping[str, Any], rid: str) -> list[tuple[str, Any]]:
    """The log record's attributes, in the record's order after `event.name` and
    `tollgate.record_id` (and a call's `gen_ai.operation.name`): each field `carried` and not null,
    under `attribute_name`."""
    event = record.get(EVENT)
    out: list[tuple[str, Any]] = []
    if isinstance(event, str):
        out.append(("event.name", event))
    out.append(("tollgate.record_id", rid))
    if event == "llm_call" and isinstance(endpoint := record.get("endpoint"), str):
        out.append(("gen_ai.operation.name", operation_name(endpoint)))
    for field, value in record.items():
        if value is None or not carried(event, field):
            continue
        name = attribute_name(event, field)
        out.append((name, attribute_value(name, value)))
    return out


def time_of(ts: Any) -> int:
    """The record's `ts` (ISO 8601) in nanoseconds since the epoch; 0 (unknown) when it has none."""
    if not isinstance(ts, str):
        return 0
    # As the audit writes it (`utc_timestamp`), 2026-11-22T08:30:00.123Z: read without datetime.
    if (
        len(ts) == 24
        and ts[23] == "Z"
        and ts[10] == "T"
        and ts[19] == "."
        and ts[11:23].replace(":", "").replace(".", "").isdigit()
    ):
        day = _day_start(ts[:10])
        if day is not None:
            ms = ((int(ts[11:13]) * 60 + int(ts[14:16])) * 60 + int(ts[17:19])) * 1000 + int(ts[20:23])
            return (day + ms) * 1_000_000
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        return 0
    return round(moment.timestamp() * 1000) * 1_000_000


@lru_cache(maxsize=64)
def _day_start(day: str) -> int | None:
    """Milliseconds since the epoch at the start of a day (YYYY-MM-DD, UTC)."""
    try:
        return round(datetime.fromisoformat(day + "T00:00:00+00:00").timestamp()) * 1000
    except ValueError:
        return None


# ---- the protobuf, written by hand: opentelemetry-proto's classes cost some 90 µs a record (each
# attribute a message of its own, set field by field), this about a fifth of it. The field numbers
# are opentelemetry-proto's (logs/v1/logs.proto, common/v1/common.proto, resource/v1/resource.proto);
# the tests read what is written here with its classes.

_STRING, _BOOL, _INT, _DOUBLE, _ARRAY, _KVLIST = b"\x0a", b"\x10", b"\x18", b"\x21", b"\x2a", b"\x32"  # AnyValue
_KEY, _VALUE = b"\x0a", b"\x12"  # KeyValue
_TIME, _SEVERITY, _SEVERITY_TEXT = b"\x09", b"\x10", b"\x1a"  # LogRecord: fixed64, enum, string
_BODY, _ATTRIBUTE, _OBSERVED, _EVENT_NAME = b"\x2a", b"\x32", b"\x59", b"\x62"  # message, message, fixed64, string
_FIRST, _SECOND = b"\x0a", b"\x12"  # field 1 and 2, length-delimited (ResourceLogs, ScopeLogs, Resource, …)
_SEVERITY_INFO = _SEVERITY + bytes((SEVERITY_INFO,)) + _SEVERITY_TEXT + b"\x04INFO"
_FIXED64 = struct.Struct("<Q")
_PACK_DOUBLE = struct.Struct("<d").pack


_SMALL = tuple(bytes((n,)) for n in range(0x80))  # the varints of one byte


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _string(tag: bytes, text: str) -> bytes:
    data = text.encode("utf-8", "replace")  # (a lone surrogate: never from orjson)
    n = len(data)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + data


@lru_cache(maxsize=512)
def _key(name: str) -> bytes:
    """A KeyValue's key, written (the same few names, record after record)."""
    return _string(_KEY, name)


def encode_value(value: Any) -> bytes:
    """A JSON value as OTLP's AnyValue, its bytes (null: an empty AnyValue)."""
    if isinstance(value, str):
        return _string(_STRING, value)
    if isinstance(value, bool):  # before int: a bool is an int
        return _BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if -(1 << 63) <= value < 1 << 63:
            return _INT + _varint(value & 0xFFFFFFFFFFFFFFFF)
        return _string(_STRING, str(value))
    if isinstance(value, float):
        return _DOUBLE + _PACK_DOUBLE(value)
    if isinstance(value, list | tuple):
        return _delimited(_ARRAY, b"".join(_delimited(_FIRST, encode_value(v)) for v in value))
    if isinstance(value, dict):
        return _delimited(_KVLIST, b"".join(_delimited(_FIRST, _pair(str(k), v)) for k, v in value.items()))
    return b""


def _pair(key: str, value: Any) -> bytes:
    """A KeyValue's bytes (a null value: none)."""
    if value is None:
        return _key(key)
    return _key(key) + _delimited(_VALUE, encode_value(value))


def _attribute(name: str, value: Any) -> bytes:
    """A LogRecord's attribute, written (a null value: none)."""
    if value is None:
        return b""
    return _delimited(_ATTRIBUTE, _pair(name, attribute_value(name, value)))


# A record's fields become attributes once per distinct value: most values repeat from record to
# record (provider, model, client, status, groups, …), and a field's attribute is looked up by the
# `repr` of its value, the record's fields all at once (`map`: no Python code runs for a value
# seen before). Values never seen before (request_id, latency_ms, …) are written then, and kept
# up to `_MOST_VALUES` per field.


class _Written(dict[str, bytes]):
    """One field's attributes (`attribute_name`), by its value's `repr`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def remember(self, value: Any, text: str) -> bytes:
        data = _attribute(self.name, value)
        if len(self) < _MOST_VALUES:
            self[text] = data
        return data


class _Shape:
    """The records of one event with the same fields in the same order: the values of those that
    become attributes (`values`: not those with places of their own), and each one's `_Written`."""

    __slots__ = ("values", "written")

    def __init__(self, event: Any, fields: tuple[str, ...]) -> None:
        kept = [field for field in fields if carried(event, field)]
        get = itemgetter(*kept) if kept else None
        if len(kept) == 1:
            self.values: Callable[[dict[str, Any]], tuple[Any, ...]] = lambda record: (record[kept[0]],)
        elif get is None:
            self.values = lambda record: ()
        else:
            self.values = get
        self.written = [_written(event, field) for field in kept]


_MOST_SHAPES = 256  # the records' shapes kept: their event and fields, in order
_MOST_VALUES = 256  # values kept per field
_SHAPES: dict[tuple[Any, tuple[str, ...]], _Shape] = {}
_FIELDS: dict[tuple[Any, str], _Written] = {}  # by event and field


def _written(event: Any, field: str) -> _Written:
    written = _FIELDS.get((event, field))
    if written is None:
        written = _Written(attribute_name(event, field))
        if len(_FIELDS) < _MOST_SHAPES * 64:
            _FIELDS[(event, field)] = written
    return written


def _field_attributes(event: Any, record: dict[str, Any]) -> list[bytes]:
    """The attributes of the record's fields, in their order (`attributes` says which)."""
    fields = tuple(record)
    shape = _SHAPES.get((event, fields))
    if shape is None:
        shape = _Shape(event, fields)
        if len(_SHAPES) < _MOST_SHAPES:
            _SHAPES[(event, fields)] = shape
    values = shape.values(record)
    texts = list(map(repr, values))  # tells True from 1 and 1.0, and a list from its text
    written: list[bytes | None] = list(map(dict.get, shape.written, texts))
    i = -1
    try:
        while True:
            i = written.index(None, i + 1)
            written[i] = shape.written[i].remember(values[i], texts[i])
    except ValueError:  # none left
        pass
    return written  # type: ignore[return-value]  # none is None now


_EVENT_PARTS: dict[str, tuple[bytes, bytes]] = {}  # by event: its event_name field, its event.name attribute
_OPERATIONS: dict[str, bytes] = {}  # by endpoint: its gen_ai.operation.name attribute
_RECORD_ID_KEY = _key("tollgate.record_id")


def _event_parts(event: str) -> tuple[bytes, bytes]:
    parts = _EVENT_PARTS.get(event)
    if parts is None:
        parts = (_string(_EVENT_NAME, event), _attribute("event.name", event))
        if len(_EVENT_PARTS) < _MOST_SHAPES:
            _EVENT_PARTS[event] = parts
    return parts


def _operation(endpoint: str) -> bytes:
    data = _OPERATIONS.get(endpoint)
    if data is None:
        data = _attribute("gen_ai.operation.name", operation_name(endpoint))
        if len(_OPERATIONS) < _MOST_SHAPES:
            _OPERATIONS[endpoint] = data
    return data


def log_record_parts(line: bytes, observed_ns: int) -> tuple[str | None, list[bytes]]:
    """The instance that wrote the line (None when it does not say) and its LogRecord's bytes, in
    parts (joined once, with the whole request's): as `attributes` says. This runs for every record."""
    record = read_record(line)  # a line that is no record is shipped all the same, as its body
    rid = record_id(line, record)
    # The line as it is when it is ASCII (the audit escapes nothing else on standard output, and
    # orjson writes UTF-8): a protobuf string must be UTF-8.
    text = line if line.isascii() else line.decode("utf-8", "replace").encode()
    n = len(text)
    string_head = _STRING + (_SMALL[n] if n < 0x80 else _varint(n))
    body_head = _BODY + _varint(len(string_head) + n) + string_head
    rid_value = _string(_STRING, rid)
    rid_pair = _RECORD_ID_KEY + _VALUE + _SMALL[len(rid_value)] + rid_value if len(rid_value) < 0x80 else None
    record_id_attribute = (
        _ATTRIBUTE + _SMALL[len(rid_pair)] + rid_pair
        if rid_pair is not None and len(rid_pair) < 0x80
        else _attribute("tollgate.record_id", rid)
    )
    observed = _OBSERVED + _FIXED64.pack(observed_ns)
    if record is None:
        return None, [_SEVERITY_INFO, body_head, text, record_id_attribute, observed]
    parts = []
    when = time_of(record.get(TS))
    if when:
        parts.append(_TIME + _FIXED64.pack(when))
    event = record.get(EVENT)
    if isinstance(event, str):
        event_name, event_attribute = _event_parts(event)
        parts += (event_name, _SEVERITY_INFO, body_head, text, event_attribute, record_id_attribute)
        if event == "llm_call" and isinstance(endpoint := record.get("endpoint"), str):
            parts.append(_operation(endpoint))
    else:
        parts += (_SEVERITY_INFO, body_head, text, record_id_attribute)
    parts += _field_attributes(event, record)
    parts.append(observed)
    instance = record.get(INSTANCE)
    return instance if isinstance(instance, str) else None, parts


def encode_log_record(line: bytes, observed_ns: int) -> tuple[str | None, bytes]:
    """The instance that wrote the line (None when it does not say) and its LogRecord's bytes."""
    instance, parts = log_record_parts(line, observed_ns)
    return instance, b"".join(parts)


def _resource(instance: str | None, service_name: str = DEFAULT_SERVICE_NAME) -> bytes:
    """A Resource's bytes: service.name, service.version, service.instance.id."""
    attrs = [("service.name", service_name)]
    version = tollgate_version()
    if version is not None:
        attrs.append(("service.version", version))
    if instance is not None:
        attrs.append(("service.instance.id", instance))
    return b"".join(_delimited(_FIRST, _pair(k, v)) for k, v in attrs)


def export_body(lines: Sequence[bytes], observed_ns: int) -> bytes:
    """An ExportLogsServiceRequest's bytes for `lines` (each without its newline), in their order:
    one ResourceLogs for each run of consecutive lines of one instance (a fleet's workers write one
    file), its scope `tollgate.audit`. Each message's length is added up from its parts', and the
    parts joined once."""
    scope = _delimited(_FIRST, _string(_FIRST, SCOPE) + _string(_SECOND, tollgate_version() or ""))
    out: list[bytes] = []
    run: list[bytes] = []  # the current run's ScopeLogs content: the scope, then each LogRecord framed
    run_size = 0
    current: str | None = None

    def close_run() -> None:
        resource = _delimited(_FIRST, _resource(current))
        scope_head = _SECOND + _varint(run_size)
        resource_size = len(resource) + len(scope_head) + run_size
        out.append(_FIRST + _varint(resource_size) + resource + scope_head)
        out.extend(run)

    for line in lines:
        instance, parts = log_record_parts(line, observed_ns)
        if not run or instance != current:
            if run:
                close_run()
            run, run_size, current = [scope], len(scope), instance
        size = sum(map(len, parts))
        head = _SECOND + (_SMALL[size] if size < 0x80 else _varint(size))
        run.append(head)
        run += parts
        run_size += len(head) + size
    if run:
        close_run()
    return b"".join(out)
