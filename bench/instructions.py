"""Instructions per call: what Tollgate adds to bare mitmdump, counted by valgrind, not timed.

bench/overhead.py times calls and counts CPU, and on a shared 2-core machine its ratios move by
about ±0.05 from run to run. This counts the machine instructions each mitmdump executes per call
(valgrind's callgrind, instrumentation switched on only while the calls are made), which is the
same from run to run within a few tenths of a percent: the tool to see whether a change to the hot
path helps. It is not a speed figure: under valgrind, time runs about 50× slower, so work done on
timers (the audit writer's batching, the upstream timeout sweep) weighs more than it does at speed,
and cache misses cost nothing.

Both mitmdumps are set up as in bench/overhead.py, against the same TLS fake upstream, with one
difference: Tollgate runs without its Rego policy, whose evaluation happens in a worker process
that callgrind does not follow. The calls are non-streamed OpenAI chat calls on kept-alive
connections, made after a warm-up; with --connections N they are spread over N connections at
once, as in overhead.py's concurrent phase. A third mitmdump is bare mitmdump with Tollgate's hook
dispatch patch alone (`bench/dispatch_patched.py`): Tollgate makes mitmproxy's own dispatch of
every hook cheaper, so that one is the reference for what Tollgate's own work adds.

With --stream, it counts streams instead: bench/stream.py's mitmdumps and fake upstream, for each
format and event size the instructions per upstream MB of a stream's body (an 8-MiB stream's count
less a 4-MiB one's, so that what the call costs once cancels out). These move by several percent
from run to run: where mitmproxy's reads fall in a stream depends on timing, and so does its work
per piece.

    sudo apt-get install valgrind                  # once
    .venv/bin/python bench/instructions.py         # about 3 min
    .venv/bin/python bench/instructions.py --connections 16 --calls 192
    .venv/bin/python bench/instructions.py --retry  # and Tollgate with retry configured (about 5 min)
    .venv/bin/python bench/instructions.py --otlp   # and Tollgate shipping its audit (audit.otlp, about 5 min)
    .venv/bin/python bench/instructions.py --postgres  # and Tollgate sending its audit to PostgreSQL (audit.postgres)
    .venv/bin/python bench/instructions.py --stream openai-chat,bedrock-invoke --event-bytes 256   # about 1 min
"""

from __future__ import annotations

import argparse
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import trustme  # noqa: E402
import yaml  # noqa: E402

import stream  # noqa: E402
from overhead import (  # noqa: E402
    OVERRIDDEN_MODEL,
    REQUESTED_MODEL,
    ChatFake,
    Conn,
    Target,
    bare_args,
    tollgate_config,
)
from stream import API_HOST, Proxy, ensure_bundle  # noqa: E402

ROOT = BENCH.parent
VIRTUAL_KEY = "tg-bench-app-0123456789abcdef"
REAL_KEY = "sk-proj-bench-0123456789abcdef"
START_TIMEOUT = 600.0  # mitmdump's imports alone take about a minute under valgrind
SMALLER_STREAM_MB = 4  # the stream whose count is taken from the larger one's (3 events of 1 MiB and more)
STREAM_TIMEOUT = 900.0  # one counted stream: time runs some 50x slower under valgrind


