"""Anthropic's Messages API (POST /v1/messages), read into the common chat model and written out of it;
and, apart from that model, what carries a Messages call to Claude on Bedrock's InvokeModel unchanged
(`bedrock_invoke_body`, `InvokeStreamUnwrapper`)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal

from ..json_codec import encode_json, parse_json
from ..streams import EventStreamFrame, EventStreamFramer, SSEFramer, parse_sse_block
from ..usage import Usage
from . import chat, fields, formats
from .chat import (
    ChatError,
    ChatFormat,
    ChatRequest,
    ChatResponse,
    Choice,
    Effort,
    ErrorKind,
    FinishReason,
    Image,
    Message,
    OutputFormat,
    Part,
    Started,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStarted,
    ToolChoice,
    ToolResult,
    Untranslatable,
    UsageReported,
)

NAME = formats.ANTHROPIC_MESSAGES
Handling = Literal["translated", "dropped", "refused"]

# Every top-level field of a Messages call, and what becomes of it when read. A field not listed
# is refused as unknown (compaction, fallbacks, thread, … change what the call means).
REQUEST_FIELDS: dict[str, tuple[Handling, str]] = {
    "model": ("translated", "model"),
    "max_tokens": ("translated", "max_tokens"),
    "messages": (
        "translated",
        "text, image (base64 or url), tool_use, tool_result, thinking and redacted_thinking blocks; "
        "document, search_result, server tool blocks, container_upload and the like are refused",
    ),
    "system": ("translated", "a string or text blocks"),
    "tools": ("translated", "custom tools; server tools (web_search, bash, text_editor, computer, …) are refused"),
    "tool_choice": ("translated", "auto/any/tool/none; disable_parallel_tool_use ↔ parallel_tool_calls"),
    "temperature": ("translated", "temperature"),
    "top_p": ("translated", "top_p"),
    "top_k": ("translated", "top_k"),
    "stop_sequences": ("translated", "stop"),
    "stream": ("translated", "stream"),
    "metadata": ("translated", "metadata.user_id ↔ user"),
    "thinking": (
        "translated",
        "enabled ↔ thinking_budget; disabled ↔ thinking_budget 0; adaptive → reasoning_effort; "
        "display ↔ include_thoughts (read only)",
    ),
    "output_config": ("translated", "format (json_schema) ↔ output; effort → reasoning_effort (xhigh, max → high)"),
    "output_format": ("translated", "the structured-outputs beta's json_schema → output"),
    "cache_control": ("dropped", "top-level, and on any block or tool"),
    "service_tier": ("dropped", "capacity, not the answer"),
    "container": ("dropped", "only server tools, which are refused, use it"),
    "context_management": ("dropped", "server-side context editing"),
    "inference_geo": ("dropped", "where the call runs, not the answer"),
    "speed": ("dropped", "how fast, not what"),
    "diagnostics": ("dropped", "cache-miss diagnostics"),
    "user_profile_id": ("dropped", "attribution"),
    "workspace_id": ("dropped", "attribution"),
    "mcp_servers": ("refused", "remote MCP servers run inside Anthropic's API (an empty list is dropped)"),
}
# What else is dropped when read, inside blocks and tools (names as they go into `ChatRequest.dropped`);
# a block's or a tool's other fields (a tool's input_examples, an image's transformations…) are refused.
DROPPED_MARKS = ("cache_control", "citations", "eager_input_streaming")
DROPPED_TOOL_FIELDS = ("cache_control", "eager_input_streaming")

# What becomes of the common model's fields when written to Anthropic.
WRITE_FIELDS: dict[str, tuple[Handling, str]] = {
    "max_tokens": ("translated", "4096 when the call gives none (Anthropic requires it)"),
    "reasoning_effort": ("translated", "thinking.budget_tokens from chat.EFFORT_BUDGET (at least 1024)"),
    "thinking_budget": ("translated", "thinking enabled (at least 1024) or disabled (0)"),
    "output": ("translated", "json_schema → output_config.format (GA, no beta header); plain JSON mode is refused"),
    "tool_choice": ("translated", "required → any; forcing a tool while thinking is refused"),
    "temperature": ("translated", "0 to 1, else refused; dropped while thinking unless 1"),
    "top_p": ("translated", "dropped while thinking if below 0.95"),
    "top_k": ("translated", "dropped while thinking"),
    "messages": ("translated", "images by https URL or inline JPEG/PNG/GIF/WebP; other images are refused"),
    "n": ("refused", "above 1: Anthropic returns one answer"),
    "logprobs": ("refused", "Anthropic returns no log probabilities"),
    "top_logprobs": ("refused", "Anthropic returns no log probabilities"),
    "seed": ("dropped", "Anthropic has none"),
    "presence_penalty": ("dropped", "Anthropic has none"),
    "frequency_penalty": ("dropped", "Anthropic has none"),
    "include_thoughts": ("dropped", "when false: Anthropic shows the thinking it is asked for"),
    "thinking without signature": ("dropped", "another provider's reasoning in the history: Anthropic needs its own"),
    "thinking signed by another provider": ("dropped", "its signature (or redacted data) is valid there only"),
}

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
# Room for the answer beside the thinking budget when the call sets no max_tokens.
ANSWER_ROOM = 4096
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"

_TOOL_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}
_TOOL_CHOICE_TYPES = {mode: kind for kind, mode in _TOOL_CHOICE_MODES.items()}
_EFFORTS: dict[str, Effort] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}

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

_ERROR_TYPE_OF_KIND: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}
_KIND_OF_ERROR_TYPE: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "billing_error": "permission",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "too_large",
    "rate_limit_error": "rate_limit",
    "api_error": "server",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# Bedrock's stream exceptions, as the Anthropic error a Claude client knows.
_ERROR_TYPE_OF_BEDROCK_EXCEPTION = {
    "throttlingException": "rate_limit_error",
    "serviceQuotaExceededException": "rate_limit_error",
    "validationException": "invalid_request_error",
    "accessDeniedException": "permission_error",
    "resourceNotFoundException": "not_found_error",
    "modelStreamErrorException": "api_error",
    "internalServerException": "api_error",
    "serviceUnavailableException": "overloaded_error",
    "modelNotReadyException": "overloaded_error",
    "modelTimeoutException": "timeout_error",
}


# ---------------------------------------------------------------------------------------------
# Reading a call exactly


def _drop_marks(block: dict[str, Any], dropped: list[str]) -> None:
    """cache_control and citations on a block: hints to Anthropic, not part of what is said."""
    for mark in ("cache_control", "citations"):
        if block.get(mark) is not None:
            fields.drop(dropped, mark)


def _read_text_block(block: dict[str, Any], where: str, dropped: list[str]) -> Text:
    fields.only(block, ("type", "text", "cache_control", "citations"), where)
    _drop_marks(block, dropped)
    return Text(fields.string(block.get("text"), f"{where}.text"))


def _read_image_block(block: dict[str, Any], where: str, dropped: list[str]) -> Image:
    fields.only(block, ("type", "source", "cache_control"), where)
    _drop_marks(block, dropped)
    source = fields.obj(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        fields.only(source, ("type", "media_type", "data"), f"{where}.source")
        return Image(
            media_type=fields.string(source.get("media_type"), f"{where}.source.media_type"),
            data=fields.string(source.get("data"), f"{where}.source.data"),
        )
    if kind == "url":
        fields.only(source, ("type", "url"), f"{where}.source")
        return Image(url=fields.string(source.get("url"), f"{where}.source.url"))
    raise Untranslatable(f"{where}.source.type {kind!r} cannot be translated")


def _read_tool_result(block: dict[str, Any], where: str, dropped: list[str]) -> ToolResult:
    fields.only(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), where)
    _drop_marks(block, dropped)
    content = block.get("content")
    parts: list[Text | Image] = []
    if isinstance(content, str):
        parts.append(Text(content))
    elif content is not None:
        for j, raw in enumerate(fields.array(content, f"{where}.content")):
            inner = f"{where}.content[{j}]"
            item = fields.obj(raw, inner)
            kind = item.get("type")
            if kind == "text":
                parts.append(_read_text_block(item, inner, dropped))
            elif kind == "image":
                parts.append(_read_image_block(item, inner, dropped))
            else:
                raise Untranslatable(f"{inner}.type {kind!r} cannot be translated")
    return ToolResult(
        id=fields.string(block.get("tool_use_id"), f"{where}.tool_use_id"),
        name=None,
        content=parts,
        is_error=bool(fields.optional_bool(block.get("is_error"), f"{where}.is_error")),
    )


def _read_tool_use(block: dict[str, Any], where: str, dropped: list[str]) -> ToolCall:
    fields.only(block, ("type", "id", "name", "input", "cache_control", "caller"), where)
    _drop_marks(block, dropped)
    caller = block.get("caller")
    if caller is not None and caller != {"type": "direct"}:
        raise Untranslatable(f"{where}.caller cannot be translated (a call made by a server tool)")
    return ToolCall(
        id=fields.string(block.get("id"), f"{where}.id"),
        name=fields.string(block.get("name"), f"{where}.name"),
        arguments=chat.json_text(fields.obj(block.get("input"), f"{where}.input")),
    )


def _read_block(raw: Any, role: str, where: str, dropped: list[str]) -> Part:
    block = fields.obj(raw, where)
    kind = block.get("type")
    by_user = role == "user"
    if kind == "text":
        return _read_text_block(block, where, dropped)
    if kind == "image" and by_user:
        return _read_image_block(block, where, dropped)
    if kind == "tool_result" and by_user:
        return _read_tool_result(block, where, dropped)
    if kind == "tool_use" and not by_user:
        return _read_tool_use(block, where, dropped)
    if kind == "thinking" and not by_user:
        fields.only(block, ("type", "thinking", "signature"), where)
        thinking = Thinking(text=fields.string(block.get("thinking"), f"{where}.thinking"))
        signature = fields.optional_string(block.get("signature"), f"{where}.signature")
        if signature is not None:
            # Another model's, sealed when this client was given it; else Anthropic's own.
            thinking.signature, origin = chat.unseal(signature)
            thinking.origin = origin or NAME
        return thinking
    if kind == "redacted_thinking" and not by_user:
        fields.only(block, ("type", "data"), where)
        data, origin = chat.unseal(fields.string(block.get("data"), f"{where}.data"))
        return Thinking(redacted=data, origin=origin or NAME)
    if kind in ("image", "tool_result", "tool_use", "thinking", "redacted_thinking"):
        raise Untranslatable(f"{where}.type {kind!r} cannot be translated in a {role} message")
    raise Untranslatable(f"{where}.type {kind!r} cannot be translated")


def _read_message(raw: Any, where: str, dropped: list[str]) -> Message:
    obj = fields.obj(raw, where)
    fields.only(obj, ("role", "content"), where)
    role = obj.get("role")
    if role not in ("user", "assistant"):
        raise Untranslatable(f"{where}.role {role!r} cannot be translated")
    content = obj.get("content")
    if isinstance(content, str):
        return Message(role, [Text(content)])
    blocks = fields.array(content, f"{where}.content")
    return Message(role, [_read_block(b, role, f"{where}.content[{j}]", dropped) for j, b in enumerate(blocks)])


def _read_system(value: Any, dropped: list[str]) -> list[Text]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    texts = []
    for i, raw in enumerate(fields.array(value, "system")):
        block = fields.obj(raw, f"system[{i}]")
        if block.get("type") != "text":
            raise Untranslatable(f"system[{i}].type {block.get('type')!r} cannot be translated")
        texts.append(_read_text_block(block, f"system[{i}]", dropped))
    return texts


def _read_tool(raw: Any, where: str, dropped: list[str]) -> Tool:
    tool = fields.obj(raw, where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise Untranslatable(f"{where}.type {kind!r} (a server tool) cannot be translated")
    fields.only(tool, ("type", "name", "description", "input_schema", "strict", *DROPPED_TOOL_FIELDS), where)
    for mark in DROPPED_TOOL_FIELDS:
        if tool.get(mark) is not None:
            fields.drop(dropped, mark)
    return Tool(
        name=fields.string(tool.get("name"), f"{where}.name"),
        description=fields.optional_string(tool.get("description"), f"{where}.description"),
        parameters=fields.obj(tool.get("input_schema"), f"{where}.input_schema"),
        strict=fields.optional_bool(tool.get("strict"), f"{where}.strict"),
    )


def _read_tool_choice(value: Any, request: ChatRequest) -> None:
    if value is None:
        return
    choice = fields.obj(value, "tool_choice")
    fields.only(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
    kind = choice.get("type")
    mode = _TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise Untranslatable(f"tool_choice.type {kind!r} cannot be translated")
    name = fields.string(choice.get("name"), "tool_choice.name") if mode == "tool" else None
    request.tool_choice = ToolChoice(mode, name)
    disable = fields.optional_bool(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")
    if disable is not None:
        request.parallel_tool_calls = not disable


def _read_output_format(value: Any, where: str) -> OutputFormat | None:
    if value is None:
        return None
    fmt = fields.obj(value, where)
    fields.only(fmt, ("type", "schema"), where)
    if fmt.get("type") != "json_schema":
        raise Untranslatable(f"{where}.type {fmt.get('type')!r} cannot be translated")
    return OutputFormat("json_schema", schema=fields.obj(fmt.get("schema"), f"{where}.schema"))


def _read_output_config(body: dict[str, Any], request: ChatRequest) -> None:
    if body.get("output_config") is not None:
        config = fields.obj(body["output_config"], "output_config")
        fields.only(config, ("format", "effort"), "output_config")
        request.output = _read_output_format(config.get("format"), "output_config.format")
        effort = config.get("effort")
        if effort is not None:
            if effort not in _EFFORTS:
                raise Untranslatable(f"output_config.effort {effort!r} cannot be translated")
            request.reasoning_effort = _EFFORTS[effort]
            if effort in ("xhigh", "max"):
                fields.drop(request.dropped, "output_config.effort")  # read as "high", the most the model says
    beta = _read_output_format(body.get("output_format"), "output_format")
    if beta is not None:
        if request.output is not None:
            raise Untranslatable("output_format cannot be given beside output_config.format")
        request.output = beta


def _read_thinking(value: Any, request: ChatRequest) -> None:
    if value is None:
        return
    thinking = fields.obj(value, "thinking")
    kind = thinking.get("type")
    if kind == "enabled":
        fields.only(thinking, ("type", "budget_tokens", "display"), "thinking")
        budget = fields.optional_integer(thinking.get("budget_tokens"), "thinking.budget_tokens")
        if budget is None:
            raise Untranslatable("thinking.budget_tokens must be an integer")
        request.thinking_budget = budget
    elif kind == "adaptive":
        fields.only(thinking, ("type", "display"), "thinking")
        request.reasoning_effort = request.reasoning_effort or "medium"  # the model decides: its default effort
    elif kind == "disabled":
        fields.only(thinking, ("type",), "thinking")
        request.thinking_budget = 0
        return
    else:
        raise Untranslatable(f"thinking.type {kind!r} cannot be translated")
    display = thinking.get("display")
    if display not in (None, "summarized", "omitted"):
        raise Untranslatable(f"thinking.display {display!r} cannot be translated")
    if display is not None:
        request.include_thoughts = display == "summarized"


def _read_metadata(value: Any, request: ChatRequest) -> None:
    if value is None:
        return
    metadata = fields.obj(value, "metadata")
    fields.only(metadata, ("user_id",), "metadata")
    request.user = fields.optional_string(metadata.get("user_id"), "metadata.user_id")


def read_request(body: dict[str, Any]) -> ChatRequest:
    for key in body:
        if key not in REQUEST_FIELDS:
            raise Untranslatable(f"{key} cannot be translated")
    request = ChatRequest(model=fields.optional_string(body.get("model"), "model"), messages=[])
    dropped = request.dropped
    request.max_tokens = fields.optional_integer(body.get("max_tokens"), "max_tokens")
    messages = fields.array(body.get("messages"), "messages")
    request.messages = [_read_message(m, f"messages[{i}]", dropped) for i, m in enumerate(messages)]
    request.system = _read_system(body.get("system"), dropped)
    tools = body.get("tools")
    if tools is not None:
        request.tools = [_read_tool(t, f"tools[{i}]", dropped) for i, t in enumerate(fields.array(tools, "tools"))]
    _read_tool_choice(body.get("tool_choice"), request)
    request.temperature = fields.optional_number(body.get("temperature"), "temperature")
    request.top_p = fields.optional_number(body.get("top_p"), "top_p")
    request.top_k = fields.optional_integer(body.get("top_k"), "top_k")
    stops = body.get("stop_sequences")
    if stops is not None:
        request.stop = [
            fields.string(s, f"stop_sequences[{i}]") for i, s in enumerate(fields.array(stops, "stop_sequences"))
        ]
    request.stream = bool(fields.optional_bool(body.get("stream"), "stream"))
    _read_metadata(body.get("metadata"), request)
    _read_output_config(body, request)
    _read_thinking(body.get("thinking"), request)
    servers = body.get("mcp_servers")
    if servers:
        raise Untranslatable("mcp_servers cannot be translated (remote MCP servers run inside Anthropic's API)")
    for key, (handling, _) in REQUEST_FIELDS.items():
        if handling != "translated" and body.get(key) is not None:
            fields.drop(dropped, key)
    return request


# ---------------------------------------------------------------------------------------------
# Writing a call


def _refuse_what_anthropic_cannot_carry(request: ChatRequest) -> None:
    if request.n is not None and request.n > 1:
        raise Untranslatable(f"n {request.n}: Anthropic returns one answer")
    if request.logprobs:
        raise Untranslatable("logprobs: Anthropic returns no log probabilities")
    if request.top_logprobs is not None:
        raise Untranslatable("top_logprobs: Anthropic returns no log probabilities")
    if request.output is not None and request.output.kind == "json":
        raise Untranslatable(
            "response_format (JSON mode without a schema): Anthropic has no plain JSON mode, only JSON schemas"
        )
    if request.temperature is not None and not 0 <= request.temperature <= 1:
        raise Untranslatable(f"temperature {request.temperature}: Anthropic's goes from 0 to 1")


def _thinking_and_max_tokens(request: ChatRequest) -> tuple[dict[str, Any] | None, int]:
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
        raise Untranslatable(
            f"max_tokens {given} must be above the {budget} thinking tokens {asked} asks for: "
            "Anthropic counts thinking within max_tokens"
        )
    forced = request.tool_choice.mode if request.tool_choice is not None else None
    if forced in ("required", "tool") and request.tools:
        raise Untranslatable(f"tool_choice {forced!r}: Anthropic cannot force a tool call while it thinks")
    return {"type": "enabled", "budget_tokens": budget}, given if given is not None else budget + ANSWER_ROOM


def _write_image(image: Image, where: str) -> dict[str, Any]:
    data, media = image.data, image.media_type
    url = image.url or ""
    if data is None and url.startswith("data:"):
        head, _, data = url[5:].partition(",")
        if not head.endswith(";base64"):
            raise Untranslatable(f"{where}: an image data URL must be base64")
        media = media or head[: -len(";base64")] or None
    if data is not None:
        media = "image/jpeg" if media == "image/jpg" else media
        if media is None or media == "image/*":
            media = chat.sniffed_media_type(data)
        if media not in IMAGE_TYPES:
            raise Untranslatable(
                f"{where}: an image of type {media or 'unknown'} cannot be translated "
                "(Anthropic takes JPEG, PNG, GIF and WebP)"
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise Untranslatable(f"{where}: an image at {url.partition(':')[0] or 'no'} URL cannot be translated")


def _write_tool_result(result: ToolResult, where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": result.id}
    content = [
        {"type": "text", "text": p.text} if isinstance(p, Text) else _write_image(p, f"{where}.content[{k}]")
        for k, p in enumerate(result.content)
    ]
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def _write_part(part: Part, role: str, where: str, dropped: list[str]) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if role == "user":
        if isinstance(part, Image):
            return _write_image(part, where)
        if isinstance(part, ToolResult):
            return _write_tool_result(part, where)
        raise Untranslatable(f"{where}: a {type(part).__name__} cannot be in a user message")
    if isinstance(part, Thinking):
        if part.origin not in (None, NAME):  # Anthropic refuses a thinking block it did not sign
            fields.drop(dropped, "thinking signed by another provider")
            return None
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        if part.signature is None:
            fields.drop(dropped, "thinking without signature")
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ToolCall):
        arguments = chat.arguments_object(part.arguments)
        if arguments is None:
            fields.drop(dropped, "tool call arguments that are not a JSON object")
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments or {}}
    raise Untranslatable(f"{where}: a {type(part).__name__} cannot be in an assistant message")


def _write_message(message: Message, i: int, dropped: list[str]) -> dict[str, Any]:
    # Anthropic wants a user turn's tool results before anything else in it.
    order = sorted(range(len(message.parts)), key=lambda j: not isinstance(message.parts[j], ToolResult))
    blocks = []
    for j in order:
        block = _write_part(message.parts[j], message.role, f"messages[{i}].parts[{j}]", dropped)
        if block is not None:
            blocks.append(block)
    if len(blocks) > 1:  # Anthropic refuses empty text blocks; an empty turn says nothing either way
        blocks = [b for b in blocks if b != {"type": "text", "text": ""}] or blocks[:1]
    return {"role": message.role, "content": blocks}


def _write_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _write_tool_choice(request: ChatRequest) -> dict[str, Any] | None:
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


def _write_system(system: list[Text]) -> str | list[dict[str, Any]] | None:
    if not system:
        return None
    if len(system) == 1:
        return system[0].text
    return [{"type": "text", "text": t.text} for t in system]


def _drop_what_anthropic_lacks(request: ChatRequest, thinking: dict[str, Any] | None) -> None:
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(request, name) is not None:
            fields.drop(request.dropped, name)
    if request.include_thoughts is False and thinking is not None and thinking["type"] == "enabled":
        fields.drop(request.dropped, "include_thoughts")


def _sampling(request: ChatRequest, thinking: dict[str, Any] | None) -> dict[str, Any]:
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


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
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


# ---------------------------------------------------------------------------------------------
# Answers


def _finish_of(stop_reason: Any) -> FinishReason | None:
    if not isinstance(stop_reason, str):
        return None
    return _FINISH_OF_STOP_REASON.get(stop_reason, "other")


def _stop_reason_of(finish: FinishReason | None, stop_sequence: str | None) -> str | None:
    if finish is None:
        return None
    if finish == "stop":
        return "stop_sequence" if stop_sequence else "end_turn"
    return _STOP_REASON_OF_FINISH[finish]


def _read_usage(raw: Any) -> Usage:
    """Anthropic's input_tokens leaves out cache reads and writes: the model's counts them in."""
    if not isinstance(raw, dict):
        return Usage()
    fresh = fields.int_or_none(raw.get("input_tokens"))
    read = fields.int_or_none(raw.get("cache_read_input_tokens"))
    written = fields.int_or_none(raw.get("cache_creation_input_tokens"))
    details = raw.get("output_tokens_details")
    return Usage(
        input_tokens=chat.input_with_cache(fresh, read, written),
        output_tokens=fields.int_or_none(raw.get("output_tokens")),
        cached_tokens=read,
        cache_write_tokens=written,
        reasoning_tokens=fields.int_or_none(details.get("thinking_tokens")) if isinstance(details, dict) else None,
    )


def _write_usage(usage: Usage) -> dict[str, Any]:
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
        choices=[Choice(0, parts, _finish_of(body.get("stop_reason")), fields.str_or_none(body.get("stop_sequence")))],
        usage=_read_usage(body.get("usage")),
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
        "stop_reason": _stop_reason_of(choice.finish if choice else None, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": _write_usage(response.usage),
    }


# ---------------------------------------------------------------------------------------------
# Streams


def _error_of(body: dict[str, Any], status: int | None) -> ChatError:
    """An error body's kind and message; a stream's error event has no status but its type's."""
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    type_name = fields.str_or_none(error.get("type")) or ""
    if status is None:
        status = _STATUS_OF_ERROR_TYPE.get(type_name, 500)
    kind = _KIND_OF_ERROR_TYPE.get(type_name) or chat.kind_of_status(status)
    message = fields.str_or_none(error.get("message")) or f"Anthropic answered HTTP {status}"
    return ChatError(status, kind, message)


