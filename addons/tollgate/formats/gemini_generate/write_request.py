"""A generateContent body written from the common chat model (`write_request`): camelCase, no
model in the body (the path names it), thought signatures put back on the parts they signed."""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.gemini_generate.fields import NAME
from tollgate.formats.gemini_generate.thoughts import SKIP_SIGNATURE

_GEMINI_FILE = re.compile(r"https://generativelanguage\.googleapis\.com/v\d+\w*/files/[^/?#]+")
# Models that neither need nor check thought signatures on function calls.
_UNSIGNED_MODELS = re.compile(r"(models/)?gemini-[12][.-]")


def _image_part(image: chat.Image, where: str) -> dict[str, Any]:
    known = image.media_type if image.media_type and image.media_type != "image/*" else None
    data = image.data
    url = image.url or ""
    if data is None and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        if not header.endswith(";base64"):
            raise chat.Untranslatable(f"{where}: an image data URL that is not base64 cannot be translated")
        known = known or header.removesuffix(";base64") or None
    if data is not None:
        media_type = known or chat.sniffed_media_type(data)
        if media_type is None:
            raise chat.Untranslatable(f"{where}: the image's media type is unknown and Gemini needs it")
        return {"inlineData": {"mimeType": media_type, "data": data}}
    if _GEMINI_FILE.fullmatch(url):
        file: dict[str, Any] = {"fileUri": url}
        if known:
            file = {"mimeType": known, **file}
        return {"fileData": file}
    raise chat.Untranslatable(
        f"{where}: an image by URL cannot be sent to Gemini (inline data or Gemini file URIs only)"
    )


def _call_part(call: chat.ToolCall, where: str) -> dict[str, Any]:
    args = chat.arguments_object(call.arguments)
    if args is None:
        raise chat.Untranslatable(f"{where}: the tool call's arguments are not a JSON object")
    return {"functionCall": {"id": call.id, "name": call.name, "args": args}}


def _result_part(result: chat.ToolResult, where: str, names: dict[str, str]) -> dict[str, Any]:
    name = result.name or names.get(result.id)
    if name is None:
        raise chat.Untranslatable(
            f"{where}: the tool result answers no known tool call ('{result.id}') and Gemini needs its name"
        )
    texts = []
    for k, content in enumerate(result.content):
        if isinstance(content, chat.Image):
            raise chat.Untranslatable(f"{where}.content[{k}]: an image in a tool result cannot be sent to Gemini")
        texts.append(content.text)
    text = "\n".join(texts)
    response = chat.arguments_object(text) if text.strip() else None
    if response is None:
        response = {"error" if result.is_error else "result": text}
    return {"functionResponse": {"id": result.id, "name": name, "response": response}}


def _content_parts(
    message: chat.Message, i: int, request: chat.ChatRequest, names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    signature: str | None = None  # a Thinking's, for the part after it
    for j, part in enumerate(message.parts):
        where = f"messages[{i}].parts[{j}]"
        if isinstance(part, chat.Thinking):
            if part.text or part.redacted:
                fields.drop(request.dropped, "thinking in history")
            if part.signature is not None and part.origin not in (None, NAME):
                fields.drop(request.dropped, "thinking signed by another provider")  # Gemini refuses it as corrupted
            elif part.signature is not None:
                if signature is not None:
                    parts.append({"text": "", "thoughtSignature": signature})
                signature = part.signature
            continue
        if isinstance(part, chat.Text):
            written: dict[str, Any] = {"text": part.text}
        elif isinstance(part, chat.Image):
            written = _image_part(part, where)
        elif isinstance(part, chat.ToolCall):
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


def _write_contents(request: chat.ChatRequest) -> list[dict[str, Any]]:
    names = chat.tool_names(request.messages)
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


def _write_tool_config(choice: chat.ToolChoice) -> dict[str, Any]:
    if choice.mode == "tool":
        calling: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        calling = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode]}
    return {"functionCallingConfig": calling}


def _write_declaration(tool: chat.Tool, request: chat.ChatRequest) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        declaration["description"] = tool.description
    if tool.parameters is not None:
        declaration["parametersJsonSchema"] = tool.parameters
    if tool.strict:
        fields.drop(request.dropped, "tools[].strict")
    return declaration


def _write_config(request: chat.ChatRequest) -> dict[str, Any]:
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
        budget = chat.EFFORT_BUDGET[request.reasoning_effort]
    if budget is not None:
        thinking["thinkingBudget"] = budget
    if request.include_thoughts is not None:
        thinking["includeThoughts"] = request.include_thoughts
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def write_request(request: chat.ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
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
