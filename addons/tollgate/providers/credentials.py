"""The part of a provider that says where a credential goes: where a caller's key is read and
what else of the request carries a secret, where Tollgate's key goes, the side headers a caller
may send its own in, and what else Tollgate holds for the provider (a credential source of
`credentials/`). Plain Python that knows nothing of mitmproxy.

Every provider declares one as its `credentials`, composed of parts by concern: where a caller's
credentials are read (`CallerKeys`), where Tollgate's key goes (`KeyPlacement`), which credential
goes upstream and what Tollgate holds (`UpstreamCredentials`), and how a caller's own is checked
(`CallerCheck`). Keys in a header need only the first two; a kind of credential that is something
else is a subclass of the part it changes that overrides only its hooks:

- a credential source Tollgate holds (Google's bearer tokens, Entra ID's, AWS credentials to sign
  with): `UpstreamCredentials.load_runtime` and `held_credential`, and `own_pools` where it holds
  keys too;
- a side header that carries something else than a key: `UpstreamCredentials.side_credential`;
- callers that sign their requests (SigV4): `CallerCheck.verify_caller` and `own_credential`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.credentials.header_key import HeaderKey, header_key
from tollgate.credentials.keypool import KeyPool
from tollgate.formats.registry import wire_format
from tollgate.formats.request_facts import Classification

# Any case-insensitive mutable mapping (mitmproxy's `Headers` in the proxy), and any mutable mapping
# of a query's parameter names to values.
Headers = MutableMapping[str, str]
Query = MutableMapping[str, str]


@dataclass(slots=True)  # not frozen: made on every call, and a frozen one costs twice as much to make
class Presented:
    """A credential the client put into the request, and where."""

    value: str
    position: str  # e.g. "authorization", "x-api-key", "query:key"
    # Sent in the Authorization header's Bearer scheme (what a plan-only path takes, `PlanCall.alone`).
    bearer: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class VerifiedCaller:
    """A caller's own credential whose signature over the request holds."""

    key_id: str  # the virtual credential it signed with (an AWS access key id)
    payload_hash: str | None = None  # the body's SHA-256 as signed, which a new signature reuses


@dataclass(frozen=True, slots=True)
class OwnCredential:
    """An anonymous caller's own credential, going upstream as it came."""

    fingerprint: str | None
    # A signature over the request (SigV4): it goes only on the request as the caller made it,
    # with the Host header it covers.
    signed: bool = False


def _lookup(headers: Headers, query: Query, position: str) -> str | None:
    if position.startswith("query:"):
        return query.get(position.removeprefix("query:"))
    return headers.get(position)


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authorization_token(headers: Headers) -> str | None:
    """The credential of the Authorization header in whatever scheme it names (`Bearer`, GitHub's
    `token`), or its whole value where it names none (a bare JWT): where a plan's token may be."""
    return authorization_credential(headers)[0]


def authorization_credential(headers: Headers) -> tuple[str | None, bool]:
    """`authorization_token`, and whether its scheme is Bearer."""
    value = headers.get("authorization", "").strip()
    scheme, space, token = value.partition(" ")
    return (token.strip() if space else value) or None, bool(space) and scheme.lower() == "bearer"


# The last configuration's settings of a provider and what they loaded, which a reload may keep.
type Previous[RuntimeT] = tuple[ProviderConfig, RuntimeT | None]


class Routed(Protocol):
    @property
    def provider(self) -> str | None: ...


class SignedBy(Protocol):
    @property
    def aws_credentials(self) -> Sequence[object]: ...


class Configuration(Protocol):
    """What of the whole configuration a provider's runtime may depend on beside its own settings
    (`config.Config`): its clients (their virtual AWS credentials) and its rules' routes."""

    @property
    def clients(self) -> Sequence[SignedBy]: ...

    @property
    def overrides(self) -> Sequence[Routed]: ...