class Counted(Proxy):
    """A mitmdump under callgrind, instrumentation off until `count` switches it on."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.out = workdir / f"{name}.callgrind"
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}"]
        super().__init__(name, args, workdir, launcher=[*valgrind, sys.executable])
        self.dumps = 0

    def control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True, capture_output=True, timeout=120)

    def counted(self, work: Callable[[], float]) -> float:
        """Instructions this mitmdump executes while `work` runs, per unit of what it returns."""
        self.control("--zero")
        self.control("--instr=on")
        units = work()
        self.control("--instr=off")
        self.dumps += 1
        trigger = f"counted-{self.dumps}"
        self.control(f"--dump={trigger}")
        marker = f"Trigger: dump {trigger}\n".encode()
        dumped = [p for p in self.out.parent.glob(f"{self.out.name}*") if marker in p.read_bytes()]
        totals = re.search(rb"^totals: (\d+)", dumped[0].read_bytes(), re.MULTILINE)
        return int(totals.group(1)) / units

    def count(self, target: Target, calls: int, connections: int) -> float:
        """Instructions per call over `calls` calls on `connections` connections opened and warmed before."""
        conns = [Conn(target) for _ in range(connections)]
        for conn in conns:
            for _ in range(3):
                conn.call()
        per_conn = calls // connections

        def work() -> float:
            workers = [threading.Thread(target=lambda c=c: [c.call() for _ in range(per_conn)]) for c in conns]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=900)
            return per_conn * connections

        try:
            return self.counted(work)
        finally:
            for conn in conns:
                conn.close()


class CountedStreams(stream.Bench):
    """bench/stream.py's two mitmdumps and fake upstream, each mitmdump under callgrind."""

    proxy_class = Counted
    start_timeout = START_TIMEOUT

    def per_mb(self, mode: str, cell: stream.Cell, size_mb: int) -> float:
        """Instructions per upstream MB that a stream's body costs, its call's own cost taken out:
        a `size_mb` stream's count less a smaller one's, over the MB between them (after a warm-up).
        Both are long enough to end in the same events: what is read at the end cancels out."""
        self.run_call(mode, stream.Scenario.bulk(cell.fmt, cell.event_bytes, stream.MiB), STREAM_TIMEOUT)
        small, small_mb = self.count_stream(mode, cell, SMALLER_STREAM_MB)
        large, large_mb = self.count_stream(mode, cell, size_mb)
        return (large - small) / (large_mb - small_mb)

    def count_stream(self, mode: str, cell: stream.Cell, size_mb: int) -> tuple[float, float]:
        """Instructions of one bulk stream of `size_mb`, and its upstream MB."""
        scenario = stream.Scenario.bulk(cell.fmt, cell.event_bytes, size_mb * stream.MiB)
        proxy = self.proxies[mode]
        assert isinstance(proxy, Counted)
        return proxy.counted(
            lambda: (self.run_call(mode, scenario, STREAM_TIMEOUT), 1)[1]
        ), scenario.bytes_sent / stream.MB


