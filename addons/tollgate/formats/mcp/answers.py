"""What an MCP server's answer to a POST says of each request: an `error`, or a result whose
`isError` is true, read from a JSON body or from server-sent events as they pass (never kept). And
a `tools/list` result without the tools a caller may not call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.json_codec import encode_json, parse_json
from tollgate.formats.mcp.messages import RequestId

# A JSON answer is kept up to this size to read its outcomes; past it they are unknown.
MAX_JSON_ANSWER = 16 * 1024 * 1024


def is_sse(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "text/event-stream"


def responses_in(value: Any) -> Iterator[dict[str, Any]]:
    """The JSON-RPC responses in one message or a batch of them (a server's requests and
    notifications left out)."""
    for message in value if isinstance(value, list) else (value,):
        if isinstance(message, dict) and "method" not in message and _usable_id(message.get("id")):
            yield message


def is_error(response: dict[str, Any]) -> bool:
    """Whether a response reports a failure: a JSON-RPC error, or a tool's result marked isError."""
    if "error" in response:
        return True
    result = response.get("result")
    return isinstance(result, dict) and result.get("isError") is True


def _usable_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


class AnswerReader:
    """Passes each piece of an answer on unchanged while reading each response's outcome
    (`outcomes`: by request id, whether it failed). Server-sent events are framed as they pass;
    a JSON body is kept (to MAX_JSON_ANSWER) and read at its end."""

    def __init__(self, sse: bool) -> None:
        self.outcomes: dict[RequestId, bool] = {}
        self._framer = SSEFramer() if sse else None
        self._kept: list[bytes] = []
        self._kept_size = 0

    def __call__(self, chunk: bytes) -> bytes:
        framer = self._framer
        if framer is not None:
            for block in framer.feed(chunk):
                self._read_event(block)
        elif chunk:
            self._kept_size += len(chunk)
            if self._kept_size <= MAX_JSON_ANSWER:
                self._kept.append(chunk)
            else:
                self._kept = []
        else:  # the end
            self._read_json(b"".join(self._kept))
            self._kept = []
        return chunk

    def _read_event(self, block: bytes) -> None:
        event = parse_sse_block(block)
        if event is not None:
            self._read(parse_any(event.data.encode()))

    def _read_json(self, body: bytes) -> None:
        self._read(parse_any(body))

    def _read(self, value: Any) -> None:
        for response in responses_in(value):
            self.outcomes[response["id"]] = is_error(response)


def parse_any(body: bytes) -> Any:
    """A JSON value (an object or a batch), or None."""
    if body[:1] == b"[":
        wrapped = parse_json(b'{"batch":' + body + b"}")
        return None if wrapped is None else wrapped.get("batch")
    return parse_json(body)


def read_whole(body: bytes, sse: bool) -> dict[RequestId, bool]:
    """The outcomes of an answer read whole."""
    reader = AnswerReader(sse)
    reader(body)
    reader(b"")
    return reader.outcomes


def tools_listed(value: Any, ids: set[RequestId]) -> list[str]:
    """The names of the tools a `tools/list` answer (responses to `ids`) lists."""
    names: list[str] = []
    for response in responses_in(value):
        if response["id"] in ids:
            names.extend(name for _, name in _tools(response))
    return names


def _tools(response: dict[str, Any]) -> Iterator[tuple[int, str]]:
    result = response.get("result")
    tools = result.get("tools") if isinstance(result, dict) else None
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                yield i, tool["name"]


def without_tools(body: bytes, sse: bool, ids: set[RequestId], allowed: Callable[[str], bool]) -> bytes:
    """A whole answer with the responses to `ids` (tools/list requests) listing only the tools
    `allowed` lets through; a tool without a name is left out too. The rest is as it came."""

    def rewrite(value: Any) -> Any:
        changed = False
        for response in responses_in(value):
            if response["id"] not in ids:
                continue
            result = response.get("result")
            if not isinstance(result, dict) or not isinstance(tools := result.get("tools"), list):
                continue
            kept = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str) and allowed(t["name"])]
            if len(kept) != len(tools):
                result["tools"] = kept
                changed = True
        return value if changed else None

    if not sse:
        value = parse_any(body)
        new = rewrite(value)
        return body if new is None else encode_json(new)
    framer = SSEFramer()
    blocks = framer.feed(body + b"\n\n" if not body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) else body)
    out: list[bytes] = []
    for block in blocks:
        event = parse_sse_block(block)
        new = None if event is None else rewrite(parse_any(event.data.encode()))
        if new is None:
            out.append(block + b"\n\n")
        else:
            name = f"event: {event.event}\n".encode() if event is not None and event.event else b""
            ids_line = b"".join(line + b"\n" for line in block.split(b"\n") if line.startswith(b"id:"))
            out.append(name + ids_line + b"data: " + encode_json(new) + b"\n\n")
    return b"".join(out)
