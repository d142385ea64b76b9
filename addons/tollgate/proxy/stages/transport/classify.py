"""Which provider, endpoint and model a call is, and what it asks for; a call Tollgate cannot read
exactly as the provider would is refused (400 `bad_request`), never guessed at."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.net.http import url

from tollgate.calls.call import Call, Request, Route
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import read_request_json
from tollgate.formats.bodies.raw_headers import header_index, repeated, with_pinned_header
from tollgate.formats.framing import DecodedTooLarge, Undecodable, decode_whole
from tollgate.formats.framing.bounds import MAX_DECODED_BODY
from tollgate.formats.refusals import BAD_REQUEST, HEADERS_TOO_LARGE, MISCONFIGURED, MISDIRECTED, TENANT_DENIED
from tollgate.formats.request_facts import Classification
from tollgate.governance.egress.misdirection import Misdirected
from tollgate.governance.subscriptions.plan import PLANS_REFUSED_MESSAGE, PLANS_REFUSED_REASON, plan_token
from tollgate.providers import host_name
from tollgate.providers.base import Provider
from tollgate.proxy import patches
from tollgate.proxy.flows import CALL, CAPTURE_MODES, MISDIRECTED_AS, UNREAD, authorities, misdirected, refuse
from tollgate.proxy.heads import MAX_REQUEST_HEAD
from tollgate.proxy.state import Shared, hosts_of

# What an LLM API is called with; CONNECT (HTTP/2's extended CONNECT opens a tunnel), TRACE and
# anything else are refused.
METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
# Headers with which a server may take the request for another method than the one it came with
# (Google's front end honours the first): Tollgate reads a call by the method it was sent with.
METHOD_OVERRIDES = (b"x-http-method-override", b"x-http-method", b"x-method-override")


def request_body(request: http.Request, headers: dict[bytes, bytes]) -> bytes | None:
    """The body with its content-encoding undone; `Unreadable` when it cannot be exactly: an
    encoding other than gzip, deflate, br and zstd (mitmproxy's own decoding also reads Python's
    codecs, such as base64 or hex, which no provider does), bytes that end before the encoded body
    does or go on after it, or a body that decodes to more than MAX_DECODED_BODY."""
    encoding = headers.get(b"content-encoding")
    if encoding is None or not request.raw_content:
        return request.raw_content
    try:
        return decode_whole(request.raw_content, encoding.decode("latin-1"), MAX_DECODED_BODY)
    except DecodedTooLarge:
        raise Unreadable(f"the body decodes to more than {MAX_DECODED_BODY // 2**20} MiB") from None
    except Undecodable:
        raise Unreadable("the body's Content-Encoding cannot be decoded") from None


def check_transport(request: http.Request, headers: dict[bytes, bytes], client_tls: bool) -> None:
    """What every call must be before its path and body are read: HTTPS from the client on (an
    `https://` URL sent to the proxy in cleartext, not through CONNECT, carried its credential
    unencrypted to Tollgate), one host (another host's name was refused as misdirected at its
    headers: `misdirection`), a plain method."""
    if request.scheme != "https":
        raise Unreadable("LLM APIs are called over HTTPS; Tollgate refuses plain HTTP")
    if not client_tls:
        raise Unreadable(
            "the https:// request came to the proxy in cleartext, not through CONNECT; Tollgate refuses plain HTTP"
        )
    if request.method not in METHODS:
        raise Unreadable(f"Tollgate does not forward {request.method} requests")
    if any(name in headers for name in METHOD_OVERRIDES):
        raise Unreadable("the request asks to be taken for another method (X-HTTP-Method-Override)")
    check_one_authorization(request, headers)
    for named in authorities(request):
        if named == request.host:  # the common case: the Host header made request.host
            continue
        try:
            _, port = url.parse_authority(named, check=True)
        except ValueError:
            raise Unreadable("the Host header is not a host") from None
        if port is not None and port != request.port:
            raise Unreadable("the Host header names another host than the one called")


def check_one_authorization(request: http.Request, headers: dict[bytes, bytes]) -> None:
    """One Authorization header at most: a server reads one of two (which, Tollgate cannot know),
    and the other may carry a plan's token past `subscriptions.allow: false`."""
    if len(headers) < len(request.headers.fields) and repeated(request.headers.fields, b"authorization"):
        raise Unreadable("the request carries more than one Authorization header")


