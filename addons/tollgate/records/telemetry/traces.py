"""OpenTelemetry traces of the calls: one span per call, in the GenAI semantic conventions, made
when the call ends and exported over OTLP/HTTP (protobuf) by the SDK's batch processor, from its
own thread. A span holds what the audit record holds (metadata), never content, never a key.

Where spans go is `metrics.otlp` (`OtlpConfig`), else the standard OTEL_EXPORTER_OTLP_* variables
(`otlp_settings`). The SDK is imported only when traces are on (`Traces`)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tollgate.configuration.fleet import instance_name
from tollgate.configuration.records_settings import DEFAULT_SERVICE_NAME, OtlpConfig
from tollgate.providers import semconv_name

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from tollgate.calls.call import Call

logger = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
SHUTDOWN_SECONDS = 5.0  # at most, to export what is queued when Tollgate stops or a reload drops the exporter


# Tollgate's endpoint names (docs/policy.md) as the GenAI conventions name the operation; an
# endpoint none fits keeps its own name (the conventions allow a system-specific one).
OPERATIONS = {
    "chat.completions": "chat",
    "responses": "chat",
    "messages": "chat",  # Anthropic
    "converse": "chat",  # Bedrock
    "converse-stream": "chat",
    "invoke": "chat",  # Bedrock's InvokeModel: mostly chat models (Claude, Nova, Llama)
    "invoke-with-response-stream": "chat",
    "generateContent": "generate_content",  # Gemini, and Google's models on Vertex AI
    "streamGenerateContent": "generate_content",
    "rawPredict": "chat",  # Claude on Vertex AI
    "streamRawPredict": "chat",
    "completions": "text_completion",  # OpenAI's legacy completions, Anthropic's /v1/complete
    "embeddings": "embeddings",
    "embedContent": "embeddings",  # Gemini
    "batchEmbedContents": "embeddings",
}


def operation_name(endpoint: str | None) -> str:
    """gen_ai.operation.name for a Tollgate endpoint name."""
    if endpoint is None:
        return "unknown"
    return OPERATIONS.get(endpoint, endpoint)


# ---- where spans go


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """Where spans go: the full traces URL (`…/v1/traces`), the headers sent with them, the service."""

    endpoint: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold a collector's API key
    service_name: str = DEFAULT_SERVICE_NAME
    from_environment: bool = False

    @property
    def where(self) -> str:
        """The endpoint for a log line: without a login it might hold."""
        parts = urlsplit(self.endpoint)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """A variable's value; an empty one counts as not set (as the OpenTelemetry spec says)."""
    value = environ.get(name, "").strip()
    return value or None


