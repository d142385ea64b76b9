"""A Messages stream's readers: the usage tail the audit reads as the stream passes
(`MessagesStreamReader`, Claude's streams on Vertex AI and Bedrock too), and the full event reader a
translation reads the answer with (`MessagesEventReader`)."""

from __future__ import annotations

import re
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.anthropic_messages.answer import finish_of, usage_counts, usage_from_object
from tollgate.formats.anthropic_messages.errors import error_of
from tollgate.formats.anthropic_messages.fields import NAME
from tollgate.formats.bodies.json_codec import json_object, parse_json
from tollgate.formats.framing import SSEFramer, parse_sse_block, split_events
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import SSEReader

# ---------------------------------------------------------------------------------------------
# The usage tail, for the audit

_MESSAGE_START = re.compile(rb'"type"\s*:\s*"message_start"')
_MESSAGE_DELTA = re.compile(rb'"type"\s*:\s*"message_delta"')
_ERROR_EVENT = re.compile(rb"^event:\s*error\s*$", re.MULTILINE)


class MessagesStreamReader(SSEReader):
    """Messages API stream: input and cache tokens in `message_start`, the cumulative output
    (and, in newer API versions, updated input) counts and the stop reason in `message_delta`."""

    wanted = (b'"message_delta"', b"event: error", b"event:error")
    reads_start = True  # message_start, the stream's first event

    def __init__(self) -> None:
        super().__init__()
        self._message_start: bytes | None = None
        self._delta: bytes | None = None

    def first(self, region: bytes) -> bool:
        if b'"message_start"' in region:
            self._message_start = next((b for b in split_events(region) if _MESSAGE_START.search(b)), None)
        return self._message_start is not None

    def keep(self, block: bytes) -> None:
        if self._delta is None and _MESSAGE_DELTA.search(block):
            self._delta = block
        elif _ERROR_EVENT.search(block):
            error = (self.data(block) or {}).get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            self.error = f"the stream ended in an error event: {kind or 'unknown'}"

    def has_all(self) -> bool:
        return self._delta is not None

    def read(self) -> Usage:
        start = self.data(self._message_start) or {}
        message = json_object(start.get("message"))
        counts = dict(json_object(message.get("usage")))
        delta = self.data(self._delta) or {}
        if isinstance(delta.get("usage"), dict):
            counts.update({k: v for k, v in delta["usage"].items() if v is not None})
        usage = usage_from_object(counts)
        reason = delta.get("delta", {}).get("stop_reason") if isinstance(delta.get("delta"), dict) else None
        usage.finish_reason = reason if isinstance(reason, str) else None
        return usage


# ---------------------------------------------------------------------------------------------
# The full event reader, for a translation


