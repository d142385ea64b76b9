"""The MCP servers Tollgate governs (`mcp.servers` in tollgate.yaml): their settings, and which
server a request calls (`McpServers`)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tollgate.common.config_base import Strict, base_url

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
    host), Tollgate's credential for it, the seconds it has to send an answer's headers, and
    whether `agents` trusts its results (`trusted`: the owner's own server, whose results are not
    outside content)."""

    name: str = Field(min_length=1)
    url: str
    upstream: str | None = None
    credential: McpCredential | None = None
    timeout: float = Field(default=120.0, gt=0)
    trusted: bool = False

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
        # The headers the servers' credentials go in (lower case): a caller's own may be there too.
        self.credential_headers = frozenset(s.credential.field()[0] for s in config.servers if s.credential)

    def __bool__(self) -> bool:
        return bool(self.servers)

    def at(self, host: str, port: int, path: str) -> McpServer | None:
        """The server whose URL this request calls (the path without its query), or None."""
        return self._by_place.get((host, port, path))

    def allow_hosts(self) -> list[str]:
        """mitmproxy `allow_hosts` patterns for the servers' hosts, on any port."""
        return [rf"^{re.escape(host)}\.?:\d+$" for host in sorted(self.hosts)]


NO_SERVERS = McpServers(McpConfig())
