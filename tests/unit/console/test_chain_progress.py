"""How far the console checked the chain of the fleet's table, kept in `tollgate_verified`
(`console/chain_progress.py`, `records/audit/verified.py`), against a real PostgreSQL: a console
restarted, or a second one, goes on from where the check stopped (said by the table and by
`/api/audit`); two consoles writing at once leave the furthest progress; progress that no longer
fits the rows (a row changed or removed behind it) is a fault in the Audit view."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import psycopg
import pytest
from tests.unit.console.test_table_source import TABLE, Instance, call, read_table, send

from tollgate.console import chain_progress
from tollgate.console import table as table_module
from tollgate.console.server import Console
from tollgate.console.table import Table
from tollgate.console.views import Views
from tollgate.records.audit import verified
from tollgate.records.audit.audit_verify import Verifier


def runs(calls: int) -> tuple[list[bytes], list[bytes]]:
    """Two instances' records, interleaved as they arrive: the first half, then the rest of the same runs."""
    east, west = Instance("east"), Instance("west")
    lines = [
        east.line({"event": "tollgate_started", "ts": "2026-11-01T07:59:00.000Z", "pid": 1, "previous_chain": None}),
        west.line({"event": "tollgate_started", "ts": "2026-11-01T07:59:30.000Z", "pid": 2, "previous_chain": None}),
    ]
    for n in range(calls):
        for who, at in ((east, "08"), (west, "09")):
            lines.append(who.line(call(f"2026-11-02T{at}:{n // 60 % 60:02}:{n % 60:02}.000Z", "alice")))
        if n % 10 == 9:
            lines.append(east.checkpoint(f"2026-11-02T10:{n // 60 % 60:02}:{n % 60:02}.000Z"))
    half = len(lines) // 2
    return lines[:half], lines[half:]


