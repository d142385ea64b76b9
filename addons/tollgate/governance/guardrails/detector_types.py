"""What a detector is and how it finds its spans in a text: its pattern tried around its anchors'
matches (`Detector`), beside a partner's (`NearDetector`, `Base64PairDetector`), from an address's
local part (`EmailDetector`). The built-in detectors of each kind are made in `detectors.py`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Detector:
    """One pattern of a kind; its match (or its group `v`, where it has one) is the span found,
    when `check` (given those bytes) agrees; or the part of it `fit` keeps (its length, 0 for none:
    an IBAN in groups followed by a word of a group's shape). Where an anchor was found, the pattern
    is tried in the window of `reach` bytes either side of it; a detector `at_anchor` begins where
    its anchor begins, and is tried there only."""

    kind: str
    pattern: re.Pattern[bytes]
    anchors: tuple[bytes, ...]
    reach: int
    check: Callable[[bytes], bool] | None = None
    at_anchor: bool = False
    fit: Callable[[bytes], int] | None = None
    overlaps: bool = False  # a match may begin inside a shape its check refuses (`find`)
    _value: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_value", "v" in self.pattern.groupindex)

    def around(self, buf: bytes, anchors: list[Span]) -> Iterator[Span]:
        """The spans found about these anchors' matches (start, end), sorted."""
        if self.at_anchor:
            for start in sorted({s for s, _ in anchors}):
                found = self.match(buf, start)
                if found is not None:
                    yield found
            return
        size, reach = len(buf), self.reach + _PAD
        lo, hi = max(0, anchors[0][0] - reach), min(size, anchors[0][1] + reach)
        for start, end in anchors[1:]:
            if start - reach <= hi:
                hi = max(hi, min(size, end + reach))
                continue
            yield from self.find(buf, lo, hi)
            lo, hi = max(0, start - reach), min(size, end + reach)
        yield from self.find(buf, lo, hi)

    def match(self, buf: bytes, at: int) -> Span | None:
        m = self.pattern.match(buf, at)
        if m is None:
            return None
        s, e = m.span("v") if self._value else m.span()
        return self.accept(buf, s, e)

    def accept(self, buf: bytes, s: int, e: int) -> Span | None:
        if self.fit is not None:
            n = self.fit(buf[s:e])
            return (s, s + n) if n else None
        return (s, e) if self.check is None or self.check(buf[s:e]) else None

    def find(self, buf: bytes, lo: int, hi: int) -> Iterator[Span]:
        """The spans found in `buf` that begin in [lo, hi). Past a match its check refuses, the
        search goes on from its end; or from its next byte where the detector `overlaps`: a card
        may begin inside a shape that is none (a date's digits before the card)."""
        pattern, size, accept, overlaps = self.pattern, len(buf), self.accept, self.overlaps
        at = lo
        while at < hi:
            m = pattern.search(buf, at, hi)
            if m is None:
                return
            start = m.start()
            if m.end() == hi and hi < size:
                # Cut by the window's end: the match as the whole text has it.
                whole = pattern.match(buf, start)
                if whole is None:
                    at = start + 1
                    continue
                m = whole
            s, e = m.span("v") if self._value else m.span()
            found = accept(buf, s, e)
            if found is None:
                at = start + 1 if overlaps else max(m.end(), start + 1)
                continue
            yield found
            at = max(m.end(), start + 1)


# Context kept either side of a window beyond a detector's reach: its lookarounds' few bytes.
_PAD = 4


@dataclass(frozen=True, slots=True)
class NearDetector(Detector):
    """A secret that is the other half of a pair: its pattern found within `distance` bytes of a
    match of `partner` (an AWS secret access key beside its key id)."""

    partner: Detector | None = None
    distance: int = 0

    def around(self, buf: bytes, anchors: list[Span]) -> Iterator[Span]:
        assert self.partner is not None
        yield from self._beside(buf, self.partner.around(buf, anchors))

    def find(self, buf: bytes, lo: int, hi: int) -> Iterator[Span]:
        assert self.partner is not None
        yield from self._beside(buf, self.partner.find(buf, lo, hi))

    def _beside(self, buf: bytes, partners: Iterable[Span]) -> Iterator[Span]:
        """Its matches within `distance` of a partner's, each window read once: partners close
        together share one (a file of key ids is read once, not once per id)."""
        size, distance = len(buf), self.distance
        lo = hi = -1
        for s, e in partners:
            if s - distance <= hi:
                hi = min(size, e + distance)
                continue
            if hi >= 0:
                yield from self.within(buf, lo, hi)
            lo, hi = max(0, s - distance), min(size, e + distance)
        if hi >= 0:
            yield from self.within(buf, lo, hi)

    def within(self, buf: bytes, lo: int, hi: int) -> Iterator[Span]:
        """Its matches that begin in [lo, hi): its pattern's."""
        return Detector.find(self, buf, lo, hi)


_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+")
_BASE64_BYTES = frozenset(bytes([c]) for c in _BASE64)
_ESCAPE_LETTERS = frozenset(b"nrtbf")
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Base64PairDetector(NearDetector):
    """A secret of `length` base64 characters, a whole run of them, beside its partner. Its
    pattern is a run of `length` or more of them (possessive: each run once), and its runs in a
    window are found so, but in C's loops (`_runs`); where a run begins is checked here, as `left`
    would: not inside a longer run, nor just after a backslash, but for an escape's letter or
    `\\uXXXX` before it."""

    length: int = 40

    def within(self, buf: bytes, lo: int, hi: int) -> Iterator[Span]:
        check, length = self.check, self.length
        for run in _runs(buf, lo, hi, length):
            s, e = run
            if e == hi and buf[e : e + 1] in _BASE64_BYTES:  # cut by the window: the whole run
                e = self.pattern.match(buf, s).end()  # type: ignore[union-attr]
            if e - s < length or buf[e : e + 1] == b"=":  # shorter, or padded: a longer value's
                continue
            if s > 0 and buf[s - 1] in _BASE64 and s == lo:
                continue  # the window began inside a run
            if s > 0 and buf[s - 1] == 92:  # `\n…`: the letter is the escape's
                if buf[s] not in _ESCAPE_LETTERS:
                    continue
                s += 1
            elif s > 1 and buf[s - 2 : s] == b"\\u" and all(c in _HEX for c in buf[s : s + 4]):
                s += 4
            if e - s == length and (check is None or check(buf[s:e])):
                yield s, e


# Each byte of the base64 alphabet as 1, any other as 0: a window so marked holds a run of `length`
# of them where it holds `length` ones, which `bytes.find` finds without a step a byte in Python.
_BASE64_MARKS = bytes(1 if c in _BASE64 else 0 for c in range(256))


def _runs(buf: bytes, lo: int, hi: int, length: int) -> Iterator[Span]:
    """The runs of `length` or more base64 characters in `buf[lo:hi]`, each whole (as the window
    has it), in order: what a possessive `[A-Za-z0-9/+]{length,}+` finds there (`finditer(buf,
    lo, hi)`, which reads a window beyond the text's ends as ending there)."""
    lo, hi = max(lo, 0), min(max(hi, 0), len(buf))
    marks = buf[lo:hi].translate(_BASE64_MARKS)
    ones = b"\x01" * length
    at = marks.find(ones)
    while at >= 0:
        end = marks.find(b"\x00", at + length)
        if end < 0:
            yield lo + at, hi
            return
        yield lo + at, lo + end
        at = marks.find(ones, end)


_LOCAL_PART = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"


@dataclass(frozen=True, slots=True)
class EmailDetector(Detector):
    """An address, tried from the start of the local part before its anchor's `@`."""

    def around(self, buf: bytes, anchors: list[Span]) -> Iterator[Span]:
        done = -1
        for start, _ in anchors:
            at = start + 1  # the anchor is one character of the local part, then the @
            if at <= done:
                continue
            lo = max(0, at - 64)
            # The local part's first character: where the run of its characters before the @ begins
            # (`rstrip` is one C loop; a regex ending at the @ would try each of 64 starts).
            before = buf[lo:at]
            first_at = at - (len(before) - len(before.rstrip(_LOCAL_PART)))
            if first_at == at:
                continue
            for first in _local_starts(buf, lo, first_at, at):
                found = self.match(buf, first)
                if found is not None and not _userinfo(buf, found[0]):
                    done = found[1]
                    yield found
                    break


def _local_starts(buf: bytes, lo: int, first_at: int, at: int) -> Iterator[int]:
    """Where in the run of a local part's characters `buf[first_at:at]` an address may begin, in
    order: where its pattern's start (`left`) may hold. Inside the run that is after a `.` (each
    other character of the run is one an address does not begin after), or just after an escape
    that begins before the run (`\\n`, `\\uXXXX`: its letters, or its digits, are the run's
    first), which the pattern itself reads; every other place it is tried at would fail."""
    escaped = first_at == lo or buf[first_at - 1] == 92  # a run cut at `lo`: any may be
    near = min(at, first_at + 6) if escaped else first_at + 1
    yield from range(first_at, near)
    dot = buf.find(b".", near - 1, at - 1)
    while dot >= 0:
        yield dot + 1
        dot = buf.find(b".", dot + 1, at - 1)


# A URL's scheme and authority up to its user's `:` (`https://user:`), as it ends before a password.
_URL_USER = re.compile(rb"//[^\s/@\"'<>]{0,128}:\Z")


def _userinfo(buf: bytes, start: int) -> bool:
    """Whether an address found at `start` is a URL's `user:password@host` (after its `:`)."""
    return start > 0 and buf[start - 1] == 58 and _URL_USER.search(buf, max(0, start - 131), start) is not None
