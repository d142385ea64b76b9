"""How far the console checked the chain of the records' table, kept in the database
(`records/audit/verified.py`, the table `tollgate_verified`) by a connection of its own: the
connections the records are read by are read-only, and this one writes that table alone.

At the first check the progress kept there is taken (a restart, or another console, goes on from
it); then it is written every WRITE_EVERY_S while the check is behind, and at most every
WRITE_CAUGHT_UP_S once it has caught up with the rows. A database that will not keep it (it cannot
be reached, or the console's role may not make the table) is said once: the check goes on, its
progress kept by the console alone while it runs (a restart checks from the table's start)."""

from __future__ import annotations

import sys
import time

import psycopg
from psycopg import sql

from tollgate.records.audit import verified
from tollgate.records.audit.audit_verify import Verifier
from tollgate.records.audit.table_rows import Instance
from tollgate.records.senders.audit_postgres import SchemaTooNew, close_quietly, described, first_line

WRITE_EVERY_S = 10.0
WRITE_CAUGHT_UP_S = 1.0
RETRY_S = 60.0  # after the database would not keep it: between two tries
CONNECT_SECONDS = 10
STATEMENT_SECONDS = 30


class ChainProgress:
    """The progress of the check of `table` at `dsn`, read and written."""

    def __init__(self, dsn: str, table: str, keep_days: float | None) -> None:
        self.dsn, self.table, self.keep_days = dsn, table, keep_days
        self.resumed = False
        self.failing: str | None = None  # why it cannot be kept now (said once)
        self._conn: psycopg.Connection | None = None
        self._written: dict[str | None, int] = {}  # each instance's checked_id as last written
        self._at = 0.0  # when it was last written
        self._retry_at = 0.0

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="tollgate-console"
            )
            try:
                conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_SECONDS * 1000)))
                verified.ensure_table(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def resume(self, verifier: Verifier, instances: dict[str | None, Instance]) -> dict[str | None, int]:
        """The progress kept put into `verifier` and `instances` (`verified.resume`): the ids up to
        which each instance's rows are checked already. psycopg.OperationalError when the database
        cannot be reached (tried again at the next check); nothing, once, when it will not keep it."""
        try:
            skip = verified.resume(self._connection(), self.table, verifier, instances, self.keep_days)
        except psycopg.OperationalError:
            self._close()
            raise
        except (psycopg.Error, SchemaTooNew) as e:
            self.resumed = True
            self._failed(e)
            return {}
        self.resumed = True
        self._written = {instance: state.checked_id for instance, state in instances.items()}
        return skip

    def write(self, verifier: Verifier, instances: dict[str | None, Instance], caught_up: bool) -> None:
        """The instances checked further since written, when it is due."""
        if not any(state.checked_id > self._written.get(i, 0) for i, state in instances.items()):
            return
        now = time.monotonic()
        if now - self._at < (WRITE_CAUGHT_UP_S if caught_up else WRITE_EVERY_S) or now < self._retry_at:
            return
        self._at = now
        try:
            verified.save(self._connection(), self.table, verifier, instances, self._written, self.keep_days)
        except (psycopg.Error, SchemaTooNew) as e:
            self._failed(e)
            return
        if self.failing is not None:
            print(f"tollgate console: the chain's progress is kept in {verified.TABLE} again", file=sys.stderr,
                  flush=True)  # fmt: skip
            self.failing = None

    def close(self, verifier: Verifier, instances: dict[str | None, Instance]) -> None:
        self._at = self._retry_at = 0.0
        self.write(verifier, instances, caught_up=True)
        self._close()

    def _close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def _failed(self, error: BaseException) -> None:
        self._close()
        why = first_line(error)
        if self.failing is None:
            print(f"tollgate console: the chain's progress cannot be kept in {verified.TABLE} of PostgreSQL"
                  f" ({described(self.dsn)}): {why}; the check goes on", file=sys.stderr, flush=True)  # fmt: skip
        self.failing = why
        self._retry_at = time.monotonic() + RETRY_S
