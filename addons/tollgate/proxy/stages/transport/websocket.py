"""OpenAI's Realtime API over WebSocket: a browser's key among the offered subprotocols is taken as
the caller's credential and never forwarded; every message goes on as it came while the flow keeps
only a stand-in for it (what the console shows and saved flows hold); the usage the server reports
is added up as its events pass."""

from __future__ import annotations

import logging

from mitmproxy import ctx, http
from mitmproxy.websocket import WebSocketMessage
from wsproto.handshake import WEBSOCKET_VERSION

from tollgate.calls.call import Call
from tollgate.formats.bodies.raw_headers import with_header
from tollgate.formats.openai_realtime import REALTIME, insecure_keys, response_done_usage, summed
from tollgate.formats.refusals import BAD_REQUEST
from tollgate.proxy import patches
from tollgate.proxy.flows import call_of, refuse
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

SUBPROTOCOLS = b"sec-websocket-protocol"
EXTENSIONS = b"sec-websocket-extensions"
# Close codes of a WebSocket that ended as meant to: normal, going away, no code given.
NORMAL_CLOSE = frozenset((1000, 1001, 1005))
# The largest message relayed: above OpenAI's largest Realtime event (15 MiB of audio in one
# `input_audio_buffer.append`, some 20 MiB once base64-encoded). mitmproxy holds each one whole.
MAX_MESSAGE = 32 * 1024 * 1024
# A session relays messages many times a second for as long as it lasts (audio): the flow keeps the
# stand-ins of the latest KEPT_MESSAGES to twice as many, so that a long session's memory stays flat.
KEPT_MESSAGES = 1000


def stand_in(size: int) -> bytes:
    return b"[redacted by Tollgate: %d bytes]" % size


def is_relayed_upgrade(headers: dict[bytes, bytes]) -> bool:
    """Whether mitmproxy (its `websocket` option on) relays this upgrade as WebSocket messages, which
    Tollgate reads and keeps out of the flow; any other upgrade it would pass on as raw TCP."""
    upgrade, version = headers.get(b"upgrade", b""), headers.get(b"sec-websocket-version")
    return upgrade.lower() == b"websocket" and version == WEBSOCKET_VERSION


class WebSocket:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.relays_websocket = False  # mitmproxy's `websocket` option, once configured

    def load(self, _loader: object) -> None:
        patches.bound_websocket_messages(MAX_MESSAGE)
        patches.relay_injected_messages_apart()

    def configure(self, updated: set[str]) -> None:
        if "websocket" in updated:
            self.relays_websocket = ctx.options.websocket

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is not None and call.request.streamed_upload:  # decided at its headers, as it goes on unread
            self._check(flow, call)

    def request(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is not None and not call.request.streamed_upload:
            self._check(flow, call)

    def _check(self, flow: http.HTTPFlow, call: Call) -> None:
        headers = call.request.headers
        realtime = call.classification.endpoint == REALTIME
        relayed = realtime or call.classification.session  # the WebSockets whose messages Tollgate reads
        if (
            relayed
            and b"upgrade" in headers
            and flow.response is None
            and not (self.relays_websocket and is_relayed_upgrade(headers))
        ):
            call.answer.error = "bad request: not a WebSocket upgrade Tollgate relays"
            refuse(flow, call, BAD_REQUEST, "Tollgate relays OpenAI's WebSockets over WebSocket (version 13) only.")
        if relayed and EXTENSIONS in headers and flow.response is None:
            # No extension is negotiated: with permessage-deflate, mitmproxy would inflate every
            # message whole, without bound, before any hook sees it (a few KiB can inflate to GiB).
            flow.request.headers.fields = tuple(f for f in flow.request.headers.fields if f[0].lower() != EXTENSIONS)
            del headers[EXTENSIONS]
        offered = headers.get(SUBPROTOCOLS)
        if offered is None:
            return
        keys, rest = insecure_keys(offered.decode("utf-8", "surrogateescape"))
        if not keys:
            return
        # The keys leave the subprotocols of every call, whatever comes next: they are neither
        # forwarded nor shown.
        request = flow.request
        kept = rest.encode("utf-8", "surrogateescape")
        fields = with_header(request.headers.fields, SUBPROTOCOLS, kept)
        request.headers.fields = fields if kept else tuple(f for f in fields if f[0].lower() != SUBPROTOCOLS)
        if kept:
            headers[SUBPROTOCOLS] = kept
        else:
            del headers[SUBPROTOCOLS]
        distinct = {key for key in keys if key}
        if not realtime or flow.response is not None or not distinct:
            return
        # On the Realtime API the key goes where it goes in every other call: the later stages
        # identify the caller by it and swap it for the upstream key.
        bearer = f"Bearer {distinct.pop()}".encode("utf-8", "surrogateescape")
        if distinct or headers.get(b"authorization", bearer) != bearer:
            call.answer.error = "bad request: more than one API key"
            refuse(flow, call, BAD_REQUEST, "Tollgate: this request carries more than one API key.")
        elif b"authorization" not in headers:
            headers[b"authorization"] = bearer
            request.headers.fields = (*request.headers.fields, (b"authorization", bearer))

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        messages = flow.websocket.messages
        message = messages[-1]
        # mitmproxy forwards the message object it made (its content, unless dropped), not the
        # flow's list entry: the entry becomes a stand-in, for every later addon and saved flows.
        content = stand_in(len(message.content))
        messages[-1] = WebSocketMessage(message.type, message.from_client, content, message.timestamp)
        if len(messages) > 2 * KEPT_MESSAGES:
            del messages[:-KEPT_MESSAGES]
        call = call_of(flow)
        if message.from_client or call is None or call.classification.session:  # a session's: `ResponsesSocket`
            return
        if message.injected:  # Tollgate's own: an error event, or a server event sent in its turn (read as it came)
            return
        try:
            usage = response_done_usage(message.content)
        except Exception:  # a reader fault must not stop the hook: later addons would see the content
            logger.exception("Tollgate: reading usage from a Realtime event failed")
            call.answer.error = call.answer.error or "usage reader failed"
            return
        if usage is not None:
            call.answer.usage = summed(call.answer.usage, usage)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        websocket = flow.websocket
        assert websocket is not None
        if websocket.close_reason:  # free text from either side, shown and saved like a message
            websocket.close_reason = stand_in(len(websocket.close_reason.encode())).decode()
        too_big = patches.closed_for_a_large_message
        from_client = flow.client_conn in too_big
        closed_here = from_client or flow.server_conn in too_big
        if closed_here:
            # Tollgate closed it: what either side did after (a dropped connection: 1006) is not the close.
            websocket.close_code, websocket.closed_by_client = patches.MESSAGE_TOO_BIG, from_client
        call = call_of(flow)
        if call is not None:
            call.request.transport = "websocket"
        if call is None or call.answer.error is not None or websocket.close_code in NORMAL_CLOSE:
            return
        who = "client" if websocket.closed_by_client else "server"
        if closed_here:
            call.answer.error = (
                f"the {who} sent a WebSocket message larger than {MAX_MESSAGE // 2**20} MiB (closed with code 1009)"
            )
        else:
            call.answer.error = f"the {who} closed the WebSocket with code {websocket.close_code}"
