"""What `tollgate serve` runs: how many workers, where each listens, what HAProxy is told, and which
configurations a fleet cannot run. Pure: `supervisor.py` starts and watches the processes.

mitmproxy has no worker mode and two mitmdumps cannot share a port, so N workers listen on loopback
ports of their own and HAProxy (TCP mode, least connections) takes the listen address. What the
workers share is shared outside them: the CA in `confdir`, the configuration file (each watches it),
the audit file (each appends whole lines), the ledger on Redis, the metrics in
`PROMETHEUS_MULTIPROC_DIR`."""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tollgate.configuration.config import Config

# The environment a worker of a fleet gets (and `tollgate serve` reads).
WORKERS_ENV = "TOLLGATE_WORKERS"  # serve's --workers when the command line gives none
LISTEN_ENV = "TOLLGATE_LISTEN"  # HOST:PORT or :PORT, as run.sh reads it
FLEET_ENV = "TOLLGATE_FLEET_WORKERS"  # how many workers share the configuration (set only for N > 1)
METRICS_LISTEN_ENV = "TOLLGATE_METRICS_LISTEN"  # a worker's own /metrics and /healthz, in place of metrics.listen
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # where the workers' metrics meet
# The variable that names a process in its records; `tollgate serve` sets it for each worker.
INSTANCE_ENV = "TOLLGATE_INSTANCE"


def instance_name(env: Mapping[str, str] | None = None) -> str:
    """What this process's records call it (`instance`): TOLLGATE_INSTANCE when set and not empty
    (a fleet's supervisor gives each worker `<host>/w<i>`), else the host's name, which names a lone
    process (a container's is its pod's or container's name)."""
    value = (os.environ if env is None else env).get(INSTANCE_ENV, "")
    return value or socket.gethostname()


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

REGULAR = "regular"  # mitmproxy's mode without --mode: a proxy its clients are told of
# The options whose value a fleet reads, each with its value in the next argument or after "=".
_VALUED = frozenset(
    ("--workers", "--listen-host", "--listen-port", "-p", "--set", "--mode", "-m", "-s", "--scripts", "--config")
)
_SHORT = ("-p", "-m", "-s")  # also with the value joined: -p8080


class FleetError(Exception):
    """`tollgate serve` cannot start as asked; the message says why and what to do."""


@dataclass
class ServeArgs:
    """`tollgate serve`'s command line, read: the workers asked for and the mitmdump arguments."""

    workers: int
    # The caller's mitmdump arguments without those naming the listen address (each worker gets its own).
    passed: list[str]
    listen_host: str = DEFAULT_HOST
    listen_port: int = DEFAULT_PORT
    modes: list[str] = field(default_factory=list)
    config: str | None = None  # tollgate_config, when given
    scripts: bool = False  # whether a -s/--scripts names the addon already


def cpu_count() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup's CPU quota (a
    container's CPU limit) when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(Path("/sys/fs/cgroup/cpu.max"))
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(path: Path) -> float | None:
    """The CPUs a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD") allows; None without a limit."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def workers_value(text: str) -> int:
    """--workers N (1 or more) or `auto` (one per core)."""
    if text == "auto":
        return cpu_count()
    if not text.isdigit() or int(text) < 1:
        raise FleetError(f"--workers {text}: expected a number of workers (1 or more) or auto")
    return int(text)


def valid_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise FleetError(f"listen port {text!r}: expected a number from 1 to 65535")
    return int(text)


def parse_serve_args(argv: Sequence[str], env: Mapping[str, str]) -> ServeArgs:
    """`--workers` taken out, the listen address read (`--listen-host`, `--listen-port`/`-p`, their
    `--set` forms; else TOLLGATE_LISTEN; else 127.0.0.1:8080) and taken out, and what else a fleet
    needs to know of the mitmdump arguments: modes, the configuration file (`--config FILE`, as the
    other commands take it, passed on as `--set tollgate_config=FILE`), a script."""
    workers_text = env.get(WORKERS_ENV) or "1"
    host, port = DEFAULT_HOST, str(DEFAULT_PORT)
    listen = env.get(LISTEN_ENV)
    if listen:
        env_host, sep, env_port = listen.rpartition(":")
        if not sep or not env_port.isdigit():
            raise FleetError(f"{LISTEN_ENV}={listen}: expected HOST:PORT or :PORT")
        host, port = env_host.strip("[]") or host, env_port
    passed: list[str] = []
    modes: list[str] = []
    config: str | None = None
    scripts = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in _VALUED:
            if i >= len(args):
                raise FleetError(f"{arg} needs a value")
            name, value, given = arg, args[i], [arg, args[i]]
            i += 1
        elif arg.startswith("--") and arg.partition("=")[0] in _VALUED:
            name, _, value = arg.partition("=")
            given = [arg]
        elif arg[:2] in _SHORT and len(arg) > 2:
            name, value, given = arg[:2], arg[2:], [arg]
        else:
            passed.append(arg)
            continue
        if name == "--config":  # as every command that reads a configuration takes it: mitmdump's option
            name, given = "--set", ["--set", f"tollgate_config={value}"]
            value = f"tollgate_config={value}"
        if name == "--set":
            name, _, value = value.partition("=")
            name = {"listen_host": "--listen-host", "listen_port": "--listen-port", "mode": "--mode"}.get(name, name)
        if name == "--workers":
            workers_text = value
        elif name == "--listen-host":
            host = value
        elif name in ("--listen-port", "-p"):
            port = value
        else:
            if name in ("--mode", "-m"):
                modes.append(value)
            elif name == "tollgate_config":
                config = value
            elif name in ("-s", "--scripts", "scripts"):
                scripts = True
            passed += given
    return ServeArgs(
        workers_value(workers_text), passed, host.strip("[]"), valid_port(port), modes, config or None, scripts
    )


def fleet_mode_problem(modes: Sequence[str]) -> str | None:
    """Why these mitmproxy modes cannot run behind HAProxy; None for the regular proxy alone. A
    capture mode takes connections by the address their clients dialled (transparent), or as a
    WireGuard peer or this host's programs (local): none of them comes through a balancer."""
    others = [m for m in modes if m != REGULAR]
    if not others:
        return None
    return (
        f"--workers runs the regular proxy only, behind HAProxy; --mode {' '.join(others)} takes connections"
        " that cannot come through it (a capture mode: run it with --workers 1)"
    )


