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
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

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


def any_value(value: Any) -> AnyValue:
    """A JSON value as OTLP's AnyValue (null: an empty one)."""
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):  # before int: a bool is an int
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if -(1 << 63) <= value < 1 << 63:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        pairs = [KeyValue(key=str(k), value=any_value(v)) for k, v in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=pairs))
    return AnyValue()


def attributes(record: Mapping[str, Any], rid: str) -> list[tuple[str, Any]]:
    """The log record's attributes, in the record's order after `event.name` and
    `tollgate.record_id`: each field not null under its semantic conventions' name, else
    `tollgate.<field>`."""
    event = record.get(EVENT)
    out: list[tuple[str, Any]] = []
    if isinstance(event, str):
        out.append(("event.name", event))
    out.append(("tollgate.record_id", rid))
    names = NAMES_BY_EVENT.get(event, {}) if isinstance(event, str) else {}
    if event == "llm_call" and isinstance(endpoint := record.get("endpoint"), str):
        out.append(("gen_ai.operation.name", operation_name(endpoint)))
    for field, value in record.items():
        if value is None or field in OWN_PLACES:
            continue
        name = names.get(field)
        if name is None:
            out.append((f"tollgate.{field}", value))
        elif name == "gen_ai.provider.name" and isinstance(value, str):
            out.append((name, semconv_name(value)))
        elif name == "gen_ai.response.finish_reasons":
            out.append((name, [value]))
        else:
            out.append((name, value))
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


def log_record(line: bytes, observed_ns: int) -> tuple[str | None, LogRecord]:
    """The instance that wrote the line (None when it does not say) and its log record."""
    record = parse(line)
    rid = record_id(line, record)
    if record is None:
        attrs: list[tuple[str, Any]] = [("tollgate.record_id", rid)]
        instance = None
        when = 0
    else:
        attrs = attributes(record, rid)
        value = record.get(INSTANCE)
        instance = value if isinstance(value, str) else None
        when = time_of(record.get(TS))
    log = LogRecord(
        time_unix_nano=when,
        observed_time_unix_nano=observed_ns,
        severity_number=SEVERITY_INFO,  # type: ignore[arg-type]  # an enum's value
        severity_text="INFO",
        body=AnyValue(string_value=line.decode("utf-8", "replace")),
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs],
    )
    return instance, log


def resource(instance: str | None, service_name: str = DEFAULT_SERVICE_NAME) -> Resource:
    attrs = [KeyValue(key="service.name", value=AnyValue(string_value=service_name))]
    version = tollgate_version()
    if version is not None:
        attrs.append(KeyValue(key="service.version", value=AnyValue(string_value=version)))
    if instance is not None:
        attrs.append(KeyValue(key="service.instance.id", value=AnyValue(string_value=instance)))
    return Resource(attributes=attrs)


def export_request(lines: Sequence[bytes], observed_ns: int) -> ExportLogsServiceRequest:
    """One request for `lines` (each without its newline), in their order: one ResourceLogs for each
    run of consecutive lines of one instance (a fleet's workers write one file)."""
    request = ExportLogsServiceRequest()
    scope = InstrumentationScope(name=SCOPE, version=tollgate_version() or "")
    current: tuple[str | None, list[LogRecord]] | None = None
    runs: list[tuple[str | None, list[LogRecord]]] = []
    for line in lines:
        instance, log = log_record(line, observed_ns)
        if current is None or current[0] != instance:
            current = (instance, [])
            runs.append(current)
        current[1].append(log)
    for instance, logs in runs:
        request.resource_logs.append(
            ResourceLogs(resource=resource(instance), scope_logs=[ScopeLogs(scope=scope, log_records=logs)])
        )
    return request


def bodies(request: ExportLogsServiceRequest) -> Iterable[str]:
    """The bodies of a request's log records, in order (what a receiver reads back)."""
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                yield log.body.string_value
