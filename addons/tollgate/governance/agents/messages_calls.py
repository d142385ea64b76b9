"""`agents` on an Anthropic Messages answer read whole (on Anthropic's API and Claude on Vertex AI):
each `tool_use` block decided before the agent gets it. A refused block is replaced, at its place,
by a `text` block the agent reads; the answer ends as a text answer does (`stop_reason: end_turn`)
only when every `tool_use` of it was refused. The provider's own calls (`server_tool_use`,
`mcp_tool_use`) are not the agent's: they are not decided. The usage stays as it came."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import json_loads
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall

TOOL_USE = "tool_use"


def messages_schemas(body: dict[str, Any]) -> dict[str, Any]:
    """Each client tool's `input_schema`, by its name (a server tool declares none)."""
    out: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            out[tool["name"]] = tool.get("input_schema")
    return out


def tool_use_call(name: Any, arguments: Any, call_id: Any) -> ToolCall:
    """A `tool_use` block's call: its `input` an object (none is `{}`); anything else is unread."""
    if arguments is None:
        arguments = {}
    return ToolCall(
        name if isinstance(name, str) else "unknown",
        arguments if isinstance(arguments, dict) else UNREAD,
        call_id if isinstance(call_id, str) else None,
    )


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def decided_messages_answer(content: bytes, state: AgentsCall) -> bytes | None:
    """The answer with each refused `tool_use` block replaced by its refusal's text (the same bytes
    where none was refused); None where it cannot be read."""
    try:
        answer = json_loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("content", []), list):
        return None
    blocks = answer.get("content") or []
    calls = refused = 0
    for at, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != TOOL_USE:
            continue
        calls += 1
        decision = decided_call(tool_use_call(block.get("name"), block.get("input"), block.get("id")), state)
        if decision.refusal is not None:
            refused += 1
            blocks[at] = text_block(decision.refusal)
    if not refused:
        return content
    if refused == calls and answer.get("stop_reason") == TOOL_USE:
        answer["stop_reason"] = "end_turn"
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
