"""An audit record as an OpenTelemetry log record (`audit.otlp`): what the exporter
(`audit_export.py`) sends, over OTLP/HTTP in protobuf, to `<endpoint>/v1/logs`.

The log record's body is the record's line exactly as the audit file holds it (a string, without
its newline); its time is the record's `ts`; `event.name` is its `event`; `tollgate.record_id`
names the line (`record_id`), the same for every copy of it, so that a receiver drops duplicates by
it. The record's other fields are attributes: under the GenAI semantic conventions' names where they
have one (`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, …), else as
`tollgate.<field>`; a null field is left out (OpenTelemetry has no null). The resource says who
wrote the record: `service.name` (tollgate) and `service.instance.id` (the record's `instance`)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from tollgate.providers import semconv_name
from tollgate.records.auditlog import tollgate_version
from tollgate.records.settings import DEFAULT_SERVICE_NAME
from tollgate.records.traces import operation_name

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
    `tollgate.record_id` (and a call's `gen_ai.operation.name`): each field not null, under
    `attribute_name`."""
    event = record.get(EVENT)
    out: list[tuple[str, Any]] = []
    if isinstance(event, str):
        out.append(("event.name", event))
    out.append(("tollgate.record_id", rid))
    if event == "llm_call" and isinstance(endpoint := record.get("endpoint"), str):
        out.append(("gen_ai.operation.name", operation_name(endpoint)))
    for field, value in record.items():
        if value is None or field in OWN_PLACES:
            continue
        name = attribute_name(event, field)
        out.append((name, attribute_value(name, value)))
    return out


def time_of(ts: Any) -> int:
    """The record's `ts` (ISO 8601) in nanoseconds since the epoch; 0 (unknown) when it has none."""
    if not isinstance(ts, str):
        return 0
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        return 0
    return round(moment.timestamp() * 1000) * 1_000_000


def parse(line: bytes) -> dict[str, Any] | None:
    """The record of a line; None for one that is not a JSON object (a line cut short long ago,
    by hand): shipped all the same, as its body."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


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


@lru_cache(maxsize=1024)
def _name(event: Any, field: str) -> str:
    return attribute_name(event, field)


@lru_cache(maxsize=4096, typed=True)
def _scalar_attribute(name: str, value: str | int | float) -> bytes:
    """A LogRecord's attribute of a plain value, written: most repeat from record to record (the
    event, provider, model, client, decision, status, …), and are written once."""
    return _delimited(_ATTRIBUTE, _pair(name, attribute_value(name, value)))


def encode_log_record(line: bytes, observed_ns: int) -> tuple[str | None, bytes]:
    """The instance that wrote the line (None when it does not say) and its LogRecord's bytes: as
    `attributes` says, written in one pass (this runs for every record)."""
    record = parse(line)
    rid = record_id(line, record)
    body = _delimited(_BODY, _string(_STRING, line.decode("utf-8", "replace")))
    record_id_attribute = _delimited(_ATTRIBUTE, _key("tollgate.record_id") + _delimited(_VALUE, _string(_STRING, rid)))
    observed = _OBSERVED + _FIXED64.pack(observed_ns)
    if record is None:
        return None, b"".join((_SEVERITY_INFO, body, record_id_attribute, observed))
    parts = []
    when = time_of(record.get(TS))
    if when:
        parts.append(_TIME + _FIXED64.pack(when))
    event = record.get(EVENT)
    if isinstance(event, str):
        parts.append(_string(_EVENT_NAME, event))
    parts += (_SEVERITY_INFO, body)
    if isinstance(event, str):
        parts.append(_scalar_attribute("event.name", event))
    parts.append(record_id_attribute)
    if event == "llm_call" and isinstance(endpoint := record.get("endpoint"), str):
        parts.append(_scalar_attribute("gen_ai.operation.name", operation_name(endpoint)))
    scalar, name_of = _scalar_attribute, _name
    for field, value in record.items():
        if value is None or field in OWN_PLACES:
            continue
        name = name_of(event, field)
        if type(value) in _SCALARS:
            parts.append(scalar(name, value))
        else:
            parts.append(_delimited(_ATTRIBUTE, _pair(name, attribute_value(name, value))))
    parts.append(observed)
    instance = record.get(INSTANCE)
    return instance if isinstance(instance, str) else None, b"".join(parts)


_SCALARS = frozenset((str, int, float, bool))


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
    file), its scope `tollgate.audit`."""
    scope = _delimited(_FIRST, _string(_FIRST, SCOPE) + _string(_SECOND, tollgate_version() or ""))
    runs: list[tuple[str | None, list[bytes]]] = []
    for line in lines:
        instance, log = encode_log_record(line, observed_ns)
        if not runs or runs[-1][0] != instance:
            runs.append((instance, []))
        runs[-1][1].append(_delimited(_SECOND, log))
    return b"".join(
        _delimited(
            _FIRST,
            _delimited(_FIRST, _resource(instance)) + _delimited(_SECOND, scope + b"".join(logs)),
        )
        for instance, logs in runs
    )
