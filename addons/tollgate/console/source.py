"""What the console reads its records from: the audit files (`follow.AuditFiles`) or the fleet's table in
PostgreSQL (`table.Table`). Either feeds its lines into one `Index` (the meaning of every view) and
one live `Verifier`, and serves a record again as written; the views and the server ask only what
this class names, so that every view means the same whatever reads the records."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.console.index import BAD_LINE, Index
from tollgate.records.audit.anchor_verify import AnchorRules
from tollgate.records.audit.audit_verify import Verifier
from tollgate.records.audit.kinds import read_record


class Source(ABC):
    """The records read so far (`index`, guarded by `lock`; `grew` notified as records come), the
    chain checked behind them (`verifier`)."""

    saved_records: int  # the records a saved index held at the start (-1: none)

    def __init__(self, key: Ed25519PublicKey | None, anchors: AnchorRules | None = None) -> None:
        self.index = Index()
        self.verifier = Verifier(key, live=True, anchors=anchors)
        self.lock = threading.Lock()
        self.grew = threading.Condition(self.lock)

    # ---- what each source does its own way

    @abstractmethod
    def catch_up(self) -> None:
        """Read the records not read yet (the first time: all of them)."""

    @abstractmethod
    def verify_pending(self) -> bool:
        """Check the chain of a batch of the records read and not checked yet; whether some are left."""

    @property
    @abstractmethod
    def checking(self) -> bool:
        """Whether records read are left to check (the chain is checked behind the reading)."""

    @abstractmethod
    def save(self, due: bool = False) -> None:
        """Save the index for a fast restart, when it is due."""

    @abstractmethod
    def line(self, number: int) -> bytes:
        """Record `number`'s line as written (with its newline)."""

    @abstractmethod
    def malformed(self, number: int, length: int) -> dict[str, Any]:
        """The console's marker for record `number`, a line of `length` bytes that is no record."""

    @abstractmethod
    def unverified(self) -> list[range]:
        """The numbers of the records after a fault of the chain."""

    @abstractmethod
    def state(self) -> list[dict[str, Any]]:
        """`/api/audit`'s rows."""

    @abstractmethod
    def close(self) -> None:
        """Let go of what the source holds open (files, connections)."""

    # ---- the same for every source

    def recent(self, number: int) -> bytes | None:
        """Record `number`'s line, when it is among those kept for the live stream (none kept
        here: it is read back, `line`)."""
        return None

    def record(self, number: int, line: bytes | None = None) -> dict[str, Any]:
        """Record `number` as written (`line`: its line, when read already); a line that is no
        record (no JSON object, or itself claiming to be the marker), as its `{"event":
        "malformed", …}` marker."""
        line = self.line(number) if line is None else line
        record = read_record(line)
        if record is None or record.get("event") == BAD_LINE:
            return self.malformed(number, len(line))
        return record

    def shown(self, number: int, line: bytes) -> bytes:
        """Record `number`'s line (`line`, as written) as the live stream sends it: itself, unless it
        is no record (its `malformed` marker then) or comes after a fault of the chain (then with
        `"unverified": true`), as the event list shows it."""
        record = self.record(number, line)
        unverified = any(number in span for span in self.unverified())
        if not unverified and record.get("event") != BAD_LINE:
            return line
        if unverified:
            record["unverified"] = True
        return orjson.dumps(record) + b"\n"
