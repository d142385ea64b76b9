"""What every ledger store offers the pipeline and the report.

A store keeps counters (requests, tokens, nano-dollars per limit and window) and one row per call.
`reserve` is the only call the hot path awaits; the other writes are queued and written in the
background, so the event loop never waits for a disk or a network. A limited call's end waits for
its settlement (`flushed`) before its client gets the answer's last bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

# Call rows are kept this long (seconds): a year's report, with a month to spare.
CALLS_KEPT = 400 * 86400


class Charge(NamedTuple):
    """One counter a call adds to, and how far it may go. (A tuple: a call makes several, and a
    frozen dataclass costs several times as much to make.)"""

    counter: str  # opaque key, e.g. "interns per client|alice|tokens|day|1763856000"
    amount: int  # ≥ 0: requests, tokens or nano-USD
    cap: int | None  # the counter after adding may not exceed it; None: count only
    expires: int  # epoch seconds: the counter may be dropped after (its window's end)


@dataclass(frozen=True, slots=True)
class Reservation:
    granted: bool
    values: tuple[int, ...]  # each counter's value before this reservation, in the charges' order
    refused: int | None  # index of the first charge that did not fit (None when granted)


class StoreError(Exception):
    """The store could not answer; the message names the store (never a password) and what failed."""


class Store(Protocol):
    async def reserve(self, charges: Sequence[Charge]) -> Reservation:
        """Add every charge, or none: none when one of them would go past its cap."""
        ...

    async def read(self, counters: Sequence[str]) -> tuple[int, ...]:
        """The counters' values, 0 for one that does not exist (or expired)."""
        ...

    def adjust(self, changes: Sequence[tuple[str, int, int]]) -> None:
        """Queue (counter, delta, expires) changes; a delta may be negative (a reservation settled)."""
        ...

    def flushed(self) -> Awaitable[None] | None:
        """Once the changes `adjust` queued so far count in what `reserve` reads: None when they
        already do (SQLite: its counters are in this process's memory, which other processes sharing
        its file read within about a second), else an awaitable done once they are written, for
        every process sharing the store (Redis), or once writing them has failed for now (they
        stay queued, and are retried)."""
        ...

    def record(self, row: dict[str, Any]) -> None:
        """Queue one call's row (its `ts`, epoch seconds, says when; now when absent)."""
        ...

    def calls(self, since: float) -> Iterator[dict[str, Any]]:
        """The rows of the calls from `since` (epoch seconds) on, oldest first as far as the store
        knows; synchronous, for the report."""
        ...

    async def aclose(self) -> None:
        """Write what is queued (one last attempt), then close."""
        ...

    def reserve_now(self, charges: Sequence[Charge]) -> Reservation | None:
        """`reserve`, done at once by a store that decides in memory (SQLite); None from a store
        that must be asked over the network (Redis): then `reserve` is awaited."""
        ...

    def rest(self, fingerprint: str, until: float) -> None:
        """Tell the other processes that the key with this fingerprint rests until `until` (epoch
        seconds); queued."""
        ...

    def on_rest(self, callback: Callable[[str, float], None]) -> None:
        """Have `callback(fingerprint, until)` called, on the event loop, for the rests the other
        processes announce (and for those in force when it starts listening)."""
        ...

    # Whether the processes sharing the store share MCP sessions' owners through it (Redis).
    shares_sessions: bool

    async def bind_session(self, key: str, owner: str, ttl: int) -> None:
        """Keep `owner` as the caller of the MCP session `key` for every process sharing the store,
        `ttl` seconds from its last look-up; a session already bound keeps its owner."""
        ...

    async def session_owner(self, key: str, ttl: int) -> str | None:
        """The caller an MCP session `key` is bound to (its time to live renewed), or None."""
        ...

    @property
    def quarantines(self) -> SharedQuarantines | None:
        """`agents`' quarantines, shared by the processes sharing the store (Redis); None: each
        process keeps its own."""
        ...


class SharedQuarantines(Protocol):
    """`agents`' quarantines in a store every process shares. A key is a keyed hash (HMAC), never a
    session's id or a caller's name; nothing else is kept but the kinds and the end."""

    def start(self, key: str, until: float, kinds: Sequence[str]) -> Awaitable[bool]:
        """Hold the quarantine of `key` for `kinds` until `until` (epoch seconds), a later end in
        force kept; sent at once (on the event loop), tried again while Redis fails (until it
        would be over), whether the awaitable is awaited or not: it is True once it is written,
        False once the first attempt failed (the others go on)."""
        ...

    async def holding(self, keys: Sequence[str]) -> tuple[tuple[float, tuple[str, ...]] | None, ...]:
        """For each key, the quarantine in force on it (its end, epoch seconds, and its kinds), or
        None. Raises StoreError when the store cannot answer."""
        ...


class Unshared:
    """What a store that is no channel between processes answers of what they would share: the
    rests, MCP sessions' owners and quarantines stay in the process that knows them (SQLite:
    processes sharing a file have no way to announce them)."""

    # A process keeps its MCP sessions' owners in its memory.
    shares_sessions = False

    def rest(self, fingerprint: str, until: float) -> None:
        """Rests stay in this process."""

    def on_rest(self, callback: Callable[[str, float], None]) -> None:
        """No other process's rests reach this store."""

    async def bind_session(self, key: str, owner: str, ttl: int) -> None:
        return None

    async def session_owner(self, key: str, ttl: int) -> str | None:
        return None

    # A process keeps its quarantines in its memory (`governance/agents/quarantine.py`).
    quarantines: SharedQuarantines | None = None
