"""A Messages conversation: its `messages`, an exchange opened by a user's turn that returns no tool
result; a summary joins its `system`."""

from __future__ import annotations

from typing import Any

from tollgate.formats.turns import Turns, always, blocks, role


def opens(turn: Any) -> bool:
    return role(turn) == "user" and not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks(turn, "content")
    )


def add_system(body: dict[str, Any], summary: str) -> None:
    system = body.get("system")
    if isinstance(system, list):
        system.append({"type": "text", "text": summary})
    else:
        body["system"] = f"{system}\n\n{summary}" if isinstance(system, str) and system else summary


TURNS = Turns("messages", always, opens, add_system)
