"""The ledger in a SQLite file: nothing to install, exact across the processes that share the file.

One connection, used only by a worker thread of its own: the event loop hands it jobs and awaits a
future the thread resolves, so a slow disk or a lock held by another process never stalls the loop.
`reserve` runs in `BEGIN IMMEDIATE` (the file's write lock taken before the counters are read), so
processes sharing the file never both take the last of a cap. Counter changes and call rows are
queued and written in batches; a reservation's transaction takes the queued ones along, so this
process's reservations see its own settled calls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .backlog import Backlog
from .outage import Outage
from .rows import decode_row, encode_row
from .store import CALLS_KEPT, Charge, Reservation, StoreError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's lock before it fails
# Longest a caller awaits the worker: a lock wait plus the transaction, then StoreError.
WAIT_TIMEOUT = BUSY_TIMEOUT + 2.0
# Queued writes wait at most this long for others to join them: each wake-up of the worker costs
# the event loop's thread a hand-over of the interpreter lock. A write after a quiet spell goes at once.
BATCH_DELAY = 0.1
RETRY_DELAY = 1.0  # seconds between two attempts while writing fails
PRUNE_INTERVAL = 600.0  # seconds between two deletions of expired counters and old call rows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
CREATE TABLE IF NOT EXISTS calls (ts REAL NOT NULL, row TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts);
"""
# A counter past its expiry counts as missing (as Redis drops it), until pruning deletes it.
_ADD = """
INSERT INTO counters (key, value, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN counters.expires <= ?4 THEN excluded.value ELSE counters.value + excluded.value END,
    expires = excluded.expires
"""

type _Write = tuple[str, int, int] | tuple[float, str]  # (counter, delta, expires) or (ts, row as JSON)


@dataclass(slots=True)
class _Job:
    what: str  # for the error message
    work: Callable[[sqlite3.Connection, float], Any]  # (connection, now) → result, in a transaction
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    on_cancelled: Callable[[Any], None] | None = None  # given the result the cancelled caller missed


