"""Log probabilities in answers read by the answer guardrails: their tokens are the text as it came,
so an event (or a whole answer's choice or candidate) whose text is written anew loses them, in
OpenAI chat (`choices[].logprobs`), Gemini (`candidates[].logprobsResult`), Legacy Completions and
Bedrock InvokeModel's OpenAI format, streamed and whole.
A value split anywhere across events never reaches the client through a token: every event's
tokens are its text as the client gets it, or none."""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.answer_guards import compiled, drawn
from support.eventstream import invoke_chunk
from support.guardrail_samples import EMAIL, SAMPLES
from tollgate.formats.bedrock_converse.answer_guard import denied_frame, guard_bedrock_json
from tollgate.formats.bedrock_invoke.answer_guard import InvokeAnswerGuard
from tollgate.formats.framing import EventStreamFramer
from tollgate.formats.gemini_generate.answer_guard import GeminiAnswerGuard, guard_code_assist_json, guard_gemini_json
from tollgate.formats.openai_api.completions_guard import CompletionsAnswerGuard, guard_completions_json
from tollgate.formats.openai_chat.answer_guard import ChatAnswerGuard, guard_chat_json
from tollgate.formats.openai_responses.answer_guard import ResponsesAnswerGuard, guard_responses_json
from tollgate.governance.guardrails import detectors

CARD = SAMPLES["pii.payment_card"][0]


def fed(guard: ChatAnswerGuard | GeminiAnswerGuard, data: bytes, read: int) -> bytes:
    out = b""
    for at in range(0, len(data), read):
        out += guard.feed(data[at : at + read])
    return out + guard.flush()


# ---------------------------------------------------------------------------------------------
# OpenAI chat


def chat_logprobs(tokens: list[str]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": [
                {"token": t, "logprob": -0.5, "bytes": list(t.encode())}
            ]}
            for t in tokens
        ],
        "refusal": None,
    }  # fmt: skip


def chat_chunk(
    text: str, choice: int = 0, finish: str | None = None, tokens: list[str] | None = None
) -> dict[str, Any]:
    delta = {"content": text} if text or finish is None else {}
    logprobs = chat_logprobs(tokens if tokens is not None else ([text] if text else [])) if not finish else None
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
        {"index": choice, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    ]}  # fmt: skip


def chat_stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def chat_events(data: bytes) -> list[Any]:
    blocks = data.split(b"\n\n")
    return [json.loads(b[6:]) for b in blocks if b.startswith(b"data: ") and b[6:] != b"[DONE]"]


def chat_tokens_are_text(events: list[Any]) -> None:
    """Each event's tokens, where it has any, are its text as the client gets it."""
    for event in events:
        for choice in event.get("choices", ()):
            logprobs = choice.get("logprobs")
            if not logprobs:
                continue
            text = choice["delta"].get("content") or ""
            entries = logprobs.get("content") or []
            assert "".join(e["token"] for e in entries) == text
            assert b"".join(bytes(e["bytes"]) for e in entries) == text.encode()
            for e in entries:
                assert all(top["token"] == e["token"] for top in e["top_logprobs"])


def test_chat_an_event_written_anew_loses_its_logprobs_and_a_clean_one_keeps_them() -> None:
    events = [chat_chunk("Hello. "), chat_chunk(f"Mail {EMAIL} now.", tokens=["Mail", " ", EMAIL, " now."])]
    data = chat_stream([*events, chat_chunk("", finish="stop")])
    out = fed(ChatAnswerGuard(compiled("redact")), data, 7)
    got = chat_events(out)
    assert out.startswith(b"data: " + json.dumps(events[0]).encode() + b"\n\n")  # as it came
    assert got[1]["choices"][0] == {
        "index": 0,
        "delta": {"content": "Mail [REDACTED:pii.email] now."},
        "logprobs": None,
        "finish_reason": None,
    }
    assert EMAIL.encode() not in out


