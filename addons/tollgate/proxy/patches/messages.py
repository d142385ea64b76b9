"""What a message carries, where mitmproxy cannot take it: an HTTP/1 body's trailer fields, and a
WebSocket message past a bound.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`), all wrapped:
`Http1Connection.read_body` and `Http1Server.send` (`mitmproxy.proxy.layers.http._http1`: without
it, a chunked body's trailer fields raise NotImplementedError before any hook);
`mitmproxy.proxy.layers.websocket.WebsocketConnection.events` (without it, a WebSocket message is
gathered whole however large, a copy of it per piece); `WebsocketLayer.relay_messages` (without it,
an injected message is mixed into the frame buffer of a message its peer is still sending)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

import h11
import wsproto.events
from h11._readers import ChunkedReader
from mitmproxy import connection, http
from mitmproxy.proxy.layers.http import ResponseTrailers
from mitmproxy.proxy.layers.http._http1 import Http1Connection, Http1Server
from mitmproxy.proxy.layers.websocket import (
    Fragmentizer,
    WebsocketConnection,
    WebsocketLayer,
    WebsocketMessageHook,
    WebSocketMessageInjected,
)
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode


class _TrailersApart:
    """h11's reader of a chunked body, whose end of message comes without its trailer fields: they
    go into the message, as mitmproxy's HTTP/2 layer puts them (before the message's end)."""

    def __init__(self, reader: ChunkedReader, message: http.Message) -> None:
        self._reader = reader
        self._message = message

    def __call__(self, buf: Any) -> Any:
        event = self._reader(buf)
        if isinstance(event, h11.EndOfMessage) and event.headers:
            self._message.trailers = http.Headers(tuple((bytes(n), bytes(v)) for n, v in event.headers))
            return h11.EndOfMessage()
        return event

    def read_eof(self) -> Any:
        return self._reader.read_eof()


def relay_http1_trailers() -> None:
    """mitmproxy's HTTP/1 layer raises on a chunked body's trailer fields (NotImplementedError),
    before any hook: a client whose request has them waits for an answer that never comes, an
    answer that has them breaks off, and neither call is audited as it went. Taught here, the
    HTTP/1 layer puts them into the flow (`flow.request.trailers`, `flow.response.trailers`) as its
    HTTP/2 layer does, before the message's end, so that `Classify` refuses a read request body's
    trailers (and drops a streamed one's) whichever the protocol. An answer's trailers go on to a
    client over HTTP/2; to one over HTTP/1 they are dropped, as mitmproxy has ended its chunked body
    before it would send them (and its HTTP/1 layer cannot)."""
    if getattr(Http1Connection, "_tollgate_relays_trailers", False):
        return
    read_body_of, send_of = Http1Connection.read_body, Http1Server.send

    def read_body(self: Any, event: Any) -> Generator[Any, Any, None]:
        if type(self.body_reader) is ChunkedReader:  # the one reader that meets trailers
            message = self.request if isinstance(self, Http1Server) else self.response
            assert message is not None  # its head came before its body
            self.body_reader = _TrailersApart(self.body_reader, message)
        return read_body_of(self, event)

    def send(self: Any, event: Any) -> Iterator[Any]:
        return iter(()) if isinstance(event, ResponseTrailers) else send_of(self, event)

    Http1Connection.read_body = read_body  # type: ignore[method-assign]
    Http1Server.send = send  # type: ignore[method-assign, assignment]
    Http1Connection._tollgate_relays_trailers = True  # type: ignore[attr-defined]


MESSAGE_TOO_BIG = 1009  # the WebSocket close code for a message too big to process (RFC 6455)

# The connections whose peer sent a WebSocket message past the bound, closed for it.
closed_for_a_large_message: WeakSet[connection.Connection] = WeakSet()


def bound_websocket_messages(limit: int) -> None:
    """mitmproxy's WebSocket layer gathers each message whole before its hook, however large: a
    peer could make the proxy hold any amount. Taught here, a message that grows past `limit`
    bytes is taken as its sender's close with code 1009 (message too big): mitmproxy closes the
    WebSocket on both sides with it, and drops what it gathered. The sender's connection is noted
    in `closed_for_a_large_message`. Called again, it sets the bound anew.

    A frame's pieces, as they are read, are handed on as one event once the frame is whole:
    mitmproxy adds each piece to the frame so far (`bytes +=`, a copy of it each time), which made
    a message near the bound cost minutes of processor time when read in small pieces."""
    original = vars(WebsocketConnection).get("_tollgate_unbounded_events", WebsocketConnection.events)
    gathered: WeakKeyDictionary[WebsocketConnection, int] = WeakKeyDictionary()  # a message's bytes so far
    pieces: WeakKeyDictionary[WebsocketConnection, list[Any]] = WeakKeyDictionary()  # a frame's so far

    def events(self: Any) -> Generator[wsproto.events.Event, None, None]:
        for event in original(self):
            if self.conn in closed_for_a_large_message:
                continue  # what the sender sends after its close is not relayed
            if isinstance(event, wsproto.events.Message):
                data = event.data
                size = gathered.pop(self, 0) + len(data.encode() if isinstance(data, str) else data)
                if size > limit:
                    closed_for_a_large_message.add(self.conn)
                    self.frame_buf = [b""]
                    pieces.pop(self, None)
                    yield wsproto.events.CloseConnection(MESSAGE_TOO_BIG, "message too big")
                    continue
                if not event.message_finished:
                    gathered[self] = size
                if not event.frame_finished:
                    pieces.setdefault(self, []).append(data)
                    continue
                if self in pieces:
                    whole = [*pieces.pop(self), data]
                    joined = "".join(whole) if isinstance(data, str) else b"".join(whole)
                    yield type(event)(joined, event.frame_finished, event.message_finished)
                    continue
            yield event

    WebsocketConnection.events = events  # type: ignore[method-assign]
    WebsocketConnection._tollgate_unbounded_events = original  # type: ignore[attr-defined]


def relay_injected_messages_apart() -> None:
    """mitmproxy relays a message injected into a WebSocket as if its sender's peer had sent it:
    among that connection's own events, into its frame buffer. Where that peer's own message is
    still arriving (a large one, read in pieces), the two were joined, and the client got neither
    whole (a Responses answer whose events the answer guardrails send anew, say). Taught here, an
    injected message is relayed on its own: its hook, then to the other side whole, never mixed
    with what the peer is sending (whose message goes on once it has all come, as before)."""
    if getattr(WebsocketLayer, "_tollgate_injects_apart", False):
        return
    relay_of = WebsocketLayer.relay_messages

    def relay(self: Any, event: Any) -> Generator[Any, Any, None]:
        if type(event) is not WebSocketMessageInjected:  # a peer's data, or the drain's close
            yield from relay_of(self, event)
            return
        sent = event.message
        message = WebSocketMessage(sent.type, sent.from_client, sent.content, injected=True)
        self.flow.websocket.messages.append(message)
        yield WebsocketMessageHook(self.flow)
        if message.dropped:
            return
        to = self.server_ws if message.from_client else self.client_ws
        for piece in Fragmentizer([], message.type == Opcode.TEXT)(message.content):
            yield to.send2(piece)

    WebsocketLayer.relay_messages = relay  # type: ignore[method-assign]
    WebsocketLayer._tollgate_injects_apart = True  # type: ignore[attr-defined]
