"""A whole Converse answer read into the common chat model and written from it, and its usage."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bedrock_converse.fields import LATENCY_FIELD, NAME, SERVICE_TIER_FIELD
from tollgate.formats.bedrock_family import prompt_usage
from tollgate.formats.bodies.exact import as_int
from tollgate.formats.bodies.json_codec import json_object
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals

# Stop reasons both ways. A stop sequence ends the answer as its natural end does (Converse does not
# say which sequence it was); a guardrail or a filter is a content filter.
_FINISH_OF_STOP: dict[str, chat.FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_STOP_OF_FINISH: dict[str, str] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filtered",
    "other": "end_turn",
}


def read_usage(raw: Any, number: Callable[[Any], int | None] = fields.int_or_none) -> Usage:
    """Converse's usage: `inputTokens` excludes the cache reads and writes counted beside it, as
    Bedrock counts them (`prompt_usage`). Its counts are read as `number` reads them: as any
    answer's counts in translation (integers only), or as the audit reads them (`converse_usage`)."""
    raw = raw if isinstance(raw, dict) else {}
    return prompt_usage(
        number(raw.get("inputTokens")),
        number(raw.get("cacheReadInputTokens")),
        number(raw.get("cacheWriteInputTokens")),
        number(raw.get("outputTokens")),
    )


def converse_usage(raw: Any, stop_reason: Any) -> Usage:
    """The usage the audit reads from Converse's usage object (and its stop reason): its counts read
    as `as_int` reads them, its `totalTokens` as reported, else counted."""
    raw = raw if isinstance(raw, dict) else {}
    u = read_usage(raw, as_int)
    u.total_tokens = as_int(raw.get("totalTokens"))
    u.finish_reason = stop_reason if isinstance(stop_reason, str) else None
    return add_totals(u)


def ran_as(usage: Usage, data: dict[str, Any]) -> Usage:
    """The usage with the tier and latency a Converse answer (or ConverseStream's metadata) says the
    call ran at, each as `{key: {field: name}}`."""
    usage.service_tier = _answered_name(data, *SERVICE_TIER_FIELD)
    usage.speed = _answered_name(data, *LATENCY_FIELD)
    return usage


def _answered_name(data: dict[str, Any], key: str, field: str) -> str | None:
    name = json_object(data.get(key)).get(field)
    return name if isinstance(name, str) else None


def answer_usage(data: dict[str, Any]) -> Usage:
    """The usage a whole Converse answer reports, with its stop reason and the tier and latency it
    ran at."""
    return ran_as(converse_usage(data.get("usage"), data.get("stopReason")), data)


def counted_usage(data: dict[str, Any]) -> Usage:
    """What a CountTokens answer counts: its `inputTokens`."""
    return Usage(input_tokens=as_int(data.get("inputTokens")))


def write_usage(usage: Usage) -> dict[str, Any]:
    """The three counts Bedrock always sends (0 where unknown: SDK users read them unguarded); its
    totalTokens counts the cache too, as `converse_usage` reads it."""
    read, written = usage.cached_tokens or 0, usage.cache_write_tokens or 0
    fresh = usage.uncached_input_tokens or 0
    output = usage.output_tokens or 0
    raw: dict[str, Any] = {"inputTokens": fresh, "outputTokens": output, "totalTokens": fresh + output + read + written}
    if usage.cached_tokens is not None:
        raw["cacheReadInputTokens"] = usage.cached_tokens
    if usage.cache_write_tokens is not None:
        raw["cacheWriteInputTokens"] = usage.cache_write_tokens
    return raw


def finish_of_stop(stop_reason: Any) -> chat.FinishReason | None:
    if not isinstance(stop_reason, str):
        return None
    return _FINISH_OF_STOP.get(stop_reason, "other")


def stop_of_finish(finish: chat.FinishReason | None, stop_sequence: str | None = None) -> str:
    if finish == "stop" and stop_sequence:
        return "stop_sequence"
    return _STOP_OF_FINISH.get(finish or "stop", "end_turn")


def _response_part(block: dict[str, Any]) -> chat.Part | None:
    if isinstance(block.get("text"), str):
        return chat.Text(block["text"])
    use = block.get("toolUse")
    if isinstance(use, dict):
        return chat.ToolCall(
            id=str(use.get("toolUseId") or ""),
            name=str(use.get("name") or ""),
            arguments=chat.json_text(use.get("input", {})),
        )
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        if isinstance(reasoning.get("redactedContent"), str):
            return chat.Thinking(redacted=reasoning["redactedContent"], origin=NAME)
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            signature = text.get("signature")
            signed = isinstance(signature, str)
            return chat.Thinking(
                text=str(text.get("text") or ""),
                signature=signature if signed else None,
                origin=NAME if signed else None,
            )
    cited = block.get("citationsContent")
    if isinstance(cited, dict) and isinstance(cited.get("content"), list):
        # The generated text, without the citations the common model has no place for.
        return chat.Text(
            "".join(c["text"] for c in cited["content"] if isinstance(c, dict) and isinstance(c.get("text"), str))
        )
    return None


def read_response(body: dict[str, Any]) -> chat.ChatResponse:
    output = body.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    parts = (
        [p for b in content if isinstance(b, dict) and (p := _response_part(b)) is not None]
        if isinstance(content, list)
        else []
    )
    return chat.ChatResponse(
        id=None,
        model=None,
        choices=[chat.Choice(index=0, parts=parts, finish=finish_of_stop(body.get("stopReason")))],
        usage=read_usage(body.get("usage")),
    )


def _response_block(part: chat.Part) -> dict[str, Any] | None:
    if isinstance(part, chat.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, chat.Thinking):
        if part.redacted is not None:
            return {"reasoningContent": {"redactedContent": chat.signed_for(part.redacted, part.origin, NAME)}}
        text: dict[str, Any] = {"text": part.text}
        if part.signature is not None:
            text["signature"] = chat.signed_for(part.signature, part.origin, NAME)
        return {"reasoningContent": {"reasoningText": text}}
    if isinstance(part, chat.ToolCall):
        return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": _lenient_input(part.arguments)}}
    return None


def _lenient_input(arguments: str) -> Any:
    """An upstream's tool call arguments: JSON as Bedrock's input document, else kept as a string."""
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def write_response(response: chat.ChatResponse, request: chat.ChatRequest) -> dict[str, Any]:
    choice = next((c for c in response.choices if c.index == 0), None)
    parts = choice.parts if choice is not None else []
    content = [b for p in parts if (b := _response_block(p)) is not None]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_of_finish(choice.finish if choice else None, choice.stop_sequence if choice else None),
        "usage": write_usage(response.usage),
        "metrics": {"latencyMs": 0},
    }
