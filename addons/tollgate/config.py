"""The configuration file: pydantic models, `${VAR}` expansion, and errors that name the field."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from tollgate.config_base import ProviderConfig, Strict, base_url
from tollgate.governance.jwt_identity import (
    HMAC_ALGORITHMS,
    HMAC_MIN_BYTES,
    JWKS_MAX_AGE_S,
    JWKS_REFRESH_S,
    PUBLIC_KEY_ALGORITHMS,
)
from tollgate.governance.mcp_servers import McpConfig
from tollgate.governance.policy import TIMEOUT as POLICY_TIMEOUT
from tollgate.host_globs import glob_pattern, globs_overlap
from tollgate.providers import OPENAI_COMPATIBLE_SOURCE, PROVIDERS, ConfiguredVendorSettings, provider_for

PROVIDER_NAMES = tuple(PROVIDERS)
# The validation context's key for the names of the providers a file adds (`providers.<name>:
# {kind: …}`), which its rules may name (`parse_config` sets it).
CONFIGURED = "configured_providers"
# A provider's name as the configuration adds one: what the audit, the policy and the metrics call it.
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
DRAIN_S = 30.0  # `drain_s` when the file names none


class ConfigError(Exception):
    """A configuration problem, its message naming the file and the field."""


def known_providers(info: ValidationInfo | None) -> tuple[str, ...]:
    """The providers a rule may name: the built-in ones and those the file adds."""
    context = info.context if info is not None else None
    return PROVIDER_NAMES + tuple((context or {}).get(CONFIGURED, ()))


def unknown_provider(name: str, known: tuple[str, ...]) -> str:
    return f"unknown provider {name!r}; one of {', '.join(known)}"


def configured_names(data: Any) -> tuple[str, ...]:
    """The names under `providers:` of a parsed file that are not built in: those it adds."""
    providers = data.get("providers") if isinstance(data, dict) else None
    return tuple(n for n in providers if n not in PROVIDERS) if isinstance(providers, dict) else ()


class _ProviderSettings(Strict):
    # A name that is no built-in provider adds one (`kind: openai_compatible`).
    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, ConfiguredVendorSettings] = Field(init=False)

    def get(self, name: str) -> ProviderConfig:
        return getattr(self, name)

    def configured(self) -> dict[str, ConfiguredVendorSettings]:
        """The providers the file adds, by name."""
        return dict(self.__pydantic_extra__ or {})

    def names(self) -> tuple[str, ...]:
        """Every provider's name: the built-in ones, then those the file adds."""
        return PROVIDER_NAMES + tuple(self.__pydantic_extra__ or ())

    @model_validator(mode="after")
    def _names_usable(self) -> _ProviderSettings:
        for name in self.__pydantic_extra__ or ():
            if not isinstance(name, str) or _PROVIDER_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"{name!r}: a provider's name is lower-case letters, digits, '_' and '-', starting with a"
                    " letter (at most 40)"
                )
        return self


# `providers:`, one field per registered provider, each of the provider's own settings model. A
# model made at run time: type checkers know it by its base.
if TYPE_CHECKING:
    Providers = _ProviderSettings
else:
    Providers = create_model(
        "Providers",
        __base__=_ProviderSettings,
        **{name: (p.settings_model, p.settings_model()) for name, p in PROVIDERS.items()},
    )


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
        return datetime.combine(value, time(0), tzinfo=UTC)
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


class OverrideMatch(Strict):
    provider: str | None = None
    model: str | None = None
    client: str | None = None
    group: str | None = None


# The providers whose OpenAI-compatible API takes OpenAI's calls as they are (`api: openai_compatible`).
OPENAI_COMPATIBLE_TARGETS = tuple(name for name, p in PROVIDERS.items() if p.openai_compatible_prefix is not None)


class Fallback(Strict):
    """One of an override rule's `fallbacks`: where its call goes when its target fails."""

    provider: str
    model: str = Field(min_length=1)


