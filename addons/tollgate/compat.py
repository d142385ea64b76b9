"""What mitmproxy 12 cannot do through its addon API, and Tollgate needs: answer a failed
upstream in the provider's own error shape, end one call that waits too long for its upstream, read
the trailer fields of a body that came over HTTP/1, and bound what a WebSocket message holds.

mitmproxy sends a fixed HTML page when the upstream is unreachable or breaks before its headers,
whatever the `error` hook did; mitmproxy PR #7999 proposes that a response set by the error hook be
sent instead. `serve_responses_set_by_error_hook` is that behaviour, until it ships.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

import h11
import wsproto.events
from h11._readers import ChunkedReader
from mitmproxy import connection, http
from mitmproxy.proxy import events
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    RequestEndOfMessage,
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    ResponseTrailers,
    SendHttp,
)
from mitmproxy.proxy.layers.http._http1 import Http1Connection, Http1Server
from mitmproxy.proxy.layers.websocket import WebsocketConnection


def serve_responses_set_by_error_hook() -> None:
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_serves_error_responses", False):
        return
    original = stream_class.handle_protocol_error

    def handle_protocol_error(self: Any, event: Any) -> Generator[Any, Any, None]:
        had_response = self.flow.response is not None
        steps = original(self, event)
        reply = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration:
                return
            replace = (
                not had_response
                and isinstance(self.flow.response, http.Response)
                and isinstance(command, SendHttp)
                and command.event is event
                and command.connection is self.context.client
            )
            if replace:
                response, client = self.flow.response, self.context.client
                yield SendHttp(ResponseHeaders(self.stream_id, response, end_stream=False), client)
                if response.raw_content:
                    yield SendHttp(ResponseData(self.stream_id, response.raw_content), client)
                yield SendHttp(ResponseEndOfMessage(self.stream_id), client)
                reply = None
            else:
                reply = yield command

    stream_class.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign]
    stream_class._tollgate_serves_error_responses = True  # type: ignore[attr-defined]


# Called with a flow whose request's last byte has gone to its upstream connection.
_on_request_sent: list[Callable[[http.HTTPFlow], None]] = []


def note_requests_sent(on_sent: Callable[[http.HTTPFlow], None]) -> None:
    """Have `on_sent(flow)` called once the end of a flow's request has been handed to its upstream
    connection: the moment a provider has the whole request, and may bill work it starts, whatever
    the client does next. mitmproxy has no hook for it (`request` runs before the connection is
    even opened). Its HTTP stream sends a read body as headers, data and an end of message, and a
    streamed one piece by piece then the end; each is passed down to the connection's layer, which
    writes its bytes to the socket before the stream goes on. So the end of message, once passed,
    has gone: over HTTP/1 at once; over HTTP/2 into the connection's flow-control window, which
    holds back what the upstream has not made room for (a call cut off then is counted as sent).
    Called again, it replaces the callback."""
    _on_request_sent[:] = [on_sent]
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_notes_requests_sent", False):
        return
    for name in ("state_consume_request_body", "state_stream_request_body"):
        setattr(stream_class, name, _noting_the_request_sent(getattr(stream_class, name)))
    stream_class._tollgate_notes_requests_sent = True  # type: ignore[attr-defined]


def _noting_the_request_sent(state: Callable[..., Generator[Any, Any, None]]) -> Callable[..., Any]:
    def noting(self: Any, event: Any) -> Generator[Any, Any, None]:
        steps = state(self, event)
        reply = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration:
                return
            reply = yield command  # the command has been carried out: its bytes are written
            if (
                type(command) is SendHttp
                and type(command.event) is RequestEndOfMessage
                and command.connection is self.context.server
            ):
                for on_sent in _on_request_sent:
                    on_sent(self.flow)

    return noting


@dataclass
class EndIfWaiting(events.MessageInjected[str]):
    """Injected through mitmproxy's proxyserver addon (`inject_event`): end `flow` if it still waits
    for its response headers, with `message` as its error, as if the upstream had failed it. Only
    that flow ends: its request is cancelled upstream (on HTTP/2 its stream is reset, the connection
    and the other streams on it carry on; an HTTP/1 connection, which serves one request at a time,
    is closed). `on_end` is called just before the `error` hook, and only if the flow was ended; a
    flow whose response headers came first is left alone.

    mitmproxy cannot end a flow in transit (its issue #4711; PR #8200 proposes a `KillInjected`
    event): this is the part of that Tollgate needs, until it ships."""

    on_end: Callable[[], None] = lambda: None


def end_flows_waiting_for_response() -> None:
    """Teach mitmproxy's HTTP layers `EndIfWaiting`."""
    layer_class, stream_class = http_layers.HttpLayer, http_layers.HttpStream
    if getattr(stream_class, "_tollgate_ends_waiting_flows", False):
        return
    layer_events, stream_events = layer_class._handle_event, stream_class._handle_event

    def layer_handle_event(self: Any, event: Any) -> Generator[Any, Any, None]:
        if type(event) is EndIfWaiting:
            return _to_stream_of_flow(self, event)
        return layer_events(self, event)

    def stream_handle_event(self: Any, event: Any) -> Generator[Any, Any, None]:
        if type(event) is EndIfWaiting:
            return _end_if_waiting(self, event)
        return stream_events(self, event)

    layer_class._handle_event = layer_handle_event  # type: ignore[method-assign]
    stream_class._handle_event = stream_handle_event  # type: ignore[method-assign]
    stream_class._tollgate_ends_waiting_flows = True  # type: ignore[attr-defined]


def _to_stream_of_flow(layer: Any, event: EndIfWaiting) -> Generator[Any, Any, None]:
    """To the flow's stream if it is this layer's, else into the tunnel (a CONNECT) that carries
    the flow's connection to the layers inside it; nowhere if the flow has ended."""
    streams = layer.streams.values()
    target = next((s for s in streams if getattr(s, "flow", None) is event.flow), None)
    if target is None:
        tunnel = layer.connections.get(event.flow.server_conn)
        target = tunnel if any(s is tunnel for s in streams) else None
    if target is not None:
        yield from layer.event_to_child(target, event)


def _end_if_waiting(stream: Any, event: EndIfWaiting) -> Generator[Any, Any, None]:
    flow = stream.flow
    if stream.server_state != stream.state_wait_for_response_headers or flow.response is not None or flow.error:
        return
    upstream = stream.context.server
    event.on_end()
    yield from stream.handle_protocol_error(
        ResponseProtocolError(stream.stream_id, event.message, ErrorCode.GENERIC_SERVER_ERROR)
    )
    # Only now: an answer that arrives while the error hook runs finds the stream ended.
    if upstream.connected:
        yield SendHttp(RequestProtocolError(stream.stream_id, event.message, ErrorCode.CANCEL), upstream)


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
    in `closed_for_a_large_message`. Called again, it sets the bound anew."""
    original = vars(WebsocketConnection).get("_tollgate_unbounded_events", WebsocketConnection.events)
    gathered: WeakKeyDictionary[WebsocketConnection, int] = WeakKeyDictionary()  # a message's bytes so far

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
                    yield wsproto.events.CloseConnection(MESSAGE_TOO_BIG, "message too big")
                    continue
                if not event.message_finished:
                    gathered[self] = size
            yield event

    WebsocketConnection.events = events  # type: ignore[method-assign]
    WebsocketConnection._tollgate_unbounded_events = original  # type: ignore[attr-defined]
