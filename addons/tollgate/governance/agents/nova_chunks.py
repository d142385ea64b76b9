"""Amazon Nova's stream inside InvokeModelWithResponseStream, decided as ConverseStream's is
(`HeldConverseCalls`): Nova's own events are Converse's, each one `chunk` frame's JSON (base64 in
its `bytes`) named by its one key (`{"contentBlockDelta": {...}}`). Each is read as the Converse
frame it stands for; what the held stream lets go is framed again as a chunk, a frame unchanged
byte for byte as it came. A key beside the event's (Bedrock's `amazon-bedrock-invocationMetrics`)
stays with it where the event is written anew.

Fail closed: a chunk that cannot be read, or one that names no event of Converse's and holds a
tool use, ends the stream with an exception frame (boto3 raises it) and nothing more. An
exception frame from upstream ends what is held, decided on what came, and follows it."""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from typing import Any

from tollgate.formats.framing import EventStreamFrame, EventStreamFramer, event_frame
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall
from tollgate.governance.agents.converse_stream import HeldConverseCalls, unread_frame
from tollgate.governance.agents.invoke_chunks import CHUNK, ChunkFrames

# Converse's events, as Nova names them.
_EVENTS = ("messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata")
_OTHER = "tollgateOther"  # a Converse frame's name for a chunk that names none of them (no tool use in it)


class NovaChunks(ChunkFrames):
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        super().__init__(HeldConverseCalls(state), inner)
        self._back = EventStreamFramer()  # what the held stream let go, framed
        self._frames: dict[bytes, deque[bytes]] = {}  # a Converse frame as it went in → the frames it came as
        self._beside: dict[str, dict[str, Any]] = {}  # the keys beside an event's, by its name

    def _frame(self, frame: EventStreamFrame) -> bytes:
        raw = event_frame(frame.raw_headers, frame.payload)
        if frame.headers.get(":message-type") != "event" or frame.headers.get(":event-type") != "chunk":
            # An exception, or a frame of no model event: read by the held stream as it came.
            self._frames.setdefault(raw, deque()).append(raw)
            return self._let_go(self._held.feed(raw))
        converse = self._converse(frame.payload)
        if converse is None:
            self._broken = True
            return unread_frame()
        self._frames.setdefault(converse, deque()).append(raw)
        return self._let_go(self._held.feed(converse))

    def _converse(self, payload: bytes) -> bytes | None:
        """A chunk's Nova event as the Converse frame it stands for; None where it cannot be read."""
        try:
            event: Any = json.loads(base64.b64decode(json.loads(payload)["bytes"], validate=True))
        except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
            return None
        if not isinstance(event, dict):
            return None
        name = next((key for key in _EVENTS if key in event), None)
        if name is None:
            if "toolUse" in json.dumps(event):
                return None  # a tool use where no event of Converse's says so: not read
            name, body = _OTHER, event
        else:
            body = event[name]
            if not isinstance(body, dict):
                return None
            beside = {key: value for key, value in event.items() if key != name}
            if beside:
                self._beside[name] = beside
        headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
        return event_frame(headers, json.dumps(body, separators=(",", ":")).encode())

    def _let_go(self, data: bytes, end: bool = False) -> bytes:
        """The frames the held stream let go, each as the chunk it came as, or written anew."""
        out = []
        for frame in self._back.feed(data):
            raw = event_frame(frame.raw_headers, frame.payload)
            frames = self._frames.get(raw)
            if frames:
                out.append(frames.popleft())
                if not frames:
                    del self._frames[raw]
                continue
            name = frame.headers.get(":event-type")
            if frame.headers.get(":message-type") != "event" or not isinstance(name, str):
                out.append(raw)  # the held stream's own exception frame
                continue
            body = json.loads(frame.payload)
            event = body if name == _OTHER else {name: body, **self._beside.get(name, {})}
            encoded = base64.b64encode(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
            out.append(event_frame(CHUNK, json.dumps({"bytes": encoded.decode()}).encode()))
        return b"".join(out)
