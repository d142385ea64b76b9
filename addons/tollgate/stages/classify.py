"""Which provider, endpoint and model a call is, and what it asks for."""

from __future__ import annotations

from mitmproxy import http

from ..call import Call
from ..providers import provider_for
from ..providers.base import MISCONFIGURED
from .shared import CALL, Shared, refuse


def request_body(request: http.Request) -> bytes | None:
    """The body with its content-encoding undone; None when it cannot be."""
    try:
        return request.get_content(strict=True)
    except ValueError:
        return None


class Classify:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        provider = provider_for(flow.request.host, flow.request.port)
        if provider is None:
            return
        path = flow.request.path.split("?", 1)[0]
        call = Call(provider=provider.name, host=flow.request.host, method=flow.request.method, path=path)
        call.classification = provider.classify(call.method, path, request_body(flow.request))
        call.credential_positions = provider.positions_present(flow.request.headers, flow.request.query)
        flow.metadata[CALL] = call
        if not self.shared.ready:
            refuse(flow, call, MISCONFIGURED, "Tollgate has no valid configuration; see its console.")
            call.error = "no valid configuration"
