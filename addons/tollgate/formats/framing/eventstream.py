"""AWS event stream frames (Bedrock's streams): framing them from any pieces, writing one, and
finding a frame's start in a window by its prelude and CRCs."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EventStreamFrame:
    headers: dict[str, object]  # empty until read, from a framer that does not read them
    payload: bytes
    raw_headers: bytes = field(default=b"", repr=False, compare=False)


_PRELUDE = struct.Struct(">III")  # total length, headers length, the prelude's CRC-32
_PRELUDE_LENGTH = 12
PRELUDE_SPAN = _PRELUDE_LENGTH - 1  # bytes of a prelude that may be in the pieces before its end
_MESSAGE_OVERHEAD = 16  # the prelude and the message's CRC-32
MAX_EVENT_HEADERS = 128 * 1024  # botocore's limits
MAX_EVENT_PAYLOAD = 24 * 1024 * 1024


def event_frame(headers: Mapping[str, str] | bytes, payload: bytes) -> bytes:
    """One AWS event stream message: prelude (total length, headers length, their CRC-32), headers
    (strings, type 7; or as a frame read had them, `EventStreamFrame.raw_headers`), payload, and
    the CRC-32 of all before it; big-endian throughout. A frame read (`EventStreamFramer`) comes
    out byte for byte as it came: its prelude and CRCs follow from its headers and payload."""
    if isinstance(headers, bytes):
        encoded = headers
    else:
        written = bytearray()
        for name, value in headers.items():
            raw_name, raw_value = name.encode(), value.encode()
            written += bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
        encoded = bytes(written)
    prelude = struct.pack(">II", _MESSAGE_OVERHEAD + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


class EventStreamFramer:
    """AWS event stream (application/vnd.amazon.eventstream): binary frames with CRCs, checked as
    botocore's parser checks them (its own header parser reads the headers). botocore's buffer
    copies what it holds for every frame it takes out, and again for every piece added: a frame
    is read here where it lies, and a large one that spans pieces is joined once, when complete.

    With `read_headers=False` the frames' headers are left unread, to be read for those that
    count (`with_headers`): botocore's parser takes some 20 µs a frame, and a stream's tail of
    small frames holds hundreds."""

    def __init__(self, read_headers: bool = True) -> None:
        from botocore.eventstream import (  # on first need: see sigv4.load_botocore
            ChecksumMismatch,
            EventStreamHeaderParser,
            InvalidHeadersLength,
            InvalidPayloadLength,
            ParserError,
        )

        self._headers = EventStreamHeaderParser()
        self._checksum_mismatch = ChecksumMismatch
        self._invalid_headers = InvalidHeadersLength
        self._invalid_payload = InvalidPayloadLength
        self._errors = (ParserError, KeyError, ValueError, IndexError, struct.error)  # ValueError: bad UTF-8 too
        self._read_headers = read_headers
        self._held: list[bytes] = []  # the pieces of the frame not yet complete
        self._held_size = 0
        self._needed = _PRELUDE_LENGTH  # bytes the held frame needs before it can be read further
        self.error: str | None = None

    @property
    def held(self) -> int:
        """How many bytes of a frame not yet whole are held."""
        return self._held_size

    def feed(self, chunk: bytes) -> list[EventStreamFrame]:
        if self.error is not None or not chunk:
            return []
        self._held.append(chunk)
        self._held_size += len(chunk)
        if self._held_size < self._needed:
            return []
        data = b"".join(self._held) if len(self._held) > 1 else chunk
        frames: list[EventStreamFrame] = []
        position = total = 0
        try:
            while len(data) - position >= _PRELUDE_LENGTH:
                total = self._frame_length(data, position)
                if len(data) - position < total:
                    break
                frames.append(self._frame(data, position, total))
                position += total
        except self._errors as e:
            self.error = f"broken AWS event stream: {type(e).__name__}"
            self._held, self._held_size = [], 0
            return frames
        rest = data[position:] if position else data
        self._held = [rest] if rest else []
        self._held_size = len(rest)
        self._needed = total if len(rest) >= _PRELUDE_LENGTH else _PRELUDE_LENGTH
        return frames

    def _frame_length(self, data: bytes, position: int) -> int:
        """The total length the frame at `position` declares, its prelude checked."""
        total, headers_length, crc = _PRELUDE.unpack_from(data, position)
        computed = zlib.crc32(memoryview(data)[position : position + 8])
        if computed != crc:
            raise self._checksum_mismatch(crc, computed)
        if headers_length > MAX_EVENT_HEADERS:
            raise self._invalid_headers(headers_length)
        if total - headers_length - _MESSAGE_OVERHEAD > MAX_EVENT_PAYLOAD:
            raise self._invalid_payload(total - headers_length - _MESSAGE_OVERHEAD)
        if total < _MESSAGE_OVERHEAD + headers_length:
            raise ValueError("a frame shorter than its headers")
        return total

    def _frame(self, data: bytes, position: int, total: int) -> EventStreamFrame:
        """The complete frame at `position`, its message CRC checked."""
        _, headers_length, prelude_crc = _PRELUDE.unpack_from(data, position)
        payload_end = position + total - 4
        (crc,) = struct.unpack_from(">I", data, payload_end)
        computed = zlib.crc32(memoryview(data)[position + 8 : payload_end], prelude_crc)
        if computed != crc:
            raise self._checksum_mismatch(crc, computed)
        headers_end = position + _PRELUDE_LENGTH + headers_length
        raw = data[position + _PRELUDE_LENGTH : headers_end]
        headers = dict(self._headers.parse(raw)) if self._read_headers else {}
        return EventStreamFrame(headers, data[headers_end:payload_end], raw)

    def with_headers(self, frame: EventStreamFrame) -> EventStreamFrame | None:
        """A frame with its headers read; None (and `error` said) if they cannot be."""
        try:
            return EventStreamFrame(dict(self._headers.parse(frame.raw_headers)), frame.payload, frame.raw_headers)
        except self._errors as e:
            self.error = f"broken AWS event stream: {type(e).__name__}"
            return None


# How many of a piece's zero bytes, from its end, are tried as a frame's start (see below).
_ZEROS_TRIED = 32
_MAX_HEADERS_LENGTH_SECOND_BYTE = MAX_EVENT_HEADERS >> 16
# How far back from a piece's end a frame with short headers is looked for in one search (a search
# for three bytes reads some 0.4 ns a byte, twenty times what a search for one byte takes).
_SHORT_FRAMES_SPAN = 4096


def eventstream_frame_start(data: bytes, start: int = 0, known: int = -1) -> int:
    """Where the last frame that begins in `data[start:]` and whose prelude `data` holds begins,
    or -1: a place where a reader can start again. `known`: where a frame is known to begin (the
    end of the last one found), tried first, only its prelude checked: in a stream of large frames
    it is the last.

    A frame begins with its total length, under 25 MiB, so with a zero byte, and its 12-byte
    prelude ends in the CRC-32 of its first 8 bytes; when `data` holds the whole frame its own
    CRC-32 is checked too. Zero bytes are rare elsewhere: a payload is JSON, which writes none, so
    that those tried are the frames' headers and CRCs, and a chance match of a CRC is 1 in 2^32."""
    end = len(data) - _PRELUDE_LENGTH + 1
    if end <= start:
        return -1
    if start <= known < end and _is_last_frame(data, known, end) and eventstream_prelude_at(data, known):
        return known
    i = _last_frame_with_short_headers(data, start, end)
    if i >= 0:
        return i
    for _ in range(_ZEROS_TRIED):
        i = data.rfind(b"\x00", start, end)
        if i < 0:
            return -1
        # A prelude's headers length is at most 128 KiB: its first two bytes are 0 and 0 to 2, a
        # test that spares the CRC for the zero bytes that are not a frame's start.
        if data[i + 4] == 0 and data[i + 5] <= _MAX_HEADERS_LENGTH_SECOND_BYTE and eventstream_frame_at(data, i):
            return i
        end = i
    return -1


