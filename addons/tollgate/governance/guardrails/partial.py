"""What a detector's match can look like while it is still arriving: the text from where it may
begin to the end of what has come so far, whose reading by the detector's pattern runs into that
end (a prefix of a key's prefix, a key cut short, a run of digits that may still become a card
number, a whole token whose next character, which says whether it goes on, has not come).

Derived once from the pattern itself (Python's own reader of its syntax, `re._parser`), so that the
answer scanner holds back exactly the text that may still become a match of the same detectors the
requests are read with, and nothing else: `open_pattern(p)` matches at a position where a match of
`p` may begin and run past the text's end. It reads a superset: a positive lookahead, a check (a
checksum), a backreference (read as any text its group may hold) and possessive repeats are taken
as what may still hold, never as what rules a candidate out."""

from __future__ import annotations

import re
import re._constants as sre_c  # type: ignore[import-not-found]  # no stubs: the standard library's own reader
import re._parser as sre  # type: ignore[import-not-found]
from dataclasses import dataclass
from typing import Any

_ALL = frozenset(range(256))
# Bytes patterns read `\s` as these (and `\d`, `\w` as ASCII).
_SPACE = frozenset(b" \t\n\r\f\v")
_DIGIT = frozenset(b"0123456789")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CATEGORIES = {
    sre_c.CATEGORY_DIGIT: _DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: _ALL - _DIGIT,
    sre_c.CATEGORY_SPACE: _SPACE,
    sre_c.CATEGORY_NOT_SPACE: _ALL - _SPACE,
    sre_c.CATEGORY_WORD: _WORD,
    sre_c.CATEGORY_NOT_WORD: _ALL - _WORD,
}
_AT = {
    sre_c.AT_BEGINNING: b"^",
    sre_c.AT_BEGINNING_STRING: b"\\A",
    sre_c.AT_END: b"$",
    sre_c.AT_END_STRING: b"\\Z",
    sre_c.AT_BOUNDARY: b"\\b",
    sre_c.AT_NON_BOUNDARY: b"\\B",
}
_IGNORECASE = sre_c.SRE_FLAG_IGNORECASE
_DOTALL = sre_c.SRE_FLAG_DOTALL
# Longer than any match a built-in pattern can make: such a pattern's reach is unbounded.
UNBOUNDED = 1 << 20


class Unsupported(ValueError):
    """A construct the derivation does not read (a conditional group): the caller holds a tail of
    fixed length instead."""


@dataclass(frozen=True, slots=True)
class Partial:
    """A pattern's open form, compiled (`open`), the bytes any of its forward reads may take
    (`alphabet`: a candidate's text from its start to the end holds only these) and the longest
    its match can be (`longest`, `UNBOUNDED` for none)."""

    open: re.Pattern[bytes]
    alphabet: bytes
    longest: int
    first: bytes = b""  # the bytes a match may begin with (`_ALL`'s where that is not known)
    # How a candidate may begin: the bytes it may be alone of (`ends`), and by first byte the bytes
    # that may come second (`seconds`); None where that is not known.
    ends: bytes | None = None
    seconds: dict[int, bytes] | None = None


def partial(pattern: re.Pattern[bytes]) -> Partial:
    """The open form of a compiled bytes pattern."""
    parsed = sre.parse(pattern.pattern, pattern.flags)
    walk = _Walk(list(parsed))
    source = walk.open(list(parsed), parsed.state.flags)
    alphabet = walk.alphabet(list(parsed), parsed.state.flags)
    high = parsed.getwidth()[1]
    longest = high if high < UNBOUNDED else UNBOUNDED
    first, _ = walk.first(list(parsed), parsed.state.flags)
    # `(?!)` matches nowhere: a pattern that reads nothing cannot be cut short.
    ends, seconds = _starts(walk, list(parsed), parsed.state.flags, alphabet, first)
    return Partial(re.compile(source or b"(?!)"), bytes(sorted(alphabet)), longest, bytes(sorted(first)), ends, seconds)


