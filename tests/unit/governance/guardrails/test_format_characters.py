"""Format characters (Unicode's category Cf: U+200B, U+200D, U+2060, a soft hyphen…) inside a value
do not hide it from the detectors (`text.py` reads them as nothing), in a request's body as written
or escaped and in an answer however it streams; and a redaction removes the whole value, the
hidden characters with it."""

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
from tollgate.governance.guardrails.rules import Guardrails
from tollgate.governance.guardrails.settings import GuardrailRule

KINDS = sorted(SAMPLES)
HIDDEN = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u180e", "\u2066", "\U000e0041"]
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
    assert not formats_in("caf\u00e9 \u201cquoted\u201d \u2014 end".encode())
    assert not formats_in(b"plain ASCII")


def test_the_table_of_format_characters_is_this_pythons_unicode() -> None:
    """Every character of category Cf, and none other: a Python of a newer Unicode that adds some
    fails here, until the table has them."""
    known = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    table = {c for first, last in text.FORMAT_RANGES for c in range(first, last + 1)}
    assert table == known, unicodedata.unidata_version


def test_a_key_with_an_escaped_format_character_in_tool_arguments_never_leaves_however_split() -> None:
    """U+E0020 written in the arguments' JSON as an escaped surrogate pair: a read that ends between
    its two halves, or inside the second, holds the first half and what comes before it."""
    arguments = '{"cmd": "AKIA' + "\\udb40\\udc20" + AWS_KEY_ID[4:] + ' now"}'
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
