"""The fixed UTC windows that limits count in: a minute, a day, a calendar month."""

from __future__ import annotations

import math
from datetime import UTC, datetime

WINDOWS = ("minute", "day", "month")

_FIXED = {"minute": 60, "day": 86400}  # UTC has no leap seconds in epoch time: every day is 86400 s


def window_bounds(window: str, now: float) -> tuple[int, int]:
    """The window of kind `window` that holds the instant `now` (epoch seconds), as [start, end)
    in whole epoch seconds."""
    second = math.floor(now)
    length = _FIXED.get(window)
    if length is not None:
        start = second - second % length  # % floors, so instants before 1970 fall in the right window too
        return start, start + length
    if window == "month":
        at = datetime.fromtimestamp(second, UTC)
        year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
        first = datetime(at.year, at.month, 1, tzinfo=UTC)
        return int(first.timestamp()), int(datetime(year, month, 1, tzinfo=UTC).timestamp())
    raise ValueError(f"unknown window {window!r}; one of {', '.join(WINDOWS)}")
