"""Egress benchmark: what Tollgate adds to a CONNECT's answer and to a tunnel's throughput, next to
bare mitmdump, in one run.

Run from the checkout:

    .venv/bin/python bench/egress.py                          # 2000 CONNECTs, 200 MB each way, 3 rounds
    .venv/bin/python bench/egress.py --connects 500 --mb 50 --rounds 1   # quick
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
            input.host and input.service (cached after the first connection, as the call rules are).

Phases, the modes alternating within each round:

  decision    --connects CONNECTs per mode, each on a new connection, timed from the CONNECT's
              write to its `200` head's last byte (the tunnel is then closed unused). The figure:
              Tollgate's p50 minus bare mitmdump's (target <= 0.2 ms).
  throughput  --mb MB uploaded, then downloaded, through one tunnel per mode and direction, timed
              from the first byte written (upload) or the CONNECT's answer (download) to the end.
              The figure: Tollgate's MB/s over bare mitmdump's (target >= 0.95, the best round of
              each).
  memory      Tollgate's VmRSS before the first phase and after the last (flat: a tunnel keeps none
              of what it relays).

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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import yaml  # noqa: E402

from stream import Proxy, free_port, loadavg, percentile, proc_status  # noqa: E402

ROOT = BENCH.parent
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connects", type=int, default=2000, help="CONNECTs per mode and round")
    parser.add_argument("--mb", type=int, default=200, help="MB per transfer")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * MB

    workdir = Path(tempfile.mkdtemp(prefix="tollgate-egress-bench-"))
    server_port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(server_port), str(size)])
    target = f"127.0.0.1:{server_port}"
    common = ["--set", f"confdir={workdir / 'confdir'}", "--set", "connection_strategy=lazy", "--set", "flow_detail=0"]
    env_path = os.pathsep.join([str(ROOT / "addons"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path
    bare = Proxy("bare", [*common, "--set", r"allow_hosts=^api\.openai\.com:\d+$"], workdir)
    config = tollgate_config(workdir, server_port)
    tollgate = Proxy(
        "tollgate", ["-s", str(ROOT / "addons" / "gateway.py"), *common, "--set", f"tollgate_config={config}"], workdir
    )
    proxies = {"bare": bare, "tollgate": tollgate}
    try:
        for proxy in proxies.values():
            proxy.wait_ready()
        for proxy in proxies.values():  # warm up: a few tunnels each, the policy's first decision made
            decisions(proxy.port, target, 50)
        rss_before = proc_status(tollgate.pid).get("VmRSS", 0)
        print(f"load average before: {loadavg()}")
        times: dict[str, list[float]] = {name: [] for name in proxies}
        up: dict[str, list[float]] = {name: [] for name in proxies}
        down: dict[str, list[float]] = {name: [] for name in proxies}
        for r in range(args.rounds):
            order = list(proxies.items()) if r % 2 == 0 else list(reversed(proxies.items()))
            for name, proxy in order:
                times[name] += decisions(proxy.port, target, args.connects)
            for name, proxy in order:
                up[name].append(upload(proxy.port, target, size))
                down[name].append(download(proxy.port, target, size))
            rss = proc_status(tollgate.pid).get("VmRSS", 0)
            print(
                f"round {r + 1}: p50 bare {percentile(times['bare'], 50):.3f} ms, tollgate"
                f" {percentile(times['tollgate'], 50):.3f} ms; up {up['bare'][-1]:.0f} / {up['tollgate'][-1]:.0f} MB/s,"
                f" down {down['bare'][-1]:.0f} / {down['tollgate'][-1]:.0f} MB/s; tollgate RSS {rss / 2**20:.1f} MiB"
            )
        rss_after = proc_status(tollgate.pid).get("VmRSS", 0)
        print(f"load average after: {loadavg()}")
        print()
        print(f"CONNECT to its 200 ({len(times['bare'])} per mode), ms:")
        for name in proxies:
            p = [percentile(times[name], q) for q in (50, 90, 99)]
            print(f"  {name:9} p50 {p[0]:.3f}  p90 {p[1]:.3f}  p99 {p[2]:.3f}")
        added = percentile(times["tollgate"], 50) - percentile(times["bare"], 50)
        print(f"  Tollgate adds {added:.3f} ms at p50 (target <= 0.2 ms): {'ok' if added <= 0.2 else 'MISSED'}")
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
