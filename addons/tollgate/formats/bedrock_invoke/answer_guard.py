"""Bedrock's InvokeModel answers where the model id does not say the model's family (an application
inference profile's ARN names none, `arn:aws:bedrock:…:application-inference-profile/…`; nor does
Bedrock's answer in a header): read by the reader of the family the answer itself shows. Claude's
answer says it is one, in Anthropic's own Messages body: a JSON answer's `"type": "message"`, a
stream's first chunk's `message_start` event. It is read as Anthropic's (`anthropic_messages/answer_guard.py`: every
block, citations and tool results too); any other by the families' reader (`bedrock_converse/answer_guard.py`),
which reads where every family's text sits.

Nothing of a stream goes on before its first frame is whole and its reader chosen: a stream cut
before then, or one whose first frame cannot be read, goes to the families' reader, which ends it
as an answer that cannot be read. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

from tollgate.formats.answer_reading.scanning import AnswerFormat, Scanners
from tollgate.formats.answer_reading.string_places import answer_json, read_places
from tollgate.formats.anthropic_messages.answer_guard import MessagesAnswerGuard, event_json, guard_messages_json
from tollgate.formats.bedrock_converse.answer_guard import (
    EVENT,
    Framed,
    FramesAnswerGuard,
    Path,
    denied_frame,
    guard_bedrock_json,
    header_places,
    rebuilt,
)
from tollgate.formats.bedrock_converse.fields import EVENT_STREAM
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing import EventStreamFrame, EventStreamFramer, event_frame

# A chunk's frame headers, for an event written anew.
_CHUNK_HEADERS = {":event-type": "chunk", **EVENT}
# The event a Claude stream begins with, and the type of a Claude answer read whole.
MESSAGE_START = "message_start"
MESSAGE = "message"


class _Guard(Protocol):
    denied: str | None

    @property
    def counts(self) -> dict[str, int]: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def is_claudes(frame: EventStreamFrame) -> bool:
    """Whether a stream's first frame is Claude's: a chunk whose event is `message_start`."""
    if frame.headers.get(":message-type") != "event" or frame.headers.get(":event-type") != "chunk":
        return False
    encoded = (parse_json(frame.payload) or {}).get("bytes")
    if not isinstance(encoded, str):
        return False
    try:
        event = parse_json(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return False
    return event is not None and event.get("type") == MESSAGE_START


class InvokeAnswerGuard(FramesAnswerGuard):
    """InvokeModelWithResponseStream: each `chunk` wraps the model family's own event, base64 in
    its `bytes`; that event is read, and written back so. Its text ends with the stream (a family's
    finish names one choice of several), or at Nova's `messageStop`."""

    def read(self, frame: EventStreamFrame) -> Any:
        wrapper = super().read(frame)
        if frame.headers.get(":event-type") != "chunk" or wrapper is None:
            return wrapper
        encoded = wrapper.get("bytes")
        if not isinstance(encoded, str):
            raise ValueError("a chunk without its bytes")
        obj = answer_json(base64.b64decode(encoded, validate=True))
        if obj is None:
            raise ValueError("a chunk whose bytes are no JSON object")
        return obj

    def written(self, pending: Framed) -> bytes:
        frame = pending.frame
        assert frame is not None
        if frame.headers.get(":event-type") != "chunk":
            return super().written(pending)
        wrapper = parse_json(frame.payload) or {}
        wrapper["bytes"] = base64.b64encode(encode_json(pending.obj)).decode()
        return event_frame(frame.raw_headers, encode_json(wrapper))

    def ended(self, frame: EventStreamFrame, obj: Any) -> Path | None:
        return ("chunk",) if isinstance(obj, dict) and "messageStop" in obj else None

    def orphan(self, channel: Path, text: str) -> bytes:
        event, *rest = channel
        if event != "chunk":
            return super().orphan(channel, text)
        encoded = base64.b64encode(encode_json(rebuilt(tuple(rest), text))).decode()
        return event_frame({":event-type": "chunk", **EVENT}, encode_json({"bytes": encoded}))


