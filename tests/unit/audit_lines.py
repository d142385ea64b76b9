"""Audit records appended to a file as its lines, and the wait for a sender to have taken them:
shared by the tests of the senders that tail the audit file (OTLP export, PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> list[str]:
    """Appends each record to `path` as one JSON line, in one write; the lines, without their newline."""
    lines = [orjson.dumps(record).decode() for record in records]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def wait_until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Fails saying it timed out unless `condition` holds within `timeout` seconds (asked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
