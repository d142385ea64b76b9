"""The audit's records of one request to an MCP server (`mcp_call`), field by field (docs/audit.md
describes each): one per JSON-RPC request it carried.

An MCP call is not an LLM call: it has no model, no tokens and no provider, so it has a record of
its own rather than fields on `llm_call`'s."""

from __future__ import annotations

import time
from typing import Any

from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.records.audit.audit_record import utc_timestamp

# The HTTP methods of Streamable HTTP that carry no JSON-RPC request: the server's event stream, and
# a session's end. Each is one record, its `method` the HTTP method.
UNREQUESTED = frozenset(("GET", "DELETE"))
# A record whose result the answer guardrails replaced by an error (as an LLM call's answer cut).
_CUT = {"error": CONTENT_DENIED, "refusal": CONTENT_DENIED}


def leaves_records(exchange: McpExchange) -> bool:
    """Whether `mcp_records` has any: not for a POST of answers alone that Tollgate let through."""
    return bool(exchange.requests) or exchange.method in UNREQUESTED or exchange.decision != "allow"


def mcp_records(exchange: McpExchange) -> list[dict[str, Any]]:
    """The audit records: one per JSON-RPC request (a notification too); one for the GET stream
    and one for a DELETE, their `method` the HTTP method (no JSON-RPC method is in upper case);
    none for a POST of answers alone unless Tollgate refused it."""
    if not leaves_records(exchange):
        return []
    answer = exchange.answer
    ended = answer.ended if answer.ended is not None else time.time()
    base = {
        "event": "mcp_call",
        "ts": utc_timestamp(exchange.started),
        "request_id": exchange.request_id,
        "client": exchange.caller.client,
        "auth": exchange.caller.auth,
        "server": exchange.server.name,
        "protocol_version": exchange.protocol_version,
    }
    tail = {
        "status": answer.status,
        "upstream_key": answer.upstream_key,
        "latency_ms": round((ended - exchange.started) * 1000, 1),
        "error": answer.error,
        "refusal": answer.refused,
    }
    if not exchange.requests:
        stream_or_end = exchange.method in UNREQUESTED
        return [{**base, "method": exchange.method if stream_or_end else None, "tool": None,
                 "decision": exchange.decision, "deny_reasons": list(exchange.deny_reasons), "findings": None,
                 "redacted": None, "answer_findings": answer.found.get(None),
                 "answer_redacted": answer.redacted(answer.found.get(None)), "is_error": None,
                 "retry_of": None, "tool_findings": None, "quarantined": None, **tail,
                 **(_CUT if None in answer.cut else {})}]  # fmt: skip
    records = []
    for i, request in enumerate(exchange.requests):
        reasons = exchange.denied.get(i, ())
        denied = exchange.decision == "deny"
        found = None if request.id is None else answer.found.get(request.id)
        records.append({
            **base,
            "method": request.method,
            "tool": request.tool,
            "decision": exchange.decision,
            # The whole POST is refused when one request is: each names its own reasons, or the POST's.
            "deny_reasons": list(reasons or (exchange.deny_reasons if denied else ())),
            # What the guardrails found in the POST, on each of its records.
            "findings": exchange.findings,
            "redacted": exchange.redacted,
            # What the answer guardrails found in its result (null: not read).
            "answer_findings": found,
            # How many of them were of kinds an answer rule redacts: replaced in what the client got.
            "answer_redacted": answer.redacted(found),
            "is_error": None if request.id is None or denied else answer.outcomes.get(request.id),
            "retry_of": exchange.retry_of.get(i),
            # `agents`: what its result held, by kind (null: not read); why a quarantine held it.
            "tool_findings": None if request.id is None else exchange.tool_findings.get(request.id),
            "quarantined": exchange.quarantined.get(i),
            **tail,
            # Its result held a value to deny: the client got a JSON-RPC error in its place.
            **(_CUT if request.id is not None and request.id in answer.cut else {}),
        })  # fmt: skip
    return records