def _last_frame_with_short_headers(data: bytes, start: int, end: int) -> int:
    """The last frame that begins in `data[start:end]`, found in one search when its headers are
    under 256 bytes, as Bedrock's are; -1 when not found so (`eventstream_frame_start` then tries
    each zero byte, nine or so for each of Bedrock's small frames).

    Such a prelude's headers length begins with three zero bytes, which no JSON payload holds: the
    last three in a row, in the bytes a last frame of that size would span, are tried."""
    three = data.rfind(b"\x00\x00\x00", max(start + 4, end - _SHORT_FRAMES_SPAN), end + 6)
    i = three - 4  # the headers length follows the 4-byte total length
    return i if three >= 0 and eventstream_frame_at(data, i) and _is_last_frame(data, i, end) else -1


def _is_last_frame(data: bytes, i: int, end: int) -> bool:
    """Whether no frame after the one at `i` has its prelude in `data` (`end`: past the last place
    where a whole prelude may begin)."""
    return i + eventstream_frame_length(data, i) >= end


def eventstream_frame_length(data: bytes, i: int) -> int:
    """The total length the prelude at `i` declares."""
    return int(_PRELUDE.unpack_from(data, i)[0])


def eventstream_first_frame(data: bytes) -> int:
    """Where the first frame that `data` holds whole begins (len(data) if none)."""
    i = data.find(b"\x00")
    while i >= 0:
        whole = len(data) - i >= _PRELUDE_LENGTH and i + _PRELUDE.unpack_from(data, i)[0] <= len(data)
        if whole and eventstream_frame_at(data, i):
            return i
        i = data.find(b"\x00", i + 1)
    return len(data)


def eventstream_frame_at(data: bytes, i: int) -> bool:
    """Whether a frame begins at `i`: its prelude's CRC-32 right, and its own when `data` holds it."""
    if not eventstream_prelude_at(data, i):
        return False
    total, _, crc = _PRELUDE.unpack_from(data, i)
    if i + total > len(data):
        return True
    (message_crc,) = struct.unpack_from(">I", data, i + total - 4)
    return zlib.crc32(memoryview(data)[i + 8 : i + total - 4], crc) == message_crc


def eventstream_prelude_at(data: bytes, i: int) -> bool:
    """Whether a frame's prelude is at `i`, whole, its CRC-32 right."""
    if len(data) - i < _PRELUDE_LENGTH:
        return False
    total, headers_length, crc = _PRELUDE.unpack_from(data, i)
    # Eight bytes: copied, they cost less than a memoryview would.
    return zlib.crc32(data[i : i + 8]) == crc and total >= _MESSAGE_OVERHEAD + headers_length
