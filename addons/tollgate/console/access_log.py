"""The console's own reads, recorded (`console.access_log`): a `console_access` record per API
request of a signed-in person or of the token's holder, one per sign-in, failed sign-in and
logout. Of a person nothing is kept but the e-mail; of a request its path, its query without any
`token`, and its status.

Every request's record is written as it is answered, so that a crash loses none. A page polls:
the requests that repeat one (differ only in `after`, Live's cursor, or not at all, the header's
look at `/api/audit`) in the minute after it are one record, with their `count`, written when
that minute is over (or the console stops). Records are JSON lines in
the file, and, when the console reads PostgreSQL, rows of the table `tollgate_console_access`
too, sent by a thread of their own: a database that cannot be reached never holds a request, and
the file stays the record."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from tollgate.console.viewer import Viewer
from tollgate.records.audit.audit_record import utc_timestamp

logger = logging.getLogger(__name__)

SUFFIX = ".console-access.jsonl"  # beside the audit, by default
TABLE = "tollgate_console_access"
FOLD_S = 60.0  # the repeats of a request written (polls that differ only in `after`) are one record per this
RETRY_S = 30.0  # after PostgreSQL failed, records go to the file alone this long
QUEUED = 10_000  # records waiting for PostgreSQL, at most: more are in the file alone
PURGE_S = 3600.0  # between two removals of rows older than keep_days
TAIL_BLOCK = 1 << 16  # read back from the file's end this much at a time
POLL_PARAMETER = "after"


def default_path(audit_path: str) -> Path:
    return Path(audit_path + SUFFIX)


def query_text(query: Mapping[str, list[str]]) -> str:
    """The query as recorded: never a `token`."""
    return urlencode([(k, v) for k, values in query.items() if k != "token" for v in values])


def who(viewer: Viewer) -> str:
    return viewer.email or "token"


class AccessLog:
    """Writes the records to `path` (and to PostgreSQL at `dsn`); `recent` reads them back."""

    def __init__(
        self,
        path: Path,
        dsn: str | None = None,
        keep_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        # Requests written, their repeats being folded: (who, role, path, query without `after`,
        # status) -> [the written one's ts, repeats since, the first repeat's ts, its query]
        self._folds: dict[tuple[str, str, str, str, int], list[Any]] = {}
        self._table: _Table | None = _Table(dsn, keep_days) if dsn else None
        self._failing = False  # the file could not be written: said once, until it can

    # ---- what is recorded

    def request(self, viewer: Viewer, path: str, query: Mapping[str, list[str]], status: int) -> None:
        """Written at once, unless it repeats the same person's same request (but for `after`)
        written in the minute before: then counted, and written with the other repeats when that
        minute is over."""
        now = self.clock()
        shown = query_text(query)
        rest = query_text({k: v for k, v in query.items() if k != POLL_PARAMETER})
        key = (who(viewer), viewer.role, path, rest, status)
        with self._lock:
            fold = self._folds.get(key)
            if fold is not None and now - fold[0] < FOLD_S:
                if not fold[1]:
                    fold[2], fold[3] = now, shown
                fold[1] += 1
                return
            self._folds.pop(key, None)  # the new fold last: folds are written in the order they began
            self._folds[key] = [now, 0, now, shown]
        if fold is not None and fold[1]:
            self._write_fold(key, fold)
        email, role, _, _, _ = key
        self._write({"action": "request", "email": email, "role": role, "path": path, "query": shown,
                     "status": status, "count": 1}, now)  # fmt: skip

    def sign_in(self, viewer: Viewer) -> None:
        self._write({"action": "sign_in", "email": viewer.email, "role": viewer.role, "status": 303}, self.clock())

    def failed(self, reason: str, email: str | None, status: int) -> None:
        self._write({"action": "sign_in_failed", "email": email, "reason": reason, "status": status}, self.clock())

    def logout(self, viewer: Viewer) -> None:
        self._write({"action": "logout", "email": who(viewer), "role": viewer.role, "status": 303}, self.clock())

    def flush(self, everything: bool = False) -> None:
        """The folds whose minute is over written (all of them with `everything`)."""
        now = self.clock()
        with self._lock:
            done = [(k, f) for k, f in self._folds.items() if everything or now - f[0] >= FOLD_S]
            for key, _ in done:
                del self._folds[key]
        for key, fold in done:
            if fold[1]:
                self._write_fold(key, fold)

    def close(self) -> None:
        self.flush(everything=True)
        if self._table is not None:
            self._table.close()

    def _write_fold(self, key: tuple[str, str, str, str, int], fold: list[Any]) -> None:
        """The repeats of a request written: at the first one's time, with its query and their count."""
        email, role, path, _, status = key
        self._write({"action": "request", "email": email, "role": role, "path": path, "query": fold[3],
                     "status": status, "count": fold[1]}, fold[2])  # fmt: skip

    def _write(self, fields: dict[str, Any], at: float) -> None:
        record = {"event": "console_access", "ts": utc_timestamp(at), **fields}
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            try:
                # Opened each time: a rotation by logrotate moves the file away between two records.
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
                self._failing = False
            except OSError as e:
                if not self._failing:
                    print(f"tollgate console: access log {self.path}: cannot write: {e.strerror}", file=sys.stderr,
                          flush=True)  # fmt: skip
                self._failing = True
            if self._table is not None:
                self._table.put(record, line)  # in the file's order

    # ---- read back

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest `limit` records, newest first: the folds under way among them."""
        with self._lock:
            open_folds = [
                {"event": "console_access", "ts": utc_timestamp(f[2]), "action": "request", "email": k[0],
                 "role": k[1], "path": k[2], "query": f[3], "status": k[4], "count": f[1]}
                for k, f in self._folds.items() if f[1]
            ]  # fmt: skip
        found = [orjson.loads(line) for line in _last_lines(self.path, limit)]
        # Newest first: the file's order reversed, the folds under way among them by their time.
        merged = sorted([*reversed(found), *open_folds], key=lambda r: str(r.get("ts")), reverse=True)
        return merged[:limit]


def _last_lines(path: Path, count: int) -> list[bytes]:
    """The file's last `count` whole lines, read from its end (the log grows for as long as it is kept)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - TAIL_BLOCK)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = [line for line in data.split(b"\n") if line.strip()]
    if end > 0:
        lines = lines[1:]  # the first may be cut
    kept = []
    for line in lines[-count:] if count else []:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line cut by a crash mid-write
        kept.append(line)
    return kept


