"""The calls a process has sent whose records are not in the audit file yet, kept in a file beside
it (`<audit path>.in-flight.<instance>`), so that a process killed outright (SIGKILL, the OOM
killer) loses no call: the next process of the same instance (a fleet's worker started again, a
lone process restarted on its host) writes their records, `error: "worker lost"`.

Each call sent appends a line holding what is known of it (`sent_record`; an MCP request, the
records it would have); the audit's writer appends a line naming each call whose record it has
written. A process holds an
exclusive lock on its file while it runs: the lock is free once the process is gone, however it
ended, and a second process of the same instance (a mistake) keeps a file of its own rather than
take a live one's calls for lost."""

from __future__ import annotations

import fcntl
import os
import re
import threading
from typing import Any

import orjson

from tollgate.records.audit_record import RECORD_FIELDS, WORKER_LOST, lost_record

# A file grows by two lines a call: it is written anew with only the open calls past this size.
COMPACT_AT = 1 << 20
_REQUEST_ID = re.compile(rb'"request_id": ?"([^"\\]+)"')
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def journal_path(audit_path: str, instance: str) -> str:
    return f"{audit_path}.in-flight.{_UNSAFE.sub('_', instance)}"


class InFlight:
    """One process's calls in flight, in `path`. `lost` holds the records of the calls a previous
    process of the same instance sent and never recorded, read when this one opened the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._open: dict[str, bytes] = {}  # by request id: its line
        self._lock = threading.Lock()  # the event loop begins calls; the audit's writer ends them
        self._successor: InFlight | None = None  # the file that took its calls over (a reload)
        self.lost: dict[str, list[dict[str, Any]]] = {}
        fd = os.open(path, _FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process of the same instance: its calls are not lost
            os.close(fd)
            self.path = path = f"{path}.{os.getpid()}"
            fd = os.open(path, _FLAGS | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd
        self.lost = _unended(_read(fd))
        os.ftruncate(fd, 0)
        self._size = 0

    def began(self, request_id: str, sent: dict[str, Any]) -> None:
        """An LLM call sent: what is known of it (`sent_record`; a later call of the same id, a
        failover's attempt, replaces it)."""
        self._began(request_id, orjson.dumps({"sent": request_id, "call": sent}) + b"\n")

    def began_records(self, request_id: str, records: list[dict[str, Any]]) -> None:
        """A request sent whose records are known whole (an MCP server's; a lost call's)."""
        self._began(request_id, orjson.dumps({"sent": request_id, "records": records}) + b"\n")

    def _began(self, request_id: str, line: bytes) -> None:
        with self._lock:
            self._open[request_id] = line
            self._append(line)

    def written(self, data: bytes) -> None:
        """The audit's writer wrote `data` (whole lines): the calls whose records it holds ended."""
        with self._lock:
            ended = [i for i in (m.decode() for m in _REQUEST_ID.findall(data)) if self._open.pop(i, None)]
            if ended:
                self._append(b"".join(orjson.dumps({"ended": i}) + b"\n" for i in ended))
            successor = self._successor
        if successor is not None:  # records its calls' processes had queued here, written after a reload
            successor.written(data)

    def take_over(self, before: InFlight) -> None:
        """A reload moved the audit to another file: the calls in flight in `before` go on here, and
        what its writer still writes ends them here."""
        with before._lock:
            moved, before._open, before._successor = before._open, {}, self
        with self._lock:
            for request_id, line in moved.items():
                self._open[request_id] = line
                self._append(line)

    def close(self) -> None:
        """At the process's end, every record written: the file goes. Calls still open (a reload
        moved the audit to another file while they ran) are left for the next process."""
        with self._lock:
            if not self._open:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            os.close(self._fd)

    def _append(self, data: bytes) -> None:
        if self._size + len(data) > COMPACT_AT:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next writes start at 0
            data = b"".join(self._open.values()) + data
            self._size = 0
        written = os.write(self._fd, data)
        self._size += written


def _read(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _unended(data: bytes) -> dict[str, list[dict[str, Any]]]:
    """The records of the calls a file says were sent and not ended, by request id in the order
    sent, each saying its process was lost. A line cut short (the process died writing it) is
    skipped."""
    sent: dict[str, list[dict[str, Any]]] = {}
    for line in data.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or not isinstance(request_id := entry.get("sent"), str):
            if isinstance(entry, dict) and isinstance(entry.get("ended"), str):
                sent.pop(entry["ended"], None)
            continue
        sent.pop(request_id, None)  # a later attempt in place of the earlier
        if isinstance(call := entry.get("call"), dict):
            sent[request_id] = [lost_record(call, RECORD_FIELDS)]
        elif isinstance(records := entry.get("records"), list):
            sent[request_id] = [_lost(r) for r in records if isinstance(r, dict)]
    return sent


def _lost(record: dict[str, Any]) -> dict[str, Any]:
    """A request's record as known when it was sent (an MCP server's), its end never come."""
    lost = {**record, "status": None, "error": WORKER_LOST}
    if "latency_ms" in lost:
        lost["latency_ms"] = None
    return lost
