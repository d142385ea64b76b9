"""Fleet benchmark: calls a second at saturation and CPU per call of Tollgate with 1 and 2 workers
(`tollgate serve --workers N`, and `auto`), beside bare mitmdump, in one run; then the memory one
held stream costs a worker.

Run from the checkout:

    .venv/bin/python bench/fleet.py                        # about 2 min
    .venv/bin/python bench/fleet.py --seconds 3 --rounds 1 --streams 50   # quick
    .venv/bin/python bench/fleet.py --help

The fake upstream, the client and Tollgate's configuration are bench/overhead.py's: a TLS fake
(threads of this process) answering non-streamed chat completions, one keep-alive HTTP/1.1
connection per client thread (CONNECT api.openai.com through the proxy, TLS to the proxy's
certificate), and a tollgate.yaml with virtual keys, an override rule, the policy, two limits whose
five counters every call reserves and settles, metrics served and an audit file. The ledger is on a
redis-server started for the run (a fleet with limits needs one); without redis-server, the limits are
left out of every Tollgate mode alike.

Modes, each a process tree started once and measured in rounds, the modes' order rotated from round
to round:

  bare        plain mitmdump (`--map-remote` to the fake);
  tollgate-1  `tollgate serve --workers 1`: one mitmdump with Tollgate, no HAProxy;
  tollgate-2  `tollgate serve --workers 2`: two workers behind HAProxy;
  tollgate-auto  `--workers auto` where that is neither 1 nor 2 (else it is one of those, said so).

A round: `--connections` client threads call as fast as answers come, for `--seconds`. Calls a
second is the rounds' median; CPU per call is the CPU time of the mode's whole process tree (the
supervisor, the workers, their policy workers, HAProxy) over its calls, from /proc; "per worker" is
calls a second over the workers. The harness's own CPU (client and fake, this process) is printed
beside it: on a machine with few cores it competes with the workers for them, and that bounds what
N workers can show here.

Memory per stream: `--streams` streamed calls through `tollgate serve --workers 1` held open at
once (the fake sends each its first event, then waits), the worker's RSS before and while they are
held, over their number.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import trustme  # noqa: E402
import yaml  # noqa: E402

from overhead import (  # noqa: E402
    OVERRIDDEN_MODEL,
    PATH,
    REQUESTED_MODEL,
    CallError,
    ChatFake,
    Conn,
    Target,
    Trust,
    bare_args,
    clean_env,
    tollgate_config,
    tree_cpu_seconds,
)
from stream import API_HOST, free_port, loadavg, proc_status  # noqa: E402

ROOT = BENCH.parent
GATEWAY = ROOT / "addons" / "gateway.py"
MAX_CONNECTIONS = 512
MAX_SECONDS = 120.0


def say(message: str) -> None:
    print(message, flush=True)


def cores() -> int:
    sys.path.insert(0, str(ROOT / "addons"))
    from tollgate.configuration.fleet import cpu_count

    return cpu_count()


def mitmdump() -> str:
    beside = Path(sys.executable).with_name("mitmdump")
    return str(beside) if beside.exists() else shutil.which("mitmdump") or "mitmdump"


class Tree:
    """A mode's process tree: started in a session of its own, stopped by SIGTERM (a fleet drains)."""

    def __init__(self, name: str, args: list[str], workdir: Path, port: int, workers: int) -> None:
        self.name, self.port, self.workers = name, port, workers
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open as long as the process
        env = clean_env(PYTHONPATH=str(ROOT / "addons"))
        self.process = subprocess.Popen(
            args, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.console()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen within {timeout:.0f} s:\n{self.console()}")

    def console(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def cpu_by_program(self) -> Counter[str]:
        """CPU seconds of the tree's processes, by program (mitmdump, haproxy, python, …)."""
        tick = os.sysconf("SC_CLK_TCK")
        table: dict[int, tuple[int, str, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                table[int(entry)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / tick)
        used: Counter[str] = Counter()
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            if pid in table:
                used[table[pid][1]] += table[pid][2]
            todo.extend(child for child, (parent, _, _) in table.items() if parent == pid)
        return used

    def worker_pids(self) -> list[int]:
        """The mitmdumps of the tree (the process itself for one worker, which execs mitmdump)."""
        if self.workers == 1:
            return [self.process.pid]
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    command = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == self.process.pid and b"mitmdump" in command:
                    pids.append(int(entry))
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@dataclass
class Mode:
    tree: Tree
    target: Target
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    harness_ms: list[float] = field(default_factory=list)
    by_program: Counter[str] = field(default_factory=Counter)  # CPU ms over all rounds
    calls: int = 0
    errors: int = 0


def harness_cpu() -> float:
    t = os.times()
    return t.user + t.system


def round_of(mode: Mode, connections: int, seconds: float) -> tuple[int, int]:
    """Calls answered and errors in `seconds` of `connections` threads calling back to back."""
    conns = [Conn(mode.target) for _ in range(connections)]
    for conn in conns:  # warmed up, outside the timing
        conn.call()
    counts = [0] * connections
    errors = [0] * connections
    start = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def work(i: int) -> None:
        start.wait()
        conn = conns[i]
        while time.monotonic() < stop_at[0]:
            try:
                conn.call()
                counts[i] += 1
            except CallError:
                errors[i] += 1
                conn.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + 60)
    for conn in conns:
        conn.close()
    return sum(counts), sum(errors)


class StreamFake(ChatFake):
    """ChatFake, and a streamed chat call held after its first event until `release` is set."""

    def __init__(self, ca: trustme.CA, real_key: str) -> None:
        self.release = threading.Event()
        self.held = 0
        super().__init__(ca, real_key)

    def _answer(self, tls: ssl.SSLSocket, method: str, path: str, headers: dict, body: bytes) -> None:
        if b'"stream":true' not in body:
            return super()._answer(tls, method, path, headers, body)
        tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        event = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        tls.sendall(b"%x\r\n%b\r\n" % (len(event), event))
        with self._seen_lock:
            self.held += 1
        self.release.wait(MAX_SECONDS)
        done = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\ndata: [DONE]\n\n'
        tls.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))


def memory_per_stream(tree: Tree, fake: StreamFake, target: Target, streams: int) -> tuple[float, float]:
    """(MB of RSS the worker holds per held stream, its RSS before in MB)."""
    [pid] = tree.worker_pids()
    before = proc_status(pid).get("VmRSS", 0)
    body = (
        b'{"model":"%b","messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":64}'
        % REQUESTED_MODEL.encode()
    )
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {API_HOST}\r\nAuthorization: Bearer {target.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    conns = []
    fake.release.clear()
    fake.held = 0
    try:
        for _ in range(streams):
            conn = Conn(target)
            conn.connect()
            assert conn.sock is not None
            conn.sock.sendall(request)
            conns.append(conn)
        deadline = time.monotonic() + 60
        while fake.held < streams and time.monotonic() < deadline:
            time.sleep(0.05)
        for conn in conns:  # each client has its first event: the stream is open end to end
            assert conn.sock is not None
            while b"Hi" not in conn.buf:
                conn._fill()
        time.sleep(1)
        held = proc_status(pid).get("VmRSS", 0)
    finally:
        fake.release.set()
        for conn in conns:
            conn.close()
    return (held - before) / streams / 1e6, before / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32, help="client threads a round (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=6.0, help="a round's length (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=200, help="streams held for the memory figure; 0: none")
    args = parser.parse_args()
    if not 1 <= args.connections <= MAX_CONNECTIONS or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--connections 1..{MAX_CONNECTIONS}, --seconds up to {MAX_SECONDS:g}")
    if shutil.which("haproxy") is None:
        say("haproxy is not installed (sudo apt-get install -y haproxy): the fleet needs it")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-fleet-"))
    trees: list[Tree] = []
    redis: subprocess.Popen | None = None
    try:
        trust = Trust.made(workdir)
        real_key, virtual_key = "sk-proj-bench-fleet-0000000000000000", "tg-bench-app-fleet-00000000"
        fake = StreamFake(trust.ca, real_key)
        context, common = trust.proxied, trust.common
        store = None
        if shutil.which("redis-server"):
            redis_port = free_port()
            redis = subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
                cwd=workdir,
            )
            store = f"redis://127.0.0.1:{redis_port}/0"
        n_auto = cores()
        counts = {"tollgate-1": 1, "tollgate-2": 2}
        if n_auto not in counts.values():
            counts["tollgate-auto"] = n_auto
        modes: dict[str, Mode] = {}
        port = free_port()
        tree = Tree(
            "bare",
            [mitmdump(), *bare_args(fake.url, common), "--listen-host", "127.0.0.1", "--listen-port", str(port)],
            workdir,
            port,
            1,
        )
        trees.append(tree)
        modes["bare"] = Mode(
            tree, Target("bare", "connect", port, real_key, REQUESTED_MODEL, context=context, server_hostname=API_HOST)
        )
        for name, workers in counts.items():
            data = tollgate_config(
                fake.url, real_key, virtual_key, workdir / f"audit-{name}.jsonl",
                ledger_store=store, metrics_listen=f"127.0.0.1:{free_port()}",
            )  # fmt: skip
            if store is None:
                data.pop("limits")
            config = workdir / f"{name}.yaml"
            config.write_text(yaml.safe_dump(data, sort_keys=False))
            port = free_port()
            command = [sys.executable, "-m", "tollgate", "serve", "--workers", str(workers), "-s", str(GATEWAY)]
            command += ["--set", f"tollgate_config={config}", *common, "--listen-port", str(port)]
            tree = Tree(name, command, workdir, port, workers)
            trees.append(tree)
            target = Target(
                name, "connect", port, virtual_key, OVERRIDDEN_MODEL, context=context, server_hostname=API_HOST
            )
            modes[name] = Mode(tree, target)
        for tree in trees:
            tree.wait_ready()
        time.sleep(2)  # HAProxy's first health checks
        say(f"{os.cpu_count()} CPUs; auto = {n_auto} workers; load average at start {loadavg()}")
        say(f"ledger: {store or 'none (no redis-server): limits left out'}")
        order = list(modes)
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                mode = modes[name]
                cpu0, harness0, programs0 = mode.tree.cpu(), harness_cpu(), mode.tree.cpu_by_program()
                t0 = time.monotonic()
                calls, errors = round_of(mode, args.connections, args.seconds)
                elapsed = time.monotonic() - t0
                cpu, harness = mode.tree.cpu() - cpu0, harness_cpu() - harness0
                warm = args.connections  # the warm-up calls count in the CPU, not in the rate
                mode.rates.append(calls / args.seconds)
                mode.cpu_ms.append(cpu / (calls + warm) * 1000)
                mode.harness_ms.append(harness / (calls + warm) * 1000)
                mode.errors += errors
                mode.calls += calls + warm
                mode.by_program.update({k: (v - programs0[k]) * 1000 for k, v in mode.tree.cpu_by_program().items()})
                say(f"round {r + 1} {name}: {calls / args.seconds:.0f} calls/s, {errors} errors ({elapsed:.1f} s)")
        say("")
        say("| mode | workers | calls/s | calls/s per worker | CPU per call | harness CPU per call | errors |")
        say("|---|---|---|---|---|---|---|")
        for name, mode in modes.items():
            rate = statistics.median(mode.rates)
            workers = mode.tree.workers
            say(
                f"| {name} | {workers} | {rate:.0f} | {rate / workers:.0f} | {statistics.median(mode.cpu_ms):.2f} ms"
                f" | {statistics.median(mode.harness_ms):.2f} ms | {mode.errors} |"
            )
        for name, mode in modes.items():
            if mode.tree.workers > 1:
                split = ", ".join(f"{k} {v / mode.calls:.2f} ms" for k, v in mode.by_program.most_common())
                say(f"{name}: CPU per call by program: {split}")
        one, two = statistics.median(modes["tollgate-1"].rates), statistics.median(modes["tollgate-2"].rates)
        say("")
        say(f"2 workers / 1 worker: {two / one:.2f}x calls/s (goal where the cores are free: >= 1.8x)")
        busy = (
            (statistics.median(modes["tollgate-2"].cpu_ms) + statistics.median(modes["tollgate-2"].harness_ms))
            * two
            / 1000
        )
        say(f"cores busy in the 2-worker rounds: {busy:.2f} of {os.cpu_count()} (Tollgate's tree and the harness)")
        if "tollgate-auto" not in modes:
            say(f"auto: {n_auto} worker(s) here, measured above as tollgate-{n_auto}")
        if args.streams:
            fake_target = modes["tollgate-1"].target
            per_stream, base = memory_per_stream(modes["tollgate-1"].tree, fake, fake_target, args.streams)
            say(
                f"memory: {per_stream * 1000:.0f} KB of RSS per held stream ({args.streams} streams; worker at {base:.0f} MB before)"
            )
        return 0
    finally:
        for tree in trees:
            tree.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
