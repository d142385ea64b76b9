"""The console over the fleet's table in PostgreSQL (`console/table.py`): N records (`bench/console.py`'s
year of them, 200,000 by default) stored as the sender stores them, then read as `tollgate console`
does at its first open; timed: the rows into the index (rows/s), the chain and columns checked behind
it, the index saved, and a restart (the saved index read, then the rows stored since).

    .venv/bin/python bench/console_postgres.py [--records 200000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from bench.console import make  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

from tollgate.console.follow import Audit  # noqa: E402
from tollgate.console.table import Table  # noqa: E402
from tollgate.console.views import Views  # noqa: E402
from tollgate.records.audit_postgres import ensure_schema, prepare, row_of, store  # noqa: E402

TABLE = "tollgate_records"


def load(dsn: str, path: Path, skip_last: int) -> list[bytes]:
    """The file's lines stored (COPY, as the sender does), but the last `skip_last`; those returned."""
    lines = path.read_bytes().splitlines()
    kept, rest = lines[: len(lines) - skip_last], lines[len(lines) - skip_last :]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        prepare(conn)
        for i in range(0, len(kept), 5000):
            store(conn, TABLE, [row_of(line) for line in kept[i : i + 5000]])
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return rest


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="tollgate-console-pg-"))
    server_directory = Path(tempfile.mkdtemp(prefix="tollgate-console-pg-server-"))  # the postgres user's own
    server = PostgresServer(server_directory).start()
    try:
        dsn = server.database()
        path = directory / "audit.jsonl"
        make(path, args.records)
        began = time.monotonic()
        rest = load(dsn, path, 10_000)
        print(f"stored: {args.records - 10_000} rows in {time.monotonic() - began:.1f} s")
        audit = Audit([path])
        began, cpu = time.monotonic(), time.process_time()
        audit.catch_up()
        took = time.monotonic() - began
        print(f"the same records from the file: {len(audit.index)} in {took:.2f} s"
              f" ({len(audit.index) / took:,.0f} rows/s; {time.process_time() - cpu:.2f} s CPU)")  # fmt: skip
        audit.close()
        del audit
        remember = directory / "index"
        table = Table(dsn, TABLE, remember=remember)
        table.open()
        began, cpu = time.monotonic(), time.process_time()
        table.catch_up()
        took = time.monotonic() - began
        print(f"first open, every view but Audit ready: {len(table.index)} rows in {took:.2f} s"
              f" ({len(table.index) / took:,.0f} rows/s; {time.process_time() - cpu:.2f} s CPU)")  # fmt: skip
        began, cpu = time.monotonic(), time.process_time()
        while table.verify_pending():
            pass
        took = time.monotonic() - began
        print(f"the chain and columns checked behind it: {took:.2f} s ({len(table.index) / took:,.0f} rows/s;"
              f" {time.process_time() - cpu:.2f} s CPU); {table.state()[0]['state']}")  # fmt: skip
        began = time.monotonic()
        table.save()
        print(f"the index saved: {time.monotonic() - began:.2f} s ({remember.stat().st_size / 1e6:.0f} MB)")
        table.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            prepare(conn)
            store(conn, TABLE, [row_of(line) for line in rest])
        began = time.monotonic()
        restarted = Table(dsn, TABLE, remember=remember)
        restarted.open()
        restarted.catch_up()
        first = time.monotonic() - began
        views = Views(restarted)  # type: ignore[arg-type]
        view = time.monotonic()
        views.answer("/api/people", {})
        print(f"a restart: {restarted.saved_records} rows from the saved index, {len(rest)} read since:"
              f" ready in {first:.2f} s; people in {(time.monotonic() - view) * 1000:.0f} ms")  # fmt: skip
        began = time.monotonic()
        while restarted.verify_pending():
            pass
        print(f"a restart: the chain checked for the rows since in {time.monotonic() - began:.2f} s")
        restarted.close()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(server_directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
