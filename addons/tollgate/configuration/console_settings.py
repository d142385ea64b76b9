"""`console:` in tollgate.yaml: where `tollgate console` (`console/`) listens, its token, its TLS,
how people sign in (`sign_in`: OpenID Connect) and where their reads are recorded (`access_log`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tollgate.common.config_base import Strict
from tollgate.configuration.records_settings import dsn_at

DEFAULT_LISTEN = "127.0.0.1:8090"  # 8081 is mitmweb's and --capture's


class ConsoleTls(Strict):
    cert: str  # a PEM file: the certificate (and its chain)
    key: str  # a PEM file: its private key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SignInConfig(Strict):
    """`console.sign_in`: people sign in with the company's identity provider (OpenID Connect, the
    authorization code flow with PKCE); their role comes from the ID token's groups: `security`
    before `lead` (`leads`) before `self`."""

    issuer: str  # discovery at <issuer without a trailing />/.well-known/openid-configuration
    client_id: str = Field(min_length=1)
    client_secret: str | None = Field(default=None, repr=False)  # None: a public client (PKCE alone)
    redirect_uri: str | None = None  # required unless the console listens on loopback
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    groups_claim: str = Field(default="groups", min_length=1)
    allowed_groups: list[str] | None = None  # set: only members of these IdP groups sign in (403 otherwise)
    security: list[str] = Field(default_factory=list)  # IdP groups whose members see everything
    leads: dict[str, list[str]] = Field(default_factory=dict)  # IdP group -> the Tollgate groups it sees
    trust_email: bool = False  # true: an e-mail without email_verified counts
    ca_file: str | None = None  # to trust the issuer's TLS certificate

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be the issuer's https URL without a query, e.g. https://login.example.com")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            # The ID token and the code travel from it: plain HTTP only on this machine.
            raise ValueError("must be an https URL (http only for an issuer on loopback)")
        return value

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError(
                "must be the console's https URL of /auth/callback, e.g. https://console.example.com/auth/callback"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("must be an https URL (http only on loopback): the code travels in it")
        if parts.path != "/auth/callback":
            raise ValueError(
                "must end in /auth/callback (the console's callback), e.g. https://console.example.com/auth/callback"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include openid (the ID token is asked for by it)")
        if any(not s or " " in s for s in value):
            raise ValueError("each scope is one word, e.g. [openid, email, profile]")
        return value


def at_least(length: int, otherwise: str) -> Callable[[str | None], str | None]:
    """A validator of a secret: unset, or `length` characters or more (ValueError `otherwise`)."""

    def check(value: str | None) -> str | None:
        if value is not None and len(value) < length:
            raise ValueError(otherwise)
        return value

    return check


class ConsoleConfig(Strict):
    """`listen`: HOST:PORT; `token`: the token every request needs (default: a new random one
    per start; `${NAME}` keeps one across starts; with `sign_in`, none unless set, and then only as
    `Authorization: Bearer`); `cursor_secret`: what the event list's cursors are sealed with (32
    characters or more, `${NAME}`, shared by replicas; required when the console reads PostgreSQL,
    where it runs as replicas); `tls`: served over HTTPS. An address other
    than loopback is refused without `tls`. `sign_in`: OpenID Connect; `access_log`: the console's reads, as JSON lines
    (default `<audit.path>.console-access.jsonl`)."""

    listen: str = DEFAULT_LISTEN
    token: str | None = None
    tls: ConsoleTls | None = None
    # With audit.postgres: the console's own role (SELECT on the records); default: audit.postgres.dsn.
    postgres_dsn: str | None = Field(default=None, repr=False)

    _postgres_dsn = field_validator("postgres_dsn")(dsn_at("console.postgres_dsn"))
    sign_in: SignInConfig | None = None
    access_log: str | None = None
    # The key the event list's cursors are sealed with (`console/cursors.py`), the same for every
    # replica; None: a random one per start, over files alone (`tollgate console` over PostgreSQL
    # refuses to start without it).
    cursor_secret: str | None = Field(default=None, repr=False)

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        listen_address(value)
        return value

    _long_enough = field_validator("token")(at_least(16, "a token of 16 characters or more"))
    _strong_enough = field_validator("cursor_secret")(
        at_least(32, "a secret of 32 characters or more, the same for every console replica (${NAME})")
    )

    @model_validator(mode="after")
    def _loopback_or_tls(self) -> ConsoleConfig:
        refusal = exposed_without_tls(self.listen, self.tls is not None)
        if refusal:
            raise ValueError(refusal)
        if self.sign_in is not None:
            redirect_uri(self.sign_in, self.listen, self.tls is not None)
        return self


def redirect_uri(sign_in: SignInConfig, listen: str, tls: bool) -> str:
    """Where the issuer sends the browser back: `sign_in.redirect_uri`, else, on loopback,
    http(s)://<listen>/auth/callback; ValueError naming the field when neither."""
    if sign_in.redirect_uri is not None:
        return sign_in.redirect_uri
    host, port = listen_address(listen)
    if not _is_loopback(host):
        raise ValueError(
            f"sign_in.redirect_uri: required when the console listens on {listen} (not loopback):"
            " the console's address as the browser reaches it, e.g. https://console.example.com/auth/callback"
        )
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/auth/callback"


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen {text!r}: HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def exposed_without_tls(listen: str, tls: bool) -> str | None:
    """Why `listen` may not be served without TLS (an address other than loopback), or None."""
    host, _ = listen_address(listen)
    if tls or _is_loopback(host):
        return None
    return f"listen {listen}: an address other than loopback is served only over TLS (set console.tls: {{cert, key}})"
