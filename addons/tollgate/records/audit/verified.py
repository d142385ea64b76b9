"""How far the chain of the records' table was checked, kept in the database (`tollgate_verified`):
per records' table, instance and rules (the signing key's id and the anchors' roots it was checked
with, whether `keep_days` removes rows), the greatest row id checked (`checked_id`), the chain head
there (`seq`, `chain`) and what the `Verifier` holds of the instance to go on from there (`state`:
its run, the chains of its last TAIL records, its earlier runs, its faults). The console writes it
as it checks behind its views, and `tollgate audit verify --postgres` as it checks; a restart, a
second console or the command goes on from it instead of from the table's start.

Progress only moves forward: a row is written over only by one checked further (`checked_id`
greater), so two checkers writing at once leave the furthest. What is kept is checked against the
rows before it is used: the row it names must still be there with the chain it had (`fits`); one
that is not (changed or removed behind it, `keep_days` aside) is a fault of the instance, whose rows
are then checked again from the start."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tollgate.common.audit_chain import ZERO, chain_of, split_line
from tollgate.records.audit.audit_verify import Place, Run, Verifier
from tollgate.records.audit.kinds import read_record
from tollgate.records.audit.last_records import LastRecords
from tollgate.records.audit.table_rows import Instance, instance_of, written
from tollgate.records.audit.verify_state import restored_verifier, saved_state
from tollgate.records.senders.audit_postgres import migrate, row_of

TABLE = "tollgate_verified"
TAIL = 100  # a run's last records whose chains are kept: a row out of order by more is a fault after a restart
FAULTS_KEPT = 100  # an instance's faults kept in words (the count is kept whole)
NONE = ""  # the instance of the rows that name none

MIGRATIONS = {
    1: (
        """CREATE TABLE IF NOT EXISTS {table} (
    records_table text NOT NULL, instance text NOT NULL, rules text NOT NULL,
    checked_id bigint NOT NULL, seq bigint, chain text, rows bigint NOT NULL, faults integer NOT NULL,
    state jsonb NOT NULL, updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (records_table, instance, rules))""",
    ),
}
TABLE_VERSION = max(MIGRATIONS)


def ensure_table(conn: psycopg.Connection) -> None:
    """The table made when missing (`migrate`); SchemaTooNew when it is newer than known."""
    migrate(conn, TABLE, MIGRATIONS, {"table": sql.Identifier(TABLE)}, kept="the console's memory")


def rules(verifier: Verifier, keep_days: float | None) -> str:
    """What a check's outcome depends on beside the rows: the key, the anchors' roots, and whether
    rows may be removed (`keep_days`: an instance's first rows gone are then no fault)."""
    anchors = verifier.anchors.fingerprint if verifier.anchors is not None else "none"
    removed = "removed" if keep_days is not None else "kept"
    return f"key {verifier.key_id or 'none'}; anchors {anchors}; rows {removed}"


# ---- an instance's part of a verifier


def part_of(verifier: Verifier, instance: str) -> dict[str, Any]:
    """What `verifier` holds of `instance`, as JSON values: its run (the chains of its last TAIL
    records), its earlier runs, its count and its unsigned part."""
    part = Verifier(verifier.key, verifier.live, verifier.anchors)
    run = verifier.runs.get(instance)
    if run is not None:
        part.runs[instance] = _trimmed(run)
    if instance in verifier.ended:
        part.ended[instance] = verifier.ended[instance]
    if instance in verifier.counted:
        part.counted[instance] = verifier.counted[instance]
    if instance in verifier.unsigned:
        part.unsigned[instance] = verifier.unsigned[instance]
    first = verifier.first_signed_run.get(instance)
    if first is not None:
        part.first_signed_run[instance] = part.runs[instance] if first is run else first
    return saved_state(part, str)


def _trimmed(run: Run) -> Run:
    """The run with the chains of its last TAIL records alone, kept apart: the columns' slots are
    by seq modulo their window, which would save every slot below the last seq."""
    kept = LastRecords()
    last = run.last.seq if run.last is not None else 0
    for seq in range(max(1, last - TAIL + 1), last + 1):
        held = run.by_seq.get(seq)
        if held is not None:
            kept.apart[seq] = held
    return dataclasses.replace(run, by_seq=kept)


def restored(verifier: Verifier, instance: str, part: dict[str, Any]) -> Verifier:
    """The instance's part (`part_of`) read back, to be `adopt`ed by `verifier`; ValueError
    (KeyError, TypeError) when it is not one `part_of` made with the same key and anchors."""
    held = restored_verifier(part, verifier.key, str, verifier.anchors)
    if set(held.runs) - {instance} or set(held.ended) - {instance}:
        raise ValueError("another instance's runs")
    return held


def adopt(verifier: Verifier, instance: str, held: Verifier) -> None:
    """The instance's part (`restored`) put into `verifier`."""
    _put(verifier.runs, held.runs, instance)
    _put(verifier.ended, held.ended, instance)
    _put(verifier.counted, held.counted, instance)
    _put(verifier.unsigned, held.unsigned, instance)
    _put(verifier.first_signed_run, held.first_signed_run, instance)


def _put[T](mine: dict[str, T], theirs: dict[str, T], instance: str) -> None:
    mine.pop(instance, None)
    if instance in theirs:
        mine[instance] = theirs[instance]


# ---- read and written


@dataclasses.dataclass
class Progress:
    """An instance's row of `tollgate_verified`."""

    instance: str | None
    state: Instance
    part: dict[str, Any] | None  # the verifier's (`part_of`); None for the rows that name no instance


def load(conn: psycopg.Connection, records_table: str, rules_: str) -> list[Progress]:
    """The instances' progress kept for `records_table` checked by `rules_` (none when the table is
    missing); a row that cannot be read is left out (its instance is checked from the start)."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]:  # type: ignore[index]
        return []
    rows = conn.execute(
        sql.SQL("SELECT instance, state FROM {} WHERE records_table = %s AND rules = %s").format(sql.Identifier(TABLE)),
        (records_table, rules_),
    ).fetchall()
    found = []
    for instance, state in rows:
        try:
            kept = Instance(**state["instance"])
            if type(kept.checked_id) is not int or not isinstance(kept.head, str):
                raise TypeError("no row checked")
            found.append(Progress(None if instance == NONE else instance, kept, state.get("verifier")))
        except (KeyError, TypeError, AttributeError):
            continue
    return found


def save(
    conn: psycopg.Connection,
    records_table: str,
    verifier: Verifier,
    instances: Mapping[str | None, Instance],
    since: dict[str | None, int],
    keep_days: float | None,
) -> None:
    """The instances checked further than `since` says (their `checked_id` when last written, which
    this updates) written, each only over a row checked less far."""
    rows = []
    for instance, state in instances.items():
        if not state.checked_id or state.checked_id <= since.get(instance, 0) or state.head is None:
            continue
        run = verifier.runs.get(instance) if instance is not None else None
        kept = asdict(state)
        if len(state.faults) > FAULTS_KEPT:
            more = len(state.faults) - FAULTS_KEPT
            kept["faults"] = [*state.faults[:FAULTS_KEPT], f"and {more} more faults ({TABLE} keeps {FAULTS_KEPT})"]
        document = {"instance": kept, "verifier": None if instance is None else part_of(verifier, instance)}
        rows.append((
            records_table, NONE if instance is None else instance, rules(verifier, keep_days), state.checked_id,
            run.last.seq if run is not None and run.last is not None else None, state.head, state.checked,
            len(state.faults), Jsonb(document, dumps=_dumps),
        ))  # fmt: skip
    if not rows:
        return
    rows.sort(key=lambda row: row[1])  # every writer locks the rows in one order: two never wait on each other
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL(
                "INSERT INTO {t} (records_table, instance, rules, checked_id, seq, chain, rows, faults, state)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (records_table, instance, rules) DO UPDATE SET checked_id = EXCLUDED.checked_id,"
                " seq = EXCLUDED.seq, chain = EXCLUDED.chain, rows = EXCLUDED.rows, faults = EXCLUDED.faults,"
                " state = EXCLUDED.state, updated = now() WHERE {t}.checked_id < EXCLUDED.checked_id"
            ).format(t=sql.Identifier(TABLE)),
            rows,
        )
    for instance, state in instances.items():
        since[instance] = state.checked_id


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ---- going on from it


def resume(
    conn: psycopg.Connection,
    records_table: str,
    verifier: Verifier,
    instances: dict[str | None, Instance],
    keep_days: float | None,
) -> dict[str | None, int]:
    """The progress kept for `records_table` put into `verifier` and `instances`, for each instance
    checked less far here (`instances`, as restored from elsewhere); the ids up to which each
    instance's rows are checked already (a row of it up to there is not checked again). Progress that
    does not fit the rows is a fault of its instance, checked from the start."""
    skip = {}
    for progress in load(conn, records_table, rules(verifier, keep_days)):
        instance, kept = progress.instance, progress.state
        here = instances.get(instance)
        if here is not None and here.checked_id >= kept.checked_id:
            continue  # checked as far here already
        try:
            held = None if instance is None or progress.part is None else restored(verifier, instance, progress.part)
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # not one this Tollgate reads: the instance is checked from the start
        why = fits(conn, records_table, progress, keep_days, held)
        if why is None:
            if instance is not None and held is not None:
                adopt(verifier, instance, held)
            instances[instance] = kept
            skip[instance] = kept.checked_id
        elif why:
            fault = f"{Place(records_table, kept.checked_id)}: {why}"
            verifier.fault(Place(records_table, kept.checked_id), why)
            fresh = instances.setdefault(instance, Instance())
            fresh.faults.append(fault)
            fresh.first_fault_id = kept.checked_id if fresh.first_fault_id is None else fresh.first_fault_id
    return skip


def fits(
    conn: psycopg.Connection,
    records_table: str,
    progress: Progress,
    keep_days: float | None,
    held: Verifier | None = None,
) -> str | None:
    """None when the row the progress names is there as it was checked (its chain, and, when the
    verifier's part `held` keeps the chain before it, its content); "" when it was removed and
    `keep_days` removes rows (no fault: the instance is checked from its oldest kept rows); else why
    not, as a fault says it."""
    kept = progress.state
    row = conn.execute(
        sql.SQL("SELECT chain, line, raw FROM {} WHERE id = %s").format(sql.Identifier(records_table)),
        (kept.checked_id,),
    ).fetchone()
    said = f"{TABLE} says its chain was checked to this row (chain {kept.head})"
    if row is None:
        return "" if keep_days is not None else f"{said}, which is no longer in the table: removed in the database"
    chain, line, raw = row
    text = written(line, raw)
    changed = f"{said}: the row is not as it was checked: changed in the database; its rows are checked again"
    if chain != kept.head or row_of(text)[0] != kept.head or instance_of(read_record(text)) != progress.instance:
        return changed
    run = held.runs.get(progress.instance) if held is not None and progress.instance is not None else None
    last = run.last if run is not None else None
    # Its content against the chain before it, when the check found it whole (a row at fault was never linked).
    if run is not None and last is not None and last.place.line == kept.checked_id and not kept.faults:
        before = ZERO if last.seq == 1 else run.by_seq.chain(last.seq - 1)
        parts = split_line(text)
        if before is not None and (parts is None or chain_of(before, parts[0]) != kept.head):
            return changed
    return None
