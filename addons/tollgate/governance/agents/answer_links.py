"""`agents.links` on answers: each text of an answer the answer guardrails read (a choice's text, a
content block's, a part's: one channel, streamed or whole) goes through a `LinkRewriter` before the
guardrails' scanner, so that a link off the list is reduced to its text in every format, at any
split, with the guardrails' own reading (their events held, written anew, cut). Without answer
guardrails, the same readers run with the rewriter alone.

Not rewritten: a tool call's arguments streamed as JSON (what they send is `agents`' decision, not
something shown), and signed reasoning (its signature would no longer hold; it is not shown as
the answer). Each link reduced is counted as `links.redacted` among the answer's findings: never
its URL. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import codecs
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tollgate.formats.answer_reading.scanning import MatchEngine, Scanner, Scanners, counter_copy, signed_detectors
from tollgate.governance.agents.agents_settings import LinksSettings
from tollgate.governance.agents.link_hosts import LinkHosts
from tollgate.governance.agents.links import LinkRewriter

# The finding a link reduced to its text is counted as.
LINKS_REDACTED = "links.redacted"


class Detectors(Scanners, Protocol):
    """The answer guardrails' detectors as the proxy records their findings."""

    def by_action(self, counts: Mapping[str, int]) -> tuple[tuple[str, str, int], ...]: ...


@dataclass(frozen=True, slots=True)
class _Released:
    text: bytes
    denied: str | None = None


class _NoMatches:
    """The engine of no detector: nothing is ever found."""

    def scan(self, body: bytes, is_json: bool = True) -> tuple[Any, Iterable[tuple[str, int, int]]]:
        return None, ()


class _Passing:
    """A channel read by nothing: it goes on as it comes."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @property
    def held(self) -> int:
        return 0

    def copy(self) -> Scanner:
        return _Passing()

    def feed(self, piece: bytes) -> _Released:
        return _Released(piece)

    def flush(self) -> _Released:
        return _Released(b"")

    def read_whole(self, text: bytes) -> _Released:
        return _Released(text)


class LinkScanner:
    """One channel: its text through a `LinkRewriter`, then through the guardrails' scanner (if
    any). `held` is counted in the bytes fed: what the rewriter holds, and what the text the
    guardrails' scanner holds came from (`_marks`: where each piece's rewritten text ends, and the
    input it came from)."""

    def __init__(self, rewriter: LinkRewriter, inner: Scanner | None) -> None:
        self._rewriter = rewriter
        self._inner = inner
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        self._fed = 0  # bytes fed
        self._out = 0  # bytes the rewriter gave the guardrails' scanner
        # (rewritten bytes, input bytes they came from), from the last one the inner scanner has
        # wholly released on.
        self._marks: deque[tuple[int, int]] = deque([(0, 0)])
        self._held = 0
        # How many bytes at the end of the rewritten text are the input's end as it came.
        self._verbatim = 0
        self.counts: Counter[str] = Counter()  # what was found so far, links reduced among it

    def _counted(self) -> Counter[str]:
        counts = counter_copy(self._inner.counts) if self._inner is not None else Counter()
        if self._rewriter.redacted:
            counts[LINKS_REDACTED] += self._rewriter.redacted
        return counts

    @property
    def held(self) -> int:
        return self._held

    def copy(self) -> Scanner:
        other = LinkScanner.__new__(LinkScanner)
        other._rewriter = self._rewriter.copy()
        other._inner = self._inner.copy() if self._inner is not None else None
        other._decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        other._decoder.setstate(self._decoder.getstate())
        other._fed, other._out, other._marks, other._held = self._fed, self._out, deque(self._marks), self._held
        other._verbatim = self._verbatim
        other.counts = counter_copy(self.counts)
        return other

    def feed(self, piece: bytes) -> _Released:
        self._fed += len(piece)
        read = self._rewriter.held_text + self._decoder.decode(piece)
        text = self._rewriter.feed(read[len(self._rewriter.held_text) :])
        # What the rewriter decided of the input: all it was given but what it holds now.
        consumed = read[: len(read) - len(self._rewriter.held_text)]
        return self._passed(text.encode("utf-8", "surrogatepass"), False, consumed)

    def flush(self) -> _Released:
        text = self._rewriter.feed(self._decoder.decode(b"", final=True)) + self._rewriter.end()
        return self._passed(text.encode("utf-8", "surrogatepass"), True)

    def read_whole(self, text: bytes) -> _Released:
        first = self.feed(text)
        if first.denied is not None:
            return first
        rest = self.flush()
        return _Released(first.text + rest.text, rest.denied)

    def _passed(self, out: bytes, final: bool, consumed: str = "") -> _Released:
        """The rewritten text given to the guardrails' scanner; where what is held stands now."""
        released = self._released(out, final, consumed)
        self.counts = self._counted()
        return released

    def _released(self, out: bytes, final: bool, consumed: str) -> _Released:
        self._out += len(out)
        if self._inner is None:
            released = _Released(out)
            undecided = self._out  # where the rewritten text not yet released begins
        else:
            got = self._inner.feed(out) if out else _Released(b"")
            if final and got.denied is None:
                rest = self._inner.flush()
                got = _Released(got.text + rest.text, rest.denied)
            released = _Released(got.text, got.denied)
            undecided = self._out - (0 if final else self._inner.held)
        if final:
            self._held, self._marks = 0, deque([(self._out, self._fed)])
            return released
        decided = self._fed - self._rewriter.held_bytes - len(self._decoder.getstate()[0])
        decided_text = consumed.encode("utf-8", "surrogatepass")
        if out == decided_text:
            self._verbatim += len(out)
        else:
            self._verbatim = _common_end(out, decided_text)
        kept = self._out - undecided
        if 0 < kept <= self._verbatim:
            # What the guardrails' scanner holds is text the rewriter passed as it came (most
            # often): it came from as many bytes just before what the rewriter holds.
            self._marks = deque([(undecided, decided - kept)])
        self._marks.append((self._out, decided))
        # The input the released text came from: up to the last mark at or before where what the
        # guardrails' scanner holds begins.
        while len(self._marks) > 1 and self._marks[1][0] <= undecided:
            self._marks.popleft()
        self._held = self._fed - self._marks[0][1]
        return released


