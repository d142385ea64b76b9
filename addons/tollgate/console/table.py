"""The fleet's records read from PostgreSQL (`audit.postgres`): the table every instance sends its
audit file to (`records/senders/audit_postgres.py`), read into the same `Index` as the files are, so that
each view means the same whatever reads the records.

The rows are read in `id` order (the order they arrived), a batch at a time, then polled for new
ids. An id can become visible after a greater one (two instances' transactions commit in another
order than they took their ids; a batch rolled back leaves its ids unused): an id skipped is looked
for again at each poll for GAP_SECONDS, longer than a sender's statement may last, so that no
record is missed. A record is served again by fetching its `line` by id; the index keeps each
record's id where the files' index keeps its byte offset.

The chain is checked behind the index, per instance in the order the rows arrived (one sender per
instance sends its file in order), each row as `records/audit/table_rows.py` checks it (its chain,
its columns against its line; rows removed by `keep_days` no fault). How far it got per instance is
kept in the database (`tollgate_verified`, `chain_progress.py`): a restart or a second console goes
on from there, its rows up to there not checked again. The connections the records are read by are
read-only (SELECT alone); that table is written by a connection of its own."""

from __future__ import annotations

import gc
import sys
import threading
import time
from array import array
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from tollgate.console import saved
from tollgate.console.chain_progress import ChainProgress
from tollgate.console.index import BAD_LINE
from tollgate.console.source import Source
from tollgate.console.table_events import TableViews
from tollgate.console.table_recount import Recount
from tollgate.records.audit import verified
from tollgate.records.audit.anchor_verify import AnchorRules
from tollgate.records.audit.table_rows import Instance, check_row, written
from tollgate.records.audit.verify_state import restored_verifier, saved_state
from tollgate.records.senders.audit_postgres import (
    COLUMNS,
    SCHEMA_VERSION,
    described,
    first_line,
    schema_version,
)

BATCH = 20_000  # rows read at once into the index
CHECK_BATCH = 2_000  # rows checked at once (each with its columns): a view waits for one batch at most
GAP_SECONDS = 180.0  # an id skipped is looked for this long (a sender's statement is cancelled after 60 s)
RECENT = 2000  # the last records kept as lines, for the live stream
FETCH_AHEAD = 100  # records fetched with one asked for that is not kept: a page of the event list in one query
FETCHED = 2000  # lines fetched ahead kept, at most (then forgotten at once)
SAVE_EVERY_S = 300.0  # how often, at most, the index is saved again while records come
CONNECT_SECONDS = 10
STATEMENT_SECONDS = 60  # a query of the console's that takes longer is cancelled by the server, and tried again
RETRY_SECONDS = 2.0  # while the database cannot be read: between two tries
SUFFIX = ".postgres"  # the saved index of the table: `<audit.path>.postgres.console-index`


class UnreadableTable(Exception):
    """The table cannot be read: the database cannot be reached, or its schema is newer than known."""


