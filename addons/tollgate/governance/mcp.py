"""MCP servers Tollgate governs (`mcp.servers`): their settings, which request goes to which, the
policy's input for one JSON-RPC request, and the audit records of one POST (`McpExchange`).

An MCP call is not an LLM call: it has no model, no tokens and no provider, so it has a record of
its own rather than fields on `Call`. Its caller is found as an LLM call's is."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tollgate.config_base import Strict, base_url
from tollgate.fingerprint import fingerprint
from tollgate.formats.mcp.answers import AnswerReader
from tollgate.formats.mcp.messages import McpRequest, RequestId

if TYPE_CHECKING:
    from tollgate.governance.jwt_identity import JwtIdentity

# A header name, as HTTP/1.1 allows one (RFC 9110's token).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers that carry the hop, the body's framing or MCP's own session, which a credential must not replace.
_RESERVED = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "content-type", "mcp-session-id", "upgrade")
)


class McpHeader(Strict):
    name: str = Field(min_length=1)
    value: str = Field(min_length=1, repr=False)

    @field_validator("name")
    @classmethod
    def _a_header_name(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not a header name")
        if value.lower() in _RESERVED:
            raise ValueError(f"{value} is not a credential's header")
        return value.lower()


class McpCredential(Strict):
    """What Tollgate sends the server in place of the caller's credential: a bearer token, or a
    header of the server's own. Static: Tollgate does not run the server's OAuth flow."""

    bearer: str | None = Field(default=None, min_length=1, repr=False)
    header: McpHeader | None = None

    @model_validator(mode="after")
    def _one_of_them(self) -> McpCredential:
        if (self.bearer is None) == (self.header is None):
            raise ValueError("set one of bearer or header")
        return self

    def field(self) -> tuple[bytes, bytes]:
        """The header field that carries it."""
        if self.bearer is not None:
            return b"authorization", f"Bearer {self.bearer}".encode()
        assert self.header is not None
        return self.header.name.encode(), self.header.value.encode()

    @property
    def secret(self) -> str:
        return self.bearer if self.bearer is not None else self.header.value  # type: ignore[union-attr]


class McpServer(Strict):
    """`mcp.servers[]`: a Streamable HTTP MCP server: its name (the policy's and the audit's), the
    URL its clients call, where its calls go (`upstream`: scheme://host[:port], default the URL's
    host), and Tollgate's credential for it."""

    name: str = Field(min_length=1)
    url: str
    upstream: str | None = None
    credential: McpCredential | None = None

    _upstream = field_validator("upstream")(classmethod(lambda cls, value: base_url(value)))

    @field_validator("url")
    @classmethod
    def _an_https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be https://host[:port]/path, e.g. https://mcp.example.com/mcp")
        if parts.query or parts.fragment:
            raise ValueError("must have no query or fragment")
        try:
            _ = parts.port
        except ValueError as e:
            raise ValueError(f"bad port: {e}") from None
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


class McpConfig(Strict):
    servers: tuple[McpServer, ...] = ()

    @model_validator(mode="after")
    def _each_once(self) -> McpConfig:
        names: dict[str, int] = {}
        places: dict[tuple[str, int, str], int] = {}
        for i, server in enumerate(self.servers):
            if server.name in names:
                raise ValueError(f"servers.{i}.name: {server.name!r} is the name of servers.{names[server.name]}")
            names[server.name] = i
            place = (server.host, server.port, server.path)
            if place in places:
                raise ValueError(f"servers.{i}.url: the URL of servers.{places[place]}")
            places[place] = i
        return self


class McpServers:
    """The configured servers by host and path. Looked at for every decrypted request: a set
    lookup for a host that is no MCP server's."""

    def __init__(self, config: McpConfig) -> None:
        self.servers = config.servers
        self._by_place = {(s.host, s.port, s.path): s for s in config.servers}
        self.hosts = frozenset(s.host for s in config.servers)

    def __bool__(self) -> bool:
        return bool(self.servers)

    def at(self, host: str, port: int, path: str) -> McpServer | None:
        """The server whose URL this request calls (the path without its query), or None."""
        return self._by_place.get((host, port, path))

    def allow_hosts(self) -> list[str]:
        """mitmproxy `allow_hosts` patterns for the servers' hosts, on any port."""
        return [rf"^{re.escape(host)}\.?:\d+$" for host in sorted(self.hosts)]


