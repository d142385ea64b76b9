"""AWS Bedrock's Converse API (POST /model/{modelId}/converse and /converse-stream), read and
written through the common chat model.

The model id and the stream flag are in the path: `read_request` leaves `model` None and the caller
sets `ChatRequest.stream`; `write_request` puts neither in the body. Bedrock counts cache reads and
writes apart from `inputTokens` (as `providers.bedrock.prompt_usage` reads them) and its
`totalTokens` counts every token, cache among them: usage is converted both ways accordingly.
The streams are AWS event streams (application/vnd.amazon.eventstream), framed by
`streams.EventStreamFramer` and written here frame by frame as boto3's `converse_stream` reads them.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Literal, cast

from ..json_codec import encode_json, parse_json
from ..streams import EventStreamFramer
from ..usage import Usage
from . import fields, formats
from .chat import (
    EFFORT_BUDGET,
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
    input_with_cache,
    json_text,
    kind_of_status,
    signed_for,
    sniffed_media_type,
    unseal,
)

NAME = formats.BEDROCK_CONVERSE
EVENT_STREAM = "application/vnd.amazon.eventstream"

Treatment = Literal["translated", "dropped", "refused"]

# What becomes of each field of a Converse request, for the docs. "dropped": read, not carried,
# named in `ChatRequest.dropped`; "refused": the call is Untranslatable.
REQUEST_FIELDS: dict[str, Treatment] = {
    "messages[].role": "translated",
    "messages[].content[].text": "translated",
    "messages[].content[].image (source.bytes)": "translated",
    "messages[].content[].image (source.s3Location)": "refused",
    "messages[].content[].toolUse": "translated",
    "messages[].content[].toolResult (text, json, image; status)": "translated",
    "messages[].content[].toolResult.content[] (document, video, searchResult)": "refused",
    "messages[].content[].reasoningContent": "translated",
    "messages[].content[].cachePoint": "dropped",
    "messages[].content[] (document, video, audio, guardContent, citationsContent, searchResult, "
    "toolAddition, toolRemoval)": "refused",
    "system[].text": "translated",
    "system[].cachePoint": "dropped",
    "system[].guardContent": "refused",
    "inferenceConfig (maxTokens, temperature, topP, stopSequences)": "translated",
    "toolConfig.tools[].toolSpec": "translated",
    "toolConfig.tools[].cachePoint": "dropped",
    "toolConfig.tools[].systemTool": "refused",
    "toolConfig.toolChoice (auto, any, tool)": "translated",
    "additionalModelRequestFields (top_k, topK, inferenceConfig.topK)": "translated",
    "additionalModelRequestFields (thinking, reasoning_config, reasoningConfig, reasoning_effort)": "translated",
    "additionalModelRequestFields (any other key)": "refused",
    "outputConfig.textFormat (json_schema)": "translated",
    "outputConfig.effort": "refused",
    "additionalModelResponseFieldPaths": "dropped",
    "guardrailConfig": "refused",
    "promptVariables": "refused",
    "requestMetadata": "dropped",
    "performanceConfig": "dropped",
    "serviceTier": "dropped",
}

# What `write_request` does with each part of the common model that Converse cannot carry as is.
WRITTEN_FIELDS: dict[str, Treatment] = {
    "top_k": "translated",  # additionalModelRequestFields.top_k
    "thinking_budget, reasoning_effort": "translated",  # additionalModelRequestFields.thinking
    "output (json_schema)": "translated",  # outputConfig.textFormat
    "output (json)": "refused",
    "image by url": "refused",
    "image other than png, jpeg, gif, webp": "refused",
    "tool_choice none, with tool calls or results in the history": "refused",
    "n > 1": "refused",
    "logprobs, top_logprobs": "refused",
    "seed, presence_penalty, frequency_penalty": "dropped",
    "parallel_tool_calls, user": "dropped",
    "thinking without a signature (history)": "dropped",
    "thinking signed by another provider (history)": "dropped",
}

_TOP_LEVEL = frozenset(
    (
        "messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields",
        "additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables", "requestMetadata",
        "performanceConfig", "serviceTier", "outputConfig",
    )
)  # fmt: skip
_DROPPED_TOP_LEVEL = ("additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig", "serviceTier")
_REFUSED_TOP_LEVEL = {
    "guardrailConfig": "guardrailConfig cannot be translated: the target would not apply the guardrail",
    "promptVariables": "promptVariables cannot be translated: the prompt lives in Bedrock's Prompt management",
}
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")

# Stop reasons both ways. A stop sequence ends the answer as its natural end does (Converse does not
# say which sequence it was); a guardrail or a filter is a content filter.
_FINISH_OF_STOP: dict[str, FinishReason] = {
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

# Bedrock's error types (x-amzn-errortype; in a stream, the same names with a lowercase first letter).
ERROR_TYPES: dict[str, tuple[int, ErrorKind]] = {
    "ValidationException": (400, "invalid_request"),
    "ConflictException": (400, "invalid_request"),
    "SerializationException": (400, "invalid_request"),
    "UnrecognizedClientException": (403, "authentication"),
    "InvalidSignatureException": (403, "authentication"),
    "IncompleteSignatureException": (403, "authentication"),
    "ExpiredTokenException": (403, "authentication"),
    "MissingAuthenticationTokenException": (403, "authentication"),
    "AccessDeniedException": (403, "permission"),
    "ResourceNotFoundException": (404, "not_found"),
    "ThrottlingException": (429, "rate_limit"),
    "ServiceQuotaExceededException": (400, "rate_limit"),
    "ModelNotReadyException": (429, "overloaded"),
    "ModelTimeoutException": (408, "timeout"),
    "InternalServerException": (500, "server"),
    "ModelErrorException": (424, "server"),
    "ModelStreamErrorException": (424, "server"),
    "ServiceUnavailableException": (503, "overloaded"),
}
_ERROR_TYPE_OF_KIND: dict[str, str] = {
    "invalid_request": "ValidationException",
    "too_large": "ValidationException",
    "authentication": "UnrecognizedClientException",
    "permission": "AccessDeniedException",
    "not_found": "ResourceNotFoundException",
    "rate_limit": "ThrottlingException",
    "server": "InternalServerException",
    "overloaded": "ServiceUnavailableException",
    "timeout": "ModelTimeoutException",
}
# A ConverseStream's exception events are only these (botocore's ConverseStreamOutput union).
_STREAM_EXCEPTION_OF_KIND: dict[str, str] = {
    "rate_limit": "throttlingException",
    "overloaded": "serviceUnavailableException",
    "server": "internalServerException",
    "timeout": "modelStreamErrorException",
}


# ---------------------------------------------------------------------------------------------
# Reading a request exactly


def _member(obj: dict[str, Any], where: str) -> tuple[str, Any]:
    """The one member of a union (a content block, a tool, a tool choice)."""
    if len(obj) != 1:
        raise Untranslatable(f"{where} must hold exactly one member")
    return next(iter(obj.items()))


def _read_image(value: Any, where: str) -> Image:
    image = fields.obj(value, where)
    fields.only(image, ("format", "source"), where)
    fmt = fields.string(image.get("format"), f"{where}.format")
    if fmt not in _IMAGE_FORMATS:
        raise Untranslatable(f"{where}.format '{fmt}' cannot be translated")
    kind, source = _member(fields.obj(image.get("source"), f"{where}.source"), f"{where}.source")
    if kind != "bytes":
        raise Untranslatable(f"{where}.source.{kind} cannot be translated")
    return Image(media_type=f"image/{fmt}", data=fields.string(source, f"{where}.source.bytes"))


def _read_tool_use(value: Any, where: str) -> ToolCall:
    use = fields.obj(value, where)
    fields.only(use, ("toolUseId", "name", "input"), where)
    if "input" not in use:
        raise Untranslatable(f"{where}.input is missing")
    return ToolCall(
        id=fields.string(use.get("toolUseId"), f"{where}.toolUseId"),
        name=fields.string(use.get("name"), f"{where}.name"),
        arguments=json_text(use["input"]),
    )


def _read_tool_result(value: Any, where: str) -> ToolResult:
    result = fields.obj(value, where)
    fields.only(result, ("toolUseId", "content", "status"), where)
    content: list[Text | Image] = []
    for k, item in enumerate(fields.array(result.get("content"), f"{where}.content")):
        at = f"{where}.content[{k}]"
        kind, inner = _member(fields.obj(item, at), at)
        if kind == "text":
            content.append(Text(fields.string(inner, f"{at}.text")))
        elif kind == "json":
            content.append(Text(json_text(inner)))
        elif kind == "image":
            content.append(_read_image(inner, f"{at}.image"))
        else:
            raise Untranslatable(f"{at}.{kind} cannot be translated")
    status = result.get("status", "success")
    if status not in ("success", "error"):
        raise Untranslatable(f"{where}.status must be 'success' or 'error'")
    return ToolResult(
        id=fields.string(result.get("toolUseId"), f"{where}.toolUseId"),
        name=None,
        content=content,
        is_error=status == "error",
    )


def _read_reasoning(value: Any, where: str) -> Thinking:
    """Reasoning in the history: another model's was sealed when this client was given it (unsealed
    here, to go back there only); Bedrock's own is not."""
    kind, inner = _member(fields.obj(value, where), where)
    if kind == "redactedContent":
        redacted, origin = unseal(fields.string(inner, f"{where}.redactedContent"))
        return Thinking(redacted=redacted, origin=origin or NAME)
    if kind != "reasoningText":
        raise Untranslatable(f"{where}.{kind} cannot be translated")
    at = f"{where}.reasoningText"
    text = fields.obj(inner, at)
    fields.only(text, ("text", "signature"), at)
    thinking = Thinking(text=fields.string(text.get("text"), f"{at}.text"))
    if text.get("signature") is not None:
        thinking.signature, origin = unseal(fields.string(text["signature"], f"{at}.signature"))
        thinking.origin = origin or NAME
    return thinking


