"""The calls an MCP server answered `input_required` (`McpRounds`): each retry that echoes the
server's `requestState` is tied to the first call, and refused when it calls something else."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# How many calls awaiting their client's answers (`input_required`) a process remembers.
MAX_ROUNDS = 10_000
# Why a retry is refused: the result it answers was another call's.
RETRY_OF_ANOTHER = "the retry answers a call of another tool, prompt or resource"


@dataclass(frozen=True, slots=True)
class Round:
    """A call a server answered `input_required`: the first call's `request_id`, and what it called."""

    request_id: str
    method: str
    target: str | None


class McpRounds:
    """The calls awaiting their client's answers, by server, caller and a SHA-256 of the
    `requestState` the server gave: each retry that echoes it is tied to the first call. Bounded:
    the oldest is forgotten first (its retry is then decided and recorded on its own)."""

    def __init__(self, limit: int = MAX_ROUNDS) -> None:
        self._limit = limit
        self._rounds: OrderedDict[tuple[str, str, str], Round] = OrderedDict()

    def asked(self, server: str, owner: str, state: str, first: Round) -> None:
        self._rounds[(server, owner, state)] = first
        self._rounds.move_to_end((server, owner, state))
        if len(self._rounds) > self._limit:
            self._rounds.popitem(last=False)

    def answering(self, server: str, owner: str, state: str) -> Round | None:
        return self._rounds.get((server, owner, state))

    def __len__(self) -> int:
        return len(self._rounds)
