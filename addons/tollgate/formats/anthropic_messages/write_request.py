"""A Messages call written out of the common chat model: what Anthropic cannot carry is refused,
what it lacks dropped (the `WRITE_FIELDS` table)."""

from __future__ import annotations

from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.anthropic_messages.fields import NAME
from tollgate.formats.anthropic_messages.read_request import TOOL_CHOICE_MODES

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
# Room for the answer beside the thinking budget when the call sets no max_tokens.
ANSWER_ROOM = 4096
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_CHOICE_TYPES = {mode: kind for kind, mode in TOOL_CHOICE_MODES.items()}


def _refuse_what_anthropic_cannot_carry(request: chat.ChatRequest) -> None:
    if request.n is not None and request.n > 1:
        raise chat.Untranslatable(f"n {request.n}: Anthropic returns one answer")
    if request.logprobs:
        raise chat.Untranslatable("logprobs: Anthropic returns no log probabilities")
    if request.top_logprobs is not None:
        raise chat.Untranslatable("top_logprobs: Anthropic returns no log probabilities")
    if request.output is not None and request.output.kind == "json":
        raise chat.Untranslatable(
            "response_format (JSON mode without a schema): Anthropic has no plain JSON mode, only JSON schemas"
        )
    if request.temperature is not None and not 0 <= request.temperature <= 1:
        raise chat.Untranslatable(f"temperature {request.temperature}: Anthropic's goes from 0 to 1")


def _thinking_and_max_tokens(request: chat.ChatRequest) -> tuple[dict[str, Any] | None, int]:
    """Anthropic counts thinking within max_tokens, and wants a budget of at least 1024 below it."""
    given = request.max_tokens
    budget = request.thinking_budget
    effort = request.reasoning_effort
    if budget is not None and budget < 0:  # "the model decides" (Gemini's -1): its default effort
        budget = None
        effort = effort or "medium"
    if budget is None and effort is not None:
        budget = chat.EFFORT_BUDGET[effort]
    if budget is None:
        return None, given if given is not None else DEFAULT_MAX_TOKENS
    if budget == 0:
        return {"type": "disabled"}, given if given is not None else DEFAULT_MAX_TOKENS
    budget = max(budget, MIN_THINKING_BUDGET)
    if given is not None and given <= budget:
        asked = f"reasoning_effort {effort!r}" if request.thinking_budget is None else "the thinking budget"
        raise chat.Untranslatable(
            f"max_tokens {given} must be above the {budget} thinking tokens {asked} asks for: "
            "Anthropic counts thinking within max_tokens"
        )
    forced = request.tool_choice.mode if request.tool_choice is not None else None
    if forced in ("required", "tool") and request.tools:
        raise chat.Untranslatable(f"tool_choice {forced!r}: Anthropic cannot force a tool call while it thinks")
    return {"type": "enabled", "budget_tokens": budget}, given if given is not None else budget + ANSWER_ROOM


def _write_image(image: chat.Image, where: str) -> dict[str, Any]:
    data, media = image.data, image.media_type
    url = image.url or ""
    if data is None and url.startswith("data:"):
        head, _, data = url[5:].partition(",")
        if not head.endswith(";base64"):
            raise chat.Untranslatable(f"{where}: an image data URL must be base64")
        media = media or head[: -len(";base64")] or None
    if data is not None:
        media = "image/jpeg" if media == "image/jpg" else media
        if media is None or media == "image/*":
            media = chat.sniffed_media_type(data)
        if media not in IMAGE_TYPES:
            raise chat.Untranslatable(
                f"{where}: an image of type {media or 'unknown'} cannot be translated "
                "(Anthropic takes JPEG, PNG, GIF and WebP)"
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise chat.Untranslatable(f"{where}: an image at {url.partition(':')[0] or 'no'} URL cannot be translated")


def _write_tool_result(result: chat.ToolResult, where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": result.id}
    content = [
        {"type": "text", "text": p.text} if isinstance(p, chat.Text) else _write_image(p, f"{where}.content[{k}]")
        for k, p in enumerate(result.content)
    ]
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def _write_part(part: chat.Part, role: str, where: str, dropped: list[str]) -> dict[str, Any] | None:
    if isinstance(part, chat.Text):
        return {"type": "text", "text": part.text}
    if role == "user":
        if isinstance(part, chat.Image):
            return _write_image(part, where)
        if isinstance(part, chat.ToolResult):
            return _write_tool_result(part, where)
        raise chat.Untranslatable(f"{where}: a {type(part).__name__} cannot be in a user message")
    if isinstance(part, chat.Thinking):
        if part.origin not in (None, NAME):  # Anthropic refuses a thinking block it did not sign
            fields.drop(dropped, "thinking signed by another provider")
            return None
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        if part.signature is None:
            fields.drop(dropped, "thinking without signature")
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, chat.ToolCall):
        arguments = chat.arguments_object(part.arguments)
        if arguments is None:
            fields.drop(dropped, "tool call arguments that are not a JSON object")
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments or {}}
    raise chat.Untranslatable(f"{where}: a {type(part).__name__} cannot be in an assistant message")


