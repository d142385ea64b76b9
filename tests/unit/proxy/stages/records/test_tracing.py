"""Tracing on a configured `Shared` and a collector stand-in: the exporter follows the configuration
(made at configure, kept across a reload that leaves the OTLP settings alone, replaced or stopped by
one that changes them), the audit's end of a call makes its span, and `done` exports what is queued."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from tests.support.otlp import Collector, no_collector, wait_for_trace_exports_to_stop

from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.proxy.stages.records.audit import Audit
from tollgate.proxy.stages.records.tracing import Tracing
from tollgate.proxy.state import Shared

from ..conftest import HOSTS, api_flow, classified, configured


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector.start()
    yield collector
    collector.close()


def otlp(collector: Collector, **settings) -> dict:
    return {"metrics": {"otlp": {"endpoint": collector.url, **settings}}}


def reload(shared: Shared, data: dict) -> None:
    shared.apply(Loaded.build(parse_config(data, {}), previous=shared.loaded), shared.audit)


def finish_call(shared: Shared, audit: Audit, model: str = "gpt-4o") -> str:
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": model, "messages": []})
    call = classified(shared, flow)
    audit.request(flow)
    audit.error(flow)  # the call ends (no answer): its record, then its span
    return call.request_id


def done(tracing: Tracing) -> None:
    pending = tracing.done()
    if pending is not None:
        asyncio.run(pending)  # type: ignore[arg-type]


def test_no_otlp_settings_no_exporter() -> None:
    shared = configured()
    tracing = Tracing(shared)
    tracing.configure({"tollgate_config"})
    finish_call(shared, Audit(shared, recorded=[tracing.record]))
    assert tracing._traces is None
    assert tracing.done() is None


def test_a_calls_end_makes_its_span_exported_at_done(collector: Collector) -> None:
    shared = configured(otlp(collector, headers={"x-collector-key": "ck"}, service_name="gw"))
    tracing = Tracing(shared)
    tracing.configure({"tollgate_config"})
    audit = Audit(shared, recorded=[tracing.record])
    ids = [finish_call(shared, audit) for _ in range(3)]
    done(tracing)
    spans = collector.wait_spans(3, timeout=1)
    assert sorted(s["attributes"]["tollgate.request_id"] for s in spans) == sorted(ids)
    assert {s["name"] for s in spans} == {"chat gpt-4o"}
    assert {s["resource"]["service.name"] for s in spans} == {"gw"}
    assert collector.requests[0].headers["x-collector-key"] == "ck"


def test_a_reload_keeps_replaces_or_stops_the_exporter(collector: Collector) -> None:
    shared = configured(otlp(collector))
    tracing = Tracing(shared)
    tracing.configure({"tollgate_config"})
    audit = Audit(shared, recorded=[tracing.record])
    first = tracing._traces
    assert first is not None

    reload(shared, {**otlp(collector), "allow_anonymous": True})  # OTLP settings unchanged
    finish_call(shared, audit)
    assert tracing._traces is first

    reload(shared, otlp(collector, service_name="renamed"))  # seen at the next call's end
    finish_call(shared, audit, model="after-reload")
    second = tracing._traces
    assert second is not None and second is not first
    # The exporter replaced exported what it held, in its own thread.
    [kept] = collector.wait_spans(1, timeout=5)
    assert (kept["name"], kept["resource"]["service.name"]) == ("chat gpt-4o", "tollgate")

    reload(shared, {})
    finish_call(shared, audit, model="untraced")
    assert tracing._traces is None
    spans = collector.wait_spans(2, timeout=5)
    assert [s["name"] for s in spans] == ["chat gpt-4o", "chat after-reload"]
    assert spans[1]["resource"]["service.name"] == "renamed"
    assert tracing.done() is None


def test_the_otel_variables_alone_turn_traces_on(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20collector-token")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    shared = configured()
    tracing = Tracing(shared)
    tracing.configure({"tollgate_config"})
    finish_call(shared, Audit(shared, recorded=[tracing.record]))
    done(tracing)
    [span] = collector.wait_spans(1, timeout=1)
    assert span["resource"]["service.name"] == "from-env"
    assert collector.requests[0].headers["authorization"] == "Bearer collector-token"


def test_done_waits_no_longer_than_its_bound_for_a_collector_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from tollgate.proxy.stages.records import tracing as stage

    monkeypatch.setattr(stage, "SHUTDOWN_SECONDS", 0.3)
    shared = configured({"metrics": {"otlp": {"endpoint": no_collector(monkeypatch)}}})
    tracing = Tracing(shared)
    tracing.configure({"tollgate_config"})
    finish_call(shared, Audit(shared, recorded=[tracing.record]))
    start = time.monotonic()
    done(tracing)
    assert time.monotonic() - start < 1.5
    wait_for_trace_exports_to_stop()
