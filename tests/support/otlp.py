"""A stand-in for an OpenTelemetry collector: OTLP/HTTP on 127.0.0.1, POST /v1/traces decoded with
opentelemetry-proto's `ExportTraceServiceRequest` and POST /v1/logs with `ExportLogsServiceRequest`
(gzip or deflate when Content-Encoding says so). It keeps each span and each log record as a plain
dict (attributes as Python values) and each request's headers. It can be down (nothing listens on
its port: `down`, `up`), answer another status (`status`, `log_status`), or be slow (`delay`)."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.support.proxy import free_port
from tests.support.quiet_handler import QuietHandler, Switchable

SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def no_collector(monkeypatch: pytest.MonkeyPatch) -> str:
    """The endpoint of a collector that is down, for an exporter made after this call that gives
    up within a second: it retries until its timeout, with jitter drawn from the `random` module."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    return f"http://127.0.0.1:{free_port()}"


def wait_for_trace_exports_to_stop(timeout: float = 10) -> None:
    """Every exporter stopping in the background (`Traces.stop`) stopped: none retries on into
    the tests after (Hypothesis warns of a `random` drawn from during its examples)."""
    for thread in threading.enumerate():
        if thread.name == "tollgate-traces-shutdown":
            thread.join(timeout)
            assert not thread.is_alive()


def _each(by_resource: Any, scoped: str, items: str) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """An export request's items (its `by_resource` entries' `scoped` entries' `items`), each with
    its resource's attributes and its scope's name."""
    for entry in by_resource:
        resource = {kv.key: value_of(kv.value) for kv in entry.resource.attributes}
        for scope in getattr(entry, scoped):
            for item in getattr(scope, items):
                yield resource, scope.scope.name, item


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class Collector(Switchable):
    """Start with `Collector.start()`; `url` is its endpoint (what `metrics.otlp.endpoint` takes)."""

    port: int = field(default_factory=free_port)
    spans: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    status: int = 200  # what it answers; another status makes the exporter retry or drop
    logs: list[dict[str, Any]] = field(default_factory=list)  # the log records it took (answered 200)
    log_status: int = 200  # what it answers to /v1/logs
    delay: float = 0.0  # seconds it waits before it answers (a slow collector)
    refused_logs: int = 0  # log records in requests it did not answer 200

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._make_server()

    def _make_server(self) -> None:
        collector = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()})
                if collector.delay:
                    time.sleep(collector.delay)
                spans: list[dict[str, Any]] = []
                logs: list[dict[str, Any]] = []
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    spans = list(collector.spans_of(request))
                elif self.path == "/v1/logs":
                    logs_request = ExportLogsServiceRequest()
                    logs_request.ParseFromString(body)
                    logs = list(collector.logs_of(logs_request))
                with collector._lock:
                    collector.requests.append(received)
                    if self.path == "/v1/traces":
                        status = collector.status
                        if status == 200:
                            collector.spans.extend(spans)
                        answer = ExportTraceServiceResponse().SerializeToString()
                    elif self.path == "/v1/logs":
                        status = collector.log_status
                        if status == 200:
                            collector.logs.extend(logs)
                        else:
                            collector.refused_logs += len(logs)
                        answer = ExportLogsServiceResponse().SerializeToString()
                    else:
                        status = 404
                if status != 200:
                    answer = b""
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._serve(Handler)

    @classmethod
    def start(cls, listening: bool = True) -> Collector:
        """A collector on a port of its own; `listening=False`: down (`up` starts it)."""
        collector = cls()
        if listening:
            collector.up()
        else:
            collector.close()  # its port free: connections refused until `up`
        return collector

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def spans_of(request: ExportTraceServiceRequest):
        for resource, scope, span in _each(request.resource_spans, "scope_spans", "spans"):
            yield {
                "name": span.name,
                "kind": SPAN_KINDS[span.kind],
                "trace_id": span.trace_id.hex(),
                "span_id": span.span_id.hex(),
                "parent_span_id": span.parent_span_id.hex(),
                "trace_state": span.trace_state,
                "start_ns": span.start_time_unix_nano,
                "end_ns": span.end_time_unix_nano,
                "attributes": {kv.key: value_of(kv.value) for kv in span.attributes},
                "status": STATUS_CODES[span.status.code],
                "status_message": span.status.message,
                "resource": resource,
                "scope": scope,
                "events": len(span.events),
            }

    @staticmethod
    def logs_of(request: ExportLogsServiceRequest):
        for resource, scope, log in _each(request.resource_logs, "scope_logs", "log_records"):
            yield {
                "body": value_of(log.body),
                "time_ns": log.time_unix_nano,
                "observed_ns": log.observed_time_unix_nano,
                "severity": log.severity_text,
                "attributes": {kv.key: value_of(kv.value) for kv in log.attributes},
                "resource": resource,
                "scope": scope,
            }

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.requests.clear()
            self.logs.clear()

    def wait_logs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The log records received, once there are at least `count`."""
        return self._wait(self.logs, count, timeout, "log records")

    def wait_spans(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The spans received, once there are at least `count`."""
        return self._wait(self.spans, count, timeout, "spans", shown=True)

    def _wait(
        self, items: list[dict[str, Any]], count: int, timeout: float, what: str, shown: bool = False
    ) -> list[dict[str, Any]]:
        """`items` once there are at least `count` of them; else an error naming `what` (with the
        items themselves when `shown`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(items) >= count:
                    return list(items)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {what}, have {len(items)}" + (f": {items}" if shown else ""))
