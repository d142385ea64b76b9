"""Conversation roll-up's pure parts: where each format's conversation may be cut, what the body
becomes, the summarizer's request and answer, and the summaries kept."""

from __future__ import annotations

import copy
import json

import pytest

from tollgate.formats import ANTHROPIC_MESSAGES, BEDROCK_CONVERSE, GEMINI_GENERATE, OPENAI_CHAT
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.chat import ChatResponse, Choice, Text, ToolCall
from tollgate.governance.limits.rollup import (
    SUMMARY_HEADING,
    Size,
    Summaries,
    plan,
    prefix_keys,
    roll_up,
    summary_of,
    summary_request,
)


def openai(n: int) -> dict:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"}, *turns]}


def anthropic(n: int) -> dict:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]
    return {"model": "m", "max_tokens": 9, "system": "be brief", "messages": turns}


def gemini(n: int) -> dict:
    turns = [{"role": "user" if i % 2 == 0 else "model", "parts": [{"text": f"turn {i}"}]} for i in range(n)]
    return {"contents": turns, "systemInstruction": {"parts": [{"text": "be brief"}]}}


def converse(n: int) -> dict:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"text": f"turn {i}"}]} for i in range(n)]
    return {"messages": turns, "system": [{"text": "be brief"}]}


FORMATS = [
    (OPENAI_CHAT, openai),
    (ANTHROPIC_MESSAGES, anthropic),
    (GEMINI_GENERATE, gemini),
    (BEDROCK_CONVERSE, converse),
]


def cut(fmt, body, above_messages=None, above_tokens=None, keep_last=4, summaries=None):
    """The plan with no summary kept (or those of `summaries`), summarized by openai/m."""
    size = Size(above_messages, above_tokens, keep_last)
    return plan(fmt, body, size, "openai/m", summaries if summaries is not None else Summaries(0))


def said(turns) -> list[str]:
    return [json.dumps(t) for t in turns]


def texts(fmt: str, body: dict) -> list[str]:
    """The conversation's turns' texts, in order (the system prompt apart)."""
    if fmt == OPENAI_CHAT:
        return [m["content"] for m in body["messages"] if m["role"] not in ("system", "developer")]
    if fmt == GEMINI_GENERATE:
        return [c["parts"][0]["text"] for c in body["contents"]]
    if fmt == BEDROCK_CONVERSE:
        return [m["content"][0]["text"] for m in body["messages"]]
    return [m["content"] for m in body["messages"]]


def system(fmt: str, body: dict) -> list[str]:
    if fmt == OPENAI_CHAT:
        return [m["content"] for m in body["messages"] if m["role"] == "system"]
    if fmt == GEMINI_GENERATE:
        return [p["text"] for p in body["systemInstruction"]["parts"]]
    if fmt == BEDROCK_CONVERSE:
        return [s["text"] for s in body["system"]]
    return body["system"].split("\n\n", 1)


@pytest.mark.parametrize(("fmt", "make"), FORMATS)
def test_a_conversation_past_its_size_keeps_its_last_turns_and_the_summary(fmt, make):
    body = make(11)
    assert cut(fmt, body, above_messages=11, above_tokens=None, keep_last=4) is None  # not past 11
    body = make(12)
    rolled = cut(fmt, body, above_messages=11, above_tokens=None, keep_last=4)
    assert rolled is not None
    assert (rolled.count, rolled.summary, rolled.earlier) == (8, None, None)
    assert "turn 0" in json.dumps(rolled.turns) and "turn 8" not in json.dumps(rolled.turns)
    roll_up(body, rolled, "they said hello")
    assert texts(fmt, body) == [f"turn {i}" for i in range(8, 12)]
    assert system(fmt, body) == ["be brief", SUMMARY_HEADING + "they said hello"]


@pytest.mark.parametrize(("fmt", "make"), FORMATS)
def test_the_kept_turns_start_with_a_users_turn(fmt, make):
    body = make(12)
    rolled = cut(fmt, body, above_messages=5, above_tokens=None, keep_last=3)  # turn 9 is the assistant's
    assert rolled is not None
    roll_up(body, rolled, "s")
    assert texts(fmt, body) == [f"turn {i}" for i in range(8, 12)]


def test_a_tool_call_and_its_result_stay_together():
    body = anthropic(8)
    body["messages"][5] = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
    body["messages"][6] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]}
    rolled = cut(ANTHROPIC_MESSAGES, body, above_messages=3, above_tokens=None, keep_last=2)
    assert rolled is not None and rolled.cut == 4  # not 6: the result stays with its call
    roll_up(body, rolled, "s")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]


def test_openai_tool_messages_and_system_messages_between_turns():
    body = openai(6)
    body["messages"][4:5] = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "42"},
    ]
    body["messages"].insert(2, {"role": "developer", "content": "mind the tools"})
    rolled = cut(OPENAI_CHAT, body, above_messages=3, above_tokens=None, keep_last=2)
    assert rolled is not None
    roll_up(body, rolled, "s")
    roles = [m["role"] for m in body["messages"]]
    # Every system message kept, the summary after them with the caller's role for them (the first's).
    assert roles[:3] == ["system", "developer", "system"] and body["messages"][2]["content"] == SUMMARY_HEADING + "s"
    assert roles[3] == "user"


def test_no_cut_where_no_users_turn_opens_an_exchange():
    body = anthropic(2)
    body["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "f", "input": {}}]}
        if i % 2 == 0
        else {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i - 1}", "content": "x"}]}
        for i in range(8)
    ]
    assert cut(ANTHROPIC_MESSAGES, body, above_messages=3, above_tokens=None, keep_last=8) is None
    assert (
        cut(ANTHROPIC_MESSAGES, body, above_messages=3, above_tokens=None, keep_last=1) is None
    )  # only turn 0 opens one


