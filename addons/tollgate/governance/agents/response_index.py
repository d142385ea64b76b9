"""What Tollgate saw of each Responses conversation, by the id of the response that ends it: a later
request continuing it (`previous_response_id`) is judged on what Tollgate saw of its earlier turns
(their trusted text and outside content), not on nothing. A response whose id is not here (another
process's, one evicted, one never seen) leaves its turns unseen: outside content.

Bounded by count and by characters, the least recently used evicted first; an entry larger than
the whole bound is not kept. Entries are kept by caller: a client continuing another's response is
judged as if the earlier turns were unseen."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tollgate.formats.provenance import Provenance

MAX_ENTRIES = 10_000
MAX_CHARS = 64_000_000  # about 64 MB of text, some 130 MB of memory with the strings' overhead


@dataclass(frozen=True, slots=True)
class SeenTurns:
    provenance: Provenance
    # The agent's calls Tollgate refused in the response that ends it (the provider kept them): call
    # id → the output item that answers it with its refusal, for the next request to carry.
    refused: dict[str, dict[str, Any]]
    size: int


class ResponseIndex:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_chars: int = MAX_CHARS) -> None:
        self.max_entries, self.max_chars = max_entries, max_chars
        self._entries: OrderedDict[tuple[str, str], SeenTurns] = OrderedDict()
        self.chars = 0  # measured: the characters of text kept
        self.evicted = 0  # measured: entries dropped for the bound
        # A long conversation is read in a worker thread while the event loop keeps answers.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, caller: str, response_id: str) -> SeenTurns | None:
        key = (caller, response_id)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, caller: str, response_id: str, provenance: Provenance, refused: dict[str, dict[str, Any]]) -> None:
        size = provenance.size() + sum(len(k) + len(str(v)) for k, v in refused.items()) + len(response_id)
        key = (caller, response_id)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.chars -= old.size
            if size > self.max_chars:
                return  # larger than the whole bound: its next turn is judged as unseen
            self._entries[key] = SeenTurns(provenance, refused, size)
            self.chars += size
            while len(self._entries) > self.max_entries or self.chars > self.max_chars:
                _, dropped = self._entries.popitem(last=False)
                self.chars -= dropped.size
                self.evicted += 1
