"""OpenAI Responses' answer read by the answer guardrails (`governance/guardrails/answer.py`), in its
own events, as OpenAI chat's is (`openai_chat/answer_guard.py`, held as `answer_reading/events.py` holds events): each
output item's text, refusal, reasoning (its summary and its text), a function call's arguments
(JSON as the model writes it), a custom tool's input, an MCP call's arguments and a code
interpreter's code, a shell call's commands, one scanner per channel (output item, field, content
part); a local shell call's command, which comes whole, is read whole, and so is every other string
an item holds (a search's query, a citation, a patch's diff, a tool's output, an item of a type not
known) but ids, states and opaque data. Text in deltas no channel reads stops the answer as
unread. The events that repeat a whole text
(`….done`, `response.content_part.done`, `response.output_item.done`, `response.completed`) carry
it as the client got it in the deltas: redacted where a value was, never sent where one is denied.
A denied stream ends with an event whose `error` the SDK raises on. Over the Responses WebSocket
the same events come one a message (`ResponsesSocketGuard`). Plain code, knowing nothing of
mitmproxy."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any

from tollgate.formats.answer_reading.channels import ChannelState
from tollgate.formats.answer_reading.logprob_tokens import openai_spells
from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, counter_copy, whole_object
from tollgate.formats.answer_reading.string_places import CLEAN_KEPT, CLEAN_SIZE, read_whole
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.bodies.json_codec import loads_once
from tollgate.formats.openai_chat.answer_guard import (
    DENIED_MESSAGE,
    Channel,
    ChatAnswerGuard,
    of_read_shape,
)


@dataclass(frozen=True, slots=True)
class _Stream:
    """A delta event's channel: its field's kind (`arguments` where it is JSON), where its
    sub-index is (`content_index`, `summary_index`, none), and the `.done` event's field."""

    kind: str
    index: str | None
    done_field: str


# Delta event type → its channel; the `.done` event of the same stem carries the whole text.
STREAMS: dict[str, _Stream] = {
    "response.output_text.delta": _Stream("text", "content_index", "text"),
    "response.refusal.delta": _Stream("refusal", "content_index", "refusal"),
    "response.reasoning_summary_text.delta": _Stream("summary", "summary_index", "text"),
    "response.reasoning_text.delta": _Stream("reasoning", "content_index", "text"),
    "response.function_call_arguments.delta": _Stream("arguments", None, "arguments"),
    "response.mcp_call_arguments.delta": _Stream("arguments", None, "arguments"),
    "response.custom_tool_call_input.delta": _Stream("input", None, "input"),
    "response.code_interpreter_call_code.delta": _Stream("code", None, "code"),
    # A shell call's commands, each in its own deltas: the channel its item's `action.commands` has.
    "response.shell_call_command.delta": _Stream("commands", "command_index", "command"),
}
DONE: dict[str, _Stream] = {t.removesuffix(".delta") + ".done": s for t, s in STREAMS.items()}
# The events that begin a channel with its first text in a field of their own: event → its deltas'.
ADDED = {"response.shell_call_command.added": ("response.shell_call_command.delta", "command")}
# A channel's kind → the type of its deltas and where their sub-index is (an MCP call's arguments
# come in `response.mcp_call_arguments.delta`): for its text held, written in one of them.
DELTAS: dict[str, tuple[str, str | None]] = {s.kind: (t, s.index) for t, s in reversed(STREAMS.items())}
# The keys a delta event has: one with a string in another (text the channel does not read) stops
# the answer, as one that cannot be read.
DELTA_KEYS = frozenset(
    (
        *("type", "item_id", "output_index", "content_index", "summary_index", "command_index", "delta"),
        *("logprobs", "obfuscation", "sequence_number", "stream_id", "response_id", "event_id"),
    )
)
# The events that carry a content or summary part whole, and an output item whole.
PARTS = {
    "response.content_part.added": "content",
    "response.content_part.done": "content",
    "response.reasoning_summary_part.added": "summary",
    "response.reasoning_summary_part.done": "summary",
}
ITEMS = frozenset(("response.output_item.added", "response.output_item.done"))
# The events that carry the whole response; those that end it (every channel ends there).
ENDS = frozenset(("response.completed", "response.incomplete", "response.failed"))
RESPONSES = frozenset(("response.created", "response.in_progress", "response.queued", *ENDS))
ANNOTATION = "response.output_text.annotation.added"
# The events that carry a part, an item, a response or an annotation, by the key they carry it at.
WHOLE_HOLDERS = {
    **dict.fromkeys(PARTS, "part"),
    **dict.fromkeys(ITEMS, "item"),
    **dict.fromkeys(RESPONSES, "response"),
    ANNOTATION: "annotation",
}
NO_INDEX = -1
# The members whose strings hold no text, at the places Responses defines them (docs/guardrails.md,
# "Opaque places"): padding, encrypted reasoning, an image as base64, and log probabilities, whose
# tokens go with their text (`_spelled`). Every other string is read, ids, types and states too
# (a stream reads each once: the same value again is not read again).
OPAQUE = frozenset(("encrypted_content", "partial_image_b64", "obfuscation", "logprobs", "top_logprobs"))
# A delta event's members its channel does not read but reads as ids: each new value read whole.
DELTA_IDS = ("item_id", "response_id", "event_id", "stream_id")