class CallerKeys:
    """Where a caller's credentials are read. `side_header`: the header a client may send its own
    upstream key in, and `extra_side_headers` others it may send a credential in (all removed
    before forwarding). `key_positions`: where clients put API keys: header names ("authorization"
    holds a Bearer token) or "query:<parameter>"; `positions` adds what else carries a secret there
    (by default, nothing). `key_subprotocol`: the prefix, in lower case, of a WebSocket subprotocol
    that carries its API key (a browser cannot set headers on a WebSocket). `any_scheme`: an
    Authorization credential is read in any scheme, or none (a vendor whose users' plan tokens come
    so: a Copilot client's `token gho_…`, a bare ChatGPT JWT)."""

    __slots__ = (
        "any_scheme",
        "extra_side_headers",
        "header_positions",
        "key_positions",
        "key_subprotocol",
        "positions",
        "query_positions",
        "side_header",
        "side_name",
    )

    def __init__(
        self,
        side_header: str,
        key_positions: tuple[str, ...],
        *,
        positions: tuple[str, ...] | None = None,
        extra_side_headers: tuple[str, ...] = (),
        key_subprotocol: str | None = None,
        any_scheme: bool = False,
    ) -> None:
        self.side_header = side_header
        self.key_positions = key_positions
        self.positions = key_positions if positions is None else positions
        self.extra_side_headers = extra_side_headers
        self.key_subprotocol = key_subprotocol
        self.any_scheme = any_scheme
        # Worked out once: every call reads them.
        self.side_name = side_header.lower()
        # The headers of `positions`, lower-case, as raw header names are compared.
        self.header_positions = frozenset(p.encode() for p in self.positions if not p.startswith("query:"))
        self.query_positions = tuple(p.removeprefix("query:") for p in self.positions if p.startswith("query:"))

    def presented(self, headers: Headers, query: Query) -> list[Presented]:
        """Every credential the client put where this provider's key goes."""
        found = []
        for position in self.key_positions:
            if position == "authorization":
                value, is_bearer = authorization_credential(headers) if self.any_scheme else (bearer(headers), True)
            else:
                value, is_bearer = (_lookup(headers, query, position) or "").strip(), False
            if value:
                found.append(Presented(value, position, is_bearer))
        return found


class KeyPlacement:
    """Where Tollgate puts an upstream key. `key_header`: where it goes for the provider's own wire
    format, and `key_by_format` whether a call in another format takes it where that format carries
    keys (`injected`) rather than there always. `billing_headers`: headers that pick the account a
    key bills (lower-case): a caller's go with its own key, never with one of Tollgate's, which bills
    the account it was issued for. A key going in drops the caller's credentials (`drops`: its
    `CallerKeys.header_positions`), and one of Tollgate's pools the billing headers too."""

    __slots__ = ("billing_headers", "drops", "key_by_format", "key_header", "pooled_drops")

    def __init__(
        self, key_header: str, *, key_by_format: bool = True, billing_headers: frozenset[bytes] = frozenset()
    ) -> None:
        self.key_header = key_header
        self.key_by_format = key_by_format
        self.billing_headers = billing_headers
        self.drops: frozenset[bytes] = frozenset()
        self.pooled_drops = billing_headers

    def bind(self, caller: CallerKeys) -> None:
        """Drop what `caller` reads a caller's credential from (worked out once: every call reads it)."""
        self.drops = caller.header_positions
        self.pooled_drops = caller.header_positions | self.billing_headers

    def injected(self, key: str, classification: Classification) -> tuple[str, str]:
        """The header carrying the upstream key: `Authorization: Bearer` where the call's wire format
        carries keys so (OpenAI's, on every provider's OpenAI-compatible endpoints) or the provider's
        header is that one, else the provider's header."""
        if self.key_header == "authorization" or (
            self.key_by_format and wire_format(classification.wire_format).bearer_key
        ):
            return "authorization", f"Bearer {key}"
        return self.key_header, key

    def header_key(self, key: str, classification: Classification, pooled: bool = False) -> HeaderKey:
        name, value = self.injected(key, classification)
        return header_key(name, value, key, self.pooled_drops if pooled else self.drops, pooled)


