"""Incremental framers for the stream formats LLM APIs answer in. They take the bytes in whatever
pieces the network delivers, return whole frames, and never raise: a corrupt stream sets `error`
and stops framing (the bytes themselves are forwarded by the caller regardless)."""

from __future__ import annotations

import re
import struct
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    for line in _lines(block):
        if not line or line.startswith(b":"):
            continue
        key, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if key == b"data":
            data.append(value)
        elif key == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(name, b"\n".join(data).decode("utf-8", "replace"))


def _line_ends(data: bytes) -> Iterator[tuple[int, int]]:
    """Where each line end of raw server-sent events begins and ends, in order (CR LF is one),
    found one memchr at a time."""
    lf, cr = data.find(b"\n"), data.find(b"\r")
    while lf >= 0 or cr >= 0:
        if cr >= 0 and (lf < 0 or cr < lf):
            if lf == cr + 1:
                yield cr, cr + 2
                lf = data.find(b"\n", cr + 2)
            else:
                yield cr, cr + 1
            cr = data.find(b"\r", cr + 1)
        else:
            yield lf, lf + 1
            lf = data.find(b"\n", lf + 1)


def raw_event_spans(data: bytes) -> list[tuple[int, int]]:
    """Where each complete event of raw server-sent events (any line ends) begins and ends in
    `data`, without the line ends around it but with its own inside: the events `split_events`
    gives for the LF-normalised data, but for the line ends inside each. An event not ended by a
    blank line is left out. Spans, not copies: a reader copies only the few events it reads."""
    spans = []
    start = 0  # where the event being read begins
    line_end = (-1, -1)  # the last line end
    for begin, end in _line_ends(data):
        if begin == start:  # an empty line where an event would begin: nothing to dispatch
            start = end
        elif begin == line_end[1]:  # a line end right after another: a blank line ends the event
            spans.append((start, line_end[0]))
            start = end
        line_end = (begin, end)
    return spans


def _lines(block: bytes) -> Iterator[bytes]:
    """The lines of an LF-joined block, found one memchr at a time (a data line may be megabytes)."""
    start = 0
    end = block.find(b"\n")
    while end >= 0:
        yield block[start:end]
        start = end + 1
        end = block.find(b"\n", start)
    yield block[start:]


class SSEFramer:
    """Server-sent events: splits the stream into raw event blocks (per the HTML spec: lines end
    in CRLF, LF or CR; a blank line ends an event). Blocks are returned with LF line ends so that
    a reader can test them cheaply before parsing the few it needs with `parse_sse_block`.

    An event that spans many pieces (a large one) is held as those pieces and joined once it is
    complete: each piece is searched once, for the last blank line it ends."""

    def __init__(self) -> None:
        self._held: list[bytes] = []  # the LF-normalised pieces of the event not yet complete
        self._held_size = 0
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
        end = lf_event_end(chunk)
        if end < 0 and chunk.startswith(b"\n") and self._held and self._held[-1].endswith(b"\n"):
            end = 1  # the blank line's two line ends came in two pieces
        if end < 0:
            if chunk:
                self._held.append(chunk)
                self._held_size += len(chunk)
            region = b""
        else:
            region = b"".join([*self._held, chunk[:end]]) if self._held else chunk[:end]
            rest = chunk[end:]
            self._held = [rest] if rest else []
            self._held_size = len(rest)
        if self._held_size > MAX_FRAME:
            self.error = "server-sent event larger than 16 MiB"
            self._held, self._held_size = [], 0
        return region


_LF = 10
_CR = 13
# After this many line ends without a blank line, the rest of a piece is searched in one call.
_LINE_ENDS_TRIED = 16


def lf_event_end(data: bytes) -> int:
    """Just past the last blank line ("\\n\\n") in LF-only `data`, or -1 if it has none.

    Events end near the end of the data that holds them: the line ends are tried from the end, one
    memrchr each (two-byte patterns are searched byte by byte, some forty times slower)."""
    end = len(data)
    for _ in range(_LINE_ENDS_TRIED):
        i = data.rfind(b"\n", 0, end)
        if i <= 0:
            return -1
        if data[i - 1] == _LF:
            return i + 1
        end = i - 1
    i = data.rfind(b"\n\n", 0, end + 1)
    return i + 2 if i >= 0 else -1