def _read_block(block: Any, role: str, where: str, request: ChatRequest) -> Part | None:
    kind, value = _member(fields.obj(block, where), where)
    at = f"{where}.{kind}"
    if kind == "cachePoint":
        fields.drop(request.dropped, "cachePoint")
        return None
    if kind == "text":
        return Text(fields.string(value, at))
    if kind == "image":
        return _read_image(value, at)
    # Bedrock takes tool calls and reasoning from the assistant only, tool results from the user only.
    if kind in ("toolUse", "reasoningContent") and role == "assistant":
        return _read_tool_use(value, at) if kind == "toolUse" else _read_reasoning(value, at)
    if kind == "toolResult" and role == "user":
        return _read_tool_result(value, at)
    if kind in ("toolUse", "reasoningContent", "toolResult"):
        raise Untranslatable(f"{at} cannot be translated in a {role} message")
    raise Untranslatable(f"{at} cannot be translated")


def _read_messages(value: Any, request: ChatRequest) -> list[Message]:
    messages: list[Message] = []
    for i, item in enumerate(fields.array(value, "messages")):
        where = f"messages[{i}]"
        message = fields.obj(item, where)
        fields.only(message, ("role", "content"), where)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise Untranslatable(f"{where}.role must be 'user' or 'assistant'")
        parts = []
        for j, block in enumerate(fields.array(message.get("content"), f"{where}.content")):
            part = _read_block(block, role, f"{where}.content[{j}]", request)
            if part is not None:
                parts.append(part)
        messages.append(Message(role=role, parts=parts))
    return messages


