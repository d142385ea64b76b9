"""The audit file: one JSON object per line, written through structlog."""

from __future__ import annotations

import sys
from typing import IO, Any

import structlog


def _event_first(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {"event": event_dict.pop("event"), **event_dict}


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] = sys.stdout if path == "-" else open(path, "a", encoding="utf-8", buffering=1)
        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[_event_first, structlog.processors.JSONRenderer(sort_keys=False)],
            cache_logger_on_first_use=True,
        )

    def write(self, record: dict[str, Any]) -> None:
        fields = dict(record)
        self._logger.msg(fields.pop("event"), **fields)

    def close(self) -> None:
        if self._file is not sys.stdout:
            self._file.close()