def progress(dsn: str) -> dict[str, tuple[int, int, str, int]]:
    """`tollgate_verified`'s rows: instance → (checked_id, seq, chain, rows)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT instance, checked_id, seq, chain, rows FROM tollgate_verified").fetchall()
    return {instance: (checked_id, seq, chain, count) for instance, checked_id, seq, chain, count in rows}


def heads(dsn: str) -> dict[str, tuple[int, int, str, int]]:
    """What `progress` should say: each instance's last row, its seq and chain, its rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT DISTINCT ON (instance) instance, id, seq, chain, count(*) OVER (PARTITION BY instance)"
            f" FROM {TABLE} ORDER BY instance, id DESC"
        ).fetchall()
    return {instance: (row_id, seq, chain, count) for instance, row_id, seq, chain, count in rows}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the rows the consoles check, in order (the check itself unchanged)."""
    ids: list[int] = []
    check = table_module.check_row

    def counting(*args: Any) -> bool:
        ids.append(args[4])
        return check(*args)

    monkeypatch.setattr(table_module, "check_row", counting)
    return ids


@pytest.fixture
def dsn(postgres: Any) -> str:
    return str(postgres.database())


def audit(table: Table) -> list[tuple[Any, ...]]:
    return [(r["instance"], r["records"], r["state"], r["faults"]) for r in Views(table).answer("/api/audit", {})]  # type: ignore[union-attr]


def test_a_restarted_console_goes_on_from_where_the_check_stopped(dsn: str, counted: list[int]) -> None:
    first, rest = runs(30)
    send(dsn, first)
    console = read_table(dsn)
    console.close()
    assert progress(dsn) == heads(dsn)
    assert len(counted) == len(first)
    counted.clear()
    send(dsn, rest)
    restarted = read_table(dsn)  # no index saved beside it: every row read, none checked again
    assert counted == list(range(len(first) + 1, len(first) + len(rest) + 1))
    # The chain goes on from the head kept: the rows after it link to it, and every one is counted.
    east = sum(1 for line in first + rest if b'"instance":"east"' in line)
    assert audit(restarted) == [("east", east, "whole", []), ("west", len(first + rest) - east, "whole", [])]
    restarted.close()
    assert progress(dsn) == heads(dsn)


def test_a_second_console_goes_on_from_the_first_and_progress_only_moves_forward(dsn: str, counted: list[int]) -> None:
    first, rest = runs(30)
    send(dsn, first)
    one = read_table(dsn)
    kept = progress(dsn)
    assert kept == heads(dsn)
    counted.clear()
    two = read_table(dsn)  # beside the first: nothing left to check
    assert counted == [] and audit(two) == audit(one)
    send(dsn, rest)
    for console in (two, one):  # both check the new rows; the second to write moves nothing
        console.catch_up()
        while console.verify_pending():
            pass
        console.progress.close(console.verifier, console.instances)
    assert progress(dsn) == heads(dsn)
    assert audit(one) == audit(two) and {r[2] for r in audit(two)} == {"whole"}
    # A console behind (the first half's state) never writes over progress further on.
    with psycopg.connect(dsn, autocommit=True) as conn:
        behind = {i: replace(s, checked_id=kept[i][0]) for i, s in one.instances.items() if i is not None}
        verified.save(conn, TABLE, one.verifier, behind, {}, None)
    assert progress(dsn) == heads(dsn)


def test_two_consoles_writing_at_once_leave_the_furthest(dsn: str) -> None:
    first, _ = runs(30)
    send(dsn, first)
    table = read_table(dsn)
    east, west = table.instances["east"], table.instances["west"]

    failed: list[BaseException] = []

    def write(ids: range, order: list[str]) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for n in ids:  # each console its own progress, one after the other, its instances in its order
                    states = {"east": replace(east, checked_id=n), "west": replace(west, checked_id=n)}
                    verified.save(conn, TABLE, table.verifier, {i: states[i] for i in order}, {}, None)
        except psycopg.Error as e:  # a deadlock among them
            failed.append(e)

    writers = [
        threading.Thread(target=write, args=(range(1, 400, 2), ["east", "west"])),
        threading.Thread(target=write, args=(range(2, 400, 2), ["west", "east"])),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert not any(writer.is_alive() for writer in writers)
    assert failed == []
    assert (progress(dsn)["east"][0], progress(dsn)["west"][0]) == (399, 399)


def test_a_row_changed_behind_the_progress_is_a_fault_in_the_audit_view(dsn: str) -> None:
    first, rest = runs(30)
    send(dsn, first)
    read_table(dsn).close()
    head, _, chain, _ = progress(dsn)["west"]
    with psycopg.connect(dsn, autocommit=True) as conn:  # the head row's line and chain both rewritten
        conn.execute(f"UPDATE {TABLE} SET line = replace(line, 'alice', 'mallo'), chain = 'x' WHERE id = {head}")
    send(dsn, rest)
    table = read_table(dsn)
    rows = {r["instance"]: r for r in Views(table).answer("/api/audit", {})}  # type: ignore[union-attr]
    assert rows["east"]["state"] == "whole"
    assert rows["west"]["state"] == "fault"
    assert rows["west"]["faults"][0] == (
        f"{TABLE}:{head}: tollgate_verified says its chain was checked to this row (chain {chain}):"
        " the row is not as it was checked: changed in the database; its rows are checked again"
    )
    assert (
        f"{TABLE}:{head}: its columns differ from its line (chain, client): changed in the database"
        in rows["west"]["faults"]
    )
    # From the changed row on, no record is vouched for.
    assert table.first_fault_id == head
    assert table.unverified()[0].start == head


def test_a_head_row_removed_is_a_fault_unless_keep_days_removes_rows(dsn: str) -> None:
    first, rest = runs(30)
    send(dsn, first)
    read_table(dsn).close()
    head = progress(dsn)["east"][0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE id = {head}")
    send(dsn, rest)
    faults = {r["instance"]: r["faults"] for r in read_table(dsn).state()}
    assert faults["east"][0].startswith(f"{TABLE}:{head}: tollgate_verified says its chain was checked to this row")
    assert faults["east"][0].endswith("which is no longer in the table: removed in the database")
    assert faults["west"] == []
    # With keep_days, progress is kept apart (rows removed are no fault): checked from the table's start.
    kept = {r["instance"]: r["state"] for r in read_table(dsn, keep_days=30).state()}
    assert kept == {"east": "whole", "west": "whole"}


def test_progress_kept_with_another_key_is_not_taken(dsn: str, counted: list[int]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    first, _ = runs(10)
    send(dsn, first)
    read_table(dsn).close()
    counted.clear()
    key = Ed25519PrivateKey.generate().public_key()
    read_table(dsn, key=key).close()
    assert len(counted) == len(first)  # checked afresh with the key
    with psycopg.connect(dsn, autocommit=True) as conn:
        rules = {r[0] for r in conn.execute("SELECT rules FROM tollgate_verified").fetchall()}
    assert rules == {verified.rules(Verifier(None, True), None), verified.rules(Verifier(key, True), None)}


def test_progress_is_written_once_due_after_the_check_has_caught_up(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, rest = runs(10)
    send(dsn, first)
    console = read_table(dsn)  # the first write at once
    assert progress(dsn) == heads(dsn)
    monkeypatch.setattr(chain_progress, "WRITE_CAUGHT_UP_S", 3600.0)  # not due yet
    send(dsn, rest)
    console.catch_up()
    while console.verify_pending():
        pass
    assert progress(dsn) != heads(dsn)
    monkeypatch.setattr(chain_progress, "WRITE_CAUGHT_UP_S", 0.0)  # due now
    assert console.verify_pending() is False  # the follower's next poll, nothing left to check
    assert progress(dsn) == heads(dsn)


def served_until(dsn: str, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """A console served over a fresh table (its follower checking behind), `/api/audit` asked over
    HTTP until `done` says so (30 s at most: a loaded machine is slow); its last answer. The console then stopped."""
    table = Table(dsn, TABLE)
    table.open()
    table.catch_up()
    token = "a-console-token-of-test-0001"
    console = Console(table, Views(table), "127.0.0.1", 0, token)  # type: ignore[arg-type]
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    request = urllib.request.Request(
        f"http://127.0.0.1:{console.port}/api/audit", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(request, timeout=10) as answer:
                rows: list[dict[str, Any]] = orjson.loads(answer.read())
            if done(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        console.stop()
        thread.join(timeout=5)
        table.close()


def test_a_served_console_restarted_goes_on_and_says_so_in_api_audit(dsn: str, counted: list[int]) -> None:
    first, rest = runs(30)
    send(dsn, first)
    rows = served_until(dsn, lambda rows: {r["state"] for r in rows} == {"whole"})
    assert [(r["instance"], r["state"]) for r in rows] == [("east", "whole"), ("west", "whole")]
    assert progress(dsn) == heads(dsn)
    counted.clear()
    send(dsn, rest)
    total = len(first) + len(rest)
    rows = served_until(
        dsn,
        lambda rows: (
            {r["state"] for r in rows} == {"whole"}
            and sum(r["records"] for r in rows) == total
            and progress(dsn) == heads(dsn)
        ),
    )
    assert counted == list(range(len(first) + 1, total + 1))  # only the rows after the progress kept
    assert {r["state"] for r in rows} == {"whole"} and sum(r["records"] for r in rows) == total
    assert progress(dsn) == heads(dsn)
