"""What a day of the audit's records adds up to, for the console's views (`index.Index` keeps one
`Day` of sums per UTC day): each person's calls, tokens, cost, findings and models; the spend by
provider, model and client; the refusals and findings by kind and client; each client's AI
services; each kept per origin (`index.Origin`, by its number) where it is by client, so that a
view sums the origins its viewer may see. And what a view covers (`Window`). Plain code: no HTTP,
no files.

Money is summed exactly, as integer nano-dollars (the audit writes a cost to the nano-dollar), the
way `tollgate usage` sums it as `Decimal` and PostgreSQL as `numeric`: a year of calls costing
fractions of a cent each, summed as floats, drifts; a view gives each sum as the JSON number
nearest to it (`usd`)."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast

from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.records.reports.inventory import GOVERNED_CATEGORY

HOUR = 13  # len("2026-11-22T08"): a record's hour is the start of its `ts`
DAY = 10
SPEND_BY = {"provider": 0, "model": 1, "client": 2}  # where each is in a day's spend key
FAST_NANO = 1e5  # below this many dollars, a cost times 1e9 rounds to its nano-dollars exactly
CONNECTION = "connection"
DENY = 2  # the decisions column's value for a record denied
# The types a record's findings and deny_reasons are written as (or null): any other is no record the audit writes.
MAPPING = frozenset((dict, type(None)))
LISTED = frozenset((list, type(None)))
T = TypeVar("T")
COST_MAX = 2**53  # nano-dollars: a record's cost beyond is of no call (a day's sums stay in 64 bits)


@dataclass(slots=True)
class Person:
    """One person's sums within a day: a client by name, or an anonymous caller by the
    fingerprint of its key."""

    calls: int = 0
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nano: int = 0  # nano-dollars
    unpriced: int = 0
    connections: int = 0
    findings: dict[str, int] | None = None  # by kind; None until one is found (most calls find none)
    first_seen: str = "\uffff"
    last_seen: str = ""
    models: dict[str, int] | None = None  # the `llm_call`s per model called; None until one names a model

    def merge(self, other: Person) -> None:
        self.calls += other.calls
        self.refused += other.refused
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_nano += other.cost_nano
        self.unpriced += other.unpriced
        self.connections += other.connections
        if other.findings:
            found = self.findings if self.findings is not None else {}
            for kind, n in other.findings.items():
                found[kind] = found.get(kind, 0) + n
            self.findings = found
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        if other.models:
            models = self.models if self.models is not None else {}
            for model, n in other.models.items():
                models[model] = models.get(model, 0) + n
            self.models = models


@dataclass(slots=True)
class Spend:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nano: int = 0


@dataclass(slots=True)
class Refusals:
    count: int = 0
    last_reason: str | None = None
    last_seen: str = ""


@dataclass(slots=True)
class ServiceDay:
    """A client's use of a service within a day: `tollgate inventory`'s row, its times as the
    records' `ts`."""

    category: str | None
    calls: int = 0
    connections: int = 0
    refused: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    first_seen: str = "\uffff"
    last_seen: str = ""


@dataclass(slots=True)
class Day:
    """The sums of one UTC day's records, by origin (its number) where they are by client."""

    people: dict[tuple[int, str | None], Person] = field(default_factory=dict)  # (origin, anonymous key)
    # (provider, model, origin): the calls of each together (a model is mostly of one provider, so
    # that these are fewer than sums by provider, by model and by client, each per origin), as where
    # their figures start in `figures`: calls, input tokens, output tokens, cost, in a row. Kept flat,
    # as a year holds days × models × origins of them: a third of the memory of an object each.
    spend: dict[tuple[str | None, str | None, int], int] = field(default_factory=dict)
    figures: array = field(default_factory=lambda: array("q"))  # the cost in nano-dollars

    refusals: dict[tuple[str, int], Refusals] = field(default_factory=dict)  # (kind, origin)
    # (kind, origin, where, action): where it was found (`request`, `answer`) and what was done
    # (`finding_action`).
    findings: dict[tuple[str, int, str, str], int] = field(default_factory=dict)
    services: dict[tuple[int, str], ServiceDay] = field(default_factory=dict)  # (origin, service)


