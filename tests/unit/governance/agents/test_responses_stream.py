"""A streamed Responses answer's calls held from their `output_item.added` until their item is done,
then decided: text before not held, a refused call's events replaced at its `output_index` by a
message's, every later `sequence_number` following on, the last event's response replaced alike,
at any split of the stream."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.agents import REFUSAL_EVENTS
from tests.support.streams import responses_call_events
from tests.unit.governance.agents.test_responses_calls import (
    OWN,
    PLANTED,
    REFUSED,
    USAGE,
    approval,
    call,
    refusal,
    state,
)

from tollgate.governance.agents.response_index import ResponseIndex
from tollgate.governance.agents.responses_stream import HeldResponsesCalls

MESSAGE = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Paying.", "annotations": []}]}  # fmt: skip


def sse(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


def stream(*calls: dict[str, Any]) -> list[dict[str, Any]]:
    """A text message, then each call: added, its arguments in two deltas, done, item done; then
    the response completed with every item."""
    response = {"id": "resp_s", "object": "response", "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": {**MESSAGE, "content": []}},
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "item_id": "msg_1",
            "content_index": 0,
            "delta": "Paying.",
        },
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
    ]
    for at, item in enumerate(calls, start=1):
        events += responses_call_events(at, item)
    done = {**response, "status": "completed", "output": [MESSAGE, *calls], "usage": USAGE}
    events.append({"type": "response.completed", "response": done})
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def events_of(out: bytes) -> list[dict[str, Any]]:
    parsed = []
    for block in out.split(b"\n\n"):
        if block:
            head, data = block.split(b"\n", 1)
            obj = json.loads(data.removeprefix(b"data: "))
            assert head == b"event: " + obj["type"].encode()
            parsed.append(obj)
    return parsed


TWO = stream(call("a", PLANTED), call("b", OWN))
WHOLE = b"".join(sse(e) for e in TWO)


def test_text_goes_at_once_a_call_and_what_follows_wait_for_its_item_done() -> None:
    held = HeldResponsesCalls(state())
    first = b"".join(sse(e) for e in TWO[:4])
    assert held.feed(first) == first  # the text's events: not held
    assert held.feed(b"".join(sse(e) for e in TWO[4:8])) == b""  # the first call, not yet done
    out = events_of(held.feed(sse(TWO[8])))
    assert [e["type"] for e in out] == list(REFUSAL_EVENTS)
    assert {e["output_index"] for e in out} == {1}
    assert out[-1]["item"] == refusal("fc_a") and out[2]["delta"] == REFUSED
    assert [e["sequence_number"] for e in out] == list(range(4, 10))


def test_the_stream_as_the_sdk_reads_it_refused_call_replaced_everywhere() -> None:
    s = state(index=(index := ResponseIndex()))
    held = HeldResponsesCalls(s)
    out = events_of(held.feed(WHOLE) + held.flush())
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert len(out) == len(TWO) + 1  # five events of the call, six of its message
    completed = out[-1]["response"]
    assert completed["output"] == [MESSAGE, refusal("fc_a"), call("b", OWN)] and completed["usage"] == USAGE
    kept_call = [e for e in out if e.get("output_index") == 2]
    assert kept_call == [{**e, "sequence_number": e["sequence_number"] + 1} for e in TWO[9:14]]
    assert [d["decision"] for d in s.tool_calls()] == ["deny", "allow"]
    kept = index.get("agent", "resp_s")
    assert kept is not None and list(kept.refused) == ["a"]


def test_nothing_refused_goes_as_it_came() -> None:
    clean = b"".join(sse(e) for e in stream(call("b", OWN)))
    held = HeldResponsesCalls(state())
    assert held.feed(clean) + held.flush() == clean


def test_a_stream_cut_short_while_holding_refuses_the_call_as_unread() -> None:
    held = HeldResponsesCalls(state())
    out = events_of(held.feed(b"".join(sse(e) for e in stream(call("b", OWN))[:6])) + held.flush())
    text = "Tollgate refused the call to send_money: its arguments cannot be read (unread)."
    assert out[-1]["item"] == refusal("fc_b", text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), max_size=20))
def test_any_split_of_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    whole = HeldResponsesCalls(state())
    expected = whole.feed(WHOLE) + whole.flush()
    held = HeldResponsesCalls(state())
    out, at = b"", 0
    for cut in cuts:
        out += held.feed(WHOLE[at : at + cut])
        at += cut
    out += held.feed(WHOLE[at:]) + held.flush()
    assert out == expected
    assert events_of(out)[-1]["response"]["output"][1] == refusal("fc_a")


def test_a_freeform_call_streamed_as_input_deltas_is_refused_as_its_text() -> None:
    item = {"id": "ctc_1", "type": "custom_tool_call", "call_id": "x", "name": "run_sql", "input": f"PAY {PLANTED}"}
    place = {"output_index": 0, "item_id": "ctc_1"}
    events = [
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "input": ""}},
        {"type": "response.custom_tool_call_input.delta", **place, "delta": "PAY "},
        {"type": "response.custom_tool_call_input.delta", **place, "delta": PLANTED},
        {"type": "response.custom_tool_call_input.done", **place, "input": item["input"]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    ]
    held = HeldResponsesCalls(state())
    out = events_of(b"".join(held.feed(sse({**e, "sequence_number": n})) for n, e in enumerate(events)))
    assert [e["type"] for e in out][0::5] == ["response.output_item.added", "response.output_item.done"]
    assert out[-1]["item"]["content"][0]["text"].startswith("Tollgate refused the call to run_sql: its argument input")
    assert PLANTED not in json.dumps(held._state.tool_calls())


def test_a_streamed_mcp_approval_request_is_held_and_decided_the_provider_told_no() -> None:
    ask = approval("mcpr_a", PLANTED)
    events = [
        {"type": "response.created", "response": {"id": "resp_m", "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": ask},
        {"type": "response.output_item.done", "output_index": 0, "item": ask},
        {"type": "response.completed", "response": {"id": "resp_m", "status": "completed", "output": [ask]}},
    ]
    s = state(index=(index := ResponseIndex()))
    held = HeldResponsesCalls(s)
    out = events_of(held.feed(b"".join(sse({**e, "sequence_number": n}) for n, e in enumerate(events))) + held.flush())
    assert out[-1]["response"]["output"] == [refusal("mcpr_a")]
    assert PLANTED not in json.dumps(out)
    kept = index.get("agent", "resp_m")
    assert kept is not None and list(kept.refused) == ["mcpr_a"]
    assert kept.refused["mcpr_a"]["approve"] is False
