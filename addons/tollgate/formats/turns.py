"""Where a chat format keeps a conversation (`Turns`, each chat format's `turns.py`), which
`rollup:` cuts, and what they share: a turn's role and blocks, read leniently (a body that holds
something else is left as it is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Turns:
    """Where a chat format keeps a conversation: the body's list of turns, which of them are turns of
    the conversation (OpenAI's format keeps its system messages among them), whether one opens an
    exchange (a user's turn that answers no tool call: the conversation may be cut before it), and
    how a summary joins the body's system prompt."""

    key: str
    is_turn: Callable[[Any], bool]
    opens: Callable[[Any], bool]
    add_system: Callable[[dict[str, Any], str], None]


def role(turn: Any) -> Any:
    return turn.get("role") if isinstance(turn, dict) else None


def blocks(turn: Any, key: str) -> list[Any]:
    content = turn.get(key) if isinstance(turn, dict) else None
    return content if isinstance(content, list) else []


def always(_turn: Any) -> bool:
    return True
