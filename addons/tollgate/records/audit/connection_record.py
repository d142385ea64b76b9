"""The audit's record of one connection a client opened through Tollgate and Tollgate did not read
as calls (`connection`): a tunnel relayed as it came, a connection decrypted on which no call was
made, or a connection refused before anything was relayed. Where it went and how much went each
way; never what."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tollgate.common.shown import caller_name
from tollgate.governance.egress.egress import EGRESS_DENIED
from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.bounded import ENTRIES, cut

CONNECTION_EVENT = "connection"


@dataclass(slots=True, eq=False)  # each connection is itself: kept in sets while open
class Connection:
    """One connection, from its CONNECT (or its captured server name) to its close. `host` is
    the name it asked for (lower case), `address` what Tollgate resolved it to and connected to
    (an IP address host: itself; None when a name was refused before a lookup, or none was
    needed), `source` the client's
    `address:port`. `bytes_sent` counts what the client sent, `bytes_received` what it was sent."""

    request_id: str
    host: str
    port: int
    started: float = field(default_factory=time.time)
    source: str | None = None
    client: str | None = None  # the proxy login's client; None without one
    auth: str | None = None
    address: str | None = None
    service: str | None = None  # the catalogued AI service the host belongs to
    category: str | None = None
    decision: str = "allow"  # "allow" or "deny"
    deny_reasons: tuple[str, ...] = ()
    bytes_sent: int = 0
    bytes_received: int = 0
    ended: float | None = None
    error: str | None = None
    refusal: str | None = None  # the X-Tollgate-Error Tollgate refused it with (`egress_denied`)


def connection_record(connection: Connection) -> dict[str, Any]:
    """The `connection` record, written when the connection closes (`ts` its start)."""
    c = connection
    ended = c.ended if c.ended is not None else time.time()
    return {
        "event": CONNECTION_EVENT,
        "ts": utc_timestamp(c.started),
        "request_id": c.request_id,
        "client": c.client,
        "auth": c.auth,
        "source": c.source,
        "host": c.host,
        "port": c.port,
        "address": c.address,
        "service": c.service,
        "category": c.category,
        "decision": c.decision,
        "deny_reasons": list(c.deny_reasons),
        "bytes_sent": c.bytes_sent,
        "bytes_received": c.bytes_received,
        "duration_ms": round(max(ended - c.started, 0.0) * 1000, 1),
        "error": c.error,
        "refusal": c.refusal,
    }


def connection_line(connection: Connection) -> str:
    """A refused connection's line on the console, in the words of a call's (`summary.console_line`):
    who, the refusal, where to, and why. Never more than its record holds, cut as it is (`bounded.cut`)."""
    c = connection
    host = f"[{cut(c.host)}]" if ":" in c.host else cut(c.host)
    line = f"Tollgate: {cut(caller_name(c.client))} · ⛔ {EGRESS_DENIED} · {host}:{c.port}"
    return f"{line} · {cut('; '.join(c.deny_reasons[:ENTRIES]))}" if c.deny_reasons else line
