"""A Converse request read exactly into the common chat model (`read_request`), and the facts
classification reads from it (`read_facts`)."""

from __future__ import annotations

from typing import Any, cast

from tollgate.formats import chat, fields
from tollgate.formats.bedrock_converse.fields import (
    DROPPED_TOP_LEVEL,
    IMAGE_FORMATS,
    LATENCY_FIELD,
    NAME,
    REFUSED_TOP_LEVEL,
    SERVICE_TIER_FIELD,
    TOP_LEVEL,
)
from tollgate.formats.bedrock_family import answers, family_tools
from tollgate.formats.bodies.exact import Unreadable, count, largest, request_int, request_text
from tollgate.formats.bodies.json_codec import json_object, parse_json
from tollgate.formats.request_facts import RequestFacts


def _member(obj: dict[str, Any], where: str) -> tuple[str, Any]:
    """The one member of a union (a content block, a tool, a tool choice)."""
    if len(obj) != 1:
        raise chat.Untranslatable(f"{where} must hold exactly one member")
    return next(iter(obj.items()))


def _read_image(value: Any, where: str) -> chat.Image:
    image = fields.obj(value, where)
    fields.only(image, ("format", "source"), where)
    fmt = fields.string(image.get("format"), f"{where}.format")
    if fmt not in IMAGE_FORMATS:
        raise chat.Untranslatable(f"{where}.format '{fmt}' cannot be translated")
    kind, source = _member(fields.obj(image.get("source"), f"{where}.source"), f"{where}.source")
    if kind != "bytes":
        raise chat.Untranslatable(f"{where}.source.{kind} cannot be translated")
    return chat.Image(media_type=f"image/{fmt}", data=fields.string(source, f"{where}.source.bytes"))


def _read_tool_use(value: Any, where: str) -> chat.ToolCall:
    use = fields.obj(value, where)
    fields.only(use, ("toolUseId", "name", "input"), where)
    if "input" not in use:
        raise chat.Untranslatable(f"{where}.input is missing")
    return chat.ToolCall(
        id=fields.string(use.get("toolUseId"), f"{where}.toolUseId"),
        name=fields.string(use.get("name"), f"{where}.name"),
        arguments=chat.json_text(use["input"]),
    )


def _read_tool_result(value: Any, where: str) -> chat.ToolResult:
    result = fields.obj(value, where)
    fields.only(result, ("toolUseId", "content", "status"), where)
    content: list[chat.Text | chat.Image] = []
    for k, item in enumerate(fields.array(result.get("content"), f"{where}.content")):
        at = f"{where}.content[{k}]"
        kind, inner = _member(fields.obj(item, at), at)
        if kind == "text":
            content.append(chat.Text(fields.string(inner, f"{at}.text")))
        elif kind == "json":
            content.append(chat.Text(chat.json_text(inner)))
        elif kind == "image":
            content.append(_read_image(inner, f"{at}.image"))
        else:
            raise chat.Untranslatable(f"{at}.{kind} cannot be translated")
    status = result.get("status", "success")
    if status not in ("success", "error"):
        raise chat.Untranslatable(f"{where}.status must be 'success' or 'error'")
    return chat.ToolResult(
        id=fields.string(result.get("toolUseId"), f"{where}.toolUseId"),
        name=None,
        content=content,
        is_error=status == "error",
    )


def _read_reasoning(value: Any, where: str) -> chat.Thinking:
    """Reasoning in the history: another model's was sealed when this client was given it (unsealed
    here, to go back there only); Bedrock's own is not."""
    kind, inner = _member(fields.obj(value, where), where)
    if kind == "redactedContent":
        redacted, origin = chat.unseal(fields.string(inner, f"{where}.redactedContent"))
        return chat.Thinking(redacted=redacted, origin=origin or NAME)
    if kind != "reasoningText":
        raise chat.Untranslatable(f"{where}.{kind} cannot be translated")
    at = f"{where}.reasoningText"
    text = fields.obj(inner, at)
    fields.only(text, ("text", "signature"), at)
    thinking = chat.Thinking(text=fields.string(text.get("text"), f"{at}.text"))
    if text.get("signature") is not None:
        thinking.signature, origin = chat.unseal(fields.string(text["signature"], f"{at}.signature"))
        thinking.origin = origin or NAME
    return thinking


