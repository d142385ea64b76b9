"""A Realtime session's server events: the usage each `response.done` reports, added up over the
session."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.exact import as_int
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.openai_chat import nested
from tollgate.formats.openai_responses.answer import token_counts
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals

_RESPONSE_DONE_EVENT = b'"response.done"'


def response_done_usage(message: bytes) -> Usage | None:
    """A response's usage and status from a Realtime server event, if it is `response.done`."""
    if _RESPONSE_DONE_EVENT not in message:  # the one test nearly every event needs
        return None
    event = parse_json(message)
    if event is None or event.get("type") != "response.done":
        return None
    response = event.get("response")
    return done_usage(response if isinstance(response, dict) else {})


def done_usage(response: dict[str, Any]) -> Usage:
    """A `response.done` event's response's usage and status: its tokens, and of them those of audio
    and images (the table prices them apart), where it tells them."""
    raw = response.get("usage")
    u = token_counts(raw, "token_details")
    details = raw.get("input_token_details") if isinstance(raw, dict) else None
    u.audio_input_tokens = as_int(nested(raw, "input_token_details", "audio_tokens"))
    u.image_input_tokens = as_int(nested(raw, "input_token_details", "image_tokens"))
    u.audio_cached_tokens = as_int(nested(details, "cached_tokens_details", "audio_tokens"))
    u.image_cached_tokens = as_int(nested(details, "cached_tokens_details", "image_tokens"))
    u.audio_output_tokens = as_int(nested(raw, "output_token_details", "audio_tokens"))
    # As for the Responses API: why a response is incomplete (max_output_tokens, content_filter)
    # says more than that it is.
    status, reason = response.get("status"), nested(response, "status_details", "reason")
    u.finish_reason = (
        reason if status == "incomplete" and isinstance(reason, str) else (status if isinstance(status, str) else None)
    )
    return add_totals(u)


def summed(total: Usage | None, more: Usage) -> Usage:
    """A session's usage so far with one more response's: counts added where known, the finish
    reason the latest one given."""
    if total is None:
        return more
    return Usage(
        input_tokens=_plus(total.input_tokens, more.input_tokens),
        output_tokens=_plus(total.output_tokens, more.output_tokens),
        total_tokens=_plus(total.total_tokens, more.total_tokens),
        cached_tokens=_plus(total.cached_tokens, more.cached_tokens),
        cache_write_tokens=_plus(total.cache_write_tokens, more.cache_write_tokens),
        reasoning_tokens=_plus(total.reasoning_tokens, more.reasoning_tokens),
        audio_input_tokens=_plus(total.audio_input_tokens, more.audio_input_tokens),
        image_input_tokens=_plus(total.image_input_tokens, more.image_input_tokens),
        audio_cached_tokens=_plus(total.audio_cached_tokens, more.audio_cached_tokens),
        image_cached_tokens=_plus(total.image_cached_tokens, more.image_cached_tokens),
        audio_output_tokens=_plus(total.audio_output_tokens, more.audio_output_tokens),
        finish_reason=more.finish_reason if more.finish_reason is not None else total.finish_reason,
    )


def _plus(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b
