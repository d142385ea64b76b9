"""The ledger in a SQLite file: nothing to install; exact within one Tollgate process.

The process keeps the counters in memory and decides reservations there, at once, never waiting
on the disk; a worker thread of its own writes every change to the file behind it (in batches, a
half a second apart at most) with the call rows, and reads the file's counters back every
second. So the counts survive a restart (a crash loses at most the last batch), and processes
sharing one file see each other's counts within about a second (each is exact for its own calls;
Redis is the store for limits exact across processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tollgate.ledger.backlog import MAX_HELD, Backlog
from tollgate.ledger.outage import Outage
from tollgate.ledger.rows import decode_row, encode_row
from tollgate.ledger.store import CALLS_KEPT, Charge, Reservation, StoreError, Unshared

logger = logging.getLogger(__name__)

BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's lock before it fails
OPEN_TIMEOUT = BUSY_TIMEOUT + 2.0  # longest the file takes to open (and its counters to be read)
# Queued writes wait at most this long for others to join them: a batch's transaction costs about
# as much whether it holds one call or a hundred, and the writer shares the proxy's CPU. A write
# after a quiet spell goes at once.
BATCH_DELAY = 0.5
REFRESH_INTERVAL = 1.0  # seconds between two readings of the file's counters (other processes' counts)
RETRY_DELAY = 1.0  # seconds between two attempts while writing fails
PRUNE_INTERVAL = 600.0  # seconds between two deletions of expired counters and old call rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
CREATE TABLE IF NOT EXISTS call_batches (first_ts REAL NOT NULL, last_ts REAL NOT NULL, rows TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS call_batches_last_ts ON call_batches (last_ts);
"""
# A counter past its expiry counts as missing (as Redis drops it), until pruning deletes it.
_ADD = """
INSERT INTO counters (key, value, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN counters.expires <= ?4 THEN excluded.value ELSE counters.value + excluded.value END,
    expires = excluded.expires
"""

# (counter, delta, expires, sequence number) or (ts, row): the row made JSON by the worker
type _Write = tuple[str, int, int, int] | tuple[float, dict[str, Any]]
type _Counts = dict[str, tuple[int, int]]  # counter → (value, expires)

_WAKE = object()  # queued writes to look at
_CLOSE = object()


