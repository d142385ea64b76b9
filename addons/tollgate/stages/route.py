"""Where a call goes: an override's or the provider's configured `upstream`, or the host the client asked for."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from mitmproxy import http

from ..call import Call
from .shared import CallStage, Shared, provider_of


@lru_cache(maxsize=64)
def address_of(upstream: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a configured upstream, parsed once."""
    target = urlsplit(upstream)
    return target.scheme, target.hostname or "", target.port or (443 if target.scheme == "https" else 80)


class Route(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        # A rule's upstream, else the provider's; a call routed to another provider goes to
        # that provider's real host; else to the host the client asked for.
        upstream = call.upstream or self.shared.config.providers.get(call.provider).upstream
        if upstream is None and call.requested_provider is not None:
            upstream = f"https://{provider_of(call).default_host}"
        request = flow.request
        if upstream is None:
            port = "" if request.port == 443 else f":{request.port}"
            call.upstream = f"{request.scheme}://{request.host}{port}"
            return
        request.scheme, host, port = address_of(upstream)
        # The host and port setters each rewrite the Host header: set the host underneath, so that
        # the port's setter rewrites it once, to both. The TLS SNI follows the host.
        request.data.host = host
        request.port = port
        call.upstream = upstream
