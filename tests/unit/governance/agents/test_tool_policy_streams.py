"""Every held stream but chat's (`test_tool_policy` has it) waits for the policy's answers on its
calls before it lets them go, the same at any split; a stream cut before the policy answered
refuses its calls as a policy error."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.governance.agents import test_converse_calls as converse
from tests.unit.governance.agents import test_gemini_calls as gemini
from tests.unit.governance.agents import test_messages_calls as messages
from tests.unit.governance.agents import test_responses_calls as responses
from tests.unit.governance.agents.test_messages_stream import MESSAGE_START, TEXT, assembled, tail, tool
from tests.unit.governance.agents.test_responses_stream import events_of, sse, stream
from tests.unit.governance.agents.test_tool_policy import ATTACKER, OWN, Policy

from tollgate.formats.translation import Rewrite
from tollgate.governance.agents.call_state import AgentsCall, asked
from tollgate.governance.agents.converse_stream import HeldConverseCalls
from tollgate.governance.agents.gemini_stream import HeldGeminiCalls
from tollgate.governance.agents.messages_stream import HeldMessagesCalls
from tollgate.governance.agents.responses_stream import HeldResponsesCalls

POLICY_REFUSAL = f"Tollgate refused the call to send_money: send_money to {ATTACKER}, not a known payee."
Held = Callable[[AgentsCall], Rewrite]


def streamed(held_of: Held, pieces: list[bytes], call: AgentsCall, mark: bytes) -> bytes:
    """As the proxy's tap feeds a held stream: after each piece, the policy's answers awaited where
    it left calls to ask, and the rewrite fed again (`mark`: what only a call's events hold)."""
    held = held_of(call)
    out = b""
    for chunk in pieces:
        got = held.feed(chunk)
        out += got
        if call.asking:
            assert mark not in got  # nothing of a call goes before the policy has answered
            asyncio.run(asked(call))
            out += held.feed(b"")
    return out + held.flush()


def split(whole: bytes, cuts: list[int]) -> list[bytes]:
    at = [0, *sorted({c % len(whole) for c in cuts}), len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(at) if b > a]


def cut_short(held_of: Held, whole: bytes, call: AgentsCall) -> bytes:
    """The stream fed in the proxy (an event loop running) and ended before the policy answered."""

    async def in_the_proxy() -> bytes:
        held = held_of(call)
        return held.feed(whole) + held.flush()

    return asyncio.run(in_the_proxy())


def responses_state(policy: Any = None) -> AgentsCall:
    out = responses.state()
    out.policy = policy
    return out


FUNCTION = b'"type": "function_call"'
RESPONSES = b"".join(sse(e) for e in stream(responses.call("a", ATTACKER), responses.call("b", OWN)))


def test_a_responses_stream_holds_its_calls_until_the_policy_has_answered() -> None:
    policy = Policy()
    call = responses_state(policy)
    out = events_of(streamed(HeldResponsesCalls, [RESPONSES], call, FUNCTION))
    assert len(policy.asked) == 2
    done = out[-1]["response"]["output"]
    assert done[1]["type"] == "message" and done[1]["content"][0]["text"] == POLICY_REFUSAL
    assert done[2]["type"] == "function_call" and done[2]["call_id"] == "b"
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=8))
def test_a_responses_stream_is_decided_the_same_at_any_split(cuts: list[int]) -> None:
    whole = streamed(HeldResponsesCalls, [RESPONSES], responses_state(Policy()), FUNCTION)
    assert streamed(HeldResponsesCalls, split(RESPONSES, cuts), responses_state(Policy()), FUNCTION) == whole


def test_a_responses_stream_cut_before_the_policy_answered_refuses_its_calls() -> None:
    call = responses_state(Policy())
    out = events_of(cut_short(HeldResponsesCalls, RESPONSES, call))
    assert not any(e.get("item", {}).get("type") == "function_call" for e in out)
    assert [d["reasons"] for d in call.tool_calls()] == [["policy error"], ["policy error"]]


def test_without_the_policy_a_responses_stream_is_as_before() -> None:
    held = HeldResponsesCalls(responses.state())
    pieces = split(RESPONSES, [100, 900, 1500])
    out = b"".join(held.feed(p) for p in pieces) + held.flush()
    again = HeldResponsesCalls(responses.state())
    assert out == again.feed(RESPONSES) + again.flush()


