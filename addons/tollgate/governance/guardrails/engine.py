"""Finding a set of detectors' matches in a text: their anchors found in one pass, each detector's
exact pattern run only in the windows around its anchors.

The pass is Hyperscan's (vectorscan, through the `hyperscan` package) where it is installed: every
anchor of every detector in one database, the text read once at some GB/s. Without it, Python's
`re` finds each anchor in turn: the same matches, slower (docs/performance.md, "Guardrails").
A detector without anchors (a custom `regex`) is run over the whole text."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from tollgate.governance.guardrails import text
from tollgate.governance.guardrails.detector_types import Detector

try:
    import hyperscan

    HYPERSCAN = True
except ImportError:  # no wheel for this platform: pyproject.toml installs it where there is one
    HYPERSCAN = False
Found = tuple[str, int, int]  # kind, start, end in the text
Anchors = dict[int, list[tuple[int, int]]]  # by detector (index), where its anchors matched (start, end)


class TooManyCandidates(Exception):
    """A scan within `candidates_at_most` found more anchors than it allows: stopped before its
    exact patterns ran."""


# What is left of the candidates the scans of this context may find (None: no bound). A scan's
# cost beyond its pass is that of the windows its anchors open, a few microseconds each; a hostile
# body opens one every few bytes.
_LEFT: ContextVar[list[int] | None] = ContextVar("tollgate_candidates_left", default=None)


class candidates_at_most:  # named as the function it stands for: `with candidates_at_most(64):`
    """Within it, the scans (of every engine, all together) find at most `bound` anchors: the pass
    that finds more stops there and raises `TooManyCandidates`. (A class, not a generator: it is
    entered for most calls' scans, and costs less so.)"""

    __slots__ = ("_bound", "_reset")

    def __init__(self, bound: int) -> None:
        self._bound = bound

    def __enter__(self) -> None:
        self._reset = _LEFT.set([self._bound])

    def __exit__(self, *_: object) -> None:
        _LEFT.reset(self._reset)


class Engine:
    """The detectors of one configuration's rules, compiled once; `scan` is called per body. The
    escapes `text.read` decodes and the format characters it reads as nothing are more anchors of
    the same pass: a body without them (most) is read as it is, in one pass; a body with them is
    read again, decoded."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        use_hyperscan: bool | None = None,
        every_escape: bool = False,
        markers: Sequence[bytes] = (),
    ) -> None:
        self.detectors = tuple(detectors)
        self.every_escape = every_escape
        self.whole = tuple(d for d in self.detectors if not d.anchors)
        anchored = [(i, a) for i, d in enumerate(self.detectors) for a in d.anchors]
        anchored.append((len(self.detectors), text.escapes(every_escape)))
        anchored.append((len(self.detectors), text.format_characters()))
        # Literals whose presence `scan_marked` reports, found in the same pass (a document's keys).
        anchored += [(len(self.detectors) + 1, re.escape(m)) for m in markers]
        self.uses_hyperscan = HYPERSCAN if use_hyperscan is None else use_hyperscan
        make = _hyperscan_anchors if self.uses_hyperscan else _python_anchors
        self.anchors: Callable[[bytes], Anchors] = make(anchored)

    def scan(self, body: bytes, is_json: bool = True) -> tuple[text.ScannedText, list[Found]]:
        """What the detectors read of `body`, and their matches in it: (kind, start, end), in runs
        sorted by start (one a detector), a match found by two patterns of a kind twice."""
        read, found, _ = self.scan_marked(body, is_json)
        return read, found

    def scan_marked(self, body: bytes, is_json: bool = True) -> tuple[text.ScannedText, list[Found], bool]:
        """`scan`, and whether the text read holds one of the markers (an escape that spells one
        read as the character it stands for)."""
        anchors = self.anchors(body)
        escaped = anchors.pop(len(self.detectors), None)
        marked = anchors.pop(len(self.detectors) + 1, None) is not None
        read = text.ScannedText(body, body)
        if escaped:
            read = text.read(body, is_json, self.every_escape, (start for start, _ in escaped))
            if read.data is not body:
                anchors = self.anchors(read.data)
                anchors.pop(len(self.detectors), None)
                marked = anchors.pop(len(self.detectors) + 1, None) is not None
        return read, self._found(read.data, anchors), marked

    def _found(self, data: bytes, anchors: Anchors) -> list[Found]:
        # A list of sorted runs, not a set: a body of many matches (a hostile one) is sorted by
        # merging its runs (`rules._once`), not anew, which would hold the interpreter lock (a
        # sort's comparisons) for a tenth of a second beside the event loop.
        found: list[Found] = []
        for i, at in anchors.items():
            detector = self.detectors[i]
            kind = detector.kind
            at.sort()
            found += [(kind, s, e) for s, e in detector.around(data, at)]
        for detector in self.whole:
            kind = detector.kind
            found += [(kind, s, e) for s, e in detector.find(data, 0, len(data))]
        return found


_FORMATS = re.compile(text.format_characters_beyond_ascii())
_format_scratch = threading.local()  # each thread's, as a scratch serves one scan at a time


def formats_in(data: bytes) -> bool:
    """Whether `data` holds a format character as it is written (`text.format_characters`): ASCII
    holds none but U+0000; other text is searched by Hyperscan where it is installed (Python's `re`
    tries the class of their first bytes byte by byte, several times slower)."""
    if text.NUL in data:
        return True
    if data.isascii():
        return False
    if not HYPERSCAN:
        return _FORMATS.search(data) is not None
    database = _formats_database()
    scratch = getattr(_format_scratch, "scratch", None)
    if scratch is None:
        scratch = _format_scratch.scratch = hyperscan.Scratch(database)
    try:
        database.scan(data, match_event_handler=_stop, scratch=scratch)
    except hyperscan.ScanTerminated:
        return True
    return False


@functools.cache
def _formats_database() -> Any:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=[text.format_characters_beyond_ascii()], ids=[0], elements=1, flags=[0])
    return database


def _stop(id_: int, start: int, end: int, flags: int, context: Any) -> bool:
    return True  # the first match ends the pass


def _python_anchors(anchored: list[tuple[int, bytes]]) -> Callable[[bytes], Anchors]:
    # One search per anchor: a literal alone is what `re` searches fastest (its prefix scan). The
    # format characters' (bytes beyond ASCII, a class `re` tries byte by byte) only in other text.
    owners = _owners(anchored)
    formats = text.format_characters()
    compiled = [(re.compile(e), detectors, e == formats) for e, detectors in owners.items()]

    def anchors(data: bytes) -> Anchors:
        out: Anchors = {}
        left = _LEFT.get()
        ascii_only: bool | None = None
        for pattern, detectors, beyond_ascii in compiled:
            if beyond_ascii:
                ascii_only = data.isascii() and text.NUL not in data if ascii_only is None else ascii_only
                if ascii_only:
                    continue
            spans = [m.span() for m in pattern.finditer(data)]
            if left is not None:
                left[0] -= len(spans)
                if left[0] < 0:
                    raise TooManyCandidates
            if spans:
                for i in detectors:
                    out.setdefault(i, []).extend(spans)
        return out

    return anchors


def _owners(anchored: list[tuple[int, bytes]]) -> dict[bytes, list[int]]:
    """Each anchor once, with the detectors it is an anchor of (detectors share some)."""
    owners: dict[bytes, list[int]] = {}
    for i, expression in anchored:
        owners.setdefault(expression, []).append(i)
    return owners


def _hyperscan_anchors(anchored: list[tuple[int, bytes]]) -> Callable[[bytes], Anchors]:
    owners = list(_owners(anchored).items())
    # Hyperscan takes letter case as a flag, not inline; and where a match starts, when asked.
    expressions = tuple(expression.removeprefix(b"(?i)") for expression, _ in owners)
    flags = tuple(
        hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if e.startswith(b"(?i)") else 0) for e, _ in owners
    )
    database = _database(expressions, flags)
    # The database is shared and read-only; the scratch a scan works in is this engine's own, as
    # a database's own would be shared by every engine of the same anchors, and each thread's
    # own: the event loop scans a small body while a worker thread scans a large one
    # (`workers.ScanWorkers`), and a scratch serves one scan at a time.
    scratch = hyperscan.Scratch(database)
    owner = threading.get_ident()
    others = threading.local()
    detectors_of = [detectors for _, detectors in owners]

    def scratch_of_this_thread() -> Any:
        if threading.get_ident() == owner:
            return scratch
        own = getattr(others, "scratch", None)
        if own is None:
            own = others.scratch = hyperscan.Scratch(database)
        return own

    def anchors(data: bytes) -> Anchors:
        out: Anchors = {}
        found: list[tuple[int, int, int]] = []
        add = found.append

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            add((id_, start, end))

        left = _LEFT.get()
        if left is None:
            database.scan(data, match_event_handler=on_match, scratch=scratch_of_this_thread())
        else:

            def on_match_within(id_: int, start: int, end: int, flags: int, context: Any) -> bool:
                add((id_, start, end))
                left[0] -= 1
                return left[0] < 0  # true: the pass stops

            try:
                database.scan(data, match_event_handler=on_match_within, scratch=scratch_of_this_thread())
            except hyperscan.ScanTerminated:
                raise TooManyCandidates from None
        for id_, start, end in found:
            for i in detectors_of[id_]:
                out.setdefault(i, []).append((start, end))
        return out

    return anchors


@functools.lru_cache(maxsize=4)
def _database(expressions: tuple[bytes, ...], flags: tuple[int, ...]) -> Any:
    """The anchors compiled, once per set: a reload that keeps the rules does not compile them
    again. Each expression's id is its index."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=list(expressions), ids=list(range(len(expressions))), elements=len(expressions), flags=list(flags)
    )
    return database
