"""An audit file's records sent somewhere else, from the file, by a thread of its own: what the
senders of `audit.otlp` (`audit_otlp.py`) and `audit.postgres` (`audit_postgres.py`) share.

The audit file is the spool. A `FileSender` reads the lines the writers appended, follows the
file when logrotate's `create` renames it (the old file read to its end, then the new one from its
start), and hands them to its destination in batches (up to `batch_records` lines, or what came
within `batch_seconds`). After each batch the destination took, its place in the file is written to
`<audit path><position suffix>` (a new file renamed over the old one: whole or not at all); a start
resumes there. A batch is sent again until it is taken, with a back-off from `first_delay` doubling
to `max_delay`, while the destination cannot be reached or fails; it is said once in the log, and
again when it goes on. A batch is dropped only when the destination refuses it for good, and a
sender stops only when its destination can take nothing at all (each logged).

No call waits for it: the writers append to the file as they always do, and this thread only reads.

Several processes may write one audit file (a fleet's workers): one sender of a kind sends it. Each
process's sender takes an exclusive `flock` on `<audit path><lock suffix>` before it reads; the
others wait, trying again every `STANDBY_SECONDS`, and one of them takes over when the process that
held it ends (however it ends: the kernel lets the lock go)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from tollgate.records.followed_file import Follower

logger = logging.getLogger(__name__)

BATCH_RECORDS = 512  # lines per batch, at most
BATCH_SECONDS = 1.0  # what a line waits, at most, for others to join it
POLL_SECONDS = 0.2  # between two looks at the file for new lines
FIRST_DELAY = 0.5  # seconds before the first retry of a batch; doubled after each failure
MAX_DELAY = 30.0
STANDBY_SECONDS = 1.0  # between two attempts to take the lock another process holds
STOP_SECONDS = 5.0  # at stop, at most, to send what is read and not yet taken
_READ = 1 << 20  # bytes read from the file at once
# The audit file's siblings that are the senders' own (positions, locks, a position being written):
# never a rotated audit file.
SIDE_FILES = ("-position", "-lock", ".tmp")


# ---- where the sender is


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a file: the file (its device and inode) and the offset of the first byte not yet
    acknowledged (the start of a line)."""

    dev: int
    ino: int
    offset: int

    def identity(self) -> tuple[int, int]:
        return self.dev, self.ino


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
        if not name.startswith(audit.name) or name == audit.name or name.endswith(SIDE_FILES):
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
    from its start. A file cut shorter than what was read (copytruncate), or cut and grown again
    past it (its first bytes differ), is read again from its start: the one `Follower` of the
    audit file tells. Also counts the lines written and not yet read (`ahead`)."""

    def __init__(self, path: str, start: Position, rotated: str | None = None) -> None:
        self.path = path
        self._file = Follower(path)
        self._identity = start.identity()
        self._offset = start.offset  # the next byte to read
        self._counted = start.offset  # lines are counted up to here
        self._ahead = 0  # whole lines between `_offset` and `_counted`
        self._open(rotated if rotated is not None else path, start)

    def _open(self, path: str, start: Position) -> None:
        if not self._file.open(path):
            return
        assert self._file.identity is not None
        if self._file.identity != start.identity():  # replaced meanwhile: from the start of the file that is there
            start = Position(*self._file.identity, 0)
        self._identity = start.identity()
        self._offset = self._counted = start.offset
        self._ahead = 0

    def close(self) -> None:
        self._file.close()

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
        fd = self._file.fd
        if fd is None:
            return []
        if self._file.truncated(self._offset):  # cut shorter: it starts again
            self._offset = self._counted = 0
            self._ahead = 0
        size = os.fstat(fd).st_size
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
        self._file.keep_head(self._offset)
        if self._counted < self._offset:
            self._counted, self._ahead = self._offset, 0
        else:
            self._ahead = max(0, self._ahead - consumed)
        return lines

    def _follow(self) -> bool:
        """Whether the path names another file than the one read to its end: then the new one is
        open, to be read from its start."""
        if not self._file.moved():
            return False
        # A last look at the old file: a writer may have appended to it just before it moved.
        if self._file.fd is not None and self._read_leftover():
            return True
        if not self._file.open():
            return False  # gone again meanwhile: looked for at the next read
        assert self._file.identity is not None
        self._identity = self._file.identity
        self._offset = self._counted = 0
        self._ahead = 0
        return True

    def _read_leftover(self) -> bool:
        fd = self._file.fd
        assert fd is not None
        return os.fstat(fd).st_size > self._offset and os.pread(fd, _READ, self._offset).find(b"\n") >= 0

    def ahead(self) -> int:
        """Whole lines written to the open file and not yet read (counted from where it was last
        counted to the end, a chunk at a time)."""
        fd = self._file.fd
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a batch: `sent` (acknowledged), else `retry` (try again after a wait, at
    least `wait` seconds when the destination said so), else `halt` (the sender stops: the
    destination cannot take any record, `why` says so once), else dropped; `why` in words."""

    sent: bool
    retry: bool
    why: str = ""
    wait: float | None = None
    halt: bool = False


