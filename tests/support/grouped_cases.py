"""A parametrize table written grouped by the value its first columns share, read back as flat cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def flat_cases(groups: Mapping[Any, Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Each row of each group as one case: the group's key (a value, or a tuple of the leading
    columns) followed by the row (a value, or a tuple of the other columns), in the table's order."""

    def columns(value: Any) -> tuple[Any, ...]:
        return value if isinstance(value, tuple) else (value,)

    return [(*columns(key), *columns(row)) for key, rows in groups.items() for row in rows]
