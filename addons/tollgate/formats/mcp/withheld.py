"""What of an MCP answer waits for a write it must not go before (`Withholding`): a message whose
reading began one (`agents`' quarantine, written to the fleet's store) is held, and everything
after it, until every such write is done; then it goes on as it came, or, once one failed, none of
it goes (the answer's relay gives the requests it held an error in their place)."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Protocol

from tollgate.formats.mcp.messages import RequestId


class Pending(Protocol):
    """A write that a message must not go before."""

    # Once it failed: the JSON-RPC error (code, message) each request held gets in its place.
    failure: tuple[int, str] | None

    def settled(self) -> bool:
        """Whether it is done, written or failed (asked from any thread)."""
        ...

    def wait(self) -> Awaitable[None]:
        """Done once it is settled (bounded by the write's own time limit)."""
        ...


class Withholding:
    """The writes an answer's messages wait for, what of the answer is held meanwhile, and the ids
    of the responses in it. A message read (`read`) without a write pending goes on as it came
    (`passing`)."""

    def __init__(self) -> None:
        self._pending: list[Pending] = []
        self._held: list[bytes] = []
        # The responses read since what went on last: in what `passing` is given next, or held.
        self._ids: list[RequestId] = []

    @property
    def active(self) -> bool:
        """Whether a write is pending, or its messages held."""
        return bool(self._pending)

    def read(self, ids: Iterable[RequestId], pending: Pending | None) -> None:
        """A message read, the ids of its responses; `pending`: a write it must not go before."""
        self._ids.extend(ids)
        if pending is not None:
            self._pending.append(pending)

    def passing(self, out: bytes) -> bytes | None:
        """What goes on of `out` (what the relay gives after reading): as it is while no write is
        pending; held (b"") while one is; what was held and it, once every one is written. None
        once one failed: nothing held goes on (`drop`)."""
        if not self._pending:
            self._ids.clear()
            return out
        self._held.append(out)
        if not all(p.settled() for p in self._pending):
            return b""
        if self.refusal is not None:
            return None
        held = b"".join(self._held)
        self._pending, self._held, self._ids = [], [], []
        return held

    @property
    def refusal(self) -> tuple[int, str] | None:
        """The error (code, message) of the first write that failed, or None."""
        return next((p.failure for p in self._pending if p.failure is not None), None)

    def drop(self) -> list[RequestId]:
        """What was held forgotten (it never goes on), and the ids of its responses."""
        ids = list(self._ids) if self._pending else []
        self._pending, self._held, self._ids = [], [], []
        return ids

    async def wait(self) -> None:
        """Done once every write pending is settled."""
        for pending in list(self._pending):
            await pending.wait()
