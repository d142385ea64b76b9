"""The MCP servers a request has its provider call itself: where a tool it calls without the
agent's approval may act, the request is refused (its calls would act undecided); approval asked,
or only tools named that do not act, it goes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.formats import ANTHROPIC_MESSAGES, GEMINI_GENERATE, OPENAI_RESPONSES
from tollgate.governance.agents.agents_formats import AGENTS_FORMATS
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.provider_mcp import UNDECIDED, responses_unapproved

EVERY_TOOL = AgentsSettings()  # acting_tools: every tool
SENDING = AgentsSettings(acting_tools=["send_*"])
SERVER = {"type": "mcp", "server_label": "bank", "server_url": "https://bank.example/mcp"}


def responses(**tool: Any) -> str | None:
    body = {"model": "gpt-x", "input": "pay", "tools": [{**SERVER, **tool}]}
    return AGENTS_FORMATS[OPENAI_RESPONSES].undecidable(body, SENDING)


@pytest.mark.parametrize(
    "tool",
    [
        {"require_approval": "never"},
        {"require_approval": "never", "allowed_tools": ["send_money", "balance"]},
        {"require_approval": {"never": {"tool_names": ["send_money"]}}},
        {"require_approval": {"never": {"read_only": True}}},  # the server's own annotations choose
        {"require_approval": "sometimes"},  # not a value Tollgate knows: not guessed at
        {"require_approval": {"never": {"tool_names": ["balance"]}, "unknown": {}}},
    ],
)
def test_an_acting_tool_the_provider_calls_without_approval_is_refused(tool: dict[str, Any]) -> None:
    assert responses(**tool) == UNDECIDED


@pytest.mark.parametrize(
    "tool",
    [
        {},  # approval asked by default: each call comes to the agent, decided
        {"require_approval": "always"},
        {"require_approval": "never", "allowed_tools": ["balance"]},
        {"require_approval": "never", "allowed_tools": {"tool_names": ["balance"]}},
        {"require_approval": {"never": {"tool_names": ["balance"]}, "always": {"tool_names": ["send_money"]}}},
        {"require_approval": {"always": {"tool_names": ["send_money"]}}},
    ],
)
def test_approval_asked_or_only_tools_that_do_not_act_go(tool: dict[str, Any]) -> None:
    assert responses(**tool) is None


def test_with_every_tool_acting_an_unapproved_one_is_refused_and_background_still_is() -> None:
    body = {"tools": [{**SERVER, "require_approval": "never", "allowed_tools": ["balance"]}]}
    assert AGENTS_FORMATS[OPENAI_RESPONSES].undecidable(body, EVERY_TOOL) == UNDECIDED
    assert AGENTS_FORMATS[OPENAI_RESPONSES].undecidable(body, AgentsSettings(acting_tools=[])) is None
    background = {"background": True, "tools": [SERVER]}
    assert "background" in (AGENTS_FORMATS[OPENAI_RESPONSES].undecidable(background, SENDING) or "")


def test_anthropics_mcp_servers_are_called_without_approval() -> None:
    messages = AGENTS_FORMATS[ANTHROPIC_MESSAGES]
    server = {"type": "url", "url": "https://bank.example/mcp", "name": "bank"}
    assert messages.undecidable({"mcp_servers": [server]}, SENDING) == UNDECIDED
    narrowed = {**server, "tool_configuration": {"allowed_tools": ["balance"]}}
    assert messages.undecidable({"mcp_servers": [narrowed]}, SENDING) is None
    off = {**server, "tool_configuration": {"enabled": False}}
    assert messages.undecidable({"mcp_servers": [off]}, EVERY_TOOL) is None
    assert messages.undecidable({"mcp_servers": [{**server, "tool_configuration": []}]}, SENDING) == UNDECIDED
    assert messages.undecidable({"messages": []}, EVERY_TOOL) is None


def test_geminis_mcp_servers_are_called_without_approval() -> None:
    gemini = AGENTS_FORMATS[GEMINI_GENERATE]
    tools = [{"mcpServers": [{"name": "bank", "streamableHttpTransport": {"url": "https://bank.example/mcp"}}]}]
    assert gemini.undecidable({"tools": tools}, SENDING) == UNDECIDED
    assert gemini.undecidable({"tools": [{"functionDeclarations": []}]}, SENDING) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.text(max_size=8),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c),
        max_leaves=12,
    )
)
def test_any_approval_value_is_read_without_raising(value: Any) -> None:
    unapproved = responses_unapproved({"tools": [{**SERVER, "require_approval": value, "allowed_tools": value}]})
    assert all(isinstance(n, str) for n in unapproved)


def test_where_approval_requests_are_not_decided_every_allowed_tool_is_unapproved() -> None:
    session = {"tools": [SERVER, {**SERVER, "allowed_tools": ["balance"]}]}
    assert responses_unapproved(session) == []
    assert responses_unapproved(session, approvals_decided=False) == ["*", "balance"]


def test_a_stored_prompt_may_hold_any_mcp_tool() -> None:
    assert responses_unapproved({"prompt": {"id": "pmpt_1"}}) == ["*"]
    assert AGENTS_FORMATS[OPENAI_RESPONSES].undecidable({"prompt": {"id": "pmpt_1"}}, SENDING) == UNDECIDED