def test_chat_a_value_split_over_three_events_leaves_no_token_of_it() -> None:
    a, b, c = CARD[:5], CARD[5:11], CARD[11:]
    events = [chat_chunk("Card "), chat_chunk(a), chat_chunk(b), chat_chunk(c + " ok"), chat_chunk("", finish="stop")]
    out = fed(ChatAnswerGuard(compiled("redact")), chat_stream(events), 1000)
    got = chat_events(out)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in got) == "Card [REDACTED:pii.payment_card] ok"
    assert [e["choices"][0]["logprobs"] for e in got[1:4]] == [None, None, None]
    for piece in (a, b, c):
        assert f'"token":"{piece}'.encode() not in out and f'"token": "{piece}'.encode() not in out
    chat_tokens_are_text(got)


def test_chat_a_denied_value_leaves_no_token_of_it() -> None:
    events = [
        chat_chunk("Hello. "),
        chat_chunk(f"Card {CARD[:8]}"),
        chat_chunk(CARD[8:]),
        chat_chunk("", finish="stop"),
    ]
    out = fed(ChatAnswerGuard(compiled("deny")), chat_stream(events), 1000)
    got = chat_events(out)
    assert got[1]["choices"][0]["delta"] == {"content": "Card "}
    assert got[1]["choices"][0]["logprobs"] is None
    assert got[-1]["error"]["code"] == "content_denied"
    assert CARD[:8].encode() not in out


def test_chat_an_event_of_another_choice_that_waits_keeps_its_logprobs() -> None:
    """An event held only because it came after one whose text is held goes on as it came, its
    tokens with it: they are its own text, read clean."""
    clean = chat_chunk("other choice", choice=1)
    events = [chat_chunk(f"Card {CARD[:8]}"), clean, chat_chunk(CARD[8:] + "."), chat_chunk("", finish="stop")]
    out = fed(ChatAnswerGuard(compiled("redact")), chat_stream(events), 1000)
    assert b"data: " + json.dumps(clean).encode() + b"\n\n" in out
    assert CARD[:8].encode() not in out and CARD[8:].encode() not in out
    chat_tokens_are_text(chat_events(out))


def test_chat_a_whole_answer_redacted_loses_the_choice_logprobs() -> None:
    text = f"Mail {EMAIL}."
    other = {"index": 1, "message": {"role": "assistant", "content": "clean"}, "logprobs": chat_logprobs(["clean"])}
    body = {"id": "c1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": chat_logprobs(["Mail", " ", EMAIL, "."]),
         "finish_reason": "stop"},
        other,
    ]}  # fmt: skip
    out, denied, counts = guard_chat_json(compiled("redact"), json.dumps(body).encode())
    got = json.loads(out)
    assert denied is None and counts == {"pii.email": 1}
    assert got["choices"][0]["message"]["content"] == "Mail [REDACTED:pii.email]."
    assert got["choices"][0]["logprobs"] is None
    assert got["choices"][1] == other  # its text is as it came: its tokens are too
    assert EMAIL.encode() not in out


# ---------------------------------------------------------------------------------------------
# Gemini


def gemini_logprobs(tokens: list[str]) -> dict[str, Any]:
    return {
        "chosenCandidates": [{"token": t, "tokenId": 7, "logProbability": -0.5} for t in tokens],
        "topCandidates": [{"candidates": [{"token": t, "tokenId": 7, "logProbability": -0.5}]} for t in tokens],
    }


def gemini_item(text: str, finish: str | None = None, tokens: list[str] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    candidate["logprobsResult"] = gemini_logprobs(tokens if tokens is not None else [text])
    candidate["avgLogprobs"] = -0.5
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}


def gemini_stream(items: list[dict[str, Any]], framing: str) -> bytes:
    if framing == "sse":
        return b"".join(b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in items)
    return b"[" + b"\r\n,\r\n".join(json.dumps(i, indent=2).encode() for i in items) + b"\r\n]"


def gemini_items(data: bytes) -> list[Any]:
    if data.lstrip().startswith(b"["):
        return list(json.loads(data))
    return [json.loads(line[6:]) for line in re.split(rb"\r\n|\r|\n", data) if line.startswith(b"data: ")]


