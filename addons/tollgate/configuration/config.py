"""The configuration file, assembled: each concern declares and validates its own settings beside
its code (`clients:` in governance/identity/clients.py, `limits:` in governance/limits/limits.py, `audit:` in
records/audit/auditlog.py, …); `Config` puts them under their keys and checks what spans several of them.
Here too: `${VAR}` expansion, and errors that name the file and the field. Every setting's class is
importable from here as well."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import yaml
from pydantic import ConfigDict, Field, ValidationError, create_model, model_validator

from tollgate.common.config_base import VARIABLE as _VAR
from tollgate.common.config_base import ConfigError, Count, Money, ProviderConfig, Strict
from tollgate.common.host_globs import glob_pattern, globs_overlap
from tollgate.configuration.console_settings import ConsoleConfig
from tollgate.configuration.key_hints import in_yaml_terms, likely_key
from tollgate.configuration.reconcile_settings import ReconcileConfig, resolved_later
from tollgate.configuration.records_settings import (
    DSN_PLACES,
    LEFT_UNSET,
    AuditConfig,
    MetricsConfig,
    OtlpConfig,
    listen_address,
)
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.egress.brokered import values_from_environment
from tollgate.governance.egress.egress_settings import EgressConfig
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule, custom_detectors_unique
from tollgate.governance.identity.clients import SHA256_KEY_PREFIX, Client, VirtualAwsCredential, VirtualKey, key_digest
from tollgate.governance.identity.jwt_identity import IdentityConfig, JwtIssuer
from tollgate.governance.limits.limits import LIMIT_FIELDS, METRICS, LimitRule
from tollgate.governance.limits.pricing import PriceRule
from tollgate.governance.limits.rollup import RollupRule, Summarizer
from tollgate.governance.matching import CONFIGURED, PROVIDER_NAMES, OverrideMatch, known_providers, unknown_provider
from tollgate.governance.mcp.mcp_servers import McpConfig
from tollgate.governance.policy.policy import PolicyConfig
from tollgate.governance.routing.overrides import OPENAI_COMPATIBLE_TARGETS, FallbackRule, Override
from tollgate.governance.subscriptions.plan import Subscriptions
from tollgate.ledger.ledger_settings import LEDGER_FILE, LedgerConfig
from tollgate.ledger.windows import WINDOWS
from tollgate.providers import PROVIDERS, UNKNOWN_PROVIDER, ConfiguredVendorSettings, provider_for

__all__ = [  # the settings declared beside their concerns, named here too
    "CONFIGURED",
    "LEDGER_FILE",
    "LIMIT_FIELDS",
    "METRICS",
    "OPENAI_COMPATIBLE_TARGETS",
    "PROVIDER_NAMES",
    "SHA256_KEY_PREFIX",
    "WINDOWS",
    "AuditConfig",
    "Client",
    "Config",
    "ConfigError",
    "Count",
    "EgressConfig",
    "FallbackRule",
    "GuardrailRule",
    "IdentityConfig",
    "JwtIssuer",
    "LedgerConfig",
    "LimitRule",
    "McpConfig",
    "MetricsConfig",
    "Money",
    "OtlpConfig",
    "Override",
    "OverrideMatch",
    "PolicyConfig",
    "PriceRule",
    "ProviderConfig",
    "ReconcileConfig",
    "RollupRule",
    "Subscriptions",
    "Summarizer",
    "Unset",
    "VirtualAwsCredential",
    "VirtualKey",
    "config_problems",
    "expand_env",
    "file_problems",
    "key_digest",
    "known_providers",
    "listen_address",
    "load_config",
    "parse_config",
    "read_config",
    "unknown_provider",
]

# A provider's name as the configuration adds one: what the audit, the policy and the metrics call it.
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
DRAIN_S = 30.0  # `drain_s` when the file names none


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
    mcp: McpConfig = McpConfig()  # the MCP servers governed (`governance/mcp/mcp_exchange.py`)
    guardrails: tuple[GuardrailRule, ...] = ()  # what a request may not carry (`governance/guardrails/`)
    subscriptions: Subscriptions = Subscriptions()  # calls made with a person's plan (`governance/subscriptions/`)
    egress: EgressConfig = EgressConfig()  # the connections a client opens through Tollgate (`governance/egress/`)
    console: ConsoleConfig = ConsoleConfig()  # `tollgate console`: its address, token and TLS (`console/`)
    reconcile: ReconcileConfig | None = None  # `tollgate reconcile`: the vendors' admin APIs read
    # Tool calls decided by where their arguments came from (`governance/agents/`); None: nothing
    # of it runs, nothing is held for it.
    agents: AgentsSettings | None = None
    # Seconds a SIGTERM gives the calls in flight to finish before the process exits (0: exit at
    # once, as mitmproxy would); see stages/process/drain.py.
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
    def _quarantines_keyed(self) -> Config:
        """On a Redis ledger, `agents`' quarantines are named by a keyed hash of whom they hold:
        with no key every process shares, they could be named only by a plain hash, which tells
        whoever reads Redis and holds a list of people whom a quarantine holds."""
        agents = self.agents
        if agents is not None and agents.quarantine_s > 0 and self.ledger.on_redis and self.ledger.secret is None:
            raise ValueError(
                "ledger.secret: required with agents' quarantine on a Redis ledger: a secret of 32 characters or"
                " more, the same for every process sharing the store and kept out of Redis (${NAME}); or set"
                " agents.quarantine_s: 0"
            )
        return self

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
    def _credentials_on_no_governed_host(self) -> Config:
        """A brokered credential's host is no provider's nor an MCP server's: their requests are
        calls, whose credentials Tollgate puts in as theirs."""
        added = [
            (name, j, re.compile(glob_pattern(glob)))
            for name in self.providers.names()
            for j, glob in enumerate(self.providers.get(name).hosts)
        ]
        servers = {server.host.lower().removesuffix("."): i for i, server in enumerate(self.mcp.servers)}
        for i, credential in enumerate(self.egress.credentials):
            host = credential.host
            provider = provider_for(host)
            owner = f"{provider.name}'s" if provider is not None else None
            if owner is None:
                owner = next((f"{n}'s (providers.{n}.hosts.{j})" for n, j, p in added if p.fullmatch(host)), None)
            if owner is None and host in servers:
                owner = f"the MCP server's of mcp.servers.{servers[host]}"
            if owner is not None:
                raise ValueError(
                    f"egress.credentials.{i}.host: {host} is {owner}, whose credentials Tollgate puts in as a call's"
                )
        return self

    @model_validator(mode="after")
    def _identities_unique(self) -> Config:
        seen_names: set[str] = set()
        seen_keys: set[str] = set()
        seen_aws: set[str] = set()
        seen_accounts: set[str] = set()
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
            for j, account in enumerate(client.accounts):
                if account in seen_accounts:
                    raise ValueError(f"clients.{i}.accounts.{j}: {account!r} is listed twice (one client's only)")
                seen_accounts.add(account)
        self._virtual_keys_not_real()
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
        custom_detectors_unique(self.guardrails)
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

    def _virtual_keys_not_real(self) -> None:
        """No client is given a provider's real key as its virtual key: the client would hold the
        real key, and Tollgate would take the real key for a virtual one. Named by place, never by value."""
        real = {
            key_digest(key): f"providers.{name}.keys.{j}"
            for name in reversed(self.providers.names())
            for j, key in reversed(list(enumerate(self.providers.get(name).keys)))
        }
        if not real:
            return
        for i, client in enumerate(self.clients):
            for j, key in enumerate(client.keys):
                where = real.get(key.sha256)
                if where is not None:
                    raise ValueError(
                        f"clients.{i}.keys.{j}: client {client.name!r} is given {where}, a real key of the"
                        f" provider; give the client a virtual key of its own (tollgate key new --client {client.name})"
                    )

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
        return PROVIDERS[name].upstream.default_host is not None

    def _upstream_hint(self, name: str) -> str:
        return PROVIDERS[name].upstream.hint if name in PROVIDERS else f"the scheme://host of {name}'s API"

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


# The fields of a provider's settings (and of an MCP server's or a brokered credential's) that hold
# what Tollgate sends upstream: their values are secrets no read-only command needs.
_UPSTREAM_SECRETS = frozenset(
    ("keys", "bearer_token", "credentials", "access_key_id", "secret_access_key", "session_token", "credential")
)


class Unset(NamedTuple):
    """A `${NAME}` whose variable is not set, and where the file has it."""

    where: str
    name: str

    def __str__(self) -> str:
        return f"{self.where}: environment variable {self.name} is not set"


def upstream_secret(where: str) -> bool:
    """Whether a place of the file holds a provider's key or credential (or an MCP server's, or a
    brokered token): `providers.openai.keys.0`, `mcp.servers.0.credential.bearer`, …"""
    parts = where.split(".")
    if parts[0] == "providers":
        return any(p in _UPSTREAM_SECRETS for p in parts[2:])
    if parts[0] == "mcp":
        return "credential" in parts
    return parts[:2] == ["egress", "credentials"] and parts[-1] == "value"


# The places whose unset variable a proxy start leaves as written: what only the console reads (it
# says so when it needs it); `tollgate check` warns of them.
PROXY_NEEDS_NOT = ("console.postgres_dsn",)


def proxy_leaves(where: str) -> bool:
    return where in PROXY_NEEDS_NOT


def read_only_leaves(where: str) -> bool:
    """Whether a read-only command may leave a place's unset variable as written: a provider's
    secret (`upstream_secret`) or the records' DSN (only the console reads it, and says so)."""
    return upstream_secret(where) or where in DSN_PLACES


