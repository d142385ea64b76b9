"""Draining: no new connection, and each open one closed once it carries no request.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`), all wrapped: `Http1Server.__init__`, `send`
and `mark_done` (`mitmproxy.proxy.layers.http._http1`), `Http2Server.__init__` and `_handle_event`
(`_http2`), and `mitmproxy.proxy.layers.websocket.WebsocketLayer.relay_messages`; it reads
`Proxyserver.servers`, `connections` and each server instance's `_servers`. Without it, mitmproxy
stops at once on SIGTERM: every connection is cut, whatever it carries."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

import wsproto.events
from hyperframe.frame import GoAwayFrame
from mitmproxy import connection, http
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import ResponseHeaders
from mitmproxy.proxy.layers.http._http1 import Http1Server
from mitmproxy.proxy.layers.http._http2 import Http2Server
from mitmproxy.proxy.layers.websocket import WebsocketLayer, WebSocketMessageInjected
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

# Set by `begin_drain`, for good: the process ends after the drain.
_draining = threading.Event()
# The HTTP server layers (the client side of a connection, or of a tunnel inside it) of each
# client connection, as they were made.
_server_layers: WeakKeyDictionary[connection.Client, WeakSet[Any]] = WeakKeyDictionary()

# A graceful GOAWAY's last stream id: "every stream you opened, and may still open in flight, will be
# handled" (RFC 9113 6.8), sent first; the real last stream id goes with the connection's close.
_ANY_STREAM = 2**31 - 1
GOING_AWAY = 1001  # the WebSocket close code of an endpoint going away, such as a server shutting down


@dataclass
class CloseInjected(WebSocketMessageInjected):
    """Injected through mitmproxy's proxyserver addon (`inject_event`): close the flow's WebSocket on
    both sides with `code` (`GOING_AWAY`), as if its server had closed it (`close_websocket`)."""

    code: int = GOING_AWAY
    reason: str = "Tollgate is shutting down"


def drain_connections() -> None:
    """Teach mitmproxy's HTTP server layers to drain once `begin_drain` has been called. mitmproxy
    stops at once on SIGTERM and can only close a connection, not let it finish. Taught here:

    - An HTTP/1 connection's answer says `Connection: close`, and the connection closes once it
      has been sent (mitmproxy's own rule for that header); one whose answer's head had gone before
      the drain closes once the answer has ended. A request that came meanwhile (its bytes read
      before the close) is answered first, the same way.
    - An HTTP/2 connection, at its next event, sends GOAWAY (NO_ERROR, last stream 2^31-1: the
      client opens no new stream, and those in flight are still served); once no stream is open it
      sends GOAWAY with the last stream it handled, and closes.
    - A WebSocket can be closed on both sides with 1001 (going away): `close_websocket`.

    The server layers of each connection are noted as they are made, for `begin_drain` to find the
    idle connections."""
    if getattr(Http1Server, "_tollgate_drains", False):
        return
    h1_init_of, h2_init_of = Http1Server.__init__, Http2Server.__init__
    h1_send_of, h1_mark_done_of = Http1Server.send, Http1Server.mark_done
    h2_event_of = Http2Server._handle_event
    relay_of = WebsocketLayer.relay_messages

    def h1_init(self: Any, context: Any) -> None:
        h1_init_of(self, context)
        _note_server_layer(self)

    def h2_init(self: Any, context: Any) -> None:
        h2_init_of(self, context)
        _note_server_layer(self)

    def h1_send(self: Any, event: Any) -> Any:
        # Not a 101: its `Connection: upgrade` is the handshake (the upgraded connection is a call).
        if _draining.is_set() and isinstance(event, ResponseHeaders) and event.response.status_code != 101:
            event.response.headers["connection"] = "close"
        return h1_send_of(self, event)

    def h1_mark_done(self: Any, *, request: bool = False, response: bool = False) -> Generator[Any, Any, None]:
        yield from h1_mark_done_of(self, request=request, response=response)
        if _draining.is_set() and _http1_idle(self) and self.conn.state & connection.ConnectionState.CAN_WRITE:
            yield commands.CloseConnection(self.conn)
            self.state = self.done

    def h2_event(self: Any, event: Any) -> Generator[Any, Any, None]:
        yield from h2_event_of(self, event)
        if _draining.is_set():
            yield from _h2_going_away(self)

    def relay(self: Any, event: Any) -> Generator[Any, Any, None]:
        if type(event) is CloseInjected:
            # As if the server had closed it: the close goes to both sides, then the WebSocket ends.
            self.server_ws._events.append(wsproto.events.CloseConnection(event.code, event.reason))
            event = events.DataReceived(self.context.server, b"")
        return relay_of(self, event)

    Http1Server.__init__ = h1_init  # type: ignore[method-assign]
    Http2Server.__init__ = h2_init  # type: ignore[method-assign]
    Http1Server.send = h1_send  # type: ignore[method-assign]
    Http1Server.mark_done = h1_mark_done  # type: ignore[method-assign]
    Http2Server._handle_event = h2_event  # type: ignore[method-assign]
    WebsocketLayer.relay_messages = relay  # type: ignore[method-assign]
    Http1Server._tollgate_drains = True  # type: ignore[attr-defined]


def _note_server_layer(layer: Any) -> None:
    client = layer.context.client
    layers = _server_layers.get(client)
    if layers is None:
        layers = _server_layers[client] = WeakSet()
    layers.add(layer)


def _http1_idle(server: Any) -> bool:
    """An HTTP/1 server layer waits for a request and has none of its bytes."""
    return server.state == server.read_headers and not server.buf and server.request is None


def _h2_going_away(server: Any) -> Generator[Any, Any, None]:
    if not server.conn.state & connection.ConnectionState.CAN_WRITE or getattr(server, "_tollgate_closed", False):
        return
    if not getattr(server, "_tollgate_going_away", False):
        server._tollgate_going_away = True
        yield commands.SendData(server.conn, _goaway(_ANY_STREAM))
    if server.h2_conn.open_inbound_streams == 0:
        server._tollgate_closed = True
        yield commands.SendData(server.conn, _goaway(server.h2_conn.highest_inbound_stream_id))
        yield commands.CloseConnection(server.conn)


def _goaway(last_stream_id: int) -> bytes:
    """A GOAWAY frame with NO_ERROR, written apart from h2's state: h2 would take its own as the
    connection's end, and refuse to send the answers still to come."""
    return GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=0).serialize()


