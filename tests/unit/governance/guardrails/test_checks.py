"""The checks a match must pass, held to what they were written as: each check that reads its bytes
in C's loops says what the plain loop over them said, for any bytes."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from tollgate.governance.guardrails import checks

_ORDERED = tuple(chr(c).isascii() and chr(c).isalnum() for c in range(256))


def placeholder_by_loop(value: bytes) -> bool:
    """`checks.placeholder` as a loop over the bytes: what it says."""
    run = steps = 1
    for previous, current in itertools.pairwise(value):
        run = run + 1 if current == previous else 1
        steps = steps + 1 if current == previous + 1 and _ORDERED[current] else 1
        if run >= 8 or steps >= 8:
            return True
    tail = value[-12:]
    return len(tail) == 12 and any(tail == tail[:n] * (12 // n) for n in (1, 2, 3, 4))


def mixed_base64_by_loop(text: bytes) -> bool:
    lower = any(97 <= c <= 122 for c in text)
    upper = any(65 <= c <= 90 for c in text)
    other = any(not (97 <= c <= 122 or 65 <= c <= 90) for c in text)
    return lower and upper and other and len(set(text)) >= 16


# Runs, counting order and repeated units are rare in random bytes: values are made of pieces that
# hold them (runs of one byte, stretches of the digits' and letters' order, a short unit repeated).
_ORDER = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_piece = st.one_of(
    st.binary(max_size=12),
    st.tuples(st.integers(0, 255), st.integers(1, 10)).map(lambda r: bytes([r[0]]) * r[1]),
    st.tuples(st.integers(0, len(_ORDER) - 1), st.integers(1, 10)).map(lambda r: _ORDER[r[0] : r[0] + r[1]]),
    st.tuples(st.binary(min_size=1, max_size=5), st.integers(2, 13)).map(lambda r: r[0] * r[1]),
    st.sampled_from([b"/", b"@", b"`", b"\xff", b"\x00", b"9", b"Z", b"z", b"[", b":", b"{"]),
)
_values = st.lists(_piece, max_size=8).map(b"".join)


@settings(max_examples=examples(3000), deadline=None)
@given(_values)
def test_placeholder_says_what_the_loop_over_its_bytes_says(value: bytes) -> None:
    assert checks.placeholder(value) is placeholder_by_loop(value)


@settings(max_examples=examples(2000), deadline=None)
@given(
    st.one_of(
        _values, st.binary(max_size=80), st.text(alphabet=_ORDER.decode() + "+/=-_é", max_size=60).map(str.encode)
    )
)
def test_mixed_base64_says_what_the_loop_over_its_bytes_says(text: bytes) -> None:
    assert checks.mixed_base64(text) is mixed_base64_by_loop(text)


def test_placeholder_at_the_edges_of_the_order() -> None:
    assert checks.placeholder(b"/0123456")  # the byte before the digits begins their order
    assert not checks.placeholder(b"3456789:;<")  # the order stops at 9
    assert checks.placeholder(b"STUVWXYZ") and not checks.placeholder(b"TUVWXYZ[")
    assert checks.placeholder(b"\xff" * 8) and not checks.placeholder(b"\xff\x00\x01\x02\x03\x04\x05\x06")
    assert not checks.placeholder(b"xxxxxxx") and checks.placeholder(b"axxxxxxxx")
    assert checks.placeholder(b"Q9abcabcabcabc") and checks.placeholder(b"Q9wxyzwxyzwxyz")
    assert not checks.placeholder(b"Q9abcdeabcdeab")
