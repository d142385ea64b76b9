"""Answer detectors whose scanners count how often each is fed: to show that the events of one
read are read together (each channel's scanner fed once), without mocking the guard."""

from __future__ import annotations

import copy
from typing import Any

from tollgate.governance.guardrails.answer import AnswerDetectors, AnswerScanner


def counting_feeds(compiled: AnswerDetectors) -> tuple[AnswerDetectors, list[int]]:
    """A copy of `compiled` whose scanner factory is wrapped: each scanner it makes counts its
    feeds in the list returned (one entry a scanner, in the order they were made)."""
    counted = copy.copy(compiled)
    feeds: list[int] = []
    make = compiled.scanner

    def scanner(is_json: bool = False) -> AnswerScanner:
        made = make(is_json)
        at = len(feeds)
        feeds.append(0)
        feed = made.feed

        def counted_feed(piece: bytes) -> Any:
            feeds[at] += 1
            return feed(piece)

        made.feed = counted_feed  # type: ignore[method-assign]
        return made

    counted.scanner = scanner  # type: ignore[method-assign]
    return counted, feeds
