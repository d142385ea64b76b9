"""Where the Invoice view reads `tollgate reconcile`'s results: the table `tollgate_reconciliation`
(with `audit.postgres`) or the `reconciliation` records of the audit (without), each read by the
command's own reader (`records/reconcile/kept_results`), which gives, per provider and day, the
results of the newest run that compared it (a day is compared again by each run until it closes:
the vendors revise it), amounts exact (`Decimal`). Here: the console's connection (read-only, its
time bounded) and its place in the audit it follows, and the results as `Result`s. No HTTP, no
scope here (`invoice.py`)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from tollgate.records.reconcile.kept_results import (
    DAY,
    EVENT,
    ROW,
    TABLE,
    Entry,
    exact_json,
    latest,
    record_entries,
    table_entries,
)

if TYPE_CHECKING:
    from tollgate.console.source import Source

__all__ = ["FromRecords", "FromTable", "Result", "Unreadable", "decimal_of", "exact_json"]

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
    body: Mapping[str, Any]


def run_time(at: datetime) -> str:
    """A run's time as the records write theirs (UTC, to the millisecond)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def newest(entries: Iterable[Entry], since: str, until: str) -> list[Result]:
    """The results of the newest run per provider and day from `since` to `until` (`latest`), in day
    and provider order, each run's rows in the order written, then its day."""
    found = []
    for (provider, day), held in latest(entries).items():
        if not since <= day <= until:
            continue
        at = run_time(held.run_at)
        found += [Result(at, provider, day, ROW, body) for body in held.rows]
        if held.day is not None:
            found.append(Result(at, provider, day, DAY, held.day))
    return sorted(found, key=lambda r: (r.day, r.provider))


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
                entries = list(table_entries(self._conn, since, until))
            except psycopg.Error as e:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                why = (str(e).strip().splitlines() or [type(e).__name__])[0]
                print(f"tollgate console: {TABLE} cannot be read: {why}", file=sys.stderr, flush=True)
                raise Unreadable(f"{TABLE} cannot be read: {why}") from None
        return newest(entries, since, until)

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
        self._read: dict[int, list[Entry]] = {}  # record number → its results

    def results(self, since: str, until: str) -> list[Result]:
        with self.source.lock:
            self._catch_up()
            kept = [e for entries in self._read.values() for e in entries if since <= e.day <= until]
        return newest(kept, since, until)

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
    def _results_of(line: bytes) -> list[Entry]:
        """A record's results, read from its line as written (parsed by the source, its amounts
        would be binary floats)."""
        try:
            exact = exact_json(line)
        except ValueError:
            return []
        return list(record_entries([exact]))

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
