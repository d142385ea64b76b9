"""Words the commands print with."""

from __future__ import annotations


def plural(n: int, noun: str) -> str:
    """`1 file`, `2 files`: a count and its noun."""
    return f"{n} {noun if n == 1 else noun + 's'}"
