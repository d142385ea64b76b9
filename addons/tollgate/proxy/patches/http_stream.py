"""A call's flow where mitmproxy's addon API does not reach it.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`), all wrapped, in
`mitmproxy.proxy.layers.http`: `HttpStream.handle_protocol_error` (an upstream's break: mitmproxy
sends its own error page, or breaks the client's side, and says nothing of who ended the flow),
`HttpStream.state_consume_request_body` and `state_stream_request_body` (mitmproxy has no hook for
a request gone upstream), `HttpLayer._handle_event` and `HttpStream._handle_event` (mitmproxy cannot
end a flow in transit), `HttpStream.send_response` (mitmproxy adds nothing to a streamed answer
after its upstream's end), `HttpStream.state_consume_response_body` (mitmproxy reads an answer it
does not stream whole, however large), `HttpStream.state_stream_response_body` (mitmproxy reads a
stream on to its end, and calls its stream callable on the event loop); and
`mitmproxy.proxy.server.ConnectionHandler.hook_task` (every hook goes through every addon). It sets
a stream's `server_state` to mitmproxy's own states (`state_errored`).

Taught here: the response the error hook set is served, a flow its client ended is told from
one its upstream did, a request is noted once it has gone upstream, a flow that waits too long
for its answer is ended, a streamed response gets its last bytes from Tollgate (after its
upstream's, or in place of its upstream's break), and a large piece of one is read by its tap in
a worker thread.

mitmproxy sends a fixed HTML page when the upstream is unreachable or breaks before its headers,
whatever the `error` hook did; mitmproxy PR #7999 proposes that a response set by the error hook be
sent instead. `serve_responses_set_by_error_hook` is that behaviour, until it ships."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from mitmproxy import http
from mitmproxy.proxy import commands, events, server
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    DropStream,
    ErrorCode,
    RequestEndOfMessage,
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    SendHttp,
)


def serve_responses_set_by_error_hook() -> None:
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_serves_error_responses", False):
        return
    original = stream_class.handle_protocol_error

    def handle_protocol_error(self: Any, event: Any) -> Generator[Any, Any, None]:
        had_response = self.flow.response is not None

        def served(command: Any) -> list[Any] | None:
            response = self.flow.response
            if had_response or not isinstance(response, http.Response) or not _breaks_client(self, command, event):
                return None
            client = self.context.client
            sent = [SendHttp(ResponseHeaders(self.stream_id, response, end_stream=False), client)]
            if response.raw_content:
                sent.append(SendHttp(ResponseData(self.stream_id, response.raw_content), client))
            return [*sent, SendHttp(ResponseEndOfMessage(self.stream_id), client)]

        yield from _edited(original(self, event), instead=served)

    stream_class.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign]
    stream_class._tollgate_serves_error_responses = True  # type: ignore[attr-defined]


# How many times each flow's request went again (`resend.py` counts them).
_resends: WeakKeyDictionary[http.HTTPFlow, int] = WeakKeyDictionary()

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
        def sent(command: Any) -> tuple[Any, ...]:  # carried out: its bytes are written
            if (
                type(command) is SendHttp
                and type(command.event) is RequestEndOfMessage
                and command.connection is self.context.server
            ):
                for on_sent in _on_request_sent:
                    on_sent(self.flow)
            return ()

        yield from _edited(state(self, event), after=sent)

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
    sent = _resends.get(flow, 0)
    yield from stream.handle_protocol_error(
        ResponseProtocolError(stream.stream_id, event.message, ErrorCode.GENERIC_SERVER_ERROR)
    )
    # Only now: an answer that arrives while the error hook runs finds the stream ended. A request
    # sent again in its place (`resend`) cancelled this attempt itself.
    if upstream.connected and _resends.get(flow, 0) == sent:
        yield SendHttp(RequestProtocolError(stream.stream_id, event.message, ErrorCode.CANCEL), upstream)


# The last bytes of a response streamed to its client, to send before the response ends
# (`end_response_with`).
_tails: WeakKeyDictionary[http.HTTPFlow, bytes] = WeakKeyDictionary()


def end_response_with(flow: http.HTTPFlow, tail: bytes) -> None:
    """Have `tail` sent as the last bytes of the response streamed to the flow's client, and the
    response then ended as it would have: set by the `response` hook, after what its stream
    passed; by the `error` hook, when the upstream broke off the answer, in place of that break
    (`finish_streamed_responses`)."""
    _tails[flow] = tail


def finish_streamed_responses() -> None:
    """mitmproxy sends nothing of a streamed response once its upstream has sent its end, and
    breaks the client's connection (HTTP/1) or resets its stream (HTTP/2) when the upstream breaks
    off after its headers. Taught here, its HTTP stream sends the tail `end_response_with` set:
    after the `response` hook of a streamed response; and, when the upstream broke off, in place of
    the break, followed by the response's end, so that the client gets a whole answer."""
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_finishes_streams", False):
        return
    send_response, handle_protocol_error = stream_class.send_response, stream_class.handle_protocol_error

    def send_response_then_tail(self: Any, already_streamed: bool = False) -> Generator[Any, Any, None]:
        def tail_after_hook(command: Any) -> tuple[Any, ...]:
            if not (already_streamed and isinstance(command, http_layers.HttpResponseHook)):
                return ()
            tail = _tails.pop(self.flow, None)
            if not tail or self.flow.error:
                return ()
            return (SendHttp(ResponseData(self.stream_id, tail), self.context.client),)

        yield from _edited(send_response(self, already_streamed), after=tail_after_hook)

    def finish_instead_of_breaking(self: Any, event: Any) -> Generator[Any, Any, None]:
        streaming = isinstance(event, ResponseProtocolError) and self.server_state == self.state_stream_response_body

        def finished(command: Any) -> list[Any] | None:
            tail = _tails.pop(self.flow, None) if streaming and _breaks_client(self, command, event) else None
            if tail is None:
                return None
            client = self.context.client
            sent = [SendHttp(ResponseData(self.stream_id, tail), client)] if tail else []
            return [*sent, SendHttp(ResponseEndOfMessage(self.stream_id), client)]

        yield from _edited(handle_protocol_error(self, event), instead=finished)

    stream_class.send_response = send_response_then_tail  # type: ignore[method-assign]
    stream_class.handle_protocol_error = finish_instead_of_breaking  # type: ignore[method-assign]
    stream_class._tollgate_finishes_streams = True  # type: ignore[attr-defined]


