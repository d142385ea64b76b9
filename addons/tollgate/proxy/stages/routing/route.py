"""Where a call goes: an override's or the provider's configured `upstream`, or the host the client
asked for (an mTLS host of Google's: its twin without mTLS)."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from mitmproxy import ctx, http, tls
from mitmproxy.net.http import url

from tollgate.calls.call import Call
from tollgate.formats.bodies.raw_headers import with_header
from tollgate.governance.routing.upstream import target_upstream
from tollgate.providers import host_name
from tollgate.proxy.flows import UNREAD, call_of, drop_alt_svc, provider_of
from tollgate.proxy.state import Shared

_DEFAULT_PORTS = {"http": 80, "https": 443}


class Address(NamedTuple):
    scheme: str
    host: str
    port: int
    authority: str  # host[:port], the port left out where it is the scheme's


@lru_cache(maxsize=64)
def address_of(upstream: str) -> Address:
    """A configured upstream's address, parsed once."""
    target = urlsplit(upstream)
    scheme, host = target.scheme, target.hostname or ""
    port = target.port or (443 if scheme == "https" else 80)
    return Address(scheme, host, port, url.hostport(scheme, host, port))


def send_to(request: http.Request, upstream: str) -> None:
    """The request sent to `upstream` (scheme://host[:port]): what mitmproxy's scheme, host and port
    setters do, but with one pass over the headers where each setter scans them
    (docs/performance.md). The TLS SNI follows the host."""
    scheme, host, port, authority = address_of(upstream)
    data = request.data
    data.scheme, data.host, data.port = scheme.encode(), host, port
    value = authority.encode("utf-8", "surrogateescape")
    data.headers.fields = with_header(data.headers.fields, b"host", value, add=False)
    if data.authority:  # HTTP/2's :authority
        request.authority = authority


class Destination:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        # A rule's upstream, else the provider's; a call routed to another provider goes to
        # that provider's real host; else to the host the client asked for.
        provider, settings = provider_of(call), call.loaded.providers[call.route.target.provider]
        upstream = target_upstream(
            provider, settings, call.route.upstream, routed=call.route.rerouted, classification=call.sent()
        )
        request = flow.request
        if upstream is None:
            twin = provider.upstream.host(call.host, settings)
            if twin is not None:
                upstream = f"{request.scheme}://{url.hostport(request.scheme, twin, request.port)}"
        if upstream is None:
            scheme, host, port = request.scheme, request.host, request.port
            # url.hostport's, without the dict it builds on every call (docs/performance.md)
            authority = host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
            call.route.upstream = f"{scheme}://{authority}"
            return
        send_to(request, upstream)
        call.route.upstream = upstream

    def unread(self, flow: http.HTTPFlow) -> None:
        """A request to a provider's host that is no call (`flows.UNREAD`: ChatGPT's web app) goes
        where the provider's calls go: its configured `upstream`, else the host asked for."""
        name = flow.metadata.get(UNREAD)
        loaded = self.shared.loaded
        if name is None or loaded is None or flow.response is not None:
            return
        upstream = loaded.providers[name].upstream
        if upstream is not None:
            send_to(flow.request, upstream)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # The next call to the host goes where this one did: through Tollgate.
        if flow.response is not None and call_of(flow) is not None:
            drop_alt_svc(flow.response)

    def tls_start_server(self, tls_start: tls.TlsData) -> None:
        """A connection to an mTLS host whose provider has a client certificate (`client_cert`)
        presents it. mitmproxy's TLS settings make the connection first, exactly as for any other
        (its own hook, run later, then leaves it be), and the certificate is added to it."""
        loaded = self.shared.loaded
        sni = tls_start.conn.sni
        if loaded is None or not loaded.client_certs or not sni or tls_start.ssl_conn is not None:
            return
        name = host_name(sni)
        provider = loaded.hosts.provider_for(name)
        cert = (
            loaded.client_certs.get(provider.name)
            if provider is not None and provider.upstream.is_mtls_host(name)
            else None
        )
        if cert is None:
            return
        ctx.master.addons.get("tlsconfig").tls_start_server(tls_start)
        assert tls_start.ssl_conn is not None
        tls_start.ssl_conn.use_certificate(cert.certificate)
        tls_start.ssl_conn.use_privatekey(cert.key)
