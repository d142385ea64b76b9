"""run.sh as a user runs it: the proxy it starts and the exports of `./run.sh env`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .proxy import ROOT, free_port


def made_as_run_sh_makes(root: Path = ROOT, env: Mapping[str, str] | None = None) -> None:
    """What `./run.sh` makes before its proxy starts and `./run.sh env` then finds: the CA and its
    bundle in certs/, undici beside the Node preload where the node on the PATH needs it."""
    subprocess.run(
        ["/bin/bash", "-c", f'source "{root}/run.sh" && ensure_certs && node_proxy_for_env'],
        capture_output=True,
        timeout=300,
        check=True,
        env=env,
    )


def env_run(*args: str, listen: str | None = None, env: dict[str, str] | None = None, root: Path = ROOT):
    """`ROOT/run.sh env ARGS` with TOLLGATE_LISTEN set to `listen` or unset, in `env` (else ours),
    once `./run.sh` has made what it exports."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "TOLLGATE_LISTEN"}
    made_as_run_sh_makes(root, env)
    if listen is not None:
        env["TOLLGATE_LISTEN"] = listen
    return subprocess.run(
        [str(root / "run.sh"), "env", *args], capture_output=True, text=True, timeout=300, check=True, env=env
    )


def env_exports(*args: str, listen: str | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """What `./run.sh env ARGS` exports (values as printed, in their double quotes)."""
    done = env_run(*args, listen=listen, env=env)
    return dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())


def wait_listening(port: int, proxy: subprocess.Popen | None = None, seconds: float = 60, poll: float = 0.2) -> None:
    """Once something listens on `port`; AssertionError after `seconds`, or once `proxy` (what
    should listen there, when given) has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (proxy is None or proxy.poll() is None):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(poll)
    said = "" if proxy is None else f" (run.sh exit {proxy.poll()})"
    raise AssertionError(f"nothing listens on {port}{said}")


@contextmanager
def run_sh_listening(
    directory: Path, upstream_ca_pem: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[int]:
    """`./run.sh ARGS` in `directory` (its tollgate.yaml, its audit) on a free port, trusting the fake
    upstreams' CA (in `env`, this process's environment unless given); its port once it listens,
    and it is stopped after."""
    port = free_port()
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "--listen-port", str(port), "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}",
         *args],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    try:
        wait_listening(port, proxy)
        yield port
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
