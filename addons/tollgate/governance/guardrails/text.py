"""What the detectors read of a body, and the way back to the body's bytes.

A JSON body is read as it is written, but for its escapes of printable ASCII (`\\u002d`, `\\/`), which
are read as the characters they stand for (the text the model reads): those could hide a character
of a match (`\\u002d` for a PEM key's dashes, `\\/` in a URL). A non-ASCII character's `\\uXXXX` is
read as it is written, as the separator it is to the built-in detectors, unless a detector needs it
decoded (`every_escape`). The other escapes are left as they are written: a detector reads `\\n`,
`\\t`, `\\"` as the separators they stand for, and a PEM key's escaped line ends as its line ends
(`detectors.py`). So a body of code, whose strings are full of `\\n` and `\\"`, is read without
copying it, and a body with a few escaped characters is copied once with them replaced.

Format characters (Unicode's category Cf: a zero-width space U+200B, a joiner U+200D, a soft
hyphen U+00AD, a word joiner U+2060, …) are read as nothing, in any body, as they are written or
escaped: invisible, they would otherwise hide a value from the detectors (`AKIA`, U+200B, then the
rest of a key) while a reader, or a model, reads the value whole. So are the other marks that show
nothing of their own between two characters: the variation selectors, the combining marks of the
blocks that mark any script's letters (an acute U+0301 on a key's letter, the combining grapheme
joiner U+034F) and U+0000. A word whose accents are written as combining marks is read as the word
without them, as ASCII detectors read it without its accented letters: nothing is found there that
would not be in the unaccented word.

A match that covers part of an escaped character's bytes is mapped back to the whole escape, so
that replacing its span keeps the body valid JSON; one that covers a character read as nothing
holds it, so that replacing the match removes it too."""

from __future__ import annotations

import bisect
import heapq
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tollgate.formats.answer_reading.scanning import PLACEHOLDER

_BACKSLASH = ord("\\")
# The format characters of Unicode 15.1, by their ranges (first, last): read from a table, not from
# `unicodedata` at every start (a fifth of a second); a unit test holds it to the Unicode this
# Python knows.
FORMAT_RANGES = (
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)  # fmt: skip
# The marks read as nothing as well: the combining marks of the blocks that are no script's own
# (Combining Diacritical Marks and its Extended and Supplement blocks, for Symbols, Half Marks), the
# variation selectors (Mongolian's free ones among them); a unit test holds them to marks.
MARK_RANGES = (
    (0x0300, 0x036F), (0x180B, 0x180D), (0x180F, 0x180F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF), (0xFE00, 0xFE0F), (0xFE20, 0xFE2F), (0xE0100, 0xE01EF),
)  # fmt: skip
NUL = b"\x00"  # U+0000: read as nothing too; ASCII, so looked for apart where a text is ASCII
_FORMAT = frozenset(c for first, last in FORMAT_RANGES + MARK_RANGES + ((0, 0),) for c in range(first, last + 1))


def _alternatives(written: dict[bytes, set[bytes]]) -> bytes:
    """A pattern of each prefix followed by one of its last parts (each a byte pattern)."""
    return b"|".join(prefix + b"[" + b"".join(sorted(last)) + b"]" for prefix, last in sorted(written.items()))


def _raw_format(characters: Iterable[int]) -> bytes:
    """Characters as UTF-8: by their bytes but the last, each with a class of its last."""
    written: dict[bytes, set[bytes]] = {}
    for c in characters:
        encoded = chr(c).encode()
        written.setdefault(b"".join(b"\\x%02x" % b for b in encoded[:-1]), set()).add(b"\\x%02x" % encoded[-1])
    return _alternatives(written)


def _hex(digits: str) -> bytes:
    """Hexadecimal digits as a JSON escape may write them, in either letter case."""
    return b"".join(d.encode() if d.isdigit() else b"[" + d.encode() + d.upper().encode() + b"]" for d in digits)


def _escaped_format() -> bytes:
    """The format characters as JSON escapes (beyond the BMP, surrogate pairs)."""
    written: dict[bytes, set[bytes]] = {}
    for c in _FORMAT:
        units = chr(c).encode("utf-16-be")
        hexes = [units[i : i + 2].hex() for i in range(0, len(units), 2)]
        head = b"".join(b"\\\\u" + _hex(h) for h in hexes[:-1]) + b"\\\\u" + _hex(hexes[-1][:3])
        written.setdefault(head, set()).update((_hex(hexes[-1][3]).strip(b"[]"),))
    return _alternatives(written)