class Override(Strict):
    match: OverrideMatch = OverrideMatch()
    model: str | None = Field(default=None, min_length=1)
    provider: str | None = None
    upstream: str | None = None
    # How a route reaches its provider: `openai_compatible` sends an OpenAI call as it is to the
    # provider's OpenAI-compatible API; `native` translates it into the provider's own format. By
    # default, the OpenAI-compatible API where it offers the endpoint called, else the native one.
    api: Literal["native", "openai_compatible"] | None = None
    # Tried in order when the target fails as its provider's `retry.when` says (after its retries).
    fallbacks: tuple[Fallback, ...] = ()

    _upstream = field_validator("upstream")(classmethod(lambda cls, value: base_url(value)))

    @model_validator(mode="after")
    def _a_route_reaches_its_provider(self, info: ValidationInfo) -> Override:
        if self.model is None and self.provider is None and self.upstream is None and not self.fallbacks:
            raise ValueError("a rule must set model, provider, upstream or fallbacks")
        known = known_providers(info)
        for name in (self.match.provider, self.provider):
            if name is not None and name not in known:
                raise ValueError(unknown_provider(name, known))
        if self.api is not None and (self.provider is None or self.provider == self.match.provider):
            raise ValueError("api: applies to a route (provider: another provider than match.provider)")
        if self.api == "openai_compatible":
            # Every provider a file adds is an OpenAI-compatible API.
            if self.provider not in OPENAI_COMPATIBLE_TARGETS and self.provider not in known[len(PROVIDER_NAMES) :]:
                raise ValueError(f"{self.provider} has no OpenAI-compatible API: use api: native")
            if self.match.provider != OPENAI_COMPATIBLE_SOURCE:
                raise ValueError("api: openai_compatible takes OpenAI's calls: set match.provider: openai")
        self._fallbacks_reachable(known)
        return self

    def _fallbacks_reachable(self, known: tuple[str, ...]) -> None:
        """A fallback names a provider Tollgate knows. One to another provider than the rule's is
        translated from the call as its client sent it (a chat call; another call skips it)."""
        target = self.provider or self.match.provider
        for i, fallback in enumerate(self.fallbacks):
            where = f"fallbacks[{i}].provider"
            if fallback.provider not in known:
                raise ValueError(f"{where}: {unknown_provider(fallback.provider, known)}")
            if target is None:
                raise ValueError(f"{where}: a rule with fallbacks names its provider (provider or match.provider)")


class Summarizer(Strict):
    provider: str
    model: str = Field(min_length=1)


class RollupRule(Strict):
    """One `rollup:` rule: a conversation past `above_messages` turns (or an estimated `above_tokens`)
    goes upstream with all but its last `keep_last` turns summarized by `summarizer`."""

    match: OverrideMatch = OverrideMatch()
    above_messages: int | None = Field(default=None, ge=1)
    above_tokens: int | None = Field(default=None, ge=1)
    keep_last: int = Field(default=4, ge=1)
    summarizer: Summarizer
    cache_entries: int = Field(default=256, ge=0)

    @model_validator(mode="after")
    def _one_size(self, info: ValidationInfo) -> RollupRule:
        if (self.above_messages is None) == (self.above_tokens is None):
            raise ValueError("set one of above_messages and above_tokens")
        if self.above_messages is not None and self.keep_last >= self.above_messages:
            raise ValueError("keep_last must be below above_messages")
        known = known_providers(info)
        for name in (self.match.provider, self.summarizer.provider):
            if name is not None and name not in known:
                raise ValueError(unknown_provider(name, known))
        return self


