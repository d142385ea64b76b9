"""Ledger benchmark: what a call's reservation costs the proxy on each store, and what queuing its
settlement costs.

Run from the checkout:

    .venv/bin/python bench/ledger.py                  # 5000 calls per store (Redis: a redis-server started here)
    .venv/bin/python bench/ledger.py --calls 20000
    .venv/bin/python bench/ledger.py --redis redis://127.0.0.1:6379/15   # a Redis of yours (its db is written to)

Per call, as the Limit step would: `await store.reserve(charges)` with the charges of two limits
(requests, tokens and nano-USD per minute and per day: six counters with caps), timed from before
the call to after its await (so the hand-over to the SQLite worker thread, or the round trip to
Redis, is in it); then `store.adjust(...)` (the settlement of the six counters) and
`store.record(row)` (the call's row) timed together — the enqueue only, as their writes go in the
background; then `await store.flushed()`, what the end of a counted call's answer waits for (its
settlement written: nothing for SQLite, a write to Redis). One event loop, calls one after another
(the latency of one call, not throughput); a warm-up of 200 calls first. SQLite's file is in a
temporary directory (on this machine's disk).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "addons"), str(ROOT)]

from tollgate.ledger import Charge, Store, open_store, window_bounds  # noqa: E402

WARM_UP = 200


def charges(now: float) -> list[Charge]:
    minute, day = window_bounds("minute", now), window_bounds("day", now)
    return [
        Charge(f"bench per client|alice|{metric}|{window}|{start}", amount, cap, end)
        for window, (start, end) in (("minute", minute), ("day", day))
        for metric, amount, cap in (("requests", 1, 10**9), ("tokens", 1200, 10**12), ("usd", 90_000, 10**15))
    ]


ROW = {
    "ts": 0.0,
    "client": "alice",
    "groups": ["interns"],
    "provider": "openai",
    "requested_provider": "openai",
    "model": "gpt-4o-mini",
    "endpoint": "chat.completions",
    "status": 200,
    "decision": "allow",
    "input_tokens": 100,
    "output_tokens": 28,
    "total_tokens": 128,
    "cached_tokens": 0,
    "cache_write_tokens": None,
    "reasoning_tokens": None,
    "cost_usd": 0.0000318,
}


async def measure(store: Store, calls: int) -> tuple[list[int], list[int], list[int]]:
    reserve_ns: list[int] = []
    settle_ns: list[int] = []
    flush_ns: list[int] = []
    for i in range(WARM_UP + calls):
        now = time.time()
        wanted = charges(now)
        t0 = time.perf_counter_ns()
        reservation = await store.reserve(wanted)
        t1 = time.perf_counter_ns()
        assert reservation.granted
        changes = [(c.counter, -c.amount // 2, c.expires) for c in wanted]
        t2 = time.perf_counter_ns()
        store.adjust(changes)
        store.record({**ROW, "ts": now})
        t3 = time.perf_counter_ns()
        waiting = store.flushed()
        if waiting is not None:
            await waiting
        t4 = time.perf_counter_ns()
        if i >= WARM_UP:
            reserve_ns.append(t1 - t0)
            settle_ns.append(t3 - t2)
            flush_ns.append(t4 - t3)
    await store.aclose()
    return reserve_ns, settle_ns, flush_ns


def report(name: str, reserve_ns: list[int], settle_ns: list[int], flush_ns: list[int]) -> None:
    def p(values: list[int], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] / 1000

    print(
        f"{name:<8} reserve p50 {p(reserve_ns, 50):7.1f} µs  p99 {p(reserve_ns, 99):7.1f} µs   "
        f"adjust+record enqueue p50 {p(settle_ns, 50):5.1f} µs  p99 {p(settle_ns, 99):5.1f} µs   "
        f"flushed p50 {p(flush_ns, 50):7.1f} µs  p99 {p(flush_ns, 99):7.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--redis", help="a Redis URL to use instead of a redis-server started here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = open_store(f"sqlite:///{directory}/ledger.sqlite")
        report("SQLite", *asyncio.run(measure(store, args.calls)))
        server = None
        url = args.redis
        if url is None:
            from tests.support.redis import RedisServer, redis_server_command

            if redis_server_command() is None:
                print("Redis   skipped: redis-server is not installed (apt-get install -y redis-server)")
                return
            server = RedisServer(Path(directory) / "redis").start()
            url = server.url
        try:
            report("Redis", *asyncio.run(measure(open_store(url), args.calls)))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
