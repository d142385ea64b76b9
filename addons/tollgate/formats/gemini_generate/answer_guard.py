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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tollgate.formats.answer_reading.events import (
    ChannelState,
    EventGuard,
    Pending,
    Place,
    members_in,
    sse_fields,
    unpaired,
)
from tollgate.formats.answer_reading.logprob_tokens import gemini_spells
from tollgate.formats.answer_reading.scanning import JSON_TYPE, PLACEHOLDER, UNREAD, AnswerFormat, Scanners, scan_whole
from tollgate.formats.bodies.json_codec import loads_once
from tollgate.formats.framing import (
    MAX_FRAME,
    JSONArrayFramer,
    LeadingBom,
    parse_sse_block,
    raw_event_spans,
    sse_event_end,
)
from tollgate.formats.gemini_generate.answer import candidate_index

DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."
# Code Assist's envelope: each answer inside `{"response": …, "traceId": …}`.
ENVELOPE = "response"
# The answer's own fields an item written anew for held text alone carries.
_TEMPLATE = ("responseId", "modelVersion", "createTime")
# A candidate's log probabilities: their tokens are its text as it came.
LOGPROBS = "logprobsResult"
_PLACEHOLDER = re.compile(re.escape(PLACEHOLDER).replace(r"\{kind\}", r"([^\]\s]+)"))
_LINE_ENDS = b"\r\n"
# An escaped UTF-16 surrogate: a lone one is no text (it cannot be read, nor written as UTF-8).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_BETWEEN = re.compile(rb"[\[ \t\r\n,]*")  # what comes before an element of the array
_ARRAY_END = re.compile(rb"[ \t\r\n,]*\][ \t\r\n]*")

# A part's members (one is set; the API says what each is): read whole where the model writes text
# in them (code, what it printed, a server-side tool's call); the rest opaque (binary data, a
# file's address, flags, the signature). A member not known that carries text stops the answer.
_PART_WHOLE = ("executableCode", "codeExecutionResult", "functionResponse", "toolCall", "toolResponse", "partMetadata")
_PART_MEMBERS = frozenset(
    {*_PART_WHOLE, "text", "thought", "thoughtSignature", "functionCall", "inlineData", "fileData", "videoMetadata"}
    | {"mediaResolution"}
)
# A candidate's members: read whole where they carry text (the model's malformed call in
# `finishMessage`, the queries it wrote and the text it repeats in `groundingMetadata`, sources).
_CANDIDATE_WHOLE = (
    "finishMessage",
    "groundingMetadata",
    "groundingAttributions",
    "citationMetadata",
    "urlContextMetadata",
    "urlRetrievalMetadata",
)
_CANDIDATE_MEMBERS = frozenset(
    {*_CANDIDATE_WHOLE, "content", "index", "finishReason", "safetyRatings", "tokenCount", "avgLogprobs", LOGPROBS}
)
_CONTENT_MEMBERS = frozenset({"role", "parts"})
# What a candidate's reading reads of it (its other members are read whole, as the item's are).
_CANDIDATE_READ = frozenset({*_CANDIDATE_WHOLE, "content", LOGPROBS})
_CANDIDATES = frozenset(("candidates",))
_PARTS = frozenset(("parts",))

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


def array_end(kind: str, opened: bool) -> bytes:
    """A denied JSON array's end: its error item, the array closed after it; opened with it where
    none of it went yet."""
    return (b",\r\n" if opened else b"[") + denied_error(kind) + b"\r\n]"


class _Unreadable(Exception):
    """The stream cannot be framed into items: it stops there."""


@dataclass(slots=True)
class _Item(Pending):
    """An item not yet gone on: its bytes as they came (`whole`: `head`, the item, `tail`: what
    frames it, kept where it is written anew), its object, its channels' text, and whether its
    function calls' arguments were replaced (`changed`)."""

    head: bytes = b""
    body: bytes = b""
    tail: bytes = b""


def _item(head: bytes, body: bytes, tail: bytes = b"", obj: Any = None) -> _Item:
    return _Item(head + body + tail, obj, head=head, body=body, tail=tail)


