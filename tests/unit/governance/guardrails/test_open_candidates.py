"""Where a candidate of a vendor's credential may begin at the end of an answer's text
(`governance/guardrails/open_candidates.py`): Hyperscan's one pass finds, with the vendors' names,
where a name cut by the end may begin (`cut_names`), and a group with neither is not searched. The
scanner must hold exactly what it held when each group was searched from where a name may begin:
Python's engine (no Hyperscan) still searches so, and both are fed the same pieces."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import SAMPLES, from_pattern
from support.piecewise import cut, fed
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import AnswerDetectors, compiled_for
from tollgate.governance.guardrails.engine import HYPERSCAN
from tollgate.governance.guardrails.open_candidates import cut_names

pytestmark = pytest.mark.skipif(not HYPERSCAN, reason="the names' pass is Hyperscan's")

_COMPILED: dict[bool, AnswerDetectors] = {}


def compiled(use_hyperscan: bool) -> AnswerDetectors:
    if use_hyperscan not in _COMPILED:
        _COMPILED[use_hyperscan] = compiled_for(dict.fromkeys(detectors.KINDS, "redact"), (), 4096, use_hyperscan)
    return _COMPILED[use_hyperscan]


def names_of(found: AnswerDetectors) -> list[bytes]:
    return [n for g in found.groups if g.names is not None for n in g.names.names]


def test_every_vendor_name_has_its_cut_form() -> None:
    # A name without one is searched as before (correct, slower): none of the built-in ones.
    assert all(cut_names(name) is not None for name in names_of(compiled(True)))


def test_a_name_cut_anywhere_at_the_end_is_where_its_group_may_begin() -> None:
    found = compiled(True)
    assert found.name_scan is not None
    rng = random.Random(5)
    for group in found.groups:
        if group.names is None:
            continue
        for name in group.names.names:
            for _ in range(3):
                spelled = from_pattern(name.removeprefix(b"(?i)"), rng).encode()
                spelled = spelled.upper() if rng.random() < 0.5 else spelled
                for k in range(1, len(spelled) + 1):
                    text = b"see " + spelled[:k]
                    at = found.name_scan.starts(text, 0, len(text))
                    assert group.names.first_in(at, 0, len(text)) <= 4, (name, spelled[:k])


def test_a_text_without_a_name_leaves_the_group_unsearched() -> None:
    found = compiled(True)
    assert found.name_scan is not None
    text = b"the model reads a file and answers."
    at = found.name_scan.starts(text, 0, len(text))
    assert all(g.names.first_in(at, 0, len(text)) == len(text) for g in found.groups if g.names is not None)


_NAMED = sorted(v.format(k) if "{}" in v else k for k, v in SAMPLES.values())
_PARTS = st.sampled_from(
    [*_NAMED, "the Adobe team", "MISTRAL_API_KEY", "twitter_bearer", "x_", "sumoLogic", " ", "\n", "=", '"', "ok"]
)


@settings(max_examples=examples(60), deadline=None)
@given(parts=st.lists(_PARTS, min_size=1, max_size=8), sizes=st.lists(st.integers(1, 24), min_size=1, max_size=8))
def test_both_engines_hold_the_same_at_every_piece(parts: list[str], sizes: list[int]) -> None:
    data = "".join(parts).encode()
    pieces = cut(data, sizes)
    assert fed(compiled(True), pieces) == fed(compiled(False), pieces)
