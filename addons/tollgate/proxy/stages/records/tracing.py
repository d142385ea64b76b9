"""OpenTelemetry traces: a span per call, made at the call's end from its audit record (`Audit`
tells `record`) and exported by the SDK's own thread (`tracing.py`). On when `metrics.otlp` or the
OTEL_EXPORTER_OTLP_* variables say where spans go."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.configuration.runtime import Loaded
from tollgate.proxy.state import Shared
from tollgate.records.telemetry.traces import SHUTDOWN_SECONDS, OtlpSettings, Traces, otlp_settings

logger = logging.getLogger(__name__)


class Tracing:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._traces: Traces | None = None
        self._settings: OtlpSettings | None = None
        self._seen: Loaded | None = None  # the configuration whose settings are in force
        self._done = False

    def configure(self, updated: set[str]) -> None:
        self._follow(self.shared.loaded)

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        """The request goes upstream with the call's span as the parent of what the upstream does
        (`traceparent`, in place of the client's; `tracestate` as it came). Before the credential
        step: a request that Tollgate signs is signed with it."""
        traces = self._current()
        if traces is not None:
            flow.request.headers["traceparent"] = traces.upstream_traceparent(call)

    def record(self, call: Call, record: dict[str, Any]) -> None:
        """At the call's end, with its audit record: its span queued for export."""
        traces = self._current()
        if traces is not None:
            traces.record(call, record)

    def _current(self) -> Traces | None:
        loaded = self.shared.loaded
        if loaded is not self._seen:  # a reload (the watcher's, not a mitmproxy `configure`)
            self._follow(loaded)
        return self._traces

    def _follow(self, loaded: Loaded | None) -> None:
        """The exporter the configuration asks for: made anew only when the settings changed; the
        one replaced exports what it holds and stops in its own thread."""
        if loaded is None or self._done:
            return
        self._seen = loaded
        settings = otlp_settings(loaded.config.metrics.otlp, os.environ)
        if settings == self._settings:
            return
        old, self._traces, self._settings = self._traces, None, settings
        if old is not None:
            old.stop()
        if settings is None:
            if old is not None:
                logger.info("Tollgate: traces off")
            return
        try:
            self._traces = Traces(settings)
        except Exception as e:  # traces are an export: a failure to start them stops no call
            logger.error(f"Tollgate: traces not exported, the exporter could not start: {type(e).__name__}")
            return
        source = " (from OTEL_EXPORTER_OTLP_* variables)" if settings.from_environment else ""
        logger.info(f"Tollgate: traces exported over OTLP/HTTP to {settings.where}{source}")

    def done(self) -> Awaitable[None] | None:
        """After the audit's `done`, whose last records made their spans: those queued exported,
        waiting at most SHUTDOWN_SECONDS (in the exporter's thread, not on the event loop)."""
        self._done = True
        traces, self._traces, self._settings = self._traces, None, None
        if traces is None:
            return None
        return _wait(traces)


async def _wait(traces: Traces) -> None:
    stopping = traces.stop()
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    while stopping.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if stopping.is_alive():
        logger.warning(f"Tollgate: the trace collector did not take the last spans within {SHUTDOWN_SECONDS:g} s")
