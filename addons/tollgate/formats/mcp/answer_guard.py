"""What an MCP server sends a client, read by the answer guardrails (`governance/guardrails/answer.py`):
every string of every JSON-RPC message, its keys too, wherever it sits (a result's content of any
type, `structuredContent`, `_meta`, annotations, an error's message and data, a notification's
params, a server's own request such as `sampling/createMessage`). Each message is read whole as it
comes (an event of a stream, or a JSON answer): a value to redact is replaced inside its JSON
string; a value to deny replaces a response by a JSON-RPC error (-32001, as Tollgate's MCP
refusals) with the same id, and drops any other message (a notification, a server's request);
nothing of the value goes on. Plain code, knowing nothing of mitmproxy: the proxy's MCP relay asks
here of each message."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate.formats.answer_reading.scanning import UNREAD, AnswerFormat, Scanners, Unpaired, scan_whole
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.formats.mcp.answers import parse_any, responses_in
from tollgate.formats.mcp.messages import RequestId, error_message

# As `governance.mcp.REFUSED_CODE` (Tollgate's MCP refusals); repeated here, where no proxy code is.
REFUSED_CODE = -32001
DENIED_MESSAGE = "Tollgate refused this answer: it holds {kind}."
# A message's members that say what it is: a value there cannot be redacted (the client would not
# know the message), only denied.
_FRAME = frozenset(("jsonrpc", "id", "method"))
# An event's lines besides its data as the MCP SDKs' servers write them: nothing to read there.
_PLAIN_LINES = frozenset((b"", b"event: message", b"event:message"))


@dataclass(slots=True)
class McpRead:
    """What the guardrails made of one message (or batch): `value`, what goes on (None where it
    goes as it came); `dropped`, nothing goes on (a notification or a server's request denied,
    each of a batch). By the id of the response it was found in (None: a message that answers no
    request), what was found, and the kind of a value that had it replaced or dropped."""

    value: Any = None
    dropped: bool = False
    findings: dict[RequestId | None, dict[str, int]] = field(default_factory=dict)
    denied: dict[RequestId | None, str] = field(default_factory=dict)


def guard_message(compiled: Scanners, value: Any) -> McpRead:
    """A JSON-RPC message (or batch) read, every string of it: redacted in place, or a message
    with a value to deny replaced by an error (a response) or dropped (any other). Raises
    `Unpaired` where a string of it is no text (a surrogate not paired)."""
    read = McpRead()
    batch = isinstance(value, list)
    answered = {id(r): r["id"] for r in responses_in(value)}
    kept: list[Any] = []
    changed = False
    for message in value if batch else (value,):
        rid = answered.get(id(message))
        if _clean(compiled, message):
            read.findings.setdefault(rid, {})
            kept.append(message)
            continue
        counts, denied, redacted = _guard_strings(compiled, message)
        found = read.findings.setdefault(rid, {})
        for kind, n in counts.items():
            found[kind] = found.get(kind, 0) + n
        if denied is None:
            kept.append(message)
            changed = changed or redacted
            continue
        read.denied.setdefault(rid, denied)
        changed = True
        if rid is not None:
            kept.append(error_message(rid, REFUSED_CODE, DENIED_MESSAGE.format(kind=denied)))
    if changed:
        read.dropped = not kept
        read.value = kept if batch else (kept[0] if kept else None)
    return read


def _clean(compiled: Scanners, message: Any) -> bool:
    """Whether a message holds nothing a rule finds: its JSON read once, as a request's body is
    (escapes, keys and all). Most messages are; only the others are read string by string."""
    try:
        written = orjson.dumps(message)
    except TypeError:  # a lone surrogate: read string by string
        return False
    _, found = compiled.engine.scan(written, True)
    actions = compiled.actions
    return not any(kind in actions for kind, _, _ in found)


def lines_hold(compiled: Scanners, block: bytes) -> bool:
    """Whether an event's lines other than its data (`block`, LF line ends: its name, its id, a
    comment, a field unknown) hold a value a rule redacts or denies: a raw client reads them too,
    and they are not JSON to redact inside, so such an event is not sent (it stops as unread)."""
    lines = b"\n".join(line for line in block.split(b"\n") if not line.startswith(b"data:") and line != b"data")
    if lines in _PLAIN_LINES:
        return False
    _, found = compiled.engine.scan(lines, False)
    return any(compiled.actions.get(kind) in ("deny", "redact") for kind, _, _ in found)


def _guard_strings(compiled: Scanners, message: Any) -> tuple[dict[str, int], str | None, bool]:
    """Every string of a message read, its keys too, however deep: what was found, the kind of a
    value to deny (then the message is left half read, to be dropped), whether one was redacted
    (in place)."""
    counts: Counter[str] = Counter()
    redacted = False
    stack: list[tuple[Any, bool]] = [(message, True)]
    while stack:
        node, top = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    sent, denied = _scan(compiled, item, counts, False)
                    if denied is not None:
                        return dict(counts), denied, redacted
                    if sent is not item:
                        node[i], redacted = sent, True
                elif isinstance(item, (dict, list)):
                    stack.append((item, False))
            continue
        if not isinstance(node, dict):
            if isinstance(node, str):  # a batch element that is a bare string
                _, denied = _scan(compiled, node, counts, True)
                if denied is not None:
                    return dict(counts), denied, redacted
            continue
        renamed = False
        items = list(node.items())
        for i, (key, item) in enumerate(items):
            frame = top and key in _FRAME
            name, denied = _scan(compiled, key, counts, frame)
            sent = item
            if denied is None and isinstance(item, str):
                sent, denied = _scan(compiled, item, counts, frame)
            elif isinstance(item, (dict, list)):
                stack.append((item, False))
            if denied is not None:
                return dict(counts), denied, redacted
            if name is not key or sent is not item:
                items[i], renamed = (name, sent), True
        if renamed:
            rewritten = dict(items)
            if len(rewritten) != len(items):  # two keys redacted alike: one value would be lost
                kind = next(k for k in counts if compiled.actions.get(k) == "redact")
                return dict(counts), kind, redacted
            node.clear()
            node.update(rewritten)
            redacted = True
    return dict(counts), None, redacted


def _scan(compiled: Scanners, text: str, counts: Counter[str], frame: bool) -> tuple[str, str | None]:
    """A string read: what goes on (the string itself where unchanged) and the kind of a value to
    deny. In a member that says what the message is (`frame`), a value to redact is denied."""
    read = scan_whole(compiled, text)
    counts.update(read.counts)
    if read.denied is not None:
        return text, read.denied
    if read.text == text:
        return text, None
    if frame:
        return text, next(k for k in read.counts if compiled.actions.get(k) == "redact")
    return read.text, None


def denied_event(kind: str) -> bytes:
    """What an MCP stream that cannot be read ends with: a JSON-RPC error (no id: its request is
    not known here)."""
    error = error_message(None, REFUSED_CODE, DENIED_MESSAGE.format(kind=kind))
    return b"event: message\ndata: " + encode_json(error) + b"\n\n"


class McpAnswerGuard:
    """An MCP server's event stream read (`tollgate scan --answer`), every message as the proxy
    reads it: each event goes on as it came, but for one redacted (written anew) or denied (a
    response replaced by a JSON-RPC error, any other message dropped). The stream goes on after a
    denied message (a batch's others); `denied` names the first kind denied."""

    def __init__(self, compiled: Scanners) -> None:
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
        if (value is None and event is not None and event.data.strip()) or lines_hold(self._compiled, block):
            return self._ended_unread()
        if value is None:
            return block + b"\n\n"
        try:
            read = guard_message(self._compiled, value)
        except Unpaired:
            return self._ended_unread()
        self._noted(read)
        if read.dropped:
            return b""
        if read.value is None:
            return block + b"\n\n"
        lines = [line for line in block.split(b"\n") if line.startswith((b"event:", b"id:", b"retry:"))]
        return b"".join(line + b"\n" for line in lines) + b"data: " + encode_json(read.value) + b"\n\n"

    def _ended_unread(self) -> bytes:
        """What cannot be read does not go on, nor anything after it (as the relay ends it)."""
        self._unread, self.denied = True, self.denied or UNREAD
        return denied_event(UNREAD)

    def _noted(self, read: McpRead) -> None:
        for found in read.findings.values():
            self._counts.update(found)
        if self.denied is None and read.denied:
            self.denied = next(iter(read.denied.values()))


def guard_mcp_json(compiled: Scanners, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """An MCP server's JSON answer read whole: the body as it goes on (redacted, or its denied
    responses replaced by errors, nothing where all it held was dropped), the first kind denied,
    and the counts."""
    value = parse_any(body) if body[:1] == b"[" else parse_json(body)
    if value is None:
        return body, None, {}
    read = guard_message(compiled, value)
    counts: Counter[str] = Counter()
    for found in read.findings.values():
        counts.update(found)
    denied = next(iter(read.denied.values()), None)
    if read.dropped:
        return encode_json(error_message(None, REFUSED_CODE, DENIED_MESSAGE.format(kind=denied))), denied, dict(counts)
    return (body if read.value is None else encode_json(read.value)), denied, dict(counts)


def is_mcp(first: Any) -> bool:
    """Whether a saved answer's first message is MCP's: JSON-RPC 2.0 messages (one, or a batch)."""
    messages = first if isinstance(first, list) else [first]
    return bool(messages) and all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in messages)


ANSWER = AnswerFormat(McpAnswerGuard, guard_mcp_json, denied_event, saved=is_mcp, denied_inside=True)
