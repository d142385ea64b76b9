"""Writes queued for a store, held while it cannot be written and retried: bounded, so that a long
outage costs a known amount of memory (writes beyond are dropped, and said so once)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable

MAX_HELD = 100_000  # queued writes (counter changes, call rows, rests) held while a store is down


class Backlog[T]:
    """Oldest first. Appended to by the event loop's thread, taken by the writer (deque's append
    and popleft are atomic, so no lock)."""

    def __init__(self, logger: logging.Logger, store: str, limit: int = MAX_HELD) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._logger = logger
        self._store = store
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> bool:
        """Whether it is held (else dropped)."""
        if len(self._items) < self._limit:
            self._items.append(item)
            return True
        if not self.dropped:
            self._say(f"Tollgate: {self._limit} writes are held for {self._store}; further ones are dropped")
        self.dropped += 1
        return False

    def take(self, most: int = MAX_HELD) -> list[T]:
        taken: list[T] = []
        try:
            while len(taken) < most:
                taken.append(self._items.popleft())
        except IndexError:
            pass
        return taken

    def put_back(self, items: Iterable[T]) -> None:
        """Writes that failed go back in front of the ones that came meanwhile, in their order."""
        self._items.extendleft(reversed(list(items)))

    def written(self) -> None:
        """What was held is written: say how much was dropped meanwhile, if any."""
        if self.dropped:
            self._say(f"Tollgate: {self.dropped} writes to {self._store} beyond the {self._limit} held were lost")
            self.dropped = 0

    def _say(self, message: str) -> None:
        try:
            self._logger.error(message)
        except Exception:
            pass
