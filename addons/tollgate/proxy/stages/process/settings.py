"""The `tollgate_config` option, and the mitmproxy options Tollgate depends on. The configuration
file is watched: a good edit takes effect at once, a broken one keeps the last good configuration."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mitmproxy import ctx, exceptions, optmanager
from mitmproxy.proxy.mode_specs import ProxyMode

from tollgate.configuration.config import Config, ConfigError, read_config
from tollgate.configuration.fleet import (
    fleet_config_problem,
    fleet_workers,
    instance_name,
    listen_advice,
    one_listen_hint,
)
from tollgate.configuration.records_settings import AuditAnchorConfig
from tollgate.configuration.runtime import Loaded
from tollgate.governance.identity.clients import expiry_notices
from tollgate.governance.identity.jwt_identity import Verifier
from tollgate.governance.policy.policy import Policy, PolicyError
from tollgate.ledger import StoreError, open_store
from tollgate.ledger.store import Store
from tollgate.providers import PROVIDERS
from tollgate.providers.base import client_cert_of
from tollgate.providers.client_certs import load_client_cert
from tollgate.proxy import listening_file, patches
from tollgate.proxy.flows import CALL, captures
from tollgate.proxy.heads import MAX_REQUEST_HEAD, MAX_RESPONSE_HEAD
from tollgate.proxy.state import Shared, close_later, hosts_of
from tollgate.records.audit.anchors import Anchorer
from tollgate.records.audit.auditlog import AuditLog, started_record
from tollgate.records.audit.in_flight import InstanceBusy, check_free
from tollgate.records.audit.room import check_room

logger = logging.getLogger(__name__)

# mitmweb's flow list column that shows each call's summary (`records.summary.summary`, set as the flow's comment).
COMMENT_COLUMN = "comment"

RELOAD_INTERVAL = 1.0

# What tells one version of a file from the next: an editor that saves by renaming a new file
# over the old one may leave its modification time as it was, never its inode.
Stamp = tuple[int, int, int] | None


def stamp_of(path: str) -> Stamp:
    """The file's modification time, size and inode; None when there is none to read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True, slots=True)
class Prepared:
    """A configuration checked and built, before anything is opened for it (files, threads)."""

    config: Config
    config_sha256: str | None
    policy: Policy | None
    runtimes: dict[str, Any]
    client_certs: dict[str, Any]
    jwt: Verifier
    signer: Any


