"""Tollgate's side summed from audit records: per provider, UTC day, upstream key and model; calls
that used nothing left out; the days asked only."""

from __future__ import annotations

from datetime import date

from tollgate.records.reconcile.gateway_counts import Counted, tally


def call(ts: str, **fields) -> dict:
    base = {"event": "llm_call", "ts": ts, "provider": "openai", "model": "gpt-4o-mini", "upstream_key": "sha256:aa",
            "status": 200, "input_tokens": 10, "cached_tokens": 4, "cache_write_tokens": None, "output_tokens": 3}  # fmt: skip
    return {**base, **fields}


def test_calls_are_summed_per_day_key_and_model():
    records = [
        call("2026-11-20T23:59:59.999Z"),
        call("2026-11-20T08:00:00.000Z", input_tokens=5, cached_tokens=None, output_tokens=1),
        call("2026-11-21T00:00:00.000Z"),  # the next UTC day
        call("2026-11-20T09:00:00.000Z", upstream_key="sha256:bb"),
        call("2026-11-20T09:00:00.000Z", status=429, input_tokens=None, output_tokens=None),  # nothing used
        call("2026-11-20T09:00:00.000Z", status=500, input_tokens=7, output_tokens=0),  # billed, not answered
        call("2026-11-20T09:00:00.000Z", provider="gemini"),  # not compared
        {"event": "connection", "ts": "2026-11-20T09:00:00.000Z"},
        call("2026-11-19T09:00:00.000Z"),  # before the span
    ]
    sums = tally(records, {"openai"}, date(2026, 11, 20), date(2026, 11, 21))
    assert sums == {
        ("openai", date(2026, 11, 20), "sha256:aa", "gpt-4o-mini"): Counted(22, 8, 0, 4, 2),
        ("openai", date(2026, 11, 21), "sha256:aa", "gpt-4o-mini"): Counted(10, 4, 0, 3, 1),
        ("openai", date(2026, 11, 20), "sha256:bb", "gpt-4o-mini"): Counted(10, 4, 0, 3, 1),
    }
