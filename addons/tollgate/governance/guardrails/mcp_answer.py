"""MCP's results read by the answer guardrails (`governance/guardrails/answer.py`): a `tools/call`
result's text content, its `structuredContent`'s strings and its embedded resources' text, a
`resources/read` result's `contents[].text` and a `prompts/get` result's messages' text. Each
JSON-RPC response is one message, read whole as it comes (an event of a stream, or a JSON answer):
a value to redact is replaced inside its JSON string; a value to deny replaces the response by a
JSON-RPC error (-32001, as Tollgate's MCP refusals) with the same id, and nothing of the value goes
on. Plain code, knowing nothing of mitmproxy: the proxy's MCP relay asks here of each message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Any

from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.json_codec import encode_json, parse_json
from tollgate.formats.mcp.answers import parse_any, responses_in
from tollgate.formats.mcp.messages import PROMPTS_GET, RESOURCES_READ, TOOLS_CALL, RequestId, error_message
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.event_guard import UNREAD

# The requests whose results an answer rule reads.
READ_METHODS = frozenset((TOOLS_CALL, RESOURCES_READ, PROMPTS_GET))
# As `governance.mcp.REFUSED_CODE` (Tollgate's MCP refusals); repeated here, where no proxy code is.
REFUSED_CODE = -32001
DENIED_MESSAGE = "Tollgate refused this answer: it holds {kind}."

# A place a text sits in a result: its holder (an object or a list) and its key there.
_Place = tuple[dict[str, Any] | list[Any], str | int]


@dataclass(slots=True)
class McpRead:
    """What the guardrails made of one message: `value`, the message as it goes on (None where it
    goes as it came); by response id, what was found in its result and the kind of a value that
    replaced it by an error."""

    value: Any = None
    findings: dict[RequestId, dict[str, int]] = field(default_factory=dict)
    denied: dict[RequestId, str] = field(default_factory=dict)


def guard_message(compiled: AnswerDetectors, value: Any, ids: Container[RequestId] | None = None) -> McpRead:
    """A JSON-RPC message (or batch) read: the results of the responses to `ids` (every response
    where None) redacted in place, or a response with a value to deny replaced by an error."""
    read = McpRead()
    changed = False
    replaced: dict[int, dict[str, Any]] = {}
    for response in responses_in(value):
        rid = response["id"]
        result = response.get("result")
        if (ids is not None and rid not in ids) or not isinstance(result, dict):
            continue
        counts, denied, redacted = _guard_result(compiled, result)
        read.findings[rid] = counts
        if denied is not None:
            read.denied[rid] = denied
            replaced[id(response)] = error_message(rid, REFUSED_CODE, DENIED_MESSAGE.format(kind=denied))
        changed = changed or redacted or denied is not None
    if not changed:
        return read
    if isinstance(value, list):
        read.value = [replaced.get(id(m), m) for m in value]
    else:
        read.value = replaced.get(id(value), value)
    return read


def _guard_result(compiled: AnswerDetectors, result: dict[str, Any]) -> tuple[dict[str, int], str | None, bool]:
    """A result's texts read: what was found, the kind of a value to deny, whether one was redacted."""
    counts: Counter[str] = Counter()
    redacted = False
    for holder, key in list(_texts(result)):
        text = holder[key]  # type: ignore[index]
        scanner = compiled.scanner()
        first = scanner.feed(text.encode("utf-8", "surrogatepass"))
        rest = scanner.flush() if first.denied is None else first
        counts.update(scanner.counts)
        denied = first.denied or rest.denied
        if denied is not None:
            return dict(counts), denied, redacted
        sent = (first.text + (rest.text if rest is not first else b"")).decode("utf-8", "surrogatepass")
        if sent != text:
            holder[key] = sent  # type: ignore[index]
            redacted = True
    return dict(counts), None, redacted


