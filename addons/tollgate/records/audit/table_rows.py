"""The rows of the records' table (`audit.postgres`) checked one by one, as the console checks them
behind its views and `tollgate audit verify --postgres` checks them: each row's line fed to the
chain's `Verifier` (the row named by the table and its id, `tollgate_records:1234`), and its columns
compared with what `row_of` takes from its line, so that a column changed in the database shows.

Rows removed by `keep_days` are no fault: an instance whose first rows are gone (its first kept row
not its first run's start) is verified from its oldest kept checkpoint (which names the chain of the
record before it), or from a run's start (which names its previous run's last chain), the rows
before it counted as removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollgate.common.audit_chain import CHECKPOINT, STARTED
from tollgate.records.audit.audit_record import WORKER_LOST
from tollgate.records.audit.audit_verify import Entry, Place, Run, Verifier
from tollgate.records.audit.kinds import read_record
from tollgate.records.senders.audit_postgres import COLUMNS, row_of

_LINE, _RAW = COLUMNS.index("line"), COLUMNS.index("raw")


@dataclass
class Instance:
    """What is said of an instance beside its run in the verifier (`/api/audit`'s row), and how far
    its rows were checked."""

    checked: int = 0  # its rows whose chain and columns were checked
    lost: int = 0  # its `worker lost` records
    faults: list[str] = field(default_factory=list)
    last_record: str | None = None  # the newest `ts` of its rows checked
    removed: int = 0  # its oldest rows kept, not verified: their predecessors were removed by keep_days
    verified_from: int | None = None  # the id its chain is verified from, when its first rows were removed
    waiting: bool = False  # its first rows removed: its rows are not verified until a checkpoint comes
    checked_id: int = 0  # the greatest id of its rows checked
    head: str | None = None  # that row's chain (its key: `row_of`), as checked
    first_fault_id: int | None = None  # the id of its first row checked with a fault


def written(line: str, raw: bytes | None) -> bytes:
    """A row's line as written: its bytes, when text could not hold them exactly."""
    return bytes(raw) if raw is not None else line.encode()


def instance_of(record: dict[str, Any] | None) -> str | None:
    instance = record.get("instance") if record is not None else None
    return instance if isinstance(instance, str) else None


def check_row(
    verifier: Verifier,
    instances: dict[str | None, Instance],
    table: str,
    keep_days: float | None,
    row_id: int,
    stored: tuple[Any, ...],
) -> bool:
    """Row `row_id` (its columns `stored`, in `COLUMNS`' order) checked: fed to `verifier`, its
    instance's `Instance` in `instances` kept up to date; whether a fault was found in it."""
    line = written(stored[_LINE], stored[_RAW])
    place = Place(table, row_id)
    expected = row_of(line)
    record = read_record(line)
    instance = instance_of(record)
    state = instances.get(instance)
    if state is None:
        state = instances[instance] = Instance()
        if instance is not None and keep_days is not None and record is not None and not _first(record):
            state.waiting = True  # its first rows were removed: verified from its oldest kept checkpoint
    state.checked += 1
    state.checked_id, state.head = max(state.checked_id, row_id), expected[0]
    faults = len(verifier.faults)
    if stored != expected:  # a number is compared as a number (Decimal("0.10") == Decimal("0.1"))
        changed = [name for name, was, now in zip(COLUMNS, stored, expected, strict=True) if was != now]
        verifier.fault(place, f"its columns differ from its line ({', '.join(changed)}): changed in the database")
    if record is not None:
        ts = record.get("ts")
        if isinstance(ts, str) and (state.last_record is None or ts > state.last_record):
            state.last_record = ts
        if record.get("error") == WORKER_LOST:
            state.lost += 1
    if (
        state.waiting
        and record is not None
        and instance is not None
        and not _begin_after_removed(verifier, state, instance, place, record)
    ):
        state.removed += 1
        return _faulted(verifier, state, row_id, faults)
    verifier.read(place, line, record)
    return _faulted(verifier, state, row_id, faults)


def _begin_after_removed(
    verifier: Verifier, state: Instance, instance: str, place: Place, record: dict[str, Any]
) -> bool:
    """Whether the instance's chain can be verified from this row, its earlier rows removed: a
    checkpoint (it names the chain of the record before it), or a run's start (it names the
    chain of its instance's last record before it). The verifier is given what those name."""
    seq, event = record.get("seq"), record.get("event")
    if type(seq) is not int:
        return False
    if event == CHECKPOINT:
        covers, covers_chain, count = record.get("covers_seq"), record.get("covers_chain"), record.get("records")
        if covers != seq - 1 or not isinstance(covers_chain, str) or type(count) is not int or seq < 2:
            return False
        run = Run(instance, Entry(place, seq, "", b"", event, record.get("ts")))
        run.by_seq.add(seq - 1, covers_chain, place)
        run.checkpoint_covers = covers - count
        verifier.runs[instance] = run
    elif event == STARTED and seq == 1 and isinstance(record.get("previous_chain"), str):
        before = Run(instance, Entry(place, 0, "", b"", None, None))
        before.last = Entry(place, 0, record["previous_chain"], b"", None, None)
        before.stopped = before.last
        verifier.ended[instance] = [before]
    else:
        return False
    state.waiting = False
    state.verified_from = place.line
    return True


def _faulted(verifier: Verifier, state: Instance, row_id: int, before: int) -> bool:
    new = verifier.faults[before:]
    if not new:
        return False
    state.faults.extend(str(f) for f in new)
    if state.first_fault_id is None:
        state.first_fault_id = row_id
    return True


def _first(record: dict[str, Any]) -> bool:
    """Whether a record is its instance's very first: its first run's start."""
    return record.get("seq") == 1 and record.get("event") == STARTED and record.get("previous_chain") is None
