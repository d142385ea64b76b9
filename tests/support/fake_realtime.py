"""A TLS WebSocket server on 127.0.0.1 standing in for OpenAI's Realtime API and the Responses
API's WebSocket mode: it records each connection's handshake and the messages it received, and
answers client events with the server events a script gives. A request that is not an upgrade is
answered as plain HTTP by `http` (the other calls a client such as Codex makes on the same host)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trustme
from tests.support.tcp import TcpServer
from tests.support.usage import responses_usage
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

__all__ = [
    "HANG_UP",
    "HOLD_END",
    "FakeRealtime",
    "HttpHandler",
    "HttpRequest",
    "Script",
    "Session",
    "answering",
    "not_found",
    "over_http",
    "responding",
    "responses_usage",
    "usage",
]

# Client event → the server events answering it.
# (Events given lazily are sent as they come: a generator may pause between them.)
Script = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]
# A client event the fake answers by dropping the connection, without a closing handshake.
HANG_UP = "test.hang_up"


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


# A plain HTTP request → status, headers and body of its answer; a body given as pieces is sent
# chunked, each piece on its own, and its end HOLD_END seconds after the last (as a server that
# closes a stream only after its last event: a client that stops reading there cancels it).
HttpHandler = Callable[[HttpRequest], tuple[int, dict[str, str], bytes | list[bytes]]]
HOLD_END = 1.0


def not_found(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
    return (
        404,
        {"content-type": "application/json"},
        b'{"error": {"message": "not found", "type": "invalid_request_error"}}',
    )


@dataclass
class Session:
    target: str  # path and query as requested
    headers: dict[str, str]  # lower-cased names; a repeated header's values joined with ", "
    subprotocols: list[str]
    received: list[str] = field(default_factory=list)  # the client's text messages as they arrived
    close_code: int | None = None  # the code of the closing handshake the client began, if any
    closed: threading.Event = field(default_factory=threading.Event)


def usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_token_details": {"cached_tokens": cached, "text_tokens": input_tokens, "audio_tokens": 0},
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }


def answering(texts: list[str], usages: list[dict[str, Any]], status: str = "completed") -> Script:
    """Each `response.create` is answered with the next text as deltas and a `response.done`
    carrying the next usage."""
    answered = iter(range(len(usages)))

    def script(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("type") == "session.update":
            return [{"type": "session.updated", "event_id": "ev_s2", "session": {"type": "realtime"}}]
        if event.get("type") != "response.create":
            return []
        n = next(answered)
        rid = f"resp_{n}"
        half = len(texts[n]) // 2
        return [
            {"type": "response.created", "event_id": f"ev_{n}a",
             "response": {"id": rid, "object": "realtime.response", "status": "in_progress"}},
            *({"type": "response.output_text.delta", "event_id": f"ev_{n}{i}", "response_id": rid,
               "item_id": "item_1", "output_index": 0, "content_index": 0, "delta": piece}
              for i, piece in enumerate((texts[n][:half], texts[n][half:]))),
            {"type": "response.done", "event_id": f"ev_{n}z",
             "response": {"id": rid, "object": "realtime.response", "status": status, "output": [],
                          "usage": usages[n]}},
        ]  # fmt: skip

    return script


def responding(
    texts: list[str], usages: list[dict[str, Any]], incomplete: str | None = None, hold: float = 0.0
) -> Script:
    """The Responses API's WebSocket mode: each `response.create` is answered with the next text as
    deltas and a `response.completed` carrying the next usage (`response.incomplete` with that
    reason, when `incomplete` is given); events echo the create's `stream_id`, as OpenAI's do. With
    `hold`, the events after `response.created` come that many seconds after it."""
    answered = iter(range(len(usages)))

    def script(event: dict[str, Any]) -> Iterable[dict[str, Any]]:
        events = answer(event)
        return _held(events, hold) if hold else events

    def answer(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("type") != "response.create":
            return []
        n = next(answered)
        rid = f"resp_ws_{n}"
        lane = {"stream_id": event["stream_id"]} if "stream_id" in event else {}
        model = event.get("model", "gpt-5")
        half = len(texts[n]) // 2
        status = "incomplete" if incomplete else "completed"
        details = {"reason": incomplete} if incomplete else None
        item = {
            "type": "message",
            "id": f"msg_{n}",
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": texts[n], "annotations": []}],
        }
        started = {**item, "status": "in_progress", "content": []}
        return [
            {"type": "response.created", "sequence_number": 0, **lane,
             "response": {"id": rid, "object": "response", "status": "in_progress", "model": model, "output": []}},
            {"type": "response.output_item.added", "sequence_number": 1, **lane, "output_index": 0, "item": started},
            *({"type": "response.output_text.delta", "sequence_number": i + 2, **lane, "item_id": f"msg_{n}",
               "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}
              for i, piece in enumerate((texts[n][:half], texts[n][half:]))),
            {"type": "response.output_item.done", "sequence_number": 4, **lane, "output_index": 0, "item": item},
            {"type": f"response.{status}", "sequence_number": 5, **lane,
             "response": {"id": rid, "object": "response", "created_at": 1700000000, "status": status,
                          "incomplete_details": details, "model": model, "output": [item],
                          "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                          "usage": usages[n]}},
        ]  # fmt: skip

    return script


def _held(events: list[dict[str, Any]], hold: float) -> Iterator[dict[str, Any]]:
    yield from events[:1]
    time.sleep(hold)
    yield from events[1:]


def over_http(script: Script) -> HttpHandler:
    """The Responses API over HTTP, answered as `script` answers over the WebSocket: a POST
    /v1/responses streamed as server-sent events; anything else is not found."""

    def answer(request: HttpRequest) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        if request.method != "POST" or request.target.partition("?")[0] != "/v1/responses":
            return not_found(request)
        events = list(script({**json.loads(request.body), "type": "response.create"}))
        sse = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
        return 200, {"content-type": "text/event-stream"}, sse

    return answer


class FakeRealtime(TcpServer):
    def __init__(self, ca: trustme.CA, script: Script | None = None) -> None:
        super().__init__(join_connections=False, poll=0.1)
        self.sessions: list[Session] = []
        self.script: Script = script or (lambda event: [])
        self.http: HttpHandler = not_found
        self.requests: list[HttpRequest] = []  # plain HTTP requests, as they came
        self._lock = threading.Lock()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._context)
        self.start()

    def answer_with(self, script: Script) -> None:
        """The sessions so far forgotten; each one from now on answered by `script`."""
        self.sessions.clear()
        self.script = script

    @property
    def connections(self) -> int:
        """TCP connections accepted, handshake or not."""
        return self.accepted

    def serve(self, raw: socket.socket, number: int) -> None:
        raw.settimeout(30)
        try:
            with self._context.wrap_socket(raw, server_side=True) as sock:
                self._relay(sock)
        except (OSError, ssl.SSLError):
            pass

    def _relay(self, sock: ssl.SSLSocket) -> None:
        buffered = b""
        while True:  # plain HTTP requests, one after another, until an upgrade
            while b"\r\n\r\n" not in buffered:
                data = sock.recv(65536)
                if not data:
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            head += b"\r\n\r\n"
            headers = _headers(head)
            if headers.get("upgrade", "").lower() == "websocket":
                break
            length = int(headers.get("content-length") or 0)
            while len(buffered) < length:
                data = sock.recv(65536)
                if not data:
                    return
                buffered += data
            body, buffered = buffered[:length], buffered[length:]
            method, target = head.split(b" ", 2)[:2]
            request = HttpRequest(method.decode(), target.decode(), headers, body)
            with self._lock:
                self.requests.append(request)
            status, answer_headers, answer = self.http(request)
            framing = "transfer-encoding: chunked" if isinstance(answer, list) else f"content-length: {len(answer)}"
            lines = [f"HTTP/1.1 {status} OK", framing, *(f"{name}: {value}" for name, value in answer_headers.items())]
            sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n")
            if not isinstance(answer, list):
                sock.sendall(answer)
                continue
            for piece in answer:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(HOLD_END)
            sock.sendall(b"0\r\n\r\n")
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head + buffered)
        session: Session | None = None
        pending = ""
        while True:
            for event in ws.events():
                if isinstance(event, Request):
                    session = Session(event.target, _headers(head), list(event.subprotocols))
                    with self._lock:
                        self.sessions.append(session)
                    chosen = "realtime" if "realtime" in event.subprotocols else None
                    # Compression where the client offers it (Tollgate takes the offer out).
                    sock.sendall(ws.send(AcceptConnection(subprotocol=chosen, extensions=[PerMessageDeflate()])))
                    if event.target.startswith("/v1/realtime"):  # a Realtime session begins with its settings
                        greeting = {"type": "session.created", "event_id": "ev_s1",
                                    "session": {"type": "realtime", "model": "gpt-realtime"}}  # fmt: skip
                        self._send(sock, ws, [greeting])
                elif isinstance(event, TextMessage) and session is not None:
                    pending += event.data
                    if event.message_finished:
                        session.received.append(pending)
                        received, pending = json.loads(pending), ""
                        if received.get("type") == HANG_UP:
                            sock.close()
                            session.closed.set()
                            return
                        self._send(sock, ws, self.script(received))
                elif isinstance(event, Ping):
                    sock.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    if session is not None:
                        session.close_code = event.code
                        session.closed.set()
                    return
                elif isinstance(event, (BytesMessage, RejectConnection)):
                    pass
            data = sock.recv(65536)
            if not data:
                if session is not None:
                    session.closed.set()
                return
            ws.receive_data(data)

    @staticmethod
    def _send(sock: ssl.SSLSocket, ws: WSConnection, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            sock.sendall(ws.send(TextMessage(data=json.dumps(event))))


def _headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
