"""Which of a set of words a text holds: the same set by one pass as by one search per word."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.governance.agents.words_held import WordsHeld
from tollgate.governance.guardrails.engine import HYPERSCAN

WORDS = ["ignore", "you", "your", "[", "<|", "##(system", "don't", "é", "\\n", "a b", "\ud800"]
_TEXT = st.text(st.sampled_from([*"igorenyu[<|#(sytm'é\\ab ", "\ud800", "\U0001f600", "x"]), max_size=40)


@pytest.mark.parametrize("use_hyperscan", [True, False] if HYPERSCAN else [False])
@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_the_words_held_are_those_the_text_holds(use_hyperscan: bool, text: str) -> None:
    assert WordsHeld(WORDS, use_hyperscan=use_hyperscan).held(text) == {w for w in WORDS if w in text}


def test_a_word_is_held_wherever_and_however_often() -> None:
    held = WordsHeld(["you", "your"])
    assert held.held("Your turn: yours, you") == {"you", "your"} and held.held("YOU") == set()