class JwtIssuer(Strict):
    """One `identity.jwt` entry: an issuer whose tokens identify callers (`jwt_identity.py`)."""

    issuer: str = Field(min_length=1)
    audience: str | tuple[str, ...]
    jwks_url: str | None = None
    jwks_file: str | None = None
    secret: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    algorithms: tuple[str, ...]
    client_claim: str = Field(default="sub", min_length=1)
    groups_claim: str = Field(default="groups", min_length=1)
    # None: not written out, which configured clients forbid (a token could take one's name).
    client_prefix: str | None = None
    leeway_s: float = Field(default=30.0, ge=0)
    jwks_refresh_s: float = Field(default=JWKS_REFRESH_S, ge=0)
    jwks_max_age_s: float = Field(default=JWKS_MAX_AGE_S, gt=0)

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else self.audience

    @property
    def prefix(self) -> str:
        """What goes before the client claim: `client_prefix`, or nothing."""
        return self.client_prefix or ""

    @field_validator("audience")
    @classmethod
    def _audience_given(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        values = (value,) if isinstance(value, str) else value
        if not values or any(not a for a in values):
            raise ValueError("an audience must be a non-empty string, or a list of them")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name the algorithms the issuer signs with, e.g. [RS256]")
        for alg in value:
            if alg.lower() == "none":
                raise ValueError('"none" is refused: every token must be signed')
            if alg not in HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS:
                known = ", ".join(sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS))
                raise ValueError(f"unknown algorithm {alg!r}; one of {known}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme != "https" or not urlsplit(value).hostname):
            raise ValueError("must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtIssuer:
        sources = [n for n in ("jwks_url", "jwks_file", "secret") if getattr(self, n) is not None]
        if len(sources) != 1:
            raise ValueError(
                "set exactly one of jwks_url, jwks_file or secret"
                + (f" (not {' and '.join(sources)})" if sources else "")
            )
        if self.ca_file is not None and self.jwks_url is None:
            raise ValueError("ca_file is for jwks_url only")
        if self.secret is not None:
            wrong = [a for a in self.algorithms if a not in HMAC_ALGORITHMS]
            if wrong:
                raise ValueError(f"algorithms: {', '.join(wrong)} cannot be used with secret (HS256, HS384, HS512 can)")
            need = max(HMAC_MIN_BYTES[a] for a in self.algorithms)
            if len(self.secret.encode()) < need:
                raise ValueError(f"secret: must be at least {need} bytes long for {', '.join(self.algorithms)}")
        else:
            wrong = [a for a in self.algorithms if a in HMAC_ALGORITHMS]
            if wrong:
                raise ValueError(f"algorithms: {', '.join(wrong)} needs secret, not a JWKS")
        return self


class IdentityConfig(Strict):
    jwt: tuple[JwtIssuer, ...] = ()


class PolicyConfig(Strict):
    rego: tuple[str, ...] = ()
    timeout: float = Field(default=POLICY_TIMEOUT, gt=0)


class AuditConfig(Strict):
    path: str = "audit.jsonl"
    stream_usage: Literal["passive", "inject"] = "inject"


# Prices and amounts of money: exact decimals, never negative.
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class PriceRule(Strict):
    """`prices:` one entry: US dollars per million tokens for the calls it matches, which wins over
    the maintained price table (negotiated rates, fine-tuned and private models)."""

    match: OverrideMatch = OverrideMatch()
    input_per_mtok: Money
    output_per_mtok: Money
    cached_input_per_mtok: Money | None = None  # default: input_per_mtok
    cache_write_per_mtok: Money | None = None  # default: input_per_mtok
    reasoning_per_mtok: Money | None = None  # default: output_per_mtok

    @field_validator("match")
    @classmethod
    def _provider_known(cls, value: OverrideMatch, info: ValidationInfo) -> OverrideMatch:
        known = known_providers(info)
        if value.provider is not None and value.provider not in known:
            raise ValueError(unknown_provider(value.provider, known))
        return value


WINDOWS = ("minute", "day", "month")
METRICS = ("requests", "tokens", "usd")
# A limit's caps, by field name: `<metric>_per_<window>`, e.g. tokens_per_day.
LIMIT_FIELDS = tuple(f"{metric}_per_{window}" for metric in METRICS for window in WINDOWS)

Count = Annotated[int, Field(ge=0)]


class LimitRule(Strict):
    """`limits:` one entry: the caps on the calls it matches, counted per client, per group, or for
    all of them together, in fixed UTC windows."""

    name: str | None = Field(default=None, min_length=1)  # default: made from match and per
    match: OverrideMatch = OverrideMatch()
    per: Literal["client", "group", "all"] = "client"
    requests_per_minute: Count | None = None
    requests_per_day: Count | None = None
    requests_per_month: Count | None = None
    tokens_per_minute: Count | None = None
    tokens_per_day: Count | None = None
    tokens_per_month: Count | None = None
    usd_per_minute: Money | None = None
    usd_per_day: Money | None = None
    usd_per_month: Money | None = None
    # MCP servers' requests (`mcp.servers`), which no other cap counts, nor this one LLM calls.
    mcp_calls_per_minute: Count | None = None

    @property
    def label(self) -> str:
        """The limit's name: what refusals, the audit and the policy call it, and what its counters
        are kept under (a name that stays the same keeps its counts across edits)."""
        if self.name is not None:
            return self.name
        m = self.match
        parts = [f"{k}={v}" for k, v in (("provider", m.provider), ("model", m.model), ("client", m.client),
                                          ("group", m.group)) if v is not None]  # fmt: skip
        return f"{' '.join(parts) or 'every call'} per {self.per}"

    def caps(self) -> dict[str, int | Decimal]:
        """The caps set, by field name (`LIMIT_FIELDS`)."""
        return {name: value for name in LIMIT_FIELDS if (value := getattr(self, name)) is not None}

    @model_validator(mode="after")
    def _something_capped(self, info: ValidationInfo) -> LimitRule:
        if not self.caps() and self.mcp_calls_per_minute is None:
            raise ValueError(f"a limit must set at least one of {', '.join(LIMIT_FIELDS)}, mcp_calls_per_minute")
        if self.mcp_calls_per_minute is not None and (self.match.provider or self.match.model):
            raise ValueError("mcp_calls_per_minute counts MCP requests, which match no provider or model")
        known = known_providers(info)
        if self.match.provider is not None and self.match.provider not in known:
            raise ValueError(unknown_provider(self.match.provider, known))
        return self


LEDGER_FILE = "ledger.sqlite"


class LedgerConfig(Strict):
    """`ledger:` where the counters of the limits and the record of every call's usage are kept."""

    # sqlite:///relative/path, sqlite:////absolute/path, or redis://[:password@]host[:port][/db]
    # (rediss:// over TLS). Default: a SQLite file beside the audit log.
    store: str | None = Field(default=None, repr=False)  # a Redis URL may hold a password
    on_store_error: Literal["deny", "allow"] = "deny"
    # What a call that sets no max_tokens reserves for its answer, until its real usage settles it.
    reserve_output_tokens: Count = 4096
    # What a call whose input is partly held by the provider (a previous response, a conversation, a
    # stored prompt, a Realtime session) reserves as its input where its model's context window is
    # unknown: 128k, the window of most current chat models.
    reserve_input_tokens: Count = 128_000

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "sqlite":
            if parts.netloc or not parts.path.removeprefix("/"):
                raise ValueError("a SQLite store is sqlite:///relative/path or sqlite:////absolute/path")
            return value
        if parts.scheme in ("redis", "rediss"):
            try:
                _ = parts.port
            except ValueError as e:
                raise ValueError(f"bad port: {e}") from None
            if not parts.hostname:
                raise ValueError("a Redis store is redis://host[:port][/db]")
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ValueError("a Redis store's database is a number: redis://host:port/0")
            return value
        raise ValueError("must be sqlite:///path or redis://host:port/db")


class OtlpConfig(Strict):
    """`metrics.otlp`: where spans go, over OTLP/HTTP (protobuf)."""

    endpoint: str  # e.g. http://127.0.0.1:4318 (spans are posted to <endpoint>/v1/traces)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # e.g. an API key of the collector
    service_name: str = Field(default="tollgate", min_length=1)

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, value: base_url(value)))


