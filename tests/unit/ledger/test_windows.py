from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.configuration import config
from tollgate.ledger import WINDOWS, window_bounds


def at(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[arg-type, misc]


def bounds(window: str, now: float) -> tuple[datetime, datetime]:
    start, end = window_bounds(window, now)
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[arg-type, misc]


def test_the_windows_are_the_configurations():
    assert WINDOWS == config.WINDOWS == ("minute", "day", "month")


def test_minute_boundaries():
    assert bounds("minute", at(2025, 11, 23, 10, 41)) == (utc(2025, 11, 23, 10, 41), utc(2025, 11, 23, 10, 42))
    assert bounds("minute", at(2025, 11, 23, 10, 41) - 0.001) == (utc(2025, 11, 23, 10, 40), utc(2025, 11, 23, 10, 41))
    assert bounds("minute", at(2025, 12, 31, 23, 59, 59) + 0.999) == (utc(2025, 12, 31, 23, 59), utc(2026, 1, 1))


def test_day_boundaries():
    assert bounds("day", at(2025, 11, 23)) == (utc(2025, 11, 23), utc(2025, 11, 24))
    assert bounds("day", at(2025, 11, 23) - 0.5) == (utc(2025, 11, 22), utc(2025, 11, 23))
    assert bounds("day", at(2025, 12, 31, 23, 59, 59)) == (utc(2025, 12, 31), utc(2026, 1, 1))
    assert bounds("day", at(2026, 1, 1)) == (utc(2026, 1, 1), utc(2026, 1, 2))


def test_month_boundaries_and_lengths():
    assert bounds("month", at(2025, 1, 31, 23, 59, 59) + 0.9) == (utc(2025, 1, 1), utc(2025, 2, 1))
    assert bounds("month", at(2025, 2, 1)) == (utc(2025, 2, 1), utc(2025, 3, 1))
    assert bounds("month", at(2025, 4, 30, 12)) == (utc(2025, 4, 1), utc(2025, 5, 1))
    # December ends in the next year.
    assert bounds("month", at(2025, 12, 31, 23, 59, 59)) == (utc(2025, 12, 1), utc(2026, 1, 1))
    assert bounds("month", at(2026, 1, 1)) == (utc(2026, 1, 1), utc(2026, 2, 1))


def test_leap_days():
    start, end = window_bounds("month", at(2024, 2, 29, 23, 59, 59))
    assert (start, end) == (at(2024, 2, 1), at(2024, 3, 1)) and end - start == 29 * 86400
    assert bounds("day", at(2024, 2, 29, 12)) == (utc(2024, 2, 29), utc(2024, 3, 1))
    assert bounds("day", at(2024, 3, 1)) == (utc(2024, 3, 1), utc(2024, 3, 2))
    start, end = window_bounds("month", at(2100, 2, 15))  # a century year: not a leap year
    assert end - start == 28 * 86400
    start, end = window_bounds("month", at(2000, 2, 15))  # divisible by 400: a leap year
    assert end - start == 29 * 86400


def test_before_1970():
    assert bounds("minute", at(1969, 12, 31, 23, 59, 30)) == (utc(1969, 12, 31, 23, 59), utc(1970, 1, 1))
    assert bounds("day", -0.5) == (utc(1969, 12, 31), utc(1970, 1, 1))
    assert bounds("month", -1) == (utc(1969, 12, 1), utc(1970, 1, 1))


def test_unknown_window():
    with pytest.raises(ValueError, match="unknown window 'week'"):
        window_bounds("week", 0)


@given(st.sampled_from(WINDOWS), st.floats(min_value=0, max_value=at(2200, 1, 1), allow_nan=False))
def test_a_window_holds_its_instant_and_is_the_same_from_its_start(window: str, now: float):
    start, end = window_bounds(window, now)
    assert start <= now < end
    assert window_bounds(window, start) == (start, end)
    assert window_bounds(window, end)[0] == end
    assert window_bounds(window, end - 1) == (start, end)
