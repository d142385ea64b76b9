"""A Chat Completions conversation: its `messages`, the system and developer messages among them
not turns of it; a summary goes in as a system message before the first turn."""

from __future__ import annotations

from typing import Any

from tollgate.formats.turns import Turns, role


def is_turn(turn: Any) -> bool:
    return role(turn) not in ("system", "developer")


def add_system(body: dict[str, Any], summary: str) -> None:
    messages = body["messages"]
    kind = next((m["role"] for m in messages if not is_turn(m)), "system")
    first = next((i for i, m in enumerate(messages) if is_turn(m)), len(messages))
    messages.insert(first, {"role": kind, "content": summary})


TURNS = Turns("messages", is_turn, lambda t: role(t) == "user", add_system)