def _read_system(value: Any, request: ChatRequest) -> list[Text]:
    system: list[Text] = []
    for i, block in enumerate(fields.array(value, "system")):
        where = f"system[{i}]"
        kind, inner = _member(fields.obj(block, where), where)
        if kind == "text":
            system.append(Text(fields.string(inner, f"{where}.text")))
        elif kind == "cachePoint":
            fields.drop(request.dropped, "cachePoint")
        else:
            raise Untranslatable(f"{where}.{kind} cannot be translated")
    return system


def _read_inference(value: Any, request: ChatRequest) -> None:
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


def _read_tool_spec(value: Any, where: str) -> Tool:
    spec = fields.obj(value, where)
    fields.only(spec, ("name", "description", "inputSchema", "strict"), where)
    parameters = None
    if "inputSchema" in spec:
        kind, schema = _member(fields.obj(spec["inputSchema"], f"{where}.inputSchema"), f"{where}.inputSchema")
        if kind != "json":
            raise Untranslatable(f"{where}.inputSchema.{kind} cannot be translated")
        parameters = fields.obj(schema, f"{where}.inputSchema.json")
    return Tool(
        name=fields.string(spec.get("name"), f"{where}.name"),
        description=fields.optional_string(spec.get("description"), f"{where}.description"),
        parameters=parameters,
        strict=fields.optional_bool(spec.get("strict"), f"{where}.strict"),
    )