def sse_event_end(data: bytes) -> int:
    """Just past the last blank line in raw server-sent events (any line ends: CRLF, LF or CR), or
    -1 if it has none within `data`.

    A blank line is two line ends in a row; in raw bytes it always holds LF LF, LF CR or CR CR (CR LF
    is one line end), and each of those is one: so the last of them ends the last event. It ends
    with its second line end, which is CR LF when the CR is followed by an LF."""
    end = len(data)
    for _ in range(_LINE_ENDS_TRIED):
        lf = data.rfind(b"\n", 0, end)
        # Only after the last LF: most streams have no CR, for which a search would read the whole piece.
        i = max(lf, data.rfind(b"\r", max(lf, 0), end))
        if i <= 0:
            return -1
        if _is_blank_line(data[i - 1], data[i]):
            return _after_line_end(data, i)
        end = i
    pairs = (data.rfind(pair, 0, end + 1) for pair in (b"\n\n", b"\n\r", b"\r\r"))
    i = max(pairs)
    return _after_line_end(data, i + 1) if i >= 0 else -1


def _is_blank_line(first: int, second: int) -> bool:
    """Whether these two bytes are a line end followed by the start of another (not CR LF)."""
    return first in (_LF, _CR) and second in (_LF, _CR) and not (first == _CR and second == _LF)


def _after_line_end(data: bytes, i: int) -> int:
    """Just past the line end that starts at `i`."""
    return i + 2 if data[i] == _CR and data[i + 1 : i + 2] == b"\n" else i + 1


def sse_event_start(piece: bytes, before: int) -> int | None:
    """Where the last server-sent event that begins in `piece` begins (just past the last blank
    line that ends in it), or None. `before`: the stream's byte before `piece`, -1 at its start (a
    blank line's two line ends may come in two pieces)."""
    end = sse_event_end(piece)
    if end < 0 and before >= 0 and piece and _is_blank_line(before, piece[0]):
        end = _after_line_end(piece, 0)
    return end if end >= 0 else None


class StreamTail:
    """The latest bytes of a stream, kept as the pieces that came (nothing is copied while the
    stream flows), from the start of an event: far enough back to hold the last `window` bytes and
    the last complete events, however large. What reads usage from a stream's last events keeps
    this instead of framing every event as it passes, and frames the tail once, at the end.

    Its owner says, for each piece, where the last event that begins in it begins: every start is
    a place to cut at. The tail is cut at the latest start that leaves `window` bytes after it and
    is not one of the last LAST_EVENTS starts: the last may begin an event still incomplete, and
    the complete events before it are kept whole (a stream's usage and finish reason come in its
    last three events at most, whatever their size: chat's finish, usage and [DONE], Bedrock's
    messageStop and metadata). With a `limit`, no more than that is kept, wherever the cut then
    falls (`cut_at_start` says whether it is at an event's start)."""

    LAST_EVENTS = 3

    def __init__(self, window: int, limit: int | None = None) -> None:
        self.window = window
        self.limit = limit
        self._pieces: deque[bytes] = deque()
        self._first = 0  # where in the stream the first piece kept begins
        self._end = 0  # the stream's bytes so far
        self._starts: deque[int] = deque([0])  # events' starts in the stream, ascending
        self.cut = 0  # where the bytes kept begin in the stream (0: nothing was dropped)
        self.cut_at_start = True

    def add(self, piece: bytes, start: int | None) -> None:
        """`start`: where in `piece` the last event that begins in it begins (negative: in the
        pieces before), None if none does."""
        if not piece:
            return
        starts = self._starts
        if start is not None and self._end + start > starts[-1]:
            starts.append(self._end + start)
        self._pieces.append(piece)
        self._end += len(piece)
        while len(starts) > self.LAST_EVENTS + 1 and self._end - starts[1] >= self.window:
            starts.popleft()
        if starts[0] > self.cut:
            self.cut, self.cut_at_start = starts[0], True
        if self.limit is not None and self._end - self.cut > self.limit:
            self.cut, self.cut_at_start = self._end - self.limit, False
            while len(starts) > 1 and starts[0] < self.cut:
                starts.popleft()
        while len(self._pieces) > 1 and self._first + len(self._pieces[0]) <= self.cut:
            self._first += len(self._pieces.popleft())

    @property
    def end(self) -> int:
        """The stream's bytes so far."""
        return self._end

    def since_last_start(self) -> int:
        """The bytes of the event still incomplete (or of the last one), so far."""
        return self._end - self._starts[-1]

    def data(self) -> bytes:
        """The bytes kept, from the cut to the end (joined: once, when the stream ends)."""
        pieces: list[bytes | memoryview] = list(self._pieces)
        if self.cut > self._first:  # from the cut, in the one copy the join makes
            pieces[0] = memoryview(pieces[0])[self.cut - self._first :]
        return b"".join(pieces)


