"""A flow and its call: the call record a flow carries, the request as plain data, the body written
back, and refusals in the provider's own error shape (an MCP server's request: in JSON-RPC's)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from mitmproxy import http
from mitmproxy.net.http import url
from mitmproxy.proxy.mode_specs import LocalMode, ProxyMode, TransparentMode, WireGuardMode

from tollgate.calls.call import Call
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.bodies.raw_headers import decoded, with_header
from tollgate.formats.mcp.messages import RequestId, error_message
from tollgate.formats.refusals import FAILURES
from tollgate.governance.egress.brokered import Brokered
from tollgate.governance.egress.misdirection import Misdirected, misdirection
from tollgate.governance.mcp.mcp_exchange import REFUSED_CODE, McpExchange
from tollgate.providers.base import Provider
from tollgate.providers.credentials import Query

CALL = "tollgate"
# An MCP server's request: its `McpExchange` (governance/mcp/mcp_exchange.py) while it is live, then its records.
MCP = "tollgate_mcp"
# A request to an MCP server's host that names another host too (`governance.misdirection`), in
# flow.metadata until the Mcp stage refuses it: the fields of its `Misdirected`.
MISDIRECTED_AS = "tollgate_misdirected"
# A request to a provider's host that is no call (`Provider.governs_path`: ChatGPT's web app), by
# its provider's name: it goes on unread and unaudited.
UNREAD = "tollgate_unread"
# A request to a brokered credential's host (`egress.credentials`): the headers its credentials go
# in (lower case), for `Redact`.
BROKERED = "tollgate_brokered"
# The error of a call whose client went away before its answer ended.
CLIENT_DISCONNECTED = "client disconnected"


def write_body(request: http.Request, call: Call) -> None:
    """The call's changed JSON body into the request, with its Content-Length corrected. A SigV4
    hash of the old body no longer holds."""
    write_raw_body(request, call, encode_json(call.request.body))


def write_raw_body(request: http.Request, call: Call, body: bytes) -> None:
    """`body` into the request, with its Content-Length corrected. A SigV4 hash of the old body no
    longer holds."""
    call.request.body_sha256 = None
    if b"content-encoding" in call.request.headers or b"transfer-encoding" in call.request.headers:
        request.content = body  # mitmproxy's setter re-applies the encoding, keeps the chunking
        return
    # Most bodies are plain: the setter's four header scans are one pass here.
    request.raw_content = body
    request.headers.fields = with_header(request.headers.fields, b"content-length", str(len(body)).encode())


def credentials_of(call: Call, request: http.Request, provider: Provider) -> tuple[dict[str, str], Query]:
    """Where the provider's keys go in this request: its credential headers, and its query if keys go there."""
    return decoded(call.request.headers, provider.credentials.caller.header_positions), (
        request.query if provider.credentials.caller.query_positions else {}
    )


def request_parts(request: http.Request, call: Call) -> RequestParts:
    """The request as plain data for the providers' hooks that read or sign it whole (Bedrock's):
    as mitmproxy holds it, nothing copied."""
    data = request.data
    return RequestParts(
        method=data.method,
        scheme=data.scheme,
        host=data.host,
        authority=request.authority if request.is_http2 or request.is_http3 else "",
        path=data.path,
        fields=data.headers.fields,
        body=data.content or b"",
        index=call.request.headers,
        called_host=call.host,
        upstream=call.route.upstream,
        payload_hash=call.request.body_sha256,
    )


def drop_alt_svc(response: http.Response) -> None:
    """A governed answer goes without `Alt-Svc`: it tells the client where to call the host next,
    over HTTP/3 (UDP), which Tollgate does not intercept under `--capture`. (mitmproxy does not
    relay HTTP/2's ALTSVC frames.)"""
    # One pass over the raw fields, most of which the length tells apart (`in response.headers`
    # decodes and lowers every name).
    fields = response.headers.fields
    if [f for f in fields if len(f[0]) == 7 and f[0].lower() == b"alt-svc"]:
        response.headers.fields = tuple(f for f in fields if f[0].lower() != b"alt-svc")


def call_of(flow: http.HTTPFlow) -> Call | None:
    """The flow's call record while the call is live; None for flows Tollgate does not handle."""
    call = flow.metadata.get(CALL)
    return call if isinstance(call, Call) else None


def body_size(flow: http.HTTPFlow, call: Call) -> int:
    """The request body's size, which its prompt's tokens are estimated from (none for an upload
    streamed unread)."""
    return 0 if call.request.streamed_upload else len(flow.request.raw_content or b"")


def provider_of(call: Call) -> Provider:
    return call.registry[call.route.target.provider]


def apply_credential(flow: http.HTTPFlow, call: Call, credential: UpstreamCredential) -> None:
    """The upstream credential on the call's request: the caller's credentials out and the
    upstream's in, in one pass over the header fields (`CredentialUnavailable` when it cannot be
    had), the path or Host a signature names; the key noted for its pool and the audit."""
    provider = provider_of(call)
    request = flow.request
    if credential.pooled_key is not None:
        pool = credential.pool if credential.pool is not None else call.loaded.pools[call.route.target.provider]
        call.answer.pooled_key = (pool, credential.pooled_key)
    elif call.answer.pooled_key is not None:  # a fallback to a provider without a pool: not the last key's
        call.answer.pooled_key = None
    for parameter in provider.credentials.caller.query_positions:
        request.query.pop(parameter, None)
    applied = credential.apply(request.headers.fields, partial(request_parts, request, call))
    request.headers.fields = applied.fields
    if applied.path is not None:
        request.data.path = applied.path
    if applied.host is not None:
        request.host = applied.host  # its Host header and :authority follow, as signed
        call.route.upstream = f"https://{request.host}"
    call.answer.upstream_key = applied.fingerprint


