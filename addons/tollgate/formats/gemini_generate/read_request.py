"""A generateContent body read exactly into the common chat model (`read_request`): the model is in
the path, not the body, so `model` is left None for the caller to set. Gemini reads its fields
under camelCase or snake_case names (google-genai sends camelCase, hand-made clients may send
snake_case): both are read, and a field given in both spellings is refused. Function calls often
carry no id: calls get `call_<n>` by their position in the contents, and a function response
without an id answers the latest unanswered call of its name."""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.gemini_generate.fields import NAME, REQUEST_FIELDS
from tollgate.formats.gemini_generate.thoughts import SKIP_SIGNATURE, add_thinking

_EFFORT_OF_LEVEL: dict[str, chat.Effort] = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}
_SNAKE = re.compile(r"_([a-z0-9])")

# ---------------------------------------------------------------------------------------------
# Small readers of JSON values

# Gemini's refusals say "contents[0].parts[0].text is not a string" (the other formats': "must be").
_exact = fields.Exact("is not")


def _camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def _fields(value: Any, level: str, where: str, request: chat.ChatRequest) -> dict[str, Any]:
    """An API object of the request, its keys in camelCase: fields the table refuses or does not know
    raise, dropped ones are noted and left out, nulls are absent (as proto3 JSON reads them)."""
    if not isinstance(value, dict):
        raise chat.Untranslatable(f"{where or 'the body'} is not a JSON object")
    table = REQUEST_FIELDS[level]
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(key)
        path = f"{where}.{key}" if where else key
        if name in out or (name != key and name in value):
            raise chat.Untranslatable(f"{where or 'the body'} sets both '{name}' and its snake_case spelling")
        if item is None:
            continue
        disposition = table.get(name)
        if disposition is None or disposition == "refused":
            raise chat.Untranslatable(f"{path} cannot be translated")
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
            raise chat.Untranslatable(f"{where} sets both '{name}' and its snake_case spelling")
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
# The contents, the system instruction, tools and configuration