def _starts(
    walk: _Walk, items: list[Any], flags: int, alphabet: set[int], first: set[int]
) -> tuple[bytes | None, dict[int, bytes] | None]:
    """The one- and two-byte texts a candidate may begin with, read by the open form with every
    lookaround and anchor taken as holding (a larger language). An open form reads every prefix of what it
    reads (a candidate's first two bytes are a candidate themselves): a position whose two bytes
    are no candidate begins none, whatever follows them."""
    walk.loose = True
    try:
        source = walk.open(items, flags)
    finally:
        walk.loose = False
    if source is None:
        return b"", {}
    loose = re.compile(source)
    starts = sorted(first & alphabet)
    ends = bytes(b for b in starts if loose.match(bytes((b,))) is not None)
    seconds: dict[int, bytes] = {}
    following = sorted(alphabet)
    for b in starts:
        found = bytes(c for c in following if loose.match(bytes((b, c))) is not None)
        if found:
            seconds[b] = found
    return ends, seconds


def _case(chars: frozenset[int] | set[int]) -> frozenset[int]:
    """The bytes with their ASCII letters in either case (as `re.IGNORECASE` reads bytes)."""
    return frozenset(chars) | {c ^ 0x20 for c in chars if chr(c).isascii() and chr(c).isalpha()}


def class_of(chars: frozenset[int]) -> bytes:
    """A character class of exactly these bytes."""
    if not chars:
        return b"(?!)"
    out = []
    ordered = sorted(chars)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(b"\\x%02x" % ordered[i] if i == j else b"\\x%02x-\\x%02x" % (ordered[i], ordered[j]))
        i = j + 1
    return b"[" + b"".join(out) + b"]"


