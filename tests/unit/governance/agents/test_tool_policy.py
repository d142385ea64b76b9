"""The policy's `data.tollgate.tools.deny` asked about an answer's tool calls before they are
decided (`call_state`): an answer read whole is read once to note its calls, then decided once the
policy has answered; a stream holds its calls until it has, at any split; an answer that never
came is a policy error (the call refused); the record keeps the policy's reasons redacted."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, asked, decided_call, probed, unasked
from tollgate.governance.agents.chat_calls import decided_chat_answer, read_chat_request
from tollgate.governance.agents.chat_stream import HeldChatCalls
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.tool_decision import ToolCall

ATTACKER = "XX00ATTACKER"
OWN = "GB29NWBK60161331926819"
PAYEES = {OWN}


def state(policy: Any = None) -> AgentsCall:
    body = {
        "messages": [{"role": "user", "content": f"Pay my landlord; my own account is {OWN}"}],
        "tools": [
            {"type": "function", "function": {"name": "send_money", "parameters": {"properties": {"recipient": {}}}}}
        ],
    }
    out = read_chat_request(body, AgentsSettings(acting_tools=["send_*"]), InjectionSignals())
    out.policy = policy
    return out


class Policy:
    """A stand-in for the policy's worker: each ask noted, its answer awaited."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, facts: dict[str, Any]) -> Awaitable[Sequence[str]]:
        self.asked.append(facts)
        return self.answer(facts)

    async def answer(self, facts: dict[str, Any]) -> Sequence[str]:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the worker died")
        tool = facts["tool"]
        if tool["name"] == "send_money" and tool["arguments"].get("recipient") not in PAYEES:
            return (f"send_money to {tool['arguments']['recipient']}, not a known payee",)
        return ()


