"""What mitmproxy 12 cannot do through its addon API, and Tollgate needs: answer a failed
upstream in the provider's own error shape, end one call that waits too long for its upstream, tell a
call its client ended from one its upstream did, read the trailer fields of a body that came over
HTTP/1, bound what a WebSocket message holds, bound what a message's head holds, and drain: stop
listening and close each connection once it carries no request.

mitmproxy sends a fixed HTML page when the upstream is unreachable or breaks before its headers,
whatever the `error` hook did; mitmproxy PR #7999 proposes that a response set by the error hook be
sent instead. `serve_responses_set_by_error_hook` is that behaviour, until it ships.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

import h2.errors
import h2.events
import h11
import wsproto.events
from h11._readers import ChunkedReader
from hyperframe.frame import GoAwayFrame, HeadersFrame
from mitmproxy import connection, http
from mitmproxy.addons.next_layer import NeedsMoreData, NextLayer
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    RequestEndOfMessage,
    RequestHeaders,
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    ResponseTrailers,
    SendHttp,
)
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Connection, Http1Server, make_error_response
from mitmproxy.proxy.layers.http._http2 import Http2Server, parse_h2_request_headers
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection
from mitmproxy.proxy.layers.websocket import WebsocketConnection, WebsocketLayer, WebSocketMessageInjected
from mitmproxy.proxy.server import ConnectionHandler
from mitmproxy.utils import human
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from .heads import BoundedDecoder, http1_first_line, http1_head_past


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


# The flows whose client ended them: its connection closed, or its HTTP/2 (HTTP/3) stream reset.
_ended_by_client: WeakSet[http.HTTPFlow] = WeakSet()


def note_flows_ended_by_client() -> None:
    """mitmproxy's `error` hook says why a flow failed only in words, and an HTTP/2 client that
    resets its stream (CANCEL, as clients do when they stop reading) is worded as an upstream's
    reset is ("stream reset by client"). Taught here, its HTTP stream notes each flow whose failure
    came from the client's side of the proxy (a `RequestProtocolError`: the client left, reset the
    stream or broke the protocol), for `ended_by_client`."""
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_notes_client_ends", False):
        return
    original = stream_class.handle_protocol_error

    def handle_protocol_error(self: Any, event: Any) -> Generator[Any, Any, None]:
        if isinstance(event, RequestProtocolError):
            _ended_by_client.add(self.flow)
        return original(self, event)

    stream_class.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign]
    stream_class._tollgate_notes_client_ends = True  # type: ignore[attr-defined]


def ended_by_client(flow: http.HTTPFlow) -> bool:
    """Whether the flow failed from its client's side (`note_flows_ended_by_client`)."""
    return flow in _ended_by_client


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


def close_connections_cancelled_while_waiting() -> None:
    """mitmproxy closes a connection by cancelling the task that reads it, which then closes its
    socket; but a cancellation that lands while that task waits to hand what it read to the layers
    (another task, such as a hook's reply, holds the lock) escapes before the socket is closed.
    The socket then stays open, unread, until the process ends: a client that keeps sending while
    the proxy answers and closes (a head cut for its size) is never cut off. Taught here, the task
    closes the socket on its way out whatever cancelled it."""
    handler_class = ConnectionHandler
    if getattr(handler_class, "_tollgate_closes_cancelled", False):
        return
    handle_connection_of = handler_class.handle_connection

    async def handle_connection(self: Any, conn: connection.Connection) -> None:
        try:
            await handle_connection_of(self, conn)
        except asyncio.CancelledError:
            io = self.transports.pop(conn, None)  # still there: it escaped before closing the socket
            if io is not None and io.writer is not None:
                conn.state = connection.ConnectionState.CLOSED
                try:
                    io.writer.close()
                except OSError:
                    pass
            raise

    handler_class.handle_connection = handle_connection  # type: ignore[method-assign, assignment]
    handler_class._tollgate_closes_cancelled = True  # type: ignore[attr-defined]


