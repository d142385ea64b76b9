"""Reading a Chat Completions request: exactly, into the common chat model (every field, message key
and content-part type is in one of `fields.py`'s tables, as translated, dropped or refused; what is in
none of them is refused too), and the facts the policy and the limits are given at classification."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bodies.exact import count, largest, request_count, request_flag, request_int, request_text
from tollgate.formats.openai_chat.fields import (
    CALLED_FUNCTION_FIELDS,
    EFFORTS,
    FUNCTION_FIELDS,
    IMAGE_URL_FIELDS,
    JSON_SCHEMA_FIELDS,
    MESSAGE_FIELDS,
    PART_FIELDS,
    REFUSED_PART_TYPES,
    REQUEST_FIELDS,
    STREAM_OPTIONS_FIELDS,
    TOOL_CALL_FIELDS,
    TOOL_FIELDS,
    Fate,
)
from tollgate.formats.request_facts import RequestFacts

# ---------------------------------------------------------------------------------------------
# Facts, read at classification


def body_facts(data: dict[str, Any]) -> RequestFacts:
    """What every OpenAI-format body says alike: whether it streams, and the service tier it asks for."""
    return RequestFacts(
        stream=request_flag(data.get("stream"), "stream"),
        service_tier=request_text(data.get("service_tier"), "service_tier"),
    )


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A Chat Completions body's messages, system prompt, tools, output bound and answers."""
    messages = data.get("messages")
    facts.message_count = count(messages)
    facts.has_system = has_system_message(messages)
    # `functions` is the older form of tools; `web_search_options` (even `{}`) has a search
    # model search the web.
    facts.has_tools = bool(data.get("tools") or data.get("functions")) or data.get("web_search_options") is not None
    facts.max_tokens = largest(
        request_int(data.get("max_completion_tokens"), "max_completion_tokens"),
        request_int(data.get("max_tokens"), "max_tokens"),
    )
    facts.answers = request_count(data.get("n"), "n")


_SYSTEM_ROLES = ("system", "developer")  # compared, not hashed: a role may be any JSON value


def has_system_message(messages: Any) -> bool:
    """Whether a list of messages (Chat Completions' `messages`, the Responses API's `input`) holds
    a system or developer message."""
    if not isinstance(messages, list):
        return False
    return any(isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES for m in messages)


# ---------------------------------------------------------------------------------------------
# Reading a request


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_fields(obj: Mapping[str, Any], table: Mapping[str, Fate], where: str, request: chat.ChatRequest) -> None:
    for key, value in obj.items():
        fate = table.get(key)
        if fate is None:
            raise chat.Untranslatable(f"{_at(where, key)} cannot be translated: the field is unknown")
        if value is None or fate == "translated":
            continue
        if fate == "dropped":
            fields.drop(request.dropped, _at(where, key))
        else:
            raise chat.Untranslatable(f"{_at(where, key)} cannot be translated")


def _part_type(part: Any, where: str, allowed: tuple[str, ...], request: chat.ChatRequest) -> str:
    """A content part's type, its keys checked; refused when not among `allowed`."""
    part = fields.obj(part, where)
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in allowed or kind in REFUSED_PART_TYPES:
        raise chat.Untranslatable(f"{where}.type {kind!r} cannot be translated")
    _check_fields(part, PART_FIELDS[kind], where, request)
    return kind


def _read_texts(content: Any, where: str, request: chat.ChatRequest) -> list[chat.Text]:
    """A system, developer or tool message's content: a string or text parts."""
    if isinstance(content, str):
        return [chat.Text(content)]
    texts = []
    for j, part in enumerate(fields.array(content, where)):
        _part_type(part, f"{where}[{j}]", ("text",), request)
        texts.append(chat.Text(fields.string(part.get("text"), f"{where}[{j}].text")))
    return texts


def _read_image(image_url: Any, where: str, request: chat.ChatRequest) -> chat.Image:
    image_url = fields.obj(image_url, where)
    _check_fields(image_url, IMAGE_URL_FIELDS, where, request)
    url = fields.string(image_url.get("url"), f"{where}.url")
    if url.startswith("data:"):
        head, comma, data = url[5:].partition(",")
        media_type, *options = head.split(";")
        if not comma or "base64" not in options:
            raise chat.Untranslatable(f"{where}.url: a data URL that is not base64 cannot be translated")
        return chat.Image(media_type=media_type or None, data=data)
    if url.startswith(("https://", "http://")):
        return chat.Image(url=url)
    raise chat.Untranslatable(f"{where}.url: only http(s) and base64 data URLs can be translated")


