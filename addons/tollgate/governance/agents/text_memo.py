"""The last results of a function of a text alone, kept for the texts read again: an agent sends
its earlier tool results again at every turn, and each is read once while it is kept.

Bounded by count and by the kept texts' size; each entry is keyed by the text itself (no digest
that two texts could share). Safe across threads: the event loop reads a short conversation while
a worker thread reads a long one."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

MEMO_ENTRIES = 512
MEMO_CHARS = 8_000_000  # the texts kept, in characters (what they were read into adds about as much)


class TextMemo[T]:
    def __init__(self, entries: int = MEMO_ENTRIES, chars: int = MEMO_CHARS) -> None:
        self._entries = entries
        self._chars = chars
        self._kept: OrderedDict[str, T] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, text: str, read: Callable[[str], T]) -> T:
        """`read(text)`, kept; the result is shared by every caller of the same text: not to be changed."""
        with self._lock:
            if text in self._kept:
                self._kept.move_to_end(text)
                return self._kept[text]
        value = read(text)  # outside the lock: two threads may read the same text at once, alike
        if len(text) > self._chars // 4:
            return value  # one this large would push out most others
        with self._lock:
            if text not in self._kept:
                self._kept[text] = value
                self._size += len(text)
                while len(self._kept) > self._entries or self._size > self._chars:
                    dropped, _ = self._kept.popitem(last=False)
                    self._size -= len(dropped)
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._size = 0
