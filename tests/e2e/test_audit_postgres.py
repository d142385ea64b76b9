"""The audit sent to PostgreSQL (`audit.postgres`) end to end: two Tollgate instances (two mitmdumps,
each its own audit file and TOLLGATE_INSTANCE) send to one real PostgreSQL, official OpenAI SDK
calls through both, the database stopped and started again in the middle: every record of both
files arrives exactly once, in each file's order, and the calls went on while it was down. Then `tollgate console` reads the fleet from that table (without the providers' secrets): both
instances' records in its events, a new call among them at the next poll, and `/api/audit` a row per
instance, whole. A DSN that cannot be reached: the proxy serves, the sender says so once and tries
again. A schema newer than Tollgate knows: one line, the sender stops, the proxy serves."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.cli import console_process
from tests.support.clients import CHAT_THEN_STREAM
from tests.support.fake_upstream import Received, Reply
from tests.support.metrics import gauge, wait_for
from tests.support.postgres import PostgresServer
from tests.support.proxy import free_port
from tests.support.tcp import TcpServer

from tollgate.records.senders.audit_postgres import ensure_schema

REAL_KEY = "sk-real-openai-postgres-0001"
KEY = "tg-postgres-app-key-0001"
PROMPT = "never-store-this-prompt-text"
TABLE = "tollgate_records"


def answer(r: Received) -> Reply:
    if r.json().get("stream"):
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat())
    return provider_answers(r)


def start(start_gateway, dsn_variable: str, instance: str, metrics_listen: str | None = None):
    def build(urls: dict[str, str]) -> dict:
        data = {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL_KEY]}},
            "clients": [{"name": "postgres-app", "keys": [KEY]}],
            "audit": {"postgres": {"dsn": "${TOLLGATE_RECORDS_DSN}"}},
        }
        if metrics_listen is not None:
            data["metrics"] = {"listen": metrics_listen}
        return data

    env = {"TOLLGATE_RECORDS_DSN": dsn_variable, "TOLLGATE_INSTANCE": instance}
    g = start_gateway(build, providers=("openai",), env=env)
    g.fakes["openai"].handler = answer
    return g


def calls(g) -> None:
    """Two calls (one streamed), which complete."""
    assert g.run(CHAT_THEN_STREAM.format(key=KEY, prompt=PROMPT)) == {"done": True}


def file_lines(path: Path) -> list[str]:
    return path.read_text().rpartition("\n")[0].split("\n")


def stored(dsn: str) -> list[tuple[str, str]]:
    """The table's rows (instance, line), in the order they arrived."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
            return []
        return conn.execute(f"SELECT instance, line FROM {TABLE} ORDER BY id").fetchall()  # type: ignore[return-value]


def lag(listen: str) -> float | None:
    return gauge(listen, "tollgate_audit_postgres_lag_records")


FAILING = "is failing (cannot reach it:"


def test_two_instances_send_every_record_once_though_the_database_stopped(
    start_gateway, postgres: PostgresServer
) -> None:
    dsn = postgres.database()
    listen = f"127.0.0.1:{free_port()}"
    east = start(start_gateway, dsn, "east", listen)
    west = start(start_gateway, dsn, "west")
    gateways = (east, west)
    try:
        for g in gateways:
            calls(g)
            g.wait_audit(2)
        wait_for(lambda: len(stored(dsn)) >= 6, 30, "the first records in the table (started + 2 calls, twice)")

        # Stopped: the calls go on, their records wait in the files.
        postgres.stop()
        for g in gateways:
            calls(g)
            g.wait_audit(4)
        for g in gateways:
            g.wait_console(FAILING, 30)
        wait_for(lambda: (lag(listen) or 0) >= 2, 10, "the lag to count east's records")
        for g in gateways:
            calls(g)
            g.wait_audit(6)
    finally:
        if not postgres.running():
            postgres.start()

    # Started again: every record of both files arrives, once.
    for g in gateways:
        calls(g)
        g.wait_audit(8)
    for g in gateways:
        g.wait_console("goes on: PostgreSQL took the records", 60)
    expected = {g: file_lines(g.audit_path) for g in gateways}
    wait_for(lambda: len(stored(dsn)) >= sum(map(len, expected.values())), 60, "every record in the table")
    wait_for(lambda: lag(listen) == 0, 10, "no lag")

    # The fleet's console reads the table: both instances' records, and a new call at the next poll.
    console, base = start_console(dsn, east.config_path.parent.parent / "console")
    try:
        llm_calls = lambda: [e for e in api(base, "/api/events?limit=1000")["events"] if e["event"] == "llm_call"]  # noqa: E731
        wait_for(lambda: len(llm_calls()) == 16, 10, "the console to read both instances' calls")
        assert {e["instance"] for e in llm_calls()} == {"east", "west"}
        calls(west)
        west.wait_audit(10)
        wait_for(lambda: len(llm_calls()) == 18, 10, "the new calls in the console")
        for g in gateways:
            g.proxy.stop()  # their last records (tollgate_stopped, the checkpoint) sent as they stop
        expected = {g: file_lines(g.audit_path) for g in gateways}
        wait_for(lambda: len(stored(dsn)) >= sum(map(len, expected.values())), 30, "the last records")
        whole = [("east", len(expected[east]), "whole", []), ("west", len(expected[west]), "whole", [])]
        audit = lambda: [(r["instance"], r["records"], r["state"], r["faults"]) for r in api(base, "/api/audit")]  # noqa: E731
        wait_for(lambda: audit() == whole, 10, f"a row per instance, whole: {whole}")
        assert [r["file"] for r in api(base, "/api/audit")] == [None, None]
    finally:
        console.terminate()
        console.communicate(timeout=10)
    rows = stored(dsn)
    assert sorted(line for _, line in rows) == sorted(expected[east] + expected[west])  # each once, as written
    assert [line for instance, line in rows if instance == "east"] == expected[east]  # in the file's order
    assert [line for instance, line in rows if instance == "west"] == expected[west]
    assert sum('"llm_call"' in line for _, line in rows) == 18  # 16, and the 2 the console saw come
    for g in gateways:
        console = g.proxy.output.read_text(errors="replace")  # stopped: its whole output
        assert console.count(FAILING) == 1  # said once, however often it was tried
        for secret in (PROMPT, KEY, REAL_KEY):
            assert secret not in console
    for _, line in rows:
        assert PROMPT not in line and KEY not in line


