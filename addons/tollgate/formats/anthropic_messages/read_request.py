"""A Messages call read: exactly into the common chat model (`read_request`), refusing what cannot be
translated; and the facts classification reads from it (`read_facts`), also from Claude's
Messages body on Vertex AI and Bedrock."""

from __future__ import annotations

from typing import Any, Literal

from tollgate.formats import chat, fields
from tollgate.formats.anthropic_messages.fields import DROPPED_TOOL_FIELDS, NAME, REQUEST_FIELDS
from tollgate.formats.bodies.exact import Unreadable, count, request_flag, request_int, request_text
from tollgate.formats.request_facts import GrantedMcpServer, RequestFacts

TOOL_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}
_EFFORTS: dict[str, chat.Effort] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _drop_marks(block: dict[str, Any], dropped: list[str]) -> None:
    """cache_control and citations on a block: hints to Anthropic, not part of what is said."""
    for mark in ("cache_control", "citations"):
        if block.get(mark) is not None:
            fields.drop(dropped, mark)


def _read_text_block(block: dict[str, Any], where: str, dropped: list[str]) -> chat.Text:
    fields.only(block, ("type", "text", "cache_control", "citations"), where)
    _drop_marks(block, dropped)
    return chat.Text(fields.string(block.get("text"), f"{where}.text"))


def _read_image_block(block: dict[str, Any], where: str, dropped: list[str]) -> chat.Image:
    fields.only(block, ("type", "source", "cache_control"), where)
    _drop_marks(block, dropped)
    source = fields.obj(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        fields.only(source, ("type", "media_type", "data"), f"{where}.source")
        return chat.Image(
            media_type=fields.string(source.get("media_type"), f"{where}.source.media_type"),
            data=fields.string(source.get("data"), f"{where}.source.data"),
        )
    if kind == "url":
        fields.only(source, ("type", "url"), f"{where}.source")
        return chat.Image(url=fields.string(source.get("url"), f"{where}.source.url"))
    raise chat.Untranslatable(f"{where}.source.type {kind!r} cannot be translated")


def _read_tool_result(block: dict[str, Any], where: str, dropped: list[str]) -> chat.ToolResult:
    fields.only(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), where)
    _drop_marks(block, dropped)
    content = block.get("content")
    parts: list[chat.Text | chat.Image] = []
    if isinstance(content, str):
        parts.append(chat.Text(content))
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
                raise chat.Untranslatable(f"{inner}.type {kind!r} cannot be translated")
    return chat.ToolResult(
        id=fields.string(block.get("tool_use_id"), f"{where}.tool_use_id"),
        name=None,
        content=parts,
        is_error=bool(fields.optional_bool(block.get("is_error"), f"{where}.is_error")),
    )


def _read_tool_use(block: dict[str, Any], where: str, dropped: list[str]) -> chat.ToolCall:
    fields.only(block, ("type", "id", "name", "input", "cache_control", "caller"), where)
    _drop_marks(block, dropped)
    caller = block.get("caller")
    if caller is not None and caller != {"type": "direct"}:
        raise chat.Untranslatable(f"{where}.caller cannot be translated (a call made by a server tool)")
    return chat.ToolCall(
        id=fields.string(block.get("id"), f"{where}.id"),
        name=fields.string(block.get("name"), f"{where}.name"),
        arguments=chat.json_text(fields.obj(block.get("input"), f"{where}.input")),
    )


def _read_block(raw: Any, role: str, where: str, dropped: list[str]) -> chat.Part:
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
        thinking = chat.Thinking(text=fields.string(block.get("thinking"), f"{where}.thinking"))
        signature = fields.optional_string(block.get("signature"), f"{where}.signature")
        if signature is not None:
            # Another model's, sealed when this client was given it; else Anthropic's own.
            thinking.signature, origin = chat.unseal(signature)
            thinking.origin = origin or NAME
        return thinking
    if kind == "redacted_thinking" and not by_user:
        fields.only(block, ("type", "data"), where)
        data, origin = chat.unseal(fields.string(block.get("data"), f"{where}.data"))
        return chat.Thinking(redacted=data, origin=origin or NAME)
    if kind in ("image", "tool_result", "tool_use", "thinking", "redacted_thinking"):
        raise chat.Untranslatable(f"{where}.type {kind!r} cannot be translated in a {role} message")
    raise chat.Untranslatable(f"{where}.type {kind!r} cannot be translated")


