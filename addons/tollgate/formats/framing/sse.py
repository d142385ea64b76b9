"""Server-sent events: framing them from any pieces, finding an event's bounds in a window, the
tail a stream keeps, and filtering events as they pass."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tollgate.formats.framing import bounds


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
        if self._held_size > bounds.MAX_FRAME:
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
