"""The fleet's records read from PostgreSQL (`audit.postgres`): the table every instance sends its
audit file to (`records/senders/audit_postgres.py`). The views are the database's (`table_events.py`:
the sums the table keeps, the event list and Live as indexed queries): the console keeps nothing
per record in memory, and a view asked while the database is away answers 503.

The chain is checked behind the views, per instance in the order the rows arrived (one sender per
instance sends its file in order), each row as `records/audit/table_rows.py` checks it (its chain,
its columns against its line; rows removed by `keep_days` no fault), a batch at a time in `id`
order (`table_next.py`, which looks again for an id skipped). The rows per instance are counted
behind the views too (a count reads every row: the first view never waits for it). How far the
check got per instance is kept in the database (`tollgate_verified`, `chain_progress.py`): a
restart or a second console goes on from there, its rows up to there not checked again. The
connections the records are read by are read-only (SELECT alone); that table is written by a
connection of its own, and the last days are summed again by another (`table_recount.py`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from tollgate.console.chain_progress import ChainProgress
from tollgate.console.index import BAD_LINE
from tollgate.console.sessions import Unavailable
from tollgate.console.source import Source
from tollgate.console.table_events import TableViews
from tollgate.console.table_next import NextRows
from tollgate.console.table_recount import Recount
from tollgate.records.audit.anchor_verify import AnchorRules
from tollgate.records.audit.table_rows import Instance, check_row, written
from tollgate.records.senders.audit_postgres import (
    SCHEMA_VERSION,
    close_quietly,
    described,
    first_line,
    schema_version,
)

CHECK_BATCH = 2_000  # rows checked at once (each with its columns)
COUNT_EVERY_S = 600.0  # the rows per instance counted again (rows removed by keep_days leave the count)
CONNECT_SECONDS = 10
STATEMENT_SECONDS = 60  # a query of the console's that takes longer is cancelled by the server
RETRY_SECONDS = 2.0  # while the database cannot be read: between two tries


class UnreadableTable(Exception):
    """The table cannot be read: the database cannot be reached, or its schema is newer than known."""


class Table(Source):
    """The records of the table `table` of the database `dsn` names."""

    saved_records = -1  # no index of the table is kept

    def __init__(
        self,
        dsn: str,
        table: str = "tollgate_records",
        key: Ed25519PublicKey | None = None,
        keep_days: float | None = None,
        batch: int = CHECK_BATCH,
        anchors: AnchorRules | None = None,
    ) -> None:
        super().__init__(key, anchors)
        self.dsn, self.table = dsn, table
        self.keep_days = keep_days  # rows may be removed: an instance's first rows gone are no fault
        self.rows = NextRows(table, batch)  # the rows not checked yet
        self.newest = 0  # the greatest id in the table, as last looked at
        self.behind = True  # whether rows were left to check at the last check
        self.checked = 0  # the rows checked by this console
        self.instances: dict[str | None, Instance] = {}
        self.counts: dict[str, int] = {}  # rows per instance, counted now and then and as checked
        self._counted_upto = 0  # the rows up to this id are in `counts`
        self._count_at: float | None = None  # when they were last counted (None: not yet)
        self.failing: str | None = None  # why the table cannot be read now (said once)
        self._retry_at = 0.0  # while it cannot: when it is tried again
        self._made = False  # whether the table exists (an instance made it)
        self._reader: psycopg.Connection | None = None
        self.progress = ChainProgress(dsn, table, keep_days)  # how far the chain was checked, kept in the database
        self.reads = TableViews(self._connect, table)  # the views, answered by the database
        self.recount = Recount(dsn, table)  # the last days summed again, now and then

    @property
    def where(self) -> str:
        return f"PostgreSQL ({described(self.dsn)}, table {self.table})"

    # ---- the database

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="tollgate-console"
        )
        conn.execute("SET default_transaction_read_only = on")  # the console never writes the records
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_SECONDS * 1000)))
        # A view adds up to a year of sums at once: in memory, not on disk; and the sums are read in
        # their keys' order where a view groups by them (their pages are mostly cached).
        conn.execute("SET work_mem = '64MB'")
        conn.execute("SET random_page_cost = 1.1")
        return conn

    def _reading(self) -> psycopg.Connection:
        """The connection the rows are checked by (the follower thread's)."""
        if self._reader is None or self._reader.closed:
            self._reader = self._connect()
        return self._reader

    def open(self) -> None:
        """Connect, and check the table's schema: UnreadableTable (its message one line) when the
        database cannot be reached or the schema is newer than this Tollgate knows. A table not
        made yet (no instance has sent) is read as empty until it is."""
        try:
            conn = self._reading()
        except psycopg.Error as e:
            raise UnreadableTable(f"{self.where} cannot be reached: {first_line(e)}") from None
        try:
            version = schema_version(conn, self.table)
        except psycopg.Error as e:
            raise UnreadableTable(f"{self.where} cannot be read: {first_line(e)}") from None
        if version > SCHEMA_VERSION:
            raise UnreadableTable(
                f"the table {self.table} has schema version {version} (tollgate_schema), newer than this Tollgate"
                f" knows ({SCHEMA_VERSION}): upgrade Tollgate to read it"
            )

    def _exists(self, conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,)).fetchone()
        return bool(row and row[0])

    def _failed(self, error: BaseException) -> None:
        """The table could not be read: said once (until it can be again); tried again at the next poll."""
        close_quietly(self._reader)
        self._reader = None
        why = first_line(error)
        if self.failing is None:
            print(f"tollgate console: {self.where} cannot be read: {why}; tried again", file=sys.stderr, flush=True)
        self.failing = why
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _recovered(self) -> None:
        if self.failing is not None:
            print(f"tollgate console: {self.where} is read again", file=sys.stderr, flush=True)
            self.failing = None

    # ---- the chain and the columns, checked behind the views

    def catch_up(self) -> None:
        """Nothing is read ahead: the views ask the database, and the rows per instance are counted
        and the chain checked behind them (`verify_pending`), so that the first view waits for
        neither."""

    def save(self, due: bool = False) -> None:
        """Nothing to save: the chain's progress is kept in the database."""

    @property
    def checking(self) -> bool:
        """Whether rows are left to check and the database can be read (the server polls at once
        while so; else it waits its interval)."""
        return self.behind and self.failing is None

    @property
    def unchecked(self) -> bool:
        return self.behind or self.rows.last_id < self.newest

    def verify_pending(self) -> bool:
        """Check the chain and the columns of up to `batch` rows not checked yet (the rows
        `tollgate_verified` says are checked aside), the rows per instance counted first when it is
        due; whether some are left."""
        if self.failing is not None and time.monotonic() < self._retry_at:
            return False
        try:
            conn = self._reading()
            if not self._made:
                self._made = self._exists(conn)  # looked for at each poll until an instance has made it
                if not self._made:
                    self.behind = False
                    return False
            if not self.progress.resumed:
                self.rows.skip = self.progress.resume(self.verifier, self.instances)
            if self._count_at is None or time.monotonic() - self._count_at >= COUNT_EVERY_S:
                self.count(conn)
            rows = self.rows.read(conn)
            top = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(self.table)))
            self.newest = int(top.fetchone()[0])  # type: ignore[index]
        except psycopg.Error as e:
            self._failed(e)
            return False
        self._recovered()
        with self.lock:
            for row in rows:
                row_id, done, stored = row[0], row[1], row[2:]
                if not done:
                    check_row(self.verifier, self.instances, self.table, self.keep_days, row_id, stored)
                    self.checked += 1
                if row_id > self._counted_upto and stored[1] is not None:  # its instance (`COLUMNS`)
                    self.counts[stored[1]] = self.counts.get(stored[1], 0) + 1
        self.behind = len(rows) >= self.rows.batch
        self.progress.write(self.verifier, self.instances, caught_up=not self.behind)
        if not self.behind and not self.unchecked:
            self.recount.when_due()
        return self.behind

    def count(self, conn: psycopg.Connection | None = None) -> None:
        """The rows per instance counted again (those checked since are added as they are): from
        the (instance, seq) index alone where the table's pages are all visible, and the greatest
        id in the same snapshot. `verify_pending` counts them when it is due (on `conn`, its own)."""
        conn = self._reading() if conn is None else conn
        table = sql.Identifier(self.table)
        rows = conn.execute(
            sql.SQL(
                "SELECT instance, count(*), (SELECT coalesce(max(id), 0) FROM {}) FROM {}"
                " WHERE instance IS NOT NULL GROUP BY instance"
            ).format(table, table)
        ).fetchall()
        with self.lock:
            self.counts = {instance: int(n) for instance, n, _ in rows}
            self._counted_upto = max([self.rows.last_id, *(int(top) for _, _, top in rows)])
        self._count_at = time.monotonic()

    @property
    def first_fault_id(self) -> int | None:
        """The id of the first row checked with a fault (every row from it on is not vouched for)."""
        ids = [s.first_fault_id for s in self.instances.values() if s.first_fault_id is not None]
        return min(ids) if ids else None

    def unverified(self) -> list[range]:
        """The ids from the first row checked with a fault on (the fleet's rows interleave: every
        row after it, whatever its instance, is not vouched for)."""
        first = self.first_fault_id
        return [] if first is None else [range(first, max(first, self.newest) + 1)]

    # ---- a record served again (the views over the table read their rows themselves)

    def line(self, number: int) -> bytes:
        """Row `number` (its id)'s line; a marker when it is gone or cannot be read now."""
        try:
            with self.reads.reading() as conn:
                row = conn.execute(
                    sql.SQL("SELECT line, raw FROM {} WHERE id = %s").format(sql.Identifier(self.table)), (number,)
                ).fetchone()
        except Unavailable as e:
            marker = {"event": BAD_LINE, "table": self.table, "id": number, "row": "unavailable", "error": e.reason}
            return orjson.dumps(marker) + b"\n"
        if row is None:  # removed (keep_days)
            return orjson.dumps({"event": BAD_LINE, "table": self.table, "id": number, "row": "removed"}) + b"\n"
        return written(row[0], row[1]) + b"\n"

    def malformed(self, number: int, length: int) -> dict[str, Any]:
        return {"event": BAD_LINE, "table": self.table, "id": number, "length": length}

    def record(self, number: int, line: bytes | None = None) -> dict[str, Any]:
        line = self.line(number) if line is None else line
        try:
            marker = orjson.loads(line)
        except orjson.JSONDecodeError:
            marker = None
        if (
            isinstance(marker, dict)
            and marker.get("event") == BAD_LINE
            and "row" in marker
            and marker.keys() <= {"event", "table", "id", "row", "error"}
        ):
            return marker  # the row is gone, or cannot be fetched now: said as such
        return super().record(number, line)

    def state(self) -> list[dict[str, Any]]:
        """A row per instance: its records, whole or its faults, its last checkpoint, whether it
        is signed, its last record's time, its rows removed by keep_days; and the sums' faults."""
        verifier = self.verifier
        rows = []
        names: set[str | None] = {*self.counts, *self.instances}
        if not names and self.unchecked:  # not counted yet: no instance is said whole meanwhile
            names = {None}
        for instance in sorted(names, key=lambda i: (i is None, i or "")):
            state = self.instances.get(instance) or Instance()
            run = verifier.runs.get(instance) if instance is not None else None
            checkpoint = run.checkpoint if run is not None and run.checkpoint is not None else None
            records = self.counts.get(instance, 0) if instance is not None else state.checked
            anchor = verifier.anchor_view(instance) if instance is not None else None
            missed = [anchor["missed"]] if anchor is not None and anchor["missed"] else []
            rows.append({
                "file": None, "instance": instance, "records": records,
                "state": "fault" if state.faults or missed else "checking" if self.unchecked else "whole",
                "faults": state.faults + missed, "anchor": anchor,
                "anchor_gaps": None if anchor is None else anchor["gaps"],
                "last_checkpoint": None if checkpoint is None else checkpoint.ts,
                "signed": None if verifier.key is None or run is None else run.signed > 0,
                "worker_lost": state.lost,
                "last_record": state.last_record,
                "removed": None if not state.verified_from and not state.removed else
                {"rows": state.removed, "verified_from_id": state.verified_from},
            })  # fmt: skip
        return rows + self.recount.rows()

    def close(self) -> None:
        if self.progress.resumed:
            self.progress.close(self.verifier, self.instances)
        close_quietly(self._reader)
        self.reads.close()
        self.recount.close()
