"""`console:` in tollgate.yaml: where `tollgate console` (`console/`) listens, its token, its TLS."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from tollgate.common.config_base import Strict
from tollgate.core.records_settings import dsn_at

DEFAULT_LISTEN = "127.0.0.1:8090"  # 8081 is mitmweb's and --capture's


class ConsoleTls(Strict):
    cert: str  # a PEM file: the certificate (and its chain)
    key: str  # a PEM file: its private key


class ConsoleConfig(Strict):
    """`listen`: HOST:PORT; `token`: the token every request needs (default: a new random one
    per start; `${NAME}` keeps one across starts); `tls`: served over HTTPS. An address other than
    loopback is refused without `tls`."""

    listen: str = DEFAULT_LISTEN
    token: str | None = None
    tls: ConsoleTls | None = None
    # With audit.postgres: the console's own role (SELECT on the records); default: audit.postgres.dsn.
    postgres_dsn: str | None = Field(default=None, repr=False)

    _postgres_dsn = field_validator("postgres_dsn")(dsn_at("console.postgres_dsn"))

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        listen_address(value)
        return value

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("a token of 16 characters or more")
        return value

    @model_validator(mode="after")
    def _loopback_or_tls(self) -> ConsoleConfig:
        refusal = exposed_without_tls(self.listen, self.tls is not None)
        if refusal:
            raise ValueError(refusal)
        return self


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen {text!r}: HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def exposed_without_tls(listen: str, tls: bool) -> str | None:
    """Why `listen` may not be served without TLS (an address other than loopback), or None."""
    host, _ = listen_address(listen)
    if tls or host == "localhost":
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return f"listen {listen}: an address other than loopback is served only over TLS (set console.tls: {{cert, key}})"