class MetricsConfig(Strict):
    """`metrics:` Prometheus metrics and OpenTelemetry traces of the calls (both off by default)."""

    listen: str | None = None  # host:port where /metrics is served, e.g. 127.0.0.1:9464
    # Label values kept per label before the rest are counted as "other": clients and models are
    # named by callers, and each new value is a new time series.
    max_label_values: int = Field(default=200, ge=1)
    otlp: OtlpConfig | None = None  # else from OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, when set

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return None if value is None else listen_address(value)


def listen_address(value: str) -> str:
    """`value` when it is a `host:port` to serve on; else ValueError saying what it should be."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464")
    return value


class Config(Strict):
    providers: Providers = Providers()
    clients: tuple[Client, ...] = ()
    identity: IdentityConfig = IdentityConfig()
    allow_anonymous: bool | None = None
    overrides: tuple[Override, ...] = ()
    rollup: tuple[RollupRule, ...] = ()
    policy: PolicyConfig = PolicyConfig()
    audit: AuditConfig = AuditConfig()
    prices: tuple[PriceRule, ...] = ()
    limits: tuple[LimitRule, ...] = ()
    ledger: LedgerConfig = LedgerConfig()
    metrics: MetricsConfig = MetricsConfig()
    mcp: McpConfig = McpConfig()  # the MCP servers governed (`governance/mcp.py`)
    # Seconds a SIGTERM gives the calls in flight to finish before the process exits (0: exit at
    # once, as mitmproxy would); see stages/drain.py.
    drain_s: float = Field(default=DRAIN_S, ge=0, allow_inf_nan=False)

    @property
    def anonymous_allowed(self) -> bool:
        if self.allow_anonymous is None:
            # Clients or JWT issuers configured: who calls must say who they are.
            return not self.clients and not self.identity.jwt
        return self.allow_anonymous

    @property
    def ledger_store(self) -> str:
        """The ledger's store: as configured, else a SQLite file beside the audit log."""
        if self.ledger.store is not None:
            return self.ledger.store
        beside = Path(self.audit.path).parent if self.audit.path != "-" else Path()
        return f"sqlite:///{beside / LEDGER_FILE}"

    @model_validator(mode="after")
    def _mcp_servers_on_no_providers_host(self) -> Config:
        """An MCP server's host is no provider's: its own, or one `providers.<name>.hosts` adds (a
        configured vendor's among them), whose calls are read as that provider's."""
        added = [
            (name, j, re.compile(glob_pattern(glob)))
            for name in self.providers.names()
            for j, glob in enumerate(self.providers.get(name).hosts)
        ]
        for i, server in enumerate(self.mcp.servers):
            host = server.host.removesuffix(".")
            provider = provider_for(host)
            owner = f"{provider.name}'s" if provider is not None else None
            if owner is None:
                owner = next((f"{n}'s (providers.{n}.hosts.{j})" for n, j, p in added if p.fullmatch(host)), None)
            if owner is not None:
                raise ValueError(f"mcp.servers.{i}.url: {server.host} is {owner}, whose calls are LLM calls")
        return self

    @model_validator(mode="after")
    def _identities_unique(self) -> Config:
        seen_names: set[str] = set()
        seen_keys: set[str] = set()
        seen_aws: set[str] = set()
        for i, client in enumerate(self.clients):
            if client.name in seen_names:
                raise ValueError(f"clients.{i}.name: {client.name!r} is used by another client")
            seen_names.add(client.name)
            for j, key in enumerate(client.keys):
                if key.sha256 in seen_keys:  # a key written out and its sha256: form are one key
                    raise ValueError(f"clients.{i}.keys.{j}: this virtual key is used twice")
                seen_keys.add(key.sha256)
            for j, cred in enumerate(client.aws_credentials):
                if cred.access_key_id in seen_aws:
                    raise ValueError(f"clients.{i}.aws_credentials.{j}.access_key_id: used by another client")
                seen_aws.add(cred.access_key_id)
        labels: dict[str, int] = {}
        for i, limit in enumerate(self.limits):
            if limit.label in labels:
                raise ValueError(
                    f"limits.{i}: called {limit.label!r} like limits.{labels[limit.label]}, whose counters it"
                    " would share; set name: on one of them"
                )
            labels[limit.label] = i
        for i, rule in enumerate(self.overrides):
            name = rule.provider
            if name is not None and rule.upstream is None and not self._reachable(name):
                raise ValueError(
                    f"overrides.{i}: a route to {name} needs upstream: here or under"
                    f" providers.{name} ({self._upstream_hint(name)})"
                )
        for i, rollup in enumerate(self.rollup):
            name = rollup.summarizer.provider
            if not self._reachable(name):
                raise ValueError(
                    f"rollup.{i}.summarizer: {name} needs providers.{name}.upstream ({self._upstream_hint(name)})"
                )
        self._hosts_apart()
        self._ephemeral_credentials_uncapped()
        issuers: set[str] = set()
        for i, entry in enumerate(self.identity.jwt):
            if entry.issuer in issuers:
                raise ValueError(f"identity.jwt.{i}.issuer: {entry.issuer} is configured twice")
            issuers.add(entry.issuer)
            if self.clients and entry.client_prefix is None:
                # A token's client claim would be taken for a configured client's name: its
                # counters, overrides and policy rules.
                raise ValueError(
                    f"identity.jwt.{i}.client_prefix: not set, and clients are configured: a token of"
                    f" {entry.issuer} could take a configured client's name (sub: {self.clients[0].name!r}"
                    f' would be client {self.clients[0].name!r}); set a prefix such as "jwt:", or'
                    ' client_prefix: "" to let its tokens name configured clients'
                )
        return self

    def _ephemeral_credentials_uncapped(self) -> None:
        """A credential minted through Tollgate is used without it: what it spends is never
        counted, so no token or USD cap may be promised for a provider that allows minting one."""
        for name in self.providers.names():
            if self.providers.get(name).ephemeral_credentials != "allow":
                continue
            for i, limit in enumerate(self.limits):
                capped = [f for f in limit.caps() if not f.startswith("requests_")]
                if capped and limit.match.provider in (None, name):
                    raise ValueError(
                        f"providers.{name}.ephemeral_credentials: allow lets a caller mint a credential it spends"
                        f" without Tollgate, and limits.{i} ({limit.label!r}) caps {capped[0]} for {name}'s calls;"
                        " a token or USD cap cannot be kept beside it"
                    )

    def _reachable(self, name: str) -> bool:
        """Whether Tollgate knows where a request it sends to `name` goes: its upstream, else its host."""
        settings = self.providers.get(name)
        if settings.upstream is not None:
            return True
        if isinstance(settings, ConfiguredVendorSettings):
            return settings.default_host is not None
        return PROVIDERS[name].default_host is not None

    def _upstream_hint(self, name: str) -> str:
        return PROVIDERS[name].upstream_hint if name in PROVIDERS else f"the scheme://host of {name}'s API"

    def _hosts_apart(self) -> None:
        """No host is added to two providers, nor to one besides the provider it is the own host of:
        which one would read its calls is not to be guessed."""
        added = [
            (name, i, glob) for name in self.providers.names() for i, glob in enumerate(self.providers.get(name).hosts)
        ]
        for name, i, glob in added:
            for other, provider in PROVIDERS.items():
                own = next((g for g in provider.host_globs if globs_overlap(glob, g)), None)
                if other != name and own is not None:
                    raise ValueError(
                        f"providers.{name}.hosts.{i}: {glob!r} matches hosts of {other} ({own!r}), which are its"
                        " own; a host belongs to one provider"
                    )
        for k, (name, i, glob) in enumerate(added):
            for other, j, other_glob in added[:k]:
                if other != name and globs_overlap(glob, other_glob):
                    raise ValueError(
                        f"providers.{name}.hosts.{i}: {glob!r} and providers.{other}.hosts.{j} ({other_glob!r})"
                        " match the same hosts; a host belongs to one provider"
                    )


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(node: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace `${NAME}` in every string of a parsed YAML tree; an unset NAME is an error."""
    if isinstance(node, str):

        def substitute(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"{where or '(top level)'}: environment variable {name} is not set")
            return env[name]

        return _VAR.sub(substitute, node)
    if isinstance(node, dict):
        return {k: expand_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, f"{where}.{i}" if where else str(i)) for i, v in enumerate(node)]
    return node


_UNION_MEMBERS = ("AwsCredentials", "str")


def _describe(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        # Drop the union member names pydantic adds to the path ("literal['default']").
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_MEMBERS)))
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(lines))


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping (providers:, clients:, …)")
    expanded = expand_env(data, os.environ if env is None else env)
    try:
        return Config.model_validate(expanded, context={CONFIGURED: configured_names(expanded)})
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file; None or "" means the built-in defaults."""
    return read_config(path, env)[0]


def read_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> tuple[Config, str | None]:
    """`load_config`, and the SHA-256 (hex) of the file's bytes as they were read: the audit's
    `tollgate_started` record names the configuration by it. None for the built-in defaults."""
    if not path:
        return Config(), None
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    try:
        config = parse_config(data, env)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    # Policy files are named relative to the configuration file that names them.
    rego = tuple(str(path.parent / f) for f in config.policy.rego)
    # ... and so are JWKS files and CA bundles.
    issuers = tuple(
        issuer.model_copy(
            update={
                name: str(path.parent / getattr(issuer, name))
                for name in ("jwks_file", "ca_file")
                if getattr(issuer, name) is not None
            }
        )
        for issuer in config.identity.jwt
    )
    config = config.model_copy(
        update={
            "policy": config.policy.model_copy(update={"rego": rego}),
            "identity": config.identity.model_copy(update={"jwt": issuers}),
        }
    )
    return config, hashlib.sha256(raw).hexdigest()
