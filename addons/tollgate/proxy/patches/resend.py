"""A call's request sent upstream again, before any byte of a failed attempt's answer reaches the
client.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`), both wrapped, in
`mitmproxy.proxy.layers.http`: `HttpStream.state_wait_for_response_headers` and
`HttpStream.handle_protocol_error`. Without it, a failed attempt's answer or error page goes to the
client; mitmproxy cannot send a request again. It also reads the stream's `_paused_event_queue`,
and takes the attempt off `Http1Client.state` or `Http2Client.our_stream_id` and `streams`.

`governance/routing/failover.py` says why this way. mitmproxy's HTTP stream sends an answer's
headers to the client only after the `responseheaders` hook, and its error page only after the `error` hook; for
a flow that `may_resend` names, on a status it names or a failure of its connection or its wait,
the stream first runs the `attempt_failed` hook (`AttemptFailedHook`). If a step of it called
`resend`, the attempt is cancelled upstream and the request goes again, through mitmproxy's own
connection handling; otherwise the stream goes on as it would have."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from mitmproxy import flow as mitmproxy_flow
from mitmproxy import http
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    RequestData,
    RequestEndOfMessage,
    RequestHeaders,
    RequestProtocolError,
    RequestTrailers,
    ResponseData,
    ResponseEndOfMessage,
    ResponseProtocolError,
    ResponseTrailers,
    SendHttp,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client
from mitmproxy.proxy.layers.http._http2 import Http2Client

from tollgate.proxy.patches.http_stream import EndIfWaiting, _on_request_sent, _resends


@dataclass
class AttemptFailedHook(commands.StartHook):
    """An attempt of `flow` failed before its answer began: `flow.response` holds its status and
    headers (its body not read), or `flow.error` says how its connection or its wait failed. A
    step that wants the request sent again calls `resend(flow)`."""

    flow: http.HTTPFlow


# The flows that may be sent again: the statuses that make an attempt failed, and whether a failed
# connection (or a timeout) does.
_may_resend: WeakKeyDictionary[http.HTTPFlow, tuple[frozenset[int], bool]] = WeakKeyDictionary()
_resend: WeakSet[http.HTTPFlow] = WeakSet()
# What a failed attempt may still report to its stream, dropped once it is sent again.
_FROM_THE_ATTEMPT = (ResponseData, ResponseTrailers, ResponseEndOfMessage, ResponseProtocolError, EndIfWaiting)


def may_resend(flow: http.HTTPFlow, statuses: frozenset[int], errors: bool) -> None:
    _may_resend[flow] = (statuses, errors)


def no_more_resends(flow: http.HTTPFlow) -> None:
    _may_resend.pop(flow, None)


def resend(flow: http.HTTPFlow) -> None:
    """From an `attempt_failed` step: send the flow's request again."""
    _resend.add(flow)


def resends(flow: http.HTTPFlow) -> int:
    """How many times the flow's request went again."""
    return _resends.get(flow, 0)


def resend_failed_attempts() -> None:
    stream_class = http_layers.HttpStream
    if getattr(stream_class, "_tollgate_resends", False):
        return
    answered, failed = stream_class.state_wait_for_response_headers, stream_class.handle_protocol_error

    def state_wait_for_response_headers(self: Any, event: Any) -> Generator[Any, Any, None]:
        may = _may_resend.get(self.flow)
        if may is None or event.response.status_code not in may[0]:
            return answered(self, event)
        return _answered(self, event, answered)

    def handle_protocol_error(self: Any, event: Any) -> Generator[Any, Any, None]:
        may = _may_resend.get(self.flow)
        if (
            may is not None
            and may[1]
            and type(event) is ResponseProtocolError
            and self.server_state == self.state_wait_for_response_headers
            and self.client_state == self.state_done
            and self.flow.response is None
        ):
            return _failed(self, event, failed)
        return failed(self, event)

    state_wait_for_response_headers.__name__ = "state_wait_for_response_headers"  # mitmproxy's repr names it
    stream_class.state_wait_for_response_headers = state_wait_for_response_headers  # type: ignore[method-assign]
    stream_class.handle_protocol_error = handle_protocol_error  # type: ignore[method-assign]
    stream_class._tollgate_resends = True  # type: ignore[attr-defined]


def _answered(stream: Any, event: Any, answered: Callable[..., Any]) -> Generator[Any, Any, None]:
    stream.flow.response = event.response
    yield AttemptFailedHook(stream.flow)
    if _to_resend(stream):
        yield from _again(stream)
        return
    yield from answered(stream, event)


def _failed(stream: Any, event: Any, failed: Callable[..., Any]) -> Generator[Any, Any, None]:
    stream.flow.error = mitmproxy_flow.Error(event.message)
    yield AttemptFailedHook(stream.flow)
    if _to_resend(stream):
        yield from _again(stream)
        return
    yield from failed(stream, event)


def _to_resend(stream: Any) -> bool:
    """A resend asked for, and the client still waiting (not gone while the hook ran)."""
    flow = stream.flow
    if flow not in _resend:
        return False
    _resend.discard(flow)
    client_gone = any(type(e) is RequestProtocolError for e in stream._paused_event_queue)
    return not client_gone and flow.client_conn.connected and flow.request.raw_content is not None


def _again(stream: Any) -> Generator[Any, Any, None]:
    flow = stream.flow
    _resends[flow] = _resends.get(flow, 0) + 1
    # What the failed attempt reported while the hook ran is its, not the next one's.
    stream._paused_event_queue = deque(e for e in stream._paused_event_queue if not isinstance(e, _FROM_THE_ATTEMPT))
    yield from _cancel(stream)
    flow.response = None
    flow.error = None
    if not (yield from stream.make_server_connection()):
        return  # its failure went through `handle_protocol_error`: perhaps again, else the error hook
    request = flow.request
    content = request.raw_content
    server = stream.context.server
    yield SendHttp(RequestHeaders(stream.stream_id, request, not (content or request.trailers)), server)
    if content:
        yield SendHttp(RequestData(stream.stream_id, content), server)
    if request.trailers:
        yield SendHttp(RequestTrailers(stream.stream_id, request.trailers), server)
    yield SendHttp(RequestEndOfMessage(stream.stream_id), server)
    for on_sent in _on_request_sent:  # as `note_requests_sent` notes a first attempt's
        on_sent(flow)


def _cancel(stream: Any) -> Generator[Any, Any, None]:
    """The failed attempt cancelled upstream, and its connection's layer made to report nothing
    more of it to the stream (which the next attempt uses, under the same stream id)."""
    layers = stream.context.layers
    http_layer = layers[layers.index(stream) - 1]
    server = stream.context.server
    handler = http_layer.connections.get(server)
    if handler is None or handler is stream:
        return
    client = handler.context.layers[-1]
    if isinstance(client, Http1Client):
        # One request at a time: the connection closes, and what it reports of it is dropped.
        client.state = client.done
        if server.connected:
            yield SendHttp(RequestProtocolError(stream.stream_id, "tried again", ErrorCode.CANCEL), server)
    elif isinstance(client, Http2Client):
        ours = client.our_stream_id.get(stream.stream_id)
        if ours is None:
            return
        if server.connected:
            yield SendHttp(RequestProtocolError(stream.stream_id, "tried again", ErrorCode.CANCEL), server)
        # The next attempt gets a stream of its own; the reset one reports nothing more.
        client.our_stream_id.pop(stream.stream_id, None)
        client.streams.pop(ours, None)
