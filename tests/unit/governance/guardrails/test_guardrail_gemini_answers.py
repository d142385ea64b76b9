"""Gemini's answers read by the answer guardrails (`governance/guardrails/gemini_answer.py`):
server-sent events, the streamed JSON array and whole JSON, and Code Assist's envelope. A stream
split anywhere, across items and reads, gives the client, reassembled, each candidate's text with
its values replaced and clean items byte for byte; a function call's arguments stay their JSON; a
value in a signed part is denied; a denied stream ends with an `error` item (the array closed)."""

from __future__ import annotations

import itertools
import json
import re
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from support.answer_guards import (
    GAPS,
    READS,
    VALUES,
    WORDS,
    a_clean_answer,
    clean_text,
    comes_through_clean,
    compiled,
    cut_places,
    drawn,
)
from support.counted_scans import counting_feeds
from support.examples import QUICK
from support.guard_reads import fed_in_reads
from support.guardrail_samples import AWS_KEY_ID, EMAIL, SAMPLES, crc_token
from tollgate.formats import CODE_ASSIST, GEMINI_GENERATE, OPENAI_CHAT
from tollgate.formats.answer_reading.waiting_events import WAITING_BYTES
from tollgate.formats.framing import JSONArrayFramer
from tollgate.formats.gemini_generate.answer_guard import GeminiAnswerGuard, guard_code_assist_json, guard_gemini_json
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.answer_formats import ANSWER_ENDPOINTS, ANSWER_FORMATS

TOKEN = crc_token("gh" + "p_")
CARD = SAMPLES["pii.payment_card"][0]
Framing = str  # "sse" or "array"


