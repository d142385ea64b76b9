"""What only the Redis store does: fail fast when Redis is gone, write what waited once it is
back, and share key rests between processes."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tollgate.ledger import Charge, Store, StoreError, open_store
from tollgate.ledger import redis_store as module

from .conftest import Backend, eventually, run

LATER = int(time.time()) + 3600


def test_a_stopped_redis_fails_a_reservation_at_once_naming_it_without_its_password(redis_backend: Backend):
    server = redis_backend.server
    assert server is not None

    async def scenario(store: Store) -> None:
        assert (await store.reserve([Charge("c", 1, None, LATER)])).granted  # the password works
        server.stop()
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            await store.reserve([Charge("c", 1, None, LATER)])
        assert time.monotonic() - started < 1.0
        message = str(raised.value)
        assert f"127.0.0.1:{server.port}/0" in message and "reserve" in message, message
        assert "s3cret-pw" not in message and "s3cret-pw" not in repr(raised.value.__cause__)
        with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}/0"):
            await store.read(["c"])

    redis_backend.run_on_stores(scenario)


def test_the_first_reservations_after_redis_restarts_are_served(redis_backend: Backend):
    server = redis_backend.server
    assert server is not None

    async def scenario(store: Store) -> None:
        # Three at once: the pool keeps three connections, idle once they are done.
        charges = [Charge("c", 1, None, LATER)]
        assert all(r.granted for r in await asyncio.gather(*(store.reserve(charges) for _ in range(3))))
        await asyncio.to_thread(server.stop)  # the loop runs meanwhile: it sees the connections close
        await asyncio.to_thread(server.start)
        for _ in range(3):  # none of them goes on a connection to the server that stopped
            assert (await store.reserve(charges)).granted

    redis_backend.run_on_stores(scenario)


@pytest.mark.slow
def test_a_redis_that_hangs_fails_a_reservation_within_the_timeout(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
):
    server = redis_backend.server
    assert server is not None
    # A shorter timeout, set where the store reads it (the pool's wait, the sockets' options): the
    # hang is the same, the test waits a quarter as long.
    monkeypatch.setattr(module, "COMMAND_TIMEOUT", 0.5)
    monkeypatch.setitem(module._OPTIONS, "socket_timeout", 0.5)
    monkeypatch.setitem(module._OPTIONS, "socket_connect_timeout", 0.5)

    async def scenario(store: Store) -> None:
        try:
            assert (await store.reserve([Charge("c", 1, None, LATER)])).granted
            server.pause()
            started = time.monotonic()
            with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}/0"):
                await store.reserve([Charge("c", 1, None, LATER)])
            assert time.monotonic() - started < module.COMMAND_TIMEOUT + 1.0
        finally:
            server.resume()

    redis_backend.run_on_stores(scenario)


@pytest.mark.slow
def test_queued_writes_wait_for_redis_and_one_line_says_so(
    redis_backend: Backend, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    server = redis_backend.server
    assert server is not None
    monkeypatch.setattr(module, "RETRY_DELAY", 0.05)
    caplog.set_level(logging.INFO, logger="tollgate.ledger")

    async def scenario(store: Store) -> None:
        server.stop()
        store.adjust([("waiting", 5, LATER)])
        store.record({"ts": time.time(), "client": "while-down"})
        await asyncio.sleep(0.3)  # several attempts (about six) fail meanwhile
        store.adjust([("waiting", 2, LATER)])
        await asyncio.sleep(0.15)
        server.start()
        assert await eventually(lambda: store.read(["waiting"]), (7,), seconds=10) == (7,)

    redis_backend.run_on_stores(scenario)
    assert [r["client"] for r in redis_backend.open().calls(0)] == ["while-down"]
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR, [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{server.port}/0" in failed[0].getMessage()
    assert "s3cret-pw" not in caplog.text
    assert sum("works again" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_rests_reach_the_other_processes_stores(redis_backend: Backend):
    async def scenario(first: Store, second: Store) -> None:
        heard_by_first: list[tuple[str, float]] = []
        heard_by_second: list[tuple[str, float]] = []
        first.on_rest(lambda key, until: heard_by_first.append((key, until)))
        second.on_rest(lambda key, until: heard_by_second.append((key, until)))
        await asyncio.sleep(0.2)  # both listening
        until = time.time() + 60
        first.rest("sk-…abcd", until)
        first.rest("sk-…gone", time.time() - 1)  # over already: not announced
        deadline = time.monotonic() + 5
        while not heard_by_second and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert heard_by_second == [("sk-…abcd", until)]
        assert heard_by_first == []  # its own rest is no news to it
        # A store that starts later hears of the rests in force.
        third = redis_backend.open()
        heard_by_third: list[tuple[str, float]] = []
        third.on_rest(lambda key, until: heard_by_third.append((key, until)))
        deadline = time.monotonic() + 5
        while not heard_by_third and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert heard_by_third == [("sk-…abcd", until)]
        await third.aclose()

    redis_backend.run_on_stores(scenario, stores=2)


def test_the_sqlite_store_keeps_rests_to_itself(tmp_path):
    async def scenario() -> None:
        store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
        heard: list[tuple[str, float]] = []
        store.on_rest(lambda key, until: heard.append((key, until)))
        store.rest("sk-…abcd", time.time() + 60)
        await asyncio.sleep(0.1)
        await store.aclose()
        assert heard == []

    run(scenario())


def test_a_settlement_flushed_counts_in_every_processs_next_reservation(redis_backend: Backend):
    async def scenario(first: Store, second: Store) -> None:
        assert first.flushed() is None  # nothing queued: nothing to wait for
        charge = [Charge("tokens", 900, 1000, LATER)]
        assert (await first.reserve(charge)).granted
        first.record({"ts": time.time(), "client": "busy"})  # written a moment ago: the next write
        first.adjust([("tokens", 150, LATER)])  # would wait for more to join it, unless flushed
        waiting = first.flushed()
        assert waiting is not None
        await waiting
        assert first.flushed() is None
        refused = await second.reserve([Charge("tokens", 1, 1000, LATER)])
        assert (refused.granted, refused.values) == (False, (1050,))

    redis_backend.run_on_stores(scenario, stores=2)


def test_a_flush_is_not_held_through_an_outage(redis_backend: Backend, monkeypatch: pytest.MonkeyPatch):
    server = redis_backend.server
    assert server is not None
    monkeypatch.setattr(module, "RETRY_DELAY", 0.05)

    async def scenario(store: Store) -> None:
        server.stop()
        store.adjust([("held", 3, LATER)])
        waiting = store.flushed()
        assert waiting is not None
        await asyncio.wait_for(waiting, module.COMMAND_TIMEOUT * 2 + 1)  # done: writing failed for now
        server.start()
        assert await eventually(lambda: store.read(["held"]), (3,), seconds=10) == (3,)

        async def nothing_queued() -> bool:
            return store.flushed() is None

        assert await eventually(nothing_queued, True)

    redis_backend.run_on_stores(scenario)


def test_an_mcp_sessions_owner_is_shared_by_every_process_and_kept_first(redis_backend: Backend):
    async def scenario(first: Store, second: Store) -> None:
        assert first.shares_sessions and second.shares_sessions
        assert await second.session_owner("k1", 60) is None
        await first.bind_session("k1", "client:alice", 60)
        # Bound before its id reaches a client: another process knows it at once.
        assert await second.session_owner("k1", 60) == "client:alice"
        await second.bind_session("k1", "client:carol", 60)  # a session keeps its first owner
        assert await first.session_owner("k1", 60) == "client:alice"

    redis_backend.run_on_stores(scenario, stores=2)