def messages_state(policy: Any = None) -> AgentsCall:
    out = messages.state()
    out.policy = policy
    return out


TOOL_USE = b'"type": "tool_use"'
MESSAGES = b"".join(
    [
        MESSAGE_START,
        *TEXT,
        *tool(1, "a", json.dumps({"recipient": ATTACKER})),
        *tool(2, "b", json.dumps({"recipient": OWN})),
        *tail(),
    ]
)


def test_a_messages_stream_holds_its_calls_until_the_policy_has_answered() -> None:
    policy = Policy()
    call = messages_state(policy)
    blocks, reason, _ = assembled(streamed(HeldMessagesCalls, [MESSAGES], call, TOOL_USE))
    assert len(policy.asked) == 2
    assert blocks[1] == ["text", POLICY_REFUSAL, None, ""]
    assert blocks[2][0] == "tool_use" and json.loads(blocks[2][3]) == {"recipient": OWN}
    assert reason == "tool_use"
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=8))
def test_a_messages_stream_is_decided_the_same_at_any_split(cuts: list[int]) -> None:
    whole = streamed(HeldMessagesCalls, [MESSAGES], messages_state(Policy()), TOOL_USE)
    assert streamed(HeldMessagesCalls, split(MESSAGES, cuts), messages_state(Policy()), TOOL_USE) == whole


def test_a_messages_stream_cut_before_the_policy_answered_refuses_its_calls() -> None:
    call = messages_state(Policy())
    blocks, reason, _ = assembled(cut_short(HeldMessagesCalls, MESSAGES, call))
    assert [b[0] for b in blocks] == ["text", "text", "text"] and reason == "end_turn"
    assert [d["reasons"] for d in call.tool_calls()] == [["policy error"], ["policy error"]]


def converse_state(policy: Any = None) -> AgentsCall:
    out = converse.state()
    out.policy = policy
    return out


TOOL_INPUT = b'"toolUse": {"input"'
CONVERSE = b"".join(
    [*converse.TEXT, *converse.tool_block(1, "a", ATTACKER), *converse.tool_block(2, "b", OWN), *converse.END]
)


def test_a_converse_stream_holds_its_calls_until_the_policy_has_answered() -> None:
    policy = Policy()
    call = converse_state(policy)
    out = streamed(HeldConverseCalls, [CONVERSE], call, TOOL_INPUT)
    texts, calls, stop = converse.assembled(out)
    assert len(policy.asked) == 2
    assert texts == {0: "Paying.", 1: POLICY_REFUSAL}
    assert calls == [("send_money", json.dumps({"recipient": OWN}))]  # the refused call taken out
    assert stop == "tool_use"
    assert converse.events(out)[-1][0] == "metadata"  # the answer's stop and usage held with the calls, in order
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow"]


def test_a_converse_stream_whose_every_call_the_policy_refused_ends_the_turn() -> None:
    whole = b"".join([*converse.TEXT, *converse.tool_block(1, "a", ATTACKER), *converse.END])
    out = streamed(HeldConverseCalls, [whole], converse_state(Policy()), TOOL_INPUT)
    assert converse.assembled(out)[2] == "end_turn"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=8))
def test_a_converse_stream_is_decided_the_same_at_any_split(cuts: list[int]) -> None:
    whole = streamed(HeldConverseCalls, [CONVERSE], converse_state(Policy()), TOOL_INPUT)
    assert streamed(HeldConverseCalls, split(CONVERSE, cuts), converse_state(Policy()), TOOL_INPUT) == whole


def test_a_converse_stream_cut_before_the_policy_answered_refuses_its_calls() -> None:
    call = converse_state(Policy())
    texts, _, stop = converse.assembled(cut_short(HeldConverseCalls, CONVERSE, call))
    assert stop == "end_turn" and set(texts) == {0, 1, 2}
    assert [d["reasons"] for d in call.tool_calls()] == [["policy error"], ["policy error"]]


def gemini_state(policy: Any = None, envelope: bool = False) -> AgentsCall:
    out = gemini.state(envelope)
    out.policy = policy
    return out


def gemini_held(envelope: bool) -> Held:
    return lambda call: HeldGeminiCalls(call, envelope="response" if envelope else None)


