"""The Gemini API's generateContent and streamGenerateContent (POST /v1beta/models/{model}:generateContent,
:streamGenerateContent?alt=sse, and without alt=sse a JSON array written element by element), read into
and written out of the common chat model.

The model is in the path, not the body: `read_request` leaves `model` None for the caller to set, and
`write_request` puts none in the body. Gemini reads its fields under camelCase or snake_case names
(google-genai sends camelCase, hand-made clients may send snake_case): both are read, a field given in
both spellings is refused, and camelCase is written.

Thought signatures. Gemini 2.5 and 3 put an opaque `thoughtSignature` on a part (a function call, a
text, an empty text, a thought) that must go back with that part on the next turn. In the model a
signature is a `Thinking` part placed just before the part that carried it: a thought summary
followed by a signed part reads as one `Thinking(summary, signature)`, an unsigned-thought-free signed
part as `Thinking("", signature)` before it. Writing a call, a `Thinking`'s signature goes on the part
that follows it (its text is dropped: Gemini needs no thought text back), or on an empty text part
when nothing follows. Writing an answer or a stream, a `Thinking` is a thought part carrying its
signature, which reads back the same. A signature another provider's model made goes to a Gemini
client sealed (`chat.seal`), so that it reaches that provider again when the client sends it back;
one not Gemini's own is never sent to Gemini (it answers 400). A model turn whose first function call
comes with no signature (history written by another provider's client, or its signature so left out)
gets Google's documented validator-skipping signature, as Gemini 3 refuses such a turn otherwise.

Ids. Gemini's function calls often carry no id: calls in a request get `call_<n>` by their position
in the contents, and a function response without an id answers the latest unanswered call of its
name; calls in an answer get `call_<responseId>_<candidate>_<index>`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..json_codec import encode_json, parse_json
from ..streams import JSONArrayFramer, SSEFramer, parse_sse_block
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
    arguments_object,
    json_text,
    kind_of_status,
    signed_for,
    sniffed_media_type,
    sse,
    tool_names,
    unseal,
)

NAME = formats.GEMINI_GENERATE

Disposition = Literal["translated", "dropped", "refused"]
_T: Disposition = "translated"
_D: Disposition = "dropped"
_R: Disposition = "refused"

# What a request's fields become, object by object (camelCase names; the snake_case spellings are read
# alike). Translated fields may still refuse some values (see the notes in `FIELD_NOTES`); dropped ones
# are named in `ChatRequest.dropped`; refused ones, and any field not listed, raise Untranslatable.
REQUEST_FIELDS: dict[str, dict[str, Disposition]] = {
    "": {
        "contents": _T,
        "systemInstruction": _T,
        "tools": _T,
        "toolConfig": _T,
        "generationConfig": _T,
        "safetySettings": _D,
        "labels": _D,
        "serviceTier": _D,
        "store": _D,
        "cachedContent": _R,  # refers to server state
        "continuationToken": _R,
    },
    "contents[]": {"role": _T, "parts": _T},
    "contents[].parts[]": {
        "text": _T,
        "thought": _T,
        "thoughtSignature": _T,
        "inlineData": _T,
        "fileData": _T,
        "functionCall": _T,
        "functionResponse": _T,
        "mediaResolution": _D,
        "partMetadata": _D,
        "executableCode": _R,
        "codeExecutionResult": _R,
        "videoMetadata": _R,
        "toolCall": _R,
        "toolResponse": _R,
    },
    "contents[].parts[].inlineData": {"mimeType": _T, "data": _T, "displayName": _D},
    "contents[].parts[].fileData": {"mimeType": _T, "fileUri": _T, "displayName": _D},
    "contents[].parts[].functionCall": {"name": _T, "args": _T, "id": _T, "partialArgs": _R, "willContinue": _R},
    "contents[].parts[].functionResponse": {
        "name": _T,
        "response": _T,
        "id": _T,
        "parts": _R,
        "willContinue": _R,
        "scheduling": _R,
    },
    "systemInstruction": {"parts": _T, "role": _T},
    "systemInstruction.parts[]": {"text": _T},
    "tools[]": {
        "functionDeclarations": _T,
        "googleSearch": _R,
        "googleSearchRetrieval": _R,
        "codeExecution": _R,
        "urlContext": _R,
        "retrieval": _R,
        "fileSearch": _R,
        "googleMaps": _R,
        "computerUse": _R,
        "enterpriseWebSearch": _R,
        "mcpServers": _R,
    },
    "tools[].functionDeclarations[]": {
        "name": _T,
        "description": _T,
        "parameters": _T,
        "parametersJsonSchema": _T,
        "response": _D,
        "responseJsonSchema": _D,
        "behavior": _R,
    },
    "toolConfig": {"functionCallingConfig": _T, "retrievalConfig": _D, "includeServerSideToolInvocations": _D},
    "toolConfig.functionCallingConfig": {"mode": _T, "allowedFunctionNames": _T, "streamFunctionCallArguments": _D},
    "generationConfig": {
        "temperature": _T,
        "topP": _T,
        "topK": _T,
        "maxOutputTokens": _T,
        "stopSequences": _T,
        "candidateCount": _T,
        "seed": _T,
        "presencePenalty": _T,
        "frequencyPenalty": _T,
        "responseMimeType": _T,
        "responseSchema": _T,
        "responseJsonSchema": _T,
        "responseLogprobs": _T,
        "logprobs": _T,
        "thinkingConfig": _T,
        "responseModalities": _T,
        "speechConfig": _D,  # only for audio answers, which responseModalities refuses
        "imageConfig": _D,  # only for image answers, likewise
        "audioTimestamp": _D,
        "mediaResolution": _D,
        "enableEnhancedCivicAnswers": _D,
        "routingConfig": _R,  # picks another model than the path's
        "modelSelectionConfig": _R,
        "enableAffectiveDialog": _R,
    },
    "generationConfig.thinkingConfig": {"thinkingBudget": _T, "includeThoughts": _T, "thinkingLevel": _T},
}

# Every request field by its path, for the docs.
FIELDS: dict[str, Disposition] = {
    f"{level}.{name}" if level else name: disposition
    for level, table in REQUEST_FIELDS.items()
    for name, disposition in table.items()
}

# Where a translated field refuses some values, or what it becomes.
FIELD_NOTES: dict[str, str] = {
    "contents[].role": "user, model, function (read as user); absent reads as user",
    "contents[].parts[].thought": "thought text → Thinking; written only in answers and streams",
    "contents[].parts[].thoughtSignature": "→ Thinking.signature, placed before the part that carried it; "
    "another provider's, sealed, is unsealed",
    "contents[].parts[].inlineData": "images only; other media types are refused",
    "contents[].parts[].fileData": "images only (Image.url = fileUri); other media types are refused",
    "contents[].parts[].functionCall.id": "absent → call_<n>, n its position among the contents' calls",
    "contents[].parts[].functionResponse.id": "absent → the latest unanswered call of that name",
    "tools[].functionDeclarations[].parameters": "OpenAPI subset → JSON Schema; written as parametersJsonSchema",
    "toolConfig.functionCallingConfig.mode": "AUTO/VALIDATED → auto, NONE → none, ANY → required",
    "toolConfig.functionCallingConfig.allowedFunctionNames": "one name with ANY → that tool; several → refused",
    "generationConfig.candidateCount": "→ n",
    "generationConfig.responseMimeType": "application/json → json (json_schema with a schema), text/plain → none",
    "generationConfig.responseSchema": "OpenAPI subset, turned to JSON Schema; written as responseJsonSchema",
    "generationConfig.responseLogprobs": "→ logprobs",
    "generationConfig.logprobs": "→ top_logprobs",
    "generationConfig.responseModalities": "only [TEXT]",
    "generationConfig.thinkingConfig.thinkingBudget": "→ thinking_budget (-1, dynamic, reads as unset)",
    "generationConfig.thinkingConfig.thinkingLevel": "minimal/low/medium/high → reasoning_effort",
}

# Written from the model: what the Gemini API cannot carry and is left out, by ChatRequest field.
WRITE_DROPPED = (
    "parallel_tool_calls",
    "user",
    "tools[].strict",
    "thinking in history",
    "thinking signed by another provider",
)
# Google's documented thought signature for function calls it did not sign (history from elsewhere).
SKIP_SIGNATURE = "skip_thought_signature_validator"

_FINISH_READ: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
_FINISH_WRITE: dict[FinishReason, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "other": "OTHER",
}
_KIND_OF_STATUS: dict[str, ErrorKind] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "INTERNAL": "server",
    "UNKNOWN": "server",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}
_STATUS_OF_KIND: dict[ErrorKind, str] = {
    "invalid_request": "INVALID_ARGUMENT",
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "too_large": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "INTERNAL",
    "overloaded": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
}
_EFFORT_OF_LEVEL: dict[str, Effort] = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}
_GEMINI_FILE = re.compile(r"https://generativelanguage\.googleapis\.com/v\d+\w*/files/[^/?#]+")
# Models that neither need nor check thought signatures on function calls.
_UNSIGNED_MODELS = re.compile(r"(models/)?gemini-[12][.-]")
_SNAKE = re.compile(r"_([a-z0-9])")


# ---------------------------------------------------------------------------------------------
# Small readers of JSON values

# Gemini's refusals say "contents[0].parts[0].text is not a string" (the other formats': "must be").
_exact = fields.Exact("is not")


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _fields(value: Any, level: str, where: str, request: ChatRequest) -> dict[str, Any]:
    """An API object of the request, its keys in camelCase: fields the table refuses or does not know
    raise, dropped ones are noted and left out, nulls are absent (as proto3 JSON reads them)."""
    if not isinstance(value, dict):
        raise Untranslatable(f"{where or 'the body'} is not a JSON object")
    table = REQUEST_FIELDS[level]
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key)
        path = f"{where}.{key}" if where else key
        if name in out or (name != key and name in value):
            raise Untranslatable(f"{where or 'the body'} sets both '{name}' and its snake_case spelling")
        if item is None:
            continue
        disposition = table.get(name)
        if disposition is None or disposition == "refused":
            raise Untranslatable(f"{path} cannot be translated")
        if disposition == "dropped":
            fields.drop(request.dropped, f"{level}.{name}" if level else name)
            continue
        out[name] = item
    return out


def _integer(value: Any, where: str) -> int | None:
    """As proto3 JSON reads an integer: a number with no fraction, or a string of digits."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    return _exact.optional_integer(value, where, whole_floats=True)