TOKEN = "a-console-token-of-the-fleet-0001"


def start_console(dsn: str, directory: Path) -> tuple[subprocess.Popen, str]:
    """`tollgate console --config` over the fleet's table, with none of the providers' secrets."""
    directory.mkdir()
    config = directory / "console.yaml"
    config.write_text(json.dumps({
        "providers": {"openai": {"keys": ["${OPENAI_KEY_NOT_HERE}"]}},
        "audit": {"path": str(directory / "audit.jsonl"), "postgres": {"dsn": "${TOLLGATE_RECORDS_DSN}"}},
        "console": {"listen": f"127.0.0.1:{free_port()}", "token": TOKEN,
                    "cursor_secret": "cursors-of-the-fleet-console-0001"},
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_KEY_NOT_HERE"} | {"TOLLGATE_RECORDS_DSN": dsn}
    process, line = console_process(config, cwd=directory, env=env)
    found = re.fullmatch(r"Tollgate console: (http://127\.0\.0\.1:\d+)/\?token=" + TOKEN + "\n", line)
    assert found is not None, (line, process.stderr.read() if process.poll() is not None and process.stderr else "")
    return process, found.group(1)


def api(base: str, path: str):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


class Refuser(TcpServer):
    """A port that accepts connections and closes them at once, counting them (`accepted`): a
    database that cannot be reached, and how often Tollgate tried."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.start()

    def serve(self, conn: socket.socket, number: int) -> None:
        conn.close()


def test_a_database_that_cannot_be_reached_is_said_once_and_tried_again(start_gateway) -> None:
    refuser = Refuser()
    dsn = f"postgresql://tollgate:pw-never-logged@127.0.0.1:{refuser.port}/records"
    try:
        g = start(start_gateway, dsn, "lonely")
        calls(g)
        assert [r["status"] for r in g.wait_audit(2)] == [200, 200]
        wait_for(lambda: refuser.accepted >= 4, 30, "the sender to try again")
        calls(g)
        assert [r["status"] for r in g.wait_audit(4)] == [200, 200, 200, 200]
        console = g.proxy.console()
        assert console.count(FAILING) == 1
        assert f"PostgreSQL (127.0.0.1:{refuser.port}/records, table tollgate_records) {FAILING}" in console
        assert "pw-never-logged" not in console
        g.proxy.stop()
    finally:
        refuser.close()


def test_a_schema_newer_than_known_stops_the_sender_with_one_line(start_gateway, postgres: PostgresServer) -> None:
    dsn = postgres.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn, TABLE)
        conn.execute("UPDATE tollgate_schema SET version = 99 WHERE name = %s", (TABLE,))
    g = start(start_gateway, dsn, "old")
    calls(g)
    g.wait_console("newer than this Tollgate knows", 30)
    calls(g)
    assert [r["status"] for r in g.wait_audit(4)] == [200, 200, 200, 200]
    g.proxy.stop()
    output = g.proxy.output.read_text(errors="replace")  # stopped: its whole output
    said = [line for line in output.splitlines() if "PostgreSQL" in line]
    assert len(said) == 2, said  # the sender's first line, and the one that says why it stops
    assert said[1].endswith(
        "stops: the table tollgate_records has schema version 99 (tollgate_schema), newer than this Tollgate knows"
        " (2): its records stay in the audit file; upgrade Tollgate to send them"
    )
    assert stored(dsn) == []


@pytest.fixture(autouse=True)
def _postgres_running(postgres: PostgresServer):
    """Whatever a test did, the session's server runs after it."""
    yield
    if not postgres.running():
        postgres.start()