def _alt(*choices: bytes | None) -> bytes | None:
    kept = [c for c in choices if c is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else b"(?:" + b"|".join(kept) + b")"


class _Walk:
    def __init__(self, items: list[Any]) -> None:
        self.groups: dict[int, list[Any]] = {}  # a group's items, by number: what a backreference reads
        self.loose = False  # every lookaround and anchor taken as holding
        self._collect(items)

    def _collect(self, items: list[Any]) -> None:
        for op, av in items:
            if op is sre_c.SUBPATTERN:
                if av[0] is not None:
                    self.groups[av[0]] = list(av[3])
                self._collect(list(av[3]))
            elif op is sre_c.BRANCH:
                for alt in av[1]:
                    self._collect(list(alt))
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
                self._collect(list(av[2]))
            elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                self._collect(list(av[1]))
            elif op is sre_c.ATOMIC_GROUP:
                self._collect(list(av))

    # One character's set of bytes, or None for an item that is not one character.
    def chars(self, op: Any, av: Any, flags: int) -> frozenset[int] | None:
        fold = bool(flags & _IGNORECASE)
        if op is sre_c.LITERAL:
            return _case({av}) if fold else frozenset((av,))
        if op is sre_c.NOT_LITERAL:
            return _ALL - (_case({av}) if fold else {av})
        if op is sre_c.ANY:
            return _ALL if flags & _DOTALL else _ALL - {10}
        if op is sre_c.CATEGORY:
            return _CATEGORIES[av]
        if op is sre_c.IN:
            found: set[int] = set()
            negate = False
            for iop, iav in av:
                if iop is sre_c.NEGATE:
                    negate = True
                elif iop is sre_c.LITERAL:
                    found.add(iav)
                elif iop is sre_c.RANGE:
                    found.update(range(iav[0], iav[1] + 1))
                elif iop is sre_c.CATEGORY:
                    found |= _CATEGORIES[iav]
                else:
                    raise Unsupported(str(iop))
            chars = _case(found) if fold else frozenset(found)
            return _ALL - chars if negate else chars
        return None

    def source(self, items: list[Any], flags: int) -> bytes:
        """The items as a pattern of the same (or a larger) language, flags written out."""
        return b"".join(self._one(op, av, flags) for op, av in items)

    def _one(self, op: Any, av: Any, flags: int) -> bytes:
        chars = self.chars(op, av, flags)
        if chars is not None:
            return class_of(chars)
        if op is sre_c.BRANCH:
            return b"(?:" + b"|".join(self.source(list(a), flags) for a in av[1]) + b")"
        if op is sre_c.SUBPATTERN:
            return b"(?:" + self.source(list(av[3]), (flags | av[1]) & ~av[2]) + b")"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            low, high, item = av
            return b"(?:" + self.source(list(item), flags) + b")" + _repeat(low, high)
        if op is sre_c.ATOMIC_GROUP:
            return b"(?:" + self.source(list(av), flags) + b")"
        if op is sre_c.ASSERT:
            direction, item = av
            # A positive lookahead is taken as holding (a larger language); a lookbehind reads
            # text already there, as it is.
            return b"(?<=" + self.source(list(item), flags) + b")" if direction < 0 and not self.loose else b""
        if op is sre_c.ASSERT_NOT:
            direction, item = av
            if self.loose:
                return b""
            return (b"(?<!" if direction < 0 else b"(?!") + self.source(list(item), flags) + b")"
        if op is sre_c.GROUPREF:
            return b"(?:" + self.source(self.groups[av], flags) + b")"
        if op is sre_c.AT:
            return b"" if self.loose else _AT[av]
        raise Unsupported(str(op))

    def open(self, items: list[Any], flags: int) -> bytes | None:
        """A pattern that matches where the items' reading may run into the text's end: each
        item in turn either is cut short, or is read whole and those after it are."""
        out: bytes | None = None
        for op, av in reversed(items):
            cut = self._open_one(op, av, flags)
            whole = self._one(op, av, flags)
            out = _alt(cut, whole + out if out is not None else None)
        return out

    def _open_one(self, op: Any, av: Any, flags: int) -> bytes | None:
        if self.chars(op, av, flags) is not None:
            return b"\\Z"
        if op is sre_c.BRANCH:
            return _alt(*(self.open(list(a), flags) for a in av[1]))
        if op is sre_c.SUBPATTERN:
            return self.open(list(av[3]), (flags | av[1]) & ~av[2])
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            _, high, item = av
            cut = self.open(list(item), flags)
            if cut is None or high == 0:
                return None
            before = _repeat(0, high - 1 if high != sre_c.MAXREPEAT else high)
            return b"(?:" + self.source(list(item), flags) + b")" + before + cut
        if op is sre_c.ATOMIC_GROUP:
            return self.open(list(av), flags)
        if op is sre_c.ASSERT_NOT and av[0] > 0:
            # What comes next would say whether it holds: the text ends inside what it reads.
            cut = self.open(list(av[1]), flags)
            return b"(?=" + cut + b")" if cut is not None else None
        if op is sre_c.GROUPREF:
            return self.open(self.groups[av], flags)
        return None  # a lookbehind, a positive lookahead (taken as holding), an anchor: read nothing ahead

    def first(self, items: list[Any], flags: int) -> tuple[set[int], bool]:
        """The bytes the items' first read may take, and whether they may read nothing."""
        out: set[int] = set()
        for op, av in items:
            chars = self.chars(op, av, flags)
            if chars is not None:
                return out | chars, False
            if op is sre_c.BRANCH:
                empty = False
                for a in av[1]:
                    found, nothing = self.first(list(a), flags)
                    out |= found
                    empty |= nothing
                if not empty:
                    return out, False
            elif op is sre_c.SUBPATTERN:
                found, nothing = self.first(list(av[3]), (flags | av[1]) & ~av[2])
                out |= found
                if not nothing:
                    return out, False
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
                found, nothing = self.first(list(av[2]), flags)
                out |= found
                if av[0] > 0 and not nothing:
                    return out, False
            elif op is sre_c.ATOMIC_GROUP:
                found, nothing = self.first(list(av), flags)
                out |= found
                if not nothing:
                    return out, False
            elif op is sre_c.GROUPREF:
                out |= self.first(self.groups[av], flags)[0]
            elif op not in (sre_c.ASSERT, sre_c.ASSERT_NOT, sre_c.AT):
                return set(_ALL), False  # not known: any byte
        return out, True

    def alphabet(self, items: list[Any], flags: int) -> set[int]:
        """Every byte a forward read of the items may take."""
        out: set[int] = set()
        for op, av in items:
            chars = self.chars(op, av, flags)
            if chars is not None:
                out |= chars
            elif op is sre_c.BRANCH:
                for a in av[1]:
                    out |= self.alphabet(list(a), flags)
            elif op is sre_c.SUBPATTERN:
                out |= self.alphabet(list(av[3]), (flags | av[1]) & ~av[2])
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
                out |= self.alphabet(list(av[2]), flags)
            elif op is sre_c.ATOMIC_GROUP:
                out |= self.alphabet(list(av), flags)
            elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT) and av[0] > 0:
                out |= self.alphabet(list(av[1]), flags)
            elif op is sre_c.GROUPREF:
                out |= self.alphabet(self.groups[av], flags)
        return out


def _repeat(low: int, high: int) -> bytes:
    if high == sre_c.MAXREPEAT:
        return b"{%d,}" % low
    return b"{%d}" % low if low == high else b"{%d,%d}" % (low, high)
