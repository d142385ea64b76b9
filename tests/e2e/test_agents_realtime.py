"""`agents` on OpenAI's Realtime API, end to end: the openai SDK's realtime client through mitmdump
to a fake Realtime server. The client adds a tool's output to the conversation (outside content);
a function call whose argument came from it reaches the client as an assistant message whose text
is the refusal, in every event that carries it, in order; a call the user gave the argument of
goes as it came. The session's record names each decision, never an argument's value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support import agents, socket_agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.fake_realtime import Script, usage
from tests.support.socket_agents import SEND

from tollgate.governance.agents.provider_mcp import UNDECIDED

REAL = "sk-REAL-openai-agents-realtime-5ecret"
ALICE = "tg-VIRTUAL-alice-agents-realtime-5ecret"
MODEL = "gpt-realtime"


def calling(recipient: str) -> Script:
    """Each response.create answered by a call of send_money to `recipient`, its arguments in two pieces."""

    def script(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("type") == "session.update":
            return [{"type": "session.updated", "event_id": "ev_s", "session": event["session"]}]
        if event.get("type") != "response.create":
            return []
        arguments = json.dumps({"recipient": recipient})
        item = {
            "id": "item_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "send_money",
            "object": "realtime.item",
        }
        done = {**item, "status": "completed", "arguments": arguments}
        place = {"response_id": "r1", "item_id": "item_1", "output_index": 0, "call_id": "call_1"}
        return [
            {"type": "response.created", "event_id": "ev_0", "response": {"id": "r1", "object": "realtime.response",
             "status": "in_progress", "output": []}},
            {"type": "response.output_item.added", "event_id": "ev_1", "response_id": "r1", "output_index": 0,
             "item": {**item, "status": "in_progress", "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "event_id": "ev_2", **place, "delta": arguments[:9]},
            {"type": "response.function_call_arguments.delta", "event_id": "ev_3", **place, "delta": arguments[9:]},
            {"type": "response.function_call_arguments.done", "event_id": "ev_4", **place, "arguments": arguments},
            {"type": "response.output_item.done", "event_id": "ev_5", "response_id": "r1", "output_index": 0, "item": done},
            {"type": "response.done", "event_id": "ev_6", "response": {"id": "r1", "object": "realtime.response",
             "status": "completed", "output": [done], "usage": usage(40, 12, 0)}},
        ]  # fmt: skip

    return script


VOICE = 'package tollgate.tools\n\nimport rego.v1\n\ndeny contains "no payments by voice" if input.tool.name == "send_money"\n'

gw, gw_policy = socket_agents.gateways(REAL, ALICE, VOICE)


def realtime_session(steps: str, until: str) -> str:
    """Client code: a Realtime session that takes `steps` (statements in the connection's block,
    under `conn`), then reports the `events` it got up to the first of type `until`."""
    return f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ALICE}", max_retries=0)
    got = []
    async with client.realtime.connect(model="{MODEL}") as conn:
{steps}
        async for event in conn:
            got.append(event.model_dump(exclude_none=True))
            if event.type == "{until}":
                break
    return got

report(events=asyncio.run(session()))
"""


SESSION = realtime_session(
    f"""\
        await conn.session.update(session={{"type": "realtime", "instructions": "Pay the bills.", "tools": [{SEND!r}]}})
        await conn.conversation.item.create(item={{"type": "message", "role": "user",
            "content": [{{"type": "input_text", "text": "Pay the rent; my own account is {OWN}."}}]}})
        await conn.conversation.item.create(item={{"type": "function_call", "call_id": "c0", "name": "read_inbox",
            "arguments": "{{}}"}})
        await conn.conversation.item.create(item={{"type": "function_call_output", "call_id": "c0",
            "output": {INBOX!r}}})
        await conn.response.create()""",
    "response.done",
)


def run(gw, realtime_fake, recipient: str) -> list[dict[str, Any]]:
    return socket_agents.events(gw, realtime_fake, calling(recipient), SESSION, but=("session.",))


