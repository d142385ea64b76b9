"""docs/fleet.md's "Fleet on one host", run as written in a checkout of its own: two instances
started with `./run.sh`, one PostgreSQL (the session's, tests/support/postgres.py) and one console.
The only changes the test makes to the page's commands are the addresses: the ports it picks on
127.0.0.1 for the instances, the console and its PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
from psycopg import sql
from tests.support.checkout import linked_checkout
from tests.support.postgres import PostgresServer
from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import wait_listening

BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def recipe() -> list[str]:
    """The section's shell blocks: the setup, then the long-running commands, one a line."""
    page = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    section = page.split("## Fleet on one host\n", 1)[1].split("\n## ", 1)[0]
    return BLOCK.findall(section)


def the_database(postgres: PostgresServer) -> None:
    """What the page asks of the PostgreSQL: a database `tollgate` owned by `tollgate` (password `secret`)."""
    with postgres.connect() as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'tollgate'").fetchone() is None:
            conn.execute("CREATE ROLE tollgate LOGIN PASSWORD 'secret'")
        conn.execute("DROP DATABASE IF EXISTS tollgate WITH (FORCE)")
        conn.execute(sql.SQL("CREATE DATABASE tollgate OWNER tollgate"))


def instances_in_table(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT to_regclass('tollgate_records')").fetchone() == (None,):
            return set()
        return {r[0] for r in conn.execute("SELECT DISTINCT instance FROM tollgate_records")}


def console_events(base: str, token: str) -> list[dict]:
    request = urllib.request.Request(base + "/api/events?limit=100", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["events"]


def test_the_fleet_on_one_host_runs_as_written(tmp_path: Path, postgres: PostgresServer) -> None:
    setup, terminals = recipe()
    the_database(postgres)
    ports = {"8081": free_port(), "8082": free_port(), "8090": free_port(), "5432": postgres.port}

    def moved(text: str) -> str:
        return re.sub(r"127\.0\.0\.1:(8081|8082|8090|5432)\b", lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)

    setup, terminals = moved(setup), moved(terminals)
    export = setup.splitlines()[0]
    assert export.startswith("export TOLLGATE_RECORDS_DSN=")
    checkout = linked_checkout(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_") and not k.endswith("_PROXY")}
    subprocess.run(["bash", "-ec", setup], cwd=checkout, env=env, check=True, timeout=60)

    commands = [line for line in terminals.splitlines() if line.strip()]
    assert len(commands) == 3
    started = [
        subprocess.Popen(
            ["bash", "-c", f"{export}\n{command}"],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE if "console" in command else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # a terminal's: stopped as one, with what it started
        )
        for command in commands
    ]
    try:
        one, two, console = started
        wait_listening(ports["8081"], one)
        wait_listening(ports["8082"], two)
        assert console.stdout is not None
        line = console.stdout.readline()
        assert line.startswith(f"Tollgate console: http://127.0.0.1:{ports['8090']}/?token="), line
        base, token = line.split()[-1].split("/?token=")
        dsn = f"postgresql://tollgate:secret@127.0.0.1:{postgres.port}/tollgate"
        deadline = time.monotonic() + 60
        while instances_in_table(dsn) != {"one", "two"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert instances_in_table(dsn) == {"one", "two"}  # each instance's start, sent
        deadline = time.monotonic() + 60
        while {e.get("instance") for e in console_events(base, token)} != {"one", "two"}:
            assert time.monotonic() < deadline, console_events(base, token)
            time.sleep(0.2)
        assert (checkout / "fleet" / "one" / "audit.jsonl").exists()
        assert (checkout / "fleet" / "two" / "audit.jsonl").exists()
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            process.wait(timeout=30)
