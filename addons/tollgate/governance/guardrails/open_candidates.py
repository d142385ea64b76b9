"""Where a candidate of an answer's detectors may begin at the end of what has come (`answer.py`
reads an answer with them): the detectors in groups of the bytes their candidates are made of, each
group's open forms (`partial.py`) searched together, from where a run of its bytes begins; a
vendor's credentials from their names (Hyperscan's); Tollgate's own keys by their prefixes."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.detector_types import Base64PairDetector, Detector
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.partial import Partial, Unsupported, class_of, partial

if HYPERSCAN:
    import hyperscan

import re._constants as sre_c  # type: ignore[import-not-found]  # no stubs: the standard library's own reader
import re._parser as sre  # type: ignore[import-not-found]


@functools.lru_cache(maxsize=1024)
def partial_of(pattern: re.Pattern[bytes]) -> Partial | None:
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


def bucket(alphabet: bytes) -> bytes:
    """The smallest bucket that holds every byte of `alphabet`, or the alphabet itself."""
    chars = frozenset(alphabet)
    for bucket in _BUCKETS:
        if chars <= bucket:
            return bytes(sorted(bucket))
    return alphabet


@dataclass(frozen=True, slots=True)
class Literals:
    """A detector of exact strings (`tollgate_keys`' own keys): a candidate is a proper prefix of
    one of them, found in a set of every prefix (a regex of hundreds of keys' prefixes would take
    seconds to compile)."""

    kind: str
    prefixes: frozenset[bytes]
    first: re.Pattern[bytes]  # a byte a key begins with
    longest: int

    @classmethod
    def of(cls, found: Detector) -> Literals:
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


class Names:
    """Where a candidate of a group of vendors' credentials may begin: at one of their names
    (`detectors.vendor_named`: a match begins with its anchor, the vendor's name in any letter
    case), or where a name cut by the text's end may. Found by Hyperscan where it is installed: the
    group's search alone (Python's `re`, dozens of names tried at every byte) costs a microsecond
    a byte."""

    def __init__(self, anchors: Iterable[bytes], use_hyperscan: bool) -> None:
        names = tuple(dict.fromkeys(anchors))
        self.names = names
        self.index = 0  # its place among the groups of names (`NameScan`)
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

    def absent(self, found: dict[int, list[int]]) -> bool:
        """Whether `NameScan.starts` found neither a name of the group nor one cut by the end,
        and knows where those cut may begin: `first_in` would be `hi` wherever it looked from."""
        index = self.index
        if index in found or ~index in found:
            return False
        known = found.get(_CUT_KNOWN)
        return known is not None and index in known

    def first_in(self, found: dict[int, list[int]], lo: int, hi: int) -> int:
        """`first`, of the names `NameScan.starts` found; where it found where names cut by the
        end may begin (`NameScan.cut_known`), `hi` where none may (no candidate of the group)."""
        cut = max(lo, hi - self.longest + 1)
        index = self.index
        named = found.get(index)
        if named is not None:
            first = min((at for at in named if at >= lo), default=None)
            if first is not None:
                return first
        cut_at = found.get(~index)
        if cut_at is None:
            known = found.get(_CUT_KNOWN)
            return hi if known is not None and index in known else cut
        # Never before `cut`: a longer part of a name holds the whole name, found above.
        return max(min(cut_at), cut)


class NameScan:
    """Every group's names in one Hyperscan database: one pass a piece finds where each group's
    first name begins (a pass for each group cost a few microseconds a piece more), and, in the
    same pass, where a name cut by the end of the text may begin (`cut_names`): a group with
    neither has no candidate, and its search is spared (most pieces, most groups)."""

    def __init__(self, groups: Iterable[Names]) -> None:
        expressions: list[bytes] = []
        self._group_of: list[int] = []
        cut: list[bytes] = []
        cut_group_of: list[int] = []
        for names in groups:
            expressions += names.names
            self._group_of += [names.index] * len(names.names)
            forms = [cut_names(n) for n in names.names]
            if all(f is not None for f in forms):
                cut += [f for f in forms if f is not None]
                cut_group_of += [~names.index] * len(forms)
        self._named = len(expressions)
        # A group whose names' cut forms are not all known is searched as before, from where a
        # name may begin (the last `longest` bytes).
        self._group_of += cut_group_of
        self._known = frozenset(~i for i in cut_group_of)
        self._database = _names_database(tuple(expressions), tuple(cut))
        self._scratch = threading.local()

    def starts(self, buf: bytes, lo: int, hi: int) -> dict[int, list[int]]:
        """By group, where its names in [lo, hi) begin; by its index's complement (`~index`),
        where its names cut by `hi` may begin (none: no key); `_CUT_KNOWN`, whether that of a group
        is known (a set of its indexes)."""
        scratch = getattr(self._scratch, "scratch", None)
        if scratch is None:
            scratch = self._scratch.scratch = hyperscan.Scratch(self._database)
        found: dict[Any, Any] = {_CUT_KNOWN: self._known}
        group_of = self._group_of

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            found.setdefault(group_of[id_], []).append(lo + start)

        self._database.scan(buf[lo:hi], match_event_handler=on_match, scratch=scratch)
        return found


def _first_start(id_: int, start: int, end: int, flags: int, starts: list[int]) -> bool:
    if not starts or start < starts[0]:
        starts[:] = [start]
    return False


def _names_database(names: tuple[bytes, ...], cut: tuple[bytes, ...] = ()) -> Any:
    expressions = [n.removeprefix(b"(?i)") for n in names] + list(cut)
    flags = [hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_CASELESS] * len(expressions)
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags)
    return database


_CUT_KNOWN: Any = "cut known"  # `NameScan.starts`' key of the groups whose cut names it finds
# A name's forms (its alternatives, its optional parts) spelled out at most this many.
_FORMS_AT_MOST = 64


def cut_names(name: bytes) -> bytes | None:
    """A Hyperscan expression (caseless) of the text's end beginning with a part of a match of
    `name` (a vendor's name): its forms' first byte, first two, ..., each whole, then the end.
    It finds where such a part may begin (a superset, in any letter case); None for a name
    whose forms are too many or not read here (a repeat, a lookaround)."""
    try:
        forms = _forms(list(sre.parse(name)))
    except (_NotFinite, re.error):
        return None
    if not forms:
        return None
    choices = set()
    for form in forms:
        if not form:
            return None  # an empty name would make every place a candidate's
        # First byte required, each later one optional: a nonempty start of this form.
        source = b""
        for chars in reversed(form[1:]):
            source = b"(?:" + class_of(chars) + source + b")?"
        choices.add(class_of(form[0]) + source)
    return b"(?:" + b"|".join(sorted(choices)) + b")\\z"


class _NotFinite(ValueError):
    pass


def _forms(items: list[Any]) -> list[tuple[frozenset[int], ...]]:
    """Every form of a sequence of parsed items: a tuple of byte classes (lowercase)."""
    forms: list[tuple[frozenset[int], ...]] = [()]
    nexts: list[tuple[frozenset[int], ...]]
    for op, av in items:
        if op is sre_c.LITERAL:
            nexts = [(frozenset({bytes([av]).lower()[0]}),)]
        elif op is sre_c.IN:
            chars: set[int] = set()
            for inner, value in av:
                if inner is sre_c.LITERAL:
                    chars.add(bytes([value]).lower()[0])
                elif inner is sre_c.RANGE:
                    chars.update(bytes(range(value[0], value[1] + 1)).lower())
                else:
                    raise _NotFinite
            nexts = [(frozenset(chars),)]
        elif op is sre_c.SUBPATTERN:
            nexts = _forms(list(av[3]))
        elif op is sre_c.BRANCH:
            nexts = [f for branch in av[1] for f in _forms(list(branch))]
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and av[1] <= 2:
            low, high, item = av
            inner_forms = _forms(list(item))
            nexts = []
            for count in range(low, high + 1):
                combined: list[tuple[frozenset[int], ...]] = [()]
                for _ in range(count):
                    combined = [a + b for a in combined for b in inner_forms]
                nexts += combined
        else:
            raise _NotFinite
        forms = [f + n for f in forms for n in nexts]
        if len(forms) > _FORMS_AT_MOST:
            raise _NotFinite
    return forms


Search = Callable[[bytes, int, int], "re.Match[bytes] | None"]


@dataclass(frozen=True, slots=True)
class Group:
    """Detectors whose candidates are made of the same bytes: one search of their open forms
    together, from where the run of those bytes at the end begins."""

    alphabet: bytes
    reach: int  # the longest candidate of any of them and a little (`UNBOUNDED`: past `hold_bytes`)
    search: Search  # of their open forms, as `Pattern.search`
    kinds: tuple[str, ...]  # by alternative (`o<i>`)
    # Each alternative's place among every group's: of two candidates that begin at the same
    # byte, the one of the lower place is the one reported.
    ranks: tuple[int, ...]
    broad: bool  # of patterns whose candidate may begin almost anywhere
    names: Names | None  # a group of vendors' credentials: where their names are

    @property
    def always(self) -> bool:
        """Searched at every piece: a broad pattern's candidate (begins almost anywhere), or one
        that begins at a name (`names` says where). The others are searched together first."""
        return self.broad or self.names is not None

    @classmethod
    def of(
        cls, alphabet: bytes, reach: int, members: list[tuple[int, Detector, Partial]], broad: bool, use_hyperscan: bool
    ) -> Group:
        starts = led_starts(members)
        search: Search
        if len(members) > _ONE_SEARCH:
            search = _ByFirstByte(starts, [p for _, _, p in members]).search
        else:
            source = b"|".join(b"(?P<o%d>%s)" % (i, p.open.pattern) for i, (_, _, p) in enumerate(members))
            whole = re.compile(b"(?=" + starts + b")(?:" + source + b")")
            firsts = _firsts(members)
            search = _Led(firsts, starts, whole).search if len(firsts) <= _FEW_FIRSTS else whole.search
        kinds, ranks = tuple(d.kind for _, d, _ in members), tuple(r for r, _, _ in members)
        named = all(known_by_name(d) for _, d, _ in members)
        names = Names((a for _, d, _ in members for a in d.anchors), use_hyperscan) if named else None
        return cls(alphabet, reach, search, kinds, ranks, broad, names)


NOWHERE = re.compile(b"(?!)")
# A group of more members than this is searched by the byte its candidate begins with (`_ByFirstByte`).
_ONE_SEARCH = 4
# A group whose candidates may begin with this many bytes at most is searched as `_Led`: where
# they may (not a word's every letter, most often).
_FEW_FIRSTS = 30
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


def led_starts(members: list[tuple[int, Detector, Partial]]) -> bytes:
    """Where a candidate of a group's members may begin: `_starts` of the members of each lead,
    after their lead. A lead is read at a byte that has come (the first of the candidate), so
    exactly as the pattern reads it, where the open form takes a lookahead as holding."""
    by_lead: dict[bytes, list[Partial]] = {}
    for _, d, p in members:
        # A pair's run is searched by a pattern of its own (`_PAIR_RUN`), not the detector's.
        by_lead.setdefault(b"" if isinstance(d, Base64PairDetector) else _lead(d), []).append(p)
    return b"|".join(b"%s(?:%s)" % (lead, _starts(parts)) for lead, parts in by_lead.items())


def any_start(members: list[tuple[int, Detector, Partial]]) -> Search:
    """A search for whether a candidate of any of `members` may begin in [lo, hi) (where one
    begins, the match says nothing of): `led_starts` tried only at a byte a candidate may begin
    with. Searched as a lookahead alone, `led_starts` is tried whole at every byte (its dozens of
    alternatives in turn); led by a class of bytes, the engine skips the others at once."""
    return _any_start(_firsts(members), led_starts(members)).search


def _firsts(members: list[tuple[int, Detector, Partial]]) -> frozenset[int]:
    """Every byte a candidate of `members` may begin with (`led_starts` holds at no other)."""
    return frozenset(b for _, _, p in members for b in p.first + (p.ends or b"") + bytes(p.seconds or ()))


def _any_start(firsts: frozenset[int], starts: bytes) -> re.Pattern[bytes]:
    # The byte consumed, then the starts read from it again: a lookbehind of that one byte.
    return re.compile(class_of(firsts) + b"(?<=(?=" + starts + b")(?s:.))")


class _Led:
    """The search of a group's open forms whose candidates begin with a few bytes only: where
    `led_starts` holds (found as by `any_start`, the other bytes skipped at once), the forms
    matched there. The forms' search alone tries `led_starts` whole at every byte."""

    __slots__ = ("_find", "_match")

    def __init__(self, firsts: frozenset[int], starts: bytes, whole: re.Pattern[bytes]) -> None:
        self._find = _any_start(firsts, starts).search
        self._match = whole.match

    def search(self, buf: bytes, start: int, end: int) -> re.Match[bytes] | None:
        """As `whole.search`: its first match, the earliest place first."""
        find, match = self._find, self._match
        found = find(buf, start, end)
        while found is not None:
            place = found.start()
            m = match(buf, place, end)
            if m is not None:
                return m
            found = find(buf, place + 1, end)
        return None


def known_by_name(found: Detector) -> bool:
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


def is_broad(found: Partial) -> bool:
    return found.seconds is None or sum(map(len, found.seconds.values())) > _BROAD_STARTS
