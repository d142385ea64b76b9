"""Host globs, as `providers.<name>.hosts` lists them: the hosts each one matches, and whether two
of them can match one host. A `*` stands for any run of characters within one DNS label."""

from __future__ import annotations

import re
from functools import cache

# A label of a glob: DNS letters, digits, '-' and '_', and '*'.
_LABEL = re.compile(r"[a-z0-9_*-]+")
# What a `*` matches: within one label, never a '.' (nor the ':' before a port, in allow_hosts).
_STAR = "[a-z0-9_-]*"
# A first label standing for one or more labels, in the globs of a provider's own hosts.
MANY = "**"


def host_glob(glob: str) -> str:
    """The glob as hosts are matched against it: lower case, no trailing dot. ValueError, saying why,
    where it is no host glob, or where it leaves its domain open: its last two labels must be
    written out, since `*.com` or `corp.*` would take other owners' hosts."""
    name = glob.strip().lower().removesuffix(".")
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{glob!r} is not a host name glob (labels of letters, digits, '-', '_' and '*')")
    if "**" in name:
        raise ValueError(f"{glob!r}: one '*' stands for any run of characters; write no two in a row")
    if any("*" in label for label in labels[-2:]):
        raise ValueError(f"{glob!r}: write out its last two labels (its domain); '*' may stand only before them")
    return name


def glob_pattern(glob: str) -> str:
    """A regular expression over lower-case host names, matching the hosts `glob` matches."""
    return r"\.".join(map(label_pattern, host_glob(glob).split(".")))


def label_pattern(label: str) -> str:
    """A regular expression matching the labels a label glob (`api-*`) matches."""
    return _STAR.join(map(re.escape, label.split("*")))


def globs_overlap(a: str, b: str) -> bool:
    """Whether some host matches both globs. A first label `**` (in a provider's own hosts, never
    in a configuration's) stands for one or more labels."""
    first, second = _labels(a), _labels(b)
    if second[0] == MANY:
        first, second = second, first
    if first[0] == MANY:
        if second[0] == MANY:
            return _labels_apart_overlap(first[1:], second[1:])
        rest = first[1:]
        return len(second) > len(rest) and _labels_apart_overlap(second[-len(rest) :], rest)
    return len(first) == len(second) and _labels_apart_overlap(first, second)


def _labels(glob: str) -> list[str]:
    """A glob's labels, as `host_glob` keeps it (a provider's own `**` kept too)."""
    if glob.startswith(f"{MANY}."):
        return [MANY, *host_glob(glob[len(MANY) + 1 :]).split(".")]
    return host_glob(glob).split(".")


def _labels_apart_overlap(first: list[str], second: list[str]) -> bool:
    """Whether the labels of two globs' same-length tails can all meet (the shorter's, when not)."""
    n = min(len(first), len(second))
    return all(_labels_overlap(x, y) for x, y in zip(first[len(first) - n :], second[len(second) - n :], strict=True))


@cache
def _labels_overlap(a: str, b: str) -> bool:
    """Whether one label matches both label globs: each glob's `*` may take any characters, the
    other glob's `*` included."""

    @cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and (meet(i + 1, j) or (j < len(b) and meet(i, j + 1))):
            return True
        if j < len(b) and b[j] == "*" and (meet(i, j + 1) or (i < len(a) and meet(i + 1, j))):
            return True
        return i < len(a) and j < len(b) and a[i] == b[j] != "*" and meet(i + 1, j + 1)

    return meet(0, 0)
