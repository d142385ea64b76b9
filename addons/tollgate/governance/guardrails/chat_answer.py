"""OpenAI chat's answer read by the answer guardrails (`governance/guardrails/answer.py`), in its
own events: each choice's text, refusal and reasoning, and each tool call's arguments (JSON as
the model writes it), one scanner per channel. A streamed answer's events go on as they come,
byte for byte where nothing in them is held. An event whose text is held is held whole, with the
events after it (their order kept): once its text is known to be no value it goes on as it came,
so a clean answer comes through byte for byte; an event is written anew only where a value is
replaced or a denial cuts it. At a value to deny, the text before it goes on, then an event whose
`error` the SDKs raise on, and nothing more (no `[DONE]`). Plain code, knowing nothing of
mitmproxy: `ChatAnswerGuard` is a `Rewrite` (`formats/translation.py`).

The events of one read are read together: each channel's scanner is fed once with what they carry
of it (a scanner's result does not depend on how its text is cut), which is what keeps small
events cheap. Should a value to deny be found in them, the read is read again event by event from
where it began, so that nothing after the value goes."""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import orjson

from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner, counter_copy
from tollgate.governance.guardrails.chat_template import TemplatePass

# The text fields of a choice's delta (or message) that are read: its text, a refusal, and the
# reasoning some providers show (`reasoning_content`, `reasoning`).
TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
# The events that may wait behind one whose text is held (of other choices and tool calls): past
# that, it goes on with what is known of its text, so that a stream is never held long.
WAITING_BYTES = 64 << 10
DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."


def denied_event(kind: str) -> bytes:
    """The event a denied stream ends with: the SDKs raise on a `data:` object with `error`."""
    error = {"message": DENIED_MESSAGE.format(kind=kind), "type": "permission_error", "code": "content_denied"}
    return b"data: " + json.dumps({"error": error}, separators=(",", ":")).encode() + b"\n\n"


def event_data(block: bytes) -> bytes | None:
    """An event block's data (None: it has none). An event of one `data: ` line, as most are, is
    read without splitting its lines."""
    if block.startswith(b"data: "):
        at = 6
    else:
        line = block.find(b"\ndata: ")
        at = line + 7 if line >= 0 and b"data" not in block[:line] else -1
    if at >= 0 and block.find(b"\n", at) < 0:
        return block[at:]
    event = parse_sse_block(block)
    return None if event is None else event.data.encode()


def event_object(data: bytes) -> Any:
    """An event's JSON (None where it is not JSON): read by orjson, several times faster, or where
    orjson refuses it (NaN, a lone surrogate, bytes that are not UTF-8) as the SDKs read it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data.decode("utf-8", "replace"))
        except ValueError:
            return None


Channel = tuple[int, str, int]  # choice, field (a text field or "arguments"), tool call (-1 for text)


@dataclass(slots=True)
class _Channel:
    """One channel's scanner and where its text stands: `fed` bytes read, `owed` what the scanner
    released that the client has not had yet, from `sent` (an offset in what was read) on;
    `unfed` the pieces of the events of this read not yet given to its scanner."""

    scanner: AnswerScanner | None
    fed: int = 0
    sent: int = 0
    # What goes on is taken from its front (in place: a read's text may be owed across many events).
    owed: bytearray = dataclass_field(default_factory=bytearray)
    unfed: list[bytes] = dataclass_field(default_factory=list)

    def saved(self) -> _Channel:
        scanner = self.scanner.copy() if self.scanner is not None else None
        return _Channel(scanner, self.fed, self.sent, bytearray(self.owed))


@dataclass(slots=True)
class _Piece:
    """A channel's text in an event: where it stands in what the channel read, and where it sits
    in the event's object (the dict and key to write anew)."""

    channel: Channel
    start: int
    text: bytes
    holder: dict[str, Any]
    field: str


@dataclass(slots=True)
class _Pending:
    """An event not yet gone on: its bytes as they came, its object, its channels' text."""

    whole: bytes
    obj: Any = None
    pieces: list[_Piece] = dataclass_field(default_factory=list)


class _Reread(Exception):
    """A value to deny in the events of a read read together: they are read again one by one."""


