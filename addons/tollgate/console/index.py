"""What the console answers from: the audit's records read once, summed per day as they come.

Each record line is read once (`Index.add`): its place is kept (file and byte offset, to serve it
again as written), a few small columns (to filter the event list by, and its hour, model, tokens
and cost for the hourly spend), its origin (`Origin`: what decides who may see it, and which
instance wrote it), and its figures added to the sums of its UTC day (`ts[:10]`): per person, per
provider, model and client, per refusal kind and client, per finding kind and client, per client
and AI service, each kept per origin rather than per client. A view adds up the days it covers over
the origins a viewer may see (`scope.py`), then by client, so that it answers in time proportional
to the days and keys, not to the records. Plain code: no HTTP, no files (`follow.py` reads them)."""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, cast

import orjson

from tollgate.common.emails import email_key
from tollgate.console.day_sums import (
    CONNECTION,
    DAY,
    HOUR,
    SPEND_BY,
    Day,
    DayAdder,
    Days,
    Person,
    Refusals,
    ServiceDay,
    Spend,
    Unverified,
    UnverifiedDay,
    Window,
    merge_service,
    nano_of,
    order_of,
    usd,
)
from tollgate.records.audit.audit_record import WORKER_LOST

# The `event` column of a line that is no record: no JSON object, longer than the console reads at
# once (`Index.add_long`), or claiming this event itself (the console's marker is its own).
BAD_LINE = "malformed"
# How many records in a row from before a window end the hourly spend's walk back: records are
# written as calls end, in the order of their start but for the calls in flight together.
TIME_ORDER_SLACK = 50_000
TOKENS_MAX = 2**31 - 1  # what a column holds of one call's tokens (no call comes near)


class Origin(NamedTuple):
    """What decides who may see a record, and which instance wrote it. Few: clients × the groups
    they call with × plan accounts × instances, so that the sums are kept per origin."""

    client: str | None
    groups: tuple[str, ...] | None  # None: the record names none (connections, MCP calls)
    account: str | None  # a plan call's account (an e-mail), ASCII lower-cased (`email_key`)
    instance: str | None
    jwt: bool  # its client was identified by a JWT (`auth` jwt)


NO_ORIGIN = Origin(None, None, None, None, False)  # a line that is no record: security's only


