"""Where a reconciliation's results are kept, and how the newest are read back.

With `audit.postgres`: the table `tollgate_reconciliation` (a version of its own in
`tollgate_schema`), made and migrated by `tollgate audit migrate` as the owner of the records'
tables (`ensure_table`); `tollgate reconcile`, run as the instances' role, which may create no
table, only writes rows in it (`store_table`). A row per result,
`body` exactly one row or day object of `tollgate reconcile --json`. Without it: one
`reconciliation` record per run in the local audit, written by the audit's own writer (its chain,
its checkpoints), `{"event": "reconciliation", "since", "until", "rows": [...], "days": [...]}`.
`latest` reads either back: per provider and day, the newest run's rows and day, amounts exactly as
written (`Decimal`, never a binary float); `tollgate reconcile`'s tests and the console's Invoice
view read them so."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from tollgate.configuration.records_settings import AuditConfig

EVENT = "reconciliation"
MIGRATE = "tollgate audit migrate"
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


class NotMigrated(RuntimeError):
    """The table is missing, or of a version older than this Tollgate writes: its message one line,
    naming the command that makes it."""


def _names() -> dict[str, Any]:
    from psycopg import sql

    return {"table": sql.Identifier(TABLE), "day_index": sql.Identifier(f"{TABLE}_provider_day")}


def ensure_table(conn: psycopg.Connection) -> int:
    """The table made, or migrated to the newest of `MIGRATIONS` (`audit_postgres.migrate`), by
    the role that owns the records' tables (`tollgate audit migrate`); the version it was at.
    SchemaTooNew when it is newer than this Tollgate knows."""
    from tollgate.records.senders.audit_postgres import migrate

    return migrate(conn, TABLE, MIGRATIONS, _names(), kept="the command's output")


def check_table(conn: psycopg.Connection) -> None:
    """The table there at the version this Tollgate writes: NotMigrated when it is missing or
    older, SchemaTooNew when newer. The command makes none: its role may not (deploy/postgres-roles.sql)."""
    from tollgate.records.senders.audit_postgres import SchemaTooNew, schema_version

    found, known = schema_version(conn, TABLE), max(MIGRATIONS)
    if found > known:
        raise SchemaTooNew(TABLE, found, known, kept="the command's output")
    if found < known:
        at = "is missing" if found == 0 else f"is at schema version {found}, not {known}"
        raise NotMigrated(f"{TABLE} {at}: run `{MIGRATE}` as the owner of the records' tables first")


def store_table(conn: psycopg.Connection, run_at: datetime, rows: list[dict[str, Any]],
                days: list[dict[str, Any]]) -> int:  # fmt: skip
    """The run's rows and days inserted in one transaction, the table checked first (`check_table`);
    how many. `conn` in autocommit."""
    from psycopg import sql

    check_table(conn)
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


def exact_json(text: str | bytes) -> Any:
    """JSON with every number that has a fraction read as a `Decimal`, as written."""
    return json.loads(text, parse_float=Decimal)


@dataclass(frozen=True)
class Entry:
    """One result as kept: when its run was (UTC), and one row or day object."""

    run_at: datetime
    kind: str  # ROW or DAY
    body: Mapping[str, Any]

    @property
    def provider(self) -> str:
        return str(self.body["provider"])

    @property
    def day(self) -> str:
        return str(self.body["day"])


def entry(run_at: datetime, kind: str, body: Any) -> Entry | None:
    """A result as kept, or None when it is not one (no object, no provider, no ISO day): skipped."""
    if not isinstance(body, Mapping):
        return None
    provider, day = body.get("provider"), body.get("day")
    if not isinstance(provider, str) or not isinstance(day, str):
        return None
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    return Entry(run_at if run_at.tzinfo else run_at.replace(tzinfo=UTC), kind, body)


@dataclass
class Latest:
    """A provider's day as its newest run left it."""

    run_at: datetime
    rows: list[Mapping[str, Any]] = field(default_factory=list)
    day: Mapping[str, Any] | None = None


def latest(entries: Iterable[Entry]) -> dict[tuple[str, str], Latest]:
    """Per (provider, day), the newest run's rows (in the order read) and day (`table_entries`,
    `record_entries`)."""
    found: dict[tuple[str, str], Latest] = {}
    for entry in entries:
        at = (entry.provider, entry.day)
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


def table_entries(
    conn: psycopg.Connection, since: date | str | None = None, until: date | str | None = None
) -> Iterator[Entry]:
    """The table's results of the newest run of each provider and day from `since` to `until`, in
    provider, day and written order (none yet: the table missing, nothing)."""
    from psycopg import sql

    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not exists or not exists[0]:
        return
    query = sql.SQL(
        "SELECT t.run_at, t.kind, t.body::text FROM {table} t JOIN (SELECT provider, day, max(run_at) AS run_at"
        " FROM {table} WHERE (%(since)s::date IS NULL OR day >= %(since)s::date)"
        " AND (%(until)s::date IS NULL OR day <= %(until)s::date)"
        " GROUP BY provider, day) n ON t.provider = n.provider AND t.day = n.day AND t.run_at = n.run_at"
        " ORDER BY t.provider, t.day, t.kind, t.id"
    ).format(table=sql.Identifier(TABLE))
    for run_at, kind, body in conn.execute(query, {"since": since, "until": until}).fetchall():
        found = entry(run_at.astimezone(UTC), kind, exact_json(body))
        if found is not None:
            yield found


def record_entries(records: Iterable[Mapping[str, Any]]) -> Iterator[Entry]:
    """The results of the audit's `reconciliation` records (a record that is not one, and a result
    that is not one, left out). Parsed with `exact_json`, their amounts are exact."""
    for rec in records:
        if not isinstance(rec, Mapping) or rec.get("event") != EVENT or not isinstance(rec.get("ts"), str):
            continue
        try:
            run_at = datetime.fromisoformat(rec["ts"])
        except ValueError:
            continue
        for kind, name in ((ROW, "rows"), (DAY, "days")):
            bodies = rec.get(name)
            for body in bodies if isinstance(bodies, list) else ():
                found = entry(run_at, kind, body)
                if found is not None:
                    yield found