Past = Callable[[http.HTTPFlow], Callable[[bytes], Any] | None]
# By flow, weakly: a flow answered within its bound is forgotten with it. `Past` is given the flow
# when called, never holds it: a value holding its key would keep both for the life of the process.
_bounds: WeakKeyDictionary[http.HTTPFlow, tuple[int, Past]] = WeakKeyDictionary()


def read_whole_up_to(flow: http.HTTPFlow, limit: int, past: Past) -> None:
    """Have the flow's response, read whole (`response.stream` False), read only up to `limit`
    bytes: past that, it streams from there on through the callable `past(flow)` gives (what was
    read first too), its headers sent then (`bound_responses_read_whole`); or, where it gives
    None (having set the flow's response to a refusal), the refusal is sent and the upstream
    closed."""
    _bounds[flow] = (limit, past)


def bound_responses_read_whole() -> None:
    """mitmproxy reads a response it does not stream whole, however large. Taught here, one that
    `read_whole_up_to` bounds goes on streamed once it passes its bound, as mitmproxy's own
    `stream_large_bodies` does with every response."""
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_bounds_whole", False):
        return
    consuming = stream_class.state_consume_response_body

    def bounded(self: Any, event: Any) -> Generator[Any, Any, None]:
        yield from consuming(self, event)
        bound = _bounds.get(self.flow)
        if bound is None or not isinstance(event, ResponseData) or len(self.response_body_buf) <= bound[0]:
            return
        if self.server_state != self.state_consume_response_body:
            return
        del _bounds[self.flow]
        stream = bound[1](self.flow)
        read = bytes(self.response_body_buf)
        self.response_body_buf.clear()
        if stream is None:  # refused instead (the flow's response is the refusal): the upstream closed
            cancel = RequestProtocolError(self.stream_id, "the answer was refused unread", ErrorCode.CANCEL)
            yield SendHttp(cancel, self.context.server)
            yield from self.send_response()
            return
        self.flow.response.stream = stream
        yield from self.start_response_stream()
        yield from self.handle_event(ResponseData(self.stream_id, read))

    stream_class.state_consume_response_body = bounded  # type: ignore[method-assign]
    stream_class._tollgate_bounds_whole = True  # type: ignore[attr-defined]