def _read_message(raw: Any, where: str, dropped: list[str]) -> chat.Message:
    obj = fields.obj(raw, where)
    fields.only(obj, ("role", "content"), where)
    role = obj.get("role")
    if role not in ("user", "assistant"):
        raise chat.Untranslatable(f"{where}.role {role!r} cannot be translated")
    content = obj.get("content")
    if isinstance(content, str):
        return chat.Message(role, [chat.Text(content)])
    blocks = fields.array(content, f"{where}.content")
    return chat.Message(role, [_read_block(b, role, f"{where}.content[{j}]", dropped) for j, b in enumerate(blocks)])


def _read_system(value: Any, dropped: list[str]) -> list[chat.Text]:
    if value is None:
        return []
    if isinstance(value, str):
        return [chat.Text(value)] if value else []
    texts = []
    for i, raw in enumerate(fields.array(value, "system")):
        block = fields.obj(raw, f"system[{i}]")
        if block.get("type") != "text":
            raise chat.Untranslatable(f"system[{i}].type {block.get('type')!r} cannot be translated")
        texts.append(_read_text_block(block, f"system[{i}]", dropped))
    return texts


def _read_tool(raw: Any, where: str, dropped: list[str]) -> chat.Tool:
    tool = fields.obj(raw, where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise chat.Untranslatable(f"{where}.type {kind!r} (a server tool) cannot be translated")
    fields.only(tool, ("type", "name", "description", "input_schema", "strict", *DROPPED_TOOL_FIELDS), where)
    for mark in DROPPED_TOOL_FIELDS:
        if tool.get(mark) is not None:
            fields.drop(dropped, mark)
    return chat.Tool(
        name=fields.string(tool.get("name"), f"{where}.name"),
        description=fields.optional_string(tool.get("description"), f"{where}.description"),
        parameters=fields.obj(tool.get("input_schema"), f"{where}.input_schema"),
        strict=fields.optional_bool(tool.get("strict"), f"{where}.strict"),
    )


def _read_tool_choice(value: Any, request: chat.ChatRequest) -> None:
    if value is None:
        return
    choice = fields.obj(value, "tool_choice")
    fields.only(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice")
    kind = choice.get("type")
    mode = TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise chat.Untranslatable(f"tool_choice.type {kind!r} cannot be translated")
    name = fields.string(choice.get("name"), "tool_choice.name") if mode == "tool" else None
    request.tool_choice = chat.ToolChoice(mode, name)
    disable = fields.optional_bool(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")
    if disable is not None:
        request.parallel_tool_calls = not disable


def _read_output_format(value: Any, where: str) -> chat.OutputFormat | None:
    if value is None:
        return None
    fmt = fields.obj(value, where)
    fields.only(fmt, ("type", "schema"), where)
    if fmt.get("type") != "json_schema":
        raise chat.Untranslatable(f"{where}.type {fmt.get('type')!r} cannot be translated")
    return chat.OutputFormat("json_schema", schema=fields.obj(fmt.get("schema"), f"{where}.schema"))


def _read_output_config(body: dict[str, Any], request: chat.ChatRequest) -> None:
    if body.get("output_config") is not None:
        config = fields.obj(body["output_config"], "output_config")
        fields.only(config, ("format", "effort"), "output_config")
        request.output = _read_output_format(config.get("format"), "output_config.format")
        effort = config.get("effort")
        if effort is not None:
            if effort not in _EFFORTS:
                raise chat.Untranslatable(f"output_config.effort {effort!r} cannot be translated")
            request.reasoning_effort = _EFFORTS[effort]
            if effort in ("xhigh", "max"):
                fields.drop(request.dropped, "output_config.effort")  # read as "high", the most the model says
    beta = _read_output_format(body.get("output_format"), "output_format")
    if beta is not None:
        if request.output is not None:
            raise chat.Untranslatable("output_format cannot be given beside output_config.format")
        request.output = beta


def _read_thinking(value: Any, request: chat.ChatRequest) -> None:
    if value is None:
        return
    thinking = fields.obj(value, "thinking")
    kind = thinking.get("type")
    if kind == "enabled":
        fields.only(thinking, ("type", "budget_tokens", "display"), "thinking")
        budget = fields.optional_integer(thinking.get("budget_tokens"), "thinking.budget_tokens")
        if budget is None:
            raise chat.Untranslatable("thinking.budget_tokens must be an integer")
        request.thinking_budget = budget
    elif kind == "adaptive":
        fields.only(thinking, ("type", "display"), "thinking")
        request.reasoning_effort = request.reasoning_effort or "medium"  # the model decides: its default effort
    elif kind == "disabled":
        fields.only(thinking, ("type",), "thinking")
        request.thinking_budget = 0
        return
    else:
        raise chat.Untranslatable(f"thinking.type {kind!r} cannot be translated")
    display = thinking.get("display")
    if display not in (None, "summarized", "omitted"):
        raise chat.Untranslatable(f"thinking.display {display!r} cannot be translated")
    if display is not None:
        request.include_thoughts = display == "summarized"


def _read_metadata(value: Any, request: chat.ChatRequest) -> None:
    if value is None:
        return
    metadata = fields.obj(value, "metadata")
    fields.only(metadata, ("user_id",), "metadata")
    request.user = fields.optional_string(metadata.get("user_id"), "metadata.user_id")


def read_request(body: dict[str, Any]) -> chat.ChatRequest:
    for key in body:
        if key not in REQUEST_FIELDS:
            raise chat.Untranslatable(f"{key} cannot be translated")
    request = chat.ChatRequest(model=fields.optional_string(body.get("model"), "model"), messages=[])
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
        raise chat.Untranslatable("mcp_servers cannot be translated (remote MCP servers run inside Anthropic's API)")
    for key, (handling, _) in REQUEST_FIELDS.items():
        if handling != "translated" and body.get(key) is not None:
            fields.drop(dropped, key)
    return request


# ---------------------------------------------------------------------------------------------
# The facts classification reads


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A Messages API body's facts (also Claude's on Vertex AI)."""
    facts.message_count = count(data.get("messages"))
    facts.has_system = bool(data.get("system"))
    # Server tools (web search, code execution, bash, computer use…) are tools too.
    facts.has_tools = bool(data.get("tools")) or loads_skills(data.get("container"))
    facts.stream = request_flag(data.get("stream"), "stream")
    facts.max_tokens = request_int(data.get("max_tokens"), "max_tokens")
    facts.service_tier = request_text(data.get("service_tier"), "service_tier")
    facts.speed = request_text(data.get("speed"), "speed")
    facts.grants(mcp_servers(data.get("mcp_servers")))


def read_completion_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A legacy Text Completions body's facts (`POST /v1/complete`): a prompt, and its answer's
    bound in `max_tokens_to_sample`."""
    facts.has_system = False
    facts.has_tools = False
    facts.stream = request_flag(data.get("stream"), "stream")
    facts.max_tokens = request_int(data.get("max_tokens_to_sample"), "max_tokens_to_sample")


def loads_skills(container: Any) -> bool:
    """Whether a Messages body's `container` loads Agent Skills into the code execution container:
    capabilities the model may use, as tools."""
    return isinstance(container, dict) and bool(container.get("skills"))


def mcp_servers(value: Any) -> tuple[GrantedMcpServer, ...]:
    """The remote MCP servers a Messages body's `mcp_servers` gives the model, each a `{"type":
    "url", "url", "name"}` (Anthropic runs them inside its API); anything else is refused, never
    skipped: a server the policy did not see would still be called."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Unreadable("'mcp_servers' is not a list")
    servers = []
    for i, entry in enumerate(value):
        where = f"mcp_servers[{i}]"
        if not isinstance(entry, dict):
            raise Unreadable(f"{where} is not an object")
        if entry.get("type") != "url":
            raise Unreadable(f"{where}.type is not 'url'")
        url, name = request_text(entry.get("url"), f"{where}.url"), request_text(entry.get("name"), f"{where}.name")
        if url is None or name is None:
            raise Unreadable(f"{where} names no {'url' if url is None else 'name'}")
        servers.append(GrantedMcpServer(url, name))
    return tuple(servers)
