"""The comparison itself, pure: the vendor's usage per day, key and model beside Tollgate's, each
vendor key matched to a key Tollgate holds by the hint the vendor gives of it, the usage on keys
Tollgate does not hold explained by Tollgate's calls with such keys where it can be, and the rest
found as used around Tollgate.

A row per provider, day, vendor key and model (`row`), a day per provider (`day`): the JSON shapes
`tollgate reconcile --json` prints, the table `tollgate_reconciliation` keeps and the console's
Invoice view reads. Money is summed as `Decimal` and written as numbers to the nano-dollar."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from tollgate.configuration.reconcile_settings import Tolerance
from tollgate.providers.admin import VendorKey, VendorReport
from tollgate.records.reconcile.gateway_counts import Counted, CountKey

MATCH, DIFFERS, AROUND, UNSEEN = "match", "differs", "around", "unseen"
STATUSES = (MATCH, DIFFERS, AROUND, UNSEEN)
OPEN_HOURS = 48  # a day that ended more recently than this is open: vendors revise it, batches bill late
# A dated snapshot of a model's name: gpt-4o-mini-2024-07-18, claude-sonnet-4-20250514.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_NANO = Decimal("1e-9")
_COVERAGE = Decimal("1e-6")

# What a day's tokens on a model cost at Tollgate's prices: (provider, model, day, tokens) → USD, None unknown.
Pricer = Callable[[str, str | None, date, Counted], Decimal | None]


def model_family(model: str | None) -> str | None:
    """The name a dated snapshot is a snapshot of; any other name as it is."""
    return None if model is None else _SNAPSHOT.sub("", model)


def is_open(day: date, now: datetime) -> bool:
    """Whether the day ended less than `OPEN_HOURS` ago."""
    return datetime.combine(day + timedelta(days=1), time(), UTC) > now - timedelta(hours=OPEN_HOURS)


def held_keys(vendor_keys: Iterable[VendorKey], ours: Mapping[str, str]) -> dict[str, str]:
    """The vendor's keys Tollgate holds: each vendor key's id → the fingerprint of the one key of
    `ours` (fingerprint → key) its hint fits. A hint that fits none, or several, holds none."""
    held = {}
    for key in vendor_keys:
        fits = [fingerprint for fingerprint, secret in ours.items() if key.fits(secret)]
        if len(fits) == 1:
            held[key.id] = fits[0]
    return held


@dataclass
class _Row:
    day: date
    key_id: str | None
    model: str | None
    held: bool
    upstream_key: str | None = None  # a held key's fingerprint, as the records name it
    tollgate: Counted = field(default_factory=Counted)
    vendor: Counted = field(default_factory=lambda: Counted(requests=None))
    status: str = MATCH


def _within(tolerance: Tolerance, ours: Counted, theirs: Counted) -> bool:
    return all(
        tolerance.allows(getattr(ours, name), getattr(theirs, name))
        for name in ("input_tokens", "cached_input_tokens", "output_tokens")
    )


def _take(pool: Counted, wanted: Counted) -> Counted:
    """As much of `wanted` as `pool` holds, taken out of it."""
    taken = Counted(
        min(pool.input_tokens, wanted.input_tokens),
        min(pool.cached_input_tokens, wanted.cached_input_tokens),
        min(pool.cache_write_tokens, wanted.cache_write_tokens),
        min(pool.output_tokens, wanted.output_tokens),
        min(pool.requests or 0, wanted.requests) if wanted.requests is not None else pool.requests,
    )
    pool.input_tokens -= taken.input_tokens
    pool.cached_input_tokens -= taken.cached_input_tokens
    pool.cache_write_tokens -= taken.cache_write_tokens
    pool.output_tokens -= taken.output_tokens
    pool.requests = (pool.requests or 0) - (taken.requests or 0)
    return taken


@dataclass(frozen=True)
class Comparison:
    rows: list[dict[str, Any]]
    days: list[dict[str, Any]]


def compare(
    provider: str,
    report: VendorReport,
    ours: Mapping[CountKey, Counted],
    keys: Mapping[str, str],
    price: Pricer,
    tolerance: Tolerance,
    since: date,
    until: date,
    now: datetime,
) -> Comparison:
    """The rows and days of one provider from `since` to `until`: `ours` Tollgate's sums (of this
    provider), `keys` the keys Tollgate holds for it (fingerprint → key)."""
    held = held_keys(report.keys, keys)
    vendor_of = {fingerprint: key_id for key_id, fingerprint in held.items()}
    names: dict[str | None, str] = {}  # a model family → the name Tollgate called it by
    RowKey = tuple[date, str | None, str | None]  # day, the vendor's key id, the model's family
    rows: dict[RowKey, _Row] = {}
    unmatched: dict[tuple[date, str | None], Counted] = {}
    for (_, day, fingerprint, model), counted in sorted(ours.items(), key=lambda kv: repr(kv[0])):
        family = model_family(model)
        names.setdefault(family, model or "")
        if fingerprint in vendor_of or fingerprint in keys:
            key_id = vendor_of.get(fingerprint or "")
            # A held key no vendor key's hint fits: a row of its own, apart from the vendor's usage
            # on no key (its Playground's), which has no key id either.
            mine: RowKey = (day, key_id if key_id is not None else f"\0{fingerprint}", family)
            row = rows.setdefault(mine, _Row(day, key_id, family, True, fingerprint))
            row.tollgate.add(counted)
        else:  # a key Tollgate does not hold: a side header's, a pass-through's
            unmatched.setdefault((day, family), Counted()).add(counted)
    around_keys: list[RowKey] = []
    for usage in report.usage:
        if not since <= usage.day <= until:
            continue
        family = model_family(usage.model)
        at: RowKey = (usage.day, usage.key_id, family)
        found = rows.get(at)
        if found is None:
            found = rows[at] = _Row(usage.day, usage.key_id, family, usage.key_id in held, held.get(usage.key_id or ""))
            if not found.held:
                around_keys.append(at)
        found.vendor.add(Counted(usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens,
                               usage.output_tokens, usage.requests))  # fmt: skip
    for at in sorted(around_keys, key=repr):  # the calls Tollgate made with keys it does not hold, shared out
        row = rows[at]
        pool = unmatched.get((row.day, row.model))
        if pool is not None:
            row.tollgate = _take(pool, row.vendor)
    for row in rows.values():
        if row.held:
            unseen = row.vendor.tokens > 0 and row.tollgate.tokens == 0
            row.status = UNSEEN if unseen else MATCH if _within(tolerance, row.tollgate, row.vendor) else DIFFERS
        else:  # the tolerance is for calls Tollgate counted: usage it has no call for at all is around
            unexplained = row.vendor.tokens > 0 and row.tollgate.tokens == 0
            row.status = AROUND if unexplained or not _within(tolerance, row.tollgate, row.vendor) else MATCH
    by_key = {k.id: k for k in report.keys}
    out_rows = []
    days: dict[date, dict[str, Decimal]] = {}
    for row in sorted(rows.values(), key=lambda r: (r.day, r.key_id or "", r.model or "")):
        model = names.get(row.model, row.model)
        ours_usd, theirs_usd = (
            price(provider, model, row.day, row.tollgate),
            price(provider, model, row.day, row.vendor),
        )
        sums = days.setdefault(row.day, {"tollgate": Decimal(0), "vendor": Decimal(0), "around": Decimal(0)})
        sums["tollgate"] += ours_usd or 0
        sums["vendor"] += theirs_usd or 0
        if row.status == AROUND:
            sums["around"] += max(Decimal(0), (theirs_usd or 0) - (ours_usd or 0))
        key = by_key.get(row.key_id or "")
        out = {
            "provider": provider, "day": row.day.isoformat(), "open": is_open(row.day, now), "key_id": row.key_id,
            "key_name": key.name if key else None, "project": key.project if key else None, "model": model,
            "held": row.held, "status": row.status,
            "tollgate": _side(row.tollgate, ours_usd), "vendor": _side(row.vendor, theirs_usd),
        }  # fmt: skip
        if row.held and row.upstream_key is not None:
            # The held key's fingerprint, never the key: what the console matches a lead's calls by.
            out["upstream_key"] = row.upstream_key
        out_rows.append(out)
    out_days = []
    day = since
    while day <= until:
        sums = days.get(day, {"tollgate": Decimal(0), "vendor": Decimal(0), "around": Decimal(0)})
        vendor_usd = sums["vendor"]
        coverage = Decimal(1) if not vendor_usd else max(Decimal(0), 1 - sums["around"] / vendor_usd)
        billed = report.billed.get(day)
        out_days.append({
            "provider": provider, "day": day.isoformat(), "open": is_open(day, now),
            "coverage": float(coverage.quantize(_COVERAGE)), "tollgate_usd": money(sums["tollgate"]),
            "vendor_usd": money(vendor_usd), "around_usd": money(sums["around"]),
            "billed_usd": None if billed is None else money(billed),
        })  # fmt: skip
        day += timedelta(days=1)
    return Comparison(out_rows, out_days)


def money(amount: Decimal) -> float:
    """US dollars as a JSON number, to the nano-dollar (as the audit writes `cost_usd`)."""
    return float(amount.quantize(_NANO))


def _side(counted: Counted, usd: Decimal | None) -> dict[str, Any]:
    return {
        "input_tokens": counted.input_tokens,
        "cached_input_tokens": counted.cached_input_tokens,
        "output_tokens": counted.output_tokens,
        "requests": counted.requests,
        "cost_usd": None if usd is None else money(usd),
    }


def failing(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The closed days' rows that make the exit status 1: anything but a match."""
    return [r for r in rows if not r["open"] and r["status"] != MATCH]
