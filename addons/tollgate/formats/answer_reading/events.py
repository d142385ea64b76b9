"""What every streamed answer's guard shares (`governance/guardrails/answer.py` reads the text), whatever
its events: OpenAI chat's and Responses' server-sent events, Anthropic's, Gemini's items, Bedrock's
frames. One scanner per channel (a choice's text, a tool call's arguments…); the events kept in
order, each with the pieces of its channels' text it carries. An event goes on as it came where
all its text is known to be what goes on; an event whose text is held waits whole, with the events
after it (bounded by WAITING_BYTES), and is written anew only where a value is replaced or a
denial cuts it. Text known that no waiting event carries goes on in an event of its own (an
orphan). At a value to deny, the events before it go on with what is known of them, then the
format's end, and nothing after the value's event.

The events of one read are read together: each channel's scanner is fed once with what they carry
of it (a scanner's result does not depend on how its text is cut), which is what keeps small
events cheap. Should a value to deny be found in them, the read is read again event by event from
where it began, so that nothing after the value goes.

A format implements `_units` (a read cut into its events), `_unit` (one event read: it appends a
`Pending`, gives each piece of text to `_fed`, ends channels with `_ended_where`, and returns
`_drained()`, or `_cut()` at a deny), `_scanner` (a channel's scanner), `_rewritten` (an event
written anew once its pieces' holders say what goes on), `_orphan` (an event for text alone) and
`_denied_end` (what a denied stream ends with). Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Container, Hashable, Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import orjson

from tollgate.formats.answer_reading.scanning import UNREAD, Scanner, Scanners, Unpaired, counter_copy, scan_whole
from tollgate.formats.bodies.json_codec import keys_once, parse_json

# The events that may wait behind one whose text is held (of other channels): past that, it goes
# on with what is known of its text, so that a stream is never held long.
WAITING_BYTES = 64 << 10
# The keys whose strings hold no text at the top of an event (or of a choice's delta): a stream's
# random padding (OpenAI's `obfuscation`), signatures and encrypted data, opaque to a client. Below
# the top they are read as any string (a format names its own deeper opaque places). Ids and kinds
# are read (once a stream: they repeat, and a string read clean is not read again).
NOT_TEXT = frozenset(("obfuscation", "signature", "encrypted_content"))
NOTHING: frozenset[str] = frozenset()
# The names of the formats' own members: as keys they are no text a model wrote, and are not read
# (their values are).
KNOWN_KEYS = frozenset(
    (
        *("id", "type", "object", "created", "model", "system_fingerprint", "service_tier", "choices", "index"),
        *("delta", "message"),
        *("finish_reason", "logprobs", "content", "refusal", "reasoning", "reasoning_content", "role"),
        *("tool_calls", "function", "name", "arguments", "annotations", "url_citation", "title", "url"),
        *("start_index", "end_index", "reasoning_details", "text", "summary", "format", "data", "usage"),
        *("prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "cached_tokens"),
        *("completion_tokens_details", "reasoning_tokens", "audio_tokens", "accepted_prediction_tokens"),
        *("rejected_prediction_tokens", "error", "code", "param", "stop_reason", "stop_sequence"),
        # Gemini's
        *("candidates", "parts", "thought", "thoughtSignature", "finishReason", "safetyRatings", "category"),
        *("probability", "blocked", "modelVersion", "responseId", "createTime", "usageMetadata", "modality"),
        *("promptTokenCount", "candidatesTokenCount", "totalTokenCount", "thoughtsTokenCount", "tokenCount"),
        *("cachedContentTokenCount", "promptTokensDetails", "candidatesTokensDetails", "avgLogprobs"),
        *("promptFeedback", "blockReason"),
        # Bedrock's
        *("contentBlockIndex", "start", "toolUse", "toolUseId", "input", "stopReason", "reasoningContent"),
        *("metrics", "latencyMs", "inputTokens", "outputTokens", "totalTokens", "output", "trace"),
        *("additionalModelResponseFields",),
    )
)
# The strings read whole and found clean that a guard remembers (an event's id, model, a member's
# name, repeated in each event, is read once): so many, each of at most CLEAN_SIZE characters.
CLEAN_KEPT = 1024
CLEAN_SIZE = 256
# A place of a string in an event's object: its holder, its key there (an object's key or a list's
# index), and whether the string is the key itself (an object's key, which cannot be replaced).
Place = tuple[Any, Any, bool]


def read_whole(compiled: Scanners, value: str, is_json: bool = False) -> tuple[str, str | None, dict[str, int]]:
    """One text read whole: as it goes on, the kind of a value to deny, and the counts."""
    read = scan_whole(compiled, value, is_json)
    return read.text, read.denied, dict(read.counts)


def strings_in(
    holder: Any, key: Any, skip: frozenset[str] = NOTHING, taken: Container[tuple[int, Any]] = ()
) -> Iterator[Place]:
    """Every string of the value at `holder[key]`, its objects' keys too, but under the keys `skip`
    names and at the places `taken` names (`(id(holder), key)`: read otherwise): each with its
    place."""
    stack: list[tuple[Any, Any]] = [(holder, key)]
    while stack:
        at, name = stack.pop()
        if taken and (id(at), name) in taken:
            continue
        value = at[name]
        kind = type(value)
        if kind is str:
            if value:
                yield at, name, False
        elif kind is dict:
            for k, v in value.items():
                if k not in skip:
                    yield value, k, True
                    if type(v) in (str, dict, list):
                        stack.append((value, k))
        elif kind is list:
            stack.extend((value, i) for i, v in enumerate(value) if type(v) in (str, dict, list))


def members_in(
    obj: dict[str, Any], read: frozenset[str], clean: Container[str] = (), skip: frozenset[str] = NOT_TEXT
) -> list[Place]:
    """Every string of an object but in the members `read` names (its format reads them), in its
    own members `skip` names (deeper, every string is read), the known keys and the strings in
    `clean`: each with its place. (A loop of its own, not `strings_in`'s: it runs for each event.)"""
    out: list[Place] = []
    for k in obj.keys() - skip:
        if k not in KNOWN_KEYS and k not in clean:
            out.append((obj, k, True))
        if k in read:
            continue
        v = obj[k]
        kind = type(v)
        if kind is str:
            if v and v not in clean:
                out.append((obj, k, False))
        elif kind is dict or kind is list:
            out.extend(strings_in(obj, k))
    return out


def unpaired(value: Any) -> bool:
    """Whether a JSON value's strings hold a surrogate not paired."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def answer_json(data: bytes) -> dict[str, Any] | None:
    """An event's JSON object as `parse_json` reads it (None: not one, or one that repeats a key);
    raises `Unpaired` where a string holds a surrogate not paired. What orjson reads holds none (it
    refuses them): only what it refuses is looked at."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        found = parse_json(data)
        if found is not None and unpaired(found):
            raise Unpaired("a string with a surrogate not paired") from None
        return found
    return value if type(value) is dict and keys_once(data, value) else None


def carries_text(node: Any, skipped: frozenset[str]) -> bool:
    """Whether a JSON value holds a string (but under the keys `skipped` names)."""
    if isinstance(node, str):
        return bool(node)
    if isinstance(node, list):
        return any(carries_text(item, skipped) for item in node)
    if isinstance(node, dict):
        return any(key not in skipped and carries_text(item, skipped) for key, item in node.items())
    return False


def sse_fields(block: bytes) -> list[Place]:
    """The strings of an event block's lines other than its data (its name, id, comments, a field
    not known), each a place read as a key is (it cannot be replaced: a value in one is denied).
    A block of one `data:` line, as most are, has none."""
    if block.startswith(b"data: ") and b"\n" not in block and b"\r" not in block:
        return []
    places: list[Place] = []
    for line in block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.startswith(b"data:") or not line:
            continue
        places.append((None, line.decode("utf-8", "replace"), True))
    return places


def read_places(
    compiled: Scanners, places: Iterable[Place], counts: Counter[str], clean: set[str]
) -> tuple[bool, str | None]:
    """Strings each read whole at their places: a value to redact replaced in place; whether one
    was, and the kind of a value to deny (None: none). A value in an object's key cannot be
    replaced: it is denied whatever the rule's action. A string read clean is noted in `clean`
    (up to `CLEAN_KEPT` of them), and not read again."""
    changed = False
    for holder, key, is_key in places:
        value = key if is_key else holder[key]
        if value in clean or (is_key and value in KNOWN_KEYS):
            continue
        replaced, denied, found = read_whole(compiled, value)
        counts.update(found)
        if denied is None and is_key and replaced != value:
            denied = next(kind for kind in found if compiled.actions.get(kind) == "redact")
        if denied is not None:
            return changed, denied
        if replaced == value:
            # Only what nothing was found in: a finding recorded (`audit`) is counted each time.
            if not found and len(value) <= CLEAN_SIZE and len(clean) < CLEAN_KEPT:
                clean.add(value)
        elif not is_key:
            holder[key] = replaced
            changed = True
    return changed, None


@dataclass(slots=True)
class ChannelState:
    """One channel's scanner and where its text stands: `fed` bytes read, `owed` what the scanner
    released that the client has not had yet, from `sent` (an offset in what was read) on;
    `unfed` the pieces of the events of this read not yet given to its scanner; `replaced` the
    kind of the last value replaced in it (for a format that tells it where signed text would
    change)."""

    scanner: Scanner | None
    fed: int = 0
    sent: int = 0
    # What goes on is taken from its front (in place: a read's text may be owed across many events).
    owed: bytearray = dataclass_field(default_factory=bytearray)
    unfed: list[bytes] = dataclass_field(default_factory=list)
    replaced: str | None = None

    def saved(self) -> ChannelState:
        scanner = self.scanner.copy() if self.scanner is not None else None
        return ChannelState(scanner, self.fed, self.sent, bytearray(self.owed), replaced=self.replaced)


@dataclass(slots=True)
class Piece:
    """A channel's text in an event: where it stands in what the channel read, where it sits in
    the event's object (the holder and key to write anew), and whether it is signed (it cannot
    be changed)."""

    channel: Hashable
    start: int
    text: bytes
    holder: Any
    field: Any
    signed: bool = False


@dataclass(slots=True, frozen=True)
class Placed:
    """What a piece of an event that goes on carries of its channel's owed text (`begin`, `end`),
    where its channel's text sent stands after it, and whether that is the piece as it came."""

    begin: int
    end: int
    sent: int
    came: bool


@dataclass(slots=True)
class Pending:
    """An event not yet gone on: its bytes as they came, its object, its channels' text, and
    whether it must be written anew whatever its text (a value replaced in what it gives whole)."""

    whole: bytes
    obj: Any = None
    pieces: list[Piece] = dataclass_field(default_factory=list)
    changed: bool = False


class Reread(Exception):
    """A value to deny in the events of a read read together: they are read again one by one."""


class EventGuard:
    """A streamed answer's events, read and rewritten (`feed` each piece, `flush` at its end).
    `denied`: the kind that stopped it (the caller then closes the upstream)."""

    # An event of one piece known to be what came goes on at once (without `_settled`): a format
    # that notes what each event that goes on ends with says False.
    _one_piece_at_once = True

    def __init__(self, compiled: Scanners) -> None:
        self._compiled = compiled
        self._channels: dict[Any, ChannelState] = {}
        self._pending: deque[Pending] = deque()
        self._spent: Counter[str] = Counter()  # the counts of the scanners that have ended
        self._together = False  # the events of a read are being read together
        self._unfed: list[ChannelState] = []  # the channels with pieces not yet given to their scanner
        self._closed = False  # the stream's end was read: nothing after it is
        self._denied_in: Any = None  # the channel a value to deny was found in (None: none)
        self._clean: set[str] = set()  # strings read whole and found clean (`CLEAN_KEPT`)
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        total = Counter(self._spent)
        for state in self._channels.values():
            if state.scanner is not None:
                total.update(state.scanner.counts)
        return dict(total)

    # -----------------------------------------------------------------------------------------
    # What a format says of its events

    def _units(self, chunk: bytes) -> list[Any]:
        """The events a read completes (what `_unit` reads)."""
        raise NotImplementedError

    def _unit(self, unit: Any) -> bytes:
        """One event read: what goes on now."""
        raise NotImplementedError

    def _scanner(self, channel: Any) -> Scanner:
        """A new scanner for a channel."""
        return self._compiled.scanner()

    def _rewritten(self, pending: Pending) -> bytes:
        """An event written anew, its pieces' holders saying what goes on of them."""
        raise NotImplementedError

    def _orphan(self, channel: Any, text: str) -> bytes:
        """An event for a channel's text known that no event waiting carries."""
        raise NotImplementedError

    def _denied_end(self, kind: str) -> bytes:
        """What a denied stream ends with."""
        raise NotImplementedError

    def _unsent(self, pending: Pending) -> str | None:
        """The kind of a value that keeps this event from going on as it must (signed text that
        would be changed): the stream stops before it. None: it may go."""
        return None

    # -----------------------------------------------------------------------------------------
    # Reading

    def feed(self, chunk: bytes) -> bytes:
        if self.denied is not None or self._closed:
            return b""
        return self._read_units(self._units(chunk))

    def _read_units(self, units: list[Any]) -> bytes:
        """A read's events: read together, or one by one where there are fewer than two or a value
        to deny is among them."""
        if len(units) < 2:
            return self._read_each(units)
        saved = self._saved()
        self._together = True
        try:
            out = self._read_each(units)
            if self.denied is not None:
                raise Reread
            return out + self._caught_up()
        except Reread:
            self._restore(saved)
        finally:
            self._together = False
            self._unfed.clear()
        return self._read_each(units)

    def flush(self) -> bytes:
        """What is held at the stream's end."""
        if self.denied is not None or self._closed:
            return b""
        self._ended_where(lambda channel: True)
        return self._cut() if self.denied is not None else self._drained() + self._orphans()

    def _read_each(self, units: list[Any]) -> bytes:
        """The events read in order, until a value to deny (or the stream's end) stops them."""
        out = []
        for unit in units:
            out.append(self._unit(unit))
            if self.denied is not None or self._closed:
                break
        return b"".join(out)

    def _saved(self) -> dict[str, Any]:
        """What reading events changes, as it stands before a read (its events read together may
        have to be read again one by one). The events' objects are not copied: reading them anew
        writes each piece of theirs that goes on."""
        return {
            "_channels": {channel: state.saved() for channel, state in self._channels.items()},
            "_pending": self._pending.copy(),
            "_spent": counter_copy(self._spent),
            "_closed": self._closed,
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        for name, value in saved.items():
            setattr(self, name, value)
        self.denied = None
        self._denied_in = None

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
            self._owe(state, released.text)
            if released.denied is not None:
                raise Reread
        self._unfed.clear()

    def _fed(self, pending: Pending, channel: Any, holder: Any, name: Any, value: str, signed: bool = False) -> None:
        """A piece of a channel's text, in the event `pending`, at `holder[name]`."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = ChannelState(None)
        if state.scanner is None:
            state.scanner = self._scanner(channel)
        piece = value.encode()
        pending.pieces.append(Piece(channel, state.fed, piece, holder, name, signed))
        state.fed += len(piece)
        if self._together:
            if not state.unfed:
                self._unfed.append(state)
            state.unfed.append(piece)
            return
        released = state.scanner.feed(piece)
        self._owe(state, released.text)
        if released.denied is not None:
            self.denied = released.denied
            self._denied_in = channel

    def _owe(self, state: ChannelState, text: bytes) -> None:
        """What a scanner released, owed to the client."""
        state.owed += text

    def _ended_where(self, ends: Callable[[Any], bool]) -> None:
        """The scanners of the channels that have ended flushed, now that their text has ended."""
        self._committed()
        for channel, state in self._channels.items():
            if state.scanner is None or not ends(channel):
                continue
            self._end(channel, state)
            if self.denied is not None:
                return

    def _end(self, channel: Any, state: ChannelState) -> None:
        """One channel's scanner flushed."""
        assert state.scanner is not None
        scanner, state.scanner = state.scanner, None
        released = scanner.flush()
        self._spent.update(scanner.counts)
        self._owe(state, released.text)
        if released.denied is not None:
            self.denied = released.denied
            self._denied_in = channel

    # -----------------------------------------------------------------------------------------
    # What goes on

    def _read(self, state: ChannelState) -> int:
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
        pending_events, channels, at_once = self._pending, self._channels, self._one_piece_at_once
        while pending_events:
            pending = pending_events[0]
            if at_once and len(pending.pieces) == 1 and not pending.changed:
                # Most events carry one piece: it goes on as it came where it is what is known.
                p = pending.pieces[0]
                state = channels[p.channel]
                if (
                    self._read(state) >= p.start + len(p.text)
                    and state.sent == p.start
                    and state.owed.startswith(p.text)
                ):
                    del state.owed[: len(p.text)]
                    state.sent += len(p.text)
                    out.append(pending_events.popleft().whole)
                    continue
            if any(self._read(channels[p.channel]) < p.start + len(p.text) for p in pending.pieces):
                behind = sum(len(p.whole) for p in pending_events) - len(pending.whole)
                if behind <= WAITING_BYTES:
                    break
                # Too much waits behind it: it goes on with what is known of it, the rest of its
                # text later, in its channel's next event (or one of its own).
            unsent = self._unsent(pending)
            if unsent is not None:
                self._reread_together()
                self.denied = unsent
                return b"".join(out) + self._ending()
            out.append(self._settled(pending))  # settled at the queue's front: it sees the pieces after it
            pending_events.popleft()
        return b"".join(out)

    def _orphans(self) -> bytes:
        """Events for text known that no event waiting carries (the rest of an event that went on
        before its text was all known), after the events known (of a read read together, not yet
        gone on)."""
        out = [self._caught_up()] if self._together else []
        carried = {p.channel for pending in self._pending for p in pending.pieces}
        for channel, state in self._channels.items():
            if state.owed and channel not in carried:
                text = state.owed.decode()
                state.owed.clear()
                state.sent = self._read(state)
                out.append(self._orphan(channel, text))
        return b"".join(out)

    def _cut(self) -> bytes:
        """At a value to deny: the events before it with what is known of them, nothing held and
        nothing after the value's event, then the format's end."""
        self._reread_together()
        if self._denied_in is not None:
            self._after_value_dropped(self._denied_in)
        out: list[bytes] = []
        while self._pending:
            if self._unsent(self._pending[0]) is not None:
                return b"".join(out) + self._ending()  # it is never sent changed: nothing from it on goes
            out.append(self._settled(self._pending[0]))
            self._pending.popleft()
        return b"".join(out) + self._orphans() + self._ending()

    def _unread(self, pending: Pending | None = None) -> bytes:
        """What cannot be read (an event whose data is not what its format sends) stops the
        answer before it: none of it goes on, nor anything after it, as at a value to deny."""
        return self._stop_before(pending, UNREAD)

    def _stop_before(self, pending: Pending | None, kind: str) -> bytes:
        """The answer stopped before an event (a value to deny in what it carries whole): none of
        it goes on, nor anything after it."""
        if pending is not None and self._pending and self._pending[-1] is pending:
            self._pending.pop()
        self.denied = kind
        return self._cut()

    def _read_places(self, pending: Pending, obj: Any, places: Iterable[Place]) -> str | None:
        """Strings an event carries whole, each read whole: a value to redact replaced in place
        (the event, `obj`, then written anew); the kind of a value to deny (None: none). A value
        in an object's key cannot be replaced: it is denied whatever the rule's action. A string
        read clean once is not read again."""
        changed, denied = read_places(self._compiled, places, self._spent, self._clean)
        if changed:
            pending.obj, pending.changed = obj, True
        return denied

    def _ending(self) -> bytes:
        """The format's end of a denied stream, and nothing after it."""
        self._pending.clear()
        return self._denied_end(self.denied or UNREAD)

    def _after_value_dropped(self, channel: Any) -> None:
        """The events after the last one that carries the denied channel's text (all of them, where
        none waiting does) taken out: they come after the value. What they carry of other
        channels does not go either."""
        last = -1
        for i, pending in enumerate(self._pending):
            if any(p.channel == channel for p in pending.pieces):
                last = i
        dropped = [self._pending.pop() for _ in range(len(self._pending) - last - 1)]
        first: dict[Any, int] = {}
        for pending in dropped:
            for p in pending.pieces:
                first[p.channel] = min(first.get(p.channel, p.start), p.start)
        for other, start in first.items():
            state = self._channels[other]
            after = b"".join(p.text for pending in reversed(dropped) for p in pending.pieces if p.channel == other)
            released = after[: max(0, self._read(state) - start)]
            if state.owed.endswith(released):
                del state.owed[len(state.owed) - len(released) :]
            else:
                state.owed.clear()  # a value replaced across them: none of it goes

    def _reread_together(self) -> None:
        """At a value to deny in a read read together: it is read again event by event."""
        if self._together:
            raise Reread

    def _settled(self, pending: Pending) -> bytes:
        """An event as it goes on (asked while it is at the front of the queue): as it came where
        each piece is what goes on of its channel, the pieces of one channel taken in turn; else
        written anew, each piece carrying its share of what is owed (`_placed`)."""
        placed = self._placed(pending)
        came = not pending.changed and all(p.came for p in placed)
        if not came:
            for piece, place in zip(pending.pieces, placed, strict=True):
                owed = self._channels[piece.channel].owed
                piece.holder[piece.field] = owed[place.begin : place.end].decode()
        for channel, (taken, sent) in self._taken(pending, placed).items():
            state = self._channels[channel]
            del state.owed[:taken]
            state.sent = sent
        return pending.whole if came else self._rewritten(pending)

    def _placed(self, pending: Pending) -> list[Placed]:
        """What each piece of an event carries of its channel's owed text, the pieces of one channel
        taken in turn."""
        taken: dict[Any, tuple[int, int]] = {}
        placed = []
        for p in pending.pieces:
            state = self._channels[p.channel]
            at, sent = taken.get(p.channel, (0, state.sent))
            end = p.start + len(p.text)
            if sent >= end:
                placed.append(Placed(at, at, sent, False))  # what it carried went on before
                continue
            share, reach = self._carried(p, sent, state.owed, at)
            came = reach == end and sent == p.start and state.owed[at : at + share] == p.text
            placed.append(Placed(at, at + share, reach, came))
            taken[p.channel] = (at + share, reach)
        return placed

    @staticmethod
    def _taken(pending: Pending, placed: list[Placed]) -> dict[Any, tuple[int, int]]:
        """Each channel's owed text the event carries, and where its text sent stands after it."""
        return {p.channel: (place.end, place.sent) for p, place in zip(pending.pieces, placed, strict=True)}

    def _carried(self, piece: Piece, sent: int, owed: bytearray, at: int) -> tuple[int, int]:
        """How much of its channel's owed text (from `at`, where its text sent stands at `sent`) a
        piece carries, and where its channel's text sent stands after it: its own text where that
        is what is owed; else all that is owed but the text of the pieces after it where that
        comes as it came (a value replaced in one piece leaves the others as they came)."""
        state = self._channels[piece.channel]
        end = piece.start + len(piece.text)
        reach = self._read(state)
        size = len(owed) - at
        if sent == piece.start and reach >= end and owed[at : at + len(piece.text)] == piece.text:
            return len(piece.text), end
        if reach <= end:
            return size, reach
        starts, texts = [], []
        for q in self._later(piece):
            if q.start >= reach:
                break
            starts.append(q.start)
            texts.append(q.text)
        after = b"".join(texts)[: reach - end]
        if len(after) != reach - end:
            return size, reach
        # The first piece after it from which on the known text is what is owed last (each such
        # text ends the one of the piece before: looked for by halves).
        low, high = 0, len(starts)
        while low < high:
            middle = (low + high) // 2
            rest = after[starts[middle] - end :]
            if len(rest) <= size and owed.endswith(rest):
                high = middle
            else:
                low = middle + 1
        if low == len(starts):
            return size, reach
        return size - (reach - starts[low]), starts[low]

    def _later(self, piece: Piece) -> Iterator[Piece]:
        """The pieces of the piece's channel after it, in the events waiting (its own among them)."""
        end = piece.start + len(piece.text)
        for pending in self._pending:
            for q in pending.pieces:
                if q.channel == piece.channel and q.start >= end:
                    yield q

    def _as_it_came(self, piece: Piece) -> bool:
        """Whether what goes on of the piece's channel, from where it begins, is the piece."""
        state = self._channels[piece.channel]
        known = self._read(state) >= piece.start + len(piece.text)
        return known and state.sent == piece.start and state.owed.startswith(piece.text)


class UnreadStream:
    """An answer read whole only (an image generation's, a compacted conversation's) that came as a
    stream where none was asked (streamed ones are refused before they go): not read, it stops at
    its first piece."""

    def __init__(self, compiled: Scanners) -> None:
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {}

    def feed(self, chunk: bytes) -> bytes:
        self.denied = UNREAD
        return b""

    def flush(self) -> bytes:
        return b""
