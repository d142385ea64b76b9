"""A message's head bounded as it is read (HTTP/1 and HTTP/2), which mitmproxy reads whole
whatever its size: a request past the bound is cut to its first line and refused (431).

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`), all wrapped: `Http1Server.read_headers` and
`Http1Client.read_headers` (`mitmproxy.proxy.layers.http._http1`: without it, a head is buffered
until its blank line, however long), `Http2Server.__init__` and `handle_h2_event` (`_http2`: without
it, a header block past h2's 64 KiB ends the whole connection; the patch puts its own HPACK decoder
in h2's connection and wraps h2's `_frame_dispatch_table[HeadersFrame]`), and
`mitmproxy.addons.next_layer.NextLayer._get_host_header` (without it, the choice of layer waits for
a Host header however long the head). A cut HTTP/1 connection's `state`, `send` and `mark_done`
are set on that connection alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any
from weakref import WeakSet

import h2.errors
import h2.events
from hyperframe.frame import HeadersFrame
from mitmproxy import connection, http
from mitmproxy.addons.next_layer import NeedsMoreData, NextLayer
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    RequestEndOfMessage,
    RequestHeaders,
    ResponseHeaders,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._http1 import Http1Client, Http1Server, make_error_response
from mitmproxy.proxy.layers.http._http2 import Http2Server, parse_h2_request_headers
from mitmproxy.utils import human

from tollgate.proxy.heads import BoundedDecoder, http1_first_line, http1_head_past

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
