"""Egress benchmark: what Tollgate adds to a CONNECT's answer and to a tunnel's throughput, next to
bare mitmdump, in one run.

Run from the checkout:

    .venv/bin/python bench/egress.py                          # 2000 CONNECTs, 200 MB each way, 3 rounds
    .venv/bin/python bench/egress.py --connects 500 --mb 50 --rounds 1   # quick
    .venv/bin/python bench/egress.py --instructions          # instructions per CONNECT under callgrind (about 6 min)
    .venv/bin/python bench/egress.py --help

A plain TCP server (a process of its own, on 127.0.0.1) either sinks `--mb` MB of what a connection
sends and answers one byte (upload), or sends `--mb` MB as soon as a connection opens (download).
The client (this process, raw sockets) reaches it through a CONNECT to 127.0.0.1:PORT:

  bare      plain mitmdump with `allow_hosts` set to an API host, so that every other connection
            is relayed unread (an ignored TCP layer), as Tollgate's tunnels are, and
            connection_strategy=lazy (Tollgate sets it too);
  tollgate  mitmdump -s addons/gateway.py with `egress`: ten deny globs, the server's address in
            `allow`, `record: all` (every tunnel counted and recorded in the audit file, the most
            it does), a service added to the catalogue, and a policy with egress rules reading
            input.host and input.service (cached after the first connection, as the call rules are);
  patched   bare mitmdump with Tollgate's hook dispatch patch alone (`bench/dispatch_patched.py`):
            Tollgate makes mitmproxy's own dispatch of every hook cheaper, so this is the reference
            for what Tollgate's own work adds.

Phases, the modes alternating within each round:

  decision    --connects CONNECTs per mode, the modes taking turns one CONNECT each, each on a new
              connection, timed from the CONNECT's write to its `200` head's last byte (the
              tunnel is then closed unused). The figure:
              Tollgate's p50 minus bare mitmdump's (target <= 0.2 ms); beside it the median of
              the differences between the CONNECTs made one after the other, and the CPU time
              each mitmdump used per CONNECT (its threads' schedstat over the phase).
  throughput  --mb MB uploaded, then downloaded, through one tunnel per mode and direction, timed
              from the first byte written (upload) or the CONNECT's answer (download) to the end.
              The figure: Tollgate's MB/s over bare mitmdump's (target >= 0.95, the best round of
              each).
  memory      Tollgate's VmRSS before the first phase and after the last (flat: a tunnel keeps none
              of what it relays).

With --instructions it counts instead what each mitmdump executes per CONNECT under valgrind's
callgrind (bench/instructions.py's tool), which is the same from run to run within a few tenths
of a percent where the times above move by tenths of a millisecond: bare mitmdump, Tollgate as
above, Tollgate with `record: none`, and bare mitmdump with the dispatch patch; and per MB relayed
through a tunnel, --mb MB (20) up and down. Each count is taken over --connects CONNECTs (or the
transfer), less what the process executes meanwhile on its own (its timers: the same count over 20
idle seconds, scaled to the CONNECTs' time). Under valgrind time runs some 50x slower, so the
audit's writer, which batches the records that come within 0.25 s, writes each record alone:
recording weighs more here than at speed.

The load average is printed: run it when the machine is quiet.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import yaml  # noqa: E402

from stream import Proxy, cpu_ns, free_port, loadavg, percentile, proc_status  # noqa: E402

ROOT = BENCH.parent
BARE_HOSTS = ["--set", r"allow_hosts=^api\.openai\.com:\d+$"]
# Bare mitmdump with Tollgate's hook dispatch patch alone: what of Tollgate's figures is its own work.
DISPATCH_PATCHED = ["-s", str(BENCH / "dispatch_patched.py")]
MB = 1_000_000
CHUNK = 256 * 1024

SERVER = textwrap.dedent("""
    import socket, sys, threading
    size = int(sys.argv[2])
    chunk = b"d" * 262144
    def serve(conn):
        with conn:
            mode = conn.recv(1)
            if mode == b"u":  # upload: sink `size` bytes, then say so
                left = size
                while left > 0:
                    got = conn.recv(min(left, 1048576))
                    if not got:
                        return
                    left -= len(got)
                conn.sendall(b"k")
            elif mode == b"d":  # download: `size` bytes, then close
                left = size
                while left > 0:
                    n = min(left, len(chunk))
                    conn.sendall(chunk[:n])
                    left -= n
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        c, _ = listener.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
""")

POLICY = """package tollgate.egress

deny contains "no paste sites" if endswith(input.host, ".paste.example")