def ledger_shared(store: str) -> bool:
    return urlsplit(store).scheme in ("redis", "rediss")


def fleet_config_problem(config: Config, workers: int) -> str | None:
    """Why N workers cannot run this configuration; None when they can. With limits, each worker
    would count against its own SQLite counters: the limits would hold N times over; with MCP
    servers, a session's requests reaching another worker than its `initialize` would be refused."""
    if workers > 1 and config.limits and not ledger_shared(config.ledger_store):
        return (
            f"ledger.store: {workers} workers with limits must share their counters on Redis: set ledger.store:"
            " redis://host:port/0 (a SQLite ledger is exact within one process only), or run one worker"
        )
    if workers > 1 and config.mcp.servers and not ledger_shared(config.ledger_store):
        return (
            f"ledger.store: {workers} workers with MCP servers must share whose each session is on Redis: set"
            " ledger.store: redis://host:port/0 (a session opened through one worker is unknown to the"
            " others), or run one worker"
        )
    return None


def fleet_workers(env: Mapping[str, str]) -> int:
    """How many workers share this process's configuration (`FLEET_ENV`, set by `tollgate serve`)."""
    text = env.get(FLEET_ENV, "")
    return int(text) if text.isdigit() else 1


def worker_instance(env: Mapping[str, str], index: int) -> str:
    """A worker's `instance` (TOLLGATE_INSTANCE): the host's (TOLLGATE_INSTANCE when set, else the
    host name), then the worker's number."""
    return f"{instance_name(env)}/w{index}"


# How mitmproxy's message for a port in use goes on: a hint that names its `--mode` option and a port
# two above, beside Tollgate's (`listen_advice`), which names the options Tollgate's users set.
MITMPROXY_PORT_HINT = "\nTry specifying a different port by using `--mode"


class OneListenHint(logging.Filter):
    """Keeps mitmproxy's message for a port in use, without its hint: Tollgate's is said after it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if MITMPROXY_PORT_HINT in message:
            record.msg, record.args = message.partition(MITMPROXY_PORT_HINT)[0], ()
        return True


def one_listen_hint() -> None:
    """From now on, mitmproxy's proxy server says no hint of its own when a port is in use."""
    server_log = logging.getLogger("mitmproxy.addons.proxyserver")
    if not any(isinstance(f, OneListenHint) for f in server_log.filters):
        server_log.addFilter(OneListenHint())