class _RequestReader:
    """Reads one request's contents in order: call ids by position, responses matched to calls."""

    def __init__(self, request: chat.ChatRequest) -> None:
        self.request = request
        self.calls: list[chat.ToolCall] = []
        self.answered: set[str] = set()

    def contents(self, value: Any) -> list[chat.Message]:
        messages: list[chat.Message] = []
        for i, raw in enumerate(_exact.array_or_empty(value, "contents")):
            where = f"contents[{i}]"
            content = _fields(raw, "contents[]", where, self.request)
            role = _exact.optional_string(content.get("role"), f"{where}.role")
            if role in (None, "", "user", "function"):
                message = chat.Message("user", [])
            elif role == "model":
                message = chat.Message("assistant", [])
            else:
                raise chat.Untranslatable(f"{where}.role '{role}' cannot be translated")
            if message.role == "assistant" and messages and messages[-1].role == "assistant":
                # One turn: google-genai's chats keep a streamed answer as a content per chunk, and a
                # thought summary must join the signature after it (`add_thinking`).
                message = messages[-1]
            else:
                messages.append(message)
            for j, part in enumerate(_exact.array_or_empty(content.get("parts"), f"{where}.parts")):
                self.part(part, f"{where}.parts[{j}]", message)
        return messages

    def part(self, raw: Any, where: str, message: chat.Message) -> None:
        part = _fields(raw, "contents[].parts[]", where, self.request)
        kinds = [k for k in ("text", "inlineData", "fileData", "functionCall", "functionResponse") if k in part]
        if len(kinds) > 1:
            raise chat.Untranslatable(f"{where} holds both {kinds[0]} and {kinds[1]}")
        thought = _exact.optional_bool(part.get("thought"), f"{where}.thought")
        signature = _exact.optional_string(part.get("thoughtSignature"), f"{where}.thoughtSignature")
        origin = None
        if signature == SKIP_SIGNATURE:
            signature = None  # no signature: the marker that history from elsewhere carries none
        elif signature is not None:
            signature, origin = chat.unseal(signature)  # another model's, sealed when this client was given it
            origin = origin or NAME
        model = message.role == "assistant"
        if (thought or signature is not None) and not model:
            raise chat.Untranslatable(f"{where}: a thought or thoughtSignature in a user content cannot be translated")
        kind = kinds[0] if kinds else None
        if thought:
            if kind not in (None, "text"):
                raise chat.Untranslatable(f"{where}.thought on a {kind} part cannot be translated")
            add_thinking(message.parts, _exact.string(part.get("text", ""), f"{where}.text"), signature, origin)
            return
        if signature is not None:
            add_thinking(message.parts, "", signature, origin)
        if kind is None:
            if signature is None:
                raise chat.Untranslatable(f"{where} holds no content")
        elif kind == "text":
            text = _exact.string(part["text"], f"{where}.text")
            if text or signature is None:
                message.parts.append(chat.Text(text))
        elif kind in ("inlineData", "fileData"):
            message.parts.append(self.image(part[kind], kind, f"{where}.{kind}"))
        elif kind == "functionCall":
            if not model:
                raise chat.Untranslatable(f"{where}.functionCall in a user content cannot be translated")
            message.parts.append(self.call(part[kind], f"{where}.functionCall"))
        else:
            if model:
                raise chat.Untranslatable(f"{where}.functionResponse in a model content cannot be translated")
            message.parts.append(self.result(part[kind], f"{where}.functionResponse"))

    def image(self, raw: Any, kind: str, where: str) -> chat.Image:
        blob = _fields(raw, f"contents[].parts[].{kind}", where, self.request)
        mime = _exact.optional_string(blob.get("mimeType"), f"{where}.mimeType")
        if mime is None or not mime.lower().startswith("image/"):
            raise chat.Untranslatable(f"{where}.mimeType '{mime}' cannot be translated (images only)")
        if kind == "inlineData":
            return chat.Image(media_type=mime, data=_exact.string(blob.get("data"), f"{where}.data"))
        return chat.Image(media_type=mime, url=_exact.string(blob.get("fileUri"), f"{where}.fileUri"))

    def call(self, raw: Any, where: str) -> chat.ToolCall:
        call = _fields(raw, "contents[].parts[].functionCall", where, self.request)
        name = _exact.string(call.get("name"), f"{where}.name")
        args = _exact.obj(call.get("args", {}), f"{where}.args")
        given = _exact.optional_string(call.get("id"), f"{where}.id")
        tool_call = chat.ToolCall(id=given or f"call_{len(self.calls)}", name=name, arguments=chat.json_text(args))
        self.calls.append(tool_call)
        return tool_call

    def result(self, raw: Any, where: str) -> chat.ToolResult:
        answer = _fields(raw, "contents[].parts[].functionResponse", where, self.request)
        name = _exact.string(answer.get("name"), f"{where}.name")
        response = _exact.obj(answer.get("response", {}), f"{where}.response")
        call_id = _exact.optional_string(answer.get("id"), f"{where}.id") or self.unanswered(name, where)
        self.answered.add(call_id)
        # Gemini's convention: {"output": …} for a result, {"error": …} for a failure.
        return chat.ToolResult(
            call_id, name, [chat.Text(chat.json_text(response))], is_error=set(response) == {"error"}
        )

    def unanswered(self, name: str, where: str) -> str:
        for call in reversed(self.calls):
            if call.name == name and call.id not in self.answered:
                return call.id
        raise chat.Untranslatable(f"{where} answers no earlier functionCall named '{name}'")


def _read_system(value: Any, request: chat.ChatRequest) -> list[chat.Text]:
    if isinstance(value, str):
        return [chat.Text(value)]
    content = _fields(value, "systemInstruction", "systemInstruction", request)
    texts = []
    for i, raw in enumerate(_exact.array_or_empty(content.get("parts"), "systemInstruction.parts")):
        where = f"systemInstruction.parts[{i}]"
        part = _fields(raw, "systemInstruction.parts[]", where, request)
        texts.append(chat.Text(_exact.string(part.get("text"), f"{where}.text")))
    return texts


