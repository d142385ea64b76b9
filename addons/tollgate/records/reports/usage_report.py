"""`tollgate usage`: requests, tokens and cost per client, group, model, … summed over the ledger's
call rows or over audit files.

Both sources become the same `ReportedCall`s, and one pure function (`aggregate`) sums them, so that the
ledger and the audit of the same calls give the same report. Money is summed as `Decimal`: a month
of calls costing fractions of a cent each, summed as floats, drifts by more than the calls' own
precision (nano-dollars)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from tollgate.common.shown import NANO, caller_name, usd_text

KEYS = ("client", "group", "provider", "requested_provider", "model", "endpoint", "day", "month", "status", "decision")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "cache_write_tokens")
FORMATS = ("table", "json", "csv")
TOTAL_LABEL = "(total)"

Value = str | int | None  # one group-by key's value


@dataclass(frozen=True, slots=True)
class ReportedCall:
    """What the report needs of one call: an audit record's or a ledger call row's fields."""

    ts: float  # epoch seconds
    client: str | None
    groups: tuple[str, ...]
    provider: str | None
    requested_provider: str | None
    model: str | None
    endpoint: str | None
    status: int | None
    decision: str | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal | None  # None: no known price


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record the report skips, and why: `where` is `file:line` or `ledger row N`."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class Sums:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0  # calls that used tokens but have no known cost: cost_usd leaves them out

    def add(self, call: ReportedCall) -> None:
        self.requests += 1
        self.input_tokens += call.input_tokens
        self.output_tokens += call.output_tokens
        self.total_tokens += call.total_tokens
        self.cached_tokens += call.cached_tokens
        self.cache_write_tokens += call.cache_write_tokens
        if call.cost_usd is not None:
            self.cost_usd += call.cost_usd
        elif call.input_tokens or call.output_tokens or call.total_tokens:
            self.unpriced += 1


SUM_FIELDS = tuple(f.name for f in fields(Sums))


@dataclass(frozen=True, slots=True)
class Report:
    by: tuple[str, ...]
    since: float
    rows: tuple[tuple[tuple[Value, ...], Sums], ...]  # (the keys' values, their sums), costliest first
    total: Sums  # every call once, also when grouped by group


# ---- --since and --by


_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """The epoch that `--since` names: a span back from now (90s, 30m, 24h, 7d), or an ISO date or
    datetime, taken as UTC unless it gives its own offset."""
    text = text.strip()
    if m := _RELATIVE.fullmatch(text):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if not seconds > 0:
            raise ValueError(f"--since {text}: a span must be longer than 0")
        return now - seconds
    try:
        moment = datetime.fromisoformat(text)  # a date alone: its midnight
    except ValueError:
        raise ValueError(
            f"--since {text!r}: neither a span (90s, 30m, 24h, 7d) nor an ISO date or datetime (2026-11-01,"
            " 2026-11-01T08:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_by(text: str) -> tuple[str, ...]:
    """The group-by keys of `--by client,model`, in order, each once."""
    keys = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not keys:
        raise ValueError(f"--by: name one or more of {', '.join(KEYS)}")
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        raise ValueError(f"--by: unknown key {', '.join(map(repr, unknown))}; the keys are {', '.join(KEYS)}")
    return keys


# ---- records in, calls out


def iso_epoch(text: str) -> float:
    """An audit `ts` (ISO 8601, UTC: 2026-11-22T08:30:00.123Z) in epoch seconds."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def call_of(record: Mapping[str, Any]) -> ReportedCall:
    """A `ReportedCall` from a call row (`ts` in epoch seconds); ValueError names the first field that is
    not what the audit and the ledger write."""
    ts: Any = record.get("ts")
    if not _is_number(ts) or not math.isfinite(ts):
        raise ValueError(f"ts: {ts!r} is not a time")
    groups = record.get("groups") or ()
    if not isinstance(groups, list | tuple) or not all(isinstance(g, str) for g in groups):
        raise ValueError(f"groups: {groups!r} is not a list of names")
    return ReportedCall(
        ts=float(ts),
        client=_text(record, "client"),
        groups=tuple(groups),
        provider=_text(record, "provider"),
        requested_provider=_text(record, "requested_provider"),
        model=_text(record, "model"),
        endpoint=_text(record, "endpoint"),
        status=_count(record, "status"),
        decision=_text(record, "decision"),
        input_tokens=_count(record, "input_tokens") or 0,
        output_tokens=_count(record, "output_tokens") or 0,
        total_tokens=_count(record, "total_tokens") or 0,
        cached_tokens=_count(record, "cached_tokens") or 0,
        cache_write_tokens=_count(record, "cache_write_tokens") or 0,
        cost_usd=_cost(record),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a string")
    return value


def _count(record: Mapping[str, Any], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: {value!r} is not a count")
    return value


def _cost(record: Mapping[str, Any]) -> Decimal | None:
    # The spec gives call rows `cost_usd` (a float, as the audit has it) but keeps money in stores as
    # integer nano-dollars; a row that carries those as `cost_nanousd` is read exactly from them.
    nano = record.get("cost_nanousd")
    if nano is not None:
        if not isinstance(nano, int) or isinstance(nano, bool) or nano < 0:
            raise ValueError(f"cost_nanousd: {nano!r} is not a count")
        return nano * NANO
    value = record.get("cost_usd")
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"cost_usd: {value!r} is not an amount")
    # str(), not Decimal(float): the float's shortest text is the decimal the audit wrote (rounded
    # to nano-dollars), where Decimal(0.1) would carry the float's binary error into the sum.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def audit_objects(lines: Iterable[bytes], name: str) -> Iterator[tuple[int, dict[str, Any]] | SkippedRecord]:
    """Each record of an audit file's lines with its line number, and a `SkippedRecord` for each line
    that is no JSON object, named `name:line` (empty lines skipped)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield SkippedRecord(f"{name}:{number}", f"not JSON ({e})")
            continue
        if not isinstance(record, dict):
            yield SkippedRecord(f"{name}:{number}", "not a JSON object")
            continue
        yield number, record


def audit_calls(lines: Iterable[bytes], name: str) -> Iterator[ReportedCall | SkippedRecord]:
    """The calls of an audit file's lines (`event == "llm_call"`; others are not calls), and a
    `SkippedRecord` for each line that cannot be read, named `name:line`."""
    for read in audit_objects(lines, name):
        if isinstance(read, SkippedRecord):
            yield read
            continue
        number, record = read
        if record.get("event") != "llm_call":
            continue
        try:
            ts = record.get("ts")
            if not isinstance(ts, str):
                raise ValueError(f"ts: {ts!r} is not an ISO 8601 time")
            try:
                record["ts"] = iso_epoch(ts)
            except ValueError:
                raise ValueError(f"ts: {ts!r} is not an ISO 8601 time") from None
            yield call_of(record)
        except ValueError as e:
            yield SkippedRecord(f"{name}:{number}", str(e))


def audit_file_calls(paths: Iterable[Path]) -> Iterator[ReportedCall | SkippedRecord]:
    """`audit_calls` of each file in turn; OSError when one cannot be read."""
    for path in paths:
        with path.open("rb") as lines:
            yield from audit_calls(lines, str(path))


def ledger_calls(rows: Iterable[Mapping[str, Any]]) -> Iterator[ReportedCall | SkippedRecord]:
    """The calls of the ledger store's call rows (`Store.calls`), and a `SkippedRecord` for each row
    that cannot be read."""
    for number, row in enumerate(rows, 1):
        try:
            yield call_of(row)
        except ValueError as e:
            yield SkippedRecord(f"ledger row {number}", str(e))


# ---- the sums


def key_values(call: ReportedCall, key: str) -> tuple[Value, ...]:
    """The values a call has for one group-by key: one, except for `group`, where a call in
    several groups has each (and a call in none has None)."""
    if key == "group":
        return tuple(sorted(set(call.groups))) or (None,)
    if key == "day":
        return (datetime.fromtimestamp(call.ts, UTC).strftime("%Y-%m-%d"),)
    if key == "month":
        return (datetime.fromtimestamp(call.ts, UTC).strftime("%Y-%m"),)
    value: Value = getattr(call, key)
    return (value,)


def aggregate(calls: Iterable[ReportedCall], by: Sequence[str], since: float = -math.inf) -> Report:
    """The sums per value of the `by` keys of the calls at or after `since`, costliest first (then
    most requests), and the total, which counts every call once."""
    groups: dict[tuple[Value, ...], Sums] = {}
    total = Sums()
    for call in calls:
        if call.ts < since:
            continue
        total.add(call)
        for key in itertools.product(*(key_values(call, k) for k in by)):
            sums = groups.get(key)
            if sums is None:
                sums = groups[key] = Sums()
            sums.add(call)
    return Report(tuple(by), since, tuple(sorted(groups.items(), key=_order)), total)


def _order(row: tuple[tuple[Value, ...], Sums]) -> tuple[Any, ...]:
    key, sums = row
    # Ties in key order, for output that does not depend on the calls' order.
    return (-sums.cost_usd, -sums.requests, [(v is None, str(v)) for v in key])


# ---- output


def iso_time(epoch: float) -> str:
    """As the audit writes times: 2026-11-22T08:30:00.123Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: Value | Decimal) -> str:
    if isinstance(value, Decimal):
        return usd_text(value)
    return "" if value is None else str(value)


