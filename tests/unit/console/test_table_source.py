"""The console reading the fleet's records from PostgreSQL (`console/table.py`) against a real server
(`tests/support/postgres.py`): the same records written to a file and stored in the table (by the
sender's own `row_of` and `store`) give the same answers on every endpoint and filter; `/api/audit`
has a row per instance, verified from the stored lines; a line or a column changed in the database
is a fault, rows removed by keep_days are not; ids committed out of order are all read; a restart
reads only the rows after the saved index; a database that cannot be reached, or a schema newer than
known, is said in one line."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from itertools import product
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.support.console_cursors import answer as plain_answer
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port

from tollgate.common.audit_chain import Chain, Signer
from tollgate.configuration.config import ConfigError, Unset, parse_config
from tollgate.console import table as table_module
from tollgate.console.command import run
from tollgate.console.follow import AuditFiles
from tollgate.console.server import Console
from tollgate.console.sessions import Unavailable
from tollgate.console.table import Table, UnreadableTable
from tollgate.console.views import Views, as_csv
from tollgate.records.senders import audit_postgres
from tollgate.records.senders.audit_postgres import ensure_schema, prepare, row_of, store

TABLE = "tollgate_records"


class Instance:
    """One instance's records as its audit writer makes them: chained, with checkpoints."""

    signer: Signer | None = None  # what signs the checkpoints (none: unsigned)

    def __init__(self, name: str) -> None:
        self.name, self.chain = name, Chain()

    def line(self, record: dict[str, Any]) -> bytes:
        return self.chain.link(orjson.dumps({**record, "instance": self.name}))

    def checkpoint(self, ts: str) -> bytes:
        return self.line(self.chain.checkpoint(self.signer, ts))


def call(ts: str, client: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "event": "llm_call", "ts": ts, "client": client, "provider": "openai", "model": "gpt-4o-mini",
        "decision": "allow", "deny_reasons": [], "findings": {}, "upstream_key": "sha256:aaaaaaaaaaaa",
        "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.000123457, "refusal": None, "error": None,
        "groups": ["research"], "status": 200, "latency_ms": 12.5,
    } | fields  # fmt: skip


def fleet() -> list[bytes]:
    """Two instances' records, interleaved as they would arrive: every kind the views sum."""
    east, west = Instance("east"), Instance("west")
    lines = [
        east.line({"event": "tollgate_started", "ts": "2026-11-01T07:59:00.000Z", "pid": 1, "previous_chain": None}),
        west.line({"event": "tollgate_started", "ts": "2026-11-01T07:59:30.000Z", "pid": 2, "previous_chain": None}),
        east.line(call("2026-11-01T08:00:00.000Z", "alice")),
        west.line(call("2026-11-01T08:30:00.000Z", "alice", model="gpt-4o", cost_usd=1.5,
                       findings={"pii.email": 2})),
        east.line(call("2026-11-01T09:10:00.000Z", "alice", decision="deny", deny_reasons=["gpt-4o is not for alice"],
                       refusal="policy_denied", input_tokens=None, output_tokens=None, cost_usd=None, status=403)),
        west.line(call("2026-11-02T10:00:00.000Z", "bob", cost_usd=None,
                       answer_findings={"secrets.aws_access_key_id": 1})),
        east.checkpoint("2026-11-02T10:30:00.000Z"),
        east.line(call("2026-11-02T11:00:00.000Z", None, upstream_key="sha256:bbbbbbbbbbbb", provider="anthropic",
                       model="claude-sonnet-4-5", cost_usd=0.1)),
        west.line({"event": "mcp_call", "ts": "2026-11-02T11:30:00.000Z", "client": "bob", "server": "notes",
                   "tool": "add", "decision": "deny", "deny_reasons": ["unknown or missing API key"],
                   "refusal": "unauthenticated"}),
        west.checkpoint("2026-11-02T11:45:00.000Z"),
        east.line({"event": "connection", "ts": "2026-11-03T12:00:00.000Z", "client": "bob", "host": "pastebin.com",
                   "service": None, "category": None, "decision": "deny", "deny_reasons": ["egress deny: pastebin.com"],
                   "refusal": "egress_denied", "bytes_sent": 0, "bytes_received": 0}),
        west.line(call("2026-11-03T13:00:00.000Z", "carol", cost_usd=0.2, bytes_sent=120, bytes_received=800)),
        east.line(call("2026-11-03T14:00:00.000Z", "carol", cost_usd=0.30000000000000004)),
        east.line({"event": "tollgate_stopped", "ts": "2026-11-03T15:00:00.000Z", "pid": 1, "calls": 4}),
        east.checkpoint("2026-11-03T15:00:00.001Z"),
        west.line({"event": "tollgate_stopped", "ts": "2026-11-03T15:01:00.000Z", "pid": 2, "calls": 3}),
        west.checkpoint("2026-11-03T15:01:00.001Z"),
    ]  # fmt: skip
    return lines


