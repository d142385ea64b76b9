"""What only the SQLite store does: its file, and several processes sharing it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.proxy import ROOT

from tollgate.ledger import Charge, StoreError, open_store

from .conftest import run

LATER = int(time.time()) + 3600

# One process's share of the reservations: 300 of one request each, 30 at a time, once `go` exists.
RESERVER = """
import asyncio, os, sys, time
from tollgate.ledger import Charge, open_store

async def main(url, go, cap, later):
    store = open_store(url)
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    granted = 0
    for _ in range(10):
        done = await asyncio.gather(*(store.reserve([Charge("shared", 1, cap, later)]) for _ in range(30)))
        granted += sum(r.granted for r in done)
    await store.aclose()
    print(granted)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def test_two_processes_on_one_file_never_pass_a_cap(tmp_path: Path):
    url, go, cap = f"sqlite:///{tmp_path}/ledger.sqlite", tmp_path / "go", 450
    env = {**os.environ, "PYTHONPATH": str(ROOT / "addons")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RESERVER, url, str(go), str(cap), str(LATER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        time.sleep(0.5)  # both opened the file
        go.touch()
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    granted = [int(out) for out, _ in outputs]
    assert sum(granted) == cap and all(granted), granted  # 600 asked for, exactly the cap granted

    async def counted() -> tuple[int, ...]:
        store = open_store(url)
        try:
            return await store.read(["shared"])
        finally:
            await store.aclose()

    assert run(counted()) == (cap,)


def test_a_relative_path_is_relative_to_the_working_directory_which_must_hold_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="its directory state/tollgate does not exist"):
        open_store("sqlite:///state/tollgate/ledger.sqlite")
    (tmp_path / "state" / "tollgate").mkdir(parents=True)

    async def scenario() -> None:
        store = open_store("sqlite:///state/tollgate/ledger.sqlite")
        assert (await store.reserve([Charge("c", 1, None, LATER)])).granted
        await store.aclose()

    run(scenario())
    assert (tmp_path / "state" / "tollgate" / "ledger.sqlite").is_file()


def test_a_file_that_cannot_be_opened_is_named_at_once(tmp_path: Path):
    (tmp_path / "taken").write_text("a file where the directory should be")
    with pytest.raises(StoreError, match=f"cannot open the ledger at {tmp_path}/taken/ledger.sqlite"):
        open_store(f"sqlite:///{tmp_path}/taken/ledger.sqlite")


def test_the_report_of_a_missing_file_says_so(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
    run(store.aclose())
    (tmp_path / "ledger.sqlite").unlink()
    with pytest.raises(StoreError, match=r"ledger\.sqlite"):
        list(store.calls(0))


def test_a_closed_store_refuses_reservations(tmp_path: Path):
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
        await store.aclose()
        with pytest.raises(StoreError, match="reserve failed: it is closed"):
            await store.reserve([Charge("c", 1, None, LATER)])

    run(scenario())


def test_urls_that_name_no_store():
    with pytest.raises(StoreError, match="unknown ledger store scheme 'postgres'"):
        open_store("postgres://db/ledger")
    with pytest.raises(StoreError, match="sqlite:///relative/path"):
        open_store("sqlite://host/ledger.sqlite")
