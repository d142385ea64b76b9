"""A real `redis-server` for the ledger's tests: on a free port of 127.0.0.1, its files in a
directory of the test's own, stopped after it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .processes import terminate
from .proxy import free_port

INSTALL = (
    "redis-server is not installed, and the ledger's Redis tests need a real one: install Redis 7"
    " (Debian/Ubuntu: `sudo apt-get install -y redis-server`; macOS: `brew install redis`)."
    " ./run.sh test and .ci/run install it themselves when run as root on a system with apt-get."
)


def redis_server_command() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, directory: Path, persist: bool = False, password: str | None = None) -> None:
        """`persist`: an append-only file in `directory`, so that the counts survive a restart."""
        command = redis_server_command()
        if command is None:
            raise RuntimeError(INSTALL)
        self.command = command
        self.directory = directory
        self.persist = persist
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.command, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.persist else "no", "--daemonize", "no"]
        args += ["--logfile", str(self.directory / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on {self.port}: {self.log()}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stopped as an operator stops it (SIGTERM: the append-only file is written out first)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a paused server must wake to stop
        terminate(process)

    def pause(self) -> None:
        """A server that hangs: connections stay open, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def wait_for(self, what: str, check: Callable[[redis.Redis], bool], timeout: float = 10.0) -> None:
        """Until `check` (asked of a client of this server) holds; `what` names it if it never does."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while not check(client):
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server on {self.port}: no {what} within {timeout} s")
                time.sleep(0.02)

    def wait_subscribers(self, channel: str, count: int, timeout: float = 10.0) -> None:
        """Until `count` connections listen on `channel` (each Tollgate sharing the ledger listens)."""

        def subscribed(client: redis.Redis) -> bool:
            return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= count

        self.wait_for(f"{count} subscribers of {channel}", subscribed, timeout)

    def wait_keys(self, pattern: str, timeout: float = 10.0) -> None:
        """Until a key matches `pattern` (written by a Tollgate's ledger writer, in the background)."""
        self.wait_for(f"key {pattern}", lambda client: bool(client.keys(pattern)), timeout)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def redis_server(directory: Path, persist: bool = False, password: str | None = None) -> RedisServer:
    """A started server; the test fails (is not skipped) without redis-server: a missing server
    would pass the Redis store off as tested."""
    if redis_server_command() is None:
        pytest.fail(INSTALL)
    return RedisServer(directory, persist, password).start()
