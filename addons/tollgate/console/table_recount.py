"""The last days of the records' table summed again now and then (`table_sums.recomputed_day`), behind
the console's views: a sum kept, or a column the event list filters by, that no longer says what the
rows' lines say (changed in the database behind the console's back) is a fault of the Audit view.

Every EVERY_S, once the chain is checked up to the newest row, the DAYS last days (UTC) are summed
again on a connection of its own, in one snapshot (REPEATABLE READ: rows arriving meanwhile are
in both or in neither). A database that cannot be reached keeps the last answer until it can."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from tollgate.console.table_sums import recomputed_day
from tollgate.records.senders.audit_postgres import close_quietly, described, first_line

EVERY_S = 300.0
DAYS = 2  # today and yesterday: the days whose rows still arrive
SHOWN = 20  # the differences said at most (then how many more)
CONNECT_SECONDS = 10
STATEMENT_SECONDS = 120


class Recount:
    """The recount of `table` at `dsn`, and the faults it found last."""

    def __init__(self, dsn: str, table: str, every_s: float = EVERY_S) -> None:
        self.dsn, self.table, self.every_s = dsn, table, every_s
        self.faults: list[str] = []
        self.failing: str | None = None
        self._due = 0.0  # the first at once
        self._conn: psycopg.Connection | None = None

    def when_due(self, now: datetime | None = None) -> None:
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.every_s
        self.run(now)

    def run(self, now: datetime | None = None) -> None:
        """The last DAYS days summed again now."""
        today = (now or datetime.now(UTC)).date()
        found: list[str] = []
        try:
            conn = self._connection()
            for back in range(DAYS - 1, -1, -1):
                day = str(today - timedelta(days=back))
                found.extend(f"{day}: {difference}" for difference in recomputed_day(conn, day, self.table))
        except psycopg.Error as e:
            self.close()
            if self.failing is None:
                print(f"tollgate console: the sums of {self.table} ({described(self.dsn)}) cannot be summed again:"
                      f" {first_line(e)}; tried again", file=sys.stderr, flush=True)  # fmt: skip
            self.failing = first_line(e)
            return
        self.failing = None
        self.faults = found[:SHOWN] + ([f"and {len(found) - SHOWN} more"] if len(found) > SHOWN else [])

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="tollgate-console"
            )
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for the rows and the sums
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_SECONDS * 1000)))
            self._conn = conn
        return self._conn

    def rows(self) -> list[dict[str, Any]]:
        """`/api/audit`'s row of the sums when they differ from the rows (none while they agree)."""
        if not self.faults:
            return []
        return [{
            "file": None, "instance": None, "sums": self.table, "records": None, "state": "fault",
            "faults": list(self.faults), "anchor": None, "anchor_gaps": None, "last_checkpoint": None,
            "signed": None, "worker_lost": 0, "last_record": None, "removed": None,
        }]  # fmt: skip

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None
