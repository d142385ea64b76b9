"""Gemini's answer read by the answer guardrails (`governance/guardrails/answer.py`), in its own
items: streamGenerateContent as server-sent events (`alt=sse`) or as one JSON array written item by
item, and generateContent's JSON; Code Assist's the same inside `{"response": …}`. Each candidate's
text and thought text (one scanner per candidate and kind, across parts and items), each
`functionCall.args` string value (whole in its part, each read alone: the args stay the JSON they
were), and Vertex AI's streamed `partialArgs` string values (one scanner per candidate and path).

Items go on as they came where nothing in them is held or replaced; an item whose text is held
waits whole, with the items after it, and goes on as it came once its text is known to be no value.
A part with a `thoughtSignature` is signed: it must come to the client as it came, so a value found
in it is denied, whatever the rule's action. At a value to deny, the items before it go on, then an
item whose first key is `error` (google-genai raises on it while iterating), the JSON array closed.
Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal

from tollgate.formats.framing import MAX_FRAME, JSONArrayFramer, parse_sse_block, raw_event_spans, sse_event_end
from tollgate.formats.gemini_generate.answer import candidate_index
from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner
from tollgate.governance.guardrails.text import PLACEHOLDER

# The items that may wait behind one whose text is held (of other candidates): past that, it goes
# on with what is known of its text, so that a stream is never held long.
WAITING_BYTES = 64 << 10
DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."
# Code Assist's envelope: each answer inside `{"response": …, "traceId": …}`.
ENVELOPE = "response"
# The answer's own fields an item written anew for held text alone carries.
_TEMPLATE = ("responseId", "modelVersion", "createTime")
_PLACEHOLDER = re.compile(re.escape(PLACEHOLDER).replace(r"\{kind\}", r"([^\]\s]+)"))
_LINE_ENDS = b"\r\n"
_BETWEEN = re.compile(rb"[\[ \t\r\n,]*")  # what comes before an element of the array
_ARRAY_END = re.compile(rb"[ \t\r\n,]*\][ \t\r\n]*")

Mode = Literal["sse", "array", "whole"]
Channel = tuple[int, str]  # candidate, "text", "thought" or a partial argument's JSON path


def denied_error(kind: str) -> bytes:
    """The item a denied answer ends with, as Google writes an error: google-genai raises
    `errors.ClientError` (403) on an item whose first key is `error`."""
    error = {"code": 403, "message": DENIED_MESSAGE.format(kind=kind), "status": "PERMISSION_DENIED"}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def denied_event(kind: str) -> bytes:
    """The server-sent event a denied stream ends with."""
    return b"data: " + denied_error(kind) + b"\r\n\r\n"


class _Unreadable(Exception):
    """The stream cannot be framed into items: it stops there."""


@dataclass(slots=True)
class _Channel:
    """One channel's scanner and where its text stands: `fed` bytes read, `owed` what the scanner
    released that the client has not had yet, from `sent` (an offset in what was read) on;
    `replaced` the kind of the last value it replaced."""

    scanner: AnswerScanner | None
    fed: int = 0
    sent: int = 0
    owed: bytes = b""
    replaced: str | None = None


@dataclass(slots=True)
class _Piece:
    """A channel's text in an item: where it stands in what the channel read, where it sits in the
    item's object (the dict and key to write anew), and whether its part is signed."""

    channel: Channel
    start: int
    text: bytes
    holder: dict[str, Any]
    field: str
    signed: bool


@dataclass(slots=True)
class _Item:
    """An item not yet gone on: its bytes as they came (`head`, the item, `tail`: what frames it,
    kept where it is written anew), its object, its channels' text, and whether its function
    calls' arguments were replaced."""

    head: bytes
    body: bytes
    tail: bytes = b""
    obj: Any = None
    pieces: list[_Piece] = dataclass_field(default_factory=list)
    changed: bool = False

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body) + len(self.tail)


