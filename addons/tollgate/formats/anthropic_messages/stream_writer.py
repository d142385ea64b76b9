"""The common events written as a Messages stream, for a client a translation answers."""

from __future__ import annotations

from typing import Any

from tollgate.formats import chat
from tollgate.formats.anthropic_messages.answer import stop_reason_of, write_usage
from tollgate.formats.anthropic_messages.errors import ERROR_TYPE_OF_KIND
from tollgate.formats.anthropic_messages.fields import NAME
from tollgate.formats.block_order import BlockOrder
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.usage import Usage


def write_event(kind: str, data: dict[str, Any]) -> bytes:
    """One Messages stream event, its `type` the SSE event's name."""
    return chat.sse(encode_json({"type": kind, **data}), kind)


class MessagesStreamWriter:
    """Writes the common events as a Messages stream, as the anthropic SDK's accumulator reads it.

    message_start goes out at once with the usage known by then (usually none: zeros); the usage
    reported later goes out in message_delta, which waits for `end()` so that usage reported after
    the finish goes with it (the SDK takes message_delta's counts over message_start's). Content
    blocks follow one another: parallel tool calls that interleave are put in order (`BlockOrder`),
    a later call held until the one before is whole."""

    content_type = "text/event-stream"

    def __init__(self, request: chat.ChatRequest) -> None:
        self._model = request.model
        self._started = False
        self._id = ""  # the message's, once message_start is written
        self._open: str | None = None  # the kind of the content block open, if one is
        self._index = -1  # the last content block's index
        self._tool_blocks: dict[int, int] = {}  # tool call index → its content block
        self._usage = Usage()
        self._finish: chat.FinishReason | None = None
        self._stop_sequence: str | None = None
        self._done = False
        self._order = BlockOrder()

    def write(self, event: chat.StreamEvent) -> bytes:
        if self._done:
            return b""
        return b"".join([self._write(e) for e in self._order.feed(event)])

    def _write(self, event: chat.StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(event, chat.Started):
            return self._start(event)
        if isinstance(event, chat.UsageReported):
            self._usage.update(event.usage)
            return b""
        if isinstance(event, chat.Failed):
            self._done = True
            error = {"type": ERROR_TYPE_OF_KIND[event.error.kind], "message": event.error.message}
            return write_event("error", {"error": error})
        if getattr(event, "choice", 0) != 0:
            return b""  # Anthropic has one answer: the first is the one written
        return self._start() + self._content(event)

    def end(self) -> bytes:
        if self._done:
            return b""
        out = b"".join([self._write(e) for e in self._order.end()])
        self._done = True
        usage: dict[str, Any] = {}
        fresh = self._usage.uncached_input_tokens
        if fresh is not None:
            usage["input_tokens"] = fresh
            if self._usage.cache_write_tokens is not None:
                usage["cache_creation_input_tokens"] = self._usage.cache_write_tokens
            if self._usage.cached_tokens is not None:
                usage["cache_read_input_tokens"] = self._usage.cached_tokens
        usage["output_tokens"] = self._usage.output_tokens or 0
        if self._usage.reasoning_tokens is not None:
            usage["output_tokens_details"] = {"thinking_tokens": self._usage.reasoning_tokens}
        delta = {
            "stop_reason": stop_reason_of(self._finish, self._stop_sequence),
            "stop_sequence": self._stop_sequence if self._finish == "stop" else None,
        }
        return (
            out
            + self._start()
            + self._close()
            + write_event("message_delta", {"delta": delta, "usage": usage})
            + write_event("message_stop", {})
        )

    def _content(self, event: chat.StreamEvent) -> bytes:
        if isinstance(event, chat.TextDelta):
            if not event.text:
                return b""
            return self._open_block("text", {"type": "text", "text": ""}) + self._delta(
                self._index, {"type": "text_delta", "text": event.text}
            )
        if isinstance(event, chat.ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, chat.ToolCallStarted):
            call_id = event.id or f"toolu_{self._id.removeprefix('msg_')}_{event.index}"
            block = {"type": "tool_use", "id": call_id, "name": event.name, "input": {}}
            out = self._close() + self._open_block("tool", block)
            self._tool_blocks[event.index] = self._index
            return out
        if isinstance(event, chat.ToolCallDelta):
            index = self._tool_blocks.get(event.index)
            if index is None or not event.arguments:
                return b""
            return self._delta(index, {"type": "input_json_delta", "partial_json": event.arguments})
        if isinstance(event, chat.Finished):
            self._finish, self._stop_sequence = event.reason, event.stop_sequence
            return self._close()
        return b""

    def _thinking(self, event: chat.ThinkingDelta) -> bytes:
        out = b""
        if event.redacted is not None:
            data = chat.signed_for(event.redacted, event.origin, NAME)
            out += self._close() + self._open_block("redacted", {"type": "redacted_thinking", "data": data})
        if event.text or event.signature:
            out += self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if event.text:
            out += self._delta(self._index, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            signature = chat.signed_for(event.signature, event.origin, NAME)
            out += self._delta(self._index, {"type": "signature_delta", "signature": signature})
            self._open = "signed"  # the block is whole: more thinking starts another
        return out

    def _start(self, started: chat.Started | None = None) -> bytes:
        """message_start, once: from Started, or made up if the stream begins otherwise."""
        if self._started:
            return b""
        started = started or chat.Started()
        self._started = True
        self._id = chat.answer_id("msg_", started.id)
        usage = write_usage(self._usage)
        usage.pop("output_tokens_details", None)
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": started.model or self._model or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return write_event("message_start", {"message": message})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        if self._open == kind:
            return b""
        out = self._close()
        self._index += 1
        self._open = kind
        return out + write_event("content_block_start", {"index": self._index, "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return write_event("content_block_stop", {"index": self._index})

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> bytes:
        return write_event("content_block_delta", {"index": index, "delta": delta})
