"""The audit sent elsewhere from its file, each by a thread of its own (`records/senders/file_sender.py`):
to an OpenTelemetry collector (`audit.otlp`, `AuditExporter`) and to PostgreSQL (`audit.postgres`,
`AuditPostgres`). Each is started with the configuration that asks for it, made anew when a reload
changes where the file is or where it goes, stopped at the end (after the audit's last record,
with a bounded last attempt to send what is left). No call waits for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Hashable
from typing import Any

from tollgate.calls.call import Call
from tollgate.configuration.records_settings import AuditConfig
from tollgate.configuration.runtime import Loaded
from tollgate.proxy.state import Shared
from tollgate.records.senders.audit_otlp import AuditExport
from tollgate.records.senders.file_sender import STOP_SECONDS, FileSender

logger = logging.getLogger(__name__)


class AuditSending:
    """One kind of sender of the audit file, following the configuration. A kind says what it is
    given (`wanted`: None when the configuration asks for none) and makes it (`make`)."""

    stopped_line = "Tollgate: the audit is no longer sent"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._export: FileSender | None = None
        self._wanted: Hashable | None = None
        self._seen: Loaded | None = None  # the configuration whose settings are in force
        self._done = False

    def wanted(self, audit: AuditConfig) -> Hashable | None:
        raise NotImplementedError

    def make(self, audit: AuditConfig) -> FileSender:
        raise NotImplementedError

    def configure(self, updated: set[str]) -> None:
        self._follow(self.shared.loaded)

    def recorded(self, call: Call, record: dict[str, Any]) -> None:
        """At each call's end: a configuration the file watcher reloaded is followed (one look)."""
        if self.shared.loaded is not self._seen:
            self._follow(self.shared.loaded)

    def lag(self) -> int | None:
        """Records written and not yet taken by the destination (/metrics); None when this process
        does not send the audit."""
        export = self._export
        return None if export is None else export.lag()

    def _follow(self, loaded: Loaded | None) -> None:
        if loaded is None or self._done:
            return
        self._seen = loaded
        audit = loaded.config.audit
        wanted = self.wanted(audit)
        if wanted == self._wanted:
            return
        old, self._export, self._wanted = self._export, None, wanted
        if old is not None:
            old.stop_later()  # what it read is sent from its own thread; the new one waits for its lock
        if wanted is None:
            if old is not None:
                logger.info(self.stopped_line)
            return
        self._export = self.make(audit).start()

    def done(self) -> Awaitable[None] | None:
        """After the audit's `done` (its last record written): what is left sent, for up to
        STOP_SECONDS, from the sender's thread; the event loop only polls it."""
        self._done = True
        export, self._export, self._wanted = self._export, None, None
        if export is None:
            return None
        return _wait(export)


class AuditExporter(AuditSending):
    """`audit.otlp`: the audit file shipped to a collector."""

    stopped_line = "Tollgate: the audit is no longer exported"

    def wanted(self, audit: AuditConfig) -> Hashable | None:
        otlp = audit.otlp
        return None if otlp is None else (audit.path, otlp.endpoint, tuple(otlp.headers.items()))

    def make(self, audit: AuditConfig) -> FileSender:
        assert audit.otlp is not None
        return AuditExport(audit.path, audit.otlp.endpoint, dict(audit.otlp.headers))


class AuditPostgresSender(AuditSending):
    """`audit.postgres`: the audit file's records sent to a table of PostgreSQL."""

    stopped_line = "Tollgate: the audit is no longer sent to PostgreSQL"

    def wanted(self, audit: AuditConfig) -> Hashable | None:
        postgres = audit.postgres
        return None if postgres is None else (audit.path, postgres.dsn, postgres.table, postgres.keep_days)

    def make(self, audit: AuditConfig) -> FileSender:
        # psycopg loaded where audit.postgres asks for it, not by every start.
        from tollgate.records.senders.audit_postgres import AuditPostgres

        postgres = audit.postgres
        assert postgres is not None
        return AuditPostgres(audit.path, postgres.dsn, postgres.table, keep_days=postgres.keep_days)


async def _wait(export: FileSender) -> None:
    stopping = export.stop_later(STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS + 1
    while stopping.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if stopping.is_alive():
        logger.warning(
            f"Tollgate: {export.title} did not end within {STOP_SECONDS:g} s; the next start sends the last records"
        )
