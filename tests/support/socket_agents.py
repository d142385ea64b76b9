"""What the end-to-end tests of `agents` on OpenAI's sockets (the Realtime API, the Responses API's
WebSocket mode) share: a gateway for one client with `agents` on, the same with a policy of tools
beside it, a Responses session, a payment's events, a session's events, and what a payment the
policy refused leaves of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.agents import INBOX, OWN
from tests.support.configs import with_policy
from tests.support.fake_realtime import FakeRealtime, Script, responses_usage

# The payment tool, as both APIs declare a function.
SEND = {
    "type": "function",
    "name": "send_money",
    "parameters": {"type": "object", "properties": {"recipient": {"type": "string"}}},
}


def responses_session(key: str, model: str) -> str:
    """Client code: one response.create on the Responses WebSocket (a user's message naming `OWN`,
    then a tool's output, `INBOX`), reporting the `events` up to its response.completed or error."""
    return f"""
import asyncio
from openai import AsyncOpenAI

async def session():
    client = AsyncOpenAI(api_key="{key}", max_retries=0)
    got = []
    async with client.responses.connect() as conn:
        await conn.response.create(model="{model}", instructions="Pay the bills.", tools=[{SEND!r}], input=[
            {{"type": "message", "role": "user", "content": [{{"type": "input_text",
              "text": "Pay the rent; my own account is {OWN}."}}]}},
            {{"type": "function_call", "call_id": "c0", "name": "read_inbox", "arguments": "{{}}"}},
            {{"type": "function_call_output", "call_id": "c0", "output": {INBOX!r}}},
        ])
        for _ in range(200):
            event = await asyncio.wait_for(conn.recv(), 20)
            got.append(event.model_dump(exclude_none=True))
            if event.type in ("response.completed", "error"):
                break
    return got

report(events=asyncio.run(session()))
"""


def payment(lane: dict[str, Any], recipient: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A call of send_money to `recipient` as a Responses stream's output 1, on `lane`: the call's
    item as done, and its events (item added, its arguments in two pieces, done, item done)."""
    arguments = json.dumps({"recipient": recipient})
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "send_money"}
    done = {**call, "status": "completed", "arguments": arguments}
    place = {**lane, "item_id": "fc_1", "output_index": 1}
    return done, [
        {"type": "response.output_item.added", **lane, "output_index": 1,
         "item": {**call, "status": "in_progress", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", **place, "delta": arguments[:9]},
        {"type": "response.function_call_arguments.delta", **place, "delta": arguments[9:]},
        {"type": "response.function_call_arguments.done", **place, "arguments": arguments},
        {"type": "response.output_item.done", **lane, "output_index": 1, "item": done},
    ]  # fmt: skip


def completed(lane: dict[str, Any], response: dict[str, Any], output: list[dict[str, Any]]) -> dict[str, Any]:
    """The response.completed of `response` (as created), on `lane`, its items `output`."""
    done = {"status": "completed", "created_at": 1700000000, "output": output, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [SEND], "usage": responses_usage(40, 12)}  # fmt: skip
    return {"type": "response.completed", **lane, "response": {**response, **done}}


def settings(upstream: str, real: str, key: str, policy: bool = False) -> dict[str, Any]:
    """OpenAI at `upstream` (Tollgate's `real` key), one client `alice` (`key`), the `send_*`
    tools acting; with `policy`, the rules of a `policy.rego` beside the configuration."""
    out: dict[str, Any] = {
        "providers": {"openai": {"upstream": upstream, "keys": [real]}},
        "clients": [{"name": "alice", "keys": [key]}],
        "agents": {"acting_tools": ["send_*"]},
    }
    if policy:
        out["policy"] = {"rego": ["policy.rego"]}
    return out


def gateways(real: str, key: str, rego: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The module's `gw` and `gw_policy` fixtures: gateways to the `realtime_fake`, as `settings`
    says; the second with the policy of tools `rego`."""

    @pytest.fixture(scope="module")
    def gw(start_gateway: Any, realtime_fake: FakeRealtime) -> Any:
        return start_gateway(lambda urls: settings(realtime_fake.url, real, key))

    @pytest.fixture(scope="module")
    def gw_policy(start_gateway: Any, realtime_fake: FakeRealtime) -> Any:
        def config(urls: dict[str, str]) -> dict[str, Any]:
            return settings(realtime_fake.url, real, key, policy=True)

        return with_policy(start_gateway(config), config, rego)

    return gw, gw_policy


def events(gw: Any, fake: FakeRealtime, script: Script, session: str, but: tuple[str, ...] = ()) -> list[dict]:
    """The events the client code `session` reported (`events`), `fake` answering by `script`;
    those whose type starts with one of `but` left out."""
    fake.answer_with(script)
    got = gw.run(session)
    assert "events" in got, got
    return [e for e in got["events"] if not e["type"].startswith(but)]


def assert_refused_by_policy(gw: Any, got: list[dict], reason: str, said: tuple[str, ...] = ()) -> None:
    """The payment to `OWN` the policy refused for `reason`: its refusal the text after `said`, no
    call and no account left in the events `got`; the record says why."""
    refusal = f"Tollgate refused the call to send_money: {reason}."
    assert [e.get("delta") for e in got if e["type"] == "response.output_text.delta"] == [*said, refusal]
    assert "function_call" not in json.dumps(got) and OWN not in json.dumps(got)
    (record,) = gw.new_audit(1)
    assert [(c["decision"], c["reasons"]) for c in record["tool_calls"]] == [("deny", [reason])]
