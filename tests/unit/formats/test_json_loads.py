"""`json_loads` reads what `json.loads` reads, into the same value, or raises as it does."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.formats.bodies.json_codec import _long_digits, json_loads

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\x00", '"'])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a) == json.dumps(b) and type(a) is type(b)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans(), st.booleans())
def test_the_same_value_as_the_standard_library(value: Any, as_bytes: bool, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    data: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert _same(json_loads(data), json.loads(data))


@pytest.mark.parametrize(
    "data",
    ["123456789012345678901234567890", "-9223372036854775809", "1e400", "NaN", '"\\ud800"', '{"a":1,"a":2}'],
)
def test_what_orjson_reads_otherwise(data: str) -> None:
    assert _same(json_loads(data), json.loads(data))
    assert _same(json_loads(data.encode()), json.loads(data.encode()))


@pytest.mark.parametrize("data", ["", "{", '{"a":}', b"\xff", "[1] x"])
def test_what_it_cannot_read_raises_as_json_does(data: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        json_loads(data)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["0000000000", "123456789", "9", "a", " ", "\u0660", "\U0001d7ce", "\ud800"])
        | st.characters(codec="utf-8"),
        max_size=12,
    ).map("".join)
)
def test_a_run_of_19_digits_is_found_as_the_pattern_finds_it(text: str) -> None:
    # Digits of other scripts (`٠`, `𝟎`) are no ASCII digits: orjson and json read neither as a number.
    expected = re.search(r"[0-9]{19}", text) is not None
    assert _long_digits(text) is expected
    assert _long_digits(text.encode("utf-8", "surrogatepass")) is expected