def stop_streams_their_taps_end() -> None:
    """A streamed response whose stream callable says it has `stopped` (an answer a guardrail
    denied, whose last bytes, an error event, went to the client) ends there: the upstream's side
    is cancelled (an HTTP/1 connection closed, an HTTP/2 stream reset: generation stops), the
    `response` hook runs and the client's response is ended as a whole one is. mitmproxy would
    read the upstream on to its end.

    What the upstream sent after the cut is dropped: the events read with the bytes before it, or
    queued while the `response` hook ran (mitmproxy's done state takes none: an AssertionError
    that would end the client's connection, its other HTTP/2 streams with it), and a break of the
    upstream's side after it (mitmproxy would pass it on to the client, whose answer has ended)."""
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_stops_streams", False):
        return
    streaming, handle_protocol_error = stream_class.state_stream_response_body, stream_class.handle_protocol_error

    def stopping(self: Any, event: Any) -> Generator[Any, Any, None]:
        yield from streaming(self, event)
        response = self.flow.response
        tap = response.stream if response is not None else None
        if not (isinstance(event, ResponseData) and getattr(tap, "stopped", False)):
            return
        if self.server_state != self.state_stream_response_body:
            return
        cancel = RequestProtocolError(self.stream_id, "the answer was stopped by a guardrail", ErrorCode.CANCEL)
        yield SendHttp(cancel, self.context.server)
        _cut.add(self)
        yield from self.send_response(already_streamed=True)
        self.server_state = self.state_errored  # mitmproxy's state that consumes every event silently

    def after_the_cut(self: Any, event: Any) -> Generator[Any, Any, None]:
        if isinstance(event, ResponseProtocolError) and self in _cut:
            # The upstream's side, cancelled: nothing of it goes to the client, whose answer has
            # ended; the stream is let go as mitmproxy lets go of one that failed.
            self.flow.live = False
            yield DropStream(self.stream_id)
            return
        yield from handle_protocol_error(self, event)

    stream_class.state_stream_response_body = stopping  # type: ignore[method-assign]
    stream_class.handle_protocol_error = after_the_cut  # type: ignore[method-assign]
    stream_class._tollgate_stops_streams = True  # type: ignore[attr-defined]


# The HTTP streams whose answer was cut (`stop_streams_their_taps_end`): what their upstream sends
# on is dropped.
_cut: WeakSet[Any] = WeakSet()


Steps = Generator[Any, Any, None]


def _edited(
    steps: Steps,
    instead: Callable[[Any], list[Any] | None] = lambda _: None,
    after: Callable[[Any], tuple[Any, ...]] = lambda _: (),
) -> Steps:
    """A layer's steps, each command for which `instead` gives commands replaced by them; each
    other, once carried out, followed by the commands `after` gives."""
    reply = None
    while True:
        try:
            command = steps.send(reply)
        except StopIteration:
            return
        replacement = instead(command)
        if replacement is None:
            reply = yield command
            yield from after(command)
        else:
            yield from replacement
            reply = None


def _breaks_client(stream: Any, command: Any, event: Any) -> bool:
    """Whether `command` passes the upstream's break on to the client."""
    return isinstance(command, SendHttp) and command.event is event and command.connection is stream.context.client


@dataclass
class AnswerPieceHook(commands.StartHook):
    """A piece of a streamed answer that its tap reads apart (`tap.reads_apart(data)`: a large
    piece the answer guardrails read, which the tap keeps): the tap reads it in a worker thread
    (`tap.off_loop(tap.read_apart)`) while the event loop serves the other connections; the stream
    then sends what the tap made of it. Its later events wait meanwhile, in order. No addon has
    business with it: it is not passed through them (`read_large_pieces_apart`)."""

    flow: http.HTTPFlow


