"""The results read back: per provider and day, the newest run's rows and day, from the audit's
`reconciliation` records (the table's are read by tests/e2e/test_reconcile.py against PostgreSQL)."""

from __future__ import annotations

from datetime import date

from tollgate.records.reconcile.kept_results import EVENT, latest, record, record_entries


def row(provider: str, day: str, status: str) -> dict:
    return {"provider": provider, "day": day, "status": status}


def day(provider: str, day: str, coverage: float) -> dict:
    return {"provider": provider, "day": day, "coverage": coverage}


def test_the_newest_run_of_each_day_is_what_is_read_back():
    first = {**record(date(2026, 11, 1), date(2026, 11, 2), [row("openai", "2026-11-01", "around"),
                                                             row("openai", "2026-11-02", "match")],
                      [day("openai", "2026-11-01", 0.5), day("openai", "2026-11-02", 1.0)]),
             "ts": "2026-11-03T06:00:00.000Z"}  # fmt: skip
    # The next run covers the second day alone: the first day keeps the first run's results.
    second = {**record(date(2026, 11, 2), date(2026, 11, 2), [], [day("openai", "2026-11-02", 0.9)]),
              "ts": "2026-11-04T06:00:00.000Z"}  # fmt: skip
    other = {"event": "llm_call", "ts": "2026-11-04T07:00:00.000Z", "provider": "openai"}
    found = latest(record_entries([first, other, second]))
    assert set(found) == {("openai", "2026-11-01"), ("openai", "2026-11-02")}
    assert found[("openai", "2026-11-01")].rows == [row("openai", "2026-11-01", "around")]
    assert found[("openai", "2026-11-01")].day == day("openai", "2026-11-01", 0.5)
    assert found[("openai", "2026-11-02")].rows == []
    assert found[("openai", "2026-11-02")].day == day("openai", "2026-11-02", 0.9)
    # The order records are read in does not matter.
    assert latest(record_entries([second, first])) == found


def test_the_record_is_the_json_shape():
    entry = record(date(2026, 11, 1), date(2026, 11, 7), [row("openai", "2026-11-01", "match")], [])
    assert entry == {"event": EVENT, "since": "2026-11-01", "until": "2026-11-07",
                     "rows": [row("openai", "2026-11-01", "match")], "days": []}  # fmt: skip
    assert EVENT == "reconciliation"
