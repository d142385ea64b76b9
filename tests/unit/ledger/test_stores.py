"""What every ledger store does, each test on a SQLite file and on a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from tollgate.ledger import Charge, Reservation, Store

from .conftest import Backend, eventually, run

LATER = int(time.time()) + 3600  # an expiry well ahead


def charge(counter: str, amount: int, cap: int | None, expires: int = LATER) -> Charge:
    return Charge(counter, amount, cap, expires)


def test_reserve_adds_every_charge_or_none(backend: Backend):
    async def scenario(store: Store) -> None:
        charges = [charge("requests", 1, 2), charge("tokens", 5, 10)]
        assert await store.reserve(charges) == Reservation(True, (0, 0), None)
        assert await store.reserve(charges) == Reservation(True, (1, 5), None)
        # Both full now: the first that does not fit is named, and nothing is added.
        assert await store.reserve(charges) == Reservation(False, (2, 10), 0)
        assert await store.reserve([charge("other", 1, 5), charge("tokens", 1, 10)]) == Reservation(False, (0, 10), 1)
        assert await store.read(["requests", "tokens", "other", "missing"]) == (2, 10, 0, 0)

    backend.run_on_stores(scenario)


def test_a_charge_may_reach_its_cap_exactly_and_none_counts_only(backend: Backend):
    async def scenario(store: Store) -> None:
        assert (await store.reserve([charge("usd", 7, 7)])).granted
        assert not (await store.reserve([charge("usd", 1, 7)])).granted
        assert (await store.reserve([charge("usd", 0, 7)])).granted  # nothing more still fits
        for _ in range(3):
            assert (await store.reserve([charge("counted", 10**15, None)])).granted
        assert await store.read(["usd", "counted"]) == (7, 3 * 10**15)
        assert await store.reserve([]) == Reservation(True, (), None)
        assert await store.read([]) == ()

    backend.run_on_stores(scenario)


def test_a_counter_charged_twice_in_one_reservation_is_checked_with_both(backend: Backend):
    async def scenario(store: Store) -> None:
        assert await store.reserve([charge("c", 2, 3), charge("c", 2, 3)]) == Reservation(False, (0, 0), 1)
        assert await store.reserve([charge("c", 1, 3), charge("c", 2, 3)]) == Reservation(True, (0, 0), None)
        assert await store.read(["c"]) == (3,)

    backend.run_on_stores(scenario)


def test_adjust_settles_a_reservation_up_or_down(backend: Backend):
    async def scenario(store: Store) -> None:
        assert (await store.reserve([charge("tokens", 100, 150)])).granted
        store.adjust([("tokens", -70, LATER)])  # the call used 30 of the 100 it reserved
        assert await eventually(lambda: store.read(["tokens"]), (30,)) == (30,)
        assert (await store.reserve([charge("tokens", 120, 150)])).granted
        store.adjust([("tokens", 25, LATER), ("new", 4, LATER), ("new", -1, LATER)])
        assert await eventually(lambda: store.read(["tokens", "new"]), (175, 3)) == (175, 3)
        assert not (await store.reserve([charge("tokens", 0, 150)])).granted  # over by what was used

    backend.run_on_stores(scenario)


@pytest.mark.slow
def test_an_expired_counter_counts_as_none(backend: Backend):
    async def scenario(store: Store) -> None:
        now = int(time.time())
        assert (await store.reserve([charge("past", 5, 5, expires=now - 1)])).granted
        assert await store.read(["past"]) == (0,)
        assert await store.reserve([charge("past", 5, 5, expires=now - 1)]) == Reservation(True, (0,), None)
        # Expiries are whole seconds: the next one, unless it is under 0.3 s away (then the one
        # after), so the counter is read before it expires and the wait is about a second at most.
        soon = now + 1 if time.time() - now < 0.7 else now + 2
        assert (await store.reserve([charge("soon", 5, 5, expires=soon)])).granted
        assert await store.read(["soon"]) == (5,)
        await asyncio.sleep(max(0.0, soon + 0.1 - time.time()))
        assert await eventually(lambda: store.read(["soon"]), (0,), seconds=2) == (0,)
        assert await store.reserve([charge("soon", 5, 5, expires=LATER)]) == Reservation(True, (0,), None)

    backend.run_on_stores(scenario)


def rows(ts: float, n: int) -> list[dict]:
    return [
        {"ts": ts + i, "client": f"c{i}", "groups": ["g"], "model": "gpt-4o-mini", "input_tokens": i, "cost_usd": None}
        for i in range(n)
    ]


def test_record_and_calls_since(backend: Backend):
    now = time.time()
    old, recent = rows(now - 1000, 2), rows(now - 10, 3)

    async def scenario(store: Store) -> None:
        for row in old + recent:
            store.record(row)

    backend.run_on_stores(scenario)
    store = backend.open()
    assert list(store.calls(now - 100)) == recent  # the rows as recorded, oldest first
    assert list(store.calls(0)) == old + recent
    assert list(store.calls(now + 10)) == []
    run(store.aclose())


def test_aclose_writes_what_is_queued(backend: Backend):
    async def scenario(store: Store) -> None:
        assert (await store.reserve([charge("a", 10, None)])).granted
        store.adjust([("a", -4, LATER), ("b", 7, LATER)])
        store.record({"ts": time.time(), "client": "last"})

    backend.run_on_stores(scenario)

    async def reopened(store: Store) -> None:
        assert await store.read(["a", "b"]) == (6, 7)
        assert [r["client"] for r in store.calls(0)] == ["last"]

    backend.run_on_stores(reopened)


@pytest.mark.slow
def test_a_restart_keeps_the_counts(backend: Backend):
    async def before(store: Store) -> None:
        assert (await store.reserve([charge("kept", 3, 10)])).granted
        store.adjust([("kept", 2, LATER)])

    backend.run_on_stores(before)
    if backend.server is not None:  # Redis stopped as an operator stops it, and started again
        backend.server.stop()
        backend.server.start()

    async def after(store: Store) -> None:
        assert await store.read(["kept"]) == (5,)
        assert await store.reserve([charge("kept", 6, 10)]) == Reservation(False, (5,), 0)

    backend.run_on_stores(after)


@pytest.mark.slow
def test_many_concurrent_reserves_never_pass_a_cap(backend: Backend):
    async def scenario(store: Store) -> None:
        results = await asyncio.gather(
            *(store.reserve([charge("req", 1, 150), charge("tok", 3, None)]) for _ in range(400))
        )
        assert sum(r.granted for r in results) == 150
        assert sorted(r.values[0] for r in results if r.granted) == list(range(150))
        assert await store.read(["req", "tok"]) == (150, 450)

    backend.run_on_stores(scenario)


@pytest.mark.slow
def test_a_reservation_whose_caller_gave_up_is_taken_back(redis_backend: Backend):
    """Redis: the reservation goes over the network, and its caller may stop waiting for the
    answer. (SQLite's is made in memory before its caller gets control back.)"""

    async def scenario(store: Store) -> None:
        task = asyncio.ensure_future(store.reserve([charge("gone", 1, 5)]))
        await asyncio.sleep(0)  # sent to the store
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.3)  # the store may have reserved meanwhile, and then released it
        assert await eventually(lambda: store.read(["gone"]), (0,)) == (0,)
        assert (await store.reserve([charge("gone", 5, 5)])).granted

    redis_backend.run_on_stores(scenario)
