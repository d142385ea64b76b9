"""Real keys used in turn, resting the ones the provider just refused."""

from __future__ import annotations

import calendar
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.credentials.keypool import DEFAULT_REST, MAX_REST, CircuitOpen, KeyPool, retry_after_seconds


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- Retry-After ------------------------------------------------------------------------------------

NOW = float(calendar.timegm((2015, 10, 21, 7, 28, 0)))  # Wed, 21 Oct 2015 07:28:00 GMT


def test_default_rest_is_60_seconds() -> None:
    assert DEFAULT_REST == 60.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 60.0),
        ("", 60.0),
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("2.5", 2.5),
        ("soon", 60.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: free now
        ("Thu, 22 Oct 2015 07:28:00 GMT", 86400.0),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # RFC 850 form: 60 s from NOW as well
        ("Wed Oct 21 07:28:10 2015", 10.0),  # asctime form
        ("Wed, 32 Oct 2015 07:30:00 GMT", 60.0),  # unreadable date
        ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0),  # at most a day, as in seconds
        ("Wed, 21 Oct 2015 09:30:00 +0200", 120.0),  # not an HTTP-date, but unambiguous
        ("-5", 60.0),  # not delay-seconds (1*DIGIT): as if absent, not "free now"
        ("+5", 60.0),
        ("1e9", 60.0),
        ("1_000", 60.0),
        ("0x10", 60.0),
        ("99999999999999999999999", 86400.0),
        ("3.5", 3.5),  # fractions, as OpenAI's SDK reads them too
        ("  7 ", 7.0),
        ("\t7", 7.0),
        ("\u0663", 60.0),  # ARABIC-INDIC DIGIT THREE: int() and float() read it, HTTP does not
        ("\uff17", 60.0),  # FULLWIDTH DIGIT SEVEN
        ("\u00a07", 60.0),  # no-break space is not HTTP whitespace
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float) -> None:
    assert retry_after_seconds(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "Wed Oct 21 07:28:10 2015",  # asctime form: GMT, though it names no zone
        "Wed, 21 Oct 2015 07:28:10",
        "Wed, 21 Oct 2015 07:28:10 -0000",
    ],
)
def test_retry_after_date_without_a_zone_is_gmt_whatever_the_local_zone(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert retry_after_seconds(value, now=NOW) == 10.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_retry_after_http_date_against_the_wall_clock() -> None:
    import time

    value = formatdate(time.time() + 90, usegmt=True)
    assert 85.0 <= retry_after_seconds(value) <= 91.0


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan"])
def test_retry_after_non_numeric_float_spellings_are_unreadable(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) == 60.0


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=40))
def test_retry_after_never_raises_and_stays_within_a_day(value: str) -> None:
    seconds = retry_after_seconds(value, now=NOW)
    assert isinstance(seconds, float)
    assert 0.0 <= seconds <= MAX_REST


@settings(max_examples=examples(100), deadline=None)
@given(st.text(st.characters(categories=["Nd"]), min_size=1, max_size=8).filter(lambda s: not s.isascii()))
def test_retry_after_reads_only_ascii_digits(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) == DEFAULT_REST


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_delta_seconds(n: int) -> None:
    assert retry_after_seconds(str(n), now=NOW) == float(min(n, 86400))  # at most a day


