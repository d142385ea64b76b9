"""A real mitmdump (or mitmweb) running addons/gateway.py, as users run it."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .processes import terminate

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "addons" / "gateway.py"
# How long a gateway may take to start (listen, read its configuration and policy), on a machine
# under load: every end-to-end test's start-up waits this long.
START_UP_S = 30.0


def mitmproxy_tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else shutil.which(name) or name


def mitmdump() -> str:
    return mitmproxy_tool("mitmdump")


def _ephemeral_low() -> int:
    """Where the kernel's own ports for outgoing connections begin (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


LOW_PORT = 10_000
SLOT = 1_500  # ports a pytest-xdist worker takes from, its own: workers never hand out the same one
_EPHEMERAL_LOW = _ephemeral_low()
_handed = itertools.count(os.getpid() * 7919 % SLOT)


def free_port() -> int:
    """A port of 127.0.0.1 free now for the caller to listen on. Taken below the kernel's
    ephemeral range, where another test's outgoing connection may take a port between this check
    and the caller's bind (`bind(0)` gives one from that range); from the xdist worker's own slot;
    and never twice by this process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slot = int(worker[2:]) + 1 if worker[:2] == "gw" and worker[2:].isdigit() else 0
    base = LOW_PORT + slot * SLOT
    if base + SLOT > _EPHEMERAL_LOW:  # a range too low, or too many workers: the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(SLOT):
        port = base + next(_handed) % SLOT
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or not yet free of an earlier connection
            return port
    raise OSError(f"no free port in {base}-{base + SLOT - 1}")


class Mitmdump:
    """mitmdump with Tollgate; output goes to a file so that tests can search it for secrets."""

    TOOL = "mitmdump"

    def __init__(
        self,
        workdir: Path,
        confdir: Path,
        upstream_ca: Path | None,
        config: Path | None,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.output = workdir / f"{self.TOOL}-{self.port}.log"
        args = [
            mitmproxy_tool(self.TOOL),
            "-s",
            str(GATEWAY),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--set",
            f"confdir={confdir}",
            # None: not set, as a user starts it without one (an empty value is the built-in defaults).
            *(["--set", f"tollgate_config={config}"] if config is not None else []),
        ]
        if upstream_ca is not None:
            args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        args += [*self.tool_args(), *extra]
        self._log = open(self.output, "wb")  # noqa: SIM115 - open as long as the process
        # Unbuffered: a line logged between flows (a reload) is in the file when it is logged.
        # `env`: variables set for it (e.g. OTEL_EXPORTER_OTLP_ENDPOINT), on top of the tests' own.
        full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(args, cwd=workdir, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def tool_args(self) -> list[str]:
        return []

    def listening_ports(self) -> tuple[int, ...]:
        return (self.port,)

    def wait_ready(self, timeout: float = START_UP_S) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.listening_ports())
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.TOOL} exited with {self.process.returncode}:\n{self.console()}")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        if waiting:
            self.stop()
            raise RuntimeError(f"{self.TOOL} did not listen on {waiting} within {timeout} s:\n{self.console()}")

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def console(self) -> str:
        self._log.flush()
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process)
        self._log.close()


class Mitmweb(Mitmdump):
    """mitmweb with Tollgate; `api` reads its web API as the web UI does, with its password."""

    TOOL = "mitmweb"
    PASSWORD = "web-ui-password-for-tests"

    def tool_args(self) -> list[str]:
        self.web_port = free_port()  # asked once, as the process is started
        return [
            "--set",
            "web_open_browser=false",
            "--set",
            f"web_port={self.web_port}",
            "--set",
            f"web_password={self.PASSWORD}",
        ]

    def listening_ports(self) -> tuple[int, ...]:
        return (self.port, self.web_port)

    def api(self, path: str) -> Any:
        """GET a path of the web API (e.g. /flows), as JSON."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{path}", headers={"Authorization": f"Bearer {self.PASSWORD}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def run_to_exit(confdir: Path, config: Path, timeout: float = START_UP_S) -> subprocess.CompletedProcess:
    """Start mitmdump with a configuration that must stop it; return how it ended."""
    return subprocess.run(
        [
            mitmdump(),
            "-s",
            str(GATEWAY),
            "--listen-port",
            str(free_port()),
            "--set",
            f"confdir={confdir}",
            "--set",
            f"tollgate_config={config}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ},
    )