_DSN_URI = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)


def dsn_user_info(where: str, value: str) -> range:
    """Where in this value a DSN written as a URI has its user and password (before the `@` that
    ends them): a `${NAME}` there has its value URI-escaped, so that `@ : / % # ?` in a password
    need no escaping by hand. Elsewhere (a host, a database, a parameter), and in a DSN that is one
    `${NAME}` alone (the variable's to write whole), values are taken as they are: none."""
    start = _DSN_URI.match(value)
    if where not in DSN_PLACES or start is None or _VAR.fullmatch(value) is not None:
        return range(0)
    authority = re.match(r"[^/?#]*", value[start.end() :])
    return range(start.end(), start.end() + max(authority.group().rfind("@"), 0) if authority else 0)


def expand_env(
    node: Any,
    env: Mapping[str, str],
    where: str = "",
    unset: list[Unset] | None = None,
    leave: Callable[[str], bool] = upstream_secret,
    distinct: bool = False,
) -> Any:
    """Replace `${NAME}` in every string of a parsed YAML tree; an unset NAME is an error, unless
    `unset` is a list and `leave` says its place may keep it: then it stays as written, listed there
    (`distinct`: followed by its place, so that no two places left compare equal)."""
    if isinstance(node, str):
        if resolved_later(where):  # an admin key: `tollgate reconcile` alone reads its variable
            return node
        left = False
        escaped = dsn_user_info(where, node)

        def substitute(m: re.Match[str]) -> str:
            nonlocal left
            name = m.group(1)
            if name in env:
                return quote(env[name], safe="") if m.start() in escaped else env[name]
            place = Unset(where or "(top level)", name)
            if unset is None or not leave(place.where):
                raise ConfigError(str(place))
            unset.append(place)
            left = True
            return m.group(0)

        expanded = _VAR.sub(substitute, node)
        return f"{expanded} ({where})" if left and distinct else expanded
    if isinstance(node, dict):
        return {
            k: expand_env(v, env, f"{where}.{k}" if where else str(k), unset, leave, distinct) for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            expand_env(v, env, f"{where}.{i}" if where else str(i), unset, leave, distinct) for i, v in enumerate(node)
        ]
    return node


