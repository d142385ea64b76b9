"""streamGenerateContent's stream, written: server-sent events as with alt=sse (the format's own
`stream_writer`), or a JSON array written element by element (`array_stream_writer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tollgate.formats import chat
from tollgate.formats.block_order import BlockOrder
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.gemini_generate.answer import FINISH_WRITE, write_usage_metadata, written_call
from tollgate.formats.gemini_generate.errors import error_body
from tollgate.formats.gemini_generate.thoughts import thought_part
from tollgate.formats.usage import Usage


@dataclass(slots=True)
class _PendingCall:
    id: str
    name: str
    arguments: str = ""


class GeminiStreamWriter:
    """Writes a stream as Gemini does: one GenerateContentResponse chunk per piece of text or
    thought, each function call whole once it is complete, and the finish with the usage. Every
    chunk holds a candidate with a part, as google-genai's chats record a turn only then. A call is
    complete when the next begins: parallel calls that interleave are put in order first
    (`BlockOrder`), a later call held until the one before is whole."""

    def __init__(self, request: chat.ChatRequest, array: bool = False) -> None:
        self.content_type = "application/json" if array else "text/event-stream"
        self.notes: list[str] = []  # what could not be written as it came (arguments that were no object)
        self._array = array
        self._opened = False
        self._closed = False
        self._id: str | None = None
        self._model = request.model
        self._calls: dict[int, dict[int, _PendingCall]] = {}
        self._finishes: dict[int, chat.FinishReason] = {}  # held for the usage
        self._finish_written = False
        self._usage = Usage()
        self._order = BlockOrder()

    def write(self, event: chat.StreamEvent) -> bytes:
        return b"".join([self._write(e) for e in self._order.feed(event)])

    def _write(self, event: chat.StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, chat.Started):
            self._id = event.id or self._id
            self._model = event.model or self._model
            return b""
        if isinstance(event, chat.TextDelta):
            return self._content(event.choice, {"text": event.text} if event.text else None)
        if isinstance(event, chat.ThinkingDelta):
            empty = not event.text and event.signature is None
            thought = None if empty else thought_part(event.text, event.signature, event.origin)
            return self._content(event.choice, thought)
        if isinstance(event, chat.ToolCallStarted):
            out = self._flush_calls(event.choice)
            self._calls.setdefault(event.choice, {})[event.index] = _PendingCall(event.id, event.name)
            return out
        if isinstance(event, chat.ToolCallDelta):
            pending = self._calls.get(event.choice, {}).get(event.index)
            if pending is not None:
                pending.arguments += event.arguments
            return b""
        if isinstance(event, chat.Finished):
            # Held for the usage that upstreams report after their finish, to go out together.
            self._finishes[event.choice] = event.reason
            return self._flush_calls(event.choice)
        if isinstance(event, chat.UsageReported):
            return self._usage_reported(event.usage)
        out = self._flush_all()
        return out + self._frame(error_body(event.error))

    def end(self) -> bytes:
        if self._closed:
            return b""
        out = b"".join([self._write(e) for e in self._order.end()])
        out += self._flush_all()
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
            part, complete = written_call(call.id, call.name, call.arguments)
            if not complete:
                self.notes.append(f"tool call {call.id}: its arguments were not a JSON object, written as {{}}")
            out += self._frame(self._chunk([self._candidate(choice, [part])]))
        return out

    def _finish_chunk(self) -> bytes:
        candidates = [
            self._candidate(choice, [{"text": ""}], FINISH_WRITE[reason])
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
        usage = write_usage_metadata(self._usage) if with_usage else None
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
            return chat.sse(data, newline=b"\r\n")
        head = b",\r\n" if self._opened else b"["
        self._opened = True
        return head + data


def array_stream_writer(request: chat.ChatRequest) -> GeminiStreamWriter:
    """A JSON array written element by element, as streamGenerateContent without alt=sse answers (the
    format's own `stream_writer` writes server-sent events, as it answers with alt=sse: google-genai
    asks that)."""
    return GeminiStreamWriter(request, array=True)
