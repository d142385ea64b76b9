"""Every kind of record the audit holds (its `event`), in one place: what the console's Live view
filters by. A test holds it to the records Tollgate writes. And a line of the audit read back as
its record (`read_record`), the one way every reader of the lines (the senders, the console, the
table's checks) reads one."""

from __future__ import annotations

from typing import Any

import orjson

RECORD_KINDS = (
    "llm_call",  # a call to a model API (`audit_record`)
    "mcp_call",  # an MCP server's request (`mcp_record.mcp_records`)
    "connection",  # a connection through the proxy (`connection_record`)
    "tollgate_started",  # a proxy process started, and stopped (`auditlog`)
    "tollgate_stopped",
    "audit_checkpoint",  # the chain's signed checkpoint (`audit_chain`)
    "audit_anchor",  # a checkpoint time-stamped by a TSA (`anchors`)
    "anchor_gap",  # a TSA that did not anchor one
    "in_flight_refused",  # an in-flight file a restart could not read (`auditlog`)
    "reconciliation",  # a run of `tollgate reconcile` without audit.postgres (`reconcile/kept_results`)
    "malformed",  # the console's own: a line that is no record (never written by Tollgate)
)


def read_record(line: bytes) -> dict[str, Any] | None:
    """The record of a line; None for one that is not a JSON object (a line cut short long ago,
    by hand): each reader says what it does with such a line."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
