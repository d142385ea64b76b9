"""Which patterns may match a text, in one pass: never one left out that matches."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.governance.agents import injection
from tollgate.governance.agents.patterns_held import PatternsHeld, loosened
from tollgate.governance.guardrails.engine import HYPERSCAN

pytestmark = pytest.mark.skipif(not HYPERSCAN, reason="PatternsHeld needs Hyperscan")

PATTERNS = [
    r"ignore(?:[\s*~]|\\[nrt])+(?:all )?previous\b",
    r"\w*structions? ?:",
    r"to(?:[\s*~])+(?:\w+ )?you\b",
    r"<\|(?:im_start|system)\|>",
    r"##\(system[)\]]",
    r"a\sb\wc",
    r"x{2,3}[0-9a-f]",
    "[\\w)] (?:'|\u2018|\u201c)q",  # characters past ASCII, as their UTF-8
]
HELD = PatternsHeld(PATTERNS) if HYPERSCAN else None


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_pattern_that_matches_is_held(data: st.DataObject) -> None:
    """Texts a pattern matches (written by the pattern itself: any white space or letter its
    classes hold), among others."""
    i = data.draw(st.sampled_from(range(len(PATTERNS))))
    text = data.draw(st.from_regex(PATTERNS[i]) | st.text(max_size=30))
    assert HELD is not None
    assert {k for k, p in enumerate(PATTERNS) if re.search(p, text)} <= HELD.held(text)


_UNBOUNDED = [injection._unbounded(lead, rest) for leads, rest in injection._PHRASES for lead in leads]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_phrase_that_matches_is_held(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(_UNBOUNDED).flatmap(st.from_regex))
    assert injection._PHRASES_HELD is not None
    held = injection._PHRASES_HELD.held(text)
    assert {i for i, (_, p) in enumerate(injection._COMPILED) if p.search(text)} <= held


def test_a_text_without_them_holds_none() -> None:
    held = HELD
    assert held is not None
    assert held.held("nothing of the kind here") == set()
    assert held.held("please ignore  all previous, then to\u3000you") == {0, 2}


@pytest.mark.parametrize("pattern", [r"(?<=a)b", r"a(?=b)", r"a(?!b)", r"a.b", r"[^a]b", r"\d+", r"[é]", r"^a"])
def test_what_cannot_be_loosened_soundly_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        loosened(pattern)


def test_the_database_is_compiled_once_at_its_first_use() -> None:
    held = PatternsHeld(PATTERNS)
    assert held._database is None  # a process that never reads a text never compiles it
    assert held.held("to you") == {2}
    database = held._database
    assert database is not None and held.ready() is database
