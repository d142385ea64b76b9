"""What the console answers from: the audit's records read once, summed per hour as they come.

Each record line is read once (`Index.add`): its place is kept (file and byte offset, to serve it
again as written), a few small columns to filter the event list by, and its figures added to the
sums of its hour (`ts[:13]`, e.g. `2026-11-22T08`): per person, per provider, model and client,
per refusal kind and client, per finding kind and client, per client and AI service. A view sums
the hours it covers, so that it answers in time proportional to the hours and keys, not to the
records. Plain code: no HTTP, no files (`follow.py` reads them)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate.records.inventory import GOVERNED_CATEGORY, Row, Seen, seen_of

CALL_EVENTS = ("llm_call", "mcp_call")
CONNECTION = "connection"
BAD_LINE = "malformed"  # the `event` column of a line that is no JSON object
HOUR = 13  # len("2026-11-22T08"): a record's hour is the start of its `ts`
DAY = 10


@dataclass(slots=True)
class Person:
    """One person's sums within an hour: a client by name, or an anonymous caller by the
    fingerprint of its key."""

    calls: int = 0
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    connections: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    first_seen: str = "\uffff"
    last_seen: str = ""

    def merge(self, other: Person) -> None:
        self.calls += other.calls
        self.refused += other.refused
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.unpriced += other.unpriced
        self.connections += other.connections
        for kind, n in other.findings.items():
            self.findings[kind] = self.findings.get(kind, 0) + n
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)


@dataclass(slots=True)
class Spend:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class Refusals:
    count: int = 0
    last_reason: str | None = None
    last_seen: str = ""


@dataclass(slots=True)
class Hour:
    """The sums of one hour's records."""

    people: dict[tuple[str | None, str | None], Person] = field(default_factory=dict)
    spend: dict[tuple[str, str | None], Spend] = field(default_factory=dict)  # (provider|model|client, value)
    refusals: dict[tuple[str, str | None], Refusals] = field(default_factory=dict)  # (kind, client)
    findings: dict[tuple[str, str | None], int] = field(default_factory=dict)  # (kind, client)
    services: dict[tuple[str | None, str], Row] = field(default_factory=dict)  # (client, service)
    elsewhere: int = 0


@dataclass(frozen=True, slots=True)
class Place:
    file: int  # the index of the file among those read
    offset: int  # of the line's first byte
    length: int  # of the line, its newline included


@dataclass(slots=True)
class Window:
    """Which hours a view covers: from `since` on, before `until` (hours, `2026-11-22T08`; None:
    unbounded)."""

    since: str | None = None
    until: str | None = None

    def holds(self, hour: str) -> bool:
        return (self.since is None or hour >= self.since) and (self.until is None or hour < self.until)


