"""The console's views answered by PostgreSQL: the sums the records' table keeps per day and per hour
(`records/senders/record_sums.py`), read and added up the way `Index` adds up its own.

`TableSums` has the views of `Index` (people, spend, refusals, findings, inventory), taking the same
`Window` and the same `chosen` (origin numbers, as `Scope.chosen` gives them from `origin_list`),
answering in the same shapes: the database adds up the days a view covers by client, over the
origins in scope alone (their numbers given it as the ids of their rows), so that who a person is
stays configuration, applied when a view is asked, and a view reads no more rows than it answers.
Money is summed exactly (`numeric`, read as text) and rounded as the index rounds it.

`recomputed_day` sums a day again from its rows and says where the sums kept differ, and which rows'
columns differ from their line: a fault of the Audit view. Plain code: no HTTP, no mitmproxy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from tollgate.console.day_sums import (
    DAY,
    HOUR,
    Window,
    day_before,
    order_of,
)
from tollgate.console.index import NO_ORIGIN, Origin
from tollgate.records.senders.record_sums import (
    ORIGIN,
    SUM_TABLES,
    add_statement,
    day_rows,
    filled,
    names,
)

_O = ", ".join(ORIGIN)
_SPEND_BY = {"provider": "provider", "model": "model"}  # by client: the origin's (`client`)
FIRST = "\uffff"  # a first time not seen yet, as the index's (`Person`, `ServiceDay`)
ID_DIGITS = 20  # a row's id (a bigint, not negative) written to this many digits sorts as a number


class TableSums:
    """The views over the sums of the records' table `table`, read on `conn` (SELECT only)."""

    def __init__(self, conn: psycopg.Connection, table: str = "tollgate_records") -> None:
        self.conn = conn
        self.table = table
        self._names = names(table)
        self.origin_list: list[Origin] = [NO_ORIGIN]
        self._numbers: dict[Origin, int] = {NO_ORIGIN: 0}
        self._last_id = 0  # the newest row of the origins' table read
        self._ids: dict[int, int] = {}  # an origin's number: its row's id in the origins' table

    def refresh(self) -> list[Origin]:
        """The origins the sums name, numbered in the order they came (`origin_list`), the new ones
        read."""
        rows = self.conn.execute(
            sql.SQL("SELECT id, {} FROM {} WHERE id > %s ORDER BY id").format(sql.SQL(_O), self._names["origins"]),
            (self._last_id,),
        ).fetchall()
        for row in rows:
            self._last_id = row[0]
            self._ids[self._number(row[1:])] = row[0]
        return self.origin_list

    def _number(self, row: Iterable[Any]) -> int:
        client, groups, account, instance, jwt = row
        origin = Origin(client, None if groups is None else tuple(groups), account, instance, bool(jwt))
        number = self._numbers.get(origin)
        if number is None:
            number = self._numbers[origin] = len(self.origin_list)
            self.origin_list.append(origin)
        return number

    def client_of(self, origin: int) -> str | None:
        return self.origin_list[origin].client

    def _scope(self, chosen: frozenset[int] | None) -> tuple[str, tuple[Any, ...]]:
        """The condition on a sum's origin (its table named `s`) that keeps the origins `chosen`
        (None: every one), and its values: the database leaves the others out."""
        if chosen is None:
            return "true", ()
        ids = [self._ids[n] for n in sorted(chosen) if n in self._ids]
        if not ids:
            return "false", ()
        parts: list[str] = []
        params: list[Any] = []
        clients = {self.origin_list[n].client for n in chosen if n in self._ids}
        if None not in clients:  # the sums' keys (day, client, …) narrow them first
            parts.append("s.client = ANY(%s)")
            params.append(sorted(c for c in clients if c is not None))
        parts.append("EXISTS (SELECT 1 FROM {origins} AS o WHERE o.id = ANY(%s) AND"
                     " (o.client, o.groups, o.account, o.instance, o.jwt)"
                     " IS NOT DISTINCT FROM (s.client, s.groups, s.account, s.instance, s.jwt))")  # fmt: skip
        params.append(ids)
        return " AND ".join(parts), tuple(params)

    def _read(self, query: str, params: tuple[Any, ...]) -> psycopg.Cursor[Any]:
        """The rows of `query` (built here: no input), its sum tables' names filled in."""
        return self.conn.execute(sql.SQL(query).format(**self._names), params)

    # ---- the views, as `Index`'s: each added up by the database, by client (`client_of`), over
    # the origins in scope; every sum as text, read exactly (no Decimal a row)

    def people(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        days, params = _days(window)
        scope, more = self._scope(chosen)
        where, params = f"{days} AND {scope}", params + more
        people: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        query = f"""SELECT client, key, sum(calls)::text, sum(refused)::text, sum(input_tokens)::text,
            sum(output_tokens)::text, sum(cost_usd)::text, sum(unpriced)::text, sum(connections)::text,
            min(first_seen), max(last_seen) FROM {{people}} AS s WHERE {where} GROUP BY client, key"""
        for client, key, calls, refused, inputs, outputs, cost, unpriced, connections, first, last in self._read(
            query, params
        ):
            people[(client, key)] = {
                "client": client, "key": key, "calls": int(calls), "refused": int(refused),
                "input_tokens": int(inputs), "output_tokens": int(outputs), "cost_usd": _money_text(cost),
                "unpriced": int(unpriced), "findings": {}, "connections": int(connections),
                "first_seen": min(FIRST, first), "last_seen": max("", last), "models": {},
            }  # fmt: skip
        query = f"""SELECT client, key, kind, sum(count)::text FROM {{findings}} AS s WHERE {where}
            GROUP BY client, key, kind ORDER BY kind COLLATE "C" """
        for client, key, kind, n in self._read(query, params):
            people[(client, key)]["findings"][kind] = int(n)
        query = f"""SELECT client, key, model, sum(calls)::text FROM {{spend_day}} AS s
            WHERE {where} AND model IS NOT NULL GROUP BY client, key, model ORDER BY model COLLATE "C" """
        for client, key, model, n in self._read(query, params):
            people[(client, key)]["models"][model] = int(n)
        return [people[who] for who in sorted(people, key=lambda who: (who[0] is None, who[0] or "", order_of(who[1])))]

    def spend(self, window: Window, by: str, bucket: str, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        """Per day or per hour (`bucket`), by provider, model or client (`by`), in the order of
        the buckets and of the names (none before an empty one: `order_of`)."""
        named = _SPEND_BY.get(by, "client")
        at, (where, params), table = ("hour", _hours(window), "spend_hour") if bucket == "hour" else (
            "day", _days(window), "spend_day")  # fmt: skip
        scope, more = self._scope(chosen)
        # An hour's figures fit a bigint (each record's tokens are capped there); a day's are read
        # as text. The cost as a float where it has no more than 9 places (the number it says), else
        # as text, rounded below. In the order of the sums' keys (bucket, client, …: read in it
        # where the view is by client, the largest), none after the names: put first below.
        figure = "int8" if at == "hour" else "text"
        query = f"""SELECT at, named, calls, inputs, outputs, CASE WHEN scale(cost) <= 9 THEN cost::float8 END,
            CASE WHEN scale(cost) > 9 THEN cost::text END
            FROM (SELECT {at} AS at, {named} AS named, sum(calls)::{figure} AS calls,
                sum(input_tokens)::{figure} AS inputs, sum(output_tokens)::{figure} AS outputs, sum(cost_usd) AS cost
                FROM {{{table}}} AS s WHERE {where} AND {scope} GROUP BY {at}, {named}) AS g
            ORDER BY at COLLATE "C", named COLLATE "C" NULLS LAST"""
        times: dict[str, str] = {}  # each bucket's time made once
        found: list[dict[str, Any]] = []
        first = 0  # where the bucket's rows start in `found`
        for start, key, calls, inputs, outputs, short, exact in self._read(query, params + more).fetchall():
            time = times.get(start)
            if time is None:
                time = times[start] = _bucket_time(start)
                first = len(found)
            row = {"bucket": time, "key": key, "calls": int(calls), "input_tokens": int(inputs),
                   "output_tokens": int(outputs),
                   "cost_usd": short if exact is None else _money_text(exact)}  # fmt: skip
            if key is None and first < len(found):  # no name: before the bucket's others (`order_of`)
                found.insert(first, row)
            else:
                found.append(row)
        return found

    def refusals(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        days, params = _days(window)
        scope, more = self._scope(chosen)
        # Per client and kind: the last reason is that of the newest refusal, of the row made later
        # where two are as new (as the index's, whose rows are in the order they came).
        # (The greatest of (last_seen, first_id, last_reason) as an array: no sort per group.)
        query = f"""SELECT kind, client, sum(count)::text,
            max(ARRAY[last_seen, lpad(first_id::text, {ID_DIGITS}, '0'), last_reason] COLLATE "C")
            FROM {{refusals}} AS s WHERE {days} AND {scope} GROUP BY kind, client"""
        rows = [
            {"kind": kind, "client": client, "count": int(count), "last_reason": last[2], "last_seen": max("", last[0])}
            for kind, client, count, last in self._read(query, params + more)
        ]
        return sorted(rows, key=lambda r: (-r["count"], r["kind"], order_of(r["client"])))

    def findings(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        days, params = _days(window)
        scope, more = self._scope(chosen)
        query = f"""SELECT kind, client, place, action, sum(count)::text FROM {{findings}} AS s
            WHERE {days} AND {scope} GROUP BY kind, client, place, action"""
        rows = [
            {"kind": kind, "client": client, "where": place, "action": action, "count": int(n)}
            for kind, client, place, action, n in self._read(query, params + more)
        ]
        return sorted(rows, key=lambda r: (-r["count"], r["kind"], order_of(r["client"]), r["where"], r["action"]))

    def inventory(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        """The rows of `tollgate inventory --json` over the days the window covers."""
        days, params = _days(window)
        scope, more = self._scope(chosen)
        # A service's category: the first a record gave it (the index's, whose rows are in order).
        # (The least of (first_id, category) as text: no sort per group.)
        first = f"""substr(min(lpad(first_id::text, {ID_DIGITS}, '0') || category COLLATE "C")
            FILTER (WHERE category IS NOT NULL), {ID_DIGITS + 1})"""
        query = f"""SELECT client, service, {first}, sum(calls)::text,
            sum(connections)::text, sum(refused)::text, sum(bytes_sent)::text, sum(bytes_received)::text,
            min(first_seen), max(last_seen) FROM {{services}} AS s WHERE {days} AND {scope} GROUP BY client, service"""
        rows = [
            {"client": client, "service": service, "category": category, "calls": int(calls),
             "connections": int(connections), "refused": int(refused), "bytes_sent": int(sent),
             "bytes_received": int(received), "first_seen": min(FIRST, first_seen), "last_seen": max("", last_seen)}
            for client, service, category, calls, connections, refused, sent, received, first_seen, last_seen
            in self._read(query, params + more)
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (r["client"] is None, r["client"] or "", r["service"]))


def _days(window: Window) -> tuple[str, tuple[str, ...]]:
    """The condition on a sum's `day` that `Window.holds_day` is, and its values."""
    parts, params = ["true"], []
    if window.since is not None:
        parts.append("day >= %s")
        params.append(window.since[:DAY])
    if window.until is not None:
        parts.append("day < %s")
        params.append(day_before(window.until))
    return " AND ".join(parts), tuple(params)


def _hours(window: Window) -> tuple[str, tuple[str, ...]]:
    """The condition on a sum's `hour` that `Window.holds_hour` is, and its values."""
    parts, params = ["true"], []
    if window.since is not None:
        parts.append("hour >= %s")
        params.append(window.since)
    if window.until is not None:
        parts.append("hour < %s")
        params.append(window.until)
    return " AND ".join(parts), tuple(params)


def _money_text(amount: str) -> float:
    """A sum of US dollars, as the database writes a `numeric`, as the views give it: rounded to 9
    places as the index rounds it (half to even); a sum of no more places is the number it says."""
    point = amount.find(".")
    if point < 0 or len(amount) - point - 1 <= 9:
        return float(amount)
    return float(round(Decimal(amount), 9))


def _bucket_time(bucket: str) -> str:
    """An hour (`2026-11-22T08`) or a day (`2026-11-22`) as the time it starts."""
    return f"{bucket}:00:00Z" if len(bucket) == HOUR else f"{bucket}T00:00:00Z"


# ---- a day summed again


@dataclass(frozen=True, slots=True)
class Difference:
    """Where a day's sums differ from its rows: a sum table's row as kept (`stored`) and as its
    rows add up (`recounted`), either None where one has the row and the other not; or a row of the
    records' table (`row`: its id) whose `columns` differ from its line."""

    table: str
    stored: tuple[Any, ...] | None = None
    recounted: tuple[Any, ...] | None = None
    row: int | None = None
    columns: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        if self.row is not None:
            return f"{self.table} row {self.row}: {', '.join(self.columns)} not as its line says"
        if self.recounted is None:
            return f"{self.table}: a sum no row makes: {self.stored!r}"
        if self.stored is None:
            return f"{self.table}: a sum missing: {self.recounted!r}"
        return f"{self.table}: {self.stored!r} kept, {self.recounted!r} by its rows"


# The columns the event list filters by, each as its line says it (`row_of`'s reading).
CHECKED_COLUMNS = ("client", "instance", "event", "decision", "model", "provider")


def recomputed_day(conn: psycopg.Connection, day: str, table: str = "tollgate_records") -> list[Difference]:
    """The differences between the sums kept of `day` (a record's `ts[:10]`) and the sums its rows
    make now, and the rows of that day whose columns the event list filters by differ from their
    line. Summed again in temporary tables, in a transaction rolled back (`conn` needs SELECT on the
    tables and TEMPORARY on the database)."""
    table_names = names(table)
    try:
        start = date.fromisoformat(day)
        bounds = (sql.Literal(str(start - timedelta(days=3))), sql.Literal(str(start + timedelta(days=3))))
    except ValueError:  # a day that is no date: every row looked at
        bounds = (sql.Literal("-infinity"), sql.Literal("infinity"))
    since, until = (sql.SQL("{}::timestamptz").format(b) for b in bounds)
    found: list[Difference] = []
    with conn.transaction(force_rollback=True):
        temporary: dict[str, sql.Composable] = {}
        for name in SUM_TABLES:
            temporary[name] = sql.Identifier(f"tollgate_recount_{name}")
            conn.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING INDEXES) ON COMMIT DROP").format(
                    temporary[name], table_names[name]
                )
            )
        temporary["origins"] = sql.Identifier("tollgate_recount_origins")
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} (client text, groups text[], account text, instance text, jwt boolean,"
                " UNIQUE NULLS NOT DISTINCT (client, groups, account, instance, jwt)) ON COMMIT DROP"
            ).format(temporary["origins"])
        )
        statement = add_statement(day_rows("{since}", "{until}"), "WHERE x.day = {day}")
        conn.execute(filled(statement, table, {**temporary, "since": since, "until": until, "day": sql.Literal(day)}))
        for name in SUM_TABLES:
            of_day = sql.SQL("left(hour, 10) = %s" if name == "spend_hour" else "day = %s")
            both = {"kept": table_names[name], "recount": temporary[name], "of_day": of_day}
            kept = sql.SQL("SELECT * FROM {kept} WHERE {of_day} EXCEPT ALL SELECT * FROM {recount}").format(**both)
            made = sql.SQL("SELECT * FROM {recount} EXCEPT ALL SELECT * FROM {kept} WHERE {of_day}").format(**both)
            stored = conn.execute(kept, (day,)).fetchall()
            recounted = conn.execute(made, (day,)).fetchall()
            found.extend(_paired(f"{table}_{name}", len(SUM_TABLES[name][0]), stored, recounted))
        found.extend(_columns_unlike_lines(conn, table, day, since, until))
    return found


