"""/healthz: its verdict for each state the process can be in, served beside another app's paths."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from tests.support.proxy import free_port

from tollgate.proxy.health import Health, serve, with_health

SERVING = Health(running=True, draining=False, audit_problem=None, loop_answers=True)


@pytest.mark.parametrize(
    ("health", "verdict"),
    [
        (SERVING, (True, "ok")),
        (Health(running=False, draining=False, audit_problem=None, loop_answers=True), (False, "starting")),
        (Health(running=True, draining=True, audit_problem=None, loop_answers=True), (False, "draining")),
        (
            Health(running=True, draining=False, audit_problem="cannot write to a.jsonl: No space", loop_answers=True),
            (False, "audit failing: cannot write to a.jsonl: No space"),
        ),
        (
            Health(running=True, draining=False, audit_problem=None, loop_answers=False),
            (False, "event loop not responding"),
        ),
        # A broken edit keeps the last good configuration serving: still healthy, and says so.
        (
            Health(running=True, draining=False, audit_problem=None, loop_answers=True, config_problem="x: bad"),
            (True, "ok; the configuration file's last edit was not loaded: x: bad"),
        ),
        # Draining says so whatever else is wrong: the balancer must stop sending it connections.
        (Health(running=True, draining=True, audit_problem="full", loop_answers=False), (False, "draining")),
    ],
)
def test_the_verdict(health: Health, verdict: tuple[bool, str]) -> None:
    assert health.verdict() == verdict


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["content-type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read().decode()


def other_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"other {environ['PATH_INFO']}".encode()]


def test_healthz_beside_the_other_paths() -> None:
    state = {"health": SERVING}
    port = free_port()
    server = serve("127.0.0.1", port, with_health(other_app, lambda: state["health"]))
    try:
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        assert get(f"http://127.0.0.1:{port}/metrics") == (200, "text/plain", "other /metrics")
        assert get(f"http://127.0.0.1:{port}/healthz/x") == (200, "text/plain", "other /healthz/x")
        state["health"] = Health(running=True, draining=True, audit_problem=None, loop_answers=True)
        assert get(f"http://127.0.0.1:{port}/healthz") == (503, "text/plain; charset=utf-8", "draining\n")
    finally:
        server.shutdown()
        server.server_close()


def test_served_on_an_ipv6_address() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no ::1 on this host")
    server = serve("::1", port, with_health(other_app, lambda: SERVING))
    try:
        assert get(f"http://[::1]:{port}/healthz")[0::2] == (200, "ok\n")
    finally:
        server.shutdown()
        server.server_close()
