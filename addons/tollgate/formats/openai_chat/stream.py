"""Chat Completions streams read: the usage tail every streamed answer passes through
(`ChatStreamReader`, which frames nothing while the stream flows) and the full event reader a
translation reads the stream with (`ChatEventReader`)."""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import SSEFramer, parse_sse_block
from tollgate.formats.openai_chat.answer import (
    answer_usage,
    finish_reason,
    read_finish,
    reasoning_of,
    translated_usage,
    usage_object,
)
from tollgate.formats.openai_chat.errors import error_of
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import SSEReader

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')


class ChatStreamReader(SSEReader):
    """Chat completions: usage comes in the last chunk (which may also carry choices)."""

    # Servers write compact JSON or one space after colons; `keep` checks each with a regex.
    wanted = (b'"usage":{', b'"usage": {', b'"finish_reason":"', b'"finish_reason": "', b'"error"')

    def __init__(self) -> None:
        super().__init__()
        self._usage: bytes | None = None
        self._finish: bytes | None = None

    def keep(self, block: bytes) -> None:
        if self._usage is None and _USAGE_OBJECT.search(block):
            self._usage = block
        if self._finish is None and _FINISH_REASON.search(block):
            self._finish = block
        if b'"error"' in block:
            error = (self.data(block) or {}).get("error")
            if isinstance(error, dict):
                kind = error.get("type") or error.get("code") or "unknown"
                self.error = f"the stream ended in an error: {kind}"

    def has_all(self) -> bool:
        return self._usage is not None and self._finish is not None

    def read(self) -> Usage:
        usage = answer_usage(self.data(self._usage) or {}, "chat.completions")
        finish = self.data(self._finish)
        if finish is not None:
            usage.finish_reason = finish_reason(finish)
        return usage


class ChatEventReader:
    """Chat completion chunks (`data: {...}` events, `data: [DONE]` last) as stream events."""

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self.error: str | None = None
        self._started = False
        self._done = False
        self._calls: dict[int, dict[int, str]] = {}  # each choice's started tool calls: index → id
        self._last_call: dict[int, int] = {}  # each choice's latest call, for entries without index

    def feed(self, chunk: bytes) -> list[chat.StreamEvent]:
        if self.error is not None:
            return []
        events: list[chat.StreamEvent] = []
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

    def end(self) -> list[chat.StreamEvent]:
        return self.feed(b"\n\n")  # completes a last event that lacked its blank line

    def _read_block(self, block: bytes) -> list[chat.StreamEvent]:
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
            return [chat.Failed(error_of(data.get("error", data), None))]
        events: list[chat.StreamEvent] = []
        if not self._started:
            self._started = True
            created = fields.int_or_none(data.get("created"))
            events.append(
                chat.Started(fields.str_or_none(data.get("id")), fields.str_or_none(data.get("model")), created)
            )
        choices = data.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                events.extend(self._read_choice(choice))
        usage = usage_object(data)
        if usage is not None:
            events.append(chat.UsageReported(translated_usage(usage)))
        return events

    def _read_choice(self, choice: dict[str, Any]) -> list[chat.StreamEvent]:
        index = fields.int_or_none(choice.get("index")) or 0
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        events: list[chat.StreamEvent] = []
        reasoning = reasoning_of(delta)
        if reasoning:
            events.append(chat.ThinkingDelta(reasoning, choice=index))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.append(chat.TextDelta(text, choice=index))
        entries = delta.get("tool_calls")
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                events.extend(self._read_tool_call(entry, index))
        finish = read_finish(choice.get("finish_reason"), bool(self._calls.get(index)))
        if finish is not None:
            events.append(chat.Finished(finish, choice=index))
        return events

    def _read_tool_call(self, entry: dict[str, Any], choice: int) -> list[chat.StreamEvent]:
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
        events: list[chat.StreamEvent] = []
        if index not in calls:
            if not (call_id or name):
                return []  # arguments of a call never started
            calls[index] = call_id or f"call_{choice}_{index}"
            events.append(chat.ToolCallStarted(index, calls[index], name or "", choice=choice))
        self._last_call[choice] = index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(chat.ToolCallDelta(index, arguments, choice=choice))
        return events
