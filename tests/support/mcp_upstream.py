"""`McpUpstream`: the fake MCP server (`mcp_server.py`, the official SDK's server) run over TLS in
its own process with `.venv-clients`' Python, on a free port of 127.0.0.1, with a certificate of the
tests' upstream CA; what it received read back from its log. `mcp_servers`: one answering by
server-sent events, one as JSON. `client_code`: the SDK's client calling a server through the
proxy. `speaks_mcp`: a scripted server (`FakeUpstream`) as the SDK's client needs it
(`initialized`: its answer to an initialize)."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from tests.support.clients import client_python
from tests.support.fake_upstream import Received, Reply

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


@contextmanager
def mcp_servers(ca: trustme.CA) -> Iterator[tuple[McpUpstream, McpUpstream]]:
    """Two fake MCP servers: one answering by server-sent events, one as JSON."""
    sse, json_ = McpUpstream(ca), McpUpstream(ca, json_response=True)
    try:
        yield sse, json_
    finally:
        sse.close()
        json_.close()


# Client code's last lines: `main` run, and the SDK's task group unwrapped: the error inside it is
# the one to see.
RUN_MAIN = """
try:
    asyncio.run(main())
except BaseExceptionGroup as group:
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    raise first from None
"""


CLIENT = (
    """
import asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="{mode}") as client:
{body}
"""
    + RUN_MAIN
)


def client_code(url: str, body: str, key: str, mode: str = "legacy") -> str:
    """The SDK's client calling `url` with `key` as its bearer; `mode`: "legacy" (the initialize
    handshake and a session) or "auto" (server/discover, no session)."""
    indented = "\n".join("            " + line for line in body.strip().splitlines())
    return CLIENT.format(key=key, url=url, body=indented, mode=mode)


def initialized(message: dict, name: str) -> dict:
    """A scripted server's answer to the client's `initialize` request (`message`), as the server
    `name` with tools and logging."""
    result = {
        "protocolVersion": message["params"]["protocolVersion"],
        "capabilities": {"tools": {}, "logging": {}},
        "serverInfo": {"name": name, "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def speaks_mcp(answer: Callable[[dict], Reply]) -> Callable[[Received], Reply]:
    """A scripted server (`FakeUpstream`'s handler) as the SDK's client needs it: an initialize
    answered, notifications accepted, no GET stream; each other request answered by `answer`."""

    def handle(received: Received) -> Reply:
        if received.method != "POST":
            return Reply(405 if received.method == "GET" else 200, b"")
        message = json.loads(received.body)
        if message.get("method") == "initialize":
            return Reply(200, initialized(message, "scripted"))
        if "id" not in message:
            return Reply(202, b"")
        return answer(message)

    return handle


def event(message: dict) -> bytes:
    """A server-sent event of a JSON-RPC message, as the SDK's server writes one."""
    return b"event: message\r\ndata: " + json.dumps(message).encode() + b"\r\n\r\n"


def log_event(text: str) -> bytes:
    return event({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}})
