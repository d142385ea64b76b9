"""The Invoice view (`/api/invoice`): what `tollgate reconcile` found, per provider and day, as
its newest run says (`invoice_results.py`): the coverage of each day, every row (a vendor key and
model) with Tollgate's side, the vendor's and their difference, and the keys used around Tollgate.

`security` (and the token's holder) sees all of it. A lead sees the rows of the held keys their
clients' calls used that day: a row's `upstream_key` (the fingerprint the records name the key by)
among those of the calls in its scope of that provider and day; never a day's totals (they sum
every key of the company's account) nor a key used around Tollgate. A row that names no
`upstream_key` is shown to no lead. Anyone else: 403. Every amount is a string of the exact
decimal written, never a binary float. Also the metrics `tollgate_spend_coverage_ratio` and
`tollgate_spend_around_usd` per provider, of its newest closed day. No HTTP here."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tollgate.console.invoice_results import FromRecords, FromTable, Result, decimal_of
from tollgate.records.audit.kinds import read_record

if TYPE_CHECKING:
    from tollgate.console.scope import Scope
    from tollgate.console.source import Source

Query = Mapping[str, Sequence[str]]
DEFAULT_DAYS = 31  # the days shown without `since`, today's included
MAX_DAYS = 366  # the longest window asked for
CALLS_READ = 200_000  # a lead's newest calls looked at for the keys they used
KEYS_KEPT = 1_000_000  # record number → (provider, day, key) kept between requests
SIDES = ("tollgate", "vendor")
COUNTS = ("input_tokens", "cached_input_tokens", "output_tokens", "requests")
DAY_AMOUNTS = ("coverage", "tollgate_usd", "vendor_usd", "around_usd", "billed_usd")
METRICS_DAYS = 31  # the newest closed day is looked for this far back


class NotShown(PermissionError):
    """The viewer's role sees no invoice (neither security nor a lead)."""


class WrongQuery(ValueError):
    """A query parameter the view cannot read; its message names it."""


class Invoice:
    def __init__(self, results: FromTable | FromRecords, source: Source, clock: Callable[[], float] = time.time):
        self.results = results
        self.source = source
        self.clock = clock
        self._keys: dict[int, tuple[str, str, str] | None] = {}  # record number → (provider, day, upstream_key)

    def answer(self, query: Query, scope: Scope) -> dict[str, Any]:
        """`/api/invoice`: `{"since", "until", "days", "rows", "around"}` for the viewer's scope."""
        lead = scope.viewer.role == "lead" and bool(scope.leads)
        if not scope.everything and not lead:
            raise NotShown("the invoice is security's and the leads'")
        since, until = self.window(query)
        found = self.results.results(since, until)
        rows = [r for r in found if r.kind == "row"]
        if not scope.everything:
            used = self.keys_used(scope, since, until)
            rows = [r for r in rows if r.body.get("held") is True and r.body.get("status") != "around"
                    and (r.provider, r.day, r.body.get("upstream_key")) in used]  # fmt: skip
            return {"since": since, "until": until, "days": [], "rows": [_row(r) for r in rows], "around": []}
        return {
            "since": since, "until": until,
            "days": [_day(r) for r in found if r.kind == "day"],
            "rows": [_row(r) for r in rows],
            "around": around([r for r in rows if r.body.get("status") == "around"]),
        }  # fmt: skip

    def window(self, query: Query) -> tuple[str, str]:
        """The days asked for (UTC, both included): `since` and `until` as dates (a time's date is
        taken); by default the DEFAULT_DAYS days to today."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        try:
            until = _day_of(query, "until") or today
            since = _day_of(query, "since") or until - timedelta(days=DEFAULT_DAYS - 1)
        except ValueError:
            raise WrongQuery("since, until: an ISO 8601 date, UTC (2026-11-01)") from None
        if since > until or (until - since).days >= MAX_DAYS:
            raise WrongQuery(f"since, until: since before until, at most {MAX_DAYS} days")
        return since.isoformat(), until.isoformat()

    def keys_used(self, scope: Scope, since: str, until: str) -> set[tuple[str, str, str]]:
        """(provider, day, upstream key) of the newest CALLS_READ calls the viewer sees, of the days."""
        source = self.source
        used: set[tuple[str, str, str]] = set()
        reads = getattr(source, "reads", None)
        if reads is not None:  # over PostgreSQL: the newest calls asked of the table
            with reads.reading():
                reads.sums.refresh()
                chosen = scope.chosen(reads.sums)
                rows = reads.matching(CALLS_READ, {"event": "llm_call"}, chosen)[0] if chosen != frozenset() else []
            for _, line in rows:
                found = _used_key(read_record(line) or {})
                if found is not None and since <= found[1] <= until:
                    used.add(found)
            return used
        with source.lock:
            index = source.index
            calls = index.known("llm_call")
            chosen = scope.chosen(index)
            if calls is None or (chosen is not None and not chosen):
                return used
            if len(self._keys) > KEYS_KEPT:
                self._keys.clear()
            for n in index.matching(len(index), CALLS_READ, {"events": calls}, chosen):
                if n not in self._keys:
                    record = source.record(n)
                    ts, provider, key = record.get("ts"), record.get("provider"), record.get("upstream_key")
                    fits = isinstance(ts, str) and isinstance(provider, str) and isinstance(key, str)
                    self._keys[n] = (str(provider), str(ts)[:10], str(key)) if fits else None
                found = self._keys[n]
                if found is not None and since <= found[1] <= until:
                    used.add(found)
        return used

    def metrics(self) -> list[tuple[str, Decimal, Decimal]]:
        """Per provider, its newest closed day's coverage and usage around Tollgate (US dollars):
        (provider, coverage, around_usd); a provider without a closed day has none."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        since = (today - timedelta(days=METRICS_DAYS)).isoformat()
        newest: dict[str, Result] = {}
        for r in self.results.results(since, today.isoformat()):
            if r.kind == "day" and r.body.get("open") is False and r.day >= getattr(newest.get(r.provider), "day", ""):
                newest[r.provider] = r
        found = []
        for provider, r in sorted(newest.items()):
            coverage, around_usd = decimal_of(r.body.get("coverage")), decimal_of(r.body.get("around_usd"))
            if coverage is not None and around_usd is not None:
                found.append((provider, coverage, around_usd))
        return found