class Index:
    """Every record added so far: its place, its filter columns, its hour's sums."""

    def __init__(self) -> None:
        self.files = array("i")
        self.offsets = array("q")
        self.lengths = array("i")
        # Filter columns, one entry per record: small numbers standing for strings (`_names`).
        self.clients = array("i")
        self.providers = array("i")
        self.decisions = array("b")  # 0 none, 1 allow, 2 deny
        self.events = array("i")
        self._ids: dict[str | None, int] = {None: 0}
        self._names: list[str | None] = [None]
        self.hours: dict[str, Hour] = {}
        self.malformed = 0

    def __len__(self) -> int:
        return len(self.offsets)

    # ---- records in

    def add(self, file: int, offset: int, line: bytes) -> dict[str, Any] | None:
        """One line of an audit file, read: its record (None for a line that is no JSON object,
        counted as malformed and still listed, as such)."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self.malformed += 1
            self._place(file, offset, len(line), None, None, None, BAD_LINE)
            return None
        event = record.get("event")
        client = record.get("client")
        self._place(file, offset, len(line), _str(client), _str(record.get("provider")), record.get("decision"), event)
        ts = record.get("ts")
        if isinstance(ts, str) and len(ts) >= HOUR:
            try:
                self._sum(ts[:HOUR], ts, record, event)
            except (TypeError, ValueError, AttributeError):
                self.malformed += 1  # a record whose figures are not what the audit writes: listed, not summed
        return record

    def _place(
        self, file: int, offset: int, length: int, client: str | None, provider: str | None, decision: Any, event: Any
    ) -> None:
        self.files.append(file)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.clients.append(self.id(client))
        self.providers.append(self.id(provider))
        self.decisions.append(1 if decision == "allow" else 2 if decision == "deny" else 0)
        self.events.append(self.id(event if isinstance(event, str) else None))

    def id(self, name: str | None) -> int:
        number = self._ids.get(name)
        if number is None:
            number = self._ids[name] = len(self._names)
            self._names.append(name)
        return number

    def known(self, name: str | None) -> int | None:
        """The number standing for `name`, or None when no record has it."""
        return self._ids.get(name)

    def _sum(self, hour: str, ts: str, record: dict[str, Any], event: Any) -> None:
        sums = self.hours.get(hour)
        if sums is None:
            sums = self.hours[hour] = Hour()
        client = _str(record.get("client"))
        if event in CALL_EVENTS:
            self._call(sums, ts, client, record, event)
        elif event == CONNECTION:
            person = _person(sums, client, None)
            person.connections += 1
            _seen(person, ts)
            self._refusal(sums, ts, client, record)
        if event in ("llm_call", CONNECTION):
            self._service(sums, record)

    def _call(self, sums: Hour, ts: str, client: str | None, record: dict[str, Any], event: str) -> None:
        key = None if client is not None else _str(record.get("upstream_key"))
        person = _person(sums, client, key)
        person.calls += 1
        denied = record.get("decision") == "deny"
        if denied:
            person.refused += 1
        inputs, outputs = _int(record.get("input_tokens")), _int(record.get("output_tokens"))
        cost = record.get("cost_usd")
        person.input_tokens += inputs
        person.output_tokens += outputs
        if isinstance(cost, (int, float)):
            person.cost_usd += cost
        elif event == "llm_call" and (inputs or outputs):
            person.unpriced += 1  # tokens used at no known price
        _seen(person, ts)
        for name in ("findings", "answer_findings"):
            found = record.get(name)
            if isinstance(found, dict):
                for kind, value in found.items():
                    n = _int(value)
                    person.findings[kind] = person.findings.get(kind, 0) + n
                    sums.findings[(kind, client)] = sums.findings.get((kind, client), 0) + n
        if event == "llm_call":
            price = cost if isinstance(cost, (int, float)) else 0.0
            for by in (("provider", _str(record.get("provider"))), ("model", _str(record.get("model")))):
                self._spent(sums, by, inputs, outputs, price)
            self._spent(sums, ("client", client), inputs, outputs, price)
        self._refusal(sums, ts, client, record)

    @staticmethod
    def _spent(sums: Hour, by: tuple[str, str | None], inputs: int, outputs: int, price: float) -> None:
        spend = sums.spend.get(by)
        if spend is None:
            spend = sums.spend[by] = Spend()
        spend.calls += 1
        spend.input_tokens += inputs
        spend.output_tokens += outputs
        spend.cost_usd += price

    @staticmethod
    def _refusal(sums: Hour, ts: str, client: str | None, record: dict[str, Any]) -> None:
        kind = record.get("refusal")
        if not isinstance(kind, str):
            return
        refusals = sums.refusals.get((kind, client))
        if refusals is None:
            refusals = sums.refusals[(kind, client)] = Refusals()
        refusals.count += 1
        if ts >= refusals.last_seen:
            reasons = record.get("deny_reasons")
            refusals.last_reason = "; ".join(map(str, reasons)) if reasons else _str(record.get("error"))
            refusals.last_seen = ts

    @staticmethod
    def _service(sums: Hour, record: dict[str, Any]) -> None:
        seen = seen_of(record)
        if seen is None:
            return
        if seen.service is None:
            sums.elsewhere += 1
            return
        row = sums.services.get((seen.client, seen.service))
        if row is None:
            row = sums.services[(seen.client, seen.service)] = Row(seen.client, seen.service, seen.category)
        row.add(seen)

    # ---- the views

    def selected(self, window: Window) -> Iterator[Hour]:
        for hour, sums in self.hours.items():
            if window.holds(hour):
                yield sums

    def people(self, window: Window) -> list[dict[str, Any]]:
        people: dict[tuple[str | None, str | None], Person] = {}
        for sums in self.selected(window):
            for who, person in sums.people.items():
                whole = people.get(who)
                if whole is None:
                    whole = people[who] = Person()
                whole.merge(person)
        rows = []
        for (client, key), p in sorted(
            people.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1] or "")
        ):
            rows.append({
                "client": client, "key": key, "calls": p.calls, "refused": p.refused,
                "input_tokens": p.input_tokens, "output_tokens": p.output_tokens, "cost_usd": round(p.cost_usd, 9),
                "unpriced": p.unpriced, "findings": dict(sorted(p.findings.items())),
                "connections": p.connections, "first_seen": p.first_seen, "last_seen": p.last_seen,
            })  # fmt: skip
        return rows

    def spend(self, window: Window, by: str, bucket: str) -> list[dict[str, Any]]:
        size = DAY if bucket == "day" else HOUR
        sums: dict[tuple[str, str | None], Spend] = {}
        for hour, h in self.hours.items():
            if not window.holds(hour):
                continue
            for (dimension, value), s in h.spend.items():
                if dimension != by:
                    continue
                key = (hour[:size], value)
                whole = sums.get(key)
                if whole is None:
                    whole = sums[key] = Spend()
                whole.calls += s.calls
                whole.input_tokens += s.input_tokens
                whole.output_tokens += s.output_tokens
                whole.cost_usd += s.cost_usd
        return [
            {"bucket": _bucket_time(b), "key": k, "calls": s.calls, "input_tokens": s.input_tokens,
             "output_tokens": s.output_tokens, "cost_usd": round(s.cost_usd, 9)}
            for (b, k), s in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ]  # fmt: skip

    def refusals(self, window: Window) -> list[dict[str, Any]]:
        sums: dict[tuple[str, str | None], Refusals] = {}
        for h in self.selected(window):
            for key, r in h.refusals.items():
                whole = sums.get(key)
                if whole is None:
                    whole = sums[key] = Refusals()
                whole.count += r.count
                if r.last_seen >= whole.last_seen:
                    whole.last_reason, whole.last_seen = r.last_reason, r.last_seen
        return [
            {"kind": kind, "client": client, "count": r.count, "last_reason": r.last_reason, "last_seen": r.last_seen}
            for (kind, client), r in sorted(sums.items(), key=lambda kv: (-kv[1].count, kv[0][0], kv[0][1] or ""))
        ]

    def findings(self, window: Window) -> list[dict[str, Any]]:
        sums: dict[tuple[str, str | None], int] = {}
        for h in self.selected(window):
            for key, n in h.findings.items():
                sums[key] = sums.get(key, 0) + n
        return [
            {"kind": kind, "client": client, "count": n}
            for (kind, client), n in sorted(sums.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
        ]

    def inventory(self, window: Window) -> list[dict[str, Any]]:
        """The rows of `tollgate inventory --json` over the hours the window covers."""
        rows: dict[tuple[str | None, str], Row] = {}
        for h in self.selected(window):
            for key, r in h.services.items():
                whole = rows.get(key)
                if whole is None:
                    whole = rows[key] = Row(r.client, r.service, r.category)
                _merge_row(whole, r)
        ordered = sorted(rows.values(), key=lambda r: (r.client is None, r.client or "", r.service))
        return [_inventory_row(r) for r in ordered]

    # ---- the event list

    def matching(self, before: int, limit: int, filters: Mapping[str, array | int]) -> list[int]:
        """The numbers of the last `limit` records before record `before` whose columns hold the
        filters' values, oldest first."""
        found: list[int] = []
        columns = [(getattr(self, name), value) for name, value in filters.items()]
        i = min(before, len(self))
        while i > 0 and len(found) < limit:
            i -= 1
            if all(column[i] == value for column, value in columns):
                found.append(i)
        found.reverse()
        return found

    def following(self, after: int, limit: int, filters: Mapping[str, array | int]) -> tuple[list[int], int]:
        """The numbers of the first `limit` records after record `after` (-1: from the first)
        whose columns hold the filters' values, and the last record looked at."""
        found: list[int] = []
        columns = [(getattr(self, name), value) for name, value in filters.items()]
        last = after
        for i in range(after + 1, len(self)):
            last = i
            if all(column[i] == value for column, value in columns):
                found.append(i)
                if len(found) == limit:
                    break
        return found, last


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _person(sums: Hour, client: str | None, key: str | None) -> Person:
    person = sums.people.get((client, key))
    if person is None:
        person = sums.people[(client, key)] = Person()
    return person


