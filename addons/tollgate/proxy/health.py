"""`/healthz`: whether this Tollgate process serves calls now, for balancers (HAProxy's `option
httpchk`) and Kubernetes' readiness and liveness probes. It is served beside `/metrics`, by the
same HTTP server (a thread of its own), so that a probe never waits behind the calls; it does ask
the event loop to answer, so that a loop that no longer turns fails the probe. Pure: the metrics
stage serves it and says what to check.

200 `ok` while the process serves; else 503, the body naming why, one of:

- `starting`: the proxy does not listen yet (mitmproxy's servers come up after the configuration);
- `draining`: SIGTERM came, the process takes no new connection (`stages/process/drain.py`);
- `audit failing: …`: the audit file cannot be written, so every call is refused (503
  audit_unavailable) until it can;
- `event loop not responding`: the proxy's event loop did not run a callback within
  `LOOP_TIMEOUT` seconds.

A broken edit of the configuration file does not fail the probe: the last good configuration stays
in force and serves (every worker of a fleet reads the same file, and a probe that failed them all
would stop the fleet). The body says so after `ok`."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

PATH = "/healthz"
LOOP_TIMEOUT = 1.0  # seconds the event loop has to run the probe's callback


@dataclass(frozen=True, slots=True)
class Health:
    """What the probe checks, as read when it is asked."""

    running: bool  # mitmproxy's servers listen (its `running` hook has run)
    draining: bool
    audit_problem: str | None  # why the audit cannot be written, when it cannot
    loop_answers: bool
    config_problem: str | None = None  # why the file's last edit was not loaded, when it was not

    def verdict(self) -> tuple[bool, str]:
        """Whether the process serves calls, and the body that says so (or why not)."""
        if not self.running:
            return False, "starting"
        if self.draining:
            return False, "draining"
        if self.audit_problem is not None:
            return False, f"audit failing: {self.audit_problem}"
        if not self.loop_answers:
            return False, "event loop not responding"
        if self.config_problem is not None:
            return True, f"ok; the configuration file's last edit was not loaded: {self.config_problem}"
        return True, "ok"


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_health(metrics: WsgiApp, health: Callable[[], Health]) -> WsgiApp:
    """A WSGI app that answers `PATH` from `health` and any other path as `metrics` does."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return metrics(environ, start_response)
        ok, text = health().verdict()
        body = text.encode() + b"\n"
        status = "200 OK" if ok else "503 Service Unavailable"
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        start_response(status, headers)
        return [body]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes come every second: nothing on the console."""


def serve(host: str, port: int, app: WsgiApp) -> ThreadingWSGIServer:
    """Serve `app` on host:port from a thread of its own (a thread per request), as prometheus-
    client's `start_http_server` does: OSError when the address cannot be listened on. The caller
    stops it with `shutdown()` and `server_close()`."""

    class Server(ThreadingWSGIServer):
        pass

    # The address family the host asks for (an IPv6 host needs AF_INET6), as http.server finds it.
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    Server.address_family = family
    server = make_server(str(address[0]), port, app, Server, handler_class=_Quiet)
    # Polled every 50 ms rather than socketserver's 500: `shutdown()` (a reload, the end) waits for a poll.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"tollgate-metrics {host}:{port}", daemon=True
    )
    thread.start()
    return server
