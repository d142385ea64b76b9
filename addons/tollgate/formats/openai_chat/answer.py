"""Chat Completions answers: a whole answer read into the common chat model and written out of it,
and its token usage, whose counts the usage readers (whole answers, the stream's usage chunk) and
the translation read with the one function, `read_usage`."""

from __future__ import annotations

import time
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bodies.exact import as_int
from tollgate.formats.openai_chat.fields import FINISH_OF_OPENAI, OPENAI_OF_FINISH
from tollgate.formats.openai_chat.write_request import tool_call_body
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals


def nested(data: Any, outer: str, inner: str) -> Any:
    """data[outer][inner], or None where either is missing or not an object."""
    value = data.get(outer) if isinstance(data, dict) else None
    return value.get(inner) if isinstance(value, dict) else None


def read_usage(raw: dict[str, Any]) -> Usage:
    """A `usage` object's counts (`prompt_tokens`, `completion_tokens`, their details), as reported:
    what the audit's readers (`answer_usage`) and a translation (`translated_usage`) both read."""
    cached = as_int(nested(raw, "prompt_tokens_details", "cached_tokens"))
    if cached is None:
        # DeepSeek's name for the same count: the prompt's tokens read from its context cache.
        cached = as_int(raw.get("prompt_cache_hit_tokens"))
    return Usage(
        input_tokens=as_int(raw.get("prompt_tokens")),
        output_tokens=as_int(raw.get("completion_tokens")),
        cached_tokens=cached,
        reasoning_tokens=as_int(nested(raw, "completion_tokens_details", "reasoning_tokens")),
    )


def translated_usage(raw: dict[str, Any]) -> Usage:
    """A `usage` object as a translation carries it on: with its cache writes (compatible endpoints'
    `prompt_tokens_details.cache_write_tokens`, and Tollgate's own translated answers'), and the
    reported total, which tells how a vendor counted (`Cost.billed_usage`; a translated answer
    writes input plus output whatever it is)."""
    usage = read_usage(raw)
    usage.total_tokens = fields.int_or_none(raw.get("total_tokens"))
    usage.cache_write_tokens = fields.int_or_none(nested(raw, "prompt_tokens_details", "cache_write_tokens"))
    return usage


def reasoning_beside_completion(usage: Usage) -> Usage:
    """A chat's usage whose `completion_tokens` leave out its reasoning tokens (xAI's, and Gemini's
    OpenAI-compatible endpoint's): its output is both, unless its total says the completion held
    them (prompt plus completion)."""
    reasoning, output, prompt = usage.reasoning_tokens, usage.output_tokens, usage.input_tokens
    if not reasoning or output is None:
        return usage
    if prompt is not None and usage.total_tokens == prompt + output:
        return usage
    usage.output_tokens = output + reasoning
    return usage


def usage_object(data: dict[str, Any]) -> dict[str, Any] | None:
    """An answer's or a stream chunk's `usage` object; else, in a stream whose client did not ask
    for usage (`stream_options.include_usage`), Groq's: its last chunk's `x_groq.usage`, which it
    sends whether asked or not (the same counts as `usage`, where both are given: read once)."""
    raw = data.get("usage")
    if isinstance(raw, dict):
        return raw
    raw = nested(data, "x_groq", "usage")
    return raw if isinstance(raw, dict) else None


def answer_usage(data: dict[str, Any], endpoint: str | None) -> Usage:
    """Token usage, finish reason and service tier from an answer in Chat Completions' shape: a whole
    answer or a stream chunk of chat completions, completions or embeddings."""
    raw = data.get("usage")
    if not isinstance(raw, dict):  # an ordinary answer has it: nothing more is looked up
        raw = usage_object(data) or {}
    u = read_usage(raw)
    u.total_tokens = as_int(raw.get("total_tokens"))
    # The prompt's cache writes, among its tokens, where a compatible API reports them (OpenRouter).
    u.cache_write_tokens = as_int(nested(raw, "prompt_tokens_details", "cache_write_tokens"))
    u.finish_reason = finish_reason(data)
    u.service_tier = service_tier(data)
    if endpoint == "embeddings" and u.input_tokens is not None and u.output_tokens is None:
        u.output_tokens = 0
    return add_totals(u)


def service_tier(data: dict[str, Any]) -> str | None:
    tier = data.get("service_tier")
    return tier if isinstance(tier, str) else None


