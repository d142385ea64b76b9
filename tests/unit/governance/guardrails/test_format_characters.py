"""Format characters (Unicode's category Cf: U+200B, U+200D, U+2060, a soft hyphen…), variation
selectors, combining marks and U+0000 inside a value do not hide it from the detectors (`text.py`
reads them as nothing), in a request's body as written or escaped and in an answer however it
streams; and a redaction removes the whole value, the hidden characters with it. Text whose accents
are written as combining marks is read as the same text written with the accented letters."""

from __future__ import annotations

import functools
import json
import random
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import AWS_KEY_ID, SAMPLES
from tollgate.formats.openai_chat.answer_guard import ChatAnswerGuard
from tollgate.governance.guardrails import text
from tollgate.governance.guardrails.answer import AnswerDetectors, compiled_for
from tollgate.governance.guardrails.engine import HYPERSCAN, formats_in
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.rules import Guardrails

KINDS = sorted(SAMPLES)
FORMATS = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u180e", "\u2066", "\U000e0041"]
# Variation selectors, combining marks (the combining grapheme joiner among them) and U+0000: as
# invisible, read as nothing the same way.
MARKS = ["\ufe0f", "\ufe00", "\U000e0100", "\u0301", "\u034f", "\u20d2", "\u1dc0", "\ufe20", "\u180b", "\x00"]
HIDDEN = FORMATS + MARKS
ENGINES = [False, True] if HYPERSCAN else [False]


@functools.cache
def guardrails(kind: str, engine: bool) -> Guardrails:
    return Guardrails([GuardrailRule(detect=[kind], action="redact")], use_hyperscan=engine)


@functools.cache
def answer_detectors(kind: str) -> AnswerDetectors:
    return compiled_for({kind: "redact"})


def hidden_in(value: str, rnd: random.Random, hidden: list[str]) -> str:
    """The value with format characters put between some of its characters (never at its ends)."""
    chars = list(value)
    for ch in hidden:
        at = rnd.randrange(1, len(chars))
        chars.insert(at, ch)
    return "".join(chars)


@given(
    kind=st.sampled_from(KINDS),
    hidden=st.lists(st.sampled_from(HIDDEN), min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    escaped=st.booleans(),
    engine=st.sampled_from(ENGINES),
)
@settings(max_examples=examples(400), deadline=None)
def test_a_value_with_format_characters_in_it_is_found_and_redacted_whole(
    kind: str, hidden: list[str], seed: int, escaped: bool, engine: bool
) -> None:
    value, context = SAMPLES[kind]
    written = hidden_in(value, random.Random(seed), hidden)
    body = json.dumps({"messages": [{"role": "user", "content": context.format(written)}]}, ensure_ascii=escaped)
    scan = guardrails(kind, engine).scan(body.encode(), "openai", "m", None, ())
    assert scan.counts() == {kind: 1}
    redacted, replaced = scan.redact(body.encode())
    assert replaced == 1
    content = json.loads(redacted)["messages"][0]["content"]
    assert content == context.format(f"[REDACTED:{kind}]")


@given(
    kind=st.sampled_from(KINDS),
    hidden=st.lists(st.sampled_from(HIDDEN), min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    size=st.integers(1, 9),
)
@settings(max_examples=examples(300), deadline=None)
def test_an_answer_with_format_characters_in_a_value_never_lets_it_through(
    kind: str, hidden: list[str], seed: int, size: int
) -> None:
    """Streamed a few characters an event: what is held is read as the whole text is, the hidden
    characters read as nothing; the value goes on as its placeholder, nothing of it before."""
    value, context = SAMPLES[kind]
    said = context.format(hidden_in(value, random.Random(seed), hidden))
    pieces = [said[i : i + size] for i in range(0, len(said), size)]
    events = [
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}).encode() + b"\n\n" for p in pieces
    ]
    guard = ChatAnswerGuard(answer_detectors(kind))
    out = b"".join(guard.feed(event) for event in events) + guard.flush()  # each event as it comes
    got = "".join(
        json.loads(block[6:])["choices"][0]["delta"].get("content") or ""
        for block in out.split(b"\n\n")
        if block.startswith(b"data: {")
    )
    assert guard.counts == {kind: 1}
    assert got == context.format(f"[REDACTED:{kind}]")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_card_number_with_zero_width_spaces_between_its_digits_is_one(engine: bool) -> None:
    card = "\u200b".join("4111111111111111")
    body = json.dumps({"messages": [{"role": "user", "content": f"pay with {card} today"}]}).encode()
    scan = guardrails("pii.payment_card", engine).scan(body, "openai", "m", None, ())
    assert scan.counts() == {"pii.payment_card": 1}
    assert json.loads(scan.redact(body)[0])["messages"][0]["content"] == "pay with [REDACTED:pii.payment_card] today"


