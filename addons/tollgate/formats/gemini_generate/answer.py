"""A generateContent answer (a GenerateContentResponse), read whole: its usage as the audit counts
it (`usage_of`, `usage_from_object`, the stream readers' too) and as a translated answer reports it
(`chat_usage`), one reading of `usageMetadata` under both; and the answer read into and written out
of the common chat model. Calls in an answer get `call_<responseId>_<candidate>_<index>` where
Gemini gave no id."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bodies.exact import as_int
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.gemini_generate.fields import NAME
from tollgate.formats.gemini_generate.thoughts import add_thinking, thought_part
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals

_FINISH_READ: dict[str, chat.FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
FINISH_WRITE: dict[chat.FinishReason, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "other": "OTHER",
}


def loose_int(value: Any) -> int | None:
    """An integer from an answer, leniently: proto3 JSON may write one as a string."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def finish_of(value: Any, has_calls: bool) -> chat.FinishReason | None:
    if not isinstance(value, str) or value == "FINISH_REASON_UNSPECIFIED":
        return None
    reason = _FINISH_READ.get(value, "other")
    return "tool_calls" if reason == "stop" and has_calls else reason


# ---------------------------------------------------------------------------------------------
# Usage


# The counts each side of an answer's usage is the sum of: the prompt with the tools' own prompts
# (`toolUsePromptTokenCount`: a search's or code execution's results fed back, billed as input), and
# every generated token (the candidates with the thoughts, which Gemini's candidates leave out).
INPUT_COUNTS = ("promptTokenCount", "toolUsePromptTokenCount")
OUTPUT_COUNTS = ("candidatesTokenCount", "thoughtsTokenCount")


def summed_counts(meta: dict[str, Any], keys: tuple[str, ...], number: Callable[[Any], int | None]) -> int | None:
    """The sum of the counts `keys` name: None where none is given (proto3 JSON leaves out a zero,
    and an answer may leave out its usage), or where one is given that `number` cannot read (a
    count not known is never taken for none)."""
    total = None
    for key in keys:
        value = meta.get(key)
        if value is None:
            continue
        count = number(value)
        if count is None:
            return None
        total = count if total is None else total + count
    return total


def read_usage_metadata(value: Any, number: Callable[[Any], int | None] = as_int) -> Usage:
    """`usageMetadata` as the audit counts it, the one reading of Gemini's usage: every token billed
    as input (the prompt and the tools' own prompts), every generated one (thinking included, as
    OpenAI's completion_tokens counts them), and the total as reported. `number` reads each count
    (the audit's `as_int`, or a translation's more lenient `loose_int`)."""
    meta = value if isinstance(value, dict) else {}
    return Usage(
        input_tokens=summed_counts(meta, INPUT_COUNTS, number),
        output_tokens=summed_counts(meta, OUTPUT_COUNTS, number),
        total_tokens=number(meta.get("totalTokenCount")),
        cached_tokens=number(meta.get("cachedContentTokenCount")),
        reasoning_tokens=number(meta.get("thoughtsTokenCount")),
    )


def usage_from_object(data: dict) -> Usage:
    """Usage from one GenerateContentResponse object (also one element of a stream)."""
    u = read_usage_metadata(data.get("usageMetadata"))
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        reason = candidates[0].get("finishReason")
        u.finish_reason = reason if isinstance(reason, str) else None
    return add_totals(u)


def usage_of(body: bytes | None) -> Usage:
    data = parse_json(body)
    return usage_from_object(data) if data is not None else Usage()


def counted_usage(body: bytes | None) -> Usage:
    """A countTokens answer's count (`totalTokens`), all of it input."""
    return Usage(input_tokens=as_int((parse_json(body) or {}).get("totalTokens")))


def chat_usage(value: Any) -> Usage:
    """usageMetadata in the model's convention (`read_usage_metadata`, leniently). Proto3 JSON omits
    zeros: a total with no candidates or thoughts counted means none were generated. No total is
    kept: a translated answer writes input plus output."""
    usage = read_usage_metadata(value, loose_int)
    total, usage.total_tokens = usage.total_tokens, None
    counted_in = usage.input_tokens
    if usage.output_tokens is None and total is not None and counted_in is not None and total >= counted_in:
        usage.output_tokens = total - counted_in
    return usage


