"""The audit file: one JSON object per line, rendered by structlog and written by a thread of its
own, so that a slow disk never stalls the proxy's event loop (and with it every other flow)."""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import IO, Any

import structlog

_CLOSE = object()

# While calls keep coming, the writer wakes once per batch, not once per record: each wake-up costs
# both threads a GIL hand-over (futex calls), which per record cost the proxy ~15 % of its
# requests/s under load. A record that comes after a quiet spell is written at once.
BATCH_DELAY = 0.05  # seconds between two writes, at most what a record waits for others to join it


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")
        # structlog's renderer, without a bound logger around it: a record is a whole event dict
        # already (its "event" first), and the writer renders a batch before writing it at once.
        # The file is UTF-8, so text goes in as it is rather than escaped to ASCII (which costs
        # more); standard output's encoding may not be UTF-8.
        self._render = structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=path == "-")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._write_all, name=f"tollgate-audit {path}", daemon=True)
        self._writer.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record (an event dict, not changed afterwards). It reaches the file at once or,
        while calls keep coming, within `BATCH_DELAY`; records keep their order."""
        self._queue.put(record)

    def _write_all(self) -> None:
        last_write = 0.0
        while True:
            batch = [self._queue.get()]
            pause = last_write + BATCH_DELAY - time.monotonic()
            if pause > 0:
                self._closed.wait(pause)  # a busy moment: let its records gather (not when closing)
            try:
                while True:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            lines = []
            for record in batch:
                if record is _CLOSE:
                    break
                lines.append(f"{self._render(None, 'info', record)}\n")
            self._file.write("".join(lines))
            self._file.flush()
            last_write = time.monotonic()
            if record is _CLOSE:
                return

    def close(self) -> None:
        """Write what is queued, then close the file."""
        self._closed.set()
        self._queue.put(_CLOSE)
        self._writer.join(timeout=10)
        if self._file is not sys.stdout:
            self._file.close()