def _loose_int(value: Any) -> int | None:
    """An integer from an answer, leniently: proto3 JSON may write one as a string."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------
# Schemas: Gemini's OpenAPI subset → JSON Schema


_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONES = ("items", "additionalProperties", "not")


def json_schema_of_openapi(schema: Any, where: str) -> Any:
    """Gemini's `Schema` (an OpenAPI subset whose types may be upper-case, whose fields proto3 JSON
    also reads in snake_case, with `nullable`) as the JSON Schema it means."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, given in schema.items():
        name = _camel(key)
        if name in out:
            raise Untranslatable(f"{where} sets both '{name}' and its snake_case spelling")
        value = given
        if name == "type" and isinstance(given, str):
            value = given.lower()
        elif name in _SCHEMA_MAPS and isinstance(given, dict):
            value = {k: json_schema_of_openapi(v, f"{where}.{key}.{k}") for k, v in given.items()}
        elif name in _SCHEMA_LISTS and isinstance(given, list):
            value = [json_schema_of_openapi(v, f"{where}.{key}[{i}]") for i, v in enumerate(given)]
        elif name in _SCHEMA_ONES:
            value = json_schema_of_openapi(given, f"{where}.{key}")
        out[name] = value
    if out.pop("nullable", None) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif isinstance(out.get("anyOf"), list):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