def _read_block(block: Any, role: str, where: str, request: chat.ChatRequest) -> chat.Part | None:
    kind, value = _member(fields.obj(block, where), where)
    at = f"{where}.{kind}"
    if kind == "cachePoint":
        fields.drop(request.dropped, "cachePoint")
        return None
    if kind == "text":
        return chat.Text(fields.string(value, at))
    if kind == "image":
        return _read_image(value, at)
    # Bedrock takes tool calls and reasoning from the assistant only, tool results from the user only.
    if kind in ("toolUse", "reasoningContent") and role == "assistant":
        return _read_tool_use(value, at) if kind == "toolUse" else _read_reasoning(value, at)
    if kind == "toolResult" and role == "user":
        return _read_tool_result(value, at)
    if kind in ("toolUse", "reasoningContent", "toolResult"):
        raise chat.Untranslatable(f"{at} cannot be translated in a {role} message")
    raise chat.Untranslatable(f"{at} cannot be translated")


def _read_messages(value: Any, request: chat.ChatRequest) -> list[chat.Message]:
    messages: list[chat.Message] = []
    for i, item in enumerate(fields.array(value, "messages")):
        where = f"messages[{i}]"
        message = fields.obj(item, where)
        fields.only(message, ("role", "content"), where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise chat.Untranslatable(f"{where}.role must be 'user' or 'assistant'")
        parts = []
        for j, block in enumerate(fields.array(message.get("content"), f"{where}.content")):
            part = _read_block(block, role, f"{where}.content[{j}]", request)
            if part is not None:
                parts.append(part)
        messages.append(chat.Message(role=role, parts=parts))
    return messages


def _read_system(value: Any, request: chat.ChatRequest) -> list[chat.Text]:
    system: list[chat.Text] = []
    for i, block in enumerate(fields.array(value, "system")):
        where = f"system[{i}]"
        kind, inner = _member(fields.obj(block, where), where)
        if kind == "text":
            system.append(chat.Text(fields.string(inner, f"{where}.text")))
        elif kind == "cachePoint":
            fields.drop(request.dropped, "cachePoint")
        else:
            raise chat.Untranslatable(f"{where}.{kind} cannot be translated")
    return system


def _read_inference(value: Any, request: chat.ChatRequest) -> None:
    config = fields.obj(value, "inferenceConfig")
    fields.only(config, ("maxTokens", "temperature", "topP", "stopSequences"), "inferenceConfig")
    if "maxTokens" in config:
        request.max_tokens = fields.integer(config["maxTokens"], "inferenceConfig.maxTokens")
    if "temperature" in config:
        request.temperature = fields.number(config["temperature"], "inferenceConfig.temperature")
    if "topP" in config:
        request.top_p = fields.number(config["topP"], "inferenceConfig.topP")
    if "stopSequences" in config:
        stops = fields.array(config["stopSequences"], "inferenceConfig.stopSequences")
        request.stop = [fields.string(s, f"inferenceConfig.stopSequences[{k}]") for k, s in enumerate(stops)]


def _read_tool_spec(value: Any, where: str) -> chat.Tool:
    spec = fields.obj(value, where)
    fields.only(spec, ("name", "description", "inputSchema", "strict"), where)
    parameters = None
    if "inputSchema" in spec:
        kind, schema = _member(fields.obj(spec["inputSchema"], f"{where}.inputSchema"), f"{where}.inputSchema")
        if kind != "json":
            raise chat.Untranslatable(f"{where}.inputSchema.{kind} cannot be translated")
        parameters = fields.obj(schema, f"{where}.inputSchema.json")
    return chat.Tool(
        name=fields.string(spec.get("name"), f"{where}.name"),
        description=fields.optional_string(spec.get("description"), f"{where}.description"),
        parameters=parameters,
        strict=fields.optional_bool(spec.get("strict"), f"{where}.strict"),
    )


def _read_tool_config(value: Any, request: chat.ChatRequest) -> None:
    config = fields.obj(value, "toolConfig")
    fields.only(config, ("tools", "toolChoice"), "toolConfig")
    for i, item in enumerate(fields.array(config.get("tools", []), "toolConfig.tools")):
        where = f"toolConfig.tools[{i}]"
        kind, inner = _member(fields.obj(item, where), where)
        if kind == "toolSpec":
            request.tools.append(_read_tool_spec(inner, f"{where}.toolSpec"))
        elif kind == "cachePoint":
            fields.drop(request.dropped, "cachePoint")
        else:
            raise chat.Untranslatable(f"{where}.{kind} cannot be translated")
    if "toolChoice" in config:
        kind, inner = _member(fields.obj(config["toolChoice"], "toolConfig.toolChoice"), "toolConfig.toolChoice")
        where = f"toolConfig.toolChoice.{kind}"
        choice = fields.obj(inner, where)
        if kind in ("auto", "any"):
            fields.only(choice, (), where)
            request.tool_choice = chat.ToolChoice("auto" if kind == "auto" else "required")
        elif kind == "tool":
            fields.only(choice, ("name",), where)
            request.tool_choice = chat.ToolChoice("tool", fields.string(choice.get("name"), f"{where}.name"))
        else:
            raise chat.Untranslatable(f"{where} cannot be translated")


def _read_effort(value: Any, where: str) -> chat.Effort:
    if value not in chat.EFFORT_BUDGET:
        raise chat.Untranslatable(f"{where} '{value}' cannot be translated")
    return cast(chat.Effort, value)


def _read_thinking(value: Any, where: str, request: chat.ChatRequest) -> None:
    """Claude's `thinking` ({type, budget_tokens}), its early `reasoning_config`, and Nova's
    `reasoningConfig` ({type, maxReasoningEffort})."""
    config = fields.obj(value, where)
    fields.only(config, ("type", "budget_tokens", "maxReasoningEffort", "max_reasoning_effort"), where)
    kind = config.get("type")
    if kind == "disabled":
        request.thinking_budget = 0
        return
    if kind != "enabled":
        raise chat.Untranslatable(f"{where}.type must be 'enabled' or 'disabled'")
    request.include_thoughts = True  # Bedrock's thinking models show their reasoning
    if "budget_tokens" in config:
        request.thinking_budget = fields.integer(config["budget_tokens"], f"{where}.budget_tokens")
    for key in ("maxReasoningEffort", "max_reasoning_effort"):
        if key in config:
            request.reasoning_effort = _read_effort(config[key], f"{where}.{key}")
    if request.thinking_budget is None and request.reasoning_effort is None:
        raise chat.Untranslatable(f"{where} needs budget_tokens or maxReasoningEffort to be translated")


def _read_additional(value: Any, request: chat.ChatRequest) -> None:
    """The model's own parameters, passed through by Bedrock: those the common model has."""
    given = fields.obj(value, "additionalModelRequestFields")
    for key, inner in given.items():
        where = f"additionalModelRequestFields.{key}"
        if key in ("top_k", "topK"):
            request.top_k = fields.integer(inner, where)
        elif key == "inferenceConfig":  # Nova's own
            config = fields.obj(inner, where)
            fields.only(config, ("topK",), where)
            if "topK" in config:
                request.top_k = fields.integer(config["topK"], f"{where}.topK")
        elif key in ("thinking", "reasoning_config", "reasoningConfig"):
            _read_thinking(inner, where, request)
        elif key == "reasoning_effort":  # OpenAI's open-weight models
            request.reasoning_effort = _read_effort(inner, where)
        else:
            raise chat.Untranslatable(f"{where} cannot be translated")


def _read_output_config(value: Any, request: chat.ChatRequest) -> None:
    config = fields.obj(value, "outputConfig")
    fields.only(config, ("textFormat",), "outputConfig")
    if "textFormat" not in config:
        return
    where = "outputConfig.textFormat"
    text_format = fields.obj(config["textFormat"], where)
    fields.only(text_format, ("type", "structure"), where)
    if text_format.get("type") != "json_schema":
        raise chat.Untranslatable(f"{where}.type must be 'json_schema'")
    kind, inner = _member(fields.obj(text_format.get("structure"), f"{where}.structure"), f"{where}.structure")
    at = f"{where}.structure.{kind}"
    if kind != "jsonSchema":
        raise chat.Untranslatable(f"{at} cannot be translated")
    definition = fields.obj(inner, at)
    fields.only(definition, ("schema", "name", "description"), at)
    schema = parse_json(fields.string(definition.get("schema"), f"{at}.schema").encode())
    if schema is None:
        raise chat.Untranslatable(f"{at}.schema must be a JSON object's text")
    name = definition.get("name")
    # A description of the schema has no place in the common model; it guides, it does not constrain.
    if "description" in definition:
        fields.string(definition["description"], f"{at}.description")
        fields.drop(request.dropped, f"{at}.description")
    request.output = chat.OutputFormat(
        "json_schema", schema=schema, name=None if name is None else fields.string(name, f"{at}.name")
    )


def read_request(body: dict[str, Any]) -> chat.ChatRequest:
    request = chat.ChatRequest(model=None, messages=[])
    for key in body:
        if key not in TOP_LEVEL:
            raise chat.Untranslatable(f"{key} cannot be translated")
        if key in REFUSED_TOP_LEVEL:
            raise chat.Untranslatable(REFUSED_TOP_LEVEL[key])
        if key in DROPPED_TOP_LEVEL:
            fields.drop(request.dropped, key)
    request.messages = _read_messages(body.get("messages"), request)
    if "system" in body:
        request.system = _read_system(body["system"], request)
    if "inferenceConfig" in body:
        _read_inference(body["inferenceConfig"], request)
    if "toolConfig" in body:
        _read_tool_config(body["toolConfig"], request)
    if "additionalModelRequestFields" in body:
        _read_additional(body["additionalModelRequestFields"], request)
    if "outputConfig" in body:
        _read_output_config(body["outputConfig"], request)
    return request


# ---------------------------------------------------------------------------------------------
# The facts classification reads


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A Converse body's facts (CountTokens counts one too)."""
    facts.service_tier = _requested_name(data, *SERVICE_TIER_FIELD)
    facts.speed = _requested_name(data, *LATENCY_FIELD)
    inference = json_object(data.get("inferenceConfig"))
    facts.message_count = count(data.get("messages"))
    facts.has_system = bool(data.get("system"))
    tool_config = data.get("toolConfig")
    facts.has_tools = bool(
        (tool_config.get("tools") if isinstance(tool_config, dict) else tool_config) or data.get("tools")
    )
    facts.max_tokens = largest(
        request_int(inference.get("maxTokens"), "inferenceConfig.maxTokens"),
        request_int(data.get("max_tokens"), "max_tokens"),
    )
    _passed_to_model(data.get("additionalModelRequestFields"), facts)
    facts.answers = answers(json_object(data.get("additionalModelRequestFields")), "additionalModelRequestFields.")


def _passed_to_model(extra: Any, facts: RequestFacts) -> None:
    """Converse's `additionalModelRequestFields`, which Bedrock passes on in the model's own body:
    tools there are tools (Claude's computer use and server tools, its `mcp_servers`), a system
    prompt there a system prompt."""
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise Unreadable("'additionalModelRequestFields' is not an object")
    try:
        family_tools(extra, facts)
    except Unreadable as e:
        raise Unreadable(f"additionalModelRequestFields: {e}") from None
    facts.has_system = facts.has_system or bool(extra.get("system"))


def _requested_name(data: dict[str, Any], key: str, field: str) -> str | None:
    """A name a Converse body sets as `{key: {field: name}}`, read exactly."""
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise Unreadable(f"'{key}' is not an object")
    return request_text(value.get(field), f"{key}.{field}") if value else None