def _key_cells(by: Sequence[str], key: tuple[Value, ...], missing: str) -> list[str]:
    """A row's values of the `by` keys: a caller no client names is `(anonymous)`; another value the
    call does not have (a client in no group) is `missing`."""
    return [
        caller_name(None) if k == "client" and v is None else _cell(v) or missing for k, v in zip(by, key, strict=True)
    ]


def _numbers(sums: Sums) -> list[str]:
    return [_cell(getattr(sums, name)) for name in SUM_FIELDS]


# The table's short headers for SUM_FIELDS: the whole names make it wider than a terminal.
_TABLE_HEADERS = ("requests", "input", "output", "total", "cached", "cache_write", "cost_usd", "unpriced")


def notes(report: Report, malformed: int) -> list[str]:
    """What a reader of the sums must know besides them."""
    lines = [f"calls since {iso_time(report.since)}" if math.isfinite(report.since) else "every call"]
    if "group" in report.by:
        lines.append("a call in several groups counts in each group's row; the total counts it once")
    if report.total.unpriced:
        n = report.total.unpriced
        lines.append(f"{_calls(n)} used tokens but had no known price (unpriced): {'its' if n == 1 else 'their'}"
                     " cost is not in cost_usd")  # fmt: skip
    if malformed:
        lines.append(f"{records(malformed)} skipped (see standard error)")
    return lines


