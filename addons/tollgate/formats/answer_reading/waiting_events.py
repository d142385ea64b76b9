"""The events of a streamed answer not yet gone on, in order, and what goes on of them: an event
goes on as it came where all its text is known to be what goes on; an event whose text is held
waits whole, with the events after it (bounded by WAITING_BYTES), and is written anew (by its
format, `rewritten`) only where a value is replaced or a denial cuts it. Text known that no waiting
event carries goes on in an event of its own (an orphan, `orphan`). Plain code, knowing nothing of
mitmproxy."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from tollgate.formats.answer_reading.channels import Channels, Piece, Reread

# The events that may wait behind one whose text is held (of other channels): past that, it goes
# on with what is known of its text, so that a stream is never held long.
WAITING_BYTES = 64 << 10


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


class WaitingEvents:
    """The events not yet gone on (`queue`) and what goes on of them, their channels' text in
    `channels`. A format writes an event anew (`rewritten`), an event for text alone (`orphan`),
    and tells what keeps an event from going on as it must (`unsent`: the kind of a value in
    signed text that would change). `went`, where a format sets it, is told each event that goes
    on and what went of it (every event is then settled, none let through at once)."""

    def __init__(
        self,
        channels: Channels,
        rewritten: Callable[[Pending], bytes],
        orphan: Callable[[Any, str], bytes],
        unsent: Callable[[Pending], str | None],
    ) -> None:
        self._channels = channels
        self._rewritten = rewritten
        self._orphan = orphan
        self._unsent = unsent
        self.queue: deque[Pending] = deque()
        self.went: Callable[[Pending, bytes], None] | None = None

    def drain(self, every: bool = False) -> tuple[bytes, str | None]:
        """The events whose text is all known (`every`: all of them, with what is known of their
        text), in order: as they came where it is the text that came, written anew where it is not;
        and the kind of a value that keeps the next from going on (None: none), where they stop. In
        a read read together, that one is read again event by event (`Reread`)."""
        out = []
        queue, states, known = self.queue, self._channels.states, self._channels.known
        at_once = self.went is None
        while queue:
            pending = queue[0]
            if at_once and len(pending.pieces) == 1 and not pending.changed:
                # Most events carry one piece: it goes on as it came where it is what is known.
                p = pending.pieces[0]
                state = states[p.channel]
                if known(state) >= p.start + len(p.text) and state.sent == p.start and state.owed.startswith(p.text):
                    del state.owed[: len(p.text)]
                    state.sent += len(p.text)
                    out.append(queue.popleft().whole)
                    continue
            if not every and any(known(states[p.channel]) < p.start + len(p.text) for p in pending.pieces):
                behind = sum(len(p.whole) for p in queue) - len(pending.whole)
                if behind <= WAITING_BYTES:
                    break
                # Too much waits behind it: it goes on with what is known of it, the rest of its
                # text later, in its channel's next event (or one of its own).
            unsent = self._unsent(pending)
            if unsent is not None:
                if self._channels.together:
                    raise Reread
                return b"".join(out), unsent
            out.append(self.settled(pending))  # settled at the queue's front: it sees the pieces after it
            queue.popleft()
        return b"".join(out), None

    def orphans(self) -> bytes:
        """Events for text known that no event waiting carries (the rest of an event that went on
        before its text was all known)."""
        out = []
        carried = {p.channel for pending in self.queue for p in pending.pieces}
        for channel, state in self._channels.states.items():
            if state.owed and channel not in carried:
                text = state.owed.decode()
                state.owed.clear()
                state.sent = self._channels.known(state)
                out.append(self._orphan(channel, text))
        return b"".join(out)

    def after_value_dropped(self, channel: Any) -> None:
        """The events after the last one that carries the denied channel's text (all of them, where
        none waiting does) taken out: they come after the value. What they carry of other
        channels does not go either."""
        queue = self.queue
        last = -1
        for i, pending in enumerate(queue):
            if any(p.channel == channel for p in pending.pieces):
                last = i
        dropped = [queue.pop() for _ in range(len(queue) - last - 1)]
        first: dict[Any, int] = {}
        for pending in dropped:
            for p in pending.pieces:
                first[p.channel] = min(first.get(p.channel, p.start), p.start)
        for other, start in first.items():
            state = self._channels.states[other]
            after = b"".join(p.text for pending in reversed(dropped) for p in pending.pieces if p.channel == other)
            released = after[: max(0, self._channels.known(state) - start)]
            if state.owed.endswith(released):
                del state.owed[len(state.owed) - len(released) :]
            else:
                state.owed.clear()  # a value replaced across them: none of it goes

    def restore(self, saved: deque[Pending]) -> None:
        """The events waiting as they were before a read (in place: a format holds the queue)."""
        self.queue.clear()
        self.queue.extend(saved)

    def settled(self, pending: Pending) -> bytes:
        """An event as it goes on (asked while it is at the front of the queue): as it came where
        each piece is what goes on of its channel, the pieces of one channel taken in turn; else
        written anew, each piece carrying its share of what is owed (`placed`)."""
        placed = self.placed(pending)
        came = not pending.changed and all(p.came for p in placed)
        if not came:
            for piece, place in zip(pending.pieces, placed, strict=True):
                owed = self._channels.states[piece.channel].owed
                piece.holder[piece.field] = owed[place.begin : place.end].decode()
        for channel, (taken, sent) in self._taken(pending, placed).items():
            state = self._channels.states[channel]
            del state.owed[:taken]
            state.sent = sent
        out = pending.whole if came else self._rewritten(pending)
        if self.went is not None:
            self.went(pending, out)
        return out

    def placed(self, pending: Pending) -> list[Placed]:
        """What each piece of an event carries of its channel's owed text, the pieces of one channel
        taken in turn."""
        taken: dict[Any, tuple[int, int]] = {}
        placed = []
        for p in pending.pieces:
            state = self._channels.states[p.channel]
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
        state = self._channels.states[piece.channel]
        end = piece.start + len(piece.text)
        reach = self._channels.known(state)
        size = len(owed) - at
        if sent == piece.start and reach >= end and owed[at : at + len(piece.text)] == piece.text:
            return len(piece.text), end
        if reach <= end:
            return size, reach
        starts, texts = [], []
        for q in self.later(piece):
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

    def later(self, piece: Piece) -> Iterator[Piece]:
        """The pieces of the piece's channel after it, in the events waiting (its own among them)."""
        end = piece.start + len(piece.text)
        for pending in self.queue:
            for q in pending.pieces:
                if q.channel == piece.channel and q.start >= end:
                    yield q
