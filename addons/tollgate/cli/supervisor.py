"""`tollgate serve`: one mitmdump, or N behind HAProxy, watched. Plain Python: it starts processes,
never imports mitmproxy.

With one worker the command becomes mitmdump (exec): signals and the exit status are its own. With
N, the supervisor starts the workers, waits until every one serves, then starts HAProxy on the
listen address. A worker that dies is started again after a back-off, HAProxy routing around it
meanwhile; one that fails before it first serves stops the fleet. SIGTERM (or SIGINT) drains:
HAProxy stops listening and lets its connections end, every worker drains its calls (`drain_s`),
and the command exits 0 once all have. The workers' and HAProxy's output comes out of this
process's standard output and error line by line, so that lines from several processes (audit
records on `audit.path: "-"` among them) are never cut into each other."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import IO

from tollgate.configuration.config import ConfigError, load_config
from tollgate.configuration.fleet import (
    HAPROXY_STATS,
    INSTANCE_ENV,
    FleetError,
    ServeArgs,
    Worker,
    backoff,
    dialable,
    fleet_config_problem,
    fleet_mode_problem,
    haproxy_config,
    host_port,
    listen_advice,
    metrics_address,
    parse_serve_args,
    worker_args,
    worker_env,
    worker_instance,
)

START_TIMEOUT = 60.0  # seconds for a worker, or HAProxy, to serve after it was started
POLL = 0.1  # seconds between two looks at a process starting
# Seconds between two looks at the processes when no signal wakes the supervisor first (SIGCHLD
# does when one exits): a worker's death is seen at once, and an idle fleet costs nothing.
WATCH = 5.0
STAYED_UP = 30.0  # seconds up after which a worker's next death is not counted as soon after its last
DRAIN_MARGIN = 10.0  # seconds past drain_s before a worker still draining is killed
TAIL_LINES = 20  # console lines kept per process, to say why one failed

LISTEN_WHAT = "the listen address"  # what check_listenable is told of the proxy's own address

HAPROXY_INSTALL = (
    "haproxy is not installed, and --workers N (N > 1) runs one in front of the workers: install it"
    " (Debian/Ubuntu: sudo apt-get install -y haproxy; ./run.sh installs it when run as root)"
)

_PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    """A line of the supervisor's own on standard error, as the workers' console lines come."""
    _write_line(sys.stderr, f"tollgate serve: {message}\n".encode())


_OUTPUT_LOCK = threading.Lock()


def _write_line(stream: IO[str], line: bytes) -> None:
    with _OUTPUT_LOCK:
        try:
            stream.flush()
            fd = stream.fileno()
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
        except (OSError, ValueError):  # a closed console: the workers go on without it
            pass


def mitmdump_command() -> str:
    """The mitmdump beside this Python (the venv's), else the one on the PATH."""
    beside = Path(sys.executable).with_name("mitmdump")
    return str(beside) if beside.exists() else shutil.which("mitmdump") or "mitmdump"


def gateway_script() -> Path:
    """The script mitmdump loads: `addons/gateway.py` of the checkout this package is in."""
    return Path(__file__).resolve().parents[2] / "gateway.py"


def serve(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """The `tollgate serve` command: its exit status (it does not return when it becomes mitmdump)."""
    env = dict(os.environ if env is None else env)
    try:
        args = with_tollgate_yaml_here(parse_serve_args(argv, env))
        command = mitmdump_base(args)
        if args.workers == 1:
            # One worker: mitmdump itself, as ./run.sh runs it, once its configuration is checked.
            listen = ["--listen-host", args.listen_host, "--listen-port", str(args.listen_port)]
            env[INSTANCE_ENV] = worker_instance(env, 1)
            sys.stdout.flush()
            start = [sys.executable, "-m", "tollgate.proxy.start", "mitmdump", *command[1:]]
            os.execvpe(start[0], [*start, *args.passed, *listen], env)
        plan = fleet_plan(args)
    except FleetError as e:
        say(str(e))
        return 1
    return Fleet(args, command, env, *plan).run()


def with_tollgate_yaml_here(args: ServeArgs) -> ServeArgs:
    """Named no configuration, the workers read ./tollgate.yaml when there is one (as mitmdump does
    with no tollgate_config): named here, so that it is checked before any starts, as run.sh's is."""
    given = any(a.startswith(("tollgate_config=", "--set=tollgate_config=")) for a in args.passed)
    if args.config is not None or given or not os.path.isfile("tollgate.yaml"):
        return args
    path = os.path.abspath("tollgate.yaml")
    return replace(args, config=path, passed=[*args.passed, "--set", f"tollgate_config={path}"])


def mitmdump_base(args: ServeArgs) -> list[str]:
    command = [mitmdump_command()]
    if not args.scripts:
        script = gateway_script()
        if not script.is_file():
            raise FleetError(f"{script} is missing: give the addon with -s PATH/addons/gateway.py")
        command += ["-s", str(script)]
    return command


def fleet_plan(args: ServeArgs) -> tuple[float, tuple[str, int] | None, list[socket.socket]]:
    """What N > 1 workers need checked before any starts, and read from the configuration: its
    drain, its metrics address, and the addresses HAProxy will listen on, held until it starts
    (`check_listenable`). FleetError naming what must change."""
    problem = fleet_mode_problem(args.modes)
    if problem is not None:
        raise FleetError(problem)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        raise FleetError(f"Tollgate configuration: {e}") from None
    problem = fleet_config_problem(config, args.workers)
    if problem is not None:
        raise FleetError(f"Tollgate configuration: {problem}")
    if shutil.which("haproxy") is None:
        raise FleetError(HAPROXY_INSTALL)
    metrics = metrics_address(config)
    held = [check_listenable(args.listen_host, args.listen_port, LISTEN_WHAT)]
    try:
        if metrics is not None:
            held.append(check_listenable(*metrics, "metrics.listen"))
    except FleetError:
        release(held)
        raise
    return config.drain_s, metrics, held


def check_listenable(host: str, port: int, what: str) -> socket.socket:
    """The address HAProxy will listen on, held from here until it starts (`release`): FleetError
    unless HAProxy will be able to listen there (taken, or a port this user may not open), found
    before any worker starts rather than once they all have. Held listening (with no room for a
    connection), so that no other process binds it while the workers start, not even one that
    binds a port of its own choosing with SO_REUSEADDR, as Python's servers do: its listener
    would be taken for HAProxy's, and the fleet's clients sent to it."""
    held = None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        held = socket.socket(family, kind, proto)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
        held.bind(address)
        held.listen(0)
    except OSError as e:
        if held is not None:
            held.close()
        if what == LISTEN_WHAT and e.errno is not None:  # the proxy's own address: where else it may listen
            raise FleetError(listen_advice(host_port(host, port), e.errno)) from None
        raise FleetError(f"{what}: cannot listen on {host_port(host, port)}: {e.strerror or e}") from None
    return held


def release(held: Sequence[socket.socket]) -> None:
    for address in held:
        address.close()


def free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 free now (held open together, so that they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def haproxy_serves(stats: Path) -> bool:
    """Whether HAProxy answers on its stats socket (`stats`): it has started, every address bound."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(1)
            connection.connect(str(stats))
            connection.sendall(b"show info\n")
            return connection.recv(64).startswith(b"Name: HAProxy")
    except OSError:
        return False


def healthy(port: int) -> bool:
    """Whether a worker's /healthz (on 127.0.0.1:`port`) answers 200, as HAProxy checks it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded here: a child between fork and exec only calls it


def _die_with_parent() -> None:
    """In a child, before it runs its program: SIGTERM when the supervisor dies (even by SIGKILL), so
    that no worker serves on unwatched. Linux's prctl; elsewhere nothing. Linux sends it when the
    thread that started the child ends, so children are started from the main thread only."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process of the fleet, started (and started again) with the same arguments; its output
    relayed line by line, the last lines kept."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], cwd: str | None = None) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.started_at = 0.0
        self.deaths = 0  # deaths soon after one another (back-off)
        self.restart_at: float | None = None
        self.served = False  # has served since it was last started
        self._relays: list[threading.Thread] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which drains it.
            process_group=0,
            # Between fork and exec, one call of a C function loaded before (no import, no lock that
            # the relay threads, blocked in read(), could hold).
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.served = False
        self._relays = [
            threading.Thread(target=self._relay, args=(pipe, out), name=f"{self.name} {out.name}", daemon=True)
            for pipe, out in ((self.process.stdout, sys.stdout), (self.process.stderr, sys.stderr))
        ]
        for relay in self._relays:
            relay.start()

    def _relay(self, pipe: IO[bytes], out: IO[str]) -> None:
        with pipe:
            for line in iter(pipe.readline, b""):
                whole = line if line.endswith(b"\n") else line + b"\n"
                self.tail.append(whole.decode(errors="replace").rstrip())
                _write_line(out, whole)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exited(self) -> int | None:
        """Its exit status once it has exited (negative: the signal that ended it), else None."""
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def reap(self) -> None:
        """After it exited: its output read to the end."""
        for relay in self._relays:
            relay.join(timeout=2)

    def why(self, status: int) -> str:
        how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
        said = last_reason(self.tail)
        return f"{self.name} {how}" + (f": {said}" if said else "")


# mitmdump's last words after any error at start-up: the error itself was logged before them.
_GENERIC = ("Error logged during startup, exiting...",)
_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception)): (.+)$")


def last_reason(lines: Sequence[str]) -> str | None:
    """What a process's last lines say went wrong: the last error it logged (an exception's
    message, without its class), else its last line."""
    said = [line.strip() for line in lines if line.strip() and line.strip() not in _GENERIC]
    for line in reversed(said):
        found = _ERROR_LINE.match(line)
        if found:
            return found.group(1)
    return said[-1] if said else None


class Fleet:
    def __init__(
        self,
        args: ServeArgs,
        command: list[str],
        env: Mapping[str, str],
        drain_s: float,
        metrics: tuple[str, int] | None,
        held: Sequence[socket.socket] = (),
    ) -> None:
        self.args = args
        self.drain_s = drain_s
        self.held = list(held)  # the addresses HAProxy will listen on, until it starts (`check_listenable`)
        ports = free_ports(2 * args.workers)
        self.workers = [Worker(i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(args.workers)]
        self.state = Path(tempfile.mkdtemp(prefix="tollgate-fleet-"))  # private: mode 0700
        self.metrics_dir = self.state / "metrics"
        self.metrics_dir.mkdir()
        self.children = [
            Child(w.name, [*command, *worker_args(args.passed, w)], worker_env(env, w, args.workers, self.metrics_dir))
            for w in self.workers
        ]
        config = self.state / "haproxy.cfg"
        config.write_text(
            haproxy_config((args.listen_host, args.listen_port), self.workers, metrics, drain_s, self.state)
        )
        self.haproxy = Child("haproxy", [shutil.which("haproxy") or "haproxy", "-db", "-f", str(config)], env)
        self.stopping = 0  # signals received asking the fleet to stop
        self._wake = threading.Event()  # a signal came: a child exited, or a stop is asked

    # ---- the command's life

    def run(self) -> int:
        previous = {s: signal.signal(s, self._stop_asked) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _signum, _frame: self._wake.set())
        try:
            try:
                self._start()
            except FleetError as e:
                self._stop_now()
                if self.stopping:  # asked to stop: nothing was served yet, nothing is left to drain
                    say("stopped while starting")
                    return 0
                say(str(e))
                return 1
            return self._watch()
        finally:
            release(self.held)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutil.rmtree(self.state, ignore_errors=True)

    def _stop_asked(self, signum: int, _frame: object) -> None:
        self.stopping += 1
        self._wake.set()
        if self.stopping > 1:  # asked again while draining: the workers are told again, HAProxy stops
            for child in self.children:
                child.signal(signal.SIGTERM)
            self.haproxy.signal(signal.SIGTERM)

    def _start(self) -> None:
        """Every worker serving, then HAProxy on the listen address; FleetError naming the first that
        could not (the others are stopped by the caller)."""
        # The first worker alone makes the CA when there is none yet; the others then load it.
        first, *others = self.children
        first.start()
        self._until_served([first])
        for child in others:
            child.start()
        self._until_served(others)
        release(self.held)  # HAProxy's now, at once
        self.haproxy.start()
        host, port = dialable(self.args.listen_host), self.args.listen_port
        listening = f"listen on {self.args.listen_host}:{port}"
        # Its own listener: HAProxy answers on its stats socket only once it has bound every
        # address (it exits where one is taken), whatever else may answer there.
        stats = self.state / HAPROXY_STATS
        self._until(lambda: accepts(host, port) and haproxy_serves(stats), [self.haproxy], "HAProxy", listening)
        say(
            f"{len(self.workers)} workers behind HAProxy on {self.args.listen_host}:{port}"
            f" ({', '.join(f'{w.name} on 127.0.0.1:{w.port}' for w in self.workers)})"
        )

    def _until_served(self, children: Sequence[Child]) -> None:
        by_name = {w.name: w for w in self.workers}
        for child in children:
            worker = by_name[child.name]
            self._until(partial(healthy, worker.health_port), [child], child.name, "serve")
            child.served = True

    def _until(self, ready: Callable[[], bool], watched: Sequence[Child], what: str, doing: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            for child in watched:
                status = child.exited()
                if status is not None:
                    child.reap()
                    raise FleetError(f"{child.why(status)} (at start: the fleet stops)")
            if self.stopping:
                raise FleetError(f"stopped while starting ({what} did not {doing} yet)")
            if time.monotonic() > deadline:
                raise FleetError(f"{what} did not {doing} within {START_TIMEOUT:g} s")
            time.sleep(POLL)

    def _watch(self) -> int:
        """Until asked to stop: dead workers started again, after their back-off."""
        while not self.stopping:
            self._wake.clear()
            now = time.monotonic()
            for child in [*self.children, self.haproxy]:
                self._look_after(child, now)
            restarts = [c.restart_at for c in [*self.children, self.haproxy] if c.restart_at is not None]
            self._wake.wait(min([WATCH, *(at - time.monotonic() for at in restarts)]) if restarts else WATCH)
        return self._drain()

    def _look_after(self, child: Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                say(f"starting {child.name} again")
                child.start()
            return
        status = child.exited()
        if status is None:
            return
        child.reap()
        self._forget_metrics(child)
        child.deaths = 1 if now - child.started_at > STAYED_UP else child.deaths + 1
        delay = backoff(child.deaths)
        child.restart_at = now + delay
        others = "" if child is self.haproxy else "; HAProxy sends its connections to the others meanwhile"
        say(f"{child.why(status)}; started again in {delay:g} s{others}")

    def _forget_metrics(self, child: Child) -> None:
        """A dead worker's gauges leave the fleet's metrics (its counters stay counted)."""
        if child is self.haproxy or child.pid is None:
            return
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(child.pid, str(self.metrics_dir))
        except Exception:  # metrics are not worth a worker
            pass

    def _drain(self) -> int:
        """HAProxy stops taking connections; every worker drains its calls; 0 when all exited 0."""
        say(f"draining: no new connections; calls in flight have up to {self.drain_s:g} s")
        self.haproxy.signal(signal.SIGUSR1)  # soft stop: listeners closed, connections go on
        host, port = dialable(self.args.listen_host), self.args.listen_port
        deadline = time.monotonic() + 2
        while accepts(host, port) and time.monotonic() < deadline:
            time.sleep(POLL / 2)
        running = [child for child in self.children if child.exited() is None]  # not those awaiting a restart
        for child in running:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_s + DRAIN_MARGIN
        failed = []
        for child in running:
            status = child.wait(max(0.0, deadline - time.monotonic()))
            if status is None:
                say(f"{child.name} still draining after {self.drain_s + DRAIN_MARGIN:g} s: killed")
                child.signal(signal.SIGKILL)
                status = child.wait(5)
            child.reap()
            if status not in (0, None):
                failed.append(child.why(status))
        if self.haproxy.wait(5) is None:
            self.haproxy.signal(signal.SIGTERM)
            self.haproxy.wait(5)
        self.haproxy.reap()
        if failed:
            say(f"stopped; {'; '.join(failed)}")
            return 1
        say("stopped")
        return 0

    def _stop_now(self) -> None:
        """After a failed start: everything started is stopped at once."""
        for child in [self.haproxy, *self.children]:
            child.signal(signal.SIGTERM)
        for child in [self.haproxy, *self.children]:
            if child.wait(10) is None:
                child.signal(signal.SIGKILL)
                child.wait(5)
            child.reap()