class BedrockMessagesGuard(MessagesAnswerGuard):
    """Claude's stream on Bedrock (InvokeModelWithResponseStream): each `chunk` frame's event
    (base64 in its payload's `bytes`) read as Anthropic's; a frame goes on as it came, or one is
    written anew where an event is. Other frames (an upstream's exception) go on as they came."""

    def __init__(self, compiled: Scanners) -> None:
        super().__init__(compiled)
        self._frames = EventStreamFramer()
        self._headers_read: set[bytes] = set()  # headers whose strings were read, found clean

    def _units(self, chunk: bytes) -> list[Any]:
        return self._frames.feed(chunk)

    def _unit(self, unit: Any) -> bytes:
        return self._frame(unit)

    def _framing_error(self) -> bool:
        return self._frames.error is not None

    def _frame(self, frame: EventStreamFrame) -> bytes:
        whole = event_frame(frame.raw_headers, frame.payload)
        headers = frame.headers
        if frame.raw_headers not in self._headers_read:
            denied = read_places(self._compiled, header_places(headers), self._spent, self._clean)[1]
            if denied is not None:
                return self._stop_before(None, denied)  # a header holds a value: the frame never goes
            if len(self._headers_read) < 64:
                self._headers_read.add(frame.raw_headers)
        if headers.get(":message-type") != "event" or headers.get(":event-type") != "chunk":
            return self._passed(whole)
        encoded = (parse_json(frame.payload) or {}).get("bytes")
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except (binascii.Error, ValueError):
            raw = None
        return self._message_event(whole, event_json(raw))

    def _denied_end(self, kind: str) -> bytes:
        return denied_frame(kind)

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        payload = {"bytes": base64.b64encode(encode_json(obj)).decode()}
        return event_frame(_CHUNK_HEADERS, encode_json(payload))


class InvokeByAnswerGuard:
    """InvokeModelWithResponseStream's frames, read by Claude's reader where the first frame is
    Claude's `message_start`, else by the families' (`denied`, `counts`: its reader's)."""

    def __init__(self, compiled: Scanners) -> None:
        self._compiled = compiled
        self._framer: EventStreamFramer | None = EventStreamFramer()
        self._held: list[bytes] = []  # what came before the first frame was whole
        self._reader: _Guard | None = None
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return self._reader.counts if self._reader is not None else {}

    def feed(self, chunk: bytes) -> bytes:
        reader = self._reader
        if reader is not None:
            out = reader.feed(chunk)
            self.denied = reader.denied
            return out
        assert self._framer is not None
        self._held.append(chunk)
        frames = self._framer.feed(chunk)
        if not frames and self._framer.error is None:
            return b""
        claudes = bool(frames) and is_claudes(frames[0])
        return self._chosen(BedrockMessagesGuard(self._compiled) if claudes else InvokeAnswerGuard(self._compiled))

    def flush(self) -> bytes:
        out = b""
        if self._reader is None:  # ended before a whole frame: the families' reader ends it
            out = self._chosen(InvokeAnswerGuard(self._compiled))
            if self.denied is not None:
                return out
        reader = self._reader
        assert reader is not None
        out += reader.flush()
        self.denied = reader.denied
        return out

    def _chosen(self, reader: _Guard) -> bytes:
        """The reader chosen, given what came so far."""
        self._reader, self._framer = reader, None
        held, self._held = b"".join(self._held), []
        out = reader.feed(held)
        self.denied = reader.denied
        return out


def guard_invoke_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """InvokeModel's whole answer: read as Claude's where it is Anthropic's Messages body (its
    `type` `message`), else by the families' reader."""
    obj: Any = parse_json(body)
    if isinstance(obj, dict) and obj.get("type") == MESSAGE:
        return guard_messages_json(compiled, body)
    return guard_bedrock_json(compiled, body)


# Each family's own body, told by the answer where the model id does not tell it.
ANSWER = AnswerFormat(InvokeByAnswerGuard, guard_invoke_json, denied_frame, frozenset((EVENT_STREAM,)))
# Claude's own stream and body, where the model id names Claude.
CLAUDES = AnswerFormat(BedrockMessagesGuard, guard_messages_json, denied_frame, frozenset((EVENT_STREAM,)))
