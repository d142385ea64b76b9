"""OpenAI's Chat Completions (POST /v1/chat/completions), the format of OpenAI's SDKs and of most
providers' OpenAI-compatible endpoints, read into and written out of the common chat model.

Requests are read exactly: every field, message key and content-part type is in one of the tables
below, as translated, dropped (named in `ChatRequest.dropped`) or refused (`Untranslatable`); what is
in none of them is refused too. Answers, streams and errors from an upstream are read leniently."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from ..json_codec import encode_json, parse_json
from ..streams import SSEFramer, parse_sse_block
from ..usage import Usage
from . import fields, formats
from .chat import (
    STATUS_OF_KIND,
    ChatError,
    ChatFormat,
    ChatRequest,
    ChatResponse,
    Choice,
    Effort,
    ErrorKind,
    Failed,
    Finished,
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
    answer_id,
    effort_of_budget,
    kind_of_status,
    sniffed_media_type,
    sse,
)

__all__ = ["OPENAI_CHAT", "REQUEST_FIELDS"]

NAME = formats.OPENAI_CHAT

Fate = Literal["translated", "dropped", "refused"]

# What becomes of each request field: the docs list this table. A null value counts as absent.
REQUEST_FIELDS: dict[str, Fate] = {
    "model": "translated",
    "messages": "translated",
    "tools": "translated",  # function tools only
    "tool_choice": "translated",
    "parallel_tool_calls": "translated",
    "max_tokens": "translated",
    "max_completion_tokens": "translated",
    "temperature": "translated",
    "top_p": "translated",
    "stop": "translated",
    "n": "translated",
    "seed": "translated",
    "presence_penalty": "translated",
    "frequency_penalty": "translated",
    "logprobs": "translated",
    "top_logprobs": "translated",
    "response_format": "translated",
    "reasoning_effort": "translated",  # "none" as thinking_budget 0; "xhigh" and "max" as "high"
    "stream": "translated",
    "stream_options": "translated",  # include_usage; include_obfuscation dropped
    "user": "translated",
    "safety_identifier": "translated",  # as user
    "modalities": "refused",  # but ["text"], which every answer is anyway
    # Their loss does not change what the answer says.
    "logit_bias": "dropped",
    "store": "dropped",
    "metadata": "dropped",
    "service_tier": "dropped",
    "prediction": "dropped",
    "verbosity": "dropped",
    "prompt_cache_key": "dropped",
    "prompt_cache_retention": "dropped",
    "prompt_cache_options": "dropped",
    "moderation": "refused",  # a blocking policy changes the answer
    "audio": "refused",
    "web_search_options": "refused",
    "functions": "refused",  # the legacy form of tools
    "function_call": "refused",
}

# A message's keys by its role; the legacy `function` role is none of them, so refused.
MESSAGE_FIELDS: dict[str, dict[str, Fate]] = {
    "system": {"role": "translated", "content": "translated", "name": "dropped"},
    "developer": {"role": "translated", "content": "translated", "name": "dropped"},
    "user": {"role": "translated", "content": "translated", "name": "dropped"},
    "assistant": {
        "role": "translated",
        "content": "translated",
        "tool_calls": "translated",
        "refusal": "translated",  # as text
        "reasoning_content": "translated",  # not OpenAI's; compatible endpoints' (DeepSeek, vLLM)
        "name": "dropped",
        "audio": "refused",
        "function_call": "refused",
    },
    "tool": {"role": "translated", "content": "translated", "tool_call_id": "translated"},
}

# Content parts by type, and each type's keys. Cache breakpoints (OpenAI's `prompt_cache_breakpoint`,
# the `cache_control` marks compatible endpoints that front Anthropic take) only steer caching.
_CACHE_MARKS: dict[str, Fate] = {"prompt_cache_breakpoint": "dropped", "cache_control": "dropped"}
PART_FIELDS: dict[str, dict[str, Fate]] = {
    "text": {"type": "translated", "text": "translated", **_CACHE_MARKS},
    "image_url": {"type": "translated", "image_url": "translated", **_CACHE_MARKS},
    "refusal": {"type": "translated", "refusal": "translated"},  # an assistant's, as text
}
REFUSED_PART_TYPES = ("input_audio", "file")
IMAGE_URL_FIELDS: dict[str, Fate] = {"url": "translated", "detail": "dropped"}
TOOL_FIELDS: dict[str, Fate] = {"type": "translated", "function": "translated"}
FUNCTION_FIELDS: dict[str, Fate] = {
    "name": "translated",
    "description": "translated",
    "parameters": "translated",
    "strict": "translated",
}
TOOL_CALL_FIELDS: dict[str, Fate] = {"id": "translated", "type": "translated", "function": "translated"}
CALLED_FUNCTION_FIELDS: dict[str, Fate] = {"name": "translated", "arguments": "translated"}
JSON_SCHEMA_FIELDS: dict[str, Fate] = {
    "name": "translated",
    "schema": "translated",
    "strict": "translated",
    "description": "dropped",
}
STREAM_OPTIONS_FIELDS: dict[str, Fate] = {"include_usage": "translated", "include_obfuscation": "dropped"}

EFFORTS: tuple[Effort, ...] = ("minimal", "low", "medium", "high")

FINISH_OF_OPENAI: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
OPENAI_OF_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "other": "stop",  # the SDK's finish_reason has no other value
}

# Each error kind as OpenAI says it: the error's type and code.
ERROR_OF_KIND: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("not_found_error", None),
    "too_large": ("invalid_request_error", None),
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "server": ("server_error", None),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("timeout", None),
}
# Codes first (they say the most), then types; OpenAI's and compatible endpoints'.
KIND_OF_CODE: dict[str, ErrorKind] = {
    "invalid_api_key": "authentication",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "model_not_found": "not_found",
    "overloaded": "overloaded",
    "timeout": "timeout",
    "context_length_exceeded": "invalid_request",
}
KIND_OF_TYPE: dict[str, ErrorKind] = {
    "authentication_error": "authentication",
    "permission_error": "permission",
    "permission_denied": "permission",
    "not_found_error": "not_found",
    "requests": "rate_limit",
    "tokens": "rate_limit",
    "rate_limit_error": "rate_limit",
    "insufficient_quota": "rate_limit",
    "overloaded_error": "overloaded",
    "timeout": "timeout",
    "timeout_error": "timeout",
    "request_too_large": "too_large",
}
# Types so broad that the status says more (a 404 of type invalid_request_error is a not_found).
_BROAD_TYPES = ("invalid_request_error", "server_error", "api_error")

# ---------------------------------------------------------------------------------------------
# Reading a request


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_fields(obj: Mapping[str, Any], table: Mapping[str, Fate], where: str, request: ChatRequest) -> None:
    for key, value in obj.items():
        fate = table.get(key)
        if fate is None:
            raise Untranslatable(f"{_at(where, key)} cannot be translated: the field is unknown")
        if value is None or fate == "translated":
            continue
        if fate == "dropped":
            fields.drop(request.dropped, _at(where, key))
        else:
            raise Untranslatable(f"{_at(where, key)} cannot be translated")


def _part_type(part: Any, where: str, allowed: tuple[str, ...], request: ChatRequest) -> str:
    """A content part's type, its keys checked; refused when not among `allowed`."""
    part = fields.obj(part, where)
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in allowed or kind in REFUSED_PART_TYPES:
        raise Untranslatable(f"{where}.type {kind!r} cannot be translated")
    _check_fields(part, PART_FIELDS[kind], where, request)
    return kind


