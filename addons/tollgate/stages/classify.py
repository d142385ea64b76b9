"""Which provider, endpoint and model a call is, and what it asks for."""

from __future__ import annotations

from mitmproxy import http

from ..call import Call
from ..providers import provider_for
from ..providers.base import BAD_REQUEST, MISCONFIGURED, header_index, parse_request_json
from ..providers.openai import classify_realtime
from .shared import CALL, Shared, refuse


def request_body(request: http.Request, headers: dict[bytes, bytes]) -> bytes | None:
    """The body with its content-encoding undone; None when it cannot be."""
    if b"content-encoding" not in headers:  # several times cheaper than get_content
        return request.raw_content
    try:
        return request.get_content(strict=True)
    except ValueError:
        return None


def is_large_upload(request: http.Request) -> bool:
    """Files and audio are streamed upstream as they arrive; JSON is read whole, as its model and
    facts are needed before the call may go."""
    headers = header_index(request.headers.fields)
    if b"json" in headers.get(b"content-type", b"").lower():
        return False
    length = headers.get(b"content-length", b"")
    if length.isdigit():
        return int(length) > STREAMED_UPLOAD
    return b"chunked" in headers.get(b"transfer-encoding", b"").lower()


STREAMED_UPLOAD = 4 * 1024 * 1024


class Classify:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None and is_large_upload(flow.request):
            call = self._classify(flow, read_body=False)
            if call is not None and flow.response is None:
                call.streamed_upload = True
                flow.request.stream = True

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or CALL in flow.metadata:
            return
        self._classify(flow, read_body=True)

    def _classify(self, flow: http.HTTPFlow, read_body: bool) -> Call | None:
        request = flow.request
        provider = provider_for(request.host, request.port)
        if provider is None:
            return None
        path = request.path.split("?", 1)[0]
        headers = header_index(request.headers.fields)
        method = request.method
        data = parse_request_json(request_body(request, headers)) if read_body else None
        # Positional: keyword arguments cost more than the call record's other fields together.
        call = Call(provider.name, request.host, method, path, provider.classify(method, path, data), data, headers)
        flow.metadata[CALL] = call
        if not self.shared.ready:
            refuse(flow, call, MISCONFIGURED, "Tollgate has no valid configuration; see its console.")
            call.error = "no valid configuration"
        elif call.provider == "openai":  # the Realtime API names its model in the query
            try:
                query = request.path.partition("?")[2]
                call.classification = classify_realtime(call.classification, method, query)
            except ValueError as e:
                call.error = f"bad request: {e}"
                refuse(flow, call, BAD_REQUEST, f"Tollgate cannot read this request exactly and did not forward it: {e}.")
        return call