NO_SERVERS = McpServers(McpConfig())

# The JSON-RPC error code of a request Tollgate refused (MCP leaves -32000 to -32099 to servers).
REFUSED_CODE = -32001
# The audit's error when the server refused Tollgate's own credential.
SERVER_REFUSED_CREDENTIAL = "the MCP server refused Tollgate's credential"


@dataclass(slots=True)
class McpExchange:
    """One HTTP request to an MCP server (a POST of JSON-RPC messages, the GET stream or DELETE)
    and what came of it: one audit record for each JSON-RPC request it carried."""

    server: McpServer
    method: str  # the HTTP method
    requests: tuple[McpRequest, ...] = ()
    session: str | None = None  # the Mcp-Session-Id the client sent
    request_id: str = ""
    started: float = field(default_factory=time.time)
    client: str | None = None
    groups: tuple[str, ...] = ()
    auth: str = "anonymous"
    identity: JwtIdentity | None = field(default=None, repr=False)
    decision: str = "allow"
    deny_reasons: tuple[str, ...] = ()
    # Each denied request's reasons, by its place in `requests`.
    denied: dict[int, tuple[str, ...]] = field(default_factory=dict)
    status: int | None = None
    outcomes: dict[RequestId, bool] = field(default_factory=dict)
    error: str | None = None
    upstream_key: str | None = None
    ended: float | None = None
    answered_by_tollgate: bool = False
    # The answer's reader as it streams; or, for an answer to a tools/list read whole to drop the
    # tools the caller may not call, whether it came as server-sent events.
    reader: AnswerReader | None = field(default=None, repr=False)
    tools_sse: bool | None = None

    def policy_input(self, request: McpRequest) -> dict[str, Any]:
        """The `input` `data.tollgate.mcp.deny` decides one request on."""
        document: dict[str, Any] = {
            "client": {"name": self.client, "groups": list(self.groups), "auth": self.auth},
            "mcp": {
                "server": self.server.name,
                "method": request.method,
                "tool": request.tool,
                "resource_scheme": request.resource_scheme,
                "prompt": request.prompt,
                "session": self.session,
            },
        }
        if self.identity is not None:
            document["identity"] = self.identity.policy_input()
        return document

    def tool_input(self, tool: str) -> dict[str, Any]:
        """The input a `tools/call` of `tool` by this caller would be decided on."""
        return self.policy_input(McpRequest("tools/call", 0, tool=tool))

    def used_credential(self, secret: str | None) -> None:
        self.upstream_key = None if secret is None else fingerprint(secret)

    def records(self) -> list[dict[str, Any]]:
        """The audit records: one per JSON-RPC request (a notification too); none for a POST of
        answers alone, the GET stream or DELETE unless Tollgate refused them."""
        ended = self.ended if self.ended is not None else time.time()
        base = {
            "event": "mcp_call",
            "ts": _timestamp(self.started),
            "request_id": self.request_id,
            "client": self.client,
            "auth": self.auth,
            "server": self.server.name,
        }
        tail = {
            "status": self.status,
            "upstream_key": self.upstream_key,
            "latency_ms": round((ended - self.started) * 1000, 1),
            "error": self.error,
        }
        if not self.requests:
            if self.decision == "allow":
                return []
            return [{**base, "method": None, "tool": None, "decision": "deny", "deny_reasons": list(self.deny_reasons),
                     "is_error": None, **tail}]  # fmt: skip
        records = []
        for i, request in enumerate(self.requests):
            reasons = self.denied.get(i, ())
            denied = self.decision == "deny"
            records.append({
                **base,
                "method": request.method,
                "tool": request.tool,
                "decision": self.decision,
                # The whole POST is refused when one request is: each names its own reasons, or the POST's.
                "deny_reasons": list(reasons or (self.deny_reasons if denied else ())),
                "is_error": None if request.id is None or denied else self.outcomes.get(request.id),
                **tail,
            })  # fmt: skip
        return records


def _timestamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
