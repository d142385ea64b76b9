"""`tollgate audit verify --postgres`: the chain of the records' table (`audit.postgres`) checked
as the console checks it (`table_rows.check_row`: each row's chain, its columns against its line,
rows removed by `keep_days` no fault), going on from how far it was checked before
(`verified`, the table `tollgate_verified`) and writing how far it got back there.

The rows are read in `id` order, a batch at a time (one sender per instance sends its file in
order: an instance's rows come in its order). The table is taken as still being written, as
`--live` takes a file: a run not stopped yet is no fault."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import sql

from tollgate.records.audit import verified
from tollgate.records.audit.anchor_verify import AnchorRules
from tollgate.records.audit.audit_verify import Verifier
from tollgate.records.audit.table_rows import Instance, check_row
from tollgate.records.senders.audit_postgres import (
    COLUMNS,
    SCHEMA_VERSION,
    SchemaTooNew,
    first_line,
    schema_version,
)

BATCH = 5000  # rows read at once
SAVE_ROWS = 100_000  # rows checked between two writes of the progress: a check cut short goes on from there


class NoTable(Exception):
    """The records' table is not there (no instance has sent to it)."""


@dataclass
class TableCheck:
    """What the check found: each instance's state (its faults among it), the verifier (its runs),
    the rows checked now, and why the progress could not be kept, when it could not."""

    verifier: Verifier
    instances: dict[str | None, Instance] = field(default_factory=dict)
    checked_now: int = 0
    resumed: int = 0  # instances whose check went on from tollgate_verified
    not_kept: str | None = None

    def faults(self) -> list[str]:
        """Every fault, the instances in order: those of the chain, and the anchors missed as things stand."""
        found = []
        for instance in sorted(self.instances, key=lambda i: (i is None, i or "")):
            found += self.instances[instance].faults
            anchor = self.verifier.anchor_view(instance) if instance is not None else None
            if anchor is not None and anchor["missed"]:
                found.append(anchor["missed"])
        return found


def verify_table(
    conn: psycopg.Connection,
    table: str,
    key: Ed25519PublicKey | None = None,
    anchors: AnchorRules | None = None,
    keep_days: float | None = None,
    batch: int = BATCH,
) -> TableCheck:
    """The chain of `table` checked on `conn` (autocommit), from where `tollgate_verified` says it
    stopped; its progress written back. NoTable, SchemaTooNew, psycopg.Error when it cannot be read
    (the progress that cannot be kept is said in `not_kept`, not raised)."""
    version = schema_version(conn, table)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(table, version, SCHEMA_VERSION)
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]:  # type: ignore[index]
        raise NoTable(f"the table {table} is not there: no instance has sent its records to it yet")
    check = TableCheck(Verifier(key, live=True, anchors=anchors))
    skip: dict[str | None, int] = {}
    try:
        verified.ensure_table(conn)
        skip = verified.resume(conn, table, check.verifier, check.instances, keep_days)
    except psycopg.OperationalError:
        raise
    except (psycopg.Error, SchemaTooNew) as e:  # a role that may not make it: checked from the start
        check.not_kept = first_line(e)
    check.resumed = len(skip)
    since = {instance: state.checked_id for instance, state in check.instances.items()}
    columns = sql.SQL(", ").join(sql.Identifier("t", c) for c in COLUMNS)
    query = sql.SQL("SELECT t.id, {} FROM {} t WHERE t.id > %s").format(columns, sql.Identifier(table))
    arguments: tuple[object, ...] = ()
    if skip:  # an instance's rows up to where it was checked already are not read again
        query += sql.SQL(
            " AND t.id > coalesce((SELECT s.upto FROM unnest(%s::text[], %s::bigint[]) AS s(instance, upto)"
            " WHERE s.instance = coalesce(t.instance, '')), 0)"
        )
        arguments = ([verified.NONE if i is None else i for i in skip], list(skip.values()))
    query += sql.SQL(" ORDER BY t.id LIMIT %s")
    last, saved_at = 0, 0
    while True:
        rows = conn.execute(query, (last, *arguments, batch)).fetchall()
        for row in rows:
            check_row(check.verifier, check.instances, table, keep_days, row[0], row[1:])
        check.checked_now += len(rows)
        if check.checked_now - saved_at >= SAVE_ROWS or len(rows) < batch:
            saved_at = check.checked_now
            _save(conn, table, check, since, keep_days)
        if len(rows) < batch:
            return check
        last = rows[-1][0]


def _save(
    conn: psycopg.Connection, table: str, check: TableCheck, since: dict[str | None, int], keep_days: float | None
) -> None:
    if check.not_kept is not None:
        return
    try:
        verified.save(conn, table, check.verifier, check.instances, since, keep_days)
    except psycopg.OperationalError:
        raise
    except psycopg.Error as e:  # a role that may not write it
        check.not_kept = first_line(e)
