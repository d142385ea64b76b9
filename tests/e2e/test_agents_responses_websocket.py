"""`agents` on the Responses API's WebSocket mode, end to end: the openai SDK's `responses.connect()`
through mitmdump to a fake Responses WebSocket server. The `response.create` carries a tool's
output (outside content); the model's function call whose argument came from it reaches the client
as a message whose text is the refusal, in every event that carries it (`response.completed` too);
a call the user gave the argument of goes as it came; the policy's tools rule is awaited. The
record names each decision, never an argument's value nor the tool's output."""

from __future__ import annotations

import json
from typing import Any

from tests.support import agents, socket_agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.fake_realtime import Script
from tests.support.socket_agents import SEND

REAL = "sk-REAL-openai-agents-responses-ws-5ecret"
ALICE = "tg-VIRTUAL-alice-agents-responses-ws-5ecret"
MODEL = "gpt-5"
TEXT = {"type": "message", "id": "msg_0", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": "Paying.", "annotations": []}]}  # fmt: skip


def calling(recipient: str) -> Script:
    """Each response.create answered with a text, then a call of send_money to `recipient`, its
    arguments in two pieces; events echo the create's `stream_id`, as OpenAI's do. The responses'
    ids are `resp_a1`, `resp_a2`, …"""
    answered = iter(range(1, 100))

    def script(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("type") != "response.create":
            return []
        rid = f"resp_a{next(answered)}"
        lane = {"stream_id": event["stream_id"]} if "stream_id" in event else {}
        done, paid = socket_agents.payment(lane, recipient)
        response = {"id": rid, "object": "response", "status": "in_progress", "model": MODEL, "output": []}
        events = [
            {"type": "response.created", **lane, "response": response},
            {"type": "response.output_item.added", **lane, "output_index": 0, "item": {**TEXT, "content": []}},
            {"type": "response.output_text.delta", **lane, "item_id": "msg_0", "output_index": 0,
             "content_index": 0, "delta": "Paying.", "logprobs": []},
            {"type": "response.output_item.done", **lane, "output_index": 0, "item": TEXT},
            *paid,
            socket_agents.completed(lane, response, [TEXT, done]),
        ]  # fmt: skip
        return [{**e, "sequence_number": n} for n, e in enumerate(events)]

    return script


VOICE = (
    'package tollgate.tools\n\nimport rego.v1\n\ndeny contains "no payments here" if input.tool.name == "send_money"\n'
)


gw, gw_policy = socket_agents.gateways(REAL, ALICE, VOICE)


SESSION = socket_agents.responses_session(ALICE, MODEL)


def run(gw, realtime_fake, recipient: str) -> list[dict[str, Any]]:
    return socket_agents.events(gw, realtime_fake, calling(recipient), SESSION)


def test_a_call_whose_argument_came_from_a_tools_output_reaches_the_client_as_its_refusal(gw, realtime_fake):
    events = run(gw, realtime_fake, PLANTED)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
        *agents.REFUSAL_EVENTS,
        "response.completed",
    ]
    message = events[9]["item"]
    assert (message["id"], message["type"], message["role"]) == ("msg_tollgate_fc_1", "message", "assistant")
    assert message["content"][0]["text"] == REFUSED and events[6]["delta"] == REFUSED
    assert events[10]["response"]["output"][1] == message
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert PLANTED not in json.dumps(events) and "function_call" not in json.dumps(events)
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.DENIED] and record["endpoint"] == "responses"
    assert record["decision"] == "allow" and (record["input_tokens"], record["transport"]) == (40, "websocket")
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_call_the_user_gave_the_argument_of_goes_as_it_came(gw, realtime_fake):
    events = run(gw, realtime_fake, OWN)
    assert [e["type"] for e in events][4:] == [*agents.CALL_EVENTS, "response.completed"]
    assert json.loads(events[7]["arguments"]) == {"recipient": OWN}
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.allowed()]
    # The server got the response.create as the client sent it, the tool's output in it.
    (sent,) = [json.loads(m) for m in realtime_fake.sessions[-1].received]
    assert sent["type"] == "response.create" and sent["input"][2]["output"] == INBOX
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_the_policys_tools_rule_is_awaited_before_a_call_goes(gw_policy, realtime_fake):
    events = run(gw_policy, realtime_fake, OWN)  # a call `agents` alone lets go
    socket_agents.assert_refused_by_policy(gw_policy, events, "no payments here", said=("Paying.",))


CONTINUED = f"""
import asyncio
from openai import AsyncOpenAI

async def turn(conn):
    got = []
    while True:
        event = await asyncio.wait_for(conn.recv(), 20)
        got.append(event.model_dump(exclude_none=True))
        if event.type in ("response.completed", "error"):
            return got

async def session():
    client = AsyncOpenAI(api_key="{ALICE}", max_retries=0)
    async with client.responses.connect() as conn:
        await conn.response.create(model="{MODEL}", tools=[{SEND!r}], input=[
            {{"type": "function_call", "call_id": "c0", "name": "read_inbox", "arguments": "{{}}"}},
            {{"type": "function_call_output", "call_id": "c0", "output": {INBOX!r}}},
        ])
        first = await turn(conn)
        await conn.response.create(model="{MODEL}", tools=[{SEND!r}], previous_response_id=first[-1]["response"]["id"],
            input=[{{"type": "message", "role": "user", "content": [{{"type": "input_text", "text": "Go ahead."}}]}}])
        return first, await turn(conn)

first, second = asyncio.run(session())
report(first=first, second=second)
"""


