"""A model's own stream inside InvokeModelWithResponseStream, decided by that model's held stream:
each `chunk` frame's event (base64 JSON) is read as the server-sent event it stands for, the held
stream decides its tool calls, and what it lets go is framed again. An event that comes out as it
went in goes in its own frame, byte for byte; a changed or new one in a new `chunk` frame. An
exception frame ends what is held (decided on what came) and follows it. Frames that cannot be
read end the stream with an exception frame: what cannot be read is never served undecided.

A family whose events are nearly the held stream's own (Mistral's chat chunks on Bedrock, which
may carry a choice's `message` for its `delta` and its `stop_reason` for its `finish_reason`) is
read through a `Codec`: each event as the held stream reads it, and an event written anew back in
the family's own words."""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from tollgate.formats.framing import EventStreamFrame, EventStreamFramer, event_frame
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.converse_stream import unread_frame

CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
# An event as the held stream reads it (None: as it came), and an event it wrote, in the family's words.
Codec = tuple[Callable[[dict[str, Any]], dict[str, Any] | None], Callable[[dict[str, Any]], dict[str, Any]]]


class ChunkFrames:
    """InvokeModelWithResponseStream's frames read through a held stream: each frame read
    (`_frame`), what the held stream lets go framed again (`_let_go`); frames that cannot be read
    end the stream with an exception frame. What a family's chunks stand for is its own
    (`InvokeChunks`: server-sent events; `NovaChunks`: Converse's frames)."""

    def __init__(self, held: Rewrite, inner: Rewrite | None = None) -> None:
        self._held, self._inner = held, inner
        self._framer = EventStreamFramer()
        self._broken = False

    def feed(self, chunk: bytes) -> bytes:
        return self._read(self._inner.feed(chunk) if self._inner is not None else chunk)

    def flush(self) -> bytes:
        out = self._read(self._inner.flush() if self._inner is not None else b"")
        return out if self._broken else out + self._let_go(self._held.flush(), end=True)

    def _read(self, data: bytes) -> bytes:
        if self._broken:
            return b""
        if not data:  # fed again once the policy has answered: what it held may go
            return self._let_go(self._held.feed(b""))
        out = []
        for frame in self._framer.feed(data):
            out.append(self._frame(frame))
            if self._broken:
                return b"".join(out)
        if self._framer.error is not None:
            self._broken = True
            out.append(unread_frame())
        return b"".join(out)

    def _frame(self, frame: EventStreamFrame) -> bytes:
        """A frame as it came, read by the held stream: what it lets go, framed."""
        raise NotImplementedError

    def _let_go(self, data: bytes, end: bool = False) -> bytes:
        """What the held stream let go (`end`: the last of it), framed again."""
        raise NotImplementedError


class InvokeChunks(ChunkFrames):
    def __init__(self, held: Rewrite, inner: Rewrite | None = None, codec: Codec | None = None) -> None:
        super().__init__(held, inner)
        self._codec = codec
        self._frames: dict[bytes, deque[bytes]] = {}  # an event as it went in → its frames, in order
        self._buffer = b""  # what the held stream let go, not yet a whole event

    def _frame(self, frame: EventStreamFrame) -> bytes:
        if frame.headers.get(":message-type") != "event" or frame.headers.get(":event-type") != "chunk":
            # An exception (or a frame of no model event): what is held is decided before it.
            return self._let_go(self._held.flush(), end=True) + event_frame(frame.raw_headers, frame.payload)
        event = _event_of(frame.payload, self._codec[0] if self._codec is not None else None)
        if event is None:
            self._broken = True
            return unread_frame()
        self._frames.setdefault(event, deque()).append(event_frame(frame.raw_headers, frame.payload))
        return self._let_go(self._held.feed(event))

    def _let_go(self, data: bytes, end: bool = False) -> bytes:
        """The events the held stream let go, each in its frame."""
        self._buffer += data
        out = []
        while (at := self._buffer.find(b"\n\n")) >= 0:
            event, self._buffer = self._buffer[: at + 2], self._buffer[at + 2 :]
            out.append(self._frame_of(event))
        if end and self._buffer.strip():
            out.append(self._frame_of(self._buffer + b"\n\n"))
            self._buffer = b""
        return b"".join(out)

    def _frame_of(self, event: bytes) -> bytes:
        frames = self._frames.get(event)
        if frames:
            frame = frames.popleft()
            if not frames:
                del self._frames[event]
            return frame
        data = b"".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        if self._codec is not None:
            data = json.dumps(self._codec[1](json.loads(data)), ensure_ascii=False, separators=(",", ":")).encode()
        payload = json.dumps({"bytes": base64.b64encode(data).decode()}, separators=(",", ":")).encode()
        return event_frame(CHUNK, payload)


def _event_of(payload: bytes, read: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> bytes | None:
    """A chunk's model event as a server-sent event (`event:` its type, where it names one), as
    `read` has it where it reads it otherwise."""
    try:
        obj: Any = json.loads(payload)
        data = base64.b64decode(obj["bytes"], validate=True)
        event = json.loads(data)
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
        return None
    if not isinstance(event, dict):
        return None
    changed = read(event) if read is not None else None
    if changed is not None:
        event, data = changed, json.dumps(changed, ensure_ascii=False).encode()
    if b"\n" in data or b"\r" in data:  # written over lines: on one line, as an event's data must be
        data = json.dumps(event, ensure_ascii=False).encode()
    kind = event.get("type")
    head = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) and "\n" not in kind else b""
    return head + b"data: " + data + b"\n\n"
