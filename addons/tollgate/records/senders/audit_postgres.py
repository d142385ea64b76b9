"""The audit sent to PostgreSQL (`audit.postgres`): each record once, from the file.

A `FileSender` (`file_sender.py`: the file followed across rotations, the position in
`<audit path>.postgres-position`, one sender per file by a lock on `<audit path>.postgres-lock`,
the back-off while the database cannot be reached) whose batches go to one table by COPY. Nothing
is counted twice: a row's key is its record's `chain` (a line without one, the SHA-256 of the line:
`otlp_logs.record_id`), and a row sent again (taken, but its position not yet written) is ignored
(`ON CONFLICT DO NOTHING`).

The table keeps each record exactly as written (`line`) beside the columns the views ask, taken
from the line by `row_of` (U+0000 replaced in the columns, never in `line`); `id` numbers the rows
in the order they arrived. Tollgate creates the table and its indexes when they are missing and
migrates a schema it knows (`tollgate_schema`: a version per table), under an advisory lock so that
a fleet's instances do it once; a schema newer than it knows stops the sender with one line.
`keep_days` removes older rows at the start and every `PURGE_SECONDS`, whether or not records are sent."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Unpack

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tollgate.records.audit.kinds import read_record
from tollgate.records.senders.file_sender import (
    SENT,
    FileSender,
    Outcome,
    Pacing,
)
from tollgate.records.senders.otlp_logs import record_id, time_of
from tollgate.records.senders.record_sums import MIGRATION as SUMS_MIGRATION
from tollgate.records.senders.record_sums import ensure_indexes
from tollgate.records.senders.record_sums import names as sums_names

logger = logging.getLogger(__name__)

POSITION_SUFFIX = ".postgres-position"
LOCK_SUFFIX = ".postgres-lock"
BATCH_RECORDS = 5000  # rows per COPY, at most: a round trip per batch, not per record
CONNECT_SECONDS = 10  # to connect
STATEMENT_SECONDS = 60  # a statement that takes longer is cancelled by the server, and sent again
PURGE_SECONDS = 3600.0  # between two removals of the rows older than keep_days

SCHEMA_TABLE = "tollgate_schema"
# pg_advisory_xact_lock's key while a schema is made or migrated: b"tollgate" as a number.
SCHEMA_LOCK = int.from_bytes(b"tollgate", "big") & 0x7FFF_FFFF_FFFF_FFFF
INDEX_LOCK = SCHEMA_LOCK - 1  # held by the one instance that builds the event list's indexes
NUL, REPLACEMENT = "\x00", "\ufffd"
_INT8 = 1 << 63
_INT4 = 1 << 31


# ---- a row from a line


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.replace(NUL, REPLACEMENT) if NUL in value else value


def _int8(value: Any) -> int | None:
    return value if type(value) is int and -_INT8 <= value < _INT8 else None


def _int4(value: Any) -> int | None:
    return value if type(value) is int and -_INT4 <= value < _INT4 else None


def _float8(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _numeric(value: Any) -> Decimal | None:
    # The number as the line writes it: a float's shortest repr is what orjson wrote.
    return Decimal(repr(value)) if type(value) in (int, float) else None


def _texts(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [v.replace(NUL, REPLACEMENT) for v in value]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: Any) -> datetime | None:
    ns = time_of(value)
    return _EPOCH + timedelta(microseconds=ns // 1000) if ns else None


# The columns taken from a record's fields: name, SQL type, the field's value as the column holds it
# (None where the field is missing or not of the column's kind: the line still holds it).
FIELD_COLUMNS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("instance", "text", _text),
    ("seq", "bigint", _int8),
    ("ts", "timestamptz", _timestamp),
    ("event", "text", _text),
    ("request_id", "text", _text),
    ("client", "text", _text),
    ("auth", "text", _text),
    ("groups", "text[]", _texts),
    ("account", "text", _text),
    ("tenant", "text", _text),
    ("provider", "text", _text),
    ("model", "text", _text),
    ("requested_model", "text", _text),
    ("endpoint", "text", _text),
    ("server", "text", _text),
    ("tool", "text", _text),
    ("decision", "text", _text),
    ("status", "integer", _int4),
    ("refusal", "text", _text),
    ("error", "text", _text),
    ("input_tokens", "bigint", _int8),
    ("output_tokens", "bigint", _int8),
    ("cached_tokens", "bigint", _int8),
    ("reasoning_tokens", "bigint", _int8),
    ("cache_write_tokens", "bigint", _int8),
    ("cost_usd", "numeric", _numeric),
    ("latency_ms", "double precision", _float8),
)
# Every column a row is sent with, in order: the key, the fields', the line (and its bytes, when
# text cannot hold them exactly: not UTF-8, or a NUL byte).
COLUMNS = ("chain", *(name for name, _, _ in FIELD_COLUMNS), "line", "raw")
_NAMES = tuple(name for name, _, _ in FIELD_COLUMNS)
_TEXTS = tuple(i for i, (_, _, read) in enumerate(FIELD_COLUMNS) if read is _text)
_OTHERS = tuple((i, read) for i, (_, _, read) in enumerate(FIELD_COLUMNS) if read is not _text)
_NO_FIELDS = (None,) * len(FIELD_COLUMNS)


def row_of(line: bytes) -> tuple[Any, ...]:
    """The row of a line (without its newline), its values in `COLUMNS`' order: what the table
    holds of it, and what verification compares the stored columns with. This runs for every
    record: a text column's value is looked at only when it is not a string without NUL."""
    record = read_record(line)
    chain = record_id(line, record)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    raw = None
    if text is None or NUL in text:
        text, raw = line.decode("utf-8", "replace").replace(NUL, REPLACEMENT), line
    if record is None:
        return (chain, *_NO_FIELDS, text, raw)
    values = list(map(record.get, _NAMES))
    for i in _TEXTS:
        value = values[i]
        if value is not None and (type(value) is not str or NUL in value):
            values[i] = _text(value)
    for i, read in _OTHERS:
        values[i] = read(values[i])
    return (chain, *values, text, raw)


