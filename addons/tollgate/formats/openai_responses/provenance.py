"""Where a Responses request's text came from: `instructions`, system, developer and user messages
trusted; `function_call_output` and `custom_tool_call_output` (by `call_id`) and every other
`*_output` item outside content; the provider-run tools' calls (`web_search_call`, `mcp_call`,
`file_search_call`, `code_interpreter_call`, …) outside content with what they hold. The turns
behind `previous_response_id`, a compaction and an item reference are unseen: what follows them
may repeat outside content. An earlier response Tollgate saw (`earlier`, by its id) is read as it
saw it instead; an answer's output items continue the conversation (`continued`) the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, dicts, items, mapping

# The calls the agent runs itself (their results come back as `*_output` items): a function's by
# its name, the built-in tools the agent's own harness runs by the tool's.
_AGENT_TOOLS = {
    "function_call": None,
    "custom_tool_call": None,
    "computer_call": "computer",
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
}
# Provider-run tools declared in `tools`, by their type.
_PROVIDER_TOOL_TYPES = ("web_search", "file_search", "code_interpreter", "mcp", "image_generation", "computer")
# The provider's ask to run an MCP server's tool it calls itself, once the agent approves it.
APPROVAL_REQUEST = "mcp_approval_request"
_UNSEEN_TYPES = ("compaction", "item_reference", "compaction_summary")
_QUIET_KEYS = ("id", "type", "status", "call_id", "encrypted_content")


def agent_call(item: dict[str, Any]) -> tuple[str, Any] | None:
    """An output item the agent runs: its tool's name and its arguments (a function's JSON text,
    a custom tool's freeform input, a built-in tool's item without its ids); None for any other."""
    kind = item.get("type")
    if not isinstance(kind, str) or kind not in _AGENT_TOOLS:
        return None
    tool = _AGENT_TOOLS[kind]
    if tool is None:
        name = item.get("name")
        return (name if isinstance(name, str) and name else "unknown"), item.get(
            "arguments" if kind == "function_call" else "input"
        )
    return tool, {k: v for k, v in item.items() if k not in _QUIET_KEYS}


def asked_call(item: dict[str, Any]) -> tuple[str, Any] | None:
    """An output item that asks for a tool call the agent lets run: a call it runs itself
    (`agent_call`), or an `mcp_approval_request`, which the provider runs once the agent approves
    it (its tool's name and its arguments' JSON text). None for any other."""
    if item.get("type") == APPROVAL_REQUEST:
        name = item.get("name")
        return (name if isinstance(name, str) and name else "unknown"), item.get("arguments")
    return agent_call(item)


def _provider_name(item: dict[str, Any]) -> str:
    kind = str(item.get("type", "")).removesuffix("_call")
    if kind == "mcp" and isinstance(item.get("name"), str):
        return f"mcp:{item.get('server_label', '')}/{item['name']}"
    return kind


def read_provenance(body: dict[str, Any], earlier: Callable[[str], Provenance | None] | None = None) -> Provenance:
    """`earlier`: what Tollgate saw of a conversation up to a response, by the response's id (None
    where it saw none of it: the turns behind it are then unseen)."""
    previous = body.get("previous_response_id")
    seen = earlier(previous) if earlier is not None and isinstance(previous, str) and previous else None
    built = ProvenanceBuilder(seen)
    for tool in items(body.get("tools")):
        kind = mapping(tool).get("type")
        if isinstance(kind, str) and kind.startswith(_PROVIDER_TOOL_TYPES):
            built.provider_tool(kind)
    built.trusted(body.get("instructions"))
    if (previous is not None and seen is None) or body.get("conversation") is not None:
        built.unseen()
    source = body.get("input")
    if isinstance(source, str):
        built.trusted(source)
    _read_items(built, dicts(source))
    return built.build()


def continued(provenance: Provenance, output: Any) -> Provenance:
    """A conversation's provenance once an answer's output items (as the agent got them) follow it."""
    built = ProvenanceBuilder(provenance)
    _read_items(built, dicts(output))
    return built.build()


def _read_items(built: ProvenanceBuilder, source: list[dict[str, Any]]) -> None:
    for item in source:
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            if item.get("role") in ("system", "developer", "user"):
                built.trusted(item.get("content"))
            else:
                built.assistant(item.get("content"))
        elif (call := agent_call(item)) is not None:
            built.call(item.get("call_id"), call[0], call[1])
        elif isinstance(kind, str) and kind.endswith("_output"):
            built.result(item.get("call_id"), item.get("name"), item.get("output"))
        elif kind in _UNSEEN_TYPES:
            built.unseen()
        elif kind == "reasoning":
            built.assistant(item.get("summary"))
        elif isinstance(kind, str) and kind.endswith(("_call", "_list_tools", "_approval_request")):
            # a tool the provider ran (or was asked to): what it was given and what it read
            held = {k: v for k, v in item.items() if k not in _QUIET_KEYS}
            built.result(None, _provider_name(item), held, provider=True)
        elif kind is not None:  # an item this does not know: not trusted
            built.result(None, None, {k: v for k, v in item.items() if k not in _QUIET_KEYS})
