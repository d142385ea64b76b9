"""Chat Completions streams written: stream events as chat completion chunks."""

from __future__ import annotations

import time
from typing import Any

from tollgate.formats import chat
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.openai_chat.answer import usage_body
from tollgate.formats.openai_chat.errors import error_body
from tollgate.formats.openai_chat.fields import OPENAI_OF_FINISH
from tollgate.formats.usage import Usage


class ChatStreamWriter:
    """Stream events as chat completion chunks, each written as it comes."""

    content_type = "text/event-stream"

    def __init__(self, request: chat.ChatRequest) -> None:
        self._request = request
        self._head: dict[str, Any] | None = None  # id, object, created, model: the same in every chunk
        self._opened: set[int] = set()  # choices whose role went out
        self._usage = Usage()
        self._usage_known = False
        self._closed = False

    def write(self, event: chat.StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, chat.Started):
            self._start(event)
            return b""
        if isinstance(event, chat.TextDelta):
            return self._delta(event.choice, {"content": event.text}) if event.text else b""
        if isinstance(event, chat.ThinkingDelta):
            return self._delta(event.choice, {"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, chat.ToolCallStarted):
            call = {"index": event.index, "id": event.id, "type": "function"}
            call["function"] = {"name": event.name, "arguments": ""}
            return self._delta(event.choice, {"tool_calls": [call]})
        if isinstance(event, chat.ToolCallDelta):
            entry = {"index": event.index, "function": {"arguments": event.arguments}}
            return self._delta(event.choice, {"tool_calls": [entry]})
        if isinstance(event, chat.Finished):
            return self._delta(event.choice, {}, OPENAI_OF_FINISH[event.reason])
        if isinstance(event, chat.UsageReported):
            self._usage.update(event.usage)
            self._usage_known = True
            return b""
        self._closed = True  # Failed: OpenAI's SDK raises on the error; nothing follows it
        return chat.sse(encode_json(error_body(event.error)))

    def end(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        usage = usage_body(self._usage) if self._usage_known else None
        head = b""
        if self._request.stream_usage and usage is not None:
            head = self._chunk([], usage)
        return head + b"data: [DONE]\n\n"

    def _start(self, event: chat.Started) -> None:
        if self._head is not None:
            return
        created = event.created if event.created is not None else int(time.time())
        model = event.model or self._request.model or ""
        self._head = {
            "id": chat.answer_id("chatcmpl-", event.id),
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
            self._start(chat.Started())
        assert self._head is not None
        chunk = {**self._head, "choices": choices}
        if self._request.stream_usage:
            chunk["usage"] = usage  # null but in the last chunk, as OpenAI writes it
        return chat.sse(encode_json(chunk))
