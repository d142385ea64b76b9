"""The views answered by PostgreSQL's sums (`console/table_sums.py`, kept by the triggers of
`records/senders/record_sums.py`) against a real server (`tests/support/postgres.py`): for the same
records, of many shapes, every view answers as the console's `Index` over the same lines does, for
every scope; a batch sent again moves no sum; rows removed take their sums with them; a sum, a
column or a line changed behind the back is found by `recomputed_day`; a table of the version
before, with rows, is migrated and backfilled, resumably."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.postgres import PostgresServer

from tollgate.console.day_sums import Window
from tollgate.console.index import Index
from tollgate.console.scope import Scope, ScopeRules
from tollgate.console.table_sums import TableSums, recomputed_day
from tollgate.console.viewer import Viewer
from tollgate.records.senders import audit_postgres
from tollgate.records.senders.audit_postgres import ensure_schema, migrate, prepare, row_of, store
from tollgate.records.senders.record_sums import backfill, backfill_progress

RULES = ScopeRules(
    people={"alice@example.com": frozenset({"team-a"}), "bob@example.com": frozenset({"team-b"})},
    groups={"team-a": ("eng",), "team-b": ("ops",), "team-c": ("eng", "ops")},
    prefixes=("jwt:",),
)
VIEWERS = (
    Viewer(email="sec@example.com", name="Sec", role="security"),
    Viewer(email="alice@example.com", name="Alice", role="self"),
    Viewer(email="Bob@Example.com", name="Bob", role="self"),
    Viewer(email="lead@example.com", name="Lead", role="lead", leads=frozenset({"eng"})),
)
WINDOWS = (
    Window(),
    Window("2026-11-02T00", None),
    Window(None, "2026-11-03T00"),
    Window("2026-11-01T05", "2026-11-02T13"),
    Window("2026-11-04T00", "2026-11-04T06"),
)
HOURLY = (Window("2026-11-01T00", "2026-11-05T00"), Window("2026-11-02T03", "2026-11-02T20"))


def pick(r: random.Random, *choices: Any) -> Any:
    return choices[r.randrange(len(choices))]


MISSING = object()


def record(r: random.Random, n: int) -> dict[str, Any]:
    """A record of one of the shapes a line may have: the audit's own, and fields of other kinds."""
    fields: dict[str, Any] = {
        "event": pick(
            r,
            "llm_call",
            "llm_call",
            "llm_call",
            "mcp_call",
            "connection",
            "connection",
            "proxy_start",
            "malformed",
            5,
            MISSING,
        ),
        # Each record its own second: the order of two records of one time is not compared.
        "ts": f"2026-11-{1 + n // 1000 % 5:02d}T{n // 40 % 24:02d}:{n % 40:02d}:{n // 5 % 60:02d}.{n % 1000:03d}Z",
        "client": pick(r, "team-a", "team-b", "team-c", "jwt:alice@example.com", None, 7, MISSING),
        "groups": pick(r, ["eng"], ["ops"], ["eng", "ops"], [], None, MISSING, "eng", [1]),
        "account": pick(r, "Alice@Example.com", "bob@example.com", None, MISSING, 3),
        "instance": pick(r, "tollgate-0", "tollgate-1", None, MISSING),
        "auth": pick(r, "jwt", "key", MISSING),
        "upstream_key": pick(r, "fp-1", "fp-2", None, MISSING),
        "provider": pick(r, "openai", "anthropic", "", None, MISSING, 5),
        "requested_provider": pick(r, "openai", "", MISSING),
        "host": pick(r, "api.openai.com", "chatgpt.com", "", MISSING),
        "model": pick(r, "gpt-4o", "claude-3", None, MISSING, 1),
        "decision": pick(r, "allow", "allow", "deny", None, MISSING),
        "input_tokens": pick(r, r.randrange(2000), 0, -1, 1.5, "3", None, True, 3_000_000_000, MISSING),
        "output_tokens": pick(r, r.randrange(2000), 0, 2.0, None, MISSING),
        "cost_usd": pick(r, r.randrange(10**6) / 10**6, r.randrange(100) / 10**5, 1, 0, None, MISSING, "0.1", True),
        "refusal": pick(r, None, None, MISSING, "budget", "content_denied", "rate_limit", 5),
        "deny_reasons": pick(r, None, MISSING, ["over budget"], ["a", "b"], [], "x", [1, True, None]),
        "error": pick(r, "boom", None, MISSING),
        "findings": pick(r, None, MISSING, {}, {"email": 2, "key": 0}, {"email": 1.5, "card": 1}, [], "x"),
        "answer_findings": pick(r, None, MISSING, {"email": 1}, {}, 3),
        "redacted": pick(r, 0, 1, None, 2.0, MISSING),
        "answer_redacted": pick(r, 0, 3, MISSING),
        "ttfb_ms": pick(r, None, 12.5, MISSING),
        "service": pick(r, "chatgpt", "claude-web", None, MISSING),
        "bytes_sent": pick(r, r.randrange(5000), -5, None, MISSING),
        "bytes_received": pick(r, r.randrange(5000), 1.5, MISSING),
        "chain": f"{n:064x}",
    }
    # A service's category is the same in every record of it (which came first is not compared).
    fields["category"] = {"chatgpt": "chat", "claude-web": None}.get(fields["service"], MISSING)
    if r.random() < 0.05:
        fields["ts"] = pick(r, "2026-11-01", 5, None, "2026-11-03T0x garbage")
    return {k: v for k, v in fields.items() if v is not MISSING}


