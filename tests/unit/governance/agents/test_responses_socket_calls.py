"""A response over the Responses API's WebSocket decided as its stream over HTTP is: each message an
event, a call and what follows held until its item is done, a refused call's events replaced by its
refusal's in every event that carries it (`response.completed` too), unchanged events byte for
byte, the policy's answers awaited, an event that cannot be read stopping the response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.unit.governance.agents.test_responses_calls import OWN, PLANTED, REFUSED, call, state
from tests.unit.governance.agents.test_responses_stream import stream
from tests.unit.governance.agents.test_tool_policy import ATTACKER, Policy

from tollgate.governance.agents.call_state import asked
from tollgate.governance.agents.responses_socket_calls import UNREAD_EVENT, ResponsesSocketCalls

TWO = stream(call("a", PLANTED), call("b", OWN))


def messages(events: list[dict[str, Any]]) -> list[bytes]:
    """As the server sends them: one event a message, compact, a lane on each."""
    return [json.dumps({**e, "stream_id": "s1"}, separators=(",", ":")).encode() for e in events]


def flat(out: list[list[bytes]]) -> list[bytes]:
    return [m for got in out for m in got]


def fed(calls: ResponsesSocketCalls, sent: list[bytes]) -> list[list[bytes]]:
    """What goes to the client after each message, the policy's answers awaited where asked."""
    out = []
    for message in sent:
        got = calls.message(message)
        if calls.asking:
            asyncio.run(asked(calls.state))
            got += calls.resume()
        out.append(got)
    return out


def test_a_tainted_call_is_its_refusal_in_every_event_the_clean_one_as_it_came() -> None:
    sent = messages(TWO)
    out = fed(ResponsesSocketCalls(state(), "s1"), sent)
    assert out[:4] == [[m] for m in sent[:4]]  # text before the call: not held, byte for byte
    assert all(got == [] for got in out[4:8])  # the first call and what follows wait
    got = [json.loads(m) for m in flat(out[8:])]
    text = [e["delta"] for e in got if e["type"] == "response.output_text.delta"]
    assert text == [REFUSED] and all(e["stream_id"] == "s1" for e in got)
    assert PLANTED not in json.dumps(got) and OWN in json.dumps(got)
    last = got[-1]
    assert last["type"] == "response.completed"
    assert [i["type"] for i in last["response"]["output"]] == ["message", "message", "function_call"]
    assert last["response"]["output"][1]["content"][0]["text"] == REFUSED
    numbers = [e["sequence_number"] for e in got]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_a_response_with_no_call_refused_goes_byte_for_byte() -> None:
    sent = messages(stream(call("b", OWN)))
    calls = ResponsesSocketCalls(state(), "s1")
    assert flat(fed(calls, sent)) == sent
    assert [d.decision for d in calls.state.decisions] == ["allow"]


def test_a_call_whose_item_never_finished_is_refused_unread_at_the_responses_end() -> None:
    events = stream(call("b", OWN))
    cut = [e for e in events if not (e["type"] == "response.output_item.done" and e["output_index"] == 1)]
    calls = ResponsesSocketCalls(state(), None)
    got = [json.loads(m) for m in flat(fed(calls, messages(cut)))]
    assert [d.record()["reasons"] for d in calls.state.decisions] == [["its arguments cannot be read (unread)"]]
    assert "function_call" not in json.dumps(got[-1]["response"]["output"])


def test_the_policy_is_awaited_before_a_call_goes() -> None:
    policy = Policy()
    calls = ResponsesSocketCalls(state(), "s1")
    calls.state.policy = policy
    sent = messages(stream(call("x", ATTACKER)))
    out = flat(fed(calls, sent))
    assert len(policy.asked) == 1
    text = [json.loads(m).get("delta") for m in out if b"output_text.delta" in m]
    refusal = f"Tollgate refused the call to send_money: send_money to {ATTACKER}, not a known payee."
    assert text == ["Paying.", refusal]


def test_an_event_that_cannot_be_read_stops_the_response_and_what_it_held() -> None:
    sent = messages(TWO)
    calls = ResponsesSocketCalls(state(), "s1")
    fed(calls, sent[:6])
    (error,) = calls.message(b"{not json")
    assert json.loads(error) == {
        "type": "error",
        "error": {"type": "server_error", "message": UNREAD_EVENT},
        "stream_id": "s1",
    }
    assert calls.message(sent[6]) == [] and calls.end() == []


def test_an_event_written_over_several_lines_is_read_as_one() -> None:
    sent = [json.dumps(e, indent=1).encode() for e in stream(call("b", OWN))]
    calls = ResponsesSocketCalls(state(), None)
    got = [json.loads(m) for m in flat(fed(calls, sent))]
    assert got == [json.loads(m) for m in sent]


def test_the_websocket_closing_while_holding_decides_on_what_came() -> None:
    calls = ResponsesSocketCalls(state(), None)
    sent = messages(TWO)
    fed(calls, sent[:6])  # the first call begun, its item not done
    got = [json.loads(m) for m in calls.end()]
    unread = "Tollgate refused the call to send_money: its arguments cannot be read (unread)."
    assert [e.get("delta") for e in got if e["type"] == "response.output_text.delta"] == [unread]
    assert calls.end() == []
