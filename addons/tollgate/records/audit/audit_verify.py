"""`tollgate audit verify`: whether audit files are whole, chain by chain (`common/audit_chain.py`).

The files are read in the order given (a file and its rotations: oldest first); each instance's
records form its own chain, run after run, across the files. Every fault is named by file and
line, and says what it is, never what the record holds beyond what locates it."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.common.audit_chain import (
    CHECKPOINT,
    STARTED,
    STOPPED,
    ZERO,
    chain_of,
    key_id,
    signature_holds,
    split_line,
)
from tollgate.records.audit.anchor_verify import (
    ANCHOR,
    GAP,
    AnchorRules,
    Gap,
    Late,
    RunAnchors,
    Stamp,
    missed_fault,
    record_end,
    seconds,
)
from tollgate.records.audit.in_flight import InstanceBusy, check_free
from tollgate.records.audit.last_records import LastRecords, Place

MALFORMED = "malformed"  # the console's marker of a line that is no record (`console/index.py`)
UNPARSED = object()  # a line `_Verifier.read` parses itself


@dataclass(frozen=True)
class Fault:
    place: Place
    what: str

    def __str__(self) -> str:
        return f"{self.place}: {self.what}"


@dataclass(slots=True)
class Entry:
    place: Place
    seq: int
    chain: str
    content: bytes  # the line up to `,"chain":"`
    event: Any
    ts: Any
    previous_chain: Any = None  # a tollgate_started record's


@dataclass
class Run:
    instance: str
    first: Entry
    by_seq: LastRecords = field(default_factory=LastRecords)
    last: Entry | None = None  # the highest seq so far
    waiting: dict[int, Entry] = field(default_factory=dict)  # seq → entry whose predecessor has not come
    stopped: Entry | None = None
    checkpoint: Entry | None = None  # the last one
    checkpoint_covers: int = 0  # the last checkpoint's covers_seq
    records: int = 0
    signed: int = 0  # its checkpoints whose signature the key verified
    named_by_next: bool = False  # the instance's next run names its last chain (`previous_chain`)
    anchors: RunAnchors | None = None  # with --anchors: its checkpoints' time-stamps

    @property
    def ended(self) -> bool:
        return self.stopped is not None


@dataclass
class Summary:
    records: int = 0
    instances: int = 0
    runs: int = 0
    checkpoints: int = 0
    signed: int = 0  # checkpoints whose signature was verified
    last_ts: str | None = None  # the newest record's time
    last_signed_ts: str | None = None  # the newest verified checkpoint's time
    unchecked_signatures: int = 0  # signed checkpoints read without a key to check them
    copy_checkpoints: int = 0  # the checkpoints of a copy kept elsewhere (`--against`), all found in the files
    anchors: int = 0  # audit_anchor records read (with --anchors, those whose token checks)


@dataclass
class ChainVerdict:
    faults: list[Fault]
    summary: Summary
    # With a key: the records each instance wrote before its first checkpoint signed by it (the key
    # was set later), said apart; not faults.
    before_key: list[Fault] = field(default_factory=list)
    # With --anchors: each instance's last anchor, and its records after it.
    anchored: dict[str, Anchored] = field(default_factory=dict)


@dataclass
class Anchored:
    """What an instance's anchors prove: up to which record (`seq` of its run begun at `run`) it is
    anchored, by which TSAs and when; its records after it, not anchored yet; its anchor gaps."""

    run: Place | None  # the first record of the run anchored (None: no anchor)
    seq: int
    record: Place | None
    stamps: list[Stamp]
    after: int  # records of the instance after the anchored one
    gaps: int
    last_gap: Gap | None


@dataclass
class Unsigned:
    """An instance's records before its first checkpoint signed by the key: their checkpoints
    unsigned, left as they are until a signed one comes (and faults if none comes)."""

    first: Place  # the instance's first record
    checkpoints: list[Place] = field(default_factory=list)
    records: int = 0  # the instance's records up to its last unsigned checkpoint
    signed_at: Place | None = None  # the first checkpoint signed by the key


def read_lines(paths: Sequence[str], live: bool = False) -> Iterator[tuple[Place, bytes]]:
    """Every line of the files, in order (OSError when one cannot be read). `live`: the last file
    is still being written, and a last line without its newline is one being written."""
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if live and i == len(paths) - 1 and not line.endswith(b"\n"):
                    return
                if line.strip():
                    yield Place(os.fspath(path), number), line


def writers(audit_path: str) -> list[str]:
    """The instances whose process is writing `audit_path` now: each holds the lock of its in-flight
    file beside it while it runs (`in_flight`). A file this user cannot open tells nothing."""
    found = []
    prefix = f"{audit_path}.in-flight."
    for journal in sorted(glob.glob(glob.escape(prefix) + "*")):
        instance = journal[len(prefix) :]
        if instance.endswith(".key"):
            continue
        try:
            check_free(audit_path, instance)
        except InstanceBusy:
            found.append(instance)
    return found


def read_copy(path: str) -> Iterator[tuple[Place, bytes]]:
    """The audit lines of a copy kept elsewhere (OSError when it cannot be read, ValueError when it
    is neither): a collector's OTLP JSON export, one `ExportLogsServiceRequest` a line (as the
    OpenTelemetry Collector's file exporter writes it; each log record's body is an audit line), or
    the audit lines themselves (a JSONL file, as a log store gives them back)."""
    for place, line in read_lines([path]):
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError(f"{place}: not JSON: give an OTLP JSON export or audit lines") from None
        if isinstance(document, dict) and "resourceLogs" in document:
            for body in _bodies(document):
                yield place, body.encode()
        else:
            yield place, line


def _bodies(document: dict[str, Any]) -> Iterator[str]:
    for resource in _list(document.get("resourceLogs")):
        for scope in _list(resource.get("scopeLogs")):
            for log in _list(scope.get("logRecords")):
                body = log.get("body")
                if isinstance(body, dict) and isinstance(text := body.get("stringValue"), str):
                    yield text


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def verify(
    lines: Iterable[tuple[Place, bytes]],
    key: Ed25519PublicKey | None = None,
    live: bool = False,
    against: Iterable[tuple[Place, bytes]] = (),
    anchors: AnchorRules | None = None,
) -> ChainVerdict:
    """Faults of the chains `lines` hold; `against`: the lines of a copy kept elsewhere (a
    collector's), whose every checkpoint the files must hold; `anchors`: the rules the
    checkpoints' time-stamps are checked by."""
    return _Verifier(key, live, anchors).run(lines, against)


class _Verifier:
    def __init__(self, key: Ed25519PublicKey | None, live: bool, anchors: AnchorRules | None = None) -> None:
        self.key = key
        self.anchors = anchors
        self.key_id = None if key is None else key_id(key)
        self.live = live
        self.faults: list[Fault] = []
        self.summary = Summary()
        self.runs: dict[str, Run] = {}  # each instance's current run
        self.ended: dict[str, list[Run]] = {}  # each instance's earlier runs, oldest first
        self.kept: dict[str, tuple[Place, str, Any]] = {}  # a copy's checkpoints not yet found: by chain
        self.counted: dict[str, int] = {}  # each instance's records read so far
        # With a key: each instance's part before its first signed checkpoint, and the run that holds it.
        self.unsigned: dict[str, Unsigned] = {}
        self.first_signed_run: dict[str, Run] = {}

    def fault(self, place: Place, what: str) -> None:
        self.faults.append(Fault(place, what))

    def run(self, lines: Iterable[tuple[Place, bytes]], against: Iterable[tuple[Place, bytes]]) -> ChainVerdict:
        for place, line in against:
            self.kept_checkpoint(place, line)
        self.summary.copy_checkpoints = len(self.kept)
        for place, line in lines:
            self.read(place, line)
        for run in self.runs.values():
            self.settle(run, newest=True)
            self.close(run, following=None)
        self.summary.instances = len(self.runs)
        if self.key is not None:
            self.unsigned_runs()
        before_key = []
        for instance, part in self.unsigned.items():
            if part.signed_at is None:  # no signed checkpoint at all: every unsigned one is a fault
                for place in part.checkpoints:
                    self.fault(place, "checkpoint not signed")
            elif part.checkpoints:
                before_key.append(
                    Fault(
                        part.first,
                        f"records 1–{part.records} of {instance} (to {part.checkpoints[-1]}) precede its first"
                        f" checkpoint signed by the key ({part.signed_at}): not covered by the key as they were"
                        " written; their chain is checked, and that checkpoint's signature holds them as they"
                        " stood then",
                    )
                )
        for place, instance, seq in self.kept.values():
            self.fault(
                place,
                f"the copy holds a checkpoint of {instance} (seq {seq}) that the files do not: records after"
                " the files' last ones, or a run, removed",
            )
        self.faults.sort(key=lambda f: (f.place.file, f.place.line))  # stable: a file's order kept
        anchored = {i: self.anchored(i) for i in sorted(self.runs)} if self.anchors is not None else {}
        return ChainVerdict(self.faults, self.summary, before_key, anchored)

    def read(self, place: Place, line: bytes, parsed: Any = UNPARSED) -> None:
        """One line; `parsed`: its JSON, where the caller read it already (the console)."""
        parts = split_line(line)
        record = parsed
        if record is UNPARSED:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
        if not isinstance(record, dict):
            self.fault(place, "not a JSON record: changed, cut or inserted")
            return
        instance, seq = record.get("instance"), record.get("seq")
        if parts is None or not isinstance(instance, str) or type(seq) is not int or seq < 1:
            self.fault(place, "not a chained record (no instance, seq or chain last): inserted, or changed")
            return
        content, chain = parts
        if record.get("event") == MALFORMED:
            self.fault(
                place,
                "a record whose event is malformed, the console's marker of a line that is no record: Tollgate"
                " never writes it (inserted, or changed)",
            )
        entry = Entry(place, seq, chain, content, record.get("event"), record.get("ts"), record.get("previous_chain"))
        self.summary.records += 1
        self.counted[instance] = self.counted.get(instance, 0) + 1
        if self.key is not None and instance not in self.unsigned:
            self.unsigned[instance] = Unsigned(place)
        if isinstance(entry.ts, str) and (self.summary.last_ts is None or entry.ts > self.summary.last_ts):
            self.summary.last_ts = entry.ts
        if entry.event == CHECKPOINT:
            self.kept.pop(chain, None)
        run = self.runs.get(instance)
        if run is None or seq == 1 or (run.ended and entry.event != CHECKPOINT and seq != run.stopped.seq + 1):  # type: ignore[union-attr]
            if run is not None:
                self.settle(run, newest=False)
                self.close(run, following=entry if entry.event == STARTED else None)
                self.ended.setdefault(instance, []).append(run)
            run = self.runs[instance] = Run(instance, entry)
            self.summary.runs += 1
            self.begin(run, entry)
        self.add(run, entry, record)

    def begin(self, run: Run, entry: Entry) -> None:
        if entry.seq != 1:
            self.fault(
                entry.place, f"{_records(entry.seq - 1)} missing before this line (a run's seq 1–{entry.seq - 1})"
            )
            return
        if entry.event != STARTED:
            self.fault(entry.place, "a run's first record is not tollgate_started: changed or inserted")
            return
        # A run names the last chain of its instance's run before it; the instance's first names none.
        earlier = self.ended.get(run.instance)
        previous = entry.previous_chain
        if earlier:
            before = earlier[-1]
            if before.last is None or previous != before.last.chain:
                self.fault(
                    entry.place,
                    "previous_chain is not the chain of the instance's last record before it"
                    f" ({before.last.place if before.last else before.first.place}): records or a run missing",
                )
        elif previous is not None:
            self.fault(
                entry.place,
                f"previous_chain names a record of {run.instance} that the files do not hold: its records before"
                " this run are missing (give every file since the instance began)",
            )

    def add(self, run: Run, entry: Entry, record: dict[str, Any]) -> None:
        seq = entry.seq
        same = run.by_seq.get(seq)
        if same is not None:
            what = "a copy of" if same.chain == entry.chain else "the same seq as"
            self.fault(entry.place, f"inserted: {what} line {same.place.line} of {same.place.file}")
            return
        run.records += 1
        if run.last is not None and seq < run.last.seq:
            self.fault(entry.place, f"out of order: seq {seq} after seq {run.last.seq} ({run.last.place})")
        run.by_seq.add(seq, entry.chain, entry.place)
        self.link(run, entry)
        follower = run.waiting.pop(seq + 1, None)
        if follower is not None:
            self.link(run, follower)
        if run.last is None or seq > run.last.seq:
            run.last = entry
        if entry.event == STOPPED:
            run.stopped = entry
        elif entry.event == CHECKPOINT:
            self.checkpoint(run, entry, record)
        elif entry.event == ANCHOR:
            self.anchor(run, entry, record)
        elif entry.event == GAP and self.anchors is not None:
            tsa, error = record.get("tsa"), record.get("error")
            self.run_anchors(run).gap(str(tsa), str(error), entry.place)
        elif self.anchors is not None:
            self.run_anchors(run).record(seq, record_end(record, run.first.ts), entry.place)

    def link(self, run: Run, entry: Entry) -> None:
        """Check the entry's chain against its predecessor's, or wait for the predecessor."""
        if entry.seq == 1:
            previous = ZERO
        else:
            before = run.by_seq.chain(entry.seq - 1)
            if before is None:
                run.waiting[entry.seq] = entry
                return
            previous = before
        if chain_of(previous, entry.content) != entry.chain:
            self.fault(entry.place, "changed: its chain does not match its content and the record before it")
        entry.content = b""  # checked: only its chain is needed from here on

    def checkpoint(self, run: Run, entry: Entry, record: dict[str, Any]) -> None:
        self.summary.checkpoints += 1
        covers, chain, count = record.get("covers_seq"), record.get("covers_chain"), record.get("records")
        covered = run.by_seq.chain(entry.seq - 1)
        if covers != entry.seq - 1 or (covered is not None and chain != covered):
            self.fault(entry.place, "checkpoint does not cover the record before it: records changed or inserted")
        elif count != covers - run.checkpoint_covers:
            self.fault(entry.place, "checkpoint's record count does not match: records missing or inserted")
        signature, signed_by, key = record.get("signature"), record.get("key_id"), self.key
        if key is None:
            if signature is not None:
                self.summary.unchecked_signatures += 1
        elif signature is None:
            part = self.unsigned[run.instance]
            if part.signed_at is not None:
                self.fault(entry.place, "checkpoint not signed")
            else:  # before the instance's first signed checkpoint: judged when the files end
                part.checkpoints.append(entry.place)
                part.records = self.counted[run.instance]
        elif signed_by != self.key_id:
            self.fault(entry.place, f"checkpoint signed by another key (key_id {signed_by}, not {self.key_id})")
        elif not (isinstance(signature, str) and isinstance(chain, str) and signature_holds(key, signature, chain)):
            self.fault(entry.place, "bad signature: the checkpoint or the records it covers were changed")
        else:
            self.summary.signed += 1
            run.signed += 1
            part = self.unsigned[run.instance]
            if part.signed_at is None:
                part.signed_at = entry.place
                self.first_signed_run[run.instance] = run
            newest = self.summary.last_signed_ts
            if isinstance(entry.ts, str) and (newest is None or entry.ts > newest):
                self.summary.last_signed_ts = entry.ts
        run.checkpoint = entry
        run.checkpoint_covers = covers if isinstance(covers, int) else entry.seq - 1
        if self.anchors is not None:
            kept = run.by_seq.get(entry.seq - 1)
            self.run_anchors(run).checkpoint(
                entry.seq - 1, entry.ts, entry.place, chain, entry.place if kept is None else kept.place
            )

    # ---- anchors (--anchors): the checkpoints' RFC 3161 time-stamps (`anchor_verify`)

    @staticmethod
    def run_anchors(run: Run) -> RunAnchors:
        if run.anchors is None:
            run.anchors = RunAnchors()
        return run.anchors

    def anchor(self, run: Run, entry: Entry, record: dict[str, Any]) -> None:
        if self.anchors is None:
            self.summary.anchors += 1  # read, not checked
            return
        fault = self.run_anchors(run).anchor(record, entry.place, self.anchors)
        if fault is not None:
            self.fault(entry.place, fault)
        else:
            self.summary.anchors += 1

    def settle(self, run: Run, newest: bool) -> None:
        """The run's records with no anchor in time (`anchor_verify.RunAnchors`): faults, one for
        the lot, said at the first."""
        if self.anchors is None or run.anchors is None:
            return
        late = self.missed(run)
        if late is not None:
            self.fault(late.first[2], missed_fault(run.instance, late, run.anchors, self.anchors.window))
        if not newest:  # a run ended is kept for what it proves: no anchor will name its checkpoints
            run.anchors.ended()

    def missed(self, run: Run) -> Late | None:
        """The run's records that are faults for want of an anchor in time, as things stand."""
        if self.anchors is None or run.anchors is None:
            return None
        reference = seconds(run.last.ts) if run.last is not None else None
        return run.anchors.missed(reference, self.anchors.window)

    def anchor_view(self, instance: str) -> dict[str, Any] | None:
        """What the console's Audit view shows of an instance's anchors (None: not checked): its
        last anchor, its records after it, its gaps, and its current run's checkpoints with no
        anchor in time, as things stand (said as a fault)."""
        if self.anchors is None or instance not in self.runs:
            return None
        anchored = self.anchored(instance)
        run = self.runs[instance]
        missed = self.missed(run)
        gap = anchored.last_gap
        return {
            "seq": anchored.seq or None,
            "record": None if anchored.record is None else str(anchored.record),
            "tsa": [s.tsa for s in anchored.stamps],
            "gen_time": max((s.gen_time for s in anchored.stamps), default=None),
            "after": anchored.after,
            "gaps": anchored.gaps,
            "last_gap": None if gap is None else {"tsa": gap.tsa, "error": gap.error, "place": str(gap.place)},
            "missed": "" if missed is None or run.anchors is None else
            f"{missed.first[2]}: {missed_fault(instance, missed, run.anchors, self.anchors.window)}",
        }  # fmt: skip

    def anchored(self, instance: str) -> Anchored:
        """The instance's last anchor (in its newest run that has one) and its records after it."""
        runs = [*self.ended.get(instance, ()), self.runs[instance]]
        after = 0
        gaps, last_gap = 0, None
        for run in runs:
            if run.anchors is not None and run.anchors.gaps:
                gaps += run.anchors.gaps
                last_gap = run.anchors.last_gap
        for run in reversed(runs):
            kept = run.anchors
            if kept is not None and kept.last_seq:
                newest = run.last.seq if run.last is not None else kept.last_seq
                after += newest - kept.last_seq
                return Anchored(run.first.place, kept.last_seq, kept.last_record, kept.stamps, after, gaps, last_gap)
            after += run.records
        return Anchored(None, 0, None, [], after, gaps, last_gap)

    def close(self, run: Run, following: Entry | None) -> None:
        """The run has no more records: the records still waiting for a predecessor are missing
        one; a run not stopped is cut off, unless the instance's next run names its last chain."""
        for seq, entry in sorted(run.waiting.items()):
            below = run.by_seq.below(seq)
            self.fault(entry.place, f"{_records(seq - below - 1)} missing before this line (seq {below + 1}–{seq - 1})")
        run.waiting.clear()
        run.by_seq.clear()  # a run ended is kept for what it proves, not its records
        last = run.last
        if last is None:
            return
        if following is not None and following.previous_chain == last.chain:
            run.named_by_next = True
        mark = run.checkpoint or run.first
        if run.ended:
            covered = last.event == CHECKPOINT and run.checkpoint_covers == last.seq - 1
            if not covered and not (self.live and following is None):
                self.fault(mark.place, f"cut off after this line: {self._after(run)} not covered by a checkpoint")
            return
        if following is not None and following.previous_chain == last.chain:
            return  # a process killed outright, then started again: its next run names where it ended
        if self.live and following is None:
            return
        # The newest run read may be one still being written: a reader told so finds `--live`.
        still = "; if it is still being written, verify with --live" if following is None else ""
        self.fault(mark.place, f"cut off after this line: the run of {run.instance} has no tollgate_stopped"
                   f" ({self._after(run)}){still}")  # fmt: skip

    def unsigned_runs(self) -> None:
        """With a key: a run no checkpoint signed by it vouches for is a fault. A signed checkpoint
        vouches for its run up to it, and for the runs before it that its run names, one after the
        other (a process killed outright). With `--live`, an instance's newest run may have no
        checkpoint yet, when an earlier run of it is signed: a file made up whole is never whole. The
        runs before the one that holds the instance's first signed checkpoint were written before the
        key was set: said apart (`ChainVerdict.before_key`), not faults."""
        for instance, current in self.runs.items():
            runs = [*self.ended.get(instance, ()), current]
            first_signed = self.first_signed_run.get(instance)
            before_key = runs.index(first_signed) if first_signed is not None else 0
            vouched = False  # the run after this one is vouched for, and names it
            for i in range(len(runs) - 1, -1, -1):
                run = runs[i]
                vouched = run.signed > 0 or (run.named_by_next and vouched)
                newest = i == len(runs) - 1
                if vouched or run.checkpoint is not None or i < before_key:
                    continue  # a checkpoint not signed by the key is a fault of its own
                if newest and self.live and i > 0 and runs[i - 1].signed:
                    continue  # its first checkpoint is yet to come
                self.fault(
                    run.first.place,
                    f"the run of {instance} has no checkpoint signed by the key: its {_records(run.records)}"
                    f" {'is' if run.records == 1 else 'are'} vouched for by no signature",
                )

    def kept_checkpoint(self, place: Place, line: bytes) -> None:
        """A checkpoint of the copy: one the files must hold (with a key, signed by it)."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if not isinstance(record, dict) or record.get("event") != CHECKPOINT:
            return
        parts = split_line(line)
        instance, seq = record.get("instance"), record.get("seq")
        if parts is None or not isinstance(instance, str):
            self.fault(place, "the copy's checkpoint is not a chained record")
            return
        if self.key is not None:
            signature, chain = record.get("signature"), record.get("covers_chain")
            if not (
                record.get("key_id") == self.key_id
                and isinstance(signature, str)
                and isinstance(chain, str)
                and signature_holds(self.key, signature, chain)
            ):
                self.fault(place, "the copy's checkpoint is not signed by the key")
                return
        self.kept[parts[1]] = (place, instance, seq)

    @staticmethod
    def _after(run: Run) -> str:
        last = run.last.seq if run.last is not None else 0
        after = last - run.checkpoint.seq if run.checkpoint is not None else last
        return f"{_records(after)} after the last checkpoint" if run.checkpoint else f"{_records(after)}, no checkpoint"


def _records(n: int) -> str:
    return "1 record" if n == 1 else f"{n} records"


# The console feeds one line by line as the audit grows (`read`), and reads its faults and runs
# (and saves its state: `verify_state`).
Verifier = _Verifier
