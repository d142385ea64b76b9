"""A run's last records, as `tollgate audit verify` keeps them to link each record to its
predecessor (`audit_verify`): their chains and places in flat columns, not a dict of tuples."""

from __future__ import annotations

from array import array
from typing import NamedTuple

# How many records back, within a run, a record out of order is still linked to its predecessor.
WINDOW = 100_000
SEQ_LIMIT = 1 << 62  # a seq held in a column; a greater one (no audit comes near) is kept apart


class Place(NamedTuple):  # made for every line read: a tuple is made in a fraction of a dataclass's time
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Kept(NamedTuple):
    """What is kept of each of a run's last WINDOW records: its chain, to link the next to, and its
    place, to name it."""

    chain: str
    place: Place


class LastRecords:
    """A run's last WINDOW records by seq, as a dict of seq to `Kept` that drops seq - WINDOW as
    seq comes, held in flat columns: a slot per seq modulo WINDOW (its seq, its chain's 32 bytes,
    its file and line), so that 100,000 records take 5 MB, not the 40 MB of as many tuples and
    strings. A record the slots cannot hold (far out of order, or its slot's seq still kept) is
    kept apart, as it would be in the dict."""

    __slots__ = ("apart", "chains", "file_names", "file_numbers", "files", "lines", "seqs")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.seqs = array("q")  # per slot: the seq it holds (0: none)
        self.chains = bytearray()  # per slot: 32 bytes
        self.lines = array("q")
        self.files = array("i")  # per slot: its file's number in `file_names`
        self.file_names: list[str] = []
        self.file_numbers: dict[str, int] = {}
        self.apart: dict[int, Kept] = {}

    def __contains__(self, seq: int) -> bool:
        return self._slot(seq) is not None or seq in self.apart

    def get(self, seq: int) -> Kept | None:
        slot = self._slot(seq)
        if slot is None:
            return self.apart.get(seq)
        place = Place(self.file_names[self.files[slot]], self.lines[slot])
        return Kept(self.chains[slot * 32 : slot * 32 + 32].hex(), place)

    def chain(self, seq: int) -> str | None:
        """The chain of record `seq`, when it is kept."""
        slot = self._slot(seq)
        if slot is None:
            kept = self.apart.get(seq)
            return None if kept is None else kept.chain
        return self.chains[slot * 32 : slot * 32 + 32].hex()

    def add(self, seq: int, chain: str, place: Place) -> None:
        """Record `seq` (not kept yet); seq - WINDOW dropped."""
        apart = self.apart
        if apart:
            apart.pop(seq - WINDOW, None)
        if seq >= SEQ_LIMIT:
            apart[seq] = Kept(chain, place)
            return
        slot = seq % WINDOW
        seqs = self.seqs
        if slot >= len(seqs):
            self._grow(slot + 1)
        held = seqs[slot]
        if held > seq:  # an older record, come late: its slot holds a newer one
            apart[seq] = Kept(chain, place)
            return
        if held and held != seq - WINDOW:  # a record not dropped (seq + WINDOW never came): kept apart
            apart[held] = self.get(held)  # type: ignore[assignment]
        seqs[slot] = seq
        self.chains[slot * 32 : slot * 32 + 32] = bytes.fromhex(chain)
        self.lines[slot] = place.line
        number = self.file_numbers.get(place.file)
        if number is None:
            number = self.file_numbers[place.file] = len(self.file_names)
            self.file_names.append(place.file)
        self.files[slot] = number

    def _grow(self, size: int) -> None:
        """Slots up to `size` at least (twice as many as before, up to WINDOW: a run's seqs come one by one)."""
        more = min(WINDOW, max(size, 2 * len(self.seqs), 1024)) - len(self.seqs)
        self.seqs.frombytes(bytes(8 * more))
        self.chains.extend(bytes(32 * more))
        self.lines.frombytes(bytes(8 * more))
        self.files.frombytes(bytes(4 * more))

    def below(self, seq: int) -> int:
        """The highest seq kept below `seq` (0: none)."""
        return max((s for s in (*self.seqs, *self.apart) if 0 < s < seq), default=0)

    def _slot(self, seq: int) -> int | None:
        slot = seq % WINDOW
        return slot if slot < len(self.seqs) and self.seqs[slot] == seq and seq > 0 else None
