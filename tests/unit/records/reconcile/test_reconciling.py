"""The comparison, pure: vendor keys held by their hints, dated snapshots as the model called,
statuses match / differs / around / unseen within the tolerance, usage on keys Tollgate does not
hold explained by its calls with such keys where they can, open days, coverage and money."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.reconcile_settings import Tolerance
from tollgate.providers.admin import VendorKey, VendorReport, VendorUsage
from tollgate.records.reconcile.gateway_counts import Counted
from tollgate.records.reconcile.reconciling import compare, failing, held_keys, is_open, model_family

P = "openai"
HELD = "sk-proj-held-abcdefghijklmnop1234"
OTHER = "sk-proj-other-zzzzzzzzzzzzzz9999"
DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
KEYS = [VendorKey("key_held", "gateway", "Platform", "sk-proj-...1234"),
        VendorKey("key_laptop", "laptop", "Research", "sk-proj-...5678")]  # fmt: skip


def price(provider, model, day, counted: Counted) -> Decimal:
    """$1 per million input tokens, $2 per million output (cached at the input price)."""
    return (Decimal(counted.input_tokens) + 2 * Decimal(counted.output_tokens)) / Decimal(1_000_000)


def run(usage, ours, keys=None, tolerance=None, until=DAY):
    report = VendorReport(keys=list(KEYS), usage=usage, billed={DAY: Decimal("0.05")})
    held = keys if keys is not None else {fingerprint(HELD): HELD}
    return compare(P, report, ours, held, price, tolerance or Tolerance(), DAY, until, NOW)


def test_a_held_key_matches_by_its_hint_and_a_snapshot_is_the_model_called():
    ours = {(P, DAY, fingerprint(HELD), "gpt-4o-mini"): Counted(1000, 100, 0, 50, 2)}
    usage = [VendorUsage(DAY, "key_held", "proj_a", "gpt-4o-mini-2024-07-18", 1000, 100, 0, 50, 2)]
    result = run(usage, ours)
    [row] = result.rows
    assert row == {
        "provider": P, "day": "2026-11-20", "open": False, "key_id": "key_held", "key_name": "gateway",
        "project": "Platform", "model": "gpt-4o-mini", "held": True, "status": "match",
        "upstream_key": fingerprint(HELD),
        "tollgate": {"input_tokens": 1000, "cached_input_tokens": 100, "output_tokens": 50, "requests": 2,
                     "cost_usd": 0.0011},
        "vendor": {"input_tokens": 1000, "cached_input_tokens": 100, "output_tokens": 50, "requests": 2,
                   "cost_usd": 0.0011},
    }  # fmt: skip
    assert result.days == [{"provider": P, "day": "2026-11-20", "open": False, "coverage": 1.0,
                            "tollgate_usd": 0.0011, "vendor_usd": 0.0011, "around_usd": 0.0, "billed_usd": 0.05}]  # fmt: skip
    assert failing(result.rows) == []


def test_a_difference_beyond_the_tolerance_differs_and_within_it_matches():
    ours = {(P, DAY, fingerprint(HELD), "gpt-4o"): Counted(10_000, 0, 0, 100, 1)}
    within = run([VendorUsage(DAY, "key_held", None, "gpt-4o", 10_100, 0, 0, 100, 1)], ours)
    beyond = run([VendorUsage(DAY, "key_held", None, "gpt-4o", 10_200, 0, 0, 100, 1)], ours)
    assert within.rows[0]["status"] == "match" and beyond.rows[0]["status"] == "differs"
    share = run([VendorUsage(DAY, "key_held", None, "gpt-4o", 10_200, 0, 0, 100, 1)], ours,
                tolerance=Tolerance(share=0.02, tokens=0))  # fmt: skip
    assert share.rows[0]["status"] == "match"
    assert failing(beyond.rows) == beyond.rows


def test_billed_usage_tollgate_never_saw_on_a_held_key_is_unseen():
    result = run([VendorUsage(DAY, "key_held", None, "gpt-4o", 500, 0, 0, 10, 1)], {})
    assert [r["status"] for r in result.rows] == ["unseen"]
    assert result.rows[0]["upstream_key"] == fingerprint(HELD)  # held: named as the records name it


def test_a_held_row_names_its_keys_fingerprint_and_no_other_row_does():
    unhinted = "sk-proj-nohint-000000000000000000"  # held, but no vendor key's hint fits it
    ours = {(P, DAY, fingerprint(HELD), "gpt-4o"): Counted(10, 0, 0, 1, 1),
            (P, DAY, fingerprint(unhinted), "gpt-4o"): Counted(20, 0, 0, 2, 1)}  # fmt: skip
    usage = [VendorUsage(DAY, "key_held", None, "gpt-4o", 10, 0, 0, 1, 1),
             VendorUsage(DAY, "key_laptop", None, "gpt-4o", 99, 0, 0, 9, 1)]  # fmt: skip
    result = run(usage, ours, keys={fingerprint(HELD): HELD, fingerprint(unhinted): unhinted})
    named = {(r["key_id"], r["held"]): r.get("upstream_key") for r in result.rows}
    assert named == {("key_held", True): fingerprint(HELD), (None, True): fingerprint(unhinted),
                     ("key_laptop", False): None}  # fmt: skip
    assert HELD not in repr(result) and unhinted not in repr(result)


def test_usage_on_a_key_not_held_is_around_unless_tollgates_unmatched_calls_explain_it():
    usage = [VendorUsage(DAY, "key_laptop", None, "gpt-4o", 4000, 0, 0, 1000, 3)]
    around = run(usage, {})
    [row] = around.rows
    assert (row["key_id"], row["key_name"], row["project"], row["held"], row["status"]) == (
        "key_laptop", "laptop", "Research", False, "around")  # fmt: skip
    [day] = around.days
    assert (day["vendor_usd"], day["around_usd"], day["coverage"]) == (0.006, 0.006, 0.0)
    assert failing(around.rows) == [row]
    # The same usage, made through Tollgate with a key it does not hold (a pass-through): explained.
    passed = run(usage, {(P, DAY, fingerprint(OTHER), "gpt-4o"): Counted(4000, 0, 0, 1000, 3)})
    assert passed.rows[0]["status"] == "match" and passed.days[0]["coverage"] == 1.0


def test_coverage_is_the_share_of_priced_usage_that_passed_tollgate():
    ours = {(P, DAY, fingerprint(HELD), "gpt-4o"): Counted(3000, 0, 0, 0, 1)}
    usage = [VendorUsage(DAY, "key_held", None, "gpt-4o", 3000, 0, 0, 0, 1),
             VendorUsage(DAY, "key_laptop", None, "gpt-4o", 1000, 0, 0, 0, 1)]  # fmt: skip
    [day] = run(usage, ours).days
    assert (day["tollgate_usd"], day["vendor_usd"], day["around_usd"], day["coverage"]) == (0.003, 0.004, 0.001, 0.75)


def test_an_open_day_is_compared_but_never_fails():
    today = date(2026, 11, 28)
    report = VendorReport(keys=list(KEYS), usage=[VendorUsage(today, "key_laptop", None, "gpt-4o", 10, 0, 0, 0, 1)])
    result = compare(P, report, {}, {}, price, Tolerance(), today, today, NOW)
    assert result.rows[0]["open"] is True and result.rows[0]["status"] == "around"
    assert failing(result.rows) == []
    assert is_open(date(2026, 11, 27), NOW) and not is_open(date(2026, 11, 26), NOW)


def test_a_hint_that_fits_several_held_keys_holds_none():
    twins = {fingerprint(HELD): HELD, fingerprint("sk-proj-twin-1234"): "sk-proj-twin-1234"}
    assert held_keys(KEYS, twins) == {}
    assert held_keys(KEYS, {fingerprint(HELD): HELD}) == {"key_held": fingerprint(HELD)}


@pytest.mark.parametrize(("name", "family"), [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"), ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("gpt-4o", "gpt-4o"), ("o3-mini", "o3-mini"),
])  # fmt: skip
def test_dated_snapshots(name, family):
    assert model_family(name) == family


KEY_TEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"  # what keys are made of


@given(st.text(KEY_TEXT, max_size=6), st.text(KEY_TEXT, min_size=1, max_size=20), st.text(KEY_TEXT, max_size=6))
def test_a_hint_fits_exactly_the_keys_it_begins_and_ends(prefix, middle, suffix):
    key = f"sk-{prefix}{middle}{suffix}"
    hint = VendorKey("k", None, None, f"sk-{prefix}...{suffix}")
    assert hint.fits(key)
    assert not VendorKey("k", None, None, f"sk-{prefix}x...{suffix}").fits(f"sk-{prefix}y{middle}{suffix}")


def test_a_held_key_no_vendor_key_fits_differs_apart_from_usage_on_no_key():
    lost = "sk-proj-elsewhere-0000000000000000"
    ours = {(P, DAY, fingerprint(lost), "gpt-4o"): Counted(1000, 0, 0, 10, 1)}
    usage = [VendorUsage(DAY, None, None, "gpt-4o", 300, 0, 0, 30, 1)]  # the Playground's: no key
    rows = run(usage, ours, keys={fingerprint(lost): lost}).rows
    assert [(r["key_id"], r["held"], r["status"], r["tollgate"]["input_tokens"], r["vendor"]["input_tokens"])
            for r in rows] == [(None, True, "differs", 1000, 0), (None, False, "around", 0, 300)]  # fmt: skip