def lines_of(seed: int, count: int) -> list[bytes]:
    r = random.Random(seed)
    lines = [orjson.dumps(record(r, n)) for n in range(count)]
    # Lines that are no record: not JSON, no object, not UTF-8.
    lines[count // 3 : count // 3] = [b"not json", b"[1, 2]", b'{"event": "llm_call"', b'{"client": "\xff"}']
    return lines


def indexed(lines: list[bytes]) -> Index:
    index = Index()
    data = b"".join(line + b"\n" for line in lines)
    index.add_lines(0, 0, data, len(data), {})
    return index


@pytest.fixture(scope="module")
def dsn(postgres: PostgresServer) -> str:
    return postgres.database()


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as c:
        prepare(c)
        yield c


def new_table(conn: psycopg.Connection) -> str:
    table = f"records_{uuid.uuid4().hex[:10]}"
    ensure_schema(conn, table)
    return table


def send(conn: psycopg.Connection, table: str, lines: list[bytes], batch: int = 97) -> None:
    for at in range(0, len(lines), batch):
        store(conn, table, [row_of(line) for line in lines[at : at + batch]])


def assert_same(index: Index, sums: TableSums) -> None:
    """Every view of both, for every window and viewer, equal."""
    sums.refresh()
    for viewer in VIEWERS:
        scope_i, scope_t = Scope(viewer, RULES), Scope(viewer, RULES)
        chosen_i, chosen_t = scope_i.chosen(index), scope_t.chosen(sums)  # type: ignore[arg-type]
        for window in WINDOWS:
            for view in ("people", "refusals", "findings", "inventory"):
                got = getattr(sums, view)(window, chosen_t)
                assert got == getattr(index, view)(window, chosen_i), (view, viewer.role, window)
            for by in ("provider", "model", "client"):
                assert sums.spend(window, by, "day", chosen_t) == index.spend(window, by, "day", chosen_i)
        for window in HOURLY:
            for by in ("provider", "model", "client"):
                assert sums.spend(window, by, "hour", chosen_t) == index.spend(window, by, "hour", chosen_i)


def snapshot(conn: psycopg.Connection, table: str) -> dict[str, list[tuple]]:
    return {
        name: sorted(map(repr, conn.execute(f"SELECT * FROM {table}_{name}").fetchall()))  # type: ignore[misc]
        for name in ("people", "spend_day", "spend_hour", "refusals", "findings", "services")
    }


@pytest.mark.slow
def test_every_view_answers_as_the_index_and_a_resent_batch_moves_nothing(conn: psycopg.Connection) -> None:
    table = new_table(conn)
    lines = lines_of(1, 1500)
    send(conn, table, lines)
    sums = TableSums(conn, table)
    index = indexed(lines)
    assert index.people(Window()) and index.refusals(Window()) and index.findings(Window())
    assert index.inventory(Window()) and index.spend(Window(), "model", "day")
    assert_same(index, sums)
    before = snapshot(conn, table)
    send(conn, table, lines[200:500], batch=150)  # sent again: ON CONFLICT DO NOTHING
    send(conn, table, [*lines[1400:], b'{"event": "proxy_start"}'], batch=500)  # some again, one new
    assert snapshot(conn, table) == before
    assert recomputed_day(conn, "2026-11-02", table) == []


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 120), batch=st.integers(1, 40))
def test_any_records_any_batches(conn: psycopg.Connection, seed: int, count: int, batch: int) -> None:
    table = new_table(conn)
    lines = lines_of(seed, count)
    send(conn, table, lines, batch)
    assert_same(indexed(lines), TableSums(conn, table))


