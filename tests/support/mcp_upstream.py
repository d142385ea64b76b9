"""`McpUpstream`: the fake MCP server (`mcp_server.py`, the official SDK's server) run over TLS in
its own process with `.venv-clients`' Python, on a free port of 127.0.0.1, with a certificate of the
tests' upstream CA; what it received read back from its log."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme
from tests.support.clients import client_python

SERVER = Path(__file__).with_name("mcp_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class McpUpstream:
    def __init__(self, ca: trustme.CA, json_response: bool = False, start_timeout: float = 30.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="mcp-upstream-"))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert_path, key_path = self._dir / "cert.pem", self._dir / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        self.log = self._dir / "received.jsonl"
        self.log.touch()
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        args = [client_python(), str(SERVER), str(self.port), str(cert_path), str(key_path), str(self.log)]
        self._process = subprocess.Popen(
            [*args, *(["--json"] if json_response else [])],
            stdout=subprocess.DEVNULL,
            stderr=open(self._dir / "stderr.txt", "wb"),  # noqa: SIM115 - the process keeps it
        )
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the fake MCP server exited: {(self._dir / 'stderr.txt').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("the fake MCP server did not start")

    def received(self) -> list[dict[str, Any]]:
        """Each request it received: method, path and the headers it logs."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def clear(self) -> None:
        self.log.write_text("")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