def _paired(table: str, keys: int, stored: list[tuple], recounted: list[tuple]) -> list[Difference]:
    """The rows kept and recounted, those of the same key side by side."""
    made = {_key(row[:keys]): row for row in recounted}
    found = []
    for row in stored:
        other = made.pop(_key(row[:keys]), None)
        found.append(Difference(table, stored=row, recounted=other))
    found.extend(Difference(table, recounted=row) for row in made.values())
    return found


def _key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row's key as a dictionary's (its groups, a list, as a tuple)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


def _columns_unlike_lines(
    conn: psycopg.Connection, table: str, day: str, since: sql.Composable, until: sql.Composable
) -> list[Difference]:
    checks = sql.SQL(", ").join(
        sql.SQL("CASE WHEN s.{} IS DISTINCT FROM tollgate_str(j.d->{}) THEN {} END").format(
            sql.Identifier(c), sql.Literal(c), sql.Literal(c)
        )
        for c in CHECKED_COLUMNS
    )
    query = sql.SQL("""SELECT s.id, array_remove(ARRAY[{checks}], NULL) AS differ
        FROM {table} AS s CROSS JOIN {backfill} AS b
        CROSS JOIN LATERAL (SELECT tollgate_json(s.line) AS d WHERE s.raw IS NULL OFFSET 0) AS j
        WHERE (s.id > b.upto OR s.id <= b.done) AND (s.ts IS NULL OR (s.ts >= {since} AND s.ts < {until}))
            AND jsonb_typeof(j.d) = 'object' AND left(tollgate_str(j.d->'ts'), 10) = {day}
        ORDER BY s.id""").format(
        checks=checks, table=sql.Identifier(table), backfill=names(table)["backfill"], since=since, until=until,
        day=sql.Literal(day),
    )  # fmt: skip
    return [Difference(table, row=n, columns=tuple(differ)) for n, differ in conn.execute(query) if differ]
