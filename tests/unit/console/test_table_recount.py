"""The last days of the records' table summed again behind the console (`table_recount.py`): a column
and a sum changed in the database behind the console's back are faults of the Audit view; a table
whose sums agree with its rows shows none; a database away keeps the last answer."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from tests.support.postgres import PostgresServer
from tests.unit.console.test_table_source import TABLE, fleet, read_table, send

from tollgate.console.views import Views

DAY_AFTER = datetime(2026, 11, 3, 16, 0, tzinfo=UTC)  # the recount's "now": 2026-11-02 and -03 summed again


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.database()


def test_a_column_and_a_sum_changed_behind_the_console_are_audit_faults(dsn: str) -> None:
    send(dsn, fleet())
    table = read_table(dsn)
    try:
        table.recount.run(DAY_AFTER)
        views = Views(table)  # type: ignore[arg-type]
        assert [row for row in views.answer("/api/audit", {}) if row.get("sums")] == []  # whole: no fault row
        with psycopg.connect(dsn, autocommit=True) as conn:  # as the database's owner, not as the console
            conn.execute(f"UPDATE {TABLE} SET client = 'mallory' WHERE ts = '2026-11-03T13:00:00Z'")
            conn.execute(f"UPDATE {TABLE}_people SET calls = calls + 5 WHERE day = '2026-11-02' AND client = 'bob'")
        table.recount.run(DAY_AFTER)
        (row,) = [row for row in views.answer("/api/audit", {}) if row.get("sums")]
        assert (row["sums"], row["state"]) == (TABLE, "fault")
        said = "\n".join(row["faults"])
        assert f"2026-11-03: {TABLE} row " in said and "client not as its line says" in said
        assert f"2026-11-02: {TABLE}_people: " in said and " kept, " in said
        assert views.answer("/api/me", {})["audit"] == "fault"
    finally:
        table.close()


def test_a_database_away_keeps_the_last_recount(postgres: PostgresServer, dsn: str) -> None:
    send(dsn, fleet())
    table = read_table(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"UPDATE {TABLE}_people SET calls = calls + 1 WHERE day = '2026-11-03'")
        table.recount.run(DAY_AFTER)
        faults = list(table.recount.faults)
        assert faults
        postgres.stop()
        try:
            table.recount.run(DAY_AFTER)
            assert table.recount.faults == faults and table.recount.failing is not None
        finally:
            postgres.start()
        table.recount.run(DAY_AFTER)
        assert table.recount.failing is None and table.recount.faults == faults
    finally:
        table.close()
