"""The audit's record of one call (`llm_call`), field by field (docs/audit.md describes
each), with the attempts of a call that went more than once and what a roll-up summarized."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tollgate.formats.usage import Usage
from tollgate.governance.routing.failover import Attempt
from tollgate.governance.subscriptions.plan import Subscription

if TYPE_CHECKING:
    from tollgate.calls.call import Call, RolledUp

NO_USAGE = Usage()  # read only: a call's usage before (or without) an answer to read it from
NO_PLAN = Subscription("")  # read only: a call made with a key names no account, plan or tenant
WORKER_LOST = "worker lost"  # the error of a call whose process died before it ended


def usd(nano: int) -> float:
    """Nano-dollars as the audit writes them: US dollars, to 9 decimals."""
    return round(nano / 1e9, 9)


def utc_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC to the millisecond, e.g. 2026-11-22T08:30:00.123Z."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_record(call: Call) -> dict[str, Any]:
    c, a, route, caller = call.classification, call.answer, call.route, call.caller
    u = a.usage or NO_USAGE
    plan = caller.subscription or NO_PLAN
    cost = call.cost_nanousd()
    ended = a.ended or time.time()
    return {
        "event": "llm_call",
        "ts": utc_timestamp(call.started),
        "request_id": call.request_id,
        "client": caller.client,
        "auth": caller.auth,
        "groups": list(caller.groups),
        "account": plan.account,
        "plan": plan.plan,
        "tenant": plan.tenant,
        "provider": route.target.provider,
        "requested_provider": route.requested.provider,
        "endpoint": c.endpoint,
        "upstream_endpoint": call.sent().endpoint,
        "method": call.method,
        "transport": call.request.transport,
        "host": call.host,
        "path": call.path,
        "requested_model": route.requested.model,
        "publisher": c.publisher,
        "model": call.target_model,
        "message_count": c.facts.message_count,
        "has_system": c.facts.has_system,
        "has_tools": c.facts.has_tools,
        "stream": c.facts.stream,
        "max_tokens": c.facts.max_tokens,
        "decision": call.verdict.decision,
        "deny_reasons": list(call.verdict.deny_reasons),
        "findings": call.request.findings,
        "redacted": call.request.redacted,
        "answer_findings": a.findings,
        "answer_redacted": answer_redacted(a.findings, a.finding_actions),
        "tool_calls": None if call.agents is None else call.agents.tool_calls(),
        "tool_findings": None if call.agents is None else dict(call.agents.findings),
        "unread": list(c.unread + c.facts.unread),
        "status": a.status,
        "upstream": route.upstream,
        "upstream_key": a.upstream_key,
        "latency_ms": round((ended - call.started) * 1000, 1),
        "ttfb_ms": round((a.first_byte - call.started) * 1000, 1) if a.first_byte else None,
        "bytes_sent": a.bytes_sent,
        "bytes_received": a.bytes_received,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "cached_tokens": u.cached_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "service_tier": u.service_tier,
        "speed": u.speed,
        "cost_usd": None if cost is None else usd(cost),
        "finish_reason": u.finish_reason,
        "error": a.error,
        "refusal": a.refused,
        "ledger_error": call.ledger.error,
        "rolled_up_messages": None if call.rolled_up is None else call.rolled_up.messages,
        "rollup": None if call.rolled_up is None else rollup_record(call.rolled_up),
        "attempts": None if not call.failover.attempts else attempt_records(call, ended),
    }


# Every field of a call's record, in its order (a test holds `audit_record` to it).
RECORD_FIELDS = (
    "event", "ts", "request_id", "client", "auth", "groups", "account", "plan", "tenant", "provider",
    "requested_provider", "endpoint", "upstream_endpoint", "method", "transport", "host", "path", "requested_model",
    "publisher", "model", "message_count", "has_system", "has_tools", "stream", "max_tokens", "decision",
    "deny_reasons", "findings", "redacted", "answer_findings", "answer_redacted", "tool_calls", "tool_findings",
    "unread", "status", "upstream", "upstream_key", "latency_ms", "ttfb_ms", "bytes_sent", "bytes_received",
    "input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "cache_write_tokens",
    "service_tier", "speed", "cost_usd", "finish_reason", "error", "refusal", "ledger_error", "rolled_up_messages",
    "rollup", "attempts",
)  # fmt: skip

# What is known of a call when it goes upstream, kept until its record is written (`InFlight`):
# the fields of its record that its answer does not change, cheap to gather on every call.
SENT_FIELDS = (
    "request_id", "client", "auth", "groups", "provider", "requested_provider", "endpoint", "method", "transport",
    "host", "path", "requested_model", "publisher", "model", "message_count", "has_system", "has_tools", "stream",
    "max_tokens", "decision", "findings", "redacted", "unread", "upstream", "upstream_key",
)  # fmt: skip


def sent_record(call: Call) -> dict[str, Any]:
    """A call as it goes upstream: its start, the fields of `SENT_FIELDS`, and what it reserved."""
    c, route, caller, reserved = call.classification, call.route, call.caller, call.ledger.reserved
    f = c.facts
    return {
        "started": call.started, "request_id": call.request_id, "client": caller.client, "auth": caller.auth,
        "groups": caller.groups, "provider": route.target.provider, "requested_provider": route.requested.provider,
        "endpoint": c.endpoint, "method": call.method, "transport": call.request.transport, "host": call.host,
        "path": call.path, "requested_model": route.requested.model, "publisher": c.publisher,
        "model": call.target_model, "message_count": f.message_count, "has_system": f.has_system,
        "has_tools": f.has_tools, "stream": f.stream, "max_tokens": f.max_tokens, "decision": call.verdict.decision,
        "findings": call.request.findings, "redacted": call.request.redacted, "unread": list(c.unread + f.unread),
        "upstream": route.upstream, "upstream_key": call.answer.upstream_key,
        "reserved_tokens": None if reserved is None else reserved.estimate.tokens,
    }  # fmt: skip


def lost_record(sent: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The `llm_call` record of a call whose process died before it ended: every field of a call's
    record (`fields`, in their order), those known when it was sent filled in, then what it
    reserved; `status` null, `error` "worker lost"."""
    record: dict[str, Any] = dict.fromkeys(fields)
    record.update({name: sent.get(name) for name in SENT_FIELDS})
    started = sent.get("started")
    record.update(
        event="llm_call",
        ts=utc_timestamp(started) if isinstance(started, (int, float)) else None,
        groups=list(sent.get("groups") or ()),
        deny_reasons=[],
        error=WORKER_LOST,
        reserved_tokens=sent.get("reserved_tokens"),
    )
    return record


def answer_redacted(findings: dict[str, int] | None, actions: tuple[tuple[str, str, int], ...]) -> int | None:
    """How many of an answer's findings were redacted (their rules' action `redact`); None when
    the answer was not read."""
    return None if findings is None else sum(n for _, action, n in actions if action == "redact")


def attempt_records(call: Call, ended: float) -> list[dict[str, Any]]:
    """Every attempt of a call that went more than once, the last the one that answered (or
    failed last)."""
    begun = call.failover.attempt_started or call.started
    a = call.answer
    until = a.first_byte or ended
    last = Attempt(
        call.route.target.provider,
        call.target_model,
        a.status,
        a.upstream_key,
        a.error,
        round((until - begun) * 1000, 1),
    )
    return [a.record() for a in (*(call.failover.attempts or ()), last)]


def rollup_record(rolled: RolledUp) -> dict[str, Any]:
    """What a roll-up summarized with: its summarizer, and that call's usage and cost (none for a
    summary made before)."""
    u = rolled.usage or NO_USAGE
    cost = rolled.cost_nanousd
    return {
        "summarizer": rolled.summarizer,
        "cached": rolled.cached,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cost_usd": 0.0 if rolled.cached else None if cost is None else usd(cost),
    }
