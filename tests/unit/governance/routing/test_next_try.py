"""What becomes of a failed attempt on its target, as routing decides it in one call (`next_try`):
the failure counted, a refused key rested for the Retry-After read once, and a retry's credential
and wait. Plain logic: a configuration and a pool, no call record, no proxy."""

from __future__ import annotations

from typing import Any

from tollgate.calls.call import Call, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.routing.failover import CONNECT, AttemptFailure, Circuits
from tollgate.governance.routing.next_try import NO_RETRY_LEFT, Tried, goes_again, next_try

RETRY = {"attempts": 2, "when": [503, 429, "connect"], "max_wait_s": 30}


def tried(settings: dict[str, Any], pooled_key: str | None = "sk-one") -> Tried:
    loaded = Loaded.build(parse_config({"providers": {"openai": settings}}, {}))
    call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "POST", "/v1/chat/completions")
    pool = loaded.pools["openai"]
    config = loaded.providers["openai"]
    assert config.retry is not None
    pooled = (pool, pooled_key) if pooled_key is not None else None
    return Tried(loaded, loaded.registry["openai"], call.sent(), None, pooled, "fp", config.retry, None, None)


def test_how_an_attempt_failed_reads_as_its_flow_told_it() -> None:
    refused = AttemptFailure(429, None, 1, "20")
    assert (refused.refused_key, refused.error) == (True, "upstream answered 429")
    unreachable = AttemptFailure(None, CONNECT, 2, unanswered="upstream unreachable: refused")
    assert (unreachable.refused_key, unreachable.error) == (False, "upstream unreachable: refused")


def test_a_failure_retry_when_does_not_name_goes_nowhere_and_rests_no_key() -> None:
    attempt = tried({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    assert not goes_again(AttemptFailure(500, None, 1), attempt.retry, fallbacks=True)
    assert next_try(attempt, AttemptFailure(500, None, 1, "20"), True, Circuits(), None) is None
    assert attempt.pooled is not None and attempt.pooled[0].rest_left("sk-one") == 0.0


def test_the_retry_after_read_once_rests_a_refused_key_and_times_a_retry_after_an_upstream_failure() -> None:
    # A key refused (429): it rests for the Retry-After; the retry goes on the other key at once.
    attempt = tried({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    again = next_try(attempt, AttemptFailure(429, None, 1, "20"), False, Circuits(), None)
    assert again is not None and again.key is not None and (again.key.pooled_key, again.wait) == ("sk-two", 0.0)
    assert attempt.pooled is not None and 19.0 < attempt.pooled[0].rest_left("sk-one") <= 20.0
    # An upstream that failed otherwise (503): no key rests; the retry waits the Retry-After.
    attempt = tried({"keys": ["sk-one", "sk-two"], "retry": RETRY})
    again = next_try(attempt, AttemptFailure(503, None, 1, "2"), False, Circuits(), None)
    assert again is not None and again.key is not None and (again.key.pooled_key, again.wait) == ("sk-one", 2.0)
    # No retry left: the call goes again only on a fallback, if it has one.
    assert next_try(attempt, AttemptFailure(503, None, 2, "2"), True, Circuits(), None) is NO_RETRY_LEFT
    assert next_try(attempt, AttemptFailure(503, None, 2, "2"), False, Circuits(), None) is None