def begin_drain(proxyserver: Any) -> int:
    """The drain begins (`drain_connections` has taught the layers what it means): the listening
    sockets are closed (a client that connects now is refused, and a balancer tries another
    instance), and every connection that carries no request is closed as mitmproxy closes one idle
    past `tcp_timeout`. Returns how many were closed.

    A connection is idle when each of its HTTP server layers is (HTTP/1: waiting for a request, none
    of its bytes read; HTTP/2: no stream open). A CONNECT tunnel is judged by the layers inside it;
    one with none (a tunnel to a host Tollgate does not decrypt, or its TLS handshake under way) and
    a connection with no HTTP layer yet are left open: they end with the process."""
    _draining.set()
    for instance in proxyserver.servers:
        for server in getattr(instance, "_servers", ()):
            if isinstance(server, asyncio.Server):
                server.close()  # the listening sockets only: connections stay open
    closed = 0
    for handler in list(proxyserver.connections.values()):
        client = handler.client
        io = handler.transports.get(client)
        if io is None or io.handler is None or client.state is connection.ConnectionState.CLOSED:
            continue
        if _connection_idle(client):
            handler.close_connection(client)
            closed += 1
    return closed


def _connection_idle(client: connection.Client) -> bool:
    layers = list(_server_layers.get(client, ()))
    if not layers:
        return False
    tunnelled = any(_in_a_tunnel(layer) for layer in layers)
    for layer in layers:
        if isinstance(layer, Http2Server):
            if layer.h2_conn.open_inbound_streams:
                return False
        elif layer.state == layer.passthrough:
            # A WebSocket (an upgrade inside the tunnel), or a tunnel with no HTTP layer inside: busy.
            if _in_a_tunnel(layer) or not tunnelled:
                return False
        elif not (layer.state == layer.done or _http1_idle(layer)):
            return False
    return True


def _in_a_tunnel(layer: Any) -> bool:
    return any(isinstance(parent, http_layers.HttpStream) for parent in layer.context.layers)


def close_websocket(flow: http.HTTPFlow, code: int = GOING_AWAY, reason: str = "Tollgate is shutting down") -> None:
    """Close the flow's WebSocket on both sides with `code` (1001, going away), from the event loop:
    its `websocket_end` hook follows. Nothing happens when it has ended already."""
    from mitmproxy import ctx

    proxyserver = ctx.master.addons.get("proxyserver")
    message = WebSocketMessage(Opcode.TEXT, False, b"")
    try:
        proxyserver.inject_event(CloseInjected(flow, message, code, reason))
    except ValueError:  # its connection has gone
        pass
