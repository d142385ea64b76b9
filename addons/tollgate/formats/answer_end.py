"""The last bytes of an answer, held back from its client until its call is counted.

A client acts on an answer once it has all of it, and may send its next call at once. For a call
that a limit counts, the bytes that tell the client the answer is whole are held back until the
call's usage is settled in the ledger, then sent: the last byte of a body whose length its headers
declare, and the line ends after an event stream's `data: [DONE]` (OpenAI's SDKs stop reading
there, before the body's end). Any other answer is whole only at its body's end (the last chunk of
a chunked body, the end of an HTTP/2 stream), which mitmproxy sends after the `response` hook.
Nothing else is held: each piece before those goes on as it came."""

from __future__ import annotations

DONE_LINES = (b"data: [DONE]", b"data:[DONE]")
LINE_ENDS = b"\r\n"
# The bytes kept of what has passed, to find a `data: [DONE]` line split across pieces: the line,
# the line end before it, and the line ends after it.
_KEPT = 32


class EndHold:
    """Passes an answer's pieces on, holding back the bytes that would make it whole to its client
    (`held`); once some are held, every later piece is held too, so that the order stays."""

    def __init__(self, length: int | None, event_stream: bool) -> None:
        self._left = length  # bytes until the declared end; None: no length declared
        self._event_stream = event_stream
        self._recent = b""  # the last bytes passed, to find a [DONE] line split across pieces
        self._passed = 0
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        """What of `data` goes on now (b"" when all of it is held)."""
        if self.held or not data:
            self.held += data
            return b""
        cut = len(data)
        if self._left is not None:
            self._left -= len(data)
            if self._left <= 0:  # this piece ends the body: its last byte waits
                cut = len(data) - 1
        if self._event_stream:
            cut = min(cut, self._done_at(data))
        self._passed += len(data)
        self.held = data[cut:]
        return data[:cut]

    def keep(self, data: bytes) -> None:
        """What comes at the end of the answer (a rewrite's last bytes): held whole."""
        self.held += data

    def _done_at(self, data: bytes) -> int:
        """Where in `data` the line ends after a `data: [DONE]` line begin; its length when none do."""
        whole = self._passed + len(data) <= _KEPT  # `recent` holds the stream from its start
        recent = (self._recent + data[-_KEPT:])[-_KEPT:]  # never a copy of the whole piece
        self._recent = recent
        text = recent.rstrip(LINE_ENDS)
        ends = min(len(recent) - len(text), len(data))
        if not ends:
            return len(data)
        for line in DONE_LINES:
            if text.endswith(line):
                start = len(text) - len(line)
                if (start == 0 and whole) or text[start - 1 : start] in (b"\n", b"\r"):
                    return len(data) - ends
        return len(data)
