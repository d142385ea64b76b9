"""`tollgate audit verify --anchors CA_FILE`: the RFC 3161 time-stamps of the audit's checkpoints
(`audit_anchor` records) checked, and each record's anchor in time found (docs/audit.md, "Anchors").

A token checks when it verifies with `rfc3161-client` against the roots of CA_FILE (its signature,
and its certificate chain as of its `gen_time`; the certificates it carries in any order, as
`openssl ts -verify` reads them: `der_order`) and its imprint is the SHA-256 of the record's
`covers_chain`, which must be the `covers_chain` of the checkpoint it names (the record of seq
`covers_seq + 1` of its run). A record (but checkpoints, anchors and gaps) is anchored in time by a
token that checks and covers it (of a checkpoint of its run at or after it) whose `gen_time` is
within the window of the record's end (`record_end`): the record's `ts` is the writer's word, the
`gen_time` the TSA's, so a rewrite anchored afresh leaves the records older than the window with no
token in time. Exempt are the records that ended within the window before the later of the run's
last record and its newest token. `anchor_gap` records say why records have none; they never
excuse it.

The state kept per run is small and made of JSON values, so that the console saves it with the
verifier's (`verify_state.saved_state`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tollgate.configuration.records_settings import load_roots
from tollgate.records.audit.audit_record import WORKER_LOST, utc_timestamp
from tollgate.records.audit.der_order import token_in_der_order

ANCHOR = "audit_anchor"
GAP = "anchor_gap"
DEFAULT_WINDOW = 3600.0
KEPT_CHECKPOINTS = 1024  # a run's last checkpoints an anchor may name (a reply comes within seconds)
# A record's latency_ms or duration_ms counted, at most: a longer one (a year) is read as none. (A
# key holder who makes an old record's latency reach now is `docs/audit.md`'s "What it does not
# prove".)
MAX_SPAN_MS = 366 * 86_400_000
KEPT_SPANS = 65_536  # a run's spans of records not anchored in time yet, at most (`RunAnchors`)
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Why a token does not verify, as the library says it, in words for the reader of the audit.
_LIBRARY_WORDS = {
    "Mismatch between messages": "its imprint is not the SHA-256 of its covers_chain",
    "PKIStatus is not GRANTED": "it was not granted",
}


class TokenProblem(Exception):
    """A token that does not check; its message says why."""


@dataclass(frozen=True)
class AnchorRules:
    """What anchors are checked with: the TSAs' roots (CA_FILE) and the window, in seconds."""

    roots: tuple[x509.Certificate, ...]
    ca_file: str
    window: float = DEFAULT_WINDOW

    @property
    def fingerprint(self) -> str:
        """The roots and the window: a saved check made with others is not read on."""
        digest = hashlib.sha256(repr(self.window).encode())
        for root in self.roots:
            digest.update(root.public_bytes(Encoding.DER))
        return digest.hexdigest()[:16]


def load_rules(ca_file: str | Path, window: float = DEFAULT_WINDOW) -> AnchorRules:
    """The rules for CA_FILE (PEM certificates, read as `audit.anchor.ca_file` is); ValueError
    saying what is wrong with it."""
    roots = load_roots(str(ca_file))
    if not window > 0:
        raise ValueError(f"the window must be more than 0 seconds, not {window:g}")
    return AnchorRules(tuple(roots), str(ca_file), float(window))


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _response(token: bytes) -> bytes:
    """The TimeStampResp that carries `token` granted (`{status {0}, token}`): what the library reads."""
    body = b"\x30\x03\x02\x01\x00" + token
    return b"\x30" + _der_length(len(body)) + body


