"""The audit shipped to an OpenTelemetry collector (`audit.otlp`), from the file, by a thread of
its own (`records/audit_export.py`): started with the configuration that asks for it, made anew
when a reload changes where the file is or where it goes, stopped at the end (after the audit's
last record, with a bounded last attempt to send what is left). No call waits for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from tollgate.core.call import Call
from tollgate.core.runtime import Loaded
from tollgate.proxy.state import Shared
from tollgate.records.audit_export import STOP_SECONDS, AuditExport

logger = logging.getLogger(__name__)

Wanted = tuple[str, str, tuple[tuple[str, str], ...]]  # audit path, endpoint, headers


class AuditExporter:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._export: AuditExport | None = None
        self._wanted: Wanted | None = None
        self._seen: Loaded | None = None  # the configuration whose settings are in force
        self._done = False

    def configure(self, updated: set[str]) -> None:
        self._follow(self.shared.loaded)

    def recorded(self, call: Call, record: dict[str, Any]) -> None:
        """At each call's end: a configuration the file watcher reloaded is followed (one look)."""
        if self.shared.loaded is not self._seen:
            self._follow(self.shared.loaded)

    def lag(self) -> int | None:
        """Records written and not yet acknowledged by the collector (/metrics); None when this
        process does not ship the audit."""
        export = self._export
        return None if export is None else export.lag()

    def _follow(self, loaded: Loaded | None) -> None:
        if loaded is None or self._done:
            return
        self._seen = loaded
        audit = loaded.config.audit
        wanted = None if audit.otlp is None else (audit.path, audit.otlp.endpoint, tuple(audit.otlp.headers.items()))
        if wanted == self._wanted:
            return
        old, self._export, self._wanted = self._export, None, wanted
        if old is not None:
            old.stop_later()  # what it read is sent from its own thread; the new one waits for its lock
        if wanted is None:
            if old is not None:
                logger.info("Tollgate: the audit is no longer exported")
            return
        path, endpoint, headers = wanted
        self._export = AuditExport(path, endpoint, dict(headers)).start()

    def done(self) -> Awaitable[None] | None:
        """After the audit's `done` (its last record written): what is left sent, for up to
        STOP_SECONDS, from the exporter's thread; the event loop only polls it."""
        self._done = True
        export, self._export, self._wanted = self._export, None, None
        if export is None:
            return None
        return _wait(export)


async def _wait(export: AuditExport) -> None:
    stopping = export.stop_later(STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS + 1
    while stopping.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if stopping.is_alive():
        logger.warning(
            f"Tollgate: the collector did not take the last audit records within {STOP_SECONDS:g} s;"
            " the next start sends them"
        )
