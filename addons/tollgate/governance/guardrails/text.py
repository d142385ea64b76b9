"""What the detectors read of a body, and the way back to the body's bytes.

A JSON body is read as it is written, but for its escapes of printable ASCII (`\\u002d`, `\\/`), which
are read as the characters they stand for (the text the model reads): those could hide a character
of a match (`\\u002d` for a PEM key's dashes, `\\/` in a URL). A non-ASCII character's `\\uXXXX` is
read as it is written, as the separator it is to the built-in detectors, unless a detector needs it
decoded (`every_escape`). The other escapes are left as they are written: a detector reads `\\n`,
`\\t`, `\\"` as the separators they stand for, and a PEM key's escaped line ends as its line ends
(`detectors.py`). So a body of code, whose strings are full of `\\n` and `\\"`, is read without
copying it, and a body with a few escaped characters is copied once with them replaced.

A match that covers part of an escaped character's bytes is mapped back to the whole escape, so
that replacing its span keeps the body valid JSON."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# The escapes read as the characters they stand for: a printable ASCII character's \u00XX and a
# slash; with `every_escape`, also a surrogate pair and any \uXXXX. A control character's escape
# (\u001b) separates as the character does: it is read as it is written.
_HIDING_ASCII = re.compile(rb"\\u00[2-7][0-9a-fA-F]|\\/")
_HIDING = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\/")
_BACKSLASH = ord("\\")


def escapes(every_escape: bool) -> bytes:
    """The pattern of the escapes `read` decodes: a body without them is read as it is written."""
    return (_HIDING if every_escape else _HIDING_ASCII).pattern


@dataclass(frozen=True, slots=True)
class Text:
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
        i = bisect.bisect_right(self.text_at, at) - 1
        if i < 0:
            return at
        text_at, text_size = self.text_at[i], self.text_size[i]
        if at == text_at:
            return self.body_at[i]
        if at < text_at + text_size:  # inside an escaped character: all of its escape
            return self.body_at[i] + (self.body_size[i] if is_end else 0)
        return at - text_at - text_size + self.body_at[i] + self.body_size[i]


def read(body: bytes, is_json: bool = True, every_escape: bool = False, at: Iterable[int] | None = None) -> Text:
    """The text the detectors read of a body; JSON or, for `tollgate scan`, any text. The built-in
    detectors match ASCII only: a non-ASCII character's escape is read as it is written (as a
    separator) unless `every_escape` (a custom detector's pattern or term, or a key, is not ASCII).
    `at`: where the escapes begin, when a pass over the body has found them (`escapes`)."""
    if not is_json:
        return Text(body, body)
    hiding = _HIDING if every_escape else _HIDING_ASCII
    found = hiding.finditer(body) if at is None else (hiding.match(body, i) for i in sorted(set(at)))
    read = Text(body, b"")
    pieces: list[bytes] = []
    done = 0
    length = 0
    for m in found:
        # After an escaped backslash (`\\\\u…`) it is no escape; a pair's second half is its own.
        if m is None or m.start() < done or _escaped(body, m.start()):
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
        return Text(body, body)
    pieces.append(body[done:])
    return Text(body, b"".join(pieces), read.text_at, read.text_size, read.body_at, read.body_size)


def _escaped(body: bytes, at: int) -> bool:
    """Whether the backslash at `at` is itself escaped: after an odd number of backslashes."""
    n = 0
    while at - n - 1 >= 0 and body[at - n - 1] == _BACKSLASH:
        n += 1
    return n % 2 == 1


def _character(escape: bytes) -> bytes:
    """What an escape stands for, as UTF-8 (a lone surrogate as `surrogatepass` writes it)."""
    if escape == b"\\/":
        return b"/"
    if len(escape) == 12:
        high, low = int(escape[2:6], 16), int(escape[8:12], 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)).encode()
    return chr(int(escape[2:6], 16)).encode("utf-8", "surrogatepass")


PLACEHOLDER = "[REDACTED:{kind}]"


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
