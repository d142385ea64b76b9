"""The console's views answered by PostgreSQL: the sums the records' table keeps per day and per hour
(`records/senders/record_sums.py`), read and added up the way `Index` adds up its own.

`TableSums` has the views of `Index` (people, spend, refusals, findings, inventory), taking the same
`Window` and the same `chosen` (origin numbers, as `Scope.chosen` gives them from `origin_list`),
answering in the same shapes: the database adds up the days a view covers per origin, then the
origins in scope are added up by client here, so that who a person is stays configuration, applied
when a view is asked. Money is summed exactly (`numeric`) and rounded as the index rounds it.

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
    Person,
    Refusals,
    ServiceDay,
    Spend,
    Window,
    day_before,
    merge_service,
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

OriginRow = tuple[str | None, list[str] | None, str | None, str | None, bool]
_O = ", ".join(ORIGIN)
_SPEND_BY = {"provider": "provider", "model": "model"}  # by client: the origin's (`client`)


class TableSums:
    """The views over the sums of the records' table `table`, read on `conn` (SELECT only)."""

    def __init__(self, conn: psycopg.Connection, table: str = "tollgate_records") -> None:
        self.conn = conn
        self.table = table
        self._names = names(table)
        self.origin_list: list[Origin] = [NO_ORIGIN]
        self._numbers: dict[Origin, int] = {NO_ORIGIN: 0}
        self._last_id = 0  # the newest row of the origins' table read

    def refresh(self) -> list[Origin]:
        """The origins the sums name, numbered in the order they came (`origin_list`), the new ones
        read."""
        rows = self.conn.execute(
            sql.SQL("SELECT id, {} FROM {} WHERE id > %s ORDER BY id").format(sql.SQL(_O), self._names["origins"]),
            (self._last_id,),
        ).fetchall()
        for row in rows:
            self._last_id = row[0]
            self._number(row[1:])
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

    def _rows(self, query: str, params: tuple[Any, ...], chosen: frozenset[int] | None) -> list[tuple[int, tuple]]:
        """The rows of `query` (the origin's five columns first), each with its origin's number,
        those of the origins `chosen` only."""
        self.refresh()
        found = []
        for row in self.conn.execute(sql.SQL(query).format(**self._names), params):  # built here: no input
            number = self._number(row[:5])
            if chosen is None or number in chosen:
                found.append((number, row[5:]))
        return found

    # ---- the views, as `Index`'s

    def people(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        where, params = _days(window)
        people: dict[tuple[str | None, str | None], Person] = {}
        query = f"""SELECT {_O}, key, sum(calls), sum(refused), sum(input_tokens), sum(output_tokens), sum(cost_usd),
            sum(unpriced), sum(connections), min(first_seen), max(last_seen)
            FROM {{people}} WHERE {where} GROUP BY {_O}, key"""
        costs: dict[tuple[str | None, str | None], Decimal] = {}
        for origin, row in self._rows(query, params, chosen):
            who = (self.client_of(origin), row[0])
            whole = people.get(who)
            if whole is None:
                whole = people[who] = Person()
            part = Person(int(row[1]), int(row[2]), int(row[3]), int(row[4]), 0, int(row[6]), int(row[7]),
                          first_seen=row[8], last_seen=row[9])  # fmt: skip
            whole.merge(part)
            costs[who] = costs.get(who, Decimal(0)) + row[5]
        query = f"SELECT {_O}, key, kind, sum(count) FROM {{findings}} WHERE {where} GROUP BY {_O}, key, kind"
        for origin, (key, kind, n) in self._rows(query, params, chosen):
            person = people[(self.client_of(origin), key)]
            person.merge(Person(findings={kind: int(n)}))
        query = f"""SELECT {_O}, key, model, sum(calls) FROM {{spend_day}} WHERE {where} AND model IS NOT NULL
            GROUP BY {_O}, key, model"""
        for origin, (key, model, n) in self._rows(query, params, chosen):
            person = people[(self.client_of(origin), key)]
            person.merge(Person(models={model: int(n)}))
        order = sorted(people.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", order_of(kv[0][1])))
        return [
            {"client": client, "key": key, "calls": p.calls, "refused": p.refused,
             "input_tokens": p.input_tokens, "output_tokens": p.output_tokens, "cost_usd": _money(costs[(client, key)]),
             "unpriced": p.unpriced, "findings": dict(sorted((p.findings or {}).items())),
             "connections": p.connections, "first_seen": p.first_seen, "last_seen": p.last_seen,
             "models": dict(sorted((p.models or {}).items()))}
            for (client, key), p in order
        ]  # fmt: skip

    def spend(self, window: Window, by: str, bucket: str, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        """Per day or per hour (`bucket`), by provider, model or client (`by`)."""
        named = _SPEND_BY.get(by, "client")  # by client: the origin's, below
        if bucket == "hour":
            where, params = _hours(window)
            query = f"""SELECT {_O}, hour, {named}, sum(calls), sum(input_tokens), sum(output_tokens), sum(cost_usd)
                FROM {{spend_hour}} WHERE {where} GROUP BY {_O}, hour, {named}"""
        else:
            where, params = _days(window)
            query = f"""SELECT {_O}, day, {named}, sum(calls), sum(input_tokens), sum(output_tokens), sum(cost_usd)
                FROM {{spend_day}} WHERE {where} GROUP BY {_O}, day, {named}"""
        if chosen is None:  # every origin: the database adds them up too, a row per bucket and key
            query = query.replace(f"{_O}, ", "", 1).replace(f"GROUP BY {_O}, ", "GROUP BY ")
            found = [(0, row) for row in self.conn.execute(sql.SQL(query).format(**self._names), params)]
        else:
            found = self._rows(query, params, chosen)
        sums: dict[tuple[str, str | None], Spend] = {}
        costs: dict[tuple[str, str | None], Decimal] = {}
        for origin, (at, value, calls, inputs, outputs, cost) in found:
            key = (at, self.client_of(origin) if by == "client" and chosen is not None else value)
            whole = sums.get(key)
            if whole is None:
                whole = sums[key] = Spend()
            whole.calls += int(calls)
            whole.input_tokens += int(inputs)
            whole.output_tokens += int(outputs)
            costs[key] = costs.get(key, Decimal(0)) + cost
        return [
            {"bucket": _bucket_time(b), "key": k, "calls": s.calls, "input_tokens": s.input_tokens,
             "output_tokens": s.output_tokens, "cost_usd": _money(costs[(b, k)])}
            for (b, k), s in sorted(sums.items(), key=lambda kv: (kv[0][0], order_of(kv[0][1])))
        ]  # fmt: skip

    def refusals(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        where, params = _days(window)
        # Per origin and kind: the last reason is that of the newest refusal, of the row made later
        # where two are as new (as the index's, whose rows are in the order they came).
        last = "ORDER BY last_seen DESC, first_id DESC"
        query = f"""SELECT {_O}, kind, sum(count), max(last_seen), (array_agg(last_reason {last}))[1],
            (array_agg(first_id {last}))[1] FROM {{refusals}} WHERE {where} GROUP BY {_O}, kind"""
        sums: dict[tuple[str, str | None], Refusals] = {}
        latest: dict[tuple[str, str | None], tuple[str, int]] = {}
        for origin, (kind, count, last_seen, reason, first_id) in self._rows(query, params, chosen):
            key = (kind, self.client_of(origin))
            whole = sums.get(key)
            if whole is None:
                whole = sums[key] = Refusals()
            whole.count += int(count)
            if key not in latest or (last_seen, first_id) > latest[key]:
                latest[key] = (last_seen, first_id)
                whole.last_reason, whole.last_seen = reason, last_seen
        return [
            {"kind": kind, "client": client, "count": r.count, "last_reason": r.last_reason, "last_seen": r.last_seen}
            for (kind, client), r in sorted(sums.items(), key=lambda kv: (-kv[1].count, kv[0][0], order_of(kv[0][1])))
        ]

    def findings(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        where, params = _days(window)
        query = f"""SELECT {_O}, kind, place, action, sum(count) FROM {{findings}} WHERE {where}
            GROUP BY {_O}, kind, place, action"""
        sums: dict[tuple[str, str | None, str, str], int] = {}
        for origin, (kind, place, action, n) in self._rows(query, params, chosen):
            key = (kind, self.client_of(origin), place, action)
            sums[key] = sums.get(key, 0) + int(n)
        order = sorted(sums.items(), key=lambda kv: (-kv[1], kv[0][0], order_of(kv[0][1]), kv[0][2], kv[0][3]))
        return [
            {"kind": kind, "client": client, "where": place, "action": action, "count": n}
            for (kind, client, place, action), n in order
        ]

    def inventory(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        """The rows of `tollgate inventory --json` over the days the window covers."""
        where, params = _days(window)
        # A service's category: the first a record gave it (the index's, whose rows are in order).
        first = "FILTER (WHERE category IS NOT NULL)"
        query = f"""SELECT {_O}, service, (array_agg(category ORDER BY first_id) {first})[1],
            min(first_id) {first}, sum(calls), sum(connections), sum(refused), sum(bytes_sent), sum(bytes_received),
            min(first_seen), max(last_seen) FROM {{services}} WHERE {where} GROUP BY {_O}, service"""
        rows: dict[tuple[str | None, str], ServiceDay] = {}
        categories: dict[tuple[str | None, str], tuple[int, str]] = {}
        for origin, row in self._rows(query, params, chosen):
            service, category, category_id, *figures, first_seen, last_seen = row
            key = (self.client_of(origin), service)
            whole = rows.get(key)
            if whole is None:
                whole = rows[key] = ServiceDay(None)
            calls, connections, refused, sent, received = map(int, figures)
            merge_service(whole, ServiceDay(None, calls, connections, refused, sent, received, first_seen, last_seen))
            if category is not None and (key not in categories or category_id < categories[key][0]):
                categories[key] = (category_id, category)
                whole.category = category
        ordered = sorted(rows.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1]))
        return [
            {"client": client, "service": service, "category": r.category, "calls": r.calls,
             "connections": r.connections, "refused": r.refused, "bytes_sent": r.bytes_sent,
             "bytes_received": r.bytes_received, "first_seen": r.first_seen, "last_seen": r.last_seen}
            for (client, service), r in ordered
        ]  # fmt: skip


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


def _money(amount: Decimal) -> float:
    """A sum of US dollars as the views give it (rounded to 9 places, as the index's)."""
    return float(round(amount, 9))


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
