"""Prometheus metrics (`metrics.listen`): Tollgate's process serves /metrics on its own port, from
prometheus-client's HTTP server in a thread of its own, and every call's end is counted
(`tollgate/metrics.py` says what). A worker of a fleet (`tollgate serve --workers N`) serves them on
the loopback port `TOLLGATE_METRICS_LISTEN` names, whatever the configuration says: HAProxy serves
the fleet's on `metrics.listen` from the workers'."""

from __future__ import annotations

import logging
import os
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from ..call import Call
from ..config import Config, ConfigError
from ..fleet import METRICS_LISTEN_ENV
from ..metrics import MetricSet
from .shared import Shared

logger = logging.getLogger(__name__)


class Metrics:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Made when metrics are first asked for, and kept: a reload never resets a counter.
        self._set: MetricSet | None = None
        self._server: WSGIServer | None = None
        self._listen: str | None = None
        # A worker of a fleet serves on a loopback port of its own, HAProxy on metrics.listen.
        self._fleet_listen = os.environ.get(METRICS_LISTEN_ENV) or None

    def open(self, config: Config) -> None:
        """Before a configuration is swapped in (`Settings`): /metrics served where it says, the
        server restarted when that changed, stopped when it says nothing. ConfigError when the
        address cannot be listened on (the server in force keeps serving)."""
        settings = config.metrics
        listen = self._fleet_listen or settings.listen
        if listen is None:
            self._stop()
            self.shared.metrics = None
            return
        if self._set is None:
            self._set = MetricSet(settings.max_label_values, self._pools, self._audit_depth)
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
                raise ConfigError(f"metrics.listen: cannot serve /metrics on {listen}: {e.strerror or e}") from None
            logger.info(f"Tollgate: Prometheus metrics served on http://{listen}/metrics")
        self.shared.metrics = self._set

    def _start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server, _thread = start_http_server(int(port), host.strip("[]"), self._set.registry)  # type: ignore[union-attr]
        self._listen = listen

    def _stop(self) -> None:
        server, self._server, self._listen = self._server, None, None
        if server is not None:
            server.shutdown()  # its loop ends within half a second
            server.server_close()

    def _pools(self) -> dict[str, Any]:
        loaded = self.shared.loaded
        return {} if loaded is None else loaded.pools

    def _audit_depth(self) -> int | None:
        audit = self.shared.audit
        return None if audit is None else audit.queued()

    def recorded(self, call: Call, record: dict[str, Any]) -> None:
        """At the call's end, with its audit record, once the ledger has settled what the call used."""
        metrics = self.shared.metrics
        if metrics is not None:
            metrics.observe(call, record, call.spent)

    def done(self) -> None:
        self._stop()
        self.shared.metrics = None