FUNCTION_CALL = b'"functionCall"'
# A text item, an item with a call the policy refuses and one it allows, a text item, an item with
# a call only the policy allows, the end.
GEMINI = [
    gemini.item({"text": "Paying."}),
    gemini.item(gemini.call(ATTACKER), gemini.call(OWN)),
    gemini.item({"text": "And the rent."}),
    gemini.item(gemini.call(OWN, thoughtSignature="s")),
    gemini.item({"text": ""}, finish="STOP"),
]
GEMINI_DECIDED = [
    GEMINI[0],
    gemini.item({"text": POLICY_REFUSAL}, gemini.call(OWN)),
    *GEMINI[2:],
]


def enveloped(items: list[dict[str, Any]], envelope: bool) -> list[dict[str, Any]]:
    return [{"response": i} for i in items] if envelope else items


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=8), st.booleans())
def test_a_gemini_sse_stream_waits_for_the_policy_the_same_at_any_split(cuts: list[int], envelope: bool) -> None:
    policy = Policy()
    call = gemini_state(policy, envelope)
    whole = gemini.sse(enveloped(GEMINI, envelope))
    out = streamed(gemini_held(envelope), split(whole, cuts), call, FUNCTION_CALL)
    assert gemini.sse_items(out) == enveloped(GEMINI_DECIDED, envelope)
    assert len(policy.asked) == 2  # the same call twice asked once
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow", "allow"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1), max_size=8))
def test_a_gemini_json_array_waits_for_the_policy_the_same_at_any_split(cuts: list[int]) -> None:
    whole = gemini.array(GEMINI)
    out = streamed(gemini_held(False), split(whole, cuts), gemini_state(Policy()), FUNCTION_CALL)
    assert json.loads(out) == GEMINI_DECIDED


def test_a_gemini_item_waiting_holds_what_follows_and_goes_once_answered() -> None:
    call = gemini_state(Policy())
    held = HeldGeminiCalls(call)
    whole = gemini.sse(GEMINI)
    first = gemini.sse(GEMINI[:1])
    assert held.feed(whole) == first  # the text before goes; the call's item and all after wait
    assert len(call.asking) == 2  # every call that came, asked together
    asyncio.run(asked(call))
    assert gemini.sse_items(first + held.feed(b"") + held.flush()) == GEMINI_DECIDED


def test_a_gemini_stream_cut_before_the_policy_answered_refuses_its_calls() -> None:
    call = gemini_state(Policy())
    out = cut_short(gemini_held(False), gemini.sse(GEMINI), call)
    assert FUNCTION_CALL not in out and [i["candidates"][0]["content"]["parts"][0] for i in gemini.sse_items(out)][
        1
    ] == {"text": "Tollgate refused the call to send_money: policy error."}
    assert {d["reasons"][0] for d in call.tool_calls()} == {"policy error"}


def ended(held_of: Held, whole: bytes, call: AgentsCall, mark: bytes) -> bytes:
    """As the proxy's tap ends a stream: its end read first (`at_end`), the policy's answers on the
    calls it completes awaited, then the rewrite fed again and flushed."""
    held = held_of(call)
    out = held.feed(whole)
    if call.asking:
        asyncio.run(asked(call))
        out += held.feed(b"")
    got = held.at_end()  # type: ignore[attr-defined]
    if call.asking:
        assert mark not in got
        asyncio.run(asked(call))
        got += held.feed(b"")
    return out + got + held.flush()


@pytest.mark.parametrize(
    ("held_of", "state_of", "whole", "last", "mark"),
    [
        (HeldResponsesCalls, responses_state, RESPONSES, b"response.output_item.done", FUNCTION),
        (HeldMessagesCalls, messages_state, MESSAGES, b"content_block_stop", TOOL_USE),
    ],
)
def test_a_stream_ending_without_its_blank_line_is_asked_about_at_its_end(
    held_of: Held, state_of: Callable[[Any], AgentsCall], whole: bytes, last: bytes, mark: bytes
) -> None:
    """Its last event, completing its calls, ends the stream without its blank line: the policy is
    asked about them at the end, and they are decided as in the whole stream, not as a policy error."""
    unended = whole[: whole.index(b"\n\n", whole.rindex(last))]
    expected_call = state_of(Policy())
    expected = streamed(held_of, [unended + b"\n\n"], expected_call, mark)
    policy = Policy()
    call = state_of(policy)
    assert ended(held_of, unended, call, mark) == expected
    assert len(policy.asked) == 2
    assert call.tool_calls() == expected_call.tool_calls()
    assert [d["decision"] for d in call.tool_calls()] == ["deny", "allow"]
