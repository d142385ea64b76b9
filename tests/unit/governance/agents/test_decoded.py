"""Outside content is decoded before it is indexed: a value is found however a result wrote it."""

from __future__ import annotations

import json
from unittest.mock import patch

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.governance.agents import decoded
from tollgate.governance.agents.decoded import PARSE_CHARS, decoded_texts, leaves, structure, unescaped
from tollgate.governance.agents.taint import folded


def holds(text: str, value: str) -> bool:
    return any(folded(value) in folded(t) for t in decoded_texts(text))


def test_json_inside_json_strings() -> None:
    inner = json.dumps({"iban": "DE89 3704 0044 0532 0130 00"})
    outer = json.dumps({"body": json.dumps({"note": inner})})
    assert "DE89" not in outer.replace("\\", "")[:0] and holds(outer, "DE89370400440532013000")


def test_printed_python_literals_and_yaml() -> None:
    assert holds(repr([{"sender": "a@b.example", "body": "pay O'Brien"}]), "pay O'Brien")
    text = yaml.safe_dump([{"subject": "Rent", "body": "send to evil@attacker.example now"}])
    assert holds(text, "evil@attacker.example")


def test_escapes_doubled_quotes_and_continued_lines() -> None:
    assert holds("to \\u0065vil\\u0040x.example", "evil@x.example")
    assert holds('"say ""hello world"" now"', '"hello world"')
    assert holds("transfer to US13\\\n00000", "US1300000")
    assert holds("quoted=\nprintable", "quotedprintable")
    assert unescaped("a\\nb") == "a\nb"


def test_key_value_lines_of_broken_yaml() -> None:
    text = 'Subject: "urgent"\nTo: boss@x.example\nbody: a: b: [ broken'
    assert holds(text, "boss@x.example") and holds(text, "urgent")


def test_bounds_hold_against_hostile_input() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert structure(deep) is None and decoded_texts(deep)[0] == deep
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=False)
    )
    assert len(decoded_texts(bomb)) <= 200_000  # the walk is bounded, the aliases not expanded
    huge = json.dumps({"k": "v" * PARSE_CHARS})
    assert structure(huge) is None and decoded_texts(huge)[0] == huge
    for nested in ("a: " + "[" * 90_000 + "]" * 90_000, "- " * 90_000 + "x", "(" * 90_000 + ")" * 90_000):
        assert structure(nested) is None and decoded_texts(nested)[0] == nested
    assert structure("[1, 2") is None  # nothing runs: a call in a printed literal is YAML's text
    assert structure("{'a': __import__('os').getpid()}") == {"a": "__import__('os').getpid()"}


_text = st.text(st.characters(codec="utf-8"), max_size=30)
_values = st.recursive(
    st.one_of(_text, st.integers(), st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def strings_of(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_of(k), *strings_of(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


@settings(max_examples=150, deadline=None)
@given(_values)
def test_every_string_of_a_structure_is_found_however_written(value: object) -> None:
    for written in (
        json.dumps(value),
        json.dumps(value, ensure_ascii=False),
        repr(value),
        json.dumps(json.dumps(value)),
    ):
        texts = [folded(t) for t in decoded_texts(written)]
        for s in strings_of(value):
            assert any(folded(s) in t for t in texts), (written, s)


_json_leaves = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["[1, 2]", " {a: b}", "('x', 'y')", 'say ""hi""', "it''s", "a\\nb", "{'k': 'O''Brien'}"]),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.booleans())
def test_json_written_as_it_is_finds_what_every_leaf_finds(value: object, ascii_only: bool) -> None:
    """Leaves JSON writes as they are are left out: the text, indexed, finds all they would."""
    written = json.dumps(value, ensure_ascii=ascii_only)
    texts = [folded(t) for t in decoded_texts(written)]
    parsed = structure(written)
    every = [written, *(leaves(parsed) if parsed is not None else ())]  # each leaf by itself
    for leaf in every:
        assert any(folded(leaf) in t for t in texts), (written, leaf)


def test_json_numbers_written_otherwise_are_found_as_read() -> None:
    written = '{"amount": 1e3, "rate": 1.50, "tiny": [2E-1], "id": 12345678}'
    assert holds(written, "1000.0") and holds(written, "1.5") and holds(written, "0.2") and holds(written, "12345678")


def test_a_value_holding_doubled_quotes_and_an_escape_is_found() -> None:
    value = "it''s\x1b"
    for written in (json.dumps(value), repr(value), json.dumps(json.dumps(value)), json.dumps([value])):
        assert any(folded(value) in folded(t) for t in decoded_texts(written)), written


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(['"', " ", "\n", "\u3000", "\x1c", "[", "{", "(", "a", "é"]), max_size=10).map("".join))
def test_a_string_beginning_with_a_structure_is_found_with_the_one_pass_and_without(text: str) -> None:
    found = decoded.string_structure(text)
    assert found == (decoded._STRING_STRUCTURE.search(text) is not None)
    with patch.object(decoded, "_MAY_STRING_STRUCTURE", None):
        assert decoded.string_structure(text) == found


def _structure_by_the_standard_library(text: str) -> tuple[object, list[float] | None]:
    """`_structure` read by `json` alone, as it was before orjson read some texts."""
    stripped = text.strip()
    floats: list[float] = []

    def read_float(written: str) -> float:
        floats.append(float(written))
        return floats[-1]

    try:
        value = json.loads(stripped, parse_float=read_float)
    except (ValueError, RecursionError):
        value = None
    return (value, floats) if isinstance(value, (dict, list)) else (decoded._slow_structure(stripped), None)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, -0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**18, 10**19])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(st.lists(_json_values, max_size=4), st.dictionaries(st.text(max_size=6), _json_values)),
    ensure_ascii=st.booleans(),
    indent=st.sampled_from([None, 2]),
    repeated=st.sampled_from(["", '"k":1,"k":[2],', '"":"x","":1,']),
    written=st.sampled_from(["", "NaN", "1e400", "-0", "1E5", "12345678901234567890", '"\\ud800"', "\u0663"]),
)
def test_a_json_structure_reads_as_the_standard_library_reads_it(
    value: object, ensure_ascii: bool, indent: int | None, repeated: str, written: str
) -> None:
    """orjson reads a text where no number is a float or past 64 bits: the value (repeated keys,
    integers at its bounds, what orjson refuses and the standard library reads) and the floats
    are the standard library's."""
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    if isinstance(value, dict):
        text = "{" + repeated + text[1:] if repeated and len(text) > 2 else text
        text = text[:-1] + f', "w": {written}' + "}" if written and len(text) > 2 else text
    elif written:
        text = f"[{written}, {text}]"
    got, want = decoded._structure(text), _structure_by_the_standard_library(text)
    assert repr(got) == repr(want)


def test_a_json_structure_nested_past_orjson_s_depth_reads_as_the_standard_library_reads_it() -> None:
    text = "[" * 1500 + "1" + "]" * 1500
    assert repr(decoded._structure(text)) == repr(_structure_by_the_standard_library(text))
