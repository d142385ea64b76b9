"""A Converse conversation: its `messages`, an exchange opened by a user's turn that returns no tool
result; a summary joins its `system` blocks."""

from __future__ import annotations

from typing import Any

from tollgate.formats.turns import Turns, always, blocks, role


def opens(turn: Any) -> bool:
    return role(turn) == "user" and not any(isinstance(b, dict) and "toolResult" in b for b in blocks(turn, "content"))


def add_system(body: dict[str, Any], summary: str) -> None:
    system = body.get("system")
    body["system"] = [*system, {"text": summary}] if isinstance(system, list) else [{"text": summary}]


TURNS = Turns("messages", always, opens, add_system)
