"""A Responses API answer's usage: from a whole `response` object, the one its stream's last event
and its WebSocket mode's `response.completed` carry too."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.exact import as_int
from tollgate.formats.openai_chat import nested, service_tier
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals


def token_counts(raw: Any, details: str = "tokens_details") -> Usage:
    """A `usage` object's token counts: in, out, the total, the cached and the reasoning ones, in
    its `input_<details>` and `output_<details>` (the Realtime API's are `token_details`)."""
    if not isinstance(raw, dict):
        raw = {}
    return Usage(
        input_tokens=as_int(raw.get("input_tokens")),
        output_tokens=as_int(raw.get("output_tokens")),
        total_tokens=as_int(raw.get("total_tokens")),
        cached_tokens=as_int(nested(raw, f"input_{details}", "cached_tokens")),
        reasoning_tokens=as_int(nested(raw, f"output_{details}", "reasoning_tokens")),
    )


def response_usage(data: dict[str, Any]) -> Usage:
    """Token usage, finish reason and service tier from a `response` object."""
    u = token_counts(data.get("usage"))
    status = data.get("status")
    reason = nested(data, "incomplete_details", "reason")
    u.finish_reason = reason if isinstance(reason, str) else status if isinstance(status, str) else None
    u.service_tier = service_tier(data)
    return add_totals(u)