def gemini_tokens_are_text(items: list[Any]) -> None:
    """Each item's tokens, where it has any, are its text as the client gets it."""
    for obj in items:
        for candidate in obj.get("candidates", ()):
            result = candidate.get("logprobsResult")
            if result is None:
                continue
            text = "".join(p.get("text", "") for p in candidate["content"]["parts"])
            assert "".join(c["token"] for c in result["chosenCandidates"]) == text
            assert ["".join(c["token"] for c in top["candidates"]) for top in result["topCandidates"]] == [
                c["token"] for c in result["chosenCandidates"]
            ]


@pytest.mark.parametrize("framing", ["sse", "array"])
def test_gemini_an_item_written_anew_loses_its_logprobs(framing: str) -> None:
    items = [
        gemini_item("Hello. "),
        gemini_item(f"Card {CARD[:6]}", tokens=["Card ", CARD[:6]]),
        gemini_item(CARD[6:12]),
        gemini_item(CARD[12:] + " ok", finish="STOP", tokens=[CARD[12:], " ok"]),
    ]
    out = fed(GeminiAnswerGuard(compiled("redact")), gemini_stream(items, framing), 9)
    got = gemini_items(out)
    assert got[0] == items[0]
    assert "".join(p["text"] for i in got for p in i["candidates"][0]["content"]["parts"]) == (
        "Hello. Card [REDACTED:pii.payment_card] ok"
    )
    assert ["logprobsResult" in i["candidates"][0] for i in got] == [True, False, False, False]
    assert [i["candidates"][0]["avgLogprobs"] for i in got] == [-0.5] * 4
    for piece in (CARD[:6], CARD[6:12], CARD[12:]):
        assert piece.encode() not in out


@pytest.mark.parametrize("framing", ["sse", "array"])
def test_gemini_a_denied_value_leaves_no_token_of_it(framing: str) -> None:
    items = [gemini_item("Hello. "), gemini_item(f"Card {CARD[:8]}"), gemini_item(CARD[8:], finish="STOP")]
    out = fed(GeminiAnswerGuard(compiled("deny")), gemini_stream(items, framing), 1000)
    got = gemini_items(out)
    assert got[1]["candidates"][0]["content"]["parts"] == [{"text": "Card "}]
    assert "logprobsResult" not in got[1]["candidates"][0]
    assert got[-1]["error"]["code"] == 403
    assert CARD[:8].encode() not in out


def test_gemini_a_whole_answer_redacted_loses_the_candidate_logprobs() -> None:
    body = gemini_item(f"Mail {EMAIL}.", finish="STOP", tokens=["Mail ", EMAIL, "."])
    out, denied, counts = guard_gemini_json(compiled("redact"), json.dumps(body).encode())
    got = json.loads(out)
    assert denied is None and counts == {"pii.email": 1}
    assert got["candidates"][0]["content"]["parts"] == [{"text": "Mail [REDACTED:pii.email]."}]
    assert "logprobsResult" not in got["candidates"][0]
    assert EMAIL.encode() not in out
    clean = json.dumps(gemini_item("clean", finish="STOP")).encode()
    assert guard_gemini_json(compiled("redact"), clean)[0] == clean


def test_code_assist_a_whole_answer_redacted_loses_the_candidate_logprobs() -> None:
    body = {"response": gemini_item(f"Mail {EMAIL}.", finish="STOP", tokens=["Mail ", EMAIL, "."]), "traceId": "t1"}
    out, denied, _ = guard_code_assist_json(compiled("redact"), json.dumps(body).encode())
    got = json.loads(out)
    assert denied is None
    assert got["response"]["candidates"][0]["content"]["parts"] == [{"text": "Mail [REDACTED:pii.email]."}]
    assert "logprobsResult" not in got["response"]["candidates"][0]
    assert EMAIL.encode() not in out


# ---------------------------------------------------------------------------------------------
# A value split anywhere


def _redacted_kinds() -> list[str]:
    return sorted(k for k in SAMPLES if k in detectors.KINDS)


