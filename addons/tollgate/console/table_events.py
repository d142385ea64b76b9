"""The console's views over the records' table answered by PostgreSQL (`table.Table`): the sums views
asked of `TableSums`, the event list and the live stream as indexed queries over the table itself,
keyset pages by `id` (the order the rows arrived), nothing per record kept in memory.

A record is numbered by its row's `id` (where the files' index numbers it by its place): the
cursors, the live stream's `seen` and the records after a fault of the chain are ids. A cursor or
`seen` goes no further than the `settled` id (`audit_postgres.settled`): a row whose id was taken
before one shown but committed after it is shown in its turn, never passed. A query that
fails (the database away, a statement cancelled) raises `Unavailable`: the view answers 503 and
the next one connects again. Plain code: no HTTP, no mitmproxy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg import sql

from tollgate.console.day_sums import DAY, Window, day_before
from tollgate.console.index import BAD_LINE, Origin
from tollgate.console.sessions import Unavailable
from tollgate.console.table_sums import TableSums
from tollgate.records.audit.kinds import read_record
from tollgate.records.audit.table_rows import written
from tollgate.records.senders.audit_postgres import close_quietly, first_line, settled

LIVE_PAGE = 1000  # the live stream's rows read at once
SUMMED = ("llm_call", "mcp_call", "connection")  # the events the sums take (`Index.unverified`'s)
# A record's origin as the sums read it (`record_sums.py`), from the table's columns.
_ORIGIN = sql.SQL(
    "t.client, to_jsonb(t.groups), translate(t.account, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'),"
    " t.instance, t.auth IS NOT DISTINCT FROM 'jwt'"
)
# The rows the files' index lists as markers (`BAD_LINE`): a line that is no JSON object, or a record
# claiming to be a marker.
_NO_RECORD = sql.SQL(
    "(coalesce(t.event = 'malformed', false) OR (t.event IS NULL AND (t.raw IS NOT NULL"
    " OR coalesce(jsonb_typeof(tollgate_json(t.line)), '') <> 'object')))"
)
_FILTERS = {"client": "client", "provider": "provider", "event": "event", "decision": "decision"}


@dataclass
class Marks:
    """What the records after a fault of the chain count in (`Index.unverified`'s `Unverified`)."""

    clients: set[str | None] = field(default_factory=set)
    spend: set[tuple[str, str, str | None]] = field(default_factory=set)


class TableViews:
    """The views' reads of `table`, on one connection of `connect`'s, one query at a time."""

    def __init__(self, connect: Callable[[], psycopg.Connection], table: str) -> None:
        self.connect, self.table = connect, table
        self.lock = threading.RLock()  # a view's queries in turn, under the view's own hold
        self.sums = TableSums(None, table)  # type: ignore[arg-type]  # connected at the first read
        self._conn: psycopg.Connection | None = None
        self._made = False

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection]:
        """The connection, held alone; Unavailable (and a new connection next time) when it fails."""
        with self.lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                    self.sums.conn = self._conn
                yield self._conn
            except psycopg.Error as e:
                conn, self._conn = self._conn, None
                close_quietly(conn)
                raise Unavailable(f"the records' table cannot be read: {first_line(e)}") from None

    def made(self, conn: psycopg.Connection) -> bool:
        """Whether the table and its sums exist (an instance has made them), looked for until they do."""
        if not self._made:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{self.table}_origins",)).fetchone()
            self._made = bool(row and row[0])
        return self._made

    def close(self) -> None:
        with self.lock:
            close_quietly(self._conn)
            self._conn = None

    # ---- the event list

    def _where(
        self, filters: Mapping[str, str], chosen: frozenset[int] | None, origins: list[Origin]
    ) -> tuple[sql.Composable, list[Any]]:
        """The condition of the filters' columns and the origins `chosen`, and its values."""
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for name, value in filters.items():
            if name == "event" and value == BAD_LINE:  # a line that is no record, or one that claims to be the marker
                parts.append(_NO_RECORD)
                continue
            parts.append(sql.SQL("t.{} = %s").format(sql.Identifier(_FILTERS[name])))
            params.append(value)
        if chosen is not None:
            picked = [origins[n] for n in sorted(chosen) if n < len(origins)]
            if not picked:
                return sql.SQL("false"), []
            clients = [o.client for o in picked]
            if None not in clients:  # the (client, ts) index narrows them first
                parts.append(sql.SQL("t.client = ANY(%s)"))
                params.append(sorted({c for c in clients if c is not None}))
            # A marker is of no origin (`NO_ORIGIN`, number 0), whatever its columns say.
            marker = (
                sql.SQL("{} OR ").format(_NO_RECORD) if 0 in chosen else sql.SQL("NOT ({}) AND ").format(_NO_RECORD)
            )
            parts.append(
                marker
                + sql.SQL(
                    "EXISTS (SELECT 1 FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::text[], %s::boolean[])"
                    " AS o(c, g, a, i, j) WHERE row({}) IS NOT DISTINCT FROM row(o.c, o.g, o.a, o.i, o.j))"
                ).format(_ORIGIN)
            )
            columns = [
                [o.client for o in picked],
                [None if o.groups is None else orjson.dumps(list(o.groups)).decode() for o in picked],
                [o.account for o in picked],
                [o.instance for o in picked],
                [o.jwt for o in picked],
            ]
            params.extend(columns)
        if not parts:
            return sql.SQL("true"), []
        return sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in parts), params

    def _rows(self, conn: psycopg.Connection, query: sql.Composed, params: list[Any]) -> list[tuple[Any, ...]]:
        return conn.execute(query, params).fetchall()

    def newest_id(self) -> int:
        with self.reading() as conn:
            return self._top(conn) if self.made(conn) else 0

    def _top(self, conn: psycopg.Connection) -> int:
        # Not max(id): a row below it may be in a batch not yet committed (two senders commit out of
        # their ids' order); a cursor or the live stream past it would never show that row.
        return settled(conn, self.table)

    def matching(
        self, limit: int, filters: Mapping[str, str], chosen: frozenset[int] | None
    ) -> tuple[list[tuple[int, bytes]], int]:
        """The last `limit` records that hold the filters' values, of the origins `chosen`, oldest
        first, as (id, line); and the newest id looked at (the cursor)."""
        with self.reading() as conn:
            origins = self.sums.refresh()
            top = self._top(conn)
            where, params = self._where(filters, chosen, origins)
            query = sql.SQL(
                "SELECT t.id, t.line, t.raw FROM {} AS t WHERE t.id <= %s AND {} ORDER BY t.id DESC LIMIT %s"
            ).format(sql.Identifier(self.table), where)
            rows = self._rows(conn, query, [top, *params, limit])
        rows.reverse()
        return [(row[0], written(row[1], row[2])) for row in rows], top

    def following(
        self, after: int, limit: int, filters: Mapping[str, str], chosen: frozenset[int] | None
    ) -> tuple[list[tuple[int, bytes]], int]:
        """The first `limit` records after id `after` that hold the filters' values, of the origins
        `chosen`, as (id, line); and the last id looked at (the next cursor)."""
        with self.reading() as conn:
            origins = self.sums.refresh()
            top = self._top(conn)
            where, params = self._where(filters, chosen, origins)
            query = sql.SQL(
                "SELECT t.id, t.line, t.raw FROM {} AS t WHERE t.id > %s AND t.id <= %s AND {} ORDER BY t.id LIMIT %s"
            ).format(sql.Identifier(self.table), where)
            rows = self._rows(conn, query, [max(after, 0), top, *params, limit])
        found = [(row[0], written(row[1], row[2])) for row in rows]
        return found, found[-1][0] if len(found) == limit else max(after, top)

    def newer(self, seen: int, chosen: frozenset[int] | None) -> tuple[list[tuple[int, bytes]], int]:
        """The records after id `seen` of the origins `chosen` (LIVE_PAGE at most), and the last id
        looked at."""
        return self.following(seen, LIVE_PAGE, {}, chosen)

    # ---- the records after a fault of the chain

    def marks(self, first_fault: int, window: Window, chosen: frozenset[int] | None) -> Marks:
        """The clients, and the spend rows (bucket, by, key), that records from id `first_fault` on
        count in within `window`."""
        found = Marks()
        with self.reading() as conn:
            origins = self.sums.refresh()
            where, params = self._where({}, chosen, origins)
            days: list[sql.Composable] = []
            if window.since is not None:
                days.append(sql.SQL("h.hour >= %s"))
                params.append(window.since[:DAY])
            if window.until is not None:
                days.append(sql.SQL("h.hour < %s"))
                params.append(day_before(window.until))
            query = sql.SQL(
                """SELECT t.client, t.event, h.hour, t.provider, t.model FROM {} AS t
                CROSS JOIN LATERAL (SELECT left(tollgate_str(tollgate_json(t.line)->'ts'), 13) AS hour) AS h
                WHERE t.id >= %s AND t.event = ANY(%s) AND length(h.hour) = 13 AND {} AND {}
                GROUP BY 1, 2, 3, 4, 5"""
            ).format(sql.Identifier(self.table), where, sql.SQL(" AND ").join(days) if days else sql.SQL("true"))
            rows = self._rows(conn, query, [first_fault, list(SUMMED), *params])
        for client, event, hour, provider, model in rows:
            found.clients.add(client)
            if event == "llm_call":
                for by, name in (("provider", provider), ("model", model), ("client", client)):
                    found.spend.add((f"{hour[:DAY]}T00:00:00Z", by, name))
                    found.spend.add((f"{hour}:00:00Z", by, name))
        return found


def shown_record(table: str, row_id: int, line: bytes) -> dict[str, Any]:
    """A row's record as written; a line that is no record as the console's marker."""
    record = read_record(line)
    if record is None or record.get("event") == BAD_LINE:
        return {
            "event": BAD_LINE,
            "table": table,
            "id": row_id,
            "length": len(line) + 1,
        }  # with its newline, as a file's
    return record