def split_events(region: bytes) -> list[bytes]:
    """The events of an LF-normalised region: what lies between blank lines, without line ends
    around it. Line ends are found one memchr at a time (bytes.split compares byte by byte)."""
    events = []
    size = len(region)
    start = 0
    while start < size and region[start] == _LF:
        start += 1
    i = region.find(b"\n", start)
    while i >= 0:
        if i + 1 < size and region[i + 1] == _LF:  # a blank line ends the event
            events.append(region[start:i])
            start = i + 2
            while start < size and region[start] == _LF:
                start += 1
            i = region.find(b"\n", start)
        else:
            i = region.find(b"\n", i + 1)
    if start < size:
        last = region[start:].rstrip(b"\n")
        if last:
            events.append(last)
    return events


_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


class SSEEventFilter:
    """Forwards server-sent events byte for byte but for those `drop` rejects. Only the one event
    still incomplete is held back; a trailing CR waits for the next piece (it may be half a CRLF).

    With a `needle` that every event `drop` rejects holds, the complete events of a piece that
    lacks it go on at once, none judged (a stream's events, but for one at its end, lack the usage
    that the filter drops); where a stream has extra blank lines, one before a dropped event may
    then go on without it (the same events reach the client)."""

    def __init__(self, drop: Callable[[bytes], bool], needle: bytes | None = None) -> None:
        self._drop = drop
        self._needle = needle
        self._held: list[bytes] = []  # the pieces of the event not yet complete
        self._before = b""  # the stream's last two bytes so far
        self._judging = False  # what is held has the needle: the next pieces are judged too

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        judged = self._needle is None or self._judging
        out = self._judged(b"".join([*self._held, chunk])) if judged else self._unless_needed(chunk)
        self._before = (self._before + chunk[-2:])[-2:]
        return out

    def _unless_needed(self, chunk: bytes) -> bytes:
        """What `chunk` completes goes on whole if it lacks the needle; else its events are judged."""
        end = self._event_end(chunk)
        if end is None:
            self._held.append(chunk)
            return b""
        region = b"".join([*self._held, chunk[:end]]) if self._held else chunk[:end]
        if self._needle is not None and self._needle in region:
            return self._judged(region + chunk[end:])
        if end == len(chunk) and chunk.endswith(b"\r"):
            self._held.append(chunk)  # complete but for an LF that may follow its CR
            return b""
        self._held = [chunk[end:]] if end < len(chunk) else []
        return region

    def _event_end(self, chunk: bytes) -> int | None:
        """Just past the last blank line that ends in `chunk`, or None."""
        end = sse_event_end(chunk)
        if end >= 0:
            return end
        before = self._before
        if len(before) == 2 and before[1] == _CR and _is_blank_line(before[0], _CR):
            return 1 if chunk[0] == _LF else 0  # a blank line held at its CR
        if before and _is_blank_line(before[-1], chunk[0]):
            return _after_line_end(chunk, 0)
        return None

    def _judged(self, data: bytes) -> bytes:
        """Every complete event of `data` judged; what follows the last one is held."""
        scan_to = len(data) - 1 if data.endswith(b"\r") else len(data)
        out = []
        start = 0
        for m in _EVENT_END.finditer(data, 0, scan_to):
            event = data[start : m.end()]
            if not self._drop(event):
                out.append(event)
            start = m.end()
        rest = data[start:]
        self._held = [rest] if rest else []
        self._judging = self._needle is not None and self._needle in rest
        return b"".join(out)

    def flush(self) -> bytes:
        held, self._held = b"".join(self._held), []
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
        if len(self._element) > MAX_FRAME:
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


class Undecodable(ValueError):
    """Encoded bytes that do not decode as their Content-Encoding says."""


