"""A Converse request written from the common chat model."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bedrock_converse.fields import IMAGE_FORMATS, NAME


def _image_block(image: chat.Image, where: str) -> dict[str, Any]:
    if image.data is None:
        raise chat.Untranslatable(f"{where}: an image by URL cannot be translated: Bedrock takes images as bytes")
    media_type = (image.media_type or "").lower()
    if media_type in ("", "image/*"):
        media_type = chat.sniffed_media_type(image.data) or ""
    fmt = media_type.removeprefix("image/")
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in IMAGE_FORMATS:
        raise chat.Untranslatable(
            f"{where}: an image of type '{image.media_type}' cannot be translated (png, jpeg, gif, webp)"
        )
    return {"format": fmt, "source": {"bytes": image.data}}


def _tool_input(arguments: str, where: str) -> Any:
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        raise chat.Untranslatable(f"{where}: a tool call's arguments are not JSON") from None


def _tool_result_block(result: chat.ToolResult, where: str) -> dict[str, Any]:
    content = [
        {"text": part.text} if isinstance(part, chat.Text) else {"image": _image_block(part, f"{where}.content[{k}]")}
        for k, part in enumerate(result.content)
    ]
    block: dict[str, Any] = {"toolUseId": result.id, "content": content}
    if result.is_error:
        block["status"] = "error"  # only Claude takes a status: written only where it means something
    return block


def _reasoning_block(thinking: chat.Thinking) -> dict[str, Any] | None:
    if thinking.redacted is not None:
        return {"redactedContent": thinking.redacted}
    if thinking.signature is None:
        return None  # a model would refuse reasoning it cannot verify as its own
    return {"reasoningText": {"text": thinking.text, "signature": thinking.signature}}


def _content_blocks(message: chat.Message, where: str, request: chat.ChatRequest) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        at = f"{where}.parts[{j}]"
        if isinstance(part, chat.Text):
            if part.text:  # Bedrock refuses blank text blocks
                blocks.append({"text": part.text})
        elif isinstance(part, chat.Image):
            blocks.append({"image": _image_block(part, at)})
        elif isinstance(part, chat.Thinking) and part.origin not in (None, NAME):
            fields.drop(
                request.dropped, "thinking signed by another provider"
            )  # a model verifies its own reasoning only
        elif isinstance(part, chat.Thinking):
            reasoning = _reasoning_block(part) if message.role == "assistant" else None
            if reasoning is None:
                fields.drop(request.dropped, "thinking without a signature")
            else:
                blocks.append({"reasoningContent": reasoning})
        elif isinstance(part, chat.ToolCall):
            if message.role != "assistant":
                raise chat.Untranslatable(f"{at}: a tool call in a user message cannot be translated")
            blocks.append(
                {"toolUse": {"toolUseId": part.id, "name": part.name, "input": _tool_input(part.arguments, at)}}
            )
        else:
            if message.role != "user":
                raise chat.Untranslatable(f"{at}: a tool result in an assistant message cannot be translated")
            blocks.append({"toolResult": _tool_result_block(part, at)})
    return blocks


def _write_messages(request: chat.ChatRequest) -> list[dict[str, Any]]:
    """Bedrock wants turns that alternate and are not empty: an empty turn (thinking it could not
    carry, blank text) is left out and the turns it separated are joined."""
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        blocks = _content_blocks(message, f"messages[{i}]", request)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == message.role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": message.role, "content": blocks})
    return messages


def _has_tool_history(request: chat.ChatRequest) -> bool:
    return any(isinstance(p, chat.ToolCall | chat.ToolResult) for m in request.messages for p in m.parts)


def _write_tool_config(request: chat.ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is not None and choice.mode == "none":
        if _has_tool_history(request):
            raise chat.Untranslatable(
                "tool_choice 'none' cannot be translated: Converse needs its tools for the tool calls in the history"
            )
        return None
    if not request.tools:
        return None
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        spec["inputSchema"] = {
            "json": tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        }
        if tool.strict:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice is not None:
        if choice.mode == "auto":
            config["toolChoice"] = {"auto": {}}
        elif choice.mode == "required":
            config["toolChoice"] = {"any": {}}
        else:
            config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def _thinking_budget(request: chat.ChatRequest) -> int | None:
    """The budget Claude on Bedrock takes: at least 1024 tokens, below max_tokens where that allows."""
    if request.thinking_budget is not None:
        return request.thinking_budget or None  # 0: thinking off, Bedrock's models' default
    if request.reasoning_effort is None:
        return None
    budget = max(1024, chat.EFFORT_BUDGET[request.reasoning_effort])
    if request.max_tokens is not None and budget >= request.max_tokens:
        budget = max(1024, request.max_tokens - 1)
    return budget


def _refuse_unwritable(request: chat.ChatRequest) -> None:
    if request.n is not None and request.n > 1:
        raise chat.Untranslatable("n cannot be translated: Converse answers once")
    if request.logprobs or request.top_logprobs:
        raise chat.Untranslatable("logprobs cannot be translated: Converse gives no log probabilities")
    if request.output is not None and request.output.kind == "json":
        raise chat.Untranslatable("response format 'json' cannot be translated: Converse takes a JSON schema only")
    for name in ("seed", "presence_penalty", "frequency_penalty", "parallel_tool_calls", "user"):
        if getattr(request, name) is not None:
            fields.drop(request.dropped, name)


def write_request(request: chat.ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    _refuse_unwritable(request)
    body: dict[str, Any] = {"messages": _write_messages(request)}
    system = [{"text": t.text} for t in request.system if t.text]
    if system:
        body["system"] = system
    settings = (("maxTokens", request.max_tokens), ("temperature", request.temperature), ("topP", request.top_p))
    inference: dict[str, Any] = {name: value for name, value in settings if value is not None}
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _write_tool_config(request)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    additional: dict[str, Any] = {}
    if request.top_k is not None:
        additional["top_k"] = request.top_k
    budget = _thinking_budget(request)
    if budget is not None:
        additional["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if additional:
        body["additionalModelRequestFields"] = additional
    output = request.output
    if output is not None and output.kind == "json_schema":
        definition: dict[str, Any] = {"schema": chat.json_text(output.schema or {})}
        if output.name:
            definition["name"] = output.name
        body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    return body, {}