class UpstreamCredentials[RuntimeT]:
    """Which credential Tollgate sends upstream, and what it holds for the provider. `RuntimeT` is
    what that is for a configuration (`load_runtime`): a credential source of `credentials/`, or
    nothing. `settings`: the provider's settings that give it an upstream credential, as the refusal
    of a call without one names them. A kind of credential Tollgate holds (Google's bearer tokens,
    Entra ID's, AWS credentials to sign with) is a subclass that overrides `load_runtime` and
    `held_credential`, and `own_pools` where it holds keys too; one whose side header carries
    something else than a key, `side_credential`."""

    __slots__ = ("caller", "key", "settings")

    def __init__(self, settings: str = "keys") -> None:
        self.settings = settings

    def bind(self, caller: CallerKeys, key: KeyPlacement) -> None:
        """Read the caller's side headers as `caller` says, and put keys where `key` says."""
        self.caller = caller
        self.key = key

    def upstream_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        pool: KeyPool,
        settings: ProviderConfig,
        runtime: RuntimeT | None,
        model: str | None = None,
    ) -> UpstreamCredential | None:
        """The credential Tollgate sends upstream, or None to let an anonymous caller's own pass
        (`CallerCheck.own_credential`). `side` holds the side headers the caller sent (lower-case
        names, values stripped), `runtime` what `load_runtime` made, `model` the model the call asks
        the upstream for (a pooled key whose circuit is open for it is not taken). In this order for
        every provider: the caller's own in its side headers (`side_credential`), the next key of
        the pool its `runtime` holds for the call's resource (`own_pools`), the next of the
        provider's keys, what else Tollgate holds for it (`held_credential`)."""
        credential = self.side_credential(classification, side, settings)
        if credential is not None:
            return credential
        own = self.own_pools(runtime).get(classification.resource or "") if runtime is not None else None
        if own is not None:
            key = own.take(model)
            if key is not None:
                pooled = self.key.header_key(key, classification, pooled=True)
                pooled.pool = own
                return pooled
        key = pool.take(model)
        if key is not None:
            return self.key.header_key(key, classification, pooled=True)
        return self.held_credential(classification, side, settings, runtime)

    # The hooks a kind of credential overrides.

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[RuntimeT] | None
    ) -> RuntimeT | None:
        """What these credentials need built for a configuration (`config`, the provider's settings
        `settings`: a credential source of `credentials/`), kept in `Loaded.runtimes` and handed to
        `upstream_credential`. `previous` is the last configuration's settings and runtime, for what
        a reload keeps. A ValueError's message names the setting at fault (`"credentials: …"`).
        Default: nothing."""
        return None

    def own_pools(self, runtime: RuntimeT | None) -> Mapping[str, KeyPool]:
        """The key pools `runtime` holds besides the provider's own (Azure's resources'), by name:
        another process's rest of one of their keys rests it here too. Default: none."""
        return {}

    def side_credential(
        self, classification: Classification, side: Mapping[str, str], settings: ProviderConfig
    ) -> UpstreamCredential | None:
        """The caller's own credential in its side headers, which goes before any of Tollgate's.
        Default: the key in `side_header`, where the provider's keys go."""
        key = side.get(self.caller.side_name)
        return self.key.header_key(key, classification) if key else None

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: RuntimeT | None,
    ) -> UpstreamCredential | None:
        """What Tollgate holds for the provider besides its keys, once none is left (a token of its
        credentials, a signature). Default: nothing."""
        return None


class CallerCheck:
    """How a caller's own credential is checked and told apart. Callers that sign their requests
    (SigV4) are a subclass that overrides `verify_caller` and `own_credential`."""

    __slots__ = ("caller", "verifies_callers")

    def __init__(self) -> None:
        # Whether `verify_caller` is its own (Identify asks only then).
        self.verifies_callers = type(self).verify_caller is not CallerCheck.verify_caller

    def bind(self, caller: CallerKeys) -> None:
        """Read a caller's keys as `caller` says."""
        self.caller = caller

    def verify_caller(self, request: RequestParts, secrets: Mapping[str, str]) -> VerifiedCaller | None:
        """The caller's own credential, verified, where the provider's callers sign their requests
        (Bedrock: SigV4 with virtual AWS credentials, whose secrets `secrets` holds by key id); None
        when the request carries no such credential. Raises `sigv4.SignatureError` when it carries
        one that does not hold. Default: None (callers present keys)."""
        return None

    def own_credential(self, index: Mapping[bytes, bytes], headers: Headers, query: Query) -> OwnCredential:
        """What of an anonymous caller's own goes upstream when Tollgate has no credential: here,
        the first key it presents."""
        own = self.caller.presented(headers, query)
        return OwnCredential(fingerprint(own[0].value) if own else None)


class Credentials[RuntimeT]:
    """Where a provider's credentials go, in parts: where a caller's are read (`caller`), where
    Tollgate's key goes (`key`), which credential goes upstream and what Tollgate holds for it
    (`source`), and how a caller's own is checked (`check`). A provider composes the parts it needs;
    the last two default to keys alone."""

    __slots__ = ("caller", "check", "key", "source")

    def __init__(
        self,
        caller: CallerKeys,
        key: KeyPlacement,
        source: UpstreamCredentials[RuntimeT] | None = None,
        check: CallerCheck | None = None,
    ) -> None:
        self.caller = caller
        self.key = key
        self.source: UpstreamCredentials[RuntimeT] = UpstreamCredentials() if source is None else source
        self.check = CallerCheck() if check is None else check
        key.bind(caller)
        self.source.bind(caller, key)
        self.check.bind(caller)