def otlp_settings(otlp: OtlpConfig | None, environ: Mapping[str, str]) -> OtlpSettings | None:
    """Where spans go, or None for no traces.

    `metrics.otlp` wins: spans go to its `endpoint` + /v1/traces. Without it, the OpenTelemetry
    environment variables, as the spec reads them: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is,
    else OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended; the headers from
    OTEL_EXPORTER_OTLP_TRACES_HEADERS, else OTEL_EXPORTER_OTLP_HEADERS; the service from
    OTEL_SERVICE_NAME, else `service.name` in OTEL_RESOURCE_ATTRIBUTES. OTEL_SDK_DISABLED=true, an
    OTEL_TRACES_EXPORTER without `otlp` and a protocol other than http/protobuf turn them off."""
    if otlp is not None:
        return OtlpSettings(otlp.endpoint.rstrip("/") + TRACES_PATH, tuple(otlp.headers.items()), otlp.service_name)
    endpoint = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint is None:
        base = _env(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if base is None:
            return None
        endpoint = base.removesuffix("/") + TRACES_PATH
    if (_env(environ, "OTEL_SDK_DISABLED") or "").lower() == "true":
        return None
    exporters = _env(environ, "OTEL_TRACES_EXPORTER")
    if exporters is not None and "otlp" not in (e.strip().lower() for e in exporters.split(",")):
        return None
    protocol = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol is not None and protocol != "http/protobuf":
        logger.warning(f"Tollgate: OTLP protocol {protocol!r} is not supported (only http/protobuf): no traces")
        return None
    from opentelemetry.util.re import parse_env_headers

    raw_headers = _env(environ, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") or _env(environ, "OTEL_EXPORTER_OTLP_HEADERS")
    headers = parse_env_headers(raw_headers, liberal=True) if raw_headers else {}
    service = _env(environ, "OTEL_SERVICE_NAME") or _resource_service_name(environ) or DEFAULT_SERVICE_NAME
    return OtlpSettings(endpoint, tuple(headers.items()), service, from_environment=True)


def _resource_service_name(environ: Mapping[str, str]) -> str | None:
    from urllib.parse import unquote

    for pair in (environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return unquote(value.strip())
    return None


# ---- the span of a call


@lru_cache(maxsize=64)  # the same few upstreams, call after call
def server_of(upstream: str) -> tuple[str, int | None]:
    """server.address and server.port of an upstream (scheme://host[:port])."""
    parts = urlsplit(upstream)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.hostname or upstream, port


def error_type(call: Call) -> str | None:
    """error.type of a call that failed, None for one that did not: how it failed (Tollgate's
    failure kinds: upstream_timeout, …), else why Tollgate refused it (policy_denied,
    rate_limited, …, as in X-Tollgate-Error), else the HTTP status of an upstream's error answer,
    else `_OTHER` for a call without an answer or whose answer ended in an error."""
    if call.answer.failure is not None:
        return call.answer.failure.value
    if call.answer.refused is not None:
        return call.answer.refused
    status = call.answer.status
    if status is not None and status >= 400:
        return str(status)
    if status is None or call.answer.error is not None:
        return "_OTHER"
    return None


def span_name(call: Call) -> str:
    """`{gen_ai.operation.name} {gen_ai.request.model}`, or the operation alone without a model."""
    operation = operation_name(call.classification.endpoint)
    model = call.route.requested.model
    return f"{operation} {model}" if model else operation


def span_attributes(call: Call, record: Mapping[str, Any]) -> dict[str, Any]:
    """The span's attributes: the GenAI conventions' and Tollgate's own, from the call and its audit
    record; those Tollgate does not know are left out (OpenTelemetry has no null)."""
    c = call.classification
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation_name(c.endpoint),
        "gen_ai.provider.name": semconv_name(call.route.target.provider),
        "tollgate.request_id": call.request_id,
        "tollgate.decision": call.verdict.decision,
        "tollgate.groups": call.caller.groups,
        "tollgate.deny_reasons": call.verdict.deny_reasons,
    }
    if c.endpoint is not None:
        attributes["tollgate.endpoint"] = c.endpoint
    if (asked := call.route.requested.model) is not None:
        attributes["gen_ai.request.model"] = asked
    model = call.target_model
    if model is not None:
        attributes["gen_ai.response.model"] = model  # the model called (an override's, if one applied)
    if c.facts.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = c.facts.max_tokens
    if call.caller.client is not None:
        attributes["tollgate.client"] = call.caller.client
    if call.route.rerouted:
        attributes["tollgate.requested_provider"] = call.route.requested.provider
    address, port = server_of(call.route.upstream) if call.route.upstream else (call.host, None)
    attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    if call.answer.status is not None:
        attributes["http.response.status_code"] = call.answer.status
    usage = call.answer.usage
    if usage is not None:
        counts = (
            ("gen_ai.usage.input_tokens", usage.input_tokens),
            ("gen_ai.usage.output_tokens", usage.output_tokens),
            ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
            ("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens),
            ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
        )
        attributes.update((name, n) for name, n in counts if n is not None)
        if usage.finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = (usage.finish_reason,)
    cost = record.get("cost_usd")  # the audit's: call.cost_nanousd() in dollars, computed once
    if cost is not None:
        attributes["tollgate.cost_usd"] = cost
    if (kind := error_type(call)) is not None:
        attributes["error.type"] = kind
    return attributes


def tollgate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tollgate")
    except PackageNotFoundError:
        return "unknown"


class SpanIds:
    """The SDK's id generator: the ids a call's span was given when its request went upstream
    (`Traces.upstream_traceparent`), while `preset` holds them; else new ones, never the invalid 0."""

    def __init__(self) -> None:
        self.preset: tuple[int, int] | None = None

    def generate_span_id(self) -> int:
        return self.preset[1] if self.preset is not None else _new_id(8)

    def generate_trace_id(self) -> int:
        return self.preset[0] if self.preset is not None else _new_id(16)

    def is_trace_id_random(self) -> bool:
        return True  # made by `_new_id`, preset or not (W3C trace context level 2's "random" flag)


def _new_id(size: int) -> int:
    while not (n := int.from_bytes(os.urandom(size))):
        pass
    return n


class Traces:
    """A TracerProvider exporting over OTLP/HTTP: `record` makes a call's span (on the event loop:
    a queue append, no I/O); the batch processor's thread exports them, 512 at most per request,
    every 5 s or sooner when 512 wait (OTEL_BSP_* change that). The queue holds 2048 spans: while
    the collector cannot take them, the newest replace the oldest.

    A call's span is made when the call ends, but its request goes upstream with that span as its
    parent (`upstream_traceparent`): the span's ids are chosen then, and given to it by `SpanIds`."""

    def __init__(self, settings: OtlpSettings) -> None:
        from opentelemetry.context import Context
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.settings = settings
        version, instance = tollgate_version(), instance_name()
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers))
        self._processor = BatchSpanProcessor(exporter)
        # Not shut down at exit by the SDK (which would wait up to 30 s): `shutdown` is bounded.
        self._ids = SpanIds()
        self._provider = TracerProvider(
            # service.instance.id: the process, as the audit's records name it (`instance_name`).
            resource=Resource.create(
                {"service.name": settings.service_name, "service.version": version, "service.instance.id": instance}
            ),
            shutdown_on_exit=False,
            id_generator=self._ids,  # type: ignore[arg-type]  # an IdGenerator but for its base, which would import the SDK
        )
        self._provider.add_span_processor(self._processor)
        self._tracer = self._provider.get_tracer("tollgate", version)
        self._root = Context()  # no span of Tollgate's is a call's parent; the client's may be (`_parent`)
        self._trace_context = TraceContextTextMapPropagator()
        self._span_of = get_current_span
        self._client = SpanKind.CLIENT
        self._status_error = Status
        self._error = StatusCode.ERROR

    def upstream_traceparent(self, call: Call) -> str:
        """The `traceparent` the call's request goes upstream with: the call's span, its ids chosen
        now, as the parent, in the client's trace or else a new one; its flags those the span will
        have (sampled, and the trace id random as W3C trace context level 2 says), as the SDK sets them."""
        parent = self._parent(call.trace.context)
        client = self._span_of(parent).get_span_context()
        trace_id = client.trace_id if client.is_valid else self._ids.generate_trace_id()
        call.trace.span_ids = (trace_id, self._ids.generate_span_id())
        sampling = self._provider.sampler.should_sample(parent, trace_id, span_name(call), self._client)
        random = client.trace_flags.random_trace_id if client.is_valid else self._ids.is_trace_id_random()
        flags = (1 if sampling.decision.is_sampled() else 0) | (2 if random else 0)
        return f"00-{trace_id:032x}-{call.trace.span_ids[1]:016x}-{flags:02x}"

    def record(self, call: Call, record: Mapping[str, Any]) -> None:
        """The call's span, made now that it has ended, queued for export."""
        ended = call.answer.ended if call.answer.ended is not None else time.time()
        attributes = span_attributes(call, record)
        self._ids.preset = call.trace.span_ids
        try:
            span = self._tracer.start_span(
                span_name(call),
                context=self._parent(call.trace.context),
                kind=self._client,
                attributes=attributes,
                start_time=int(call.started * 1e9),
            )
        finally:
            self._ids.preset = None
        if "error.type" in attributes:
            span.set_status(self._status_error(self._error, call.answer.error))
        span.end(end_time=int(ended * 1e9))

    def _parent(self, trace_context: tuple[bytes, bytes | None] | None) -> Context:
        """The client's span, as its `traceparent` and `tracestate` name it; none if it sent no
        valid one."""
        if trace_context is None:
            return self._root
        parent, state = trace_context
        carrier = {"traceparent": parent.decode("latin-1")}
        if state is not None:
            carrier["tracestate"] = state.decode("latin-1")
        return self._trace_context.extract(carrier, context=self._root)

    def stop(self) -> threading.Thread:
        """Export what is queued, then stop, in a thread of its own (returned): the event loop never
        waits for the collector. The SDK gives the export up to 30 s; a caller that cannot wait
        that long stops waiting (`shutdown`), and the spans still queued are dropped at exit."""
        thread = threading.Thread(target=self._stop, name="tollgate-traces-shutdown", daemon=True)
        thread.start()
        return thread

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """`stop`, waiting up to `timeout` seconds (not on the event loop); whether it finished."""
        thread = self.stop()
        thread.join(timeout)
        return not thread.is_alive()

    def _stop(self) -> None:
        try:
            self._processor.shutdown()
        except Exception as e:  # a failing exporter must not stop Tollgate's shutdown or reload
            logger.error(f"Tollgate: stopping the trace exporter failed: {type(e).__name__}")
