"""A call as its policy sees it: the facts of its `input` document (`input_facts`, what the `CALL`
kind of decision is asked on and its cache is keyed on), and the document itself. Plain logic, no
mitmproxy."""

from __future__ import annotations

from typing import Any

from tollgate.calls.call import Call
from tollgate.governance.policy.policy import input_document


def input_facts(call: Call) -> tuple[Any, ...]:
    """Everything a call's input document holds, in `input_document`'s order: a cache key."""
    c = call.classification
    f = c.facts
    model = call.target_model
    # What the request uses that Tollgate cannot read (a stored prompt…) is unread too.
    unread = c.unread + f.unread if f.unread else c.unread
    who, route = call.caller, call.route
    requested = route.requested.model
    if requested is not None and call.registry[route.requested.provider].models.ignore_case:
        requested = requested.lower()  # Azure's deployments: `GPT-4o` is `gpt-4o`
    return (
        who.client, tuple(who.groups), who.auth, route.target.provider, call.host, call.method, call.path, c.endpoint,
        requested, model, f.message_count, f.has_system, f.has_tools, f.stream, f.max_tokens, unread,
        who.identity, call.ledger.usage_counters, f.service_tier, f.speed, f.batch, f.mcp_servers, c.publisher,
        call.failover.fallback_of, _findings(call.request.findings), who.subscription,
    )  # fmt: skip


def _findings(findings: dict[str, int] | None) -> tuple[tuple[str, int], ...] | None:
    """`call.request.findings` as a fact: hashable, in one order."""
    return None if findings is None else tuple(sorted(findings.items()))


def policy_input(call: Call) -> dict[str, Any]:
    """The `input` a policy gets for a call record (`tollgate.calls.call.Call`)."""
    return input_document(input_facts(call))
