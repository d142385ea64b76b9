"""The searches of where an answer's candidates may begin (`governance/guardrails/open_candidates.py`)
led by the bytes a candidate may begin with (`any_start`, `_Led`): each must find exactly what the
plain search of `led_starts` (and of the group's open forms after it) finds, at the same place, of
the same member, from any place to any end of any text."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import SAMPLES
from support.piecewise import cut, fed
from tollgate.governance.guardrails import answer, detectors
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.detector_types import Detector
from tollgate.governance.guardrails.open_candidates import _firsts, _Led, any_start, led_starts, partial_of
from tollgate.governance.guardrails.partial import Partial

Member = tuple[int, Detector, Partial]


def _members() -> list[Member]:
    found: list[Member] = []
    for d in detectors.builtin(dict.fromkeys(detectors.KINDS, "redact")):
        p = partial_of(d.pattern) if d.anchors else None
        if p is not None:
            found.append((len(found), d, p))
    return found


_ALL = _members()
_rng = random.Random(11)
# Groups as the scanner makes them (a few members together) and single members.
_GROUPS = [[m] for m in _ALL] + [_rng.sample(_ALL, _rng.randint(2, 4)) for _ in range(40)]
_SAMPLED = sorted(v.format(k) if "{}" in v else k for k, v in SAMPLES.values())
_PARTS = st.one_of(
    st.sampled_from([*_SAMPLED, " ", "\n", "=", '"', "\\n", "\\u0041", "-", "+1 (", ":", "sk-", "AKIA", "x"]),
    st.text(st.sampled_from("aZ09 +-_./:=@()\\\"'sShHxX"), max_size=6),
)


def _whole(members: list[Member]) -> re.Pattern[bytes]:
    source = b"|".join(b"(?P<o%d>%s)" % (i, p.open.pattern) for i, (_, _, p) in enumerate(members))
    return re.compile(b"(?=" + led_starts(members) + b")(?:" + source + b")")


def _same(a: re.Match[bytes] | None, b: re.Match[bytes] | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.start(), a.end(), a.lastgroup) == (b.start(), b.end(), b.lastgroup)


@settings(max_examples=examples(300), deadline=None)
@given(
    which=st.integers(0, len(_GROUPS) - 1),
    parts=st.lists(_PARTS, max_size=8),
    lo=st.integers(0, 200),
    cut=st.integers(0, 200),
)
def test_led_searches_find_what_the_plain_ones_find(which: int, parts: list[str], lo: int, cut: int) -> None:
    members = _GROUPS[which]
    data = "".join(parts).encode()
    end = max(0, len(data) - cut)
    lo = min(lo, end)
    plain = re.compile(b"(?=" + led_starts(members) + b")").search(data, lo, end)
    led = any_start(members)(data, lo, end)
    assert (plain is None) == (led is None)
    assert plain is None or led is None or plain.start() == led.start()
    whole = _whole(members)
    searched = _Led(_firsts(members), led_starts(members), whole).search(data, lo, end)
    assert _same(searched, whole.search(data, lo, end))


_SCANNED = compiled_for(dict.fromkeys(detectors.KINDS, "redact"), (), 4096, False)


@settings(max_examples=examples(100), deadline=None)
@given(parts=st.lists(_PARTS, min_size=1, max_size=12), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6))
def test_every_group_searched_holds_what_the_narrowed_search_holds(parts: list[str], sizes: list[int]) -> None:
    # `narrow` only spares searches that find nothing: asked at every piece, or never, the same.
    data = "".join(parts).encode()
    pieces = cut(data, sizes)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(answer, "_WIDE", 1 << 30)
        narrowed = fed(_SCANNED, pieces)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(answer, "_WIDE", 0)
        assert fed(_SCANNED, pieces) == narrowed
