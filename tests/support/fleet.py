"""`./run.sh --workers N` as a user runs it: its console, its audit file, its workers' processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from .proxy import ROOT, free_port

READY = "workers behind HAProxy on"


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Fleet:
    """`run.sh --workers N` in `workdir` (where its tollgate.yaml is written), its console in files."""

    def __init__(
        self,
        workdir: Path,
        config: dict | None,
        confdir: Path,
        upstream_ca_pem: Path,
        *extra: str,
        workers: int = 2,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.audit_path = workdir / "audit.jsonl"
        self.config_path = workdir / "tollgate.yaml"
        if config is not None:
            self.write_config(config)
        self.output = workdir / "fleet.log"
        self._log = open(self.output, "wb")  # noqa: SIM115 - open as long as the process
        args = [str(ROOT / "run.sh"), "--workers", str(workers), "--listen-port", str(self.port)]
        args += ["--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("TOLLGATE_LISTEN", None)
        # Through a pipe, as a container's runtime reads a process's output.
        self.process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self._pump = threading.Thread(target=self._read_output, daemon=True)
        self._pump.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as pipe:
            for data in iter(lambda: pipe.read1(65536), b""):
                self._log.write(data)
                self._log.flush()

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, config: dict) -> None:
        """Written as editors save (a new file renamed over the old one)."""
        config = {**config, "audit": {"path": str(self.audit_path), **config.get("audit", {})}}
        written = self.config_path.with_name("tollgate.yaml.new")
        written.write_text(yaml.safe_dump(config))
        os.replace(written, self.config_path)

    def console(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_console(self, text: str, count: int = 1, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            console = self.console()
            if console.count(text) >= count:
                return console
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count} x {text!r} (exit {self.process.poll()}):\n{self.console()[-6000:]}")

    def wait_ready(self, timeout: float = 120) -> Fleet:
        self.wait_console(READY, timeout=timeout)
        return self

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.console()[-6000:]}") from None

    def worker_ports(self) -> dict[str, int]:
        """Each worker's name and the port it listens on behind HAProxy."""
        line = next(line for line in self.console().splitlines() if READY in line)
        return {
            name: int(port) for name, port in (w.split(" on 127.0.0.1:") for w in line.split("(")[1][:-1].split(", "))
        }

    def workers(self) -> dict[str, int]:
        """Each worker's name and the pid serving it now: the supervisor's children on its port."""
        ports = self.worker_ports()
        found = {}
        for pid, parent, command in processes():
            if parent == self.process.pid and "mitmdump" in command:
                for name, port in ports.items():
                    if f"--listen-port\0{port}\0" in command + "\0":
                        found[name] = pid
        return found

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        whole = self.audit_path.read_text().rpartition("\n")[0]
        return [json.loads(line) for line in whole.splitlines()]

    def calls(self) -> list[dict[str, Any]]:
        return [r for r in self.audit_records() if r.get("event") == "llm_call"]

    def wait_calls(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls()
            if len(calls) >= count:
                return calls
            time.sleep(0.05)
        raise AssertionError(f"expected {count} call records, have {len(self.calls())}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()  # its children get SIGTERM as it dies (PR_SET_PDEATHSIG)
                self.process.wait(10)
        self._pump.join(10)
        self._log.close()


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line with NUL between arguments) of every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        found.append((int(entry), parent, command))
    return found
