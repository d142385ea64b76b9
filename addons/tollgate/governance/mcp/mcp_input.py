"""What the policy decides an MCP server's request on: the `input` `data.tollgate.mcp.deny` reads
for one JSON-RPC request of an exchange, and for a `tools/call` its caller would make (the tools
a tools/list answer lists)."""

from __future__ import annotations

from typing import Any

from tollgate.formats.mcp.messages import McpRequest
from tollgate.governance.mcp.mcp_exchange import McpExchange


def request_input(exchange: McpExchange, request: McpRequest) -> dict[str, Any]:
    """The `input` `data.tollgate.mcp.deny` decides one request on."""
    caller = exchange.caller
    document: dict[str, Any] = {
        "client": {"name": caller.client, "groups": list(caller.groups), "auth": caller.auth},
        "mcp": {
            "server": exchange.server.name,
            "method": request.method,
            "tool": request.tool,
            "resource_scheme": request.resource_scheme,
            "prompt": request.prompt,
            "session": exchange.session,
            "protocol_version": exchange.protocol_version,
        },
        "findings": None if exchange.findings is None else dict(exchange.findings),
    }
    if caller.identity is not None:
        document["identity"] = caller.identity.policy_input()
    return document


def listed_tool_input(exchange: McpExchange, tool: str) -> dict[str, Any]:
    """The input a `tools/call` of `tool` by the exchange's caller would be decided on."""
    return request_input(exchange, McpRequest("tools/call", 0, tool=tool))
