"""Once a request has been sent, or answered without being sent, the flow keeps no credential and no
prompt: what mitmdump prints and what `-w` saves is where the caller's credentials were, not what
they were. So for every request to a governed host: an LLM call (refused ones, and paths outside
the model API, too) and a request to an MCP server's host (its servers' credential headers too).
A request mitmproxy refused before Tollgate read it (a malformed head: 400, with no host known yet)
and a CONNECT lose every header any credential of the configuration goes in, and every brokered
placeholder.
mitmproxy's dumper and flow saver run after Tollgate's addon, at `response`, `error` and
`http_connect_error`, and at shutdown for flows still open."""

from __future__ import annotations

from collections.abc import Collection

from mitmproxy import http

from tollgate.formats.bodies.raw_headers import header_index
from tollgate.governance.mcp.mcp_servers import NO_SERVERS
from tollgate.governance.routing.redaction import (
    QUERY_PARAMETERS,
    QUERY_POSITION_SET,
    QUERY_POSITIONS,
    credential_positions,
    query_variants,
    redacted_fields,
)
from tollgate.providers import host_name
from tollgate.providers.base import REDACTED
from tollgate.proxy.flows import BROKERED, MCP, UNREAD, call_of, scrub_placeholders
from tollgate.proxy.state import Shared, hosts_of

# What carries a web app's session on a provider's host beside the credentials of its calls.
WEB_APP_CREDENTIALS = (b"cookie",)


class Redact:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Calls sent upstream and not answered yet: at shutdown mitmproxy saves them as they are.
        self._sent: set[http.HTTPFlow] = set()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # mitmproxy's proxyauth has read the proxy login (and answered 407 to a wrong one, which
        # the console prints): the CONNECT request goes no further.
        self._every_credential(flow.request, body=False)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.error is not None:  # mitmproxy refused its head (its `error` hook follows): it goes nowhere
            self._every_credential(flow.request)
        elif flow.response is not None:  # answered before it was read (proxyauth's 407): it goes nowhere
            redact(flow.request, None)

    def request(self, flow: http.HTTPFlow) -> None:
        # The request stages are done with the parsed body and headers (a prompt, a virtual key): let
        # them go now, not when the answer comes.
        call = call_of(flow)
        if call is not None:
            call.request.body, call.request.client_body, call.request.headers = None, None, {}
        governed = call is not None or UNREAD in flow.metadata or BROKERED in flow.metadata
        if flow.response is None and (governed or self._mcp(flow) is not None):
            self._sent.add(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Also for an answer an addon set: mitmproxy runs `responseheaders` before `response` then too.
        self._sent.discard(flow)
        self._redact(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._sent.discard(flow)
        self._redact(flow)

    def done(self) -> None:
        for flow in self._sent:
            self._redact(flow)
        self._sent.clear()

    def _redact(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        request = flow.request
        if call is not None:
            # Where Identify saw the client's credentials; None if it has not looked (the request is
            # then as the client sent it).
            redact(request, call.caller.credential_positions)
            if (secret := call.request.secret_in_path) is not None:  # a secret in a path, or its model
                written, shown = (s.encode("utf-8", "surrogateescape") for s in secret)
                request.data.path = request.data.path.replace(written, shown)
        elif (also := self._mcp(flow)) is not None:
            redact(request, None, also)
        elif (headers := flow.metadata.get(BROKERED)) is not None:  # a brokered credential's token
            redact(request, None, headers)
        elif UNREAD in flow.metadata:  # a provider's web app (ChatGPT's): its session is in its cookies
            redact(request, None, WEB_APP_CREDENTIALS)
        elif hosts_of(self.shared).provider_for(request.host) is not None:  # an LLM call Tollgate never read
            redact(request, None)
        elif not request.host:  # refused by mitmproxy before its host was known
            self._every_credential(request)

    def _every_credential(self, request: http.Request, body: bool = True) -> None:
        """A request that goes nowhere, read as no host's (a CONNECT, a head mitmproxy refused):
        every header a credential of the configuration goes in (an MCP server's, a brokered
        one's) and every placeholder out, wherever it is."""
        loaded = self.shared.loaded
        if loaded is None:
            redact(request, None, body=body)
            return
        brokered = loaded.brokered
        also = {c.header.encode() for c in brokered.credentials}
        redact(request, None, also | loaded.mcp.credential_headers, body)
        if brokered:
            scrub_placeholders(request, brokered)

    def _mcp(self, flow: http.HTTPFlow) -> frozenset[bytes] | None:
        """Where the flow is a request to an MCP server's host (its server's URL, whose request may
        since have gone to the server's `upstream`; another path; one refused as misdirected): the
        headers the servers' credentials go in. Else None."""
        loaded = self.shared.loaded
        servers = loaded.mcp if loaded is not None else NO_SERVERS
        if MCP in flow.metadata or (servers and host_name(flow.request.host) in servers.hosts):
            return servers.credential_headers
        return None


def redact(
    request: http.Request, present: Collection[str] | None, also: Collection[bytes] = (), body: bool = True
) -> None:
    """Take every credential out of the request, marking where the client had put one (`present`:
    its `credential_positions`, or None for wherever the request carries one now), and its body.
    `also`: more headers that carry a credential on this request (lower-case)."""
    has_query = b"?" in request.data.path
    if present is None:
        present = credential_positions(header_index(request.headers.fields), request.query if has_query else (), also)
        if present:
            request.headers.fields = redacted_fields(request.headers.fields, present, also)
    else:
        request.headers.fields = redacted_fields(request.headers.fields, present, also)
    if has_query or not QUERY_POSITION_SET.isdisjoint(present):
        query = request.query
        for parameter, position in zip(QUERY_PARAMETERS, QUERY_POSITIONS, strict=True):
            if position in present or parameter in query:
                query[parameter] = REDACTED
        for name in query_variants(query.keys()) if has_query else ():
            query[name] = REDACTED
    if body:
        # None is mitmproxy's "content not kept"; the Content-Length header still tells its size.
        # Trailer fields come after the body and may carry what it does.
        request.raw_content = None
        request.trailers = None
