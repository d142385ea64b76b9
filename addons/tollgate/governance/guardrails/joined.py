"""Adjacent text parts read joined, as the model reads them: a secret split across two parts (a
key id's first letters in one, the rest in the next; a PEM key whose lines go on in the next part)
or across several short ones is found in their join, and each piece is redacted in its own part.

Only the joins are read again: the end of each part and the start of the next (`WINDOW` characters
each, a short part whole, and back to a PEM key's `-----BEGIN` left open), all of a body's joins in
one pass. A match there that the body's own scan found already is not counted twice. Plain Python."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import NamedTuple

from tollgate.formats.bodies.attachments import Path, TextRuns
from tollgate.formats.bodies.json_paths import string_spans

WINDOW = 256  # characters of each part beside a join: more than any token detector's match
_PEM_REACH = 16600  # a PEM key's match at most (detectors.py)
# Between two stretches of joined text: no detector's match holds a NUL, so none reads across.
_SEPARATOR = "\x00"


class Segment(NamedTuple):
    """A stretch of one part in the text read: the part's characters from `part_at` on, at bytes
    [`at`, `end`) of the text read."""

    path: Path
    part_at: int
    at: int
    end: int


def joins(runs: TextRuns) -> tuple[bytes, list[Segment]]:
    """The text the joins are read in, and where each part's stretch of it is. In a run, the end of
    a part and the start of the next follow each other; a part short enough is there whole, so that
    the joins on either side of it are one stretch of text."""
    texts: list[str] = []
    segments: list[Segment] = []
    at = 0

    def add(path: Path, value: str, start: int, stop: int) -> None:
        nonlocal at
        text = value[start:stop]
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        texts.append(text)
        segments.append(Segment(path, start, at, at + size))
        at += size

    def cut() -> None:
        nonlocal at
        texts.append(_SEPARATOR)
        at += len(_SEPARATOR)

    for run in runs:
        pem_goes_on = False  # a PEM key begun in the part before and not ended there
        for i, (path, value) in enumerate(run):
            head = 0 if i == 0 else _head(value, pem_goes_on)
            if i + 1 < len(run):
                tail, pem_goes_on = _tail(value, run[i + 1][1])
            else:
                tail, pem_goes_on = len(value), False
            if i == 0:
                add(path, value, tail, len(value))
            elif head >= tail:  # the whole part: both its joins in one stretch
                add(path, value, 0, len(value))
            else:
                add(path, value, 0, head)
                cut()
                if i + 1 < len(run):
                    add(path, value, tail, len(value))
        cut()
    return "".join(texts).encode("utf-8", "surrogatepass"), segments


def _head(value: str, pem_goes_on: bool) -> int:
    """How much of a part's start its join with the part before reads: to the end of a PEM key
    begun there."""
    if not pem_goes_on:
        return min(len(value), WINDOW)
    end = value.find("-----END", 0, _PEM_REACH)
    return min(len(value), max(WINDOW, end + 64 if end != -1 else _PEM_REACH))


def _tail(value: str, after: str) -> tuple[int, bool]:
    """Where the part's end that its join with the next reads begins, and whether a PEM key begun
    in it (its `-----BEGIN` there, or split by the join) goes on in the next."""
    start = max(0, len(value) - WINDOW)
    if value.find("-----", max(0, len(value) - _PEM_REACH)) == -1 and after.find("BEGIN", 0, 16) == -1:
        return start, False
    begin = value.rfind("-----BEGIN", max(0, len(value) - _PEM_REACH))
    split = (value[-9:] + after[:9]).find("-----BEGIN")
    if -1 < split < min(9, len(value)):  # `-----BEGIN` itself split by the join
        begin = len(value) - min(9, len(value)) + split
    if begin == -1 or value.find("-----END", begin) != -1:
        return start, False
    return min(start, begin), True


@dataclass(frozen=True, slots=True)
class JoinedPiece:
    """A match's piece in one part: the part's path and its characters [start, end)."""

    path: Path
    start: int
    end: int


def pieces(data: bytes, segments: list[Segment], starts: list[int], start: int, end: int) -> list[JoinedPiece]:
    """A match of the joined text as its pieces in the parts it covers (`starts`: the segments'
    `at`, for a search)."""
    out: list[JoinedPiece] = []
    i = max(0, bisect.bisect_right(starts, start) - 1)
    while i < len(segments) and segments[i].at < end:
        seg = segments[i]
        if seg.end > start:
            s = seg.part_at + _chars(data[seg.at : max(start, seg.at)])
            e = seg.part_at + _chars(data[seg.at : min(end, seg.end)])
            if out and out[-1].path == seg.path and out[-1].end == s:
                out[-1] = JoinedPiece(seg.path, out[-1].start, e)
            elif e > s:
                out.append(JoinedPiece(seg.path, s, e))
        i += 1
    return out


def _chars(data: bytes) -> int:
    return len(data.decode("utf-8", "surrogatepass"))


def body_spans(body: bytes, matches: list[list[JoinedPiece]]) -> list[list[tuple[int, int]]] | None:
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
