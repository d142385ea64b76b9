"""Records per second of the audit's sender to PostgreSQL (`audit.postgres`): an audit file of
N call records (200,000 by default) written first, then one sender started on it, timed until the
table holds them all (its lag 0). Also the CPU per record of the sender (this process's) and of
the database's server (its processes', when it is started here), what a machine less busy than
this one would take, and the same file sent again (every row there already: none added).

    .venv/bin/python bench/audit_postgres.py                    # a PostgreSQL started here (initdb, pg_ctl)
    .venv/bin/python bench/audit_postgres.py --records 50000
    .venv/bin/python bench/audit_postgres.py --dsn postgresql://tollgate@db/bench   # yours (a table is written)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from bench.audit_sample import RECORD  # noqa: E402

from tollgate.records.senders.audit_postgres import AuditPostgres  # noqa: E402


def write_file(path: Path, count: int) -> None:
    with path.open("wb") as f:
        for n in range(count):
            record = {**RECORD, "request_id": f"r-{n:08d}", "seq": n + 1, "chain": os.urandom(32).hex()}
            f.write(orjson.dumps(record) + b"\n")


def rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return 0
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return 0 if row is None else int(row[0])


def server_cpu(data: Path | None) -> float:
    """CPU seconds of the server started here (its postmaster and the processes it started) so far."""
    if data is None:
        return 0.0
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def send(
    audit: Path, dsn: str, table: str, count: int, timeout: float, data: Path | None
) -> tuple[float, float, float, int]:
    """Seconds until the table holds `count` rows more than before, the sender's and the server's CPU
    seconds, rows added."""
    before = rows(dsn, table)
    cpu, server = time.process_time(), server_cpu(data)
    began = time.perf_counter()
    sender = AuditPostgres(str(audit), dsn, table).start()
    try:
        while sender.lag() != 0 or sender.shipped < count:
            if time.perf_counter() - began > timeout:
                raise SystemExit(f"not sent within {timeout:g} s: {sender.shipped} of {count}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
        spent, server = time.process_time() - cpu, server_cpu(data) - server  # its connection still open
    finally:
        sender.stop()
    return elapsed, spent, server, rows(dsn, table) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--dsn", help="a PostgreSQL to use instead of one started here")
    parser.add_argument("--table", default="tollgate_bench_records")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tollgate-bench-postgres-"))
    server = None
    try:
        dsn = args.dsn
        if dsn is None:
            from tests.support.postgres_server import PostgresServer, postgres_bin

            if postgres_bin() is None:
                raise SystemExit("PostgreSQL is not installed (Debian: apt-get install -y postgresql), or give --dsn")
            server = PostgresServer(Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))).start()
            dsn = server.database()
        audit = work / "audit.jsonl"
        write_file(audit, args.records)
        size = audit.stat().st_size
        print(f"{args.records:,} records, {size / 1e6:.1f} MB of audit file; sending to {args.table}")
        data = None if server is None else server.data
        elapsed, cpu, server_spent, added = send(audit, dsn, args.table, args.records, args.timeout, data)
        assert added == args.records, f"{added} rows added, not {args.records}"
        print(f"sent:       {args.records / elapsed:,.0f} records/s ({elapsed:.2f} s)")
        print(f"  CPU a record: the sender {cpu / args.records * 1e6:.1f} µs", end="")
        if data is not None:
            print(
                f", the server {server_spent / args.records * 1e6:.1f} µs: at most"
                f" {args.records / (cpu + server_spent):,.0f} records/s on one core for both"
            )
        else:
            print()
        # The same file sent again from its start (as after a lost position): nothing added.
        for suffix in (".postgres-position",):
            Path(str(audit) + suffix).unlink()
        elapsed, cpu, server_spent, added = send(audit, dsn, args.table, args.records, args.timeout, data)
        assert added == 0, f"{added} rows added again"
        print(f"sent again: {args.records / elapsed:,.0f} records/s ({elapsed:.2f} s; none added)")
        print(f"load average while measured: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