def _read_tool_config(value: Any, request: ChatRequest) -> None:
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
            raise Untranslatable(f"{where}.{kind} cannot be translated")
    if "toolChoice" in config:
        kind, inner = _member(fields.obj(config["toolChoice"], "toolConfig.toolChoice"), "toolConfig.toolChoice")
        where = f"toolConfig.toolChoice.{kind}"
        choice = fields.obj(inner, where)
        if kind in ("auto", "any"):
            fields.only(choice, (), where)
            request.tool_choice = ToolChoice("auto" if kind == "auto" else "required")
        elif kind == "tool":
            fields.only(choice, ("name",), where)
            request.tool_choice = ToolChoice("tool", fields.string(choice.get("name"), f"{where}.name"))
        else:
            raise Untranslatable(f"{where} cannot be translated")


def _read_effort(value: Any, where: str) -> Effort:
    if value not in EFFORT_BUDGET:
        raise Untranslatable(f"{where} '{value}' cannot be translated")
    return cast(Effort, value)


def _read_thinking(value: Any, where: str, request: ChatRequest) -> None:
    """Claude's `thinking` ({type, budget_tokens}), its early `reasoning_config`, and Nova's
    `reasoningConfig` ({type, maxReasoningEffort})."""
    config = fields.obj(value, where)
    fields.only(config, ("type", "budget_tokens", "maxReasoningEffort", "max_reasoning_effort"), where)
    kind = config.get("type")
    if kind == "disabled":
        request.thinking_budget = 0
        return
    if kind != "enabled":
        raise Untranslatable(f"{where}.type must be 'enabled' or 'disabled'")
    request.include_thoughts = True  # Bedrock's thinking models show their reasoning
    if "budget_tokens" in config:
        request.thinking_budget = fields.integer(config["budget_tokens"], f"{where}.budget_tokens")
    for key in ("maxReasoningEffort", "max_reasoning_effort"):
        if key in config:
            request.reasoning_effort = _read_effort(config[key], f"{where}.{key}")
    if request.thinking_budget is None and request.reasoning_effort is None:
        raise Untranslatable(f"{where} needs budget_tokens or maxReasoningEffort to be translated")


def _read_additional(value: Any, request: ChatRequest) -> None:
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
            raise Untranslatable(f"{where} cannot be translated")


def _read_output_config(value: Any, request: ChatRequest) -> None:
    config = fields.obj(value, "outputConfig")
    fields.only(config, ("textFormat",), "outputConfig")
    if "textFormat" not in config:
        return
    where = "outputConfig.textFormat"
    text_format = fields.obj(config["textFormat"], where)
    fields.only(text_format, ("type", "structure"), where)
    if text_format.get("type") != "json_schema":
        raise Untranslatable(f"{where}.type must be 'json_schema'")
    kind, inner = _member(fields.obj(text_format.get("structure"), f"{where}.structure"), f"{where}.structure")
    at = f"{where}.structure.{kind}"
    if kind != "jsonSchema":
        raise Untranslatable(f"{at} cannot be translated")
    definition = fields.obj(inner, at)
    fields.only(definition, ("schema", "name", "description"), at)
    schema = parse_json(fields.string(definition.get("schema"), f"{at}.schema").encode())
    if schema is None:
        raise Untranslatable(f"{at}.schema must be a JSON object's text")
    name = definition.get("name")
    # A description of the schema has no place in the common model; it guides, it does not constrain.
    if "description" in definition:
        fields.string(definition["description"], f"{at}.description")
        fields.drop(request.dropped, f"{at}.description")
    request.output = OutputFormat(
        "json_schema", schema=schema, name=None if name is None else fields.string(name, f"{at}.name")
    )


def read_request(body: dict[str, Any]) -> ChatRequest:
    request = ChatRequest(model=None, messages=[])
    for key in body:
        if key not in _TOP_LEVEL:
            raise Untranslatable(f"{key} cannot be translated")
        if key in _REFUSED_TOP_LEVEL:
            raise Untranslatable(_REFUSED_TOP_LEVEL[key])
        if key in _DROPPED_TOP_LEVEL:
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
# Writing a request


