"""Failover's plain logic: which answers make an attempt failed, how long the next one waits, and
what `providers.<name>.retry` accepts."""

from __future__ import annotations

import pytest

from tollgate.common.config_base import RetryConfig
from tollgate.configuration.config import ConfigError, parse_config
from tollgate.governance.routing.failover import (
    CONNECT,
    DEFAULT_WHEN,
    TIMEOUT,
    Circuits,
    failed,
    fails_the_key,
    model_circuit,
    retry_statuses,
    split_circuit,
    status_condition,
    upstream_circuit,
    wait_for,
)


def test_a_status_is_a_condition_when_named_or_a_5xx_under_5xx() -> None:
    when = (429, "5xx")
    assert [status_condition(s, when) for s in (429, 500, 503, 529, 400, 401, 408, 200)] == [
        True, True, True, True, False, False, False, False,
    ]  # fmt: skip
    assert status_condition(529, (529,)) and not status_condition(503, (529,))
    assert retry_statuses(RetryConfig(when=(429, "connect"))) == frozenset({429})
    assert len(retry_statuses(RetryConfig(when=("5xx",)))) == 100


def test_the_wait_is_the_next_keys_rest_after_a_refused_key_else_the_retry_after() -> None:
    assert wait_for(0.0, 1.0, True, 5) == 0.0  # another key, not resting: at once
    assert wait_for(2.5, 1.0, True, 5) == 2.5  # the key it goes with rests still
    assert wait_for(60.0, 1.0, True, 5) is None  # longer than max_wait_s: not made
    assert wait_for(None, 3.0, True, 5) == 3.0  # not pooled: the Retry-After
    assert wait_for(0.0, 2.0, False, 5) == 2.0  # an overloaded upstream asked every key to wait
    assert wait_for(None, None, False, 5) == 0.0
    assert wait_for(None, 6.0, False, 5) is None


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"when": [404]}, "providers.openai.retry.when"),
        ({"when": ["on"]}, "'on' is not a condition to retry on"),
        ({"when": [True]}, "providers.openai.retry.when"),
        ({"attempts": 0}, "providers.openai.retry.attempts"),
        ({"max_wait_s": -1}, "providers.openai.retry.max_wait_s"),
        ({"on": [429]}, "providers.openai.retry.on"),
    ],
)
def test_a_bad_retry_setting_names_its_field(retry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"openai": {"retry": retry}}}, {})
    assert message in str(info.value)


def test_retry_is_off_by_default_and_read_when_set() -> None:
    assert parse_config({}, {}).providers.get("openai").retry is None
    retry = parse_config({"providers": {"openai": {"retry": {"attempts": 3, "when": [429, "5xx"]}}}}, {})
    assert retry.providers.get("openai").retry == RetryConfig(attempts=3, when=(429, "5xx"), max_wait_s=10.0)


def test_an_attempt_failed_as_when_says() -> None:
    when = (429, "5xx", "timeout")
    assert [failed(s, None, when) for s in (429, 503, 200, 400)] == [True, True, False, False]
    assert failed(None, "timeout", when) and not failed(None, "connect", when) and not failed(None, None, when)
    assert DEFAULT_WHEN == (429, 529, "5xx", "connect", "timeout")


def test_a_circuit_opens_after_failures_in_a_row_and_half_opens_after_its_rest() -> None:
    now = [100.0]
    circuits = Circuits(clock=lambda: now[0])
    assert [circuits.failed("k", 3) for _ in range(2)] == [False, False]
    circuits.succeeded("k")  # a call that did not fail: the count starts again
    assert [circuits.failed("k", 3) for _ in range(3)] == [False, False, True]
    circuits.open("k", 10)
    assert circuits.rest_left("k") == 10
    now[0] += 10
    assert circuits.rest_left("k") == 0
    assert circuits.failed("k", 3)  # one more failure after the rest opens it again
    circuits.succeeded("k")
    assert not circuits.failed("k", 3)


def test_circuit_settings() -> None:
    config = parse_config({"providers": {"openai": {"circuit": {"failures": 3, "rest_s": 2}}}})
    circuit = config.providers.get("openai").circuit
    assert circuit is not None and (circuit.failures, circuit.rest_s) == (3, 2)
    for bad in ({"failures": 0}, {"rest_s": 0}, {"when": [429]}):
        with pytest.raises(ConfigError):
            parse_config({"providers": {"openai": {"circuit": bad}}})


def test_a_429_and_a_failed_connection_are_the_keys_every_other_failure_its_models() -> None:
    assert [fails_the_key(s, None) for s in (429, 401, 500, 503, 529, 408, 409)] == [
        True, True, False, False, False, False, False,
    ]  # fmt: skip
    assert (fails_the_key(None, CONNECT), fails_the_key(None, TIMEOUT)) == (True, False)


def test_a_circuit_for_one_model_is_named_apart_and_read_back() -> None:
    upstream = upstream_circuit("anthropic", "https://api.anthropic.com")
    for whole in ("sha256:0123abcd", upstream):
        assert split_circuit(model_circuit(whole, "gpt-4o")) == (whole, "gpt-4o")
        assert split_circuit(model_circuit(whole, "")) == (whole, "")
        assert split_circuit(whole) == (whole, None)
    assert model_circuit("sha256:0123abcd", "a") != model_circuit("sha256:0123abcd", "b")
