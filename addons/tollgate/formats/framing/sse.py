"""Server-sent events: framing them from any pieces, finding an event's bounds in a window, the
tail a stream keeps, and filtering events as they pass."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tollgate.formats.framing import bounds
from tollgate.formats.framing.bom import LeadingBom


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
    a reader can test them cheaply before parsing the few it needs with `parse_sse_block`. A UTF-8
    byte order mark the stream begins with is read past (`bom.py`), as the standard says.

    An event that spans many pieces (a large one) is held as those pieces and joined once it is
    complete: each piece is searched once, for the last blank line it ends."""

    def __init__(self) -> None:
        self._held: list[bytes] = []  # the LF-normalised pieces of the event not yet complete
        self._held_size = 0
        self._pending_cr = False
        self._bom: LeadingBom | None = LeadingBom()  # until the stream's first bytes are past
        self.error: str | None = None

    @property
    def held_size(self) -> int:
        """The bytes of the event begun and not yet complete."""
        return self._held_size

    def feed(self, chunk: bytes) -> list[bytes]:
        return split_events(self.feed_region(chunk))

    def feed_region(self, chunk: bytes) -> bytes:
        """The complete events this chunk finishes, as one LF-normalised region (b"" if none):
        readers test the region as a whole and split it only when it holds what they want."""
        if self.error is not None or not chunk:
            return b""
        if self._bom is not None:
            chunk = self._bom.feed(chunk)
            if not self._bom.done:
                return b""
            self._bom = None
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


def _after_blank_line(data: bytes, start: int) -> int:
    """Just past the first LF LF at or after `start`, or -1. Line ends are found one memchr at a
    time: a search for the pair compares byte by byte where the stream has no LF."""
    i = data.find(b"\n", start)
    while i >= 0:
        if i + 1 < len(data) and data[i + 1] == _LF:
            return i + 2
        i = data.find(b"\n", i + 1)
    return -1


def _after_last_blank_line(data: bytes) -> int:
    """Where the last complete event of `data` ends, or 0: past its last LF LF, as a scan from the
    start pairs them (a run of three LFs is an event's end and an LF that begins the next)."""
    i = data.rfind(b"\n")
    while i > 0:
        if data[i - 1] == _LF:
            start = i - 1
            while start and data[start - 1] == _LF:
                start -= 1
            run = i + 1 - start
            return start + run - run % 2
        i = data.rfind(b"\n", 0, i - 1)
    return 0


def _events_of(region: bytes, lf_only: bool) -> Iterator[bytes]:
    """The events of `region`, which ends at a blank line, each with the blank line that ends it."""
    start = 0
    if lf_only:
        end = _after_blank_line(region, 0)
        while end >= 0:
            yield region[start:end]
            start = end
            end = _after_blank_line(region, start)
        return
    for m in _EVENT_END.finditer(region):
        yield region[start : m.end()]
        start = m.end()


class SSEEventFilter:
    """Forwards server-sent events byte for byte but as `edit` makes each complete event (its
    blank line included): b"" drops it. Only the one event still incomplete is held back; a
    trailing CR waits for the next piece (it may be half a CRLF).

    With a `needle` that every event `edit` changes holds, the complete events of a piece that
    lacks it go on at once, none judged (a stream not asked for usage has no usage member for
    the filter to take out); where a stream has extra blank lines, one before a dropped event may
    then go on without it (the same events reach the client).

    `edit_all`, when given, is tried first on the complete events of a piece together, where their
    lines end in LF alone: what it returns goes on as their edit, None has each judged by `edit`.
    It must return what `edit` on each of them would (it spares a stream's every event a call)."""

    def __init__(
        self,
        edit: Callable[[bytes], bytes],
        needle: bytes | None = None,
        edit_all: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        self._edit = edit
        self._edit_all = edit_all
        self._needle = needle
        self._held: list[bytes] = []  # the pieces of the event not yet complete
        self._before = b""  # the stream's last two bytes so far
        self._judging = False  # what is held has the needle: the next pieces are judged too

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        needle = self._needle
        # A piece with the needle is judged at once: its events need it, wherever they end.
        judged = needle is None or self._judging or chunk.find(needle) >= 0  # (find: faster than `in`)
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
        if self._needle is not None and region.find(self._needle) >= 0:
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
        lf_only = data.find(b"\r") < 0  # most streams: their events found one memchr at a time
        if lf_only:
            end = _after_last_blank_line(data)
        else:
            scan_to = len(data) - 1 if data.endswith(b"\r") else len(data)
            end = 0
            for end_match in _EVENT_END.finditer(data, 0, scan_to):
                end = end_match.end()
        region, rest = data[:end], data[end:]
        self._held = [rest] if rest else []
        self._judging = self._needle is not None and rest.find(self._needle) >= 0
        if not region:
            return b""
        if lf_only and self._edit_all is not None:
            edited = self._edit_all(region)
            if edited is not None:
                return edited
        return b"".join(map(self._edit, _events_of(region, lf_only)))

    def flush(self) -> bytes:
        held, self._held = b"".join(self._held), []
        return held