def denied_error(kind: str) -> dict[str, Any]:
    return {"message": DENIED_MESSAGE.format(kind=kind), "type": "permission_error", "code": "content_denied"}


def denied_event(kind: str) -> bytes:
    """The event a denied stream ends with: the SDK raises on a `data:` object with `error`."""
    return b"event: error\ndata: " + json.dumps({"error": denied_error(kind)}, separators=(",", ":")).encode() + b"\n\n"


def socket_denied_event(kind: str, lane: str | None = None) -> dict[str, Any]:
    """The Responses WebSocket's `error` event a denied answer ends with (as Tollgate's refusals)."""
    event: dict[str, Any] = {"type": "error", "status": 403, "error": denied_error(kind)}
    if lane is not None:
        event["stream_id"] = lane
    return event


# ---- where an output item holds its texts


# A text's holder (an object, or a list of a command's words), its key, and the channel it streams in.
Whole = tuple[dict[str, Any] | list[Any], str | int, Channel]


def _text_at(holder: dict[str, Any] | list[Any], key: str | int) -> str | None:
    if isinstance(holder, dict):
        value = holder.get(key) if isinstance(key, str) else None
    else:
        value = holder[key] if isinstance(key, int) and key < len(holder) else None
    return value if isinstance(value, str) and value else None


def _replace(holder: dict[str, Any] | list[Any], key: str | int, text: str) -> None:
    """The text written in place; its log probabilities' tokens, the text as it came, left out."""
    holder[key] = text  # type: ignore[index]
    if isinstance(holder, dict) and holder.get("logprobs"):
        holder["logprobs"] = []


def _spelled(holder: dict[str, Any] | list[Any], key: str | int) -> bool:
    """Whether a part's log probabilities, if it has any, spell exactly its text."""
    if not isinstance(holder, dict) or not holder.get("logprobs") or key not in ("text", "refusal"):
        return True  # tokens go with a part's text alone (its id, its type are no tokens)
    return openai_spells(holder["logprobs"], holder.get(key) if isinstance(key, str) else None)


def item_texts(item: Any, output: int) -> Iterator[Whole]:
    """The texts an output item holds whole, each with the channel its deltas come in; then every
    other string it holds (a web search's query, an image's revised prompt, the text a computer
    call types, a patch's diff, a tool's output or error, an item of a type not known), each in a
    channel of its own, read whole, but those of `OPAQUE` keys."""
    if not isinstance(item, dict):
        return
    streamed = list(_item_channels(item, output))
    yield from streamed
    # A text of another type than a string is read as any other (its strings, each whole).
    skip = {(id(holder), key) for holder, key, _ in streamed if _text_at(holder, key) is not None}
    kind = item.get("type")
    # The parts read with their own strings (`part_texts`); a generated image, as base64.
    skip.update((id(item), key) for key in ("content", "summary") if kind in ("message", "reasoning"))
    if kind == "image_generation_call":
        skip.add((id(item), "result"))
    yield from strings_of(item, "@", output, skip)