deny contains sprintf("%s is not for this team", [input.service]) if input.service == "replicate"
"""
CALL_POLICY = """package tollgate

deny contains "never" if input.model == "forbidden-model"
"""


def tollgate_config(workdir: Path, port: int) -> Path:
    (workdir / "egress.rego").write_text(POLICY)
    (workdir / "calls.rego").write_text(CALL_POLICY)
    config = {
        "audit": {"path": str(workdir / "audit.jsonl")},
        "policy": {"rego": ["egress.rego", "calls.rego"]},
        "egress": {
            "allow": ["127.0.0.1"],
            "deny": [f"*.blocked{i}.example" for i in range(10)],
            "record": "all",
            "services": {"bench_sink": ["127.0.0.1"]},
        },
    }
    path = workdir / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def connect(proxy_port: int, target: str) -> tuple[socket.socket, int]:
    """A CONNECT through the proxy: the socket, and the ns from its write to its answer's head."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    start = time.perf_counter_ns()
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"the proxy closed the CONNECT: {head!r}")
        head += chunk
    elapsed = time.perf_counter_ns() - start
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"CONNECT refused: {head!r}")
    return sock, elapsed


def decisions(proxy_port: int, target: str, count: int) -> list[float]:
    """`count` CONNECTs' times to their answer, in ms."""
    times = []
    for _ in range(count):
        sock, elapsed = connect(proxy_port, target)
        sock.close()
        times.append(elapsed / 1e6)
    return times


def upload(proxy_port: int, target: str, size: int) -> float:
    """MB/s of `size` bytes sent through a tunnel, to the server's acknowledgement."""
    sock, _ = connect(proxy_port, target)
    data = memoryview(bytes(CHUNK))  # not letters: mitmproxy would wait for an HTTP request line
    with sock:
        sock.sendall(b"u")
        start = time.perf_counter()
        left = size
        while left > 0:
            n = min(left, CHUNK)
            sock.sendall(data[:n])
            left -= n
        if sock.recv(1) != b"k":
            raise RuntimeError("the upload was not acknowledged")
        return size / MB / (time.perf_counter() - start)


def download(proxy_port: int, target: str, size: int) -> float:
    """MB/s of `size` bytes received through a tunnel."""
    sock, _ = connect(proxy_port, target)
    buffer = bytearray(1 << 20)
    with sock:
        sock.sendall(b"d")
        start = time.perf_counter()
        got = 0
        while got < size:
            n = sock.recv_into(buffer)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - start
    if got != size:
        raise RuntimeError(f"downloaded {got} of {size} bytes")
    return size / MB / elapsed


def decision_cost(workdir: Path, count: int = 100_000) -> float:
    """Tollgate's decision on a CONNECT, in this process, in its one call (`Egress.decide`): the
    egress rules of the bench's configuration on a host they allow (deny globs, the default, the
    catalogue's lookup, the policy's cached decision), in µs per connection. What the proxy adds on top is the hook's
    dispatch and the `connection`'s bookkeeping."""
    sys.path.insert(0, str(ROOT / "addons"))
    from tollgate.configuration.config import load_config
    from tollgate.configuration.runtime import Loaded
    from tollgate.governance.egress.egress import Asked, host_of
    from tollgate.governance.policy.policy import EGRESS_DECISION, Policy, egress_facts

    config = load_config(workdir / "tollgate.yaml")
    policy = Policy(config.policy.rego)
    egress = Loaded.build(config, policy).egress
    hosts = [f"host{i}.example.com" for i in range(50)] + ["127.0.0.1"]
    for host in hosts:  # the policy's decisions cached, as after a connection each
        service = egress.service_of(host)
        policy.decide(
            EGRESS_DECISION, egress_facts(None, None, "127.0.0.1:50000", host, 443, None, service and service.name)
        )
    start = time.perf_counter_ns()
    for i in range(count):
        host = host_of(hosts[i % len(hosts)])
        decided = egress.decide(Asked(host, 443, source=f"127.0.0.1:{50000 + i % 1000}"), policy)
        assert not hasattr(decided, "__await__")  # the policy's decision cached, no name looked up
    return (time.perf_counter_ns() - start) / count / 1000


IDLE_S = 20.0  # seconds of idle counted per mitmdump, to take its timers' work out of the CONNECTs'