def finish_reason(data: dict[str, Any]) -> str | None:
    """The first choice's finish reason, as the upstream wrote it."""
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                return choice["finish_reason"]
    return None


def usage_body(usage: Usage) -> dict[str, Any] | None:
    body: dict[str, Any] = {}
    if usage.input_tokens is not None:
        body["prompt_tokens"] = usage.input_tokens
    if usage.output_tokens is not None:
        body["completion_tokens"] = usage.output_tokens
    if (total := usage.counted_total) is not None:
        body["total_tokens"] = total
    prompt_details = {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens}
    if any(v is not None for v in prompt_details.values()):
        body["prompt_tokens_details"] = {k: v for k, v in prompt_details.items() if v is not None}
    if usage.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body or None


def read_finish(value: Any, has_tool_calls: bool) -> chat.FinishReason | None:
    if not isinstance(value, str):
        return None
    finish = FINISH_OF_OPENAI.get(value, "other")
    # Some compatible endpoints end a turn of tool calls with "stop".
    return "tool_calls" if finish == "stop" and has_tool_calls else finish


def reasoning_of(message: dict[str, Any]) -> str | None:
    """Reasoning text as compatible endpoints show it: `reasoning_content` (DeepSeek, vLLM) or
    `reasoning` (OpenRouter, Ollama)."""
    reasoning = message.get("reasoning_content")
    if not isinstance(reasoning, str):
        reasoning = message.get("reasoning")
    return reasoning if isinstance(reasoning, str) and reasoning else None


def _read_message_parts(message: dict[str, Any]) -> list[chat.Part]:
    parts: list[chat.Part] = []
    reasoning = reasoning_of(message)
    if reasoning:
        parts.append(chat.Thinking(reasoning))
    for key in ("content", "refusal"):
        text = message.get(key)
        if isinstance(text, list):  # some compatible endpoints answer in text parts
            text = "".join(p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
        if isinstance(text, str) and text:
            parts.append(chat.Text(text))
    calls = message.get("tool_calls")
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = fields.str_or_none(call.get("id")) or f"call_{position}"
        parts.append(
            chat.ToolCall(
                call_id,
                fields.str_or_none(function.get("name")) or "",
                fields.str_or_none(function.get("arguments")) or "",
            )
        )
    return parts


def _read_choice(raw: dict[str, Any], position: int) -> chat.Choice:
    message = raw.get("message")
    parts = _read_message_parts(message) if isinstance(message, dict) else []
    index = fields.int_or_none(raw.get("index"))
    has_calls = any(isinstance(p, chat.ToolCall) for p in parts)
    return chat.Choice(
        index=position if index is None else index,
        parts=parts,
        finish=read_finish(raw.get("finish_reason"), has_calls),
    )


def read_response(body: dict[str, Any]) -> chat.ChatResponse:
    choices = body.get("choices")
    usage = body.get("usage")
    return chat.ChatResponse(
        id=fields.str_or_none(body.get("id")),
        model=fields.str_or_none(body.get("model")),
        choices=[
            _read_choice(c, i)
            for i, c in enumerate(choices if isinstance(choices, list) else [])
            if isinstance(c, dict)
        ],
        usage=translated_usage(usage) if isinstance(usage, dict) else Usage(),
        created=fields.int_or_none(body.get("created")),
    )


def _message_body(parts: list[chat.Part]) -> dict[str, Any]:
    texts = [p.text for p in parts if isinstance(p, chat.Text)]
    reasoning = "".join(p.text for p in parts if isinstance(p, chat.Thinking))
    calls = [tool_call_body(p) for p in parts if isinstance(p, chat.ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning  # as compatible endpoints show reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def write_response(response: chat.ChatResponse, request: chat.ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": chat.answer_id("chatcmpl-", response.id),
        "object": "chat.completion",
        "created": response.created if response.created is not None else int(time.time()),
        "model": response.model or request.model or "",
        "choices": [
            {
                "index": c.index,
                "message": _message_body(c.parts),
                "finish_reason": OPENAI_OF_FINISH[c.finish or "stop"],
                "logprobs": None,
            }
            for c in response.choices
        ],
    }
    usage = usage_body(response.usage)
    if usage is not None:
        body["usage"] = usage
    return body