def _seen(person: Person, ts: str) -> None:
    person.first_seen = min(person.first_seen, ts)
    person.last_seen = max(person.last_seen, ts)


def _bucket_time(bucket: str) -> str:
    """An hour (`2026-11-22T08`) or a day (`2026-11-22`) as the time it starts."""
    return f"{bucket}:00:00Z" if len(bucket) == HOUR else f"{bucket}T00:00:00Z"


def _merge_row(whole: Row, part: Row) -> None:
    whole.calls += part.calls
    whole.connections += part.connections
    whole.refused += part.refused
    whole.bytes_sent += part.bytes_sent
    whole.bytes_received += part.bytes_received
    whole.first_seen = min(whole.first_seen, part.first_seen)
    whole.last_seen = max(whole.last_seen, part.last_seen)
    if whole.category is None:
        whole.category = part.category


def _inventory_row(row: Row) -> dict[str, Any]:
    from tollgate.records.usage_report import iso_time

    return {
        "client": row.client, "service": row.service, "category": row.category, "calls": row.calls,
        "connections": row.connections, "refused": row.refused, "bytes_sent": row.bytes_sent,
        "bytes_received": row.bytes_received,
        "first_seen": iso_time(row.first_seen) if math.isfinite(row.first_seen) else None,
        "last_seen": iso_time(row.last_seen) if math.isfinite(row.last_seen) else None,
    }  # fmt: skip


def hour_of(text: str) -> str:
    """A `since`/`until` value (an ISO date or time, UTC) as the hour it falls in; ValueError
    when it is neither."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H")


__all__ = ["GOVERNED_CATEGORY", "Index", "Seen", "Window", "hour_of"]


def lines_of(data: bytes) -> Iterable[tuple[int, bytes]]:
    """The whole lines of `data` with their offsets (a last line without its newline left out)."""
    start = 0
    while (end := data.find(b"\n", start)) != -1:
        yield start, data[start : end + 1]
        start = end + 1
