"""The console's JSON API, as plain functions of the audit read so far, a query string and who
asks: what each `/api/…` path answers (docs/console.md lists them), over the records the viewer
may see (`scope.py`) and, with `instance`, those one instance wrote. No HTTP here (`server.py`
serves it)."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from tollgate.common.shown import caller_name, usd_text
from tollgate.console.cursors import BadCursor, Cursors
from tollgate.console.day_sums import Window, hour_of
from tollgate.console.index import BAD_LINE, Index
from tollgate.console.invoice import Invoice, NotShown, WrongQuery
from tollgate.console.invoice_results import FromRecords
from tollgate.console.scope import Scope, ScopeRules, with_instance
from tollgate.console.source import Source
from tollgate.console.table import Table
from tollgate.console.table_events import TableViews, shown_record
from tollgate.console.table_sums import TableSums
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.records.audit.kinds import RECORD_KINDS

Query = Mapping[str, Sequence[str]]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FILTERS = {"client": "clients", "provider": "providers", "event": "events"}
DECISIONS = {"allow": 1, "deny": 2}
NOTHING = -1  # a filter's value no record's column holds
# The columns that hold US dollars (the budgets' `used` and `cap` too where their unit is usd).
MONEY = frozenset(("cost_usd",))
HOURLY_DAYS = 31  # the longest span the hourly spend covers: it is summed from the records themselves
SCOPES_KEPT = 1024  # the viewers whose scope is kept (each a set of origin numbers)
INVOICE = "/api/invoice"  # what `tollgate reconcile` found (`invoice.py`)
INVOICE_PARTS = ("rows", "days", "around")  # what its CSV holds (`part`)
LIVE_WAIT_S = 0.4  # how long the live stream waits for a new record before it looks again


class BadQuery(ValueError):
    """A query parameter the API cannot read; its message names it."""


class Forbidden(PermissionError):
    """A path the viewer's role may not read (`/api/audit` is `security`'s)."""


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asks, and the origins their answer is over (`scope.py`; None: every one)."""

    scope: Scope
    chosen: frozenset[int] | None