def _item_channels(item: dict[str, Any], output: int) -> Iterator[Whole]:
    kind = item.get("type")
    if kind == "message":
        yield from _parts(item.get("content"), output, "content")
    elif kind == "reasoning":
        yield from _parts(item.get("summary"), output, "summary")
        yield from _parts(item.get("content"), output, "content")
    elif kind in ("function_call", "mcp_call", "mcp_approval_request"):
        yield item, "arguments", (output, "arguments", NO_INDEX)
        if kind == "mcp_call":
            yield item, "output", (output, "output", NO_INDEX)  # a hosted tool's result: no deltas
    elif kind == "custom_tool_call":
        yield item, "input", (output, "input", NO_INDEX)
    elif kind == "code_interpreter_call":
        yield item, "code", (output, "code", NO_INDEX)
    elif kind in ("local_shell_call", "shell_call"):
        # A command the agent runs, whole: its words (`command`), or its commands (`commands`).
        action = item.get("action")
        for name in ("command", "commands"):
            words = action.get(name) if isinstance(action, dict) else None
            if isinstance(words, list):
                yield from ((words, index, (output, name, index)) for index in range(len(words)))


def _parts(parts: Any, output: int, where: str) -> Iterator[Whole]:
    for index, part in enumerate(parts if isinstance(parts, list) else ()):
        yield from part_texts(part, output, where, index)


def part_texts(part: Any, output: int, where: str, index: int) -> Iterator[Whole]:
    """A content or summary part's text (or refusal), with its channel; then its other strings
    (an annotation's title, URL, file name), as `item_texts` reads them."""
    if not isinstance(part, dict):
        return
    field = "refusal" if part.get("type") == "refusal" else "text"
    if where == "summary":
        yield part, field, (output, "summary", index)
    elif field == "refusal":
        yield part, field, (output, "refusal", index)
    elif part.get("type") == "reasoning_text":
        yield part, field, (output, "reasoning", index)
    else:
        yield part, field, (output, "text", index)
    skip = {(id(part), field)} if isinstance(part.get(field), str) else set()
    yield from strings_of(part, f"@.{where}.{index}", output, skip)


def strings_of(
    value: Any, path: str, output: int, skip: Container[tuple[int, str | int]], placed: bool = True
) -> Iterator[Whole]:
    """Every non-empty string in `value` (but those of `skip`'s holder and key, and where `value` is
    an event, an item, a part or a response (`placed`), those of its own `OPAQUE` members), each
    with a channel named by its path: the same string is in the same channel wherever the answer
    repeats it (its item, the response's `output`). Deeper, every string is read."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        holder, at = stack.pop()
        keys: Iterator[tuple[str | int, Any]]
        if isinstance(holder, dict) and placed and holder is value:
            keys = ((k, v) for k, v in holder.items() if k not in OPAQUE)  # at its place: opaque
        elif isinstance(holder, dict):
            keys = iter(holder.items())
        elif isinstance(holder, list):
            keys = iter(enumerate(holder))
        else:
            continue
        for key, child in keys:
            if (id(holder), key) in skip:
                continue
            if isinstance(child, str):
                if child:
                    yield holder, key, (output, f"{at}.{key}", NO_INDEX)
            elif isinstance(child, dict | list):
                stack.append((child, f"{at}.{key}"))


def output_texts(response: Any) -> Iterator[Whole]:
    """The texts a whole response holds: its `output`, then every other string of it (the
    `output_text` some servers add, what it echoes of the request, a member not known), each read
    whole, but `OPAQUE`'s."""
    if not isinstance(response, dict):
        return
    output = response.get("output")
    for index, item in enumerate(output if isinstance(output, list) else ()):
        yield from item_texts(item, index)
    if not isinstance(output, list):
        yield from _strings_at(response, "output")  # of another shape: its strings
    for key in response:
        if key != "output" and key not in OPAQUE:
            yield from _strings_at(response, key)


