"""Once a request has been sent, or answered without being sent, the flow keeps no credential and no
prompt: what mitmdump prints and what `-w` saves is where the caller's credentials were, not what
they were. mitmproxy's dumper and flow saver run after Tollgate's addon, at `response`, `error` and
`http_connect_error`, and at shutdown for flows still open."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from mitmproxy import http

from ..providers import PROVIDERS
from ..providers.base import REDACTED
from ..providers.openai import INSECURE_KEY_PREFIX
from ..raw_headers import Fields, header_index
from ..upstream import SIDE_HEADERS
from .shared import Shared, call_of, hosts_of

# Every header that carries a credential, whichever provider the request is for (a virtual key sent
# where this provider does not look is a secret all the same): every provider's positions, every
# side header, the proxy login and cookies; by raw lower-case name.
_HEADERS: dict[bytes, str] = {
    name.lower().encode(): name.lower()
    for name in (
        *(p for provider in PROVIDERS.values() for p in provider.positions if not p.startswith("query:")),
        *SIDE_HEADERS,
        "proxy-authorization",
        "cookie",
    )
}
# Query parameters that carry a key (Gemini's `key`), redacted on every provider's calls.
_QUERY: tuple[str, ...] = tuple(dict.fromkeys(q for p in PROVIDERS.values() for q in p.query_positions))
_QUERY_POSITIONS = tuple(f"query:{p}" for p in _QUERY)
_QUERY_POSITION_SET = frozenset(_QUERY_POSITIONS)
# OpenAI's Realtime API takes a key as a WebSocket subprotocol (browsers cannot set headers):
# `Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<KEY>`.
WEBSOCKET_PROTOCOL = "sec-websocket-protocol"
_WEBSOCKET_PROTOCOL = WEBSOCKET_PROTOCOL.encode()
_KEY_PROTOCOL = INSECURE_KEY_PREFIX.encode()
_REDACTED = REDACTED.encode()
_MARKED = frozenset(_HEADERS.values())


def credential_positions(headers: Mapping[bytes, bytes], query: Collection[str]) -> tuple[str, ...]:
    """Where a request carries a credential of any kind: header names (lower-case), the WebSocket
    subprotocol header when it holds a key, and "query:<parameter>"; from its header index
    (`header_index`) and its query parameter names."""
    found = [_HEADERS[name] for name in headers if name in _HEADERS]
    if _WEBSOCKET_PROTOCOL in headers and _KEY_PROTOCOL in headers[_WEBSOCKET_PROTOCOL].lower():
        found.append(WEBSOCKET_PROTOCOL)
    if query:
        found += [position for p, position in zip(_QUERY, _QUERY_POSITIONS, strict=True) if p in query]
    return tuple(found)


def redacted_fields(fields: Fields, present: Collection[str]) -> tuple[tuple[bytes, bytes], ...]:
    """The header fields without a credential, with `[redacted by Tollgate]` for each header of
    `present` (where the client had put one; Tollgate's own key was wherever Tollgate put it)."""
    # One pass; list comprehensions, not generators or a loop: the interpreter runs them inline.
    kept = [
        f if name != _WEBSOCKET_PROTOCOL else (f[0], redacted_protocols(f[1]))
        for f in fields
        if (name := f[0].lower()) not in _HEADERS
    ]
    kept += [(p.encode(), _REDACTED) for p in present if p in _MARKED]
    return tuple(kept)


def redacted_protocols(value: bytes) -> bytes:
    """A `Sec-WebSocket-Protocol` value with the key of an `openai-insecure-api-key.<KEY>` entry
    redacted, its other entries kept."""
    if _KEY_PROTOCOL not in value.lower():
        return value
    entries = [e.strip() for e in value.split(b",")]
    return b", ".join(
        [e[: len(_KEY_PROTOCOL)] + _REDACTED if e.lower().startswith(_KEY_PROTOCOL) else e for e in entries]
    )


class Redact:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Calls sent upstream and not answered yet: at shutdown mitmproxy saves them as they are.
        self._sent: set[http.HTTPFlow] = set()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # mitmproxy's proxyauth has read the proxy login (and answered 407 to a wrong one, which
        # the console prints): the CONNECT request goes no further.
        redact(flow.request, None, body=False)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # answered before it was read (proxyauth's 407): it goes nowhere
            redact(flow.request, None)

    def request(self, flow: http.HTTPFlow) -> None:
        # The request stages are done with the parsed body and headers (a prompt, a virtual key): let
        # them go now, not when the answer comes.
        call = call_of(flow)
        if call is not None:
            call.body, call.headers = None, {}
            if flow.response is None:
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
            redact(request, call.credential_positions)
        elif hosts_of(self.shared).provider_for(request.host) is not None:  # an LLM call Tollgate never read
            redact(request, None)


def redact(request: http.Request, present: Collection[str] | None, body: bool = True) -> None:
    """Take every credential out of the request, marking where the client had put one (`present`:
    its `credential_positions`, or None for wherever the request carries one now), and its body."""
    has_query = b"?" in request.data.path
    if present is None:
        present = credential_positions(header_index(request.headers.fields), request.query if has_query else ())
        has_query = False  # what its query carries is in `present`
        if present:
            request.headers.fields = redacted_fields(request.headers.fields, present)
    else:
        request.headers.fields = redacted_fields(request.headers.fields, present)
    if has_query or not _QUERY_POSITION_SET.isdisjoint(present):
        query = request.query
        for parameter, position in zip(_QUERY, _QUERY_POSITIONS, strict=True):
            if position in present or parameter in query:
                query[parameter] = REDACTED
    if body:
        # None is mitmproxy's "content not kept"; the Content-Length header still tells its size.
        # Trailer fields come after the body and may carry what it does.
        request.raw_content = None
        request.trailers = None
