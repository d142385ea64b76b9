"""Reading what the model answers as it streams: one text channel (a choice's text, a tool call's
arguments, reasoning) fed in pieces, in order. Each piece gives back at once everything that can
no longer be part of a match; only the tail that may still become one is held: from the earliest
open candidate (`partial.py`: where a detector's reading runs into the end of what has come), or,
for a custom `{name, regex}` detector, which cannot say that of partial text, the last
`hold_bytes`. A candidate held longer than `hold_bytes` is treated as found. The detectors are the
requests' own (`detectors.py`), found by the same engine (`engine.py`).

What goes on has each value to redact replaced by `[REDACTED:<kind>]`; at a value to deny, what
comes before it goes on and nothing after (`Released.denied`); a value to audit is counted. Plain
Python, knowing nothing of mitmproxy or of any answer format."""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tollgate.formats.answer_reading.scanning import PLACEHOLDER, counter_copy
from tollgate.governance.guardrails import checks, detectors, text
from tollgate.governance.guardrails.detectors import Base64PairDetector, Detector
from tollgate.governance.guardrails.engine import HYPERSCAN, Engine, formats_in
from tollgate.governance.guardrails.partial import UNBOUNDED, Partial, Unsupported, class_of, partial

if HYPERSCAN:
    import hyperscan