@settings(max_examples=examples(100), deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_http_date(delta: int) -> None:
    assert retry_after_seconds(formatdate(NOW + delta, usegmt=True), now=NOW) == float(min(delta, 86400))


# --- the pool -----------------------------------------------------------------------------------------


def test_empty_pool() -> None:
    pool = KeyPool([])
    assert not pool
    assert pool.take() is None
    pool.rest("k", 10)  # unknown key: ignored
    assert pool.take() is None


def test_single_key() -> None:
    pool = KeyPool(["k1"], clock=Clock())
    assert pool
    assert [pool.take() for _ in range(3)] == ["k1", "k1", "k1"]


def test_round_robin() -> None:
    pool = KeyPool(["a", "b", "c"], clock=Clock())
    assert [pool.take() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_pool_keeps_its_own_copy_of_the_keys() -> None:
    keys = ["a", "b"]
    pool = KeyPool(keys, clock=Clock())
    keys.append("c")
    assert [pool.take() for _ in range(3)] == ["a", "b", "a"]


def test_resting_key_is_skipped_until_its_time_is_up() -> None:
    clock = Clock(1000.0)
    pool = KeyPool(["a", "b", "c"], clock=clock)
    assert pool.take() == "a"
    pool.rest("a", retry_after_seconds("30"))  # e.g. after a 429 with Retry-After: 30
    assert [pool.take() for _ in range(4)] == ["b", "c", "b", "c"]
    clock.now = 1029.9
    assert pool.take() == "b"
    clock.now = 1030.0
    assert [pool.take() for _ in range(3)] == ["c", "a", "b"]


def test_rest_after_401_without_retry_after_is_60_seconds() -> None:
    clock = Clock(0.0)
    pool = KeyPool(["a", "b"], clock=clock)
    assert pool.take() == "a"
    pool.rest("a", retry_after_seconds(None))
    clock.now = 59.0
    assert [pool.take() for _ in range(3)] == ["b", "b", "b"]
    clock.now = 60.0
    assert [pool.take() for _ in range(2)] == ["a", "b"]


def test_rest_with_an_http_date() -> None:
    clock = Clock(500.0)
    pool = KeyPool(["a", "b"], clock=clock)
    pool.rest("b", retry_after_seconds("Wed, 21 Oct 2015 07:30:00 GMT", now=NOW))  # 120 s
    assert [pool.take() for _ in range(3)] == ["a", "a", "a"]
    clock.now = 620.0
    assert pool.take() in ("a", "b")
    assert {pool.take(), pool.take()} == {"a", "b"}


def test_all_keys_resting_gives_the_one_free_soonest() -> None:
    clock = Clock(0.0)
    pool = KeyPool(["a", "b", "c"], clock=clock)
    pool.rest("a", 60)
    pool.rest("b", 10)
    pool.rest("c", 30)
    assert pool.take() == "b"
    assert pool.take() == "b"
    clock.now = 10.0
    assert pool.take() == "b"  # b is free again
    pool.rest("b", 100)  # b now until 110; c until 30, a until 60
    assert pool.take() == "c"
    clock.now = 30.0
    assert pool.take() == "c"


def test_rest_again_extends_or_shortens() -> None:
    clock = Clock(0.0)
    pool = KeyPool(["a", "b"], clock=clock)
    pool.rest("a", 100)
    pool.rest("a", 5)
    clock.now = 5.0
    assert {pool.take(), pool.take()} == {"a", "b"}


def test_rest_of_zero_seconds_keeps_the_key_in_turn() -> None:
    pool = KeyPool(["a", "b"], clock=Clock(0.0))
    pool.rest("a", 0)
    assert [pool.take() for _ in range(3)] == ["a", "b", "a"]


def test_rest_of_an_unknown_key_is_ignored() -> None:
    pool = KeyPool(["a", "b"], clock=Clock(0.0))
    pool.rest("zzz", 100)
    assert [pool.take() for _ in range(3)] == ["a", "b", "a"]


def test_round_robin_continues_after_the_skipped_key() -> None:
    clock = Clock(0.0)
    pool = KeyPool(["a", "b", "c", "d"], clock=clock)
    assert pool.take() == "a"
    pool.rest("b", 10)
    assert pool.take() == "c"
    assert pool.take() == "d"
    assert pool.take() == "a"
    assert pool.take() == "c"


@settings(max_examples=examples(150), deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=5, unique=True),
    rests=st.lists(st.tuples(st.integers(0, 4), st.floats(0, 100)), max_size=6),
    now=st.floats(0, 200),
)
def test_take_always_gives_a_free_key_when_there_is_one(
    keys: list[str], rests: list[tuple[int, float]], now: float
) -> None:
    clock = Clock(0.0)
    pool = KeyPool(keys, clock=clock)
    until: dict[str, float] = {}
    for index, seconds in rests:
        key = keys[index % len(keys)]
        pool.rest(key, seconds)
        until[key] = seconds
    clock.now = now
    taken = pool.take()
    assert taken in keys
    free = [k for k in keys if until.get(k, 0.0) <= now]
    if free:
        assert taken in free
    else:
        assert until[taken] == min(until.values())


@settings(max_examples=examples(100), deadline=None)
@given(keys=st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=6, unique=True))
def test_each_key_once_per_round(keys: list[str]) -> None:
    pool = KeyPool(keys, clock=Clock())
    assert [pool.take() for _ in range(2 * len(keys))] == keys + keys


# --- a reloaded configuration's pool ----------------------------------------------------------------


def test_a_pool_renewed_with_the_same_keys_is_the_same_pool() -> None:
    pool = KeyPool(["k1", "k2"], clock=Clock())
    assert pool.renewed(["k1", "k2"]) is pool