class Index:
    """Every record added so far: its place, its filter columns, its day's sums."""

    def __init__(self) -> None:
        self.file_starts: list[int] = []  # the number of each file's first record (files come in order)
        self._file = -1
        self.offsets = array("q")
        # One entry per record: small numbers standing for strings (`_names`), and its figures.
        self.clients = array("i")
        self.origins = array("i")  # its origin's number (`origin_list`)
        self.providers = array("i")
        self.decisions = array("b")  # 0 none, 1 allow, 2 deny
        self.events = array("i")
        self.hours = array("i")  # its ts's hour, e.g. 2026-11-22T08
        self.models = array("i")
        self.input_tokens = array("i")  # at most TOKENS_MAX: a call's tokens
        self.output_tokens = array("i")
        self.costs = array("q")  # nano-dollars (`day_sums.nano_of`)
        self._ids: dict[str | None, int] = {None: 0}
        self._names: list[str | None] = [None]
        self._hour_ids: dict[str | None, int] = {None: 0}
        self._hours: list[str | None] = [None]
        self.origin_list: list[Origin] = [NO_ORIGIN]
        self._origin_ids: dict[Origin, int] = {NO_ORIGIN: 0}
        # A record's (client, groups, account, instance, auth) as read → its origin's number: apart from
        # `_origin_ids`, as a tuple read could equal an origin of other meaning (`auth` true, `jwt` True).
        self._read_origins: dict[tuple[Any, ...], int] = {}
        # Per origin, its records' numbers in order, for the event list of a viewer who sees some
        # origins only (`_numbers`): made when first asked for, then for the records read since.
        self._by_origin: list[array] = []
        self._posted = 0  # the records in `_by_origin`
        self.days = Days()
        self.malformed = 0
        # The lines longer than the console reads at once, never parsed: record number → length.
        self.long_lines: dict[int, int] = {}
        # What the records after a fault of the chain count in, per day (`unverified`): the ranges'
        # starts, how far each was walked, the marks by day.
        self._unverified: tuple[tuple[int, ...], list[int], dict[str, UnverifiedDay]] | None = None
        self.adder = DayAdder(self.days)  # what adds each record to its day's sums

    def __len__(self) -> int:
        return len(self.offsets)

    # ---- records in

    def add(self, file: int, offset: int, line: bytes) -> None:
        """One line of an audit file, read (a line that is no JSON object is counted as malformed
        and still listed, as such)."""
        self.add_lines(file, offset, line, len(line), {})

    def add_lines(self, file: int, offset: int, data: bytes, end: int, instances: dict[str, int]) -> int:
        """The lines of an audit file in `data[:end]`, which starts at its byte `offset` (blank ones
        skipped), their records counted per instance in `instances`; how many are `worker lost`
        records. The path every record of a year takes at the first open: its lookups bound once per
        chunk, not per record, and each line parsed where it is in `data`, never copied."""
        if file != self._file:
            self._file = file
            self.file_starts.extend([len(self.offsets)] * (file + 1 - len(self.file_starts)))
        loads, bad_json = orjson.loads, orjson.JSONDecodeError
        ids, new_id, hour_ids = self._ids, self.id, self._hour_ids
        add_offset, add_client, add_provider = self.offsets.append, self.clients.append, self.providers.append
        add_decision, add_event, add_hour = self.decisions.append, self.events.append, self.hours.append
        add_model, add_input, add_output = self.models.append, self.input_tokens.append, self.output_tokens.append
        add_cost, summed = self.costs.append, self.adder.add
        origin_ids, add_origin, new_origin = self._read_origins, self.origins.append, self._new_origin
        view, find = memoryview(data), data.find
        lost = 0
        record: Any
        event: Any
        decision: Any
        inputs: Any
        outputs: Any
        cost: Any = None
        price: int | None  # nano-dollars; None: a cost no call has
        start = 0
        while start < end:
            stop = find(b"\n", start, end) + 1 or end
            try:
                record = loads(view[start:stop])
            except bad_json:
                record = None
                if data[start:stop].isspace():
                    start = stop
                    continue
            add_offset(offset + start)
            start = stop
            if type(record) is not dict or record.get("event") == BAD_LINE:
                self.malformed += 1
                record = None
                client = provider = ts = hour = model = None
                event, decision, inputs, outputs, price, origin = BAD_LINE, 0, 0, 0, 0, 0
            else:
                get = record.get
                event, client, ts, model = get("event"), get("client"), get("ts"), get("model")
                provider, decision = get("provider"), get("decision")
                decision = 1 if decision == "allow" else 2 if decision == "deny" else 0
                if type(client) is not str:
                    client = None
                if type(event) is not str:
                    event = None
                if type(model) is not str:
                    model = None
                if type(provider) is not str:
                    provider = None
                cost, inputs, outputs = get("cost_usd"), get("input_tokens"), get("output_tokens")
                inputs = inputs if type(inputs) is int and inputs >= 0 else 0
                outputs = outputs if type(outputs) is int and outputs >= 0 else 0
                price = nano_of(cost)
                if type(ts) is not str or len(ts) < HOUR:
                    ts = hour = None
                else:
                    hour = ts[:HOUR]
                groups = get("groups")
                read = (client, tuple(groups) if type(groups) is list else groups, get("account"), get("instance"),
                        get("auth"))  # fmt: skip
                try:
                    origin = origin_ids[read]
                except (KeyError, TypeError):  # a new origin, or one of fields of another shape
                    origin = new_origin(read)
            add_origin(origin)
            add_client(ids[client] if client in ids else new_id(client))
            add_provider(ids[provider] if provider in ids else new_id(provider))
            add_decision(decision)
            add_event(ids[event] if event in ids else new_id(event))
            if hour not in hour_ids:
                hour_ids[hour] = len(self._hours)
                self._hours.append(hour)
            add_hour(hour_ids[hour])
            add_model(ids[model] if model in ids else new_id(model))
            add_input(inputs if inputs <= TOKENS_MAX else TOKENS_MAX)
            add_output(outputs if outputs <= TOKENS_MAX else TOKENS_MAX)
            add_cost(price or 0)
            if (
                ts is not None
                and record is not None
                and not summed(
                    ts, record, event, client, origin, provider, decision, inputs, outputs, cost, price, model
                )
            ):
                self.malformed += 1  # a record whose figures are not what the audit writes: listed, not summed
            if record is not None:
                instance = record.get("instance")
                if type(instance) is str:
                    instances[instance] = instances.get(instance, 0) + 1
                if record.get("error") == WORKER_LOST:
                    lost += 1
        return lost

    def add_long(self, file: int, offset: int, length: int) -> None:
        """A line longer than the console reads at once (at `offset` of file number `file`): listed
        as malformed, its length kept, never parsed nor read again."""
        if file != self._file:
            self._file = file
            self.file_starts.extend([len(self.offsets)] * (file + 1 - len(self.file_starts)))
        self.long_lines[len(self.offsets)] = length
        self.malformed += 1
        self.offsets.append(offset)
        for column in (self.clients, self.providers, self.models):
            column.append(self.id(None))
        self.events.append(self.id(BAD_LINE))
        self.origins.append(0)
        self.hours.append(self._hour_ids[None])
        for column in (self.decisions, self.input_tokens, self.output_tokens):
            column.append(0)
        self.costs.append(0)

    def id(self, name: str | None) -> int:
        number = self._ids.get(name)
        if number is None:
            number = self._ids[name] = len(self._names)
            self._names.append(name)
        return number

    def _new_origin(self, read: tuple[Any, ...]) -> int:
        """The number of the origin of a record's (client, groups, account, instance, auth) as read;
        fields of another shape than the audit writes count as none (groups: as an empty list, which
        meets no lead's groups)."""
        client, groups, account, instance, auth = read
        if groups is not None and not (type(groups) is tuple and all(type(g) is str for g in groups)):
            groups = ()
        origin = Origin(client, groups, email_key(account) if type(account) is str else None,
                        instance if type(instance) is str else None, auth == "jwt")  # fmt: skip
        number = self._origin_ids.get(origin)
        if number is None:
            number = self._origin_ids[origin] = len(self.origin_list)
            self.origin_list.append(origin)
        try:
            self._read_origins[read] = number
        except TypeError:
            pass  # unhashable as read (a list in a field): looked up afresh each time, as such records are rare
        return number

    def client_of(self, origin: int) -> str | None:
        return self.origin_list[origin].client

    def file_of(self, number: int) -> int:
        """The file record `number` is in (its index among the files read)."""
        return bisect_right(self.file_starts, number) - 1

    def known(self, name: str | None) -> int | None:
        """The number standing for `name`, or None when no record has it."""
        return self._ids.get(name)

    # ---- the views: each over the origins `chosen` (None: every one), then by client

    def selected(self, window: Window) -> Iterator[Day]:
        days = self.days
        for day in days:
            if window.holds_day(day):
                yield days[day]

    def people(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        people: dict[tuple[str | None, str | None], Person] = {}
        client_of = self.client_of
        for sums in self.selected(window):
            for (origin, key), person in sums.people.items():
                if chosen is not None and origin not in chosen:
                    continue
                who = (client_of(origin), key)
                whole = people.get(who)
                if whole is None:
                    whole = people[who] = Person()
                whole.merge(person)
        rows = []
        order = sorted(people.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", order_of(kv[0][1])))
        for (client, key), p in order:
            rows.append({
                "client": client, "key": key, "calls": p.calls, "refused": p.refused,
                "input_tokens": p.input_tokens, "output_tokens": p.output_tokens, "cost_usd": usd(p.cost_nano),
                "unpriced": p.unpriced, "findings": dict(sorted((p.findings or {}).items())),
                "connections": p.connections, "first_seen": p.first_seen, "last_seen": p.last_seen,
                "models": dict(sorted((p.models or {}).items())),
            })  # fmt: skip
        return rows

    def spend(self, window: Window, by: str, bucket: str, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        summed = self._spend_by_hour if bucket == "hour" else self._spend_by_day
        sums = summed(window, by, chosen)
        return [
            {"bucket": _bucket_time(b), "key": k, "calls": s.calls, "input_tokens": s.input_tokens,
             "output_tokens": s.output_tokens, "cost_usd": usd(s.cost_nano)}
            for (b, k), s in sorted(sums.items(), key=lambda kv: (kv[0][0], order_of(kv[0][1])))
        ]  # fmt: skip

    def _spend_by_day(
        self, window: Window, by: str, chosen: frozenset[int] | None
    ) -> dict[tuple[str, str | None], Spend]:
        sums: dict[tuple[str, str | None], Spend] = {}
        dimension, client_of = SPEND_BY[by], self.client_of
        days = self.days
        for day in days:
            if not window.holds_day(day):
                continue
            d = days[day]
            figures = d.figures
            for key, at in d.spend.items():
                origin = key[2]
                if chosen is not None and origin not in chosen:
                    continue
                value = client_of(origin) if by == "client" else cast(str | None, key[dimension])
                whole = sums.get((day, value))
                if whole is None:
                    whole = sums[(day, value)] = Spend()
                whole.calls += figures[at]
                whole.input_tokens += figures[at + 1]
                whole.output_tokens += figures[at + 2]
                whole.cost_nano += figures[at + 3]
        return sums

    def _spend_by_hour(
        self, window: Window, by: str, chosen: frozenset[int] | None
    ) -> dict[tuple[str, str | None], Spend]:
        """Per hour, from the records' own figures (the sums are kept per day)."""
        names, calls = self._names, self._ids.get("llm_call")
        held = {n for n, hour in enumerate(self._hours) if hour is not None and window.holds_hour(hour)}
        keys = {"provider": self.providers, "model": self.models, "client": self.clients}[by]
        start = self._walk_back_start(window.since)
        sums: dict[tuple[int, int], Spend] = {}
        columns = (self.hours, self.events, keys, self.input_tokens, self.output_tokens, self.costs, self.origins)
        every = chosen is None
        # The columns' ends, copied, are read in step: far faster than each record's items by index.
        for hour, event, key, inputs, outputs, cost, origin in zip(
            *(column[start:] for column in columns), strict=True
        ):
            if event != calls or hour not in held or not (every or origin in chosen):  # type: ignore[operator]
                continue
            whole = sums.get((hour, key))
            if whole is None:
                whole = sums[(hour, key)] = Spend()
            whole.calls += 1
            whole.input_tokens += inputs
            whole.output_tokens += outputs
            whole.cost_nano += cost
        return {(cast(str, self._hours[h]), names[k]): spend for (h, k), spend in sums.items()}

    def _walk_back_start(self, since: str | None) -> int:
        """The first record the hourly spend reads: the one after the newest TIME_ORDER_SLACK records
        in a row from before `since` (the file is in time order but for the calls in flight together),
        found a block of them at a time."""
        before = {n for n, hour in enumerate(self._hours) if hour is not None and since is not None and hour < since}
        end = len(self)
        while end >= TIME_ORDER_SLACK:
            start = end - TIME_ORDER_SLACK
            if before.issuperset(self.hours[start:end]):
                return end
            end = start
        return 0

    def refusals(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        sums: dict[tuple[str, str | None], Refusals] = {}
        client_of = self.client_of
        for d in self.selected(window):
            for (kind, origin), r in d.refusals.items():
                if chosen is not None and origin not in chosen:
                    continue
                key = (kind, client_of(origin))
                whole = sums.get(key)
                if whole is None:
                    whole = sums[key] = Refusals()
                whole.count += r.count
                if r.last_seen >= whole.last_seen:
                    whole.last_reason, whole.last_seen = r.last_reason, r.last_seen
        return [
            {"kind": kind, "client": client, "count": r.count, "last_reason": r.last_reason, "last_seen": r.last_seen}
            for (kind, client), r in sorted(sums.items(), key=lambda kv: (-kv[1].count, kv[0][0], order_of(kv[0][1])))
        ]

    def findings(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        sums: dict[tuple[str, str | None, str, str], int] = {}
        client_of = self.client_of
        for d in self.selected(window):
            for (kind, origin, where, action), n in d.findings.items():
                if chosen is not None and origin not in chosen:
                    continue
                key = (kind, client_of(origin), where, action)
                sums[key] = sums.get(key, 0) + n
        order = sorted(sums.items(), key=lambda kv: (-kv[1], kv[0][0], order_of(kv[0][1]), kv[0][2], kv[0][3]))
        return [
            {"kind": kind, "client": client, "where": where, "action": action, "count": n}
            for (kind, client, where, action), n in order
        ]

    def inventory(self, window: Window, chosen: frozenset[int] | None = None) -> list[dict[str, Any]]:
        """The rows of `tollgate inventory --json` over the days the window covers."""
        rows: dict[tuple[str | None, str], ServiceDay] = {}
        client_of = self.client_of
        for d in self.selected(window):
            for (origin, service), r in d.services.items():
                if chosen is not None and origin not in chosen:
                    continue
                key = (client_of(origin), service)
                whole = rows.get(key)
                if whole is None:
                    whole = rows[key] = ServiceDay(r.category)
                merge_service(whole, r)
        ordered = sorted(rows.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "", kv[0][1]))
        return [
            {"client": client, "service": service, "category": r.category, "calls": r.calls,
             "connections": r.connections, "refused": r.refused, "bytes_sent": r.bytes_sent,
             "bytes_received": r.bytes_received, "first_seen": r.first_seen, "last_seen": r.last_seen}
            for (client, service), r in ordered
        ]  # fmt: skip

    # ---- the records after a fault of the chain

    def unverified(self, numbers: list[range], window: Window, chosen: frozenset[int] | None = None) -> Unverified:
        """What the records `numbers` (after a fault of the chain) of the origins `chosen` count in,
        within `window`: the rows of the views they may have added to, so that each is marked
        unverified. Kept per day and origin, and added to as records come, so that a view walks
        each record once, not once per request."""
        starts = tuple(span.start for span in numbers)
        kept = self._unverified
        if kept is None or kept[0] != starts:
            kept = self._unverified = (starts, [span.start for span in numbers], {})
        _, done, days = kept
        names, hours, calls = self._names, self._hours, self._ids.get("llm_call")
        summed = {self._ids.get(event) for event in ("llm_call", "mcp_call", CONNECTION)}  # what the sums take
        for i, span in enumerate(numbers):
            for n in range(done[i], span.stop):
                hour = hours[self.hours[n]]
                if hour is None or self.events[n] not in summed:
                    continue
                day = days.get(hour[:DAY])
                if day is None:
                    day = days[hour[:DAY]] = UnverifiedDay()
                origin = self.origins[n]
                day.origins.add(origin)
                if self.events[n] == calls:
                    for by, column in (("provider", self.providers), ("model", self.models), ("client", self.clients)):
                        name = names[column[n]]
                        day.spend.add((_bucket_time(hour[:DAY]), by, name, origin))
                        day.spend.add((_bucket_time(hour), by, name, origin))
            done[i] = max(done[i], span.stop)
        found = Unverified()
        for name, day in days.items():
            if window.holds_day(name):
                found.clients.update(self.client_of(o) for o in day.origins if chosen is None or o in chosen)
                found.spend.update(s[:3] for s in day.spend if chosen is None or s[3] in chosen)
        return found

    # ---- the event list

    def matching(
        self, before: int, limit: int, filters: Mapping[str, array | int], chosen: frozenset[int] | None = None
    ) -> list[int]:
        """The numbers of the last `limit` records before record `before` whose columns hold the
        filters' values and whose origins are `chosen`, oldest first."""
        found: list[int] = []
        columns = [(getattr(self, name), value) for name, value in filters.items()]
        end = min(before, len(self))
        numbers = range(end - 1, -1, -1) if chosen is None else self._numbers(chosen, end, newest_first=True)
        for i in numbers:
            if len(found) == limit:
                break
            if all(column[i] == value for column, value in columns):
                found.append(i)
        found.reverse()
        return found

    def following(
        self, after: int, limit: int, filters: Mapping[str, array | int], chosen: frozenset[int] | None = None
    ) -> tuple[list[int], int]:
        """The numbers of the first `limit` records after record `after` (-1: from the first)
        whose columns hold the filters' values and whose origins are `chosen`, and the last record
        looked at."""
        found: list[int] = []
        columns = [(getattr(self, name), value) for name, value in filters.items()]
        after = max(after, -1)  # a cursor the API never gave: from the first record, never from the end
        numbers = range(after + 1, len(self)) if chosen is None else self._numbers(chosen, after + 1)
        for i in numbers:
            if all(column[i] == value for column, value in columns):
                found.append(i)
                if len(found) == limit:
                    return found, i
        return found, max(after, len(self) - 1)  # every record after it looked at

    def _numbers(self, chosen: frozenset[int], at: int, newest_first: bool = False) -> Iterator[int]:
        """The numbers of the records of the origins `chosen`, from record `at` on (newest first:
        before it), in order: only theirs are looked at, however few of the records they are."""
        lists = self._by_origin
        lists.extend(array("i") for _ in range(len(self.origin_list) - len(lists)))
        for n, origin in enumerate(self.origins[self._posted :], self._posted):
            lists[origin].append(n)
        self._posted = len(self.origins)
        if newest_first:
            runs = [map(lists[o].__getitem__, range(bisect_left(lists[o], at) - 1, -1, -1)) for o in chosen]
            return heapq.merge(*runs, reverse=True)
        return heapq.merge(
            *(map(lists[o].__getitem__, range(bisect_left(lists[o], at), len(lists[o]))) for o in chosen)
        )


def _bucket_time(bucket: str) -> str:
    """An hour (`2026-11-22T08`) or a day (`2026-11-22`) as the time it starts."""
    return f"{bucket}:00:00Z" if len(bucket) == HOUR else f"{bucket}T00:00:00Z"