class DecodedTooLarge(Undecodable):
    """Encoded bytes that decode to more than the limit set."""


def _is_zlib_header(head: bytes) -> bool:
    """Whether two bytes begin a zlib stream (RFC 1950: method 8, a header that is a multiple of 31)."""
    return head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


class Decompressor:
    """Undoes a Content-Encoding piece by piece: gzip (several members one after another, as the
    format allows), deflate (zlib-wrapped as HTTP says, or raw as some servers send it), br and
    zstd (several frames). Anything else, bytes that do not decode, or bytes after a deflate or
    brotli stream's end, are `Undecodable`.

    With a `limit`, no call decodes to more than that: a few KiB of gzip can decode to megabytes
    and of brotli or zstd to gigabytes, so that a body is never decoded past what a reader takes."""

    def __init__(self, encoding: str, limit: int | None = None) -> None:
        encoding = encoding.strip().lower()
        self.limit = limit
        self._object: Any = None  # the decompression object of the member being read
        self._new: Callable[[], Any] | None = None  # one for the next member, where another may follow
        self._decode: Callable[[Any, bytes, int], bytes] = _zlib_decode  # (object, data, most out or -1)
        self._errors: tuple[type[Exception], ...] = (zlib.error,)
        self._head = b""  # deflate's first byte, until the second tells whether it is zlib-wrapped
        if encoding in ("gzip", "x-gzip"):
            self._new = lambda: zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "br":
            import brotli  # a mitmproxy dependency

            self._object = brotli.Decompressor()
            self._decode = _brotli_decode
            self._errors = (brotli.error,)
        elif encoding == "zstd":
            if sys.version_info >= (3, 14):
                from compression import zstd
            else:
                from backports import zstd  # a mitmproxy dependency before Python 3.14

            self._new = zstd.ZstdDecompressor
            self._decode = _zstd_decode
            self._errors = (zstd.ZstdError,)
        elif encoding != "deflate":
            raise Undecodable(f"cannot read a {encoding}-encoded body")
        if self._new is not None:
            self._object = self._new()

    def feed(self, chunk: bytes) -> bytes:
        if self._object is None:  # deflate: whether it is zlib-wrapped is told by its first two bytes
            self._head += chunk
            if len(self._head) < 2:
                return b""
            chunk, self._head = self._head, b""
            self._object = zlib.decompressobj(zlib.MAX_WBITS if _is_zlib_header(chunk) else -zlib.MAX_WBITS)
        out = []
        size = 0
        try:
            while chunk:
                if self.finished:
                    if self._new is None:
                        raise Undecodable("bytes follow the end of the encoded body")
                    self._object = self._new()  # the next member
                decoded = self._decode(self._object, chunk, -1 if self.limit is None else self.limit - size + 1)
                size += len(decoded)
                if self.limit is not None and size > self.limit:
                    raise DecodedTooLarge(f"the body decodes to more than {_size(self.limit)} at once")
                out.append(decoded)
                chunk = getattr(self._object, "unused_data", b"")  # empty until the member ends
        except self._errors as e:
            raise Undecodable(f"the body does not decode: {e}") from None
        return b"".join(out)

    @property
    def finished(self) -> bool:
        """Whether the bytes so far end where an encoded member (or the whole stream) ends."""
        if self._object is None:
            return False
        is_finished = getattr(self._object, "is_finished", None)  # brotli's
        return bool(is_finished()) if is_finished is not None else bool(self._object.eof)


def decode_whole(body: bytes, encoding: str, limit: int) -> bytes:
    """A whole body with its Content-Encoding undone (`identity`: as it is); `Undecodable` if it
    cannot be exactly, or `DecodedTooLarge` past `limit` bytes."""
    if not body or encoding.strip().lower() == "identity":
        return body
    decoder = Decompressor(encoding, limit)
    decoded = decoder.feed(body)
    if not decoder.finished:
        raise Undecodable("the body ends before its encoded data does")
    return decoded


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"


def _zlib_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.decompress(data, max(most, 0))  # zlib's 0: no limit
    return decoded


def _brotli_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.process(data) if most < 0 else decoder.process(data, output_buffer_limit=most)
    return decoded


def _zstd_decode(decoder: Any, data: bytes, most: int) -> bytes:
    decoded: bytes = decoder.decompress(data, most)
    return decoded
