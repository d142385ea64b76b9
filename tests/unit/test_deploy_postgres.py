"""deploy/postgres-roles.sql run with psql against a real PostgreSQL (`tests/support/postgres.py`):
the owner's role makes and migrates the table and its sums; the sender's role sends records (COPY,
a batch sent again through its temporary table, keep_days' DELETE), and can update no row, write
no sum, change no trigger; the console's role reads them and can change none of them, nor the
records' schema version; the console makes and writes its own access log, the sessions every
replica shares, and how far it checked the chain (`tollgate_verified`), which the sender cannot
write."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
import psycopg.errors
import pytest
from tests.support.deploy import as_role, migrate_as_owner, run_roles
from tests.support.postgres import PostgresServer
from tests.unit.audit_lines import append_records, wait_until

from tollgate.console.day_sums import Window
from tollgate.console.table_sums import TableSums, recomputed_day
from tollgate.records.senders.audit_postgres import SCHEMA_VERSION, AuditPostgres

TABLE = "tollgate_records"
FAST = {"batch_seconds": 0.05, "first_delay": 0.05, "max_delay": 0.2, "connect_timeout": 2}


MANAGED_ADMIN = "tollgate_test_admin"


@pytest.fixture(params=["superuser", "managed admin"])
def database(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[dict[str, str]]:
    """A new database with the two roles made by the file (run twice: it may be run again), by a
    superuser, or by a managed service's admin: not a superuser, the database's owner, CREATEROLE."""
    admin = postgres.database()
    if request.param == "managed admin":
        name = urlsplit(admin).path.lstrip("/")
        with postgres.connect() as conn:
            if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (MANAGED_ADMIN,)).fetchone() is None:
                conn.execute(f"CREATE ROLE {MANAGED_ADMIN} LOGIN CREATEROLE")
            conn.execute(f"ALTER DATABASE {name} OWNER TO {MANAGED_ADMIN}")
        admin = as_role(admin, MANAGED_ADMIN, "admin-pw")
    for _ in range(2):
        done = run_roles(admin, "sender-pw-1", "console-pw-1")
        assert (done.returncode, done.stderr) == (0, ""), done.stdout
    migrate_as_owner(admin)
    yield {
        "admin": admin,
        "sender": as_role(admin, "tollgate_sender", "sender-pw-1"),
        "console": as_role(admin, "tollgate_console", "console-pw-1"),
    }


def write_records(path: Path, first: int, count: int, ts: str) -> list[str]:
    return append_records(
        path,
        ({"event": "llm_call", "ts": ts, "instance": "tollgate-0", "client": "team-a", "seq": n,
          "chain": f"{n:064x}", "cost_usd": 0.001} for n in range(first, first + count)),
    )  # fmt: skip


def stored(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute(f"SELECT line FROM {TABLE} ORDER BY id")]


def send(audit: Path, dsn: str, expected: list[str], keep_days: float | None = None) -> AuditPostgres:
    sender = AuditPostgres(str(audit), dsn, keep_days=keep_days, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: stored(dsn) == expected and sender.lag() == 0)
    finally:
        assert sender.stop()
    return sender


@pytest.mark.slow
def assert_refused(connection: psycopg.Connection, *statements: str) -> None:
    """Each of `statements` refused to the connection's role: it lacks the privilege."""
    for statement in statements:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)


