"""Where a Chat Completions request's text came from: system and developer messages and the user's
text parts trusted; `role: tool` (by `tool_call_id`) and the older `role: function` (by `name`)
results outside content; a search model's answers (`web_search_options`) outside content too."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, dicts, mapping
from tollgate.formats.turns import role


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    searches = body.get("web_search_options") is not None
    if searches:
        built.provider_tool("web_search")
    for message in dicts(body.get("messages")):
        kind = role(message)
        if kind in ("system", "developer", "user"):
            built.trusted(message.get("content"))
        elif kind == "assistant":
            if searches:  # a search model's answer holds what it read on the web
                built.result(None, "web_search", message.get("content"), provider=True)
            else:
                built.assistant(message.get("content"))
            for call in dicts(message.get("tool_calls")):
                function = mapping(call.get("function") or call.get("custom"))
                built.call(call.get("id"), function.get("name"), function.get("arguments", function.get("input")))
            legacy = mapping(message.get("function_call"))
            if legacy:
                built.call(None, legacy.get("name"), legacy.get("arguments"))
        elif kind == "tool":
            built.result(message.get("tool_call_id"), message.get("name"), message.get("content"))
        elif kind == "function":
            built.result(None, message.get("name"), message.get("content"))
        else:  # a role this does not know: not trusted
            built.result(None, None, message.get("content"))
    return built.build()