def name_captured_host(flow: http.HTTPFlow) -> None:
    """A captured request's host is, to mitmproxy, the address its client dialled: what the
    client's resolver said, which names no provider and which Tollgate does not trust. It is named
    as a request through the proxy is, by its Host header (HTTP/2: :authority), else by the TLS
    server name; the call then goes where that name goes, as through the proxy, never to the
    address dialled."""
    if not isinstance(flow.client_conn.proxy_mode, CAPTURE_MODES):
        return
    request, sni = flow.request, flow.client_conn.sni
    try:
        host = url.parse_authority(request.host_header, check=True)[0] if request.host_header else sni
    except ValueError:
        host = sni  # a provider's call is then refused: its Host header is not a host
    if host:
        request.data.host = host  # the Host header as it came: `request.host = …` would rewrite it


def check_upgrade(headers: dict[bytes, bytes], classification: Classification) -> None:
    """Only OpenAI's WebSockets are upgraded, Realtime and the Responses API's, whose messages
    Tollgate reads. Any other upgrade would turn the connection into one Tollgate cannot read; and
    the Responses API's WebSocket endpoint is nothing else."""
    upgrade = headers.get(b"upgrade")
    endpoint = classification.endpoint
    if upgrade is None:
        if classification.session:
            raise Unreadable("this path opens the Responses API's WebSocket, and this request is no upgrade").at(
                endpoint
            )
        return
    relayed = endpoint == "realtime" or classification.session
    if not relayed or upgrade.lower() != b"websocket":
        raise Unreadable("Tollgate does not upgrade this connection to another protocol").at(endpoint)


def web_app_refusal(request: http.Request, provider: Provider, plans_allowed: bool) -> tuple[str, str, str] | None:
    """Why a request to a provider's path that is no call (ChatGPT's web app) is refused, as
    (reason, the audit's deny reason, what its client is told); None when it goes on: more than
    one Authorization header (400), or a plan's token where `subscriptions.allow` is false (403)."""
    fields = request.headers.fields
    if repeated(fields, b"authorization"):
        why = "the request carries more than one Authorization header"
        return BAD_REQUEST, why, f"Tollgate cannot read this request exactly and did not forward it: {why}."
    plan = provider.plan
    if plans_allowed or plan is None:
        return None
    query = request.query if b"?" in request.data.path else {}
    if plan_token(provider.credentials.caller.presented(request.headers, query), plan.token_prefix) is None:
        return None
    return TENANT_DENIED, PLANS_REFUSED_REASON, PLANS_REFUSED_MESSAGE


HEAD_TOO_LARGE = (
    f"The request's headers are past {MAX_REQUEST_HEAD // 1024} KiB in all; Tollgate did not read or forward them."
)


