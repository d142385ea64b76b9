"""An answer guard fed an answer a few bytes at a time, as the proxy reads it."""

from __future__ import annotations

from typing import Protocol


class FedGuard(Protocol):
    """What an answer guard is fed through: bytes in, the bytes it lets go out."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def fed_in_reads(guard: FedGuard, data: bytes, read: int) -> bytes:
    """What `guard` lets out of `data` fed `read` bytes at a time, then flushed."""
    return b"".join(guard.feed(data[i : i + read]) for i in range(0, len(data), read)) + guard.flush()


def fed_in_cuts(guard: FedGuard, data: bytes, cuts: list[int]) -> bytes:
    """What `guard` lets out of `data` fed in pieces of the lengths `cuts`, then the rest, then
    flushed."""
    out, at = b"", 0
    for cut in cuts:
        out += guard.feed(data[at : at + cut])
        at += cut
    return out + guard.feed(data[at:]) + guard.flush()
