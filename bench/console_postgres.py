"""The console over a fleet's records in PostgreSQL (`audit.postgres`): about a year of a
120-person team's records of three instances (5 million unless told), made inside PostgreSQL
(`console_postgres_fleet.py`: each a record line as Tollgate writes it, chained per instance, the
sums kept by the table's trigger); then 50,000 more stored by the sender's own code (COPY), timed;
then `tollgate console`'s reading of the table timed as a user meets it, in a process of its own.

    .venv/bin/python bench/console_postgres.py --records 1000000 --data /tmp/pg-1m  # a PostgreSQL started here
    .venv/bin/python bench/console_postgres.py --dsn postgresql://…  # yours (the table is written)

Prints: the records made a second, the sender's records a second (sums kept); the first view's
time with no local state and after a restart (the views are the database's: no row is read ahead,
nothing per record kept), the console's peak memory; each view's p95 over 30 days and over the
year (20 asks each), after a start and after a restart; the chain checked behind the views (rows a
second); a new call's delay to the live stream.
Targets (DESIGN): first view ≤ 2 s, peak ≤ 200 MB, p95 ≤ 1 s over 30 days and ≤ 3 s over a year,
Live ≤ 2 s, the sender ≥ 5,000 records a second. The data directory (about 2.5 GB a million
records) is kept between runs: a second run with the same --records skips the load (a load cut
short goes on where it stopped)."""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "addons"))
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import orjson  # noqa: E402
import psycopg  # noqa: E402

from console import make  # noqa: E402
from console_postgres_fleet import fill  # noqa: E402
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of, store  # noqa: E402

TABLE = "tollgate_records"
BATCH = 5000
SENDER_RECORDS = 50_000  # stored by the sender's code, timed
ASKS = 20


