"""The `mcp_calls_per_minute` limits an MCP caller's requests charge, and what they reserve."""

from __future__ import annotations

from collections.abc import Sequence

from tollgate.governance.limits.limits import EXPIRY_GRACE, Counter, LimitRule, counters
from tollgate.governance.matching import matches
from tollgate.ledger.store import Charge

MCP_CALLS = "mcp_calls_per_minute"


def mcp_counters(rules: Sequence[LimitRule], client: str | None, groups: tuple[str, ...], now: float) -> list[Counter]:
    """The `mcp_calls_per_minute` counters an MCP caller's requests charge: those of each limit
    that sets it and matches the caller (its client, its groups)."""
    applying = [
        (rule, ((MCP_CALLS, "mcp_calls", "minute", rule.mcp_calls_per_minute),))
        for rule in rules
        if rule.mcp_calls_per_minute is not None and matches(rule.match, "", None, client, groups)
    ]
    return counters(applying, client, groups, now)


def mcp_charges(found: Sequence[Counter], calls: int) -> list[Charge]:
    return [Charge(c.key, calls, c.cap, c.end + EXPIRY_GRACE) for c in found]