def test_a_key_resting_stays_resting_in_the_renewed_pool() -> None:
    clock = Clock()
    pool = KeyPool(["k1", "k2"], clock=clock)
    pool.rest("k1", 30)
    renewed = pool.renewed(["k1", "k3"])
    assert [renewed.take() for _ in range(3)] == ["k3", "k3", "k3"]
    clock.now += 30
    assert sorted(renewed.take() for _ in range(2)) == ["k1", "k3"]


def test_a_key_rested_through_the_old_pool_after_a_reload_rests_in_the_new_one() -> None:
    # A call took k1 before the reload; the upstream's 429 comes after it.
    clock = Clock()
    pool = KeyPool(["k1", "k2"], clock=clock)
    taken = pool.take()
    renewed = pool.renewed(["k1", "k2", "k3"])
    pool.rest(taken, 30)
    assert taken == "k1" and "k1" not in [renewed.take() for _ in range(4)]


def test_a_key_removed_by_a_reload_is_no_longer_resting_nor_taken() -> None:
    clock = Clock()
    pool = KeyPool(["k1", "k2"], clock=clock)
    pool.rest("k2", 30)
    renewed = pool.renewed(["k1"])
    assert not renewed._resting_until  # the common case again: no clock asked on take
    assert [renewed.take() for _ in range(2)] == ["k1", "k1"]


# --- circuits -----------------------------------------------------------------------------------------


def test_a_key_whose_circuit_is_open_is_not_taken_until_it_has_rested() -> None:
    clock = Clock()
    pool = KeyPool(["a", "b"], clock=clock)
    pool.open_circuit("a", 30)
    assert pool.resting() == 1
    assert [pool.take() for _ in range(3)] == ["b", "b", "b"]
    clock.now += 30
    assert sorted(pool.take() for _ in range(2)) == ["a", "b"]


def test_a_pool_whose_every_circuit_is_open_refuses_and_says_how_long() -> None:
    clock = Clock()
    pool = KeyPool(["a", "b"], clock=clock)
    pool.open_circuit("a", 30)
    pool.open_circuit("b", 10)
    pool.rest("a", 5)  # a Retry-After rest does not make a key usable
    assert pool.resting() == 2
    with pytest.raises(CircuitOpen) as e:
        pool.take()
    assert e.value.rest_left == 10
    clock.now += 10
    assert pool.take() == "b"


def test_a_key_resting_for_retry_after_is_still_taken_when_no_other_is_free() -> None:
    clock = Clock()
    pool = KeyPool(["a", "b"], clock=clock)
    pool.open_circuit("b", 30)
    pool.rest("a", 5)
    assert pool.take() == "a"  # the soonest free of those whose circuit is closed


def test_a_circuit_opened_elsewhere_and_kept_across_a_reload() -> None:
    clock = Clock()
    pool = KeyPool(["a", "b"], clock=clock, fingerprint=lambda k: f"fp-{k}")
    pool.open_fingerprint("fp-a", 30)
    pool.open_fingerprint("fp-unknown", 30)
    renewed = pool.renewed(["a", "b", "c"])
    assert {renewed.take() for _ in range(4)} == {"b", "c"}


def test_a_key_whose_circuit_is_open_for_one_model_serves_the_others() -> None:
    clock = Clock()
    pool = KeyPool(["a", "b"], clock=clock, fingerprint=lambda k: f"fp-{k}")
    pool.open_circuit("a", 30, "gpt-broken")
    pool.open_fingerprint("fp-b", 10, "gpt-broken")  # opened in another process
    assert pool.resting() == 0  # neither rests for every model
    assert [pool.take("gpt-4o-mini"), pool.take("gpt-4o-mini"), pool.take()] == ["a", "b", "a"]
    with pytest.raises(CircuitOpen) as e:
        pool.take("gpt-broken")
    assert e.value.rest_left == 10
    pool.open_circuit("a", 60)  # the whole key: for every model
    assert [pool.take("gpt-4o-mini"), pool.take("gpt-4o-mini")] == ["b", "b"]
    clock.now += 10
    assert pool.take("gpt-broken") == "b"
    renewed = pool.renewed(["a", "c"])  # a reload keeps a's circuits, drops b's
    clock.now += 25
    assert {renewed.take("gpt-broken") for _ in range(3)} == {"c"}
    clock.now += 30
    assert {renewed.take("gpt-broken") for _ in range(3)} == {"a", "c"}
