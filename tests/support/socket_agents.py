"""What the end-to-end tests of `agents` on OpenAI's sockets (the Realtime API, the Responses API's
WebSocket mode) share: a gateway for one client with `agents` on, the same with a policy of tools
beside it, a session's events, and what a payment the policy refused leaves of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.agents import OWN
from tests.support.configs import with_policy
from tests.support.fake_realtime import FakeRealtime, Script

# The payment tool, as both APIs declare a function.
SEND = {
    "type": "function",
    "name": "send_money",
    "parameters": {"type": "object", "properties": {"recipient": {"type": "string"}}},
}


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