def send(dsn: str, lines: list[bytes]) -> None:
    """The lines stored as the sender stores them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        prepare(conn)
        store(conn, TABLE, [row_of(line) for line in lines])


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.database()


def read_table(dsn: str, **options: Any) -> Table:
    table = Table(dsn, TABLE, **options)
    table.open()
    table.catch_up()
    while table.verify_pending():
        pass
    return table


def read_files(paths: list[Path]) -> AuditFiles:
    audit = AuditFiles(paths)
    audit.catch_up()
    while audit.verify_pending():
        pass
    return audit


def queries() -> list[tuple[str, dict[str, list[str]]]]:
    """Every endpoint, with each filter and window it takes."""
    windows: list[dict[str, list[str]]] = [
        {}, {"since": ["2026-11-02"]}, {"until": ["2026-11-02T11:00"]},
        {"since": ["2026-11-01T08:00"], "until": ["2026-11-03"]},
    ]  # fmt: skip
    found: list[tuple[str, dict[str, list[str]]]] = []
    for path in ("/api/people", "/api/refusals", "/api/findings", "/api/inventory"):
        found += [(path, w) for w in windows]
    hours = [
        {"since": ["2026-11-01T08:00"], "until": ["2026-11-03"]},
        {"since": ["2026-11-02"], "until": ["2026-11-04"]},
    ]
    for by, w in product(("provider", "model", "client"), windows[1:]):
        found.append(("/api/spend", {"by": [by], "bucket": ["day"], **w}))
    for by, w in product(("provider", "model", "client"), hours):
        found.append(("/api/spend", {"by": [by], "bucket": ["hour"], **w}))
    found += [("/api/spend", {"by": [by]}) for by in ("provider", "model", "client")]
    events: list[dict[str, list[str]]] = [
        {}, {"limit": ["3"]}, {"client": ["alice"]}, {"client": ["bob"], "decision": ["deny"]},
        {"provider": ["anthropic"]}, {"event": ["llm_call"], "decision": ["allow"]}, {"client": ["nobody"]},
        {"after": ["-1"], "limit": ["4"]}, {"after": ["5"]}, {"after": ["-1"], "event": ["connection"]},
    ]  # fmt: skip
    found += [("/api/events", q) for q in events]
    for instance in ("east", "west", "nowhere"):  # the instance filter, on every view
        for path in ("/api/people", "/api/refusals", "/api/findings", "/api/inventory", "/api/events"):
            found.append((path, {"instance": [instance]}))
        found.append(("/api/spend", {"by": ["client"], "instance": [instance], "since": ["2026-11-02"]}))
        found.append(("/api/events", {"instance": [instance], "client": ["alice"], "decision": ["allow"]}))
    found += [("/api/kinds", {}), ("/api/budgets", {}), ("/api/me", {})]
    return found


def test_the_table_answers_every_endpoint_and_filter_as_the_file_does(tmp_path: Path, dsn: str) -> None:
    lines = fleet()
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    send(dsn, lines)
    from_file, from_table = Views(read_files([path])), Views(read_table(dsn))  # type: ignore[arg-type]
    assert len(from_table.source.index) == 0  # nothing per record in memory: the database answers
    for endpoint, query in queries():
        answer = plain_answer(from_table, endpoint, query)
        assert answer == plain_answer(from_file, endpoint, query), (endpoint, query)
        if endpoint not in ("/api/kinds", "/api/me"):
            assert as_csv(answer, query) == as_csv(plain_answer(from_file, endpoint, query), query)
    assert from_table.answer("/api/people", {})[0]["cost_usd"] == 1.500123457
    audit = [{**row, "file": None} for row in from_file.answer("/api/audit", {})]
    assert [{k: v for k, v in row.items() if k != "removed"} for row in from_table.answer("/api/audit", {})] == audit
    assert [(r["instance"], r["records"], r["state"], r["faults"], r["last_checkpoint"], r["last_record"], r["removed"])
            for r in from_table.answer("/api/audit", {})] == [
        ("east", 9, "whole", [], "2026-11-03T15:00:00.001Z", "2026-11-03T15:00:00.001Z", None),
        ("west", 8, "whole", [], "2026-11-03T15:01:00.001Z", "2026-11-03T15:01:00.001Z", None),
    ]  # fmt: skip


def test_each_instances_file_and_the_fleets_table_sum_the_same(tmp_path: Path, dsn: str) -> None:
    """Files read one after the other, the table in the order the rows arrived: every sum equal
    (to 9 decimals), every record listed once."""
    lines = fleet()
    paths = []
    for name in ("east", "west"):
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_bytes(b"".join(line + b"\n" for line in lines if orjson.loads(line)["instance"] == name))
    send(dsn, lines)
    from_files, from_table = Views(read_files(paths)), Views(read_table(dsn))  # type: ignore[arg-type]
    for endpoint, query in queries():
        answer = plain_answer(from_table, endpoint, query)
        if endpoint == "/api/events":  # listed in another order: a page or a cursor holds others
            if "limit" not in query and "after" not in query:
                assert sorted(map(orjson.dumps, answer["events"])) == sorted(
                    map(orjson.dumps, from_files.answer(endpoint, query)["events"])
                ), query
            continue
        assert answer == plain_answer(from_files, endpoint, query), (endpoint, query)
    assert [(r["instance"], r["records"], r["state"]) for r in from_table.answer("/api/audit", {})] == [
        (r["instance"], r["records"], r["state"]) for r in from_files.answer("/api/audit", {})
    ]


def test_a_line_changed_in_the_database_is_a_fault(dsn: str) -> None:
    send(dsn, fleet())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {TABLE} SET line = replace(line, '\"cost_usd\":1.5', '\"cost_usd\":0.5') WHERE id = 4")
    table = read_table(dsn)
    rows = {r["instance"]: r for r in table.state()}
    assert (rows["east"]["state"], rows["east"]["faults"]) == ("whole", [])
    assert (rows["west"]["state"], rows["west"]["faults"]) == ("fault", [
        f"{TABLE}:4: its columns differ from its line (cost_usd): changed in the database",
        f"{TABLE}:4: changed: its chain does not match its content and the record before it",
    ])  # fmt: skip
    assert Views(table).answer("/api/events", {"limit": ["1"]})["events"][0]["unverified"] is True  # type: ignore[arg-type]


def test_a_column_changed_in_the_database_is_a_fault(dsn: str) -> None:
    send(dsn, fleet())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {TABLE} SET cost_usd = 0.01, client = 'mallory' WHERE id = 3")
    rows = {r["instance"]: r for r in read_table(dsn).state()}
    assert (rows["east"]["state"], rows["east"]["faults"]) == (
        "fault", [f"{TABLE}:3: its columns differ from its line (client, cost_usd): changed in the database"]
    )  # fmt: skip
    assert rows["west"]["state"] == "whole"


def test_rows_removed_by_keep_days_are_said_and_no_fault(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines)
    with psycopg.connect(dsn, autocommit=True) as conn:  # east's oldest rows, before its first checkpoint (id 7)
        conn.execute(f"DELETE FROM {TABLE} WHERE instance = 'east' AND id < 5")
    rows = {r["instance"]: r for r in read_table(dsn, keep_days=30).state()}
    assert (rows["east"]["state"], rows["east"]["faults"], rows["east"]["removed"]) == (
        "whole",
        [],
        {"rows": 1, "verified_from_id": 7},  # id 5 kept, unverifiable; checked from its checkpoint
    )
    assert (rows["west"]["state"], rows["west"]["removed"]) == ("whole", None)
    # Without keep_days, nothing removes rows: the same gap is a fault.
    rows = {r["instance"]: r for r in read_table(dsn).state()}
    assert (rows["east"]["state"], rows["east"]["faults"][0]) == (
        "fault", f"{TABLE}:5: 2 records missing before this line (a run's seq 1–2)"
    )  # fmt: skip


def test_signed_checkpoints_are_checked_with_the_key_after_rows_removed(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    monkeypatch.setattr(Instance, "signer", Signer(key))
    send(dsn, fleet())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE instance = 'east' AND id < 7")  # up to east's first checkpoint
    rows = read_table(dsn, keep_days=30, key=key.public_key()).state()
    assert [(r["instance"], r["state"], r["signed"], r["removed"]) for r in rows] == [
        ("east", "whole", True, {"rows": 0, "verified_from_id": 7}),
        ("west", "whole", True, None),
    ]
    rows = read_table(dsn, keep_days=30, key=other.public_key()).state()
    assert [(r["state"], r["signed"], r["faults"][0].split(": ", 1)[1][:30]) for r in rows] == [
        ("fault", False, "checkpoint signed by another k"),
        ("fault", False, "checkpoint signed by another k"),
    ]


def test_a_run_after_a_removed_one_is_verified_from_its_start(dsn: str) -> None:
    east = Instance("east")
    first = [east.line({"event": "tollgate_started", "ts": "2026-11-01T00:00:00Z", "pid": 1, "previous_chain": None}),
             east.line(call("2026-11-01T00:01:00Z", "alice")),
             east.line({"event": "tollgate_stopped", "ts": "2026-11-01T00:02:00Z", "pid": 1, "calls": 1})]  # fmt: skip
    first.append(east.checkpoint("2026-11-01T00:02:00.001Z"))
    previous = orjson.loads(first[-1])["chain"]
    east.chain = Chain()
    second = [east.line({"event": "tollgate_started", "ts": "2026-11-05T00:00:00Z", "pid": 2,
                         "previous_chain": previous}), east.line(call("2026-11-05T00:01:00Z", "alice"))]  # fmt: skip
    send(dsn, first + second)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE id <= 4")
    [row] = read_table(dsn, keep_days=3).state()
    assert (row["instance"], row["records"], row["state"], row["removed"]) == (
        "east",
        2,
        "whole",
        {"rows": 0, "verified_from_id": 5},
    )


def test_ids_committed_out_of_order_are_all_read(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines[:2])
    table = read_table(dsn)
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn, autocommit=True) as quick:
        prepare(quick)
        slow.execute("CREATE TEMPORARY TABLE tollgate_incoming (n serial) ON COMMIT DELETE ROWS")
        # Two instances' batches (one sender per instance: the sums they add to are apart).
        with slow.cursor().copy(f"COPY {TABLE} (chain, instance, line) FROM STDIN") as copy:  # ids 3-4, not committed
            for line in (lines[3], lines[5]):
                copy.write_row((row_of(line)[0], "west", line.decode()))
        store(quick, TABLE, [row_of(line) for line in (lines[2], lines[4])])  # ids 5-6, committed first
        while table.verify_pending():
            pass
        assert (table.checked, table.rows.last_id, [g[:2] for g in table.rows.gaps]) == (4, 6, [(3, 4)])
        slow.commit()
    table.verify_pending()
    assert (table.checked, table.rows.gaps) == (6, [])  # the rows committed late checked too
    assert [r["records"] for r in table.state()] == [3, 3]
    assert table.record(3) == orjson.loads(lines[3])  # its id


def test_a_row_committed_after_a_later_id_is_listed_and_sent_live(dsn: str) -> None:
    # Two instances' senders (the sums they add to apart): east's takes id 3 and commits after west's
    # 4 and 5 are committed. Neither the live stream nor the event list's cursor passes id 3 before
    # it is there.
    lines = fleet()
    east, west = [lines[2]], [lines[3], lines[5]]
    send(dsn, lines[:2])
    table = read_table(dsn)
    views = Views(table)  # type: ignore[arg-type]
    seen = views.live_start()
    first = views.answer("/api/events", {})
    assert (seen, [e["ts"] for e in first["events"]]) == (2, [orjson.loads(line)["ts"] for line in lines[:2]])
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn, autocommit=True) as quick:
        prepare(slow)
        slow.commit()
        slow.execute("SELECT 1")  # a transaction open: `store` goes on inside it, not committed
        store(slow, TABLE, [row_of(line) for line in east])
        prepare(quick)
        assert store(quick, TABLE, [row_of(line) for line in west]) == 2
        assert quick.execute(f"SELECT array_agg(id ORDER BY id) FROM {TABLE}").fetchone() == ([1, 2, 4, 5],)
        sent, seen = views.newer(seen, {})
        assert (sent, seen) == ([], 2)  # 4 and 5 wait for 3
        later = views.answer("/api/events", {"after": [first["cursor"]]})
        assert later["events"] == []
        slow.commit()
    sent, seen = views.newer(seen, {})
    assert (sent, seen) == ([line + b"\n" for line in east + west], 5)
    assert [e["ts"] for e in views.answer("/api/events", {"after": [later["cursor"]]})["events"]] == [
        orjson.loads(line)["ts"] for line in east + west
    ]
    assert views.newer(seen, {}) == ([], 5)


def test_a_sender_stopped_half_way_holds_the_lists_back_a_bounded_time(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch's transaction left open (its sender frozen between two statements) is ended by the
    # server after the sender's bound: its claim goes with it, and the rows after it are listed.
    monkeypatch.setattr(audit_postgres, "STATEMENT_SECONDS", 2)
    lines = fleet()
    send(dsn, lines[:2])
    table = read_table(dsn)
    views = Views(table)  # type: ignore[arg-type]
    seen = views.live_start()
    with psycopg.connect(dsn) as frozen, psycopg.connect(dsn, autocommit=True) as quick:
        prepare(frozen)
        frozen.commit()
        frozen.execute("SELECT 1")
        store(frozen, TABLE, [row_of(lines[2])])  # id 3, never committed
        prepare(quick)
        store(quick, TABLE, [row_of(line) for line in (lines[3], lines[5])])
        assert views.newer(seen, {}) == ([], 2)
        deadline = time.monotonic() + 10
        while (found := views.newer(seen, {}))[1] == seen and time.monotonic() < deadline:
            pass
        assert found == ([lines[3] + b"\n", lines[5] + b"\n"], 5)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            frozen.execute("SELECT 1")  # ended by the server, its row undone


def test_a_record_is_served_again_from_its_row(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines)
    table = read_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE id = 2")  # removed since it was read (keep_days)
    removed = {"event": "malformed", "table": TABLE, "id": 2, "row": "removed"}
    assert [table.line(n) for n in range(1, len(lines) + 1)] == [  # a record's number over the table: its id
        orjson.dumps(removed) + b"\n" if n == 1 else line + b"\n" for n, line in enumerate(lines)
    ]
    assert table.record(2) == removed
    assert table.shown(4, table.line(4)) == lines[3] + b"\n"


def test_new_rows_come_at_the_next_poll(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines[:5])
    table = read_table(dsn)
    send(dsn, lines[5:])
    views = Views(table)  # type: ignore[arg-type]
    assert [json.dumps(e) for e in views.answer("/api/events", {"limit": ["1000"]})["events"]] == [
        json.dumps(orjson.loads(line)) for line in lines
    ]  # the views ask the database: no poll needed
    while table.verify_pending():
        pass
    assert sum(r["records"] for r in table.state()) == len(lines)


def test_a_table_not_made_yet_is_read_as_empty_until_it_is(dsn: str) -> None:
    table = Table(dsn, TABLE)
    table.open()
    table.catch_up()
    assert (table.verify_pending(), table.state()) == (False, [])
    send(dsn, fleet()[:3])
    table.verify_pending()
    assert (table.checked, table.newest) == (3, 3)


def test_a_restart_keeps_nothing_of_its_own_and_answers_the_same(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines[:10])
    read_table(dsn).close()  # its progress kept in the database (`tollgate_verified`)
    send(dsn, lines[10:])
    restarted, fresh = read_table(dsn), Table(dsn, TABLE)
    fresh.open()
    for endpoint, query in queries():
        answer = plain_answer(Views(fresh), endpoint, query)  # type: ignore[arg-type]
        if endpoint == "/api/me":  # nothing checked nor counted yet: never said whole meanwhile
            assert answer["audit"] == "checking"
            answer["audit"] = "whole"
        assert plain_answer(Views(restarted), endpoint, query) == answer  # type: ignore[arg-type]
    assert restarted.checked == len(lines) - 10  # the rows checked before not checked again
    restarted.close()


def test_a_database_that_cannot_be_reached_is_said_in_one_line() -> None:
    port = free_port()
    table = Table(f"postgresql://reader:pw-never-said@127.0.0.1:{port}/records", TABLE)
    with pytest.raises(UnreadableTable) as raised:
        table.open()
    said = str(raised.value)
    assert said.startswith(f"PostgreSQL (127.0.0.1:{port}/records, table {TABLE}) cannot be reached: ")
    assert "\n" not in said and "pw-never-said" not in said


def test_a_schema_newer_than_known_is_said_in_one_line(dsn: str) -> None:
    send(dsn, fleet()[:1])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE tollgate_schema SET version = 99")
    with pytest.raises(UnreadableTable) as raised:
        Table(dsn, TABLE).open()
    assert str(raised.value) == (
        f"the table {TABLE} has schema version 99 (tollgate_schema), newer than this Tollgate knows (2):"
        " upgrade Tollgate to read it"
    )


def test_the_console_only_reads_and_needs_select_alone(dsn: str) -> None:
    send(dsn, fleet())
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON {TABLE}, tollgate_schema TO {role}")
    table = read_table(dsn.replace("postgres@", f"{role}@"))
    assert [(r["instance"], r["state"]) for r in table.state()] == [("east", "whole"), ("west", "whole")]
    assert table.record(1)["event"] == "tollgate_started"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        table._reading().execute("SELECT * FROM pg_authid")
    owner = read_table(dsn)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # its own connections are read-only too
        owner._reading().execute(f"DELETE FROM {TABLE}")


# ---- `tollgate console` with audit.postgres


CURSOR_SECRET = "cursors-of-the-console-replicas-0001"


def config_file(tmp_path: Path, postgres: dict[str, Any], console: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "tollgate.yaml"
    data = {
        "providers": {"openai": {"keys": ["${OPENAI_KEY_NEVER_SET}"]}},  # the providers' secrets: not needed
        "audit": {"path": str(tmp_path / "audit.jsonl"), "postgres": postgres},
        "console": {"listen": f"127.0.0.1:{free_port()}", "cursor_secret": CURSOR_SECRET, **(console or {})},
    }
    path.write_text(orjson.dumps(data).decode())
    return path


def test_read_only_commands_need_neither_the_providers_secrets_nor_the_records_dsn() -> None:
    data = {"providers": {"openai": {"keys": ["${OPENAI_KEY}"]}}, "audit": {"postgres": {"dsn": "${RECORDS_DSN}"}}}
    unset: list[Unset] = []
    config = parse_config(data, {}, unset)
    assert [str(u) for u in unset] == [
        "providers.openai.keys.0: environment variable OPENAI_KEY is not set",
        "audit.postgres.dsn: environment variable RECORDS_DSN is not set",
    ]
    assert config.audit.postgres is not None and config.audit.postgres.table == TABLE
    with pytest.raises(ConfigError, match=r"^audit\.postgres\.dsn: environment variable RECORDS_DSN is not set$"):
        parse_config({"audit": data["audit"]}, {})  # the proxy, which sends: refused
    with pytest.raises(ConfigError, match=r"^console\.postgres_dsn: must be a PostgreSQL connection URI"):
        parse_config({"console": {"postgres_dsn": "http://db"}}, {}, [])


def test_the_console_says_the_dsn_it_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, {"dsn": "${RECORDS_DSN_NEVER_SET}"})
    assert run([], None, path) == 1
    assert capsys.readouterr().err == (
        f"error: {path}: audit.postgres.dsn: environment variable RECORDS_DSN_NEVER_SET is not set: the console"
        " reads the fleet's records from PostgreSQL with it\n"
    )


def test_the_console_over_postgresql_needs_a_cursor_secret_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its replicas serve the same people: a cursor one gives must open on the others, which a key
    of one process alone would not. Refused before any connection, the field named."""
    path = config_file(tmp_path, {"dsn": "postgresql://reader@127.0.0.1:1/records"}, {"cursor_secret": None})
    assert run([], None, path) == 1
    assert capsys.readouterr().err == (
        f"error: {path}: console.cursor_secret: required when the console reads PostgreSQL (audit.postgres): 32"
        " characters or more, the same for every replica (${NAME}), so that a page's cursors open on whichever"
        " answers\n"
    )


