"""A fallback's steps reserve its own room on the limits: the failed attempt's reservation, were
it still held, is settled before it is replaced, never lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mitmproxy import http

from tollgate.calls.call import Answer, Call, Caller, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.limits.limits import Estimate, Reserved, charges, counters
from tollgate.ledger import open_store
from tollgate.proxy.stages.upstream.fallback import Fallbacks
from tollgate.proxy.state import Shared

from ..conftest import api_flow

CONFIG = parse_config({"limits": [{"name": "day", "tokens_per_day": 10_000, "requests_per_day": 10}]})


class ReservingSteps:
    """The `failover` steps as far as the limits go: the fallback's reservation made, the call's
    `reserved` replaced by it, as the Ledger stage does."""

    def __init__(self, reserved: Reserved) -> None:
        self._reserved = reserved

    def run(self, flow: Any, call: Call) -> None:
        assert self._reserved.store.reserve_now(charges(self._reserved.counters, self._reserved.estimate)).granted
        call.ledger.reserved = self._reserved


def test_a_reservation_still_held_is_settled_before_a_fallback_replaces_it(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, ...]:
        store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
        loaded = Loaded.build(CONFIG)
        found = counters(loaded.limits.applying("openai", None, "alice", ()), "alice", (), 1_800_000_000)
        try:
            failed = Reserved(store, tuple(found), Estimate(1, 500, 0))
            assert store.reserve_now(charges(found, failed.estimate)).granted
            call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "POST", "/v1/chat/completions",
                        caller=Caller("alice"), answer=Answer(status=503, request_sent=True))  # fmt: skip
            call.loaded = loaded
            call.ledger.reserved = failed  # not settled: the attempt's reservation still held
            call.failover.fallbacks = (("openai", "gpt-4o-mini"),)
            fallback = Fallbacks(Shared(), ReservingSteps(Reserved(store, tuple(found), Estimate(1, 300, 0))))  # type: ignore[arg-type]
            flow = api_flow("api.openai.com", "/v1/chat/completions", {"model": "gpt-4o"})
            flow.response = http.Response.make(503)  # the failed attempt's answer
            assert await fallback.next(flow, call)
            return await store.read([c.key for c in found])
        finally:
            await store.aclose()

    # (requests, tokens): the failed attempt answered, so it kept its one request and gave back
    # its 500 tokens; the fallback's 300 are reserved. Unsettled, it would be (2, 800).
    assert asyncio.run(scenario()) == (2, 300)
