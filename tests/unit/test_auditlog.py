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
    log._file.write = lambda text: (writes.append(text.count(b"\n")), real_write(text))[1]  # type: ignore[method-assign]
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


def test_a_record_orjson_cannot_write_is_written_escaped_and_the_records_after_it_too(tmp_path: Path) -> None:
    # A path of bytes that are not UTF-8 reaches the record as lone surrogates (mitmproxy decodes
    # it with surrogateescape); such a record once stopped the writer for good.
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "path": "/v1/\udcff", "n": 2**70, "other": object})
    log.write({"event": "llm_call", "client": "grüß"})
    log.close()
    first, second = _lines(path)
    assert first["path"] == "/v1/\udcff" and first["n"] == 2**70 and first["other"] == repr(object)
    assert second == {"event": "llm_call", "client": "grüß"}
    assert "grüß".encode() in path.read_bytes()  # UTF-8 as it is, not escaped


def test_a_failed_write_is_reported_and_the_writer_goes_on(tmp_path: Path, caplog) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    real_write, failures = log._file.write, [OSError("No space left on device")]

    def write(data: bytes) -> int:
        if failures:
            raise failures.pop()
        return real_write(data)

    log._file.write = write  # type: ignore[method-assign]
    log.write({"event": "llm_call", "n": 1})
    deadline = time.monotonic() + 5
    while failures and time.monotonic() < deadline:
        time.sleep(0.01)
    log.write({"event": "llm_call", "n": 2})
    log.close()
    assert [r["n"] for r in _lines(path)] == [2]
    assert "writing 1 audit records to" in caplog.text and "No space left on device" in caplog.text
