"""The audit file: records in order, every one written by close, none lost to batching."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tollgate.auditlog import AuditLog


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_close_writes_every_queued_record_in_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    for i in range(500):
        log.write({"event": "llm_call", "n": i, "client": "app"})
    log.close()
    records = _lines(path)
    assert [r["n"] for r in records] == list(range(500))
    assert list(records[0]) == ["event", "n", "client"]  # the event first, the rest as given
    assert records[0]["event"] == "llm_call"


def test_a_record_reaches_the_file_without_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    try:
        log.write({"event": "llm_call", "n": 1})
        deadline = time.monotonic() + 5
        while not path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _lines(path) == [{"event": "llm_call", "n": 1}]
    finally:
        log.close()


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "llm_call", "n": 0}\n')
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 1})
    log.close()
    assert [r["n"] for r in _lines(path)] == [0, 1]


def test_records_of_a_busy_moment_are_written_together(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    writes: list[int] = []
    real_write = log._file.write
    log._file.write = lambda text: (writes.append(text.count("\n")), real_write(text))[1]  # type: ignore[method-assign]
    try:
        for i in range(200):
            log.write({"event": "llm_call", "n": i})
        deadline = time.monotonic() + 5
        while sum(writes) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == list(range(200))
    assert sum(writes) == 200 and len(writes) <= 3  # the first record at once, the rest in a batch or two
