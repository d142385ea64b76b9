"""`agents` on OpenAI's Realtime API, end to end: the openai SDK's realtime client through mitmdump
to a fake Realtime server. The client adds a tool's output to the conversation (outside content);
a function call whose argument came from it reaches the client as an assistant message whose text
is the refusal, in every event that carries it, in order; a call the user gave the argument of
goes as it came. The session's record names each decision, never an argument's value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support import agents
from tests.support.agents import INBOX, OWN, PLANTED, REFUSED
from tests.support.configs import with_policy
from tests.support.fake_realtime import FakeRealtime, Script, usage

REAL = "sk-REAL-openai-agents-realtime-5ecret"
ALICE = "tg-VIRTUAL-alice-agents-realtime-5ecret"
MODEL = "gpt-realtime"
SEND = {
    "type": "function",
    "name": "send_money",
    "parameters": {"type": "object", "properties": {"recipient": {"type": "string"}}},
}


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


@pytest.fixture(scope="module")
def fake(upstream_ca):
    server = FakeRealtime(upstream_ca)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(start_gateway, fake):
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "agents": {"acting_tools": ["send_*"]},
        }
    )


SESSION = f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{ALICE}", max_retries=0)
    got = []
    async with client.realtime.connect(model="{MODEL}") as conn:
        await conn.session.update(session={{"type": "realtime", "instructions": "Pay the bills.", "tools": [{SEND!r}]}})
        await conn.conversation.item.create(item={{"type": "message", "role": "user",
            "content": [{{"type": "input_text", "text": "Pay the rent; my own account is {OWN}."}}]}})
        await conn.conversation.item.create(item={{"type": "function_call", "call_id": "c0", "name": "read_inbox",
            "arguments": "{{}}"}})
        await conn.conversation.item.create(item={{"type": "function_call_output", "call_id": "c0",
            "output": {INBOX!r}}})
        await conn.response.create()
        async for event in conn:
            got.append(event.model_dump(exclude_none=True))
            if event.type == "response.done":
                break
    return got

report(events=asyncio.run(session()))
"""


def run(gw, fake, recipient: str) -> list[dict[str, Any]]:
    fake.answer_with(calling(recipient))
    got = gw.run(SESSION)
    assert "events" in got, got
    events = got["events"]
    return [e for e in events if not e["type"].startswith("session.")]


def test_a_call_whose_argument_came_from_a_tools_output_reaches_the_client_as_its_refusal(gw, fake):
    events = run(gw, fake, PLANTED)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    message = events[6]["item"]
    assert (message["id"], message["type"], message["role"]) == ("item_1", "message", "assistant")
    assert message["content"] == [{"type": "output_text", "text": REFUSED}] and events[3]["delta"] == REFUSED
    assert events[7]["response"]["output"] == [message]
    assert PLANTED not in json.dumps(events)
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.DENIED] and record["endpoint"] == "realtime"
    agents.assert_no_argument_value(gw, PLANTED, OWN, "landlord@")


def test_a_call_the_user_gave_the_argument_of_goes_as_it_came(gw, fake):
    events = run(gw, fake, OWN)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.done",
    ]
    assert json.loads(events[4]["arguments"]) == {"recipient": OWN}
    (record,) = gw.new_audit(1)
    assert record["tool_calls"] == [agents.allowed()]
    # The server got every client event as it was sent, the tool's output among them.
    sent = [json.loads(m) for m in fake.sessions[-1].received]
    assert [e["type"] for e in sent][-2:] == ["conversation.item.create", "response.create"]


VOICE = 'package tollgate.tools\n\nimport rego.v1\n\ndeny contains "no payments by voice" if input.tool.name == "send_money"\n'


@pytest.fixture(scope="module")
def gw_policy(start_gateway, fake):
    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": fake.url, "keys": [REAL]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "agents": {"acting_tools": ["send_*"]},
            "policy": {"rego": ["policy.rego"]},
        }

    return with_policy(start_gateway(config), config, VOICE)


def test_the_policys_tools_rule_is_awaited_before_a_call_goes(gw_policy, fake):
    events = run(gw_policy, fake, OWN)  # a call `agents` alone lets go
    refusal = "Tollgate refused the call to send_money: no payments by voice."
    assert [e.get("delta") for e in events if e["type"] == "response.output_text.delta"] == [refusal]
    assert "function_call" not in json.dumps(events) and OWN not in json.dumps(events)
    (record,) = gw_policy.new_audit(1)
    assert [(c["decision"], c["reasons"]) for c in record["tool_calls"]] == [("deny", ["no payments by voice"])]


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


def test_a_call_begun_while_the_policy_is_asked_about_another_is_decided_in_its_turn(gw_policy, fake):
    fake.answer_with(two_calls(calling(OWN)))
    got = gw_policy.run(SESSION)
    assert "events" in got, got
    events = [e for e in got["events"] if not e["type"].startswith("session.")]
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
