"""Prometheus metrics (`metrics.listen`): Tollgate's process serves /metrics on its own port, and
/healthz beside it (`tollgate/proxy/health.py`), from an HTTP server in a thread of its own, and every
call's end is counted (`tollgate/records/telemetry/metrics.py` says what).

`TOLLGATE_METRICS_LISTEN`, when set, is where the process serves them instead of `metrics.listen`:
`tollgate serve` gives each worker of a fleet an address of its own, as they share one
configuration. `PROMETHEUS_MULTIPROC_DIR`, when set, is where the processes of a host share their
values (`tollgate/records/telemetry/multiprocess.py`): each writes its own there, and /metrics serves them all."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import make_wsgi_app

from tollgate.calls.call import Call
from tollgate.configuration.config import Config, ConfigError
from tollgate.configuration.records_settings import listen_address
from tollgate.proxy.health import LOOP_TIMEOUT, Health, WsgiApp, serve, with_health
from tollgate.proxy.state import Shared
from tollgate.records.telemetry.metrics import MetricSet
from tollgate.records.telemetry.multiprocess import DIRECTORY_ENV, SharedFiles, host_registry, usable_directory

logger = logging.getLogger(__name__)

LISTEN_ENV = "TOLLGATE_METRICS_LISTEN"


class Metrics:
    def __init__(
        self,
        shared: Shared,
        env: Mapping[str, str] | None = None,
        export_lag: Callable[[], int | None] = lambda: None,
        postgres_lag: Callable[[], int | None] = lambda: None,
        agents_kept: Callable[[], tuple[int, int] | None] = lambda: None,
    ) -> None:
        self.shared = shared
        self._export_lag = export_lag  # the audit's records not yet acknowledged by its collector
        self._postgres_lag = postgres_lag  # the audit's records not yet stored in PostgreSQL
        self._agents_kept = agents_kept  # the Responses answers `agents` keeps, and their characters
        # Made when metrics are first asked for, and kept: a reload never resets a counter.
        self._set: MetricSet | None = None
        self._server: WSGIServer | None = None
        self._listen: str | None = None
        # Where the environment says to serve them, whatever the configuration says.
        self._listen_env = (os.environ if env is None else env).get(LISTEN_ENV) or None
        self._loop: asyncio.AbstractEventLoop | None = None  # the proxy's, once it runs
        # Where the processes of a host share their values, when the environment says so.
        self._directory = (os.environ if env is None else env).get(DIRECTORY_ENV) or None
        self._files: SharedFiles | None = None

    def open(self, config: Config) -> None:
        """Before a configuration is swapped in (`Settings`): /metrics served where it says (or
        `TOLLGATE_METRICS_LISTEN`), the server restarted when that changed, stopped when it says
        nothing. ConfigError when the address cannot be listened on (the server in force keeps
        serving)."""
        settings = config.metrics
        listen = settings.listen
        setting = "metrics.listen"
        if self._listen_env is not None:
            listen, setting = self._listen_env, LISTEN_ENV
            try:
                listen_address(listen)
            except ValueError as e:
                raise ConfigError(f"{LISTEN_ENV}={listen}: {e}") from None
        if listen is None:
            self._stop()
            self.shared.metrics = None
            return
        if self._set is None:
            if self._directory is not None:
                try:
                    usable_directory(self._directory)
                except ValueError as e:
                    raise ConfigError(f"{DIRECTORY_ENV}={self._directory}: {e}") from None
            self._set = MetricSet(
                settings.max_label_values,
                self._pools,
                self._audit_depth,
                self._export_lag,
                self._postgres_lag,
                self._agents_kept,
            )
            if self._directory is not None:
                self._files = SharedFiles(self._directory, self._set.registry)
                self._files.start()
        self._set.max_label_values = settings.max_label_values
        if listen != self._listen:
            previous = self._listen
            self._stop()
            try:
                self._start(listen)
            except OSError as e:
                if previous is not None:
                    try:
                        self._start(previous)
                    except OSError:
                        logger.error(f"Tollgate: /metrics no longer served on {previous}")
                raise ConfigError(f"{setting}: cannot serve /metrics on {listen}: {e.strerror or e}") from None
            logger.info(f"Tollgate: Prometheus metrics served on http://{listen}/metrics, health on /healthz")
        self.shared.metrics = self._set

    def _start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        assert self._set is not None
        files = self._files
        if files is None:
            metrics = make_wsgi_app(self._set.registry)
        else:
            assert self._directory is not None
            metrics = _fresh(files, make_wsgi_app(host_registry(self._directory)))
        self._server = serve(host.strip("[]"), int(port), with_health(metrics, self.health))
        self._listen = listen

    def _stop(self) -> None:
        server, self._server, self._listen = self._server, None, None
        if server is not None:
            server.shutdown()  # its loop ends within 50 ms (`health.serve`)
            server.server_close()

    def _pools(self) -> dict[str, Any]:
        """Each provider's keys: its pool's, and those of the pools its runtime holds (Azure's
        resources'), counted together."""
        loaded = self.shared.loaded
        if loaded is None:
            return {}
        pools: dict[str, Any] = dict(loaded.pools)
        for name, runtime in loaded.runtimes.items():
            own = loaded.registry[name].credentials.source.own_pools(runtime) if runtime is not None else {}
            if own:
                pools[name] = _Pools((loaded.pools[name], *own.values()))
        return pools

    def _audit_depth(self) -> int | None:
        audit = self.shared.audit
        return None if audit is None else audit.queued()

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()

    def health(self) -> Health:
        """What /healthz checks, read now (from the HTTP server's thread)."""
        shared, audit = self.shared, self.shared.audit
        audit_problem = None
        if audit is None:
            audit_problem = "no audit file open"
        elif audit.failing:
            audit_problem = audit.problem or f"cannot write to {audit.path}"
        return Health(
            running=shared.running and self._loop is not None,
            draining=shared.draining,
            audit_problem=audit_problem,
            loop_answers=self._loop_answers(),
            config_problem=shared.config_problem,
        )

    def _loop_answers(self) -> bool:
        """Whether the proxy's event loop runs a callback within LOOP_TIMEOUT seconds."""
        loop = self._loop
        if loop is None:
            return False
        answered = threading.Event()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # closed: the process is ending
            return False
        return answered.wait(LOOP_TIMEOUT)

    def recorded(self, call: Call, record: dict[str, Any]) -> None:
        """At the call's end, with its audit record, once the ledger has settled what the call used."""
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.observe(call, record, call.ledger.spent)

    def done(self) -> None:
        self._stop()
        self.shared.metrics = None
        if self._files is not None:
            self._files.stop()  # after the last call's end: counted in the others' totals


def _fresh(files: SharedFiles, app: WsgiApp) -> WsgiApp:
    """`app` (the processes' values, from their files), this process's own written first."""

    def fresh(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        files.write()
        return app(environ, start_response)

    return fresh


class _Pools:
    """Several key pools of one provider, counted as one in the pool gauges."""

    def __init__(self, pools: tuple[Any, ...]) -> None:
        self._pools = pools

    def __len__(self) -> int:
        return sum(len(pool) for pool in self._pools)

    def resting(self) -> int:
        return sum(pool.resting() for pool in self._pools)