def _read_texts(content: Any, where: str, request: ChatRequest) -> list[Text]:
    """A system, developer or tool message's content: a string or text parts."""
    if isinstance(content, str):
        return [Text(content)]
    texts = []
    for j, part in enumerate(fields.array(content, where)):
        _part_type(part, f"{where}[{j}]", ("text",), request)
        texts.append(Text(fields.string(part.get("text"), f"{where}[{j}].text")))
    return texts


def _read_image(image_url: Any, where: str, request: ChatRequest) -> Image:
    image_url = fields.obj(image_url, where)
    _check_fields(image_url, IMAGE_URL_FIELDS, where, request)
    url = fields.string(image_url.get("url"), f"{where}.url")
    if url.startswith("data:"):
        head, comma, data = url[5:].partition(",")
        media_type, *options = head.split(";")
        if not comma or "base64" not in options:
            raise Untranslatable(f"{where}.url: a data URL that is not base64 cannot be translated")
        return Image(media_type=media_type or None, data=data)
    if url.startswith(("https://", "http://")):
        return Image(url=url)
    raise Untranslatable(f"{where}.url: only http(s) and base64 data URLs can be translated")


def _read_user_content(content: Any, where: str, request: ChatRequest) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for j, part in enumerate(fields.array(content, where)):
        at = f"{where}[{j}]"
        if _part_type(part, at, ("text", "image_url"), request) == "text":
            parts.append(Text(fields.string(part.get("text"), f"{at}.text")))
        else:
            parts.append(_read_image(part.get("image_url"), f"{at}.image_url", request))
    return parts


