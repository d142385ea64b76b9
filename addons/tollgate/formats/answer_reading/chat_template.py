"""A read of OpenAI chat events passed without reading each event: the common case of a streamed
answer, where every event of a read is the same object but for its text (`id`, `created`, `model`
repeated in each chunk, one choice, one text field, no tool call, no `finish_reason`).

The template is learned from an event read the normal way (`openai_chat.answer_guard.ChatAnswerGuard._event`):
the exact bytes before its text's JSON string and after it, proved by reading the event again with
another text in its place. OpenAI's `obfuscation` (random characters in each event, to hide the
text's length) is a second hole of the template: the bytes between the text and it are fixed too.
A read whose events are all that template is split by the bytes between two events' texts; its
texts (UTF-8 of whole characters each; where one is written with escapes, all are read as the
strings of one JSON array, in one go) are given to the channel's scanner at once, and:

- where the scanner released all of it as it came, the read goes on as it came;
- where it holds a tail, the events before the held text go on as they came, and those with held
  text wait as the events read one by one would (each read into its object: only those);
- anything else (a value replaced or to deny, an event of another shape, a text that is not a whole
  JSON string, other channels' events waiting) leaves every state as it was, and the read is read
  event by event.

The result is byte for byte what reading each event gives
(`tests/unit/governance/guardrails/test_guardrail_chat_answers.py` holds both ways to the same
answers); the cost is a few passes in C over the read and one scan."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson

from tollgate.formats.answer_reading.channels import Piece
from tollgate.formats.answer_reading.scanning import READ_APART_BYTES
from tollgate.formats.answer_reading.waiting_events import Pending
from tollgate.formats.framing.sse import split_events

if TYPE_CHECKING:
    from collections import deque

    from tollgate.formats.answer_reading.channels import Channels
    from tollgate.formats.answer_reading.scanning import Scanners
    from tollgate.formats.framing.sse import SSEFramer

Channel = tuple[int, str, int]  # choice, field (a text field or "arguments"), tool call (-1 for text)


class ChatGuardView(Protocol):
    """What the pass reads and moves on of a chat answer's guard (`openai_chat.answer_guard.ChatAnswerGuard`,
    which holds the pass: named here as a protocol, so that neither module imports the other)."""

    _channels: Channels
    _compiled: Scanners
    _framer: SSEFramer
    _last: dict[str, Any]
    _pending: deque[Pending]
    denied: str | None

    def _drained(self) -> bytes: ...


# The bytes a JSON string holds only escaped: a text with none of them is written as it is.
_ESCAPED = b'"\\' + bytes(range(32))
# A text whose first byte continues a character: its event alone would not be UTF-8.
_CONTINUATION = re.compile(rb"[\x80-\xbf]")
# A stream whose reads miss the template this many times in a row is read event by event.
_MISSES = 16
# The text a template is proved with.
_PROBE = b"tollgate-template-probe"


@dataclass(frozen=True, slots=True)
class Template:
    """The bytes of an event around its text (`prefix` from `data: `, `suffix` to the blank line;
    `middle` between the text and its `obfuscation`, None where it has none), the channel and field
    its text is, and the object of the event it was learned from."""

    prefix: bytes
    suffix: bytes
    channel: Channel
    field: str
    last: dict[str, Any]
    middle: bytes | None = None

    @property
    def between(self) -> bytes:
        return self.suffix + self.prefix


def learned(block: bytes, channel: Channel, field: str, text: bytes) -> Template | None:
    """The template of an event (its block, without the blank line) of one choice whose one text
    is `text`; None where it cannot be one."""
    if not block.startswith(b"data: ") or b"\n" in block:
        return None
    data = block[6:]
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not _one_text(obj, channel, field, text):
        return None
    padding = obj.get("obfuscation")
    if padding is not None and not (isinstance(padding, str) and _unescaped(padding.encode())):
        return None
    for written in _written(text.decode()):
        for before, after in _around(data, written):
            if padding is None:
                if _proved(before, None, after, obj, field):
                    return Template(b"data: " + before, after + b"\n\n", channel, field, obj)
                continue
            for middle, rest in _around(after, b'"' + padding.encode() + b'"'):
                if _proved(before, middle, rest, obj, field):
                    return Template(b"data: " + before, rest + b"\n\n", channel, field, obj, middle)
    return None


def _written(value: str) -> Iterator[bytes]:
    """How a JSON string of `value` is written by the encoders upstreams use: escaping only what
    must be, or every character outside ASCII as well."""
    yield from dict.fromkeys(
        (orjson.dumps(value), json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode())
    )


def _unescaped(value: bytes) -> bool:
    return len(value) == len(value.translate(None, _ESCAPED))


def _around(data: bytes, written: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Each place the JSON string `written` (with its quotes) is in `data`: the bytes before it (to
    its opening quote) and after it (from its closing quote)."""
    at = data.find(written)
    while at >= 0:
        yield data[: at + 1], data[at + len(written) - 1 :]
        at = data.find(written, at + 1)