# ---------------------------------------------------------------------------------------------
# Requests: reading


def _add_thinking(parts: list[Part], text: str, signature: str | None, origin: str | None) -> None:
    """A thought, or a signature, joining the unsigned Thinking just before it: Gemini signs the
    part after its thought summary, which the model keeps as one signed Thinking."""
    last = parts[-1] if parts else None
    if isinstance(last, Thinking) and last.signature is None and last.redacted is None:
        last.text += text
        last.signature, last.origin = signature, origin
    else:
        parts.append(Thinking(text=text, signature=signature, origin=origin))


class _RequestReader:
    """Reads one request's contents in order: call ids by position, responses matched to calls."""

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.calls: list[ToolCall] = []
        self.answered: set[str] = set()

    def contents(self, value: Any) -> list[Message]:
        messages: list[Message] = []
        for i, raw in enumerate(_exact.array_or_empty(value, "contents")):
            where = f"contents[{i}]"
            content = _fields(raw, "contents[]", where, self.request)
            role = _exact.optional_string(content.get("role"), f"{where}.role")
            if role in (None, "", "user", "function"):
                message = Message("user", [])
            elif role == "model":
                message = Message("assistant", [])
            else:
                raise Untranslatable(f"{where}.role '{role}' cannot be translated")
            if message.role == "assistant" and messages and messages[-1].role == "assistant":
                # One turn: google-genai's chats keep a streamed answer as a content per chunk, and a
                # thought summary must join the signature after it (`_add_thinking`).
                message = messages[-1]
            else:
                messages.append(message)
            for j, part in enumerate(_exact.array_or_empty(content.get("parts"), f"{where}.parts")):
                self.part(part, f"{where}.parts[{j}]", message)
        return messages

    def part(self, raw: Any, where: str, message: Message) -> None:
        part = _fields(raw, "contents[].parts[]", where, self.request)
        kinds = [k for k in ("text", "inlineData", "fileData", "functionCall", "functionResponse") if k in part]
        if len(kinds) > 1:
            raise Untranslatable(f"{where} holds both {kinds[0]} and {kinds[1]}")
        thought = _exact.optional_bool(part.get("thought"), f"{where}.thought")
        signature = _exact.optional_string(part.get("thoughtSignature"), f"{where}.thoughtSignature")
        origin = None
        if signature == SKIP_SIGNATURE:
            signature = None  # no signature: the marker that history from elsewhere carries none
        elif signature is not None:
            signature, origin = unseal(signature)  # another model's, sealed when this client was given it
            origin = origin or NAME
        model = message.role == "assistant"
        if (thought or signature is not None) and not model:
            raise Untranslatable(f"{where}: a thought or thoughtSignature in a user content cannot be translated")
        kind = kinds[0] if kinds else None
        if thought:
            if kind not in (None, "text"):
                raise Untranslatable(f"{where}.thought on a {kind} part cannot be translated")
            _add_thinking(message.parts, _exact.string(part.get("text", ""), f"{where}.text"), signature, origin)
            return
        if signature is not None:
            _add_thinking(message.parts, "", signature, origin)
        if kind is None:
            if signature is None:
                raise Untranslatable(f"{where} holds no content")
        elif kind == "text":
            text = _exact.string(part["text"], f"{where}.text")
            if text or signature is None:
                message.parts.append(Text(text))
        elif kind in ("inlineData", "fileData"):
            message.parts.append(self.image(part[kind], kind, f"{where}.{kind}"))
        elif kind == "functionCall":
            if not model:
                raise Untranslatable(f"{where}.functionCall in a user content cannot be translated")
            message.parts.append(self.call(part[kind], f"{where}.functionCall"))
        else:
            if model:
                raise Untranslatable(f"{where}.functionResponse in a model content cannot be translated")
            message.parts.append(self.result(part[kind], f"{where}.functionResponse"))

    def image(self, raw: Any, kind: str, where: str) -> Image:
        blob = _fields(raw, f"contents[].parts[].{kind}", where, self.request)
        mime = _exact.optional_string(blob.get("mimeType"), f"{where}.mimeType")
        if mime is None or not mime.lower().startswith("image/"):
            raise Untranslatable(f"{where}.mimeType '{mime}' cannot be translated (images only)")
        if kind == "inlineData":
            return Image(media_type=mime, data=_exact.string(blob.get("data"), f"{where}.data"))
        return Image(media_type=mime, url=_exact.string(blob.get("fileUri"), f"{where}.fileUri"))

    def call(self, raw: Any, where: str) -> ToolCall:
        call = _fields(raw, "contents[].parts[].functionCall", where, self.request)
        name = _exact.string(call.get("name"), f"{where}.name")
        args = _exact.obj(call.get("args", {}), f"{where}.args")
        given = _exact.optional_string(call.get("id"), f"{where}.id")
        tool_call = ToolCall(id=given or f"call_{len(self.calls)}", name=name, arguments=json_text(args))
        self.calls.append(tool_call)
        return tool_call

    def result(self, raw: Any, where: str) -> ToolResult:
        answer = _fields(raw, "contents[].parts[].functionResponse", where, self.request)
        name = _exact.string(answer.get("name"), f"{where}.name")
        response = _exact.obj(answer.get("response", {}), f"{where}.response")
        call_id = _exact.optional_string(answer.get("id"), f"{where}.id") or self.unanswered(name, where)
        self.answered.add(call_id)
        # Gemini's convention: {"output": …} for a result, {"error": …} for a failure.
        return ToolResult(call_id, name, [Text(json_text(response))], is_error=set(response) == {"error"})

    def unanswered(self, name: str, where: str) -> str:
        for call in reversed(self.calls):
            if call.name == name and call.id not in self.answered:
                return call.id
        raise Untranslatable(f"{where} answers no earlier functionCall named '{name}'")