class MessagesStreamReader:
    """Reads a Messages stream's server-sent events into the common events."""

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self.error: str | None = None
        self._started = False
        # Content block index → its kind, and for tool_use its position among the tool calls.
        self._blocks: dict[int, tuple[str, int]] = {}
        self._tools = 0
        # Input counts so far: a message_delta may update one and not the others.
        self._fresh: int | None = None
        self._read: int | None = None
        self._written: int | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self.error is not None:
            return []
        events: list[StreamEvent] = []
        for block in self._framer.feed(chunk):
            sse = parse_sse_block(block)
            if sse is None:
                continue
            data = parse_json(sse.data.encode())
            if data is None:
                self.error = "a stream event's data is not a JSON object"  # its text is the answer's: not quoted
                return events
            try:
                events.extend(self._read_event(fields.str_or_none(data.get("type")) or sse.event, data))
            except Exception as e:  # a shape no branch expected: stop reading rather than crash the proxy
                self.error = f"unreadable stream event: {type(e).__name__}"
                return events
        self.error = self._framer.error
        return events

    def end(self) -> list[StreamEvent]:
        return []

    def _read_event(self, kind: str | None, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "message_start":
            return self._message_start(data.get("message"))
        if kind == "content_block_start":
            block = data.get("content_block")
            return self._block_start(fields.int_or_none(data.get("index")), block if isinstance(block, dict) else {})
        if kind == "content_block_delta":
            delta = data.get("delta")
            return self._block_delta(fields.int_or_none(data.get("index")), delta if isinstance(delta, dict) else {})
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "error":
            return [chat.Failed(_error_of(data, None))]
        return []  # content_block_stop, message_stop, ping, and events newer than this reader

    def _message_start(self, message: Any) -> list[StreamEvent]:
        message = message if isinstance(message, dict) else {}
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                Started(id=fields.str_or_none(message.get("id")), model=fields.str_or_none(message.get("model")))
            )
        if isinstance(message.get("usage"), dict):
            events.append(UsageReported(self._usage(message["usage"])))
        return events

    def _block_start(self, index: int | None, block: dict[str, Any]) -> list[StreamEvent]:
        if index is None:
            return []
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", 0)
            text = fields.str_or_none(block.get("text"))
            return [TextDelta(text)] if text else []
        if kind == "thinking":
            self._blocks[index] = ("thinking", 0)
            events: list[StreamEvent] = []
            text, signature = fields.str_or_none(block.get("thinking")), fields.str_or_none(block.get("signature"))
            if text:
                events.append(ThinkingDelta(text=text))
            if signature:
                events.append(ThinkingDelta(signature=signature, origin=NAME))
            return events
        if kind == "redacted_thinking":
            self._blocks[index] = ("redacted", 0)
            return [ThinkingDelta(redacted=fields.str_or_none(block.get("data")) or "", origin=NAME)]
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            self._blocks[index] = ("tool", tool)
            started: list[StreamEvent] = [
                ToolCallStarted(
                    tool, fields.str_or_none(block.get("id")) or "", fields.str_or_none(block.get("name")) or ""
                )
            ]
            given = block.get("input")
            if isinstance(given, dict) and given:
                started.append(ToolCallDelta(tool, chat.json_text(given)))
            return started
        return []

    def _block_delta(self, index: int | None, delta: dict[str, Any]) -> list[StreamEvent]:
        kind, tool = self._blocks.get(index if index is not None else -1, ("", 0))
        delta_kind = delta.get("type")
        if delta_kind == "text_delta" and kind == "text":
            text = fields.str_or_none(delta.get("text"))
            return [TextDelta(text)] if text else []
        if delta_kind == "thinking_delta" and kind == "thinking":
            text = fields.str_or_none(delta.get("thinking"))
            return [ThinkingDelta(text=text)] if text else []
        if delta_kind == "signature_delta" and kind == "thinking":
            signature = fields.str_or_none(delta.get("signature"))
            return [ThinkingDelta(signature=signature, origin=NAME)] if signature else []
        if delta_kind == "input_json_delta" and kind == "tool":
            partial = fields.str_or_none(delta.get("partial_json"))
            return [ToolCallDelta(tool, partial)] if partial else []
        return []  # citations_delta, and deltas of blocks this reader does not pass on

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        delta = data.get("delta")
        if isinstance(delta, dict):
            finish = _finish_of(delta.get("stop_reason"))
            if finish is not None:
                events.append(chat.Finished(finish, stop_sequence=fields.str_or_none(delta.get("stop_sequence"))))
        if isinstance(data.get("usage"), dict):
            events.append(UsageReported(self._usage(data["usage"])))
        return events

    def _usage(self, raw: dict[str, Any]) -> Usage:
        """A report's counts, the input total made of the latest of each of its three parts."""
        usage = _read_usage(raw)
        fresh = fields.int_or_none(raw.get("input_tokens"))
        self._fresh = fresh if fresh is not None else self._fresh
        self._read = usage.cached_tokens if usage.cached_tokens is not None else self._read
        self._written = usage.cache_write_tokens if usage.cache_write_tokens is not None else self._written
        reported = fresh is not None or usage.cached_tokens is not None or usage.cache_write_tokens is not None
        if reported and self._fresh is not None:
            usage.input_tokens = chat.input_with_cache(self._fresh, self._read, self._written)
        return usage


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return chat.sse(encode_json({"type": kind, **data}), kind)