def count_streams(args: argparse.Namespace) -> int:
    """Instructions per MB of stream, bare mitmdump and Tollgate, for each format and event size."""
    formats = [stream.FORMATS[name.strip()] for name in args.stream.split(",") if name.strip()]
    sizes = [int(size) for size in args.event_bytes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        bench = CountedStreams(
            argparse.Namespace(
                quiet_proxies=True, size_mb=args.size_mb, bulk_timeout=0, time_tap=False, control=False, unread=False
            ),
            Path(work),
        )
        try:
            bench.setup()
            for fmt in formats:
                for event_bytes in sizes:
                    cell = stream.Cell(fmt, event_bytes)
                    counts = {mode: bench.per_mb(mode, cell, args.size_mb) for mode in ("bare", "tollgate")}
                    rows.append((cell.name, counts["bare"], counts["tollgate"]))
                    print(f"  {cell.name}: {counts['tollgate'] / counts['bare']:.3f}x", file=sys.stderr)
        finally:
            bench.stop()
    print(
        f"instructions per upstream MB of stream body ({args.size_mb}-MiB stream less a {SMALLER_STREAM_MB}-MiB one):"
    )
    print(f"  {'format':<40} {'bare':>10} {'Tollgate':>10} {'Tollgate / bare':>16}")
    for name, bare, tollgate in rows:
        print(f"  {name:<40} {bare / 1e6:9.2f}M {tollgate / 1e6:9.2f}M {tollgate / bare:15.3f}x")
    return 0


class Collector:
    """An OTLP/HTTP collector that takes every request (200) and counts the bytes it was sent."""

    def __init__(self) -> None:
        self.received = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                collector.received += len(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls counted per mitmdump")
    parser.add_argument("--connections", type=int, default=1, help="connections the calls are spread over")
    parser.add_argument(
        "--stream",
        metavar="FORMATS",
        help=f"count streams instead of calls: comma-separated formats of bench/stream.py ({', '.join(stream.FORMATS)})",
    )
    parser.add_argument("--event-bytes", default="256,65536,1048576", help="with --stream: comma-separated event sizes")
    parser.add_argument(
        "--size-mb", type=int, default=8, help="with --stream: MiB of the larger stream counted per cell"
    )
    parser.add_argument(
        "--retry",
        action="store_true",
        help="also count a third mitmdump, Tollgate with providers.openai.retry configured (calls that need none)",
    )
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="also count Tollgate shipping its audit to a collector (audit.otlp: the exporter's thread included)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also count Tollgate sending its audit to a PostgreSQL started here (audit.postgres: the sender's thread"
        " included)",
    )
    args = parser.parse_args()
    if args.stream and args.size_mb <= SMALLER_STREAM_MB:
        parser.error(f"--size-mb must be over {SMALLER_STREAM_MB}")
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.stream:
        return count_streams(args)
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        ca = trustme.CA()
        ca_pem = workdir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        fake = ChatFake(ca, REAL_KEY)
        confdir = workdir / "confdir"
        context = ssl.create_default_context(cafile=str(ensure_bundle(confdir)))
        context.set_alpn_protocols(["http/1.1"])
        common = [
            "--set",
            f"confdir={confdir}",
            "--set",
            f"ssl_verify_upstream_trusted_ca={ca_pem}",
            "--set",
            "flow_detail=0",
        ]
        config = workdir / "tollgate.yaml"
        data = tollgate_config(fake.url, REAL_KEY, VIRTUAL_KEY, workdir / "audit.jsonl", policies=())
        config.write_text(yaml.safe_dump(data))
        gateway = ["-s", str(ROOT / "addons" / "gateway.py")]
        # Each mode: its console's name, its arguments, the key and model its calls send.
        modes = {
            "bare mitmdump": ("bare", bare_args(fake.url, common), REAL_KEY, REQUESTED_MODEL),
            "Tollgate (no policy)": (
                "tollgate", [*gateway, "--set", f"tollgate_config={config}", *common], VIRTUAL_KEY, OVERRIDDEN_MODEL,
            ),
            # Tollgate makes mitmproxy's dispatch of every hook cheaper (`patches.dispatch`): bare
            # mitmdump with that patch alone is the reference for Tollgate's own work.
            "bare, dispatch patched": (
                "patched", ["-s", str(ROOT / "bench" / "dispatch_patched.py"), *bare_args(fake.url, common)],
                REAL_KEY, REQUESTED_MODEL,
            ),
        }  # fmt: skip
        if args.retry:  # the same, its calls never failing: what retries configured cost a call
            data["audit"] = {"path": str(workdir / "audit-retry.jsonl")}
            data["providers"]["openai"]["retry"] = {"attempts": 3, "when": [429, 529, "5xx", "connect", "timeout"]}
            retry_config = workdir / "tollgate-retry.yaml"
            retry_config.write_text(yaml.safe_dump(data))
            modes["Tollgate, retry"] = (
                "tollgate-retry", [*gateway, "--set", f"tollgate_config={retry_config}", *common], VIRTUAL_KEY,
                OVERRIDDEN_MODEL,
            )  # fmt: skip
        collector = None
        if args.otlp:  # the same, its audit shipped: what the export costs a call
            collector = Collector()
            data["audit"] = {"path": str(workdir / "audit-otlp.jsonl"), "otlp": {"endpoint": collector.url}}
            data["providers"]["openai"].pop("retry", None)
            otlp_config = workdir / "tollgate-otlp.yaml"
            otlp_config.write_text(yaml.safe_dump(data))
            modes["Tollgate, audit.otlp"] = (
                "tollgate-otlp", [*gateway, "--set", f"tollgate_config={otlp_config}", *common], VIRTUAL_KEY,
                OVERRIDDEN_MODEL,
            )  # fmt: skip
        postgres = None
        if args.postgres:  # the same, its audit sent to PostgreSQL: what the sender costs a call
            from tests.support.postgres_server import PostgresServer, postgres_bin

            if postgres_bin() is None:
                print("PostgreSQL is not installed (Debian: apt-get install -y postgresql)", file=sys.stderr)
                return 2
            postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))).start()
            data["audit"] = {"path": str(workdir / "audit-postgres.jsonl"), "postgres": {"dsn": postgres.dsn()}}
            data["providers"]["openai"].pop("retry", None)
            postgres_config = workdir / "tollgate-postgres.yaml"
            postgres_config.write_text(yaml.safe_dump(data))
            modes["Tollgate, audit.postgres"] = (
                "tollgate-postgres", [*gateway, "--set", f"tollgate_config={postgres_config}", *common], VIRTUAL_KEY,
                OVERRIDDEN_MODEL,
            )  # fmt: skip
        proxies = {name: Counted(short, proxy_args, workdir) for name, (short, proxy_args, _, _) in modes.items()}
        counted: dict[str, float] = {}
        sent = 0
        try:
            for proxy in proxies.values():
                proxy.wait_ready(START_TIMEOUT)
            for name, (_, _, key, model) in modes.items():
                target = Target(
                    name, "connect", proxies[name].port, key, model, context=context, server_hostname=API_HOST
                )
                try:
                    counted[name] = proxies[name].count(target, args.calls, args.connections)
                    if name == "Tollgate, audit.otlp":
                        # The records of the calls counted are sent within the batch's second (and
                        # counted): under valgrind, time runs about 50× slower than the calls'.
                        assert collector is not None and collector.received > 0, "the collector received nothing"
                    if name == "Tollgate, audit.postgres":
                        assert postgres is not None
                        with postgres.connect() as conn:
                            row = conn.execute("SELECT count(*) FROM tollgate_records").fetchone()
                        sent = int(row[0]) if row else 0
                        assert sent > 0, "the table received nothing"
                except Exception:
                    print(f"{name} failed; its console:\n{proxies[name].console()}", file=sys.stderr)
                    raise
        finally:
            for proxy in proxies.values():
                proxy.stop()
            fake.close()
            if collector is not None:
                collector.close()
            if postgres is not None:
                postgres.stop()
                shutil.rmtree(postgres.directory, ignore_errors=True)
    bare, tollgate = counted["bare mitmdump"], counted["Tollgate (no policy)"]
    print(f"instructions per call, {args.calls} calls on {args.connections} connection(s):")
    for name, value in counted.items():
        print(f"  {name:<22} {value / 1e6:7.3f} M")
    print(f"  Tollgate adds          {(tollgate - bare) / 1e3:7.0f} k ({tollgate / bare:.3f}× bare)")
    patched = counted["bare, dispatch patched"]
    print(
        f"  its own work           {(tollgate - patched) / 1e3:7.0f} k ({tollgate / patched:.3f}× bare, dispatch patched)"
    )
    if "Tollgate, retry" in counted:
        retry = counted["Tollgate, retry"]
        print(f"  retry configured adds  {(retry - tollgate) / 1e3:7.0f} k ({retry / tollgate:.4f}× Tollgate without)")
    if "Tollgate, audit.otlp" in counted:
        otlp = counted["Tollgate, audit.otlp"]
        print(f"  audit.otlp adds        {(otlp - tollgate) / 1e3:7.0f} k ({otlp / tollgate:.4f}× Tollgate without)")
    if "Tollgate, audit.postgres" in counted:
        pg = counted["Tollgate, audit.postgres"]
        print(
            f"  audit.postgres adds    {(pg - tollgate) / 1e3:7.0f} k ({pg / tollgate:.4f}× Tollgate without;"
            f" {sent} rows in the table when the count stopped)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
