"""A random string that a regular expression matches, made the way gitleaks' sample maker makes
its own (Go's regexp syntax; repetitions held to their least: `{n,m}` and `{n,}` give n when n > 0,
`*`, `?` and `{0,m}` give none or one, `+` gives one; a class gives any of its characters,
a negated class or `.` any printable ASCII character it allows). Python's `re._parser` reads the
pattern, after the few spellings Go has and Python lacks are rewritten."""

from __future__ import annotations

import random
import re
import string
from re import _constants as C
from re import _parser
from typing import Any

TRIES = 100
PRINTABLE = string.digits + string.ascii_letters + string.punctuation + " \t"
_CATEGORIES = {
    C.CATEGORY_DIGIT: [(48, 57)],
    C.CATEGORY_WORD: [(48, 57), (65, 90), (95, 95), (97, 122)],
    C.CATEGORY_SPACE: [(9, 10), (12, 13), (32, 32)],  # Go's \s: tab, new line, form feed, return, space
}
_NOT = {
    C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT,
    C.CATEGORY_NOT_WORD: C.CATEGORY_WORD,
    C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE,
}
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "digit": "0-9", "lower": "a-z", "upper": "A-Z", "space": r"\s",
    "xdigit": "0-9A-Fa-f", "word": r"\w", "punct": r"!-/:-@\[-`{-~", "print": " -~", "graph": "!-~",
}  # fmt: skip


def python_pattern(go: str) -> str:
    """Go's regexp syntax in Python's: `\\z` is `\\Z`, POSIX classes spelled out, `\\x{…}` as `\\U…`,
    flags set midway made to cover the rest."""
    out = re.sub(r"\[:(\^?)(\w+):\]", lambda m: ("^" if m.group(1) else "") + _POSIX[m.group(2)], go)
    out = re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}", out)
    out = re.sub(r"(?<!\\)\\z", r"\\Z", out)
    out = re.sub(r"\\[pP]\{?L\}?", "A-Za-z", out)
    # A group of flags not at the start: Python takes them scoped, to the end of the pattern.
    m = re.search(r"(?<!^)(?<!\\)\(\?([imsU]+)\)", out)
    if m and m.start() > 0:
        out = out[: m.start()] + f"(?{m.group(1)}:" + out[m.end() :] + ")"
    return out


class Maker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def make(self, go_pattern: str) -> str:
        """A string the pattern matches whole. Assertions (`\\b`, `^`) are not drawn for: a draw
        they refuse is drawn again, up to `TRIES` times."""
        pattern = python_pattern(go_pattern)
        parsed = list(_parser.parse(pattern))
        check = re.compile(pattern)
        for _ in range(TRIES):
            made = self._seq(parsed, {})
            if check.fullmatch(made):
                return made
        raise ValueError(f"no string drawn in {TRIES} tries matches {go_pattern!r}")

    def _seq(self, items: list[tuple[Any, Any]], groups: dict[int, str]) -> str:
        return "".join(self._one(op, av, groups) for op, av in items)

    def _one(self, op: Any, av: Any, groups: dict[int, str]) -> str:
        rng = self.rng
        if op is C.LITERAL:
            return chr(av)
        if op is C.NOT_LITERAL:
            return rng.choice([c for c in PRINTABLE if ord(c) != av])
        if op is C.ANY:
            return rng.choice(PRINTABLE)
        if op is C.IN:
            return self._class(av)
        if op is C.BRANCH:
            return self._seq(list(rng.choice(av[1])), groups)
        if op is C.SUBPATTERN:
            group, _add, _del, sub = av
            text = self._seq(list(sub), groups)
            if group is not None:
                groups[group] = text
            return text
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            count = low if low > 0 else rng.randint(0, min(high, 1))
            return "".join(self._seq(list(sub), groups) for _ in range(count))
        if op is C.AT:
            return ""
        if op is C.GROUPREF:
            return groups.get(av, "")
        if op is C.ATOMIC_GROUP:
            return self._seq(list(av), groups)
        raise ValueError(f"regex construct {op} is not Go's")

    def _class(self, items: list[tuple[Any, Any]]) -> str:
        ranges: list[tuple[int, int]] = []
        negate = False
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                ranges.append((av, av))
            elif op is C.RANGE:
                ranges.append(av)
            elif op is C.CATEGORY and av in _CATEGORIES:
                ranges.extend(_CATEGORIES[av])
            elif op is C.CATEGORY and av in _NOT:
                inside = _CATEGORIES[_NOT[av]]
                ranges.extend((ord(c), ord(c)) for c in PRINTABLE if not any(lo <= ord(c) <= hi for lo, hi in inside))
            else:
                raise ValueError(f"class item {op} {av}")
        if negate:
            allowed = [c for c in PRINTABLE if not any(lo <= ord(c) <= hi for lo, hi in ranges)]
            return self.rng.choice(allowed)
        total = sum(hi - lo + 1 for lo, hi in ranges)
        pick = self.rng.randrange(total)
        for lo, hi in ranges:
            if pick <= hi - lo:
                return chr(lo + pick)
            pick -= hi - lo + 1
        raise AssertionError("unreachable")


def make(go_pattern: str, rng: random.Random) -> str:
    """A string `go_pattern` matches, drawn with `rng`."""
    return Maker(rng).make(go_pattern)
