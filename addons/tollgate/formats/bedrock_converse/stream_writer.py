"""ConverseStream's events written from the common chat model's, frame by frame as boto3's
`converse_stream` reads them (`framing.event_frame`: one AWS event stream message)."""

from __future__ import annotations

from typing import Any

from tollgate.formats import chat
from tollgate.formats.bedrock_converse.answer import stop_of_finish, write_usage
from tollgate.formats.bedrock_converse.errors import STREAM_EXCEPTION_OF_KIND
from tollgate.formats.bedrock_converse.fields import EVENT_STREAM, NAME
from tollgate.formats.block_order import BlockOrder
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.framing import event_frame
from tollgate.formats.usage import Usage


def _event(name: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, encode_json(payload))


def _exception(error: chat.ChatError) -> bytes:
    name = STREAM_EXCEPTION_OF_KIND.get(error.kind, "validationException")
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return event_frame(headers, encode_json({"message": error.message}))


class ConverseStreamWriter:
    """ConverseStream's events, written as they come: a block is stopped when the next begins or the
    answer finishes; the usage (metadata) goes last, at the end or when it comes after the finish.
    Blocks follow one another: parallel tool calls that interleave are put in order (`BlockOrder`),
    a later call held until the one before is whole."""

    content_type = EVENT_STREAM

    def __init__(self, request: chat.ChatRequest) -> None:  # a Converse stream names neither model nor id
        self._started = False
        self._blocks = 0  # content blocks begun so far
        self._open: tuple[str, int] | None = None  # the open block's kind ("text", "thinking", "tool") and index
        self._signed = False  # the open thinking block has its signature: more thinking is another block
        self._block_of_tool: dict[int, int] = {}
        self._usage: Usage | None = None
        self._finished = False
        self._reported = False
        self._failed = False
        self._order = BlockOrder()

    def write(self, event: chat.StreamEvent) -> bytes:
        return b"".join([self._write(e) for e in self._order.feed(event)])

    def _write(self, event: chat.StreamEvent) -> bytes:
        if self._failed or getattr(event, "choice", 0) != 0:
            return b""
        if isinstance(event, chat.Failed):
            self._failed = True
            return _exception(event.error)
        if isinstance(event, chat.UsageReported):
            return self._report(event.usage)
        out = self._start()
        if isinstance(event, chat.TextDelta):
            if event.text:
                out += self._delta("text", {"text": event.text})
        elif isinstance(event, chat.ThinkingDelta):
            out += self._thinking(event)
        elif isinstance(event, chat.ToolCallStarted):
            out += self._close()
            index = self._begin("tool")
            self._block_of_tool[event.index] = index
            out += _event(
                "contentBlockStart",
                {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": event.id, "name": event.name}}},
            )
        elif isinstance(event, chat.ToolCallDelta):
            block = self._block_of_tool.get(event.index)
            if block is not None and event.arguments:
                delta = {"contentBlockIndex": block, "delta": {"toolUse": {"input": event.arguments}}}
                out += _event("contentBlockDelta", delta)
        elif isinstance(event, chat.Finished) and not self._finished:
            self._finished = True
            out += self._close() + _event(
                "messageStop", {"stopReason": stop_of_finish(event.reason, event.stop_sequence)}
            )
        return out

    def end(self) -> bytes:
        out = b"".join([self._write(e) for e in self._order.end()])
        if self._failed:
            return out
        out += self._close()
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

    def _thinking(self, event: chat.ThinkingDelta) -> bytes:
        out = b""
        if event.redacted is not None:  # redacted reasoning is a block of its own
            out += self._close()
            redacted = chat.signed_for(event.redacted, event.origin, NAME)
            out += self._delta("thinking", {"reasoningContent": {"redactedContent": redacted}})
            self._signed = True
        if event.text:
            out += self._delta("thinking", {"reasoningContent": {"text": event.text}})
        if event.signature is not None:
            signature = chat.signed_for(event.signature, event.origin, NAME)
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