def finish_streams_after_a_clients_goaway() -> None:
    """A client may close an HTTP/2 connection gracefully while its requests are in flight: GOAWAY
    with NO_ERROR, then the answers to the streams it opened, then its socket closed. (The AWS SDK
    for JavaScript does so once an answer's headers have come, on the connection it opens for one
    call.) A client's GOAWAY names the last of the streams the server opened, never its own. h2
    takes any GOAWAY as the connection's end and mitmproxy closes it at once, answers cut off.
    Taught here, the connection to a client that says a graceful GOAWAY while it has streams open
    goes on, for the answers to end; the client closes it. Any other GOAWAY ends it as before."""
    connection_class = BufferedH2Connection
    if getattr(connection_class, "_tollgate_finishes_after_goaway", False):
        return
    receive_goaway_of = connection_class._receive_goaway_frame

    def receive_goaway(self: Any, frame: Any) -> Any:
        graceful = frame.error_code == h2.errors.ErrorCodes.NO_ERROR
        if not self.config.client_side and graceful and self.open_inbound_streams:
            return [], []
        return receive_goaway_of(self, frame)

    connection_class._receive_goaway_frame = receive_goaway  # type: ignore[method-assign]
    connection_class._tollgate_finishes_after_goaway = True  # type: ignore[attr-defined]


# The requests whose head passed the bound of `bound_message_heads`: read no further than their
# first line (HTTP/1) or pseudo-header fields (HTTP/2), they carry no header field.
_cut_heads: WeakSet[http.Request] = WeakSet()


def cut_head(request: http.Request) -> None:
    """Mark `request` as one whose head passed the bound (`head_was_cut`)."""
    _cut_heads.add(request)


def head_was_cut(request: http.Request) -> bool:
    """Whether the request's head passed the bound, and the request holds only its first line
    (HTTP/1) or pseudo-header fields (HTTP/2): an addon must answer it (mitmproxy would send it on
    without its header fields)."""
    return request in _cut_heads


def bound_message_heads(request_limit: int, response_limit: int) -> None:
    """mitmproxy's HTTP/1 layer buffers a head until its blank line, however long (its own FIXME:
    "protect against header size DoS"), and its HTTP/2 layer ends the whole connection when a
    client's header block decodes past h2's 64 KiB. Taught here:

    - A client's head past `request_limit` bytes is not read further. Its request goes to the
      addons with its first line alone (HTTP/1; the host of the tunnel it came through when that
      line names none) or its pseudo-header fields alone (HTTP/2), for `head_was_cut` to tell them
      to answer it (431). Over HTTP/1 the rest of the head is read and dropped until the answer is
      sent, then the connection closed: where the head ends is never known, nor what would follow.
      Over HTTP/2 the block's fields past the bound are decoded (the connection's HPACK state
      needs them) and dropped, and the stream's body, if any, too; the connection goes on. A head
      whose first line alone passes the bound, or whose host is not known, gets mitmproxy's own
      431 page and the connection closed; an HTTP/2 block whose pseudo-header fields alone pass
      it ends the connection (h2 finds them missing).
    - An upstream's HTTP/1 answer head past `response_limit` bytes fails the flow as an answer
      that cannot be read does (its `error` hook), and its connection is closed. Over HTTP/2, h2's
      own bound (64 KiB) ends the upstream connection as it always has.

    Before any of these, mitmproxy's choice of the layer for a decrypted connection waits for the
    first request's Host header (with `allow_hosts` set), holding whatever comes until it has
    come: past `request_limit` bytes it stops waiting, and the HTTP layer gets the head to cut."""
    if getattr(Http1Server, "_tollgate_bounds_heads", False):
        return
    read_request_head_of, read_response_head_of = Http1Server.read_headers, Http1Client.read_headers
    h2_server_init_of, h2_server_event_of = Http2Server.__init__, Http2Server.handle_h2_event
    host_header_of = NextLayer._get_host_header

    def host_header(context: Any, data_client: bytes, data_server: bytes) -> str | None:
        try:
            return host_header_of(context, data_client, data_server)
        except NeedsMoreData:
            if len(data_client) > request_limit:
                return None  # none within the bound: the layer is chosen by the connection's SNI
            raise

    def read_request_head(self: Any, event: Any) -> Generator[Any, Any, None]:
        if isinstance(event, events.DataReceived) and http1_head_past(self.buf._data, request_limit):
            return _cut_http1_request(self, request_limit)
        return read_request_head_of(self, event)

    def read_response_head(self: Any, event: Any) -> Generator[Any, Any, None]:
        past = (
            isinstance(event, events.DataReceived)
            and self.stream_id is not None
            and http1_head_past(self.buf._data, response_limit)
        )
        return _refuse_http1_response(self, response_limit) if past else read_response_head_of(self, event)

    def h2_server_init(self: Any, context: Any) -> None:
        h2_server_init_of(self, context)
        _bound_h2_header_lists(self, request_limit)

    def h2_server_event(self: Any, event: Any) -> Generator[Any, Any, bool]:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id in self._tollgate_cut_streams:
            self._tollgate_cut_streams.discard(event.stream_id)
            return _cut_h2_request(self, event)
        return h2_server_event_of(self, event)

    Http1Server.read_headers = read_request_head  # type: ignore[method-assign]
    Http1Client.read_headers = read_response_head  # type: ignore[method-assign]
    Http2Server.__init__ = h2_server_init  # type: ignore[method-assign]
    Http2Server.handle_h2_event = h2_server_event  # type: ignore[method-assign]
    NextLayer._get_host_header = staticmethod(host_header)  # type: ignore[method-assign]
    Http1Server._tollgate_bounds_heads = True  # type: ignore[attr-defined]


