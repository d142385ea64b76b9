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

import re
from collections.abc import Iterable
from typing import Any

from tollgate.formats.answer_reading.channels import replaced_kind
from tollgate.formats.answer_reading.events import EventGuard
from tollgate.formats.answer_reading.logprob_tokens import gemini_spells
from tollgate.formats.answer_reading.scanning import JSON_TYPE, UNREAD, AnswerFormat, Scanners
from tollgate.formats.answer_reading.string_places import Place, members_in, sse_fields, unpaired
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.bodies.json_codec import loads_once
from tollgate.formats.framing import parse_sse_block
from tollgate.formats.gemini_generate.answer import candidate_index
from tollgate.formats.gemini_generate.item_framing import ItemFramer, Mode
from tollgate.formats.gemini_generate.item_writer import (
    LOGPROBS,
    Channel,
    Item,
    ItemWriter,
    array_end,
    denied_event,
    new_item,
)
from tollgate.formats.gemini_generate.whole_values import WholeValues

# Code Assist's envelope: each answer inside `{"response": …, "traceId": …}`.
ENVELOPE = "response"
# An escaped UTF-16 surrogate: a lone one is no text (it cannot be read, nor written as UTF-8).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")

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


class GeminiAnswerGuard(EventGuard):
    """A streamed Gemini answer's items, read and rewritten (`feed` each piece, `flush` at its end):
    server-sent events or a JSON array, told apart by the first byte that is not white space.
    `envelope`: the key each answer is wrapped in (Code Assist's `response`), or None.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: Scanners, envelope: str | None = None, mode: Mode | None = None) -> None:
        super().__init__(compiled)
        self._envelope = envelope
        self._framer = ItemFramer(mode)
        self._writer = ItemWriter(self._framer, envelope)
        self._whole = WholeValues(compiled, self._spent)
        self._channels.notes_replaced = True  # a value replaced in signed text is told by its kind
        # Each item that goes on is noted (by the writer as it stands: a read may be read again).
        self._waiting.went = lambda item, out: self._writer.went(item, out)  # noqa: PLW0108 (late-bound)

    def _saved(self) -> dict[str, Any]:
        return {**super()._saved(), "_writer": self._writer.copy()}

    def _units(self, chunk: bytes) -> list[Any]:
        return self._framer.items(chunk)

    def _unit(self, unit: Any) -> bytes:
        return self._next(new_item(*unit))

    def _read_each(self, units: list[Any]) -> bytes:
        out = super()._read_each(units)
        if self._framer.unframed and self.denied is None:
            out += self._unread()  # what cannot be framed does not go on
        return out

    def flush(self) -> bytes:
        """What is held at the stream's end: an SSE event with no blank line after it is read as
        one; a JSON array element cut short is not sent."""
        if self.denied is not None:
            return b""
        out = b""
        rest = self._framer.last()
        if rest is not None:
            out = self._next(new_item(b"", rest))
            if self.denied is not None:
                return out
        self._ended(None)
        if self.denied is not None:
            return out + self._cut()
        out += self._drained()
        if self.denied is not None:
            return out
        return out + self._orphans() + self._framer.trailer()

    # -----------------------------------------------------------------------------------------
    # Reading an item

    def _next(self, item: Item) -> bytes:
        self._pending.append(item)
        if not item.body:
            return self._drained()
        if self._framer.mode == "sse":
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
        self._writer.noted(answer)
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

    def _cut_in(self, item: Item, candidates: list[Any]) -> bytes:
        """A value to deny in this item: it goes on written anew with what is known of it, no
        candidate in it finished (the stream does not end well)."""
        item.changed = True
        for candidate in candidates:
            if isinstance(candidate, dict):
                candidate.pop("finishReason", None)
        return self._cut()

    def _candidate(self, item: Item, index: int, candidate: dict[str, Any]) -> None:
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
        self.denied = self._whole.read(item, candidate, _CANDIDATE_WHOLE, False)
        grounding = candidate.get("groundingMetadata")
        if self.denied is None and isinstance(grounding, dict):
            self.denied = self._whole.segments(grounding)
        if self.denied is not None:
            for name in _CANDIDATE_WHOLE:  # what carries the value does not go on
                candidate.pop(name, None)

    def _part(self, item: Item, index: int, part: dict[str, Any]) -> bool:
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
            self.denied = self._whole.read(item, call, [k for k in call if k != "partialArgs"], signed)
            if self.denied is None:
                self._partial_args(item, index, call, signed)
        elif call is not None:
            self.denied = self._whole.read(item, part, ("functionCall",), signed)
        if self.denied is None and not part.keys().isdisjoint(_PART_WHOLE):
            self.denied = self._whole.read(item, part, _PART_WHOLE, signed)
        if self.denied is not None:
            return False
        if isinstance(text, str) and text:
            channel = (index, "thought" if part.get("thought") is True else "text")
            self._fed(item, channel, part, "text", text, signed)
        return True

    def _partial_args(self, item: Item, index: int, call: dict[str, Any], signed: bool) -> None:
        """Vertex AI's streamed arguments: each string value's pieces one channel (by its path)."""
        for partial in call.get("partialArgs") or ():
            if not isinstance(partial, dict):
                continue
            self.denied = self._whole.read(item, partial, ("jsonPath",), signed, exact=True)  # the keys the model wrote
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

    def _end_channel(self, channel: Channel) -> None:
        self._channels.commit()
        state = self._channels.states.get(channel)
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
        for p, place in zip(item.pieces, self._waiting.placed(item), strict=True):
            if place.came:
                continue
            end = p.start + len(p.text)
            if p.signed or any(q.signed and end <= q.start < place.sent for q in self._waiting.later(p)):
                state = self._channels.states[p.channel]
                return replaced_kind(state.owed) or state.replaced or "unread"
        return None

    def _orphan(self, channel: Channel, text: str) -> bytes:
        return self._writer.orphan(channel, text)

    def _denied_end(self, kind: str) -> bytes:
        return self._writer.denied_end(kind)

    def _rewritten(self, item: Pending) -> bytes:
        assert isinstance(item, Item)
        return self._writer.written(item)


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