def _read_tool_calls(value: Any, where: str, request: ChatRequest) -> list[ToolCall]:
    calls = []
    for j, item in enumerate(fields.array(value, where)):
        at = f"{where}[{j}]"
        call = fields.obj(item, at)
        if call.get("type") != "function":
            raise Untranslatable(f"{at}.type {call.get('type')!r} cannot be translated")
        _check_fields(call, TOOL_CALL_FIELDS, at, request)
        function = fields.obj(call.get("function"), f"{at}.function")
        _check_fields(function, CALLED_FUNCTION_FIELDS, f"{at}.function", request)
        calls.append(
            ToolCall(
                id=fields.string(call.get("id"), f"{at}.id"),
                name=fields.string(function.get("name"), f"{at}.function.name"),
                arguments=fields.string(function.get("arguments"), f"{at}.function.arguments"),
            )
        )
    return calls


def _read_assistant(raw: dict[str, Any], where: str, request: ChatRequest) -> list[Part]:
    parts: list[Part] = []
    reasoning = fields.optional_string(raw.get("reasoning_content"), f"{where}.reasoning_content")
    if reasoning:
        parts.append(Thinking(reasoning))
    content = raw.get("content")
    if isinstance(content, str):
        if content:  # compatible endpoints send "" beside tool calls
            parts.append(Text(content))
    elif content is not None:
        for j, part in enumerate(fields.array(content, f"{where}.content")):
            at = f"{where}.content[{j}]"
            kind = _part_type(part, at, ("text", "refusal"), request)
            parts.append(Text(fields.string(part.get(kind), f"{at}.{kind}")))
    refusal = fields.optional_string(raw.get("refusal"), f"{where}.refusal")
    if refusal:
        parts.append(Text(refusal))
    if raw.get("tool_calls") is not None:
        parts.extend(_read_tool_calls(raw["tool_calls"], f"{where}.tool_calls", request))
    return parts


def _read_tool_result(raw: dict[str, Any], where: str, request: ChatRequest) -> ToolResult:
    call_id = fields.string(raw.get("tool_call_id"), f"{where}.tool_call_id")
    texts = _read_texts(raw.get("content"), f"{where}.content", request)
    content: list[Text | Image] = [] if texts == [Text("")] else list(texts)  # "": the tool returned nothing
    return ToolResult(id=call_id, name=None, content=content)


def _read_messages(value: Any, request: ChatRequest) -> None:
    """System and developer messages hoisted to `request.system` in order; consecutive tool
    messages as one user message of tool results."""
    tool_turn: Message | None = None
    for i, item in enumerate(fields.array(value, "messages")):
        where = f"messages[{i}]"
        raw = fields.obj(item, where)
        role = raw.get("role")
        table = MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
        if table is None:
            raise Untranslatable(f"{where}.role {role!r} cannot be translated")
        _check_fields(raw, table, where, request)
        if role == "tool":
            if tool_turn is None:
                tool_turn = Message("user", [])
                request.messages.append(tool_turn)
            tool_turn.parts.append(_read_tool_result(raw, where, request))
            continue
        tool_turn = None
        if role in ("system", "developer"):
            request.system.extend(_read_texts(raw.get("content"), f"{where}.content", request))
        elif role == "user":
            request.messages.append(
                Message("user", _read_user_content(raw.get("content"), f"{where}.content", request))
            )
        else:
            request.messages.append(Message("assistant", _read_assistant(raw, where, request)))


