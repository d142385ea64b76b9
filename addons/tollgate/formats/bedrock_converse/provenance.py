"""Where a Converse request's text came from: the `system` text blocks and the user's text blocks
trusted; `toolResult` blocks (by `toolUseId`) outside content, their text and JSON alike."""

from __future__ import annotations

from typing import Any

from tollgate.formats.provenance import Provenance, ProvenanceBuilder, dicts, items, mapping
from tollgate.formats.turns import role


def _block(built: ProvenanceBuilder, block: dict[str, Any], by_user: bool) -> None:
    if isinstance(block.get("text"), str):
        if by_user:
            built.trusted(block["text"])
        else:
            built.assistant(block["text"])
    elif "toolUse" in block:
        use = mapping(block["toolUse"])
        built.call(use.get("toolUseId"), use.get("name"), use.get("input"))
    elif "toolResult" in block:
        result = mapping(block["toolResult"])
        built.result(result.get("toolUseId"), None, result.get("content"))
    elif "reasoningContent" in block:
        built.assistant(mapping(mapping(block["reasoningContent"]).get("reasoningText")).get("text"))
    elif "guardContent" in block:
        text = mapping(mapping(block["guardContent"]).get("text")).get("text")
        if by_user:
            built.trusted(text)
        else:
            built.assistant(text)


def read_provenance(body: dict[str, Any]) -> Provenance:
    built = ProvenanceBuilder()
    for block in dicts(body.get("system")):
        built.trusted(block.get("text") or mapping(mapping(block.get("guardContent")).get("text")).get("text"))
    for message in items(body.get("messages")):
        by_user = role(message) == "user"
        for block in items(mapping(message).get("content")):
            _block(built, mapping(block), by_user)
    return built.build()
