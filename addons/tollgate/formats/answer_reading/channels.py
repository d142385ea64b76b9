"""The channels of a streamed answer (a choice's text, a tool call's arguments…): each one's
scanner, and where its text stands between what was read and what went on to the client. A
channel's pieces are given to its scanner one by one, or, for the events of one read read
together, joined at the read's end (a scanner's result does not depend on how its text is cut).
Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from tollgate.formats.answer_reading.scanning import PLACEHOLDER, Scanner, Scanners

# A placeholder in released text, and the kind it names.
_PLACEHOLDER = re.compile(re.escape(PLACEHOLDER).replace(r"\{kind\}", r"([^\]\s]+)"))


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


class Reread(Exception):
    """A value to deny in the events of a read read together: they are read again one by one."""


def replaced_kind(text: str | bytes | bytearray) -> str | None:
    """The kind a placeholder in `text` names."""
    found = _PLACEHOLDER.search(text if isinstance(text, str) else text.decode(errors="replace"))
    return found.group(1) if found else None


class Channels:
    """Each channel's scanner and where its text stands (`states`, by channel). `scanner` makes a
    channel's scanner; `spent` gathers the counts of the scanners that have ended; `together`:
    the events of a read are being read together (their pieces given at its end, `commit`);
    `notes_replaced`: the kind of the last value replaced in each channel is noted."""

    def __init__(self, compiled: Scanners, scanner: Callable[[Any], Scanner], spent: Counter[str]) -> None:
        self._holds = compiled.holds
        self._scanner = scanner
        self.spent = spent
        self.states: dict[Any, ChannelState] = {}
        self.together = False
        self.notes_replaced = False
        self._unfed: list[ChannelState] = []  # the channels with pieces not yet given to their scanner

    def fed(self, pieces: list[Piece], channel: Any, holder: Any, name: Any, value: str, signed: bool) -> str | None:
        """A piece of a channel's text, at `holder[name]`, added to its event's `pieces`: the kind
        of a value to deny its scanner found (None: none, or not read yet)."""
        state = self.states.get(channel)
        if state is None:
            state = self.states[channel] = ChannelState(None)
        if state.scanner is None:
            state.scanner = self._scanner(channel)
        piece = value.encode()
        pieces.append(Piece(channel, state.fed, piece, holder, name, signed))
        state.fed += len(piece)
        if self.together:
            if not state.unfed:
                self._unfed.append(state)
            state.unfed.append(piece)
            return None
        released = state.scanner.feed(piece)
        self.owe(state, released.text)
        return released.denied

    def commit(self) -> None:
        """Each channel's pieces not yet read given to its scanner at once. At a value to deny,
        the read is read again event by event (`Reread`)."""
        for state in self._unfed:
            assert state.scanner is not None
            piece = b"".join(state.unfed) if len(state.unfed) > 1 else state.unfed[0]
            state.unfed.clear()
            released = state.scanner.feed(piece)
            self.owe(state, released.text)
            if released.denied is not None:
                raise Reread
        self._unfed.clear()

    def end(self, state: ChannelState) -> str | None:
        """One channel's scanner flushed, now that its text has ended: the kind of a value to deny."""
        assert state.scanner is not None
        scanner, state.scanner = state.scanner, None
        released = scanner.flush()
        self.spent.update(scanner.counts)
        self.owe(state, released.text)
        return released.denied

    def owe(self, state: ChannelState, text: bytes) -> None:
        """What a scanner released, owed to the client."""
        state.owed += text
        if self.notes_replaced and text and b"[REDACTED:" in text:
            state.replaced = replaced_kind(text) or state.replaced

    def known(self, state: ChannelState) -> int:
        """How far the channel's text is known: what its scanner no longer holds."""
        if state.scanner is None or not self._holds:
            return state.fed
        return state.fed - state.scanner.held

    def counts(self) -> Counter[str]:
        """The counts of every scanner, ended or not."""
        total = Counter(self.spent)
        for state in self.states.values():
            if state.scanner is not None:
                total.update(state.scanner.counts)
        return total

    def saved(self) -> dict[Any, ChannelState]:
        """Each channel as it stands before a read (its events read together may be read again)."""
        return {channel: state.saved() for channel, state in self.states.items()}

    def restore(self, saved: dict[Any, ChannelState]) -> None:
        """The channels as they stood (`saved`)."""
        self.states = saved

    def read_apart(self) -> None:
        """A read's events read one by one again, no piece left to give."""
        self.together = False
        self._unfed.clear()
