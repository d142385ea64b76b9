"""Which of a fixed set of words a text holds, in one pass: Hyperscan's where it is installed (every
word in one database, the text read once at some GB/s), else one `in` per word (the same set,
slower: each reads the whole text)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from tollgate.governance.guardrails.engine import HYPERSCAN

if HYPERSCAN:
    import hyperscan


class WordsHeld:
    def __init__(self, words: Iterable[str], use_hyperscan: bool | None = None) -> None:
        self.words = tuple(sorted(set(words)))
        self._database: Any = None
        if HYPERSCAN if use_hyperscan is None else use_hyperscan:
            self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._database.compile(
                # Each byte written as an escape: a word is a literal, whatever it holds.
                expressions=[b"".join(b"\\x%02x" % c for c in _utf8(word)) for word in self.words],
                ids=list(range(len(self.words))),
                elements=len(self.words),
                flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(self.words),  # reported once, wherever
            )
        # Each thread's scratch: a scratch serves one scan at a time, and a long conversation is
        # read in a worker thread while the event loop reads a short one.
        self._scratch = threading.local()

    def held(self, text: str) -> set[str]:
        """The words `text` holds."""
        if self._database is None:
            return {word for word in self.words if word in text}
        scratch = getattr(self._scratch, "scratch", None)
        if scratch is None:
            scratch = self._scratch.scratch = hyperscan.Scratch(self._database)
        found: set[str] = set()
        words = self.words

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            found.add(words[id_])

        # UTF-8 holds a word's bytes exactly where the text holds the word.
        self._database.scan(_utf8(text), match_event_handler=on_match, scratch=scratch)
        return found


def _utf8(text: str) -> bytes:
    """A text's UTF-8, a lone surrogate (which JSON may write) kept as one."""
    return text.encode("utf-8", "surrogatepass")
