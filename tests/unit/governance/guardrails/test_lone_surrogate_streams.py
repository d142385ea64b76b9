"""A lone UTF-16 surrogate in an MCP server's answer (`formats/mcp/answers.py`, the relay, and
`formats/mcp/answer_guard.py`, the scan): JSON may escape one (`\\ud800`) and Python's reader keeps
it, but it is no text, so the guardrails cannot read the message. As an event that is no JSON, it
ends the answer unread: what came before it goes on, then each request's error; nothing of it."""

from __future__ import annotations

import json

from support.guardrail_samples import EMAIL
from tollgate.formats.mcp.answer_guard import McpAnswerGuard
from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.result_guard import ResultGuard

FOUND = compiled_for({"pii.email": "redact"})
SERVER = McpServer.model_validate({"name": "gh", "url": "https://mcp.example.test/mcp"})
PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
# json.dumps escapes the surrogate as `\ud800`: the bytes are ASCII, the string it reads is no text.
UNPAIRED = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"to {EMAIL} \ud800"}]}}
REFUSED = {"jsonrpc": "2.0", "id": 1, "error": {
    "code": -32001, "message": "Tollgate refused this answer: it could not be read for its guardrails."}}  # fmt: skip


def sse(*messages: object) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in messages)


def data_of(stream: bytes) -> list[object]:
    return [json.loads(line[6:]) for line in stream.splitlines() if line.startswith(b"data: ")]


def relayed(relay: AnswerRelay, body: bytes) -> bytes:
    return b"".join(bytes(relay(piece)) for piece in (body[:50], body[50:], b""))


def test_a_streamed_event_holding_one_ends_the_answer_unread() -> None:
    exchange = McpExchange(SERVER, "POST")
    relay = AnswerRelay(True, [1], guard=ResultGuard(exchange, FOUND, [1]))
    out = relayed(relay, sse(PROGRESS, UNPAIRED))
    assert data_of(out) == [PROGRESS, REFUSED]
    assert EMAIL.encode() not in out
    assert (exchange.answer.cut, relay.outcomes) == ({1: "unread"}, {1: True})
    assert relay.ended and relay.error == "a server-sent event holding a string that is no text"


def test_a_json_answer_holding_one_is_refused_unread() -> None:
    exchange = McpExchange(SERVER, "POST")
    relay = AnswerRelay(False, [1], guard=ResultGuard(exchange, FOUND, [1]))
    out = relayed(relay, json.dumps(UNPAIRED).encode())
    assert json.loads(out) == REFUSED
    assert (exchange.answer.cut, relay.error) == ({1: "unread"}, "the answer holds a string that is no text")


def test_the_scan_of_a_stream_holding_one_ends_there_unread() -> None:
    guard = McpAnswerGuard(FOUND)
    out = guard.feed(sse(PROGRESS, UNPAIRED, PROGRESS).replace(b"\r\n", b"\n")) + guard.flush()
    assert guard.denied == "unread" and EMAIL.encode() not in out
    assert data_of(out)[0] == PROGRESS and data_of(out)[-1]["error"]["code"] == -32001
    assert len(data_of(out)) == 2