class GeminiAnswerGuard(EventGuard):
    """A streamed Gemini answer's items, read and rewritten (`feed` each piece, `flush` at its end):
    server-sent events or a JSON array, told apart by the first byte that is not white space.
    `envelope`: the key each answer is wrapped in (Code Assist's `response`), or None.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    _one_piece_at_once = False  # each item that goes on is noted (`_settled`)

    def __init__(self, compiled: Scanners, envelope: str | None = None, mode: Mode | None = None) -> None:
        super().__init__(compiled)
        self._envelope = envelope
        self._mode: Mode | None = mode
        self._raw = bytearray()  # what is read and not yet framed into items
        self._array: JSONArrayFramer | None = None
        self._bom = LeadingBom()
        self._array_ended = False
        self._unframed = False  # what was read cannot be framed: the stream stops there
        self._sent_any = False  # an item went on (in an array: the `[` with it)
        self._cr_last = False  # what went on last ends in a CR (an event's blank line cut at it)
        self._template: dict[str, Any] = {}

    def _saved(self) -> dict[str, Any]:
        return {
            **super()._saved(),
            "_sent_any": self._sent_any,
            "_cr_last": self._cr_last,
            "_template": self._template,
        }

    def _units(self, chunk: bytes) -> list[Any]:
        items: list[tuple[bytes, bytes, bytes]] = []
        if chunk:
            try:
                items.extend(self._framed(chunk))
            except _Unreadable:
                self._unframed = True
        return items

    def _unit(self, unit: Any) -> bytes:
        return self._next(_item(*unit))

    def _read_each(self, units: list[Any]) -> bytes:
        out = super()._read_each(units)
        if self._unframed and self.denied is None:
            out += self._unread()  # what cannot be framed does not go on
        return out

    def flush(self) -> bytes:
        """What is held at the stream's end: an SSE event with no blank line after it is read as
        one; a JSON array element cut short is not sent."""
        if self.denied is not None:
            return b""
        out = b""
        if self._mode in ("sse", "whole") and self._raw.strip(_LINE_ENDS):
            rest, self._raw = bytes(self._raw), bytearray()
            out = self._next(_item(b"", rest))
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
            chunk = self._bom.feed(chunk)  # a byte order mark before the first item: read past
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
        if not item.body:
            return self._drained()
        if self._mode == "sse":
            fields = sse_fields(item.body)
            if fields and (denied := self._read_places(item, None, fields)) is not None:
                return self._stop_before(item, denied)  # its name, id or a comment holds a value
            event = parse_sse_block(item.body.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            if event is None:
                return self._drained()  # a comment, or an event without data
            data = event.data.encode()
        else:
            data = item.body
        try:
            obj = loads_once(data)  # an object that repeats a key is not read
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or (_SURROGATE.search(data) is not None and unpaired(obj)):
            return self._unread(item)  # what cannot be read does not go on
        item.obj = obj
        answer = obj.get(self._envelope) if self._envelope is not None else obj
        candidates = answer.get("candidates") if isinstance(answer, dict) else None
        if self._envelope is not None and (
            _carries_text(obj.get("candidates")) or (not isinstance(answer, dict) and _carries_text(answer))
        ):
            return self._unread(item)  # an answer outside its envelope, or an envelope not known
        if not isinstance(candidates, list):
            if _carries_text(candidates):
                return self._unread(item)  # candidates of a shape not known
            # Usage alone, prompt feedback, the upstream's own error: every string read whole.
            denied = self._read_places(item, obj, self._rest(obj, answer, ()))
            return self._stop_before(item, denied) if denied is not None else self._drained()
        assert isinstance(answer, dict)
        if not all(_spelled(candidate) for candidate in candidates):
            return self._unread(item)  # tokens that spell other text than its own would go on unread
        denied = self._read_places(item, obj, self._rest(obj, answer, candidates))
        if denied is not None:
            return self._stop_before(item, denied)  # it carries the value whole: it never goes
        self._template = {k: answer[k] for k in _TEMPLATE if k in answer}
        finished = []
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                if _carries_text(candidate):
                    self.denied = UNREAD
                    del candidates[position:]
                    return self._cut_in(item, candidates)
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

    def _rest(self, obj: dict[str, Any], answer: Any, candidates: Iterable[Any]) -> list[Place]:
        """The strings of an item that its candidates' reading does not read (its model version,
        usage, prompt feedback, a candidate's finish reason and safety ratings, a content's role,
        a member not known, the envelope's other members), but the ones read clean before."""
        clean = self._clean
        if self._envelope is not None:
            places = members_in(obj, frozenset((self._envelope,)), clean)
            if isinstance(answer, dict):
                places += members_in(answer, _CANDIDATES, clean)
        else:
            places = members_in(obj, _CANDIDATES, clean)
        for candidate in candidates:
            if not isinstance(candidate, dict):
                continue
            places += members_in(candidate, _CANDIDATE_READ, clean)
            content = candidate.get("content")
            if isinstance(content, dict):
                places += members_in(content, _PARTS, clean)
        return places

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
        usual = (
            isinstance(content, dict)
            and isinstance(parts, list)
            and candidate.keys() <= _CANDIDATE_MEMBERS
            and content.keys() <= _CONTENT_MEMBERS
        )
        if not usual and (
            _unknown_text(candidate, _CANDIDATE_MEMBERS)
            or (_carries_text(content) if not isinstance(content, dict) else _unknown_text(content, _CONTENT_MEMBERS))
            or (not isinstance(parts, list) and _carries_text(parts))
        ):
            self.denied = UNREAD  # a candidate of a shape not known carries text: none of it goes on
            candidate.clear()
            candidate.update(content={"role": "model", "parts": []}, index=index)
            return
        if not isinstance(parts, list):
            parts = []
        for at, part in enumerate(parts):
            if not isinstance(part, dict):
                if _carries_text(part):
                    self.denied = UNREAD
                    del parts[at:]
                    return
                continue
            in_text = self._part(item, index, part)
            if self.denied is not None:
                # The parts after it are not read; a part goes with its value, but for text.
                del parts[at + (1 if in_text else 0) :]
                return
        if candidate.keys().isdisjoint(_CANDIDATE_WHOLE):
            return  # most items carry text alone
        self._read_whole(item, candidate, _CANDIDATE_WHOLE, False)
        grounding = candidate.get("groundingMetadata")
        if self.denied is None and isinstance(grounding, dict):
            self._segments(grounding)
        if self.denied is not None:
            for name in _CANDIDATE_WHOLE:  # what carries the value does not go on
                candidate.pop(name, None)

    def _part(self, item: _Item, index: int, part: dict[str, Any]) -> bool:
        """A part read: what is read whole first, then its text. True where a value to deny is in
        its text (the part goes on with what is known of it); False where it is elsewhere, or
        the part is of a shape not known (it does not go on)."""
        text = part.get("text")
        if len(part) == 1 and type(text) is str:  # text alone: most parts
            if text:
                self._fed(item, (index, "text"), part, "text", text)
            return True
        if (
            (not part.keys() <= _PART_MEMBERS and _unknown_text(part, _PART_MEMBERS))
            or not isinstance(part.get("text", ""), str)
            or not isinstance(part.get("thought", False), bool)
        ):
            self.denied = UNREAD
            return False
        signed = bool(part.get("thoughtSignature"))
        call = part.get("functionCall")
        if isinstance(call, dict):
            # Its name and arguments, whole in their part.
            self._read_whole(item, call, [k for k in call if k != "partialArgs"], signed)
            if self.denied is None:
                self._partial_args(item, index, call, signed)
        elif call is not None:
            self._read_whole(item, part, ("functionCall",), signed)
        if self.denied is None and not part.keys().isdisjoint(_PART_WHOLE):
            self._read_whole(item, part, _PART_WHOLE, signed)
        if self.denied is not None:
            return False
        if isinstance(text, str) and text:
            channel = (index, "thought" if part.get("thought") is True else "text")
            self._fed(item, channel, part, "text", text, signed)
        return True

    def _partial_args(self, item: _Item, index: int, call: dict[str, Any], signed: bool) -> None:
        """Vertex AI's streamed arguments: each string value's pieces one channel (by its path)."""
        for partial in call.get("partialArgs") or ():
            if not isinstance(partial, dict):
                continue
            self._read_whole(item, partial, ("jsonPath",), signed, exact=True)  # the keys the model wrote
            if self.denied is not None:
                return
            if not isinstance(partial.get("stringValue"), str):
                continue
            channel = (index, f"partialArgs {partial.get('jsonPath')}")
            if partial["stringValue"]:
                self._fed(item, channel, partial, "stringValue", partial["stringValue"], signed)
                if self.denied is not None:
                    return
            if partial.get("willContinue") is not True:
                self._end_channel(channel)
                if self.denied is not None:
                    return

    def _read_whole(self, item: _Item, holder: Any, names: Iterable[Any], signed: bool, exact: bool = False) -> None:
        """Each string in `holder[name]` for the names it has (nested in objects and arrays) read
        alone and replaced in place (it stays the JSON it was); in a signed part, or where
        `exact` (a path that names keys), a value to replace is denied. An object's keys are read
        too: a value in one is denied (a key replaced could meet another)."""
        for name in names:
            if isinstance(holder, dict) and name not in holder:
                continue
            inner = holder[name]
            if isinstance(inner, dict):
                self._keys(inner)
                if self.denied is None:
                    self._read_whole(item, inner, list(inner), signed)
            elif isinstance(inner, list):
                self._read_whole(item, inner, range(len(inner)), signed)
            elif isinstance(inner, str) and inner:
                sent, denied = self._whole_text(inner)
                if denied is None and sent != inner:
                    if signed or exact:
                        denied = _replaced_kind(sent) or UNREAD
                    else:
                        holder[name] = sent
                        item.changed = True
                self.denied = denied
            if self.denied is not None:
                return

    def _keys(self, value: dict[str, Any]) -> None:
        """An object's keys read whole: a value found in one is denied."""
        for key in value:
            if not key:
                continue
            sent, denied = self._whole_text(key)
            if denied is None and sent != key:
                denied = _replaced_kind(sent) or UNREAD
            if denied is not None:
                self.denied = denied
                return

    def _segments(self, grounding: dict[str, Any]) -> None:
        """The segments of the answer's text the grounding supports repeat, read together: a value
        cut across two of them (each read alone) is denied."""
        supports = grounding.get("groundingSupports")
        texts = [
            s["segment"]["text"]
            for s in (supports if isinstance(supports, list) else ())
            if isinstance(s, dict) and isinstance(s.get("segment"), dict) and isinstance(s["segment"].get("text"), str)
        ]
        if len(texts) < 2:
            return
        joined = "".join(texts)
        sent, denied = self._whole_text(joined)
        if denied is None and sent != joined:
            denied = _replaced_kind(sent) or UNREAD
        self.denied = denied

    def _whole_text(self, text: str) -> tuple[str, str | None]:
        """A text read whole: what goes on of it, and the kind of a value to deny."""
        read = scan_whole(self._compiled, text)
        self._spent.update(read.counts)
        return read.text, read.denied

    def _owe(self, state: ChannelState, text: bytes) -> None:
        state.owed += text
        if text and b"[REDACTED:" in text:
            state.replaced = _replaced_kind(text) or state.replaced

    def _end_channel(self, channel: Channel) -> None:
        self._committed()
        state = self._channels.get(channel)
        if state is not None and state.scanner is not None:
            self._end(channel, state)

    def _ended(self, index: int | None) -> None:
        """The scanners of a candidate (every candidate: None) flushed, now that its text has ended."""
        self._ended_where(lambda channel: index is None or channel[0] == index)

    # -----------------------------------------------------------------------------------------
    # What goes on

    def _unsent(self, item: Pending) -> str | None:
        """The kind of a value in a signed part: one of the item's, or a later one whose text the
        item would carry (a value replaced across the two). It would not go on as it came."""
        for p, place in zip(item.pieces, self._placed(item), strict=True):
            if place.came:
                continue
            end = p.start + len(p.text)
            if p.signed or any(q.signed and end <= q.start < place.sent for q in self._later(p)):
                state = self._channels[p.channel]
                return _replaced_kind(state.owed) or state.replaced or "unread"
        return None

    def _orphan(self, channel: Channel, text: str) -> bytes:
        head = b",\r\n" if self._mode == "array" else b""
        tail = b"\r\n\r\n" if self._mode == "sse" else b""
        return self._written(_item(head, b"", tail, self._held_item(channel, text)))

    def _held_item(self, channel: Channel, text: str) -> dict[str, Any]:
        index, name = channel
        if name.startswith("partialArgs "):
            partial = {"jsonPath": name.removeprefix("partialArgs "), "stringValue": text, "willContinue": True}
            part: dict[str, Any] = {"functionCall": {"partialArgs": [partial], "willContinue": True}}
        else:
            part = {"text": text, **({"thought": True} if name == "thought" else {})}
        answer = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": index}], **self._template}
        return {self._envelope: answer} if self._envelope is not None else answer

    def _denied_end(self, kind: str) -> bytes:
        """The error item a denied stream ends with."""
        if self._mode == "array":
            return array_end(kind, self._sent_any)
        if self._mode == "whole":
            return b""
        return (b"\n" if self._cr_last else b"") + denied_event(kind)

    def _settled(self, item: Pending) -> bytes:
        """An item as it goes on (`EventGuard._settled`), and what went on last noted."""
        assert isinstance(item, _Item)
        self._sent_any = self._sent_any or bool(item.body)
        out = super()._settled(item)
        # Written anew, an item never ends in a CR.
        self._cr_last = out is item.whole and (item.tail or item.body or item.head).endswith(b"\r")
        return out

    def _rewritten(self, item: Pending) -> bytes:
        assert isinstance(item, _Item)
        return self._written(item)

    def _written(self, item: _Item) -> bytes:
        self._without_logprobs(item.obj)
        body = json.dumps(item.obj, ensure_ascii=False, separators=(",", ":")).encode()
        if self._mode == "sse":
            # A blank line cut at its CR: the LF that may follow it comes with the next item.
            tail = item.tail + b"\n" if item.tail.endswith(b"\r") else item.tail or b"\r\n\r\n"
            return item.head + b"data: " + body + tail
        return item.head + body + item.tail

    def _without_logprobs(self, obj: Any) -> None:
        """An item written anew loses its candidates' `logprobsResult`: its tokens (chosen and top
        candidates) are the text as it came, value and all."""
        answer = obj.get(self._envelope) if self._envelope is not None and isinstance(obj, dict) else obj
        candidates = answer.get("candidates") if isinstance(answer, dict) else None
        for candidate in candidates if isinstance(candidates, list) else ():
            if isinstance(candidate, dict):
                candidate.pop(LOGPROBS, None)