class MessagesEventReader:
    """Reads a Messages stream's server-sent events into the common events, for a translation."""

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self.error: str | None = None
        self._started = False
        # Content block index → its kind, and for tool_use its position among the tool calls.
        self._blocks: dict[int, tuple[str, int]] = {}
        self._tools = 0
        # Input counts so far: a message_delta may update one and not the others.
        self._fresh: int | None = None
        self._read: int | None = None
        self._written: int | None = None

    def feed(self, chunk: bytes) -> list[chat.StreamEvent]:
        if self.error is not None:
            return []
        events: list[chat.StreamEvent] = []
        for block in self._framer.feed(chunk):
            sse = parse_sse_block(block)
            if sse is None:
                continue
            data = parse_json(sse.data.encode())
            if data is None:
                self.error = "a stream event's data is not a JSON object"  # its text is the answer's: not quoted
                return events
            try:
                events.extend(self._read_event(fields.str_or_none(data.get("type")) or sse.event, data))
            except Exception as e:  # a shape no branch expected: stop reading rather than crash the proxy
                self.error = f"unreadable stream event: {type(e).__name__}"
                return events
        self.error = self._framer.error
        return events

    def end(self) -> list[chat.StreamEvent]:
        return []

    def _read_event(self, kind: str | None, data: dict[str, Any]) -> list[chat.StreamEvent]:
        if kind == "message_start":
            return self._message_start(data.get("message"))
        if kind == "content_block_start":
            block = data.get("content_block")
            return self._block_start(fields.int_or_none(data.get("index")), block if isinstance(block, dict) else {})
        if kind == "content_block_delta":
            delta = data.get("delta")
            return self._block_delta(fields.int_or_none(data.get("index")), delta if isinstance(delta, dict) else {})
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "error":
            return [chat.Failed(error_of(data, None))]
        return []  # content_block_stop, message_stop, ping, and events newer than this reader

    def _message_start(self, message: Any) -> list[chat.StreamEvent]:
        message = message if isinstance(message, dict) else {}
        events: list[chat.StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                chat.Started(id=fields.str_or_none(message.get("id")), model=fields.str_or_none(message.get("model")))
            )
        if isinstance(message.get("usage"), dict):
            events.append(chat.UsageReported(self._usage(message["usage"])))
        return events

    def _block_start(self, index: int | None, block: dict[str, Any]) -> list[chat.StreamEvent]:
        if index is None:
            return []
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", 0)
            text = fields.str_or_none(block.get("text"))
            return [chat.TextDelta(text)] if text else []
        if kind == "thinking":
            self._blocks[index] = ("thinking", 0)
            events: list[chat.StreamEvent] = []
            text, signature = fields.str_or_none(block.get("thinking")), fields.str_or_none(block.get("signature"))
            if text:
                events.append(chat.ThinkingDelta(text=text))
            if signature:
                events.append(chat.ThinkingDelta(signature=signature, origin=NAME))
            return events
        if kind == "redacted_thinking":
            self._blocks[index] = ("redacted", 0)
            return [chat.ThinkingDelta(redacted=fields.str_or_none(block.get("data")) or "", origin=NAME)]
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            self._blocks[index] = ("tool", tool)
            started: list[chat.StreamEvent] = [
                chat.ToolCallStarted(
                    tool, fields.str_or_none(block.get("id")) or "", fields.str_or_none(block.get("name")) or ""
                )
            ]
            given = block.get("input")
            if isinstance(given, dict) and given:
                started.append(chat.ToolCallDelta(tool, chat.json_text(given)))
            return started
        return []

    def _block_delta(self, index: int | None, delta: dict[str, Any]) -> list[chat.StreamEvent]:
        kind, tool = self._blocks.get(index if index is not None else -1, ("", 0))
        delta_kind = delta.get("type")
        if delta_kind == "text_delta" and kind == "text":
            text = fields.str_or_none(delta.get("text"))
            return [chat.TextDelta(text)] if text else []
        if delta_kind == "thinking_delta" and kind == "thinking":
            text = fields.str_or_none(delta.get("thinking"))
            return [chat.ThinkingDelta(text=text)] if text else []
        if delta_kind == "signature_delta" and kind == "thinking":
            signature = fields.str_or_none(delta.get("signature"))
            return [chat.ThinkingDelta(signature=signature, origin=NAME)] if signature else []
        if delta_kind == "input_json_delta" and kind == "tool":
            partial = fields.str_or_none(delta.get("partial_json"))
            return [chat.ToolCallDelta(tool, partial)] if partial else []
        return []  # citations_delta, and deltas of blocks this reader does not pass on

    def _message_delta(self, data: dict[str, Any]) -> list[chat.StreamEvent]:
        events: list[chat.StreamEvent] = []
        delta = data.get("delta")
        if isinstance(delta, dict):
            finish = finish_of(delta.get("stop_reason"))
            if finish is not None:
                events.append(chat.Finished(finish, stop_sequence=fields.str_or_none(delta.get("stop_sequence"))))
        if isinstance(data.get("usage"), dict):
            events.append(chat.UsageReported(self._usage(data["usage"])))
        return events

    def _usage(self, raw: dict[str, Any]) -> Usage:
        """A report's counts, the input total made of the latest of each of its three parts."""
        usage = usage_counts(raw, fields.int_or_none)
        fresh = fields.int_or_none(raw.get("input_tokens"))
        self._fresh = fresh if fresh is not None else self._fresh
        self._read = usage.cached_tokens if usage.cached_tokens is not None else self._read
        self._written = usage.cache_write_tokens if usage.cache_write_tokens is not None else self._written
        reported = fresh is not None or usage.cached_tokens is not None or usage.cache_write_tokens is not None
        if reported and self._fresh is not None:
            usage.input_tokens = chat.input_with_cache(self._fresh, self._read, self._written)
        return usage
