"""A large piece of an answer the answer guardrails read is read in a worker thread while the event
loop serves the other calls, and comes out as it would have read on the loop: an MCP result (an
event of a stream, a JSON answer at its end) and a Responses WebSocket event. The guards are the
proxy's own, their scanners real; each notes the thread it read in."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from support.guardrail_samples import AWS_KEY_ID, EMAIL
from tollgate.calls.call import Call, Route
from tollgate.formats.answer_reading.scanning import READ_APART_BYTES
from tollgate.formats.openai_responses.answer_guard import ResponsesSocketGuard
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.workers import ScanWorkers
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.result_guard import ResultGuard
from tollgate.providers import PROVIDERS
from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.mcp.mcp import Mcp, Relay
from tollgate.proxy.stages.transport.responses_socket import Guarded, ResponsesSocket
from tollgate.proxy.state import Shared

REDACTED = compiled_for({"pii.email": "redact", "secrets.aws_access_key_id": "redact"})
SERVER = McpServer.model_validate({"name": "notes", "url": "https://mcp.example.test/mcp"})
LARGE = "the quick brown fox jumps over the lazy dog. " * 1000  # 45 KB: read apart


class NotingGuard(ResultGuard):
    """The proxy's guard of MCP results, noting the thread each message is read in."""

    def __init__(self) -> None:
        super().__init__(McpExchange(SERVER, "POST"), REDACTED, frozenset({1}))
        self.threads: list[int] = []

    def __call__(self, value: Any) -> Any | None:
        self.threads.append(threading.get_ident())
        return super().__call__(value)


def tool_result(text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}], "isError": False}}


async def awaited(step: Callable[[], Awaitable[None] | None]) -> None:
    """A hook's step, on the event loop: its awaitable awaited."""
    reading = step()
    assert reading is not None, "read apart"
    await reading


def relayed(sse: bool, pieces: list[bytes], stage: Mcp | None) -> tuple[bytes, NotingGuard]:
    """The answer through a relay as the proxy calls it; with `stage`, what it reads apart is read
    in its worker thread first."""
    flow = tflow.tflow(resp=True)
    guard = NotingGuard()
    flow.response.stream = relay = Relay(sse, [1], guard=guard)
    off_loop = relay.off_loop = stage._workers.off_loop if stage is not None else None
    out = []
    for piece in [*pieces, b""]:
        if off_loop is not None and relay.reads_apart(piece):
            asyncio.run(awaited(lambda: off_loop(relay.read_apart)))
        got = relay(piece)
        out.append(got if isinstance(got, bytes) else b"".join(got))
    return b"".join(out), guard


def test_a_large_mcp_result_is_read_in_a_worker_thread_and_comes_as_on_the_loop() -> None:
    text = f"{LARGE} write to {EMAIL} {LARGE}"
    event = b"event: message\r\ndata: " + json.dumps(tool_result(text)).encode() + b"\r\n\r\n"
    body = json.dumps(tool_result(text)).encode()
    stage = Mcp(Shared(), CallSteps(), ScanWorkers())
    try:
        for sse, pieces in ((True, [event[:100], event[100:]]), (False, [body[:100], body[100:]])):
            on_loop, loop_guard = relayed(sse, pieces, None)
            apart, guard = relayed(sse, pieces, stage)
            assert apart == on_loop and EMAIL.encode() not in apart and b"[REDACTED:pii.email]" in apart
            assert loop_guard.threads == [threading.get_ident()]
            assert len(guard.threads) == 1 and guard.threads[0] != threading.get_ident()
            assert guard._exchange.answer.found == {1: {"pii.email": 1}}
    finally:
        stage._workers.close()


def test_a_small_mcp_piece_and_one_whose_tools_are_decided_are_read_on_the_loop() -> None:
    small = Relay(True, [1], guard=NotingGuard())
    assert not small.reads_apart(b"x" * READ_APART_BYTES)  # no worker given it
    small.off_loop = ScanWorkers().off_loop
    assert not small.reads_apart(b"x" * (READ_APART_BYTES - 1))
    assert small.reads_apart(b"x" * READ_APART_BYTES)
    filtered = Relay(True, [1], tools_of=frozenset({1}), allowed=lambda names: None, guard=NotingGuard())
    filtered.off_loop = small.off_loop
    assert not filtered.reads_apart(b"x" * READ_APART_BYTES)  # the policy is asked on the event loop
    unguarded = Relay(True, [1])
    unguarded.off_loop = small.off_loop
    assert not unguarded.reads_apart(b"x" * READ_APART_BYTES)  # not read by the guardrails


class NotingSocketGuard(ResponsesSocketGuard):
    """The proxy's reader of a response on the Responses WebSocket, noting the thread it reads in."""

    def __init__(self) -> None:
        super().__init__(REDACTED)
        self.threads: list[int] = []

    def message(self, content: bytes) -> list[bytes]:
        self.threads.append(threading.get_ident())
        return super().message(content)


class Injected:
    """mitmproxy's proxy server as the stage sees it: what it was asked to inject."""

    name = "proxyserver"

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def inject_websocket(self, flow: object, to_client: bool, message: bytes, is_text: bool = True) -> None:
        self.messages.append(message)


def delta(text: str) -> bytes:
    event = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0}
    return json.dumps({**event, "delta": text, "sequence_number": 3}).encode()


def test_a_large_responses_websocket_event_is_read_in_a_worker_thread_and_goes_on_as_read() -> None:
    content = delta(f"{LARGE} the key {AWS_KEY_ID} is here {LARGE}")
    expected = ResponsesSocketGuard(REDACTED).message(content)
    assert expected and AWS_KEY_ID.encode() not in b"".join(expected)
    flow = tflow.twebsocketflow()
    flow.websocket.messages = []
    call = Call(Route.as_called("openai"), "api.openai.com", "GET", "/v1/responses",
                PROVIDERS["openai"].classify("GET", "/v1/responses", None))  # fmt: skip
    flow.metadata[CALL] = call
    workers = ScanWorkers()
    stage = ResponsesSocket(Shared(), CallSteps(), lambda c: {}, workers)
    session = stage._session(flow)
    assert session is not None
    guard = NotingSocketGuard()
    session.guarded[None] = Guarded(call, guard)
    proxy = Injected()
    message = WebSocketMessage(Opcode.TEXT, False, content)
    flow.websocket.messages.append(message)
    try:
        with taddons.context(proxy):
            asyncio.run(awaited(lambda: stage.websocket_message(flow)))
    finally:
        workers.close()
    assert len(guard.threads) == 1 and guard.threads[0] != threading.get_ident()
    assert message.dropped and proxy.messages == expected
