"""The Realtime WebSocket's quick look for the client events that may give the model MCP tools:
every event the `agents` rule would refuse is parsed and read, never passed over unread."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tollgate.governance.agents.provider_mcp import responses_unapproved
from tollgate.proxy.stages.transport.realtime_socket import may_give_mcp

MCP = {"type": "mcp", "server_label": "bank", "server_url": "https://bank.example/mcp", "require_approval": "never"}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": {"type": "realtime", "prompt": {"id": "pmpt_x"}}},
        {"type": "response.create", "response": {"prompt": {"id": "pmpt_x", "version": "2"}}},
        {"type": "session.update", "session": {"type": "realtime", "tools": [MCP]}},
        {"type": "response.create", "response": {"tools": [MCP]}},
    ],
)
def test_an_event_whose_tools_the_provider_calls_unasked_is_read(event: dict[str, Any]) -> None:
    given = event.get("session") or event.get("response")
    assert responses_unapproved(given, approvals_decided=False)  # what the rule refuses
    for content in (json.dumps(event), json.dumps(event, separators=(",", ":"))):
        assert may_give_mcp(content.encode())
    # A key written with escapes is read too.
    assert may_give_mcp(json.dumps(event).replace('"prompt"', '"\\u0070rompt"').encode())


def test_an_event_that_gives_no_mcp_server_nor_stored_prompt_is_passed_over() -> None:
    plain = {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}
    assert not responses_unapproved(plain["session"], approvals_decided=False)
    assert not may_give_mcp(json.dumps(plain).encode())
    assert not may_give_mcp(b'{"type":"input_audio_buffer.append","audio":"AAAA"}')