class Views:
    def __init__(
        self,
        source: Source,
        budgets: Callable[[], list[dict[str, Any]]] | None = None,
        rules: ScopeRules | None = None,
        cursors: Cursors | None = None,  # None: sealed with a key of this process's own
        invoice: Invoice | None = None,  # None: the reconciliation records among the audit's
        over_table: bool = True,  # False: the audit's index answers, even over PostgreSQL
    ) -> None:
        self.source = source
        self.invoice = invoice if invoice is not None else Invoice(FromRecords(source), source)
        self.cursors = cursors if cursors is not None else Cursors()
        self.budgets = budgets
        self.rules = rules if rules is not None else ScopeRules()
        self._scopes: dict[Viewer, Scope] = {}
        # Over PostgreSQL: the views the database answers (`table_events.py`); else the index's.
        self.table: TableViews | None = source.reads if over_table and isinstance(source, Table) else None
        self._no_table: Views | None = None  # over PostgreSQL, before an instance has made the table
        self.routes: dict[str, Callable[[Query, Asker], Any]] = {
            "/api/events": self.events,
            "/api/people": lambda q, a: self.by_client(self._sums().people, q, a),
            "/api/spend": self.spend,
            "/api/refusals": lambda q, a: self.by_client(self._sums().refusals, q, a),
            "/api/findings": lambda q, a: self.by_client(self._sums().findings, q, a),
            "/api/inventory": lambda q, a: self.by_client(self._sums().inventory, q, a),
            "/api/budgets": self.budget_rows,
            "/api/audit": self.audit_state,
            "/api/me": self.me,
            "/api/kinds": lambda q, a: list(RECORD_KINDS),
        }

    def _sums(self) -> Index | TableSums:
        """What the views add up: the table's sums over PostgreSQL, else the index."""
        return self.source.index if self.table is None else self.table.sums

    def _first_fault(self) -> int | None:
        """Over PostgreSQL: the id from which records are not vouched for (None: all are)."""
        source = self.source
        if not isinstance(source, Table):
            return None
        with source.lock:
            return source.first_fault_id

    def scope(self, viewer: Viewer) -> Scope:
        """The viewer's scope, kept while the console runs (its decisions per origin with it)."""
        found = self._scopes.get(viewer)
        if found is None:
            if len(self._scopes) >= SCOPES_KEPT:
                self._scopes.clear()
            found = self._scopes[viewer] = Scope(viewer, self.rules)
        return found

    def asked(self, query: Query, viewer: Viewer) -> Asker:
        """The origins the answer is over: the viewer's scope, narrowed to `instance` when the
        query names one. Called with the audit's lock held."""
        scope = self.scope(viewer)
        index = self._sums()
        if self.table is not None:
            self.table.sums.refresh()
        return Asker(scope, with_instance(scope.chosen(index), index, _one(query, "instance")))

    def answer(self, path: str, query: Query, viewer: Viewer = TOKEN_HOLDER) -> Any:
        """What `path` answers to `viewer`; KeyError for a path the API has not, BadQuery for a bad
        query, Forbidden for a path the viewer's role may not read."""
        if path == INVOICE:  # it takes the lock itself: its table is read without holding it
            if (_one(query, "part") or "rows") not in INVOICE_PARTS:
                raise BadQuery("part: rows, days or around")
            try:
                return self.invoice.answer(query, self.scope(viewer))
            except NotShown as e:
                raise Forbidden(str(e)) from None
            except WrongQuery as e:
                raise BadQuery(str(e)) from None
        route = self.routes[path]
        if self.table is not None:  # the database answers; the audit's lock is taken for its state alone
            with self.table.reading() as conn:
                if self.table.made(conn):
                    return route(query, self.asked(query, viewer))
            if self._no_table is None:  # no record yet: answered as over none
                self._no_table = Views(self.source, self.budgets, self.rules, self.cursors, self.invoice, False)
            return self._no_table.answer(path, query, viewer)
        with self.source.lock:
            return route(query, self.asked(query, viewer))

    def events(self, query: Query, asked: Asker) -> dict[str, Any]:
        if self.table is not None:
            return self._table_events(self.table, query, asked)
        index = self.source.index
        limit = _int(query, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit: from 1 to {MAX_LIMIT}")
        filters: dict[str, Any] = {}
        for name, column in FILTERS.items():
            if (value := _one(query, name)) is not None:
                # A name no record has matches nothing, the same way as one of records out of
                # scope: the answer (its checks, its cursor) is the same for both.
                number = index.known(value)
                filters[column] = NOTHING if number is None else number
        if (decision := _one(query, "decision")) is not None:
            if decision not in DECISIONS:
                raise BadQuery("decision: allow or deny")
            filters["decisions"] = DECISIONS[decision]
        after = _one(query, "after")
        viewer = asked.scope.viewer
        if after is None:
            numbers, cursor = index.matching(len(index), limit, filters, asked.chosen), len(index) - 1
        else:
            try:
                start = self.cursors.open(after, viewer)
            except BadCursor as e:
                raise BadQuery(str(e)) from None
            numbers, cursor = index.following(start, limit, filters, asked.chosen)
        unverified = self.source.unverified()
        shown = [self.source.record(n) for n in numbers]
        for n, record in zip(numbers, shown, strict=True):
            if any(n in span for span in unverified):
                record["unverified"] = True  # after a fault of the chain: what it says is not vouched for
        return {"events": shown, "cursor": self.cursors.seal(cursor, viewer)}

    def _table_events(self, table: TableViews, query: Query, asked: Asker) -> dict[str, Any]:
        """The event list as the table's rows answer it, each record numbered by its id."""
        limit = _int(query, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit: from 1 to {MAX_LIMIT}")
        filters = {name: value for name in FILTERS if (value := _one(query, name)) is not None}
        if (decision := _one(query, "decision")) is not None:
            if decision not in DECISIONS:
                raise BadQuery("decision: allow or deny")
            filters["decision"] = decision
        after = _one(query, "after")
        viewer = asked.scope.viewer
        if after is None:
            rows, cursor = table.matching(limit, filters, asked.chosen)
        else:
            try:
                start = self.cursors.open(after, viewer)
            except BadCursor as e:
                raise BadQuery(str(e)) from None
            rows, cursor = table.following(start, limit, filters, asked.chosen)
        fault = self._first_fault()
        shown = []
        for row_id, line in rows:
            record = shown_record(table.table, row_id, line)
            if fault is not None and row_id >= fault:
                record["unverified"] = True
            shown.append(record)
        return {"events": shown, "cursor": self.cursors.seal(cursor, viewer)}

    def by_client(
        self, rows: Callable[[Window, frozenset[int] | None], list[dict[str, Any]]], query: Query, asked: Asker
    ) -> list[dict[str, Any]]:
        """A view's rows over the origins asked, each of a client with records of them after a
        fault of the chain in the window marked `unverified`."""
        span = window(query)
        found = rows(span, asked.chosen)
        if self.table is not None:
            fault = self._first_fault()
            if fault is not None:
                marked = self.table.marks(fault, span, asked.chosen).clients
                for row in found:
                    if row["client"] in marked:
                        row["unverified"] = True
            return found
        unverified = self.source.unverified()
        if unverified:
            clients = self.source.index.unverified(unverified, span, asked.chosen).clients
            for row in found:
                if row["client"] in clients:
                    row["unverified"] = True
        return found

    def budget_rows(self, query: Query, asked: Asker) -> list[dict[str, Any]]:
        """The budgets' rows: for `security` every one; for anyone else those of its own clients (`per:
        client`) and groups (`per: group`, `Scope.budgets`), never a `per: all` one nor the anonymous
        callers'."""
        rows = [] if self.budgets is None else self.budgets()
        scope = asked.scope
        if scope.everything:
            return rows
        clients, groups = scope.budgets(self._sums())
        return [
            row for row in rows
            if (row.get("per") == "client" and row["subject"] != caller_name(None) and row["subject"] in clients)
            or (row.get("per") == "group" and row["subject"] in groups)
        ]  # fmt: skip

    def audit_state(self, query: Query, asked: Asker) -> list[dict[str, Any]]:
        if not asked.scope.everything:
            raise Forbidden("/api/audit is security's")
        instance = _one(query, "instance")
        return [row for row in self._state() if instance is None or row["instance"] == instance]

    def _state(self) -> list[dict[str, Any]]:
        if self.table is None:  # the audit's lock held already
            return self.source.state()
        with self.source.lock:
            return self.source.state()

    def me(self, query: Query, asked: Asker) -> dict[str, Any]:
        """Who asks, the clients they see (null: every client), and whether the audit is whole, so
        that every view can say so."""
        viewer = asked.scope.viewer
        states = {row["state"] for row in self._state()}
        return {
            "email": viewer.email, "name": viewer.name, "role": viewer.role,
            "clients": asked.scope.clients(self._sums()),
            "audit": "fault" if "fault" in states else "checking" if "checking" in states else "whole",
        }  # fmt: skip

    def live_start(self) -> int:
        """Where a live stream opened now starts: after the records read so far (over PostgreSQL:
        after the newest id)."""
        if self.table is not None:
            return self.table.newest_id()
        with self.source.lock:
            return len(self.source.index)

    def newer(self, seen: int, query: Query, viewer: Viewer = TOKEN_HOLDER) -> tuple[list[bytes], int]:
        """The lines, as the live stream shows them (`Source.shown`), of the records after the first
        `seen` that `viewer` may see (of the query's `instance`, when it names one), and the number
        of records looked through; waiting a moment for one when none is."""
        if self.table is not None:
            return self._table_newer(self.table, seen, query, viewer)
        source = self.source
        with source.grew:
            if len(source.index) <= seen:
                source.grew.wait(LIVE_WAIT_S)
            index = source.index
            total = len(index)
            if total <= seen:
                return [], seen
            chosen = self.asked(query, viewer).chosen
            numbers = [n for n in range(seen, total) if chosen is None or index.origins[n] in chosen]
            kept = [source.recent(n) for n in numbers]
            lines = [line for line in kept if line is not None]
            if len(lines) == len(kept):
                return [source.shown(n, line) for n, line in zip(numbers, lines, strict=True)], total
        # More than the recent lines kept: read back.
        return [source.shown(n, source.line(n)) for n in numbers], total

    def _table_newer(self, table: TableViews, seen: int, query: Query, viewer: Viewer) -> tuple[list[bytes], int]:
        """The live stream over PostgreSQL: the rows after id `seen`, polled again once after
        LIVE_WAIT_S when none is new."""
        rows: list[tuple[int, bytes]] = []
        last = seen
        for attempt in range(2):
            if attempt:
                time.sleep(LIVE_WAIT_S)
            with table.reading() as conn:
                if not table.made(conn):  # no record yet
                    continue
                chosen = self.asked(query, viewer).chosen
                rows, last = table.newer(seen, chosen)
            if last > seen:
                break
        fault = self._first_fault()
        shown = []
        for row_id, line in rows:
            record = shown_record(table.table, row_id, line)
            if (fault is None or row_id < fault) and record.get("event") != BAD_LINE:
                shown.append(line + b"\n")
                continue
            if fault is not None and row_id >= fault:
                record["unverified"] = True
            shown.append(orjson.dumps(record) + b"\n")
        return shown, last

    def spend(self, query: Query, asked: Asker) -> list[dict[str, Any]]:
        by = _one(query, "by") or "provider"
        if by not in ("provider", "model", "client"):
            raise BadQuery("by: provider, model or client")
        bucket = _one(query, "bucket") or "day"
        if bucket not in ("hour", "day"):
            raise BadQuery("bucket: hour or day")
        span = window(query)
        if bucket == "hour" and not _within(span, HOURLY_DAYS):
            raise BadQuery(f"bucket=hour: a since no more than {HOURLY_DAYS} days before until (or now)")
        found = self._sums().spend(span, by, bucket, asked.chosen)
        if self.table is not None:
            fault = self._first_fault()
            if fault is not None:
                marks = self.table.marks(fault, span, asked.chosen).spend
                for row in found:
                    if (row["bucket"], by, row["key"]) in marks:
                        row["unverified"] = True
            return found
        unverified = self.source.unverified()
        if unverified:
            marked = self.source.index.unverified(unverified, span, asked.chosen).spend
            for row in found:
                if (row["bucket"], by, row["key"]) in marked:
                    row["unverified"] = True
        return found


def _within(span: Window, days: int) -> bool:
    """Whether the window starts no more than `days` before its end (or now)."""
    if span.since is None:
        return False
    end = datetime.now(UTC) if span.until is None else datetime.fromisoformat(span.until + ":00+00:00")
    return end - datetime.fromisoformat(span.since + ":00+00:00") <= timedelta(days=days)


def window(query: Query) -> Window:
    try:
        since, until = _one(query, "since"), _one(query, "until")
        return Window(None if since is None else hour_of(since), None if until is None else hour_of(until))
    except ValueError:
        raise BadQuery("since, until: an ISO 8601 date or time, UTC (2026-11-01, 2026-11-01T08:00)") from None


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _int(query: Query, name: str, default: int) -> int:
    text = _one(query, name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise BadQuery(f"{name}: a whole number") from None


def as_csv(answer: Any, query: Query | None = None) -> str:
    """A list of rows (or the events of `/api/events`) as CSV: a column per field of the first
    row; a nested value (findings, deny_reasons) as its JSON; a caller no client names as
    `(anonymous)` (in `client`, and in `key` when the query's `by` is client); an amount of money
    as `usd_text` writes it, another number as a plain decimal (never an exponent)."""
    rows = answer["events"] if isinstance(answer, dict) and "events" in answer else answer
    if isinstance(answer, dict) and "rows" in answer:  # the Invoice: its rows, or `part` days or around
        part = (_one(query, "part") if query is not None else None) or "rows"
        rows = answer[part if part in INVOICE_PARTS else "rows"]
    out = io.StringIO()
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    callers = ("client", "key") if query is not None and _one(query, "by") == "client" else ("client",)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(c, row, callers) for c in columns])
    return out.getvalue()


def _cell(column: str, row: Mapping[str, Any], callers: Sequence[str]) -> str:
    value = row.get(column)
    if value is None:
        return caller_name(None) if column in callers and column in row else ""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet opening the export reads no formula from a record
    if isinstance(value, float) and (column in MONEY or (column in ("used", "cap") and row.get("unit") == "usd")):
        return usd_text(value)
    if isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    return str(value)