def _day_of(query: Query, name: str) -> date | None:
    values = query.get(name)
    if not values or not values[-1]:
        return None
    return date.fromisoformat(values[-1][:10])


def text(value: Decimal | None) -> str | None:
    """An amount as the plain decimal written (never an exponent)."""
    return None if value is None else format(value, "f")


def _plain(value: Any) -> Any:
    """A value written as it reads in JSON, a Decimal as its text."""
    if isinstance(value, Decimal):
        return text(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _side(side: Any) -> dict[str, Any]:
    side = side if isinstance(side, dict) else {}
    shown: dict[str, Any] = {k: _plain(side.get(k)) for k in COUNTS}
    shown["cost_usd"] = text(decimal_of(side.get("cost_usd")))
    return shown


def _row(result: Result) -> dict[str, Any]:
    body = result.body
    shown = {"run_at": result.run_at, "provider": result.provider, "day": result.day, "open": body.get("open") is True}
    for name in ("key_id", "key_name", "project", "model", "held", "status"):
        shown[name] = _plain(body.get(name))
    sides = {name: _side(body.get(name)) for name in SIDES}
    shown.update(sides)
    difference: dict[str, Any] = {}
    for name in COUNTS:
        ours, theirs = sides["tollgate"][name], sides["vendor"][name]
        difference[name] = theirs - ours if type(ours) is int and type(theirs) is int else None
    ours_usd, theirs_usd = decimal_of(sides["tollgate"]["cost_usd"]), decimal_of(sides["vendor"]["cost_usd"])
    difference["cost_usd"] = None if ours_usd is None or theirs_usd is None else text(theirs_usd - ours_usd)
    shown["difference"] = difference  # the vendor's less Tollgate's
    return shown


def _day(result: Result) -> dict[str, Any]:
    body = result.body
    shown: dict[str, Any] = {"run_at": result.run_at, "provider": result.provider, "day": result.day,
                             "open": body.get("open") is True}  # fmt: skip
    for name in DAY_AMOUNTS:
        shown[name] = text(decimal_of(body.get(name)))
    return shown


def around(rows: list[Result]) -> list[dict[str, Any]]:
    """The keys used around Tollgate: per provider and vendor key, its days, models and what the
    vendor billed on it (tokens priced by Tollgate's prices)."""
    keys: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in rows:
        body = r.body
        vendor: dict[str, Any] = body["vendor"] if isinstance(body.get("vendor"), dict) else {}
        key = keys.setdefault((r.provider, body.get("key_id")), {
            "provider": r.provider, "key_id": _plain(body.get("key_id")), "key_name": _plain(body.get("key_name")),
            "project": _plain(body.get("project")), "first_day": r.day, "last_day": r.day, "days": set(),
            "models": set(), "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": Decimal(0),
            "open": False,
        })  # fmt: skip
        key["first_day"], key["last_day"] = min(key["first_day"], r.day), max(key["last_day"], r.day)
        key["days"].add(r.day)
        if isinstance(body.get("model"), str):
            key["models"].add(body["model"])
        for name in ("requests", "input_tokens", "output_tokens"):
            value = vendor.get(name)
            key[name] += value if type(value) is int else 0
        key["cost_usd"] += decimal_of(vendor.get("cost_usd")) or Decimal(0)
        key["open"] = key["open"] or body.get("open") is True
    found = [
        {**key, "days": len(key["days"]), "models": sorted(key["models"]), "cost_usd": text(key["cost_usd"])}
        for key in keys.values()
    ]
    return sorted(found, key=lambda k: (-Decimal(k["cost_usd"]), k["provider"], str(k["key_id"])))


def metrics_text(found: list[tuple[str, Decimal, Decimal]]) -> bytes:
    """`Invoice.metrics` in Prometheus's text format."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    coverage = Gauge("tollgate_spend_coverage_ratio", "The newest closed day's priced usage on keys Tollgate "
                     "holds over that on every key of the vendor's account (tollgate reconcile)", ["provider"],
                     registry=registry)  # fmt: skip
    around_usd = Gauge("tollgate_spend_around_usd", "The newest closed day's usage on keys Tollgate does not "
                       "hold, priced by Tollgate's prices, US dollars (tollgate reconcile)", ["provider"],
                       registry=registry)  # fmt: skip
    for provider, ratio, usd in found:
        coverage.labels(provider).set(float(ratio))
        around_usd.labels(provider).set(float(usd))
    return generate_latest(registry)


def _used_key(record: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """A call's (provider, day, upstream key), when it names them."""
    ts, provider, key = record.get("ts"), record.get("provider"), record.get("upstream_key")
    if isinstance(ts, str) and isinstance(provider, str) and isinstance(key, str):
        return provider, ts[:10], key
    return None
