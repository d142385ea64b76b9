"""tracing.py: where spans go (metrics.otlp, else the OTEL_* variables as the OpenTelemetry spec reads
them), the span of a call (name, kind, times, the GenAI attributes and Tollgate's own, status), and
its export over OTLP/HTTP to a collector stand-in."""

from __future__ import annotations

import time

import pytest
from tests.support.otlp import Collector, no_collector, wait_for_trace_exports_to_stop

from tollgate.calls.call import Answer, Call, Caller, Failure, Route, Target
from tollgate.configuration.config import OtlpConfig
from tollgate.configuration.fleet import instance_name
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.usage import Usage
from tollgate.records.audit.audit_record import audit_record
from tollgate.records.telemetry.traces import (
    OPERATIONS,
    OtlpSettings,
    Traces,
    error_type,
    operation_name,
    otlp_settings,
    span_attributes,
    span_name,
)

# ---- where spans go


def test_metrics_otlp_wins_over_the_environment() -> None:
    otlp = OtlpConfig(endpoint="https://collector.example:4318/", headers={"x-api-key": "k1"}, service_name="gw")
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere:4318", "OTEL_SERVICE_NAME": "other"}
    assert otlp_settings(otlp, environ) == OtlpSettings(
        "https://collector.example:4318/v1/traces", (("x-api-key", "k1"),), "gw", from_environment=False
    )


def test_nothing_set_means_no_traces() -> None:
    assert otlp_settings(None, {}) is None
    assert otlp_settings(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "  ", "OTEL_SERVICE_NAME": "x"}) is None


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        # The generic variable is a base: /v1/traces appended, after its path if it has one.
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp"}, "https://c/otlp/v1/traces"),
        # The traces variable is used as it is, and wins over the generic one.
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/custom"}, "http://t:4318/custom"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            "http://t/x",
        ),
        # An empty variable counts as not set.
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "http://c/v1/traces"),
    ],
)
def test_the_endpoint_from_the_environment(environ: dict[str, str], endpoint: str) -> None:
    settings = otlp_settings(None, environ)
    assert settings is not None and settings.from_environment
    assert settings.endpoint == endpoint


def test_headers_and_service_name_from_the_environment() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    settings = otlp_settings(None, {**base, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret,X-Team=ml"})
    assert settings is not None
    assert dict(settings.headers) == {"api-key": "s ecret", "x-team": "ml"}
    assert settings.service_name == "tollgate"
    # The traces headers replace the generic ones.
    settings = otlp_settings(
        None, {**base, "OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2"}
    )
    assert settings is not None and dict(settings.headers) == {"b": "2"}
    # OTEL_SERVICE_NAME, else service.name among the resource attributes.
    settings = otlp_settings(None, {**base, "OTEL_RESOURCE_ATTRIBUTES": "team=ml,service.name=gw%201"})
    assert settings is not None and settings.service_name == "gw 1"
    settings = otlp_settings(None, {**base, "OTEL_RESOURCE_ATTRIBUTES": "service.name=gw", "OTEL_SERVICE_NAME": "s"})
    assert settings is not None and settings.service_name == "s"


@pytest.mark.parametrize(
    "off",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_SDK_DISABLED": "TRUE"},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
    ],
)
def test_variables_that_turn_exported_traces_off(off: dict[str, str]) -> None:
    assert otlp_settings(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **off}) is None