@st.composite
def split_answers(draw: st.DrawFn) -> tuple[str, str, list[str], int, str]:
    kind = draw(st.sampled_from(_redacted_kinds()))
    value, context = SAMPLES[kind]
    text = "Here it is: " + context.format(value) + " That is all."
    cuts = sorted(draw(st.sets(st.integers(1, len(text) - 1), min_size=1, max_size=5)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    read = draw(st.integers(1, 300))
    action = draw(st.sampled_from(["redact", "deny"]))
    return value, text, pieces, read, action


def _tokens(piece: str) -> list[str]:
    """A piece cut into tokens of up to three characters, as a tokenizer would cut it."""
    return [piece[i : i + 3] for i in range(0, len(piece), 3)]


@drawn(300)
@given(split_answers())
def test_chat_a_value_split_anywhere_never_reaches_a_token(answer: tuple[str, str, list[str], int, str]) -> None:
    value, _, pieces, read, action = answer
    events = [chat_chunk(p, tokens=_tokens(p)) for p in pieces]
    out = fed(ChatAnswerGuard(compiled(action)), chat_stream([*events, chat_chunk("", finish="stop")]), read)
    got = chat_events(out)
    chat_tokens_are_text(got)
    tokens = "".join(
        e["token"] for ev in got for c in ev.get("choices", ()) for e in (c.get("logprobs") or {}).get("content") or ()
    )
    text = "".join(c["delta"].get("content") or "" for ev in got for c in ev.get("choices", ()))
    assert value not in tokens and value not in text


@drawn(200)
@given(split_answers(), st.sampled_from(["sse", "array"]))
def test_gemini_a_value_split_anywhere_never_reaches_a_token(
    answer: tuple[str, str, list[str], int, str], framing: str
) -> None:
    value, _, pieces, read, action = answer
    items = [gemini_item(p, tokens=_tokens(p)) for p in pieces]
    items[-1]["candidates"][0]["finishReason"] = "STOP"
    out = fed(GeminiAnswerGuard(compiled(action)), gemini_stream(items, framing), read)
    got = gemini_items(out)
    gemini_tokens_are_text(got)
    chosen = "".join(
        c["token"]
        for i in got
        for cand in i.get("candidates", ())
        for c in cand.get("logprobsResult", {}).get("chosenCandidates", ())
    )
    assert value not in chosen


def completion_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    tokens = _tokens(text)
    logprobs = {"tokens": tokens, "token_logprobs": [-0.5] * len(tokens), "top_logprobs": [{t: -0.5} for t in tokens]}
    return {"id": "c1", "object": "text_completion", "created": 1, "model": "m", "choices": [
        {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
    ]}  # fmt: skip


@drawn(200)
@given(split_answers())
def test_completions_a_value_split_anywhere_never_reaches_a_token(
    answer: tuple[str, str, list[str], int, str],
) -> None:
    value, _, pieces, read, action = answer
    events = [completion_chunk(p) for p in pieces] + [completion_chunk("", finish="stop")]
    out = fed(CompletionsAnswerGuard(compiled(action)), chat_stream(events), read)
    tokens = ""
    for event in chat_events(out):
        for choice in event.get("choices", ()):
            logprobs = choice.get("logprobs")
            if logprobs:
                assert "".join(logprobs["tokens"]) == choice["text"]
                assert [next(iter(top)) for top in logprobs["top_logprobs"]] == logprobs["tokens"]
                tokens += "".join(logprobs["tokens"])
    assert value not in tokens


# ---------------------------------------------------------------------------------------------
# Bedrock's InvokeModel, in a family's own body that carries log probabilities (OpenAI's)


def test_bedrock_invoke_a_chunk_written_anew_loses_its_logprobs() -> None:
    pieces = ["Hello. ", "Card ", CARD[:8], CARD[8:], " ok"]
    events = [{"choices": [{"index": 0, "delta": {"content": p}, "logprobs": chat_logprobs([p])}]} for p in pieces]
    guard = InvokeAnswerGuard(compiled("redact"))
    out = fed(guard, b"".join(invoke_chunk(e) for e in events), 11)
    chunks = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in EventStreamFramer().feed(out)]
    assert chunks[0] == events[0]  # as it came
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello. Card [REDACTED:pii.payment_card] ok"
    for c in chunks:
        choice = c["choices"][0]
        if choice["logprobs"] is not None:
            assert "".join(e["token"] for e in choice["logprobs"]["content"]) == choice["delta"]["content"]
    assert CARD[:8].encode() not in b"".join(
        base64.b64decode(json.loads(m.payload)["bytes"]) for m in EventStreamFramer().feed(out)
    )


def test_bedrock_invoke_a_whole_answer_redacted_has_no_logprobs() -> None:
    text = f"Mail {EMAIL}."
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": chat_logprobs(["Mail ", EMAIL, "."]), "finish_reason": "stop"}]}  # fmt: skip
    out, denied, _ = guard_bedrock_json(compiled("redact"), json.dumps(body).encode())
    got = json.loads(out)
    assert denied is None
    assert got["choices"][0]["message"]["content"] == "Mail [REDACTED:pii.email]."
    assert got["choices"][0]["logprobs"] is None
    assert EMAIL.encode() not in out


@drawn(150)
@given(split_answers())
def test_bedrock_invoke_a_value_split_anywhere_never_reaches_a_token(
    answer: tuple[str, str, list[str], int, str],
) -> None:
    value, _, pieces, read, action = answer
    events = [
        {"choices": [{"index": 0, "delta": {"content": p}, "logprobs": chat_logprobs(_tokens(p))}]} for p in pieces
    ]
    out = fed(InvokeAnswerGuard(compiled(action)), b"".join(invoke_chunk(e) for e in events), read)
    tokens = ""
    for message in EventStreamFramer().feed(out):
        wrapper = json.loads(message.payload)
        if "bytes" not in wrapper:
            continue  # the exception frame a denied stream ends with
        for choice in json.loads(base64.b64decode(wrapper["bytes"])).get("choices", ()):
            if choice.get("logprobs"):
                joined = "".join(e["token"] for e in choice["logprobs"]["content"])
                assert joined == choice["delta"].get("content", "")
                tokens += joined
    assert value not in tokens


# ---------------------------------------------------------------------------------------------
# Tokens that spell other text than their event's: read with no text, they stop the answer
# (`unread`), whatever the format.


def _cut(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def shifted_answers(draw: st.DrawFn) -> tuple[str, list[str], list[str], int, str]:
    """A value in a text cut into events at some offsets, and its tokens into as many groups at
    others (the same, or not): event i carries group i's tokens."""
    kind = draw(st.sampled_from(_redacted_kinds()))
    value, context = SAMPLES[kind]
    text = "Here it is: " + context.format(value) + " That is all."
    count = draw(st.integers(1, 5))
    offsets = st.lists(st.integers(0, len(text)), min_size=count, max_size=count).map(sorted)
    pieces, groups = _cut(text, draw(offsets)), _cut(text, draw(offsets))
    return value, pieces, groups, draw(st.integers(1, 300)), draw(st.sampled_from(["redact", "deny"]))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _int_lists(value: Any) -> list[bytes]:
    """Each `bytes` of a token, in order."""
    if isinstance(value, dict):
        return [b for v in value.values() for b in _int_lists(v)]
    if isinstance(value, list):
        if value and all(type(v) is int for v in value):
            return [bytes(value)]
        return [b for v in value for b in _int_lists(v)]
    return []


def no_value_anywhere(value: str, objects: list[Any], out: bytes) -> None:
    """The value in no string, nor in the tokens' text joined in order, nor in their bytes."""
    strings = [s for o in objects for s in _strings(o)]
    assert not any(value in s for s in strings)
    assert value.encode() not in out
    assert value not in "".join(strings)  # each string after the one before: the tokens' text joined
    assert value.encode() not in b"".join(b for o in objects for b in _int_lists(o))


def _shifted_outcome(pieces: list[str], groups: list[str], denied: str | None, action: str) -> None:
    """Tokens that spell other text stop the answer (under `deny`, a value before them may);
    tokens that spell their events' text are read with it."""
    if pieces != groups:
        assert denied == "unread" if action == "redact" else denied is not None
    else:
        assert denied != "unread" and (denied is None) == (action == "redact")


@drawn(300)
@given(shifted_answers())
def test_chat_tokens_of_other_text_than_their_events_never_go_on(
    answer: tuple[str, list[str], list[str], int, str],
) -> None:
    value, pieces, groups, read, action = answer
    events = [chat_chunk(p, tokens=_tokens(g)) for p, g in zip(pieces, groups, strict=True)]
    guard = ChatAnswerGuard(compiled(action))
    out = fed(guard, chat_stream([*events, chat_chunk("", finish="stop")]), read)
    no_value_anywhere(value, chat_events(out), out)
    _shifted_outcome(pieces, groups, guard.denied, action)


@drawn(200)
@given(shifted_answers(), st.sampled_from(["sse", "array"]))
def test_gemini_tokens_of_other_text_than_their_items_never_go_on(
    answer: tuple[str, list[str], list[str], int, str], framing: str
) -> None:
    value, pieces, groups, read, action = answer
    items = [gemini_item(p, tokens=_tokens(g)) for p, g in zip(pieces, groups, strict=True)]
    items[-1]["candidates"][0]["finishReason"] = "STOP"
    guard = GeminiAnswerGuard(compiled(action))
    out = fed(guard, gemini_stream(items, framing), read)
    no_value_anywhere(value, [out.decode(errors="replace")], out)
    _shifted_outcome(pieces, groups, guard.denied, action)


def completion_of(text: str, tokens: list[str]) -> dict[str, Any]:
    logprobs = {"tokens": tokens, "token_logprobs": [-0.5] * len(tokens), "top_logprobs": [{t: -0.5} for t in tokens]}
    return {"id": "c1", "object": "text_completion", "created": 1, "model": "m", "choices": [
        {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": None}
    ]}  # fmt: skip


@drawn(200)
@given(shifted_answers())
def test_completions_tokens_of_other_text_than_their_events_never_go_on(
    answer: tuple[str, list[str], list[str], int, str],
) -> None:
    value, pieces, groups, read, action = answer
    events = [completion_of(p, _tokens(g)) for p, g in zip(pieces, groups, strict=True)]
    guard = CompletionsAnswerGuard(compiled(action))
    out = fed(guard, chat_stream(events), read)
    no_value_anywhere(value, chat_events(out), out)
    _shifted_outcome(pieces, groups, guard.denied, action)


def response_deltas(pieces: list[str], groups: list[str]) -> bytes:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.output_text.delta", **where, "delta": p, "logprobs": responses_logprobs(_tokens(g))}
        for p, g in zip(pieces, groups, strict=True)
    ]
    text = "".join(pieces)
    events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": responses_logprobs([text])})
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def responses_logprobs(tokens: list[str]) -> list[dict[str, Any]]:
    return [
        {"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": [
            {"token": t, "logprob": -0.5, "bytes": list(t.encode())}
        ]}
        for t in tokens
    ]  # fmt: skip


@drawn(200)
@given(shifted_answers())
def test_responses_tokens_of_other_text_than_their_deltas_never_go_on(
    answer: tuple[str, list[str], list[str], int, str],
) -> None:
    value, pieces, groups, read, action = answer
    guard = ResponsesAnswerGuard(compiled(action))
    out = fed(guard, response_deltas(pieces, groups), read)
    events = [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    no_value_anywhere(value, events, out)
    _shifted_outcome(pieces, groups, guard.denied, action)


def _chat_entry(token: str, data: list[int] | None = None, tops: list[str] | None = None) -> dict[str, Any]:
    given = list(token.encode()) if data is None else data
    alternatives = [
        {"token": t, "logprob": -1.0, "bytes": given if t == token else list(t.encode())} for t in (tops or [token])
    ]
    return {"token": token, "logprob": -0.5, "bytes": given, "top_logprobs": alternatives}


@pytest.mark.parametrize(
    ("delta", "logprobs"),
    [
        ({}, {"content": [_chat_entry(CARD)]}),  # tokens in an event without text
        ({"content": "ok"}, {"content": [_chat_entry("ok"), _chat_entry(CARD)]}),  # more than its text
        ({"content": "ok"}, {"content": [_chat_entry("ok", tops=["ok", CARD])]}),  # an alternative
        ({"content": "ok"}, {"content": [_chat_entry("ok", data=list(CARD.encode()))]}),  # bytes of other text
        ({"content": "ok"}, {"content": [_chat_entry("ok")], "refusal": [_chat_entry(CARD)]}),  # no refusal
        ({"content": "ok"}, {"content": [_chat_entry("ok")], "reasoning": [_chat_entry(CARD)]}),  # not read
        ({"content": "ok"}, {"content": CARD}),
        ({"content": "ok"}, CARD),
    ],
    ids=["no-text", "more", "alternative", "bytes", "refusal", "other-key", "not-a-list", "not-an-object"],
)
@pytest.mark.parametrize("read", [7, 100_000])
def test_chat_tokens_that_do_not_spell_their_text_stop_the_answer(delta: Any, logprobs: Any, read: int) -> None:
    first = chat_chunk("Hello. ")
    odd = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
        {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}]}  # fmt: skip
    guard = ChatAnswerGuard(compiled("redact"))
    out = fed(guard, chat_stream([first, odd, chat_chunk("after")]), read)
    assert guard.denied == "unread"
    assert CARD.encode() not in out and b"after" not in out
    message = {"role": "assistant", **delta}
    body = {
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": logprobs}],
    }
    assert guard_chat_json(compiled("redact"), json.dumps(body).encode())[1:] == ("unread", {})


def test_chat_tokens_of_bytes_that_are_not_whole_characters_spell_their_text() -> None:
    """OpenAI names a token of part of a character `bytes:\\x..`: its bytes are what it spells."""
    snow = "☃".encode()
    entries = [
        _chat_entry("Hi "),
        _chat_entry("bytes:\\xe2\\x98", data=list(snow[:2])),
        _chat_entry("bytes:\\x83", data=list(snow[2:])),
    ]
    event = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [
        {"index": 0, "delta": {"content": "Hi ☃"}, "logprobs": {"content": entries, "refusal": None},
         "finish_reason": None}]}  # fmt: skip
    data = chat_stream([event, chat_chunk("", finish="stop")])
    guard = ChatAnswerGuard(compiled("redact"))
    assert (fed(guard, data, 5), guard.denied) == (data, None)


def test_chat_a_template_is_not_learned_from_an_event_with_logprobs() -> None:
    """The events after it could be its template's, their tokens unread: each is read."""
    events = [chat_chunk("abc", tokens=["abc"]), chat_chunk("xyz", tokens=["abc"]), chat_chunk("", finish="stop")]
    guard = ChatAnswerGuard(compiled("redact"))
    fed(guard, chat_stream(events[:1]).removesuffix(b"data: [DONE]\n\n"), 1000)
    out = guard.feed(chat_stream(events[1:] * 3)) + guard.flush()
    assert guard.denied == "unread" and b"xyz" not in out


@pytest.mark.parametrize(
    "logprobs",
    [
        {"tokens": ["ok", CARD], "top_logprobs": None},
        {"tokens": ["ok"], "top_logprobs": [{"ok": -0.1, CARD: -2.0}]},
        {"tokens": "ok " + CARD},
        {"tokens": ["ok"], "top_logprobs": [{"ok": -0.1}, {CARD: -0.1}]},
    ],
    ids=["more", "alternative", "not-a-list", "more-alternatives"],
)
def test_completions_tokens_that_do_not_spell_their_text_stop_the_answer(logprobs: dict[str, Any]) -> None:
    odd = {"id": "c1", "object": "text_completion", "choices": [{"index": 0, "text": "ok", "logprobs": logprobs}]}
    guard = CompletionsAnswerGuard(compiled("redact"))
    out = fed(
        guard, chat_stream([completion_of("Hello. ", ["Hello", ". "]), odd, completion_of("after", ["after"])]), 9
    )
    assert guard.denied == "unread"
    assert CARD.encode() not in out and b"after" not in out
    assert guard_completions_json(compiled("redact"), json.dumps(odd).encode())[1:] == ("unread", {})


@pytest.mark.parametrize(
    "logprobs",
    [
        gemini_logprobs(["ok", CARD]),
        {**gemini_logprobs(["ok"]), "topCandidates": [{"candidates": [{"token": CARD}]}]},
        {**gemini_logprobs(["ok"]), "topCandidates": [{"candidates": [{"token": "ok"}]}, {"candidates": []}]},
        {"chosenCandidates": CARD},
    ],
    ids=["more", "alternative", "more-alternatives", "not-a-list"],
)
@pytest.mark.parametrize("framing", ["sse", "array"])
def test_gemini_tokens_that_do_not_spell_their_text_stop_the_answer(logprobs: dict[str, Any], framing: str) -> None:
    odd = gemini_item("ok")
    odd["candidates"][0]["logprobsResult"] = logprobs
    guard = GeminiAnswerGuard(compiled("redact"))
    out = fed(guard, gemini_stream([gemini_item("Hello. "), odd, gemini_item("after", "STOP")], framing), 9)
    assert guard.denied == "unread"
    assert CARD.encode() not in out and b"after" not in out
    odd["candidates"][0]["finishReason"] = "STOP"
    assert guard_gemini_json(compiled("redact"), json.dumps(odd).encode())[1] == "unread"


def test_responses_tokens_that_do_not_spell_their_text_stop_the_answer() -> None:
    """A delta's, a `.done` event's and a part's tokens, streamed and whole."""
    ok = responses_logprobs(["ok"])
    more = responses_logprobs(["ok", CARD])
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    delta = {"type": "response.output_text.delta", **where, "delta": "ok", "logprobs": more}
    done = {"type": "response.output_text.done", **where, "text": "ok", "logprobs": more}
    part = {
        "type": "response.content_part.done",
        **where,
        "part": {"type": "output_text", "text": "ok", "logprobs": more},
    }
    empty = {"type": "response.output_text.delta", **where, "delta": "", "logprobs": responses_logprobs([CARD])}
    for odd in (delta, done, part, empty):
        first = {"type": "response.output_text.delta", **where, "delta": "ok", "logprobs": ok}
        data = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in (first, odd))
        guard = ResponsesAnswerGuard(compiled("redact"))
        out = fed(guard, data, 11)
        assert guard.denied == "unread" and CARD.encode() not in out, odd["type"]
    message = {"type": "message", "role": "assistant", "content": [part["part"]]}
    body = json.dumps({"id": "resp_1", "object": "response", "output": [message]}).encode()
    assert guard_responses_json(compiled("redact"), body)[1:] == ("unread", {})