class SQLiteStore(Unshared):
    """The ledger in a SQLite file, shared by the processes of one machine (`Store`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"the ledger at {path}"
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writes: Backlog[_Write] = Backlog(logger, self.name)
        self._outage = Outage(logger, self.name)
        self._loop: asyncio.AbstractEventLoop | None = None  # where the worker sends the file's counters
        # The counters as this process knows them, and its changes since the file's were last read
        # (sequence number, counter, delta, expires): a reading of the file holds them up to a number.
        self._counts: _Counts = {}
        self._unread: deque[tuple[int, str, int, int]] = deque(maxlen=MAX_HELD)
        self._sequence = 0
        # Raised by the worker before it waits without a timeout: a write queued then must wake it.
        self._idle = False
        self._closed = False
        self._stopped: str | None = None  # why the worker stopped, if it did
        ready: concurrent.futures.Future[_Counts] = concurrent.futures.Future()
        self._worker = threading.Thread(target=self._run, args=(ready,), name=f"tollgate-ledger {path}", daemon=True)
        self._worker.start()
        try:
            self._counts = ready.result(timeout=OPEN_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise StoreError(f"{self.name} could not be opened within {OPEN_TIMEOUT:g} s") from None

    # ---- the event loop's side

    async def reserve(self, charges: Sequence[Charge]) -> Reservation:
        return self.reserve_now(charges)

    def reserve_now(self, charges: Sequence[Charge]) -> Reservation:
        self._check_open("reserve")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        now = time.time()
        values = tuple(self._value(c.counter, now) for c in charges)
        after = dict(zip((c.counter for c in charges), values, strict=True))  # a counter charged twice: both
        for i, charge in enumerate(charges):
            total = after[charge.counter] + charge.amount
            if charge.cap is not None and total > charge.cap:
                return Reservation(False, values, i)
            after[charge.counter] = total
        for charge in charges:
            self._change(charge.counter, charge.amount, charge.expires, now)
        self._wake()
        return Reservation(True, values, None)

    async def read(self, counters: Sequence[str]) -> tuple[int, ...]:
        self._check_open("read")
        now = time.time()
        return tuple(self._value(c, now) for c in counters)

    def adjust(self, changes: Sequence[tuple[str, int, int]]) -> None:
        now = time.time()
        for counter, delta, expires in changes:
            self._change(counter, delta, expires, now)
        self._wake()

    def flushed(self) -> None:
        """The counters are this process's, in memory: a change counts at once."""
        return None

    def record(self, row: dict[str, Any]) -> None:
        ts = row.get("ts")
        self._writes.add((float(ts) if isinstance(ts, (int, float)) else time.time(), row))
        self._wake()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._jobs.put((_CLOSE, loop, done))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), OPEN_TIMEOUT)
        await asyncio.to_thread(self._worker.join, 1.0)

    def calls(self, since: float) -> Iterator[dict[str, Any]]:
        """Read on a connection of its own (read only), so the report never waits for the worker."""
        try:
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {self.name}: {e}") from None
        try:
            cursor = conn.execute("SELECT rows FROM call_batches WHERE last_ts >= ? ORDER BY first_ts", (since,))
            for (rows,) in cursor:
                for line in rows.splitlines():
                    row = decode_row(line)
                    if row.get("ts", since) >= since:
                        yield row
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the calls in {self.name}: {e}") from None
        finally:
            conn.close()

    def _check_open(self, what: str) -> None:
        if self._closed or self._stopped is not None:
            raise StoreError(f"{self.name}: {what} failed: it is {'closed' if self._closed else self._stopped}")

    def _value(self, counter: str, now: float) -> int:
        value, expires = self._counts.get(counter, (0, 0))
        return value if expires > now else 0

    def _change(self, counter: str, delta: int, expires: int, now: float) -> None:
        """A counter changed here at once, and in the file behind."""
        self._counts[counter] = (self._value(counter, now) + delta, expires)
        sequence = self._sequence + 1
        self._unread.append((sequence, counter, delta, expires))
        self._writes.add((counter, delta, expires, sequence))
        self._sequence = sequence  # after the write is queued: the worker reads it before it takes writes

    def _read_back(self, written: int, counts: _Counts) -> None:
        """On the event loop: the file's counters, which hold this process's changes up to
        number `written`, with the changes made since."""
        unread = self._unread
        while unread and unread[0][0] <= written:
            unread.popleft()
        now = time.time()
        for _, counter, delta, expires in unread:
            value, until = counts.get(counter, (0, 0))
            counts[counter] = ((value if until > now else 0) + delta, expires)
        self._counts = counts

    def _wake(self) -> None:
        if self._idle:
            self._idle = False
            self._jobs.put(_WAKE)

    # ---- the worker thread

    def _run(self, ready: concurrent.futures.Future[_Counts]) -> None:
        try:
            conn = self._connect()
            counts = _in_transaction(conn, partial(_counts, conn))
        except (sqlite3.Error, OSError) as e:
            self._stopped = "not open"
            ready.set_exception(StoreError(f"cannot open {self.name}: {e}"))
            return
        ready.set_result(counts)
        try:
            self._serve(conn)
        except BaseException as e:  # a bug: what is queued is lost, and said
            self._stopped = f"stopped ({e!r})"
            logger.exception(f"Tollgate: the writer of {self.name} stopped")
            self._release_closers()
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        parent = Path(self.path).parent
        if not parent.is_dir():  # as for the audit log: a mistyped path is not made
            raise OSError(f"its directory {parent} does not exist")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last commits, never the file
            conn.executescript(_SCHEMA)
            _prune(conn, time.time())
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        last_write = last_prune = last_read = time.monotonic()
        retry_at = 0.0
        while True:
            try:
                job = self._jobs.get(timeout=self._wait(last_write, last_read, retry_at))
            except queue.Empty:
                job = _WAKE
            self._idle = False
            closing = job if isinstance(job, tuple) else None
            with contextlib.suppress(queue.Empty):
                while closing is None:
                    job = self._jobs.get_nowait()
                    closing = job if isinstance(job, tuple) else None
            now = time.monotonic()
            if closing is not None:
                self._write_queued(conn, read_back=False)
                self._say_lost()
                _, loop, done = closing
                loop.call_soon_threadsafe(_done, done)
                return
            due = retry_at if self._outage.failing else last_write + BATCH_DELAY
            read_due = now >= last_read + REFRESH_INTERVAL
            if (len(self._writes) and now >= due) or read_due:
                if self._write_queued(conn, read_back=read_due):
                    last_write = now
                    if read_due:
                        last_read = now
                else:
                    retry_at = now + RETRY_DELAY
            if now - last_prune >= PRUNE_INTERVAL:
                last_prune = now
                with contextlib.suppress(sqlite3.Error):
                    _prune(conn, time.time())

    def _wait(self, last_write: float, last_read: float, retry_at: float) -> float | None:
        """How long the worker may wait for a job: until queued writes are due, or the file's
        counters are to be read again (while there are counters); else for ever."""
        read_at = last_read + REFRESH_INTERVAL if self._counts or self._unread else None
        if not len(self._writes):
            self._idle = True
            if not len(self._writes):  # checked again once the flag is up: `_wake` sees one or the other
                return None if read_at is None else max(0.0, read_at - time.monotonic())
        due = retry_at if self._outage.failing else last_write + BATCH_DELAY
        if read_at is not None:
            due = min(due, read_at)
        return max(0.0, due - time.monotonic())

    def _write_queued(self, conn: sqlite3.Connection, read_back: bool) -> bool:
        """The queued writes, in one transaction; with `read_back`, the file's counters read in it
        too and sent to the event loop."""
        written = self._sequence  # every change up to it is queued, so written once this succeeds
        writes = self._writes.take()

        def write(now: float) -> _Counts | None:
            _apply(conn, writes, now)
            return _counts(conn, now) if read_back else None

        try:
            counts = _in_transaction(conn, write)
        except sqlite3.Error as e:
            self._writes.put_back(writes)
            self._outage.failed("writing to", e)
            return False
        if writes:
            self._outage.recovered("writing to")
            self._writes.written()
        loop = self._loop
        if counts is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._read_back, written, counts)
        return True

    def _say_lost(self) -> None:
        lost = len(self._writes) + self._writes.dropped
        if lost:
            logger.error(f"Tollgate: {lost} writes to {self.name} could not be made before closing and are lost")

    def _release_closers(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if isinstance(job, tuple):
                    job[1].call_soon_threadsafe(_done, job[2])


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _in_transaction(conn: sqlite3.Connection, work: Callable[[float], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(time.time())
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return result


def _counts(conn: sqlite3.Connection, now: float) -> _Counts:
    rows = conn.execute("SELECT key, value, expires FROM counters WHERE expires > ?", (now,))
    return {key: (value, expires) for key, value, expires in rows}


def _apply(conn: sqlite3.Connection, writes: Sequence[_Write], now: float) -> None:
    """The queued writes: counter changes summed per counter, and the call rows as one batch of JSON
    lines in one insert (an insert a call would cost the writer about as much CPU as all of
    Tollgate's steps)."""
    changes: dict[str, list[int]] = {}  # counter → [delta, expires]: one statement per counter
    times: list[float] = []
    lines: list[str] = []
    for write in writes:
        if len(write) == 4:
            counter, delta, expires, _ = write
            change = changes.setdefault(counter, [0, expires])
            change[0] += delta
            change[1] = expires
        else:
            times.append(write[0])
            lines.append(encode_row(write[1]))
    if changes:
        conn.executemany(_ADD, [(k, delta, expires, now) for k, (delta, expires) in changes.items()])
    if lines:
        conn.execute(
            "INSERT INTO call_batches (first_ts, last_ts, rows) VALUES (?, ?, ?)",
            (min(times), max(times), "\n".join(lines)),
        )


def _prune(conn: sqlite3.Connection, now: float) -> None:
    conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM call_batches WHERE last_ts < ?", (now - CALLS_KEPT,))