def _read_system(value: Any, request: ChatRequest) -> list[Text]:
    if isinstance(value, str):
        return [Text(value)]
    content = _fields(value, "systemInstruction", "systemInstruction", request)
    texts = []
    for i, raw in enumerate(_exact.array_or_empty(content.get("parts"), "systemInstruction.parts")):
        where = f"systemInstruction.parts[{i}]"
        part = _fields(raw, "systemInstruction.parts[]", where, request)
        texts.append(Text(_exact.string(part.get("text"), f"{where}.text")))
    return texts


def _read_tools(value: Any, request: ChatRequest) -> list[Tool]:
    tools = []
    for i, raw in enumerate(_exact.array_or_empty(value, "tools")):
        tool = _fields(raw, "tools[]", f"tools[{i}]", request)
        declarations = _exact.array_or_empty(tool.get("functionDeclarations"), f"tools[{i}].functionDeclarations")
        for j, raw_declaration in enumerate(declarations):
            where = f"tools[{i}].functionDeclarations[{j}]"
            declaration = _fields(raw_declaration, "tools[].functionDeclarations[]", where, request)
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise Untranslatable(f"{where} sets both parameters and parametersJsonSchema")
            if "parameters" in declaration:
                parameters = json_schema_of_openapi(
                    _exact.obj(declaration["parameters"], f"{where}.parameters"), f"{where}.parameters"
                )
            else:
                parameters = declaration.get("parametersJsonSchema")
                if parameters is not None:
                    _exact.obj(parameters, f"{where}.parametersJsonSchema")
            tools.append(
                Tool(
                    name=_exact.string(declaration.get("name"), f"{where}.name"),
                    description=_exact.optional_string(declaration.get("description"), f"{where}.description"),
                    parameters=parameters,
                )
            )
    return tools


def _read_tool_choice(value: Any, tools: list[Tool], request: ChatRequest) -> ToolChoice | None:
    config = _fields(value, "toolConfig", "toolConfig", request)
    if "functionCallingConfig" not in config:
        return None
    where = "toolConfig.functionCallingConfig"
    calling = _fields(config["functionCallingConfig"], where, where, request)
    mode = (_exact.optional_string(calling.get("mode"), f"{where}.mode") or "MODE_UNSPECIFIED").upper()
    allowed = _exact.array_or_empty(calling.get("allowedFunctionNames"), f"{where}.allowedFunctionNames")
    names = {_exact.string(n, f"{where}.allowedFunctionNames[{i}]") for i, n in enumerate(allowed)}
    if names == {t.name for t in tools} and not (mode == "ANY" and len(names) == 1):
        names = set()  # naming every declared function restricts nothing
    if names and mode != "ANY":
        raise Untranslatable(f"{where}.allowedFunctionNames with mode {mode} cannot be translated")
    if len(names) > 1:
        raise Untranslatable(f"{where}.allowedFunctionNames with several names cannot be translated")
    if mode == "ANY":
        return ToolChoice("tool", names.pop()) if names else ToolChoice("required")
    if mode in ("AUTO", "VALIDATED"):
        return ToolChoice("auto")
    if mode == "NONE":
        return ToolChoice("none")
    if mode == "MODE_UNSPECIFIED":
        return None
    raise Untranslatable(f"{where}.mode '{mode}' cannot be translated")


def _read_output(config: dict[str, Any]) -> OutputFormat | None:
    where = "generationConfig"
    mime = _exact.optional_string(config.get("responseMimeType"), f"{where}.responseMimeType")
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise Untranslatable(f"{where} sets both responseSchema and responseJsonSchema")
    schema: Any = None
    if "responseSchema" in config:
        schema = json_schema_of_openapi(
            _exact.obj(config["responseSchema"], f"{where}.responseSchema"), f"{where}.responseSchema"
        )
    elif "responseJsonSchema" in config:
        schema = _exact.obj(config["responseJsonSchema"], f"{where}.responseJsonSchema")
    if mime is not None and mime.lower() == "application/json":
        return OutputFormat("json") if schema is None else OutputFormat("json_schema", schema=schema)
    if schema is not None:
        field = "responseSchema" if "responseSchema" in config else "responseJsonSchema"
        raise Untranslatable(f"{where}.{field} without responseMimeType 'application/json' cannot be translated")
    if mime is None or mime.lower() == "text/plain":
        return None
    raise Untranslatable(f"{where}.responseMimeType '{mime}' cannot be translated")


def _read_thinking(value: Any, request: ChatRequest) -> None:
    where = "generationConfig.thinkingConfig"
    thinking = _fields(value, where, where, request)
    budget = _integer(thinking.get("thinkingBudget"), f"{where}.thinkingBudget")
    request.thinking_budget = None if budget == -1 else budget  # -1: dynamic, the default
    request.include_thoughts = _exact.optional_bool(thinking.get("includeThoughts"), f"{where}.includeThoughts")
    level = _exact.optional_string(thinking.get("thinkingLevel"), f"{where}.thinkingLevel")
    if level is not None and level.upper() != "THINKING_LEVEL_UNSPECIFIED":
        effort = _EFFORT_OF_LEVEL.get(level.lower())
        if effort is None:
            raise Untranslatable(f"{where}.thinkingLevel '{level}' cannot be translated")
        request.reasoning_effort = effort