@dataclass(frozen=True, slots=True)
class Later:
    """A day's sums restored from a saved index but not made yet: `load` makes them, `saved` gives
    them as they were saved (to be saved again as they are)."""

    load: Callable[[], Day]
    saved: Callable[[], bytes]


class Days:
    """Each UTC day's sums by its date, in the order they came. A day restored from a saved index
    may be `Later`, made when first asked for: a restart is ready before it has parsed a year of
    sums, and a view of 30 days parses 30."""

    __slots__ = ("_days",)

    def __init__(self) -> None:
        self._days: dict[str, Day | Later] = {}

    def get(self, day: str) -> Day | None:
        sums = self._days.get(day)
        if type(sums) is Later:
            sums = self._days[day] = sums.load()
        return cast(Day | None, sums)

    def __getitem__(self, day: str) -> Day:
        sums = self.get(day)
        if sums is None:
            raise KeyError(day)
        return sums

    def __setitem__(self, day: str, sums: Day | Later) -> None:
        self._days[day] = sums

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._days))

    def __len__(self) -> int:
        return len(self._days)

    def held(self) -> list[tuple[str, Day | Later]]:
        """Each day as held: its sums, or `Later` when not made yet."""
        return list(self._days.items())


class DayAdder:
    """What adds each record to its day's sums (`days`): the path every record of a year takes at
    the first open (`index.Index.add_lines` hands it each record read). The one object each key and
    name of the sums stands for (a client, a kind, a reason, a (client, service) pair) is kept once
    (`one`), not once per day and row that holds it."""

    def __init__(self, days: Days) -> None:
        self.days = days
        self.shared: dict[Any, Any] = {}

    def one(self, value: T) -> T:
        """The object kept for `value` (itself, the first time)."""
        return self.shared.setdefault(value, value)

    def add(
        self, ts: str, record: dict[str, Any], event: Any, client: str | None, origin: int, provider: str | None,
        decision: int, inputs: int, outputs: int, cost: Any, price: int | None, model: str | None,
    ) -> bool:  # fmt: skip
        """A record added to its day's sums, each kept per origin (`origin`, whose client is
        `client`); False, and nothing added, when its figures are of another shape than the audit
        writes (checked before any sum takes the record)."""
        get = record.get
        found, answer_found, kind = get("findings"), get("answer_findings"), get("refusal")
        if type(found) not in MAPPING or type(answer_found) not in MAPPING:
            return False
        if type(kind) is str and type(get("deny_reasons")) not in LISTED:
            return False
        if price is None:  # a cost no call has
            return False
        day = ts[:DAY]
        sums = self.days.get(day)
        if sums is None:
            sums = self.days[day] = Day()
        if event == "llm_call" or event == "mcp_call":  # noqa: PLR1714 (two comparisons: a tuple's `in` is slower here)
            denied = decision == DENY
            key = None if client is not None else _str(get("upstream_key"))
            person = sums.people.get((origin, key))
            if person is None:
                person = sums.people[self.one((origin, self.one(key)))] = Person()
            person.calls += 1
            person.refused += denied
            person.input_tokens += inputs
            person.output_tokens += outputs
            person.cost_nano += price
            if cost is None and event == "llm_call" and (inputs or outputs):
                person.unpriced += 1  # tokens used at no known price
            if ts < person.first_seen:  # noqa: PLR1730 (min() is slower on the path every record takes)
                person.first_seen = ts
            if ts > person.last_seen:  # noqa: PLR1730
                person.last_seen = ts
            if found or answer_found:
                self._findings(sums, person, origin, record, found, answer_found)
            if event == "llm_call":
                if model is not None:
                    models = person.models
                    if models is None:
                        models = person.models = {}
                    n = models.get(model)
                    if n is None:
                        models[self.one(model)] = 1  # the one string kept for it, the first time a day
                    else:
                        models[model] = n + 1
                # One sum per provider, model and origin together: a view adds up the one it is by.
                at = sums.spend.get((provider, model, origin))
                figures = sums.figures
                if at is None:
                    at = sums.spend[self.one((provider, model, origin))] = len(figures)
                    figures.extend((0, 0, 0, 0))
                figures[at] += 1
                figures[at + 1] += inputs
                figures[at + 2] += outputs
                figures[at + 3] += price
                service = provider or _str(get("requested_provider")) or _str(get("host"))
                if service is not None:
                    # `_service`, written out here: the path nine records in ten take.
                    row = sums.services.get((origin, service))
                    if row is None:
                        row = self._service(sums, origin, service, GOVERNED_CATEGORY, ts)
                    elif row.category is None:
                        row.category = GOVERNED_CATEGORY
                    if ts < row.first_seen:  # noqa: PLR1730
                        row.first_seen = ts
                    if ts > row.last_seen:  # noqa: PLR1730
                        row.last_seen = ts
                    if denied:
                        row.refused += 1
                    else:
                        row.calls += 1
                    # A call's bodies' bytes with its upstream (null when none went; 0 before the fields).
                    sent = get("bytes_sent")
                    if type(sent) is int and sent > 0:
                        row.bytes_sent += sent
                    received = get("bytes_received")
                    if type(received) is int and received > 0:
                        row.bytes_received += received
        elif event == CONNECTION:
            person = sums.people.get((origin, None))
            if person is None:
                person = sums.people[self.one((origin, None))] = Person()
            person.connections += 1
            seen(person, ts)
            self._connection(sums, origin, decision == DENY, record, ts)
        else:
            return True
        if kind is not None:
            self._refusal(sums, ts, origin, kind, record)
        return True

    def _connection(self, sums: Day, origin: int, denied: bool, record: dict[str, Any], ts: str) -> None:
        service = _str(record.get("service"))
        if service is None and denied:
            # A refused host of no AI service is a row of its own, named by its host (as `tollgate inventory`).
            service = _str(record.get("host"))
        if service is None:
            return  # let through to a host of no AI service: no row
        row = self._service(sums, origin, service, _str(record.get("category")), ts)
        if denied:
            row.refused += 1
        else:
            row.connections += 1
        row.bytes_sent += _int(record.get("bytes_sent"))
        row.bytes_received += _int(record.get("bytes_received"))

    def _refusal(self, sums: Day, ts: str, origin: int, kind: Any, record: dict[str, Any]) -> None:
        if not isinstance(kind, str):
            return
        refusals = sums.refusals.get((kind, origin))
        if refusals is None:
            refusals = sums.refusals[self.one((self.one(kind), origin))] = Refusals()
        refusals.count += 1
        if ts >= refusals.last_seen:
            reasons = record.get("deny_reasons")
            refusals.last_reason = self.one("; ".join(map(str, reasons)) if reasons else _str(record.get("error")))
            refusals.last_seen = ts

    def _findings(
        self, sums: Day, person: Person, origin: int, record: dict[str, Any],
        found: dict[str, Any] | None, answer_found: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        """A call's request and answer findings, each a mapping of kind to count (checked before),
        by where they were and what was done."""
        for where, kinds in (("request", found), ("answer", answer_found)):
            if kinds:
                action = finding_action(record, where)
                for found_kind, value in kinds.items():
                    n = _int(value)
                    if person.findings is None:
                        person.findings = {}
                    kind = self.one(found_kind)
                    person.findings[kind] = person.findings.get(kind, 0) + n
                    key = (kind, origin, where, action)
                    if key in sums.findings:
                        sums.findings[key] += n
                    else:
                        sums.findings[self.one(key)] = n

    def _service(self, sums: Day, origin: int, service: str, category: str | None, ts: str) -> ServiceDay:
        row = sums.services.get((origin, service))
        if row is None:
            row = sums.services[self.one((origin, self.one(service)))] = ServiceDay(self.one(category))
        elif row.category is None:
            row.category = self.one(category)
        if ts < row.first_seen:  # noqa: PLR1730
            row.first_seen = ts
        if ts > row.last_seen:  # noqa: PLR1730
            row.last_seen = ts
        return row


@dataclass(slots=True)
class Window:
    """What a view covers: from `since` on, before `until` (`2026-11-22T08`: an hour; None:
    unbounded). The sums are kept per day: they count the days from `since`'s on and before
    `until`'s (a day that `until` names an hour of counts, whole)."""

    since: str | None = None
    until: str | None = None

    def holds_day(self, day: str) -> bool:
        since, until = self.since, self.until
        return (since is None or day >= since[:DAY]) and (until is None or day < day_before(until))

    def holds_hour(self, hour: str) -> bool:
        return (self.since is None or hour >= self.since) and (self.until is None or hour < self.until)


def day_before(until: str) -> str:
    """The first day not counted under `until`: its own day when it is midnight, else the next."""
    if until.endswith("T00"):
        return until[:DAY]
    from datetime import date, timedelta

    try:
        return (date.fromisoformat(until[:DAY]) + timedelta(days=1)).isoformat()
    except OverflowError:  # 9999-12-31: no day after it; a text after every day's
        return until[:DAY] + "~"


@dataclass(slots=True)
class Unverified:
    """The rows records after a fault of the chain count in: by client (people, refusals,
    findings, AI services) and by (bucket, "provider" | "model" | "client", name) (spend)."""

    clients: set[str | None] = field(default_factory=set)
    spend: set[tuple[str, str, str | None]] = field(default_factory=set)


@dataclass(slots=True)
class UnverifiedDay:
    """What a day's records after a fault of the chain count in, by origin (its number): so that
    a viewer's rows are marked for the records it may see, and no others."""

    origins: set[int] = field(default_factory=set)
    spend: set[tuple[str, str, str | None, int]] = field(default_factory=set)  # (bucket, by, name, origin)


def finding_action(record: Mapping[str, Any], where: str) -> str:
    """What was done with a call's findings in its request or its answer (`where`), as its record
    says: `refused` (`refusal` `content_denied`: for a request's, a call that never had an answer,
    none read and no first byte), `redacted` (some replaced: `redacted`, `answer_redacted`), else
    `recorded`. The page's Live view says the same of each record (`app.js`, `findingAction`)."""
    refused = record.get("refusal") == CONTENT_DENIED
    if where == "request":
        if refused and record.get("answer_findings") is None and record.get("ttfb_ms") is None:
            return "refused"
        replaced = record.get("redacted")
    else:
        if refused:
            return "refused"
        replaced = record.get("answer_redacted")
    return "redacted" if type(replaced) is int and replaced > 0 else "recorded"


def nano_of(cost: Any) -> int | None:
    """A record's `cost_usd` (a JSON number) in nano-dollars, rounded to the nano-dollar it was
    written to; 0 for no number; None for a cost no call has (beyond COST_MAX either way)."""
    if type(cost) is float:
        if -FAST_NANO < cost < FAST_NANO:
            return round(cost * 1e9)  # exact here: the float's error is far below half a nano-dollar
        nano = int(Decimal(repr(cost)).scaleb(9).to_integral_value())
    elif type(cost) is int:
        nano = cost * 1_000_000_000
    else:
        return 0
    return nano if -COST_MAX <= nano <= COST_MAX else None


def usd(nano: int) -> float:
    """Nano-dollars summed, as a view's `cost_usd` gives them: the JSON number nearest the exact sum
    (as PostgreSQL's `numeric` sums are given, `table_sums.py`)."""
    return float(Decimal(nano).scaleb(-9))


def order_of(name: str | None) -> tuple[str, bool]:
    """Where a name (a client, a key) is in a view's rows: by its text, none before an empty one
    (the two are apart, and their order is the same whatever reads the records)."""
    return (name or "", name is not None)


def seen(person: Person, ts: str) -> None:
    if ts < person.first_seen:  # noqa: PLR1730 (min() is slower on the path every record takes)
        person.first_seen = ts
    if ts > person.last_seen:  # noqa: PLR1730
        person.last_seen = ts


def merge_service(whole: ServiceDay, part: ServiceDay) -> None:
    whole.calls += part.calls
    whole.connections += part.connections
    whole.refused += part.refused
    whole.bytes_sent += part.bytes_sent
    whole.bytes_received += part.bytes_received
    whole.first_seen = min(whole.first_seen, part.first_seen)
    whole.last_seen = max(whole.last_seen, part.last_seen)
    if whole.category is None:
        whole.category = part.category


def hour_of(text: str) -> str:
    """A `since`/`until` value (an ISO date or time, UTC) as the hour it falls in; ValueError
    when it is neither."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-23:59: past the last hour a datetime holds
            raise ValueError("out of range") from None
    # Four digits always: strftime writes the year 5 as `5`, which no later reading takes.
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0