def _without(data: Any, places: Iterable[str]) -> None:
    """Each place of a mapping (`providers.bedrock.credentials`) left out of the tree, in place."""
    for place in places:
        *parents, key = place.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(key, None)


_UNION_MEMBERS = ("AwsCredentials", "str")


def _described(error: ValidationError) -> list[tuple[str, str]]:
    """Each problem's place in the file, and its line."""
    lines = []
    for e in error.errors():
        # Drop the union member names pydantic adds to the path ("literal['default']").
        place = [p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in _UNION_MEMBERS))]
        loc = ".".join(map(str, place))
        if e["type"] == "extra_forbidden":
            meant = likely_key(Config, place)
            lines.append((loc, f"{loc}: unknown key" + (f" (did you mean {meant}?)" if meant else "")))
        else:
            msg = in_yaml_terms(e["type"], e["msg"].removeprefix("Value error, "))
            if msg.startswith(UNKNOWN_PROVIDER) and (meant := likely_key(Config, place)):
                msg = msg.replace(UNKNOWN_PROVIDER, f"{UNKNOWN_PROVIDER} (did you mean {meant}?)", 1)
            lines.append((loc, f"{loc}: {msg}" if loc else msg))
    return lines


def _describe(error: ValidationError) -> str:
    return "; ".join(dict.fromkeys(line for _, line in _described(error)))


def _mapping(data: Any) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping (providers:, clients:, …)")
    try:
        values_from_environment(data)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return data


