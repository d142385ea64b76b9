"""The rows of the records' table the console has not checked yet (`table.Table`), read a batch at
a time in `id` order, and the ids it skipped looked for again.

An id can become visible after a greater one (two instances' transactions commit in another order
than they took their ids; a batch rolled back leaves its ids unused): an id skipped is looked for
again at each read for GAP_SECONDS, longer than a sender's statement may last, so that no row goes
unchecked. The rows an instance's progress kept in the database says are checked already come with
their id alone (their columns are not read). Plain code: no HTTP, no mitmproxy."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from tollgate.records.audit import verified
from tollgate.records.senders.audit_postgres import COLUMNS

GAP_SECONDS = 180.0  # an id skipped is looked for this long (a sender's statement is cancelled after 60 s)


class NextRows:
    """The rows of `table` after those read, `batch` at most at a time."""

    def __init__(self, table: str, batch: int) -> None:
        self.table, self.batch = table, batch
        self.last_id = 0  # the greatest id read (or skipped, checked by a console before)
        self.gaps: list[tuple[int, int, float]] = []  # ids skipped below last_id, looked for until the time
        self.skip: dict[str | None, int] = {}  # per instance: its rows up to this id were checked already

    def read(self, conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        """The rows skipped that came since, then the next ones: each (id, checked already, *COLUMNS)."""
        return self._gap_rows(conn) + self._next_rows(conn)

    def _query(self, where: str) -> sql.Composed:
        """The rows `where` keeps, each with whether it was checked already (its instance's
        progress: then its columns are not read, only its id, for the ids skipped)."""
        if not self.skip:
            columns = sql.SQL(", ").join(sql.Identifier("t", c) for c in COLUMNS)
            return sql.SQL("SELECT t.id, false, {} FROM {} AS t WHERE {} ORDER BY t.id").format(
                columns, sql.Identifier(self.table), sql.SQL(where)
            )
        columns = sql.SQL(", ").join(sql.Identifier("c", c) for c in COLUMNS)
        inner = sql.SQL(", ").join(sql.Identifier("t", c) for c in COLUMNS)
        return sql.SQL(
            """SELECT t.id, d.done, {columns} FROM {table} AS t
            CROSS JOIN LATERAL (SELECT t.id <= coalesce((SELECT s.upto
                FROM unnest(%(skip_instances)s::text[], %(skip_ids)s::bigint[]) AS s(instance, upto)
                WHERE s.instance = coalesce(t.instance, '')), 0) AS done) AS d
            LEFT JOIN LATERAL (SELECT {inner} WHERE NOT d.done) AS c ON true
            WHERE {where} ORDER BY t.id"""
        ).format(columns=columns, table=sql.Identifier(self.table), inner=inner, where=sql.SQL(where))

    def _params(self, **more: Any) -> dict[str, Any]:
        skip = {"skip_instances": [verified.NONE if i is None else i for i in self.skip],
                "skip_ids": list(self.skip.values())}  # fmt: skip
        return {**skip, **more} if self.skip else more

    def _next_rows(self, conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        query = self._query("t.id > %(after)s") + sql.SQL(" LIMIT %(batch)s")
        rows = conn.execute(query, self._params(after=self.last_id, batch=self.batch)).fetchall()
        expected, until = self.last_id + 1, time.monotonic() + GAP_SECONDS
        for n, row in enumerate(rows):
            if row[0] > expected and (
                n or self.last_id
            ):  # not committed yet, or rolled back (before the first: removed)
                self.gaps.append((expected, row[0] - 1, until))
            expected = row[0] + 1
        if rows:
            self.last_id = rows[-1][0]
        return rows

    def _gap_rows(self, conn: psycopg.Connection) -> list[tuple[Any, ...]]:
        now = time.monotonic()
        self.gaps = [gap for gap in self.gaps if gap[2] > now]
        if not self.gaps:
            return []
        query = self._query("t.id = ANY(%(ids)s)")
        ids = [n for lo, hi, _ in self.gaps for n in range(lo, hi + 1)][: self.batch]
        rows = conn.execute(query, self._params(ids=ids)).fetchall()
        found = {row[0] for row in rows}
        gaps = []
        for lo, hi, until in self.gaps:  # each gap split around the ids found in it
            start = lo
            for n in sorted(i for i in found if lo <= i <= hi):
                if n > start:
                    gaps.append((start, n - 1, until))
                start = n + 1
            if start <= hi:
                gaps.append((start, hi, until))
        self.gaps = gaps
        return rows
