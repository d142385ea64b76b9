"""Who is calling: proxy logins and virtual keys, matched against the configured clients (`clients:`,
declared here with their keys)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BeforeValidator, Field, field_validator

from tollgate.common.config_base import Strict
from tollgate.common.emails import email_key
from tollgate.governance.identity.jwt_identity import IdentityConfig, JwtIdentity, looks_like_jwt
from tollgate.providers.credentials import Presented

# How a caller was identified (`KnownCaller.auth`, the audit's and the policy's `auth`).
# `subscription`: a vendor's user token (a plan), whoever named the caller.
Auth = Literal["virtual_key", "sigv4", "proxyauth", "jwt", "anonymous", "subscription"]


class ClientSettings(Protocol):
    """What the directory reads of the configuration (`config.Config`)."""

    @property
    def clients(self) -> tuple[Client, ...]: ...
    @property
    def identity(self) -> IdentityConfig: ...
    @property
    def anonymous_allowed(self) -> bool: ...


# Keys expiring within this many seconds are named on the console at start-up and at each reload.
EXPIRY_NOTICE_S = 7 * 86400


class VirtualAwsCredential(Strict):
    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1)


# A virtual key written as the SHA-256 of its UTF-8 bytes, so that the file holds no usable copy.
SHA256_KEY_PREFIX = "sha256:"
_SHA256_KEY = re.compile(r"sha256:[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def key_digest(key: str) -> str:
    """The hex SHA-256 of a virtual key's UTF-8 bytes: what its `sha256:` form holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def _usable_key(key: str) -> str:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise ValueError("a virtual key must be non-empty and hold no spaces")
    if key.startswith(SHA256_KEY_PREFIX) and _SHA256_KEY.fullmatch(key) is None:
        raise ValueError(
            "a sha256: key is sha256: and 64 lower-case hex digits, the SHA-256 of the key"
            " (`tollgate key new --client NAME` prints one)"
        )
    return key


def _expiry(value: Any) -> datetime:
    """`expires:` as an aware UTC datetime: a date alone is its start in UTC; a date and time must name
    its zone (Z or an offset). YAML gives dates and datetimes, `${NAME}` strings."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if _DATE.fullmatch(text) else datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is no date (2027-03-01) nor date and time with its zone (2027-03-01T00:00:00Z)"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "a date and time needs its zone (2027-03-01T09:00:00Z, or +01:00); a date alone"
                " (2027-03-01) means its start, UTC"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time(), tzinfo=UTC)
    raise ValueError("expected a date (2027-03-01) or a date and time with its zone (2027-03-01T00:00:00Z)")


class VirtualKey(Strict):
    """One of a client's virtual keys: the key, or `sha256:<hex>` of it; until `expires`, when set."""

    key: str
    expires: datetime | None = None

    @field_validator("key")
    @classmethod
    def _key_usable(cls, value: str) -> str:
        return _usable_key(value)

    @field_validator("expires", mode="before")
    @classmethod
    def _expires_read(cls, value: Any) -> datetime | None:
        return None if value is None else _expiry(value)

    @property
    def hashed(self) -> bool:
        """Written as `sha256:<hex>`: Tollgate knows the key by its SHA-256 alone."""
        return self.key.startswith(SHA256_KEY_PREFIX)

    @property
    def sha256(self) -> str:
        """The key's SHA-256 in hex, however it is written."""
        return self.key.removeprefix(SHA256_KEY_PREFIX) if self.hashed else key_digest(self.key)


def _key_entry(value: Any) -> Any:
    """A key written alone stands for `{key: …}`; checked here, so that its error names the entry."""
    return {"key": _usable_key(value)} if isinstance(value, str) else value


class Client(Strict):
    name: str = Field(min_length=1)
    keys: tuple[Annotated[VirtualKey, BeforeValidator(_key_entry)], ...] = ()
    aws_credentials: tuple[VirtualAwsCredential, ...] = ()
    groups: tuple[str, ...] = ()
    # The vendor accounts (an e-mail, an account id) whose plan calls are this client's, for the
    # vendors whose tokens name one. An Anthropic plan's token names none.
    accounts: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # The people this client is, by their e-mail: what each of them sees in the console when
    # signed in (`console.sign_in`). Compared without regard to ASCII letter case.
    people: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")], ...] = ()


@dataclass(frozen=True, slots=True)
class KnownCaller:
    name: str | None
    groups: tuple[str, ...]
    auth: Auth
    # When the virtual key that identified the caller stops being accepted (seconds since the epoch).
    key_expires: float | None = None
    # The SHA-256 (hex) of the virtual key that identified the caller: a WebSocket session opened
    # with it asks, at each response, whether the configuration in force still holds that key.
    key_sha256: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Identified:
    """Who a call's caller is, once known: what `Call.caller` gets of it."""

    client: str | None
    groups: tuple[str, ...]
    auth: Auth
    identity: JwtIdentity | None = None  # a JWT caller's issuer and claims
    key_expires: float | None = None  # when the virtual key it presented expires
    key_sha256: str | None = field(default=None, repr=False)  # that key's SHA-256


@dataclass(frozen=True, slots=True)
class Rejected:
    """A caller no one may be (401)."""

    reason: str  # the audit's deny reason
    message: str  # what the caller is told


@dataclass(frozen=True, slots=True)
class Token:
    """A presented value shaped like a JWT, no virtual key: the caller is whom it names once verified."""

    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Expired:
    """A presented virtual key past its `expires`: refused as an unknown key is (never anonymous,
    never sent upstream); the audit says whose it was and when it ended."""

    client: str
    expired: float

    @property
    def reason(self) -> str:
        return f"virtual key of {self.client} expired {_utc(self.expired)}"