def count_instructions(connects: int, mb: int) -> int:
    """Instructions per CONNECT, and per MB relayed each way, of bare mitmdump and of Tollgate
    (`record: all` and `none`)."""
    from instructions import START_TIMEOUT, Counted

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-egress-instructions-"))
    server_port = free_port()
    size = mb * MB
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(server_port), str(size)])
    target = f"127.0.0.1:{server_port}"
    common = ["--set", f"confdir={workdir / 'confdir'}", "--set", "connection_strategy=lazy", "--set", "flow_detail=0"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "addons"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    config = tollgate_config(workdir, server_port)
    unrecorded = workdir / "tollgate-unrecorded.yaml"
    data = yaml.safe_load(config.read_text())
    data["egress"]["record"] = "none"
    data["audit"]["path"] = str(workdir / "audit-unrecorded.jsonl")  # one process per audit file
    unrecorded.write_text(yaml.safe_dump(data))
    gateway = ["-s", str(ROOT / "addons" / "gateway.py"), *common]
    proxies = {
        "bare mitmdump": Counted("bare", [*common, *BARE_HOSTS], workdir),
        "Tollgate": Counted("tollgate", [*gateway, "--set", f"tollgate_config={config}"], workdir),
        "Tollgate, record: none": Counted("unrecorded", [*gateway, "--set", f"tollgate_config={unrecorded}"], workdir),
        "bare, dispatch patched": Counted("patched", [*DISPATCH_PATCHED, *common, *BARE_HOSTS], workdir),
    }
    counted: dict[str, tuple[float, float, float]] = {}
    try:
        for proxy in proxies.values():
            proxy.wait_ready(START_TIMEOUT)
        for name, proxy in proxies.items():
            decisions(proxy.port, target, 30)  # warm: the policy's first decision made
            idle = proxy.counted(lambda: (time.sleep(IDLE_S), IDLE_S)[1])

            def less_idle(work: Callable[[], float], proxy: Counted = proxy, idle: float = idle) -> float:
                start = time.monotonic()
                total = proxy.counted(lambda: (work(), 1)[1])
                return total - idle * (time.monotonic() - start)

            per_connect = less_idle(lambda proxy=proxy: decisions(proxy.port, target, connects)) / connects
            up = less_idle(lambda proxy=proxy: upload(proxy.port, target, size)) / mb
            down = less_idle(lambda proxy=proxy: download(proxy.port, target, size)) / mb
            counted[name] = (per_connect, up, down)
            print(f"  {name}: {per_connect / 1e3:.0f} k a CONNECT ({idle / 1e3:.0f} k a second idle)", file=sys.stderr)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        server.terminate()
        server.wait(timeout=10)
    bare = counted["bare mitmdump"]
    print(f"instructions, timers taken out ({connects} CONNECTs; {mb} MB up and down through one tunnel each):")
    print(f"  {'':<24} {'per CONNECT':>24} {'per MB up':>18} {'per MB down':>18}")
    for name, values in counted.items():
        cells = [f"{v / 1e6:7.3f} M {v / b:6.3f}x" for v, b in zip(values, bare, strict=True)]
        print(f"  {name:<24} {cells[0]:>24} {cells[1]:>18} {cells[2]:>18}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connects", type=int, help="CONNECTs per mode and round (2000; 200 with --instructions)")
    parser.add_argument("--mb", type=int, help="MB per transfer (200; 20 with --instructions)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true", help="count instructions per CONNECT under callgrind")
    args = parser.parse_args()
    if args.instructions:
        return count_instructions(args.connects or 200, args.mb or 20)
    args.connects, args.mb = args.connects or 2000, args.mb or 200
    size = args.mb * MB

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-egress-bench-"))
    server_port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(server_port), str(size)])
    target = f"127.0.0.1:{server_port}"
    common = ["--set", f"confdir={workdir / 'confdir'}", "--set", "connection_strategy=lazy", "--set", "flow_detail=0"]
    env_path = os.pathsep.join([str(ROOT / "addons"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path
    bare = Proxy("bare", [*common, *BARE_HOSTS], workdir)
    patched = Proxy("patched", [*DISPATCH_PATCHED, *common, *BARE_HOSTS], workdir)
    config = tollgate_config(workdir, server_port)
    tollgate = Proxy(
        "tollgate", ["-s", str(ROOT / "addons" / "gateway.py"), *common, "--set", f"tollgate_config={config}"], workdir
    )
    proxies = {"bare": bare, "tollgate": tollgate, "patched": patched}
    try:
        for proxy in proxies.values():
            proxy.wait_ready()
        for proxy in proxies.values():  # warm up: a few tunnels each, the policy's first decision made
            decisions(proxy.port, target, 50)
        rss_before = proc_status(tollgate.pid).get("VmRSS", 0)
        print(f"load average before: {loadavg()}")
        times: dict[str, list[float]] = {name: [] for name in proxies}
        cpu = dict.fromkeys(proxies, 0)  # ns of CPU each mitmdump used over the CONNECTs
        up: dict[str, list[float]] = {name: [] for name in proxies}
        down: dict[str, list[float]] = {name: [] for name in proxies}
        for r in range(args.rounds):
            order = list(proxies.items()) if r % 2 == 0 else list(reversed(proxies.items()))
            before = {name: cpu_ns(proxy.pid) for name, proxy in proxies.items()}
            for _ in range(args.connects):  # one CONNECT of each mode in turn: the machine's drift is shared
                for name, proxy in order:
                    times[name] += decisions(proxy.port, target, 1)
            for name, proxy in proxies.items():
                cpu[name] += cpu_ns(proxy.pid) - before[name]
            for name, proxy in order:
                up[name].append(upload(proxy.port, target, size))
                down[name].append(download(proxy.port, target, size))
            rss = proc_status(tollgate.pid).get("VmRSS", 0)
            print(
                f"round {r + 1}: p50 bare {percentile(times['bare'], 50):.3f} ms, tollgate"
                f" {percentile(times['tollgate'], 50):.3f} ms, patched {percentile(times['patched'], 50):.3f} ms;"
                f" up {up['bare'][-1]:.0f} / {up['tollgate'][-1]:.0f} MB/s,"
                f" down {down['bare'][-1]:.0f} / {down['tollgate'][-1]:.0f} MB/s; tollgate RSS {rss / 2**20:.1f} MiB"
            )
        rss_after = proc_status(tollgate.pid).get("VmRSS", 0)
        cost = decision_cost(workdir)
        print(f"load average after: {loadavg()}")
        print()
        print(f"CONNECT to its 200 ({len(times['bare'])} per mode), ms:")
        for name in proxies:
            p = [percentile(times[name], q) for q in (50, 90, 99)]
            print(f"  {name:9} p50 {p[0]:.3f}  p90 {p[1]:.3f}  p99 {p[2]:.3f}")
        added = percentile(times["tollgate"], 50) - percentile(times["bare"], 50)
        print(f"  Tollgate adds {added:.3f} ms at p50 (target <= 0.2 ms): {'ok' if added <= 0.2 else 'MISSED'}")
        # Each CONNECT of one mode against the other mode's made just before or after it: what the
        # machine's drift adds to both cancels out.
        paired = [t - b for t, b in zip(times["tollgate"], times["bare"], strict=True)]
        print(f"  the median of the paired differences: {percentile(paired, 50):.3f} ms")
        own = percentile(times["tollgate"], 50) - percentile(times["patched"], 50)
        print(f"  Tollgate's own work: {own:.3f} ms at p50 over bare mitmdump with its dispatch patch alone")
        print(f"  the decision itself, in process (cached policy): {cost:.1f} µs per CONNECT")
        per_connect = {name: cpu[name] / len(times[name]) / 1e3 for name in proxies}
        print(
            f"  CPU per CONNECT: bare {per_connect['bare']:.0f} µs, tollgate {per_connect['tollgate']:.0f} µs"
            f" ({per_connect['tollgate'] / per_connect['bare']:.3f}x), patched {per_connect['patched']:.0f} µs"
        )
        print(f"throughput, {args.mb} MB through one tunnel, best of {args.rounds}, MB/s:")
        ok = added <= 0.2
        for label, figures in (("upload", up), ("download", down)):
            ratio = max(figures["tollgate"]) / max(figures["bare"])
            ok = ok and ratio >= 0.95
            print(
                f"  {label:9} bare {max(figures['bare']):.0f}  tollgate {max(figures['tollgate']):.0f}"
                f"  ratio {ratio:.3f} (target >= 0.95): {'ok' if ratio >= 0.95 else 'MISSED'}"
            )
        print(
            f"Tollgate VmRSS: {rss_before / 2**20:.1f} MiB before, {rss_after / 2**20:.1f} MiB after"
            f" ({(rss_after - rss_before) / 2**20:+.1f} MiB over {2 * args.rounds} transfers of {args.mb} MB"
            f" and {args.rounds * args.connects} CONNECTs)"
        )
        records = sum(1 for line in (workdir / "audit.jsonl").read_text().splitlines() if '"connection"' in line)
        print(f"connection records written: {records}")
        return 0 if ok else 1
    finally:
        for proxy in proxies.values():
            proxy.stop()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
