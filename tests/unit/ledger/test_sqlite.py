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

from .conftest import eventually, run

LATER = int(time.time()) + 3600

# Another process: takes `count` of the cap, one request at a time, then closes (writing them).
TAKER = """
import asyncio, sys
from tollgate.ledger import Charge, open_store

async def main(url, count, cap, later):
    store = open_store(url)
    granted = 0
    for _ in range(count):
        granted += (await store.reserve([Charge("shared", 1, cap, later)])).granted
    await store.aclose()
    print(granted)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.mark.slow
def test_processes_sharing_a_file_see_each_others_counts_within_a_second(tmp_path: Path):
    url, cap = f"sqlite:///{tmp_path}/ledger.sqlite", 450
    env = {**os.environ, "PYTHONPATH": str(ROOT / "addons")}

    async def scenario() -> tuple[int, int, int]:
        store = open_store(url)  # open before the other process counts
        try:
            await store.reserve([Charge("shared", 0, None, LATER)])  # the counter is known here
            other = subprocess.run(
                [sys.executable, "-c", TAKER, url, "300", str(cap), str(LATER)],
                capture_output=True, text=True, env=env, timeout=60,
            )  # fmt: skip
            assert other.returncode == 0, other.stderr
            seen = await eventually(lambda: store.read(["shared"]), (300,), seconds=3)
            done = [await store.reserve([Charge("shared", 1, cap, LATER)]) for _ in range(200)]
            return int(other.stdout), seen[0], sum(r.granted for r in done)
        finally:
            await store.aclose()

    assert run(scenario()) == (300, 300, 150)  # the other's 300 seen; only the cap's rest granted here


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
