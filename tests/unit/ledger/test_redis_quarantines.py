"""`agents`' quarantines on the ledger's Redis: one begun in one process is read by another, a later
end in force is kept and the kinds gathered, Redis expires it at its end, only a fingerprint and
the kinds are kept; a Redis that is gone fails a read, and a write waits for it to come back."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from tollgate.governance.agents.quarantine import fleet_key, session_key, shared_key
from tollgate.ledger import Store, StoreError, open_store
from tollgate.ledger import redis_quarantines as module

from .conftest import Backend, eventually

FLEET_KEY = fleet_key("a secret every process of the fleet holds, not Redis")
KEY = shared_key(session_key("inbox", "secret-session-id-0001"), FLEET_KEY)
OTHER = shared_key("caller:alice", FLEET_KEY)


def quarantines(store: Store) -> module.RedisQuarantines:
    found = store.quarantines
    assert isinstance(found, module.RedisQuarantines)
    return found


def test_a_quarantine_begun_in_one_process_is_read_in_another(redis_backend: Backend) -> None:
    async def scenario(a: Store, b: Store) -> None:
        assert await quarantines(b).holding([KEY, OTHER]) == (None, None)
        until = time.time() + 60
        await quarantines(a).start(KEY, until, ["injection.instructions"])
        ((end, kinds), none) = await quarantines(b).holding([KEY, OTHER])
        assert (round(end, 3), kinds, none) == (round(until, 3), ("injection.instructions",), None)

    redis_backend.run_on_stores(scenario, stores=2)


def test_a_later_end_is_kept_and_the_kinds_gathered(redis_backend: Backend) -> None:
    async def scenario(a: Store, b: Store) -> None:
        now = time.time()
        await quarantines(a).start(KEY, now + 600, ["injection.instructions"])
        await quarantines(b).start(KEY, now + 60, ["injection.instructions", "injection.hidden"])
        ((end, kinds),) = await quarantines(a).holding([KEY])
        assert (round(end, 3), kinds) == (round(now + 600, 3), ("injection.hidden", "injection.instructions"))

    redis_backend.run_on_stores(scenario, stores=2)


def test_redis_keeps_a_fingerprint_and_the_kinds_and_expires_it_at_its_end(redis_backend: Backend) -> None:
    server = redis_backend.server
    assert server is not None
    direct = redis.Redis.from_url(server.url, decode_responses=True)

    async def scenario(store: Store) -> None:
        await quarantines(store).start(KEY, time.time() + 1.2, ["injection.exfil_link"])
        keys = direct.keys("*")
        assert keys == [module.QUARANTINE + KEY]
        assert "secret-session-id-0001" not in keys[0] and "inbox" not in keys[0]
        assert list(direct.hgetall(keys[0])) == ["injection.exfil_link"]
        assert 0 < direct.ttl(keys[0]) <= 2
        assert await eventually(lambda: quarantines(store).holding([KEY]), (None,), seconds=3) == (None,)
        assert await eventually(lambda: asyncio.to_thread(direct.keys, "*"), [], seconds=3) == []

    try:
        redis_backend.run_on_stores(scenario)
    finally:
        direct.close()


def test_a_stopped_redis_fails_a_read_and_a_write_waits_for_it(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = redis_backend.server
    assert server is not None
    monkeypatch.setattr(module, "RETRY_DELAY", 0.1)

    async def scenario(a: Store, b: Store) -> None:
        assert await quarantines(b).holding([KEY]) == (None,)  # connected
        await asyncio.to_thread(server.stop)
        started = time.monotonic()
        with pytest.raises(StoreError, match="reading quarantines") as raised:
            await quarantines(b).holding([KEY])
        assert time.monotonic() - started < 1.0
        assert "s3cret-pw" not in str(raised.value)
        await quarantines(a).start(KEY, time.time() + 60, ["injection.instructions"])  # the first attempt failed
        await asyncio.to_thread(server.start)
        found: tuple = (None,)
        deadline = time.monotonic() + 5
        while found == (None,) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            found = await quarantines(b).holding([KEY])
        assert found[0] is not None and found[0][1] == ("injection.instructions",)

    redis_backend.run_on_stores(scenario, stores=2)


def test_the_sqlite_store_shares_no_quarantine(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
    try:
        assert store.quarantines is None
    finally:
        asyncio.run(store.aclose())