@pytest.mark.parametrize(
    "on",
    [
        {"OTEL_SDK_DISABLED": "false"},
        {"OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_TRACES_EXPORTER": "console, otlp"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_variables_that_leave_them_on(on: dict[str, str]) -> None:
    assert otlp_settings(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **on}) is not None


def test_the_endpoint_is_logged_without_a_login_it_holds() -> None:
    assert OtlpSettings("https://user:pw@c.example:4318/v1/traces").where == "https://c.example:4318/v1/traces"
    assert "pw" not in repr(OtlpSettings("http://c/v1/traces", (("api-key", "pw"),)))


# ---- the operation


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [
        ("chat.completions", "chat"),
        ("responses", "chat"),
        ("messages", "chat"),
        ("converse", "chat"),
        ("converse-stream", "chat"),
        ("invoke-with-response-stream", "chat"),
        ("generateContent", "generate_content"),
        ("streamGenerateContent", "generate_content"),
        ("completions", "text_completion"),
        ("embeddings", "embeddings"),
        ("embedContent", "embeddings"),
        ("batchEmbedContents", "embeddings"),
        # No operation of the conventions fits: the endpoint's own name.
        ("messages.count_tokens", "messages.count_tokens"),
        ("models", "models"),
        ("images.generations", "images.generations"),
        (None, "unknown"),
    ],
)
def test_operation_names(endpoint: str | None, operation: str) -> None:
    assert operation_name(endpoint) == operation


def test_every_mapped_operation_is_one_the_conventions_define() -> None:
    from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GenAiOperationNameValues

    assert set(OPERATIONS.values()) <= {v.value for v in GenAiOperationNameValues}


def test_every_provider_name_is_one_the_conventions_define() -> None:
    from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GenAiProviderNameValues

    from tollgate.providers import PROVIDERS, SEMCONV_NAMES

    assert set(SEMCONV_NAMES) == set(PROVIDERS)
    # The vendors the conventions do not name go by their own names, as a configured one does
    # (Copilot by its owner's too, as the conventions write a cloud's services).
    own = {"openrouter", "together", "fireworks", "cerebras", "github.copilot"}
    assert set(SEMCONV_NAMES.values()) - own <= {v.value for v in GenAiProviderNameValues}
    assert own.isdisjoint(v.value for v in GenAiProviderNameValues)


# ---- the span's attributes


def served_call(**changes) -> Call:
    call = Call(
        Route(Target("openai", "gpt-4o"), Target("openai", "gpt-4o-mini"), "https://127.0.0.1:8443"),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        Classification("chat.completions", "gpt-4o", RequestFacts(message_count=2, max_tokens=64, stream=False)),
        caller=Caller(client="app", groups=("support", "eu"), auth="virtual_key"),
        started=1_700_000_000.25,
        answer=Answer(
            upstream_key="sha256:0123456789ab",
            status=200,
            ended=1_700_000_001.5,
            usage=Usage(
                input_tokens=24,
                output_tokens=7,
                total_tokens=31,
                cached_tokens=5,
                reasoning_tokens=2,
                finish_reason="stop",
            ),
        ),
    )
    for name, value in changes.items():  # on the call, or on the part of it that holds the field
        setattr(
            next(part for part in (call, call.caller, call.verdict, call.answer, call.ledger) if hasattr(part, name)),
            name,
            value,
        )
    return call


def test_a_served_calls_attributes() -> None:
    call = served_call()
    assert span_name(call) == "chat gpt-4o"
    assert span_attributes(call, {"cost_usd": 0.000123}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-mini",  # the override's
        "gen_ai.request.max_tokens": 64,
        "gen_ai.usage.input_tokens": 24,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 5,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "gen_ai.response.finish_reasons": ("stop",),
        "server.address": "127.0.0.1",
        "server.port": 8443,
        "http.response.status_code": 200,
        "tollgate.endpoint": "chat.completions",
        "tollgate.client": "app",
        "tollgate.groups": ("support", "eu"),
        "tollgate.decision": "allow",
        "tollgate.deny_reasons": (),
        "tollgate.request_id": call.request_id,
        "tollgate.cost_usd": 0.000123,
    }


def test_the_cost_is_the_audits() -> None:
    """The audit record's cost_usd is call.cost_nanousd() in dollars: the span takes it from there."""
    from tollgate.configuration.config import parse_config
    from tollgate.configuration.runtime import Loaded

    loaded = Loaded.build(
        parse_config(
            {
                "prices": [
                    {"match": {"provider": "openai", "model": "gpt-4o-mini"}, "input_per_mtok": 1, "output_per_mtok": 2}
                ]
            },
            {},
        )
    )
    call = served_call(loaded=loaded)
    record = audit_record(call)
    assert call.cost_nanousd()
    assert span_attributes(call, record)["tollgate.cost_usd"] == record["cost_usd"] == call.cost_nanousd() / 1e9


def test_unknowns_are_left_out() -> None:
    call = Call(
        Route.as_called("gemini"),
        "generativelanguage.googleapis.com",
        "GET",
        "/v1beta/models",
        Classification("models"),
    )
    call.answer.status, call.answer.ended = 200, call.started + 0.01
    attributes = span_attributes(call, {"cost_usd": None})
    assert span_name(call) == "models"
    assert attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert attributes["server.address"] == "generativelanguage.googleapis.com"  # never routed: the host called
    for absent in (
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.request.max_tokens",
        "tollgate.client",
        "tollgate.cost_usd",
        "error.type",
        "server.port",
    ):
        assert absent not in attributes
    assert None not in attributes.values()


def test_a_denied_call_is_an_error_with_its_status_and_reasons() -> None:
    call = served_call(
        decision="deny",
        deny_reasons=("model gpt-4o is not allowed",),
        status=403,
        usage=None,
        answered_by_tollgate=True,
        refused="policy_denied",
    )
    attributes = span_attributes(call, {"cost_usd": None})
    assert attributes["error.type"] == "policy_denied"
    assert attributes["tollgate.decision"] == "deny"
    assert attributes["tollgate.deny_reasons"] == ("model gpt-4o is not allowed",)
    assert "gen_ai.usage.input_tokens" not in attributes


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({}, None),
        ({"status": 429}, "429"),  # the upstream's
        ({"status": 429, "refused": "budget_exceeded"}, "budget_exceeded"),  # Tollgate's
        ({"status": 500}, "500"),
        ({"status": 504, "failure": Failure.UPSTREAM_TIMEOUT, "error": "upstream timed out"}, "upstream_timeout"),
        ({"status": 502, "failure": Failure.UPSTREAM_UNREACHABLE}, "upstream_unreachable"),
        ({"status": 200, "failure": Failure.UPSTREAM_BROKE_OFF}, "upstream_broke_off"),
        ({"status": 200, "error": "the stream ended in an error event: overloaded_error"}, "_OTHER"),
        ({"status": None, "error": "proxy shut down during the call"}, "_OTHER"),
    ],
)
def test_error_types(changes: dict, kind: str | None) -> None:
    assert error_type(served_call(**changes)) == kind


