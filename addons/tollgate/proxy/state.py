"""What the stages share (`Shared`): the configuration in force (`runtime.Loaded`), and its audit
log, ledger store and metrics, which outlive a reload that keeps them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from tollgate.configuration.runtime import Loaded
from tollgate.credentials.keypool import KeyPool
from tollgate.governance.agents.quarantine import Quarantine
from tollgate.governance.mcp.mcp_rounds import McpRounds
from tollgate.governance.mcp.mcp_sessions import McpSessions
from tollgate.governance.policy.policy import Policy
from tollgate.governance.routing.failover import Circuits, split_circuit
from tollgate.governance.routing.upstream import CIRCUIT
from tollgate.governance.subscriptions.asked_accounts import AskedAccounts
from tollgate.ledger.store import Store
from tollgate.providers import BUILT_IN_HOSTS, Hosts
from tollgate.records.audit.auditlog import AuditLog
from tollgate.records.telemetry.metrics import MetricSet

# The error of a call the process's end breaks off.
SHUT_DOWN = "proxy shut down during the call"


class Shared:
    """What the stages share: the configuration loaded (None until one has: a broken one must not
    leave Tollgate open), the audit log, which outlives a reload that keeps its path, and the
    ledger's store, which outlives one that keeps its URL."""

    def __init__(self) -> None:
        self.loaded: Loaded | None = None
        self.audit: AuditLog | None = None
        self.ledger: Store | None = None
        self.metrics: MetricSet | None = None  # while `metrics.listen` serves them
        # mitmproxy's `proxyauth` is `any`: it takes every login, and Tollgate judges its password,
        # which must be a JWT of a configured issuer (the user name says nothing).
        self.logins_unchecked = False
        # Set by `Decide.running`. Until then no policy worker is started: mitmproxy may still stop
        # at start-up (a busy port) by raising out of its event loop, and asyncio waits for ever
        # for a process cancelled while it is being made (its pipes are never connected).
        self.running = False
        # Set by `Drain` at SIGTERM: the proxy takes no new connection and ends once its calls have.
        self.draining = False
        # The error of the calls still in flight when the process ends (`Drain` says why, when the
        # drain ran out of time).
        self.shut_down_error = SHUT_DOWN
        # Why the configuration file's last edit was not loaded (the last good one is in force);
        # None when it was. Read by /healthz.
        self.config_problem: str | None = None
        # Each key's and upstream's failures in a row (`providers.<name>.circuit`), across reloads.
        self.circuits = Circuits()
        # Who opened each MCP session (`mcp.servers`), across reloads.
        self.mcp_sessions = McpSessions()
        # The MCP calls awaiting their client's answers (`input_required`), across reloads.
        self.mcp_rounds = McpRounds()
        # `agents`: the callers and MCP sessions quarantined after an injection, across reloads.
        self.quarantine = Quarantine()
        # The Google accounts of Code Assist's tokens, and their tiers, across reloads.
        self.asked_accounts = AskedAccounts()

    def apply(self, loaded: Loaded, audit: AuditLog | None, ledger: Store | None = None) -> None:
        """Swap in a configuration, its audit log and its ledger's store; stop the policy, audit log
        and store no longer used (a policy once the evaluations under way have ended, an audit log
        and a store once they have written what they hold)."""
        old, old_audit, old_ledger = self.loaded, self.audit, self.ledger
        self.loaded, self.audit = loaded, audit
        self.ledger = ledger  # the store `loaded.config.ledger_store` names
        if old_audit is not None and old_audit is not audit:
            old_audit.close()
        if old_ledger is not None and old_ledger is not ledger:
            close_later(old_ledger)
        if old is not None and old.policy is not None and old.policy is not loaded.policy:
            old.policy.close()
        if self.running and loaded.policy is not None and (old is None or old.policy is not loaded.policy):
            loaded.policy.start()  # at start-up `Decide.running` starts it

    def rest_elsewhere(self, fingerprint: str, until: float) -> None:
        """A key that another process sharing the ledger's store rested, until `until` (epoch
        seconds), or a key's or upstream's circuit it opened (named `CIRCUIT` + its name)."""
        loaded = self.loaded
        if loaded is None:
            return
        seconds = until - time.time()
        if seconds <= 0:
            return
        pools = [*loaded.pools.values(), *every_own_pool(loaded)]
        if fingerprint.startswith(CIRCUIT):
            name = fingerprint.removeprefix(CIRCUIT)
            self.circuits.open(name, seconds)  # an upstream's, or a key's no pool here has
            key, model = split_circuit(name)  # a key's for one model, or for all
            for pool in pools:
                pool.open_fingerprint(key, seconds, model)
            return
        for pool in pools:
            pool.rest_fingerprint(fingerprint, seconds)

    def replace_policy(self, current: Policy, fresh: Policy) -> bool:
        """Swap in a reloaded policy, unless a configuration replaced `current` meanwhile."""
        loaded = self.loaded
        if loaded is None or loaded.policy is not current:
            return False
        self.loaded = replace(loaded, policy=fresh)
        current.close()
        fresh.start()
        return True


def every_own_pool(loaded: Loaded) -> list[KeyPool]:
    """The key pools the providers' runtimes hold besides their own pools (Azure's resources')."""
    return [
        pool
        for name, runtime in loaded.runtimes.items()
        if runtime is not None
        for pool in loaded.registry[name].credentials.source.own_pools(runtime).values()
    ]


def close_later(store: Store) -> None:
    """Close a store once it has written what it holds, without waiting for it (a reload)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(store.aclose())
        return
    task = loop.create_task(store.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # kept, so that a task is not collected before it ends


def hosts_of(shared: Shared) -> Hosts:
    """The hosts the configuration in force governs (the providers' own before one has loaded)."""
    loaded = shared.loaded
    return BUILT_IN_HOSTS if loaded is None else loaded.hosts
