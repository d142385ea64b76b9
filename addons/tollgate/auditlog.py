"""The audit file: one JSON object per line, rendered by structlog and written by a thread of its
own, so that a slow disk never stalls the proxy's event loop (and with it every other flow)."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import IO, Any

import orjson
import structlog

logger = logging.getLogger(__name__)

_CLOSE = object()

# While calls keep coming, the writer wakes once per batch, not once per record: each wake-up costs
# both threads a hand-over of the interpreter lock (futex calls, context switches, the event loop
# stalled meanwhile), which per record cost the proxy ~15 % of its requests/s under load, and with
# 50 ms batches still ~2 % (docs/performance.md). A record that comes after a quiet spell is
# written at once.
BATCH_DELAY = 0.25  # seconds between two writes, at most what a record waits for others to join it


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        # structlog's renderer, without a bound logger around it: a record is a whole event dict
        # already (its "event" first). A file gets UTF-8 from orjson (the standard library's
        # encoder cost several times more per record); standard output, whose encoding may not be
        # UTF-8, text escaped to ASCII.
        self._file: IO[Any]
        if path == "-":
            self._file, self._newline = sys.stdout, "\n"
            self._render = structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=True)
        else:
            self._file, self._newline = open(path, "ab"), b"\n"
            self._render = structlog.processors.JSONRenderer(serializer=_utf8_json)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._write_all, name=f"tollgate-audit {path}", daemon=True)
        self._writer.start()

    def write(self, record: dict[str, Any]) -> None:
        """Render one record (an event dict) and queue it. It reaches the file at once or, while
        calls keep coming, within `BATCH_DELAY`; records keep their order. Rendered here, not by the
        writer, so that the writer holds the interpreter lock only to hand lines to the file."""
        self._queue.put(self._render(None, "info", record))

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
            closing = _CLOSE in batch
            lines = batch[: batch.index(_CLOSE)] if closing else batch
            if lines:
                try:
                    self._file.write(self._newline.join(lines) + self._newline)
                    self._file.flush()
                except Exception:  # a full disk, say: say so and keep writing what comes next
                    logger.exception(f"Tollgate: writing {len(lines)} audit records to {self.path} failed")
            last_write = time.monotonic()
            if closing:
                return

    def close(self) -> None:
        """Write what is queued, then close the file."""
        self._closed.set()
        self._queue.put(_CLOSE)
        self._writer.join(timeout=10)
        if self._file is not sys.stdout:
            self._file.close()


def _utf8_json(record: dict[str, Any], **_: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # a lone surrogate (from bytes that were not UTF-8), or a value orjson cannot write
        return json.dumps(record, default=repr).encode()