def test_format_characters_around_a_value_are_left_as_they_came() -> None:
    """A match begins after the characters read as nothing before it and ends before those after
    it: the text around a value is the text that came."""
    body = f"x \u200b{AWS_KEY_ID}\u2060 y".encode()
    read = text.read(body, is_json=False)
    start = read.data.index(AWS_KEY_ID.encode())
    s, e = read.to_body(start, start + len(AWS_KEY_ID))
    assert body[s:e] == AWS_KEY_ID.encode()
    escaped = json.dumps(f"x \u200b{AWS_KEY_ID}\u2060 y").encode()  # \u200b, \u2060
    read = text.read(escaped)
    start = read.data.index(AWS_KEY_ID.encode())
    s, e = read.to_body(start, start + len(AWS_KEY_ID))
    assert escaped[s:e] == AWS_KEY_ID.encode()


def test_a_body_without_them_is_read_as_it_is_written() -> None:
    """The common case costs nothing more: a body without format characters (nor escapes) is the
    text read, not a copy; nor is an ASCII text's."""
    body = json.dumps({"content": "caf\u00e9 \u4e2d\u6587 and more"}, ensure_ascii=False).encode()
    assert text.read(body).data is body
    assert text.read(body, is_json=False).data is body
    plain = b"plain ASCII with AKIA in it"
    assert text.read(plain, is_json=False).data is plain


@pytest.mark.parametrize("hidden", HIDDEN)
def test_an_answers_text_is_told_to_hold_format_characters_or_not(hidden: str) -> None:
    """What the answer's reading asks before it reads a held text anew (`engine.formats_in`)."""
    assert formats_in(f"caf\u00e9 \u201cquoted\u201d \u2014 {hidden} end".encode())
    assert formats_in(f"plain {hidden} ASCII".encode())
    assert not formats_in("caf\u00e9 \u201cquoted\u201d \u2014 end".encode())
    assert not formats_in(b"plain ASCII")


def test_the_table_of_format_characters_is_this_pythons_unicode() -> None:
    """Every character of category Cf, and none other: a Python of a newer Unicode that adds some
    fails here, until the table has them."""
    known = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    table = {c for first, last in text.FORMAT_RANGES for c in range(first, last + 1)}
    assert table == known, unicodedata.unidata_version


@pytest.mark.parametrize("escape", ["\\udb40\\udc20", "\\u0301", "\\u034F", "\\ufe0f", "\\u0000"])
def test_a_key_with_an_escaped_format_character_in_tool_arguments_never_leaves_however_split(escape: str) -> None:
    """U+E0020 written in the arguments' JSON as an escaped surrogate pair (or a mark, U+0000
    escaped): a read that ends between its two halves, or inside an escape, holds what comes
    before it."""
    arguments = '{"cmd": "AKIA' + escape + AWS_KEY_ID[4:] + ' now"}'
    for cut in range(1, len(arguments)):
        calls = [{"index": 0, "function": {"arguments": piece}} for piece in (arguments[:cut], arguments[cut:])]
        events = [
            b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [c]}}]}).encode() + b"\n\n"
            for c in calls
        ]
        guard = ChatAnswerGuard(answer_detectors("secrets.aws_access_key_id"))
        out = b"".join(guard.feed(event) for event in events) + guard.flush()
        got = "".join(
            json.loads(block[6:])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
            for block in out.split(b"\n\n")
            if block.startswith(b"data: {") and b"tool_calls" in block
        )
        assert AWS_KEY_ID[4:12] not in got, cut
        assert guard.counts == {"secrets.aws_access_key_id": 1}, cut