def _read_tools(value: Any, request: ChatRequest) -> list[Tool]:
    tools = []
    for i, item in enumerate(fields.array(value, "tools")):
        where = f"tools[{i}]"
        tool = fields.obj(item, where)
        if tool.get("type") != "function":
            raise Untranslatable(f"{where}.type {tool.get('type')!r} cannot be translated")
        _check_fields(tool, TOOL_FIELDS, where, request)
        function = fields.obj(tool.get("function"), f"{where}.function")
        _check_fields(function, FUNCTION_FIELDS, f"{where}.function", request)
        parameters = function.get("parameters")
        tools.append(
            Tool(
                name=fields.string(function.get("name"), f"{where}.function.name"),
                description=fields.optional_string(function.get("description"), f"{where}.function.description"),
                parameters=None if parameters is None else fields.obj(parameters, f"{where}.function.parameters"),
                strict=fields.optional_bool(function.get("strict"), f"{where}.function.strict"),
            )
        )
    return tools


def _read_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function" and set(value) == {"type", "function"}:
        function = fields.obj(value["function"], "tool_choice.function")
        if set(function) != {"name"}:
            raise Untranslatable("tool_choice.function may hold only a name")
        return ToolChoice("tool", fields.string(function["name"], "tool_choice.function.name"))
    raise Untranslatable("tool_choice cannot be translated: only auto, none, required or one function")


def _read_output(value: Any, request: ChatRequest) -> OutputFormat | None:
    if value is None:
        return None
    value = fields.obj(value, "response_format")
    kind = value.get("type")
    if kind in ("text", "json_object") and set(value) == {"type"}:
        return OutputFormat("text" if kind == "text" else "json")
    if kind == "json_schema" and set(value) == {"type", "json_schema"}:
        spec = fields.obj(value["json_schema"], "response_format.json_schema")
        _check_fields(spec, JSON_SCHEMA_FIELDS, "response_format.json_schema", request)
        schema = spec.get("schema")
        return OutputFormat(
            "json_schema",
            schema=None if schema is None else fields.obj(schema, "response_format.json_schema.schema"),
            name=fields.optional_string(spec.get("name"), "response_format.json_schema.name"),
            strict=fields.optional_bool(spec.get("strict"), "response_format.json_schema.strict"),
        )
    raise Untranslatable(f"response_format.type {kind!r} cannot be translated")


def _read_effort(value: Any, request: ChatRequest) -> None:
    if value is None:
        return
    if value == "none":  # newer models' "no reasoning"
        request.thinking_budget = 0
    elif value in EFFORTS:
        request.reasoning_effort = value
    elif value in ("xhigh", "max"):  # beyond the model's efforts: the most it has
        request.reasoning_effort = "high"
        fields.drop(request.dropped, f"reasoning_effort {value!r} (read as 'high')")
    else:
        raise Untranslatable(f"reasoning_effort {value!r} cannot be translated")


def _read_max_tokens(body: dict[str, Any]) -> int | None:
    legacy = fields.optional_integer(body.get("max_tokens"), "max_tokens", whole_floats=True)
    current = fields.optional_integer(body.get("max_completion_tokens"), "max_completion_tokens", whole_floats=True)
    if legacy is not None and current is not None and legacy != current:
        raise Untranslatable("max_completion_tokens disagrees with max_tokens")
    return current if current is not None else legacy


def _read_stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [fields.string(s, f"stop[{i}]") for i, s in enumerate(fields.array(value, "stop"))]


def _read_stream_usage(value: Any, request: ChatRequest) -> bool:
    if value is None:
        return False
    options = fields.obj(value, "stream_options")
    _check_fields(options, STREAM_OPTIONS_FIELDS, "stream_options", request)
    return fields.optional_bool(options.get("include_usage"), "stream_options.include_usage") is True


