"""Once a request has been sent, the flow keeps no credential and no prompt: what mitmweb shows
and what `-w` saves is where the caller's credentials were, not what they were."""

from __future__ import annotations

from mitmproxy import http

from .shared import Shared, call_of, provider_of


class Redact:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def request(self, flow: http.HTTPFlow) -> None:
        # The request stages are done with the parsed body and headers (a prompt, a virtual key): let
        # them go now, not when the answer comes.
        call = call_of(flow)
        if call is not None:
            call.body, call.headers = None, {}

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._redact(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._redact(flow)

    def _redact(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None:
            return
        provider = provider_of(call)
        request = flow.request
        query = request.query if provider.query_positions else {}
        present = call.credential_positions
        if present is None:  # refused before Identify looked: the headers are as the client sent them
            present = provider.positions_present(request.headers, query)
        request.headers.fields = provider.redact(request.headers.fields, query, present)
        # None is mitmproxy's "content not kept"; the Content-Length header still tells its size.
        flow.request.raw_content = None