# A format character as it is written, read as nothing in any body (U+0000 last: one byte, tried
# only after the others' first bytes).
_FORMAT_RAW = _raw_format(sorted(_FORMAT - {0})) + b"|\\x00"
# Where one may be, as the pass over a body looks for them: the Combining Diacritical Marks
# (U+0300-U+036F) by their first bytes alone, which also begin U+0370-U+037F (read again exactly,
# and left as they are): 128 more pairs of bytes would cost Hyperscan's pass a sixth of its time.
_DIACRITICS = range(0x0300, 0x0370)
_OTHER_FORMATS = _raw_format(sorted(_FORMAT - {0, *_DIACRITICS}))
_FORMAT_SEARCH = _OTHER_FORMATS + b"|[\\xcc\\xcd]|\\x00"
# Those beyond ASCII alone, for a pass of its own over a text: there two bytes each keep Hyperscan
# on its fast path (U+0000 is found by a byte search).
_BEYOND_ASCII_SEARCH = _OTHER_FORMATS + b"|[\\xcc\\xcd][\\x80-\\xbf]"
# The escapes read as the characters they stand for: a printable ASCII character's \u00XX and a
# slash, and a format character's (read as nothing); with `every_escape`, also a surrogate pair and
# any \uXXXX. A control character's escape (\u001b) separates as the character does: it is read as
# it is written (but U+0000's, read as nothing).
_ESCAPES_ASCII = rb"\\u00[2-7][0-9a-fA-F]|\\/|" + _escaped_format()
_ESCAPES = rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\/"
_HIDING_ASCII = re.compile(_ESCAPES_ASCII + b"|" + _FORMAT_RAW)
_HIDING = re.compile(_ESCAPES + b"|" + _FORMAT_RAW)
_HIDING_TEXT = re.compile(_FORMAT_RAW)
# Searched apart: the escapes begin with a backslash, which `re` finds a memchr at a time; the
# format characters' first bytes are a class it tries byte by byte, in text beyond ASCII only.
_ESCAPE_SEARCH_ASCII = re.compile(_ESCAPES_ASCII)
_ESCAPE_SEARCH = re.compile(_ESCAPES)


def escapes(every_escape: bool) -> bytes:
    """The pattern of the escapes `read` decodes: a JSON body without them (nor a format
    character, `format_characters`) is read as it is written."""
    return _ESCAPES if every_escape else _ESCAPES_ASCII


def format_characters() -> bytes:
    """The pattern of where a format character `read` reads as nothing may be, as it is written
    (every one, and a few characters more): a body without them (nor, in JSON, the escapes) is read
    as it is written."""
    return _FORMAT_SEARCH


def format_characters_beyond_ascii() -> bytes:
    """`format_characters` but U+0000 (ASCII, looked for apart), each a whole character."""
    return _BEYOND_ASCII_SEARCH


@dataclass(frozen=True, slots=True)
class ScannedText:
    """The bytes the detectors read (`data`) and where they come from in `body`: each escape read
    as its character begins at `text_at[i]` (`text_size[i]` bytes) and at `body_at[i]` in the body
    (`body_size[i]` bytes)."""

    body: bytes
    data: bytes
    text_at: list[int] = field(default_factory=list)
    text_size: list[int] = field(default_factory=list)
    body_at: list[int] = field(default_factory=list)
    body_size: list[int] = field(default_factory=list)

    def to_body(self, start: int, end: int) -> tuple[int, int]:
        """A span of `data` as the span of `body` it was read from (on whole escapes)."""
        if not self.text_at:
            return start, end
        return self._position(start, False), self._position(end, True)

    def _position(self, at: int, is_end: bool) -> int:
        if is_end:  # an end before what is read at `at` (an escape, characters read as nothing)
            first = bisect.bisect_left(self.text_at, at)
            if first < len(self.text_at) and self.text_at[first] == at:
                return self.body_at[first]
        i = bisect.bisect_right(self.text_at, at) - 1
        if i < 0:
            return at
        text_at, text_size = self.text_at[i], self.text_size[i]
        if at == text_at:  # a start at an escaped character's, or after characters read as nothing
            return self.body_at[i] + (self.body_size[i] if text_size == 0 else 0)
        if at < text_at + text_size:  # inside an escaped character: all of its escape
            return self.body_at[i] + (self.body_size[i] if is_end else 0)
        return at - text_at - text_size + self.body_at[i] + self.body_size[i]