def read_request(body: dict[str, Any]) -> ChatRequest:
    request = ChatRequest(model=None, messages=[])
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise Untranslatable("modalities cannot be translated: only ['text']")
    _check_fields({k: v for k, v in body.items() if k != "modalities"}, REQUEST_FIELDS, "", request)
    request.model = fields.optional_string(body.get("model"), "model")
    _read_messages(body.get("messages"), request)
    if body.get("tools") is not None:
        request.tools = _read_tools(body["tools"], request)
    request.tool_choice = _read_tool_choice(body.get("tool_choice"))
    request.parallel_tool_calls = fields.optional_bool(body.get("parallel_tool_calls"), "parallel_tool_calls")
    request.max_tokens = _read_max_tokens(body)
    request.temperature = fields.optional_number(body.get("temperature"), "temperature")
    request.top_p = fields.optional_number(body.get("top_p"), "top_p")
    request.stop = _read_stop(body.get("stop"))
    request.n = fields.optional_integer(body.get("n"), "n", whole_floats=True)
    request.seed = fields.optional_integer(body.get("seed"), "seed", whole_floats=True)
    request.presence_penalty = fields.optional_number(body.get("presence_penalty"), "presence_penalty")
    request.frequency_penalty = fields.optional_number(body.get("frequency_penalty"), "frequency_penalty")
    request.logprobs = fields.optional_bool(body.get("logprobs"), "logprobs")
    request.top_logprobs = fields.optional_integer(body.get("top_logprobs"), "top_logprobs", whole_floats=True)
    request.output = _read_output(body.get("response_format"), request)
    _read_effort(body.get("reasoning_effort"), request)
    request.stream = fields.optional_bool(body.get("stream"), "stream") is True
    request.stream_usage = _read_stream_usage(body.get("stream_options"), request)
    user = fields.optional_string(body.get("user"), "user")
    request.user = fields.optional_string(body.get("safety_identifier"), "safety_identifier") or user
    return request


# ---------------------------------------------------------------------------------------------
# Writing a request


def _media_type(image: Image) -> str:
    """A data URL needs a media type: the image's own, else its bytes' signature says it."""
    if image.media_type and image.media_type != "image/*":
        return image.media_type
    return sniffed_media_type(image.data or "") or "image/png"


def _image_url(image: Image, where: str) -> str:
    if image.data is not None:
        return f"data:{_media_type(image)};base64,{image.data}"
    if image.url is not None and image.url.startswith(("https://", "http://", "data:")):
        return image.url
    raise Untranslatable(f"{where}: an image by reference other than an http(s) URL cannot be translated")


def _texts_content(texts: list[Text]) -> str | list[dict[str, Any]]:
    """One text as a plain string (as most callers send it), several as text parts."""
    if len(texts) == 1:
        return texts[0].text
    if not texts:
        return ""
    return [{"type": "text", "text": t.text} for t in texts]


def _write_tool_result(result: ToolResult, where: str, request: ChatRequest) -> dict[str, Any]:
    texts = []
    for part in result.content:
        if not isinstance(part, Text):
            raise Untranslatable(f"{where}: an image in a tool result cannot be translated")
        texts.append(part)
    if result.is_error:
        fields.drop(request.dropped, "is_error")
    return {"role": "tool", "tool_call_id": result.id, "content": _texts_content(texts)}


def _write_user(message: Message, where: str, request: ChatRequest) -> list[dict[str, Any]]:
    """Tool results as tool messages (which must follow the assistant's calls), then the rest."""
    out = []
    content: list[Text | Image] = []
    for j, part in enumerate(message.parts):
        at = f"{where}.parts[{j}]"
        if isinstance(part, ToolResult):
            out.append(_write_tool_result(part, at, request))
        elif isinstance(part, Text | Image):
            content.append(part)
        else:
            raise Untranslatable(f"{at}: a {type(part).__name__} in a user message cannot be translated")
    if content or not out:
        out.append({"role": "user", "content": _user_content(content, where)})
    return out


def _user_content(parts: list[Text | Image], where: str) -> str | list[dict[str, Any]]:
    if all(isinstance(p, Text) for p in parts):
        return _texts_content([p for p in parts if isinstance(p, Text)])
    return [
        {"type": "text", "text": p.text}
        if isinstance(p, Text)
        else {"type": "image_url", "image_url": {"url": _image_url(p, f"{where}.parts[{j}]")}}
        for j, p in enumerate(parts)
    ]


def _write_assistant(message: Message, where: str, request: ChatRequest) -> dict[str, Any]:
    texts: list[Text] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        if isinstance(part, Text):
            texts.append(part)
        elif isinstance(part, ToolCall):
            calls.append(_tool_call_body(part))
        elif isinstance(part, Thinking):
            fields.drop(request.dropped, "reasoning in history")  # Chat Completions cannot carry it back
        else:
            raise Untranslatable(f"{where}.parts[{j}]: a {type(part).__name__} from the assistant cannot be translated")
    body: dict[str, Any] = {"role": "assistant", "content": _texts_content(texts) if texts or not calls else None}
    if calls:
        body["tool_calls"] = calls
    return body