def test_the_table_of_marks_holds_only_marks_and_selectors() -> None:
    """The marks read as nothing: combining marks of the blocks that mark any script's letters
    (Latin's among them), and the variation selectors; none a letter, a digit or a separator."""
    table = {c for first, last in text.MARK_RANGES for c in range(first, last + 1)}
    categories = {unicodedata.category(chr(c)) for c in table}
    assert categories <= {"Mn", "Me", "Cn"}, categories
    assert {0x0301, 0x034F, 0xFE0F, 0xE0100, 0x20E3} <= table


# Text whose accents are combining marks (NFD), as some keyboards and macOS file names write it.
ACCENTED = [
    "Un caf\u00e9 cr\u00e8me \u00e0 la fran\u00e7aise, s'il vous pla\u00eet, pour Jos\u00e9 et Ren\u00e9e.",
    "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u: ng\u01b0\u1eddi, \u0111\u01b0\u1eddng, tr\u01b0\u1eddng.",
    "Se\u00f1or Mu\u00f1oz pag\u00f3 1.234,56 \u20ac el 12/03/2024; en la mesa 7 (Espa\u00f1a).",
    "\u1f08\u03b8\u03ae\u03bd\u03b1 \u03ba\u03b1\u1f76 \u0398\u03b5\u03c3\u03c3\u03b1\u03bb\u03bf\u03bd\u03af\u03ba\u03b7 \u2014 na\u00efve co\u00f6perate r\u00e9sum\u00e9",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u2764\ufe0f \u263a\ufe0f 1\ufe0f\u20e3",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("said", ACCENTED)
def test_accents_written_as_combining_marks_are_no_new_finding(said: str, engine: bool) -> None:
    """Every detector finds in the decomposed text what it finds in the composed one (nothing), and
    a body without a value is never changed."""
    every = Guardrails([GuardrailRule(detect=KINDS, action="redact")], use_hyperscan=engine)
    for form in ("NFC", "NFD"):
        written = unicodedata.normalize(form, said)
        for escaped in (False, True):
            body = json.dumps({"messages": [{"role": "user", "content": written}]}, ensure_ascii=escaped).encode()
            scan = every.scan(body, "openai", "m", None, ())
            assert scan.counts() == {}, (form, escaped)
            assert scan.redact(body)[0] == body


def test_a_nul_in_plain_text_is_read_as_nothing() -> None:
    """A text that is not JSON (an answer's text, `tollgate scan`'s files) carries U+0000 as it is:
    read as nothing there too, though the text is otherwise ASCII."""
    body = f"key AKIA\x00{AWS_KEY_ID[4:]} here".encode()
    read = text.read(body, is_json=False)
    start = read.data.index(AWS_KEY_ID.encode())
    assert read.to_body(start, start + len(AWS_KEY_ID)) == (4, 5 + len(AWS_KEY_ID))


def test_the_pass_over_a_body_finds_every_character_read_as_nothing() -> None:
    """The patterns that tell where one may be (the pass over a body, `formats_in`) find each one
    `read` reads as nothing; a character they find besides (U+037E, Greek's question mark) is read."""
    import re

    search = re.compile(text.format_characters())
    beyond = re.compile(text.format_characters_beyond_ascii())
    hidden = {c for first, last in text.FORMAT_RANGES + text.MARK_RANGES for c in range(first, last + 1)}
    for c in hidden:
        written = chr(c).encode()
        assert search.match(written) and beyond.fullmatch(written), hex(c)
        assert text.read(b"a" + written + b"b", is_json=False).data == b"ab", hex(c)
    assert search.match(b"\x00") and formats_in(b"a\x00b")
    greek = "\u037e \u0375".encode()
    assert text.read(greek, is_json=False).data is greek