def _common_end(a: bytes, b: bytes) -> int:
    """How many bytes `a` and `b` end with alike."""
    n = 0
    most = min(len(a), len(b))
    while n < most and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


class LinkScanners:
    """The answer guardrails' detectors (`inner`, None: none apply) with links off the list reduced
    first, as a format's guard is handed them (`Scanners`)."""

    def __init__(self, inner: Detectors | None, hosts: LinkHosts, shown: bool = True) -> None:
        self._inner = inner
        self._hosts = hosts
        self._shown = shown  # False: a tool call's arguments, no link rewritten (`arguments`)
        self.actions: dict[str, str] = {**(inner.actions if inner is not None else {}), LINKS_REDACTED: "redact"}
        self.holds = True
        self._arguments: LinkScanners | None = None

    @property
    def arguments(self) -> LinkScanners:
        """The same detectors as a tool call's arguments given as an object are read
        (`arguments_detectors`): what `agents` decides, not text shown."""
        if self._arguments is None:
            self._arguments = LinkScanners(self._inner, self._hosts, shown=False)
        return self._arguments

    @property
    def engine(self) -> MatchEngine:
        return self._inner.engine if self._inner is not None else _NoMatches()

    def scanner(self, is_json: bool = False) -> Scanner:
        inner: Scanners | None = self._inner
        # Signed reasoning reads these detectors with each redaction made a denial
        # (`signed_detectors`): its text must go on as it came, so no link in it is rewritten.
        signed = self.actions.get(LINKS_REDACTED) != "redact"
        if signed and inner is not None:
            inner = signed_detectors(inner)
        found = inner.scanner(is_json) if inner is not None else None
        if is_json or signed or not self._shown:
            return found if found is not None else _Passing()
        return LinkScanner(LinkRewriter(self._hosts), found)

    def by_action(self, counts: Mapping[str, int]) -> tuple[tuple[str, str, int], ...]:
        """Findings by kind and the action taken on them (for the metrics)."""
        links = counts.get(LINKS_REDACTED, 0)
        others = {k: n for k, n in counts.items() if k != LINKS_REDACTED}
        found = self._inner.by_action(others) if self._inner is not None else ()
        return (*found, (LINKS_REDACTED, "redact", links)) if links else found


_HOSTS: dict[int, tuple[LinksSettings, LinkHosts]] = {}


def link_scanners(links: LinksSettings, inner: Detectors | None) -> LinkScanners:
    """The readers of an answer under `agents.links`; the hosts' globs compiled once per setting."""
    kept = _HOSTS.get(id(links))
    if kept is None or kept[0] is not links:
        if len(_HOSTS) > 16:  # old configurations' settings
            _HOSTS.clear()
        kept = _HOSTS[id(links)] = (links, LinkHosts(links.allow))
    return LinkScanners(inner, kept[1])