def row_dict(line: bytes) -> dict[str, Any]:
    """`row_of` by column name."""
    return dict(zip(COLUMNS, row_of(line), strict=True))


# ---- the schema


class SchemaTooNew(Exception):
    """The table's schema is of a version this Tollgate does not know."""

    def __init__(self, table: str, version: int, known: int, kept: str = "the audit file") -> None:
        super().__init__(table, version)
        self.table, self.version, self.known, self.kept = table, version, known, kept

    def __str__(self) -> str:
        return (
            f"the table {self.table} has schema version {self.version} ({SCHEMA_TABLE}), newer than this Tollgate"
            f" knows ({self.known}): its records stay in {self.kept}; upgrade Tollgate to send them"
        )


def _column_definitions() -> str:
    return ",\n    ".join(f"{name} {kind}" for name, kind, _ in FIELD_COLUMNS)


# Each version's statements, which take the schema from the version before to it ({table}: the
# table; {ts_index}, …: its indexes, named after it by `_names`).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE IF NOT EXISTS {{table}} (
    id bigserial PRIMARY KEY,
    chain text COLLATE "C" NOT NULL UNIQUE,
    {_column_definitions()},
    line text NOT NULL,
    raw bytea,
    received timestamptz NOT NULL DEFAULT now()
)""",
        "CREATE INDEX IF NOT EXISTS {ts_index} ON {table} (ts)",
        "CREATE INDEX IF NOT EXISTS {instance_index} ON {table} (instance, seq)",
        "CREATE INDEX IF NOT EXISTS {client_index} ON {table} (client, ts)",
    ),
    # The views' sums kept by the database, and their backfill (`record_sums.py`); the event
    # list's indexes are built after, concurrently (`ensure_schema`).
    2: SUMS_MIGRATION,
}
SCHEMA_VERSION = max(MIGRATIONS)


def _names(table: str) -> dict[str, sql.Identifier]:
    return {
        "table": sql.Identifier(table),
        "ts_index": sql.Identifier(f"{table}_ts"),
        "instance_index": sql.Identifier(f"{table}_instance_seq"),
        "client_index": sql.Identifier(f"{table}_client_ts"),
        **sums_names(table),
    }


def schema_version(conn: psycopg.Connection, table: str) -> int:
    """The version of `table`'s schema (0: none yet)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(
        sql.SQL("SELECT version FROM {} WHERE name = %s").format(sql.Identifier(SCHEMA_TABLE)), (table,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def ensure_schema(conn: psycopg.Connection, table: str) -> int:
    """The records' table and its indexes made, or migrated to `SCHEMA_VERSION` (`migrate`), the
    event list's indexes built where missing (`record_sums.ensure_indexes`, outside the migration's
    transaction); the version it was at."""
    found = migrate(conn, table, MIGRATIONS, _names(table))
    ensure_indexes(conn, table, INDEX_LOCK)  # one look at the catalog when they are there
    return found


def migrate(
    conn: psycopg.Connection,
    name: str,
    migrations: Mapping[int, tuple[str, ...]],
    names: Mapping[str, sql.Composable],
    kept: str = "the audit file",
) -> int:
    """The table `name` made, or migrated to the newest of `migrations` (each version's statements,
    `names` filled in), in one transaction (`conn` in autocommit) under an advisory lock (a fleet's
    instances start together), its version written in `tollgate_schema`; the version it was at.
    SchemaTooNew when it is newer than this Tollgate knows (its records stay in `kept`): nothing
    changed."""
    latest = max(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = schema_version(conn, name)
        if found > latest:
            raise SchemaTooNew(name, found, latest, kept)
        if found == latest:
            return found
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, version integer NOT NULL)").format(
                sql.Identifier(SCHEMA_TABLE)
            )
        )
        for version in range(found + 1, latest + 1):
            for statement in migrations[version]:
                conn.execute(sql.SQL(statement).format(**names))  # built here: no input
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, version) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version"
            ).format(sql.Identifier(SCHEMA_TABLE)),
            (name, latest),
        )
    return found


