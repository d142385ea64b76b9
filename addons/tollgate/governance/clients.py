"""Who is calling: proxy logins and virtual keys, matched against the configured clients."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tollgate.call import Auth
from tollgate.config import Config
from tollgate.governance.jwt_identity import looks_like_jwt
from tollgate.providers.base import Presented


@dataclass(frozen=True, slots=True)
class Caller:
    name: str | None
    groups: tuple[str, ...]
    auth: Auth


@dataclass(frozen=True, slots=True)
class Token:
    """A presented value shaped like a JWT, no virtual key: the caller is whom it names once verified."""

    value: str = field(repr=False)


class Directory:
    def __init__(self, config: Config) -> None:
        self._anonymous_allowed = config.anonymous_allowed
        self._by_name = {c.name: c for c in config.clients}
        # Callers by virtual key, made once. A dict compares a presented key with a stored one only
        # when their hashes (SipHash, keyed anew per process) are equal, so the lookup's timing says
        # nothing about a key's prefix, with no hashing of each key first.
        self._by_key = {k: Caller(c.name, c.groups, "virtual_key") for c in config.clients for k in c.keys}
        self._by_aws_key = {a.access_key_id: c for c in config.clients for a in c.aws_credentials}
        self.aws_secrets = {a.access_key_id: a.secret_access_key for c in config.clients for a in c.aws_credentials}
        self._takes_jwts = bool(config.identity.jwt)

    def is_virtual_aws_key(self, access_key_id: str) -> bool:
        return access_key_id in self._by_aws_key

    def is_virtual_key(self, value: str) -> bool:
        return value in self._by_key

    @property
    def takes_jwts(self) -> bool:
        return self._takes_jwts

    def identify(
        self, login: str | None, presented: Iterable[Presented], signed_with: str | None = None
    ) -> Caller | Token | None:
        """The caller, or None when it must be refused (no login, no known key, no anonymity).
        `signed_with` is a virtual AWS access key id whose SigV4 signature has been verified. A
        presented JWT (when issuers are configured, and no virtual key is presented) is a Token,
        whose verification tells the caller."""
        if login is not None:
            client = self._by_name.get(login)
            return Caller(login, client.groups if client else (), "proxyauth")
        if signed_with is not None and signed_with in self._by_aws_key:
            client = self._by_aws_key[signed_with]
            return Caller(client.name, client.groups, "sigv4")
        token = None
        for p in presented:
            if (virtual := self._by_key.get(p.value)) is not None:
                return virtual
            if token is None and self._takes_jwts and looks_like_jwt(p.value):
                token = Token(p.value)
        if token is not None:
            return token
        if self._anonymous_allowed:
            return Caller(None, (), "anonymous")
        return None
