"""Where the running proxy listens, said in the file `./run.sh` names (`certs/tollgate-listening.PID`,
in `TOLLGATE_LISTENING_FILE`), for `./run.sh env` to print the HTTPS_PROXY that reaches it without
being told the port again. Written once the proxy listens, removed as it stops: one line, the
proxy's URL and its process id (a file left by a process that was killed names one that is gone,
and is not believed). A proxy no `./run.sh` started writes none: its confdir may be a container's
secret, read only."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ASKED_BY = "TOLLGATE_LISTENING_FILE"  # the environment variable run.sh names the file in


def proxy_url(host: str, port: int) -> str:
    """What a client on this host dials to reach a proxy listening on `host`: loopback for every
    address (`0.0.0.0`, `::`, ``), an IPv6 address in brackets."""
    if host in ("", "*", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def first_address(addresses: Iterable[tuple]) -> tuple[str, int] | None:
    """The first (host, port) a regular proxy's sockets listen on."""
    for address in addresses:
        return str(address[0]), int(address[1])
    return None


def write(path: Path, url: str, pid: int) -> Path | None:
    """Say `url` in the file, whole (written beside it, then renamed over it); None where the
    folder cannot take it (it is a convenience: the proxy runs on)."""
    part = path.with_name(f"{path.name}.{pid}")
    try:
        part.write_text(f"{url} {pid}\n", encoding="utf-8")
        os.replace(part, path)
    except OSError:
        return None
    return path


def remove(path: Path, pid: int) -> None:
    """Remove the file if it is still this process's (another proxy of the same folder may have
    written it since)."""
    try:
        if path.read_text(encoding="utf-8").split()[1:2] == [str(pid)]:
            path.unlink()
    except (OSError, IndexError):
        pass
