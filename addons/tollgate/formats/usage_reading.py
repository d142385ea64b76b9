"""What token usage an answer reports: read whole, or from a stream as it passes, chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from tollgate.formats import framing
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.framing import SSEFramer, StreamTail, parse_sse_block, raw_event_spans, sse_event_start
from tollgate.formats.usage import Usage


def add_totals(usage: Usage) -> Usage:
    """The total as reported; input plus output where the provider reported none."""
    if usage.total_tokens is None:
        usage.total_tokens = usage.counted_total
    return usage


class UsageReader:
    """Reads token usage from a response body as it passes, chunk by chunk."""

    error: str | None = None

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self) -> Usage:
        raise NotImplementedError


class Counted(UsageReader):
    """A stream's usage reader whose result is counted as its provider bills it
    (`Cost.billed_usage`)."""

    def __init__(self, reader: UsageReader, count: Callable[[Usage], Usage]) -> None:
        self._reader, self._count = reader, count

    @property
    def error(self) -> str | None:
        return self._reader.error

    @error.setter
    def error(self, value: str | None) -> None:
        self._reader.error = value

    def feed(self, chunk: bytes) -> None:
        self._reader.feed(chunk)

    def result(self) -> Usage:
        return self._count(self._reader.result())


class NoUsage(UsageReader):
    """An answer that reports no usage of its own: one to a request other than a POST, which
    fetches what was made before (a stored response, a cache, a batch) and may hold the usage
    counted when it was made, not that of this call."""

    def feed(self, chunk: bytes) -> None:
        pass

    def result(self) -> Usage:
        return Usage()


class WholeBodyReader(UsageReader):
    """A non-streamed answer: keeps a bounded copy and parses it once it is complete."""

    LIMIT = 16 * 1024 * 1024

    def __init__(self, parse: Callable[[bytes | None], Usage]) -> None:
        self._parse = parse
        # The chunks as they came, joined at the end: most answers come in one, which is not copied.
        self._chunks: list[bytes] | None = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._chunks is None:
            return
        self._size += len(chunk)
        if self._size > self.LIMIT:
            self._chunks = None
            self.error = "answer larger than 16 MiB, not read for usage"
        else:
            self._chunks.append(chunk)

    def result(self) -> Usage:
        return self._parse(b"".join(self._chunks) if self._chunks is not None else None)


class SSEReader(UsageReader):
    """Server-sent events. Providers report usage and the finish reason in a stream's last events,
    so the reader frames nothing while the stream flows (what a large stream costs): it keeps the
    stream's tail, from an event's start (`StreamTail`: the latest 64 KiB or more, and the last
    three events whole, whatever their size), finding in each piece only where its last event
    begins. At the end, the tail's events that hold one of the `wanted` byte strings go to
    `keep`, newest first, until `has_all` says the reader has what it reads (an event older than
    the ones it reads is not searched: with large events, most of the tail), and `read` parses
    what it kept. A reader that needs what only a stream's start holds
    says so (`reads_start`): `first` sees the complete events as they pass until it returns True."""

    WINDOW = 64 * 1024
    wanted: ClassVar[tuple[bytes, ...]]
    reads_start = False

    def __init__(self) -> None:
        self._tail = StreamTail(self.WINDOW)
        self._last_byte = -1  # the stream's byte before the next piece
        self._start: SSEFramer | None = SSEFramer() if self.reads_start else None

    def feed(self, chunk: bytes) -> None:
        if self.error is not None or not chunk:
            return
        if self._start is not None:
            region = self._start.feed_region(chunk)
            if (region and self.first(region)) or self._start.error is not None:
                self._start = None
        self._tail.add(chunk, sse_event_start(chunk, self._last_byte))
        self._last_byte = chunk[-1]
        if self._tail.since_last_start() > framing.bounds.MAX_FRAME:
            self.error = "server-sent event larger than 16 MiB"

    def first(self, region: bytes) -> bool:
        """Reads what it needs from the complete events of `region`; True once it has it."""
        return True

    def keep(self, block: bytes) -> None:
        """Reads what it needs from an event, given newest first: the first one of a kind counts."""
        raise NotImplementedError

    def has_all(self) -> bool:
        raise NotImplementedError

    def read(self) -> Usage:
        raise NotImplementedError

    def result(self) -> Usage:
        data = self._tail.data()
        for start, end in reversed(raw_event_spans(data)):
            if any(data.find(w, start, end) >= 0 for w in self.wanted):
                block = data[start:end]
                # LF line ends, as SSEFramer gives them: only the few events kept are rewritten.
                self.keep(block.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in block else block)
                if self.has_all():
                    break
        return self.read()

    @staticmethod
    def data(block: bytes | None) -> dict[str, Any] | None:
        if block is None:
            return None
        event = parse_sse_block(block)
        return parse_json(event.data.encode()) if event else None


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"
