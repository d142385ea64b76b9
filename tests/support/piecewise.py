"""What the tests that feed an answer's scanner piece by piece share: the pieces a text is cut
into, and what the scanner released, refused and held after each."""

from __future__ import annotations

from tollgate.governance.guardrails.answer import AnswerDetectors


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in pieces of `sizes`' lengths, taken in turn (from the first again once all are used)."""
    pieces, at, i = [], 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        pieces.append(data[at : at + size])
        at, i = at + size, i + 1
    return pieces


def fed(found: AnswerDetectors, pieces: list[bytes]) -> list[tuple[bytes, str | None, int]]:
    """A fresh scanner of `found` fed `pieces`, then flushed: after each, what it released, whether
    it refused (the refusal's kind), and how many bytes it held."""
    scanner = found.scanner()
    out = []
    for piece in pieces:
        released = scanner.feed(piece)
        out.append((released.text, released.denied, scanner.held))
    released = scanner.flush()
    return [*out, (released.text, released.denied, scanner.held)]