# ---- exported


def test_a_calls_span_as_the_collector_receives_it() -> None:
    collector = Collector.start()
    try:
        traces = Traces(OtlpSettings(collector.url + "/v1/traces", (("x-collector-key", "ck-1"),), "gw-test"))
        served = served_call()
        failed = served_call(status=504, failure=Failure.UPSTREAM_TIMEOUT, error="upstream timed out", usage=None)
        traces.record(served, {"cost_usd": 0.5})
        traces.record(failed, {"cost_usd": None})
        assert traces.shutdown(10)  # exports what is queued
        ok, timed_out = sorted(
            collector.wait_spans(2), key=lambda s: s["attributes"]["tollgate.request_id"] == failed.request_id
        )
    finally:
        collector.close()
    assert (ok["name"], ok["kind"], ok["status"], ok["parent_span_id"]) == ("chat gpt-4o", "CLIENT", "UNSET", "")
    assert ok["start_ns"] == pytest.approx(served.started * 1e9, abs=1000)
    assert ok["end_ns"] == pytest.approx(served.answer.ended * 1e9, abs=1000)
    assert ok["attributes"]["gen_ai.usage.input_tokens"] == 24
    assert ok["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert ok["attributes"]["tollgate.groups"] == ["support", "eu"]
    assert ok["resource"]["service.name"] == "gw-test"
    assert ok["resource"]["service.version"]
    assert ok["resource"]["service.instance.id"] == instance_name()  # as the audit names the process
    assert ok["scope"] == "tollgate"
    assert (timed_out["status"], timed_out["status_message"]) == ("ERROR", "upstream timed out")
    assert timed_out["attributes"]["error.type"] == "upstream_timeout"
    assert ok["trace_id"] != timed_out["trace_id"]  # each call its own trace
    assert all(r.headers["x-collector-key"] == "ck-1" for r in collector.requests)
    assert {r.path for r in collector.requests} == {"/v1/traces"}


def test_recording_with_the_collector_down_neither_blocks_nor_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    traces = Traces(OtlpSettings(f"{no_collector(monkeypatch)}/v1/traces"))
    start = time.perf_counter()
    for _ in range(200):
        traces.record(served_call(), {"cost_usd": None})
    # Under the exporter's 1-s timeout: a record that waited for an export would take one at least.
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    traces.shutdown(0.5)  # waits no longer than told, whatever the exporter is doing
    assert time.perf_counter() - start < 1.5
    wait_for_trace_exports_to_stop()