def _texts(result: dict[str, Any]) -> Iterator[_Place]:
    """Where a result's texts are: content items (tools/call), `structuredContent`'s strings,
    `contents[].text` (resources/read), messages' content (prompts/get)."""
    for item in _list(result.get("content")):
        yield from _content_texts(item)
    structured = result.get("structuredContent")
    if isinstance(structured, (dict, list)):
        yield from _strings(structured)
    for item in _list(result.get("contents")):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            yield item, "text"
    for message in _list(result.get("messages")):
        content = message.get("content") if isinstance(message, dict) else None
        for item in content if isinstance(content, list) else [content]:
            yield from _content_texts(item)


def _content_texts(item: Any) -> Iterator[_Place]:
    """A content block's text: a text block's, an embedded resource's."""
    if not isinstance(item, dict):
        return
    if isinstance(item.get("text"), str):
        yield item, "text"
    resource = item.get("resource")
    if isinstance(resource, dict) and isinstance(resource.get("text"), str):
        yield resource, "text"


def _strings(node: dict[str, Any] | list[Any]) -> Iterator[_Place]:
    """Every string value in a JSON value, however deep (its keys are the server's schema's)."""
    stack: list[dict[str, Any] | list[Any]] = [node]
    while stack:
        holder = stack.pop()
        keys: Any = holder.keys() if isinstance(holder, dict) else range(len(holder))
        for key in keys:
            value = holder[key]
            if isinstance(value, str):
                yield holder, key
            elif isinstance(value, (dict, list)):
                stack.append(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def denied_event(kind: str) -> bytes:
    """What an MCP stream that cannot be read ends with: a JSON-RPC error (no id: its request is
    not known here)."""
    error = error_message(None, REFUSED_CODE, DENIED_MESSAGE.format(kind=kind))
    return b"event: message\ndata: " + encode_json(error) + b"\n\n"


class McpAnswerGuard:
    """An MCP server's event stream read (`tollgate scan --answer`), every response's result as
    the proxy reads it: each event goes on as it came, but for one whose result is redacted
    (written anew) or denied (its response replaced by a JSON-RPC error). The stream goes on after
    a denied response (a batch's others); `denied` names the first kind denied."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        self._compiled = compiled
        self._framer = SSEFramer()
        self._counts: Counter[str] = Counter()
        self.denied: str | None = None
        self._unread = False  # an event that is no JSON-RPC message ended it

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(block) for block in self._framer.feed(chunk))

    def flush(self) -> bytes:
        """The last event, not ended by a blank line: read all the same (as the relay does)."""
        return b"".join(self._event(block) for block in self._framer.feed(b"\n\n") if block.strip())

    def _event(self, block: bytes) -> bytes:
        if self._unread:
            return b""
        event = parse_sse_block(block)
        value = None if event is None else parse_any(event.data.encode())
        if value is None and event is not None and event.data.strip():
            # What cannot be read does not go on, nor anything after it (as the relay ends it).
            self._unread, self.denied = True, self.denied or UNREAD
            return denied_event(UNREAD)
        if value is None:
            return block + b"\n\n"
        read = guard_message(self._compiled, value)
        self._noted(read)
        if read.value is None:
            return block + b"\n\n"
        lines = [line for line in block.split(b"\n") if line.startswith((b"event:", b"id:", b"retry:"))]
        return b"".join(line + b"\n" for line in lines) + b"data: " + encode_json(read.value) + b"\n\n"

    def _noted(self, read: McpRead) -> None:
        for found in read.findings.values():
            self._counts.update(found)
        if self.denied is None and read.denied:
            self.denied = next(iter(read.denied.values()))


def guard_mcp_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """An MCP server's JSON answer read whole: the body as it goes on (redacted, or its denied
    responses replaced by errors), the first kind denied, and the counts."""
    value = parse_any(body) if body[:1] == b"[" else parse_json(body)
    if value is None:
        return body, None, {}
    read = guard_message(compiled, value)
    counts: Counter[str] = Counter()
    for found in read.findings.values():
        counts.update(found)
    denied = next(iter(read.denied.values()), None)
    return (body if read.value is None else encode_json(read.value)), denied, dict(counts)