class MessagesStreamWriter:
    """Writes the common events as a Messages stream, as the anthropic SDK's accumulator reads it.

    message_start goes out at once with the usage known by then (usually none: zeros); the usage
    reported later goes out in message_delta, which waits for `end()` so that usage reported after
    the finish goes with it (the SDK takes message_delta's counts over message_start's)."""

    content_type = "text/event-stream"

    def __init__(self, request: ChatRequest) -> None:
        self._model = request.model
        self._started = False
        self._id = ""  # the message's, once message_start is written
        self._open: str | None = None  # the kind of the content block open, if one is
        self._index = -1  # the last content block's index
        self._tool_blocks: dict[int, int] = {}  # tool call index → its content block
        self._usage = Usage()
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._done = False

    def write(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, Started):
            return self._start(event)
        if isinstance(event, UsageReported):
            self._usage.update(event.usage)
            return b""
        if isinstance(event, chat.Failed):
            self._done = True
            error = {"type": _ERROR_TYPE_OF_KIND[event.error.kind], "message": event.error.message}
            return _event("error", {"error": error})
        if getattr(event, "choice", 0) != 0:
            return b""  # Anthropic has one answer: the first is the one written
        return self._start() + self._content(event)

    def end(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        usage: dict[str, Any] = {}
        fresh = self._usage.uncached_input_tokens
        if fresh is not None:
            usage["input_tokens"] = fresh
            if self._usage.cache_write_tokens is not None:
                usage["cache_creation_input_tokens"] = self._usage.cache_write_tokens
            if self._usage.cached_tokens is not None:
                usage["cache_read_input_tokens"] = self._usage.cached_tokens
        usage["output_tokens"] = self._usage.output_tokens or 0
        if self._usage.reasoning_tokens is not None:
            usage["output_tokens_details"] = {"thinking_tokens": self._usage.reasoning_tokens}
        delta = {
            "stop_reason": _stop_reason_of(self._finish, self._stop_sequence),
            "stop_sequence": self._stop_sequence if self._finish == "stop" else None,
        }
        return (
            self._start()
            + self._close()
            + _event("message_delta", {"delta": delta, "usage": usage})
            + _event("message_stop", {})
        )

    def _content(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            return self._open_block("text", {"type": "text", "text": ""}) + self._delta(
                self._index, {"type": "text_delta", "text": event.text}
            )
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, ToolCallStarted):
            call_id = event.id or f"toolu_{self._id.removeprefix('msg_')}_{event.index}"
            block = {"type": "tool_use", "id": call_id, "name": event.name, "input": {}}
            out = self._close() + self._open_block("tool", block)
            self._tool_blocks[event.index] = self._index
            return out
        if isinstance(event, ToolCallDelta):
            index = self._tool_blocks.get(event.index)
            if index is None or not event.arguments:
                return b""
            return self._delta(index, {"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, chat.Finished):
            self._finish, self._stop_sequence = event.reason, event.stop_sequence
            return self._close()
        return b""

    def _thinking(self, event: ThinkingDelta) -> bytes:
        out = b""
        if event.redacted is not None:
            data = chat.signed_for(event.redacted, event.origin, NAME)
            out += self._close() + self._open_block("redacted", {"type": "redacted_thinking", "data": data})
        if event.text or event.signature:
            out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            out += self._delta(self._index, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            signature = chat.signed_for(event.signature, event.origin, NAME)
            out += self._delta(self._index, {"type": "signature_delta", "signature": signature})
            self._open = "signed"  # the block is whole: more thinking starts another
        return out

    def _start(self, started: Started | None = None) -> bytes:
        """message_start, once: from Started, or made up if the stream begins otherwise."""
        if self._started:
            return b""
        started = started or Started()
        self._started = True
        self._id = chat.answer_id("msg_", started.id)
        usage = _write_usage(self._usage)
        usage.pop("output_tokens_details", None)
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": started.model or self._model or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return _event("message_start", {"message": message})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        if self._open == kind:
            return b""
        out = self._close()
        self._index += 1
        self._open = kind
        return out + _event("content_block_start", {"index": self._index, "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._index})

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": index, "delta": delta})


# ---------------------------------------------------------------------------------------------
# Errors


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    return _error_of(parse_json(body) or {}, status)


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    body = {"type": "error", "error": {"type": _ERROR_TYPE_OF_KIND[error.kind], "message": error.message}}
    return error.status, {"content-type": "application/json"}, encode_json(body)


# ---------------------------------------------------------------------------------------------
# Claude on Bedrock's InvokeModel: the Messages call as it is, in Bedrock's envelope


def betas_of_header(value: str | None) -> list[str]:
    """The betas an `anthropic-beta` header names (comma-separated)."""
    return [b.strip() for b in (value or "").split(",") if b.strip()]


def bedrock_invoke_body(body: dict[str, Any], betas: list[str]) -> dict[str, Any]:
    """A Messages call as InvokeModel takes it: the model is in the path and streaming in the
    operation, the API version and betas in the body."""
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    given = out.get("anthropic_beta")
    merged = [*(given if isinstance(given, list) else []), *betas]
    if merged:
        out["anthropic_beta"] = list(dict.fromkeys(merged))
    return out


class InvokeStreamUnwrapper:
    """InvokeModelWithResponseStream's AWS event stream → the Messages stream inside it: each
    `chunk` frame carries one Anthropic stream event, base64-encoded; an exception frame becomes
    an Anthropic `error` event."""

    def __init__(self) -> None:
        self._framer = EventStreamFramer()
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self.error is not None:
            return b""
        out = []
        for frame in self._framer.feed(chunk):
            out.append(self._unwrap(frame))
            if self.error is not None:
                break
        self.error = self.error or self._framer.error
        return b"".join(out)

    def flush(self) -> bytes:
        """The stream ended: every frame was whole, so nothing is held."""
        return b""

    def _unwrap(self, frame: EventStreamFrame) -> bytes:
        kind = frame.headers.get(":message-type")
        if kind == "event":
            return self._chunk(frame) if frame.headers.get(":event-type") == "chunk" else b""
        if kind in ("exception", "error"):
            name = frame.headers.get(":exception-type") or frame.headers.get(":error-code")
            name = name if isinstance(name, str) else "unknown"
            message = fields.str_or_none((parse_json(frame.payload) or {}).get("message"))
            message = message or fields.str_or_none(frame.headers.get(":error-message")) or f"Bedrock: {name}"
            error = {"type": _ERROR_TYPE_OF_BEDROCK_EXCEPTION.get(name, "api_error"), "message": message}
            return _event("error", {"error": error})
        return b""

    def _chunk(self, frame: EventStreamFrame) -> bytes:
        encoded = (parse_json(frame.payload) or {}).get("bytes")
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        data = parse_json(raw)
        if data is None:
            self.error = "a Bedrock chunk does not hold a JSON event"
            return b""
        if b"\n" in raw or b"\r" in raw:
            raw = encode_json(data)  # an SSE data line holds no line break
        return chat.sse(raw.strip(), fields.str_or_none(data.get("type")) or "message")


# ---------------------------------------------------------------------------------------------
# The format


ANTHROPIC_MESSAGES = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=MessagesStreamReader,
    stream_writer=MessagesStreamWriter,
    read_error=read_error,
    write_error=write_error,
)