def _image_block(image: Image, where: str) -> dict[str, Any]:
    if image.data is None:
        raise Untranslatable(f"{where}: an image by URL cannot be translated: Bedrock takes images as bytes")
    media_type = (image.media_type or "").lower()
    if media_type in ("", "image/*"):
        media_type = sniffed_media_type(image.data) or ""
    fmt = media_type.removeprefix("image/")
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in _IMAGE_FORMATS:
        raise Untranslatable(
            f"{where}: an image of type '{image.media_type}' cannot be translated (png, jpeg, gif, webp)"
        )
    return {"format": fmt, "source": {"bytes": image.data}}


def _tool_input(arguments: str, where: str) -> Any:
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        raise Untranslatable(f"{where}: a tool call's arguments are not JSON") from None


def _tool_result_block(result: ToolResult, where: str) -> dict[str, Any]:
    content = [
        {"text": part.text} if isinstance(part, Text) else {"image": _image_block(part, f"{where}.content[{k}]")}
        for k, part in enumerate(result.content)
    ]
    block: dict[str, Any] = {"toolUseId": result.id, "content": content}
    if result.is_error:
        block["status"] = "error"  # only Claude takes a status: written only where it means something
    return block


def _reasoning_block(thinking: Thinking) -> dict[str, Any] | None:
    if thinking.redacted is not None:
        return {"redactedContent": thinking.redacted}
    if thinking.signature is None:
        return None  # a model would refuse reasoning it cannot verify as its own
    return {"reasoningText": {"text": thinking.text, "signature": thinking.signature}}


def _content_blocks(message: Message, where: str, request: ChatRequest) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        at = f"{where}.parts[{j}]"
        if isinstance(part, Text):
            if part.text:  # Bedrock refuses blank text blocks
                blocks.append({"text": part.text})
        elif isinstance(part, Image):
            blocks.append({"image": _image_block(part, at)})
        elif isinstance(part, Thinking) and part.origin not in (None, NAME):
            fields.drop(
                request.dropped, "thinking signed by another provider"
            )  # a model verifies its own reasoning only
        elif isinstance(part, Thinking):
            reasoning = _reasoning_block(part) if message.role == "assistant" else None
            if reasoning is None:
                fields.drop(request.dropped, "thinking without a signature")
            else:
                blocks.append({"reasoningContent": reasoning})
        elif isinstance(part, ToolCall):
            if message.role != "assistant":
                raise Untranslatable(f"{at}: a tool call in a user message cannot be translated")
            blocks.append(
                {"toolUse": {"toolUseId": part.id, "name": part.name, "input": _tool_input(part.arguments, at)}}
            )
        else:
            if message.role != "user":
                raise Untranslatable(f"{at}: a tool result in an assistant message cannot be translated")
            blocks.append({"toolResult": _tool_result_block(part, at)})
    return blocks


def _write_messages(request: ChatRequest) -> list[dict[str, Any]]:
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


def _has_tool_history(request: ChatRequest) -> bool:
    return any(isinstance(p, ToolCall | ToolResult) for m in request.messages for p in m.parts)