def _account_key(name: str) -> str:
    """An account as `accounts` are matched: an e-mail in any ASCII letter case, an id as written."""
    return email_key(name) if "@" in name else name


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Directory:
    def __init__(self, config: ClientSettings) -> None:
        self.anonymous_allowed = config.anonymous_allowed  # a caller no credential names may call
        self._by_name = {c.name: c for c in config.clients}
        # Callers by virtual key, made once. A dict compares a presented key with a stored one only
        # when their hashes (SipHash, keyed anew per process) are equal, so the lookup's timing says
        # nothing about a key's prefix, with no hashing of each key first.
        self._by_key = {
            k.key: KnownCaller(c.name, c.groups, "virtual_key", _seconds(k.expires), k.sha256)
            for c in config.clients
            for k in c.keys
            if not k.hashed
        }
        # Callers by the SHA-256 of a key the file holds only as `sha256:<hex>`: a presented value is
        # hashed (once per call, never kept) and its digest looked up. The lookup's timing can tell
        # at most how much of a digest matched, which says nothing of any key.
        self._by_sha256 = {
            k.sha256: KnownCaller(c.name, c.groups, "virtual_key", _seconds(k.expires), k.sha256)
            for c in config.clients
            for k in c.keys
            if k.hashed
        }
        # Every key by its SHA-256, for the sessions opened with one (`key_refusal`).
        self._by_digest: dict[str, KnownCaller] = {
            c.key_sha256: c for c in self._by_key.values() if c.key_sha256 is not None
        }
        self._by_digest.update(self._by_sha256)
        self._by_aws_key = {a.access_key_id: c for c in config.clients for a in c.aws_credentials}
        self.aws_secrets = {a.access_key_id: a.secret_access_key for c in config.clients for a in c.aws_credentials}
        self._takes_jwts = bool(config.identity.jwt)
        # Plan callers by the vendor accounts their client lists (`accounts`), e-mails in ASCII lower case.
        self._by_account = {
            _account_key(a): KnownCaller(c.name, c.groups, "subscription") for c in config.clients for a in c.accounts
        }

    def account_holder(self, *names: str | None) -> KnownCaller | None:
        """The client whose `accounts` lists one of `names` (an account id, an e-mail), the first
        found; None when none does."""
        for name in names:
            if name is not None and (holder := self._by_account.get(_account_key(name))) is not None:
                return holder
        return None

    def is_virtual_aws_key(self, access_key_id: str) -> bool:
        return access_key_id in self._by_aws_key

    def is_virtual_key(self, value: str) -> bool:
        """Whether `value` is one of the virtual keys, expired or not: never the caller's own credential."""
        return self._known(value) is not None

    def _known(self, value: str) -> KnownCaller | None:
        known = self._by_key.get(value)
        if known is None and self._by_sha256:
            try:  # the bytes the client sent (header values are read as UTF-8, surrogates for the rest)
                sent = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # no key of the file's, which is UTF-8 text
                return None
            known = self._by_sha256.get(hashlib.sha256(sent).hexdigest())
        return known

    def key_refusal(self, key_sha256: str, client: str | None, now: float) -> str | None:
        """Why a session opened with the virtual key of this SHA-256, as `client`, may no longer
        call (the audit's deny reason): the key removed from the configuration or given to another
        client, or expired; None while it may."""
        holder = self._by_digest.get(key_sha256)
        if holder is None or holder.name != client:
            return f"virtual key of {client} removed from the configuration"
        if holder.key_expires is not None and now >= holder.key_expires:
            return Expired(client or "", holder.key_expires).reason
        return None

    @property
    def takes_jwts(self) -> bool:
        return self._takes_jwts

    def identify(
        self, login: str | None, presented: Iterable[Presented], signed_with: str | None = None
    ) -> KnownCaller | Token | Expired | None:
        """The caller, or None when it must be refused (no login, no known key, no anonymity).
        `signed_with` is a virtual AWS access key id whose SigV4 signature has been verified. A
        presented JWT (when issuers are configured, and no virtual key is presented) is a Token,
        whose verification tells the caller. A virtual key past its expiry is Expired: refused,
        whether or not anonymous callers are allowed."""
        if login is not None:
            client = self._by_name.get(login)
            return KnownCaller(login, client.groups if client else (), "proxyauth")
        if signed_with is not None and signed_with in self._by_aws_key:
            client = self._by_aws_key[signed_with]
            return KnownCaller(client.name, client.groups, "sigv4")
        token = None
        for p in presented:
            if (virtual := self._known(p.value)) is not None:
                if virtual.key_expires is not None and time.time() >= virtual.key_expires:
                    assert virtual.name is not None
                    return Expired(virtual.name, virtual.key_expires)
                return virtual
            if token is None and self._takes_jwts and looks_like_jwt(p.value):
                token = Token(p.value)
        if token is not None:
            return token
        if self.anonymous_allowed:
            return KnownCaller(None, (), "anonymous")
        return None


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def expiry_notices(config: ClientSettings, now: float, within: float = EXPIRY_NOTICE_S) -> list[str]:
    """What the console says of the virtual keys that have expired or expire within `within`
    seconds of `now`: each named by its place in the file (`clients.0.keys.1`) and its client,
    never by the key."""
    notices = []
    for i, client in enumerate(config.clients):
        for j, key in enumerate(client.keys):
            if key.expires is None:
                continue
            ends, where = key.expires.timestamp(), f"clients.{i}.keys.{j} ({client.name})"
            if ends <= now:
                notices.append(f"{where} expired {_utc(ends)}: it is refused")
            elif ends - now <= within:
                notices.append(f"{where} expires {_utc(ends)}, in {_span(ends - now)}")
    return notices


def _span(seconds: float) -> str:
    if seconds >= 86400:
        days = int(seconds // 86400)
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds >= 3600:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, int(seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
