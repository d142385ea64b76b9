"""A whole Messages answer: read into the common chat model and written out of it, with its usage,
which the audit reads from the answer too (`messages_usage`, `usage_from_object`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.anthropic_messages.fields import NAME
from tollgate.formats.bodies.exact import as_int
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.chat import ChatRequest, ChatResponse, Choice, FinishReason, Part, Text, Thinking, ToolCall
from tollgate.formats.usage import Usage

_FINISH_OF_STOP_REASON: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
    "model_context_window_exceeded": "length",
}
_STOP_REASON_OF_FINISH: dict[str, str] = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "other": "end_turn",
}


def finish_of(stop_reason: Any) -> FinishReason | None:
    if not isinstance(stop_reason, str):
        return None
    return _FINISH_OF_STOP_REASON.get(stop_reason, "other")


def stop_reason_of(finish: FinishReason | None, stop_sequence: str | None) -> str | None:
    if finish is None:
        return None
    if finish == "stop":
        return "stop_sequence" if stop_sequence else "end_turn"
    return _STOP_REASON_OF_FINISH[finish]


def usage_counts(raw: Any, number: Callable[[Any], int | None]) -> Usage:
    """The counts of a Messages `usage` object. Anthropic reports input tokens apart from cache
    reads and writes; `input_tokens` here is every prompt token, as for the other formats,
    `cached_tokens` the cache reads among them and `cache_write_tokens` the cache writes. `number`
    reads one count: a translation takes integers only (`fields.int_or_none`), the audit digit
    strings too (`as_int`, as it reads every provider's usage)."""
    if not isinstance(raw, dict):
        return Usage()
    fresh = number(raw.get("input_tokens"))
    read = number(raw.get("cache_read_input_tokens"))
    written = number(raw.get("cache_creation_input_tokens"))
    details = raw.get("output_tokens_details")
    return Usage(
        input_tokens=chat.input_with_cache(fresh, read, written),
        output_tokens=number(raw.get("output_tokens")),
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=number(details.get("thinking_tokens")) if isinstance(details, dict) else None,
    )


def usage_from_object(raw: object) -> Usage:
    """A Messages `usage` object as the audit reads it: its counts, their total, and how the call
    ran (`service_tier`, `speed`), which some models are priced by."""
    if not isinstance(raw, dict):
        return Usage()
    usage = usage_counts(raw, as_int)
    usage.total_tokens = usage.counted_total
    tier, speed = raw.get("service_tier"), raw.get("speed")
    usage.service_tier = tier if isinstance(tier, str) else None
    usage.speed = speed if isinstance(speed, str) else None
    return usage


def messages_usage(body: bytes | None, counted: bool = False) -> Usage:
    """Usage from a whole Messages API answer, or from a count of tokens' (`counted`)."""
    data = parse_json(body)
    if data is None:
        return Usage()
    if counted:
        return Usage(input_tokens=as_int(data.get("input_tokens")))
    usage = usage_from_object(data.get("usage"))
    reason = data.get("stop_reason")
    usage.finish_reason = reason if isinstance(reason, str) else None
    return usage


def write_usage(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"input_tokens": usage.uncached_input_tokens or 0}
    if usage.cache_write_tokens is not None:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.cached_tokens is not None:
        out["cache_read_input_tokens"] = usage.cached_tokens
    out["output_tokens"] = usage.output_tokens or 0
    if usage.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def _read_content_block(block: dict[str, Any]) -> Part | None:
    kind = block.get("type")
    if kind == "text":
        return Text(fields.str_or_none(block.get("text")) or "")
    if kind == "thinking":
        signature = fields.str_or_none(block.get("signature"))
        origin = NAME if signature is not None else None
        return Thinking(text=fields.str_or_none(block.get("thinking")) or "", signature=signature, origin=origin)
    if kind == "redacted_thinking":
        return Thinking(redacted=fields.str_or_none(block.get("data")) or "", origin=NAME)
    if kind == "tool_use":
        arguments = block.get("input")
        return ToolCall(
            id=fields.str_or_none(block.get("id")) or "",
            name=fields.str_or_none(block.get("name")) or "",
            arguments=chat.json_text(arguments if isinstance(arguments, dict) else {}),
        )
    return None  # server tool blocks and the like: not the caller's to see in another format


def read_response(body: dict[str, Any]) -> ChatResponse:
    content = body.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    parts = [p for p in map(_read_content_block, blocks) if p is not None]
    return ChatResponse(
        id=fields.str_or_none(body.get("id")),
        model=fields.str_or_none(body.get("model")),
        choices=[Choice(0, parts, finish_of(body.get("stop_reason")), fields.str_or_none(body.get("stop_sequence")))],
        usage=usage_counts(body.get("usage"), fields.int_or_none),
    )


def _write_content_block(part: Part, index: int, message_id: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Thinking):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": chat.signed_for(part.redacted, part.origin, NAME)}
        signature = chat.signed_for(part.signature, part.origin, NAME) if part.signature else ""
        return {"type": "thinking", "thinking": part.text, "signature": signature}
    if isinstance(part, ToolCall):
        return {
            "type": "tool_use",
            "id": part.id or f"toolu_{message_id.removeprefix('msg_')}_{index}",
            "name": part.name,
            # The model's broken JSON: an empty input, not a crash.
            "input": chat.arguments_object(part.arguments) or {},
        }
    return None


def write_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    choice = next((c for c in response.choices if c.index == 0), response.choices[0] if response.choices else None)
    message_id = chat.answer_id("msg_", response.id)
    parts = choice.parts if choice else []
    blocks = [_write_content_block(p, k, message_id) for k, p in enumerate(parts)]
    stop_sequence = choice.stop_sequence if choice and choice.finish == "stop" else None
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": response.model or request.model or "",
        "content": [b for b in blocks if b is not None],
        "stop_reason": stop_reason_of(choice.finish if choice else None, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": write_usage(response.usage),
    }
