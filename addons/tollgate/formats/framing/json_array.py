"""A JSON array streamed element by element (the Gemini API's `alt=json` stream): framing its
elements from any pieces, and finding whole elements backward from a tail."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tollgate.formats.framing import bounds

_JSON_SPECIAL = re.compile(rb'[\[\]{}"\\]')


class JSONArrayFramer:
    """A JSON array written element by element (Gemini's streamGenerateContent without alt=sse):
    returns each top-level element's bytes once it is complete. String-aware: brackets inside
    strings do not count."""

    def __init__(self) -> None:
        self._element = bytearray()
        self._depth = 0  # 0: before the array; 1: inside it, between elements
        self._in_string = False
        self._escaped = False
        self._done = False
        self._backslash = -1  # where the next backslash of the chunk being read is (-1: none after)
        self.error: str | None = None

    @classmethod
    def between_elements(cls) -> JSONArrayFramer:
        """A framer that starts inside the array, between two elements (e.g. at a separator)."""
        framer = cls()
        framer._depth = 1
        return framer

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.error is not None or self._done or not chunk:
            return []
        elements: list[bytes] = []
        view = memoryview(chunk)
        self._backslash = chunk.find(b"\\")
        position = 0
        while position < len(chunk) and self.error is None and not self._done:
            if self._in_string:
                position = self._scan_string(chunk, view, position)
                continue
            m = _JSON_SPECIAL.search(chunk, position)
            end = m.start() if m else len(chunk)
            if self._depth >= 2:
                self._element += view[position:end]
            elif chunk[position:end].strip(b" \t\r\n,"):
                self.error = "unexpected bytes between JSON array elements"
                break
            if m is None:
                break
            char = chunk[m.start() : m.start() + 1]
            position = m.end()
            if char == b'"':
                if self._depth < 2:
                    self.error = "a string outside an element of the JSON array"
                    break
                self._element += char
                self._in_string = True
            elif char in (b"{", b"["):
                if self._depth == 0 and char != b"[":
                    self.error = "the stream is not a JSON array"
                    break
                self._depth += 1
                if self._depth >= 2:
                    self._element += char
            elif char in (b"}", b"]"):
                if self._depth == 1 and char == b"]":
                    self._done = True
                    self._depth = 0
                    break
                if self._depth < 2:
                    self.error = "unbalanced brackets in the JSON array"
                    break
                self._element += char
                self._depth -= 1
                if self._depth == 1:
                    elements.append(bytes(self._element))
                    self._element.clear()
            else:  # a backslash outside a string
                self.error = "a backslash outside a JSON string"
        if len(self._element) > bounds.MAX_FRAME:
            self.error = "JSON array element larger than 16 MiB"
            self._element.clear()
        return elements

    def _scan_string(self, chunk: bytes, view: memoryview, position: int) -> int:
        """Copy string bytes up to and including the closing quote; return where scanning goes on.
        The chunk's next backslash is remembered: searched again only once passed, rather than for
        every string (which read a chunk without backslashes to its end once per string)."""
        while position < len(chunk):
            if self._escaped:
                self._escaped = False
                self._element += view[position : position + 1]
                position += 1
                continue
            if 0 <= self._backslash < position:
                self._backslash = chunk.find(b"\\", position)
            quote = chunk.find(b'"', position)
            backslash = self._backslash
            if backslash != -1 and (quote == -1 or backslash < quote):
                self._element += view[position : backslash + 1]
                self._escaped = True
                position = backslash + 1
                continue
            if quote == -1:
                self._element += view[position:]
                return len(chunk)
            self._element += view[position : quote + 1]
            self._in_string = False
            return quote + 1
        return position


_JSON_STRUCTURE = (b'"', b"{", b"}", b"[", b"]")
_WHITESPACE = b" \t\r\n"
_BETWEEN_ELEMENTS = b" \t\r\n,"
_BACKSLASH = 0x5C
# A separator line "\r\n,\r\n" between Gemini's indented elements; tried from a piece's end.
_LINES_TRIED = 64
_SEPARATOR_SEARCHED = 1024


def array_separator(piece: bytes) -> int:
    """Where the last element separator written as Gemini writes it, a line that starts with a
    comma, is in `piece` (the comma), or -1: a place where a new element begins. A raw line end
    is never inside a JSON string, and Gemini indents its elements, so that only the array's own
    separators start a line with a comma; other arrays may have none (their tail is then kept
    whole up to a limit).

    Small elements' separators are near the piece's last line end, found by one search of the KiB
    before it for the two bytes (some forty times slower than a search for one, so only there);
    else the lines are tried from the end, one memrchr each."""
    last = piece.rfind(b"\n")
    if last < 0:
        return -1
    near_end = piece.rfind(b"\n,", max(0, last - _SEPARATOR_SEARCHED), last + 2)
    if near_end >= 0:
        return near_end + 1
    end = len(piece)
    for _ in range(_LINES_TRIED):
        i = piece.rfind(b"\n", 0, end)
        if i < 0:
            return -1
        if piece[i + 1 : i + 2] == b",":
            return i + 1
        end = i
    return -1


def array_elements_backward(data: bytes) -> Iterator[bytes]:
    """The elements of the JSON array that `data` ends (its `]` last but for whitespace), newest
    first, as far back as `data` holds whole ones; nothing if `data` does not end an array.

    Exact for a valid array whatever came before `data`: read backward from outside any string,
    each quote met closes a string, which opens at the first quote before it not escaped (after
    an even run of backslashes); brackets outside strings are counted."""
    end = len(data.rstrip(_WHITESPACE))
    if end == 0 or data[end - 1] != ord("]"):
        return
    position = end - 1  # the array's "]"
    while True:
        last = position - 1
        while last >= 0 and data[last] in _BETWEEN_ELEMENTS:
            last -= 1
        if last < 0 or data[last] not in b"}]":
            return  # the array's "[" (or what no element ends with)
        start = _opening(data, last)
        if start < 0:
            return  # the element begins before `data`
        yield data[start : last + 1]
        position = start


def _opening(data: bytes, close: int) -> int:
    """Where the object or array that ends at `close` opens, read backward; -1 if before `data`."""
    nearest = {c: data.rfind(c, 0, close + 1) for c in _JSON_STRUCTURE}
    depth = 0
    while True:
        char, i = max(nearest.items(), key=lambda item: item[1])
        if i < 0:
            return -1
        if char == b'"':
            opening = _string_opening(data, i)
            if opening < 0:
                return -1
            for c, at in nearest.items():
                if at >= opening:
                    nearest[c] = data.rfind(c, 0, opening)
            continue
        depth += 1 if char in (b"}", b"]") else -1
        if depth == 0:
            return i
        nearest[char] = data.rfind(char, 0, i)


def _string_opening(data: bytes, closing: int) -> int:
    """The quote that opens the string `closing` closes: the first one before it after an even run
    of backslashes; -1 if `data` does not tell (it begins within the string or its run)."""
    quote = closing
    while True:
        quote = data.rfind(b'"', 0, quote)
        run = 0
        while quote - run > 0 and data[quote - run - 1] == _BACKSLASH:
            run += 1
        if quote - run <= 0:
            return -1
        if run % 2 == 0:
            return quote