def _read_config(value: Any, request: ChatRequest) -> None:
    where = "generationConfig"
    config = _fields(value, where, where, request)
    request.temperature = _exact.optional_number(config.get("temperature"), f"{where}.temperature")
    request.top_p = _exact.optional_number(config.get("topP"), f"{where}.topP")
    request.top_k = _integer(config.get("topK"), f"{where}.topK")
    request.max_tokens = _integer(config.get("maxOutputTokens"), f"{where}.maxOutputTokens")
    request.stop = [
        _exact.string(s, f"{where}.stopSequences[{i}]")
        for i, s in enumerate(_exact.array_or_empty(config.get("stopSequences"), f"{where}.stopSequences"))
    ]
    request.n = _integer(config.get("candidateCount"), f"{where}.candidateCount")
    request.seed = _integer(config.get("seed"), f"{where}.seed")
    request.presence_penalty = _exact.optional_number(config.get("presencePenalty"), f"{where}.presencePenalty")
    request.frequency_penalty = _exact.optional_number(config.get("frequencyPenalty"), f"{where}.frequencyPenalty")
    request.logprobs = _exact.optional_bool(config.get("responseLogprobs"), f"{where}.responseLogprobs")
    request.top_logprobs = _integer(config.get("logprobs"), f"{where}.logprobs")
    request.output = _read_output(config)
    modalities = [
        _exact.string(m, f"{where}.responseModalities[{i}]").upper()
        for i, m in enumerate(_exact.array_or_empty(config.get("responseModalities"), f"{where}.responseModalities"))
    ]
    if modalities and modalities != ["TEXT"]:
        raise Untranslatable(f"{where}.responseModalities {modalities} cannot be translated (only TEXT)")
    if "thinkingConfig" in config:
        _read_thinking(config["thinkingConfig"], request)


def read_request(body: dict[str, Any]) -> ChatRequest:
    request = ChatRequest(model=None, messages=[])
    top = _fields(body, "", "", request)
    request.messages = _RequestReader(request).contents(top.get("contents"))
    if "systemInstruction" in top:
        request.system = _read_system(top["systemInstruction"], request)
    request.tools = _read_tools(top.get("tools"), request)
    if "toolConfig" in top:
        request.tool_choice = _read_tool_choice(top["toolConfig"], request.tools, request)
    if "generationConfig" in top:
        _read_config(top["generationConfig"], request)
    return request


# ---------------------------------------------------------------------------------------------
# Requests: writing


def _image_part(image: Image, where: str) -> dict[str, Any]:
    known = image.media_type if image.media_type and image.media_type != "image/*" else None
    data = image.data
    url = image.url or ""
    if data is None and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        if not header.endswith(";base64"):
            raise Untranslatable(f"{where}: an image data URL that is not base64 cannot be translated")
        known = known or header.removesuffix(";base64") or None
    if data is not None:
        media_type = known or sniffed_media_type(data)
        if media_type is None:
            raise Untranslatable(f"{where}: the image's media type is unknown and Gemini needs it")
        return {"inlineData": {"mimeType": media_type, "data": data}}
    if _GEMINI_FILE.fullmatch(url):
        file: dict[str, Any] = {"fileUri": url}
        if known:
            file = {"mimeType": known, **file}
        return {"fileData": file}
    raise Untranslatable(f"{where}: an image by URL cannot be sent to Gemini (inline data or Gemini file URIs only)")


def _call_part(call: ToolCall, where: str) -> dict[str, Any]:
    args = arguments_object(call.arguments)
    if args is None:
        raise Untranslatable(f"{where}: the tool call's arguments are not a JSON object")
    return {"functionCall": {"id": call.id, "name": call.name, "args": args}}


def _result_part(result: ToolResult, where: str, names: dict[str, str]) -> dict[str, Any]:
    name = result.name or names.get(result.id)
    if name is None:
        raise Untranslatable(
            f"{where}: the tool result answers no known tool call ('{result.id}') and Gemini needs its name"
        )
    texts = []
    for k, content in enumerate(result.content):
        if isinstance(content, Image):
            raise Untranslatable(f"{where}.content[{k}]: an image in a tool result cannot be sent to Gemini")
        texts.append(content.text)
    text = "\n".join(texts)
    response = arguments_object(text) if text.strip() else None
    if response is None:
        response = {"error" if result.is_error else "result": text}
    return {"functionResponse": {"id": result.id, "name": name, "response": response}}


def _content_parts(message: Message, i: int, request: ChatRequest, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    signature: str | None = None  # a Thinking's, for the part after it
    for j, part in enumerate(message.parts):
        where = f"messages[{i}].parts[{j}]"
        if isinstance(part, Thinking):
            if part.text or part.redacted:
                fields.drop(request.dropped, "thinking in history")
            if part.signature is not None and part.origin not in (None, NAME):
                fields.drop(request.dropped, "thinking signed by another provider")  # Gemini refuses it as corrupted
            elif part.signature is not None:
                if signature is not None:
                    parts.append({"text": "", "thoughtSignature": signature})
                signature = part.signature
            continue
        if isinstance(part, Text):
            written: dict[str, Any] = {"text": part.text}
        elif isinstance(part, Image):
            written = _image_part(part, where)
        elif isinstance(part, ToolCall):
            written = _call_part(part, where)
        else:
            written = _result_part(part, where, names)
        if signature is not None:
            written["thoughtSignature"] = signature
            signature = None
        parts.append(written)
    if signature is not None:
        parts.append({"text": "", "thoughtSignature": signature})
    return parts


def _sign_first_call(parts: list[dict[str, Any]]) -> None:
    for part in parts:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", SKIP_SIGNATURE)
            return


def _write_contents(request: ChatRequest) -> list[dict[str, Any]]:
    names = tool_names(request.messages)
    sign = request.model is None or not _UNSIGNED_MODELS.match(request.model)
    contents = []
    for i, message in enumerate(request.messages):
        parts = _content_parts(message, i, request, names)
        if not parts:
            continue  # Gemini refuses a content with no parts; nothing is lost
        if message.role == "assistant" and sign:
            _sign_first_call(parts)
        contents.append({"role": "model" if message.role == "assistant" else "user", "parts": parts})
    return contents


def _write_tool_config(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == "tool":
        calling: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        calling = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode]}
    return {"functionCallingConfig": calling}


def _write_declaration(tool: Tool, request: ChatRequest) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        declaration["description"] = tool.description
    if tool.parameters is not None:
        declaration["parametersJsonSchema"] = tool.parameters
    if tool.strict:
        fields.drop(request.dropped, "tools[].strict")
    return declaration


