"""Every upstream response passes through unbuffered; usage is read from it on the way."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.net import encoding

from .shared import Shared, call_of, provider_of

logger = logging.getLogger(__name__)

# A JSON answer larger than this is still forwarded whole, but not read for usage.
MAX_READ = 16 * 1024 * 1024


class BodyReader:
    """A stream callable: returns each chunk as it came, keeps a bounded copy, and hands the
    whole body to `on_end` when the stream ends. It never raises: mitmproxy would drop the chunk."""

    def __init__(self, keep: bool, on_end: Callable[[bytes | None], None]) -> None:
        self._buffer: bytearray | None = bytearray() if keep else None
        self._on_end = on_end

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            if self._buffer is not None:
                if len(self._buffer) + len(chunk) > MAX_READ:
                    self._buffer = None
                else:
                    self._buffer += chunk
            return chunk
        try:
            self._on_end(bytes(self._buffer) if self._buffer is not None else None)
        except Exception:  # a usage-reading fault must not break the response
            logger.exception("Tollgate: reading usage failed")
        return chunk


class StreamTap:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None or call.answered_by_tollgate:
            return
        response = flow.response
        provider = provider_of(call)
        keep = "json" in response.headers.get("content-type", "")
        content_encoding = response.headers.get("content-encoding", "")

        def read_usage(body: bytes | None) -> None:
            if body and content_encoding:
                try:
                    body = encoding.decode(body, content_encoding)
                except ValueError:
                    body = None
            call.usage = provider.usage(call.classification, response.headers, body)

        # Streamed bodies are not stored in the flow, so a saved flow holds no completion text.
        response.stream = BodyReader(keep, read_usage)
