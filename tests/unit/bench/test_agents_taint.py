"""The taint index's bench (bench/agents_taint.py) runs, and what it measures is an index that finds
the planted value and clears the user's (its figures are not asserted: timings vary by machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import agents_taint


def test_the_bench_runs_on_a_small_conversation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["agents_taint.py", "--size-mb", "0.05", "--results-kib", "2", "--repeat", "1"])
    agents_taint.main()
    out = capsys.readouterr().out
    assert "decode + build index:" in out and "a call)" in out


def test_the_conversation_holds_every_way_tools_write() -> None:
    body = agents_taint.conversation(0.05, 2, seed=1)
    results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
    assert any(r.startswith("[{") for r in results) and any(r.startswith("- ") for r in results)
    assert any(r.startswith("[{'") for r in results) and any(agents_taint.PLANTED in r for r in results)
