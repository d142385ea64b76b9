"""Every upstream answer passes through unbuffered; usage is read from it on the way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from weakref import WeakKeyDictionary

from mitmproxy import http

from ..call import Call
from ..providers.base import UsageReader
from ..streams import Decompressor
from .shared import Shared, call_of, provider_of

logger = logging.getLogger(__name__)


class UsageTap:
    """mitmproxy's stream callable: returns every chunk as it came while a reader reads it.

    It never raises (an exception there drops the chunk) and never returns b"" mid-stream (on
    HTTP/1 chunked that ends the body): a reader that fails is dropped and its fault recorded."""

    def __init__(self, reader: UsageReader, decoder: Decompressor | None, on_end: Callable[[], None]) -> None:
        self.reader = reader
        self._decoder = decoder
        self._on_end = on_end
        self._reading = True

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            try:
                self._on_end()
            except Exception:
                logger.exception("Tollgate: recording stream usage failed")
            return chunk
        if self._reading:
            try:
                self.reader.feed(self._decoder.feed(chunk) if self._decoder else chunk)
            except Exception as e:
                self._reading = False
                self.reader.error = self.reader.error or f"usage reader failed: {type(e).__name__}: {e}"
        return chunk


class StreamTap:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._taps: WeakKeyDictionary[http.HTTPFlow, UsageTap] = WeakKeyDictionary()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None or call.answered_by_tollgate:
            return
        reader = provider_of(call).usage_reader(call.classification, flow.response.headers)
        decoder = None
        if encoding := flow.response.headers.get("content-encoding", "").strip():
            try:
                decoder = Decompressor(encoding)
            except (ValueError, ImportError) as e:
                reader.error = str(e)
        tap = UsageTap(reader, decoder, lambda: record_usage(call, tap))
        self._taps[flow] = tap
        # Streamed bodies are not stored in the flow either: a saved flow holds no completion text.
        flow.response.stream = tap

    def error(self, flow: http.HTTPFlow) -> None:
        """A stream cut short (client gone, upstream reset): the usage seen so far still counts."""
        tap = self._taps.pop(flow, None)
        call = call_of(flow)
        if tap is not None and call is not None:
            record_usage(call, tap)

    def response(self, flow: http.HTTPFlow) -> None:
        self._taps.pop(flow, None)


def record_usage(call: Call, tap: UsageTap) -> None:
    call.usage = tap.reader.result()
    if tap.reader.error and call.error is None:
        call.error = tap.reader.error