def refuse(
    flow: http.HTTPFlow, call: Call, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> None:
    """Answer the call in the provider's own error shape instead of forwarding it: the provider
    the client called, where a route translated the call into another's format."""
    call.refused_unread()  # a secret in a path that holds no model read: recorded as its kind
    shape = call.registry[call.route.requested.provider] if call.route.translated is not None else provider_of(call)
    refusal = shape.refusal(reason, message, call.path)
    call.answer.answered_by_tollgate = True
    call.answer.refused = reason
    if reason not in FAILURES:
        # Tollgate's own refusal is its decision: the call was denied, for the stage's reasons
        # (the policy's, a limit's, an unknown key) where it gave some, else for this one.
        call.verdict.decision = "deny"
        call.verdict.deny_reasons = call.verdict.deny_reasons or (reason,)
    # mitmproxy cannot answer a request it streams upstream; the refused body is read instead.
    flow.request.stream = False
    flow.response = http.Response.make(
        refusal.status, refusal.body, {**refusal.headers, **(headers or {}), "x-tollgate-request-id": call.request_id}
    )


def refuse_mcp(
    flow: http.HTTPFlow, exchange: McpExchange, status: int, reason: str, message: str,
    code: int = REFUSED_CODE, retry_after: int | None = None,
) -> None:  # fmt: skip
    """Refuse an MCP server's request: Tollgate's own refusal, as a JSON-RPC error for each of its
    requests (one with a null id when the body could not be read)."""
    exchange.deny_reasons = exchange.deny_reasons or (reason,)
    ids: list[RequestId | None] = [r.id for r in exchange.requests if r.id is not None] or [None]
    answer_mcp(flow, exchange, status, reason, [error_message(i, code, message) for i in ids], retry_after)


def answer_mcp(
    flow: http.HTTPFlow, exchange: McpExchange, status: int, reason: str, errors: list,
    retry_after: int | None = None, denied: bool = True,
) -> None:  # fmt: skip
    """Answer an MCP server's request with Tollgate's JSON-RPC `errors` (a batch's as one): a
    refusal (`denied`), or the errors of a server that did not answer."""
    if denied:
        exchange.decision = "deny"
    exchange.answer.answered_by_tollgate = True
    exchange.answer.refused = reason
    batch = len(errors) > 1 or exchange.batch
    body = encode_json(errors if batch else errors[0])
    flow.request.stream = False
    headers = {"content-type": "application/json", "x-tollgate-error": reason}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    flow.response = http.Response.make(status, body, {**headers, "x-tollgate-request-id": exchange.request_id})


def bearer_token(request: http.Request) -> str | None:
    """The token of the request's `Authorization: Bearer` header, if it has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# mitmproxy's modes that take connections a client did not send to a proxy (`./run.sh --capture`).
CAPTURE_MODES = (TransparentMode, WireGuardMode, LocalMode)


def captures(mode: str) -> bool:
    """Whether the `mode` option's entry is one of the capture modes."""
    try:
        return isinstance(ProxyMode.parse(mode), CAPTURE_MODES)
    except ValueError:
        return False  # mitmproxy refuses it itself


def scrub_placeholders(request: http.Request, brokered: Brokered) -> None:
    """The brokered credentials' placeholders out of a refused request's URL and headers, as the
    flow keeps them (mitmdump prints its URL)."""
    request.data.path = brokered.scrubbed(request.data.path)
    request.headers.fields = tuple((name, brokered.scrubbed(value)) for name, value in request.headers.fields)


def authorities(request: http.Request) -> list[str]:
    """Where the request names the host it is for: its `:authority` (HTTP/2; HTTP/1's absolute
    form, which a server reads before the Host header) and each Host header field."""
    data = request.data
    # One pass over the raw fields, most of which the length tells apart (mitmproxy's `get_all`
    # decodes and lowers every name).
    named = [
        v.decode("utf-8", "surrogateescape") for n, v in data.headers.fields if len(n) == 4 and n.lower() == b"host"
    ]
    return [data.authority.decode("utf-8", "surrogateescape"), *named] if data.authority else named


def unreadable_authority(request: http.Request) -> str | None:
    """The first of the request's authorities that names no host as Tollgate reads one (`host:`,
    `user@host`): a lenient server may still read a host of its own in it."""
    for authority in authorities(request):
        try:
            url.parse_authority(authority, check=True)
        except ValueError:
            return authority
    return None


def misdirected(flow: http.HTTPFlow, governs: Callable[[str], bool]) -> Misdirected | None:
    """Whether the request names another host than the one its connection was opened to, or than
    the TLS server name, one of them governed (`misdirection`). A captured connection was opened to
    the address its client dialled, which names nothing: its names are the server name's and the
    Host header's, before `name_captured_host` names a captured request's host as after."""
    request, sni = flow.request, flow.client_conn.sni
    named, host = authorities(request), request.data.host
    if (sni is None or sni == host) and named.count(host) == len(named):
        return None  # the common case: one name throughout, written alike, and no port
    target = None if isinstance(flow.client_conn.proxy_mode, CAPTURE_MODES) else host
    hosts = []
    for authority in named:
        try:
            hosts.append(url.parse_authority(authority, check=True)[0])
        except ValueError:
            pass  # not a host, which a call's `check_transport` refuses
    return misdirection(target, sni, hosts, governs)