def _cut_http1_request(server: Any, limit: int) -> Generator[Any, Any, None]:
    buf = server.buf
    line = http1_first_line(buf._data, limit)
    buf.maybe_extract_at_most(len(buf))  # the head's start: dropped, as what follows will be
    request = None
    if line is not None:
        try:
            request = http1.read_request_head([line])
        except ValueError:
            pass
    if request is not None and not request.host and server.context.server.address is not None:
        # Origin form: the host is the tunnel's (its Host header was not read).
        request.data.host, request.data.port = server.context.server.address
        request.scheme = "https" if server.context.client.tls else "http"
    if request is None or not request.host:
        yield commands.Log(
            f"{human.format_address(server.conn.peername)}: a request head past {limit} bytes, without a request"
            " line or host to tell a call by: refused (431)"
        )
        yield commands.SendData(server.conn, make_error_response(431, f"The request's head is past {limit} bytes."))
        yield from _linger(server)
        return
    cut_head(request)
    server.request = request
    server.request_done = True
    server.state = _discarding(server)
    server.send = _saying_close(server, server.send)  # on this connection only
    server.mark_done = _lingering_once_answered(server)
    yield ReceiveHttp(RequestHeaders(server.stream_id, request, end_stream=True))
    if request.method != "CONNECT":  # mitmproxy's own reader ends a CONNECT with its headers
        yield ReceiveHttp(RequestEndOfMessage(server.stream_id))


# An HTTP/1 connection whose request head was cut, once it has answered, still reads and drops what
# comes for a while before it closes: a client that sent its whole head (not much past the bound)
# reads the answer and closes first; closed at once with unread data, the connection would be reset
# and such a client could lose the answer. One that goes on sending is cut off.
LINGER_BYTES = 1 << 20
LINGER_SECONDS = 2.0


def _discarding(server: Any) -> Callable[[Any], Generator[Any, Any, None]]:
    """The state of an HTTP/1 connection whose request head was cut, until it has answered: what
    comes (the rest of the head, and anything after it) is dropped as it arrives; the client
    leaving is as while a request waits for its answer."""

    def discard(event: Any) -> Generator[Any, Any, None]:
        if isinstance(event, events.DataReceived):
            server.buf.maybe_extract_at_most(len(server.buf))
            return
        yield from server.wait(event)

    return discard


