"""The console's own reads, recorded (`console.access_log`): a `console_access` record per API
request of a signed-in person or of the token's holder, one per sign-in, failed sign-in and
logout. Of a person nothing is kept but the e-mail; of a request its path, its query without any
`token`, and its status.

Every request's record is written as it is answered, so that a crash loses none. A page polls:
the requests that repeat one (differ only in `after`, Live's cursor, or not at all, the header's
look at `/api/audit`) in the minute after it are one record, with their `count`, written when
that minute is over (or the console stops). Records are JSON lines in
the file, and, when the console reads PostgreSQL, rows of the table `tollgate_console_access`
too, sent from the file by the one file sender (`AccessSender`, as the audit is sent): a database
that cannot be reached never holds a request, the file stays the record, and what it holds is sent
once the database is back. Each record is a row once: a batch sent again (after a crash between its
commit and its place in the file being written) adds nothing (`record_key`)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import urlencode

import orjson

from tollgate.console.viewer import Viewer
from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.kinds import read_record
from tollgate.records.senders.file_sender import SENT, FileSender, Outcome, Pacing

logger = logging.getLogger(__name__)

SUFFIX = ".console-access.jsonl"  # beside the audit, by default
TABLE = "tollgate_console_access"
FOLD_S = 60.0  # the repeats of a request written (polls that differ only in `after`) are one record per this
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
        self._sender = AccessSender(path, dsn, keep_days).start() if dsn else None
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
        if self._sender is not None:
            self._sender.stop()  # what the file holds and the table not yet: sent by the next start

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


class AccessSender(FileSender):
    """The access log's file sent to the table `tollgate_console_access` of the database `dsn`
    names, by the one file sender the audit's senders are (`records/senders/file_sender.py`): the
    file is the spool, a place in it kept beside it, a rotation followed, a batch sent again until
    it is taken; the rows older than `keep_days` removed now and then."""

    POSITION_SUFFIX = ".postgres-position"
    LOCK_SUFFIX = ".postgres-lock"
    destination = "PostgreSQL"
    verb = "sent to PostgreSQL"

    def __init__(self, path: Path, dsn: str, keep_days: float | None, **pacing: Unpack[Pacing]) -> None:
        super().__init__(str(path), **pacing)
        self.dsn = dsn
        self.keep_days = keep_days
        self._conn: Any = None
        self._next_purge = 0.0
        self.purge_failed = False

    @property
    def where(self) -> str:
        from tollgate.records.senders.audit_postgres import described

        return described(self.dsn)

    @property
    def title(self) -> str:
        return f"the console access log's sending to PostgreSQL ({self.where}, table {TABLE})"

    def deliver(self, lines: list[bytes], timeout: float | None) -> Outcome:
        import psycopg

        from tollgate.records.senders.audit_postgres import SchemaTooNew, first_line

        try:
            conn = self._connected()
            with conn.transaction():
                for line in lines:
                    record = read_record(line)
                    if record is not None and record.get("event") == "console_access":
                        insert(conn, record, line)  # a line cut by a crash mid-write: the file's alone
        except SchemaTooNew as e:
            return Outcome(False, False, str(e), halt=True)
        except (psycopg.Error, OSError) as e:  # down, unreachable, refused: tried again, never dropped
            self.close_destination()
            return Outcome(False, True, f"cannot write it: {first_line(e)}")
        self.idle()
        return SENT

    def _connected(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, application_name="tollgate-console")
            try:
                ensure_table(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def idle(self) -> None:
        """The rows older than keep_days removed, every PURGE_S; a role that may not (the console's
        own may only insert) said once, and the records still sent."""
        import psycopg

        from tollgate.records.senders.audit_postgres import SchemaTooNew, first_line

        if self.keep_days is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_S
        try:
            conn = self._connected()
            with conn.transaction():
                conn.execute(f"DELETE FROM {TABLE} WHERE ts < now() - %s * interval '1 day'", (self.keep_days,))
        except (psycopg.Error, SchemaTooNew, OSError) as e:
            if not self.purge_failed:
                print(f"tollgate console: access log: cannot remove rows older than keep_days: {first_line(e)}",
                      file=sys.stderr, flush=True)  # fmt: skip
            self.purge_failed = True
            if not isinstance(e, psycopg.errors.InsufficientPrivilege):
                self.close_destination()

    def close_destination(self) -> None:
        from tollgate.records.senders.audit_postgres import close_quietly

        conn, self._conn = self._conn, None
        close_quietly(conn)


# The access table's schema, each version's statements (`audit_postgres.migrate`).
MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY, ts timestamptz NOT NULL, action text NOT NULL, email text, role text,
    path text, query text, status integer, count integer, reason text, line text NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (ts)",
    ),
    # Each record once: a row's key is the SHA-256 of its line (`record_key`), a batch sent again
    # (taken, but its place in the file not yet written) adds nothing. The rows already there get
    # theirs, and of the copies a batch sent again left, the first alone stays.
    2: (
        'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS key text COLLATE "C"',
        "UPDATE {table} SET key = encode(sha256(convert_to(line, 'UTF8')), 'hex') WHERE key IS NULL",
        "DELETE FROM {table} a USING {table} b WHERE a.key = b.key AND a.id > b.id",
        "ALTER TABLE {table} ALTER COLUMN key SET NOT NULL",
        "CREATE UNIQUE INDEX IF NOT EXISTS {key_index} ON {table} (key)",
    ),
}
TABLE_VERSION = max(MIGRATIONS)


def ensure_table(conn: Any) -> None:
    """The table made when missing, or migrated, its version in `tollgate_schema`; SchemaTooNew when
    it is newer than this Tollgate knows."""
    from psycopg import sql

    from tollgate.records.senders.audit_postgres import migrate

    names = {"table": sql.Identifier(TABLE), "ts_index": sql.Identifier(f"{TABLE}_ts"),
             "key_index": sql.Identifier(f"{TABLE}_key")}  # fmt: skip
    migrate(conn, TABLE, MIGRATIONS, names, kept="the access log's file")


def record_key(text: str) -> str:
    """A row's key: the SHA-256 (hex) of its line as stored, equal for every copy of the line and
    unique as long as no two records are byte for byte the same (each names its time to the
    millisecond, and the repeats of a request within a minute are one record)."""
    return hashlib.sha256(text.encode()).hexdigest()


def insert(conn: Any, record: dict[str, Any], line: bytes) -> None:
    """The record's row, unless its line is there already (its batch sent again)."""
    text = line.decode().rstrip("\n")
    conn.execute(
        f"INSERT INTO {TABLE} (ts, action, email, role, path, query, status, count, reason, line, key)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
        (record["ts"], record["action"], record.get("email"), record.get("role"), record.get("path"),
         record.get("query"), record.get("status"), record.get("count"), record.get("reason"),
         text, record_key(text)),
    )  # fmt: skip
