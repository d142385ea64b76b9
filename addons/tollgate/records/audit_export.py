"""The audit shipped to an OpenTelemetry collector (`audit.otlp`): at least once, from the file.

The audit file is the spool. A thread of its own (`AuditExport`) reads the lines the writers
appended, follows the file when logrotate's `create` renames it (the old file read to its end,
then the new one from its start), and sends them in batches (up to `BATCH_RECORDS` lines, or what
came within `BATCH_SECONDS`) as OTLP/HTTP log records (`otlp_logs.py`). After each batch the
collector acknowledged, its place in the file is written to `<audit path>.otlp-position` (a new
file renamed over the old one: whole or not at all); a start resumes there. A batch is sent again
until it is acknowledged, with a back-off from `FIRST_DELAY` doubling to `MAX_DELAY`, while the
collector cannot be reached, times out, or answers 5xx or 429; a batch is dropped only when the
collector refuses it (another 4xx: sending it again would not help), and that is logged. A
record the collector took but whose position was not yet written is sent again after a restart:
`tollgate.record_id` lets a receiver drop the copy.

No call waits for it: the writers append to the file as they always do, and this thread only reads.

Several processes may write one audit file (a fleet's workers): one exporter ships it. Each
process's exporter takes an exclusive `flock` on `<audit path>.otlp-lock` before it reads; the
others wait, trying again every `STANDBY_SECONDS`, and one of them takes over when the process that
held it ends (however it ends: the kernel lets the lock go)."""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tollgate.records.otlp_logs import LOGS_PATH, export_body

logger = logging.getLogger(__name__)

POSITION_SUFFIX = ".otlp-position"
LOCK_SUFFIX = ".otlp-lock"

BATCH_RECORDS = 512  # lines per request, at most
BATCH_SECONDS = 1.0  # what a line waits, at most, for others to join it
POLL_SECONDS = 0.2  # between two looks at the file for new lines
FIRST_DELAY = 0.5  # seconds before the first retry of a batch; doubled after each failure
MAX_DELAY = 30.0
TIMEOUT_SECONDS = 10.0  # to connect, and for the collector's answer
STANDBY_SECONDS = 1.0  # between two attempts to take the lock another process holds
STOP_SECONDS = 5.0  # at stop, at most, to send what is read and not yet acknowledged
_READ = 1 << 20  # bytes read from the file at once