def _write_tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is not None and choice.mode == "none":
        if _has_tool_history(request):
            raise Untranslatable(
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


def _thinking_budget(request: ChatRequest) -> int | None:
    """The budget Claude on Bedrock takes: at least 1024 tokens, below max_tokens where that allows."""
    if request.thinking_budget is not None:
        return request.thinking_budget or None  # 0: thinking off, Bedrock's models' default
    if request.reasoning_effort is None:
        return None
    budget = max(1024, EFFORT_BUDGET[request.reasoning_effort])
    if request.max_tokens is not None and budget >= request.max_tokens:
        budget = max(1024, request.max_tokens - 1)
    return budget


def _refuse_unwritable(request: ChatRequest) -> None:
    if request.n is not None and request.n > 1:
        raise Untranslatable("n cannot be translated: Converse answers once")
    if request.logprobs or request.top_logprobs:
        raise Untranslatable("logprobs cannot be translated: Converse gives no log probabilities")
    if request.output is not None and request.output.kind == "json":
        raise Untranslatable("response format 'json' cannot be translated: Converse takes a JSON schema only")
    for name in ("seed", "presence_penalty", "frequency_penalty", "parallel_tool_calls", "user"):
        if getattr(request, name) is not None:
            fields.drop(request.dropped, name)


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    _refuse_unwritable(request)
    body: dict[str, Any] = {"messages": _write_messages(request)}
    system = [{"text": t.text} for t in request.system if t.text]
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
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
        definition: dict[str, Any] = {"schema": json_text(output.schema or {})}
        if output.name:
            definition["name"] = output.name
        body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    return body, {}


# ---------------------------------------------------------------------------------------------
# Responses


def read_usage(raw: Any) -> Usage:
    """Converse's usage: `inputTokens` excludes the cache reads and writes counted beside it."""
    raw = raw if isinstance(raw, dict) else {}
    fresh = fields.int_or_none(raw.get("inputTokens"))
    read = fields.int_or_none(raw.get("cacheReadInputTokens"))
    written = fields.int_or_none(raw.get("cacheWriteInputTokens"))
    return Usage(
        input_tokens=input_with_cache(fresh, read, written),
        output_tokens=fields.int_or_none(raw.get("outputTokens")),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def write_usage(usage: Usage) -> dict[str, Any]:
    """The three counts Bedrock always sends (0 where unknown: SDK users read them unguarded); its
    totalTokens counts the cache too, as `providers.bedrock.converse_usage` reads it."""
    read, written = usage.cached_tokens or 0, usage.cache_write_tokens or 0
    fresh = usage.uncached_input_tokens or 0
    output = usage.output_tokens or 0
    raw: dict[str, Any] = {"inputTokens": fresh, "outputTokens": output, "totalTokens": fresh + output + read + written}
    if usage.cached_tokens is not None:
        raw["cacheReadInputTokens"] = usage.cached_tokens
    if usage.cache_write_tokens is not None:
        raw["cacheWriteInputTokens"] = usage.cache_write_tokens
    return raw


def finish_of_stop(stop_reason: Any) -> FinishReason | None:
    if not isinstance(stop_reason, str):
        return None
    return _FINISH_OF_STOP.get(stop_reason, "other")


def stop_of_finish(finish: FinishReason | None, stop_sequence: str | None = None) -> str:
    if finish == "stop" and stop_sequence:
        return "stop_sequence"
    return _STOP_OF_FINISH.get(finish or "stop", "end_turn")


def _response_part(block: dict[str, Any]) -> Part | None:
    if isinstance(block.get("text"), str):
        return Text(block["text"])
    use = block.get("toolUse")
    if isinstance(use, dict):
        return ToolCall(
            id=str(use.get("toolUseId") or ""),
            name=str(use.get("name") or ""),
            arguments=json_text(use.get("input", {})),
        )
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        if isinstance(reasoning.get("redactedContent"), str):
            return Thinking(redacted=reasoning["redactedContent"], origin=NAME)
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            signature = text.get("signature")
            signed = isinstance(signature, str)
            return Thinking(
                text=str(text.get("text") or ""),
                signature=signature if signed else None,
                origin=NAME if signed else None,
            )
    cited = block.get("citationsContent")
    if isinstance(cited, dict) and isinstance(cited.get("content"), list):
        # The generated text, without the citations the common model has no place for.
        return Text(
            "".join(c["text"] for c in cited["content"] if isinstance(c, dict) and isinstance(c.get("text"), str))
        )
    return None


def read_response(body: dict[str, Any]) -> ChatResponse:
    output = body.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    parts = (
        [p for b in content if isinstance(b, dict) and (p := _response_part(b)) is not None]
        if isinstance(content, list)
        else []
    )
    return ChatResponse(
        id=None,
        model=None,
        choices=[Choice(index=0, parts=parts, finish=finish_of_stop(body.get("stopReason")))],
        usage=read_usage(body.get("usage")),
    )


def _response_block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, Thinking):
        if part.redacted is not None:
            return {"reasoningContent": {"redactedContent": signed_for(part.redacted, part.origin, NAME)}}
        text: dict[str, Any] = {"text": part.text}
        if part.signature is not None:
            text["signature"] = signed_for(part.signature, part.origin, NAME)
        return {"reasoningContent": {"reasoningText": text}}
    if isinstance(part, ToolCall):
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


def write_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    choice = next((c for c in response.choices if c.index == 0), None)
    parts = choice.parts if choice is not None else []
    content = [b for p in parts if (b := _response_block(p)) is not None]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_of_finish(choice.finish if choice else None, choice.stop_sequence if choice else None),
        "usage": write_usage(response.usage),
        "metrics": {"latencyMs": 0},
    }


# ---------------------------------------------------------------------------------------------
# Streams