# ---- rows stored

_INCOMING = "tollgate_incoming"  # a temporary table of the connection's own: a batch COPY'd, then inserted
_COPY_TYPES = ["text", *(kind.replace("double precision", "float8") for _, kind, _ in FIELD_COLUMNS), "text", "bytea"]


def prepare(conn: psycopg.Connection) -> None:
    """A connection made ready to `store`: its statements' time bounded, and its transactions' between
    two statements (a sender stopped half-way holds its claim on ids, which the console's lists wait
    for, no longer), its own table for a batch."""
    conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_SECONDS * 1000)))
    conn.execute(sql.SQL("SET idle_in_transaction_session_timeout = {}").format(sql.Literal(STATEMENT_SECONDS * 1000)))
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} (n serial, {}, line text, raw bytea) ON COMMIT DELETE ROWS").format(
            sql.Identifier(_INCOMING),
            sql.SQL(f"chain text, {_column_definitions()}"),  # built here: no input
        )
    )


# ---- ids claimed: a bigserial id is taken at insert and seen at commit, so that two senders'
# batches may commit out of their ids' order. Each batch's transaction holds, until it ends, a shared
# advisory lock whose key says the table (`claim_tag`) and an id below every id it takes (the
# newest it sees before taking any); a reader's `settled` id is below every claim held: no row at
# or below it can still appear.

CLAIM_SHIFT = 48  # an id's bits in a claim's key; the table's tag above them


def claim_tag(table: str) -> int:
    """The table's 15 bits in its claims' keys (positive: the key's sign bit stays clear)."""
    return int.from_bytes(hashlib.sha256(table.encode()).digest()[:2], "big") & 0x7FFF


def claim_ids(cursor: psycopg.Cursor, table: str) -> None:
    """The transaction's claim on the ids it will take: held until it commits or rolls back."""
    cursor.execute(
        sql.SQL("SELECT pg_advisory_xact_lock_shared((%s::bigint << {}) | (coalesce(max(id), 0) & %s)) FROM {}").format(
            sql.Literal(CLAIM_SHIFT), sql.Identifier(table)
        ),
        (claim_tag(table), (1 << CLAIM_SHIFT) - 1),
    )