class GeminiAnswerGuard:
    """A streamed Gemini answer's items, read and rewritten (`feed` each piece, `flush` at its end):
    server-sent events or a JSON array, told apart by the first byte that is not white space.
    `envelope`: the key each answer is wrapped in (Code Assist's `response`), or None.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: AnswerDetectors, envelope: str | None = None, mode: Mode | None = None) -> None:
        self._compiled = compiled
        self._envelope = envelope
        self._mode: Mode | None = mode
        self._raw = bytearray()  # what is read and not yet framed into items
        self._array: JSONArrayFramer | None = None
        self._array_ended = False
        self._channels: dict[Channel, _Channel] = {}
        self._pending: deque[_Item] = deque()
        self._waiting = 0  # the bytes of the items pending
        self._sent_any = False  # an item went on (in an array: the `[` with it)
        self._cr_last = False  # what went on last ends in a CR (an event's blank line cut at it)
        self._template: dict[str, Any] = {}
        self._spent: Counter[str] = Counter()  # the counts of the scanners that have ended
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        total = Counter(self._spent)
        for state in self._channels.values():
            if state.scanner is not None:
                total.update(state.scanner.counts)
        return dict(total)

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is not None or not chunk:
            return b""
        out = []
        try:
            for head, body, tail in self._framed(chunk):
                out.append(self._next(_Item(head, body, tail)))
                if self.denied is not None:
                    break
        except _Unreadable:
            self.denied = "unread"  # what cannot be framed does not go on
            out.append(self._cut())
        return b"".join(out)

    def flush(self) -> bytes:
        """What is held at the stream's end: an SSE event with no blank line after it is read as
        one; a JSON array element cut short is not sent."""
        if self.denied is not None:
            return b""
        out = b""
        if self._mode in ("sse", "whole") and self._raw.strip(_LINE_ENDS):
            rest, self._raw = bytes(self._raw), bytearray()
            out = self._next(_Item(b"", rest))
            if self.denied is not None:
                return out
        self._ended(None)
        if self.denied is not None:
            return out + self._cut()
        out += self._drained()
        if self.denied is not None:
            return out
        out += self._orphans()
        if self._mode != "array":
            out += self._raw  # blank lines after the last event
        elif self._array_ended:
            out += _ARRAY_END.match(self._raw).group()  # type: ignore[union-attr]  # nothing after it
        self._raw = bytearray()
        return out

    # -----------------------------------------------------------------------------------------
    # Framing: each item with the bytes around it, as they came

    def _framed(self, chunk: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
        if self._mode == "whole":
            self._raw += chunk  # read at its end
            return
        if self._mode is None:
            start = chunk.lstrip()
            if not start:
                self._raw += chunk
                return
            self._mode = "array" if start.startswith(b"[") else "sse"
            if self._mode == "array":
                self._array = JSONArrayFramer()
        if self._mode == "sse":
            yield from self._sse_events(chunk)
        else:
            yield from self._array_elements(chunk)

    def _sse_events(self, chunk: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
        # An event's end is looked for in what this chunk adds alone (and the line ends before it
        # that a blank line may begin with): a large event is not searched again at every piece.
        start = max(0, len(self._raw) - 4)
        self._raw += chunk
        end = sse_event_end(bytes(self._raw[start:]))
        if end < 0:
            if len(self._raw) > MAX_FRAME:
                raise _Unreadable("a server-sent event larger than 16 MiB")
            return
        region = bytes(self._raw[: start + end])
        del self._raw[: start + end]
        spans = raw_event_spans(region)
        if not spans:
            yield region, b"", b""
            return
        bounds = [0, *(s for s, _ in spans[1:]), len(region)]
        for (s, e), a, b in zip(spans, bounds[:-1], bounds[1:], strict=True):
            yield region[a:s], region[s:e], region[e:b]

    def _array_elements(self, chunk: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
        framer = self._array
        assert framer is not None
        self._raw += chunk
        if self._array_ended:
            return
        elements = framer.feed(chunk)
        if framer.error is not None:
            raise _Unreadable(framer.error)
        at = 0
        for element in elements:
            start = _BETWEEN.match(self._raw, at).end()  # type: ignore[union-attr]
            end = start + len(element)
            if self._raw[start:end] != element:
                raise _Unreadable("an element of the JSON array is not where it was read")
            yield bytes(self._raw[at:start]), element, b""
            at = end
        if at:
            del self._raw[:at]
        if _ARRAY_END.match(self._raw):
            self._array_ended = True

    # -----------------------------------------------------------------------------------------
    # Reading an item

    def _next(self, item: _Item) -> bytes:
        self._pending.append(item)
        self._waiting += item.size
        if not item.body:
            return self._drained()
        if self._mode == "sse":
            event = parse_sse_block(item.body.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            if event is None:
                return self._drained()  # a comment, or an event without data
            data = event.data.encode()
        else:
            data = item.body
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.denied = "unread"  # what cannot be read does not go on
            self._pending.pop()
            return self._cut()
        item.obj = obj
        answer = obj.get(self._envelope) if self._envelope is not None else obj
        candidates = answer.get("candidates") if isinstance(answer, dict) else None
        if not isinstance(candidates, list):
            return self._drained()  # usage alone, prompt feedback, the upstream's own error
        assert isinstance(answer, dict)
        self._template = {k: answer[k] for k in _TEMPLATE if k in answer}
        finished = []
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                continue
            index = candidate_index(candidate, position)
            self._candidate(item, index, candidate)
            if self.denied is not None:
                del candidates[position + 1 :]  # the candidates after it are not read
                return self._cut_in(item, candidates)
            if candidate.get("finishReason") is not None:
                finished.append(index)
        for index in finished:
            self._ended(index)
            if self.denied is not None:
                return self._cut_in(item, candidates)
        return self._drained()

    def _cut_in(self, item: _Item, candidates: list[Any]) -> bytes:
        """A value to deny in this item: it goes on written anew with what is known of it, no
        candidate in it finished (the stream does not end well)."""
        item.changed = True
        for candidate in candidates:
            if isinstance(candidate, dict):
                candidate.pop("finishReason", None)
        return self._cut()

    def _candidate(self, item: _Item, index: int, candidate: dict[str, Any]) -> None:
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            return
        for at, part in enumerate(parts):
            if not isinstance(part, dict):
                continue
            self._part(item, index, part)
            if self.denied is not None:
                # The parts after it are not read; a part other than text goes with its value.
                del parts[at + (1 if isinstance(part.get("text"), str) else 0) :]
                return

    def _part(self, item: _Item, index: int, part: dict[str, Any]) -> None:
        signed = bool(part.get("thoughtSignature"))
        text = part.get("text")
        if isinstance(text, str) and text:
            self._fed(item, (index, "thought" if part.get("thought") is True else "text"), part, "text", signed)
            return
        call = part.get("functionCall")
        call = call if isinstance(call, dict) else {}
        # Whole in their part: a call's arguments, and the code Gemini runs and what it printed.
        for whole in (call.get("args"), part.get("executableCode"), part.get("codeExecutionResult")):
            if isinstance(whole, (dict, list)):
                self._values(item, whole, signed)
                if self.denied is not None:
                    return
        for partial in call.get("partialArgs") or ():
            if not isinstance(partial, dict) or not isinstance(partial.get("stringValue"), str):
                continue
            channel = (index, f"partialArgs {partial.get('jsonPath')}")
            if partial["stringValue"]:
                self._fed(item, channel, partial, "stringValue", signed)
                if self.denied is not None:
                    return
            if partial.get("willContinue") is not True:
                self._end_channel(channel)
                if self.denied is not None:
                    return

    def _values(self, item: _Item, value: dict[str, Any] | list[Any], signed: bool) -> None:
        """Each string value of a JSON object read whole, replaced in place (it stays the JSON it
        was); in a signed part, a value to replace is denied."""
        keys: Any = value.keys() if isinstance(value, dict) else range(len(value))
        for key in keys:
            inner = value[key]
            if isinstance(inner, (dict, list)):
                self._values(item, inner, signed)
            elif isinstance(inner, str) and inner:
                sent, denied = self._whole_text(inner.encode())
                if denied is None and sent != inner.encode():
                    if signed:
                        denied = _replaced_kind(sent) or "unread"
                    else:
                        value[key] = sent.decode()
                        item.changed = True
                self.denied = denied
            if self.denied is not None:
                return

    def _whole_text(self, text: bytes) -> tuple[bytes, str | None]:
        """A text read whole: what goes on of it, and the kind of a value to deny."""
        scanner = self._compiled.scanner()
        first = scanner.feed(text)
        rest = scanner.flush() if first.denied is None else first
        self._spent.update(scanner.counts)
        if first.denied is not None:
            return first.text, first.denied
        return first.text + rest.text, rest.denied

    def _fed(self, item: _Item, channel: Channel, holder: dict[str, Any], name: str, signed: bool) -> None:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(None)
        if state.scanner is None:
            state.scanner = self._compiled.scanner()
        piece = holder[name].encode()
        item.pieces.append(_Piece(channel, state.fed, piece, holder, name, signed))
        released = state.scanner.feed(piece)
        state.fed += len(piece)
        self._owe(state, released.text)
        if released.denied is not None:
            self.denied = released.denied

    def _owe(self, state: _Channel, text: bytes) -> None:
        state.owed += text
        if text and b"[REDACTED:" in text:
            state.replaced = _replaced_kind(text) or state.replaced

    def _end_channel(self, channel: Channel) -> None:
        state = self._channels.get(channel)
        if state is None or state.scanner is None:
            return
        scanner, state.scanner = state.scanner, None
        released = scanner.flush()
        self._spent.update(scanner.counts)
        self._owe(state, released.text)
        if released.denied is not None:
            self.denied = released.denied

    def _ended(self, index: int | None) -> None:
        """The scanners of a candidate (every candidate: None) flushed, now that its text has ended."""
        for channel in list(self._channels):
            if index is None or channel[0] == index:
                self._end_channel(channel)
                if self.denied is not None:
                    return

    # -----------------------------------------------------------------------------------------
    # What goes on

    def _read(self, state: _Channel) -> int:
        """How far the channel's text is known: what its scanner no longer holds."""
        if state.scanner is None or not self._compiled.holds:
            return state.fed
        return state.fed - state.scanner.held

    def _drained(self) -> bytes:
        """The items whose text is all known, in order: as they came where it is the text that
        came, written anew where it is not."""
        out: list[bytes] = []
        while self._pending:
            item = self._pending[0]
            unknown = any(self._read(self._channels[p.channel]) < p.start + len(p.text) for p in item.pieces)
            if unknown and self._waiting - item.size <= WAITING_BYTES:
                break
            # Else, where too much waits behind it, it goes on with what is known of it, the rest
            # of its text later, in its channel's next item (or one of its own).
            signed = self._signed_changed(item)
            if signed is not None:
                self.denied = signed
                return b"".join(out) + self._ending()
            out.append(self._settled(self._popped()))
        return b"".join(out)

    def _popped(self) -> _Item:
        item = self._pending.popleft()
        self._waiting -= item.size
        return item

    def _signed_changed(self, item: _Item) -> str | None:
        """The kind of a value in a signed part: one of the item's, or a later one whose text the
        item would carry (a value replaced across the two). It would not go on as it came."""
        for p in item.pieces:
            if self._as_it_came(p):
                continue
            state = self._channels[p.channel]
            end = p.start + len(p.text)
            carried = self._read(state) if state.sent < end and self._own_share(p) == len(state.owed) else end
            if p.signed or any(q.signed and end <= q.start < carried for q in self._later(p)):
                return _replaced_kind(state.owed) or state.replaced or "unread"
        return None

    def _later(self, piece: _Piece) -> Iterator[_Piece]:
        """The pieces of the piece's channel that come after it (all pending)."""
        end = piece.start + len(piece.text)
        for item in self._pending:
            for q in item.pieces:
                if q.channel == piece.channel and q.start >= end:
                    yield q

    def _own_share(self, piece: _Piece) -> int:
        """How much of its channel's owed text a piece written anew carries: all of it, but the
        known text of the pieces after it where that comes as it came (a value replaced within
        this piece leaves the pieces after it as they came)."""
        state = self._channels[piece.channel]
        end = piece.start + len(piece.text)
        reach = self._read(state)
        if reach <= end:
            return len(state.owed)
        after = b"".join(q.text for q in self._later(piece))[: reach - end]
        if len(after) == reach - end and len(after) < len(state.owed) and state.owed.endswith(after):
            return len(state.owed) - len(after)
        return len(state.owed)

    def _orphans(self) -> bytes:
        """Items for text known that no item waiting carries (the rest of an item that went on
        before its text was all known)."""
        carried = {p.channel for item in self._pending for p in item.pieces}
        out = []
        for channel, state in self._channels.items():
            if state.owed and channel not in carried:
                obj = self._held_item(channel, state.owed.decode())
                state.owed = b""
                state.sent = self._read(state)
                head = b",\r\n" if self._mode == "array" else b""
                tail = b"\r\n\r\n" if self._mode == "sse" else b""
                out.append(self._written(_Item(head, b"", tail, obj)))
        return b"".join(out)

    def _held_item(self, channel: Channel, text: str) -> dict[str, Any]:
        index, name = channel
        if name.startswith("partialArgs "):
            partial = {"jsonPath": name.removeprefix("partialArgs "), "stringValue": text, "willContinue": True}
            part: dict[str, Any] = {"functionCall": {"partialArgs": [partial], "willContinue": True}}
        else:
            part = {"text": text, **({"thought": True} if name == "thought" else {})}
        answer = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": index}], **self._template}
        return {self._envelope: answer} if self._envelope is not None else answer

    def _cut(self) -> bytes:
        """At a value to deny: the items before it with what is known of them, and nothing held."""
        out: list[bytes] = []
        while self._pending:
            item = self._pending[0]
            if self._signed_changed(item) is not None:
                # A signed part is never sent changed: nothing from it on goes.
                return b"".join(out) + self._ending()
            out.append(self._settled(self._popped()))
        return b"".join(out) + self._orphans() + self._ending()

    def _ending(self) -> bytes:
        """The error item a denied stream ends with, and nothing after it."""
        self._pending.clear()
        kind = self.denied or "unread"
        if self._mode == "array":
            return (b",\r\n" if self._sent_any else b"[") + denied_error(kind) + b"\r\n]"
        if self._mode == "whole":
            return b""
        return (b"\n" if self._cr_last else b"") + denied_event(kind)

    def _settled(self, item: _Item) -> bytes:
        """An item as it goes on: as it came where each piece is what goes on of its channel."""
        self._sent_any = self._sent_any or bool(item.body)
        if not item.changed and all(self._as_it_came(p) for p in item.pieces):
            for p in item.pieces:
                state = self._channels[p.channel]
                state.owed = state.owed[len(p.text) :]
                state.sent += len(p.text)
            self._cr_last = (item.tail or item.body or item.head).endswith(b"\r")
            return item.head + item.body + item.tail
        self._cr_last = False
        for p in item.pieces:
            state = self._channels[p.channel]
            end = p.start + len(p.text)
            if state.sent >= end:
                p.holder[p.field] = ""  # what it carried went on in an item before
                continue
            share = self._own_share(p)
            p.holder[p.field] = state.owed[:share].decode()
            state.sent = end if share < len(state.owed) else self._read(state)
            state.owed = state.owed[share:]
        return self._written(item)

    def _as_it_came(self, piece: _Piece) -> bool:
        """Whether what goes on of the piece's channel, from where it begins, is the piece."""
        state = self._channels[piece.channel]
        known = self._read(state) >= piece.start + len(piece.text)
        return known and state.sent == piece.start and state.owed.startswith(piece.text)

    def _written(self, item: _Item) -> bytes:
        body = json.dumps(item.obj, ensure_ascii=False, separators=(",", ":")).encode()
        if self._mode == "sse":
            # A blank line cut at its CR: the LF that may follow it comes with the next item.
            tail = item.tail + b"\n" if item.tail.endswith(b"\r") else item.tail or b"\r\n\r\n"
            return item.head + b"data: " + body + tail
        return item.head + body + item.tail


def _replaced_kind(text: bytes) -> str | None:
    """The kind a placeholder in `text` names."""
    found = _PLACEHOLDER.search(text.decode(errors="replace"))
    return found.group(1) if found else None


def guard_gemini_json(
    compiled: AnswerDetectors, body: bytes, envelope: str | None = None
) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) answer read: the body as it goes on (redacted, or as it came where
    nothing is), the kind of a value to deny (the answer is then refused), and the counts."""
    guard = GeminiAnswerGuard(compiled, envelope, mode="whole")
    out = guard.feed(body) + guard.flush()
    if guard.denied is not None:
        return body, guard.denied, guard.counts
    return out, None, guard.counts


def guard_code_assist_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """Code Assist's whole answer: Gemini's inside `{"response": …}`."""
    return guard_gemini_json(compiled, body, ENVELOPE)


def code_assist_guard(compiled: AnswerDetectors) -> GeminiAnswerGuard:
    """Code Assist's streamed answer: Gemini's server-sent events, each inside `{"response": …}`."""
    return GeminiAnswerGuard(compiled, ENVELOPE)