class Table(Source):
    """The records of the table `table` of the database `dsn` names."""

    def __init__(
        self,
        dsn: str,
        table: str = "tollgate_records",
        key: Ed25519PublicKey | None = None,
        keep_days: float | None = None,
        remember: Path | None = None,
        batch: int = BATCH,
        anchors: AnchorRules | None = None,
    ) -> None:
        super().__init__(key, anchors)
        self.dsn, self.table = dsn, table
        self.keep_days = keep_days  # rows may be removed: an instance's first rows gone are no fault
        self.remember = remember
        self.batch = batch
        self.last_id = 0  # the greatest id read
        self.gaps: list[tuple[int, int, float]] = []  # ids skipped below last_id, looked for until the time
        self.checked = 0  # the records (by number) whose chain and columns were checked
        self.instances: dict[str | None, Instance] = {}
        self.counts: dict[str, int] = {}  # records read per instance (`Index.add_lines`)
        self.first_fault: int | None = None  # the number of the first record checked with a fault
        self.tail: deque[tuple[int, bytes]] = deque(maxlen=RECENT)  # (record number, line), the last read
        self.started = False
        self.saved_records = -1
        self.saved_checked = -1
        self.saved_at = 0.0
        self.failing: str | None = None  # why the table cannot be read now (said once)
        self._retry_at = 0.0  # while it cannot: when it is tried again
        self._made = False  # whether the table exists (an instance made it)
        self._reader: psycopg.Connection | None = None
        self._server: psycopg.Connection | None = None
        self._server_lock = threading.Lock()  # the server's connection, and the lines fetched by it
        self._fetched: dict[int, bytes] = {}  # record number → its line, fetched ahead (FETCHED at most)
        self.progress = ChainProgress(dsn, table, keep_days)  # how far the chain was checked, kept in the database
        self._skip: dict[str | None, int] = {}  # per instance: its rows up to this id were checked already
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
        return conn

    def _reading(self) -> psycopg.Connection:
        """The connection the rows are read and checked by (the follower thread's)."""
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
        _close(self._reader)
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

    # ---- reading

    def catch_up(self) -> None:
        """Read the rows not read yet (the first time: all of them, or those after the saved index)."""
        if not self.started:
            self.started = True
            self._restore()
            collecting = gc.isenabled()
            gc.disable()  # as `Audit`: the records read make no cycles
            try:
                self._read()
            finally:
                if collecting:
                    gc.enable()
            gc.freeze()
            return
        self._read()

    def _read(self) -> None:
        if self.failing is not None and time.monotonic() < self._retry_at:
            return
        try:
            conn = self._reading()
            if not self._made:
                self._made = self._exists(conn)  # looked for at each poll until an instance has made it
                if not self._made:
                    return
            if self.gaps:
                self._read_gaps(conn)
            table = sql.Identifier(self.table)
            query = sql.SQL("SELECT id, line, raw FROM {} WHERE id > %s ORDER BY id LIMIT %s").format(table)
            while True:
                rows = conn.execute(query, (self.last_id, self.batch)).fetchall()
                self._add(rows, in_order=True)
                if len(rows) < self.batch:
                    break
        except psycopg.Error as e:
            self._failed(e)
            return
        self._recovered()

    def _read_gaps(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        self.gaps = [gap for gap in self.gaps if gap[2] > now]
        if not self.gaps:
            return
        rows = conn.execute(
            sql.SQL(
                "SELECT t.id, t.line, t.raw FROM {} t JOIN unnest(%s::bigint[], %s::bigint[]) AS g(lo, hi)"
                " ON t.id BETWEEN g.lo AND g.hi ORDER BY t.id"
            ).format(sql.Identifier(self.table)),
            ([lo for lo, _, _ in self.gaps], [hi for _, hi, _ in self.gaps]),
        ).fetchall()
        if not rows:
            return
        found = {row[0] for row in rows}
        gaps = []
        for lo, hi, until in self.gaps:  # each gap split around the ids found in it
            start = lo
            for n in sorted(i for i in found if lo <= i <= hi):
                if n > start:
                    gaps.append((start, n - 1, until))
                start = n + 1
            if start <= hi:
                gaps.append((start, hi, until))
        self.gaps = gaps
        self._add(rows, in_order=False)

    def _add(self, rows: list[tuple[Any, ...]], in_order: bool) -> None:
        """Rows (id, line, raw) into the index, in their order; `in_order`: rows after `last_id`,
        whose ids skipped are looked for again."""
        if not rows:
            return
        lines = [written(line, raw) for _, line, raw in rows]
        if in_order:
            expected, until = self.last_id + 1, time.monotonic() + GAP_SECONDS
            for row in rows:
                if row[0] > expected:  # not committed yet, rolled back, or (before the first row) removed
                    self.gaps.append((expected, row[0] - 1, until))
                expected = row[0] + 1
        # One line a record: a newline inside a stored line (changed in the database) would make two.
        fed = [line.replace(b"\n", b"\r") for line in lines]
        data = b"\n".join(fed) + b"\n"
        ids = [row[0] for row, line in zip(rows, fed, strict=True) if line and not line.isspace()]
        with self.lock:
            index = self.index
            first = len(index)
            index.add_lines(0, 0, data, len(data), self.counts)
            if len(index) - first != len(ids):  # a blank line stored: none of the index's records
                raise AssertionError("the index took another number of records than the lines held")
            index.offsets[first:] = array("q", ids)  # where a file's index keeps the offset: the row's id
            kept = (line + b"\n" for line in lines if line and not line.isspace())
            self.tail.extend(zip(range(first, len(index)), kept, strict=False))
            if in_order:
                self.last_id = max(self.last_id, rows[-1][0])
            self.grew.notify_all()

    def recent(self, number: int) -> bytes | None:
        """Record `number`'s line, when it is among the last RECENT read (asked without the lock
        too: the number kept with each line says whether the one found is it)."""
        tail = self.tail
        try:
            at = number - tail[0][0]
            held, line = tail[at] if at >= 0 else (-1, b"")
        except IndexError:
            return None
        return line if held == number else None

    def line(self, number: int) -> bytes:
        """Record `number`'s line: kept for the live stream, fetched already, else fetched by its id
        with the FETCH_AHEAD records after it (an event list asks for its records oldest first)."""
        held = self.recent(number)
        if held is not None:
            return held
        with self._server_lock:
            held = self._fetched.get(number)
            if held is not None:
                return held
            offsets = self.index.offsets
            numbers = range(number, min(len(offsets), number + FETCH_AHEAD))
            try:
                if self._server is None or self._server.closed:
                    self._server = self._connect()
                rows = self._server.execute(
                    sql.SQL("SELECT id, line, raw FROM {} WHERE id = ANY(%s)").format(sql.Identifier(self.table)),
                    ([offsets[n] for n in numbers],),
                ).fetchall()
            except psycopg.Error as e:
                self._server = None
                return orjson.dumps(self._marker(number, "unavailable", error=first_line(e))) + b"\n"
            by_id = {row_id: written(line, raw) + b"\n" for row_id, line, raw in rows}
            if len(self._fetched) > FETCHED:
                self._fetched.clear()
            for n in numbers:
                found = by_id.get(offsets[n])
                if found is not None:
                    self._fetched[n] = found
        found = by_id.get(offsets[number])
        if found is None:  # removed since it was read (keep_days)
            return orjson.dumps(self._marker(number, "removed")) + b"\n"
        return found

    def _marker(self, number: int, what: str, **more: Any) -> dict[str, Any]:
        return {"event": BAD_LINE, "table": self.table, "id": self.index.offsets[number], "row": what, **more}

    def malformed(self, number: int, length: int) -> dict[str, Any]:
        return {"event": BAD_LINE, "table": self.table, "id": self.index.offsets[number], "length": length}

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

    # ---- the chain and the columns, checked behind the index

    @property
    def checking(self) -> bool:
        """Whether rows are left to check and the database can be read (the server polls at once
        while so; else it waits its interval)."""
        return self.unchecked and self.failing is None

    @property
    def unchecked(self) -> bool:
        return self.checked < len(self.index)

    def verify_pending(self) -> bool:
        """Check the chain and the columns of up to CHECK_BATCH records read and not checked yet
        (the rows `tollgate_verified` says are checked aside); whether some are left."""
        if self.failing is not None and time.monotonic() < self._retry_at:
            return False
        if not self.progress.resumed:
            try:
                self._resume()
            except psycopg.Error as e:  # the database cannot be reached: the rows are not checked meanwhile
                self._failed(e)
                return False
        with self.lock:
            start, end = self.checked, min(len(self.index), self.checked + CHECK_BATCH)
            ids = list(self.index.offsets[start:end])
        if not ids:  # caught up: what was checked last kept, once it is due
            self.progress.write(self.verifier, self.instances, caught_up=True)
            self.recount.when_due()
            return False
        columns = sql.SQL(", ").join(sql.Identifier("t", c) for c in COLUMNS)
        query = sql.SQL("SELECT t.id, {} FROM {} t WHERE t.id = ANY(%s)").format(columns, sql.Identifier(self.table))
        if self._skip:  # an instance's rows up to where it was checked already are not read again
            query += sql.SQL(
                " AND t.id > coalesce((SELECT s.upto FROM unnest(%s::text[], %s::bigint[]) AS s(instance, upto)"
                " WHERE s.instance = coalesce(t.instance, '')), 0)"
            )
        skip = [[verified.NONE if i is None else i for i in self._skip], list(self._skip.values())]
        try:
            conn = self._reading()
            rows = conn.execute(query, (ids, *skip) if self._skip else (ids,)).fetchall()
        except psycopg.Error as e:
            self._failed(e)
            return False
        by_id = {row[0]: row[1:] for row in rows}
        with self.lock:
            for number, row_id in enumerate(ids, start):
                stored = by_id.get(row_id)
                if stored is not None:  # else checked already, or removed since it was read (keep_days)
                    self._check(number, row_id, stored)
            self.checked = end
        self.progress.write(self.verifier, self.instances, caught_up=not self.unchecked)
        return self.checked < len(self.index)

    def _resume(self) -> None:
        """The chain's progress kept in the database taken where it is further than the saved index's:
        each instance's state, and the record from which records are not vouched for."""
        skip = self.progress.resume(self.verifier, self.instances)
        with self.lock:
            self._skip = skip
            offsets = self.index.offsets
            for state in self.instances.values():
                if state.first_fault_id is None:
                    continue
                try:
                    number = offsets.index(state.first_fault_id)
                except ValueError:
                    number = 0  # removed since: no record is vouched for
                self.first_fault = number if self.first_fault is None else min(self.first_fault, number)

    def _check(self, number: int, row_id: int, stored: tuple[Any, ...]) -> None:
        if check_row(self.verifier, self.instances, self.table, self.keep_days, row_id, stored):
            self.first_fault = number if self.first_fault is None else self.first_fault

    @property
    def first_fault_id(self) -> int | None:
        """The id of the first row checked with a fault (every row from it on is not vouched for)."""
        ids = [s.first_fault_id for s in self.instances.values() if s.first_fault_id is not None]
        return min(ids) if ids else None

    def unverified(self) -> list[range]:
        """The records from the first one checked with a fault on (the fleet's rows interleave:
        every row after it, whatever its instance, is not vouched for)."""
        return [] if self.first_fault is None else [range(self.first_fault, len(self.index))]

    def state(self) -> list[dict[str, Any]]:
        """A row per instance: its records, whole or its faults, its last checkpoint, whether it
        is signed, its last record's time, its rows removed by keep_days."""
        verifier = self.verifier
        rows = []
        names: set[str | None] = {*self.counts, *self.instances}
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

    # ---- the index remembered

    def _identity(self) -> dict[str, Any]:
        return {"database": described(self.dsn), "table": self.table}

    def _restore(self) -> None:
        """The saved index, when it is of this table and the row it read last is still there as
        it was (its chain); else the table is read from its start."""
        if self.remember is None:
            return
        found = saved.read(self.remember)
        if found is None:
            return
        header, data = found
        try:
            with data:
                if header["source"] != self._identity():
                    raise ValueError("another table")
                last_id, last_chain = int(header["last_id"]), header["last_chain"]
                conn = self._reading()
                row = conn.execute(
                    sql.SQL("SELECT chain FROM {} WHERE id = %s").format(sql.Identifier(self.table)), (last_id,)
                ).fetchone()
                if row is None or row[0] != last_chain:
                    raise ValueError("not the rows read")
                index = saved.restore_index(header["index"], data)
                gaps = [(int(lo), int(hi), time.monotonic() + GAP_SECONDS) for lo, hi in header["gaps"]]
                counts = {str(k): int(v) for k, v in header["counts"].items()}
        except (OSError, ValueError, KeyError, TypeError, psycopg.Error):
            return
        self.index, self.last_id, self.gaps, self.counts = index, last_id, gaps, counts
        self.saved_records, self.saved_at = len(index), time.monotonic()
        self._restore_chain(header.get("chain"))

    def _restore_chain(self, chain: Any) -> None:
        """The chain as far as it was checked when the index was saved, with the same key; else
        it is checked afresh from the first row read."""
        try:
            verifier = restored_verifier(chain["verifier"], self.verifier.key, str, self.verifier.anchors)
            instances = {(None if i == "" else str(i)): Instance(**s) for i, s in chain["instances"]}
            checked, first_fault = int(chain["checked"]), chain["first_fault"]
            if not 0 <= checked <= len(self.index):
                raise ValueError("checked past the index")
        except (ValueError, KeyError, TypeError, IndexError):
            return
        self.verifier, self.instances, self.checked, self.first_fault = verifier, instances, checked, first_fault
        self.saved_checked = checked

    def save(self, due: bool = False) -> None:
        """As `Audit.save`: the index and the chain's state saved when records came or were checked
        since (`due`: and SAVE_EVERY_S has passed, or the chain has just been checked to its end)."""
        done = (len(self.index), self.checked) == (self.saved_records, self.saved_checked)
        if self.remember is None or not len(self.index) or done:
            return
        recent = time.monotonic() - self.saved_at < SAVE_EVERY_S
        if due and self.saved_records >= 0 and recent and (self.unchecked or len(self.index) != self.saved_records):
            return
        last_id = self.last_id  # called by the thread that reads the rows: none is read meanwhile
        try:  # the chain of the last row read, which a restart finds there again
            row = (
                self._reading()
                .execute(sql.SQL("SELECT chain FROM {} WHERE id = %s").format(sql.Identifier(self.table)), (last_id,))
                .fetchone()
            )
        except psycopg.Error as e:
            self._failed(e)
            return
        if row is None:
            return
        with self.lock:  # the views wait meanwhile: the columns are written as they are, not copied
            if self.last_id != last_id:
                return  # read on meanwhile: saved at the next poll
            header = {
                "source": self._identity(), "last_id": last_id, "last_chain": row[0],
                "gaps": [[lo, hi] for lo, hi, _ in self.gaps], "counts": self.counts,
                "index": saved.index_state(self.index),
                "chain": {
                    "verifier": saved_state(self.verifier, str), "checked": self.checked,
                    "first_fault": self.first_fault,
                    "instances": [["" if i is None else i, asdict(s)] for i, s in self.instances.items()],
                },
            }  # fmt: skip
            records, checked = len(self.index), self.checked
            try:
                saved.write(self.remember, header, self.index)
            except OSError:
                return
        self.saved_records, self.saved_checked, self.saved_at = records, checked, time.monotonic()

    def close(self) -> None:
        try:
            self.save()
        except OSError:
            pass
        if self.progress.resumed:
            self.progress.close(self.verifier, self.instances)
        _close(self._reader)
        _close(self._server)
        self.reads.close()
        self.recount.close()


def _close(conn: psycopg.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass
