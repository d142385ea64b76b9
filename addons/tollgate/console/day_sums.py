"""What a day of the audit's records adds up to, for the console's views (`index.Index` keeps one
`Day` of sums per UTC day): each person's calls, tokens, cost, findings and models; the spend by
provider, model and client; the refusals and findings by kind and client; each client's AI
services; each kept per origin (`index.Origin`, by its number) where it is by client, so that a
view sums the origins its viewer may see. And what a view covers (`Window`). Plain code: no HTTP,
no files."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from tollgate.formats.refusals import CONTENT_DENIED

HOUR = 13  # len("2026-11-22T08"): a record's hour is the start of its `ts`
DAY = 10
SPEND_BY = {"provider": 0, "model": 1, "client": 2}  # where each is in a day's spend key


@dataclass(slots=True)
class Person:
    """One person's sums within a day: a client by name, or an anonymous caller by the
    fingerprint of its key."""

    calls: int = 0
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
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
        self.cost_usd += other.cost_usd
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
    cost_usd: float = 0.0


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
    figures: array = field(default_factory=lambda: array("d"))

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
