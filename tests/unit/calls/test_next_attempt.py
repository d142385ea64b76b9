"""What a call whose attempt failed does next (`next_step`): a retry on the next key after its
wait, its next fallback, or nothing. Plain logic: a call record and a configuration, no proxy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tollgate.calls.call import Call, Caller, Route
from tollgate.calls.next_attempt import (
    END,
    NOT_AGAIN,
    End,
    Fallback,
    Retry,
    Step,
    next_step,
    retry_of,
)
from tollgate.calls.settlement import settle_attempt
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.limits.limits import Estimate, Reserved, charges, counters
from tollgate.governance.routing.failover import CONNECT, TIMEOUT, AttemptFailure, Circuits
from tollgate.governance.routing.next_try import goes_again
from tollgate.ledger import open_store
from tollgate.ledger.store import Store
from tollgate.proxy.stages.limits.ledger import Ledger
from tollgate.proxy.stages.upstream.attempts import resends_on
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

FALLBACKS = (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o-mini"))


def call_with(openai: dict[str, Any], fallbacks: tuple[tuple[str, str], ...] = ()) -> Call:
    config = parse_config({"providers": {"openai": openai, "anthropic": {"keys": ["sk-ant"]}}}, {})
    call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "POST", "/v1/chat/completions")
    call.loaded = Loaded.build(config)
    call.route.upstream = "https://api.openai.com"
    call.failover.fallbacks = fallbacks
    return call


def planned(call: Call, failure: AttemptFailure, circuits: Circuits | None = None) -> Step:
    step = next_step(call, failure, circuits or Circuits(), None)
    assert isinstance(step, (Retry, Fallback, End))  # no limit: nothing to reserve, nothing awaited
    return step


RETRY = {"attempts": 3, "when": [503, 429, "connect"], "max_wait_s": 5}


def test_a_retry_goes_on_the_next_key_after_the_retry_after_asked():
    call = call_with({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    step = planned(call, AttemptFailure(503, None, tries=1, retry_after="2"))
    assert isinstance(step, Retry) and (step.wait, step.last) == (2.0, False)
    assert step.key.pooled_key == "sk-one"  # the pool's next key
    step = planned(call, AttemptFailure(None, CONNECT, tries=2))
    assert isinstance(step, Retry) and (step.key.pooled_key, step.wait) == ("sk-two", 0.0)
    assert step.last  # the third attempt of three, with no fallback: its failure goes to the client


def test_a_failure_retry_when_does_not_name_ends_the_call_whatever_is_left():
    call = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    for failure in (AttemptFailure(500, None, tries=1), AttemptFailure(None, TIMEOUT, tries=1)):
        assert not goes_again(failure, retry_of(call), fallbacks=True)
        assert planned(call, failure) is NOT_AGAIN


def test_with_no_retry_left_the_next_fallback_goes_else_nothing():
    with_fallbacks = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    assert planned(with_fallbacks, AttemptFailure(503, None, tries=3)) == Fallback(FALLBACKS[0])
    alone = call_with({"keys": ["sk-one"], "retry": RETRY})
    assert planned(alone, AttemptFailure(503, None, tries=3)) is NOT_AGAIN
    # Fallbacks without `retry`: one attempt, on the default conditions.
    no_retry = call_with({"keys": ["sk-one"]}, FALLBACKS)
    assert planned(no_retry, AttemptFailure(503, None, tries=1)) == Fallback(FALLBACKS[0])


def test_a_fallbacks_first_attempt_goes_again_on_its_own_providers_retry():
    call = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS[1:])
    assert resends_on(call) == retry_of(call)  # a retry of its own left
    call = call_with({"keys": ["sk-one"]}, FALLBACKS[1:])
    assert resends_on(call) == retry_of(call)  # no retry: its next fallback left
    call.failover.fallbacks = ()
    assert resends_on(call) is None  # nothing after it: its failure stands


def test_a_wait_past_max_wait_s_is_no_retry():
    call = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    assert planned(call, AttemptFailure(503, None, tries=1, retry_after="6")) == Fallback(FALLBACKS[0])
    call = call_with({"keys": ["sk-one"], "retry": RETRY})
    assert planned(call, AttemptFailure(503, None, tries=1, retry_after="6")) is END


def test_a_refused_key_waits_only_for_the_rest_of_the_next_key():
    call = call_with({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    pool = call.loaded.pools["openai"]
    call.answer.pooled_key = (pool, "sk-one")  # the key the 429 refused: it rests for the Retry-After
    step = planned(call, AttemptFailure(429, None, tries=1, retry_after="60"))
    assert isinstance(step, Retry) and (step.key.pooled_key, step.wait) == ("sk-two", 0.0)


def test_no_retry_while_every_key_rests():
    call = call_with({"keys": ["sk-one"], "retry": RETRY, "circuit": {"failures": 1, "rest_s": 60}}, FALLBACKS)
    call.loaded.pools["openai"].open_circuit("sk-one", 60)
    assert planned(call, AttemptFailure(503, None, tries=1)) == Fallback(FALLBACKS[0])
    call = call_with({"keys": ["sk-one"], "retry": RETRY, "circuit": {"failures": 1, "rest_s": 60}})
    call.loaded.pools["openai"].open_circuit("sk-one", 60)
    assert planned(call, AttemptFailure(503, None, tries=1)) is END


def test_next_step_decides_in_one_call_and_records_and_counts_what_goes_again():
    call = call_with(
        {"keys": ["sk-one", "sk-two"], "retry": RETRY, "circuit": {"failures": 1, "rest_s": 30}}, FALLBACKS
    )
    pool = call.loaded.pools["openai"]
    call.answer.pooled_key, call.answer.upstream_key = (pool, "sk-one"), "fp-one"
    circuits = Circuits()
    # A failure `retry.when` does not name: nothing counted, rested nor recorded.
    assert next_step(call, AttemptFailure(500, None, tries=1), circuits, None) is NOT_AGAIN
    assert (pool.rest_left("sk-one"), call.failover.attempts) == (0.0, None)
    # A key refused: it rests for the Retry-After asked, its circuit opens, the attempt is recorded,
    # and the retry goes on the other key, the first fallback instead if it cannot be made.
    refused = AttemptFailure(429, None, 1, "20")  # as its flow tells: the status and Retry-After as they came
    assert (refused.refused_key, refused.error) == (True, "upstream answered 429")
    step = next_step(call, refused, circuits, None)
    assert isinstance(step, Retry) and (step.key.pooled_key, step.wait, step.last) == ("sk-two", 0.0, False)
    assert step.otherwise == Fallback(FALLBACKS[0])
    assert 19.0 < pool.rest_left("sk-one") <= 30.0
    assert [(a.provider, a.status, a.upstream_key, a.error) for a in (step.record,)] == [
        ("openai", 429, "fp-one", "upstream answered 429")
    ]
    # No retry within `max_wait_s` and no fallback: the end, counted, nothing recorded.
    alone = call_with({"keys": ["sk-one"], "retry": RETRY})
    end = next_step(alone, AttemptFailure(503, None, 1, "6"), circuits, None)
    assert end == END and end.counted and alone.failover.attempts is None


# A retry reserved on the limits and never sent (its client gone during its wait, its credential not
# to be had) gives its reservation back, whatever goes instead: only the failed attempt's request
# counts.
LIMITED = {"limits": [{"name": "day", "requests_per_day": 10}]}


def limited_call(fallbacks: tuple[tuple[str, str], ...], store: Store) -> tuple[Call, list[str]]:
    config = parse_config(
        {"providers": {"openai": {"keys": ["sk-one", "sk-two"], "retry": RETRY}, "anthropic": {"keys": ["sk-ant"]}},
         **LIMITED},
        {},
    )  # fmt: skip
    call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "POST", "/v1/chat/completions")
    call.caller = Caller("alice")
    call.loaded = Loaded.build(config)
    call.route.upstream = "https://api.openai.com"
    call.failover.fallbacks = fallbacks
    call.answer.request_sent = True  # the failed attempt went upstream, and the upstream answered 503
    found = counters(call.loaded.limits.applying("openai", "gpt-4o", "alice", ()), "alice", (), time.time())
    reservation = store.reserve_now(charges(found, Estimate(1, 0, None)))
    assert reservation is not None and reservation.granted
    call.ledger.reserved = Reserved(store, tuple(found), Estimate(1, 0, None))
    return call, [c.key for c in found]


def settled_at_its_end(call: Call, store: Store) -> None:
    shared = Shared()
    shared.apply(call.loaded, None, store)
    Ledger(shared).settle_reservation(call, audit_record(call))


@pytest.mark.parametrize("fallbacks", [FALLBACKS, ()])
def test_a_retry_reserved_and_never_sent_gives_its_reservation_back(tmp_path: Path, fallbacks: tuple) -> None:
    async def scenario() -> tuple[object, tuple[int, ...], tuple[int, ...]]:
        store = open_store(f"sqlite:///{tmp_path}/ledger.sqlite")
        try:
            call, keys = limited_call(fallbacks, store)
            pending = next_step(call, AttemptFailure(503, None, 1), Circuits(), store, 100)
            assert not isinstance(pending, (Retry, Fallback, End))  # its reservation is awaited
            step = await pending
            assert isinstance(step, Retry) and call.ledger.reserved is not None
            reserved = await store.read(keys)
            # Not made after all: what goes instead is the step's; the reservation goes back as the
            # call settles, before a fallback's own (`Fallback.next`), else at its end.
            instead = step.otherwise
            if isinstance(instead, Fallback):
                settle_attempt(call, 503)
            else:
                settled_at_its_end(call, store)
            return instead, reserved, await store.read(keys)
        finally:
            await store.aclose()

    instead, reserved, after = asyncio.run(scenario())
    assert instead == (Fallback(FALLBACKS[0]) if fallbacks else END)
    # The failed attempt's request and the retry's reservation; then the failed attempt's alone.
    assert (reserved, after) == ((2,), (1,))
