"""A generateContent conversation: its `contents`, an exchange opened by a user's turn (or one with
no role) that answers no function call; a summary joins its system instruction."""

from __future__ import annotations

from typing import Any

from tollgate.formats.turns import Turns, always, blocks, role


def opens(turn: Any) -> bool:
    return role(turn) in ("user", None) and not any(
        isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in blocks(turn, "parts")
    )


def add_system(body: dict[str, Any], summary: str) -> None:
    key = "system_instruction" if "system_instruction" in body else "systemInstruction"
    system = body.get(key)
    if isinstance(system, dict) and isinstance(system.get("parts"), list):
        system["parts"].append({"text": summary})
    else:
        body[key] = {"parts": [{"text": summary}]}


TURNS = Turns("contents", always, opens, add_system)
