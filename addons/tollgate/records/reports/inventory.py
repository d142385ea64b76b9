"""`tollgate inventory`: who reached which AI service, from audit files.

Per client and AI service: the governed calls (`llm_call` records; a provider Tollgate governs is a
service of its own, named as the provider), the connections tunnelled to a catalogued service
(`connection` records with decision `allow`; one to a provider's host on which no call was made
counts under the provider), what was refused (a `connection` or an `llm_call`
with decision `deny`; a refused host of no AI service is a row named by its host), the bytes each
way (of the connections, and of the calls' bodies with their upstream), and when the pair was first
and last seen. Plain Python over the
records' lines: one pure function (`tally`) sums them."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from tollgate.common.shown import caller_name
from tollgate.providers import provider_for
from tollgate.records.reports.usage_report import SkippedRecord, audit_objects, iso_epoch, iso_time

# The category of a provider Tollgate governs as calls: an AI model API.
GOVERNED_CATEGORY = "ai_api"
FIELDS = (
    "client", "service", "category", "calls", "connections", "refused", "bytes_sent", "bytes_received",
    "first_seen", "last_seen",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Seen:
    """What the inventory needs of one record: a call's or a connection's."""

    ts: float  # epoch seconds
    client: str | None
    service: str | None  # None: a connection let through to a host of no AI service
    category: str | None
    kind: str  # "call" or "connection"
    refused: bool
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(slots=True)
class Row:
    client: str | None
    service: str
    category: str | None
    calls: int = 0
    connections: int = 0
    refused: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf

    def add(self, seen: Seen) -> None:
        if seen.refused:
            self.refused += 1
        elif seen.kind == "call":
            self.calls += 1
        else:
            self.connections += 1
        self.bytes_sent += seen.bytes_sent
        self.bytes_received += seen.bytes_received
        self.first_seen = min(self.first_seen, seen.ts)
        self.last_seen = max(self.last_seen, seen.ts)
        if self.category is None:
            self.category = seen.category


@dataclass(frozen=True, slots=True)
class Inventory:
    since: float
    rows: tuple[Row, ...]  # by client (anonymous last), then service
    # Connections let through to hosts of no AI service (recorded with `egress.record: all`): not rows.
    elsewhere: int = 0


# ---- records in


def seen_of(record: Mapping[str, Any]) -> Seen | None:
    """What an audit record says of who reached which service, or None for a record of another
    kind (started, stopped, checkpoints, MCP calls). ValueError names the first field that is not
    what the audit writes."""
    event = record.get("event")
    if event not in ("llm_call", "connection"):
        return None
    ts = record.get("ts")
    if not isinstance(ts, str):
        raise ValueError(f"ts: {ts!r} is not an ISO 8601 time")
    try:
        epoch = iso_epoch(ts)
    except ValueError:
        raise ValueError(f"ts: {ts!r} is not an ISO 8601 time") from None
    client = _text(record, "client")
    decision = _text(record, "decision")
    if decision not in ("allow", "deny"):
        raise ValueError(f"decision: {decision!r} is neither allow nor deny")
    if event == "llm_call":
        # The provider called; a call refused before it was routed names the one asked for.
        service = _text(record, "provider") or _text(record, "requested_provider") or _text(record, "host")
        return Seen(epoch, client, service, GOVERNED_CATEGORY, "call", decision == "deny",
                    _count(record, "bytes_sent"), _count(record, "bytes_received"))  # fmt: skip
    refused = decision == "deny"
    service, category = connection_service(record)
    if service is None and refused:
        # A refused host of no AI service (a paste site a prompt injection named) is a row of its
        # own, named by its host: what an agent tried to reach matters most when it was refused.
        service = _text(record, "host")
    return Seen(
        epoch,
        client,
        service,
        category,
        "connection",
        refused,
        _count(record, "bytes_sent"),
        _count(record, "bytes_received"),
    )


def connection_service(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The service and category a `connection` record counts under: the catalogued service it
    names, else the provider whose own host it reached (one on which no call was made, or whose TLS
    handshake failed: the catalogue holds no provider's hosts), else none. ValueError as `seen_of`."""
    service, category = _text(record, "service"), _text(record, "category")
    if service is None:
        host = _text(record, "host")
        provider = provider_for(host) if host else None
        if provider is not None:
            return provider.name, GOVERNED_CATEGORY
    return service, category


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a string")
    return value


def _count(record: Mapping[str, Any], name: str) -> int:
    value = record.get(name)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: {value!r} is not a count")
    return value


