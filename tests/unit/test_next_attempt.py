"""What a call whose attempt failed does next (`plan`): a retry on the next key after its wait, its
next fallback, or nothing. Plain logic: a call record and a configuration, no proxy."""

from __future__ import annotations

from typing import Any

from tollgate.call import Call, Route
from tollgate.config import parse_config
from tollgate.governance.failover import CONNECT, TIMEOUT, Circuits
from tollgate.governance.next_attempt import END, Failure, Fallback, Retry, goes_again, plan, retry_of
from tollgate.runtime import Loaded

FALLBACKS = (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o-mini"))


def call_with(openai: dict[str, Any], fallbacks: tuple[tuple[str, str], ...] = ()) -> Call:
    config = parse_config({"providers": {"openai": openai, "anthropic": {"keys": ["sk-ant"]}}}, {})
    call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "POST", "/v1/chat/completions")
    call.loaded = Loaded.build(config)
    call.route.upstream = "https://api.openai.com"
    call.failover.fallbacks = fallbacks
    return call


def planned(call: Call, failure: Failure, circuits: Circuits | None = None) -> Retry | Fallback | object:
    return plan(call, failure, retry_of(call), circuits or Circuits())


RETRY = {"attempts": 3, "when": [503, 429, "connect"], "max_wait_s": 5}


def test_a_retry_goes_on_the_next_key_after_the_retry_after_asked():
    call = call_with({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    step = planned(call, Failure(503, None, tries=1, retry_after=2.0))
    assert isinstance(step, Retry) and step.wait == 2.0
    assert step.key.pooled_key == "sk-one"  # the pool's next key
    step = planned(call, Failure(None, CONNECT, tries=2))
    assert isinstance(step, Retry) and (step.key.pooled_key, step.wait) == ("sk-two", 0.0)


def test_a_failure_retry_when_does_not_name_ends_the_call_whatever_is_left():
    call = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    for failure in (Failure(500, None, tries=1), Failure(None, TIMEOUT, tries=1)):
        assert not goes_again(call, failure, retry_of(call))
        assert planned(call, failure) is END


def test_with_no_retry_left_the_next_fallback_goes_else_nothing():
    with_fallbacks = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    assert planned(with_fallbacks, Failure(503, None, tries=3)) == Fallback(FALLBACKS[0])
    alone = call_with({"keys": ["sk-one"], "retry": RETRY})
    assert planned(alone, Failure(503, None, tries=3)) is END
    # Fallbacks without `retry`: one attempt, on the default conditions.
    no_retry = call_with({"keys": ["sk-one"]}, FALLBACKS)
    assert planned(no_retry, Failure(503, None, tries=1)) == Fallback(FALLBACKS[0])


def test_a_wait_past_max_wait_s_is_no_retry():
    call = call_with({"keys": ["sk-one"], "retry": RETRY}, FALLBACKS)
    assert planned(call, Failure(503, None, tries=1, retry_after=6.0)) == Fallback(FALLBACKS[0])
    call = call_with({"keys": ["sk-one"], "retry": RETRY})
    assert planned(call, Failure(503, None, tries=1, retry_after=6.0)) is END


def test_a_refused_key_waits_only_for_the_rest_of_the_next_key():
    call = call_with({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    pool = call.loaded.pools["openai"]
    pool.rest("sk-one", 60)  # the key the 429 refused, rested by the stage before it plans
    step = planned(call, Failure(429, None, tries=1, retry_after=60.0, refused_key=True))
    assert isinstance(step, Retry) and (step.key.pooled_key, step.wait) == ("sk-two", 0.0)


def test_no_retry_while_every_key_rests():
    call = call_with({"keys": ["sk-one"], "retry": RETRY, "circuit": {"failures": 1, "rest_s": 60}}, FALLBACKS)
    call.loaded.pools["openai"].open_circuit("sk-one", 60)
    assert planned(call, Failure(503, None, tries=1)) == Fallback(FALLBACKS[0])
    call = call_with({"keys": ["sk-one"], "retry": RETRY, "circuit": {"failures": 1, "rest_s": 60}})
    call.loaded.pools["openai"].open_circuit("sk-one", 60)
    assert planned(call, Failure(503, None, tries=1)) is END