def _spelled(candidate: Any) -> bool:
    """Whether a candidate's log probabilities, if it has any, spell exactly its parts' text."""
    if not isinstance(candidate, dict) or not candidate.get(LOGPROBS):
        return True
    content = candidate.get("content")
    return gemini_spells(candidate[LOGPROBS], content.get("parts") if isinstance(content, dict) else None)


def _unknown_text(obj: dict[str, Any], known: frozenset[str]) -> bool:
    """Whether an object has a member not known that carries text (a string, or an object's key)."""
    if obj.keys() <= known:
        return False  # the most common case, told at once
    return any(name not in known and _carries_text(value) for name, value in obj.items())


def _carries_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, dict):
        return any(key or _carries_text(inner) for key, inner in value.items())
    if isinstance(value, list):
        return any(_carries_text(inner) for inner in value)
    return False


def _replaced_kind(text: str | bytes | bytearray) -> str | None:
    """The kind a placeholder in `text` names."""
    found = _PLACEHOLDER.search(text if isinstance(text, str) else text.decode(errors="replace"))
    return found.group(1) if found else None


def guard_gemini_json(
    compiled: Scanners, body: bytes, envelope: str | None = None
) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) answer read: the body as it goes on (redacted, or as it came where
    nothing is), the kind of a value to deny (the answer is then refused), and the counts."""
    guard = GeminiAnswerGuard(compiled, envelope, mode="whole")
    out = guard.feed(body) + guard.flush()
    if guard.denied is not None:
        return body, guard.denied, guard.counts
    return out, None, guard.counts


def guard_code_assist_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """Code Assist's whole answer: Gemini's inside `{"response": …}`."""
    return guard_gemini_json(compiled, body, ENVELOPE)


def code_assist_guard(compiled: Scanners) -> GeminiAnswerGuard:
    """Code Assist's streamed answer: Gemini's server-sent events, each inside `{"response": …}`."""
    return GeminiAnswerGuard(compiled, ENVELOPE)


def is_generation(first: Any) -> bool:
    """Whether a saved answer's first message (or its first item) is Gemini's: its candidates."""
    item = first[0] if isinstance(first, list) and first else first
    return isinstance(item, dict) and isinstance(item.get("candidates"), list)


# Gemini's streams: server-sent events (`alt=sse`), or one JSON array (`application/json`).
ANSWER = AnswerFormat(
    GeminiAnswerGuard,
    guard_gemini_json,
    denied_event,
    frozenset(("text/event-stream", JSON_TYPE)),
    saved=is_generation,
    array_end=array_end,
)
# Code Assist's: Gemini's answers, each in its envelope.
CODE_ASSIST_ANSWER = AnswerFormat(code_assist_guard, guard_code_assist_json, denied_event)