def _calls(n: int) -> str:
    return "1 call" if n == 1 else f"{n} calls"


def records(n: int) -> str:
    return "1 malformed record" if n == 1 else f"{n} malformed records"


def table(report: Report, malformed: int = 0) -> str:
    head = [*report.by, *_TABLE_HEADERS]
    body = [_key_cells(report.by, key, "-") + _numbers(sums) for key, sums in report.rows]
    total = [TOTAL_LABEL, *[""] * (len(report.by) - 1), *_numbers(report.total)]
    widths = [max(len(row[i]) for row in (head, *body, total)) for i in range(len(head))]
    keys = len(report.by)

    def line(row: list[str]) -> str:
        cells = [c.ljust(w) if i < keys else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    return "\n".join([line(head), rule, *map(line, body), rule, line(total), "", *notes(report, malformed)]) + "\n"


def _json_object(items: Iterable[tuple[str, Value | Decimal]]) -> str:
    # Amounts as JSON numbers written from their exact decimal text, which json.dumps cannot do.
    return "{" + ", ".join(f"{json.dumps(k)}: {_json_value(v)}" for k, v in items) + "}"


def _json_value(value: Value | Decimal) -> str:
    return usd_text(value) if isinstance(value, Decimal) else json.dumps(value)


def _sums_items(sums: Sums) -> list[tuple[str, int | Decimal]]:
    return [(name, getattr(sums, name)) for name in SUM_FIELDS]


def to_json(report: Report, malformed: int = 0) -> str:
    rows = [_json_object([*zip(report.by, key, strict=True), *_sums_items(sums)]) for key, sums in report.rows]
    since = iso_time(report.since) if math.isfinite(report.since) else None
    return (
        "{\n"
        f'  "since": {json.dumps(since)},\n'
        f'  "by": {json.dumps(list(report.by))},\n'
        '  "rows": [' + ",".join(f"\n    {r}" for r in rows) + ("\n  ],\n" if rows else "],\n")
        + f'  "total": {_json_object(_sums_items(report.total))},\n'
        f'  "malformed": {malformed}\n'
        "}\n"
    )  # fmt: skip


def to_csv(report: Report, malformed: int = 0) -> str:
    """A header row, a row per key, and the total's row (its first key `(total)`). The count of
    malformed records is not CSV: the caller says it on standard error."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.by, *SUM_FIELDS])
    writer.writerows([_key_cells(report.by, key, "") + _numbers(sums) for key, sums in report.rows])
    writer.writerow([TOTAL_LABEL, *[""] * (len(report.by) - 1), *_numbers(report.total)])
    return out.getvalue()


RENDER = {"table": table, "json": to_json, "csv": to_csv}