def _strings_at(holder: dict[str, Any], key: str) -> Iterator[Whole]:
    """The strings of one field of a response, each read whole."""
    value = holder.get(key)
    if isinstance(value, str):
        if value:
            yield holder, key, (NO_INDEX, f"@.{key}", NO_INDEX)
    else:
        yield from strings_of(value, f"@.{key}", NO_INDEX, (), placed=False)


def _index(value: Any) -> int:
    return value if type(value) is int else 0


def _indexed(value: Any) -> bool:
    """Whether a delta's index names its channel: a number, or none (the first)."""
    return value is None or type(value) is int


# ---- a streamed answer


@dataclass(slots=True)
class _Seen:
    """A channel's whole text as read: its digest, and what goes on in its place (None: itself;
    `rescan`: it was changed in its deltas, to be read whole again once)."""

    digest: bytes
    replaced: str | None
    rescan: bool = False


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class ResponsesAnswerGuard(ChatAnswerGuard):
    """A streamed Responses answer's events, read and rewritten (`feed` each piece, `flush` at its
    end): the deltas as OpenAI chat's (held whole while their text is held, written anew only where a
    value is replaced); each event that repeats a text whole carries what the client got of it.
    `denied_end`: what a denied stream ends with."""

    def __init__(self, compiled: Scanners, denied_end: Callable[[str], bytes] = denied_event) -> None:
        super().__init__(compiled)
        self._end_of_denied = denied_end
        self._templates: dict[Channel, dict[str, Any]] = {}  # a channel's delta event, for one of held text
        self._hashes: dict[Channel, Any] = {}  # what each channel read, hashed as it comes
        self._seen: dict[Channel, _Seen] = {}
        self._whole_counts: Counter[str] = Counter()

    def _saved(self) -> dict[str, Any]:
        return {
            **super()._saved(),
            "_templates": self._templates.copy(),
            "_hashes": {channel: h.copy() for channel, h in self._hashes.items()},
            "_seen": self._seen.copy(),
            "_whole_counts": counter_copy(self._whole_counts),
        }

    @property
    def counts(self) -> dict[str, int]:
        total = Counter(super().counts)
        total.update(self._whole_counts)
        return dict(total)

    @staticmethod
    def _of_read_shape(obj: Any) -> bool:
        """Chat's shape, and an event's own `logprobs` (a delta's, a `.done` event's) spelling
        exactly its text: they are read with it."""
        if not of_read_shape(obj):
            return False
        logprobs = obj.get("logprobs")
        if not logprobs:
            return True
        kind = obj.get("type")
        stream = STREAMS.get(kind) if isinstance(kind, str) else None
        if stream is not None:
            return openai_spells(logprobs, obj.get("delta"))
        stream = DONE.get(kind) if isinstance(kind, str) else None
        return stream is not None and openai_spells(logprobs, obj.get(stream.done_field))

    def _done(self, pending: Pending) -> bytes:
        """`[DONE]`, which the SDK reads as the end (the response's last event ended its text): in
        its turn, as it came."""
        return self._drained()

    def _object_event(self, pending: Pending, obj: Any) -> bytes:
        if not isinstance(obj, dict):
            return self._drained()
        kind = obj.get("type")
        if not isinstance(kind, str):
            kind = ""  # an event of no type: read as one of a type not known
        stream = STREAMS.get(kind)
        if stream is not None:
            return self._delta_event(pending, obj, kind, stream)
        if kind in ADDED:
            delta_kind, field = ADDED[kind]
            return self._delta_event(pending, obj, delta_kind, STREAMS[delta_kind], field)
        unknown_delta = kind.endswith(".delta") or "delta" in obj
        # Its type is read whole with the event (`_whole_event`): a string beside it, in pieces.
        if unknown_delta and not self._known(kind) and any(strings_of(obj, "@", NO_INDEX, {(id(obj), "type")})):
            # Text in pieces that no channel reads (an audio's, a transcript's, a tool's output):
            # read whole, a value split across two events would go on.
            return self._unread(pending)
        return self._whole_event(pending, obj, kind)

    @staticmethod
    def _known(kind: str) -> bool:
        return kind in DONE or kind in PARTS or kind in ITEMS or kind in RESPONSES or kind == ANNOTATION

    def _delta_event(
        self, pending: Pending, obj: dict[str, Any], kind: str, stream: _Stream, field: str = "delta"
    ) -> bytes:
        """A piece of a channel's text (`field`: where the event carries it); `kind`: the type of
        the channel's deltas, those of held text written in."""
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            return self._unread(pending)  # text in another shape than the channel's
        if not obj.keys() <= DELTA_KEYS:
            beside = {k: v for k, v in obj.items() if k not in DELTA_KEYS and k != field}
            if any(strings_of(beside, "@", NO_INDEX, (), placed=False)):
                return self._unread(pending)  # text in a field no channel reads
        ids = [(obj, k, False) for k in DELTA_IDS if type(obj.get(k)) is str and obj[k] not in self._clean]
        if ids and (denied := self._read_places(pending, obj, ids)) is not None:
            return self._stop_before(pending, denied)  # an id holds a value: the event never goes
        if not _indexed(obj.get("output_index")) or (stream.index and not _indexed(obj.get(stream.index))):
            # Its channel is not known: read in another's, a value split across its deltas would go.
            return self._unread(pending)
        if not value:
            return self._drained()
        channel = self._channel_of(obj, stream)
        if channel in self._seen:
            # Its text was read whole, or has ended: read apart from it, a value begun there and
            # ended here would go on.
            return self._unread(pending)
        pending.obj = obj
        if channel not in self._templates:
            template = {k: v for k, v in obj.items() if k not in (field, "obfuscation")}
            self._templates[channel] = {**template, "type": kind}
            self._hashes[channel] = hashlib.blake2b(digest_size=16)
        self._hashes[channel].update(value.encode())
        self._fed(pending, channel, obj, field, value)
        if self.denied is not None:
            return self._cut()
        return self._drained()

    @staticmethod
    def _channel_of(obj: dict[str, Any], stream: _Stream) -> Channel:
        sub = _index(obj.get(stream.index)) if stream.index is not None else NO_INDEX
        return (_index(obj.get("output_index")), stream.kind, sub)

    def _whole_event(self, pending: Pending, obj: dict[str, Any], kind: str) -> bytes:
        """An event that may repeat texts whole: the channels it ends are flushed first (what they
        hold goes on before it), then each text it carries is what the client got of it."""
        texts: list[Whole] = []
        ends: Callable[[Channel], bool] | None = None
        if (stream := DONE.get(kind)) is not None:
            channel = self._channel_of(obj, stream)
            texts = [(obj, stream.done_field, channel)]
            skip = {(id(obj), stream.done_field)} if isinstance(obj.get(stream.done_field), str) else set()
            texts += strings_of(obj, f"@{kind}", channel[0], skip)
            ends = channel.__eq__
        elif (where := PARTS.get(kind)) is not None:
            output = _index(obj.get("output_index"))
            index = _index(obj.get("content_index" if where == "content" else "summary_index"))
            texts = list(part_texts(obj.get("part"), output, where, index))
            if kind.endswith(".done"):
                ends = {c for _, _, c in texts}.__contains__
        elif kind in ITEMS:
            output = _index(obj.get("output_index"))
            texts = list(item_texts(obj.get("item"), output))
            if kind.endswith(".done"):
                ends = lambda c: c[0] == output  # noqa: E731
        elif kind in RESPONSES:
            texts = list(output_texts(obj.get("response")))
            if kind in ENDS:
                ends = lambda c: True  # noqa: E731
        elif kind == ANNOTATION:
            # A citation's title, URL, file name: where its part holds it (`part_texts`).
            where = f"@.content.{_index(obj.get('content_index'))}.annotations.{_index(obj.get('annotation_index'))}"
            texts = list(strings_of(obj.get("annotation"), where, _index(obj.get("output_index")), set()))
        if kind in WHOLE_HOLDERS:
            # Text beside what these events carry (none, as OpenAI sends them): each read whole.
            skip = {(id(obj), WHOLE_HOLDERS[kind])}
            texts += strings_of(obj, f"@{kind}", _index(obj.get("output_index")), skip)
        elif DONE.get(kind) is None:
            # An event of another type (an error, a tool call's progress, one not known): its
            # strings, each read whole.
            texts = list(strings_of(obj, f"@{kind}", _index(obj.get("output_index")), set()))
        if not all(_spelled(holder, name) for holder, name, _ in texts):
            return self._unread(pending)  # tokens that spell other text than their part's
        if kind.endswith(".added"):
            texts = self._begun(pending, obj, texts)
            if self.denied is not None:
                return self._cut()
        before = b""
        if ends is not None:
            self._pending.pop()
            self._ended_where(ends)
            if self.denied is not None:
                return self._cut()
            before = self._drained() + self._orphans()
            self._pending.append(pending)
        changed = False
        for holder, name, channel in texts:
            changed |= self._whole(holder, name, channel)
            if self.denied is not None:
                self._pending.pop()  # it carries the value: it never goes
                return before + self._cut()
        if changed and pending.pieces:
            pending.obj, pending.changed = obj, True  # written anew once its pieces are known
        elif changed:
            pending.whole = self._written(obj)
        return before + self._drained()

    def _begun(self, pending: Pending, obj: dict[str, Any], texts: list[Whole]) -> list[Whole]:
        """The texts an `….added` event begins streamed channels with, read as each channel's first
        delta (a value may go on in the deltas after them); the others, to be read whole."""
        rest: list[Whole] = []
        item = obj.get("item")
        item_id = obj.get("item_id") or (item.get("id") if isinstance(item, dict) else None)
        for holder, name, channel in texts:
            value = _text_at(holder, name)
            delta = DELTAS.get(channel[1])
            if value is None or delta is None or channel in self._channels.states or channel in self._seen:
                rest.append((holder, name, channel))
                continue
            delta_type, index = delta
            if isinstance(holder, dict) and holder.get("type") in ("mcp_call", "mcp_approval_request"):
                delta_type = "response.mcp_call_arguments.delta"
            template = {"type": delta_type, "item_id": item_id, "output_index": channel[0]}
            self._templates[channel] = {**template, index: channel[2]} if index is not None else template
            self._hashes[channel] = hashlib.blake2b(value.encode(), digest_size=16)
            pending.obj = obj
            self._fed(pending, channel, holder, name, value)
            if self.denied is not None:
                return []
        return rest

    def _whole(self, holder: dict[str, Any] | list[Any], name: str | int, channel: Channel) -> bool:
        """A text carried whole, made what the client got of it: whether it was changed."""
        value = _text_at(holder, name)
        if value is None:
            return False
        if value in self._clean and channel not in self._seen and channel not in self._channels.states:
            return False  # an id, a type, a name read clean before: not read again
        data = value.encode("utf-8", "surrogatepass")
        digest = _digest(data)
        seen = self._seen.get(channel)
        if seen is None or seen.digest != digest or seen.rescan:
            replaced, denied, counts = read_whole(self._compiled, value, channel[1] == "arguments")
            if channel not in self._channels.states:  # no deltas told it: found here
                self._whole_counts.update(counts)
            if denied is not None:
                self.denied = denied
                return False
            seen = self._seen[channel] = _Seen(digest, None if replaced == value else replaced)
            if not counts and channel[1] != "arguments" and len(value) <= CLEAN_SIZE and len(self._clean) < CLEAN_KEPT:
                self._clean.add(value)
        if seen.replaced is None:
            return False
        _replace(holder, name, seen.replaced)
        return True

    def _end(self, channel: Channel, state: ChannelState) -> None:
        """A channel's scanner flushed; what it read noted, to know the whole text when it comes
        again."""
        scanner = state.scanner
        super()._end(channel, state)
        assert scanner is not None
        self._seen[channel] = _Seen(self._hashes[channel].digest(), None, rescan=bool(scanner.counts))

    def _held_delta(self, channel: Channel, text: str) -> dict[str, Any]:
        return {**self._templates[channel], "delta": text}

    def _denied_end(self, kind: str) -> bytes:
        return self._end_of_denied(kind)

    @staticmethod
    def _written(obj: dict[str, Any]) -> bytes:
        """An event written anew (its text replaced, or cut): its log probabilities' tokens, the text
        as it came, are left out."""
        if obj.get("logprobs"):
            obj["logprobs"] = []
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        kind = obj.get("type")
        name = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) else b""
        return name + b"data: " + data + b"\n\n"