def parse_config(data: Any, env: Mapping[str, str] | None = None, unset: list[Unset] | None = None) -> Config:
    """The configuration a parsed file holds. With `unset`, a `${NAME}` whose variable is not set
    among a provider's keys and credentials, or in the records' DSN, is left as written and listed
    there (what a read-only command may do without the providers' secrets)."""
    leaving = unset if unset is not None else []
    leaves = read_only_leaves if unset is not None else proxy_leaves
    expanded = expand_env(_mapping(data), os.environ if env is None else env, "", leaving, leaves)
    left = frozenset(u.where for u in leaving)
    try:
        return Config.model_validate(expanded, context={CONFIGURED: configured_names(expanded), LEFT_UNSET: left})
    except ValidationError as e:
        # A field that takes fixed values (`credentials: default` or a mapping) written `${NAME}`
        # alone, unset: left out, as if not written (its default), and the file read again.
        whole = {u.where for u in leaving if _whole_variable(expanded, u.where)}
        refused = whole & {loc for loc, _ in _described(e)}
        if not refused:
            raise ConfigError(_describe(e)) from None
    _without(expanded, refused)
    try:
        return Config.model_validate(expanded, context={CONFIGURED: configured_names(expanded), LEFT_UNSET: left})
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def _whole_variable(data: Any, place: str) -> bool:
    """Whether the value at a place of the tree is one `${NAME}` alone, as written."""
    node = data
    for part in place.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, str) and _VAR.fullmatch(node) is not None


def config_problems(data: Any, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of a parsed file at once, each unset variable among them (`tollgate check`);
    none when it holds a configuration. A place whose variable is unset is said once, as that."""
    unset: list[Unset] = []
    try:
        expanded = expand_env(_mapping(data), os.environ if env is None else env, "", unset, lambda _: True, True)
    except ConfigError as e:
        return [str(e)]
    problems = list(dict.fromkeys(str(u) for u in unset if not proxy_leaves(u.where)))
    try:
        Config.model_validate(expanded, context={CONFIGURED: configured_names(expanded)})
    except ValidationError as e:
        places = [u.where for u in unset]
        problems += [
            line
            for loc, line in dict.fromkeys(_described(e))
            if not any(loc == p or loc.startswith(p + ".") for p in places)
        ]
    return problems


def file_warnings(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """What `tollgate check` warns of in a file that loads: an unset variable the proxy does not
    need, and the console does."""
    try:
        data, _ = _read_yaml(Path(path))
        unset: list[Unset] = []
        expand_env(_mapping(data), os.environ if env is None else env, "", unset, lambda _: True, True)
    except ConfigError:
        return []
    return [
        f"{path}: {u}: the console refuses to start without it (the proxy does not need it)"
        for u in unset
        if proxy_leaves(u.where)
    ]


def load_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, unset: list[Unset] | None = None
) -> Config:
    """Read and validate a configuration file; None or "" means the built-in defaults. `unset`: as
    `parse_config` (the read-only commands')."""
    return read_config(path, env, unset)[0]


def _read_yaml(path: Path) -> tuple[Any, bytes]:
    """The file's YAML, parsed, and its bytes. ConfigError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.safe_load(text), raw
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None


def file_problems(path: str | Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of a configuration file at once, each naming the file (`config_problems`);
    none when it loads as the proxy would load it (its signing key read too)."""
    path = Path(path)
    try:
        data, _ = _read_yaml(path)
    except ConfigError as e:
        return [str(e)]
    problems = config_problems(data, env)
    if not problems:
        try:
            read_config(path, env)
        except ConfigError as e:
            return [str(e)]
    return [f"{path}: {p}" for p in problems]


def read_config(
    path: str | Path | None, env: Mapping[str, str] | None = None, unset: list[Unset] | None = None
) -> tuple[Config, str | None]:
    """`load_config`, and the SHA-256 (hex) of the file's bytes as they were read: the audit's
    `tollgate_started` record names the configuration by it. None for the built-in defaults."""
    if not path:
        return Config(), None
    path = Path(path)
    data, raw = _read_yaml(path)
    try:
        config = parse_config(data, env, unset)
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
    # ... and so is the audit's signing key, read now: one that cannot be read stops start-up.
    audit = config.audit
    if audit.signing_key is not None:
        audit = audit.model_copy(update={"signing_key": str(path.parent / audit.signing_key)})
        try:
            audit.signer()
        except ValueError as e:
            raise ConfigError(f"{path}: audit.signing_key: {e}") from None
    # ... and so are the TSAs' roots, read now likewise.
    if audit.anchor is not None:
        anchor = audit.anchor.model_copy(update={"ca_file": str(path.parent / audit.anchor.ca_file)})
        try:
            anchor.roots()
        except ValueError as e:
            raise ConfigError(f"{path}: audit.anchor.ca_file: {e}") from None
        audit = audit.model_copy(update={"anchor": anchor})
    config = config.model_copy(
        update={
            "policy": config.policy.model_copy(update={"rego": rego}),
            "identity": config.identity.model_copy(update={"jwt": issuers}),
            "audit": audit,
        }
    )
    return config, hashlib.sha256(raw).hexdigest()
