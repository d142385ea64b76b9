"""A real mitmdump running addons/gateway.py, as users run it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "addons" / "gateway.py"


def mitmdump() -> str:
    found = Path(sys.executable).with_name("mitmdump")
    return str(found) if found.exists() else shutil.which("mitmdump") or "mitmdump"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mitmdump:
    """mitmdump with Tollgate; output goes to a file so that tests can search it for secrets."""

    def __init__(
        self, workdir: Path, confdir: Path, upstream_ca: Path | None, config: Path | None, *extra: str
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.output = workdir / f"mitmdump-{self.port}.log"
        args = [
            mitmdump(),
            "-s",
            str(GATEWAY),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--set",
            f"confdir={confdir}",
            "--set",
            f"tollgate_config={config or ''}",
        ]
        if upstream_ca is not None:
            args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        args += list(extra)
        self._log = open(self.output, "wb")
        # Unbuffered: a line logged between flows (a reload) is in the file when it is logged.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(args, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.process.returncode}:\n{self.console()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mitmdump did not listen within {timeout} s:\n{self.console()}")

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def console(self) -> str:
        self._log.flush()
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def run_to_exit(confdir: Path, config: Path, timeout: float = 30.0) -> subprocess.CompletedProcess:
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
