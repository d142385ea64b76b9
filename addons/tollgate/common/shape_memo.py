"""Answers remembered per call shape: calls repeat their shapes (provider, model, client, groups,
…), and finding an answer afresh (globbing every rule, searching a price table) costs more."""

from __future__ import annotations

from collections.abc import Callable, Hashable


class ShapeMemo[V]:
    """`find`'s answers by shape, up to `limit` shapes; past that it starts afresh (callers name
    models and clients, so the shapes a proxy sees are not bounded)."""

    def __init__(self, find: Callable[..., V], limit: int = 4096) -> None:
        self._find = find
        self.limit = limit
        self.found: dict[Hashable, V] = {}

    def get(self, shape: Hashable, *args: object) -> V:
        """The answer for `shape`, found as `find(*args)` the first time."""
        try:
            return self.found[shape]
        except KeyError:
            pass
        if len(self.found) >= self.limit:
            self.found.clear()
        answer = self.found[shape] = self._find(*args)
        return answer