def item(*parts: dict[str, Any], candidate: int = 0, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": candidate}
    if finish:
        body["finishReason"] = finish
    return {"candidates": [body], "modelVersion": "gemini-2.5-flash", **extra}


def stream(items: list[dict[str, Any]], framing: Framing, envelope: bool = False) -> bytes:
    """The items as Google writes them: `data: …\\r\\n\\r\\n` events, or an indented JSON array whose
    elements are separated by `\\r\\n,\\r\\n`."""
    wrapped = [{"response": i, "traceId": "t1"} for i in items] if envelope else items
    if framing == "sse":
        return b"".join(b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in wrapped)
    return b"[" + b"\r\n,\r\n".join(json.dumps(i, indent=2).encode() for i in wrapped) + b"\r\n]"


def guarded(
    found: AnswerDetectors, data: bytes, read: int, envelope: str | None = None
) -> tuple[bytes, GeminiAnswerGuard]:
    guard = GeminiAnswerGuard(found, envelope)
    return fed_in_reads(guard, data, read), guard


def items_of(data: bytes) -> list[dict[str, Any]]:
    """What a client reads: each event's data, or each element of the array (which must close)."""
    if data.lstrip().startswith(b"["):
        return json.loads(data)
    out, lines = [], []
    for line in re.split(rb"\r\n|\r|\n", data):  # as the SSE spec (and google-genai) reads lines
        if line:
            assert line.startswith(b"data: "), line
            lines.append(line[6:])
        elif lines:
            out.append(json.loads(b"\n".join(lines)))
            lines = []
    assert not lines
    return out


def reassembled(data: bytes, envelope: bool = False) -> tuple[dict[tuple[int, str], Any], list[Any]]:
    """What an SDK reassembles: each candidate's text and thought text, its function calls'
    arguments; and the errors."""
    got: dict[tuple[int, str], Any] = {}
    errors = []
    for obj in items_of(data):
        if "error" in obj:
            assert next(iter(obj)) == "error"
            errors.append(obj["error"])
            continue
        answer = obj["response"] if envelope else obj
        for candidate in answer.get("candidates", ()):
            index = candidate.get("index", 0)
            for part in candidate["content"]["parts"]:
                if "text" in part:
                    key = (index, "thought" if part.get("thought") else "text")
                    got[key] = got.get(key, "") + part["text"]
                if "functionCall" in part:
                    got.setdefault((index, "calls"), []).append(part["functionCall"].get("args"))
    return got, errors


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def answer_items(text: str, size: int) -> list[dict[str, Any]]:
    """Two candidates' text in parts of `size` characters (the second upper-cased, two parts an
    item), thought text before them, then a function call whose arguments hold the text."""
    items = [item({"text": "Thinking of " + text[:size], "thought": True})]
    items += [item({"text": p}) for p in pieces_of(text, size)]
    items += [
        item({"text": p[: len(p) // 2]}, {"text": p[len(p) // 2 :]}, candidate=1) for p in pieces_of(text.upper(), size)
    ]
    call = {"functionCall": {"name": "run", "args": {"cmd": text, "flags": ["-v", text], "n": 4}}}
    return [*items, item(call, finish="STOP"), item(candidate=1, finish="STOP", usageMetadata={"totalTokenCount": 9})]


@pytest.mark.parametrize("framing", ["sse", "array"])
@pytest.mark.parametrize("size", [1, 3, 7])
def test_a_streamed_answer_is_redacted_in_its_own_items_however_split(framing: Framing, size: int) -> None:
    text = f"Mail {EMAIL} with the token {TOKEN}, then stop."
    redacted = "Mail [REDACTED:pii.email] with the token [REDACTED:secrets.github_token], then stop."
    data = stream(answer_items(text, size), framing)
    for read in (1, 5, 64, len(data)):
        out, guard = guarded(compiled("redact"), data, read)
        got, errors = reassembled(out)
        assert got[(0, "text")] == redacted
        assert got[(1, "text")] == text.upper().replace(EMAIL.upper(), "[REDACTED:pii.email]")
        assert got[(0, "calls")] == [{"cmd": redacted, "flags": ["-v", redacted], "n": 4}]
        assert errors == []
        assert guard.counts == {"pii.email": 4, "secrets.github_token": 3}
        assert EMAIL.encode() not in out and TOKEN.encode() not in out


def _never_seen(out: bytes, value: str) -> None:
    for form in (value, json.dumps(value)[1:-1]):
        assert form.encode() not in out


def _split_items(text: str, at: int, framing: Framing) -> bytes:
    """The text in two items cut at byte `at` (a character cut goes with the item after it)."""
    raw = text.encode()
    while at < len(raw) and raw[at] & 0xC0 == 0x80:
        at += 1
    first, second = raw[:at].decode(), raw[at:].decode()
    items = [item({"text": first})] if first else []
    return stream([*items, item({"text": second}, finish="STOP")], framing)


@pytest.mark.parametrize("framing", ["sse", "array"])
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_each_kind_split_at_every_offset_across_items_and_reads_never_goes_on(kind: str, framing: Framing) -> None:
    found = compiled("redact")
    value, context = VALUES[kind]
    text = "Here it is: " + context.format(value) + " and that is all."
    scanner = found.scanner()
    expected = (scanner.feed(text.encode()).text + scanner.flush().text).decode()
    assert value not in expected and f"[REDACTED:{kind}]" in expected
    # Every offset (every third in the quick loop), each read in pieces of 1 to 11 bytes.
    step = (1 if len(text) < 400 else 7) * (3 if QUICK else 1)
    for at in range(0, len(text.encode()) + 1, step):
        data = _split_items(text, at, framing)
        out, _ = guarded(found, data, 1 + at % 11)
        _never_seen(out, value)
        got, errors = reassembled(out)
        assert (got[(0, "text")], errors) == (expected, [])


_CLEAN = clean_text(tuple(w for w in (*WORDS, "é", "☃", '"') if w != "sk-own"), (*GAPS, "\\"))


def clean_items(text: str, cuts: list[int], arguments: str) -> list[dict[str, Any]]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    items = [item({"text": "so", "thought": True})]
    for piece in pieces:
        items += [item({"text": piece}), item({"text": piece.upper()}, candidate=1)]
    items.append(item({"functionCall": {"name": "run", "args": {"cmd": arguments}}, "thoughtSignature": "c2ln"}))
    return [*items, item(finish="STOP"), item(candidate=1, finish="STOP")]


@drawn(200)
@given(**a_clean_answer(_CLEAN, framing=st.sampled_from(["sse", "array"]), envelope=st.booleans()))
def test_a_clean_stream_split_anywhere_comes_through_byte_for_byte(
    text: str, arguments: str, cuts: list[int], read: int, framing: Framing, envelope: bool
) -> None:
    data = stream(clean_items(text, cuts, arguments), framing, envelope)
    wrapper = "response" if envelope else None
    comes_through_clean(lambda found, d, r: guarded(found, d, r, wrapper), compiled("redact"), data, read)


@pytest.mark.parametrize("read", [1, 5, 1000])
def test_a_value_to_deny_ends_the_stream_with_an_error_item(read: int) -> None:
    text = f"Sure, the key is {TOKEN} and more."
    for framing in ("sse", "array"):
        data = stream(answer_items(text, 5), framing)
        out, guard = guarded(compiled("deny"), data, read)
        got, errors = reassembled(out)  # the array is closed: it parses whole
        assert guard.denied == "secrets.github_token"
        assert got[(0, "text")] == "Sure, the key is "
        assert TOKEN[:3].encode() not in out
        message = "The answer was stopped: it carries what a guardrail denies (secrets.github_token)."
        assert errors == [{"code": 403, "message": message, "status": "PERMISSION_DENIED"}]
        assert guard.feed(data) == b"" and guard.flush() == b""


def test_a_value_in_the_first_item_denied_still_closes_the_array() -> None:
    data = stream([item({"text": f"key {AWS_KEY_ID}"}, finish="STOP")], "array")
    out, guard = guarded(compiled("deny"), data, 3)
    assert guard.denied == "secrets.aws_access_key_id"
    assert reassembled(out)[1][0]["code"] == 403
    assert json.loads(out)[0] == {"candidates": [{"content": {"role": "model", "parts": [{"text": "key "}]}, "index": 0}], "modelVersion": "gemini-2.5-flash"}  # fmt: skip


def test_a_function_calls_value_to_deny_goes_with_its_part() -> None:
    call = {"functionCall": {"name": "pay", "args": {"card": CARD}}}
    data = stream([item({"text": "Paying."}), item({"text": "Now: "}, call)], "sse")
    out, guard = guarded(compiled("deny"), data, 7)
    got, errors = reassembled(out)
    assert (guard.denied, got[(0, "text")], (0, "calls") in got) == ("pii.payment_card", "Paying.Now: ", False)
    assert CARD.encode() not in out and len(errors) == 1


def test_a_value_in_a_signed_part_is_denied_even_under_redact() -> None:
    """A part with a thoughtSignature goes on as it came or not at all: text and arguments."""
    signed_text = [
        item({"text": "The key is AKIA"}),
        item({"text": AWS_KEY_ID[4:] + " ok", "thoughtSignature": "c2ln"}),
    ]
    signed_call = [item({"functionCall": {"name": "pay", "args": {"card": CARD}}, "thoughtSignature": "c2ln"})]
    signed_thought = [
        item({"text": f"I saw {EMAIL} there", "thought": True, "thoughtSignature": "c2ln"}, finish="STOP")
    ]
    for items, kind in (
        (signed_text, "secrets.aws_access_key_id"),
        (signed_call, "pii.payment_card"),
        (signed_thought, "pii.email"),
    ):
        for framing in ("sse", "array"):
            data = stream(items, framing)
            for read in (1, 9, len(data)):
                out, guard = guarded(compiled("redact"), data, read)
                assert guard.denied == kind, (items, read)
                assert len(reassembled(out)[1]) == 1 and b"c2ln" not in out
                assert AWS_KEY_ID[4:].encode() not in out and CARD.encode() not in out and EMAIL.encode() not in out
    # Thought text without a signature is redacted as any text.
    unsigned = stream([item({"text": f"I saw {EMAIL} there", "thought": True}, finish="STOP")], "sse")
    out, guard = guarded(compiled("redact"), unsigned, 4)
    assert guard.denied is None
    assert reassembled(out)[0] == {(0, "thought"): "I saw [REDACTED:pii.email] there"}


def test_a_signed_part_with_nothing_found_goes_on_as_it_came() -> None:
    data = stream(
        [item({"text": "It is", "thoughtSignature": "c2ln"}), item({"text": "s fine."}, finish="STOP")], "sse"
    )
    for read in (1, 7, len(data)):
        assert guarded(compiled("redact"), data, read)[0] == data


def test_code_assists_envelope_is_read_and_its_error_is_googles() -> None:
    data = stream([item({"text": p}) for p in pieces_of(f"mail {EMAIL} now", 4)] + [item(finish="STOP")], "sse", True)
    out, guard = guarded(compiled("redact"), data, 6, "response")
    assert reassembled(out, envelope=True)[0] == {(0, "text"): "mail [REDACTED:pii.email] now"}
    assert all(set(obj) == {"response", "traceId"} for obj in items_of(out))
    out, guard = guarded(compiled("deny"), data, 6, "response")
    assert guard.denied == "pii.email"
    assert items_of(out)[-1]["error"]["status"] == "PERMISSION_DENIED"


def test_vertex_streamed_partial_arguments_are_read_across_items() -> None:
    def partial(value: str, more: bool) -> dict[str, Any]:
        return {"functionCall": {"partialArgs": [{"jsonPath": "$.cmd", "stringValue": value, "willContinue": more}], "willContinue": True}}  # fmt: skip

    pieces = pieces_of(f"pay with {CARD} today", 5)
    items = [item(partial(p, i < len(pieces) - 1)) for i, p in enumerate(pieces)] + [item(finish="STOP")]
    data = stream(items, "sse")
    out, guard = guarded(compiled("redact"), data, 3)
    sent = "".join(
        a["stringValue"]
        for obj in items_of(out)
        for c in obj["candidates"]
        for p in c["content"]["parts"]
        for a in p.get("functionCall", {}).get("partialArgs", ())
    )
    assert sent == "pay with [REDACTED:pii.payment_card] today"
    assert guard.counts == {"pii.payment_card": 1}


def test_a_whole_answer_is_served_redacted_or_refused() -> None:
    answer = item({"text": f"mail {EMAIL}"}, {"functionCall": {"name": "run", "args": {"token": TOKEN}}}, finish="STOP")
    body = json.dumps(answer).encode()
    redacted, denied, counts = guard_gemini_json(compiled("redact"), body)
    assert denied is None and counts == {"pii.email": 1, "secrets.github_token": 1}
    parts = json.loads(redacted)["candidates"][0]["content"]["parts"]
    assert parts == [
        {"text": "mail [REDACTED:pii.email]"},
        {"functionCall": {"name": "run", "args": {"token": "[REDACTED:secrets.github_token]"}}},
    ]
    # The text's address may still go on (it ends the text) when the call's arguments are read.
    assert guard_gemini_json(compiled("deny"), body) == (body, "secrets.github_token", {"secrets.github_token": 1})
    clean = json.dumps(item({"text": "fine"}, finish="STOP"), indent=2).encode()
    assert guard_gemini_json(compiled("redact"), clean) == (clean, None, {})
    wrapped = json.dumps({"response": answer, "traceId": "t"}).encode()
    served, denied, _ = guard_code_assist_json(compiled("redact"), wrapped)
    assert denied is None and json.loads(served)["response"]["candidates"][0]["content"]["parts"][0]["text"] == (
        "mail [REDACTED:pii.email]"
    )
    signed = json.dumps(item({"text": f"mail {EMAIL}", "thoughtSignature": "c2ln"})).encode()
    assert guard_gemini_json(compiled("redact"), signed)[1] == "pii.email"


def test_an_item_that_is_not_json_is_not_sent() -> None:
    data = stream([item({"text": "fine "})], "sse") + b"data: {not json\r\n\r\n"
    out, guard = guarded(compiled("redact"), data, 4)
    assert guard.denied == "unread" and b"not json" not in out
    assert reassembled(out)[0] == {(0, "text"): "fine "}


def test_what_waits_behind_a_held_item_is_bounded() -> None:
    """Candidate 0's text held (it ends in `s`) while candidate 1 streams: past `WAITING_BYTES`,
    the held item goes on without its held text, which comes in an item of its own."""
    head = [item({"text": "Let me read the files"})]
    rest = [item({"text": f"{i:05d} word, "}, candidate=1) for i in range(2000)]
    guard = GeminiAnswerGuard(compiled("redact"))
    data = stream([*head, *rest], "sse")
    out = guard.feed(data)
    assert 0 < len(data) - len(out) <= WAITING_BYTES + 200
    out += guard.feed(stream([item(finish="STOP"), item(candidate=1, finish="STOP")], "sse")) + guard.flush()
    got, _ = reassembled(out)
    assert got[(0, "text")] == "Let me read the files"
    assert got[(1, "text")] == "".join(f"{i:05d} word, " for i in range(2000))


def test_an_array_element_is_framed_as_it_came_whatever_its_strings_hold() -> None:
    tricky = 'a "quoted" [bracket] {brace} \\ back, slash\r\n,'
    data = stream([item({"text": tricky}), item({"text": " end"}, finish="STOP")], "array")
    for read in (1, 2, 3, len(data)):
        assert guarded(compiled("redact"), data, read)[0] == data
    framer = JSONArrayFramer()
    assert len(framer.feed(data)) == 2


def test_gemini_and_code_assist_are_registered_and_a_json_array_streams_only_when_asked() -> None:
    gemini, code_assist = ANSWER_FORMATS[GEMINI_GENERATE], ANSWER_FORMATS[CODE_ASSIST]
    assert gemini.streams("application/json; charset=UTF-8", asked=True)
    assert not gemini.streams("application/json; charset=UTF-8", asked=False)
    assert gemini.streams("text/event-stream", asked=False)
    assert not code_assist.streams("application/json", asked=True)  # Code Assist streams as SSE alone
    assert not ANSWER_FORMATS[OPENAI_CHAT].streams("application/json", asked=True)
    assert ANSWER_ENDPOINTS["streamGenerateContent"] == CODE_ASSIST
    assert gemini.denied_end("pii.email").startswith(b'data: {"error":{"code":403,')


def test_an_array_that_cannot_be_framed_stops_with_the_array_closed() -> None:
    data = stream([item({"text": "fine "})], "array")[:-1] + b',\r\n"stray"]'
    out, guard = guarded(compiled("redact"), data, 5)
    assert guard.denied == "unread" and b"stray" not in out
    got, errors = reassembled(out)
    assert (got, errors[0]["code"]) == ({(0, "text"): "fine "}, 403)


_PROSE = st.text(alphabet=string.ascii_letters + string.digits + " ,.:;!?@+-()/\n\t\u00e9\u2603", max_size=60)


@drawn(150)
@given(
    kind=st.sampled_from(sorted(VALUES)),
    before=_PROSE,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    read=st.integers(min_value=1, max_value=500),
    framing=st.sampled_from(["sse", "array"]),
)
def test_deny_split_anywhere_sends_only_what_comes_before_the_first_value(
    kind: str, before: str, cuts: list[int], read: int, framing: Framing
) -> None:
    found = compiled("deny")
    value, context = VALUES[kind]
    text = before + " " + context.format(value) + " and more."
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    items = [item({"text": text[a:b]}) for a, b in itertools.pairwise(bounds)]
    data = stream([*items, item(finish="STOP")], framing)
    out, guard = guarded(found, data, read)
    _never_seen(out, value)
    got, errors = reassembled(out)
    assert guard.denied is not None and len(errors) == 1
    sent = got.get((0, "text"), "")
    assert text.startswith(sent) and value not in sent
    # What the text read whole lets go before its first value (a value of another kind in the
    # prose may come first).
    whole = found.scanner()
    released = whole.feed(text.encode())
    released_text = released.text if released.denied else released.text + whole.flush().text
    assert sent == released_text.decode()


def test_the_items_after_a_replaced_value_go_on_as_they_came() -> None:
    """A value replaced within one item leaves the held text after it where it came: the next item
    as it came, a signed one too (nothing in it changed)."""
    for signed in (False, True):
        second = {"text": "N is no key.", **({"thoughtSignature": "c2ln"} if signed else {})}
        last = stream([item(second, finish="STOP")], "sse")
        data = stream([item({"text": f"Mail {EMAIL} to AKIA"})], "sse") + last
        out, guard = guarded(compiled("redact"), data, len(data))
        assert guard.denied is None
        assert out.endswith(last)
        assert reassembled(out)[0] == {(0, "text"): "Mail [REDACTED:pii.email] to AKIAN is no key."}


@drawn(150)
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    before=_PROSE,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    signed=st.integers(min_value=0, max_value=20),
    read=st.integers(min_value=1, max_value=500),
    framing=st.sampled_from(["sse", "array"]),
)
def test_a_signed_part_goes_on_as_it_came_or_not_at_all_however_split(
    kind: str, before: str, cuts: list[int], signed: int, read: int, framing: Framing
) -> None:
    """Under redact, a value anywhere in a text split across items, one of them signed: the value
    never goes on; the signed part comes as it came (then the text is the whole text redacted) or
    not at all (then the answer is denied)."""
    found = compiled("redact")
    value, context = SAMPLES[kind]
    text = before + " " + context.format(value) + " and more."
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    parts = [{"text": text[a:b]} for a, b in itertools.pairwise(bounds)]
    parts[signed % len(parts)]["thoughtSignature"] = "c2ln"
    data = stream([*(item(p) for p in parts), item(finish="STOP")], framing)
    out, guard = guarded(found, data, read)
    _never_seen(out, value)
    sent = [p for obj in items_of(out) for c in obj.get("candidates", ()) for p in c["content"]["parts"]]
    assert [p for p in sent if "thoughtSignature" in p] in ([], [parts[signed % len(parts)]])
    got, errors = reassembled(out)
    scanner = found.scanner()
    whole = (scanner.feed(text.encode()).text + scanner.flush().text).decode()  # the text redacted
    if guard.denied is None:
        assert (got[(0, "text")], errors) == (whole, [])
    else:
        # What went before the signed part: the text redacted (the prose may make a value: `0@0.AA`).
        assert len(errors) == 1 and whole.startswith(got.get((0, "text"), ""))


@pytest.mark.parametrize("framing", ["sse", "array"])
def test_a_read_of_many_items_feeds_each_channels_scanner_once(framing: Framing) -> None:
    """Thought text and two candidates' text in 300 small items, all in one read: each channel's
    scanner is fed once, each string read whole (the role, the model's version) once however often
    it comes, and the items go on byte for byte."""
    found, feeds = counting_feeds(compiled("redact"))
    text = pieces_of("The cats sat on 12 mats in 2026. " * 5, 2)
    items = [item({"text": p, "thought": True}) for p in text[:50]]
    for p in text:
        items += [item({"text": p}), item({"text": p.upper()}, candidate=1)]
    data = stream(items, framing)
    guard = GeminiAnswerGuard(found)
    out = guard.feed(data)
    assert feeds == [1] * 5
    assert out + guard.flush() == data


@pytest.mark.parametrize("framing", ["sse", "array"])
@pytest.mark.parametrize("read", [1, 7, 4096])
def test_at_a_deny_nothing_after_the_values_item_goes(framing: Framing, read: int) -> None:
    """A value at a candidate's end is found only when it finishes: the part that signs it, which
    came after it, does not go before the error (nor anything else after the value's item)."""
    items = [item({"text": p}) for p in pieces_of(f"The token is {TOKEN}", 6)]
    items += [item({"text": "", "thoughtSignature": "c2lnbmVkLWdlbWluaQ"}), item({"text": "Fine."}, candidate=1)]
    data = stream([*items, item(finish="STOP")], framing)
    out, guard = guarded(compiled("deny"), data, read)
    got, errors = reassembled(out)
    assert guard.denied == "secrets.github_token"
    assert got == {(0, "text"): "The token is "}
    assert [e["status"] for e in errors] == ["PERMISSION_DENIED"]
    assert b"c2lnbmVk" not in out and b"Fine." not in out and TOKEN[:3].encode() not in out


# ---------------------------------------------------------------------------------------------
# Every field the model writes text in, and shapes not known

KEY = AWS_KEY_ID
AWS = "secrets.aws_access_key_id"
# Where the model writes text besides a part's text: each read whole, the value replaced in place.
_REPLACED_IN_PLACE: dict[str, dict[str, Any]] = {
    "the function's name": {"functionCall": {"name": f"run_{KEY}", "args": {}}},
    "a server-side tool's call": {"toolCall": {"toolType": "GOOGLE_SEARCH_WEB", "args": {"queries": [KEY]}}},
    "a function's response": {"functionResponse": {"name": "look", "response": {"found": [{"k": KEY}]}}},
    "a part with text and a call": {"text": "run ", "functionCall": {"name": "run", "args": {"k": KEY}}},
}
_CANDIDATE_FIELDS: dict[str, dict[str, Any]] = {
    "finishMessage": {
        "finishReason": "MALFORMED_FUNCTION_CALL",
        "finishMessage": f"Malformed function call: run('{KEY}')",
    },
    "webSearchQueries": {"groundingMetadata": {"webSearchQueries": [f"who owns {KEY}"]}},
    "renderedContent": {"groundingMetadata": {"searchEntryPoint": {"renderedContent": f"<a>{KEY}</a>"}}},
    "a grounding segment": {
        "groundingMetadata": {
            "groundingSupports": [
                {
                    "segment": {"startIndex": 0, "endIndex": 30, "text": f"The key is {KEY}."},
                    "groundingChunkIndices": [0],
                }
            ]
        }
    },
    "a grounding chunk": {
        "groundingMetadata": {"groundingChunks": [{"retrievedContext": {"uri": "gs://d", "title": "t", "text": KEY}}]}
    },
    "groundingAttributions": {"groundingAttributions": [{"content": {"parts": [{"text": KEY}]}}]},
    "urlContextMetadata": {"urlContextMetadata": {"urlMetadata": [{"retrievedUrl": f"https://x.test/{KEY}"}]}},
}
# Where a value cannot be replaced exactly (a key of the arguments, a streamed argument's path):
# denied whatever the action.
_DENIED_WHERE_FOUND: dict[str, dict[str, Any]] = {
    "a key of the arguments": {"functionCall": {"name": "run", "args": {"env": {KEY: "x"}}}},
    "a streamed argument's path": {
        "functionCall": {"partialArgs": [{"jsonPath": f"$.{KEY}", "numberValue": 1}], "willContinue": True}
    },
}
# Shapes the guard does not know, carrying text: the answer stops there, unread.
_UNKNOWN: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "a part's member": ({"newThing": {"note": KEY}}, {}),
    "a member in snake case": ({"function_call": {"name": "run", "args": {"k": KEY}}}, {}),
    "text not a string": ({"text": [KEY]}, {}),
    "thought not a flag": ({"thought": KEY}, {}),
    "a candidate's field": ({"text": "ok"}, {"newField": [{"note": KEY}]}),
    "a content's member": ({"text": "ok"}, {"content": {"role": "model", "parts": [{"text": "ok"}], "text": KEY}}),
    "parts not a list": ({"text": "ok"}, {"content": {"role": "model", "parts": {"text": KEY}}}),
    "a part not an object": ({"text": "ok"}, {"content": {"role": "model", "parts": [{"text": "ok"}, KEY]}}),
}


def _with(part: dict[str, Any], fields: dict[str, Any], finish: bool = True) -> list[dict[str, Any]]:
    """Some text, then an item with the part and the candidate's fields."""
    last = item(part, finish="STOP" if finish else None)
    last["candidates"][0].update(fields)
    return [item({"text": "Fine. "}), last]


def _texts_apart(answer: dict[str, Any]) -> tuple[str, Any]:
    """An answer's text, and the answer without it."""
    answer = json.loads(json.dumps(answer))
    parts = answer["candidates"][0]["content"]["parts"]
    return "".join(p.pop("text", "") for p in parts), answer


def _cases() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, part in _REPLACED_IN_PLACE.items():
        yield name, part, {}
    for name, fields in _CANDIDATE_FIELDS.items():
        yield name, {"text": "ok"}, fields


@pytest.mark.parametrize(("name", "part", "fields"), list(_cases()), ids=[c[0] for c in _cases()])
def test_every_field_the_model_writes_in_is_read(name: str, part: dict[str, Any], fields: dict[str, Any]) -> None:
    """Redacted in place where the field is (its JSON as it was), denied under deny; streamed and
    whole, in each framing."""
    items = _with(part, fields)
    for framing in ("sse", "array"):
        data = stream(items, framing)
        for read in (1, 13, len(data)):
            out, guard = guarded(compiled("redact"), data, read)
            assert (guard.denied, guard.counts) == (None, {AWS: 1}), (name, read)
            assert KEY.encode() not in out and f"[REDACTED:{AWS}]".encode() in out
            assert reassembled(out)[1] == []
            out, guard = guarded(compiled("deny"), data, read)
            assert guard.denied == AWS and KEY[:4].encode() not in out
            assert len(reassembled(out)[1]) == 1
    wrapped = stream(items, "sse", envelope=True)
    out, guard = guarded(compiled("redact"), wrapped, 11, "response")
    assert (guard.denied, KEY.encode() in out) == (None, False)
    body = json.dumps(items[-1]).encode()
    served, denied, counts = guard_gemini_json(compiled("redact"), body)
    assert (denied, counts) == (None, {AWS: 1}) and KEY.encode() not in served
    # The JSON it was, the value replaced inside its string (the text may move between parts).
    assert _texts_apart(json.loads(served.replace(f"[REDACTED:{AWS}]".encode(), KEY.encode()))) == _texts_apart(items[-1])  # fmt: skip
    assert guard_gemini_json(compiled("deny"), body)[1] == AWS


@pytest.mark.parametrize("name", sorted(_DENIED_WHERE_FOUND))
def test_a_value_where_it_cannot_be_replaced_is_denied_under_redact(name: str) -> None:
    items = _with(_DENIED_WHERE_FOUND[name], {}, finish=False)
    for framing in ("sse", "array"):
        data = stream(items, framing)
        for read in (1, 13, len(data)):
            out, guard = guarded(compiled("redact"), data, read)
            assert guard.denied == AWS and KEY[:4].encode() not in out, (name, read)
            got, errors = reassembled(out)
            assert got[(0, "text")].startswith("Fine. ") and len(errors) == 1
    assert guard_gemini_json(compiled("redact"), json.dumps(items[-1]).encode())[1] == AWS


@pytest.mark.parametrize("name", sorted(_UNKNOWN))
def test_a_shape_not_known_that_carries_text_stops_the_answer(name: str) -> None:
    """On the Gemini API and Vertex AI, and inside Code Assist's envelope."""
    part, fields = _UNKNOWN[name]
    items = _with(part, fields)
    for framing, envelope in itertools.product(("sse", "array"), (False, True)):
        data = stream(items, framing, envelope)
        for read in (1, 13, len(data)):
            out, guard = guarded(compiled("redact"), data, read, "response" if envelope else None)
            assert guard.denied == "unread" and KEY[:4].encode() not in out, (name, read)
            got, errors = reassembled(out, envelope)
            assert len(errors) == 1 and got.get((0, "text"), "Fine. ").startswith("Fine. ")
    assert guard_gemini_json(compiled("redact"), json.dumps(items[-1]).encode())[1] == "unread"
    wrapped = json.dumps({"response": items[-1], "traceId": "t"}).encode()
    assert guard_code_assist_json(compiled("redact"), wrapped)[1] == "unread"


def test_a_shape_not_known_without_text_goes_on_as_it_came() -> None:
    items = _with({"text": "ok", "newFlag": True, "weights": [1, 2.5]}, {"newScore": 0.5})
    for framing in ("sse", "array"):
        data = stream(items, framing)
        out, guard = guarded(compiled("redact"), data, 7)
        assert (out, guard.denied) == (data, None)


def test_a_value_cut_across_grounding_segments_is_denied() -> None:
    """Each segment repeats a piece of the answer's text: a value cut across two is found in them
    read together (each alone shows a piece of it)."""
    segments = [f"The key is {KEY[:9]}", f"{KEY[9:]}. Use it."]
    supports = [{"segment": {"text": s}, "groundingChunkIndices": [0]} for s in segments]
    fields = {"groundingMetadata": {"groundingSupports": supports}}
    items = _with({"text": "ok"}, fields)
    for framing in ("sse", "array"):
        data = stream(items, framing)
        for read in (1, len(data)):
            out, guard = guarded(compiled("redact"), data, read)
            assert guard.denied == AWS and KEY[9:].encode() not in out and KEY[:9].encode() not in out
    clean = {"groundingMetadata": {"groundingSupports": [{"segment": {"text": s}} for s in ("It is 12", "34 and fine.")]}}  # fmt: skip
    data = stream(_with({"text": "ok"}, clean), "sse")
    assert guarded(compiled("redact"), data, 5)[0] == data


_JSON_KEYS = st.text(alphabet=string.ascii_letters + "_-.$ é", min_size=1, max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=string.ascii_letters + " .,é", max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_JSON_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _placed(value: Any, path: list[int], secret: str, as_key: bool) -> Any:
    """`value` with the secret placed inside it, where the path leads: as a key or a string."""
    if isinstance(value, dict) and value and path:
        key = sorted(value)[path[0] % len(value)]
        return {**value, key: _placed(value[key], path[1:], secret, as_key)}
    if isinstance(value, list) and value and path:
        at = path[0] % len(value)
        return [*value[:at], _placed(value[at], path[1:], secret, as_key), *value[at + 1 :]]
    return {f"k {secret}": value} if as_key else [value, f"see {secret} here"]


@drawn(150)
@given(
    args=st.dictionaries(_JSON_KEYS, _JSON, max_size=4),
    path=st.lists(st.integers(min_value=0, max_value=20), max_size=6),
    as_key=st.booleans(),
    where=st.sampled_from(["args", "toolCall", "finishMessage", "groundingMetadata"]),
    read=st.integers(min_value=1, max_value=400),
    framing=st.sampled_from(["sse", "array"]),
)
def test_a_value_anywhere_in_a_fields_json_never_goes_on(
    args: dict[str, Any], path: list[int], as_key: bool, where: str, read: int, framing: Framing
) -> None:
    """A value placed anywhere in arbitrary JSON the model writes (a key or a string, nested in
    objects and arrays): under redact it never goes on; a string's value is replaced in place."""
    placed = _placed(args, path, KEY, as_key)
    part: dict[str, Any]
    fields: dict[str, Any] = {}
    if where == "args":
        part = {"functionCall": {"name": "run", "args": placed}}
    elif where == "toolCall":
        part = {"toolCall": {"toolType": "URL_CONTEXT", "args": placed}}
    else:
        part, fields = {"text": "ok"}, {where: placed if where == "groundingMetadata" else json.dumps(placed)}
    data = stream(_with(part, fields), framing)
    out, guard = guarded(compiled("redact"), data, read)
    _never_seen(out, KEY)
    # A key is not replaced: it is denied (in a string, the finishMessage, it is replaced).
    assert guard.denied == (AWS if as_key and where != "finishMessage" else None)
    if guard.denied is None:
        assert f"[REDACTED:{AWS}]".encode() in out and reassembled(out)[1] == []


def test_candidates_of_a_shape_not_known_that_carry_text_stop_the_answer() -> None:
    first = item({"text": "Fine. "})
    for odd in ({"candidates": {"text": KEY}}, {"candidates": [KEY]}, {"candidates": [first["candidates"][0], [KEY]]}):
        for framing in ("sse", "array"):
            data = stream([first, odd], framing)
            out, guard = guarded(compiled("redact"), data, 9)
            assert guard.denied == "unread" and KEY[:4].encode() not in out, (odd, framing)
            got, errors = reassembled(out)
            assert got[(0, "text")].startswith("Fine. ") and len(errors) == 1


def test_code_assists_answer_outside_its_envelope_stops_the_answer() -> None:
    """Code Assist's answers come inside `{"response": …}`: candidates outside it, or a response
    that is not an object, carrying text, are not read and do not go on."""
    first = {"response": item({"text": "Fine. "}), "traceId": "t"}
    for odd in (item({"text": KEY}), {"response": f"see {KEY}", "traceId": "t"}):
        data = b"".join(b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in (first, odd))
        out, guard = guarded(compiled("redact"), data, 9, "response")
        assert guard.denied == "unread" and KEY[:4].encode() not in out
        got, errors = reassembled(out, envelope=True)
        assert (got, len(errors)) == ({(0, "text"): "Fine. "}, 1)
        assert guard_code_assist_json(compiled("redact"), json.dumps(odd).encode())[1] == "unread"


@drawn(150)
@given(
    text=_CLEAN,
    cuts=cut_places(10),
    per_item=st.integers(min_value=1, max_value=4),
    signed=st.integers(min_value=0, max_value=20),
    read=READS,
    framing=st.sampled_from(["sse", "array"]),
)
def test_a_clean_answer_with_many_text_parts_an_item_comes_as_it_came(
    text: str, cuts: list[int], per_item: int, signed: int, read: int, framing: Framing
) -> None:
    """Items of several text parts of one candidate (code execution's answers, a signature on the
    last part): clean, they come byte for byte, streamed and whole, the signed part too."""
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    parts: list[dict[str, Any]] = [{"text": text[a:b]} for a, b in itertools.pairwise(bounds)] or [{"text": "ok"}]
    parts[signed % len(parts)]["thoughtSignature"] = "c2ln"
    items = [item(*parts[i : i + per_item]) for i in range(0, len(parts), per_item)] + [item(finish="STOP")]
    data = stream(items, framing)
    whole, _ = guarded(compiled("redact"), data, len(data))
    assume(b"[REDACTED" not in whole)  # digits that happen to make a value are not clean
    out, guard = guarded(compiled("redact"), data, read)
    assert (out, guard.denied) == (data, None)
    body = json.dumps(item(*parts, finish="STOP")).encode()
    assert guard_gemini_json(compiled("redact"), body) == (body, None, {})


def test_a_lone_surrogate_is_not_text_and_stops_the_answer() -> None:
    """A string with a surrogate not paired cannot be read (nor written as UTF-8): the answer
    stops there, unread, streamed or whole; a pair, or an escaped backslash before `ud800`, is
    text."""
    for text in ('"a\\ud800"', f'"{KEY[:4]}\\udc00{KEY[4:]}"'):
        raw = b'{"candidates":[{"content":{"parts":[{"text":' + text.encode() + b'}]},"index":0}]}'
        data = stream([item({"text": "Fine. "})], "sse") + b"data: " + raw + b"\r\n\r\n"
        out, guard = guarded(compiled("redact"), data, 7)
        assert guard.denied == "unread" and b"ud800" not in out and b"udc00" not in out
        assert reassembled(out)[0] == {(0, "text"): "Fine. "}
        assert guard_gemini_json(compiled("redact"), raw) == (raw, "unread", {})
    for text in ('"\\ud83d\\ude00 fine"', '"a \\\\ud800 b"'):
        raw = b'{"candidates":[{"content":{"parts":[{"text":' + text.encode() + b'}]},"index":0}]}'
        assert guard_gemini_json(compiled("redact"), raw) == (raw, None, {})