def test_a_turn_continuing_a_refused_one_answers_its_call_and_is_judged_on_the_turns_before(gw, realtime_fake):
    realtime_fake.answer_with(calling(PLANTED))
    got = gw.run(CONTINUED)
    assert "second" in got, got
    for events in (got["first"], got["second"]):
        assert [e.get("delta") for e in events if e["type"] == "response.output_text.delta"] == ["Paying.", REFUSED]
    # The provider kept the refused call: the next turn answers it, with the refusal's text.
    _, continued = [json.loads(m) for m in realtime_fake.sessions[-1].received]
    assert continued["previous_response_id"] == "resp_a1"
    assert continued["input"][0] == {"type": "function_call_output", "call_id": "call_1", "output": REFUSED}
    records = gw.new_audit(2)
    assert [r["tool_calls"] for r in records] == [[agents.DENIED], [agents.DENIED]]
    agents.assert_no_argument_value(gw, PLANTED, "landlord@")


def and_one_unasked(script: Script) -> Script:
    """`script`'s response, then a second one no message asked for, whose call would go undecided."""

    def both(event: dict[str, Any]) -> list[dict[str, Any]]:
        asked = script(event)
        unasked = script(event)
        for e in unasked:
            if "response" in e:
                e["response"] = {**e["response"], "id": "resp_unasked"}
        return [*asked, *unasked]

    return both


def until_closed(creates: str) -> str:
    """Client code: `creates` (statements in the connection's block, under `conn`), then the events
    it got until the socket closed (`events`), and how it closed (`closed`)."""
    return f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ALICE}", max_retries=0)
    got, closed = [], None
    async with client.responses.connect() as conn:
{creates}
        try:
            for _ in range(100):
                got.append((await asyncio.wait_for(conn.recv(), 20)).model_dump(exclude_none=True))
        except Exception as e:
            closed = [type(e).__name__, getattr(getattr(e, "rcvd", None), "code", None)]
    return dict(events=got, closed=closed)

report(**asyncio.run(session()))
"""


UNASKED = until_closed(f"""\
        await conn.response.create(model="{MODEL}", tools=[{SEND!r}], input="Pay the rent to {OWN}.")""")


def test_a_response_no_message_asked_for_stops_and_the_socket_closes(gw, realtime_fake):
    # Its call would reach the client undecided: it stops at its response.created, as under an
    # answer rule; the response asked for goes, decided.
    realtime_fake.answer_with(and_one_unasked(calling(OWN)))
    got = gw.run(UNASKED)
    assert "events" in got, got
    events = got["events"]
    assert [e["type"] for e in events].count("response.completed") == 1
    assert [e["type"] for e in events].count("response.created") == 1
    error = events[-1]
    assert (error["type"], error["error"]["code"]) == ("error", "content_denied")
    assert got["closed"] == ["ConnectionClosedError", 1008]
    records = gw.new_audit(2)
    assert records[0]["tool_calls"] == [agents.allowed()]
    assert (records[1]["error"], records[1]["tool_calls"]) == ("content_denied", None)


def interleaved(script: Script) -> Script:
    """The first response.create answered up to its call's first event only; the second's response
    begun on the same lane, then the first's call whole, then both completed."""
    held: list[dict[str, Any]] = []

    def both(event: dict[str, Any]) -> list[dict[str, Any]]:
        answered = script(event)
        if not held:
            held.extend(answered[5:])
            return answered[:5]
        return [answered[0], *held, *answered[1:]]

    return both


TWO = until_closed(f"""\
        for _ in range(2):
            await conn.response.create(model="{MODEL}", tools=[{SEND!r}], input=[
                {{"type": "function_call", "call_id": "c0", "name": "read_inbox", "arguments": "{{}}"}},
                {{"type": "function_call_output", "call_id": "c0", "output": {INBOX!r}}},
            ])
            await asyncio.sleep(0.5)""")


def test_a_response_begun_on_a_lane_before_the_last_ended_stops_and_the_socket_closes(gw, realtime_fake):
    # Whose later events are cannot be told: the first's call would be read as the second's, undecided.
    realtime_fake.answer_with(interleaved(calling(PLANTED)))
    got = gw.run(TWO)
    assert "events" in got, got
    events = got["events"]
    assert PLANTED not in json.dumps(events) and "function_call" not in json.dumps(events)
    error = events[-1]
    assert (error["type"], error["error"]["code"]) == ("error", "content_denied")
    assert got["closed"] == ["ConnectionClosedError", 1008]
    records = gw.new_audit(2)
    assert [r["error"] for r in records] == ["content_denied", "content_denied"]
    agents.assert_no_argument_value(gw, PLANTED, "landlord@")
