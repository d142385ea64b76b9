"""OpenAI chat's answer read by the answer guardrails (`governance/guardrails/answer.py`), in its
own events: each choice's text, refusal and reasoning, and each tool call's arguments (JSON as
the model writes it), one scanner per channel. A streamed answer's events go on as they come,
byte for byte where nothing in them is held. An event whose text is held is held whole, with the
events after it (their order kept): once its text is known to be no value it goes on as it came,
so a clean answer comes through byte for byte; an event is written anew only where a value is
replaced or a denial cuts it. At a value to deny, the text before it goes on, then an event whose
`error` the SDKs raise on, and nothing more (no `[DONE]`). Plain code, knowing nothing of
mitmproxy: `ChatAnswerGuard` is a `Rewrite` (`formats/translation.py`). The machinery (events
held, settled, read a read at a time) is `event_guard.EventGuard`'s."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.json_codec import keys_once, loads_once
from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner
from tollgate.governance.guardrails.chat_template import Channel, TemplatePass
from tollgate.governance.guardrails.event_guard import (  # noqa: F401
    UNREAD,
    WAITING_BYTES,
    EventGuard,
    Pending,
    unpaired,
)
from tollgate.governance.guardrails.logprob_tokens import chat_spells

# The text fields of a choice's delta (or message) that are read: its text, a refusal, and the
# reasoning some providers show (`reasoning_content`, `reasoning`).
TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
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
    """An event's JSON (None where it is not JSON, or is `null`): read by orjson, several times
    faster, or where orjson refuses it (NaN, bytes that are not UTF-8) as the SDKs read it; None
    too where a string holds a surrogate not paired. Data of white space alone is an empty object:
    it carries nothing. None too where an object repeats a key (`keys_once`): parsers differ on
    which value they keep."""
    if not data.strip():
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = loads_once(data.decode("utf-8", "replace").encode())
        except ValueError:
            return None
        return None if unpaired(value) else value  # a surrogate not paired is no text: not read
    return value if keys_once(data, value) else None


def of_read_shape(obj: Any) -> bool:
    """Whether an event's object holds its text only where the guard reads it: an object without
    choices (an error, usage alone), or choices whose deltas carry text in `TEXT_FIELDS` and tool
    calls' arguments, as strings. Another shape (JSON that is no object, a delta or a text field of
    another type, a legacy `function_call`, an audio transcript, log probabilities whose tokens
    spell other text than the delta's: `logprob_tokens.py`) would go on unread."""
    return choices_read(obj, lambda choice: _choice_holding(choice, "delta"))


def of_whole_shape(obj: Any) -> bool:
    """Whether a whole answer's object holds its text only where the guard reads it: as an event's
    (`of_read_shape`), each choice's `message` in place of its delta."""
    return choices_read(obj, lambda choice: _choice_holding(choice, "message"))


def choices_read(obj: Any, choice_read: Callable[[Any], bool]) -> bool:
    """Whether an object holds its text only where a choice loop reads it: an object without
    choices (an error, usage alone), or a list of choices each of the shape `choice_read` reads."""
    if not isinstance(obj, dict):
        return False
    choices = obj.get("choices")
    if choices is None:
        return True
    return isinstance(choices, list) and all(choice_read(choice) for choice in choices)


def _choice_holding(choice: Any, key: str) -> bool:
    """A chat choice whose text is in its `key` (a delta, a message) as read, and whose tokens, if
    it has any, spell that text."""
    if not isinstance(choice, dict):
        return False
    held = choice.get(key)
    if held is not None and (not isinstance(held, dict) or not _delta_of_read_shape(held)):
        return False
    return not choice.get("logprobs") or chat_spells(choice["logprobs"], held or {})


def _delta_of_read_shape(delta: dict[str, Any]) -> bool:
    if any(not isinstance(delta.get(name, ""), str | None) for name in TEXT_FIELDS):
        return False
    if delta.get("function_call") is not None or delta.get("audio") is not None:
        return False
    calls = delta.get("tool_calls")
    if calls is None:
        return True
    if not isinstance(calls, list):
        return False
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else False
        if function is None:
            continue
        if not isinstance(function, dict) or not isinstance(function.get("arguments", ""), str | None):
            return False
    return True


