"""Which MCP revision a POST speaks, and whether its headers say what its body does.

From 2026-07-28 each POST is one self-contained request: no `initialize`, no session, no batch;
its revision stated in its params' `_meta` and in `MCP-Protocol-Version`, its method in
`Mcp-Method`, and for `tools/call`, `resources/read` and `prompts/get` what it names in `Mcp-Name`
(`=?base64?…?=` where the value is not plain printable ASCII). Load balancers, firewalls and
servers route and decide on those headers, so a request whose headers disagree with its body is
refused, as the specification tells a server to (HeaderMismatch)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tollgate.formats.mcp.messages import Posted

# The revisions that open a session with `initialize`; any other a request states is read as
# stateless (as the MCP SDK's server routes it), so an unknown one is checked, not waved through.
HANDSHAKE_REVISIONS = frozenset(("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"))
STATELESS_REVISION = "2026-07-28"

VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PARAM_PREFIX = "mcp-param-"
SESSION_HEADER = "mcp-session-id"

# JSON-RPC's error codes for a request refused as it came (HTTP 400).
HEADER_MISMATCH = -32020
INVALID_REQUEST = -32600

_BASE64 = re.compile(r"=\?base64\?(?P<payload>.*)\?=", re.DOTALL)
# The start of the base64 form, however written: a value that begins so is in it, and must be it exactly.
_BASE64_LIKE = re.compile(r"\s*=\?base64\?", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PLAIN = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class MalformedPost:
    """Why a POST is refused as it came: its JSON-RPC error code and message."""

    code: int
    message: str


def stated_revision(fields: Sequence[tuple[str, str]], posted: Posted) -> str | None:
    """The revision a POST states: its `MCP-Protocol-Version` (the first, if repeated), else the
    revision its first request's `_meta` states; None where it states none (an `initialize`, a
    client of 2025-03-26)."""
    headers = _values(fields, VERSION_HEADER)
    if headers:
        return headers[0]
    return next((r.version for r in posted.requests if r.version is not None), None)


def recorded(revision: str | None) -> str | None:
    """A stated revision as the audit and the policy see it: a date as revisions are named, else
    "other" (a header's text is the client's, and may be anything)."""
    if revision is None:
        return None
    return revision if _DATE.fullmatch(revision) else "other"


def is_stateless(revision: str | None) -> bool:
    return revision is not None and revision not in HANDSHAKE_REVISIONS


def check(fields: Sequence[tuple[str, str]], posted: Posted) -> MalformedPost | None:
    """What is wrong with a POST as it came, or None: at any revision, an `Mcp-Name` or
    `Mcp-Param-*` in the base64 form that is not canonical (-32020); at 2026-07-28 (or a later
    revision) a batch or a POST of answers (-32600), an `Mcp-Session-Id`, which no request at that
    revision has (-32600), `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name` missing, repeated or
    not what the body says (-32020)."""
    encoded_badly = check_encoded(fields)
    if encoded_badly is not None:
        return encoded_badly
    revision = stated_revision(fields, posted)
    stated = {r.version for r in posted.requests if r.version is not None}
    found = revision if is_stateless(revision) else next((v for v in sorted(stated) if is_stateless(v)), None)
    if found is None:
        if stated and revision is not None and stated != {revision}:
            return _mismatch(f"{VERSION_HEADER} header does not match the protocol version the body states")
        return None
    stateless = found if found == STATELESS_REVISION else "a revision without sessions"
    if posted.batch or posted.responses or len(posted.requests) != 1:
        return MalformedPost(INVALID_REQUEST, f"at {stateless} a POST carries one JSON-RPC request or notification")
    if _values(fields, SESSION_HEADER):
        return MalformedPost(
            INVALID_REQUEST, f"at {stateless} there are no sessions: a request carries no Mcp-Session-Id"
        )
    (request,) = posted.requests
    versions = _values(fields, VERSION_HEADER)
    if len(versions) > 1:
        return _mismatch(f"{VERSION_HEADER} header appears more than once")
    # A notification's body need not state its revision (the SDK's server reads only the header).
    if not versions or (request.version != versions[0] and not (request.notification and request.version is None)):
        return _mismatch(f"{VERSION_HEADER} header does not match the protocol version the body states")
    methods = _values(fields, METHOD_HEADER)
    if len(methods) > 1:
        return _mismatch(f"{METHOD_HEADER} header appears more than once")
    if methods != [request.method] and not (request.notification and not methods):
        return _mismatch(f"{METHOD_HEADER} header does not match the request body's method")
    names = _values(fields, NAME_HEADER)
    if len(names) > 1:
        return _mismatch(f"{NAME_HEADER} header appears more than once")
    if request.named is None:
        if names:
            return _mismatch(f"{NAME_HEADER} header names something the request body does not")
        return None
    if not names or decoded(names[0]) != request.named:
        return _mismatch(f"{NAME_HEADER} header does not match what the request body names")
    return None


def check_unrequested(fields: Sequence[tuple[str, str]]) -> MalformedPost | None:
    """What is wrong with a GET or DELETE as it came: a header in the base64 form not canonical
    (-32020); at 2026-07-28 (or a later revision) an `Mcp-Session-Id`, which names no session
    there (-32600); None otherwise."""
    encoded_badly = check_encoded(fields)
    if encoded_badly is not None:
        return encoded_badly
    revision = stated_revision(fields, Posted(()))
    if not is_stateless(revision) or not _values(fields, SESSION_HEADER):
        return None
    stateless = revision if revision == STATELESS_REVISION else "a revision without sessions"
    return MalformedPost(INVALID_REQUEST, f"at {stateless} there are no sessions: a request carries no Mcp-Session-Id")


def check_encoded(fields: Sequence[tuple[str, str]]) -> MalformedPost | None:
    """An `Mcp-Name` or `Mcp-Param-*` whose value begins as the `=?base64?…?=` form does but is
    not that form exactly, canonical base64 of UTF-8 (unpadded, URL-safe, with spaces, `BASE64`):
    a server or a load balancer may read it otherwise than Tollgate does (-32020)."""
    for key, value in fields:
        name = key.lower()
        if not (name == NAME_HEADER or name.startswith(PARAM_PREFIX)) or not _BASE64_LIKE.match(value):
            continue
        if not _BASE64.fullmatch(value) or decoded(value) is None:
            return _mismatch(f"{name} header is not in the canonical =?base64?…?= form")
    return None


def underscored(fields: Sequence[tuple[str, str]]) -> str | None:
    """The name of a header that is an MCP header once its `_` are read as `-` (`Mcp_Method`,
    `MCP_Protocol_Version`, `Mcp_Param_To`): servers behind a CGI-like gateway read it as that
    header, unchecked by Tollgate's header rules. None where there is none."""
    for key, _ in fields:
        if "_" in key and key.replace("_", "-").lower().startswith("mcp-"):
            return key
    return None


def decoded(value: str) -> str | None:
    """A header's value as its sender meant it: the `=?base64?…?=` form decoded (None where it is
    not canonical base64 of UTF-8, so that it matches nothing), any other as it is."""
    found = _BASE64.fullmatch(value)
    if found is None:
        return value
    payload = found["payload"]
    try:
        raw = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(raw).decode("ascii") != payload:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def encoded(value: str, as_base64: bool = False) -> str:
    """A value as a header carries it: plain where it is printable ASCII without space at either
    end (unless `as_base64`, or it looks like the base64 form itself), else `=?base64?…?=`."""
    plain = _PLAIN.fullmatch(value) and value == value.strip() and not _BASE64.fullmatch(value)
    if plain and not as_base64:
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def is_base64(value: str) -> bool:
    return _BASE64.fullmatch(value) is not None


def _values(fields: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in fields if key.lower() == name]


def _mismatch(message: str) -> MalformedPost:
    return MalformedPost(HEADER_MISMATCH, message)