def _stream_error(headers: Mapping[str, object], payload: bytes) -> ChatError:
    """An exception frame (`:exception-type`, a JSON payload with its message), or an error frame
    (`:error-code` and `:error-message` headers)."""
    given = headers.get(":exception-type") or headers.get(":error-code")
    name = given[:1].upper() + given[1:] if isinstance(given, str) else "InternalServerException"
    status, kind = ERROR_TYPES.get(name, (500, "server"))
    message = (parse_json(payload) or {}).get("message") or headers.get(":error-message")
    return ChatError(status, kind, message if isinstance(message, str) else f"Bedrock's stream ended in {name}")


class ConverseStreamReader:
    """ConverseStream's events as the common model's: tool calls numbered in order of their blocks."""

    def __init__(self) -> None:
        self._framer = EventStreamFramer()
        self._tool_of_block: dict[Any, int] = {}
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self.error is not None:
            return []
        events: list[StreamEvent] = []
        for frame in self._framer.feed(chunk):
            message_type = frame.headers.get(":message-type")
            if message_type in ("exception", "error"):
                events.append(Failed(_stream_error(frame.headers, frame.payload)))
            elif message_type == "event":
                name = frame.headers.get(":event-type")
                data = parse_json(frame.payload)
                if isinstance(name, str) and data is not None:
                    events.extend(self._read_event(name, data))
        if self._framer.error is not None:
            self.error = self._framer.error
        return events

    def end(self) -> list[StreamEvent]:
        return []

    def _read_event(self, name: str, data: dict[str, Any]) -> list[StreamEvent]:
        if name == "messageStart":
            return [Started()]
        if name == "contentBlockStart":
            start = data.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if not isinstance(use, dict):
                return []
            index = len(self._tool_of_block)
            self._tool_of_block[data.get("contentBlockIndex")] = index
            return [ToolCallStarted(index=index, id=str(use.get("toolUseId") or ""), name=str(use.get("name") or ""))]
        if name == "contentBlockDelta":
            delta = data.get("delta")
            return self._read_delta(data.get("contentBlockIndex"), delta) if isinstance(delta, dict) else []
        if name == "messageStop":
            return [Finished(reason=finish_of_stop(data.get("stopReason")) or "other")]
        if name == "metadata":
            return [UsageReported(read_usage(data.get("usage")))] if isinstance(data.get("usage"), dict) else []
        return []

    def _read_delta(self, block: Any, delta: dict[str, Any]) -> list[StreamEvent]:
        if isinstance(delta.get("text"), str):
            return [TextDelta(delta["text"])]
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str) and block in self._tool_of_block:
            return [ToolCallDelta(index=self._tool_of_block[block], arguments=use["input"])]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            text, signature, redacted = (reasoning.get(k) for k in ("text", "signature", "redactedContent"))
            if isinstance(text, str):
                return [ThinkingDelta(text=text)]
            if isinstance(signature, str):
                return [ThinkingDelta(signature=signature, origin=NAME)]
            if isinstance(redacted, str):
                return [ThinkingDelta(redacted=redacted, origin=NAME)]
        return []


def event_stream_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event stream message: prelude (total length, headers length, their CRC32), headers
    (all strings: type 7), payload, and the CRC32 of all before it; big-endian throughout."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return event_stream_frame(headers, encode_json(payload))


def _exception(error: ChatError) -> bytes:
    name = _STREAM_EXCEPTION_OF_KIND.get(error.kind, "validationException")
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return event_stream_frame(headers, encode_json({"message": error.message}))


