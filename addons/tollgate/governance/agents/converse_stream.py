"""`agents` on a streamed Bedrock Converse answer (ConverseStream: AWS event stream frames). From a
`toolUse` block's start, its frames and every frame after them are held, in order, until each tool
block open has stopped, so that every call's input is complete; text before it goes on as it
comes. Then each call is decided: a refused call's frames are taken out, and its refusal comes as
a text delta of the same block just before its stop. The `messageStop` says `end_turn` for
`tool_use` only when every call of the answer was refused. Frames go on byte for byte where
nothing in them changed; a frame written anew has its CRCs computed anew.

Fail closed: a stream that cannot be framed, or an event that cannot be read and carries a tool
use, ends with an exception frame (boto3 raises on it) and nothing more; a stream that ends while
holding is decided on what came (input cut short is refused as `unread`). Where the policy decides
tool calls, the held frames wait too until it has answered on each call (`call_state.unasked`),
the answer's stop and the frames after it too: fed again (`feed(b"")`) once it has, they go."""

from __future__ import annotations

import json
import struct
from typing import Any

from tollgate.formats.bodies.json_codec import loads_once
from tollgate.formats.framing import EventStreamFrame, EventStreamFramer, event_frame
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, decided_call, unasked
from tollgate.governance.agents.converse_calls import END_TURN, TOOL_USE
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall

_EVENT = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}
# One of ConverseStream's own exceptions, which botocore raises as `EventStreamError` with its message.
_UNREAD = {":exception-type": "validationException", ":content-type": "application/json", ":message-type": "exception"}
UNREAD_MESSAGE = "Tollgate stopped the answer: its tool calls could not be read for `agents`."
_OVERHEAD = 16  # a frame's prelude and its CRC, beside its headers and payload
_STRING, _LENGTH = 7, struct.Struct(">H")  # a header's type of string, and its value's length
# The events read whatever they carry: a block's stop (a held call's end) and the answer's stop.
_READ_EVENTS = frozenset(("contentBlockStop", "messageStop"))


class _Held:
    """A frame held: its bytes as they came, its event's name and payload where read."""

    __slots__ = ("event", "frame", "obj", "raw")

    def __init__(self, frame: EventStreamFrame, raw: bytes, event: Any, obj: dict[str, Any] | None) -> None:
        self.frame, self.raw, self.event, self.obj = frame, raw, event, obj