SENT = Outcome(True, False)


# ---- the sender


class Pacing(TypedDict, total=False):
    """How a sender paces itself, each a default where not given: the records of a batch, the
    seconds a batch waits to fill, the first and the longest delay between failed attempts."""

    batch_records: int
    batch_seconds: float
    first_delay: float
    max_delay: float


class FileSender:
    """Sends the audit file at `audit_path` from a thread of its own (`start`), until `stop`.
    `lag()` is the records written and not yet taken (None while another process sends the file).

    A kind of sender says where its records go (`where`, `destination`, `title`), how a batch is
    sent (`deliver`) and its first line (`started_line`)."""

    POSITION_SUFFIX = ".position"
    LOCK_SUFFIX = ".lock"
    destination = "its destination"  # in words: "a collector", "PostgreSQL"
    verb = "sent"  # what the log says of the audit: "exported", "sent to PostgreSQL"

    def __init__(self, audit_path: str, **pacing: Unpack[Pacing]) -> None:
        self.audit_path = audit_path
        self.position_path = audit_path + self.POSITION_SUFFIX
        self.lock_path = audit_path + self.LOCK_SUFFIX
        self._batch_records = pacing.get("batch_records", BATCH_RECORDS)
        self._batch_seconds = pacing.get("batch_seconds", BATCH_SECONDS)
        self._first_delay = pacing.get("first_delay", FIRST_DELAY)
        self._max_delay = pacing.get("max_delay", MAX_DELAY)
        self._stopping = threading.Event()
        self._deadline = 0.0  # once stopping: when the last attempts end
        self._lock_fd: int | None = None
        self._tail: Tail | None = None
        self._pending: list[Line] = []
        self._lag: int | None = None
        self._halted = False
        self.shipped = 0  # records taken
        self.dropped = 0  # records the destination refused
        self._thread = threading.Thread(
            target=self._run, name=f"tollgate-{type(self).__name__} {audit_path}", daemon=True
        )

    # ---- what a kind of sender says

    @property
    def where(self) -> str:
        """Where the records go, as the log may show it (never a secret)."""
        raise NotImplementedError

    @property
    def title(self) -> str:
        """The sender in the log's words: "the audit export to http://collector:4318"."""
        return f"the audit export to {self.where}"

    def deliver(self, lines: list[bytes], timeout: float | None) -> Outcome:
        """Send a batch (each line without its newline, in the file's order); `timeout` (seconds)
        in place of the usual one, once stopping."""
        raise NotImplementedError

    def close_destination(self) -> None:
        """The thread ends: what `deliver` holds open is closed."""

    def started_line(self) -> str:
        return f"Tollgate: {self.title} starts from {self.position_described()}"

    # ---- the sender's life

    def start(self) -> FileSender:
        self._thread.start()
        return self

    def lag(self) -> int | None:
        """Records in the file not yet taken by the destination: read and waiting, and written and
        not yet read. None while this process does not send the file. Read from any thread."""
        return self._lag

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """What was read is sent a last time (for up to `timeout` seconds), then the thread ends;
        whether it ended. Records not taken by then are sent by the next start."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._thread.join(timeout + 1)
        return not self._thread.is_alive()

    def stop_later(self, timeout: float = STOP_SECONDS) -> threading.Thread:
        """`stop`, in a thread of its own (returned): for a caller that must not wait."""
        thread = threading.Thread(target=self.stop, args=(timeout,), name="tollgate-sender-stop", daemon=True)
        thread.start()
        return thread

    def alive(self) -> bool:
        """Whether the thread runs (a sender whose destination can take nothing has ended)."""
        return self._thread.is_alive()

    # ---- the thread

    def _run(self) -> None:
        try:
            if self._hold_lock():
                self._ship()
        except Exception:
            logger.exception(f"Tollgate: {self.title} stopped")
        finally:
            self._lag = None
            if self._tail is not None:
                self._tail.close()
            self.close_destination()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the lock goes with it

    def _hold_lock(self) -> bool:
        """Whether this process sends the file: once it holds the lock (waiting for it while another
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
                        f"Tollgate: another process sends {self.audit_path} to {self.destination} (it holds"
                        f" {self.lock_path}); this one stands by to take over"
                    )
                    said = True
            except OSError as e:
                if not said:
                    logger.error(
                        f"Tollgate: cannot lock {self.lock_path}: {e.strerror or e}; the audit is not {self.verb}"
                    )
                    said = True
            self._stopping.wait(STANDBY_SECONDS)
        return False

    def _ship(self) -> None:
        while not self._open():
            # Asked to stop: a file made since the last look is still sent what it holds.
            if self._stopping.wait(POLL_SECONDS):
                if not self._open():
                    return
                break
        logger.info(self.started_line())
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
                    logger.error(f"Tollgate: cannot read {self.audit_path} to send it: {e.strerror or e}")
                    unreadable = True
                if stopping or self._stopping.wait(STANDBY_SECONDS):
                    return
                continue
            full = len(self._pending) >= self._batch_records
            due = self._pending and time.monotonic() - first_seen >= self._batch_seconds
            if self._pending and (full or due or stopping):
                if not self._send_pending():
                    return  # stopping, and not sent: the next start sends it; or halted
                first_seen = time.monotonic()
                if stopping and time.monotonic() >= self._deadline:
                    return  # what is left is sent by the next start
                continue  # more may be waiting
            if stopping:
                return
            if not self._lag:  # caught up: a purge now cannot race lines still to be sent again
                self.idle()
            self._stopping.wait(POLL_SECONDS)

    def idle(self) -> None:
        """Called while nothing waits to be sent, between two looks at the file: a destination's
        own chores (PostgreSQL's `keep_days`), which must not wait for records to come."""

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
        """Send the lines read until they are taken or refused; False when stopping cut it short,
        or the destination can take nothing (halted)."""
        batch = self._pending
        lines = [line.data for line in batch]
        failures = 0
        first_failure: str | None = None
        while True:
            timeout = None
            if self._stopping.is_set():
                timeout = self._deadline - time.monotonic()
                if timeout <= 0:
                    return False
            outcome = self.deliver(lines, timeout)
            if outcome.sent or not outcome.retry:
                break
            failures += 1
            if first_failure is None:
                first_failure = outcome.why
                logger.warning(
                    f"Tollgate: {self.title} is failing ({outcome.why}); its records stay in"
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
        if outcome.halt:
            logger.error(f"Tollgate: {self.title} stops: {outcome.why}")
            self._halted = True
            return False
        if outcome.sent:
            self.shipped += len(batch)
            if first_failure is not None:
                logger.info(f"Tollgate: {self.title} goes on: {self.destination} took the records")
        else:
            self.dropped += len(batch)
            logger.error(
                f"Tollgate: {len(batch)} audit records not {self.verb}: {outcome.why} ({self.destination} refuses"
                f" them, so they are not sent again; they stay in {self.audit_path})"
            )
        self._pending = []
        try:
            write_position(self.position_path, batch[-1].after)
        except OSError as e:
            logger.error(f"Tollgate: cannot write {self.position_path}: {e.strerror or e}; a restart sends them again")
        return True
