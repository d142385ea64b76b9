"""Whether the caller may call each tool an MCP server's `tools/list` answer lists, as the policy
would decide a `tools/call` of it: the relay keeps the tools allowed (`formats/mcp/answers.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_input import listed_tool_input
from tollgate.governance.policy.policy import MCP_DECISION, Decision, Policy


class ToolChecks:
    """Whether the caller may call each tool a tools/list answer lists (a `tools/call` of it, as
    the policy decides): at once where the policy's cache knows, else once its worker answers."""

    def __init__(self, policy: Policy, exchange: McpExchange) -> None:
        self._policy = policy
        self._exchange = exchange
        self._known: dict[str, bool] = {}
        self._asked: dict[str, asyncio.Future[Decision]] = {}

    def __call__(self, names: list[str]) -> Callable[[str], bool] | None:
        for name in names:
            if name in self._known or name in self._asked:
                continue
            decision = self._policy.decide(MCP_DECISION, listed_tool_input(self._exchange, name))
            if isinstance(decision, Decision):
                self._known[name] = decision.allowed
            else:
                self._asked[name] = asyncio.ensure_future(decision)
        for name in names:
            if name not in self._known:
                asked = self._asked[name]
                if not asked.done():
                    return None
                self._known[name] = _allowed(asked)
        return self._known.__getitem__

    async def wait(self) -> None:
        """Until every decision asked for is made."""
        if self._asked:
            await asyncio.wait(list(self._asked.values()))


def _allowed(asked: asyncio.Future[Decision]) -> bool:
    """A decision's answer; a failed evaluation lets nothing through."""
    if asked.cancelled() or asked.exception() is not None:
        return False
    return asked.result().allowed