def _write_config(request: ChatRequest) -> dict[str, Any]:
    settings = (
        ("temperature", request.temperature),
        ("topP", request.top_p),
        ("topK", request.top_k),
        ("maxOutputTokens", request.max_tokens),
        ("stopSequences", list(request.stop) or None),
        ("candidateCount", request.n),
        ("seed", request.seed),
        ("presencePenalty", request.presence_penalty),
        ("frequencyPenalty", request.frequency_penalty),
        ("responseLogprobs", request.logprobs),
        ("logprobs", request.top_logprobs),
    )
    config: dict[str, Any] = {name: value for name, value in settings if value is not None}
    output = request.output
    if output is not None and output.kind != "text":
        config["responseMimeType"] = "application/json"
        if output.kind == "json_schema" and output.schema is not None:
            config["responseJsonSchema"] = output.schema
    thinking: dict[str, Any] = {}
    budget = request.thinking_budget
    if budget is None and request.reasoning_effort is not None:
        budget = EFFORT_BUDGET[request.reasoning_effort]
    if budget is not None:
        thinking["thinkingBudget"] = budget
    if request.include_thoughts is not None:
        thinking["includeThoughts"] = request.include_thoughts
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"contents": _write_contents(request)}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": t.text} for t in request.system]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_write_declaration(t, request) for t in request.tools]}]
    if request.tool_choice is not None:
        body["toolConfig"] = _write_tool_config(request.tool_choice)
    config = _write_config(request)
    if config:
        body["generationConfig"] = config
    if request.parallel_tool_calls is not None:
        fields.drop(request.dropped, "parallel_tool_calls")
    if request.user is not None:
        fields.drop(request.dropped, "user")
    return body, {}


# ---------------------------------------------------------------------------------------------
# Answers


def _finish(value: Any, has_calls: bool) -> FinishReason | None:
    if not isinstance(value, str) or value == "FINISH_REASON_UNSPECIFIED":
        return None
    reason = _FINISH_READ.get(value, "other")
    return "tool_calls" if reason == "stop" and has_calls else reason


