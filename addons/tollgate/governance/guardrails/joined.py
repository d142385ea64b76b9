"""Adjacent text parts of one message read joined, as the model reads them: a secret split across
two parts (a key id's first letters in one, the rest in the next; a PEM key whose lines go on in
the next part) is found in their join, and each piece is redacted in its own part.

Only the join is read again: the end of each part and the start of the next (`WINDOW` characters
each, and back to a PEM key's `-----BEGIN` left open), all of a body's joins in one pass. A match
there that the body's own scan found already is not counted twice. Plain Python."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import NamedTuple

from tollgate.formats.attachments import Path, TextRuns
from tollgate.formats.json_paths import string_spans

WINDOW = 256  # characters of each part beside a join: more than any token detector's match
_PEM_REACH = 16600  # a PEM key's match at most (detectors.py)
# Between two joins: no detector's match holds a NUL, so none reads across.
_SEPARATOR = "\x00"


class Join(NamedTuple):
    """Where two adjacent parts meet in the text read: the end of `first` from its character
    `first_at` on, then the start of `second`, at bytes [`at`, `end`) of the text read, the second
    part's from byte `boundary`."""

    first: Path
    second: Path
    first_at: int
    at: int
    boundary: int
    end: int


def joins(runs: TextRuns) -> tuple[bytes, list[Join]]:
    """The text the joins are read in, and each join's place in it."""
    texts: list[str] = []
    found: list[Join] = []
    at = 0
    for run in runs:
        for (first, a), (second, b) in itertools.pairwise(run):
            if not a or not b:
                continue
            start, stop = max(0, len(a) - WINDOW), WINDOW
            if a.find("-----", max(0, len(a) - _PEM_REACH)) != -1 or b.find("BEGIN", 0, 16) != -1:
                # a PEM key's armour (or half of it) near the join: see below
                start, stop = _pem_reach(a, b, start, stop)
            tail, head = a[start:], b[:stop]
            tail_size = len(tail) if tail.isascii() else len(tail.encode("utf-8", "surrogatepass"))
            head_size = len(head) if head.isascii() else len(head.encode("utf-8", "surrogatepass"))
            texts += (tail, head, _SEPARATOR)
            found.append(Join(first, second, start, at, at + tail_size, at + tail_size + head_size))
            at += tail_size + head_size + len(_SEPARATOR)
    return "".join(texts).encode("utf-8", "surrogatepass"), found


def _pem_reach(a: str, b: str, start: int, stop: int) -> tuple[int, int]:
    """A PEM key begun in the first part (its `-----BEGIN` there, or split by the join) and not
    ended there: the join reads from its beginning to its end in the next part."""
    begin = a.rfind("-----BEGIN", max(0, len(a) - _PEM_REACH))
    split = (a[-9:] + b[:9]).find("-----BEGIN")
    if -1 < split < min(9, len(a)):  # `-----BEGIN` itself split by the join
        begin = len(a) - min(9, len(a)) + split
    if begin == -1 or a.find("-----END", begin) != -1:
        return start, stop
    end = b.find("-----END")
    return min(start, begin), max(stop, end + 64 if end != -1 else _PEM_REACH)


@dataclass(frozen=True, slots=True)
class Piece:
    """A match's piece in one part: the part's path and its characters [start, end)."""

    path: Path
    start: int
    end: int


def pieces(data: bytes, join: Join, start: int, end: int) -> list[Piece]:
    """A match of a join's text as its pieces in the two parts."""
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


def body_spans(body: bytes, matches: list[list[Piece]]) -> list[list[tuple[int, int]]] | None:
    """Each match's pieces as the spans of the body their characters are written in (whole
    escapes), the body read once for all; None when a part's string is not where its path says."""
    located = string_spans(body, {p.path for pieces in matches for p in pieces})
    offsets: dict[Path, list[int]] = {}
    out: list[list[tuple[int, int]]] = []
    for pieces in matches:
        spans = []
        for piece in pieces:
            if piece.path not in located:
                return None
            if piece.path not in offsets:
                s, e = located[piece.path]
                offsets[piece.path] = _offsets(body, s + 1, e - 1)
            at = offsets[piece.path]
            spans.append((at[piece.start], at[piece.end]))
        out.append(spans)
    return out


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
