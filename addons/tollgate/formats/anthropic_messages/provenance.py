"""Where a Messages request's text came from (the same body on Bedrock and Vertex): the system prompt
and the user's text blocks trusted; `tool_result` blocks (by `tool_use_id`), search results the
application passes, and the server tools' results (`web_search_tool_result`, `mcp_tool_result`, …)
outside content; `server_tool_use` and `mcp_tool_use` name a tool the provider runs."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, items, mapping
from tollgate.formats.turns import role

_PROVIDER_CALLS = ("server_tool_use", "mcp_tool_use")
# The tools Anthropic runs itself (the others, `bash_…` and `text_editor_…` too, the client runs).
_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution", "tool_search")


def _block(built: ProvenanceBuilder, block: dict[str, Any], by_user: bool) -> None:
    kind = block.get("type")
    if kind == "text":
        if by_user:
            built.trusted(block.get("text"))
        else:
            built.assistant(block.get("text"))
    elif kind == "tool_use":
        built.call(block.get("id"), block.get("name"), block.get("input"))
    elif kind in _PROVIDER_CALLS:
        name = block.get("name")
        if kind == "mcp_tool_use" and isinstance(name, str):
            name = f"mcp:{block.get('server_name', '')}/{name}"
        built.call(block.get("id"), name, block.get("input"), provider=True)
    elif kind == "tool_result":
        built.result(block.get("tool_use_id"), None, block.get("content"))
    elif isinstance(kind, str) and kind.endswith("_tool_result"):
        built.result(block.get("tool_use_id"), kind.removesuffix("_tool_result"), block.get("content"), provider=True)
    elif kind == "search_result":
        built.result(None, "search_result", [block.get("title"), block.get("source"), block.get("content")])
    elif kind in ("thinking", "redacted_thinking"):
        built.assistant(block.get("thinking"))
    elif kind not in ("image", "document", "container_upload"):  # a block this does not know: not trusted
        built.result(None, None, {k: v for k, v in block.items() if k != "type"})


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    for tool in items(body.get("tools")):
        kind = mapping(tool).get("type")
        if isinstance(kind, str) and kind.startswith(_SERVER_TOOLS):  # `web_search_20250305`, …
            built.provider_tool(str(mapping(tool).get("name", kind)))
    for server in items(body.get("mcp_servers")):
        built.provider_tool(f"mcp:{mapping(server).get('name', '')}")
    built.trusted(body.get("system"))
    for message in items(body.get("messages")):
        by_user = role(message) == "user"
        content = mapping(message).get("content")
        if isinstance(content, str):
            if by_user:
                built.trusted(content)
            else:
                built.assistant(content)
        for block in items(content):
            _block(built, mapping(block), by_user)
    return built.build()
