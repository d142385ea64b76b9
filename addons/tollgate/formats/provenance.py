"""Where a request's text came from, the same for every format: trusted text (the system prompt and
the user's own text blocks) and outside content (every tool result, attributed to its tool; the
results of tools the provider runs; and the assistant's own text and call arguments once outside
content came before them). Each chat format's `provenance.py` reads its body into a `Provenance`
with a `ProvenanceBuilder`; reading is lenient, since a body this cannot read is judged elsewhere."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"  # a result whose tool neither its call's id nor a name field tells
ASSISTANT = "assistant"  # the assistant's own text and arguments, once outside content came before them

# Content blocks that carry bytes, not text: nothing in them is compared.
_BINARY_TYPES = frozenset(
    ("image", "image_url", "input_image", "input_audio", "input_file", "audio", "file", "document", "video")
)
_BINARY_KEYS = frozenset(("image", "inlineData", "inline_data", "fileData", "file_data", "document", "video", "audio"))
_TEXT_TYPES = frozenset((None, "text", "input_text", "output_text"))


@dataclass(frozen=True, slots=True)
class OutsidePiece:
    """One piece of outside content: the tool it came from (a name, `assistant` or `unknown`) and its text."""

    tool: str
    text: str


@dataclass(frozen=True, slots=True)
class Provenance:
    trusted: list[str] = field(default_factory=list)
    outside: list[OutsidePiece] = field(default_factory=list)
    provider_tools: list[str] = field(default_factory=list)
    # What a conversation continued from here needs: its calls' tools by id (a later result names
    # only the id), and whether outside content came (the assistant's later text is outside then).
    calls: dict[str, str] = field(default_factory=dict)
    outside_came: bool = False

    def size(self) -> int:
        """Its text's length, in characters: what keeping it costs."""
        return (
            sum(len(t) for t in self.trusted)
            + sum(len(p.tool) + len(p.text) for p in self.outside)
            + sum(len(k) + len(v) for k, v in self.calls.items())
            + sum(len(t) for t in self.provider_tools)
        )


_DEEP = 32  # past this depth a value's strings are gathered without recursion: a body can nest deeply


def text_of(value: Any, depth: int = 0) -> str:
    """The text a result or a message's content carries: strings as they are, text blocks by their
    text, structured values as JSON (decoded again before indexing), bytes (images, files) left out."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if depth > _DEEP:
            return _strings(value)
        return "\n".join(t for t in (text_of(v, depth + 1) for v in value) if t)
    if isinstance(value, dict):
        if depth > _DEEP:
            return _strings(value)
        if isinstance(value.get("text"), str) and value.get("type") in _TEXT_TYPES:
            return value["text"]
        if value.get("type") in _BINARY_TYPES or _BINARY_KEYS & value.keys():
            return ""
        if "json" in value and len(value) == 1:
            return _dumps(value["json"])
    return _dumps(value)


def _plain_text(value: Any, depth: int = 0) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and depth < _DEEP:
        return "\n".join(t for t in (_plain_text(v, depth + 1) for v in value) if t)
    if isinstance(value, dict) and isinstance(value.get("text"), str) and value.get("type") in _TEXT_TYPES:
        return value["text"]
    return ""


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # nested too deeply to write: its strings, gathered
        return _strings(value)


def _strings(value: Any) -> str:
    """Every string and number a value holds, keys too, one a line, without recursion."""
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.extend(k for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            out.append(node)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            out.append(str(node))
    return "\n".join(out)


class ProvenanceBuilder:
    """Collects a request's text in the order the conversation holds it: once any outside content
    is read, the assistant's later text and call arguments are outside content too (the model may
    be repeating what it read)."""

    def __init__(self, earlier: Provenance | None = None) -> None:
        """`earlier`: the turns this conversation continues, as Tollgate saw them."""
        self._trusted: list[str] = list(earlier.trusted) if earlier else []
        self._outside: list[OutsidePiece] = list(earlier.outside) if earlier else []
        self._provider_tools: list[str] = list(earlier.provider_tools) if earlier else []
        self._calls: dict[str, str] = dict(earlier.calls) if earlier else {}
        self.seen_outside = earlier.outside_came if earlier else False

    def trusted(self, value: Any) -> None:
        """Trusted text: strings and text blocks only (what else a body holds there is no one's text)."""
        text = _plain_text(value)
        if text:
            self._trusted.append(text)

    def assistant(self, value: Any) -> None:
        """The assistant's own text: outside content once outside content came before it."""
        if self.seen_outside:
            self._add(ASSISTANT, value)

    def call(self, call_id: Any, name: Any, arguments: Any, *, provider: bool = False) -> None:
        """An earlier tool call: remembered by its id (its result names it), its arguments outside
        content once outside content came before them."""
        if isinstance(name, str) and name:
            if isinstance(call_id, str) and call_id:
                self._calls[call_id] = name
            if provider:
                self.provider_tool(name)
        if self.seen_outside:
            self._add(ASSISTANT, arguments)

    def result(self, call_id: Any, name: Any, value: Any, *, provider: bool = False) -> None:
        """A tool's result, attributed by its call's id in this request, else by the format's name field."""
        tool = self._calls.get(call_id) if isinstance(call_id, str) else None
        tool = tool or (name if isinstance(name, str) and name else UNKNOWN)
        if provider:
            self.provider_tool(tool)
        self.seen_outside = True
        self._add(tool, value)

    def provider_tool(self, name: str) -> None:
        if name not in self._provider_tools:
            self._provider_tools.append(name)

    def unseen(self) -> None:
        """Turns Tollgate cannot see (an earlier response by its id, an opaque compaction): whatever
        follows may repeat outside content."""
        self.seen_outside = True

    def _add(self, tool: str, value: Any) -> None:
        text = text_of(value)
        if text:
            self._outside.append(OutsidePiece(tool, text))

    def build(self) -> Provenance:
        return Provenance(
            list(self._trusted), list(self._outside), list(self._provider_tools), dict(self._calls), self.seen_outside
        )


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list (anything else in it carries no text of its own)."""
    return [v for v in items(value) if isinstance(v, dict)]
