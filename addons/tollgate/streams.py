"""Incremental framers for the stream formats LLM APIs answer in. They take the bytes in whatever
pieces the network delivers, return whole frames, and never raise: a corrupt stream sets `error`
and stops framing (the bytes themselves are forwarded by the caller regardless)."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# An event (or array element) larger than this is a broken stream, not something to buffer.
MAX_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


def parse_sse_block(block: bytes) -> SSEEvent | None:
    """One event block (lines joined by "\\n", no blank line) → its name and data; None if it has no data."""
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(name, b"\n".join(data).decode("utf-8", "replace"))


class SSEFramer:
    """Server-sent events: splits the stream into raw event blocks (per the HTML spec: lines end
    in CRLF, LF or CR; a blank line ends an event). Blocks are returned with LF line ends so that
    a reader can test them cheaply before parsing the few it needs with `parse_sse_block`."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        return split_events(self.feed_region(chunk))

    def feed_region(self, chunk: bytes) -> bytes:
        """The complete events this chunk finishes, as one LF-normalised region (b"" if none):
        readers test the region as a whole and split it only when it holds what they want."""
        if self.error is not None or not chunk:
            return b""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk
        end = buffer.rfind(b"\n\n")
        if end == -1:
            self._buffer = buffer
            region = b""
        else:
            region, self._buffer = buffer[: end + 2], buffer[end + 2 :]
        if len(self._buffer) > MAX_FRAME:
            self.error = "server-sent event larger than 16 MiB"
            self._buffer = b""
        return region


def split_events(region: bytes) -> list[bytes]:
    return [b.strip(b"\n") for b in region.split(b"\n\n") if b.strip(b"\n")]


_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


class SSEEventFilter:
    """Forwards server-sent events byte for byte but for those `drop` rejects. Only the one event
    still incomplete is held back; a trailing CR waits for the next piece (it may be half a CRLF)."""

    def __init__(self, drop: Callable[[bytes], bool]) -> None:
        self._drop = drop
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        scan_to = len(data) - 1 if data.endswith(b"\r") else len(data)
        out = []
        start = 0
        for m in _EVENT_END.finditer(data, 0, scan_to):
            event = data[start : m.end()]
            if not self._drop(event):
                out.append(event)
            start = m.end()
        self._held = data[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


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
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.error is not None or self._done or not chunk:
            return []
        elements: list[bytes] = []
        position = 0
        if self._in_string:
            position = self._scan_string(chunk, 0)
        while position < len(chunk) and self.error is None and not self._done:
            if self._in_string:
                position = self._scan_string(chunk, position)
                continue
            m = _JSON_SPECIAL.search(chunk, position)
            end = m.start() if m else len(chunk)
            if self._depth >= 2:
                self._element += chunk[position:end]
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
        if len(self._element) > MAX_FRAME:
            self.error = "JSON array element larger than 16 MiB"
            self._element.clear()
        return elements

    def _scan_string(self, chunk: bytes, position: int) -> int:
        """Copy string bytes up to and including the closing quote; return where scanning goes on."""
        while position < len(chunk):
            if self._escaped:
                self._escaped = False
                self._element += chunk[position : position + 1]
                position += 1
                continue
            quote = chunk.find(b'"', position)
            backslash = chunk.find(b"\\", position)
            if backslash != -1 and (quote == -1 or backslash < quote):
                self._element += chunk[position : backslash + 1]
                self._escaped = True
                position = backslash + 1
                continue
            if quote == -1:
                self._element += chunk[position:]
                return len(chunk)
            self._element += chunk[position : quote + 1]
            self._in_string = False
            return quote + 1
        return position


@dataclass(frozen=True, slots=True)
class EventStreamFrame:
    headers: dict[str, object]
    payload: bytes


class EventStreamFramer:
    """AWS event stream (application/vnd.amazon.eventstream): binary frames with CRCs, framed by
    botocore's own parser."""

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError  # on first need: see sigv4.load_botocore

        self._buffer = EventStreamBuffer()
        self._errors = (ParserError, KeyError, ValueError, struct.error)  # ValueError: bad UTF-8 too
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[EventStreamFrame]:
        if self.error is not None or not chunk:
            return []
        self._buffer.add_data(chunk)
        frames: list[EventStreamFrame] = []
        try:
            frames.extend(EventStreamFrame(dict(m.headers), bytes(m.payload)) for m in self._buffer)
        except self._errors as e:
            self.error = f"broken AWS event stream: {type(e).__name__}"
        return frames


class Decompressor:
    """Undoes a Content-Encoding piece by piece, for reading only: the client gets the bytes as sent."""

    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self._new: Callable[[], Any]  # a decompression object: zlib's, brotli's or zstandard's
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = zlib.MAX_WBITS | (16 if "gzip" in encoding else 0)
            self._new = lambda: zlib.decompressobj(wbits)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            self._new = brotli.Decompressor
        elif encoding == "zstd":
            import zstandard  # a mitmproxy dependency

            self._new = lambda: zstandard.ZstdDecompressor().decompressobj()
        else:
            raise ValueError(f"cannot read a {encoding}-encoded body")
        self._object: Any = self._new()

    def feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            decompress = getattr(self._object, "decompress", None) or self._object.process
            out.append(decompress(chunk))
            # gzip and zstd allow several members (frames) one after another.
            chunk = getattr(self._object, "unused_data", b"") if getattr(self._object, "eof", False) else b""
            if chunk:
                self._object = self._new()
        return b"".join(out)