def audit_seen(lines: Iterable[bytes], name: str) -> Iterator[Seen | SkippedRecord]:
    """What each line of an audit file says (`seen_of`), and a `SkippedRecord` for each line that
    cannot be read, named `name:line`."""
    for read in audit_objects(lines, name):
        if isinstance(read, SkippedRecord):
            yield read
            continue
        number, record = read
        try:
            seen = seen_of(record)
        except ValueError as e:
            yield SkippedRecord(f"{name}:{number}", str(e))
            continue
        if seen is not None:
            yield seen


_GZIP_MAGIC = b"\x1f\x8b"


def open_audit(path: Path) -> BinaryIO:
    """An audit file's bytes: a rotated file logrotate compressed (`compress`) read through gzip."""
    f = path.open("rb")
    if f.read(2) == _GZIP_MAGIC:
        f.close()
        return cast(BinaryIO, gzip.open(path, "rb"))
    f.seek(0)
    return f


def audit_file_seen(paths: Iterable[Path]) -> Iterator[Seen | SkippedRecord]:
    """`audit_seen` of each file in turn; OSError when one cannot be read (a compressed one cut
    short too)."""
    for path in paths:
        with open_audit(path) as lines:
            try:
                yield from audit_seen(lines, str(path))
            except EOFError:
                raise OSError(0, "compressed, and cut short", str(path)) from None


_ROTATED = re.compile(r"\.(\d+)(?:\.gz)?")


def with_rotations(path: Path) -> list[Path]:
    """The audit file and the rotations logrotate left beside it (`audit.jsonl.1`,
    `audit.jsonl.2.gz`, …), oldest first; only the rotations when the file itself is gone."""
    rotated: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        for sibling in path.parent.iterdir():
            rest = sibling.name.removeprefix(path.name)
            if rest != sibling.name and (m := _ROTATED.fullmatch(rest)) and sibling.is_file():
                rotated.append((int(m.group(1)), sibling))
    files = [p for _, p in sorted(rotated, key=lambda r: (-r[0], r[1].name))]
    return [*files, path] if path.is_file() or not files else files


# ---- the sums


def tally(seen: Iterable[Seen], since: float = -math.inf) -> Inventory:
    """The rows per client and service of what was seen at or after `since`."""
    rows: dict[tuple[str | None, str], Row] = {}
    elsewhere = 0
    for s in seen:
        if s.ts < since:
            continue
        if s.service is None:
            elsewhere += 1
            continue
        row = rows.get((s.client, s.service))
        if row is None:
            row = rows[(s.client, s.service)] = Row(s.client, s.service, s.category)
        row.add(s)
    ordered = sorted(rows.values(), key=lambda r: (r.client is None, r.client or "", r.service))
    return Inventory(since, tuple(ordered), elsewhere)


# ---- output


def _values(row: Row) -> list[Any]:
    return [
        row.client, row.service, row.category, row.calls, row.connections, row.refused, row.bytes_sent,
        row.bytes_received, iso_time(row.first_seen), iso_time(row.last_seen),
    ]  # fmt: skip


def to_json(inventory: Inventory) -> str:
    """A list of rows, each an object of `FIELDS`."""
    rows = [json.dumps(dict(zip(FIELDS, _values(r), strict=True))) for r in inventory.rows]
    return "[" + ",".join(f"\n  {r}" for r in rows) + ("\n]\n" if rows else "]\n")


_TABLE_HEADERS = (
    "client", "service", "category", "calls", "connections", "refused", "sent", "received", "first_seen",
    "last_seen",
)  # fmt: skip
_NUMBERS = range(3, 8)  # the columns aligned right


def notes(inventory: Inventory, malformed: int) -> list[str]:
    """What a reader of the table must know besides it."""
    since = inventory.since
    lines = [f"records since {iso_time(since)}" if math.isfinite(since) else "every record"]
    lines.append(
        "calls: governed calls let through; connections: tunnels to a catalogued AI service; refused:"
        " connections and calls Tollgate refused; sent and received: the bytes of the connections and of"
        " the calls' bodies"
    )
    if inventory.elsewhere:
        n = inventory.elsewhere
        lines.append(f"{n} {'connection' if n == 1 else 'connections'} let through to hosts of no AI service not shown")
    if malformed:
        lines.append(f"{malformed} malformed {'record' if malformed == 1 else 'records'} skipped (see standard error)")
    return lines


def table(inventory: Inventory, malformed: int = 0) -> str:
    head = list(_TABLE_HEADERS)
    body = [[caller_name(r.client), *("-" if v is None else str(v) for v in _values(r)[1:])] for r in inventory.rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in _NUMBERS else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    return "\n".join([line(head), rule, *map(line, body), "", *notes(inventory, malformed)]) + "\n"