def token_time(token_b64: str, covers_chain: str, rules: AnchorRules) -> datetime:
    """The `gen_time` of a token (base64 of a TimeStampToken's DER) that checks against the rules'
    roots and imprints `covers_chain`; TokenProblem saying why it does not."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    try:
        token = base64.b64decode(token_b64, validate=True)
    except (binascii.Error, ValueError):
        raise TokenProblem("its token is not base64") from None
    try:
        response = decode_timestamp_response(_response(token_in_der_order(token)))  # certificates in any order
        gen_time = response.tst_info.gen_time
    except (ValueError, TypeError):
        raise TokenProblem("its token is not a TimeStampToken (DER)") from None
    try:
        carried = len(response.signed_data.certificates)
    except (ValueError, TypeError):
        raise TokenProblem("its token is not a TimeStampToken (DER)") from None
    if not carried:
        raise TokenProblem("it carries no certificate: its signer cannot be checked")
    verifier = VerifierBuilder(roots=list(rules.roots)).build()
    try:
        verifier.verify_message(response, covers_chain.encode("ascii"))
    except VerificationError as e:
        raise TokenProblem(_why(str(e), rules)) from None
    except (ValueError, TypeError) as e:  # a token the library cannot take apart
        raise TokenProblem(f"its token cannot be read ({e})") from None
    return gen_time if gen_time.tzinfo is not None else gen_time.replace(tzinfo=UTC)


def _why(error: str, rules: AnchorRules) -> str:
    if error in _LIBRARY_WORDS:
        return _LIBRARY_WORDS[error]
    if error.startswith("Error while verifying certificates"):
        found = re.search(r'data: "Verify error: ([^"]+)"', error) or re.search(r'reason: "([^"]+)"', error)
        detail = f" ({found.group(1)})" if found else ""
        return f"its signature and certificate chain, as of its gen_time, do not check against {rules.ca_file}{detail}"
    return error[:200]


def iso(moment: datetime) -> str:
    """A token's time as the audit writes times (and `gen_time`): ISO 8601 in UTC to the millisecond."""
    return utc_timestamp(moment.timestamp())


def seconds(ts: Any) -> float | None:
    """A record's `ts` (or an anchor's `gen_time`) as seconds since the epoch; None when it is none."""
    if not isinstance(ts, str):
        return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def record_end(record: dict[str, Any], started: Any) -> float:
    """When a record ended, in seconds: its `ts` plus its `latency_ms` or `duration_ms` (a call's
    or a connection's record is written when it ends, `ts` its start). A call recovered at a start
    (`worker lost`: its `ts` its start, its end never come) ended when it was recovered: at
    `started`, the `ts` of its run's first record. A `ts` that cannot be read is the epoch's: no
    anchor holds it in time."""
    if record.get("error") == WORKER_LOST and (recovered := seconds(started)) is not None:
        return recovered
    moment = seconds(record.get("ts"))
    if moment is None:
        return 0.0
    span = record.get("latency_ms")
    if span is None:
        span = record.get("duration_ms")
    if isinstance(span, int | float) and not isinstance(span, bool) and 0 < span < MAX_SPAN_MS:
        moment += span / 1000
    return moment


# ---- what is kept per run


@dataclass
class Stamp:
    """A token that checks."""

    tsa: str
    gen_time: str  # the token's, ISO
    place: Any  # its record's Place


@dataclass
class Gap:
    tsa: str
    error: str
    place: Any


class Late(NamedTuple):
    """A run's records not anchored in time: the first (by seq) of them, the last, how many spans."""

    first: list[Any]  # [seq, its end (ISO), its place]
    last: list[Any]
    spans: int