def settled(conn: psycopg.Connection, table: str) -> int:
    """The newest id at or below which every row is there to read (committed, or never to be): the
    newest id now, or just below the lowest id a batch being stored claims. Read in a statement of
    its own, before the rows it bounds (in a later statement: its own snapshot, in autocommit or
    READ COMMITTED). A sender that claims nothing (older than this) may still commit below it."""
    row = conn.execute(
        sql.SQL(
            """SELECT least((SELECT coalesce(max(id), 0) FROM {}), (
    SELECT min(((l.classid::bigint & 65535) << 32) | l.objid::bigint) FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND (l.classid::bigint >> 16) = %s
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())))"""
        ).format(sql.Identifier(table)),
        (claim_tag(table),),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def store(conn: psycopg.Connection, table: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """The rows inserted in their order (a row whose chain is there already left out), in one
    transaction, on a connection `prepare`d (in autocommit); how many were new. COPY'd straight into
    the table; where one of them is there already (sent again after a restart), that transaction is
    undone and the batch goes, in another, through the connection's own table and `INSERT … ON
    CONFLICT DO NOTHING` instead. `rows` is taken as the COPY goes (a generator's rows made while the
    server stores those before them).

    The transaction first claims the ids it takes (`claim_ids`), so that a reader ordered by id never
    passes one of them before it is committed."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    taken: list[tuple[Any, ...]] = []

    def taking() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            taken.append(row)
            yield row

    source = taking()
    with conn.cursor() as cursor:
        try:  # a transaction of four statements (BEGIN, the claim, the COPY, COMMIT): one a batch
            with conn.transaction():
                claim_ids(cursor, table)
                _copy(cursor, sql.Identifier(table), columns, source)
            return len(taken)
        except psycopg.errors.UniqueViolation:
            pass  # undone: its ids are never to be
        taken.extend(source)  # those the COPY had not reached
        with conn.transaction():
            claim_ids(cursor, table)
            _copy(cursor, sql.Identifier(_INCOMING), columns, taken)
            cursor.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY n ON CONFLICT (chain) DO NOTHING").format(
                    sql.Identifier(table), columns, columns, sql.Identifier(_INCOMING)
                )
            )
            return cursor.rowcount


def _copy(
    cursor: psycopg.Cursor, into: sql.Identifier, columns: sql.Composable, rows: Iterable[tuple[Any, ...]]
) -> None:
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(into, columns)) as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def remove_older(conn: psycopg.Connection, table: str, keep_days: float) -> int:
    """The rows older than `keep_days` (by their record's `ts`) removed; how many."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE ts < now() - %s * interval '1 day'").format(sql.Identifier(table)),
            (keep_days,),
        )
        return cursor.rowcount


def described(dsn: str) -> str:
    """Where a DSN points, as the log may say it: host:port/database, never the user's password."""
    try:
        parts: Mapping[str, Any] = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "PostgreSQL"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    database = str(parts.get("dbname") or parts.get("user") or "")
    return f"{host}:{port}/{database}"


def close_quietly(conn: psycopg.Connection | None) -> None:
    """A connection closed, if any; one the database already dropped closes without a word."""
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass


def first_line(error: BaseException) -> str:
    """An error's first line, as a log line says it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ---- the sender


class AuditPostgres(FileSender):
    """Sends the audit file at `audit_path` to the table `table` of the database `dsn` names
    (`FileSender`), removing its rows older than `keep_days`."""

    POSITION_SUFFIX = POSITION_SUFFIX
    LOCK_SUFFIX = LOCK_SUFFIX
    destination = "PostgreSQL"
    verb = "sent to PostgreSQL"

    def __init__(
        self,
        audit_path: str,
        dsn: str,
        table: str = "tollgate_records",
        *,
        keep_days: float | None = None,
        connect_timeout: float = CONNECT_SECONDS,
        **pacing: Unpack[Pacing],
    ) -> None:
        super().__init__(audit_path, **pacing)
        self._dsn = dsn
        self.table = table
        self.keep_days = keep_days
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None
        self._next_purge = 0.0
        self.stored = 0  # rows new to the table (the others were there already)

    @property
    def where(self) -> str:
        return described(self._dsn)

    @property
    def title(self) -> str:
        return f"the audit's sending to PostgreSQL ({self.where}, table {self.table})"

    def started_line(self) -> str:
        return (
            f"Tollgate: the audit is sent to PostgreSQL ({self.where}, table {self.table}) from"
            f" {self.position_described()} of {self.audit_path}"
        )

    def deliver(self, lines: list[bytes], timeout: float | None) -> Outcome:
        try:
            conn = self._connected(timeout)
            self.stored += store(conn, self.table, map(row_of, lines))
        except SchemaTooNew as e:
            return Outcome(False, False, str(e), halt=True)
        except psycopg.OperationalError as e:  # down, unreachable, restarting, a statement timed out
            self.close_destination()
            return Outcome(False, True, f"cannot reach it: {first_line(e)}")
        except psycopg.Error as e:  # refused (privileges, a table changed by hand): tried again, never dropped
            self.close_destination()
            return Outcome(False, True, f"it refused the records: {first_line(e)}")
        self._purge(conn)
        return SENT

    def _connected(self, timeout: float | None) -> psycopg.Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        seconds = self._connect_timeout if timeout is None else max(1.0, min(timeout, self._connect_timeout))
        conn = psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=max(1, round(seconds)), application_name="tollgate"
        )
        try:
            ensure_schema(conn, self.table)
            prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def idle(self) -> None:
        """`keep_days` on a schedule of its own: at the start, then every PURGE_SECONDS, whether or
        not records are sent meanwhile."""
        if self.keep_days is None or time.monotonic() < self._next_purge:
            return
        try:
            conn = self._connected(None)
        except psycopg.Error as e:  # said by the next batch as it is tried; the purge waits its turn
            self.close_destination()
            self._next_purge = time.monotonic() + PURGE_SECONDS
            logger.warning(f"Tollgate: cannot remove the rows of {self.table} older than keep_days: {first_line(e)}")
            return
        except SchemaTooNew:
            self._next_purge = time.monotonic() + PURGE_SECONDS
            return
        self._purge(conn)

    def _purge(self, conn: psycopg.Connection) -> None:
        if self.keep_days is None or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_SECONDS
        try:
            removed = remove_older(conn, self.table, self.keep_days)
        except psycopg.Error as e:
            logger.warning(f"Tollgate: cannot remove the rows of {self.table} older than keep_days: {first_line(e)}")
            return
        if removed:
            logger.info(
                f"Tollgate: {removed} rows of {self.table} older than {self.keep_days:g} days removed"
                " (audit.postgres.keep_days)"
            )

    def close_destination(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)