HOLD_BYTES = 4096
# Released text kept as context for what is still held: the lookbehinds of a match's start, an
# address's local part, and an AWS secret's partner within its distance.
_CONTEXT = 640
# A 40-character run of base64 is an AWS secret when its key id comes within this many bytes,
# after it too: it is held until that many have come after its start.
_PAIR_RUN = re.compile(rb"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_PAIR_WAIT = 256 + 24


@functools.lru_cache(maxsize=1024)
def _partial_of(pattern: re.Pattern[bytes]) -> Partial | None:
    try:
        return partial(pattern)
    except Unsupported:
        return None


# The alphabets most detectors' candidates are made of: their detectors are searched together (one
# search where there would be dozens), each from where the run of its bucket's bytes begins.
_BUCKETS = tuple(
    frozenset(b)
    for b in (
        b"0123456789",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/=~$%",
    )
)


def _bucket(alphabet: bytes) -> bytes:
    """The smallest bucket that holds every byte of `alphabet`, or the alphabet itself."""
    chars = frozenset(alphabet)
    for bucket in _BUCKETS:
        if chars <= bucket:
            return bytes(sorted(bucket))
    return alphabet


@dataclass(frozen=True, slots=True)
class _Literals:
    """A detector of exact strings (`tollgate_keys`' own keys): a candidate is a proper prefix of
    one of them, found in a set of every prefix (a regex of hundreds of keys' prefixes would take
    seconds to compile)."""

    kind: str
    prefixes: frozenset[bytes]
    first: re.Pattern[bytes]  # a byte a key begins with
    longest: int

    @classmethod
    def of(cls, found: Detector) -> _Literals:
        # `own_keys` writes them escaped, joined by `|`.
        written = re.findall(rb"(?:\\.|[^|\\])+", found.pattern.pattern, re.DOTALL)
        keys = [re.sub(rb"\\(.)", rb"\1", k, flags=re.DOTALL) for k in written]
        prefixes = frozenset(k[:n] for k in keys for n in range(1, len(k)))
        first = re.compile(class_of(frozenset(k[0] for k in keys if k)))
        return cls(found.kind, prefixes, first, max(map(len, keys)))

    def open_from(self, buf: bytes, lo: int, end: int) -> int | None:
        prefixes = self.prefixes
        for m in self.first.finditer(buf, max(lo, end - self.longest + 1), end):
            if buf[m.start() : end] in prefixes:
                return m.start()
        return None


def _starts(members: list[Partial]) -> bytes:
    """Where no member's candidate may begin, one or two tests of its bytes rule it out: a pattern
    of the bytes a candidate may begin with, one alone at the end or two (`Partial.seconds`)."""
    if any(p.seconds is None or p.ends is None for p in members):
        return class_of(frozenset(b for p in members for b in p.first))
    ends: set[int] = set()
    seconds: dict[int, set[int]] = {}
    for p in members:
        ends.update(p.ends or b"")
        for first, following in (p.seconds or {}).items():
            seconds.setdefault(first, set()).update(following)
    by_following: dict[frozenset[int], set[int]] = {}
    for first, after in seconds.items():
        by_following.setdefault(frozenset(after), set()).add(first)
    choices = [class_of(frozenset(ends)) + b"\\Z"] if ends else []
    choices += [class_of(frozenset(firsts)) + class_of(after) for after, firsts in by_following.items()]
    return b"|".join(choices) or b"(?!)"


class _Names:
    """Where a candidate of a group of vendors' credentials may begin: at one of their names
    (`detectors.vendor_named`: a match begins with its anchor, the vendor's name in any letter
    case), or where a name cut by the text's end may. Found by Hyperscan where it is installed: the
    group's search alone (Python's `re`, dozens of names tried at every byte) costs a microsecond
    a byte."""

    def __init__(self, anchors: Iterable[bytes], use_hyperscan: bool) -> None:
        names = tuple(dict.fromkeys(anchors))
        self.longest = max(partial(re.compile(a)).longest for a in names)
        self._database = _names_database(names) if use_hyperscan else None
        self._patterns = tuple(re.compile(a) for a in names)
        self._scratch = threading.local()  # each thread's: a scratch serves one scan at a time

    def first(self, buf: bytes, lo: int, hi: int) -> int:
        """Where a candidate may begin first in [lo, hi): the first name, or the first place a
        name cut by the end may begin (`hi` where there is neither)."""
        cut = max(lo, hi - self.longest + 1)
        if self._database is None:
            found = (p.search(buf, lo, hi) for p in self._patterns)
            return min((m.start() for m in found if m is not None and m.start() < cut), default=cut)
        scratch = getattr(self._scratch, "scratch", None)
        if scratch is None:
            scratch = self._scratch.scratch = hyperscan.Scratch(self._database)
        starts: list[int] = []
        self._database.scan(buf[lo:hi], match_event_handler=_first_start, context=starts, scratch=scratch)
        return min(lo + starts[0], cut) if starts else cut


def _first_start(id_: int, start: int, end: int, flags: int, starts: list[int]) -> bool:
    if not starts or start < starts[0]:
        starts[:] = [start]
    return False


def _names_database(names: tuple[bytes, ...]) -> Any:
    flags = [hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_CASELESS] * len(names)
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    expressions = [n.removeprefix(b"(?i)") for n in names]
    database.compile(expressions=expressions, ids=list(range(len(names))), elements=len(names), flags=flags)
    return database


_Search = Callable[[bytes, int, int], "re.Match[bytes] | None"]


@dataclass(frozen=True, slots=True)
class _Group:
    """Detectors whose candidates are made of the same bytes: one search of their open forms
    together, from where the run of those bytes at the end begins."""

    alphabet: bytes
    reach: int  # the longest candidate of any of them and a little (`UNBOUNDED`: past `hold_bytes`)
    search: _Search  # of their open forms, as `Pattern.search`
    kinds: tuple[str, ...]  # by alternative (`o<i>`)
    # Each alternative's place among every group's: of two candidates that begin at the same
    # byte, the one of the lower place is the one reported.
    ranks: tuple[int, ...]
    broad: bool  # of patterns whose candidate may begin almost anywhere
    names: _Names | None  # a group of vendors' credentials: where their names are

    @property
    def always(self) -> bool:
        """Searched at every piece: a broad pattern's candidate (begins almost anywhere), or one
        that begins at a name (`names` says where). The others are searched together first."""
        return self.broad or self.names is not None

    @classmethod
    def of(
        cls, alphabet: bytes, reach: int, members: list[tuple[int, Detector, Partial]], broad: bool, use_hyperscan: bool
    ) -> _Group:
        starts = _led_starts(members)
        search: _Search
        if len(members) > _ONE_SEARCH:
            search = _ByFirstByte(starts, [p for _, _, p in members]).search
        else:
            source = b"|".join(b"(?P<o%d>%s)" % (i, p.open.pattern) for i, (_, _, p) in enumerate(members))
            search = re.compile(b"(?=" + starts + b")(?:" + source + b")").search
        kinds, ranks = tuple(d.kind for _, d, _ in members), tuple(r for r, _, _ in members)
        named = all(_vendor_named(d) for _, d, _ in members)
        names = _Names((a for _, d, _ in members for a in d.anchors), use_hyperscan) if named else None
        return cls(alphabet, reach, search, kinds, ranks, broad, names)


_NOWHERE = re.compile(b"(?!)")
# A group of more members than this is searched by the byte its candidate begins with (`_ByFirstByte`).
_ONE_SEARCH = 4
_UNSET: Any = object()


class _ByFirstByte:
    """The search of a large group's open forms: where a candidate may begin (its first two bytes,
    `_starts`), only the members whose candidates may begin with that byte are tried. One
    alternation of them all (Python's `re` enters each alternative in turn at every place that
    passes) cost tens of microseconds a piece once the vendors' kinds came: most of an answer's
    small pieces' reading."""

    __slots__ = ("_by_byte", "_firsts", "_lock", "_opens", "_starts")

    def __init__(self, starts: bytes, members: list[Partial]) -> None:
        self._starts = re.compile(b"(?=" + starts + b")")
        self._opens = tuple(p.open.pattern for p in members)
        self._firsts = tuple(frozenset(p.first) if p.first else None for p in members)
        # Each byte's alternation, compiled when a candidate first begins with it (of the dozens
        # of bytes, most answers bring a few).
        self._by_byte: dict[int, re.Pattern[bytes] | None] = {}
        self._lock = threading.Lock()

    def search(self, buf: bytes, start: int, end: int) -> re.Match[bytes] | None:
        """As `Pattern.search` of the alternation of every member's open form (`o<i>` the group
        of the member found), the earliest place first, the first member there."""
        find, by_byte = self._starts.search, self._by_byte
        at = start
        while at < end:
            found = find(buf, at, end)
            if found is None:
                return None
            place = found.start()
            pattern = by_byte.get(buf[place], _UNSET)
            if pattern is _UNSET:
                pattern = self._compile(buf[place])
            if pattern is not None:
                m = pattern.match(buf, place, end)
                if m is not None:
                    return m
            at = place + 1
        return None

    def _compile(self, byte: int) -> re.Pattern[bytes] | None:
        with self._lock:
            if byte not in self._by_byte:
                members = [i for i, first in enumerate(self._firsts) if first is None or byte in first]
                source = b"|".join(b"(?P<o%d>%s)" % (i, self._opens[i]) for i in members)
                self._by_byte[byte] = re.compile(source) if source else None
            return self._by_byte[byte]


# The zero-width tests most detectors' patterns begin with (a token's start, a name's part): read
# at a candidate's first byte, before its open form is tried there (a word's inner bytes rule out
# most places; its open form would take each member's in turn).
_LEADS = (detectors.NAME_PART, detectors.left(rb"A-Za-z0-9_-"), detectors.TOKEN_START)


def _lead(found: Detector) -> bytes:
    """The test `found`'s pattern begins with (of `_LEADS`), or nothing."""
    pattern = found.pattern.pattern
    return next((lead for lead in _LEADS if pattern.startswith(lead)), b"")


def _led_starts(members: list[tuple[int, Detector, Partial]]) -> bytes:
    """Where a candidate of a group's members may begin: `_starts` of the members of each lead,
    after their lead. A lead is read at a byte that has come (the first of the candidate), so
    exactly as the pattern reads it, where the open form takes a lookahead as holding."""
    by_lead: dict[bytes, list[Partial]] = {}
    for _, d, p in members:
        # A pair's run is searched by a pattern of its own (`_PAIR_RUN`), not the detector's.
        by_lead.setdefault(b"" if isinstance(d, Base64PairDetector) else _lead(d), []).append(p)
    return b"|".join(b"%s(?:%s)" % (lead, _starts(parts)) for lead, parts in by_lead.items())


def _vendor_named(found: Detector) -> bool:
    """Whether `found` is a credential known by a name (its vendor's, or its own in any letter
    case: `named`), whose match begins with its anchor, the name."""
    if not found.at_anchor:
        return False
    pattern = found.pattern.pattern
    if pattern.startswith(detectors.NAME_PART):
        return True
    return len(found.anchors) == 1 and pattern.startswith(b"(?i:" + found.anchors[0].removeprefix(b"(?i)") + b")")


# A pattern whose candidate may begin with more pairs of bytes than this is searched apart.
_BROAD_STARTS = 512


def _broad(found: Partial) -> bool:
    return found.seconds is None or sum(map(len, found.seconds.values())) > _BROAD_STARTS


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
        self.literals: tuple[_Literals, ...] = ()
        self.narrow: _Search = _NOWHERE.search
        self.groups = self._groups()
        # By the last byte of the text: the groups whose candidate may end with it (the others
        # have none open), those of broad patterns first (the candidate they find, most often the
        # last word, spares the others' searches that could only find one after it).
        searched = sorted(self.groups, key=lambda g: not g.broad)
        self.ending = tuple(
            tuple((g.alphabet, g.reach, g.search, g.ranks, g.kinds, g.names) for g in searched if b in g.alphabet)
            for b in range(256)
        )
        # The same of the groups searched always: the others only where `narrow` finds that a
        # candidate of one of them may begin (in a piece of prose, most often nowhere).
        self.always_ending = tuple(
            tuple(
                (g.alphabet, g.reach, g.search, g.ranks, g.kinds, g.names)
                for g in searched
                if b in g.alphabet and g.always
            )
            for b in range(256)
        )

    def _groups(self) -> tuple[_Group, ...]:
        by_alphabet: dict[tuple[bytes, bool], list[tuple[Detector, Partial]]] = {}
        for d in self.detectors:
            if not d.anchors:
                continue  # a custom regex: its tail is held whole
            if d.kind == detectors.OWN_KEYS and d.check is None:
                self.literals += (_Literals.of(d),)
                continue
            pattern = _PAIR_RUN if isinstance(d, Base64PairDetector) else d.pattern
            found = _partial_of(pattern)
            if found is None:
                self.tail_hold = True
                continue
            # A vendor's credentials apart: their candidates begin at their names (`_Names`).
            by_alphabet.setdefault((_bucket(found.alphabet), _vendor_named(d)), []).append((d, found))
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
                part = [m for m in ranked if _broad(m[2]) == broad]
                if part:
                    group = _Group.of(alphabet, reach, part, broad, self.engine.uses_hyperscan)
                    groups.append(group)
                    narrow += [] if group.always else part
        if narrow:
            # Where a candidate of any pattern not broad may begin: one search for them all.
            self.narrow = re.compile(b"(?=" + _led_starts(narrow) + b")").search
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
        if final:
            cut, kind = end, None
        else:
            cut, kind = self._open_from(buf, max(done, self._open))
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
            forced = kind  # held too long: treated as found
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

    def _open_from(self, buf: bytes, lo: int) -> tuple[int, str | None]:
        """Where the earliest candidate that may still become a match begins (at or after `lo`),
        and its kind; the end of `buf` and None where there is none."""
        end = len(buf)
        if lo >= end:
            return end, None
        if self._is_json:
            return self._open_in_json(buf, lo)
        if not formats_in(buf):
            return self._open_in(buf, lo, end, None)
        # Format characters in it, read as nothing: a candidate is looked for in what is read.
        read = text.read(buf, False, formats=True)
        data = read.data
        found, kind = self._open_in(data, _to_text(read, lo), len(data), None)
        if found >= len(data):
            return end, None
        return read.to_body(found, found)[0], kind

    def _open_in_json(self, buf: bytes, lo: int) -> tuple[int, str | None]:
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
            return self._open_in(buf, lo, at, None)
        data = read.data
        found, kind = self._open_in(data, _to_text(read, lo), len(data), None)
        if found >= len(data):
            return at, None
        return read.to_body(found, found)[0], kind

    def _open_in(self, buf: bytes, lo: int, at: int, kind: str | None) -> tuple[int, str | None]:
        """The earliest open candidate in `buf` (read as ending at `at`) from `lo` on."""
        d = self._d
        end = at
        if at < len(buf):
            buf = buf[:at]
        tail = buf[lo:end]
        size = len(tail)
        rank = len(d.detectors)  # the place of the candidate found (none yet: after every one)
        ending = () if not size else d.ending[buf[end - 1]] if d.narrow(buf, lo, end) else d.always_ending[buf[end - 1]]
        for alphabet, reach, search, ranks, kinds, names in ending:
            part = tail[-reach:] if reach < size else tail
            start = end - len(part) + len(part.rstrip(alphabet))  # where the run of its bytes begins
            if names is not None:
                start = names.first(buf, start, end)
            if start > at or (start == at and ranks[0] > rank):
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
        for m in _PAIR_RUN.finditer(buf, max(lo, end - _PAIR_WAIT), min(at, end)):
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