class _Table:
    """The records sent to PostgreSQL by a thread of their own. A failure is said once (until the
    database answers again), and for RETRY_S the records go to the file alone."""

    def __init__(self, dsn: str, keep_days: float | None) -> None:
        self.dsn = dsn
        self.keep_days = keep_days
        self.purge_failed = False
        self.queue: queue.Queue[tuple[dict[str, Any], bytes] | None] = queue.Queue(QUEUED)
        self.thread = threading.Thread(target=self._run, name="tollgate-console-access", daemon=True)
        self.thread.start()

    def put(self, record: dict[str, Any], line: bytes) -> None:
        try:
            self.queue.put_nowait((record, line))
        except queue.Full:
            pass  # the file has it

    def close(self, timeout: float = 10.0) -> None:
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self.thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        from tollgate.records.senders.audit_postgres import described, first_line

        conn: psycopg.Connection | None = None
        failed_at: float | None = None
        purged_at = 0.0
        while True:
            item = self.queue.get()
            if item is None:
                break
            if failed_at is not None and time.monotonic() - failed_at < RETRY_S:
                continue
            record, line = item
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                    ensure_table(conn)
                if self.keep_days is not None and time.monotonic() - purged_at >= PURGE_S:
                    purged_at = time.monotonic()
                    self._purge(conn)
                insert(conn, record, line)
                if failed_at is not None:
                    print(f"tollgate console: access log: PostgreSQL {described(self.dsn)} answers again",
                          file=sys.stderr, flush=True)  # fmt: skip
                failed_at = None
            except Exception as e:  # psycopg.Error, OSError, SchemaTooNew: never the console's end
                if failed_at is None:
                    print(f"tollgate console: access log: PostgreSQL {described(self.dsn)}: {first_line(e)};"
                          " the file keeps the records", file=sys.stderr, flush=True)  # fmt: skip
                failed_at = time.monotonic()
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _purge(self, conn: Any) -> None:
        """The rows older than keep_days removed; a role that may not (the console's own may only
        insert) said once, and the records still sent."""
        from tollgate.records.senders.audit_postgres import first_line

        try:
            with conn.transaction():
                conn.execute(f"DELETE FROM {TABLE} WHERE ts < now() - %s * interval '1 day'", (self.keep_days,))
        except Exception as e:  # psycopg.Error: a role without DELETE
            if not self.purge_failed:
                print(f"tollgate console: access log: cannot remove rows older than keep_days: {first_line(e)}",
                      file=sys.stderr, flush=True)  # fmt: skip
            self.purge_failed = True


# The access table's schema, each version's statements (`audit_postgres.migrate`).
MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY, ts timestamptz NOT NULL, action text NOT NULL, email text, role text,
    path text, query text, status integer, count integer, reason text, line text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (ts)",
    ),
}
TABLE_VERSION = max(MIGRATIONS)


def ensure_table(conn: Any) -> None:
    """The table made when missing, its version in `tollgate_schema`; SchemaTooNew when it is newer
    than this Tollgate knows."""
    from psycopg import sql

    from tollgate.records.senders.audit_postgres import migrate

    names = {"table": sql.Identifier(TABLE), "ts_index": sql.Identifier(f"{TABLE}_ts")}
    migrate(conn, TABLE, MIGRATIONS, names, kept="the access log's file")


def insert(conn: Any, record: dict[str, Any], line: bytes) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (ts, action, email, role, path, query, status, count, reason, line)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (record["ts"], record["action"], record.get("email"), record.get("role"), record.get("path"),
         record.get("query"), record.get("status"), record.get("count"), record.get("reason"),
         line.decode().rstrip("\n")),
    )  # fmt: skip
