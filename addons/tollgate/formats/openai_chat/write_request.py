"""Writing a Chat Completions request from the common chat model, and asking a client's own chat
stream for its usage."""

from __future__ import annotations

from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.request_facts import Classification


def _media_type(image: chat.Image) -> str:
    """A data URL needs a media type: the image's own, else its bytes' signature says it."""
    if image.media_type and image.media_type != "image/*":
        return image.media_type
    return chat.sniffed_media_type(image.data or "") or "image/png"


def _image_url(image: chat.Image, where: str) -> str:
    if image.data is not None:
        return f"data:{_media_type(image)};base64,{image.data}"
    if image.url is not None and image.url.startswith(("https://", "http://", "data:")):
        return image.url
    raise chat.Untranslatable(f"{where}: an image by reference other than an http(s) URL cannot be translated")


def _texts_content(texts: list[chat.Text]) -> str | list[dict[str, Any]]:
    """One text as a plain string (as most callers send it), several as text parts."""
    if len(texts) == 1:
        return texts[0].text
    if not texts:
        return ""
    return [{"type": "text", "text": t.text} for t in texts]


def _write_tool_result(result: chat.ToolResult, where: str, request: chat.ChatRequest) -> dict[str, Any]:
    texts = []
    for part in result.content:
        if not isinstance(part, chat.Text):
            raise chat.Untranslatable(f"{where}: an image in a tool result cannot be translated")
        texts.append(part)
    if result.is_error:
        fields.drop(request.dropped, "is_error")
    return {"role": "tool", "tool_call_id": result.id, "content": _texts_content(texts)}


def _write_user(message: chat.Message, where: str, request: chat.ChatRequest) -> list[dict[str, Any]]:
    """Tool results as tool messages (which must follow the assistant's calls), then the rest."""
    out = []
    content: list[chat.Text | chat.Image] = []
    for j, part in enumerate(message.parts):
        at = f"{where}.parts[{j}]"
        if isinstance(part, chat.ToolResult):
            out.append(_write_tool_result(part, at, request))
        elif isinstance(part, chat.Text | chat.Image):
            content.append(part)
        else:
            raise chat.Untranslatable(f"{at}: a {type(part).__name__} in a user message cannot be translated")
    if content or not out:
        out.append({"role": "user", "content": _user_content(content, where)})
    return out


def _user_content(parts: list[chat.Text | chat.Image], where: str) -> str | list[dict[str, Any]]:
    if all(isinstance(p, chat.Text) for p in parts):
        return _texts_content([p for p in parts if isinstance(p, chat.Text)])
    return [
        {"type": "text", "text": p.text}
        if isinstance(p, chat.Text)
        else {"type": "image_url", "image_url": {"url": _image_url(p, f"{where}.parts[{j}]")}}
        for j, p in enumerate(parts)
    ]


def _write_assistant(message: chat.Message, where: str, request: chat.ChatRequest) -> dict[str, Any]:
    texts: list[chat.Text] = []
    calls: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        if isinstance(part, chat.Text):
            texts.append(part)
        elif isinstance(part, chat.ToolCall):
            calls.append(tool_call_body(part))
        elif isinstance(part, chat.Thinking):
            fields.drop(request.dropped, "reasoning in history")  # Chat Completions cannot carry it back
        else:
            raise chat.Untranslatable(
                f"{where}.parts[{j}]: a {type(part).__name__} from the assistant cannot be translated"
            )
    body: dict[str, Any] = {"role": "assistant", "content": _texts_content(texts) if texts or not calls else None}
    if calls:
        body["tool_calls"] = calls
    return body


def tool_call_body(call: chat.ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _tool_body(tool: chat.Tool) -> dict[str, Any]:
    given = (("description", tool.description), ("parameters", tool.parameters), ("strict", tool.strict))
    function: dict[str, Any] = {"name": tool.name} | {name: value for name, value in given if value is not None}
    return {"type": "function", "function": function}


def _tool_choice_body(choice: chat.ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return choice.mode


def _output_body(output: chat.OutputFormat) -> dict[str, Any]:
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


def _write_reasoning(request: chat.ChatRequest, body: dict[str, Any]) -> None:
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
        if request.thinking_budget is not None:
            fields.drop(request.dropped, "thinking_budget")
    elif request.thinking_budget == 0:
        body["reasoning_effort"] = "none"  # newer models' "no reasoning", as read
    elif request.thinking_budget is not None:
        body["reasoning_effort"] = chat.effort_of_budget(request.thinking_budget)
    if request.include_thoughts:
        fields.drop(request.dropped, "include_thoughts")


def write_request(request: chat.ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
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


def ask_for_usage(classification: Classification, body: dict[str, Any] | None) -> bool:
    """`audit.stream_usage: inject`: ask a chat stream for the usage the client did not ask for
    (`stream_options.include_usage`; StreamTap hides the usage chunk from the client). Returns
    whether `body` was changed."""
    if classification.endpoint != "chat.completions" or not classification.facts.stream or body is None:
        return False
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return False
    if (options or {}).get("include_usage") is True:
        return False
    body["stream_options"] = {**(options or {}), "include_usage": True}
    return True