class ChatAnswerGuard(EventGuard):
    """A streamed chat answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    An event whose text is held is held whole, with the events after it: once its text is known to
    be no value it goes on as it came; where a value is replaced, it is written anew.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        super().__init__(compiled)
        self._framer = SSEFramer()
        self._last: dict[str, Any] = {}  # the last event's object: its fields, for one of held text alone
        # Reads of events that differ only in their text, passed without reading each event.
        self._by_template = TemplatePass()

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is None and not self._closed and self._by_template.template is not None:
            out, units = self._by_template.feed(self, chunk)
            return out if out is not None else self._read_units(units)
        return super().feed(chunk)

    def reads_at_once(self, chunk: bytes) -> bool:
        """Whether a read is cheap on the event loop whatever its size: small events its template
        passes (`chat_template.TemplatePass.light`)."""
        return self.denied is None and not self._closed and self._by_template.light(chunk, self._framer.held_size)

    def _units(self, chunk: bytes) -> list[Any]:
        return self._framer.feed(chunk)

    def _unit(self, unit: Any) -> bytes:
        return self._event(unit)

    def _saved(self) -> dict[str, Any]:
        return {**super()._saved(), "_last": self._last}

    def _scanner(self, channel: Channel) -> AnswerScanner:
        return self._compiled.scanner(is_json=channel[1] == "arguments")

    def _rewritten(self, pending: Pending) -> bytes:
        return self._written(pending.obj)

    def _orphan(self, channel: Channel, text: str) -> bytes:
        return self._written(self._held_delta(channel, text))

    def _denied_end(self, kind: str) -> bytes:
        return denied_event(kind)

    def _event(self, block: bytes) -> bytes:
        """One event, waiting in its turn: read where it is JSON or `[DONE]`; one whose data is
        neither stops the answer before it (a raw client would read what it carries)."""
        pending = Pending(block + b"\n\n")
        self._pending.append(pending)
        data = event_data(block)
        if data is None:
            return self._drained()
        if data.strip() == b"[DONE]":
            return self._done(pending)
        obj = event_object(data)
        if not self._of_read_shape(obj):
            return self._unread(pending)
        return self._object_event(pending, obj)

    @staticmethod
    def _of_read_shape(obj: Any) -> bool:
        """Whether an event's object holds its text only where the guard reads it."""
        return of_read_shape(obj)

    def _done(self, pending: Pending) -> bytes:
        """`[DONE]`: what every choice holds goes on before it."""
        self._pending.pop()
        self._ended(None)
        return self._cut() if self.denied is not None else self._drained() + self._orphans() + pending.whole

    def _object_event(self, pending: Pending, obj: Any) -> bytes:
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return self._drained()
        pending.obj = obj
        self._last = obj
        before = b""
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict) or not self._read_choice(pending, choice.get("index", 0), choice):
                continue
            index = choice.get("index", 0)
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
            self._by_template.learn(pending.whole[:-2], pending.pieces[0])  # its block
        return before + self._drained()

    def _read_choice(self, pending: Pending, index: int, choice: dict[str, Any]) -> bool:
        """A choice's text given to its channels (False: the choice carries none, nor ends)."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return False
        self._delta(pending, index, delta)
        return True

    def _delta(self, pending: Pending, index: int, delta: dict[str, Any]) -> None:
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

    def _ended(self, index: int | None) -> None:
        """The scanners of a choice (every choice: None) flushed, now that their text has ended."""
        self._ended_where(lambda channel: index is None or channel[0] == index)

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        choice, name, call = channel
        if name == "arguments":
            delta: dict[str, Any] = {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
        else:
            delta = {name: text}
        template = {k: v for k, v in self._last.items() if k in ("id", "object", "created", "model")}
        return {**template, "choices": [{"index": choice, "delta": delta, "finish_reason": None}]}

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        """An event written anew: its choices' log probabilities, whose tokens are the text as it
        came, are left out."""
        without_logprobs(obj)
        return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def without_logprobs(obj: dict[str, Any]) -> None:
    """The log probabilities of an answer's choices set to null: their tokens (`token`, `bytes`,
    `top_logprobs`) are the text as it came, value and all."""
    for choice in obj.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs"):
            choice["logprobs"] = None


def guard_chat_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) chat answer read: the body as it goes on (redacted, or as it came
    where nothing is), the kind of a value to deny (the answer is then refused), and the counts.
    A choice whose text is redacted loses its `logprobs`."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None, {}
    if not of_whole_shape(obj):
        return body, UNREAD, {}  # its text elsewhere, or not a string: it would go on unread
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return body, None, {}
    counts: Counter[str] = Counter()
    changed = False
    for choice in choices:
        message = choice.get("message")
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
                if choice.get("logprobs"):
                    choice["logprobs"] = None  # its tokens are the text as it came
                changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)