def _tool_call_body(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _tool_body(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice_body(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return choice.mode


def _output_body(output: OutputFormat) -> dict[str, Any]:
    if output.kind == "text":
        return {"type": "text"}
    if output.kind == "json":
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": output.name or "response"}  # OpenAI requires a name
    if output.schema is not None:
        spec["schema"] = output.schema
    if output.strict is not None:
        spec["strict"] = output.strict
    return {"type": "json_schema", "json_schema": spec}


def _write_reasoning(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
        if request.thinking_budget is not None:
            fields.drop(request.dropped, "thinking_budget")
    elif request.thinking_budget == 0:
        body["reasoning_effort"] = "none"  # newer models' "no reasoning", as read
    elif request.thinking_budget is not None:
        body["reasoning_effort"] = effort_of_budget(request.thinking_budget)
    if request.include_thoughts:
        fields.drop(request.dropped, "include_thoughts")


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {}
    if request.model is not None:
        body["model"] = request.model
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _texts_content(request.system)})
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        if message.role == "user":
            messages.extend(_write_user(message, where, request))
        else:
            messages.append(_write_assistant(message, where, request))
    body["messages"] = messages
    if request.tools:
        body["tools"] = [_tool_body(t) for t in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice_body(request.tool_choice)
    optional = {
        "parallel_tool_calls": request.parallel_tool_calls,
        "max_completion_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop or None,
        "n": request.n,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "response_format": None if request.output is None else _output_body(request.output),
        "user": request.user,
    }
    body.update((k, v) for k, v in optional.items() if v is not None)
    _write_reasoning(request, body)
    if request.top_k is not None:
        fields.drop(request.dropped, "top_k")  # OpenAI has none
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # Tollgate needs the usage whatever the caller asked
    return body, {}


# ---------------------------------------------------------------------------------------------
# Answers


def _get(data: Any, outer: str, inner: str) -> Any:
    value = data.get(outer) if isinstance(data, dict) else None
    return value.get(inner) if isinstance(value, dict) else None


def _read_usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=fields.int_or_none(raw.get("prompt_tokens")),
        output_tokens=fields.int_or_none(raw.get("completion_tokens")),
        cached_tokens=fields.int_or_none(_get(raw, "prompt_tokens_details", "cached_tokens")),
        cache_write_tokens=fields.int_or_none(_get(raw, "prompt_tokens_details", "cache_write_tokens")),
        reasoning_tokens=fields.int_or_none(_get(raw, "completion_tokens_details", "reasoning_tokens")),
    )


def _usage_body(usage: Usage) -> dict[str, Any] | None:
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


def _read_finish(value: Any, has_tool_calls: bool) -> FinishReason | None:
    if not isinstance(value, str):
        return None
    finish = FINISH_OF_OPENAI.get(value, "other")
    # Some compatible endpoints end a turn of tool calls with "stop".
    return "tool_calls" if finish == "stop" and has_tool_calls else finish


def _reasoning_of(message: dict[str, Any]) -> str | None:
    """Reasoning text as compatible endpoints show it: `reasoning_content` (DeepSeek, vLLM) or
    `reasoning` (OpenRouter, Ollama)."""
    reasoning = message.get("reasoning_content")
    if not isinstance(reasoning, str):
        reasoning = message.get("reasoning")
    return reasoning if isinstance(reasoning, str) and reasoning else None


def _read_message_parts(message: dict[str, Any]) -> list[Part]:
    parts: list[Part] = []
    reasoning = _reasoning_of(message)
    if reasoning:
        parts.append(Thinking(reasoning))
    for key in ("content", "refusal"):
        text = message.get(key)
        if isinstance(text, list):  # some compatible endpoints answer in text parts
            text = "".join(p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
        if isinstance(text, str) and text:
            parts.append(Text(text))
    calls = message.get("tool_calls")
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = fields.str_or_none(call.get("id")) or f"call_{position}"
        parts.append(
            ToolCall(
                call_id,
                fields.str_or_none(function.get("name")) or "",
                fields.str_or_none(function.get("arguments")) or "",
            )
        )
    return parts


def _read_choice(raw: dict[str, Any], position: int) -> Choice:
    message = raw.get("message")
    parts = _read_message_parts(message) if isinstance(message, dict) else []
    index = fields.int_or_none(raw.get("index"))
    has_calls = any(isinstance(p, ToolCall) for p in parts)
    return Choice(
        index=position if index is None else index,
        parts=parts,
        finish=_read_finish(raw.get("finish_reason"), has_calls),
    )


def read_response(body: dict[str, Any]) -> ChatResponse:
    choices = body.get("choices")
    usage = body.get("usage")
    return ChatResponse(
        id=fields.str_or_none(body.get("id")),
        model=fields.str_or_none(body.get("model")),
        choices=[
            _read_choice(c, i)
            for i, c in enumerate(choices if isinstance(choices, list) else [])
            if isinstance(c, dict)
        ],
        usage=_read_usage(usage) if isinstance(usage, dict) else Usage(),
        created=fields.int_or_none(body.get("created")),
    )


def _message_body(parts: list[Part]) -> dict[str, Any]:
    texts = [p.text for p in parts if isinstance(p, Text)]
    reasoning = "".join(p.text for p in parts if isinstance(p, Thinking))
    calls = [_tool_call_body(p) for p in parts if isinstance(p, ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning  # as compatible endpoints show reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def write_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": answer_id("chatcmpl-", response.id),
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
    usage = _usage_body(response.usage)
    if usage is not None:
        body["usage"] = usage
    return body


# ---------------------------------------------------------------------------------------------
# Errors


def _error_of(error: Any, status: int | None) -> ChatError:
    """An error object (`{"message", "type", "code"}`) as a ChatError; a status from the HTTP answer,
    else the object's numeric code (compatible endpoints put it there), else the kind's."""
    given = error if isinstance(error, dict) else {}
    code, kind_name = given.get("code"), given.get("type")
    if status is None and type(code) is int and 400 <= code < 600:
        status = code
    kind: ErrorKind | None = KIND_OF_CODE.get(code) if isinstance(code, str) else None
    if kind is None and isinstance(kind_name, str) and kind_name not in _BROAD_TYPES:
        kind = KIND_OF_TYPE.get(kind_name)
    if kind is None:
        if status is not None:
            kind = kind_of_status(status)
        else:
            kind = "invalid_request" if kind_name == "invalid_request_error" else "server"
    message = fields.str_or_none(given.get("message")) or fields.str_or_none(error)
    if status is None:
        status = STATUS_OF_KIND[kind]
    return ChatError(status=status, kind=kind, message=message or f"the upstream answered HTTP {status}")


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    data = parse_json(body)
    if data is None:
        return ChatError(status=status, kind=kind_of_status(status), message=f"the upstream answered HTTP {status}")
    return _error_of(data.get("error", data), status)


def _error_body(error: ChatError) -> dict[str, Any]:
    kind, code = ERROR_OF_KIND.get(error.kind, ("server_error", None))
    return {"error": {"message": error.message, "type": kind, "param": None, "code": code}}


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    return error.status, {"content-type": "application/json"}, encode_json(_error_body(error))


# ---------------------------------------------------------------------------------------------
# Streams


class ChatStreamReader:
    """Chat completion chunks (`data: {...}` events, `data: [DONE]` last) as stream events."""

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self.error: str | None = None
        self._started = False
        self._done = False
        self._calls: dict[int, dict[int, str]] = {}  # each choice's started tool calls: index → id
        self._last_call: dict[int, int] = {}  # each choice's latest call, for entries without index

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self.error is not None:
            return []
        events: list[StreamEvent] = []
        for block in self._framer.feed(chunk):
            try:
                events.extend(self._read_block(block))
            except Exception as e:  # an upstream's odd chunk must stop the reading, never the proxy
                self.error = f"unreadable stream chunk: {type(e).__name__}"
            if self.error is not None:
                return events
        if self._framer.error is not None:
            self.error = self._framer.error
        return events

    def end(self) -> list[StreamEvent]:
        return self.feed(b"\n\n")  # completes a last event that lacked its blank line

    def _read_block(self, block: bytes) -> list[StreamEvent]:
        event = parse_sse_block(block)
        if event is None or self._done:
            return []
        if event.data.strip() == "[DONE]":
            self._done = True
            return []
        data = parse_json(event.data.encode())
        if data is None:
            self.error = "a stream chunk is not a JSON object"
            return []
        if data.get("error") is not None or event.event == "error":
            return [Failed(_error_of(data.get("error", data), None))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            created = fields.int_or_none(data.get("created"))
            events.append(Started(fields.str_or_none(data.get("id")), fields.str_or_none(data.get("model")), created))
        choices = data.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                events.extend(self._read_choice(choice))
        usage = data.get("usage")
        if isinstance(usage, dict):
            events.append(UsageReported(_read_usage(usage)))
        return events

    def _read_choice(self, choice: dict[str, Any]) -> list[StreamEvent]:
        index = fields.int_or_none(choice.get("index")) or 0
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        events: list[StreamEvent] = []
        reasoning = _reasoning_of(delta)
        if reasoning:
            events.append(ThinkingDelta(reasoning, choice=index))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.append(TextDelta(text, choice=index))
        entries = delta.get("tool_calls")
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                events.extend(self._read_tool_call(entry, index))
        finish = _read_finish(choice.get("finish_reason"), bool(self._calls.get(index)))
        if finish is not None:
            events.append(Finished(finish, choice=index))
        return events

    def _read_tool_call(self, entry: dict[str, Any], choice: int) -> list[StreamEvent]:
        """An entry with an id (or, from some compatible endpoints, only a name) starts a call;
        its arguments, and those of entries naming only the index, continue it."""
        calls = self._calls.setdefault(choice, {})
        function = entry.get("function")
        function = function if isinstance(function, dict) else {}
        call_id, name = fields.str_or_none(entry.get("id")), fields.str_or_none(function.get("name"))
        index = fields.int_or_none(entry.get("index"))
        if index is None:
            known = [i for i, known_id in calls.items() if known_id == call_id]
            index = known[0] if known else len(calls) if call_id or name else self._last_call.get(choice)
        if index is None:
            return []
        events: list[StreamEvent] = []
        if index not in calls:
            if not (call_id or name):
                return []  # arguments of a call never started
            calls[index] = call_id or f"call_{choice}_{index}"
            events.append(ToolCallStarted(index, calls[index], name or "", choice=choice))
        self._last_call[choice] = index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index, arguments, choice=choice))
        return events


class ChatStreamWriter:
    """Stream events as chat completion chunks, each written as it comes."""

    content_type = "text/event-stream"

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._head: dict[str, Any] | None = None  # id, object, created, model: the same in every chunk
        self._opened: set[int] = set()  # choices whose role went out
        self._usage = Usage()
        self._usage_known = False
        self._closed = False

    def write(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, Started):
            self._start(event)
            return b""
        if isinstance(event, TextDelta):
            return self._delta(event.choice, {"content": event.text}) if event.text else b""
        if isinstance(event, ThinkingDelta):
            return self._delta(event.choice, {"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, ToolCallStarted):
            call = {"index": event.index, "id": event.id, "type": "function"}
            call["function"] = {"name": event.name, "arguments": ""}
            return self._delta(event.choice, {"tool_calls": [call]})
        if isinstance(event, ToolCallDelta):
            entry = {"index": event.index, "function": {"arguments": event.arguments}}
            return self._delta(event.choice, {"tool_calls": [entry]})
        if isinstance(event, Finished):
            return self._delta(event.choice, {}, OPENAI_OF_FINISH[event.reason])
        if isinstance(event, UsageReported):
            self._usage.update(event.usage)
            self._usage_known = True
            return b""
        self._closed = True  # Failed: OpenAI's SDK raises on the error; nothing follows it
        return sse(encode_json(_error_body(event.error)))

    def end(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        usage = _usage_body(self._usage) if self._usage_known else None
        head = b""
        if self._request.stream_usage and usage is not None:
            head = self._chunk([], usage)
        return head + b"data: [DONE]\n\n"

    def _start(self, event: Started) -> None:
        if self._head is not None:
            return
        created = event.created if event.created is not None else int(time.time())
        model = event.model or self._request.model or ""
        self._head = {
            "id": answer_id("chatcmpl-", event.id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

    def _delta(self, choice: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if choice not in self._opened:
            self._opened.add(choice)
            delta = {"role": "assistant", **delta}
        return self._chunk([{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        if self._head is None:
            self._start(Started())
        assert self._head is not None
        chunk = {**self._head, "choices": choices}
        if self._request.stream_usage:
            chunk["usage"] = usage  # null but in the last chunk, as OpenAI writes it
        return sse(encode_json(chunk))


# ---------------------------------------------------------------------------------------------


OPENAI_CHAT = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=ChatStreamReader,
    stream_writer=ChatStreamWriter,
    read_error=read_error,
    write_error=write_error,
)