def _read_tools(value: Any, request: chat.ChatRequest) -> list[chat.Tool]:
    tools = []
    for i, raw in enumerate(_exact.array_or_empty(value, "tools")):
        tool = _fields(raw, "tools[]", f"tools[{i}]", request)
        declarations = _exact.array_or_empty(tool.get("functionDeclarations"), f"tools[{i}].functionDeclarations")
        for j, raw_declaration in enumerate(declarations):
            where = f"tools[{i}].functionDeclarations[{j}]"
            declaration = _fields(raw_declaration, "tools[].functionDeclarations[]", where, request)
            if "parameters" in declaration and "parametersJsonSchema" in declaration:
                raise chat.Untranslatable(f"{where} sets both parameters and parametersJsonSchema")
            if "parameters" in declaration:
                parameters = json_schema_of_openapi(
                    _exact.obj(declaration["parameters"], f"{where}.parameters"), f"{where}.parameters"
                )
            else:
                parameters = declaration.get("parametersJsonSchema")
                if parameters is not None:
                    _exact.obj(parameters, f"{where}.parametersJsonSchema")
            tools.append(
                chat.Tool(
                    name=_exact.string(declaration.get("name"), f"{where}.name"),
                    description=_exact.optional_string(declaration.get("description"), f"{where}.description"),
                    parameters=parameters,
                )
            )
    return tools


def _read_tool_choice(value: Any, tools: list[chat.Tool], request: chat.ChatRequest) -> chat.ToolChoice | None:
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
        raise chat.Untranslatable(f"{where}.allowedFunctionNames with mode {mode} cannot be translated")
    if len(names) > 1:
        raise chat.Untranslatable(f"{where}.allowedFunctionNames with several names cannot be translated")
    if mode == "ANY":
        return chat.ToolChoice("tool", names.pop()) if names else chat.ToolChoice("required")
    if mode in ("AUTO", "VALIDATED"):
        return chat.ToolChoice("auto")
    if mode == "NONE":
        return chat.ToolChoice("none")
    if mode == "MODE_UNSPECIFIED":
        return None
    raise chat.Untranslatable(f"{where}.mode '{mode}' cannot be translated")


def _read_output(config: dict[str, Any]) -> chat.OutputFormat | None:
    where = "generationConfig"
    mime = _exact.optional_string(config.get("responseMimeType"), f"{where}.responseMimeType")
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise chat.Untranslatable(f"{where} sets both responseSchema and responseJsonSchema")
    schema: Any = None
    if "responseSchema" in config:
        schema = json_schema_of_openapi(
            _exact.obj(config["responseSchema"], f"{where}.responseSchema"), f"{where}.responseSchema"
        )
    elif "responseJsonSchema" in config:
        schema = _exact.obj(config["responseJsonSchema"], f"{where}.responseJsonSchema")
    if mime is not None and mime.lower() == "application/json":
        return chat.OutputFormat("json") if schema is None else chat.OutputFormat("json_schema", schema=schema)
    if schema is not None:
        field = "responseSchema" if "responseSchema" in config else "responseJsonSchema"
        raise chat.Untranslatable(f"{where}.{field} without responseMimeType 'application/json' cannot be translated")
    if mime is None or mime.lower() == "text/plain":
        return None
    raise chat.Untranslatable(f"{where}.responseMimeType '{mime}' cannot be translated")


def _read_thinking(value: Any, request: chat.ChatRequest) -> None:
    where = "generationConfig.thinkingConfig"
    thinking = _fields(value, where, where, request)
    budget = _integer(thinking.get("thinkingBudget"), f"{where}.thinkingBudget")
    request.thinking_budget = None if budget == -1 else budget  # -1: dynamic, the default
    request.include_thoughts = _exact.optional_bool(thinking.get("includeThoughts"), f"{where}.includeThoughts")
    level = _exact.optional_string(thinking.get("thinkingLevel"), f"{where}.thinkingLevel")
    if level is not None and level.upper() != "THINKING_LEVEL_UNSPECIFIED":
        effort = _EFFORT_OF_LEVEL.get(level.lower())
        if effort is None:
            raise chat.Untranslatable(f"{where}.thinkingLevel '{level}' cannot be translated")
        request.reasoning_effort = effort


def _read_config(value: Any, request: chat.ChatRequest) -> None:
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
        raise chat.Untranslatable(f"{where}.responseModalities {modalities} cannot be translated (only TEXT)")
    if "thinkingConfig" in config:
        _read_thinking(config["thinkingConfig"], request)


def read_request(body: dict[str, Any]) -> chat.ChatRequest:
    request = chat.ChatRequest(model=None, messages=[])
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
