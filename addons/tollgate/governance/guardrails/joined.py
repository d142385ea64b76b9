"""Adjacent text parts of one message read joined, as the model reads them: a secret split across
two parts (a key id's first letters in one, the rest in the next; a PEM key whose lines go on in
the next part) is found in their join, and each piece is redacted in its own part.

Only the join is read again: the end of each part and the start of the next (`WINDOW` characters
each, and back to a PEM key's `-----BEGIN` left open), all of a body's joins in one pass. A match
there that the body's own scan found already is not counted twice. Plain Python."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tollgate.formats.attachments import Path, TextRuns
from tollgate.formats.json_paths import string_spans

WINDOW = 256  # characters of each part beside a join: more than any token detector's match
_PEM_REACH = 16600  # a PEM key's match at most (detectors.py)
# Between two joins: no detector's match holds a NUL, so none reads across.
_SEPARATOR = b"\x00"


@dataclass(frozen=True, slots=True)
class Join:
    """Where two adjacent parts meet in the text read: the end of `first` from character `first_at`
    on, then the start of `second` (`second_chars` characters), at `at` in the text read, the
    second part from byte `boundary`."""

    first: Path
    second: Path
    first_at: int
    at: int
    boundary: int
    end: int
    first_text: str
    second_text: str


def joins(runs: TextRuns) -> tuple[bytes, list[Join]]:
    """The text the joins are read in, and each join's place in it."""
    pieces: list[bytes] = []
    found: list[Join] = []
    at = 0
    for run in runs:
        for (first, a), (second, b) in itertools.pairwise(run):
            start, stop = max(0, len(a) - WINDOW), min(len(b), WINDOW)
            # A PEM key begun in the first part (its `-----BEGIN` there, or split by the join) and
            # not ended there: the join reads from its beginning to its end in the next part.
            reach = max(0, len(a) - _PEM_REACH)
            probe = a[reach:] + b[:16]
            begin = probe.rfind("-----BEGIN")
            if -1 < begin < len(a) - reach and "-----END" not in probe[begin:]:
                start = min(start, reach + begin)
                end = b.find("-----END")
                stop = min(len(b), max(stop, end + 64 if end != -1 else _PEM_REACH))
            tail, head = a[start:].encode("utf-8", "surrogatepass"), b[:stop].encode("utf-8", "surrogatepass")
            if not tail or not head:
                continue
            pieces += [tail, head, _SEPARATOR]
            found.append(Join(first, second, start, at, at + len(tail), at + len(tail) + len(head), a, b))
            at += len(tail) + len(head) + len(_SEPARATOR)
    return b"".join(pieces), found


@dataclass(frozen=True, slots=True)
class Piece:
    """A match's piece in one part: the part's path and its characters [start, end)."""

    path: Path
    start: int
    end: int


def pieces(data: bytes, at: list[int], found: list[Join], start: int, end: int) -> list[Piece] | None:
    """A match of the joined text as its pieces in the parts; None for one outside any join."""
    i = bisect.bisect_right(at, start) - 1
    if i < 0:
        return None
    join = found[i]
    if end > join.end:
        return None
    out: list[Piece] = []
    if start < join.boundary:
        s = join.first_at + _chars(data[join.at : start])
        e = join.first_at + _chars(data[join.at : min(end, join.boundary)])
        out.append(Piece(join.first, s, e))
    if end > join.boundary:
        s = _chars(data[join.boundary : max(start, join.boundary)])
        e = _chars(data[join.boundary : end])
        out.append(Piece(join.second, s, e))
    return out


def _chars(data: bytes) -> int:
    return len(data.decode("utf-8", "surrogatepass"))


def body_spans(body: bytes, pieces: list[Piece]) -> Iterator[tuple[int, int]] | None:
    """Each piece as the span of the body its characters are written in (whole escapes); None when
    a part's string cannot be found where its path says."""
    located = string_spans(body, {p.path for p in pieces})
    spans: list[tuple[int, int]] = []
    for piece in pieces:
        if piece.path not in located:
            return None
        s, e = located[piece.path]
        offsets = _offsets(body, s + 1, e - 1)
        spans.append((offsets[piece.start], offsets[piece.end]))
    return iter(spans)


# One character of a JSON string as written: a surrogate pair's escape, an escape, or a UTF-8 character.
_CHARACTER = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.|[\x00-\x7f]|[\xc0-\xff][\x80-\xbf]*",
    re.S,
)


def _offsets(body: bytes, start: int, end: int) -> list[int]:
    """Where each character of the string written in body[start:end] begins, then its end."""
    out = [m.start() for m in _CHARACTER.finditer(body, start, end)]
    out.append(end)
    return out