_WAKE = object()  # queued writes to look at
_CLOSE = object()


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"the ledger at {path}"
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writes: Backlog[_Write] = Backlog(logger, self.name)
        self._outage = Outage(logger, self.name)
        # Raised by the worker before it waits without a timeout: a write queued then must wake it.
        self._idle = False
        self._closed = False
        self._stopped: str | None = None  # why the worker stopped, if it did
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._worker = threading.Thread(target=self._run, args=(ready,), name=f"tollgate-ledger {path}", daemon=True)
        self._worker.start()
        try:
            ready.result(timeout=WAIT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise StoreError(f"{self.name} could not be opened within {WAIT_TIMEOUT:g} s") from None

    # ---- the event loop's side

    async def reserve(self, charges: Sequence[Charge]) -> Reservation:
        charges = tuple(charges)
        return await self._submit(
            "reserve", lambda conn, now: _reserve(conn, charges, now), lambda r: self._release(charges, r)
        )

    async def read(self, counters: Sequence[str]) -> tuple[int, ...]:
        counters = tuple(counters)
        return await self._submit("read", lambda conn, now: _read(conn, counters, now))

    def adjust(self, changes: Sequence[tuple[str, int, int]]) -> None:
        for counter, delta, expires in changes:
            self._writes.add((counter, delta, expires))
        self._wake()

    def record(self, row: dict[str, Any]) -> None:
        ts = row.get("ts")
        self._writes.add((float(ts) if isinstance(ts, (int, float)) else time.time(), encode_row(row)))
        self._wake()

    def rest(self, fingerprint: str, until: float) -> None:
        """Rests stay in this process: processes sharing a file have no channel to announce them."""

    def on_rest(self, callback: Callable[[str, float], None]) -> None:
        """No other process's rests reach a SQLite store."""

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._jobs.put((_CLOSE, loop, done))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), WAIT_TIMEOUT)
        await asyncio.to_thread(self._worker.join, 1.0)

    def calls(self, since: float) -> Iterator[dict[str, Any]]:
        """Read on a connection of its own (read only), so the report never waits for the worker."""
        try:
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {self.name}: {e}") from None
        try:
            cursor = conn.execute("SELECT row FROM calls WHERE ts >= ? ORDER BY ts", (since,))
            for (row,) in cursor:
                yield decode_row(row)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the calls in {self.name}: {e}") from None
        finally:
            conn.close()

    async def _submit(
        self, what: str, work: Callable[[sqlite3.Connection, float], Any], on_cancelled: Any = None
    ) -> Any:
        if self._closed or self._stopped is not None:
            raise StoreError(f"{self.name}: {what} failed: it is {'closed' if self._closed else self._stopped}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Job(what, work, loop, future, on_cancelled))
        try:
            return await asyncio.wait_for(future, WAIT_TIMEOUT)
        except TimeoutError:
            raise StoreError(f"{self.name}: {what} failed: no answer within {WAIT_TIMEOUT:g} s") from None

    def _release(self, charges: Sequence[Charge], reservation: Reservation) -> None:
        """A reservation whose caller gave up waiting (cancelled, timed out) is taken back."""
        if reservation.granted:
            self.adjust([(c.counter, -c.amount, c.expires) for c in charges])

    def _wake(self) -> None:
        if self._idle:
            self._idle = False
            self._jobs.put(_WAKE)

    # ---- the worker thread

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as e:
            self._stopped = "not open"
            ready.set_exception(StoreError(f"cannot open {self.name}: {e}"))
            return
        ready.set_result(None)
        try:
            self._serve(conn)
        except BaseException as e:  # a bug: callers get StoreError rather than wait forever
            self._stopped = f"stopped ({e!r})"
            logger.exception(f"Tollgate: the writer of {self.name} stopped")
            self._fail_waiting()
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        parent = Path(self.path).parent
        if not parent.is_dir():  # as for the audit log: a mistyped path is not made
            raise OSError(f"its directory {parent} does not exist")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
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
        last_write = last_prune = 0.0
        retry_at = 0.0
        while True:
            timeout = self._wait_for_writes(last_write, retry_at)
            try:
                first = self._jobs.get(timeout=timeout)
            except queue.Empty:
                first = _WAKE
            self._idle = False
            jobs = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    jobs.append(self._jobs.get_nowait())
            closing = None
            for job in jobs:
                if isinstance(job, _Job):
                    self._do(conn, job)
                elif isinstance(job, tuple):
                    closing = job
            now = time.monotonic()
            if closing is not None:
                self._write_queued(conn)
                self._say_lost()
                _, loop, done = closing
                loop.call_soon_threadsafe(_resolve, done, None, None, None)
                return
            due = retry_at if self._outage.failing else last_write + BATCH_DELAY
            if len(self._writes) and now >= due:
                if self._write_queued(conn):
                    last_write = now
                else:
                    retry_at = now + RETRY_DELAY
            if now - last_prune >= PRUNE_INTERVAL:
                last_prune = now
                with contextlib.suppress(sqlite3.Error):
                    _prune(conn, time.time())

    def _wait_for_writes(self, last_write: float, retry_at: float) -> float | None:
        """How long the worker may wait for a job: until queued writes are due, else for ever."""
        if not len(self._writes):
            self._idle = True
            if not len(self._writes):  # checked again once the flag is up: `_wake` sees one or the other
                return None
        due = retry_at if self._outage.failing else last_write + BATCH_DELAY
        return max(0.0, due - time.monotonic())

    def _do(self, conn: sqlite3.Connection, job: _Job) -> None:
        result = error = None
        try:
            result = self._transaction(conn, job.what, job.work)
        except StoreError as e:
            error = e
        job.loop.call_soon_threadsafe(_resolve, job.future, result, error, job.on_cancelled)

    def _transaction(
        self, conn: sqlite3.Connection, what: str, work: Callable[[sqlite3.Connection, float], Any]
    ) -> Any:
        """`work` in one transaction with the queued writes: one commit for both."""
        writes = self._writes.take()

        def both(now: float) -> Any:
            _apply(conn, writes, now)
            return work(conn, now)

        try:
            result = _in_transaction(conn, both)
        except sqlite3.Error as e:
            if writes:
                self._writes.put_back(writes)
                self._outage.failed("writing to", e)
            raise StoreError(f"{self.name}: {what} failed: {e}") from None
        if writes:
            self._written()
        return result

    def _write_queued(self, conn: sqlite3.Connection) -> bool:
        while len(self._writes):
            writes = self._writes.take()
            try:
                _in_transaction(conn, partial(_apply, conn, writes))
            except sqlite3.Error as e:
                self._writes.put_back(writes)
                self._outage.failed("writing to", e)
                return False
        self._written()
        return True

    def _written(self) -> None:
        self._outage.recovered("writing to")
        self._writes.written()

    def _say_lost(self) -> None:
        lost = len(self._writes) + self._writes.dropped
        if lost:
            logger.error(f"Tollgate: {lost} writes to {self.name} could not be made before closing and are lost")

    def _fail_waiting(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if isinstance(job, _Job):
                    error = StoreError(f"{self.name} is {self._stopped}")
                    job.loop.call_soon_threadsafe(_resolve, job.future, None, error, None)
                elif isinstance(job, tuple):
                    job[1].call_soon_threadsafe(_resolve, job[2], None, None, None)


def _resolve(
    future: asyncio.Future[Any], result: Any, error: BaseException | None, on_cancelled: Callable[[Any], None] | None
) -> None:
    """On the event loop: the worker's answer to a caller that may have stopped waiting."""
    if future.done():
        if error is None and on_cancelled is not None:
            on_cancelled(result)
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _in_transaction(conn: sqlite3.Connection, work: Callable[[float], Any]) -> Any:
    # IMMEDIATE: the write lock before the first read, so that what is read is still so at the commit.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(time.time())
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return result


def _values(conn: sqlite3.Connection, counters: Sequence[str], now: float) -> dict[str, int]:
    keys = list(dict.fromkeys(counters))
    marks = ",".join("?" * len(keys))
    rows = conn.execute(f"SELECT key, value FROM counters WHERE key IN ({marks}) AND expires > ?", (*keys, now))
    return dict(rows)


def _reserve(conn: sqlite3.Connection, charges: Sequence[Charge], now: float) -> Reservation:
    if not charges:
        return Reservation(True, (), None)
    before = _values(conn, [c.counter for c in charges], now)
    values = tuple(before.get(c.counter, 0) for c in charges)
    after = dict(before)  # a counter charged twice is checked with both amounts
    for i, charge in enumerate(charges):
        total = after.get(charge.counter, 0) + charge.amount
        if charge.cap is not None and total > charge.cap:
            return Reservation(False, values, i)
        after[charge.counter] = total
    conn.executemany(_ADD, [(c.counter, c.amount, c.expires, now) for c in charges])
    return Reservation(True, values, None)


def _read(conn: sqlite3.Connection, counters: Sequence[str], now: float) -> tuple[int, ...]:
    if not counters:
        return ()
    values = _values(conn, counters, now)
    return tuple(values.get(c, 0) for c in counters)


def _apply(conn: sqlite3.Connection, writes: Sequence[_Write], now: float) -> None:
    """The queued writes, counter changes summed per counter."""
    changes: dict[str, list[int]] = {}  # counter → [delta, expires]: one statement per counter
    rows: list[tuple[float, str]] = []
    for write in writes:
        if len(write) == 3:
            counter, delta, expires = write
            change = changes.setdefault(counter, [0, expires])
            change[0] += delta
            change[1] = expires
        else:
            rows.append(write)
    if changes:
        conn.executemany(_ADD, [(k, delta, expires, now) for k, (delta, expires) in changes.items()])
    if rows:
        conn.executemany("INSERT INTO calls (ts, row) VALUES (?, ?)", rows)


def _prune(conn: sqlite3.Connection, now: float) -> None:
    conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM calls WHERE ts < ?", (now - CALLS_KEPT,))
