"""Where a call goes: an override's or the provider's configured `upstream`, or the host the client asked for."""

from __future__ import annotations

from urllib.parse import urlsplit

from mitmproxy import http

from ..call import Call
from .shared import CallStage, Shared, provider_of


class Route(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        # A rule's upstream, else the provider's; a call routed to another provider goes to
        # that provider's real host; else to the host the client asked for.
        upstream = call.upstream or self.shared.config.providers.get(call.provider).upstream
        if upstream is None and call.requested_provider is not None:
            upstream = f"https://{provider_of(call).default_host}"
        if upstream is None:
            port = "" if flow.request.port == 443 else f":{flow.request.port}"
            call.upstream = f"{flow.request.scheme}://{flow.request.host}{port}"
            return
        target = urlsplit(upstream)
        flow.request.scheme = target.scheme
        # Setting host and port also rewrites the Host header; the TLS SNI follows the host.
        flow.request.host = target.hostname or ""
        flow.request.port = target.port or (443 if target.scheme == "https" else 80)
        call.upstream = upstream