# ---- the Responses WebSocket


class ResponsesSocketGuard:
    """A response's events over the Responses WebSocket, one a message, read as over SSE: `message`
    gives the messages that go on now in its place (the message itself, as it came, where nothing
    is held or replaced), `flush` those held at its end. At a value to deny, what is known goes on,
    then the socket's `error` event, and nothing more (`denied`)."""

    def __init__(self, compiled: Scanners, lane: str | None = None) -> None:
        self._guard = ResponsesAnswerGuard(compiled, lambda kind: b"")
        self.lane = lane
        self._told = False  # the error event has gone

    @property
    def denied(self) -> str | None:
        return self._guard.denied

    @property
    def counts(self) -> dict[str, int]:
        return self._guard.counts

    def message(self, content: bytes) -> list[bytes]:
        if self.denied is not None:
            return []
        if b"\n" in content or b"\r" in content:
            # Raw line ends are whitespace between JSON's tokens: the event written without them.
            try:
                content = json.dumps(loads_once(content), ensure_ascii=False, separators=(",", ":")).encode()
            except ValueError:  # no JSON, a key repeated, or a string with a surrogate not paired: not read
                return self.fail()
        return self._ended(self._guard.feed(b"data: " + content + b"\n\n"))

    def flush(self) -> list[bytes]:
        return self._ended(self._guard.flush())

    def fail(self) -> list[bytes]:
        """The response cannot be read: it stops here, with the event a denied one ends with."""
        self._guard.denied = self._guard.denied or UNREAD
        return self._ended(b"")

    def _ended(self, out: bytes) -> list[bytes]:
        messages = [_data_of(block) for block in out.split(b"\n\n") if block]
        if self.denied is not None and not self._told:
            self._told = True
            messages.append(json.dumps(socket_denied_event(self.denied, self.lane), separators=(",", ":")).encode())
        return messages


