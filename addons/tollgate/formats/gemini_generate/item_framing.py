"""A streamed Gemini answer cut into its items, each with the bytes around it as they came:
server-sent events (`alt=sse`) or one JSON array written item by item, told apart by the first
byte that is not white space (a byte order mark before it read past); an answer read whole
(`whole`) is framed at its end. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from tollgate.formats.framing import MAX_FRAME, JSONArrayFramer, LeadingBom, raw_event_spans, sse_event_end

Mode = Literal["sse", "array", "whole"]
# An item: what comes before it, its bytes, what comes after it (an event's blank line).
Framed = tuple[bytes, bytes, bytes]

_LINE_ENDS = b"\r\n"
_BETWEEN = re.compile(rb"[\[ \t\r\n,]*")  # what comes before an element of the array
_ARRAY_END = re.compile(rb"[ \t\r\n,]*\][ \t\r\n]*")


class _Unreadable(Exception):
    """The stream cannot be framed into items: it stops there."""


class ItemFramer:
    """A Gemini answer's bytes cut into items (`items` at each read, `last` and `trailer` at its
    end). `mode`: how the items come (None: not known yet); `unframed`: what was read cannot be
    framed (the stream stops there)."""

    def __init__(self, mode: Mode | None = None) -> None:
        self.mode: Mode | None = mode
        self.unframed = False
        self._raw = bytearray()  # what is read and not yet framed into items
        self._array: JSONArrayFramer | None = None
        self._bom = LeadingBom()
        self._array_ended = False

    def items(self, chunk: bytes) -> list[Framed]:
        """The items a read completes (up to what cannot be framed, `unframed` then set)."""
        items: list[Framed] = []
        if chunk:
            try:
                items.extend(self._framed(chunk))
            except _Unreadable:
                self.unframed = True
        return items

    def last(self) -> bytes | None:
        """At the answer's end, an event with no blank line after it (or an answer read whole),
        taken to be read as one; None: none."""
        if self.mode in ("sse", "whole") and self._raw.strip(_LINE_ENDS):
            rest, self._raw = bytes(self._raw), bytearray()
            return rest
        return None

    def trailer(self) -> bytes:
        """At the answer's end, what goes on after its last item: blank lines after the last event;
        the array's end (a JSON array element cut short is not sent)."""
        raw, self._raw = self._raw, bytearray()
        if self.mode != "array":
            return bytes(raw)
        if self._array_ended:
            return _ARRAY_END.match(raw).group()  # type: ignore[union-attr]  # nothing after it
        return b""

    def _framed(self, chunk: bytes) -> Iterator[Framed]:
        if self.mode == "whole":
            self._raw += chunk  # read at its end
            return
        if self.mode is None:
            chunk = self._bom.feed(chunk)  # a byte order mark before the first item: read past
            start = chunk.lstrip()
            if not start:
                self._raw += chunk
                return
            self.mode = "array" if start.startswith(b"[") else "sse"
            if self.mode == "array":
                self._array = JSONArrayFramer()
        if self.mode == "sse":
            yield from self._sse_events(chunk)
        else:
            yield from self._array_elements(chunk)

    def _sse_events(self, chunk: bytes) -> Iterator[Framed]:
        # An event's end is looked for in what this chunk adds alone (and the line ends before it
        # that a blank line may begin with): a large event is not searched again at every piece.
        start = max(0, len(self._raw) - 4)
        self._raw += chunk
        end = sse_event_end(bytes(self._raw[start:]))
        if end < 0:
            if len(self._raw) > MAX_FRAME:
                raise _Unreadable("a server-sent event larger than 16 MiB")
            return
        region = bytes(self._raw[: start + end])
        del self._raw[: start + end]
        spans = raw_event_spans(region)
        if not spans:
            yield region, b"", b""
            return
        bounds = [0, *(s for s, _ in spans[1:]), len(region)]
        for (s, e), a, b in zip(spans, bounds[:-1], bounds[1:], strict=True):
            yield region[a:s], region[s:e], region[e:b]

    def _array_elements(self, chunk: bytes) -> Iterator[Framed]:
        framer = self._array
        assert framer is not None
        self._raw += chunk
        if self._array_ended:
            return
        elements = framer.feed(chunk)
        if framer.error is not None:
            raise _Unreadable(framer.error)
        at = 0
        for element in elements:
            start = _BETWEEN.match(self._raw, at).end()  # type: ignore[union-attr]
            end = start + len(element)
            if self._raw[start:end] != element:
                raise _Unreadable("an element of the JSON array is not where it was read")
            yield bytes(self._raw[at:start]), element, b""
            at = end
        if at:
            del self._raw[:at]
        if _ARRAY_END.match(self._raw):
            self._array_ended = True
