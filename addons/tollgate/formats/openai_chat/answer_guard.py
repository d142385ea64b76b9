"""OpenAI chat's answer read by the answer guardrails (`governance/guardrails/answer.py`), in its
own events: each choice's text, refusal and reasoning, and each tool call's arguments (JSON as
the model writes it), one scanner per channel. A streamed answer's events go on as they come,
byte for byte where nothing in them is held. An event whose text is held is held whole, with the
events after it (their order kept): once its text is known to be no value it goes on as it came,
so a clean answer comes through byte for byte; an event is written anew only where a value is
replaced or a denial cuts it. At a value to deny, the text before it goes on, then an event whose
`error` the SDKs raise on, and nothing more (no `[DONE]`). Plain code, knowing nothing of
mitmproxy: `ChatAnswerGuard` is a `Rewrite` (`formats/translation.py`). The machinery (events
held, settled, read a read at a time) is `answer_reading.events.EventGuard`'s."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from tollgate.formats.answer_reading.chat_template import Channel, TemplatePass
from tollgate.formats.answer_reading.events import EventGuard
from tollgate.formats.answer_reading.logprob_tokens import chat_spells
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanner, Scanners
from tollgate.formats.answer_reading.string_places import (
    KNOWN_KEYS,
    NOTHING,
    Place,
    members_in,
    read_whole,
    sse_fields,
    strings_in,
    unpaired,
)
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.bodies.json_codec import keys_once, loads_once
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block

# The text fields of a choice's delta (or message) that are read: its text, a refusal, and the
# reasoning some providers show (`reasoning_content`, `reasoning`).
TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
DENIED_MESSAGE = "The answer was stopped: it carries what a guardrail denies ({kind})."
# The members of a delta (or message) that come whole, read whole in each event: its role, a tool
# call's name, a citation (`annotations`: titles, URLs), a reasoning detail's format. Its other
# strings (but `NOT_TEXT`'s) are text that may come in pieces: each read as a channel of its own,
# across the deltas (`reasoning_details[].text` and `summary`, a member not known).
WHOLE_IN_DELTA = frozenset(("role", "name", "annotations", "format", "id", "type", "object"))
_CHOICES = frozenset(("choices",))
_TEXT_KEYS = frozenset(TEXT_FIELDS)
# A choice's members its guard reads itself: its delta (a whole answer's: its message), and its
# log probabilities, whose tokens must spell its text (`logprob_tokens.py`).
_CHOICE_READ = frozenset(("delta", "logprobs"))
_MESSAGE_READ = frozenset(("message", "logprobs"))
# The members most events and choices have (`_top_places`): their strings, once read clean, need no
# reading again.
_PLAIN_TOP = frozenset(("id", "object", "created", "model", "system_fingerprint", "service_tier", "choices"))
_PLAIN_TOP |= frozenset(("obfuscation",))
# An event's own opaque member: OpenAI's padding, random characters in each event.
_TOP_OPAQUE = frozenset(("obfuscation",))
# Read in every event, each new value: the id and object a chunk repeats are read once, a later
# chunk's other one too.
_TOP_TEXT = ("id", "object", "model", "system_fingerprint", "service_tier")
_PLAIN_CHOICE = frozenset(("index", "delta", "logprobs", "finish_reason"))
_CHOICE_TEXT = ("finish_reason",)
# Where a channel of another member's text is in a delta: keys, and list items by their `index`.
Path = tuple[str | int, ...]
# A string a delta gives whole that a client joins to the one at its path in the deltas after.
Merged = list[tuple[Path, str]]
# A delta's text in a channel: its holder, key, channel, and its path (None: a channel of its own name).
Streamed = tuple[Any, Any, Channel, Path | None]


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
    if delta.get("function_call") is not None:
        return False
    audio = delta.get("audio")
    if audio is not None and (not isinstance(audio, dict) or not isinstance(audio.get("transcript", ""), str | None)):
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


class _Apart(Exception):
    """A string given whole again at its path, another than before (`_merged_apart`)."""


class ChatAnswerGuard(EventGuard):
    """A streamed chat answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    An event whose text is held is held whole, with the events after it: once its text is known to
    be no value it goes on as it came; where a value is replaced, it is written anew.
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    def __init__(self, compiled: Scanners) -> None:
        super().__init__(compiled)
        self._framer = SSEFramer()
        self._last: dict[str, Any] = {}  # the last event's object: its fields, for one of held text alone
        self._paths: dict[Channel, Path] = {}  # where in a delta a channel of another member's text is
        self._given: dict[tuple[int, Path], str] = {}  # the strings deltas gave whole, by choice and path
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
        return {**super()._saved(), "_last": self._last, "_paths": self._paths.copy()}

    def _scanner(self, channel: Channel) -> Scanner:
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
        fields = sse_fields(block)
        if fields and (denied := self._read_places(pending, None, fields)) is not None:
            return self._stop_before(pending, denied)  # its name, id or a comment holds a value
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
        places = self._top_places(obj) if isinstance(obj, dict) else []
        if not isinstance(choices, list):
            return self._whole_only(pending, obj, places)
        pending.obj = obj
        self._last = obj
        # What each choice carries whole is read first, then its text, choice by choice.
        streamed = []
        try:
            for choice in choices:
                whole, texts = self._choice_places(choice) if isinstance(choice, dict) else ([], [])
                places += whole
                streamed.append(texts)
        except _Apart:
            return self._unread(pending)  # a name given again, another: read apart, joined by the client
        denied = self._read_places(pending, obj, places)
        if denied is not None:
            return self._stop_before(pending, denied)  # it carries the value whole: it never goes
        before = b""
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict) or not self._read_choice(pending, choice, streamed[i]):
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
        if self._by_template.wanted and len(pending.pieces) == 1 and not before and not pending.changed:
            self._by_template.learn(pending.whole[:-2], pending.pieces[0])  # its block
        return before + self._drained()

    def _whole_only(self, pending: Pending, obj: Any, places: list[Place]) -> bytes:
        """An event without choices (usage alone, an error): its strings read whole."""
        denied = self._read_places(pending, obj, places)
        if denied is not None:
            return self._stop_before(pending, denied)
        return self._drained()

    def _top_places(self, obj: dict[str, Any]) -> list[Place]:
        """What an event carries whole beside its choices, but the strings read clean before: told
        at once of most events (the same members as the last, their strings read)."""
        if _PLAIN_TOP.issuperset(obj) and type(obj.get("created", 0)) is int and self._read_before(obj, _TOP_TEXT):
            return []
        return members_in(obj, _CHOICES, self._clean, _TOP_OPAQUE)

    def _read_before(self, obj: dict[str, Any], names: tuple[str, ...]) -> bool:
        """Whether the strings of an object's members `names` are all null or read clean before."""
        clean = self._clean
        for name in names:
            value = obj.get(name)
            if value is not None and (type(value) is not str or value not in clean):
                return False
        return True

    def _choice_places(self, choice: dict[str, Any]) -> tuple[list[Place], list[Streamed]]:
        """What a choice carries whole (read at once), and the text its delta streams."""
        index = choice.get("index", 0)
        if _PLAIN_CHOICE.issuperset(choice) and type(index) is int and self._read_before(choice, _CHOICE_TEXT):
            whole: list[Place] = []
        else:
            whole = members_in(choice, _CHOICE_READ, self._clean, NOTHING)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return whole, []
        texts: list[Streamed] = []
        merged: Merged = []
        delta_places(index, delta, whole, texts, merged)
        if merged and self._merged_apart(index, merged):
            raise _Apart
        return whole, texts

    def _merged_apart(self, index: int, merged: Merged) -> bool:
        """Whether a string a delta gives whole differs from the one an earlier delta gave at its
        path: a client joins them (the SDKs' stream helpers join every string of a delta), which
        read apart would not be read as joined."""
        for path, value in merged:
            before = self._given.setdefault((index, path), value)
            if before != value:
                return True
        return False

    def _read_choice(self, pending: Pending, choice: dict[str, Any], texts: list[Streamed]) -> bool:
        """A choice's text given to its channels (False: the choice carries none, nor ends). At a
        value to deny, what the delta carries after it is taken out: it was not read, so it does
        not go."""
        if not self._carries(choice):
            return False
        for i, (holder, key, channel, path) in enumerate(texts):
            if channel not in self._channels.states and path is not None:
                self._paths[channel] = path
            self._fed(pending, channel, holder, key, holder[key])
            if self.denied is not None:
                _cut_after(choice["delta"], texts, i)
                break
        return True

    @staticmethod
    def _carries(choice: dict[str, Any]) -> bool:
        """Whether a choice carries text (or ends): it has a delta."""
        return isinstance(choice.get("delta"), dict)

    def _ended(self, index: int | None) -> None:
        """The scanners of a choice (every choice: None) flushed, now that their text has ended."""
        self._ended_where(lambda channel: index is None or channel[0] == index)

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        choice, name, call = channel
        path = self._paths.get(channel)
        if path is not None:
            delta: dict[str, Any] = nested(path, text)
        elif name == "arguments":
            delta = {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
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


def delta_places(
    index: int, delta: dict[str, Any], whole: list[Place], texts: list[Streamed], merged: Merged | None = None
) -> None:
    """What a choice's delta (or message) carries whole (added to `whole`), and its text, each
    string with its channel (added to `texts`): its text fields, each tool call's arguments (as
    JSON), and every other string but those that come whole and `NOT_TEXT`'s, in a channel named
    by its path. The text fields first, the tool calls last. The strings read whole that a client
    joins across deltas (by their path: a role, a tool's name) are added to `merged`."""
    if merged is None:
        merged = []
    for name in TEXT_FIELDS:
        value = delta.get(name)
        if isinstance(value, str) and value:
            texts.append((delta, name, (index, name, -1), None))
    if _TEXT_KEYS.issuperset(delta):
        return  # text fields alone, as most deltas are
    calls = None
    for key, value in delta.items():
        if key in TEXT_FIELDS:
            continue  # a text field's value is a string or null (`of_read_shape`)
        if key not in KNOWN_KEYS:
            whole.append((delta, key, True))
        if key == "tool_calls" and isinstance(value, list):
            calls = value
        elif key in WHOLE_IN_DELTA:
            whole.extend(strings_in(delta, key))
            if isinstance(value, str) and value:
                merged.append(((key,), value))
        else:
            _walk(index, delta, key, (key,), whole, texts, merged)
    for position, call in enumerate(calls or ()):
        if not isinstance(call, dict):
            continue
        number = call.get("index", 0)
        at = number if type(number) is int else position
        for key, value in call.items():
            if key not in KNOWN_KEYS:
                whole.append((call, key, True))
            if key in WHOLE_IN_DELTA:  # its id and kind
                whole.extend(strings_in(call, key))
                if isinstance(value, str) and value:
                    merged.append((("tool_calls", at, key), value))
            elif key == "function" and isinstance(value, dict):
                for name, item in value.items():
                    if name not in KNOWN_KEYS:
                        whole.append((value, name, True))
                    if name == "arguments" and isinstance(item, str):
                        if item:
                            texts.append((value, name, (index, "arguments", number), None))
                    elif name == "name":
                        whole.extend(strings_in(value, name))
                        if isinstance(item, str) and item:
                            merged.append((("tool_calls", at, "function", name), item))
                    else:
                        _walk(index, value, name, ("tool_calls", at, "function", name), whole, texts, merged)
            elif key != "index" or type(value) is not int:
                _walk(index, call, key, ("tool_calls", at, key), whole, texts, merged)


def _walk(
    index: int, holder: Any, key: Any, path: Path, whole: list[Place], texts: list[Streamed], merged: Merged
) -> None:
    """A delta's member not known: its strings text in channels by their path (a list's item by
    its `index`, where it has one), its members that come whole read whole, its keys read whole."""
    value = holder[key]
    if isinstance(value, str):
        if value:
            texts.append((holder, key, (index, "@" + ".".join(map(str, path)), -1), path))
    elif isinstance(value, dict):
        for name in value:
            if _opaque(path, value, name):
                continue
            if name not in KNOWN_KEYS:
                whole.append((value, name, True))
            if name in WHOLE_IN_DELTA:
                whole.extend(strings_in(value, name))
                if isinstance(value[name], str) and value[name]:
                    merged.append(((*path, name), value[name]))
            else:
                _walk(index, value, name, (*path, name), whole, texts, merged)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            number = item.get("index") if isinstance(item, dict) else None
            _walk(index, value, position, (*path, number if type(number) is int else position), whole, texts, merged)


def _opaque(path: Path, holder: dict[str, Any], name: str) -> bool:
    """Whether a member of a delta is at one of chat's opaque places (docs/guardrails.md, "Opaque
    places"): a reasoning detail's signature and encrypted data, an audio's sound (base64)."""
    if path[0] == "reasoning_details" and len(path) == 2:
        return name == "signature" or (name == "data" and holder.get("type") == "reasoning.encrypted")
    return path == ("audio",) and name == "data"


def nested(path: Path, text: str) -> dict[str, Any]:
    """A delta that carries `text` where `path` says (a list's item by its `index`)."""
    node: Any = text
    for step in reversed(path):
        if isinstance(step, int):
            node = [{**node, "index": step}] if isinstance(node, dict) else [node]
        else:
            node = {step: node}
    return node


def _cut_after(delta: dict[str, Any], texts: list[Streamed], at: int) -> None:
    """A delta cut at a value to deny in its text `at`: the text after it taken out (the members
    after its member, the tool calls after its call, the strings after it), as it was not read."""
    holder, key, channel, path = texts[at]
    member = path[0] if path is not None else ("tool_calls" if channel[1] == "arguments" else key)
    order = [*TEXT_FIELDS, *(k for k in delta if k not in TEXT_FIELDS and k != "tool_calls"), "tool_calls"]
    for later in order[order.index(member) + 1 :] if member in order else ():
        if later != "role":
            delta.pop(later, None)
    if channel[1] == "arguments" and path is None:
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for i, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if function is holder:
                    del calls[i + 1 :]
                    break
    in_lists: list[tuple[list[Any], int]] = []
    for other, name, _, where in texts[at + 1 :]:
        if (where[0] if where is not None else None) != member:
            continue
        if isinstance(other, dict):
            other.pop(name, None)
        else:
            in_lists.append((other, name))
    for items, i in sorted(in_lists, key=lambda p: -p[1]):
        if i < len(items):
            del items[i]


def without_logprobs(obj: dict[str, Any]) -> None:
    """The log probabilities of an answer's choices set to null: their tokens (`token`, `bytes`,
    `top_logprobs`) are the text as it came, value and all."""
    for choice in obj.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs"):
            choice["logprobs"] = None


def guard_chat_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) chat answer read: the body as it goes on (redacted, or as it came
    where nothing is), the kind of a value to deny (the answer is then refused), and the counts.
    Every string is read: each choice's text and tool calls' arguments, and every other string
    whole (but `NOT_TEXT`'s). A choice whose text is redacted loses its `logprobs`."""
    return read_json_answer(compiled, body, of_whole_shape, _message_places)


def _message_places(choice: dict[str, Any]) -> tuple[list[Place], list[Streamed]]:
    whole = members_in(choice, _MESSAGE_READ, skip=NOTHING)
    texts: list[Streamed] = []
    message = choice.get("message")
    if isinstance(message, dict):
        delta_places(choice.get("index", 0), message, whole, texts)
    return whole, texts


def read_json_answer(
    compiled: Scanners,
    body: bytes,
    of_shape: Callable[[Any], bool],
    choice_places: Callable[[dict[str, Any]], tuple[list[Place], list[Streamed]]],
) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole answer of choices read, every string of it (`choice_places`: a choice's, whole and
    text): the body as it goes on, the kind of a value to deny, and the counts. A body that is no
    JSON goes on as it came; one not `of_shape` is refused unread (its text elsewhere, or not a
    string: it would go on unread). A key with a value in it is denied (it cannot be replaced); a
    choice whose text is changed loses its `logprobs`."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body, None, {}
    if not of_shape(obj):
        return body, UNREAD, {}
    counts: Counter[str] = Counter()
    changed = False
    places: list[tuple[Any, Any, bool, bool, dict[str, Any] | None]] = [
        (h, k, is_key, False, None) for h, k, is_key in members_in(obj, _CHOICES, skip=_TOP_OPAQUE)
    ]
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        whole, texts = choice_places(choice)
        places += [(h, k, is_key, False, None) for h, k, is_key in whole]
        places += [(h, k, False, channel[1] == "arguments", choice) for h, k, channel, _ in texts]
    seen: dict[str, str] = {}
    for holder, key, is_key, is_json, choice in places:
        value = key if is_key else holder[key]
        if is_key and value in KNOWN_KEYS:
            continue
        if not is_json and value in seen:
            sent = seen[value]
        else:
            sent, denied, found = read_whole(compiled, value, is_json)
            counts.update(found)
            if denied is None and is_key and sent != value:  # a key cannot be replaced
                denied = next(kind for kind in found if compiled.actions.get(kind) == "redact")
            if denied is not None:
                return body, denied, dict(counts)
            if not is_json and not found:
                seen[value] = sent
        if sent != value and not is_key:
            holder[key] = sent
            if choice is not None and choice.get("logprobs"):
                choice["logprobs"] = None  # its tokens are the text as it came
            changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)


# Its saved answers are told from Completions' by the registry (`answer_formats.py`).
ANSWER = AnswerFormat(ChatAnswerGuard, guard_chat_json, denied_event)