def _data_of(block: bytes) -> bytes:
    """An event block's data (the guard writes one `data:` line an event, none with a line end)."""
    for line in block.split(b"\n"):
        if line.startswith(b"data: "):
            return line[6:]
    return b""


# ---- a whole (JSON) answer


def guard_responses_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """A whole (not streamed) Responses answer read: the body as it goes on (redacted, or as it
    came where nothing is), the kind of a value to deny (the answer is then refused), and the
    counts. One that is no JSON object cannot be read: it is refused (`unread`)."""
    obj = whole_object(body)
    if obj is None:
        return body, UNREAD, {}
    counts: Counter[str] = Counter()
    changed = False
    if not all(_spelled(holder, name) for holder, name, _ in output_texts(obj)):
        return body, UNREAD, {}  # tokens that spell other text than their part's
    for holder, name, channel in output_texts(obj):
        value = _text_at(holder, name)
        if value is None:
            continue
        replaced, denied, found = read_whole(compiled, value, channel[1] == "arguments")
        counts.update(found)
        if denied is not None:
            return body, denied, dict(counts)
        if replaced != value:
            _replace(holder, name, replaced)
            changed = True
    if not changed:
        return body, None, dict(counts)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), None, dict(counts)


def is_response(first: Any) -> bool:
    """Whether a saved answer's first message is a Responses answer (its object, or an event)."""
    return isinstance(first, dict) and (
        first.get("object") == "response" or str(first.get("type")).startswith("response.")
    )


ANSWER = AnswerFormat(ResponsesAnswerGuard, guard_responses_json, denied_event, saved=is_response)
