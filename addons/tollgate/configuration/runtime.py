"""Everything built from one configuration (`Loaded`): the providers' settings and what they loaded,
the clients, override rules, key pools, policy, JWT issuers, limits, prices, hosts and client
certificates. Plain Python: the stages hold one (`Shared.loaded`), each call the one current when
it was classified (`Call.loaded`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tollgate.configuration.config import Config, ProviderConfig
from tollgate.credentials.keypool import KeyPool
from tollgate.governance.egress.brokered import NO_CREDENTIALS, Brokered, brokered_of
from tollgate.governance.egress.egress import Egress
from tollgate.governance.guardrails.rules import Guardrails
from tollgate.governance.identity.clients import Directory
from tollgate.governance.identity.jwt_identity import Verifier
from tollgate.governance.limits.limits import Limits
from tollgate.governance.limits.pricing import Prices
from tollgate.governance.mcp.mcp_servers import NO_SERVERS, McpServers
from tollgate.governance.policy.policy import Policy
from tollgate.governance.routing.overrides import RuleBook
from tollgate.governance.subscriptions.plan import tenant_pins
from tollgate.providers import BUILT_IN_HOSTS, PROVIDERS, Hosts, Provider, configured, provider_for
from tollgate.providers.client_certs import ClientCert


@dataclass(frozen=True, slots=True, repr=False)  # its configuration holds keys: never in a message
class Loaded:
    """Everything built from one configuration, swapped in as a whole. Each call keeps the one
    current when it was classified (`Call.loaded`), so that all its stages read the same one even
    when a reload lands while it waits for the policy."""

    config: Config
    providers: dict[str, ProviderConfig]  # each one's settings
    directory: Directory
    rules: RuleBook
    pools: dict[str, KeyPool]
    policy: Policy | None = None
    runtimes: dict[str, Any] = field(default_factory=dict)  # what each provider loaded (`Credentials.load_runtime`)
    jwt: Verifier = field(default_factory=lambda: Verifier(()))  # the JWT issuers (`identity.jwt`)
    limits: Limits = field(default_factory=lambda: Limits(()))
    prices: Prices = field(default_factory=lambda: Prices(()))  # `prices:`, then the price table
    hosts: Hosts = BUILT_IN_HOSTS  # which provider serves a host: its own, and those `hosts:` adds
    # Each provider's client certificate for its mTLS hosts (`client_cert`), loaded.
    client_certs: dict[str, ClientCert] = field(default_factory=dict)
    # The SHA-256 of the configuration file's bytes (None: the built-in defaults), which the audit's
    # `tollgate_started` record names.
    config_sha256: str | None = None
    # What model each model name a caller asks a provider for is, where its settings say
    # (`Models.names`: Azure's deployments); only the providers whose settings do.
    model_names: dict[str, Callable[[str], str]] = field(default_factory=dict)
    # Every provider by name: the built-in ones, then those the configuration adds
    # (`providers.<name>: {kind: openai_compatible}`). A call's provider is looked up here.
    registry: Mapping[str, Provider] = field(default_factory=lambda: PROVIDERS)
    mcp: McpServers = NO_SERVERS  # the MCP servers governed (`mcp.servers`)
    # `guardrails:` and Tollgate's own keys, compiled (None: nothing to look for in any call).
    guardrails: Guardrails | None = None
    # The tenant header each provider's requests carry (`subscriptions:`), by provider: (name, value).
    tenant_pins: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    # The tokens put in place of the placeholders agents hold (`egress.credentials`).
    brokered: Brokered = NO_CREDENTIALS
    # The connections a client may open through Tollgate (`egress:`), and which are recorded.
    egress: Egress = field(default_factory=lambda: egress_of(Config(), BUILT_IN_HOSTS, NO_SERVERS))

    @classmethod
    def build(
        cls,
        config: Config,
        policy: Policy | None = None,
        runtimes: Mapping[str, Any] | None = None,
        previous: Loaded | None = None,
        jwt: Verifier | None = None,
        client_certs: Mapping[str, ClientCert] | None = None,
        config_sha256: str | None = None,
    ) -> Loaded:
        """What `config` makes; the key pools carry over the rests of `previous`'s, the JWT issuers
        the keys fetched for those unchanged (`jwt`: made already, else here). A provider missing
        from `runtimes` has loaded nothing (None). ValueError when a JWKS file cannot be read."""
        added_providers = config.providers.configured()
        registry = {**PROVIDERS, **configured(added_providers)} if added_providers else PROVIDERS
        providers = {name: config.providers.get(name) for name in registry}
        pools = {
            name: previous.pools[name].renewed(settings.keys)
            if previous and name in previous.pools
            else KeyPool(settings.keys)
            for name, settings in providers.items()
        }
        runtimes = {name: (runtimes or {}).get(name) for name in registry}
        if jwt is None:
            jwt = Verifier(config.identity.jwt, previous.jwt if previous is not None else None)
        added = {name: settings.hosts for name, settings in providers.items()}
        ungoverned = config.subscriptions.ungoverned()
        hosts = Hosts(added, registry, ungoverned) if any(added.values()) or ungoverned else BUILT_IN_HOSTS
        named = {name: registry[name].models.names(settings) for name, settings in providers.items()}
        guardrails = Guardrails.of(config, previous=previous.guardrails if previous is not None else None)
        mcp = McpServers(config.mcp) if config.mcp.servers else NO_SERVERS
        brokered = brokered_of(config.egress.credentials)
        tenant_headers = {name: p.plan.tenant_header for name, p in registry.items() if p.plan is not None}
        return cls(
            config, providers, Directory(config), RuleBook(config.overrides, registry), pools, policy, runtimes,
            jwt, Limits(config.limits), Prices(config.prices, registry), hosts, dict(client_certs or {}),
            config_sha256, {name: names for name, names in named.items() if names is not None}, registry,
            mcp, guardrails if guardrails.reads else None,
            tenant_pins(config.subscriptions, tenant_headers),
            brokered, egress_of(config, hosts, mcp, brokered),
        )  # fmt: skip


def egress_of(config: Config, hosts: Hosts, mcp: McpServers, brokered: Brokered = NO_CREDENTIALS) -> Egress:
    """`egress:` ready to decide: the hosts Tollgate governs are the providers' (as `hosts` says),
    the MCP servers' and the brokered credentials'; the upstreams, those the providers and servers
    are configured with."""

    def governed(host: str) -> bool:
        return host in mcp.hosts or host in brokered.hosts or hosts.provider_for(host) is not None

    def providers_host(host: str) -> bool:
        return governed(host) or provider_for(host) is not None

    return Egress(config.egress, governed, configured_upstreams(config), providers_host)


def configured_upstreams(config: Config) -> Iterator[tuple[str, int]]:
    """Each (host, port) a provider's or an MCP server's `upstream` names."""
    urls = [config.providers.get(name).upstream for name in config.providers.names()]
    urls += [server.upstream for server in config.mcp.servers]
    for url in urls:
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.hostname:
            yield parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
