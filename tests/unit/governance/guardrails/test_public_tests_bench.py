"""`bench/public_tests.py` reads others' test tables without running them, and finds a labelled
span where a client's JSON puts it. On a made-up test module: nothing of theirs is here."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[4] / "bench"
sys.path.insert(0, str(BENCH))

import public_tests  # noqa: E402

MODULE = """
import pytest
SECRET = "abc"

class TestThing:
    @pytest.mark.parametrize(
        "payload, should_flag",
        [
            ("plain", True),
            ("key = '{}'".format(SECRET), True),
            (SECRET + "x" * 3, False),
            (SECRET[0:2], False),
            (unknown_call(), True),
        ],
    )
    def test_analyze(self, payload, should_flag):
        pass

@pytest.mark.parametrize("text, expected_len, expected_res", [("a b", 1, ((0, 1),),)])
def test_other(text, expected_len, expected_res):
    pass
"""


def test_tables_are_read_with_their_constants_and_an_unreadable_row_is_counted() -> None:
    found = {name: (names, rows, unread) for name, names, rows, unread in public_tests.tables(MODULE)}
    names, rows, unread = found["test_analyze"]
    assert names == ["payload", "should_flag"]
    assert rows == [("plain", True), ("key = 'abc'", True), ("abcxxx", False), ("ab", False)]
    assert unread == 1
    assert found["test_other"][1] == [("a b", 1, ((0, 1),))]


def test_a_span_is_found_where_json_puts_it() -> None:
    text = 'say "hi"\n\u00e9 then 42'
    body, at = public_tests.body_of(text)
    start = text.index("42")
    assert body[at(start) : at(start + 2)] == b"42"
    assert body[at(0) : at(8)] == b'say \\"hi\\"'


def test_a_form_not_claimed_is_counted_apart() -> None:
    def case(kind: str) -> public_tests.Case:
        return public_tests.Case("test_x.py", kind, "", [], 0)

    assert public_tests.apart(case("pii.us_ssn"), "123" + "456789") is not None
    assert public_tests.apart(case("pii.us_ssn"), "123 45 " + "6789") is None
    assert public_tests.apart(case("pii.us_ssn"), "123-45." + "6789") is not None
    assert public_tests.apart(case("pii.phone"), "(212) 555-" + "0123") is not None
    assert public_tests.apart(case("pii.phone"), "(212) 555-" + "2671") is None
    assert public_tests.apart(case("pii.phone"), "+44 20 7946 " + "0000") is None
    assert public_tests.apart(case("pii.phone"), "090-1234-" + "5678") is not None
