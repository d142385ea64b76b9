"""One console line when a store's background writes start failing, one when they work again:
not one per call while it is down."""

from __future__ import annotations

import logging


class Outage:
    def __init__(self, logger: logging.Logger, store: str, level: int = logging.ERROR) -> None:
        self._logger = logger
        self._store = store
        self._level = level  # of the line saying it failed
        self.failing = False

    def failed(self, what: str, error: object) -> None:
        if not self.failing:
            self.failing = True
            self._say(self._level, f"Tollgate: {what} {self._store} failed ({error}); retrying until it works")

    def recovered(self, what: str) -> None:
        if self.failing:
            self.failing = False
            self._say(logging.INFO, f"Tollgate: {what} {self._store} works again")

    def _say(self, level: int, message: str) -> None:
        try:
            self._logger.log(level, message)
        except Exception:  # the console may be what failed
            pass