class ChatAnswerGuard:
    """A streamed chat answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    An event whose text is held is held whole, with the events after it: once its text is known to
    be no value it goes on as it came; where a value is replaced, it is written anew.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        self._compiled = compiled
        self._framer = SSEFramer()
        self._channels: dict[Channel, _Channel] = {}
        self._pending: deque[_Pending] = deque()
        self._last: dict[str, Any] = {}  # the last event's object: its fields, for one of held text alone
        self._spent: Counter[str] = Counter()  # the counts of the scanners that have ended
        self._together = False  # the events of a read are being read together
        self._unfed: list[_Channel] = []  # the channels with pieces not yet given to their scanner
        # Reads of events that differ only in their text, passed without reading each event.
        self._by_template = TemplatePass()
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        total = Counter(self._spent)
        for state in self._channels.values():
            if state.scanner is not None:
                total.update(state.scanner.counts)
        return dict(total)

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is not None:
            return b""
        if self._by_template.template is not None:
            out, units = self._by_template.feed(self, chunk)
            if out is not None:
                return out
        else:
            units = self._units(chunk)
        if len(units) < 2:
            return self._read_each(units)
        saved = self._saved()
        self._together = True
        try:
            out = self._read_each(units)
            if self.denied is not None:
                raise _Reread
            return out + self._caught_up()
        except _Reread:
            self._restore(saved)
        finally:
            self._together = False
            self._unfed.clear()
        return self._read_each(units)

    def _units(self, chunk: bytes) -> list[Any]:
        """The events a read completes (what `_unit` reads)."""
        return self._framer.feed(chunk)

    def _read_each(self, units: list[Any]) -> bytes:
        """The events read in order, until a value to deny stops the stream."""
        out = []
        for unit in units:
            out.append(self._unit(unit))
            if self.denied is not None:
                break
        return b"".join(out)

    def _unit(self, unit: Any) -> bytes:
        return self._event(unit)

    def _saved(self) -> dict[str, Any]:
        """What reading events changes, as it stands before a read (its events read together may
        have to be read again one by one). The events' objects are not copied: reading them anew
        writes each piece of theirs that goes on."""
        return {
            "_channels": {channel: state.saved() for channel, state in self._channels.items()},
            "_pending": self._pending.copy(),
            "_last": self._last,
            "_spent": counter_copy(self._spent),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        for name, value in saved.items():
            setattr(self, name, value)
        self.denied = None

    def _caught_up(self) -> bytes:
        """The pieces not yet read given to their scanners, then the events known."""
        self._committed()
        return self._drain()

    def _committed(self) -> None:
        """Each channel's pieces not yet read given to its scanner at once. At a value to deny,
        the read is read again event by event."""
        for state in self._unfed:
            assert state.scanner is not None
            piece = b"".join(state.unfed) if len(state.unfed) > 1 else state.unfed[0]
            state.unfed.clear()
            released = state.scanner.feed(piece)
            state.owed += released.text
            if released.denied is not None:
                raise _Reread
        self._unfed.clear()

    def flush(self) -> bytes:
        """What is held at the stream's end (one that ended without `[DONE]`)."""
        if self.denied is not None:
            return b""
        self._ended(None)
        return self._cut() if self.denied is not None else self._drained() + self._orphans()

    def _event(self, block: bytes) -> bytes:
        pending = _Pending(block + b"\n\n")
        self._pending.append(pending)
        data = event_data(block)
        if data is None:
            return self._drained()
        if data.strip() == b"[DONE]":
            self._pending.pop()
            self._ended(None)
            return self._cut() if self.denied is not None else self._drained() + self._orphans() + pending.whole
        obj = event_object(data)
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return self._drained()
        pending.obj = obj
        self._last = obj
        before = b""
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
                continue
            index = choice.get("index", 0)
            self._delta(pending, index, choice["delta"])
            if self.denied is not None:
                # The choices after it are not read: none of them goes on.
                choice["finish_reason"] = None
                obj["choices"] = choices[: i + 1]
                return before + self._cut()
            if choice.get("finish_reason") is not None:
                # What the choice holds goes on before the event that finishes it.
                self._pending.pop()
                self._ended(index)
                if self.denied is not None:
                    return before + self._cut()
                before += self._drained() + self._orphans()
                self._pending.append(pending)
        if self._by_template.wanted and len(pending.pieces) == 1 and not before:
            self._by_template.learn(block, pending.pieces[0])
        return before + self._drained()

    def _delta(self, pending: _Pending, index: int, delta: dict[str, Any]) -> None:
        """The delta's text given to its channels. At a value to deny, what the delta carries after
        it is taken out: it was not read, so it does not go."""
        for i, name in enumerate(TEXT_FIELDS):
            value = delta.get(name)
            if isinstance(value, str) and value:
                self._fed(pending, (index, name, -1), delta, name, value)
                if self.denied is not None:
                    for unread in (*TEXT_FIELDS[i + 1 :], "tool_calls"):
                        delta.pop(unread, None)
                    return
        calls = delta.get("tool_calls")
        if not isinstance(calls, list):
            return
        for i, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            value = function.get("arguments")
            if isinstance(value, str) and value:
                self._fed(pending, (index, "arguments", call.get("index", 0)), function, "arguments", value)
                if self.denied is not None:
                    del calls[i + 1 :]
                    return

    def _fed(self, pending: _Pending, channel: Channel, holder: dict[str, Any], name: str, value: str) -> None:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(None)
        if state.scanner is None:
            state.scanner = self._compiled.scanner(is_json=channel[1] == "arguments")
        piece = value.encode()
        pending.pieces.append(_Piece(channel, state.fed, piece, holder, name))
        state.fed += len(piece)
        if self._together:
            if not state.unfed:
                self._unfed.append(state)
            state.unfed.append(piece)
            return
        released = state.scanner.feed(piece)
        state.owed += released.text
        if released.denied is not None:
            self.denied = released.denied

    def _ended(self, index: int | None) -> None:
        """The scanners of a choice (every choice: None) flushed, now that their text has ended."""
        self._committed()
        for channel, state in self._channels.items():
            if state.scanner is None or (index is not None and channel[0] != index):
                continue
            scanner, state.scanner = state.scanner, None
            released = scanner.flush()
            self._spent.update(scanner.counts)
            state.owed += released.text
            if released.denied is not None:
                self.denied = released.denied
                return

    def _read(self, state: _Channel) -> int:
        """How far the channel's text is known: what its scanner no longer holds."""
        if state.scanner is None or not self._compiled.holds:
            return state.fed
        return state.fed - state.scanner.held

    def _drained(self) -> bytes:
        """The events whose text is all known, in order (of a read read together: at its end)."""
        return b"" if self._together else self._drain()

    def _drain(self) -> bytes:
        """The events whose text is all known, in order: as they came where it is the text that
        came, written anew where it is not."""
        out = []
        pending_events, channels = self._pending, self._channels
        while pending_events:
            pending = pending_events[0]
            if len(pending.pieces) == 1:
                # Most events carry one piece: it goes on as it came where it is what is known.
                p = pending.pieces[0]
                state = channels[p.channel]
                if self._read(state) >= p.start + len(p.text):
                    if state.sent == p.start and state.owed.startswith(p.text):
                        del state.owed[: len(p.text)]
                        state.sent += len(p.text)
                        out.append(pending_events.popleft().whole)
                    else:
                        out.append(self._settled(pending_events.popleft()))
                    continue
            if any(self._read(self._channels[p.channel]) < p.start + len(p.text) for p in pending.pieces):
                behind = sum(len(p.whole) for p in self._pending) - len(pending.whole)
                if behind <= WAITING_BYTES:
                    break
                # Too much waits behind it: it goes on with what is known of it, the rest of its
                # text later, in its channel's next event (or one of its own).
            out.append(self._settled(self._pending.popleft()))
        return b"".join(out)

    def _orphans(self) -> bytes:
        """Events for text known that no event waiting carries (the rest of an event that went on
        before its text was all known), after the events known (of a read read together, not yet
        gone on)."""
        out = [self._caught_up()] if self._together else []
        carried = {p.channel for pending in self._pending for p in pending.pieces}
        for channel, state in self._channels.items():
            if state.owed and channel not in carried:
                out.append(self._written(self._held_delta(channel, state.owed.decode())))
                state.owed.clear()
                state.sent = self._read(state)
        return b"".join(out)

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        choice, name, call = channel
        if name == "arguments":
            delta: dict[str, Any] = {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
        else:
            delta = {name: text}
        template = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        return {**template, "choices": [{"index": choice, "delta": delta, "finish_reason": None}]}

    def _cut(self) -> bytes:
        """At a value to deny: the events before it with what is known of them, and nothing held."""
        self._reread_together()
        out = [self._settled(self._pending.popleft()) for _ in range(len(self._pending))]
        return b"".join(out) + self._orphans() + denied_event(self.denied or "unread")

    def _reread_together(self) -> None:
        """At a value to deny in a read read together: it is read again event by event."""
        if self._together:
            raise _Reread

    def _settled(self, pending: _Pending) -> bytes:
        """An event as it goes on: as it came where each piece is what goes on of its channel."""
        if all(self._as_it_came(p) for p in pending.pieces):
            for p in pending.pieces:
                state = self._channels[p.channel]
                del state.owed[: len(p.text)]
                state.sent += len(p.text)
            return pending.whole
        for p in pending.pieces:
            state = self._channels[p.channel]
            end = p.start + len(p.text)
            if state.sent >= end:
                p.holder[p.field] = ""  # what it carried went on in an event before
                continue
            p.holder[p.field] = state.owed.decode()
            state.owed.clear()
            state.sent = self._read(state)
        return self._written(pending.obj)

    def _as_it_came(self, piece: _Piece) -> bool:
        """Whether what goes on of the piece's channel, from where it begins, is the piece."""
        state = self._channels[piece.channel]
        known = self._read(state) >= piece.start + len(piece.text)
        return known and state.sent == piece.start and state.owed.startswith(piece.text)

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def guard_chat_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) chat answer read: the body as it goes on (redacted, or as it came
    where nothing is), the kind of a value to deny (the answer is then refused), and the counts."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None, {}
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list):
        return body, None, {}
    counts: Counter[str] = Counter()
    changed = False
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        targets: list[tuple[dict[str, Any], str, bool]] = [(message, f, False) for f in TEXT_FIELDS]
        calls = message.get("tool_calls") or ()
        targets += [
            (c["function"], "arguments", True)
            for c in calls
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        ]
        for holder, field, is_json in targets:
            value = holder.get(field)
            if not isinstance(value, str) or not value:
                continue
            scanner = compiled.scanner(is_json)
            first = scanner.feed(value.encode())
            rest = scanner.flush() if first.denied is None else first
            counts.update(scanner.counts)
            denied = first.denied or rest.denied
            if denied is not None:
                return body, denied, dict(counts)
            sent = (first.text + (rest.text if rest is not first else b"")).decode()
            if sent != value:
                holder[field] = sent
                changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)
