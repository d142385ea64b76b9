from __future__ import annotations

import logging

import pytest

from tollgate.ledger.backlog import Backlog

logger = logging.getLogger("tollgate.ledger.test")


def test_held_writes_are_bounded_and_the_drops_said_once(caplog: pytest.LogCaptureFixture):
    backlog: Backlog[int] = Backlog(logger, "the ledger at x", limit=3)
    for i in range(6):
        backlog.add(i)
    assert len(backlog) == 3 and backlog.dropped == 3
    assert len([r for r in caplog.records if "further ones are dropped" in r.getMessage()]) == 1
    taken = backlog.take(2)
    backlog.add(6)
    backlog.put_back(taken)  # failed: in front again, in order
    assert backlog.take() == [0, 1, 2, 6]
    backlog.written()
    assert backlog.dropped == 0 and "3 writes to the ledger at x beyond the 3 held were lost" in caplog.text