def _write_message(message: chat.Message, i: int, dropped: list[str]) -> dict[str, Any]:
    # Anthropic wants a user turn's tool results before anything else in it.
    order = sorted(range(len(message.parts)), key=lambda j: not isinstance(message.parts[j], chat.ToolResult))
    blocks = []
    for j in order:
        block = _write_part(message.parts[j], message.role, f"messages[{i}].parts[{j}]", dropped)
        if block is not None:
            blocks.append(block)
    if len(blocks) > 1:  # Anthropic refuses empty text blocks; an empty turn says nothing either way
        blocks = [b for b in blocks if b != {"type": "text", "text": ""}] or blocks[:1]
    return {"role": message.role, "content": blocks}


def _write_tool(tool: chat.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _write_tool_choice(request: chat.ChatRequest) -> dict[str, Any] | None:
    if not request.tools:
        return None  # Anthropic takes no tool_choice without tools; with none to call, none is called
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    if choice is None:
        return {"type": "auto", "disable_parallel_tool_use": True} if parallel is False else None
    out: dict[str, Any] = {"type": _TOOL_CHOICE_TYPES[choice.mode]}
    if choice.mode == "tool":
        out["name"] = choice.name
    if choice.mode != "none" and parallel is not None:
        out["disable_parallel_tool_use"] = not parallel
    return out


def _write_system(system: list[chat.Text]) -> str | list[dict[str, Any]] | None:
    if not system:
        return None
    if len(system) == 1:
        return system[0].text
    return [{"type": "text", "text": t.text} for t in system]


def _drop_what_anthropic_lacks(request: chat.ChatRequest, thinking: dict[str, Any] | None) -> None:
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(request, name) is not None:
            fields.drop(request.dropped, name)
    if request.include_thoughts is False and thinking is not None and thinking["type"] == "enabled":
        fields.drop(request.dropped, "include_thoughts")


def _sampling(request: chat.ChatRequest, thinking: dict[str, Any] | None) -> dict[str, Any]:
    """temperature, top_p and top_k. Anthropic refuses a call that thinks with its temperature or
    top_k changed, or top_p below 0.95: those are dropped then, the thinking asked for is kept."""
    given = {"temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k}
    sampling = {name: value for name, value in given.items() if value is not None}
    if thinking is None or thinking["type"] != "enabled":
        return sampling
    for name, value in list(sampling.items()):
        if (name == "temperature" and value != 1) or name == "top_k" or (name == "top_p" and value < 0.95):
            del sampling[name]
            fields.drop(request.dropped, name)
    return sampling


def write_request(request: chat.ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    _refuse_what_anthropic_cannot_carry(request)
    thinking, max_tokens = _thinking_and_max_tokens(request)
    _drop_what_anthropic_lacks(request, thinking)
    body: dict[str, Any] = {}
    if request.model is not None:
        body["model"] = request.model
    body["max_tokens"] = max_tokens
    system = _write_system(request.system)
    if system is not None:
        body["system"] = system
    body["messages"] = [_write_message(m, i, request.dropped) for i, m in enumerate(request.messages)]
    if request.tools:
        body["tools"] = [_write_tool(t) for t in request.tools]
    tool_choice = _write_tool_choice(request)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    body.update(_sampling(request, thinking))
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if thinking is not None:
        body["thinking"] = thinking
    if request.output is not None and request.output.kind == "json_schema":
        # Structured outputs, generally available: output_config.format, no beta header.
        body["output_config"] = {"format": {"type": "json_schema", "schema": request.output.schema or {}}}
    if request.stream:
        body["stream"] = True
    return body, {}