# ---- where the exporter is


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a file: the file (its device and inode) and the offset of the first byte not yet
    acknowledged (the start of a line)."""

    dev: int
    ino: int
    offset: int

    def identity(self) -> tuple[int, int]:
        return self.dev, self.ino


def position_path(audit_path: str) -> str:
    return audit_path + POSITION_SUFFIX


def read_position(path: str) -> Position | None:
    """The position written at `path`; None when there is none (or it cannot be read as one)."""
    try:
        data = json.loads(Path(path).read_bytes())
        return Position(int(data["dev"]), int(data["ino"]), int(data["offset"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_position(path: str, position: Position) -> None:
    """Write `position` at `path` whole: a file of its own, renamed over the old one."""
    data = json.dumps({"dev": position.dev, "ino": position.ino, "offset": position.offset}).encode()
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def start_position(audit_path: str, saved: Position | None) -> tuple[str | None, Position]:
    """Where to start: in the rotated file the saved position is in (returned first: one of the
    audit file's siblings, no shorter than the offset), the audit file read from its start after
    it; else the audit file at the saved offset, when the position is of that file and within its
    size; else the audit file from its start (another file, or one cut shorter).
    FileNotFoundError when there is no audit file (yet)."""
    st = os.stat(audit_path)
    current = Position(st.st_dev, st.st_ino, 0)
    if saved is None:
        return None, current
    if saved.identity() == current.identity():
        return None, current if saved.offset > st.st_size else saved
    rotated = rotated_file(audit_path, saved)
    if rotated is not None:
        return rotated, saved
    return None, current


def rotated_file(audit_path: str, saved: Position) -> str | None:
    """The sibling of the audit file (`audit.jsonl.1`, `audit.jsonl-20261126`, …) that is the file
    `saved` is in, when it is there and no shorter than its offset."""
    audit = Path(audit_path)
    try:
        siblings = list(audit.parent.iterdir())
    except OSError:
        return None
    for sibling in siblings:
        name = sibling.name
        if not name.startswith(audit.name) or name == audit.name or name.endswith((POSITION_SUFFIX, LOCK_SUFFIX)):
            continue
        try:
            st = sibling.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == saved.identity() and st.st_size >= saved.offset:
            return str(sibling)
    return None


# ---- the lines in the file


@dataclass(frozen=True, slots=True)
class Line:
    """A line read (without its newline), and the position just after it."""

    data: bytes
    after: Position


class Tail:
    """The audit file's whole lines, read from a position on, following rotations (logrotate's
    `create`): when the path names another file, the open one is read to its end, then the new one
    from its start. A file cut shorter than what was read (copytruncate) is read again from its
    start. Also counts the lines written and not yet read (`ahead`)."""

    def __init__(self, path: str, start: Position, rotated: str | None = None) -> None:
        self.path = path
        self._fd: int | None = None
        self._identity = start.identity()
        self._offset = start.offset  # the next byte to read
        self._counted = start.offset  # lines are counted up to here
        self._ahead = 0  # whole lines between `_offset` and `_counted`
        self._open(rotated if rotated is not None else path, start)

    def _open(self, path: str, start: Position) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != start.identity():  # replaced meanwhile: from the start of the file that is there
            start = Position(st.st_dev, st.st_ino, 0)
        self._fd, self._identity = fd, start.identity()
        self._offset = self._counted = start.offset
        self._ahead = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def position(self) -> Position:
        return Position(*self._identity, self._offset)

    def read(self, most: int) -> list[Line]:
        """Up to `most` whole lines written since the last read (none when there are none yet)."""
        lines: list[Line] = []
        while len(lines) < most:
            got = self._read_open(most - len(lines))
            lines += got
            if got:
                continue
            if not self._follow():
                break
        return lines

    def _read_open(self, most: int) -> list[Line]:
        fd = self._fd
        if fd is None:
            return []
        size = os.fstat(fd).st_size
        if size < self._offset:  # cut shorter: it starts again
            self._offset = self._counted = 0
            self._ahead = 0
        lines: list[Line] = []
        want = _READ
        consumed = 0  # newlines read past (blank lines among them)
        while len(lines) < most and self._offset < size:
            chunk = os.pread(fd, want, self._offset)
            end = chunk.rfind(b"\n")
            if end < 0:
                if len(chunk) < want:
                    break  # a line still being written
                want *= 2  # a line longer than what was read
                continue
            start = 0
            while start <= end and len(lines) < most:
                stop = chunk.index(b"\n", start)
                line = chunk[start:stop]
                start = stop + 1
                if line.strip():
                    lines.append(Line(line, Position(*self._identity, self._offset + start)))
                elif lines:
                    lines[-1] = Line(lines[-1].data, Position(*self._identity, self._offset + start))
            consumed += chunk.count(b"\n", 0, start)
            self._offset += start
        if self._counted < self._offset:
            self._counted, self._ahead = self._offset, 0
        else:
            self._ahead = max(0, self._ahead - consumed)
        return lines

    def _follow(self) -> bool:
        """Whether the path names another file than the one read to its end: then the new one is
        open, to be read from its start."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed, the new one not yet made: the writer makes it at its next record
        if (st.st_dev, st.st_ino) == self._identity and self._fd is not None:
            return False
        if self._fd is not None:
            # A last look at the old file: a writer may have appended to it just before it moved.
            if self._read_leftover():
                return True
            self.close()
        self._open(self.path, Position(st.st_dev, st.st_ino, 0))
        return self._fd is not None

    def _read_leftover(self) -> bool:
        fd = self._fd
        assert fd is not None
        return os.fstat(fd).st_size > self._offset and os.pread(fd, _READ, self._offset).find(b"\n") >= 0

    def ahead(self) -> int:
        """Whole lines written to the open file and not yet read (counted from where it was last
        counted to the end, a chunk at a time)."""
        fd = self._fd
        if fd is None:
            return 0
        size = os.fstat(fd).st_size
        if size < self._counted:
            return 0
        while self._counted < size:
            chunk = os.pread(fd, _READ, self._counted)
            if not chunk:
                break
            end = chunk.rfind(b"\n")
            if end < 0:
                break
            self._ahead += chunk.count(b"\n", 0, end + 1)
            self._counted += end + 1
        return self._ahead


# ---- retrying