@pytest.mark.slow
def test_rows_removed_take_their_sums(conn: psycopg.Connection) -> None:
    table = new_table(conn)
    lines = lines_of(2, 1200)
    send(conn, table, lines)
    ids = [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]  # type: ignore[misc]
    # Part of a day, some rows of others, as keep_days' DELETE and a hand's would.
    gone = set(ids[:130]) | set(ids[700:720]) | set(random.Random(3).sample(ids, 60))
    conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (sorted(gone),))  # type: ignore[arg-type]
    kept = [line for n, line in zip(ids, lines, strict=True) if n not in gone]
    assert_same(indexed(kept), TableSums(conn, table))
    for day in ("2026-11-01", "2026-11-02"):
        assert recomputed_day(conn, day, table) == []


@pytest.mark.slow
def test_keep_days_removes_the_sums_of_the_rows_it_removes(conn: psycopg.Connection) -> None:
    table = new_table(conn)
    old = [orjson.dumps({"event": "llm_call", "ts": f"2020-01-01T00:00:0{n}Z", "client": "team-a", "chain": f"o{n}",
                         "cost_usd": 0.5, "model": "m"}) for n in range(3)]  # fmt: skip
    recent = lines_of(4, 50)
    send(conn, table, old + recent)
    assert audit_postgres.remove_older(conn, table, 365) == 3
    sums = TableSums(conn, table)
    assert sums.people(Window(None, "2021-01-01T00")) == []
    assert_same(indexed(recent), sums)


@pytest.mark.slow
def test_a_sum_a_column_or_a_line_changed_behind_the_back_is_found(conn: psycopg.Connection) -> None:
    table = new_table(conn)
    lines = [orjson.dumps({"event": "llm_call", "ts": f"2026-11-02T08:00:0{n}Z", "client": "team-a", "chain": f"c{n}",
                           "cost_usd": 0.25, "model": "gpt-4o", "provider": "openai", "input_tokens": 10})
             for n in range(4)]  # fmt: skip
    send(conn, table, lines)
    assert recomputed_day(conn, "2026-11-02", table) == []
    conn.execute(f"UPDATE {table}_people SET cost_usd = cost_usd - 0.25")
    (found,) = recomputed_day(conn, "2026-11-02", table)
    assert found.table == f"{table}_people" and found.stored is not None and found.recounted is not None
    assert "kept" in str(found)
    conn.execute(f"UPDATE {table}_people SET cost_usd = cost_usd + 0.25")
    assert recomputed_day(conn, "2026-11-02", table) == []

    conn.execute(f"UPDATE {table} SET client = 'team-b' WHERE chain = 'c1'")
    (found,) = recomputed_day(conn, "2026-11-02", table)
    assert (found.table, found.columns) == (table, ("client",))
    conn.execute(f"UPDATE {table} SET client = 'team-a' WHERE chain = 'c1'")

    # The line itself: its sums are no longer those kept.
    conn.execute(f"UPDATE {table} SET line = replace(line, '\"team-a\"', '\"team-b\"') WHERE chain = 'c2'")
    differences = recomputed_day(conn, "2026-11-02", table)
    assert {d.table for d in differences} >= {f"{table}_people", f"{table}_spend_day", f"{table}_spend_hour"}
    # A sum row of another day leaves this one whole.
    assert recomputed_day(conn, "2026-11-03", table) == []


@pytest.mark.slow
def test_a_table_of_the_version_before_is_migrated_and_backfilled(conn: psycopg.Connection) -> None:
    table = f"records_{uuid.uuid4().hex[:10]}"
    first = {1: audit_postgres.MIGRATIONS[1]}
    migrate(conn, table, first, audit_postgres._names(table))
    lines = lines_of(5, 900)
    send(conn, table, lines[:700])
    assert ensure_schema(conn, table) == 1
    assert audit_postgres.schema_version(conn, table) == audit_postgres.SCHEMA_VERSION
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,))}
    assert {f"{table}_{n}" for n in ("instance_ts", "event_ts", "decision_ts", "model_ts")} <= indexes
    done, upto = backfill_progress(conn, table)
    assert (done, upto) == (0, 700)
    # New rows are summed as they come; rows not yet backfilled, removed, are counted by neither.
    send(conn, table, lines[700:])
    ids = [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]  # type: ignore[misc]
    gone = {ids[5], ids[400], ids[800]}
    conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (sorted(gone),))  # type: ignore[arg-type]
    assert backfill(conn, table, ids=300, rounds=1) == 400  # one round, then stopped
    assert backfill_progress(conn, table) == (300, 700)
    assert backfill(conn, table, ids=300) == 0  # resumed where it stopped
    assert backfill(conn, table) == 0  # done: nothing added twice
    kept = [line for n, line in zip(ids, lines, strict=True) if n not in gone]
    assert_same(indexed(kept), TableSums(conn, table))
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        assert recomputed_day(conn, day, table) == []
