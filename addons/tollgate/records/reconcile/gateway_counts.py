"""Tollgate's side of a reconciliation: the calls' tokens per provider, UTC day, upstream key (its
fingerprint, as the audit writes it) and model, from the audit files or from the records' table
(`audit.postgres`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tollgate.records.audit.anchor_verify import seconds
from tollgate.records.reports.inventory import open_audit
from tollgate.records.reports.usage_report import SkippedRecord, audit_objects

CALL = "llm_call"


@dataclass
class Counted:
    """Tokens of one side, summed: every input token (cache reads and writes among them), those read
    from a cache, those written to one, the output, and the requests answered."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    requests: int | None = 0  # None: not counted (Anthropic's usage report)

    def add(self, other: Counted) -> None:
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.output_tokens += other.output_tokens
        if other.requests is not None:
            self.requests = (self.requests or 0) + other.requests

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# (provider, day, upstream key's fingerprint or None, model or None)
CountKey = tuple[str, date, str | None, str | None]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def counted_of(record: dict[str, Any]) -> Counted:
    status = record.get("status")
    answered = isinstance(status, int) and 200 <= status < 300
    return Counted(
        _count(record.get("input_tokens")),
        _count(record.get("cached_tokens")),
        _count(record.get("cache_write_tokens")),
        _count(record.get("output_tokens")),
        1 if answered else 0,
    )


def _day(ts: Any) -> date | None:
    at = seconds(ts)
    return None if at is None else datetime.fromtimestamp(at, UTC).date()


def tally(
    records: Iterable[dict[str, Any]], providers: Collection[str], since: date, until: date
) -> dict[CountKey, Counted]:
    """The calls' sums per provider, day, key and model, for the days from `since` to `until`."""
    sums: dict[CountKey, Counted] = {}
    for record in records:
        if record.get("event") != CALL or record.get("provider") not in providers:
            continue
        day = _day(record.get("ts"))
        if day is None or not since <= day <= until:
            continue
        counted = counted_of(record)
        if not counted.tokens and not counted.requests:
            continue  # refused, or failed before any token: nothing a vendor bills
        key, model = record.get("upstream_key"), record.get("model")
        at = (record["provider"], day, key if isinstance(key, str) else None, model if isinstance(model, str) else None)
        sums.setdefault(at, Counted()).add(counted)
    return sums


def audit_records(paths: Iterable[Path], skipped: list[SkippedRecord]) -> Iterator[dict[str, Any]]:
    """Each record of the audit files (a line that is none kept in `skipped`); OSError when a file
    cannot be read."""
    for path in paths:
        with open_audit(path) as lines:
            for read in audit_objects(lines, str(path)):
                if isinstance(read, SkippedRecord):
                    skipped.append(read)
                else:
                    yield read[1]


def from_table(dsn: str, table: str, providers: Collection[str], since: date, until: date) -> dict[CountKey, Counted]:
    """The same sums, asked of the records' table: summed by PostgreSQL, the key read from each
    record's line. psycopg.Error when it cannot be read."""
    import psycopg
    from psycopg import sql

    start = datetime.combine(since, time(), UTC)
    end = datetime.combine(until + timedelta(days=1), time(), UTC)
    query = sql.SQL(
        "SELECT provider, (ts AT TIME ZONE 'UTC')::date, line::jsonb ->> 'upstream_key', model,"
        " coalesce(sum(greatest(input_tokens, 0)), 0), coalesce(sum(greatest(cached_tokens, 0)), 0),"
        " coalesce(sum(greatest(cache_write_tokens, 0)), 0), coalesce(sum(greatest(output_tokens, 0)), 0),"
        " count(*) FILTER (WHERE status BETWEEN 200 AND 299)"
        " FROM {} WHERE event = %s AND provider = ANY(%s) AND ts >= %s AND ts < %s"
        " AND (coalesce(input_tokens, 0) > 0 OR coalesce(output_tokens, 0) > 0 OR status BETWEEN 200 AND 299)"
        " GROUP BY 1, 2, 3, 4"
    ).format(sql.Identifier(table))
    sums: dict[CountKey, Counted] = {}
    with psycopg.connect(dsn, connect_timeout=10, application_name="tollgate reconcile") as conn:
        for row in conn.execute(query, (CALL, list(providers), start, end)):
            provider, day, key, model, *numbers = row
            sums[(provider, day, key, model)] = Counted(*(int(n) for n in numbers))
    return sums