def answer(*recipients: str) -> bytes:
    calls = [
        {
            "id": f"c{n}",
            "type": "function",
            "function": {"name": "send_money", "arguments": json.dumps({"recipient": r})},
        }
        for n, r in enumerate(recipients)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    return json.dumps(
        {"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    ).encode()


def decided_whole(content: bytes, call: AgentsCall) -> bytes | None:
    """As the proxy decides an answer read whole: noted, asked, then decided."""
    if probed(lambda: decided_chat_answer(content, call), call):
        asyncio.run(asked(call))
    return decided_chat_answer(content, call)


REFUSAL = f"Tollgate refused the call to send_money: send_money to {ATTACKER}, not a known payee."


def test_a_whole_answer_is_decided_once_the_policy_has_answered_on_each_call() -> None:
    policy = Policy()
    call = state(policy)
    out = json.loads(decided_whole(answer(ATTACKER, OWN), call) or b"")
    message = out["choices"][0]["message"]
    assert [c["id"] for c in message["tool_calls"]] == ["c1"]
    assert message["content"] == REFUSAL
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert [f["tool"]["arguments"] for f in policy.asked] == [{"recipient": ATTACKER}, {"recipient": OWN}]
    assert policy.asked[0]["conversation"] == {"outside": [], "findings": {}, "provider_tools": []}
    # Recorded once each, the reason's argument value redacted.
    assert call.tool_calls() == [
        {"name": "send_money", "decision": "deny", "reasons": ["send_money to …, not a known payee"], "tainted": []},
        {"name": "send_money", "decision": "allow", "reasons": [], "tainted": []},
    ]


def test_the_same_call_twice_is_asked_once() -> None:
    policy = Policy()
    out = json.loads(decided_whole(answer(ATTACKER, ATTACKER), state(policy)) or b"")
    assert len(policy.asked) == 1
    assert out["choices"][0]["finish_reason"] == "stop"  # every call refused: a text answer's end
    assert "tool_calls" not in out["choices"][0]["message"]


def test_without_the_policy_nothing_is_asked_nor_read_twice() -> None:
    call = state()
    assert not probed(lambda: (_ for _ in ()).throw(AssertionError("read")), call)
    assert not unasked([ToolCall("send_money", {"recipient": ATTACKER})], call)
    assert decided_chat_answer(answer(OWN), call) == answer(OWN)


def test_a_policy_that_fails_refuses_the_call() -> None:
    call = state(Policy(fail=True))
    out = json.loads(decided_whole(answer(OWN), call) or b"")
    assert out["choices"][0]["message"]["content"] == "Tollgate refused the call to send_money: policy error."
    assert call.tool_calls()[0]["reasons"] == ["policy error"]


def test_a_call_decided_before_the_policy_answered_is_refused_as_a_policy_error() -> None:
    async def in_the_proxy() -> AgentsCall:
        call = state(Policy())
        decided_call(ToolCall("send_money", {"recipient": OWN}), call)
        return call

    assert asyncio.run(in_the_proxy()).tool_calls()[0] == {
        "name": "send_money",
        "decision": "deny",
        "reasons": ["policy error"],
        "tainted": [],
    }


def test_a_policy_answering_at_once_needs_no_asking_first() -> None:
    """Asked with no event loop running (a check), the policy answers at once."""
    call = state(lambda facts: ("no",) if facts["tool"]["arguments"]["recipient"] == ATTACKER else ())
    decided_call(ToolCall("send_money", {"recipient": ATTACKER}), call)
    assert call.tool_calls()[0]["decision"] == "deny"


def event(delta: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "choices": choices}).encode() + b"\n\n"


def piece(index: int, arguments: str, call_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        out.update(id=call_id, type="function")
        out["function"]["name"] = "send_money"
    return {"tool_calls": [out]}


BAD, GOOD = json.dumps({"recipient": ATTACKER}), json.dumps({"recipient": OWN})
STREAM = b"".join(
    [
        event({"role": "assistant", "content": "Paying."}),
        event(piece(0, BAD[:9], "a")),
        event(piece(1, GOOD[:5], "b")),
        event(piece(0, BAD[9:])),
        event(piece(1, GOOD[5:])),
        event({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]
)


def streamed(pieces: list[bytes], call: AgentsCall) -> bytes:
    """As the proxy's tap feeds a held stream: after each piece, the policy's answers awaited where
    it left calls to ask, and the rewrite fed again."""
    held = HeldChatCalls(call)
    out = b""
    for chunk in pieces:
        out += held.feed(chunk)
        if call.asking:
            assert b"send_money" not in out  # nothing of a call goes before the policy has answered
            asyncio.run(asked(call))
            out += held.feed(b"")
    return out + held.flush()


def chunks(out: bytes) -> list[Any]:
    return [None if e == b"data: [DONE]" else json.loads(e[6:]) for e in out.split(b"\n\n") if e]


def expected() -> list[Any]:
    return chunks(streamed([STREAM], state(Policy())))


def test_a_stream_holds_its_calls_until_the_policy_has_answered() -> None:
    policy = Policy()
    out = chunks(streamed([STREAM], state(policy)))
    assert len(policy.asked) == 2
    kept = [c for chunk in out if chunk for ch in chunk["choices"] for c in ch["delta"].get("tool_calls", ())]
    assert {c.get("id") for c in kept} == {"b", None} and all(c["index"] == 0 for c in kept)
    texts = [ch["delta"].get("content") for chunk in out if chunk for ch in chunk["choices"]]
    assert REFUSAL.join(["\n\n", ""]) in texts
    assert out[-1] is None  # [DONE] after the release, in order


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=8))
def test_a_stream_is_decided_the_same_at_any_split(cuts: list[int]) -> None:
    at = [0, *sorted(set(cuts)), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(at) if b > a]
    assert chunks(streamed(pieces, state(Policy()))) == expected()


def test_a_stream_cut_before_the_policy_answered_refuses_its_calls() -> None:
    async def in_the_proxy() -> bytes:
        held = HeldChatCalls(call)
        return held.feed(STREAM[: STREAM.index(b"data: [DONE]")]) + held.flush()

    call = state(Policy())
    out = asyncio.run(in_the_proxy())
    assert b'"tool_calls":[' not in out.replace(b" ", b"")
    assert [d["reasons"] for d in call.tool_calls()] == [["policy error"], ["policy error"]]
