"""`tollgate audit migrate`: the records' table in PostgreSQL made, or migrated to the schema this
Tollgate knows, and `tollgate reconcile`'s table (`tollgate_reconciliation`) with it, by the role
that owns them (deploy/postgres-roles.sql's `tollgate_owner`: the
instances' role may not), and the views' sums backfilled from the rows already there, a batch of ids
at a time, its progress said; stopped, it goes on where it stopped when run again. The DSN comes
from the environment (`TOLLGATE_RECORDS_DSN`), never from the command line."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import psycopg

from tollgate.records.reconcile.kept_results import MIGRATIONS as RESULTS_MIGRATIONS
from tollgate.records.reconcile.kept_results import TABLE as RESULTS
from tollgate.records.reconcile.kept_results import ensure_table
from tollgate.records.senders.audit_postgres import (
    SCHEMA_VERSION,
    SchemaTooNew,
    described,
    ensure_schema,
    first_line,
)
from tollgate.records.senders.record_sums import BACKFILL_IDS, backfill, backfill_progress

DSN_VARIABLE = "TOLLGATE_RECORDS_DSN"
SAY_EVERY_S = 5.0  # how often the backfill's progress is said


def run(table: str, environ: dict[str, str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0 done; 1 the table's schema is newer than known, or the role may not migrate it; 2 no DSN,
    or the database cannot be reached."""
    dsn = (os.environ if environ is None else environ).get(DSN_VARIABLE)
    if not dsn:
        print(f"error: {DSN_VARIABLE} is not set: the owner's DSN (deploy/postgres-roles.sql)", file=err)
        return 2
    where = described(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="tollgate-migrate") as conn:
            for name, make, latest in ((table, lambda: ensure_schema(conn, table), SCHEMA_VERSION),
                                       (RESULTS, lambda: ensure_table(conn), max(RESULTS_MIGRATIONS))):  # fmt: skip
                try:
                    found = make()
                except SchemaTooNew as e:
                    print(f"error: {e}", file=err)
                    return 1
                except psycopg.errors.InsufficientPrivilege as e:
                    print(f"error: the role of {DSN_VARIABLE} may not migrate {name}: {first_line(e)}", file=err)
                    return 1
                if found < latest:
                    print(f"{where}: {name} migrated from schema version {found} to {latest}", file=out)
            left, said = 1, time.monotonic()
            while left:
                left = backfill(conn, table, BACKFILL_IDS, rounds=1)
                if left and time.monotonic() - said >= SAY_EVERY_S:
                    done, upto = backfill_progress(conn, table)
                    print(f"{where}: the sums of {table} backfilled to id {done} of {upto}", file=out, flush=True)
                    said = time.monotonic()
            done, upto = backfill_progress(conn, table)
            print(f"{where}: {table} at schema version {SCHEMA_VERSION}, its sums whole (backfilled to id {upto})",
                  file=out)  # fmt: skip
    except psycopg.OperationalError as e:
        print(f"error: PostgreSQL ({where}) cannot be reached: {first_line(e)}", file=err)
        return 2
    return 0
