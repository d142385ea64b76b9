"""What the deciders of streamed answers in server-sent events (chat completions, Responses,
Messages) share: the stream framed by `SSEFramer` (lines ending in CRLF, LF or CR, any split, a CRLF
split between its CR and its LF too), each complete event read in order, and the events from a
call's first one on held until the format says its calls are whole and the policy has answered on
them. An event too large to frame ends the stream with the format's error event, and nothing held
goes on: what cannot be read does not go. A stream cut in the middle of an event (its last event
without its blank line, its data no JSON) does not send that piece: it may be part of a call not
yet decided."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from tollgate.formats.framing import SSEFramer, parse_sse_block
from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, unasked
from tollgate.governance.agents.tool_decision import ToolCall

UNFRAMED = "Tollgate refused this answer: its tool calls could not be read for `agents`."


class HeldEvent:
    """One server-sent event: its bytes as it goes on, and its object where it is one."""

    __slots__ = ("obj", "raw")

    def __init__(self, raw: bytes, obj: dict[str, Any] | None) -> None:
        self.raw, self.obj = raw, obj


class HeldEvents(ABC):
    """A stream whose events are fed as they come (`feed`, `flush` at its end; fed again with b""
    once the policy has answered). A format says what an event is to it (`_event`, which holds it
    with `_hold` once a call has begun), when its calls are whole (`_whole`), which calls it holds
    (`_held_calls`, for the policy to answer on), what its held events become (`_release`), and the
    event an unframed stream ends with (`_unframed`)."""

    def __init__(self, state: AgentsCall, inner: Rewrite | None = None) -> None:
        self._state, self._inner = state, inner
        self._framer = SSEFramer()
        self._held: list[HeldEvent] | None = None  # None: not holding
        self._failed = False  # an event too large to frame came: nothing more goes
        self._ended = False  # the stream's end was read (`at_end`)
        self._cut = False  # what is framed now is the stream's last event, without its blank line

    def feed(self, chunk: bytes) -> bytes:
        if self._ended:  # fed again after `at_end`, once the policy has answered: nothing more comes
            chunk = b""
        elif self._inner is not None:
            chunk = self._inner.feed(chunk)
        out = self._events(chunk)
        if self._held is not None and self._whole() and not self._unasked():  # the policy has answered
            out += self._release()
        return out

    def at_end(self) -> bytes:
        """The stream's end read, nothing held decided yet: what the inner rewrite still had, and an
        event without its blank line (the stream's last), framed. The calls held, whole or cut
        short, wait for the policy's answers (noted in `asking`); fed again once it has answered
        (`feed(b"")`), whole calls go, as after any event; `flush` decides what is still held."""
        if self._ended:
            return b""
        self._ended = True
        out = self._events(self._inner.flush() if self._inner is not None else b"")
        if not self._failed:
            self._cut = True
            out += self._events(b"\n\n")
        if self._held is not None and not self._unasked() and self._whole():
            out += self._release()
        return out

    def flush(self) -> bytes:
        out = self.at_end()
        if self._held is not None:
            out += self._release()
        return out

    def _events(self, data: bytes) -> bytes:
        if not data or self._failed:
            return b""
        out = [self._event(block + b"\n\n") for block in self._framer.feed(data) if not self._cut_short(block)]
        if self._framer.error is not None:
            self._failed, self._held = True, None
            out.append(self._unframed())
        return b"".join(out)

    def _cut_short(self, block: bytes) -> bool:
        """Whether an event is the stream's last, cut in its middle: it has no data, or its data is
        not whole JSON (nor `[DONE]`). It is not sent: a call's piece in it could not be decided."""
        if not self._cut:
            return False
        event = parse_sse_block(block)
        if event is not None and event.data.strip() == "[DONE]":
            return False
        return event_object(block + b"\n\n") is None  # no data yet, or data cut short

    def _hold(self, raw: bytes, obj: dict[str, Any] | None) -> bytes:
        """An event held (a call has begun): the held events let go once the calls are whole and
        the policy has answered on each."""
        assert self._held is not None
        self._held.append(HeldEvent(raw, obj))
        return self._release() if self._whole() and not self._unasked() else b""

    def _unasked(self) -> bool:
        """Whether the policy is still to be asked about a call held (then the events wait)."""
        if self._state.policy is None:
            return False
        return unasked(self._held_calls(), self._state)

    @abstractmethod
    def _event(self, raw: bytes) -> bytes:
        """What goes on of one complete event (LF line ends, its blank line after it)."""

    @abstractmethod
    def _whole(self) -> bool:
        """Whether every call held is whole (its arguments complete)."""

    @abstractmethod
    def _held_calls(self) -> Iterable[ToolCall]:
        """The calls held, as they would be decided now."""

    @abstractmethod
    def _release(self) -> bytes:
        """The held events as they go on, their calls decided; nothing held after."""

    @abstractmethod
    def _unframed(self) -> bytes:
        """The error event the stream ends with when an event cannot be framed; its calls forgotten."""


def event_object(raw: bytes) -> dict[str, Any] | None:
    """An event's data as a JSON object (None: no data, `[DONE]`, or not an object)."""
    event = parse_sse_block(raw.rstrip(b"\n"))
    if event is None:
        return None
    try:
        obj = json.loads(event.data)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def error_event(message: str, name: bytes | None = None) -> bytes:
    """An OpenAI-style error event (the SDKs raise on a `data:` object with `error`)."""
    data = json.dumps({"error": {"type": "api_error", "message": message}}, separators=(",", ":")).encode()
    return (b"event: " + name + b"\n" if name else b"") + b"data: " + data + b"\n\n"
