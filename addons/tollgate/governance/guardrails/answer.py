"""Reading what the model answers as it streams: one text channel (a choice's text, a tool call's
arguments, reasoning) fed in pieces, in order. Each piece gives back at once everything that can
no longer be part of a match; only the tail that may still become one is held: from the earliest
open candidate (`partial.py`: where a detector's reading runs into the end of what has come), or,
for a custom `{name, regex}` detector, which cannot say that of partial text, the last
`hold_bytes`. A candidate held longer than `hold_bytes` is treated as found. The detectors are the
requests' own (`detectors.py`), found by the same engine (`engine.py`); where a candidate may
begin, by `open_candidates.py`.

What goes on has each value to redact replaced by `[REDACTED:<kind>]`; at a value to deny, what
comes before it goes on and nothing after (`Released.denied`); a value to audit is counted. Plain
Python, knowing nothing of mitmproxy or of any answer format."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tollgate.formats.answer_reading.scanning import PLACEHOLDER, counter_copy
from tollgate.governance.guardrails import checks, detectors, text
from tollgate.governance.guardrails.detector_types import Base64PairDetector, Detector
from tollgate.governance.guardrails.engine import Engine, formats_in
from tollgate.governance.guardrails.open_candidates import (
    NOWHERE,
    Group,
    Literals,
    NameScan,
    Search,
    any_start,
    bucket,
    is_broad,
    known_by_name,
    partial_of,
)
from tollgate.governance.guardrails.partial import UNBOUNDED, Partial

HOLD_BYTES = 4096
# Released text kept as context for what is still held: the lookbehinds of a match's start, an
# address's local part, and an AWS secret's partner within its distance.
_CONTEXT = 640
# From this many bytes on, every group is searched without asking `narrow` first: where a
# candidate of one may begin is found in almost any text that long (a word's first two letters),
# and the search for it tries every byte before (a few microseconds a piece).
_WIDE = 96
# How far back a group's run is looked for byte by byte (`rstrip`) before the rest is translated.
_NEAR = 32
# A 40-character run of base64 is an AWS secret when its key id comes within this many bytes,
# after it too: it is held until that many have come after its start.
_PAIR_RUN = re.compile(rb"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_PAIR_WAIT = 256 + 24
# Base64's bytes as 0, the others as 1: a text without 40 zeros in a row translated holds no run.
_PAIR_OUTSIDE = bytes(0 if re.fullmatch(rb"[A-Za-z0-9/+]", bytes([b])) else 1 for b in range(256))
_PAIR_ZEROS = bytes(40)


class AnswerDetectors:
    """A set of detectors compiled for answers, with what each kind does (`deny`, `redact`,
    `audit`) and the bound of what may be held: made once per configuration, not per answer."""

    def __init__(
        self,
        found: Iterable[Detector],
        actions: Mapping[str, str],
        hold_bytes: int = HOLD_BYTES,
        use_hyperscan: bool | None = None,
    ) -> None:
        self.detectors = tuple(found)
        self.actions = dict(actions)
        self.hold_bytes = hold_bytes
        every_escape = not all(d.pattern.pattern.isascii() for d in self.detectors)
        self.engine = Engine(self.detectors, use_hyperscan, every_escape)
        # Every action audits only: nothing need be held, the text is only counted.
        self.holds = any(self.actions.get(d.kind) in ("deny", "redact") for d in self.detectors)
        self.tail_hold = any(not d.anchors for d in self.detectors)  # a custom regex
        self.pair = any(isinstance(d, Base64PairDetector) for d in self.detectors)
        # Tollgate's own keys, written out: each candidate a prefix of one of them, looked up.
        self.literals: tuple[Literals, ...] = ()
        self.narrow: Search = NOWHERE.search
        self.groups = self._groups()
        # By the last byte of the text: the groups whose candidate may end with it (the others
        # have none open), those of broad patterns first (the candidate they find, most often the
        # last word, spares the others' searches that could only find one after it).
        named = [g.names for g in self.groups if g.names is not None]
        for index, names in enumerate(named):
            names.index = index
        self.name_scan = NameScan(named) if named and self.engine.uses_hyperscan else None
        searched = sorted(self.groups, key=lambda g: not g.broad)
        # Each group's bytes as a table of 0 (its) and 1 (not): where a long run of them at the
        # end begins, the text translated by it and its last 1 found (`rstrip` of a run of a few
        # hundred bytes tries each byte against the alphabet's, a few times slower).
        outside = {g.alphabet: bytes(0 if b in g.alphabet else 1 for b in range(256)) for g in searched}
        self.ending = tuple(
            tuple(
                (g.alphabet, outside[g.alphabet], g.reach, g.search, g.ranks, g.kinds, g.names)
                for g in searched
                if b in g.alphabet
            )
            for b in range(256)
        )
        # The same of the groups searched always: the others only where `narrow` finds that a
        # candidate of one of them may begin (in a piece of prose, most often nowhere).
        self.always_ending = tuple(
            tuple(
                (g.alphabet, outside[g.alphabet], g.reach, g.search, g.ranks, g.kinds, g.names)
                for g in searched
                if b in g.alphabet and g.always
            )
            for b in range(256)
        )

    def _groups(self) -> tuple[Group, ...]:
        by_alphabet: dict[tuple[bytes, bool], list[tuple[Detector, Partial]]] = {}
        for d in self.detectors:
            if not d.anchors:
                continue  # a custom regex: its tail is held whole
            if d.kind == detectors.OWN_KEYS and d.check is None:
                self.literals += (Literals.of(d),)
                continue
            pattern = _PAIR_RUN if isinstance(d, Base64PairDetector) else d.pattern
            found = partial_of(pattern)
            if found is None:
                self.tail_hold = True
                continue
            # A vendor's credentials apart: their candidates begin at their names (`Names`).
            by_alphabet.setdefault((bucket(found.alphabet), known_by_name(d)), []).append((d, found))
        groups = []
        narrow: list[tuple[int, Detector, Partial]] = []
        rank = 0
        for (alphabet, _), members in by_alphabet.items():
            longest = max(p.longest for _, p in members)
            # A candidate of a pattern that may be longer than `hold_bytes` is looked for however
            # far back its run goes: held that long, it is found.
            reach = longest + 8 if longest + 8 < self.hold_bytes else UNBOUNDED
            ranked = [(rank + i, d, p) for i, (d, p) in enumerate(members)]
            rank += len(members)
            # A pattern whose candidate may begin almost anywhere (an address, a run of base64)
            # searched apart: the others' patterns are then tried only where they may begin.
            for broad in (True, False):
                part = [m for m in ranked if is_broad(m[2]) == broad]
                if part:
                    group = Group.of(alphabet, reach, part, broad, self.engine.uses_hyperscan)
                    groups.append(group)
                    narrow += [] if group.always else part
        if narrow:
            # Where a candidate of any pattern not broad may begin: one search for them all.
            self.narrow = any_start(narrow)
        return tuple(groups)

    def by_action(self, counts: Mapping[str, int]) -> tuple[tuple[str, str, int], ...]:
        """Findings by kind and the action taken on them (for the metrics)."""
        return tuple((kind, self.actions.get(kind, "audit"), n) for kind, n in counts.items())

    def scanner(self, is_json: bool = False) -> AnswerScanner:
        """A scanner of one channel: `is_json` where its text is JSON as it is written (a tool
        call's arguments), read with its escapes as the requests' bodies are."""
        return AnswerScanner(self, is_json)


@dataclass(frozen=True, slots=True)
class Released:
    """What goes on now, and whether the answer stops there: the kind of the value to deny that
    begins where `text` ends (None: it goes on)."""

    text: bytes
    denied: str | None = None


class AnswerScanner:
    """One channel of one answer, read as it comes. `feed` each piece in order, then `flush`; after
    a `denied` result, nothing more is read. `counts` holds the findings so far (kind → count)."""

    def __init__(self, compiled: AnswerDetectors, is_json: bool = False) -> None:
        self._d = compiled
        self._is_json = is_json
        self._buf = b""  # context (released) and then what is held
        self._done = 0  # where in `_buf` what is held begins
        self._open = 0  # where in `_buf` no candidate before can be open
        self._sent = 0  # where in `_buf` what went on ends (past `_done` where only audited)
        self._swallow: bytes | None = None  # the alphabet of an overlong candidate being dropped
        self._denied = False
        self.counts: Counter[str] = Counter()

    def copy(self) -> AnswerScanner:
        """The scanner as it stands, to go on from here apart."""
        other = AnswerScanner.__new__(AnswerScanner)
        other.__dict__.update(self.__dict__)
        other.counts = counter_copy(self.counts)
        return other

    @property
    def held(self) -> int:
        """How many bytes are held."""
        return len(self._buf) - self._done

    def feed(self, piece: bytes) -> Released:
        if self._denied:
            return Released(b"", None)
        if self._swallow is not None:
            piece = self._swallowed(piece)
            if not piece:
                return Released(b"")
        self._buf += piece
        return self._release(final=False)

    def flush(self) -> Released:
        """The rest, now that the channel has ended: what it holds is read as the whole text's end."""
        if self._denied:
            return Released(b"", None)
        return self._release(final=True)

    def read_whole(self, text: bytes) -> Released:
        """A channel's whole text, on a scanner fed nothing yet: `feed` and `flush` in one, without
        looking for where a value may still be open (nothing follows it)."""
        self._buf = text
        return self._release(final=True)

    def _swallowed(self, piece: bytes) -> bytes:
        """What follows a candidate dropped for its length: the rest of its run dropped too."""
        assert self._swallow is not None
        rest = piece.lstrip(self._swallow)
        if rest:
            self._swallow = None
        return rest

    def _release(self, final: bool) -> Released:
        buf, done, d = self._buf, self._done, self._d
        end = len(buf)
        lo = max(done, self._open)
        if final:
            cut, kind = end, None
        else:
            cut, kind = self._open_from(buf, lo, ranked=False)
        self._open = cut
        if cut <= done and end - cut <= d.hold_bytes:
            # Nothing decided yet (all of it may still be a candidate): nothing to find.
            out = buf[self._sent :] if not d.holds else b""
            self._sent = len(buf) if not d.holds else self._sent
            return Released(out)
        findings = self._findings(buf, done)
        # A finding that goes on past the cut is held whole.
        for start, stop, _ in reversed(findings):
            if start < cut < stop:
                cut = start
        forced = None
        if kind is not None and end - cut > d.hold_bytes:
            # Held too long: treated as found, of the kind of the candidate first in rank there.
            forced = self._open_from(buf, lo, ranked=True)[1]
        else:
            while cut < end and cut > done and buf[cut] & 0xC0 == 0x80:
                cut -= 1  # a character goes on whole
        decided = [f for f in findings if f[1] <= cut]
        out, denied = self._decide(buf, done, cut, decided)
        if not d.holds:
            # Only counted: everything goes on at once, and what may still be a match is read on.
            out = buf[self._sent :]
            self._keep(buf, cut)
            self._sent = len(self._buf)
            return Released(out)
        if denied is None and forced is not None:
            action = d.actions.get(forced, "audit")
            self.counts[forced] += 1
            if action == "deny":
                denied = forced
            elif action == "redact":
                out += PLACEHOLDER.format(kind=forced).encode()
                self._swallow = self._alphabet_of(forced)
                self._buf, self._done, self._open, self._sent = b"", 0, 0, 0
                return Released(out)
            else:
                out += buf[cut:]
            if denied is None:
                self._keep(buf, end)
                self._sent = self._done
                return Released(out)
        if denied is not None:
            self._denied = True
            self._buf = b""
            return Released(out, denied)
        self._keep(buf, cut)
        self._sent = self._done
        return Released(out)

    def _keep(self, buf: bytes, cut: int) -> None:
        """What is left: a context of released text, and what is held from `cut` on."""
        start = max(0, cut - _CONTEXT)
        self._buf = buf[start:]
        self._done = cut - start
        self._open = min(max(0, self._open - start), len(self._buf))

    def _findings(self, buf: bytes, done: int) -> list[tuple[int, int, str]]:
        """The matches that begin in what is held, of the kinds with an action: (start, end, kind)."""
        read, found = self._d.engine.scan(buf, self._is_json)
        actions = self._d.actions
        out = []
        last_end: dict[str, int] = {}
        for kind, s, e in sorted(found, key=lambda f: (f[1], -f[2])):
            if kind not in actions or s < last_end.get(kind, -1):
                continue
            last_end[kind] = e
            start, stop = read.to_body(s, e)
            if start >= done:
                out.append((start, stop, kind))
        return out

    def _decide(self, buf: bytes, done: int, cut: int, decided: list[tuple[int, int, str]]) -> tuple[bytes, str | None]:
        """The text from `done` to `cut` as it goes on, and the kind of the first value to deny."""
        actions = self._d.actions
        spans: list[tuple[int, int, str]] = []
        for start, stop, kind in decided:
            self.counts[kind] += 1
            action = actions[kind]
            if action == "deny":
                return self._edited(buf, done, start, spans), kind
            if action == "redact":
                spans.append((start, stop, kind))
        return self._edited(buf, done, cut, spans), None

    @staticmethod
    def _edited(buf: bytes, done: int, cut: int, spans: list[tuple[int, int, str]]) -> bytes:
        if not spans:
            return buf[done:cut]
        replaced, _ = text.replace(buf[done:cut], [(s - done, e - done, k) for s, e, k in spans])
        return replaced

    def _open_from(self, buf: bytes, lo: int, ranked: bool) -> tuple[int, str | None]:
        """Where the earliest candidate that may still become a match begins (at or after `lo`),
        and its kind; the end of `buf` and None where there is none. `ranked`: the kind of the
        candidate first in rank among those that begin there; else of any of them (those that
        could only begin where one is found already are not searched: most groups, most pieces)."""
        end = len(buf)
        if lo >= end:
            return end, None
        if self._is_json:
            return self._open_in_json(buf, lo, ranked)
        if not formats_in(buf):
            return self._open_in(buf, lo, end, ranked)
        # Format characters in it, read as nothing: a candidate is looked for in what is read.
        read = text.read(buf, False, formats=True)
        data = read.data
        found, kind = self._open_in(data, _to_text(read, lo), len(data), ranked)
        if found >= len(data):
            return end, None
        return read.to_body(found, found)[0], kind

    def _open_in_json(self, buf: bytes, lo: int, ranked: bool) -> tuple[int, str | None]:
        """`_open_in` of JSON text, read as its escapes stand for (a key written with `\\u005f`);
        an escape cut short may stand for any character: the text is read as ending before it."""
        at: int = len(buf)
        escape = buf.rfind(b"\\", max(lo, len(buf) - 12))
        if escape >= 0 and _cut_escape(buf, escape):
            at = escape
        if _ends_in_high_surrogate(buf, at):
            at -= 6  # the character it begins is whole only with its low half, still to come
        read = text.read(buf[:at], True, self._d.engine.every_escape, formats=formats_in(buf))
        if read.data is read.body:
            return self._open_in(buf, lo, at, ranked)
        data = read.data
        found, kind = self._open_in(data, _to_text(read, lo), len(data), ranked)
        if found >= len(data):
            return at, None
        return read.to_body(found, found)[0], kind

    def _open_in(self, buf: bytes, lo: int, at: int, ranked: bool) -> tuple[int, str | None]:
        """The earliest open candidate in `buf` (read as ending at `at`) from `lo` on."""
        d = self._d
        end = at
        kind: str | None = None
        if at < len(buf):
            buf = buf[:at]
        rank = len(d.detectors)  # the place of the candidate found (none yet: after every one)
        names_at: dict[int, list[int]] | None = None  # where each group's names begin
        if lo < end and (end - lo >= _WIDE or d.narrow(buf, lo, end)):
            ending = d.ending[buf[end - 1]]
        else:
            ending = d.always_ending[buf[end - 1]] if lo < end else ()
        for alphabet, outside, reach, search, ranks, kinds, names in ending:
            if not ranked and at < end and (at <= lo or end - at >= reach or outside[buf[at - 1]]):
                continue  # its run of bytes (where its candidate may begin) begins at `at` or after
            if names is not None and d.name_scan is not None:
                if names_at is None:
                    names_at = d.name_scan.starts(buf, lo, end)
                if names.absent(names_at):
                    continue  # no name, none cut by the end: no candidate of the group
            # Where the run of its bytes at the end begins: most often a word's start, in its last
            # bytes; where they are all its, the rest of its reach translated.
            part_lo = end - reach if end - reach > lo else lo
            near = end - _NEAR if end - _NEAR > part_lo else part_lo
            start = near + len(buf[near:end].rstrip(alphabet))
            if start == near > part_lo:
                start = part_lo + buf[part_lo:near].translate(outside).rfind(1) + 1
            if names is not None:
                start = names.first(buf, start, end) if names_at is None else names.first_in(names_at, start, end)
                if start >= end:
                    continue  # no name, none cut by the end: no candidate of the group
            if start > at or (start == at and (not ranked or ranks[0] > rank)):
                continue  # none before one found already
            m = search(buf, start, end)
            if m is not None:
                i = int(m.lastgroup[1:])  # type: ignore[index]
                if (m.start(), ranks[i]) < (at, rank):
                    at, kind, rank = m.start(), kinds[i], ranks[i]
        for literals in d.literals:
            found = literals.open_from(buf, lo, min(at, end) if at < end else end)
            if found is not None and found < at:
                at, kind = found, literals.kind
        if d.pair:
            at, kind = self._pair_open(buf, lo, at, kind)
        if d.tail_hold and end - d.hold_bytes < at:
            at, kind = max(lo, end - d.hold_bytes), None
        return at, kind

    @staticmethod
    def _pair_open(buf: bytes, lo: int, at: int, kind: str | None) -> tuple[int, str | None]:
        """A whole 40-character run of mixed base64 waits for a key id that may still come."""
        end = len(buf)
        start, stop = max(lo, end - _PAIR_WAIT), min(at, end)
        if stop - start < 40 or _PAIR_ZEROS not in buf[start:stop].translate(_PAIR_OUTSIDE):
            return at, kind  # no run of 40 (the regex tries each byte; this finds none at once)
        for m in _PAIR_RUN.finditer(buf, start, stop):
            if checks.mixed_base64(m.group()):
                return m.start(), "secrets.aws_secret_access_key"
        return at, kind

    def _alphabet_of(self, kind: str) -> bytes:
        chars: set[int] = set()
        for group in self._d.groups:
            if kind in group.kinds:
                chars.update(group.alphabet)
        return bytes(sorted(chars))


def _to_text(read: text.ScannedText, at: int) -> int:
    """A position of the body as the position in the text read of it (an escape's start, its character's)."""
    i = bisect.bisect_right(read.body_at, at) - 1
    if i < 0:
        return at
    if at < read.body_at[i] + read.body_size[i]:
        return read.text_at[i]
    return at - read.body_at[i] - read.body_size[i] + read.text_at[i] + read.text_size[i]


_ESCAPE_CUT = re.compile(rb"\\(?:u[0-9a-fA-F]{0,3})?\Z")


_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")


def _cut_escape(buf: bytes, at: int) -> bool:
    """Whether the backslash at `at` begins an escape the text's end cuts short."""
    return _escapes(buf, at) and _ESCAPE_CUT.match(buf, at) is not None


def _ends_in_high_surrogate(buf: bytes, at: int) -> bool:
    """Whether the text before `at` ends with the escape of a surrogate pair's first half."""
    start = at - 6
    return start >= 0 and _HIGH_SURROGATE.fullmatch(buf, start, at) is not None and _escapes(buf, start)


def _escapes(buf: bytes, at: int) -> bool:
    """Whether the backslash at `at` begins an escape (an even number of backslashes before it)."""
    n = 0
    while at - n - 1 >= 0 and buf[at - n - 1] == 92:
        n += 1
    return n % 2 == 0


def compiled_for(
    kinds_actions: Mapping[str, str],
    extra: Iterable[Detector] = (),
    hold_bytes: int = HOLD_BYTES,
    use_hyperscan: bool | None = None,
) -> AnswerDetectors:
    """The built-in detectors of these kinds and `extra` ones (custom, `tollgate_keys`), for answers."""
    found = [*detectors.builtin(kinds_actions), *extra]
    return AnswerDetectors(found, kinds_actions, hold_bytes, use_hyperscan)