@pytest.mark.parametrize(
    "odd",
    [
        {"choices": [{"index": 0, "delta": {"content": "ok"}, "logprobs": chat_logprobs(["ok", CARD])}]},
        {"choices": [{"index": 0, "delta": {}, "logprobs": chat_logprobs([CARD])}]},
        {"choices": [{"index": 0, "text": "ok", "logprobs": {"tokens": ["ok", CARD]}}]},
        {"outputs": [{"text": "ok", "logprobs": chat_logprobs([CARD])}]},
        {"generation": "ok", "logprobs": [{"token": CARD}]},
    ],
    ids=["chat-more", "chat-no-text", "completions-more", "other-shape", "other-family"],
)
def test_bedrock_invoke_tokens_that_do_not_spell_their_text_stop_the_answer(odd: dict[str, Any]) -> None:
    """A frame that cannot be read stops the answer as unreadable: nothing of it goes on, then the
    exception frame of a denied answer; a whole answer is refused."""
    first = {"choices": [{"index": 0, "delta": {"content": "Hello. "}, "logprobs": chat_logprobs(["Hello", ". "])}]}
    guard = InvokeAnswerGuard(compiled("redact"))
    data = invoke_chunk(first) + invoke_chunk(odd)
    out = guard.feed(data[: len(invoke_chunk(first))])
    out += guard.feed(data[len(invoke_chunk(first)) :])
    assert guard.denied == "unread" and out.endswith(denied_frame("unread"))
    frames = EventStreamFramer().feed(out[: -len(denied_frame("unread"))])
    assert [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in frames] == [first]
    assert guard_bedrock_json(compiled("redact"), json.dumps(odd).encode())[1:] == ("unread", {})
