"""One audit record per call, written when the call ends, however it ends."""

from __future__ import annotations

import time

from mitmproxy import http

from ..providers.base import with_header
from .shared import CALL, Shared, call_of

REQUEST_ID_HEADER = "x-tollgate-request-id"


class Audit:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._live: set[http.HTTPFlow] = set()

    def request(self, flow: http.HTTPFlow) -> None:
        if call_of(flow) is not None:
            self._live.add(flow)

    requestheaders = request  # a streamed upload's call is live from its headers on

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None:
            return
        headers = flow.response.headers
        headers.fields = with_header(headers.fields, REQUEST_ID_HEADER.encode(), call.request_id.encode())
        call.status = flow.response.status_code

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:  # a WebSocket's call ends with it
            self._finish(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def done(self) -> None:
        for flow in list(self._live):
            call = call_of(flow)
            if call is not None:
                call.error = call.error or "proxy shut down during the call"
            self._finish(flow)
        if self.shared.audit is not None:
            self.shared.audit.close()  # after the last record: it writes what is queued
            self.shared.audit = None

    def _finish(self, flow: http.HTTPFlow) -> None:
        self._live.discard(flow)
        call = call_of(flow)
        if call is None:
            return
        call.ended = time.time()
        if flow.response is not None:
            # Set at `responseheaders`, or with Tollgate's own answers; else (a response an addon set) now.
            if call.status is None and REQUEST_ID_HEADER not in flow.response.headers:
                flow.response.headers[REQUEST_ID_HEADER] = call.request_id
            call.status = flow.response.status_code
        record = call.audit_record()
        if self.shared.audit is not None:
            self.shared.audit.write(record)
        flow.comment = call.summary()
        # From here on the flow carries plain data that saved flows can hold: the audit record.
        flow.metadata[CALL] = record
