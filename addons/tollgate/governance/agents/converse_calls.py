"""`agents` on a Bedrock Converse answer read whole: each `toolUse` block of its message decided
before the agent gets it. A refused call's block is replaced, in its place, by a text block the
agent reads (`Tollgate refused the call to <tool>: …`); the answer ends as a text answer does
(`stopReason: end_turn`) only when every call of it was refused. The usage stays as it came."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.bodies.json_codec import object_once
from tollgate.formats.provenance import dicts, mapping
from tollgate.governance.agents.call_state import AgentsCall, decided_call
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall

TOOL_USE = "tool_use"
END_TURN = "end_turn"


def converse_schemas(body: dict[str, Any]) -> dict[str, Any]:
    """Each declared tool's argument schema (`toolConfig.tools[].toolSpec.inputSchema.json`)."""
    out: dict[str, Any] = {}
    for tool in dicts(mapping(body.get("toolConfig")).get("tools")):
        spec = mapping(tool.get("toolSpec"))
        if isinstance(spec.get("name"), str):
            out[spec["name"]] = mapping(spec.get("inputSchema")).get("json")
    return out


def tool_call(use: Any) -> ToolCall:
    """A `toolUse` block's call; one that is not an object is `unread`."""
    if not isinstance(use, dict):
        return ToolCall("unknown", UNREAD)
    name = use["name"] if isinstance(use.get("name"), str) and use["name"] else "unknown"
    call_id = use["toolUseId"] if isinstance(use.get("toolUseId"), str) else None
    arguments = use.get("input")
    return ToolCall(name, {} if arguments is None else arguments, call_id)


def decided_converse_answer(content: bytes, state: AgentsCall) -> bytes | None:
    """The answer with each refused call's block replaced by its refusal's text (the same bytes
    where none was refused); None where it cannot be read."""
    obj = object_once(content)  # an object that repeats a key is not read
    if obj is None:
        return None
    output = obj.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    blocks = message.get("content") if isinstance(message, dict) else None
    if blocks is None:
        return None if output is not None and not isinstance(output, dict) else content
    if not isinstance(blocks, list):
        return None
    assert isinstance(message, dict)
    out: list[Any] = []
    calls = refused = 0
    for block in blocks:
        if not isinstance(block, dict) or "toolUse" not in block:
            out.append(block)
            continue
        calls += 1
        decision = decided_call(tool_call(block["toolUse"]), state)
        if decision.refusal is None:
            out.append(block)
        else:
            refused += 1
            out.append({"text": decision.refusal})
    if not refused:
        return content
    message["content"] = out
    if refused == calls and obj.get("stopReason") == TOOL_USE:
        obj["stopReason"] = END_TURN
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