def listen_advice(address: str, error: int, mode: str = REGULAR, worker: bool = False) -> str:
    """What to do when the proxy cannot listen on `address` (`127.0.0.1:8080`; a capture mode's
    `transparent@*:8081`) for the error number `error`: said in Tollgate's words, which name the
    options its users set rather than mitmproxy's `--mode`."""
    if error == errno.EADDRINUSE:
        why = "another program listens there (another Tollgate?)"
    elif error == errno.EACCES:
        why = "permission denied (a port below 1024 needs root, or CAP_NET_BIND_SERVICE)"
    elif error == errno.EADDRNOTAVAIL:
        why = "no network interface of this host has that address"
    else:
        why = os.strerror(error)
    if worker:  # tollgate serve chose the port, free a moment before
        return f"Tollgate cannot listen on {address}: {why}; the fleet's worker ports are chosen anew at its next start"
    if mode != REGULAR:
        elsewhere = f"--capture {mode}@PORT (./run.sh), or mitmdump's --mode {mode}@PORT"
    else:
        elsewhere = (
            f"--listen-port PORT (and --listen-host HOST), or {LISTEN_ENV}=HOST:PORT for ./run.sh and"
            " tollgate serve; clients then need the HTTPS_PROXY that `./run.sh env` prints for it"
        )
    return f"Tollgate cannot listen on {address}: {why}. Stop what holds it, or listen elsewhere: {elsewhere}"


def host_port(host: str, port: int) -> str:
    """An address as HAProxy's `bind` and `server` take it: `[::1]:8080`, `:::8080` for every address."""
    if host in ("", "*"):
        return f":::{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dialable(host: str) -> str:
    """Where this host reaches an address that listens on `host` (every address: loopback)."""
    if host in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


@dataclass
class Worker:
    index: int  # 1, 2, …
    port: int  # its proxy, on 127.0.0.1
    health_port: int  # its /metrics and /healthz, on 127.0.0.1

    @property
    def name(self) -> str:
        return f"w{self.index}"


# HAProxy's stats socket, in the fleet's state directory: the supervisor asks it whether HAProxy serves.
HAPROXY_STATS = "haproxy.sock"


def haproxy_config(
    listen: tuple[str, int], workers: Sequence[Worker], metrics: tuple[str, int] | None, drain_s: float, state: Path
) -> str:
    """HAProxy in front of the workers: TCP on the listen address, to the worker with the fewest
    connections among those whose /healthz answers 200; a connection a dead worker refuses goes to
    another. /metrics and /healthz of the fleet (metrics.listen) from any worker that answers: each
    serves what all of them count. A soft stop (SIGUSR1) closes the listeners and lets the
    connections end, at most `drain_s` and a margin later. `state`: the directory of its socket."""
    # Idle limits: an LLM answer may think for minutes before its first byte; a stream's pauses
    # are the provider's. The workers' own timeouts (providers.<name>.timeout) judge the upstream.
    lines = [
        "global",
        f"    hard-stop-after {math.ceil(drain_s) + 5}s",
        f"    stats socket {state / HAPROXY_STATS} mode 600 level admin",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout check 2s",
        "    retries 3",
        "    option redispatch 1",
        "",
        "frontend proxy",
        f"    bind {host_port(*listen)}" + (" v4v6" if listen[0] in ("", "*") else ""),
        "    default_backend workers",
        "",
        "backend workers",
        "    balance leastconn",
        "    option httpchk GET /healthz",
        "    http-check expect status 200",
        "    default-server inter 1s fastinter 250ms downinter 500ms fall 2 rise 1",
    ]
    lines += [f"    server {w.name} 127.0.0.1:{w.port} check port {w.health_port}" for w in workers]
    if metrics is not None:
        lines += [
            "",
            "frontend metrics",
            "    mode http",
            f"    bind {host_port(*metrics)}" + (" v4v6" if metrics[0] in ("", "*") else ""),
            "    timeout client 30s",
            "    default_backend metrics",
            "",
            "backend metrics",
            "    mode http",
            "    balance roundrobin",
            "    timeout server 30s",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
            "    default-server inter 1s fastinter 250ms downinter 500ms fall 2 rise 1",
        ]
        lines += [f"    server {w.name} 127.0.0.1:{w.health_port} check" for w in workers]
    return "\n".join(lines) + "\n"


def metrics_address(config: Config) -> tuple[str, int] | None:
    listen = config.metrics.listen
    if listen is None:
        return None
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def worker_args(passed: Sequence[str], worker: Worker) -> list[str]:
    """A worker's mitmdump arguments: the caller's, on its own loopback port."""
    return [*passed, "--listen-host", "127.0.0.1", "--listen-port", str(worker.port)]


def worker_env(base: Mapping[str, str], worker: Worker, workers: int, metrics_dir: Path) -> dict[str, str]:
    return {
        **base,
        INSTANCE_ENV: worker_instance(base, worker.index),
        FLEET_ENV: str(workers),
        METRICS_LISTEN_ENV: f"127.0.0.1:{worker.health_port}",
        MULTIPROC_ENV: str(metrics_dir),
    }


def backoff(failures: int) -> float:
    """Seconds before a worker that died is started again: 0.5 s after its first death, doubling
    with each death that follows soon after, at most 30 s."""
    return min(30.0, 0.5 * 2 ** max(0, failures - 1))
