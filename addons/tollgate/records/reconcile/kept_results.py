"""Where a reconciliation's results are kept, and how the newest are read back.

With `audit.postgres`: the table `tollgate_reconciliation` (a version of its own in
`tollgate_schema`, made under the same advisory lock as the records' table), a row per result,
`body` exactly one row or day object of `tollgate reconcile --json`. Without it: one
`reconciliation` record per run in the local audit, written by the audit's own writer (its chain,
its checkpoints), `{"event": "reconciliation", "since", "until", "rows": [...], "days": [...]}`.
`latest` reads either back: per provider and day, the newest run's rows and day."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from tollgate.configuration.records_settings import AuditConfig

EVENT = "reconciliation"
TABLE = "tollgate_reconciliation"
ROW, DAY = "row", "day"

# The table's versions (`audit_postgres.migrate`): its own, apart from the records' table.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY,
    run_at timestamptz NOT NULL,
    provider text NOT NULL,
    day date NOT NULL,
    kind text NOT NULL CHECK (kind IN ('row', 'day')),
    body jsonb NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS {day_index} ON {table} (provider, day, run_at)",
    ),
}


def record(since: date, until: date, rows: list[dict[str, Any]], days: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit record of a run."""
    return {"event": EVENT, "since": since.isoformat(), "until": until.isoformat(), "rows": rows, "days": days}


def write_record(audit: AuditConfig, entry: dict[str, Any]) -> None:
    """The run's record appended to the local audit by the audit's writer, as a run of its own
    (started, the record, stopped), under an instance of its own: the proxy may be writing the same
    file. OSError when it cannot be written."""
    from tollgate.configuration.fleet import instance_name
    from tollgate.records.audit.audit_record import utc_timestamp
    from tollgate.records.audit.auditlog import AuditLog, started_record

    log = AuditLog(audit.path, instance=f"{instance_name()}/reconcile", checkpoint_s=audit.checkpoint_s,
                   signer=audit.signer())  # fmt: skip
    try:
        log.begin(started_record((), None))
        log.write({**entry, "ts": utc_timestamp(datetime.now(UTC).timestamp())}, call=False)
    finally:
        log.stop()


def store_table(conn: psycopg.Connection, run_at: datetime, rows: list[dict[str, Any]],
                days: list[dict[str, Any]]) -> int:  # fmt: skip
    """The run's rows and days inserted (the table made or migrated first), in one transaction;
    how many. `conn` in autocommit."""
    from psycopg import sql

    from tollgate.records.senders.audit_postgres import migrate

    names = {"table": sql.Identifier(TABLE), "day_index": sql.Identifier(f"{TABLE}_provider_day")}
    migrate(conn, TABLE, MIGRATIONS, names, kept="the command's output")
    values = [(run_at, b["provider"], date.fromisoformat(b["day"]), ROW, json.dumps(b)) for b in rows]
    values += [(run_at, b["provider"], date.fromisoformat(b["day"]), DAY, json.dumps(b)) for b in days]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL("INSERT INTO {} (run_at, provider, day, kind, body) VALUES (%s, %s, %s, %s, %s::jsonb)").format(
                sql.Identifier(TABLE)
            ),
            values,
        )
    return len(values)


# ---- read back


@dataclass(frozen=True)
class Entry:
    """One result as kept: when its run was, and one row or day object."""

    run_at: datetime
    kind: str  # ROW or DAY
    body: Mapping[str, Any]


@dataclass
class Latest:
    """A provider's day as its newest run left it."""

    run_at: datetime
    rows: list[Mapping[str, Any]] = field(default_factory=list)
    day: Mapping[str, Any] | None = None


def latest(entries: Iterable[Entry]) -> dict[tuple[str, str], Latest]:
    """Per (provider, day), the newest run's rows and day (`table_entries`, `record_entries`)."""
    found: dict[tuple[str, str], Latest] = {}
    for entry in entries:
        at = (str(entry.body.get("provider")), str(entry.body.get("day")))
        held = found.get(at)
        if held is None or entry.run_at > held.run_at:
            held = found[at] = Latest(entry.run_at)
        elif entry.run_at < held.run_at:
            continue
        if entry.kind == DAY:
            held.day = entry.body
        else:
            held.rows.append(entry.body)
    return found


def table_entries(conn: psycopg.Connection, since: date | None = None, until: date | None = None) -> Iterator[Entry]:
    """The table's results of the newest run of each provider and day from `since` to `until`
    (none yet: the table missing, nothing)."""
    from psycopg import sql

    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not exists or not exists[0]:
        return
    query = sql.SQL(
        "SELECT t.run_at, t.kind, t.body FROM {table} t JOIN (SELECT provider, day, max(run_at) AS run_at FROM {table}"
        " WHERE (%(since)s::date IS NULL OR day >= %(since)s) AND (%(until)s::date IS NULL OR day <= %(until)s)"
        " GROUP BY provider, day) n ON t.provider = n.provider AND t.day = n.day AND t.run_at = n.run_at"
        " ORDER BY t.provider, t.day, t.kind, t.id"
    ).format(table=sql.Identifier(TABLE))
    for run_at, kind, body in conn.execute(query, {"since": since, "until": until}):
        yield Entry(run_at, kind, body)


def record_entries(records: Iterable[Mapping[str, Any]]) -> Iterator[Entry]:
    """The results of the audit's `reconciliation` records (a record that is not one left out)."""
    for rec in records:
        if rec.get("event") != EVENT or not isinstance(rec.get("ts"), str):
            continue
        try:
            run_at = datetime.fromisoformat(rec["ts"])
        except ValueError:
            continue
        for kind, name in ((ROW, "rows"), (DAY, "days")):
            for body in rec.get(name) or ():
                if isinstance(body, dict):
                    yield Entry(run_at, kind, body)
