"""Reading a Responses API request (POST /v1/responses) for the facts classification gives the
policy and the limits: its input, instructions, tools (MCP servers among them), a stored prompt,
and its output bound."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.exact import STORED_PROMPT, Unreadable, count, request_int, request_text
from tollgate.formats.openai_chat import has_system_message
from tollgate.formats.request_facts import GrantedMcpServer, RequestFacts

RESPONSES = "responses"  # the endpoint
# Codex's compaction signed in with ChatGPT (`/backend-api/codex/responses/compact`): a Responses
# body in, a compacted conversation out (`{output, usage}`).
COMPACT = "responses.compact"
# Fields that add to a request's input what OpenAI holds: a previous response (its input and
# output), a conversation's items, a stored prompt. OpenAI bills them as input.
HELD_INPUT = ("previous_response_id", "conversation", "prompt")


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """A Responses body's input, system prompt, tools and output bound."""
    inputs = data.get("input")
    facts.message_count = 1 if isinstance(inputs, str) else count(inputs)
    facts.has_system = bool(data.get("instructions")) or has_system_message(inputs)
    read_tools(data, facts)
    facts.max_tokens = request_int(data.get("max_output_tokens"), "max_output_tokens")
    facts.input_held = any(data.get(name) is not None for name in HELD_INPUT)


def read_tools(data: dict[str, Any], facts: RequestFacts) -> None:
    """The tools a Responses body (or a Realtime session's settings) gives the model: every type in
    `tools` (functions, web and file search, code interpreter, computer use, shells, MCP servers…),
    and a stored prompt (`prompt: {id}`), which may hold tools and instructions Tollgate cannot read."""
    tools = data.get("tools")
    facts.has_tools = bool(tools)
    if isinstance(tools, list):
        facts.grants(tuple(_mcp_server(t, f"tools[{i}]") for i, t in enumerate(tools) if _is_mcp(t, f"tools[{i}]")))
    if data.get("prompt") is not None:
        facts.unseen(STORED_PROMPT)


def _is_mcp(tool: Any, where: str) -> bool:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str) or kind.lower() != "mcp":
        return False
    if kind != "mcp":
        raise Unreadable(f"{where}.type is not written 'mcp'")
    return True


_MCP_TARGETS = ("server_url", "connector_id", "tunnel_id")


def _mcp_server(tool: dict[str, Any], where: str) -> GrantedMcpServer:
    """A Responses `mcp` tool: its `server_label` and where it goes, exactly one of `server_url`
    (the server's URL), `connector_id` (one of OpenAI's connectors) and `tunnel_id` (a tunnel to a
    private server); the last two have no URL the request shows. Anything else is refused: which
    server OpenAI would call is not Tollgate's to guess."""
    label = request_text(tool.get("server_label"), f"{where}.server_label")
    if label is None:
        raise Unreadable(f"{where} names no server_label")
    targets = {name: request_text(tool.get(name), f"{where}.{name}") for name in _MCP_TARGETS}
    given = [name for name, value in targets.items() if value is not None]
    if len(given) != 1:
        how_many = "more than one" if given else "none"
        raise Unreadable(f"{where} gives {how_many} of server_url, connector_id and tunnel_id")
    return GrantedMcpServer(targets["server_url"], label)
