"""The sets of patterns that several readers of a tool result look for first, found in one Hyperscan
pass over it: each new tool result is read by the injection signals and by the taint index, and
each of them first asks which of its patterns may match (as `PatternsHeld` and `WordsHeld` do),
some six sets in all. One pass over the text answers every set, and is kept for the next reader of
the same text (`TextMemo`).

A set is added (`patterns`, loosened as `PatternsHeld` loosens them, or `words`, each a literal)
when its module is imported; the database is compiled at the first scan or `ready()`, again where a
set was added after it. Needs Hyperscan (`HYPERSCAN`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from tollgate.governance.agents.patterns_held import loosened
from tollgate.governance.agents.text_memo import TextMemo
from tollgate.governance.guardrails.engine import HYPERSCAN

if HYPERSCAN:
    import hyperscan


class OnePass:
    def __init__(self) -> None:
        self._expressions: list[bytes] = []
        self._flags: list[int] = []
        self._database: Any = None
        self._lock = threading.Lock()
        # Each thread's scratch, with the database it was made for: a scratch serves one scan at a time.
        self._scratch = threading.local()
        self._seen: TextMemo[frozenset[int]] = TextMemo(size=lambda _: 0)

    def patterns(self, patterns: Sequence[str], *, caseless: bool = False) -> PatternsPart:
        """A set of regular expressions, each loosened (`patterns_held.loosened`); `caseless`: looked
        for with ASCII letters' case ignored (a text's lower case then holds no more matches)."""
        flags = hyperscan.HS_FLAG_SINGLEMATCH | (hyperscan.HS_FLAG_CASELESS if caseless else 0)
        return PatternsPart(self, self._add([loosened(p).encode("ascii") for p in patterns], flags), len(patterns))

    def words(self, words: Iterable[str]) -> WordsPart:
        """A set of words, each looked for as it is written."""
        kept = tuple(sorted(set(words)))
        # Each byte written as an escape: a word is a literal, whatever it holds.
        expressions = [b"".join(b"\\x%02x" % c for c in _utf8(word)) for word in kept]
        return WordsPart(self, self._add(expressions, hyperscan.HS_FLAG_SINGLEMATCH), kept)

    def _add(self, expressions: list[bytes], flags: int) -> int:
        with self._lock:
            start = len(self._expressions)
            self._expressions.extend(expressions)
            self._flags.extend([flags] * len(expressions))
            self._database = None  # compiled again with this set at the next scan
            self._seen.clear()  # what was kept holds nothing of this set
            return start

    def ready(self) -> Any:
        """The database, compiled once for the sets added so far."""
        database = self._database
        if database is None:
            with self._lock:
                if self._database is None:
                    compiled = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                    compiled.compile(
                        expressions=self._expressions,
                        ids=list(range(len(self._expressions))),
                        elements=len(self._expressions),
                        flags=self._flags,
                    )
                    self._database = compiled
                database = self._database
        return database

    def held(self, text: str) -> frozenset[int]:
        """Every set's expressions that may match `text`, by their position in the pass."""
        return self._seen.get(text, self._scan)

    def _scan(self, text: str) -> frozenset[int]:
        database = self.ready()
        made = getattr(self._scratch, "made", None)
        if made is None or made[0] is not database:
            made = self._scratch.made = (database, hyperscan.Scratch(database))
        found: set[int] = set()

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            found.add(id_)

        database.scan(_utf8(text), match_event_handler=on_match, scratch=made[1])
        return frozenset(found)


class PatternsPart:
    def __init__(self, one: OnePass, start: int, size: int) -> None:
        self._one, self._start, self._end = one, start, start + size

    def held(self, text: str) -> set[int]:
        """The positions (in the set) of the patterns that may match `text`."""
        start, end = self._start, self._end
        return {i - start for i in self._one.held(text) if start <= i < end}


class WordsPart:
    def __init__(self, one: OnePass, start: int, words: tuple[str, ...]) -> None:
        self._one, self._start, self.words = one, start, words

    def held(self, text: str) -> set[str]:
        """The words `text` holds."""
        start, words = self._start, self.words
        return {words[i - start] for i in self._one.held(text) if start <= i < start + len(words)}


def _utf8(text: str) -> bytes:
    """A text's UTF-8, a lone surrogate (which JSON may write) kept as one."""
    return text.encode("utf-8", "surrogatepass")


# The pass over each piece of outside content; None without Hyperscan.
PIECE_PASS = OnePass() if HYPERSCAN else None