class Classify:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if patches.head_was_cut(flow.request):
            self._refuse_cut_head(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        astray = misdirected(flow, self._governs)
        name_captured_host(flow)
        if patches.head_was_cut(flow.request):
            self._refuse_cut_head(flow)
            return
        if flow.response is not None:
            return
        if astray is not None:
            self._refuse_misdirected(flow, astray)
            return
        request = flow.request
        provider = hosts_of(self.shared).provider_for(request.host)
        if provider is None:
            return
        if not provider.governs_path(request.path.partition("?")[0]):
            self._pass_unread(flow, provider)
            return
        if not provider.streams_unread(request.method, request.path.partition("?")[0]):
            return
        call = self._classify(flow, provider, read_body=False)
        if flow.response is None:
            call.request.streamed_upload = True
            request.stream = True

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return
        if CALL in flow.metadata:  # classified at its headers, its body streamed on unread
            flow.request.trailers = None  # sent after this hook: dropped, as a read body's are refused
            return
        if UNREAD in flow.metadata:  # a path that is no call (ChatGPT's web app)
            return
        provider = hosts_of(self.shared).provider_for(flow.request.host)
        if provider is not None:
            self._classify(flow, provider, read_body=True)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if UNREAD in flow.metadata and flow.response is not None:
            flow.response.stream = True  # goes on as it comes, never held in the flow

    def _pass_unread(self, flow: http.HTTPFlow, provider: Provider) -> None:
        """A request to a provider's host that is no call (`Provider.governs_path`: ChatGPT's web
        app): it goes on as it came, streamed both ways and kept out of the flow, with no record;
        only the provider's tenant header is set (`subscriptions:`), as on every request there.
        One Tollgate would let through with a plan's token it refuses (`web_app_refusal`) is
        refused in the provider's shape, and audited."""
        request = flow.request
        loaded = self.shared.loaded
        refusal = web_app_refusal(request, provider, loaded.config.subscriptions.allow) if loaded is not None else None
        if refusal is not None:
            self._refuse_unread(flow, provider, *refusal)
            return
        flow.metadata[UNREAD] = provider.name
        request.stream = True
        pin = loaded.tenant_pins.get(provider.name) if loaded is not None else None
        if pin is not None:
            request.headers.fields = with_pinned_header(request.headers.fields, *pin)

    def _refuse_unread(self, flow: http.HTTPFlow, provider: Provider, reason: str, why: str, message: str) -> None:
        """A web app's request refused (`web_app_refusal`), as a call of no endpoint: audited."""
        request = flow.request
        path = request.path.partition("?")[0]
        headers = header_index(request.headers.fields)
        call = Call(Route.as_called(provider.name), host_name(request.host), request.method, path,
                    request=Request(headers=headers))  # fmt: skip
        assert self.shared.loaded is not None
        call.loaded = self.shared.loaded
        if reason == BAD_REQUEST:
            call.answer.error = f"bad request: {why}"
        call.verdict.deny_reasons = (why,)
        flow.metadata[CALL] = call
        refuse(flow, call, reason, message)

    def _governs(self, host: str) -> bool:
        """Whether Tollgate governs this host (lower case): a provider's, or an MCP server's."""
        loaded = self.shared.loaded
        return hosts_of(self.shared).provider_for(host) is not None or (loaded is not None and host in loaded.mcp.hosts)

    def _refuse_misdirected(self, flow: http.HTTPFlow, astray: Misdirected) -> None:
        """Refused 421 in the shape of the provider whose host it names, and audited; an MCP
        server's host alone is the Mcp stage's to refuse, in its own shape (`MISDIRECTED_AS`)."""
        request = flow.request
        provider = hosts_of(self.shared).provider_for(astray.governed)
        if provider is None:
            flow.metadata[MISDIRECTED_AS] = {"governed": astray.governed, "named": astray.named}
            return
        path = request.path.partition("?")[0]
        call = Call(Route.as_called(provider.name), astray.governed, request.method, path)
        if self.shared.loaded is not None:  # else none to price or count it with
            call.loaded = self.shared.loaded
        call.answer.error = f"misdirected: {astray.named}"
        flow.metadata[CALL] = call
        refuse(flow, call, MISDIRECTED, astray.message)

    def _refuse_cut_head(self, flow: http.HTTPFlow) -> None:
        """A request (or the proxy's own CONNECT) whose head passed MAX_REQUEST_HEAD, which mitmproxy
        read no further than its first line or pseudo-header fields (`patches.bound_message_heads`):
        refused 431, in the provider's shape and audited when its host is a provider's, else in
        plain text. Whatever another addon answered (a proxy login's 407): none of it was read."""
        request = flow.request
        provider = hosts_of(self.shared).provider_for(request.host)
        if provider is None:
            flow.response = http.Response.make(431, HEAD_TOO_LARGE, {"content-type": "text/plain; charset=utf-8"})
            return
        path = request.path.partition("?")[0]
        call = Call(Route.as_called(provider.name), host_name(request.host), request.method, path)
        if self.shared.loaded is not None:  # else none to price or count it with
            call.loaded = self.shared.loaded
        call.answer.error = f"request headers past {MAX_REQUEST_HEAD // 1024} KiB"
        flow.metadata[CALL] = call
        flow.response = None
        refuse(flow, call, HEADERS_TOO_LARGE, HEAD_TOO_LARGE)

    def _classify(self, flow: http.HTTPFlow, provider: Provider, read_body: bool) -> Call:
        request = flow.request
        path, _, query = request.path.partition("?")
        headers = header_index(request.headers.fields)
        host = host_name(request.host)
        loaded = self.shared.loaded
        if loaded is None:
            call = Call(Route.as_called(provider.name), host, request.method, path, request=Request(headers=headers))
            flow.metadata[CALL] = call
            refuse(flow, call, MISCONFIGURED, "Tollgate has no valid configuration; see its console.")
            call.answer.error = "no valid configuration"
            return call
        call = Call(
            Route.as_called(provider.name), host, request.method, path, loaded=loaded, request=Request(headers=headers)
        )
        flow.metadata[CALL] = call
        if (traceparent := headers.get(b"traceparent")) is not None:
            call.trace.context = (traceparent, headers.get(b"tracestate"))
        try:
            check_transport(request, headers, flow.client_conn.tls_established)
            provider.check_headers(headers)
            if read_body and request.trailers:
                raise Unreadable("Tollgate does not forward request trailers")
            data = read_request_json(request_body(request, headers)) if read_body else None
            call.classified(provider.classify_at(host, request.method, path, data, query))
            provider.read_headers(headers, call.classification)
            check_upgrade(headers, call.classification)
        except Unreadable as e:
            call.classified(Classification(endpoint=e.endpoint))
            call.answer.error = f"bad request: {e}"
            refuse(flow, call, BAD_REQUEST, f"Tollgate cannot read this request exactly and did not forward it: {e}.")
            return call
        call.request.body = data
        if host != request.host:  # the upstream gets the host as Tollgate read it
            request.host = host
        return call