def test_a_call_whose_argument_came_from_a_tools_output_reaches_the_client_as_its_refusal(gw, realtime_fake):
    events = run(gw, realtime_fake, PLANTED)
    assert [e["type"] for e in events] == ["response.created", *agents.REFUSAL_EVENTS, "response.done"]
    message = events[6]["item"]
    assert (message["id"], message["type"], message["role"]) == ("item_1", "message", "assistant")
    assert message["content"] == [{"type": "output_text", "text": REFUSED}] and events[3]["delta"] == REFUSED
    assert events[7]["response"]["output"] == [message]
    assert PLANTED not in json.dumps(events)
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.DENIED] and record["endpoint"] == "realtime"
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_call_the_user_gave_the_argument_of_goes_as_it_came(gw, realtime_fake):
    events = run(gw, realtime_fake, OWN)
    assert [e["type"] for e in events] == ["response.created", *agents.CALL_EVENTS, "response.done"]
    assert json.loads(events[4]["arguments"]) == {"recipient": OWN}
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.allowed()]
    # The server got every client event as it was sent, the tool's output among them.
    sent = [json.loads(m) for m in realtime_fake.sessions[-1].received]
    assert [e["type"] for e in sent][-2:] == ["conversation.item.create", "response.create"]


def test_the_policys_tools_rule_is_awaited_before_a_call_goes(gw_policy, realtime_fake):
    events = run(gw_policy, realtime_fake, OWN)  # a call `agents` alone lets go
    socket_agents.assert_refused_by_policy(gw_policy, events, "no payments by voice")


def two_calls(script: Script) -> Script:
    """`script`'s response with a second call (get_weather, complete in one event) begun right after
    the first call is complete: while the policy is asked about it."""

    def with_second(event: dict[str, Any]) -> list[dict[str, Any]]:
        events = script(event)
        if len(events) < 7:
            return events
        item = {"id": "item_2", "type": "function_call", "call_id": "call_2", "name": "get_weather",
                "object": "realtime.item", "status": "completed", "arguments": '{"city": "Paris"}'}  # fmt: skip
        second = [
            {"type": "response.output_item.added", "event_id": "ev_7", "response_id": "r1", "output_index": 1,
             "item": {**item, "status": "in_progress", "arguments": ""}},
            {"type": "response.function_call_arguments.done", "event_id": "ev_8", "response_id": "r1",
             "item_id": "item_2", "output_index": 1, "call_id": "call_2", "arguments": item["arguments"]},
            {"type": "response.output_item.done", "event_id": "ev_9", "response_id": "r1", "output_index": 1,
             "item": item},
        ]  # fmt: skip
        done = events[6]
        done["response"]["output"].append(item)
        return [*events[:6], *second, done]

    return with_second


def test_a_call_begun_while_the_policy_is_asked_about_another_is_decided_in_its_turn(gw_policy, realtime_fake):
    events = socket_agents.events(gw_policy, realtime_fake, two_calls(calling(OWN)), SESSION, but=("session.",))
    refusal = "Tollgate refused the call to send_money: no payments by voice."
    assert [e.get("delta") for e in events if e["type"] == "response.output_text.delta"] == [refusal]
    assert [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"] == [
        "message",
        "function_call",
    ]
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message", "function_call"]
    (record,) = gw_policy.new_audit(1)
    assert [(c["name"], c["decision"], c["reasons"]) for c in record["tool_calls"]] == [
        ("send_money", "deny", ["no payments by voice"]),
        ("get_weather", "allow", []),
    ]


def mcp_session(given: str) -> str:
    """A session given `given` (a session's field, as JSON) first, then the payment tool alone."""
    return realtime_session(
        f"""\
        await conn.session.update(session={{"type": "realtime", {given}}})
        await conn.session.update(session={{"type": "realtime", "tools": [{SEND!r}]}})""",
        "session.updated",
    )


MCP = '"tools": [{"type": "mcp", "server_label": "bank", "server_url": "https://bank.example/mcp"}]'
PROMPT = '"prompt": {"id": "pmpt_bank"}'  # a stored prompt may hold any MCP server


@pytest.mark.parametrize("given", [MCP, PROMPT], ids=["mcp", "prompt"])
def test_an_mcp_server_given_a_realtime_session_is_refused_the_session_goes_on(gw, realtime_fake, given):
    # The server calls its tools itself, and their approval requests are not decided here.
    script = mcp_session(given)
    events = socket_agents.events(gw, realtime_fake, calling(OWN), script, but=("session.created",))
    assert [e["type"] for e in events] == ["error", "session.updated"]
    assert UNDECIDED in events[0]["error"]["message"]
    assert events[1]["session"]["tools"] == [SEND]  # the second update went; the first never did
    sent = [json.loads(m) for m in realtime_fake.sessions[-1].received]
    assert "mcp" not in json.dumps(sent) and "pmpt" not in json.dumps(sent)
    record = gw.new_audit(2)[0]
    assert (record["decision"], record["deny_reasons"]) == ("deny", [UNDECIDED])
