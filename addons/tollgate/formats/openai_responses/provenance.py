"""Where a Responses request's text came from: `instructions`, system, developer and user messages
trusted; `function_call_output` and `custom_tool_call_output` (by `call_id`) and every other
`*_output` item outside content; the provider-run tools' calls (`web_search_call`, `mcp_call`,
`file_search_call`, `code_interpreter_call`, …) outside content with what they hold. The turns
behind `previous_response_id`, a compaction and an item reference are unseen: what follows them
may repeat outside content."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, dicts, items, mapping

# The calls the agent runs itself: their results come back as `*_output` items.
_AGENT_CALLS = {"function_call": "arguments", "custom_tool_call": "input"}
# Provider-run tools declared in `tools`, by their type.
_PROVIDER_TOOL_TYPES = ("web_search", "file_search", "code_interpreter", "mcp", "image_generation", "computer")
_UNSEEN_TYPES = ("compaction", "item_reference", "compaction_summary")
_QUIET_KEYS = ("id", "type", "status", "call_id", "encrypted_content")


def _provider_name(item: dict[str, Any]) -> str:
    kind = str(item.get("type", "")).removesuffix("_call")
    if kind == "mcp" and isinstance(item.get("name"), str):
        return f"mcp:{item.get('server_label', '')}/{item['name']}"
    return kind


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    for tool in items(body.get("tools")):
        kind = mapping(tool).get("type")
        if isinstance(kind, str) and kind.startswith(_PROVIDER_TOOL_TYPES):
            built.provider_tool(kind)
    built.trusted(body.get("instructions"))
    if body.get("previous_response_id") is not None or body.get("conversation") is not None:
        built.unseen()
    source = body.get("input")
    if isinstance(source, str):
        built.trusted(source)
    for item in dicts(source):
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            if item.get("role") in ("system", "developer", "user"):
                built.trusted(item.get("content"))
            else:
                built.assistant(item.get("content"))
        elif kind in _AGENT_CALLS:
            built.call(item.get("call_id"), item.get("name"), item.get(_AGENT_CALLS[kind]))
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
    return built.build()
