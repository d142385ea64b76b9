"""An answer read whole with its tool calls decided by `agents` (`AgentsFormat.decided_whole`),
where the policy decides tool calls too: read first to note the calls it is to be asked about,
and decided once it has answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tollgate.calls.call import Call
from tollgate.governance.agents.call_state import AgentsCall, asked, probed


def decided_whole(call: Call, content: bytes) -> bytes | Awaitable[bytes | None] | None:
    """An answer read whole with its tool calls decided (`AgentsFormat.decided_whole`); where the
    policy is to be asked about some, read first to note them, and decided once it has answered."""
    state = call.agents
    assert state is not None and state.format is not None  # set with the state: never served undecided
    decide = state.format.decided_whole
    if probed(lambda: decide(content, state), state):
        return _decided_once_asked(state, decide, content)
    return decide(content, state)


async def _decided_once_asked(
    state: AgentsCall, decide: Callable[[bytes, AgentsCall], bytes | None], content: bytes
) -> bytes | None:
    await asked(state)
    return decide(content, state)