def test_above_tokens_estimates_from_the_bodys_size():
    body = openai(10)
    size = len(encode_json(body))
    assert cut(OPENAI_CHAT, body, above_tokens=size // 4, keep_last=2) is None
    assert cut(OPENAI_CHAT, body, above_tokens=size // 4 - 1, keep_last=2) is not None


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        (
            ANTHROPIC_MESSAGES,
            {"messages": [], "system": [{"type": "text", "text": "a"}]},
            [{"type": "text", "text": "a"}],
        ),
        (ANTHROPIC_MESSAGES, {"messages": []}, None),
        (GEMINI_GENERATE, {"contents": [], "system_instruction": {"parts": []}}, None),
        (BEDROCK_CONVERSE, {"messages": []}, None),
    ],
)
def test_a_system_prompt_in_any_form_gains_the_summary(fmt, body, expected):
    turns = {GEMINI_GENERATE: "contents"}.get(fmt, "messages")
    make = dict(FORMATS)[fmt]
    body[turns] = make(6)[turns]
    rolled = cut(fmt, body, above_messages=3, above_tokens=None, keep_last=2)
    assert rolled is not None
    roll_up(body, rolled, "s")
    summary = SUMMARY_HEADING + "s"
    if fmt == ANTHROPIC_MESSAGES:
        assert body["system"] == ([*expected, {"type": "text", "text": summary}] if expected else summary)
    elif fmt == GEMINI_GENERATE:
        assert body["system_instruction"] == {"parts": [{"text": summary}]} and "systemInstruction" not in body
    else:
        assert body["system"] == [{"text": summary}]


def test_a_body_that_is_no_conversation_is_left_alone():
    assert cut(OPENAI_CHAT, {"messages": "hi"}, 1, keep_last=1) is None
    assert cut("claude-on-bedrock", anthropic(9), 1, keep_last=1) is None  # not a format of turns Tollgate knows
    body = openai(9)
    before = copy.deepcopy(body)
    cut(OPENAI_CHAT, body, 3, keep_last=2)
    assert body == before  # planning changes nothing


def test_the_summarizer_is_asked_for_a_summary_of_the_rolled_up_turns():
    body = gemini(8)
    rolled = cut(GEMINI_GENERATE, body, 3, keep_last=2)
    assert rolled is not None
    request = summary_request("gemini-2.5-flash", rolled)
    assert (request.model, request.max_tokens, len(request.messages)) == ("gemini-2.5-flash", 1024, 1)
    prompt = request.messages[0].parts[0].text
    assert json.loads(prompt.split("\n\n", 1)[1]) == body["contents"][:6] and GEMINI_GENERATE in prompt


def test_the_summary_is_the_answers_text_and_an_empty_one_is_none():
    assert summary_of(ChatResponse("1", "m", [Choice(0, [Text(" they met "), Text("twice")])])) == "they met twice"
    with pytest.raises(ValueError, match="no text"):
        summary_of(ChatResponse("1", "m", [Choice(0, [ToolCall("c", "f", "{}")])]))
    with pytest.raises(ValueError, match="no text"):
        summary_of(ChatResponse("1", "m", []))


def test_summaries_are_kept_least_recently_used_let_go():
    summaries = Summaries(1)
    summaries.put("k1", "first")
    assert summaries.get("k1") == "first"
    summaries.put("k2", "second")
    assert (summaries.get("k1"), summaries.get("k2")) == (None, "second")
    none_kept = Summaries(0)
    none_kept.put("k1", "first")
    assert none_kept.get("k1") is None


def test_a_starts_key_is_its_turns_and_its_summarizer():
    turns = [encode_json({"role": "user", "content": f"turn {i}"}) for i in range(3)]
    keys = prefix_keys("openai/m", OPENAI_CHAT, turns)
    assert len(set(keys)) == 4
    assert keys[2] == prefix_keys("openai/m", OPENAI_CHAT, turns[:2])[2]
    assert keys[2] != prefix_keys("gemini/m", OPENAI_CHAT, turns)[2]
    assert keys[2] != prefix_keys("openai/m", OPENAI_CHAT, [turns[1], turns[0]])[2]


def test_a_growing_conversation_uses_its_summary_again_then_extends_it():
    summaries = Summaries(8)
    first = cut(ANTHROPIC_MESSAGES, anthropic(12), above_messages=10, keep_last=4, summaries=summaries)
    assert first is not None and (first.count, first.summary, first.earlier) == (8, None, None)
    summaries.put(first.key, "S1")
    # Two turns on, and two more: the turns after the summary (6, then 8) are within the 10.
    for n in (14, 16, 18):
        again = cut(ANTHROPIC_MESSAGES, anthropic(n), above_messages=10, keep_last=4, summaries=summaries)
        assert again is not None and (again.count, again.summary, again.turns) == (8, "S1", ())
    # Past it (12 after the summary): a summary of 16 turns, from S1 and the 8 turns since it.
    body = anthropic(20)
    grown = cut(ANTHROPIC_MESSAGES, body, above_messages=10, keep_last=4, summaries=summaries)
    assert grown is not None and (grown.count, grown.summary, grown.earlier) == (16, None, "S1")
    assert list(grown.turns) == body["messages"][8:16]
    prompt = summary_request("m", grown).messages[0].parts[0].text
    assert prompt.startswith("A summary of the conversation's start:\n\nS1\n\n")
    assert json.loads(prompt.rsplit("\n\n", 1)[1]) == body["messages"][8:16]
    # Another conversation shares nothing with it.
    other = anthropic(12)
    other["messages"][0]["content"] = "hello"
    assert cut(ANTHROPIC_MESSAGES, other, above_messages=10, keep_last=4, summaries=summaries).earlier is None