class ReadsApart:
    """What a stream callable that reads large pieces apart shares (`read_large_pieces_apart`):
    `reads_apart` keeps a piece `_apart_wanted` says is to be read in a worker thread,
    `read_apart` reads it there (`_read_piece`: what the callable makes of a piece), and the
    callable, called with that piece, gives what was made of it (`_read_before`)."""

    _apart: bytes | None = None  # the piece to read apart
    _read_out: tuple[bytes, bytes | list[bytes]] | None = None  # a piece read apart, what goes on of it
    # Where a piece is read apart: `read_apart` given to a worker thread, an awaitable of its end
    # (set by the stage that makes the callable; None: every piece is read on the event loop).
    off_loop: Callable[[Callable[[], None]], Awaitable[None] | None] | None = None

    def _apart_wanted(self, chunk: bytes) -> bool:
        """Whether this piece (b"": the end) is to be read in a worker thread."""
        raise NotImplementedError

    def _read_piece(self, chunk: bytes) -> bytes | list[bytes]:
        """What goes on of a piece, read."""
        raise NotImplementedError

    def reads_apart(self, chunk: bytes) -> bool:
        """Whether this piece is read in a worker thread; kept for `read_apart`."""
        if self.off_loop is None or not self._apart_wanted(chunk):
            return False
        self._apart = chunk
        return True

    def read_apart(self) -> None:
        """The piece kept read, in a worker thread (the stream waits meanwhile): what goes on of
        it kept for the stream's call with it."""
        chunk, self._apart = self._apart, None
        if chunk is not None:
            self._read_out = (chunk, self._read_piece(chunk))

    def _read_before(self, chunk: bytes) -> bytes | list[bytes] | None:
        """What was made of this piece in a worker thread (None: it was not read apart)."""
        read = self._read_out
        if read is not None and (read[0] is chunk or not (read[0] or chunk)):
            self._read_out = None
            return read[1]
        return None


def read_large_pieces_apart() -> None:
    """A streamed response's piece that its tap reads apart is read in a worker thread before the
    tap is called with it, as mitmproxy calls a stream callable on the event loop. Its end too (the
    tap is asked with b""): where a tap reads at the end what it held (a JSON answer). The stream
    waits on an `AnswerPieceHook`, which the connection's handler gives the tap at once rather than
    to every addon (a hook's walk through them costs more than a large piece's reading)."""
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_reads_apart", False):
        return
    streaming = stream_class.state_stream_response_body

    def state_stream_response_body(self: Any, event: Any) -> Generator[Any, Any, None]:
        response = self.flow.response
        tap = response.stream if response is not None else None
        reads_apart = getattr(tap, "reads_apart", None)
        if reads_apart is not None:
            piece = event.data if isinstance(event, ResponseData) else None
            if piece is None and isinstance(event, ResponseEndOfMessage):
                piece = b""
            if piece is not None and reads_apart(piece):
                yield AnswerPieceHook(self.flow)
        yield from streaming(self, event)

    stream_class.state_stream_response_body = state_stream_response_body  # type: ignore[method-assign]
    handler_class = server.ConnectionHandler
    hook_task = handler_class.hook_task

    def task_of_hook(self: Any, hook: commands.StartHook) -> Coroutine[Any, Any, None]:
        if isinstance(hook, AnswerPieceHook):
            return _read_piece_apart(self, hook)
        return hook_task(self, hook)

    handler_class.hook_task = task_of_hook  # type: ignore[method-assign]
    stream_class._tollgate_reads_apart = True  # type: ignore[attr-defined]


async def _read_piece_apart(handler: Any, hook: AnswerPieceHook) -> None:
    """The piece its tap keeps, read in a worker thread; then the stream goes on."""
    try:
        response = hook.flow.response
        tap = response.stream if response is not None else None
        off_loop = getattr(tap, "off_loop", None)
        if off_loop is not None and getattr(tap, "_apart", None) is not None:
            reading = off_loop(tap.read_apart)  # type: ignore[union-attr]
            if reading is not None:
                await reading
        # What the piece read waits on, on the event loop (the policy's answers on tool calls held).
        awaited = getattr(tap, "awaited", None)
        if awaited is not None:
            await awaited()
    finally:
        await handler.server_event(events.HookCompleted(hook))