def prepare(path: str, previous: Loaded | None) -> Prepared:
    """The configuration at `path` read, checked and built, with what it leaves unchanged taken
    from `previous` (its policy, what its providers loaded); nothing opened yet. Raises
    ConfigError naming the file and the field. What `check_start` runs before the proxy starts."""
    config, config_sha256 = read_config(path)
    problem = fleet_config_problem(config, fleet_workers(os.environ))
    if problem is not None:
        raise ConfigError(problem)
    policy = previous.policy if previous is not None and same_policy(previous.policy, config) else None
    if policy is None and config.policy.rego:
        try:
            # Compiled in a process of its own: OPA's engine never runs in the proxy's.
            policy = Policy(
                config.policy.rego, config.policy.timeout, apart=True, network=config.policy.network == "allow"
            )
        except PolicyError as e:
            raise ConfigError(f"policy.rego: {e}") from None
    runtimes = {}
    for name, provider in PROVIDERS.items():
        before = (previous.providers[name], previous.runtimes[name]) if previous is not None else None
        try:
            runtimes[name] = provider.credentials.source.load_runtime(config, config.providers.get(name), before)
        except ValueError as e:
            raise ConfigError(f"providers.{name}.{e}") from None
    client_certs = {}
    for name in PROVIDERS:
        cert = client_cert_of(config.providers.get(name))
        if cert is not None:
            try:
                client_certs[name] = load_client_cert(cert)
            except ValueError as e:
                raise ConfigError(f"providers.{name}.client_cert: {e}") from None
    try:
        jwt = Verifier(config.identity.jwt, previous.jwt if previous is not None else None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        signer = config.audit.signer()
    except ValueError as e:
        raise ConfigError(f"audit.signing_key: {e}") from None
    return Prepared(config, config_sha256, policy, runtimes, client_certs, jwt, signer)


def check_start(path: str) -> None:
    """ConfigError when the configuration at `path` cannot start the proxy, found without opening
    anything: what `load` checks, and that the audit's disk has room. Run before mitmproxy starts,
    which may listen before it loads Tollgate's script."""
    config = prepare(path, None).config
    if config.audit.path != "-":
        try:
            check_free(config.audit.path, instance_name())
        except InstanceBusy as e:  # two processes would write one chain
            raise ConfigError(str(e)) from None
        try:
            check_room(config.audit.path)
        except OSError as e:
            raise ConfigError(f"audit.path: cannot write to {config.audit.path}: {e.strerror}") from None


def load(
    path: str,
    previous: Loaded | None,
    audit: AuditLog | None,
    ledger: tuple[str, Store] | None = None,
    on_anchor_gap: Callable[[str], None] = lambda tsa: None,
) -> tuple[Loaded, AuditLog, Store]:
    """The configuration at `path` built for use, with what it leaves unchanged taken from
    `previous`, `audit` and `ledger` (its policy, what its providers loaded, the audit log, the
    ledger's store and its URL) rather than made anew. Raises ConfigError naming the file and the field.
    `on_anchor_gap(tsa)`: told of each checkpoint a TSA of `audit.anchor` did not anchor."""
    prepared = prepare(path, previous)
    config, policy, signer = prepared.config, prepared.policy, prepared.signer
    # Last: the steps that open something (files, writer threads), after every check that can fail.
    opened = None
    if audit is None or audit.path != config.audit.path:
        try:
            # A log that replaces another goes on with its chain: a reload starts no new run.
            audit = opened = AuditLog(
                config.audit.path, follows=audit, checkpoint_s=config.audit.checkpoint_s, signer=signer
            )
        except InstanceBusy as e:  # two processes would write one chain
            raise ConfigError(str(e)) from None
        except OSError as e:
            raise ConfigError(f"audit.path: cannot open {config.audit.path}: {e.strerror}") from None
        if config.audit.path != "-":
            try:
                check_room(config.audit.path)  # a full disk is said now, not at the first record
            except OSError as e:
                opened.close()
                raise ConfigError(f"audit.path: cannot write to {config.audit.path}: {e.strerror}") from None
    store = ledger[1] if ledger is not None and ledger[0] == config.ledger_store else None
    if store is None:
        try:
            store = open_store(config.ledger_store)
        except StoreError as e:
            if opened is not None:
                opened.close()
            raise ConfigError(f"ledger.store: {e}") from None
    if opened is None:
        audit.configure(config.audit.checkpoint_s, signer)
    try:
        anchor(audit, config.audit.anchor, on_anchor_gap)
    except ConfigError:
        if opened is not None:
            opened.close()
        raise
    loaded = Loaded.build(
        config, policy, prepared.runtimes, previous, prepared.jwt, prepared.client_certs, prepared.config_sha256
    )
    return loaded, audit, store


def anchor(audit: AuditLog, settings: AuditAnchorConfig | None, on_gap: Callable[[str], None]) -> None:
    """The audit's checkpoints anchored as `audit.anchor` says: its anchorer kept when the TSAs and
    their roots are the same (the interval and headers set anew), else a new one (or none)."""
    if settings is None:
        audit.anchor_with(None)
        return
    try:
        roots = settings.roots()
    except ValueError as e:
        raise ConfigError(f"audit.anchor.ca_file: {e}") from None
    kept = audit.anchorer
    if kept is not None and kept.tsa == settings.tsa and kept.roots == roots:
        kept.configure(settings.every_s, settings.headers)
        return
    audit.anchor_with(Anchorer(settings.tsa, roots, settings.every_s, settings.headers, audit.write_anchor, on_gap))


def same_policy(policy: Policy | None, config: Config) -> bool:
    """Whether `policy` is what `config` asks for (its own watcher follows edits to its files)."""
    if policy is None:
        return False
    return (
        tuple(map(str, policy.files)) == config.policy.rego
        and policy.timeout == config.policy.timeout
        and policy.network == (config.policy.network == "allow")
    )


def listen_addresses(modes: Sequence[str], host: str, port: int | None) -> list[str]:
    """Where the proxy listens, one entry per mitmproxy mode (`--mode`, `--listen-host`,
    `--listen-port`): `127.0.0.1:8080` for the regular proxy, `wireguard@*:51820` for another mode
    (`*`: every address), the mode alone where it listens on none (`local`)."""
    addresses = []
    for spec in modes:
        mode = ProxyMode.parse(spec)
        mode_port = mode.listen_port(port)
        if mode_port is None:
            addresses.append(mode.full_spec)
            continue
        mode_host = mode.listen_host(host) or "*"
        address = f"[{mode_host}]:{mode_port}" if ":" in mode_host else f"{mode_host}:{mode_port}"
        addresses.append(address if mode.type_name == "regular" else f"{mode.type_name}@{address}")
    return addresses


class Listening:
    """When the proxy cannot listen where it was told (a port in use), says what to change in the
    words of Tollgate's users (`--listen-port`, TOLLGATE_LISTEN) after mitmproxy's own message,
    whose hint (its `--mode` option) is left out where it comes after this script loads
    (`fleet.one_listen_hint`; start.py sets it first). mitmproxy's servers may have failed before this script was
    loaded (mitmdump starts them first), or fail later: both are seen."""

    def __init__(self) -> None:
        self._told: set[tuple[str, int]] = set()

    def load(self, _loader) -> None:
        one_listen_hint()  # mitmdump run by hand: its servers may have failed already (start.py has it first)
        proxyserver = ctx.master.addons.get("proxyserver")
        servers = getattr(proxyserver, "servers", None)
        if servers is None:
            return
        servers.changed.connect(self._look)
        self._look()

    def _look(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        options = ctx.options
        for server in proxyserver.servers:
            error = server.last_exception
            if not isinstance(error, OSError) or error.errno is None:
                continue
            spec = server.mode.full_spec
            if (spec, error.errno) in self._told:
                continue
            self._told.add((spec, error.errno))
            (address,) = listen_addresses([spec], options.listen_host, options.listen_port)
            address = address.removeprefix(f"{server.mode.type_name}@")
            worker = fleet_workers(os.environ) > 1
            logger.error(listen_advice(address, error.errno, server.mode.type_name, worker))


def proxy_running() -> bool:
    """Whether mitmproxy's servers run (its `running` hook has run): not at start-up, when this
    script is loaded, configured and refused before anything listens."""
    proxyserver = ctx.master.addons.get("proxyserver")
    return bool(getattr(proxyserver, "is_running", True))


def refuse_start(message: str) -> NoReturn:
    """Stop a start-up that cannot go on: what is wrong in one line, exit status 1, at once.
    mitmproxy loads this script while its servers are being set up: on a host name they listen
    only once it is resolved, after this; on an IP address they may listen already (mitmproxy binds
    it before it loads a script). Their sockets are closed first, then the process ends at once:
    raising SystemExit would end it through asyncio's teardown, which goes on accepting
    connections for as long as it takes (seconds on a loaded machine) and logs a traceback for
    each. Nothing of Tollgate's is open yet to be closed. The commands that start Tollgate check
    the configuration before mitmproxy starts (`proxy.start`): nothing listens at all."""
    stop_listening()
    print(" ".join(message.split("\n")), file=sys.stderr, flush=True)
    sys.stdout.flush()
    exit_now(1)
    raise SystemExit(1)  # where `exit_now` returns (a test's)


# How a refused start-up ends the process: at once, no teardown (a test stands in for it).
exit_now: Callable[[int], object] = os._exit


def stop_listening() -> None:
    """Close the sockets mitmproxy's servers listen on, now (their asyncio servers' `close`)."""
    proxyserver = ctx.master.addons.get("proxyserver")
    for instance in getattr(proxyserver, "servers", ()):
        for server in getattr(instance, "_servers", ()):
            server.close()


def summary(config: Config) -> str:
    issuers = f", {_count(len(config.identity.jwt), 'JWT issuer')}" if config.identity.jwt else ""
    return (
        f"{_count(len(config.clients), 'client')}{issuers}, anonymous callers "
        f"{'allowed' if config.anonymous_allowed else 'refused'}, audit to {config.audit.path}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"


# The file read when `tollgate_config` names none: `tollgate.yaml` in the working directory, at start
# when it is there, else as soon as it appears (the README's quick start writes it while Tollgate runs).
DEFAULT_FILE = "tollgate.yaml"
OPTION = "tollgate_config"


def given(name: str) -> bool:
    """Whether an option was set, to whatever value (its default too), rather than never set:
    mitmproxy keeps the value of one never set as `optmanager.unset`, and its default otherwise
    looks the same."""
    option = ctx.options._options.get(name)
    return option is not None and option.value is not optmanager.unset


def no_config_note(awaited: str) -> str:
    """Said at start without a configuration file: the defaults hold until `awaited` appears."""
    return (
        f"Tollgate: no configuration file: built-in defaults, pure audit mode (anyone may call, their own keys"
        f" pass through). {awaited} is loaded within a second of being written"
    )


class Settings:
    def __init__(self, shared: Shared, opening: Sequence[Callable[[Config], None]] = ()) -> None:
        self.shared = shared
        # Told of each configuration before it is swapped in, to open what it asks for (the metrics'
        # HTTP server); one that cannot raises ConfigError, and the configuration is not applied.
        self._opening = tuple(opening)
        self._path = ""  # the configuration file in force, watched
        # Without one: the file that is loaded when it appears (DEFAULT_FILE, made absolute at start).
        self._awaited = ""
        self._seen: Stamp = None  # the stamp of the one or the other when last read
        self._watcher: asyncio.Task | None = None
        self._fetches: set[asyncio.Task] = set()  # JWKS fetched at start and after a reload
        self._allowed: str | None = None  # the allow_hosts pattern Tollgate added
        self._running = False  # mitmproxy's servers listen (its `running` hook has run)
        self._listening_file: Path | None = None  # where it said its address (`listening_file`)

    def load(self, loader) -> None:
        # Declared as str: mitmproxy silently drops a script whose typed option gets a bad value.
        loader.add_option(
            "tollgate_config", str, "", "Path of Tollgate's YAML configuration; empty: built-in defaults."
        )
        patches.cheaper_hook_dispatch()
        patches.serve_responses_set_by_error_hook()
        patches.relay_http1_trailers()
        patches.bound_message_heads(MAX_REQUEST_HEAD, MAX_RESPONSE_HEAD)
        patches.close_connections_cancelled_while_waiting()
        patches.finish_streams_after_a_clients_goaway()
        patches.leave_calls_to_their_line(lambda flow: CALL in flow.metadata or patches.refused_connection(flow))

    def configure(self, updated: set[str]) -> None:
        try:
            self._configure(updated)
        except (ConfigError, exceptions.OptionsError) as e:
            if not proxy_running():
                refuse_start(str(e))
            raise exceptions.OptionsError(str(e)) from None

    def _configure(self, updated: set[str]) -> None:
        if "tollgate_config" in updated:
            path = ctx.options.tollgate_config
            # Set empty (`--set tollgate_config=`): the built-in defaults, no file read nor watched.
            awaited = "" if path or given(OPTION) else os.path.abspath(DEFAULT_FILE)
            if awaited and os.path.isfile(awaited):
                path, awaited = awaited, ""
            stamp = stamp_of(path) if path else None  # before reading: an edit meanwhile is seen next time
            try:
                self._apply(path)
            except ConfigError as e:
                raise ConfigError(f"Tollgate configuration: {e}") from None
            self._path, self._awaited, self._seen = path, awaited, stamp
            assert self.shared.loaded is not None
            logger.info(f"Tollgate: {summary(self.shared.loaded.config)}")
            if awaited:
                logger.warning(no_config_note(awaited))
            elif not path:
                logger.warning(f"Tollgate: {OPTION} is set empty: built-in defaults, pure audit mode; no file is read")
        if "proxyauth" in updated or "tollgate_config" in updated:
            self.shared.logins_unchecked = "proxyauth" in ctx.options and ctx.options.proxyauth == "any"
            self._warn_unchecked_logins()
        self._require_proxy_options()

    def _warn_unchecked_logins(self) -> None:
        loaded = self.shared.loaded
        if self.shared.logins_unchecked and loaded is not None and not loaded.config.identity.jwt:
            logger.warning(
                "Tollgate: proxyauth=any and no identity.jwt issuer: every proxy login is refused"
                " (its password must be a JWT of a configured issuer)"
            )

    def _fetch_keys(self) -> None:
        """Fetch the JWKS of the issuers that have none yet, without waiting: Tollgate starts (or
        reloads) even when an issuer cannot be reached, and refuses its tokens until it can."""
        loaded = self.shared.loaded
        if loaded is None or not loaded.jwt.issuers_to_fetch():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # `running` fetches them
        task = loop.create_task(loaded.jwt.fetch_missing())
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    def _apply(self, path: str) -> None:
        shared = self.shared
        ledger = None
        if shared.ledger is not None and shared.loaded is not None:
            ledger = (shared.loaded.config.ledger_store, shared.ledger)
        loaded, audit, store = load(path, shared.loaded, shared.audit, ledger, self._anchor_gap)
        try:
            for opening in self._opening:
                opening(loaded.config)
            if audit is not shared.audit and self._running:  # before: once listening (`running`)
                self._begin(audit, loaded)
        except ConfigError:  # what `load` opened for this configuration is closed again
            if audit is not shared.audit:
                audit.close()
            if ledger is None or store is not ledger[1]:
                close_later(store)
            raise
        if ledger is None or store is not ledger[1]:
            store.on_rest(shared.rest_elsewhere)
        shared.apply(loaded, audit, store)
        self._fetch_keys()
        config = loaded.config
        for notice in expiry_notices(config, time.time()):  # by its place in the file, never the key
            logger.warning(f"Tollgate: virtual key {notice}")
        spent = [n for n in config.providers.names() if config.providers.get(n).keys or loaded.runtimes[n] is not None]
        if config.anonymous_allowed and spent:
            logger.warning(
                "Tollgate: anonymous callers are allowed and provider keys or credentials are configured"
                f" ({', '.join(spent)}): anyone who can reach this proxy calls with them (set clients, or"
                " allow_anonymous: false)"
            )

    def _anchor_gap(self, tsa: str) -> None:
        """A checkpoint a TSA did not anchor (from the anchorer's thread): counted while metrics are."""
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.anchor_gap(tsa)

    def _begin(self, audit: AuditLog, loaded: Loaded) -> None:
        """On a reload, the audit file just opened takes the started record, last of all the checks:
        one that cannot stops the reload, rather than fail at the first call's end. ConfigError
        naming its path otherwise, with what the configuration in force had opened (its /metrics
        address) opened again."""
        try:
            self._write_started(audit, loaded)
        except OSError as e:
            if self.shared.loaded is not None:
                try:
                    for opening in self._opening:
                        opening(self.shared.loaded.config)
                except ConfigError as again:
                    logger.error(f"Tollgate: {again}")
            raise ConfigError(f"audit.path: cannot write to {audit.path}: {e.strerror or e}") from None

    @staticmethod
    def _write_started(audit: AuditLog, loaded: Loaded) -> None:
        options = ctx.options
        listen = listen_addresses(options.mode, options.listen_host, options.listen_port)
        audit.begin(started_record(listen, loaded.config_sha256))

    def started(self) -> None:
        """At `running`, first: the audit's started record. mitmproxy runs `running` once its servers
        listen, and never when one could not: a start that fails leaves no started record (and so
        no stopped one) behind. One the file cannot take is logged as an error: mitmproxy exits."""
        self._running = True
        audit, loaded = self.shared.audit, self.shared.loaded
        if audit is None or loaded is None or audit.begun:
            return
        try:
            self._write_started(audit, loaded)
        except OSError as e:
            logger.error(f"Tollgate configuration: audit.path: cannot write to {audit.path}: {e.strerror or e}")

    def running(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self._fetch_keys()
        self._say_where_listening()
        # At start-up rather than in `configure`: a user who later picks mitmweb's default columns
        # in its options gets them as picked. `web_columns` exists only under mitmweb, and by now
        # holds what the user set on the command line or in config.yaml.
        if "web_columns" in ctx.options and not ctx.options.has_changed("web_columns"):
            columns = list(ctx.options.web_columns)
            if COMMENT_COLUMN not in columns:
                ctx.options.update(web_columns=[*columns, COMMENT_COLUMN])

    def _say_where_listening(self) -> None:
        """The regular proxy's address in the file `./run.sh` names, for `./run.sh env`; not by a
        fleet's worker, whose port is no client's (HAProxy's address is theirs)."""
        asked = os.environ.get(listening_file.ASKED_BY)
        if not asked or fleet_workers(os.environ) > 1:
            return
        proxyserver = ctx.master.addons.get("proxyserver")
        for server in getattr(proxyserver, "servers", ()):
            address = listening_file.first_address(server.listen_addrs) if server.mode.type_name == "regular" else None
            if address is not None:
                url = listening_file.proxy_url(*address)
                self._listening_file = listening_file.write(Path(asked), url, os.getpid())
                return

    def done(self) -> None:
        if self._listening_file is not None:
            listening_file.remove(self._listening_file, os.getpid())
        if self._watcher is not None:
            self._watcher.cancel()
        for task in self._fetches:
            task.cancel()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            self.check()

    def check(self) -> None:
        """Reload the configuration file if it changed since it was last read; without one, load
        the awaited file once it is there (a broken one is said, and the defaults stay)."""
        path = self._path or self._awaited
        if not path:
            return
        stamp = stamp_of(path)
        if stamp == self._seen:
            return
        self._seen = stamp  # a broken version is reported once, not at every look
        kept = (
            "configuration not reloaded, the last good one stays in force"
            if self._path
            else "configuration not loaded, the built-in defaults stay in force"
        )
        try:
            self._apply(path)
        except ConfigError as e:
            logger.error(f"Tollgate: {kept}: {e}")
            self.shared.config_problem = str(e)
            return
        except Exception as e:  # the watch must go on; the type alone: a message might quote a secret
            logger.error(f"Tollgate: {kept}: {type(e).__name__}")
            self.shared.config_problem = type(e).__name__
            return
        self.shared.config_problem = None
        assert self.shared.loaded is not None
        self._allow_governed_hosts()  # the hosts it adds decrypted, those it dropped no longer
        if self._path:
            logger.info(f"Tollgate: configuration reloaded from {path}: {summary(self.shared.loaded.config)}")
            return
        self._path, self._awaited = path, ""  # watched from now on, as a named file is
        logger.info(f"Tollgate: configuration loaded from {path}: {summary(self.shared.loaded.config)}")

    def _require_proxy_options(self) -> None:
        wanted: dict[str, object] = {}
        # Connect upstream only once the request is known: the real host may be unreachable
        # when `upstream` sends calls elsewhere.
        if ctx.options.connection_strategy != "lazy":
            wanted["connection_strategy"] = "lazy"
        # A decrypted connection is HTTP: mitmproxy would relay one whose first read does not
        # look like HTTP (a request line longer than a TLS record) as raw TCP, ungoverned.
        if ctx.options.rawtcp:
            wanted["rawtcp"] = False
        # Decrypt only LLM hosts; every other TLS connection is tunnelled untouched.
        if ctx.options.ignore_hosts:
            raise exceptions.OptionsError(
                "Tollgate decrypts only LLM hosts through allow_hosts; ignore_hosts cannot be combined with it"
            )
        # mitmproxy asks a connection it did not get as a proxy for the login in its Authorization
        # header, where a captured call carries its API key: every captured call would be refused.
        if getattr(ctx.options, "proxyauth", None) and any(map(captures, ctx.options.mode)):
            raise exceptions.OptionsError(
                "proxyauth identifies the proxy's clients by their login, which captured connections"
                " (transparent, wireguard, local) cannot give: capture without proxyauth"
            )
        allowed = self._allowed_hosts()
        if allowed is not None:
            wanted["allow_hosts"] = allowed
        if wanted:
            ctx.options.update(**wanted)

    def _allow_governed_hosts(self) -> None:
        allowed = self._allowed_hosts()
        if allowed is not None:
            ctx.options.update(allow_hosts=allowed)

    def _allowed_hosts(self) -> list[str] | None:
        """`allow_hosts` with one pattern for the hosts Tollgate decrypts (the providers', those the
        configuration adds, MCP servers', brokered credentials') in place of the one an earlier
        configuration set (the user's own stay); None when it is so already. One pattern, not one
        per provider: on every connection mitmproxy copies the option's list and tries each of
        its patterns in turn, which for some twenty patterns cost a CONNECT about 15 µs."""
        loaded = self.shared.loaded
        governed = hosts_of(self.shared).allow_hosts()
        if loaded is not None:  # and the hosts whose requests Tollgate reads for their callers
            governed += loaded.mcp.allow_hosts() + loaded.brokered.allow_hosts()
        pattern = "|".join(f"(?:{p})" for p in governed)
        hosts = list(ctx.options.allow_hosts)
        wanted = [*(h for h in hosts if h != self._allowed), pattern]
        self._allowed = pattern
        return None if wanted == hosts else wanted
