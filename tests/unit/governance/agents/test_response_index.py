"""The per-response index is bounded by count and by characters, the least recently used evicted
first, and measured."""

from __future__ import annotations

from tollgate.formats.provenance import OutsidePiece, Provenance
from tollgate.governance.agents.response_index import ResponseIndex


def seen(text: str) -> Provenance:
    return Provenance(["trusted"], [OutsidePiece("read_inbox", text)], calls={"c1": "read_inbox"}, outside_came=True)


def test_bounded_by_count_the_least_recently_used_first() -> None:
    index = ResponseIndex(max_entries=2)
    index.put("a", "r1", seen("one"), {})
    index.put("a", "r2", seen("two"), {})
    assert index.get("a", "r1") is not None  # r1 used: r2 is now the oldest
    index.put("a", "r3", seen("three"), {})
    assert (index.get("a", "r2"), len(index), index.evicted) == (None, 2, 1)
    assert index.get("a", "r1") is not None and index.get("a", "r3") is not None


def test_bounded_by_characters_and_measured() -> None:
    index = ResponseIndex(max_chars=200)
    index.put("a", "r1", seen("x" * 80), {})
    first = index.chars
    assert first == seen("x" * 80).size() + len("r1") and first > 80
    index.put("a", "r2", seen("y" * 80), {"c": {"type": "function_call_output", "call_id": "c", "output": "no"}})
    assert index.get("a", "r1") is None and index.chars == index.get("a", "r2").size  # type: ignore[union-attr]
    index.put("a", "r3", seen("z" * 500), {})  # larger than the whole bound: not kept
    assert index.get("a", "r3") is None and len(index) == 1


def test_put_again_counts_once() -> None:
    index = ResponseIndex()
    index.put("a", "r1", seen("one"), {})
    before = index.chars
    index.put("a", "r1", seen("one"), {})
    assert (index.chars, len(index)) == (before, 1)