def _one_text(obj: Any, channel: Channel, field: str, text: bytes) -> bool:
    """Whether the event is one choice's delta, not finished, whose text is `text` in `field`, that
    calls no tool and has no log probabilities."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    delta = choice.get("delta")
    if not isinstance(delta, dict) or choice.get("finish_reason") is not None or delta.get("tool_calls"):
        return False
    if choice.get("logprobs"):
        return False  # its tokens are read with each event's text (`logprob_tokens.py`)
    value = delta.get(field)
    return channel == (choice.get("index", 0), field, -1) and isinstance(value, str) and value.encode() == text


def _proved(before: bytes, middle: bytes | None, after: bytes, obj: dict[str, Any], field: str) -> bool:
    """Whether another text written between `before` and `after` (and another `obfuscation` after
    `middle`) reads as the same object with that text in the field: then so does any text written
    without escapes."""
    written = before + _PROBE + (middle + _PROBE[::-1] if middle is not None else b"") + after
    try:
        probe = orjson.loads(written)
    except orjson.JSONDecodeError:
        return False
    expected = orjson.loads(orjson.dumps(obj))
    expected["choices"][0]["delta"][field] = _PROBE.decode()
    if middle is not None:
        expected["obfuscation"] = _PROBE[::-1].decode()
    return bool(probe == expected)


class TemplatePass:
    """The reads of one stream passed by its template, where they fit it (`read`)."""

    def __init__(self) -> None:
        self.template: Template | None = None
        self.wanted = True  # a template is to be learned from the next event that may be one
        self._misses = 0

    def light(self, chunk: bytes, held: int) -> bool:
        """Whether a read (`held`: the bytes of its first event in reads before it) is passed by the
        template, its first event smaller than a large one (`READ_APART_BYTES`): its reading is then
        a few passes in C and one scan of its text, cheaper on the event loop than a hop to a worker
        thread. Told by counting (a split costs more): each event of the template is one line and a
        blank one, and ends where the next one's prefix begins, so a read of n boundaries holds at
        most 2n + 2 line ends; an event of another shape adds two and no boundary."""
        template = self.template
        if template is None or held >= READ_APART_BYTES or b"\r" in chunk:
            return False
        between = template.between
        if chunk.find(between, 0, READ_APART_BYTES - held + len(between)) < 0:
            return False  # a large event's read: its first event ends past the bound, or not in it
        return chunk.count(b"\n") <= 2 * chunk.count(between) + 2

    def learn(self, block: bytes, piece: Piece) -> None:
        """An event read the normal way, of one piece: its template, if it may be one."""
        channel = cast("Channel", piece.channel)  # a chat guard's pieces are its channels
        if channel[1] == "arguments":
            return
        template = learned(block, channel, piece.field, piece.text)
        if template is not None:
            self.template, self.wanted = template, False
        else:
            self._missed()  # so many events that cannot be one: none is looked for

    def feed(self, guard: ChatGuardView, chunk: bytes) -> tuple[bytes | None, list[bytes]]:
        """What goes on of the read (None: it is read event by event), and its events."""
        region = guard._framer.feed_region(chunk)
        if not region:
            return b"", []
        if region.find(b"\n\n") + 2 >= len(region):
            return None, split_events(region)  # one event: read as it is, its cost its own
        out = self._read(guard, region)
        if out is not None:
            self._misses = 0
            return out, []
        return None, split_events(region)

    def _missed(self) -> None:
        """A read not of the template: another is learned; after many, none."""
        self._misses += 1
        if self._misses >= _MISSES:
            self.template, self.wanted = None, False
        else:
            self.wanted = True

    def _read(self, guard: ChatGuardView, region: bytes) -> bytes | None:
        template = self.template
        assert template is not None
        items = self._items(region, template)
        texts = items if items is None or template.middle is None else _texts(items, template.middle)
        if items is None or texts is None:
            self._missed()
            return None
        joined = b"".join(texts)
        if not _unescaped(joined):
            texts = _unescaped_texts(texts)  # as they are written, each a JSON string's
            if texts is None:
                self._missed()
                return None
            joined = b"".join(texts)
        elif not (joined.isascii() or _whole_characters(joined, texts)):
            self._missed()
            return None
        return _Read(guard, template, region, items, texts, joined).passed()

    @staticmethod
    def _items(region: bytes, template: Template) -> list[bytes] | None:
        """What each of the region's events holds between the template's prefix and suffix, where
        each is the template's (None: not all are)."""
        prefix, suffix = template.prefix, template.suffix
        end = len(region) - len(suffix)
        if end < len(prefix) or not region.startswith(prefix) or not region.endswith(suffix):
            return None
        first = region.find(b"\n\n") + 2
        if not region.endswith(suffix, 0, first):
            return None  # the first event is of another shape: not split further
        return region[len(prefix) : end].split(template.between)


def _texts(items: list[bytes], middle: bytes) -> list[bytes] | None:
    """The texts of events with an `obfuscation` after their text (None: one is not so written)."""
    parts = [item.partition(middle) for item in items]
    if not all(sep for _, sep, _ in parts) or not _unescaped(b"".join(padding for _, _, padding in parts)):
        return None
    return [text for text, _, _ in parts]