def test_the_sender_role_sends_and_the_console_role_reads_and_changes_nothing(
    database: dict[str, str], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    old = write_records(audit, 0, 3, "2020-01-01T00:00:00.000Z")
    # The sender's role makes the table in the schema tollgate and COPYs the rows.
    send(audit, database["sender"], old)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    recent = write_records(audit, 3, 2, now)
    # From no position: every line sent again, through its temporary table and ON CONFLICT (two
    # new), and keep_days removes the three old rows.
    Path(str(audit) + ".postgres-position").unlink()
    again = send(audit, database["sender"], recent, keep_days=30)
    assert again.stored == 2
    with psycopg.connect(database["admin"], autocommit=True) as admin:
        owners = admin.execute(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'tollgate' ORDER BY tablename"
        ).fetchall()
    assert {owner for _, owner in owners} == {"tollgate_owner"}
    assert {"tollgate_records", "tollgate_schema", "tollgate_records_people"} <= {name for name, _ in owners}

    with psycopg.connect(database["sender"], autocommit=True) as sender:
        assert sender.execute(f"SELECT sum(calls) FROM {TABLE}_people").fetchone() == (2,)
        refused = [
            f"UPDATE {TABLE} SET client = 'mallory'",
            f"ALTER TABLE {TABLE} DISABLE TRIGGER {TABLE}_sums_added",
            f"DROP TRIGGER {TABLE}_sums_removed ON {TABLE}",
            f"CREATE OR REPLACE FUNCTION {TABLE}_sums_added() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
            f"TRUNCATE {TABLE}",
            f"UPDATE {TABLE}_people SET calls = 0",
            f"DELETE FROM {TABLE}_people",
            f"INSERT INTO {TABLE}_spend_day (day, jwt, calls, input_tokens, output_tokens, cost_usd)"
            " VALUES ('2026-11-01', false, 1, 1, 1, 1)",
            f"UPDATE {TABLE}_backfill SET done = 0",
            "UPDATE tollgate_schema SET version = 1",
            "CREATE TABLE tollgate_other (x text)",
        ]
        assert_refused(sender, *refused)

    with psycopg.connect(database["console"], autocommit=True) as console:
        assert [r[0] for r in console.execute(f"SELECT line FROM {TABLE} ORDER BY id")] == recent
        assert dict(console.execute("SELECT name, version FROM tollgate_schema").fetchall()) == {
            TABLE: SCHEMA_VERSION, "tollgate_reconciliation": 1}  # fmt: skip
        refused = [
            f"UPDATE {TABLE} SET client = 'mallory'",
            f"DELETE FROM {TABLE}",
            f"INSERT INTO {TABLE} (chain, line) VALUES ('forged', '{{}}')",
            f"TRUNCATE {TABLE}",
            f"DROP TABLE {TABLE}",
            f"ALTER TABLE {TABLE} ADD COLUMN x text",
            "INSERT INTO tollgate_schema (name, version) VALUES ('tollgate_other', 1)",
            "DELETE FROM tollgate_schema",
        ]
        assert_refused(console, *refused)
        # The records' schema version cannot be changed (which would stop every sender): the row
        # is not the console's to update.
        assert console.execute("UPDATE tollgate_schema SET version = 99 WHERE name = %s", (TABLE,)).rowcount == 0
        assert console.execute("SELECT version FROM tollgate_schema WHERE name = %s", (TABLE,)).fetchall() == [
            (SCHEMA_VERSION,)]  # fmt: skip
    assert stored(database["sender"]) == recent
    # The console's role reads the sums, and sums a day again (in a temporary table of its own).
    with psycopg.connect(database["console"], autocommit=True) as console:
        assert [row["calls"] for row in TableSums(console, TABLE).people(Window())] == [2]
        assert recomputed_day(console, now[:10], TABLE) == []
        assert_refused(console, f"UPDATE {TABLE}_people SET calls = 0", f"DELETE FROM {TABLE}_people")


@pytest.mark.slow
def test_the_console_role_makes_and_writes_its_access_log(database: dict[str, str], tmp_path: Path) -> None:
    access_log = pytest.importorskip("tollgate.console.access_log", reason="the console's access log is not here")
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    send(audit, database["sender"], write_records(audit, 0, 1, "2026-11-28T10:00:00.000Z"))
    record = {"event": "console_access", "ts": "2026-11-28T10:00:00.000Z", "action": "sign_in",
              "email": "alice@example.com", "role": "self", "status": 303}  # fmt: skip
    with psycopg.connect(database["console"], autocommit=True) as console:
        for _ in range(2):  # made the first time, found the second
            access_log.ensure_table(console)
        access_log.insert(console, record, orjson.dumps(record) + b"\n")
        assert console.execute(f"SELECT email FROM {access_log.TABLE}").fetchall() == [("alice@example.com",)]
        versions = dict(console.execute("SELECT name, version FROM tollgate_schema").fetchall())
    assert versions == {TABLE: SCHEMA_VERSION, access_log.TABLE: access_log.TABLE_VERSION, "tollgate_reconciliation": 1}


@pytest.mark.slow
def test_the_console_role_makes_and_keeps_the_sessions_every_replica_shares(database: dict[str, str]) -> None:
    from tollgate.console.session_table import NAME, VERSION, SessionTable
    from tollgate.console.sessions import PendingSignIn
    from tollgate.console.viewer import Viewer

    replicas = [SessionTable(database["console"]) for _ in range(2)]
    try:
        for replica in replicas:  # made by the first, found by the second
            replica.prepare()
        lena = Viewer("lead", "lena@example.com", "Lena", frozenset({"research"}))
        session = replicas[0].open(lena)
        assert replicas[1].viewer([session]) == lena
        replicas[1].hold("pre-sign-in", PendingSignIn("s", "n", "v", "/"), 600)
        assert replicas[0].take(["pre-sign-in"]) == PendingSignIn("s", "n", "v", "/")
        assert replicas[1].end([session]) == lena and replicas[0].viewer([session]) is None
    finally:
        for replica in replicas:
            replica.close()
    with psycopg.connect(database["console"], autocommit=True) as console:
        versions = dict(console.execute("SELECT name, version FROM tollgate_schema").fetchall())
        assert versions[NAME] == VERSION
        # Its own rows of tollgate_schema alone.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            console.execute("INSERT INTO tollgate_schema (name, version) VALUES ('tollgate_another', 1)")


@pytest.mark.slow
def test_the_console_role_keeps_how_far_it_checked_the_chain(database: dict[str, str], tmp_path: Path) -> None:
    from tollgate.console.table import Table

    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    send(audit, database["sender"], write_records(audit, 1, 3, "2026-11-28T10:00:00.000Z"))
    for _ in range(2):  # the table made the first time, found the second
        table = Table(database["console"], TABLE)
        table.open()
        table.catch_up()
        while table.verify_pending():
            pass
        assert table.progress.failing is None
        table.close()
    with psycopg.connect(database["admin"], autocommit=True) as admin:
        owner = admin.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'tollgate_verified'").fetchone()
    with psycopg.connect(database["console"], autocommit=True) as console:
        kept = console.execute("SELECT instance, checked_id FROM tollgate_verified").fetchall()
        versions = dict(console.execute("SELECT name, version FROM tollgate_schema").fetchall())
    assert (owner, kept, versions["tollgate_verified"]) == (("tollgate_console",), [("tollgate-0", 3)], 1)
    with (
        psycopg.connect(database["sender"], autocommit=True) as sender,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        sender.execute("UPDATE tollgate_verified SET checked_id = 99")


@pytest.mark.slow
def test_only_the_owner_migrates(database: dict[str, str]) -> None:
    from tollgate.records.senders.records_migration import run

    out, err = io.StringIO(), io.StringIO()
    assert run("tollgate_other", {"TOLLGATE_RECORDS_DSN": database["sender"]}, out, err) == 1
    assert err.getvalue().startswith("error: the role of TOLLGATE_RECORDS_DSN may not migrate tollgate_other: ")
    assert err.getvalue().count("\n") == 1 and "sender-pw" not in err.getvalue()
    said = migrate_as_owner(database["admin"], table="tollgate_other")
    assert said.endswith(f"tollgate_other at schema version {SCHEMA_VERSION}, its sums whole (backfilled to id 0)\n")
    assert migrate_as_owner(database["admin"], table="tollgate_other").count("\n") == 1  # nothing to do: one line
    assert run("tollgate_other", {}, out, err) == 2


@pytest.mark.slow
def test_reconcile_writes_its_results_as_the_sender_in_the_table_the_owner_made(database: dict[str, str]) -> None:
    from datetime import UTC, datetime

    from tests.support.reconciliation import day, row, side

    from tollgate.console.invoice_results import FromTable
    from tollgate.records.reconcile.kept_results import TABLE, NotMigrated, check_table, store_table

    rows = [row("openai", "2026-11-20", "key_a", "gpt-4o-mini", "match", side(1, 1, 1, "0.1"), side(1, 1, 1, "0.1"),
                "sha256:aaaaaaaaaaaa")]  # fmt: skip
    days = [day("openai", "2026-11-20", "1", "0.1", "0.1", "0", None)]
    with psycopg.connect(database["admin"], autocommit=True) as admin:
        owner = admin.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (TABLE,)).fetchone()
    assert owner == ("tollgate_owner",)  # made by `tollgate audit migrate`, with the records' table
    with psycopg.connect(database["sender"], autocommit=True) as sender:
        assert store_table(sender, datetime(2026, 11, 22, 6, tzinfo=UTC), rows, days) == 2
        assert_refused(sender, f"UPDATE {TABLE} SET body = '{{}}'", f"DROP TABLE {TABLE}", f"TRUNCATE {TABLE}")
    results = FromTable(database["console"])
    try:
        assert [(r.kind, r.body["key_id" if r.kind == "row" else "coverage"]) for r in
                results.results("2026-11-01", "2026-11-30")] == [("row", "key_a"), ("day", "1")]  # fmt: skip
    finally:
        results.close()
    with psycopg.connect(database["console"], autocommit=True) as console:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            console.execute(f"DELETE FROM {TABLE}")
        # An older version than this Tollgate writes: the command says to migrate, and writes nothing.
        with psycopg.connect(database["admin"], autocommit=True) as admin:
            admin.execute("UPDATE tollgate.tollgate_schema SET version = 0 WHERE name = %s", (TABLE,))
        with pytest.raises(NotMigrated, match="run `tollgate audit migrate` as the owner"):
            check_table(console)
    assert "migrated from schema version 0 to 1" in migrate_as_owner(database["admin"])