def backoff(failures: int, first: float = FIRST_DELAY, most: float = MAX_DELAY) -> float:
    """Seconds to wait after `failures` failed attempts in a row (1, 2, …): `first`, doubled after
    each failure, at most `most`."""
    if failures < 1:
        return 0.0
    return min(most, first * 2 ** min(failures - 1, 32))


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds (its date form is not used by collectors)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a batch: `sent` (acknowledged), else `retry` (try again after a wait, at
    least `wait` seconds when the collector said so), else dropped; `why` in words."""

    sent: bool
    retry: bool
    why: str = ""
    wait: float | None = None


SENT = Outcome(True, False)


def outcome_of(status: int, reason: str, body: bytes, wait: str | None) -> Outcome:
    """The collector's answer as an outcome: 2xx acknowledged; 429 and 5xx retried (after its
    Retry-After, when it gave one); another 4xx refused for good; anything else retried."""
    if 200 <= status < 300:
        return SENT
    said = body[:200].decode("utf-8", "replace").strip()
    why = f"the collector answered {status} {reason}".rstrip() + (f": {said}" if said else "")
    if 400 <= status < 500 and status != 429:
        return Outcome(False, False, why)
    return Outcome(False, True, why, retry_after(wait))


class Sender:
    """POSTs to `<endpoint>/v1/logs`, on one kept-alive connection (made again after a failure)."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float = TIMEOUT_SECONDS) -> None:
        parts = urlsplit(endpoint.rstrip("/") + LOGS_PATH)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path
        self._headers = {
            **headers,
            "Content-Type": "application/x-protobuf",
            "User-Agent": "tollgate-audit-export",
        }
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, body: bytes, timeout: float | None = None) -> Outcome:
        """POST `body`; `timeout` (seconds) in place of the usual one, for this request."""
        timeout = self._timeout if timeout is None else min(timeout, self._timeout)
        connection = self._connection
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._connection = connection
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request("POST", self._path, body=body, headers=self._headers)
            answer = connection.getresponse()
            data = answer.read()
        except TimeoutError:
            self.close()
            return Outcome(False, True, f"the collector did not answer within {timeout:g} s")
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return Outcome(False, True, f"cannot reach the collector: {getattr(e, 'strerror', None) or e}")
        if answer.will_close:
            self.close()
        return outcome_of(answer.status, answer.reason, data, answer.getheader("retry-after"))

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


# ---- the exporter