class ConverseStreamWriter:
    """ConverseStream's events, written as they come: a block is stopped when the next begins or the
    answer finishes; the usage (metadata) goes last, at the end or when it comes after the finish."""

    content_type = EVENT_STREAM

    def __init__(self, request: ChatRequest) -> None:  # a Converse stream names neither model nor id
        self._started = False
        self._blocks = 0  # content blocks begun so far
        self._open: tuple[str, int] | None = None  # the open block's kind ("text", "thinking", "tool") and index
        self._signed = False  # the open thinking block has its signature: more thinking is another block
        self._block_of_tool: dict[int, int] = {}
        self._usage: Usage | None = None
        self._finished = False
        self._reported = False
        self._failed = False

    def write(self, event: StreamEvent) -> bytes:
        if self._failed or getattr(event, "choice", 0) != 0:
            return b""
        if isinstance(event, Failed):
            self._failed = True
            return _exception(event.error)
        if isinstance(event, UsageReported):
            return self._report(event.usage)
        out = self._start()
        if isinstance(event, TextDelta):
            if event.text:
                out += self._delta("text", {"text": event.text})
        elif isinstance(event, ThinkingDelta):
            out += self._thinking(event)
        elif isinstance(event, ToolCallStarted):
            out += self._close()
            index = self._begin("tool")
            self._block_of_tool[event.index] = index
            out += _event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": event.id, "name": event.name}}},
            )
        elif isinstance(event, ToolCallDelta):
            block = self._block_of_tool.get(event.index)
            if block is not None and event.arguments:
                delta = {"contentBlockIndex": block, "delta": {"toolUse": {"input": event.arguments}}}
                out += _event("contentBlockDelta", delta)
        elif isinstance(event, Finished) and not self._finished:
            self._finished = True
            out += self._close() + _event(
                "messageStop", {"stopReason": stop_of_finish(event.reason, event.stop_sequence)}
            )
        return out

    def end(self) -> bytes:
        if self._failed:
            return b""
        out = self._close()
        if not self._reported and (self._finished or self._usage is not None):
            out += self._start() + self._metadata()
        return out

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return _event("messageStart", {"role": "assistant"})

    def _begin(self, kind: str) -> int:
        index = self._blocks
        self._blocks += 1
        self._open = (kind, index)
        self._signed = False
        return index

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        _, index = self._open
        self._open = None
        return _event("contentBlockStop", {"contentBlockIndex": index})

    def _delta(self, kind: str, delta: dict[str, Any]) -> bytes:
        """A delta of a text or thinking block: the open one if of its kind, else a new one."""
        out = b""
        if self._open is None or self._open[0] != kind or (kind == "thinking" and self._signed):
            out += self._close()
            self._begin(kind)
        assert self._open is not None
        return out + _event("contentBlockDelta", {"contentBlockIndex": self._open[1], "delta": delta})

    def _thinking(self, event: ThinkingDelta) -> bytes:
        out = b""
        if event.redacted is not None:  # redacted reasoning is a block of its own
            out += self._close()
            redacted = signed_for(event.redacted, event.origin, NAME)
            out += self._delta("thinking", {"reasoningContent": {"redactedContent": redacted}})
            self._signed = True
        if event.text:
            out += self._delta("thinking", {"reasoningContent": {"text": event.text}})
        if event.signature is not None:
            signature = signed_for(event.signature, event.origin, NAME)
            out += self._delta("thinking", {"reasoningContent": {"signature": signature}})
            self._signed = True
        return out

    def _report(self, usage: Usage) -> bytes:
        if self._reported:
            return b""
        if self._usage is None:
            self._usage = Usage()
        self._usage.update(usage)
        return self._start() + self._metadata() if self._finished else b""

    def _metadata(self) -> bytes:
        self._reported = True
        usage = write_usage(self._usage or Usage())
        return _event("metadata", {"usage": usage, "metrics": {"latencyMs": 0}})


# ---------------------------------------------------------------------------------------------
# Errors: Bedrock's whole runtime answers in this shape, InvokeModel as Converse.


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def error_type(headers: Mapping[str, str], body: dict[str, Any] | None) -> str | None:
    """The error's type: x-amzn-errortype (less any ":http://…" suffix), else the body's __type
    (less any "namespace#" prefix)."""
    raw = _header(headers, "x-amzn-errortype")
    if not raw and body is not None:
        given = body.get("__type") or body.get("code")
        raw = given if isinstance(given, str) else None
    if not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip() or None


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    data = parse_json(body)
    name = error_type(headers, data)
    kind = ERROR_TYPES[name][1] if name in ERROR_TYPES else kind_of_status(status)
    message = (data or {}).get("message") or (data or {}).get("Message")
    if not isinstance(message, str) or not message:
        message = f"Bedrock answered HTTP {status}" + (f" ({name})" if name else "")
    return ChatError(status, kind, message)


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    name = _ERROR_TYPE_OF_KIND.get(error.kind, "InternalServerException")
    if error.kind == "server" and error.status == 424:
        name = "ModelErrorException"
    headers = {"content-type": "application/json", "x-amzn-errortype": name}
    return error.status, headers, encode_json({"message": error.message})


# ---------------------------------------------------------------------------------------------


BEDROCK_CONVERSE = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=ConverseStreamReader,
    stream_writer=ConverseStreamWriter,
    read_error=read_error,
    write_error=write_error,
)
