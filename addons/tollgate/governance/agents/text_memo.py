"""The last results of a function of a text alone, kept for the texts read again: an agent sends
its earlier tool results again at every turn, and each is read once while it is kept.

Bounded by count and by the characters kept (each text, and what it was read into where that is a
text); each entry is keyed by the text itself (no digest that two texts could share). Safe across
threads: the event loop reads a short conversation while a worker thread reads a long one."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

MEMO_ENTRIES = 512
MEMO_CHARS = 16_000_000  # the characters kept: some 16 to 64 MB


class TextMemo[T]:
    def __init__(
        self, entries: int = MEMO_ENTRIES, chars: int = MEMO_CHARS, size: Callable[[T], int] | None = None
    ) -> None:
        """`size`: the characters a result holds (a text's by default; nothing for others)."""
        self._entries = entries
        self._size_of = size
        self._chars = chars
        self._kept: OrderedDict[str, tuple[T, int]] = OrderedDict()  # each result, and its characters
        self._size = 0
        self._lock = threading.Lock()

    def get(self, text: str, read: Callable[[str], T]) -> T:
        """`read(text)`, kept; the result is shared by every caller of the same text: not to be changed."""
        with self._lock:
            if text in self._kept:
                self._kept.move_to_end(text)
                return self._kept[text][0]
        value = read(text)  # outside the lock: two threads may read the same text at once, alike
        held = self._size_of(value) if self._size_of is not None else len(value) if isinstance(value, str) else 0
        chars = len(text) + held
        if chars > self._chars // 4:
            return value  # one this large would push out most others
        with self._lock:
            if text not in self._kept:
                self._kept[text] = (value, chars)
                self._size += chars
                while len(self._kept) > self._entries or self._size > self._chars:
                    self._size -= self._kept.popitem(last=False)[1][1]
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._size = 0