def read(
    body: bytes,
    is_json: bool = True,
    every_escape: bool = False,
    at: Iterable[int] | None = None,
    formats: bool | None = None,
) -> ScannedText:
    """The text the detectors read of a body; JSON or any text (an answer's, `tollgate scan`'s).
    The built-in detectors match ASCII only: a non-ASCII character's escape is read as it is written
    (as a separator) unless `every_escape` (a custom detector's pattern or term, or a key, is not
    ASCII). A format character is read as nothing. `at`: where the escapes and format characters
    begin, when a pass over the body has found them (`escapes`, `format_characters`); else they
    are searched, the format characters only where `formats` (None: the body is not ASCII)."""
    if formats is None:
        formats = not body.isascii() or NUL in body
    if is_json:
        hiding = _HIDING if every_escape else _HIDING_ASCII
    elif not formats:
        return ScannedText(body, body)
    else:
        hiding = _HIDING_TEXT
    found: Iterable[re.Match[bytes] | None]
    if at is not None:
        found = (hiding.match(body, i) for i in sorted(set(at)))
    elif not is_json:
        found = hiding.finditer(body)
    else:
        found = (_ESCAPE_SEARCH if every_escape else _ESCAPE_SEARCH_ASCII).finditer(body)
        if formats:
            found = heapq.merge(found, _HIDING_TEXT.finditer(body), key=_START)
    read = ScannedText(body, b"")
    pieces: list[bytes] = []
    done = 0
    length = 0
    for m in found:
        # After an escaped backslash (`\\\\u…`) it is no escape; a pair's second half is its own.
        if m is None or m.start() < done or (body[m.start()] == _BACKSLASH and _escaped(body, m.start())):
            continue
        start = m.start()
        plain = body[done:start]
        pieces.append(plain)
        length += len(plain)
        char = _character(m.group())
        pieces.append(char)
        read.text_at.append(length)
        read.text_size.append(len(char))
        read.body_at.append(start)
        read.body_size.append(m.end() - start)
        length += len(char)
        done = m.end()
    if not read.text_at:
        return ScannedText(body, body)
    pieces.append(body[done:])
    return ScannedText(body, b"".join(pieces), read.text_at, read.text_size, read.body_at, read.body_size)


def _escaped(body: bytes, at: int) -> bool:
    """Whether the backslash at `at` is itself escaped: after an odd number of backslashes."""
    n = 0
    while at - n - 1 >= 0 and body[at - n - 1] == _BACKSLASH:
        n += 1
    return n % 2 == 1


def _character(written: bytes) -> bytes:
    """What an escape stands for, as UTF-8 (a lone surrogate as `surrogatepass` writes it); nothing
    for a format character, escaped or as it is written."""
    if written[0] != _BACKSLASH:
        return b""  # a format character
    if written == b"\\/":
        return b"/"
    if len(written) == 12:
        high, low = int(written[2:6], 16), int(written[8:12], 16)
        code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
    else:
        code = int(written[2:6], 16)
    return b"" if code in _FORMAT else chr(code).encode("utf-8", "surrogatepass")


_START = operator.methodcaller("start")


def merged(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans in order, overlapping ones as one (named by the first)."""
    out: list[tuple[int, int, str]] = []
    for s, e, kind in sorted(spans):
        if out and s < out[-1][1]:
            first = out[-1]
            out[-1] = (first[0], max(first[1], e), first[2])
            continue
        out.append((s, e, kind))
    return out


def replace(body: bytes, spans: Iterable[tuple[int, int, str]]) -> tuple[bytes, int]:
    """`body` with each span replaced by its kind's placeholder: overlapping spans as one (named by
    the first), and the number of replacements made."""
    spans = merged(spans)
    placeholders: dict[str, bytes] = {}  # each kind's, made once (a hostile body has 100,000s of spans)
    for _, _, kind in spans:
        if kind not in placeholders:
            placeholders[kind] = PLACEHOLDER.format(kind=kind).encode()
    return rewrite(body, [(s, e, placeholders[kind]) for s, e, kind in spans]), len(spans)


def rewrite(body: bytes, edits: Iterable[tuple[int, int, bytes]]) -> bytes:
    """`body` with each span replaced by its bytes (the spans do not overlap)."""
    out: list[bytes] = []
    done = 0
    for s, e, new in sorted(edits):
        out.append(body[done:s])
        out.append(new)
        done = e
    out.append(body[done:])
    return b"".join(out)
