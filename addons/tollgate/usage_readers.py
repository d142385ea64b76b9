"""What token usage an answer reports: read whole, or from a stream as it passes, chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .call import Usage
from .json_codec import parse_json
from .streams import SSEFramer, parse_sse_block, split_events


def add_totals(usage: Usage) -> Usage:
    if usage.total_tokens is None and usage.input_tokens is not None and usage.output_tokens is not None:
        usage.total_tokens = usage.input_tokens + usage.output_tokens
    return usage


class UsageReader:
    """Reads token usage from a response body as it passes, chunk by chunk."""

    error: str | None = None

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self) -> Usage:
        raise NotImplementedError


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
    so the reader only frames the stream and keeps a window of its latest complete events; nothing
    is searched while the stream flows (what a large stream costs). `first` sees every region as
    it passes, for what only a stream's start holds. At the end, the window's events that hold one
    of the `wanted` byte strings go to `keep`, and `read` parses what it kept."""

    WINDOW = 64 * 1024
    wanted: ClassVar[tuple[bytes, ...]]

    def __init__(self) -> None:
        self._framer = SSEFramer()
        self._window = b""

    def feed(self, chunk: bytes) -> None:
        region = self._framer.feed_region(chunk)
        if region:
            self.first(region)
            window = self._window + region
            if len(window) > self.WINDOW:
                # Cut at an event boundary, and never into the last event: the one that
                # reports usage may be large (a Responses API `response.completed` repeats all).
                last = window.rfind(b"\n\n", 0, len(window) - 2) + 2
                window = window[min(window.find(b"\n\n", len(window) - self.WINDOW) + 2, last) :]
            self._window = window
        self.error = self.error or self._framer.error

    def first(self, region: bytes) -> None:
        pass

    def keep(self, block: bytes) -> None:
        raise NotImplementedError

    def read(self) -> Usage:
        raise NotImplementedError

    def result(self) -> Usage:
        for block in split_events(self._window):
            if any(w in block for w in self.wanted):
                self.keep(block)
        return self.read()

    @staticmethod
    def data(block: bytes | None) -> dict[str, Any] | None:
        if block is None:
            return None
        event = parse_sse_block(block)
        return parse_json(event.data.encode()) if event else None


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"