def _unescaped_texts(written: list[bytes]) -> list[bytes] | None:
    """The texts as their JSON strings are written (escapes, characters outside ASCII), read in one
    go: as the strings of one array, each read alone (UTF-8 of whole characters, its escapes whole).
    None where one is not the whole of its string: none may end in a backslash (it would escape the
    quote after it), so the array's quotes are all the strings' bounds; n strings read have 2n bounds,
    so no text holds a quote of its own either."""
    array = b'["' + b'","'.join(written) + b'"]'
    if b'\\","' in array or array.endswith(b'\\"]'):
        return None
    try:
        strings = orjson.loads(array)
    except orjson.JSONDecodeError:
        return None
    if len(strings) != len(written) or not all(type(text) is str for text in strings):
        return None
    return [text.encode() for text in strings]


def _whole_characters(joined: bytes, texts: list[bytes]) -> bool:
    """Whether the texts are UTF-8, each of whole characters (its event alone decodes)."""
    try:
        joined.decode()
    except UnicodeDecodeError:
        return False
    return not any(t and _CONTINUATION.match(t) for t in texts)


class _Read:
    """One read of template events, given to the channel's scanner as one piece."""

    def __init__(
        self,
        guard: ChatGuardView,
        template: Template,
        region: bytes,
        items: list[bytes],
        texts: list[bytes],
        joined: bytes,
    ):
        self.guard, self.template, self.region, self.joined = guard, template, region, joined
        self.items, self.texts = items, texts  # each event's bytes between prefix and suffix, its text

    def passed(self) -> bytes | None:
        """What goes on of the read, its states moved on as reading each event would; None (every
        state as it was) where it must be read event by event."""
        guard, template = self.guard, self.template
        if guard._channels.together or guard.denied is not None:
            return None
        state = guard._channels.states.get(template.channel)
        if state is None or state.scanner is None:
            return None
        waiting = self._waiting_text(state)
        if waiting is None:
            return None
        scanner = state.scanner
        saved = scanner.copy()
        released = scanner.feed(self.joined)
        text, size = released.text, len(self.joined)
        held = scanner.held if guard._compiled.holds else 0
        owed = len(state.owed)
        behind = len(waiting) - owed  # the waiting text the scanner held: all released now, or read anew
        if (
            released.denied is not None
            or held > size
            or len(text) != behind + size - held
            or state.owed != waiting[:owed]
            or text[:behind] != waiting[owed:]
            or not self.joined.startswith(text[behind:] if behind else text)
        ):
            state.scanner = saved
            return None
        start = state.fed
        state.fed += size
        out = b""
        if guard._pending:
            # The events waiting are all known now: they go on first, as they came.
            state.owed += text[:behind]
            out = guard._drained()
            assert not guard._pending, "events of known text left waiting"
            text = text[behind:]
        guard._last = template.last
        return out + self._new_events(state, start, text, size - held)

    def _waiting_text(self, state: Any) -> bytes | None:
        """The text of the channel not yet gone on, all carried by the events waiting, in order
        (b"" where none waits); None where they wait for anything else."""
        guard, channel = self.guard, self.template.channel
        pending = guard._pending
        if not pending:
            return b"" if state.sent == state.fed and not state.owed else None
        pieces: list[bytes] = []
        at = state.sent
        for event in pending:
            for piece in event.pieces:
                if piece.channel != channel or piece.start != at:
                    return None
                pieces.append(piece.text)
                at += len(piece.text)
        return b"".join(pieces) if at == state.fed else None

    def _new_events(self, state: Any, start: int, released: bytes, known: int) -> bytes:
        """The read's events (their text from `start` on in the channel's): those whose text is known
        go on as they came; from the first whose text is held, they wait, what the scanner released
        of it owed to them."""
        region, texts = self.region, self.texts
        size = len(self.joined)
        if known >= size:
            state.sent += size
            return region
        # From the end: the first event whose text ends after what is known.
        i, end = len(texts) - 1, size
        while i > 0 and end - len(texts[i]) > known:
            end -= len(texts[i])
            i -= 1
        sent = end - len(texts[i])  # the text of the events before it
        at = i * (len(self.template.prefix) + len(self.template.suffix)) + sum(map(len, self.items[:i]))
        state.owed += memoryview(released)[sent:]
        state.sent += sent
        self._waiting(i, start + sent, region[at:])
        return region[:at] + self.guard._drained()

    def _waiting(self, first: int, start: int, rest: bytes) -> None:
        """The events from `first` on, read into their objects, wait (as `_event` would make them)."""
        guard, template = self.guard, self.template
        channel, field = template.channel, template.field
        at = 0
        for item, text in zip(self.items[first:], self.texts[first:], strict=True):
            size = len(template.prefix) + len(item) + len(template.suffix)
            whole = rest[at : at + size]
            at += size
            obj = orjson.loads(whole[6:-2])
            pending = Pending(whole, obj)
            if text:
                holder = obj["choices"][0]["delta"]
                pending.pieces.append(Piece(channel, start, text, holder, field))
                start += len(text)
            guard._pending.append(pending)
            guard._last = obj