def _read_user_content(content: Any, where: str, request: chat.ChatRequest) -> list[chat.Part]:
    if isinstance(content, str):
        return [chat.Text(content)]
    parts: list[chat.Part] = []
    for j, part in enumerate(fields.array(content, where)):
        at = f"{where}[{j}]"
        if _part_type(part, at, ("text", "image_url"), request) == "text":
            parts.append(chat.Text(fields.string(part.get("text"), f"{at}.text")))
        else:
            parts.append(_read_image(part.get("image_url"), f"{at}.image_url", request))
    return parts


def _function_item(
    item: Any, where: str, outer: Mapping[str, Fate], inner: Mapping[str, Fate], request: chat.ChatRequest
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `{"type": "function", "function": {...}}` item (a tool, a tool call), its fields checked
    against their tables: the item and its function."""
    obj = fields.obj(item, where)
    if obj.get("type") != "function":
        raise chat.Untranslatable(f"{where}.type {obj.get('type')!r} cannot be translated")
    _check_fields(obj, outer, where, request)
    function = fields.obj(obj.get("function"), f"{where}.function")
    _check_fields(function, inner, f"{where}.function", request)
    return obj, function


def _read_tool_calls(value: Any, where: str, request: chat.ChatRequest) -> list[chat.ToolCall]:
    calls = []
    for j, item in enumerate(fields.array(value, where)):
        at = f"{where}[{j}]"
        call, function = _function_item(item, at, TOOL_CALL_FIELDS, CALLED_FUNCTION_FIELDS, request)
        calls.append(
            chat.ToolCall(
                id=fields.string(call.get("id"), f"{at}.id"),
                name=fields.string(function.get("name"), f"{at}.function.name"),
                arguments=fields.string(function.get("arguments"), f"{at}.function.arguments"),
            )
        )
    return calls


def _read_assistant(raw: dict[str, Any], where: str, request: chat.ChatRequest) -> list[chat.Part]:
    parts: list[chat.Part] = []
    reasoning = fields.optional_string(raw.get("reasoning_content"), f"{where}.reasoning_content")
    if reasoning:
        parts.append(chat.Thinking(reasoning))
    content = raw.get("content")
    if isinstance(content, str):
        if content:  # compatible endpoints send "" beside tool calls
            parts.append(chat.Text(content))
    elif content is not None:
        for j, part in enumerate(fields.array(content, f"{where}.content")):
            at = f"{where}.content[{j}]"
            kind = _part_type(part, at, ("text", "refusal"), request)
            parts.append(chat.Text(fields.string(part.get(kind), f"{at}.{kind}")))
    refusal = fields.optional_string(raw.get("refusal"), f"{where}.refusal")
    if refusal:
        parts.append(chat.Text(refusal))
    if raw.get("tool_calls") is not None:
        parts.extend(_read_tool_calls(raw["tool_calls"], f"{where}.tool_calls", request))
    return parts


def _read_tool_result(raw: dict[str, Any], where: str, request: chat.ChatRequest) -> chat.ToolResult:
    call_id = fields.string(raw.get("tool_call_id"), f"{where}.tool_call_id")
    texts = _read_texts(raw.get("content"), f"{where}.content", request)
    content: list[chat.Text | chat.Image] = (
        [] if texts == [chat.Text("")] else list(texts)
    )  # "": the tool returned nothing
    return chat.ToolResult(id=call_id, name=None, content=content)


def _read_messages(value: Any, request: chat.ChatRequest) -> None:
    """System and developer messages hoisted to `request.system` in order; consecutive tool
    messages as one user message of tool results."""
    tool_turn: chat.Message | None = None
    for i, item in enumerate(fields.array(value, "messages")):
        where = f"messages[{i}]"
        raw = fields.obj(item, where)
        role = raw.get("role")
        table = MESSAGE_FIELDS.get(role) if isinstance(role, str) else None
        if table is None:
            raise chat.Untranslatable(f"{where}.role {role!r} cannot be translated")
        _check_fields(raw, table, where, request)
        if role == "tool":
            if tool_turn is None:
                tool_turn = chat.Message("user", [])
                request.messages.append(tool_turn)
            tool_turn.parts.append(_read_tool_result(raw, where, request))
            continue
        tool_turn = None
        if role in ("system", "developer"):
            request.system.extend(_read_texts(raw.get("content"), f"{where}.content", request))
        elif role == "user":
            request.messages.append(
                chat.Message("user", _read_user_content(raw.get("content"), f"{where}.content", request))
            )
        else:
            request.messages.append(chat.Message("assistant", _read_assistant(raw, where, request)))


def _read_tools(value: Any, request: chat.ChatRequest) -> list[chat.Tool]:
    tools = []
    for i, item in enumerate(fields.array(value, "tools")):
        where = f"tools[{i}]"
        _, function = _function_item(item, where, TOOL_FIELDS, FUNCTION_FIELDS, request)
        parameters = function.get("parameters")
        tools.append(
            chat.Tool(
                name=fields.string(function.get("name"), f"{where}.function.name"),
                description=fields.optional_string(function.get("description"), f"{where}.function.description"),
                parameters=None if parameters is None else fields.obj(parameters, f"{where}.function.parameters"),
                strict=fields.optional_bool(function.get("strict"), f"{where}.function.strict"),
            )
        )
    return tools


def _read_tool_choice(value: Any) -> chat.ToolChoice | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        return chat.ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function" and set(value) == {"type", "function"}:
        function = fields.obj(value["function"], "tool_choice.function")
        if set(function) != {"name"}:
            raise chat.Untranslatable("tool_choice.function may hold only a name")
        return chat.ToolChoice("tool", fields.string(function["name"], "tool_choice.function.name"))
    raise chat.Untranslatable("tool_choice cannot be translated: only auto, none, required or one function")


def _read_output(value: Any, request: chat.ChatRequest) -> chat.OutputFormat | None:
    if value is None:
        return None
    value = fields.obj(value, "response_format")
    kind = value.get("type")
    if kind in ("text", "json_object") and set(value) == {"type"}:
        return chat.OutputFormat("text" if kind == "text" else "json")
    if kind == "json_schema" and set(value) == {"type", "json_schema"}:
        spec = fields.obj(value["json_schema"], "response_format.json_schema")
        _check_fields(spec, JSON_SCHEMA_FIELDS, "response_format.json_schema", request)
        schema = spec.get("schema")
        return chat.OutputFormat(
            "json_schema",
            schema=None if schema is None else fields.obj(schema, "response_format.json_schema.schema"),
            name=fields.optional_string(spec.get("name"), "response_format.json_schema.name"),
            strict=fields.optional_bool(spec.get("strict"), "response_format.json_schema.strict"),
        )
    raise chat.Untranslatable(f"response_format.type {kind!r} cannot be translated")


def _read_effort(value: Any, request: chat.ChatRequest) -> None:
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
        raise chat.Untranslatable(f"reasoning_effort {value!r} cannot be translated")


def _read_max_tokens(body: dict[str, Any]) -> int | None:
    legacy = fields.optional_integer(body.get("max_tokens"), "max_tokens", whole_floats=True)
    current = fields.optional_integer(body.get("max_completion_tokens"), "max_completion_tokens", whole_floats=True)
    if legacy is not None and current is not None and legacy != current:
        raise chat.Untranslatable("max_completion_tokens disagrees with max_tokens")
    return current if current is not None else legacy


def _read_stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [fields.string(s, f"stop[{i}]") for i, s in enumerate(fields.array(value, "stop"))]


def _read_stream_usage(value: Any, request: chat.ChatRequest) -> bool:
    if value is None:
        return False
    options = fields.obj(value, "stream_options")
    _check_fields(options, STREAM_OPTIONS_FIELDS, "stream_options", request)
    return fields.optional_bool(options.get("include_usage"), "stream_options.include_usage") is True


def read_request(body: dict[str, Any]) -> chat.ChatRequest:
    request = chat.ChatRequest(model=None, messages=[])
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise chat.Untranslatable("modalities cannot be translated: only ['text']")
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
