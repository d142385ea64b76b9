"""How detectors find their spans, held to the plain ways they were written first: the places an
address is tried at, and a pair's base64 runs, give what trying every place and `re` gave."""

from __future__ import annotations

import re
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from tollgate.governance.guardrails import detector_types, detectors
from tollgate.governance.guardrails.detector_types import EmailDetector, Span

EMAIL = next(d for d in detectors.BUILTIN if isinstance(d, EmailDetector))
_LOCAL_PART = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"


def email_at_every_place(buf: bytes, anchors: list[Span]) -> Iterator[Span]:
    """`EmailDetector.around` trying every place of the local part's run."""
    done = -1
    for start, _ in anchors:
        at = start + 1
        if at <= done:
            continue
        lo = max(0, at - 64)
        before = buf[lo:at]
        first_at = at - (len(before) - len(before.rstrip(_LOCAL_PART)))
        for first in range(first_at, at):
            found = EMAIL.match(buf, first)
            if found is not None and not detector_types._userinfo(buf, found[0]):
                done = found[1]
                yield found
                break


# Text made of what an address's start depends on: the local part's characters and dots, escapes
# before them, a URL's user and password, separators, and long runs (past the 64 bytes looked back).
_piece = st.one_of(
    st.sampled_from(
        [b"jane", b".", b"..", b"doe", b"a", b"9", b"_", b"%", b"+", b"-", b"@", b"@acme.com", b"@x.io", b"@a.b",
         b"\\n", b"\\t", b"\\\\", b"\\u00e9", b"\\u2026", b"\\uD83D", b"\\", b"u00e9", b"/", b":", b"://", b"://u:",
         b"https://app:pw", b"=", b" ", b'"', b"git", b"@example.com", b"@host.png", b"\xc3\xa9"]
    ),
    st.text(alphabet=_LOCAL_PART.decode(), min_size=1, max_size=70).map(str.encode),
)  # fmt: skip
_bodies = st.lists(_piece, max_size=24).map(b"".join)


@settings(max_examples=examples(1500), deadline=None)
@given(_bodies)
def test_an_address_is_found_where_trying_every_place_finds_it(buf: bytes) -> None:
    anchors = [m.span() for m in re.finditer(EMAIL.anchors[0], buf)]
    assert list(EMAIL.around(buf, anchors)) == list(email_at_every_place(buf, anchors))


_RUN = re.compile(rb"[A-Za-z0-9/+]{40,}+")
_base64_piece = st.one_of(
    st.tuples(st.sampled_from([b"A", b"z", b"0", b"+", b"/", b"Ab9/", b"xyz+"]), st.integers(1, 30)).map(
        lambda r: r[0] * r[1]
    ),
    st.sampled_from([b" ", b"=", b"\\n", b"-", b"_", b"\x00", b"\x01", b"\xff", b'"']),
)


@settings(max_examples=examples(1500), deadline=None)
@given(st.lists(_base64_piece, max_size=16).map(b"".join), st.data())
def test_a_pairs_runs_are_what_re_finds(buf: bytes, data: st.DataObject) -> None:
    # A window may begin before the text and end after it (`NearDetector._beside`'s first is at -1).
    lo = data.draw(st.integers(-2, len(buf) + 2))
    hi = data.draw(st.integers(-2, len(buf) + 2))
    found = list(detector_types._runs(buf, lo, hi, 40))
    assert found == [m.span() for m in _RUN.finditer(buf, lo, hi)]


URL_PASSWORD = next(d for d in detectors.BUILTIN if d.kind == "secrets.url_password")
# The pattern as it was written before its runs were possessive: the same matches, read slower.
URL_PASSWORD_BACKTRACKING = re.compile(URL_PASSWORD.pattern.pattern.replace(b"}+", b"}"))
_url_piece = st.one_of(
    st.sampled_from(
        [b"://", b"https://", b":", b"@", b"@db", b"@-", b"/", b"u", b"app", b"pw", b"\\u00e9", b"\\u0001",
         b"\\u00", b"\\", b" ", b"?", b"#", b'"', b"%40", b"x" * 60]
    ),
    st.text(alphabet="abZ09.-_~:@/", min_size=1, max_size=12).map(str.encode),
)  # fmt: skip
# Mostly a URL's shape (`://`, a user, `:`, a password, `@`, a host), its parts made of the pieces.
_url = st.tuples(*(st.lists(_url_piece, max_size=4).map(b"".join) for _ in range(3))).map(
    lambda parts: b"://" + parts[0] + b":" + parts[1] + b"@h" + parts[2]
)


@settings(max_examples=examples(1500), deadline=None)
@given(st.lists(st.one_of(_url, _url_piece), max_size=6).map(b"".join))
def test_a_urls_password_is_matched_as_the_backtracking_pattern_matches_it(buf: bytes) -> None:
    assert URL_PASSWORD_BACKTRACKING.pattern != URL_PASSWORD.pattern.pattern
    for at in range(len(buf)):
        ours, theirs = URL_PASSWORD.pattern.match(buf, at), URL_PASSWORD_BACKTRACKING.match(buf, at)
        assert (ours and (ours.span(), ours.span("v"))) == (theirs and (theirs.span(), theirs.span("v")))