def write_usage_metadata(usage: Usage) -> dict[str, Any] | None:
    meta: dict[str, Any] = {}
    if usage.input_tokens is not None:
        meta["promptTokenCount"] = usage.input_tokens
    if usage.output_tokens is not None:
        meta["candidatesTokenCount"] = max(0, usage.output_tokens - (usage.reasoning_tokens or 0))
    if usage.reasoning_tokens is not None:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens is not None:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    if (total := usage.counted_total) is not None:
        meta["totalTokenCount"] = total
    return meta or None


# ---------------------------------------------------------------------------------------------
# The answer, read and written


def created_seconds(value: Any) -> int | None:
    """Vertex's createTime (RFC 3339, up to nanoseconds) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def call_id_prefix(response_id: Any) -> str:
    return response_id if isinstance(response_id, str) and response_id else os.urandom(6).hex()


def candidate_index(candidate: dict[str, Any], position: int) -> int:
    index = loose_int(candidate.get("index"))
    return index if index is not None else position


def _answer_parts(content: Any, prefix: str, choice: int) -> list[chat.Part]:
    parts: list[chat.Part] = []
    raw_parts = content.get("parts") if isinstance(content, dict) else None
    calls = 0
    for raw in raw_parts if isinstance(raw_parts, list) else []:
        if not isinstance(raw, dict):
            continue
        signature = fields.str_or_none(raw.get("thoughtSignature"))
        origin = NAME if signature is not None else None
        text = raw.get("text")
        if raw.get("thought") is True and isinstance(text, str):
            add_thinking(parts, text, signature, origin)
            continue
        if signature is not None:
            add_thinking(parts, "", signature, origin)
        call = raw.get("functionCall")
        if isinstance(text, str) and text:
            parts.append(chat.Text(text))
        elif isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("args")
            call_id = fields.str_or_none(call.get("id")) or f"call_{prefix}_{choice}_{calls}"
            parts.append(chat.ToolCall(call_id, call["name"], chat.json_text(args if isinstance(args, dict) else {})))
            calls += 1
    return parts


def read_response(body: dict[str, Any]) -> chat.ChatResponse:
    prefix = call_id_prefix(body.get("responseId"))
    choices = []
    candidates = body.get("candidates")
    for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
        if not isinstance(candidate, dict):
            continue
        index = candidate_index(candidate, position)
        parts = _answer_parts(candidate.get("content"), prefix, index)
        has_calls = any(isinstance(p, chat.ToolCall) for p in parts)
        choices.append(chat.Choice(index, parts, finish_of(candidate.get("finishReason"), has_calls)))
    feedback = body.get("promptFeedback")
    if not choices and isinstance(feedback, dict) and feedback.get("blockReason"):
        choices.append(chat.Choice(0, [], "content_filter"))
    return chat.ChatResponse(
        id=fields.str_or_none(body.get("responseId")),
        model=fields.str_or_none(body.get("modelVersion")),
        choices=choices,
        usage=chat_usage(body.get("usageMetadata")),
        created=created_seconds(body.get("createTime")),
    )


def written_call(call_id: str, name: str, arguments: str) -> tuple[dict[str, Any], bool]:
    """A function call part; False when its arguments were not a JSON object (written as {})."""
    args = chat.arguments_object(arguments)
    return {"functionCall": {"id": call_id, "name": name, "args": args or {}}}, args is not None


def _answer_part(part: chat.Part) -> dict[str, Any] | None:
    if isinstance(part, chat.Text):
        return {"text": part.text}
    if isinstance(part, chat.Thinking):
        if not part.text and part.signature is None:
            return None  # redacted thinking: Gemini has no form for it
        return thought_part(part.text, part.signature, part.origin)
    if isinstance(part, chat.ToolCall):
        return written_call(part.id, part.name, part.arguments)[0]
    return None


def write_response(response: chat.ChatResponse, request: chat.ChatRequest) -> dict[str, Any]:
    candidates = []
    for choice in response.choices:
        candidate: dict[str, Any] = {}
        parts = [p for p in map(_answer_part, choice.parts) if p is not None]
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if choice.finish is not None:
            candidate["finishReason"] = FINISH_WRITE[choice.finish]
        candidate["index"] = choice.index
        candidates.append(candidate)
    body: dict[str, Any] = {}
    if candidates:
        body["candidates"] = candidates
    usage = write_usage_metadata(response.usage)
    if usage is not None:
        body["usageMetadata"] = usage
    model = response.model or request.model
    if model is not None:
        body["modelVersion"] = model
    if response.id is not None:
        body["responseId"] = response.id
    return body