def _usage(value: Any) -> Usage:
    """usageMetadata in the model's convention: the prompt with the tools' own prompts, and every
    generated token (Gemini's candidates exclude thoughts). Proto3 JSON omits zeros: a total with no
    candidates or thoughts counted means none were generated."""
    if not isinstance(value, dict):
        return Usage()
    prompt = _loose_int(value.get("promptTokenCount"))
    tool_prompt = _loose_int(value.get("toolUsePromptTokenCount"))
    candidates = _loose_int(value.get("candidatesTokenCount"))
    thoughts = _loose_int(value.get("thoughtsTokenCount"))
    total = _loose_int(value.get("totalTokenCount"))
    input_tokens = None if prompt is None and tool_prompt is None else (prompt or 0) + (tool_prompt or 0)
    output_tokens = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    if output_tokens is None and total is not None and input_tokens is not None and total >= input_tokens:
        output_tokens = total - input_tokens
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=_loose_int(value.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _usage_metadata(usage: Usage) -> dict[str, Any] | None:
    meta: dict[str, Any] = {}
    if usage.input_tokens is not None:
        meta["promptTokenCount"] = usage.input_tokens
    if usage.output_tokens is not None:
        meta["candidatesTokenCount"] = max(0, usage.output_tokens - (usage.reasoning_tokens or 0))
    if usage.reasoning_tokens is not None:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens is not None:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    if (total := usage.counted_total) is not None:
        meta["totalTokenCount"] = total
    return meta or None


def _created(value: Any) -> int | None:
    """Vertex's createTime (RFC 3339, up to nanoseconds) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def _call_id_prefix(response_id: Any) -> str:
    return response_id if isinstance(response_id, str) and response_id else os.urandom(6).hex()


def _candidate_index(candidate: dict[str, Any], position: int) -> int:
    index = _loose_int(candidate.get("index"))
    return index if index is not None else position


def _answer_parts(content: Any, prefix: str, choice: int) -> list[Part]:
    parts: list[Part] = []
    raw_parts = content.get("parts") if isinstance(content, dict) else None
    calls = 0
    for raw in raw_parts if isinstance(raw_parts, list) else []:
        if not isinstance(raw, dict):
            continue
        signature = fields.str_or_none(raw.get("thoughtSignature"))
        origin = NAME if signature is not None else None
        text = raw.get("text")
        if raw.get("thought") is True and isinstance(text, str):
            _add_thinking(parts, text, signature, origin)
            continue
        if signature is not None:
            _add_thinking(parts, "", signature, origin)
        call = raw.get("functionCall")
        if isinstance(text, str) and text:
            parts.append(Text(text))
        elif isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("args")
            call_id = fields.str_or_none(call.get("id")) or f"call_{prefix}_{choice}_{calls}"
            parts.append(ToolCall(call_id, call["name"], json_text(args if isinstance(args, dict) else {})))
            calls += 1
    return parts


def read_response(body: dict[str, Any]) -> ChatResponse:
    prefix = _call_id_prefix(body.get("responseId"))
    choices = []
    candidates = body.get("candidates")
    for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
        if not isinstance(candidate, dict):
            continue
        index = _candidate_index(candidate, position)
        parts = _answer_parts(candidate.get("content"), prefix, index)
        has_calls = any(isinstance(p, ToolCall) for p in parts)
        choices.append(Choice(index, parts, _finish(candidate.get("finishReason"), has_calls)))
    feedback = body.get("promptFeedback")
    if not choices and isinstance(feedback, dict) and feedback.get("blockReason"):
        choices.append(Choice(0, [], "content_filter"))
    return ChatResponse(
        id=fields.str_or_none(body.get("responseId")),
        model=fields.str_or_none(body.get("modelVersion")),
        choices=choices,
        usage=_usage(body.get("usageMetadata")),
        created=_created(body.get("createTime")),
    )


def _thought_part(text: str, signature: str | None, origin: str | None) -> dict[str, Any]:
    """A thought as a Gemini client is given it: another provider's signature sealed."""
    part: dict[str, Any] = {"text": text, "thought": True}
    if signature is not None:
        part["thoughtSignature"] = signed_for(signature, origin, NAME)
    return part


def _written_call(call_id: str, name: str, arguments: str) -> tuple[dict[str, Any], bool]:
    """A function call part; False when its arguments were not a JSON object (written as {})."""
    args = arguments_object(arguments)
    return {"functionCall": {"id": call_id, "name": name, "args": args or {}}}, args is not None


def _answer_part(part: Part) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return {"text": part.text}
    if isinstance(part, Thinking):
        if not part.text and part.signature is None:
            return None  # redacted thinking: Gemini has no form for it
        return _thought_part(part.text, part.signature, part.origin)
    if isinstance(part, ToolCall):
        return _written_call(part.id, part.name, part.arguments)[0]
    return None


def write_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    candidates = []
    for choice in response.choices:
        candidate: dict[str, Any] = {}
        parts = [p for p in map(_answer_part, choice.parts) if p is not None]
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if choice.finish is not None:
            candidate["finishReason"] = _FINISH_WRITE[choice.finish]
        candidate["index"] = choice.index
        candidates.append(candidate)
    body: dict[str, Any] = {}
    if candidates:
        body["candidates"] = candidates
    usage = _usage_metadata(response.usage)
    if usage is not None:
        body["usageMetadata"] = usage
    model = response.model or request.model
    if model is not None:
        body["modelVersion"] = model
    if response.id is not None:
        body["responseId"] = response.id
    return body


# ---------------------------------------------------------------------------------------------
# Errors


def _error_of(error: Any, status: int | None) -> ChatError:
    """A ChatError from Gemini's `error` object (google.rpc.Status), trusting its code over `status`."""
    error = error if isinstance(error, dict) else {}
    code = _loose_int(error.get("code"))
    status = code if code is not None and 100 <= code < 600 else (status or 500)
    message = fields.str_or_none(error.get("message")) or f"Gemini API error (HTTP {status})"
    kind = _KIND_OF_STATUS.get(fields.str_or_none(error.get("status")) or "") or kind_of_status(status)
    if kind == "invalid_request" and kind_of_status(status) == "too_large":
        kind = "too_large"
    details = error.get("details")
    reasons = {d.get("reason") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
    if "API_KEY_INVALID" in reasons:  # Gemini answers a bad key with 400 INVALID_ARGUMENT
        kind = "authentication"
    return ChatError(status=status, kind=kind, message=message)


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    try:
        value: Any = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, list) and value:  # the JSON array stream's form
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return ChatError(status=status, kind=kind_of_status(status), message=f"Gemini API error (HTTP {status})")
    result = _error_of(error, status)
    result.status = status
    return result


def _error_body(error: ChatError) -> dict[str, Any]:
    return {"error": {"code": error.status, "message": error.message, "status": _STATUS_OF_KIND[error.kind]}}


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    return error.status, {"content-type": "application/json"}, encode_json(_error_body(error))


# ---------------------------------------------------------------------------------------------
# Streams


class GeminiStreamReader:
    """streamGenerateContent as server-sent events (alt=sse) or as a JSON array, told apart by the
    first byte that is not white space: each element is a GenerateContentResponse chunk."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._framer: SSEFramer | JSONArrayFramer | None = None
        self._started = False
        self._prefix = ""
        self._calls: dict[int, int] = {}  # tool calls so far, by candidate

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self.error is not None:
            return []
        if self._framer is None:
            chunk = chunk.lstrip()
            if not chunk:
                return []
            self._framer = JSONArrayFramer() if chunk.startswith(b"[") else SSEFramer()
        return self._frames(self._framer.feed(chunk))

    def end(self) -> list[StreamEvent]:
        if self.error is not None or not isinstance(self._framer, SSEFramer):
            return []
        return self._frames(self._framer.feed(b"\n\n"))  # a last event with no blank line after it

    def _frames(self, frames: list[bytes]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in frames:
            if isinstance(self._framer, SSEFramer):
                event = parse_sse_block(frame)
                if event is None:
                    continue
                data = parse_json(event.data.encode())
            else:
                data = parse_json(frame)
            if data is None:
                self.error = "a stream element is not a JSON object"
                return events
            events.extend(self._chunk(data))
        if self._framer is not None and self._framer.error is not None:
            self.error = self._framer.error
        return events

    def _chunk(self, data: dict[str, Any]) -> list[StreamEvent]:
        if "error" in data:
            return [Failed(_error_of(data["error"], None))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._prefix = _call_id_prefix(data.get("responseId"))
            events.append(
                Started(
                    fields.str_or_none(data.get("responseId")),
                    fields.str_or_none(data.get("modelVersion")),
                    _created(data.get("createTime")),
                )
            )
        candidates = data.get("candidates")
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else []):
            if isinstance(candidate, dict):
                events.extend(self._candidate(candidate, _candidate_index(candidate, position)))
        feedback = data.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            events.append(Finished("content_filter", 0))
        if isinstance(data.get("usageMetadata"), dict):
            events.append(UsageReported(_usage(data["usageMetadata"])))
        return events

    def _candidate(self, candidate: dict[str, Any], choice: int) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict):
                events.extend(self._part(part, choice))
        finish = _finish(candidate.get("finishReason"), self._calls.get(choice, 0) > 0)
        if finish is not None:
            events.append(Finished(finish, choice))
        return events

    def _part(self, part: dict[str, Any], choice: int) -> list[StreamEvent]:
        signature = fields.str_or_none(part.get("thoughtSignature"))
        origin = NAME if signature is not None else None
        text = part.get("text")
        if part.get("thought") is True and isinstance(text, str):
            return [ThinkingDelta(text, signature, choice=choice, origin=origin)]
        events: list[StreamEvent] = []
        if signature is not None:
            events.append(ThinkingDelta("", signature, choice=choice, origin=origin))
        call = part.get("functionCall")
        if isinstance(text, str) and text:
            events.append(TextDelta(text, choice))
        elif isinstance(call, dict) and isinstance(call.get("name"), str):
            index = self._calls.get(choice, 0)
            self._calls[choice] = index + 1
            args = call.get("args")
            call_id = fields.str_or_none(call.get("id")) or f"call_{self._prefix}_{choice}_{index}"
            events.append(ToolCallStarted(index, call_id, call["name"], choice))
            events.append(ToolCallDelta(index, json_text(args if isinstance(args, dict) else {}), choice))
        return events


@dataclass(slots=True)
class _PendingCall:
    id: str
    name: str
    arguments: str = ""


class GeminiStreamWriter:
    """Writes a stream as Gemini does: one GenerateContentResponse chunk per piece of text or
    thought, each function call whole once it is complete, and the finish with the usage. Every
    chunk holds a candidate with a part, as google-genai's chats record a turn only then."""

    def __init__(self, request: ChatRequest, array: bool = False) -> None:
        self.content_type = "application/json" if array else "text/event-stream"
        self.notes: list[str] = []  # what could not be written as it came (arguments that were no object)
        self._array = array
        self._opened = False
        self._closed = False
        self._id: str | None = None
        self._model = request.model
        self._calls: dict[int, dict[int, _PendingCall]] = {}
        self._finishes: dict[int, FinishReason] = {}  # held for the usage
        self._finish_written = False
        self._usage = Usage()

    def write(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, Started):
            self._id = event.id or self._id
            self._model = event.model or self._model
            return b""
        if isinstance(event, TextDelta):
            return self._content(event.choice, {"text": event.text} if event.text else None)
        if isinstance(event, ThinkingDelta):
            empty = not event.text and event.signature is None
            thought = None if empty else _thought_part(event.text, event.signature, event.origin)
            return self._content(event.choice, thought)
        if isinstance(event, ToolCallStarted):
            out = self._flush_calls(event.choice)
            self._calls.setdefault(event.choice, {})[event.index] = _PendingCall(event.id, event.name)
            return out
        if isinstance(event, ToolCallDelta):
            pending = self._calls.get(event.choice, {}).get(event.index)
            if pending is not None:
                pending.arguments += event.arguments
            return b""
        if isinstance(event, Finished):
            # Held for the usage that upstreams report after their finish, to go out together.
            self._finishes[event.choice] = event.reason
            return self._flush_calls(event.choice)
        if isinstance(event, UsageReported):
            return self._usage_reported(event.usage)
        out = self._flush_all()
        return out + self._frame(_error_body(event.error))

    def end(self) -> bytes:
        if self._closed:
            return b""
        out = self._flush_all()
        self._closed = True
        if self._array:
            out += b"]" if self._opened else b"[]"
        return out

    def _usage_reported(self, usage: Usage) -> bytes:
        self._usage.update(usage)
        if self._finishes:
            return self._finish_chunk()
        if self._finish_written:  # a later count: a chunk of its own, with the empty part chats need
            return self._frame(self._chunk([self._candidate(0, [{"text": ""}])], with_usage=True))
        return b""

    def _flush_all(self) -> bytes:
        out = b"".join(self._flush_calls(choice) for choice in sorted(self._calls))
        return out + (self._finish_chunk() if self._finishes else b"")

    def _content(self, choice: int, part: dict[str, Any] | None) -> bytes:
        out = self._flush_calls(choice)  # a call before this content is complete
        if part is None:
            return out
        return out + self._frame(self._chunk([self._candidate(choice, [part])]))

    def _flush_calls(self, choice: int) -> bytes:
        pending = self._calls.pop(choice, {})
        out = b""
        for index in sorted(pending):
            call = pending[index]
            part, complete = _written_call(call.id, call.name, call.arguments)
            if not complete:
                self.notes.append(f"tool call {call.id}: its arguments were not a JSON object, written as {{}}")
            out += self._frame(self._chunk([self._candidate(choice, [part])]))
        return out

    def _finish_chunk(self) -> bytes:
        candidates = [
            self._candidate(choice, [{"text": ""}], _FINISH_WRITE[reason])
            for choice, reason in sorted(self._finishes.items())
        ]
        self._finishes.clear()
        self._finish_written = True
        return self._frame(self._chunk(candidates, with_usage=True))

    @staticmethod
    def _candidate(choice: int, parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = choice
        return candidate

    def _chunk(self, candidates: list[dict[str, Any]], with_usage: bool = False) -> dict[str, Any]:
        chunk: dict[str, Any] = {"candidates": candidates}
        usage = _usage_metadata(self._usage) if with_usage else None
        if usage is not None:
            chunk["usageMetadata"] = usage
        if self._model is not None:
            chunk["modelVersion"] = self._model
        if self._id is not None:
            chunk["responseId"] = self._id
        return chunk

    def _frame(self, value: dict[str, Any]) -> bytes:
        data = encode_json(value)
        if not self._array:
            return sse(data, newline=b"\r\n")
        head = b",\r\n" if self._opened else b"["
        self._opened = True
        return head + data


# ---------------------------------------------------------------------------------------------
# The format


def array_stream_writer(request: ChatRequest) -> GeminiStreamWriter:
    """A JSON array written element by element, as streamGenerateContent without alt=sse answers (the
    format's own `stream_writer` writes server-sent events, as it answers with alt=sse: google-genai
    asks that)."""
    return GeminiStreamWriter(request, array=True)


GEMINI_GENERATE = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=GeminiStreamReader,
    stream_writer=GeminiStreamWriter,
    read_error=read_error,
    write_error=write_error,
)