@dataclass
class RunAnchors:
    """A run's anchors as read so far, and its records not anchored in time yet.

    Its records are held as spans, not one by one: consecutive records (by seq) whose ends do not
    go back before the span's first record's end, so that the span's first record is its oldest.
    A checkpoint, an anchor or a gap between two records ends a span (they take a seq of their
    own), so an anchor covers whole spans: those up to its `covers_seq`. A span is anchored in
    time when an anchor that covers it has its `gen_time` within the window of every end in it
    (its first record's end, the oldest, and its newest end). One whose first record ended before
    the window before such a `gen_time` is late: later anchors, whose `gen_time` is later, cannot
    hold it in time either. The spans are few: as many as the checkpoints since the last anchor in time, and a few
    more when calls that end together are written in another order."""

    # covers_seq → [ts, the checkpoint's place, its covers_chain, the covered record's place]: the
    # run's last KEPT_CHECKPOINTS checkpoints, which anchors name.
    checkpoints: dict[int, list[Any]] = field(default_factory=dict)
    # The spans of records with no anchor in time yet, oldest first: [first seq, last seq, the
    # first record's end, the newest end (seconds), the first record's place], at most KEPT_SPANS.
    spans: list[list[Any]] = field(default_factory=list)
    late: Late | None = None  # the records found late so far (an anchor in time for them can no longer come)
    newest_gen_time: float | None = None  # the newest gen_time of the run's tokens that check (seconds)
    last_seq: int = 0  # the covers_seq of the newest checkpoint anchored (0: none)
    last_record: Any = None  # the place of the record it covers
    stamps: list[Stamp] = field(default_factory=list)  # that checkpoint's tokens, a TSA each
    anchors: int = 0  # tokens that check
    gaps: int = 0
    last_gap: Gap | None = None
    open_gaps: int = 0  # the gaps since the records were last all anchored in time
    first_open_gap: Gap | None = None

    def checkpoint(self, covers_seq: int, ts: Any, place: Any, covers_chain: Any, covered: Any) -> None:
        self.checkpoints[covers_seq] = [ts, place, covers_chain, covered]
        if len(self.checkpoints) > KEPT_CHECKPOINTS:
            del self.checkpoints[next(iter(self.checkpoints))]

    def record(self, seq: int, end: float, place: Any) -> None:
        """A record that an anchor must hold in time (neither a checkpoint, an anchor nor a gap),
        its end in seconds."""
        spans = self.spans
        last = spans[-1] if spans else None
        if last is not None and last[1] == seq - 1 and end >= last[2]:
            last[1] = seq
            last[3] = max(last[3], end)
            return
        spans.append([seq, seq, end, end, place])
        if len(spans) > KEPT_SPANS:  # a file made so (ends going back at every record): two spans made one
            first, second = spans[0], spans.pop(1)
            first[1], first[2], first[3] = second[1], min(first[2], second[2]), max(first[3], second[3])

    def gap(self, tsa: str, error: str, place: Any) -> None:
        gap = Gap(tsa, error, place)
        self.gaps += 1
        self.last_gap = gap
        self.open_gaps += 1
        if self.first_open_gap is None:
            self.first_open_gap = gap

    def anchor(self, record: dict[str, Any], place: Any, rules: AnchorRules) -> str | None:
        """An `audit_anchor` record read: None when its token checks and names its checkpoint as
        it stands, else the fault."""
        covers_seq, covers_chain = record.get("covers_seq"), record.get("covers_chain")
        tsa, token = record.get("tsa"), record.get("token")
        if type(covers_seq) is not int or not isinstance(covers_chain, str) or not _HEX64.fullmatch(covers_chain):
            return "an audit_anchor record without covers_seq and covers_chain: changed or inserted"
        if not isinstance(token, str) or not isinstance(tsa, str):
            return "an audit_anchor record without its tsa and token: changed or inserted"
        try:
            gen_time = token_time(token, covers_chain, rules)
        except TokenProblem as e:
            return f"the token of {tsa} does not verify: {e}"
        stamped = iso(gen_time)
        told = seconds(record.get("gen_time"))  # written to the millisecond
        if told is None or abs(told - gen_time.timestamp()) >= 0.001:
            return f"its gen_time is not its token's ({stamped}): changed"
        named = self.checkpoints.get(covers_seq)
        if named is None:
            return (
                f"it names a checkpoint (covering seq {covers_seq}) its run does not hold: that checkpoint, or"
                " the anchor, moved or inserted"
            )
        _ts, _checkpoint_place, chain, covered = named
        if chain != covers_chain:
            return (
                f"rewritten: {tsa} time-stamped another chain at {stamped} than its checkpoint's now (covering"
                f" seq {covers_seq}): the records up to there were changed after they were anchored"
            )
        self.anchors += 1
        if covers_seq > self.last_seq:
            self.last_seq, self.last_record, self.stamps = covers_seq, covered, []
        if covers_seq == self.last_seq:
            self.stamps.append(Stamp(tsa, stamped, place))
        moment = gen_time.timestamp()
        if self.newest_gen_time is None or moment > self.newest_gen_time:
            self.newest_gen_time = moment
        self._held(covers_seq, moment, rules.window)
        return None

    def _held(self, covers_seq: int, moment: float, window: float) -> None:
        """The spans a token of `moment` covers: anchored in time, late, or (their newest end after
        its window) left for a later token."""
        kept = []
        for span in self.spans:
            if span[1] > covers_seq:
                kept.append(span)
            elif span[2] < moment - window:
                self.late = _with(self.late, span)
            elif span[3] > moment + window:
                kept.append(span)
        self.spans = kept
        if not kept and self.late is None:  # all anchored in time: the gaps until now explain nothing missed
            self.open_gaps, self.first_open_gap = 0, None

    def missed(self, reference: float | None, window: float) -> Late | None:
        """The run's records with no anchor in time, as things stand: those found late, and those
        not anchored yet that ended before the window before `reference` (seconds: the later of
        the run's last record and its newest token). The others are not anchored yet."""
        late = self.late
        if reference is None:
            return late
        if self.newest_gen_time is not None:
            reference = max(reference, self.newest_gen_time)
        for span in self.spans:
            if span[2] < reference - window:
                late = _with(late, span)
        return late

    def ended(self) -> None:
        """The run has no more records: no anchor will name its checkpoints or hold its spans."""
        self.checkpoints.clear()
        self.spans.clear()
        self.late = None

    # saved with the verifier (the console), each place through `name`, read back through `named`

    def saved(self, name: Callable[[Any], Any]) -> dict[str, Any]:
        def gap(g: Gap | None) -> list[Any] | None:
            return None if g is None else [g.tsa, g.error, name(g.place)]

        late = self.late
        return {
            "checkpoints": [[seq, ts, name(p), chain, name(c)] for seq, (ts, p, chain, c) in self.checkpoints.items()],
            "spans": [[a, b, first, newest, name(p)] for a, b, first, newest, p in self.spans],
            "late": None if late is None else [
                [late.first[0], late.first[1], name(late.first[2])], [late.last[0], late.last[1], name(late.last[2])],
                late.spans,
            ],
            "newest_gen_time": self.newest_gen_time,
            "last_seq": self.last_seq,
            "last_record": None if self.last_record is None else name(self.last_record),
            "stamps": [[s.tsa, s.gen_time, name(s.place)] for s in self.stamps],
            "anchors": self.anchors,
            "gaps": self.gaps,
            "last_gap": gap(self.last_gap),
            "open_gaps": self.open_gaps,
            "first_open_gap": gap(self.first_open_gap),
        }  # fmt: skip

    @classmethod
    def restored(cls, state: dict[str, Any], named: Callable[[Any], Any]) -> RunAnchors:
        def gap(g: list[Any] | None) -> Gap | None:
            return None if g is None else Gap(str(g[0]), str(g[1]), named(g[2]))

        kept = cls()
        kept.checkpoints = {int(seq): [ts, named(p), chain, named(c)] for seq, ts, p, chain, c in state["checkpoints"]}
        kept.spans = [[int(a), int(b), float(e), float(n), named(p)] for a, b, e, n, p in state["spans"]]
        late = state["late"]
        if late is not None:
            (a, a_end, a_place), (b, b_end, b_place), spans = late
            kept.late = Late([int(a), str(a_end), named(a_place)], [int(b), str(b_end), named(b_place)], int(spans))
        newest = state["newest_gen_time"]
        kept.newest_gen_time = None if newest is None else float(newest)
        kept.last_seq = int(state["last_seq"])
        kept.last_record = None if state["last_record"] is None else named(state["last_record"])
        kept.stamps = [Stamp(str(t), str(g), named(p)) for t, g, p in state["stamps"]]
        kept.anchors, kept.gaps, kept.open_gaps = (int(state[k]) for k in ("anchors", "gaps", "open_gaps"))
        kept.last_gap, kept.first_open_gap = gap(state["last_gap"]), gap(state["first_open_gap"])
        return kept