def load(dsn: str, records: int, instances: int, work: Path) -> None:
    """The fleet's records made in the database (`console_postgres_fleet`), then the sender's own
    rate: a run of one more instance stored by `store` (COPY, the sums kept by the trigger)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        (held,) = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE instance <> 'gw-sender'").fetchone() or (0,)
        if held >= records:
            print(f"the table holds {held} records already: no load")
            return
        print(f"making {records - held:,} records of {instances} instances in the database:")
        rate = fill(conn, TABLE, records, instances, held)
        print(f"made {records:,} records, {rate:,.0f} a second (the sums kept by the trigger)")
        conn.execute(f"DELETE FROM {TABLE} WHERE instance = 'gw-sender'")
        path = work / "gw-sender.jsonl"
        make(path, SENDER_RECORDS, instance="gw-sender", seed=99)
        rows = [row_of(line.rstrip(b"\n")) for line in path.open("rb")]
        path.unlink()
        prepare(conn)
        began, sent = time.perf_counter(), 0
        for at in range(0, len(rows), BATCH):
            sent += store(conn, TABLE, rows[at : at + BATCH])
        took = time.perf_counter() - began
        print(f"the sender's store (COPY, {BATCH} a batch, the sums kept): {sent:,} records in {took:.1f} s"
              f" ({sent / took:,.0f} a second; target ≥ 5,000)")  # fmt: skip
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def p95(name: str, ask: Callable[[], Any]) -> float:
    times = []
    for _ in range(ASKS):
        began = time.perf_counter()
        ask()
        times.append(time.perf_counter() - began)
    value = statistics.quantiles(times, n=20)[-1]
    print(f"  {name:<58} p95 {value * 1000:8.1f} ms")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tollgate-console-postgres")
    parser.add_argument("--dsn", help="a PostgreSQL of yours (else one is started on --data)")
    parser.add_argument("--phase", choices=["all", "first", "views"], default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    server = None
    if args.dsn is None:
        from tests.support.postgres_server import PostgresServer, postgres_bin

        if postgres_bin() is None:
            raise SystemExit("PostgreSQL is not installed (Debian: apt-get install -y postgresql), or give --dsn")
        server = PostgresServer.kept(args.data).start()
        args.dsn = server.dsn()
    try:
        if args.phase == "all":
            # The console in processes of its own: its memory is not the load's.
            load(args.dsn, args.records, args.instances, args.data)
            for phase in ("first", "views"):
                if phase == "views":
                    print("after a restart of the console:")
                subprocess.run([sys.executable, __file__, "--dsn", args.dsn, "--phase", phase,
                                "--data", str(args.data)], check=True)  # fmt: skip
        else:
            views(args)
    finally:
        if server is not None:
            server.stop()
    return 0


def views(args: argparse.Namespace) -> None:
    """The console over the table: its first view, each view's p95 over 30 days and a year, the
    chain checked behind, a new call's delay to the live stream, its peak memory."""
    import resource

    from tollgate.console.table import Table
    from tollgate.console.views import LIVE_WAIT_S, Views

    first = args.phase == "first"
    began, cpu = time.perf_counter(), time.process_time()
    table = Table(args.dsn)
    table.open()
    table.catch_up()
    board = Views(table)
    board.answer("/api/events", {})  # the page's first view: Live
    wall, spent = time.perf_counter() - began, time.process_time() - cpu
    print(f"{'first open' if first else 'restart'}: the first view (Live) ready in {wall:.1f} s ({spent:.1f} s of"
          f" CPU; target ≤ 2 s)")  # fmt: skip
    began = time.perf_counter()
    table.verify_pending()  # as the console's follower does behind the views: the rows counted first
    print(f"  then behind the views: {sum(table.counts.values()):,} records counted per instance (and"
          f" {table.checked:,} checked) in {time.perf_counter() - began:.1f} s")  # fmt: skip
    began = time.perf_counter()
    board.answer("/api/people", {})
    print(f"  then People over every record, its first ask: {time.perf_counter() - began:.1f} s (each day's sums made)")
    worst = {}
    for span, query in (("30 days", {"since": ["2026-10-31"], "until": ["2026-11-30"]}), ("a year", {})):
        asks: list[tuple[str, str, dict[str, list[str]]]] = [
            ("events", "/api/events", {}),
            ("events of a client", "/api/events", {"client": ["person-007"]}),
            ("events of a kind (MCP calls)", "/api/events", {"event": ["mcp_call"]}),
            ("events of a rare kind (3 starts in the table)", "/api/events", {"event": ["tollgate_started"]}),
            ("events refused", "/api/events", {"decision": ["deny"]}),
            ("events of a provider", "/api/events", {"provider": ["gemini"]}),
            ("people", "/api/people", query),
            ("spend by provider, a day each", "/api/spend", query),
            ("spend by model", "/api/spend", {**query, "by": ["model"]}),
            ("refusals", "/api/refusals", query),
            ("findings", "/api/findings", query),
            ("inventory", "/api/inventory", query),
            ("audit", "/api/audit", {}),
        ]
        if span == "30 days":
            asks.append(
                ("spend by client, an hour each", "/api/spend", {**query, "by": ["client"], "bucket": ["hour"]})
            )
        print(f" over {span}:")
        worst[span] = max(p95(name, lambda p=path, q=q: board.answer(p, q)) for name, path, q in asks)
    print(
        f"slowest p95: {worst['30 days'] * 1000:.0f} ms over 30 days (target ≤ 1 s),"
        f" {worst['a year'] * 1000:.0f} ms over a year (target ≤ 3 s)"
    )
    checked_from, began = table.checked, time.perf_counter()
    while table.checked - checked_from < 100_000 and table.verify_pending():
        pass
    took = time.perf_counter() - began
    print(f"the chain and columns checked behind the views: {table.checked - checked_from} records in {took:.1f} s"
          f" ({(table.checked - checked_from) / took:,.0f} a second)")  # fmt: skip
    print(
        f"a new call to the live stream: {live(args.dsn, board):.2f} s (target ≤ 2 s; the live stream looks"
        f" every {LIVE_WAIT_S} s)"
    )
    table.close()
    peak = peak_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"the console's peak memory: {peak:.0f} MB (target ≤ 200 MB)")


def peak_mb(fallback: float) -> float:
    """The process's own peak memory (VmHWM: its memory's, not `ru_maxrss`, which a process
    started by this one's `subprocess` begins with this one's size); `fallback` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return fallback


def live(dsn: str, board: Any) -> float:
    """From a new call's row committed (as its instance's sender commits it) to the live stream
    sending it (`Views.newer`, as the console's stream asks it)."""
    line = orjson.dumps({"event": "llm_call", "instance": "gw-new", "seq": 1, "ts": "2026-12-01T00:00:00.000Z",
                         "client": "person-001", "provider": "openai", "model": "gpt-4o", "decision": "allow",
                         "chain": secrets.token_hex(32)})  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare(conn)
        seen = board.live_start()
        store(conn, TABLE, [row_of(line)])
        committed = time.perf_counter()
    deadline = committed + 30
    while time.perf_counter() < deadline:
        lines, seen = board.newer(seen, {})
        if lines:
            break
    return time.perf_counter() - committed


if __name__ == "__main__":
    sys.exit(main())