def test_the_console_stops_on_a_database_it_cannot_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    path = config_file(tmp_path, {"dsn": "${RECORDS_DSN_NEVER_SET}"},
                       {"postgres_dsn": f"postgresql://reader:pw-never-said@127.0.0.1:{port}/records"})  # fmt: skip
    assert run([], None, path) == 1
    said = capsys.readouterr().err
    assert said.startswith(f"error: PostgreSQL (127.0.0.1:{port}/records, table {TABLE}) cannot be reached: ")
    assert said.count("\n") == 1 and "pw-never-said" not in said


def test_the_console_stops_on_a_schema_newer_than_known(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    send(dsn, fleet()[:1])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE tollgate_schema SET version = 3")
    assert run([], None, config_file(tmp_path, {"dsn": dsn})) == 1
    assert capsys.readouterr().err == (
        f"error: the table {TABLE} has schema version 3 (tollgate_schema), newer than this Tollgate knows (2):"
        " upgrade Tollgate to read it\n"
    )


@pytest.mark.slow  # the server stopped and started again: a few seconds
def test_a_database_gone_is_said_once_and_read_again_when_back(
    postgres: PostgresServer, dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "RETRY_SECONDS", 0.0)
    lines = fleet()
    send(dsn, lines[:5])
    table = Table(dsn, TABLE)
    table.open()
    table.catch_up()
    assert table.checking  # read, not checked yet
    postgres.stop()
    try:
        for _ in range(3):
            table.catch_up()
            assert table.verify_pending() is False
            assert not table.checking  # the server waits its interval, not polling at once
        with pytest.raises(Unavailable):  # the views are the database's: 503 while it is away
            Views(table).answer("/api/people", {})  # type: ignore[arg-type]
        assert table.record(4)["row"] == "unavailable"
    finally:
        postgres.start()
    send(dsn, lines[5:])
    table.catch_up()
    while table.verify_pending():
        pass
    assert (table.checked, [r["state"] for r in table.state()]) == (len(lines), ["whole", "whole"])
    assert Views(table).answer("/api/people", {})[0]["calls"] == 3  # type: ignore[arg-type]  # by itself again
    where = f"PostgreSQL (127.0.0.1:{postgres.port}/{dsn.rsplit('/', 1)[1]}, table {TABLE})"
    said = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[0] for line in said] == ["tollgate console", "tollgate console"]
    assert said[0].startswith(f"tollgate console: {where} cannot be read: ") and said[0].endswith("; tried again")
    assert said[1] == f"tollgate console: {where} is read again"


@pytest.mark.slow  # the server's polls: over half a second
def test_the_live_stream_sends_a_row_stored_after_it_opened(dsn: str) -> None:
    lines = fleet()
    send(dsn, lines[:5])
    table = read_table(dsn)
    token = "a-console-token-of-test-0001"
    console = Console(table, Views(table), "127.0.0.1", 0, token)  # type: ignore[arg-type]
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{console.port}/api/events/live", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as stream:
            send(dsn, lines[5:6])  # read by the console's next poll, sent on the stream
            assert stream.readline() == b"data: " + lines[5] + b"\n"
    finally:
        console.stop()
        thread.join(timeout=5)