class HeldConverseCalls:
    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        self._state, self._inner = state, inner
        self._framer = EventStreamFramer(read_headers=False)  # read here, faster (`_string_headers`)
        self._bytes = bytearray()  # what came and is not yet framed: each frame's bytes sent as they came
        self._held: list[_Held] | None = None  # None: not holding
        self._calls: dict[int, list[Any]] = {}  # the held calls, by block: [id, name, input]
        self._open: set[int] = set()  # the tool blocks started and not stopped
        # Where among the held frames the answer's stop (or the upstream's exception) is: what is
        # held is decided then, stopped or not; the text of a call never stopped goes before it.
        self._end: int | None = None
        self._counted = self._refused = 0  # the answer's calls, and those refused
        self._stopped = False  # nothing more goes

    def feed(self, chunk: bytes) -> bytes:
        out = self._frames(self._inner.feed(chunk) if self._inner is not None else chunk)
        if self._held is not None and not self._stopped:  # fed again: the policy may have answered
            out += self._ready()
        return out

    def flush(self) -> bytes:
        out = self._frames(self._inner.flush() if self._inner is not None else b"")
        if self._held is not None and not self._stopped:
            out += self._release()  # a frame cut short is not sent
        return out

    def _frames(self, data: bytes) -> bytes:
        if not data or self._stopped:
            return b""
        self._bytes += data
        out, at = [], 0
        for frame in self._framer.feed(data):
            size = _OVERHEAD + len(frame.raw_headers) + len(frame.payload)
            raw, at = bytes(self._bytes[at : at + size]), at + size
            headers = _string_headers(frame.raw_headers)
            if headers is None:  # other types than strings: read as botocore reads them
                read = self._framer.with_headers(frame)
                headers = read.headers if read is not None else None
            out.append(self._frame(frame, raw, headers) if headers is not None else self._stop())
            if self._stopped:
                break
        del self._bytes[:at]
        if self._framer.error is not None and not self._stopped:
            out.append(self._stop())
        return b"".join(out)

    def _stop(self) -> bytes:
        """What cannot be read ends the stream: an exception frame, and nothing held."""
        self._stopped, self._held = True, None
        decided_call(ToolCall("unknown", UNREAD), self._state)  # recorded: a call not read, refused
        return unread_frame()

    def _frame(self, frame: EventStreamFrame, raw: bytes, headers: dict[str, Any]) -> bytes:
        event = headers.get(":event-type")
        if headers.get(":message-type") != "event":
            # The upstream's exception ends the stream: what is held is decided on what came.
            return self._ended(_Held(frame, raw, event, None)) if self._held is not None else raw
        payload = frame.payload
        if event not in _READ_EVENTS and b"toolUse" not in payload and b"\\u" not in payload:
            found = None  # a text delta, the usage: no call in it, not parsed
        else:
            try:
                found = loads_once(payload)
            except (ValueError, RecursionError):
                found = None
            if not isinstance(found, dict) and b"toolUse" in payload:
                return self._stop()
        obj = found if isinstance(found, dict) else None
        if obj is None:  # no call in it: held only behind one (the usage after a stop awaiting the policy)
            if self._held is None:
                return self._passed(_Held(frame, raw, event, None))
            self._held.append(_Held(frame, raw, event, None))
            return b""
        at = obj.get("contentBlockIndex")
        start = obj.get("start") if event == "contentBlockStart" else None
        delta = obj.get("delta") if event == "contentBlockDelta" else None
        if (isinstance(start, dict) and "toolUse" in start) or (isinstance(delta, dict) and "toolUse" in delta):
            if not isinstance(at, int):
                return self._stop()
            use = (start or delta)["toolUse"]  # type: ignore[index]
            call = self._calls.setdefault(at, [None, "", ""])
            if self._held is None:
                self._held = []
            self._open.add(at)
            if isinstance(use, dict):
                call[0] = use.get("toolUseId") if isinstance(use.get("toolUseId"), str) else call[0]
                call[1] = use["name"] if isinstance(use.get("name"), str) else call[1]
                piece = use.get("input")
                call[2] += piece if isinstance(piece, str) else ("\x00" if piece is not None else "")
            else:
                call[2] += "\x00"  # not an object: its input cannot be read
        elif event == "messageStop" and self._held is not None:
            return self._ended(_Held(frame, raw, event, obj))
        held = _Held(frame, raw, event, obj)
        if self._held is None:
            return self._passed(held)
        self._held.append(held)
        if event == "contentBlockStop" and isinstance(at, int):
            self._open.discard(at)
            return self._ready()
        return b""

    def _ended(self, held: _Held) -> bytes:
        """The answer's stop, or the upstream's exception, while holding: held last, and what is
        held decided on what came."""
        assert self._held is not None
        if self._end is None:
            self._end = len(self._held)
        self._held.append(held)
        return self._ready()

    def _ready(self) -> bytes:
        """The held frames where every call is whole (or the answer ended) and the policy has answered."""
        if self._held is None or (self._open and self._end is None) or self._unasked():
            return b""
        return self._release()

    def _unasked(self) -> bool:
        """Whether the policy is still to be asked about a call held (then the frames wait)."""
        if self._state.policy is None:
            return False
        return unasked((_call(*call) for call in self._calls.values()), self._state)

    def _passed(self, held: _Held) -> bytes:
        """A frame not held, as it goes: the stop says `end_turn` where every call was refused."""
        obj = held.obj
        every_call_refused = self._counted > 0 and self._refused == self._counted
        if held.event == "messageStop" and obj is not None and obj.get("stopReason") == TOOL_USE and every_call_refused:
            return event_frame(held.frame.raw_headers, _json({**obj, "stopReason": END_TURN}))
        return held.raw

    def _release(self) -> bytes:
        """The held frames, each refused call's taken out and its text put before its block's stop."""
        held, self._held = self._held or [], None
        end, self._end = self._end, None
        refused: dict[int, str] = {}
        for at, call in sorted(self._calls.items()):
            self._counted += 1
            decision = decided_call(_call(*call), self._state)
            if decision.refusal is not None:
                refused[at] = decision.refusal
        self._refused += len(refused)
        self._calls, self._open = {}, set()
        if not refused:
            return b"".join(h.raw if n != end else self._passed(h) for n, h in enumerate(held))
        out = []
        for n, h in enumerate(held):
            block = h.obj.get("contentBlockIndex") if h.obj is not None else None
            if n == end:  # a block that never stopped: its text before the answer's end
                out += [_text(block, text) for block, text in refused.items()]
                refused = {}
                out.append(self._passed(h))
            elif not isinstance(block, int) or block not in refused:
                out.append(h.raw)
            elif h.event == "contentBlockStop":
                out += [_text(block, refused.pop(block)), h.raw]
        # A block that never stopped (the stream cut): its text at the held frames' end.
        out += [_text(block, text) for block, text in refused.items()]
        return b"".join(out)


def _call(call_id: str | None, name: str, arguments: str) -> ToolCall:
    return ToolCall.from_json(name or "unknown", arguments, call_id)


def unread_frame() -> bytes:
    """The exception frame a Bedrock stream whose tool calls cannot be read ends with (boto3 raises it)."""
    return event_frame(_UNREAD, json.dumps({"message": UNREAD_MESSAGE}).encode())


def _text(block: int, text: str) -> bytes:
    """A text delta of a block: a refusal's, in place of the call's input."""
    return event_frame(_EVENT, _json({"contentBlockIndex": block, "delta": {"text": text}}))


def _string_headers(raw: bytes) -> dict[str, Any] | None:
    """A frame's headers where each is a string (type 7), as Bedrock writes them; None where one is
    not (botocore's parser reads those), or where they cannot be read."""
    out: dict[str, Any] = {}
    i, end = 0, len(raw)
    try:
        while i < end:
            n = raw[i]
            name, i = raw[i + 1 : i + 1 + n], i + 1 + n
            if i + 3 > end or raw[i] != _STRING:
                return None
            (m,) = _LENGTH.unpack_from(raw, i + 1)
            if i + 3 + m > end:
                return None
            out[name.decode()] = raw[i + 3 : i + 3 + m].decode()
            i += 3 + m
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
    return out


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
