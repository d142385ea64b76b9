"""An answer's JSON whose objects repeat a key is told apart from one whose do not
(`json_codec.keys_once`), whatever the writer: compact or spaced, every character escaped or none,
quotes and colons inside strings and keys, a space before a key's colon."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from tollgate.formats.bodies.json_codec import (
    RepeatedKey,
    keys_once,
    loads_once,
    object_once,
    parse_json,
    text_object_once,
)


class Pairs(list[tuple[str, Any]]):
    """An object as written: its members in order, a key perhaps twice."""


_TEXT = st.text(alphabet=st.sampled_from('ab":\\ \n\u00e9\u200b'), max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(_TEXT, inner), max_size=4).map(Pairs),
    max_leaves=12,
)


def repeats(value: Any) -> bool:
    if isinstance(value, Pairs):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(repeats(v) for _, v in value)
    if isinstance(value, list):
        return any(repeats(v) for v in value)
    return False


def _string(text: str, rnd: random.Random) -> str:
    out = []
    for ch in text:
        if rnd.random() < 0.3 or ch < " ":
            out.append(f"\\u{ord(ch):04{rnd.choice('xX')}}")  # as its escape, hex in either case
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def written(value: Any, rnd: random.Random) -> str:
    """JSON of the value, written with white space and escapes drawn at random."""

    def space() -> str:
        return rnd.choice(["", "", " ", "\n  ", "\t"])

    if isinstance(value, Pairs):
        members = [space() + _string(k, rnd) + space() + ":" + space() + written(v, rnd) for k, v in value]
        return "{" + ",".join(members) + space() + "}"
    if isinstance(value, list):
        return "[" + ",".join(space() + written(v, rnd) for v in value) + space() + "]"
    if isinstance(value, str):
        return _string(value, rnd)
    return json.dumps(value)


@given(value=VALUES, seed=st.integers(0, 2**32))
@settings(max_examples=examples(500), deadline=None)
def test_a_repeated_key_is_told_however_the_json_is_written(value: Any, seed: int) -> None:
    data = written(value, random.Random(seed)).encode()
    assert keys_once(data, orjson.loads(data)) is not repeats(value)
    if repeats(value):
        with pytest.raises(RepeatedKey):
            loads_once(data)
    else:
        assert loads_once(data) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":2}}',
        b'{"a":1 ,"a" :2}',  # a space before a colon: not counted as `":` is
        b'{"a":1,"a":2,"b":"\\u003a"}',  # as many colons as orjson writes: one escaped, one key more
        b'{"a":1,"a":2,"b":"\\u003A"}',
        b'{"a":"x","a":"y","b":"\\u0022:"}',
        b'[{"k":1},{"k":1,"k":1}]',
        b'\xef\xbb\xbf{"a":1,"a":2}',  # read by the standard library (orjson refuses the mark)
        b'{"a":NaN,"a":2}',
    ],
)
def test_each_way_of_hiding_a_repeated_key_is_found(data: bytes) -> None:
    with pytest.raises(RepeatedKey):
        loads_once(data)
    assert parse_json(data) is None


def test_an_object_read_by_parse_json_is_one_that_repeats_no_key() -> None:
    assert parse_json(b'{"a": 1, "b": {"a": 2}}') == {"a": 1, "b": {"a": 2}}
    assert parse_json(b'{"usage": {"total_tokens": 1, "total_tokens": 900}}') is None


def test_an_object_once_is_an_object_that_repeats_no_key() -> None:
    assert object_once(b'{"a": {"b": 1}}') == {"a": {"b": 1}}
    assert object_once(b'{"a": 1, "a": 2}') is None  # repeated: never read
    assert object_once(b'{"a": {"b": 1, "\\u0062": 2}}') is None  # repeated under an escape
    assert object_once(b"[1, 2]") is None  # JSON, but no object
    assert object_once(b"{not json") is None
    assert object_once(b"[" * 100_000 + b"]" * 100_000) is None  # too deep to read


def test_a_text_object_once_is_read_as_the_standard_library_reads_it() -> None:
    big = 10**25 + 1  # past 64 bits: orjson would read a float
    assert text_object_once(f'{{"a": {big}, "b": [1.5, true]}}') == {"a": big, "b": [1.5, True]}
    assert type(text_object_once('{"a": 1}')["a"]) is int  # type: ignore[index]
    assert text_object_once('{"a": 1, "\\u0061": 2}') is None  # repeated under an escape
    assert text_object_once('"a"') is None and text_object_once("{") is None and text_object_once("") is None
    assert text_object_once("[" * 100_000 + "]" * 100_000) is None  # too deep to read