def _saying_close(server: Any, send: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def send_saying_close(event: Any) -> Any:
        if isinstance(event, ResponseHeaders):
            event.response.headers["connection"] = "close"
        return send(event)

    return send_saying_close


def _lingering_once_answered(server: Any) -> Callable[..., Generator[Any, Any, None]]:
    """The connection's `mark_done`: once answered it carries nothing more (where the cut head
    ends is never known), and closes (`_linger`)."""

    def mark_done(*, request: bool = False, response: bool = False) -> Generator[Any, Any, None]:
        server.request_done |= request
        server.response_done |= response
        if server.response_done:
            yield from _linger(server)

    return mark_done


def _linger(server: Any) -> Generator[Any, Any, None]:
    """Its answer sent, the connection drops what comes until the client closes, LINGER_BYTES
    have come or LINGER_SECONDS have passed; then it closes."""
    dropped = 0
    wakeup = commands.RequestWakeup(LINGER_SECONDS)

    def linger(event: Any) -> Generator[Any, Any, None]:
        nonlocal dropped
        if isinstance(event, events.DataReceived):
            dropped += len(server.buf)
            server.buf.maybe_extract_at_most(len(server.buf))
            if dropped <= LINGER_BYTES:
                return
        elif isinstance(event, events.Wakeup) and event.command is not wakeup:
            return
        if server.conn.state is not connection.ConnectionState.CLOSED:
            yield commands.CloseConnection(server.conn)
        server.state = server.done

    server.state = linger
    yield wakeup


def _refuse_http1_response(client: Any, limit: int) -> Generator[Any, Any, None]:
    client.buf.maybe_extract_at_most(len(client.buf))
    client.state = client.done
    yield commands.CloseConnection(client.conn)
    yield ReceiveHttp(
        ResponseProtocolError(
            client.stream_id, f"the upstream's response head is past {limit} bytes", ErrorCode.GENERIC_SERVER_ERROR
        )
    )


def _bound_h2_header_lists(server: Any, limit: int) -> None:
    """The server connection's HPACK decoder kept to `limit` (`BoundedDecoder`), and the streams
    whose request header block it cut noted for `handle_h2_event`."""
    conn = server.h2_conn
    decoder = BoundedDecoder(limit)
    decoder.max_header_list_size = conn.decoder.max_header_list_size
    conn.decoder = decoder
    cut: set[int] = set()
    server._tollgate_cut_streams = cut
    receive_headers_frame = conn._frame_dispatch_table[HeadersFrame]

    def receive_headers(frame: HeadersFrame) -> Any:
        frames, received = receive_headers_frame(frame)
        if decoder.cut:
            cut.update(e.stream_id for e in received if isinstance(e, h2.events.RequestReceived))
        return frames, received

    conn._frame_dispatch_table[HeadersFrame] = receive_headers


def _cut_h2_request(server: Any, event: h2.events.RequestReceived) -> Generator[Any, Any, bool]:
    """A request whose header block was cut: to the addons with its pseudo-header fields alone,
    its body (if any) dropped as it comes (the stream is not one `handle_h2_event` relays)."""
    assert event.headers is not None and event.stream_id is not None
    pseudo = [(bytes(n), bytes(v)) for n, v in event.headers if n.startswith(b":")]
    try:
        host, port, method, scheme, authority, path, _ = parse_h2_request_headers(pseudo)
    except ValueError as e:
        yield from server.protocol_error(f"Invalid HTTP/2 request headers: {e}")
        return True
    if not host and server.context.server.address is not None:
        host, port = server.context.server.address
    request = http.Request(
        host=host,
        port=port,
        method=method,
        scheme=scheme,
        authority=authority,
        path=path,
        http_version=b"HTTP/2.0",
        headers=http.Headers(),
        content=None,
        trailers=None,
        timestamp_start=time.time(),
        timestamp_end=None,
    )
    cut_head(request)
    yield ReceiveHttp(RequestHeaders(event.stream_id, request, end_stream=True))
    yield ReceiveHttp(RequestEndOfMessage(event.stream_id))
    return False


# ---- draining: no new connection, and each open one closed once it carries no request

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
    both sides with `GOING_AWAY`, as if its server had closed it (`close_websocket`)."""


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
            self.server_ws._events.append(wsproto.events.CloseConnection(GOING_AWAY, "Tollgate is shutting down"))
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


def close_websocket(flow: http.HTTPFlow) -> None:
    """Close the flow's WebSocket on both sides with 1001 (going away), from the event loop: its
    `websocket_end` hook follows. Nothing happens when it has ended already."""
    from mitmproxy import ctx

    proxyserver = ctx.master.addons.get("proxyserver")
    message = WebSocketMessage(Opcode.TEXT, False, b"")
    try:
        proxyserver.inject_event(CloseInjected(flow, message))
    except ValueError:  # its connection has gone
        pass
