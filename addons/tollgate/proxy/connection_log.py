"""Each connection a client opens through Tollgate, counted and recorded (`ConnectionLog`): the
metrics of its decision and of its close, its `connection` record in the audit, one console line
per refused connection, and the tunnels still relaying (recorded at shut-down as far as they went);
the bytes of a stream each way, counted as they go (`counting`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tollgate.governance.egress.egress import EGRESS_DENIED, Egress
from tollgate.proxy.patches import calls_shown
from tollgate.proxy.state import Shared
from tollgate.records.audit.connection_record import Connection, connection_line, connection_record

logger = logging.getLogger(__name__)


class ConnectionLog:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.open: set[Connection] = set()  # the tunnels relaying, recorded at shut-down if still open

    def recordable(self) -> bool:
        """Whether a connection's record can be written now: none that must be is made otherwise."""
        audit = self.shared.audit
        return audit is not None and not audit.failing

    def decided(self, connection: Connection) -> None:
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.connection_decided(connection.service, connection.category, connection.decision)

    def refused(self, connection: Connection, egress: Egress) -> None:
        """A connection refused before anything was relayed: counted, and recorded unless `record`
        is `none`."""
        connection.decision = "deny"
        connection.refusal = EGRESS_DENIED
        self.decided(connection)
        if egress.record != "none":
            connection.ended = time.time()
            self._write(connection)
        if calls_shown():  # one line per refused connection, as per call
            logger.info(connection_line(connection))

    def closed(self, connection: Connection, **extra: int) -> None:
        """A connection ended: counted, and recorded with what went each way."""
        self.open.discard(connection)
        connection.ended = time.time()
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.connection_closed(
                connection.service, connection.category, connection.bytes_sent, connection.bytes_received
            )
        self._write(connection, **extra)

    def _write(self, connection: Connection, **extra: int) -> None:
        audit = self.shared.audit
        if audit is not None:
            audit.write({**connection_record(connection), **extra}, call=False)


def counting(connection: Connection, sent: bool) -> Callable[[bytes], bytes]:
    """A stream's chunks passed on as they come, counted into the connection's bytes."""

    def count(chunk: bytes) -> bytes:
        if sent:
            connection.bytes_sent += len(chunk)
        else:
            connection.bytes_received += len(chunk)
        return chunk

    return count