class AuditExport:
    """Ships the audit file at `audit_path` to `endpoint` from a thread of its own (`start`), until
    `stop`. `lag()` is the records written and not yet acknowledged (None while another process
    ships the file)."""

    def __init__(
        self,
        audit_path: str,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        batch_records: int = BATCH_RECORDS,
        batch_seconds: float = BATCH_SECONDS,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
    ) -> None:
        self.audit_path = audit_path
        self.endpoint = endpoint
        self.position_path = position_path(audit_path)
        self.lock_path = audit_path + LOCK_SUFFIX
        self._sender = Sender(endpoint, headers or {}, timeout)
        self._batch_records = batch_records
        self._batch_seconds = batch_seconds
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._stopping = threading.Event()
        self._deadline = 0.0  # once stopping: when the last attempts end
        self._lock_fd: int | None = None
        self._tail: Tail | None = None
        self._pending: list[Line] = []
        self._lag: int | None = None
        self.shipped = 0  # records acknowledged
        self.dropped = 0  # records the collector refused
        self._thread = threading.Thread(target=self._run, name=f"tollgate-audit-export {audit_path}", daemon=True)

    @property
    def where(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def start(self) -> AuditExport:
        self._thread.start()
        return self

    def lag(self) -> int | None:
        """Records in the file not yet acknowledged by the collector: read and waiting, and written
        and not yet read. None while this process does not ship the file. Read from any thread."""
        return self._lag

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """What was read is sent a last time (for up to `timeout` seconds), then the thread ends;
        whether it ended. Records not acknowledged by then are sent by the next start."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._thread.join(timeout + 1)
        return not self._thread.is_alive()

    def stop_later(self, timeout: float = STOP_SECONDS) -> threading.Thread:
        """`stop`, in a thread of its own (returned): for a caller that must not wait."""
        thread = threading.Thread(target=self.stop, args=(timeout,), name="tollgate-audit-export-stop", daemon=True)
        thread.start()
        return thread

    # ---- the thread

    def _run(self) -> None:
        try:
            if self._hold_lock():
                self._ship()
        except Exception:
            logger.exception(f"Tollgate: the audit export to {self.where} stopped")
        finally:
            self._lag = None
            if self._tail is not None:
                self._tail.close()
            self._sender.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the lock goes with it

    def _hold_lock(self) -> bool:
        """Whether this process ships the file: once it holds the lock (waiting for it while another
        process does); False when asked to stop first."""
        said = False
        while not self._stopping.is_set():
            try:
                if self._lock_fd is None:
                    self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not said:
                    logger.info(
                        f"Tollgate: another exporter ships {self.audit_path} to a collector (it holds"
                        f" {self.lock_path}); this one stands by to take over"
                    )
                    said = True
            except OSError as e:
                if not said:
                    logger.error(
                        f"Tollgate: cannot lock {self.lock_path}: {e.strerror or e}; the audit is not exported"
                    )
                    said = True
            self._stopping.wait(STANDBY_SECONDS)
        return False

    def _ship(self) -> None:
        while not self._open():
            if self._stopping.wait(POLL_SECONDS):
                return
        logger.info(f"Tollgate: the audit is exported to {self.where}{LOGS_PATH} from {self.position_described()}")
        first_seen = 0.0
        unreadable = False
        while True:
            stopping = self._stopping.is_set()
            tail = self._tail
            assert tail is not None
            try:
                room = self._batch_records - len(self._pending)
                if room > 0:
                    read = tail.read(room)
                    if read and not self._pending:
                        first_seen = time.monotonic()
                    self._pending += read
                self._lag = len(self._pending) + tail.ahead()
                unreadable = False
            except OSError as e:  # the file or its directory made unreadable: tried again
                if not unreadable:
                    logger.error(f"Tollgate: cannot read {self.audit_path} to export it: {e.strerror or e}")
                    unreadable = True
                if stopping or self._stopping.wait(STANDBY_SECONDS):
                    return
                continue
            full = len(self._pending) >= self._batch_records
            due = self._pending and time.monotonic() - first_seen >= self._batch_seconds
            if self._pending and (full or due or stopping):
                if not self._send_pending():
                    return  # stopping, and not sent: the next start sends it
                first_seen = time.monotonic()
                if stopping and time.monotonic() >= self._deadline:
                    return  # what is left is sent by the next start
                continue  # more may be waiting
            if stopping:
                return
            self._stopping.wait(POLL_SECONDS)

    def _open(self) -> bool:
        try:
            rotated, start = start_position(self.audit_path, read_position(self.position_path))
        except FileNotFoundError:
            return False  # not made yet
        self._tail = Tail(self.audit_path, start, rotated)
        return True

    def position_described(self) -> str:
        tail = self._tail
        if tail is None:
            return "its start"
        position = tail.position()
        return "its start" if position.offset == 0 else f"byte {position.offset} (where it stopped)"

    def _send_pending(self) -> bool:
        """Send the lines read until they are acknowledged or refused; False when stopping cut it short."""
        batch = self._pending
        body = export_body([line.data for line in batch], time.time_ns())
        failures = 0
        first_failure: str | None = None
        while True:
            timeout = None
            if self._stopping.is_set():
                timeout = self._deadline - time.monotonic()
                if timeout <= 0:
                    return False
            outcome = self._sender.send(body, timeout)
            if outcome.sent or not outcome.retry:
                break
            failures += 1
            if first_failure is None:
                first_failure = outcome.why
                logger.warning(
                    f"Tollgate: the audit export to {self.where} is failing ({outcome.why}); its records stay in"
                    f" {self.audit_path} and are sent again with back-off (calls go on)"
                )
            assert self._tail is not None
            self._lag = len(batch) + self._tail.ahead()  # what waits meanwhile
            wait = backoff(failures, self._first_delay, self._max_delay)
            if outcome.wait is not None:
                wait = min(self._max_delay, max(wait, outcome.wait))
            if self._stopping.is_set():  # the last attempts, until the deadline
                left = self._deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(wait, left))
            else:
                self._stopping.wait(wait)  # a stop asked meanwhile: one more attempt at once
        if outcome.sent:
            self.shipped += len(batch)
            if first_failure is not None:
                logger.info(f"Tollgate: the audit export to {self.where} goes on: the collector took the records")
        else:
            self.dropped += len(batch)
            logger.error(
                f"Tollgate: {len(batch)} audit records not exported: {outcome.why} (the collector refuses them, so"
                f" they are not sent again; they stay in {self.audit_path})"
            )
        self._pending = []
        try:
            write_position(self.position_path, batch[-1].after)
        except OSError as e:
            logger.error(f"Tollgate: cannot write {self.position_path}: {e.strerror or e}; a restart sends them again")
        return True
