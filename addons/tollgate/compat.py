"""What mitmproxy 12.2 cannot do through its addon API, and Tollgate needs: answer a failed
upstream in the provider's own error shape. mitmproxy sends a fixed HTML page when the upstream is
unreachable or breaks before its headers, whatever the `error` hook did; mitmproxy PR #7999
proposes that a response set by the error hook be sent instead. This is that behaviour, until it
ships.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http import (
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    SendHttp,
)


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
                response = self.flow.response
                yield SendHttp(ResponseHeaders(self.stream_id, response, end_stream=False), self.context.client)
                if response.raw_content:
                    yield SendHttp(ResponseData(self.stream_id, response.raw_content), self.context.client)
                yield SendHttp(ResponseEndOfMessage(self.stream_id), self.context.client)
                reply = None
            else:
                reply = yield command

    stream_class.handle_protocol_error = handle_protocol_error
    stream_class._tollgate_serves_error_responses = True
