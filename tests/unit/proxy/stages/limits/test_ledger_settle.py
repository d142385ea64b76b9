"""A call's settlement goes to the store that holds its reservation, or, when a reload replaced
that store meanwhile, what it used goes to the new one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tollgate.calls.call import Answer, Call, Caller, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.usage import Usage
from tollgate.governance.limits.limits import Estimate, Reserved, charges, counters
from tollgate.ledger import open_store
from tollgate.proxy.stages.limits.ledger import Ledger
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

CONFIG = parse_config({"limits": [{"name": "day", "tokens_per_day": 1000, "requests_per_day": 10}]})


def ended_call(loaded: Loaded) -> Call:
    call = Call(
        Route.as_called("openai"),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        caller=Caller("alice"),
        answer=Answer(status=200, request_sent=True),
    )
    call.loaded = loaded
    call.answer.usage = Usage(input_tokens=30, output_tokens=12, total_tokens=42)
    return call


def test_settled_in_the_reserving_store_or_counted_in_the_one_that_replaced_it(tmp_path: Path) -> None:
    async def scenario() -> tuple[tuple[int, ...], tuple[int, ...]]:
        first, second = open_store(f"sqlite:///{tmp_path}/a.sqlite"), open_store(f"sqlite:///{tmp_path}/b.sqlite")
        loaded = Loaded.build(CONFIG)
        shared = Shared()
        shared.apply(loaded, None, first)
        ledger = Ledger(shared)
        found = counters(loaded.limits.applying("openai", None, "alice", ()), "alice", (), 1_800_000_000)
        keys = [c.key for c in found]
        estimate = Estimate(1, 500, 0)
        try:
            for replaced in (False, True):
                assert first.reserve_now(charges(found, estimate)).granted
                call = ended_call(loaded)
                call.ledger.reserved = Reserved(first, tuple(found), estimate)
                if replaced:
                    shared.ledger = second  # as a reload that changes ledger.store leaves it
                ledger.settle(call, audit_record(call))
            return await first.read(keys), await second.read(keys)
        finally:
            await first.aclose()
            await second.aclose()

    in_first, in_second = asyncio.run(scenario())
    # (requests, tokens): the first call settled to its 42 tokens where it reserved; the second's
    # reservation (500) stays in the store it was made in, and the new store counts what it used.
    assert in_first == (2, 542)
    assert in_second == (1, 42)
