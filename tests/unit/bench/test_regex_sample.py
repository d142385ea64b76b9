"""The maker of a string a regular expression matches (bench/regex_sample.py)."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import regex_sample

# Shapes such as a credential scanner's rules have, written for these tests.
PATTERNS = [
    r"abc_[a-z0-9]{32}",
    r"[A-Z2-7]{16}",
    r"(?:live|test)_[0-9a-f]{8}-[0-9a-f]{4}",
    r"\b(tok-[\w-]{20,40})\b",
    r"key[=:][ \t]{0,3}[^\s\"']{10}",
    r"(?i)secret[a-z]{3}\.[0-9]+",
    r"x{2,}y?z*",
    r"[\w.~-]{5}\.[[:alnum:]]{6}",
    r"pre(fix)?-\d{4}\z",
    r"(a|bc|[d-f]{2})+\.(?P<n>q)(?P=n)",
    r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}",
    r".{3}[^a-z]{2}",
    r"[a-z0-9=_\-]{12}==?",
    r"ABC(?i)def",
]


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(min_value=0, max_value=2**32))
def test_every_string_made_matches_its_pattern(pattern: str, seed: int) -> None:
    made = regex_sample.make(pattern, random.Random(seed))
    assert re.fullmatch(regex_sample.python_pattern(pattern), made), (pattern, made)


def test_a_range_of_lengths_gives_its_least_and_an_open_one_at_most_one() -> None:
    rng = random.Random(7)
    assert len(regex_sample.make("[a-z]{5,9}", rng)) == 5
    assert len(regex_sample.make("[a-z]{250,}", rng)) == 250
    assert len(regex_sample.make("a+", rng)) == 1
    assert {len(regex_sample.make("b*", rng)) for _ in range(50)} == {0, 1}


def test_a_pattern_nothing_matches_is_refused() -> None:
    with pytest.raises(ValueError, match="no string"):
        regex_sample.make(r"a\bb", random.Random(1))


def test_the_same_seed_makes_the_same_string() -> None:
    made = {regex_sample.make(r"[A-Za-z0-9]{40}", random.Random("a rule")) for _ in range(3)}
    assert len(made) == 1


def test_go_spellings_python_lacks() -> None:
    assert regex_sample.python_pattern(r"a\z") == r"a\Z"
    assert regex_sample.python_pattern("[[:digit:]]") == "[0-9]"
    assert regex_sample.python_pattern("x(?i)y") == "x(?i:y)"
