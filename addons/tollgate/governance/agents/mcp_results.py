"""An MCP server's `tools/call` results read as outside content: the injection signals over every
string a result (or an error) holds, counted per request (kind → count), never the text. Plain
logic on the JSON-RPC messages the answer's relay reads (`AnswerRelay.results`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tollgate.formats.mcp.answers import responses_in
from tollgate.formats.mcp.messages import RequestId
from tollgate.governance.agents.injection import InjectionSignals

# Nesting read at most: a result deeper than this is read to it (the JSON parser bounds it too).
MAX_DEPTH = 64


def strings_of(value: Any) -> Iterator[str]:
    """Every string a JSON value holds, its keys too (a structured result may carry text there)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            yield node
        elif depth < MAX_DEPTH and isinstance(node, dict):
            for key, item in node.items():
                if isinstance(key, str):
                    yield key
                stack.append((item, depth + 1))
        elif depth < MAX_DEPTH and isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


class McpResultSignals:
    """Reads each response to one of `calls` (the `tools/call` requests of a POST, by id) as it
    passes: its findings in `found` (`{}` when read and clean). `on_found` is told of a response's
    findings when there are some."""

    def __init__(self, signals: InjectionSignals, calls: Mapping[RequestId, str]) -> None:
        self._signals = signals
        self._calls = dict(calls)
        self.found: dict[RequestId, dict[str, int]] = {}

    def __call__(self, value: Any) -> dict[str, int]:
        """The findings of the responses to `calls` in one message (or batch), added up."""
        total: dict[str, int] = {}
        for response in responses_in(value):
            rid = response["id"]
            if rid not in self._calls:
                continue
            said = response.get("result", response.get("error"))
            text = "\n\n".join(strings_of(said))
            found = self._signals.signals(text) if text else {}
            into = self.found.setdefault(rid, {})
            for kind, n in found.items():
                into[kind] = into.get(kind, 0) + n
                total[kind] = total.get(kind, 0) + n
        return total
