"""The audit file: one JSON object per line, rendered by structlog and written by a thread of its
own, so that a slow disk never stalls the proxy's event loop (and with it every other flow)."""

from __future__ import annotations

import queue
import sys
import threading
from typing import IO, Any

import structlog

_CLOSE = object()


def _event_first(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {"event": event_dict.pop("event"), **event_dict}


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = sys.stdout if path == "-" else open(path, "a", encoding="utf-8")
        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[_event_first, structlog.processors.JSONRenderer(sort_keys=False)],
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_all, name=f"tollgate-audit {path}", daemon=True)
        self._writer.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record; it reaches the file moments later, in order."""
        self._queue.put(record)

    def _write_all(self) -> None:
        while (record := self._queue.get()) is not _CLOSE:
            fields = dict(record)
            self._logger.msg(fields.pop("event"), **fields)  # WriteLogger flushes each line
            self._file.flush()

    def close(self) -> None:
        """Write what is queued, then close the file."""
        self._queue.put(_CLOSE)
        self._writer.join(timeout=10)
        if self._file is not sys.stdout:
            self._file.close()
