"""Where a request carries credentials, and its header fields without them: the plain part of
redaction (`stages/routing/redact.py` takes them off a flow; Identify records where they were)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from tollgate.formats.bodies.raw_headers import Fields
from tollgate.governance.routing.upstream import SIDE_HEADERS
from tollgate.providers import PROVIDERS
from tollgate.providers.base import REDACTED

# Every header that carries a credential, whichever provider the request is for (a virtual key sent
# where this provider does not look is a secret all the same): every provider's positions, every
# side header, the proxy login and cookies; by raw lower-case name.
_HEADERS: dict[bytes, str] = {
    name.lower().encode(): name.lower()
    for name in (
        *(
            p
            for provider in PROVIDERS.values()
            for p in provider.credentials.caller.positions
            if not p.startswith("query:")
        ),
        *SIDE_HEADERS,
        "proxy-authorization",
        "cookie",
    )
}
# Query parameters that carry a key (Gemini's `key`), redacted on every provider's calls.
QUERY_PARAMETERS: tuple[str, ...] = tuple(
    dict.fromkeys(q for p in PROVIDERS.values() for q in p.credentials.caller.query_positions)
)
QUERY_POSITIONS = tuple(f"query:{p}" for p in QUERY_PARAMETERS)
QUERY_POSITION_SET = frozenset(QUERY_POSITIONS)
_QUERY_SET = frozenset(QUERY_PARAMETERS)
_QUERY_NAMES = frozenset(p.lower() for p in QUERY_PARAMETERS)
# A provider may take a key as a WebSocket subprotocol (browsers cannot set headers on one): OpenAI's
# Realtime API reads `Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<KEY>`. One
# provider does; a second one's prefix would need the matching below to take several.
WEBSOCKET_PROTOCOL = "sec-websocket-protocol"
_WEBSOCKET_PROTOCOL = WEBSOCKET_PROTOCOL.encode()
(_KEY_PROTOCOL,) = (
    p.credentials.caller.key_subprotocol.encode()
    for p in PROVIDERS.values()
    if p.credentials.caller.key_subprotocol is not None
)
_REDACTED = REDACTED.encode()
_MARKED = frozenset(_HEADERS.values())


def credential_positions(
    headers: Mapping[bytes, bytes], query: Collection[str], also: Collection[bytes] = ()
) -> tuple[str, ...]:
    """Where a request carries a credential of any kind: header names (lower-case), the WebSocket
    subprotocol header when it holds a key, and "query:<parameter>"; from its header index
    (`header_index`) and its query parameter names. `also`: more headers that carry one here
    (lower-case: an MCP server's credential's)."""
    found = [_HEADERS[name] for name in headers if name in _HEADERS]
    if _WEBSOCKET_PROTOCOL in headers and _KEY_PROTOCOL in headers[_WEBSOCKET_PROTOCOL].lower():
        found.append(WEBSOCKET_PROTOCOL)
    if query:
        found += [position for p, position in zip(QUERY_PARAMETERS, QUERY_POSITIONS, strict=True) if p in query]
    if also:
        found += [name.decode() for name in also if name in headers and name not in _HEADERS]
    return tuple(found)


def redacted_fields(
    fields: Fields, present: Collection[str], also: Collection[bytes] = ()
) -> tuple[tuple[bytes, bytes], ...]:
    """The header fields without a credential, with `[redacted by Tollgate]` for each header of
    `present` (where the client had put one; Tollgate's own key was wherever Tollgate put it).
    `also`: more headers that carry a credential here (lower-case)."""
    if also:
        fields = [f for f in fields if f[0].lower() not in also]
    # One pass; list comprehensions, not generators or a loop: the interpreter runs them inline.
    kept = [
        f if name != _WEBSOCKET_PROTOCOL else (f[0], redacted_protocols(f[1]))
        for f in fields
        if (name := f[0].lower()) not in _HEADERS
    ]
    kept += [(p.encode(), _REDACTED) for p in present if p in _MARKED or p.encode() in also]
    return tuple(kept)


def query_variants(names: Iterable[str]) -> list[str]:
    """The query parameters that name a credential parameter otherwise than `QUERY_PARAMETERS`
    write it: in another letter case, or with the `$` of Google's system parameters (a server may
    read them so)."""
    return [n for n in names if n not in _QUERY_SET and n.lower().removeprefix("$") in _QUERY_NAMES]


def redacted_protocols(value: bytes) -> bytes:
    """A `Sec-WebSocket-Protocol` value with the key of an `openai-insecure-api-key.<KEY>` entry
    redacted, its other entries kept."""
    if _KEY_PROTOCOL not in value.lower():
        return value
    entries = [e.strip() for e in value.split(b",")]
    return b", ".join(
        [e[: len(_KEY_PROTOCOL)] + _REDACTED if e.lower().startswith(_KEY_PROTOCOL) else e for e in entries]
    )