def _with(late: Late | None, span: list[Any]) -> Late:
    """`late` with a span of records found late (its first record's end, its newest: ISO)."""
    first, last = [span[0], utc_timestamp(span[2]), span[4]], [span[1], utc_timestamp(span[3]), span[4]]
    if late is None:
        return Late(first, last, 1)
    return Late(min(late.first, first, key=_seq), max(late.last, last, key=_seq), late.spans + 1)


def _seq(entry: list[Any]) -> int:
    return int(entry[0])


def missed_fault(instance: str, late: Late, kept: RunAnchors, window: float) -> str:
    """What a run's records with no anchor in time are, said at the first of them."""
    first, last = late.first, late.last
    more = f"; records after it, up to seq {last[0]}, may not be either" if last[0] > first[0] else ""
    gap = kept.first_open_gap
    if gap is not None:
        why = (
            f"; {kept.open_gaps} anchor_gap record{'s explain' if kept.open_gaps > 1 else ' explains'} it, not"
            f" excuse it (the first {gap.place}: {gap.tsa}:"
            f" {gap.error})"
        )
    else:
        why = "; no anchor_gap record explains it (its anchors removed, re-timed, or never asked for)"
    return (
        f"not anchored in time: this record of {instance} (seq {first[0]}, ended {first[1]}) is covered by no"
        f" token whose gen_time is within {window:g} s of its end{more}{why}"
    )
