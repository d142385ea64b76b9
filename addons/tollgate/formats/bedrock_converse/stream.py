"""ConverseStream's events, read two ways: for usage as the stream passes (`EventStreamReader`, the
fast tail, which reads InvokeModelWithResponseStream's too), and every event into the common chat
model for translation (`ConverseStreamReader`). Both stream as AWS event streams, framed by
`framing.EventStreamFramer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.formats import chat
from tollgate.formats.bedrock_converse.answer import converse_usage, finish_of_stop, ran_as, read_usage
from tollgate.formats.bedrock_converse.errors import ERROR_TYPES
from tollgate.formats.bedrock_converse.fields import NAME
from tollgate.formats.bedrock_family import read_chunk
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import (
    MAX_EVENT_HEADERS,
    MAX_EVENT_PAYLOAD,
    PRELUDE_SPAN,
    EventStreamFrame,
    EventStreamFramer,
    StreamTail,
    eventstream_first_frame,
    eventstream_frame_length,
    eventstream_frame_start,
)
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader


class EventStreamReader(UsageReader):
    """ConverseStream (`metadata` and `messageStop` events) and InvokeModelWithResponseStream
    (`chunk` events whose base64 payload is the model's own event, read by
    `bedrock_family.read_chunk`; the last one carries `amazon-bedrock-invocationMetrics`).
    Exception frames end the stream with an error.

    What counts is in the last frames: as for server-sent events, nothing is framed while the
    stream flows. The reader keeps the stream's tail (`StreamTail`, cut at frames' starts, found
    by their CRC-checked preludes) and reads its frames at the end."""

    WINDOW = 64 * 1024

    def __init__(self, invoke: bool) -> None:
        self._tail = StreamTail(self.WINDOW, limit=MAX_EVENT_PAYLOAD + MAX_EVENT_HEADERS + self.WINDOW)
        self._before = b""  # the stream's last bytes: a frame's prelude may begin in them
        self._next_frame = 0  # where the frame after the last one found begins, by its prelude
        self._invoke = invoke

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        # A piece that the frame last found goes on past holds no frame's start: a large frame's
        # pieces are not searched.
        inside = self._next_frame >= self._tail.end + len(chunk)
        self._tail.add(chunk, None if inside else self._frame_start(chunk))
        self._before = (self._before + chunk[-PRELUDE_SPAN:])[-PRELUDE_SPAN:]

    def _frame_start(self, chunk: bytes) -> int | None:
        """Where the last frame whose prelude ends in `chunk` begins (negative: in the pieces
        before), None if none does; the frame after it is noted."""
        data, shift = chunk, 0
        start = eventstream_frame_start(chunk, known=self._next_frame - self._tail.end)
        if start < 0:  # a prelude begun in the pieces before, whole now
            data, shift = self._before + chunk[:PRELUDE_SPAN], len(self._before)
            start = eventstream_frame_start(data)
            if start < 0:
                return None
        self._next_frame = self._tail.end + start - shift + eventstream_frame_length(data, start)
        return start - shift

    def result(self) -> Usage:
        data = self._tail.data()
        if not self._tail.cut_at_start:  # cut wherever the limit fell: from the first frame after
            data = data[eventstream_first_frame(data) :]
        framer = EventStreamFramer(read_headers=False)  # only the frames read below have theirs read
        frames = framer.feed(data)
        self.error = self.error or framer.error
        usage: Usage | None = None
        finish: str | None = None
        for unread in reversed(frames):  # the last frame that tells counts: read from the newest
            frame = framer.with_headers(unread)
            if frame is None:  # the frames before it may still tell
                self.error = self.error or framer.error
                continue
            if frame.headers.get(":message-type") in {"exception", "error"}:  # the stream's last frame
                name = frame.headers.get(":exception-type") or frame.headers.get(":error-code") or "unknown"
                self.error = f"the stream ended in an exception: {name}"
                continue
            told_usage, told_finish = self._read_frame(frame)
            usage, finish = usage or told_usage, finish or told_finish
            if usage is not None and finish is not None:
                break
        result = Usage(**{f: getattr(usage, f) for f in Usage.__slots__}) if usage else Usage()
        result.finish_reason = finish
        return result

    def _read_frame(self, frame: EventStreamFrame) -> tuple[Usage | None, str | None]:
        """The usage and the finish reason one frame tells, if any."""
        event = frame.headers.get(":event-type")
        if self._invoke:
            return read_chunk(parse_json(frame.payload) or {}) if event == "chunk" else (None, None)
        if event == "metadata":
            metadata = parse_json(frame.payload) or {}
            return ran_as(converse_usage(metadata.get("usage"), None), metadata), None
        if event == "messageStop":
            reason = (parse_json(frame.payload) or {}).get("stopReason")
            return None, reason if isinstance(reason, str) else None
        return None, None


def _stream_error(headers: Mapping[str, object], payload: bytes) -> chat.ChatError:
    """An exception frame (`:exception-type`, a JSON payload with its message), or an error frame
    (`:error-code` and `:error-message` headers)."""
    given = headers.get(":exception-type") or headers.get(":error-code")
    name = given[:1].upper() + given[1:] if isinstance(given, str) else "InternalServerException"
    status, kind = ERROR_TYPES.get(name, (500, "server"))
    message = (parse_json(payload) or {}).get("message") or headers.get(":error-message")
    return chat.ChatError(status, kind, message if isinstance(message, str) else f"Bedrock's stream ended in {name}")


class ConverseStreamReader:
    """ConverseStream's events as the common model's: tool calls numbered in order of their blocks."""

    def __init__(self) -> None:
        self._framer = EventStreamFramer()
        self._tool_of_block: dict[Any, int] = {}
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[chat.StreamEvent]:
        if self.error is not None:
            return []
        events: list[chat.StreamEvent] = []
        for frame in self._framer.feed(chunk):
            message_type = frame.headers.get(":message-type")
            if message_type in ("exception", "error"):
                events.append(chat.Failed(_stream_error(frame.headers, frame.payload)))
            elif message_type == "event":
                name = frame.headers.get(":event-type")
                data = parse_json(frame.payload)
                if isinstance(name, str) and data is not None:
                    events.extend(self._read_event(name, data))
        if self._framer.error is not None:
            self.error = self._framer.error
        return events

    def end(self) -> list[chat.StreamEvent]:
        return []

    def _read_event(self, name: str, data: dict[str, Any]) -> list[chat.StreamEvent]:
        if name == "messageStart":
            return [chat.Started()]
        if name == "contentBlockStart":
            start = data.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if not isinstance(use, dict):
                return []
            index = len(self._tool_of_block)
            self._tool_of_block[data.get("contentBlockIndex")] = index
            return [
                chat.ToolCallStarted(index=index, id=str(use.get("toolUseId") or ""), name=str(use.get("name") or ""))
            ]
        if name == "contentBlockDelta":
            delta = data.get("delta")
            return self._read_delta(data.get("contentBlockIndex"), delta) if isinstance(delta, dict) else []
        if name == "messageStop":
            return [chat.Finished(reason=finish_of_stop(data.get("stopReason")) or "other")]
        if name == "metadata":
            return [chat.UsageReported(read_usage(data.get("usage")))] if isinstance(data.get("usage"), dict) else []
        return []

    def _read_delta(self, block: Any, delta: dict[str, Any]) -> list[chat.StreamEvent]:
        if isinstance(delta.get("text"), str):
            return [chat.TextDelta(delta["text"])]
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str) and block in self._tool_of_block:
            return [chat.ToolCallDelta(index=self._tool_of_block[block], arguments=use["input"])]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            text, signature, redacted = (reasoning.get(k) for k in ("text", "signature", "redactedContent"))
            if isinstance(text, str):
                return [chat.ThinkingDelta(text=text)]
            if isinstance(signature, str):
                return [chat.ThinkingDelta(signature=signature, origin=NAME)]
            if isinstance(redacted, str):
                return [chat.ThinkingDelta(redacted=redacted, origin=NAME)]
        return []
