"""Where the Invoice view reads `tollgate reconcile`'s results: the table `tollgate_reconciliation`
(with `audit.postgres`) or the `reconciliation` records of the audit (without). Either gives, per
provider and day, the results of the newest run that compared it (a day is compared again by each
run until it closes: the vendors revise it), as `Result`s. Amounts are read exactly (`Decimal`),
never as binary floats. No HTTP, no scope here (`invoice.py`)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollgate.console.source import Source

TABLE = "tollgate_reconciliation"
EVENT = "reconciliation"  # the audit record of a run without audit.postgres
CONNECT_SECONDS = 5
STATEMENT_SECONDS = 20
KEPT_RECORDS = 10_000  # the reconciliation records kept read (a run a day: decades)


class Unreadable(RuntimeError):
    """The results cannot be read now (the database is down); its message one line, no DSN."""


@dataclass(frozen=True, slots=True)
class Result:
    """One result of the newest run of its provider and day: a row (a vendor key and model) or the
    day's totals, as `tollgate reconcile` wrote it (amounts as `Decimal`), and when that run was."""

    run_at: str
    provider: str
    day: str
    kind: str  # row or day
    body: dict[str, Any]


def exact_json(text: str | bytes) -> Any:
    """JSON with every number that has a fraction read as a `Decimal`, as written."""
    return json.loads(text, parse_float=Decimal)


def newest(found: Iterable[Result]) -> list[Result]:
    """The results of the newest run per provider and day (of two runs at the same time, the one
    read last), in day and provider order."""
    runs: dict[tuple[str, str], str] = {}
    kept: list[Result] = list(found)
    for result in kept:
        key = (result.provider, result.day)
        if result.run_at >= runs.get(key, ""):
            runs[key] = result.run_at
    chosen = [r for r in kept if r.run_at == runs[(r.provider, r.day)]]
    return sorted(chosen, key=lambda r: (r.day, r.provider))


def _result(run_at: str, kind: str, body: Any) -> Result | None:
    """A row or day as written, or None when it names no provider or no day (it is skipped)."""
    if not isinstance(body, dict):
        return None
    provider, day = body.get("provider"), body.get("day")
    if not isinstance(provider, str) or not isinstance(day, str):
        return None
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    return Result(run_at, provider, day, kind, body)


class FromTable:
    """The results in `tollgate_reconciliation`, read with `dsn` (the console's role), read-only."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._lock = threading.Lock()

    def results(self, since: str, until: str) -> list[Result]:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_SECONDS,
                                                 application_name="tollgate-console")  # fmt: skip
                    self._conn.execute("SET default_transaction_read_only = on")
                    self._conn.execute(f"SET statement_timeout = {STATEMENT_SECONDS * 1000}")
                made = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
                if not made or not made[0]:
                    return []  # no run yet
                # The newest run of each provider and day in the window, then its rows and its day.
                rows = self._conn.execute(
                    f"SELECT to_char(r.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), r.kind,"
                    f" r.body::text FROM {TABLE} r JOIN (SELECT provider, day, max(run_at) AS run_at FROM {TABLE}"
                    f" WHERE day BETWEEN %s AND %s GROUP BY provider, day) n"
                    f" ON r.provider = n.provider AND r.day = n.day AND r.run_at = n.run_at",
                    (since, until),
                ).fetchall()
            except psycopg.Error as e:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                why = (str(e).strip().splitlines() or [type(e).__name__])[0]
                print(f"tollgate console: {TABLE} cannot be read: {why}", file=sys.stderr, flush=True)
                raise Unreadable(f"{TABLE} cannot be read: {why}") from None
        found = []
        for run_at, kind, body in rows:
            result = _result(run_at, kind, exact_json(body))
            if result is not None:
                found.append(result)
        return newest(found)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None


class FromRecords:
    """The results in the `reconciliation` records of the audit the console reads (`source`):
    each record's `ts` is its run's time."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._looked = 0  # the records looked through for reconciliations
        self._read: dict[int, list[Result]] = {}  # record number → its results

    def results(self, since: str, until: str) -> list[Result]:
        with self.source.lock:
            self._catch_up()
            found = [r for results in self._read.values() for r in results if since <= r.day <= until]
        return newest(found)

    def _catch_up(self) -> None:
        index = self.source.index
        end = len(index)
        event = index.known(EVENT)
        if event is not None:
            events = index.events
            for n in range(self._looked, end):
                if events[n] == event:
                    self._read[n] = self._results_of(self.source.line(n))
            while len(self._read) > KEPT_RECORDS:
                del self._read[min(self._read)]
        self._looked = end

    @staticmethod
    def _results_of(line: bytes) -> list[Result]:
        """A record's results, read from its line as written (parsed by the source, its amounts
        would be binary floats)."""
        try:
            exact = exact_json(line)
        except ValueError:
            return []
        run_at = exact.get("ts") if isinstance(exact, dict) else None
        if not isinstance(run_at, str) or exact.get("event") != EVENT:
            return []
        found = []
        for kind, key in (("row", "rows"), ("day", "days")):
            bodies = exact.get(key)
            for body in bodies if isinstance(bodies, list) else []:
                result = _result(run_at, kind, body)
                if result is not None:
                    found.append(result)
        return found

    def close(self) -> None:
        pass


def decimal_of(value: Any) -> Decimal | None:
    """An amount as written (a number or its text), or None when it is none."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        found = Decimal(value) if isinstance(value, (Decimal, int, str)) else None
    except InvalidOperation:
        return None
    return found if found is not None and found.is_finite() else None
