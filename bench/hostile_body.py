"""What one hostile body's scan costs the other callers: a body of digits in groups of four (a card's
shape at every group, none a card: the detectors' slowest text), or one run of digits, sent through
a real mitmdump with Tollgate whose guardrails look for `secrets` and `pii`, and beside it 20 small
chat calls; each small call's latency, less the median of the same 20 calls made without the
hostile one, is what the hostile body added to it.

    .venv/bin/python bench/hostile_body.py                      # this checkout (about 2 min)
    .venv/bin/python bench/hostile_body.py --baseline DIR       # and DIR's Tollgate (a worktree of main)
    .venv/bin/python bench/hostile_body.py --sizes 60000 --shape digits --rounds 3
    .venv/bin/python bench/hostile_body.py --held               # in process, no proxy (about 20 s)
    .venv/bin/python bench/hostile_body.py --shape cards --sizes 5000000   # a body to redact
    .venv/bin/python bench/hostile_body.py --redaction --baseline DIR      # the same in process (1 min)

`--held` measures what the proxy's figures are made of, without them: the CPU time a body's scan
holds the event loop (`ScanWorkers.run`'s part on the caller's thread: the whole scan where it is
read at once, the pass up to its bound where it goes to a worker thread), best of 5, for hostile
bodies of several shapes and sizes under 64 KiB, beside the same bodies all read at once.

`--redaction` measures the redaction of one body of card numbers (the last of `--sizes`; each a
finding to redact) as Tollgate reads a large body, in a worker thread, beside an event loop that
takes a turn every millisecond: the reading's CPU time, the loop's longest wait for its turn, and
the garbage collector's full collections meanwhile; for this checkout and `--baseline`'s, each in
a process of its own.

One fake upstream (threads of this process, TLS, tests/support's FakeUpstream with its canned
answers) serves both Tollgates in turn. Each small call has a kept-alive connection of its own
through the proxy, opened and warmed up before timing; a call is timed from its request's first
byte to its answer's last. A round: the 20 small calls alone, begun `--spacing` apart (each on its
own thread); then the large call, and once its body has been written the same 20 calls begun the
same way. The figures are over every round: the worst and the median added latency of the small
calls, and the large call's own time."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
# `--redaction` measures another checkout's Tollgate in a process of its own, given its addons here.
sys.path.insert(0, os.environ.get("TOLLGATE_BENCH_ADDONS", str(ROOT / "addons")))

import trustme  # noqa: E402
import yaml  # noqa: E402
from tests.support.canned import provider_answers  # noqa: E402
from tests.support.fake_upstream import FakeUpstream  # noqa: E402

from tollgate.proxy.certs import ensure_bundle  # noqa: E402

VIRTUAL = "tg-hostile-bench-0001"
HOST = "api.openai.com"
SMALL = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()


def card_number(rng: random.Random) -> str:
    """A Visa test number's shape whose Luhn check holds: a `payment_card` finding."""
    digits = "4111" + "".join(rng.choices("0123456789", k=11))
    total = sum(sum(divmod(int(d) * (2 - i % 2), 10)) for i, d in enumerate(reversed(digits)))
    return digits + str(-total % 10)


def hostile_body(size: int, shape: str) -> bytes:
    """A chat body of about `size` bytes of content: one run of digits, digits in groups of four, or
    card numbers (each one to redact)."""
    rng = random.Random(7)
    if shape == "digits":
        content = "".join(rng.choices("0123456789", k=size))
    elif shape == "cards":
        content = " ".join(card_number(rng) for _ in range(size // 17))
    else:
        content = " ".join("".join(rng.choices("0123456789", k=4)) for _ in range(size // 5))
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).encode()


HELD_SHAPES = {
    "digits in groups of four": lambda rng: " ".join(f"{rng.randrange(10_000):04d}" for _ in range(4)) + " ",
    "SSNs": lambda rng: f"{rng.randrange(1, 666):03d}-{rng.randrange(1, 99):02d}-{rng.randrange(1, 9999):04d} ",
    "addresses": lambda rng: f"u{rng.randrange(10**6)}@mail.example.io ",
    "AWS key ids": lambda rng: "AKIA" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)) + " ",
    "URL passwords": lambda rng: f"https://u:p{rng.randrange(10**6)}@db.internal ",
}


def held(sizes: list[int]) -> None:
    """The CPU time each hostile body's scan holds the event loop, bounded and read at once."""
    asyncio.run(_held(sizes))


async def _held(sizes: list[int]) -> None:
    from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
    from tollgate.governance.guardrails.rules import Guardrails
    from tollgate.governance.guardrails.workers import ScanWorkers

    guard = Guardrails([GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})])
    bounded, at_once = ScanWorkers(), ScanWorkers(on_loop_candidates=1 << 30)
    print(f"CPU ms the event loop is held (best of 5); load average {os.getloadavg()[0]:.2f}")
    print(f"{'body':<28}" + "".join(f"{f'{size:,} B':>22}" for size in sizes))
    worst = {size: [0.0, 0.0] for size in sizes}
    for name, unit in HELD_SHAPES.items():
        cells = []
        for size in sizes:
            rng = random.Random(59)
            content = ""
            while len(content) < size - 80:
                content += unit(rng)
            body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).encode()
            took = []
            for workers in (bounded, at_once):
                best = float("inf")
                for _ in range(5):
                    began = time.thread_time()
                    result = workers.run(len(body), lambda b=body: guard.scan(b, "openai", "gpt-4o-mini", None, ()))
                    best = min(best, time.thread_time() - began)
                    if not hasattr(result, "findings"):
                        await result  # type: ignore[misc]  # the worker thread's scan, ended before the next
                took.append(best * 1e3)
            worst[size] = [max(w, t) for w, t in zip(worst[size], took, strict=True)]
            cells.append(f"{took[0]:>9.2f} ({took[1]:>7.2f})")
        print(f"{name:<28}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'worst':<28}" + "".join(f"{f'{w[0]:.2f} ({w[1]:.2f})':>22}" for w in worst.values()))
    print("each cell: bounded, as Tollgate reads it (all read at once, as before)")
    bounded.close()


def redaction(checkouts: list[tuple[str, Path]], size: int, rounds: int) -> None:
    """Each checkout's figures for one body of card numbers redacted, in a process of its own."""
    print(f"a {size:,} B body of card numbers, redacted in a worker thread beside an event loop; best of {rounds}")
    for name, checkout in checkouts:
        env = {**os.environ, "TOLLGATE_BENCH_ADDONS": str(checkout / "addons")}
        args = [sys.executable, __file__, "--redaction-here", "--sizes", str(size), "--rounds", str(rounds)]
        figures = json.loads(subprocess.run(args, env=env, capture_output=True, check=True, timeout=600).stdout)
        print(
            f"  {name:14} the reading: {figures['cpu_s']:.2f} s of CPU ({figures['wall_s']:.2f} s);"
            f" the event loop's longest wait for its turn {figures['longest_wait_ms']:.0f} ms, its turns waited"
            f" over 20 ms: {figures['waits_over_20ms']}; full collections {figures['full_collections']}"
            f" ({figures['full_collection_ms']:.0f} ms); load average {os.getloadavg()[0]:.2f}"
        )


def redaction_here(size: int, rounds: int) -> None:
    """One body of card numbers read as Tollgate reads a large one (`guard.read_call` in a
    `ScanWorkers` thread), beside an event loop that takes a turn every millisecond: the CPU time of
    the reading, how long the loop waited for its turn at worst, and the full collections of the
    garbage collector meanwhile (each holds the interpreter lock). Printed as JSON, best of
    `rounds` by the longest wait."""
    asyncio.run(_redaction_here(size, rounds))


async def _redaction_here(size: int, rounds: int) -> None:
    import gc

    from tollgate.formats.bodies.json_codec import read_request_json
    from tollgate.formats.registry import WIRE_FORMATS
    from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
    from tollgate.governance.guardrails.rules import Guardrails
    from tollgate.governance.guardrails.workers import ScanWorkers
    from tollgate.proxy.stages.guardrails.guard import read_call

    guard = Guardrails([GuardrailRule.model_validate({"detect": ["secrets", "pii"], "action": "redact"})])
    body = hostile_body(size, "cards")
    data, wire = read_request_json(body), WIRE_FORMATS["openai-chat"]
    full: list[float] = []
    began_at = [0.0]

    def collected(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                began_at[0] = time.perf_counter()
            else:
                full.append(time.perf_counter() - began_at[0])

    gc.callbacks.append(collected)
    best: dict | None = None
    workers = ScanWorkers()
    for _ in range(rounds):
        full.clear()
        waits: list[float] = []
        began, cpu = time.perf_counter(), time.process_time()
        reading = asyncio.ensure_future(
            workers.run(len(body), lambda: read_call(guard, body, wire, data, "openai", "gpt-4o-mini", None, ()))  # type: ignore[arg-type]
        )
        last = time.perf_counter()
        while not reading.done():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            waits.append(now - last - 0.001)
            last = now
        read = await reading
        assert read.redacted is not None and read.redacted.replaced == size // 17
        figures = {
            "cpu_s": time.process_time() - cpu,
            "wall_s": time.perf_counter() - began,
            "longest_wait_ms": max(waits) * 1e3,
            "waits_over_20ms": sum(w > 0.02 for w in waits),
            "full_collections": len(full),
            "full_collection_ms": sum(full) * 1e3,
        }
        if best is None or figures["longest_wait_ms"] < best["longest_wait_ms"]:
            best = figures
    workers.close()
    print(json.dumps(best))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tollgate:
    """mitmdump running `checkout`'s addons/gateway.py, its guardrails the PII and secrets detectors."""

    def __init__(self, checkout: Path, work: Path, confdir: Path, upstream: FakeUpstream, ca_pem: Path) -> None:
        self.port = free_port()
        config = work / "tollgate.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "providers": {"openai": {"upstream": upstream.url, "keys": ["sk-real-hostile-bench-0001"]}},
                    "clients": [{"name": "alice", "keys": [VIRTUAL]}],
                    "guardrails": [{"detect": ["secrets", "pii"], "action": "redact"}],
                    "audit": {"path": str(work / "audit.jsonl")},
                }
            )
        )
        mitmdump = Path(sys.executable).with_name("mitmdump")
        args = [str(mitmdump), "-s", str(checkout / "addons" / "gateway.py")]
        args += ["--listen-host", "127.0.0.1", "--listen-port", str(self.port), "--set", f"confdir={confdir}"]
        args += ["--set", f"tollgate_config={config}", "--set", f"ssl_verify_upstream_trusted_ca={ca_pem}"]
        env = {**os.environ, "PYTHONPATH": str(checkout / "addons")}
        self.log = open(work / "mitmdump.log", "wb")  # noqa: SIM115 - open as long as the process
        self.process = subprocess.Popen(args, cwd=work, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"mitmdump exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"mitmdump did not listen within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def connection(port: int, context: ssl.SSLContext, timeout: float) -> http.client.HTTPSConnection:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    conn.set_tunnel(HOST, 443)
    return conn


def post(conn: http.client.HTTPSConnection, body: bytes, written: threading.Event | None = None) -> float:
    """One chat call on a kept-alive connection: seconds from its first byte out to its last in."""
    began = time.perf_counter()
    conn.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"},
    )
    if written is not None:
        written.set()
    answer = conn.getresponse()
    answer.read()
    took = time.perf_counter() - began
    if answer.status != 200:
        raise RuntimeError(f"a call was answered {answer.status}")
    return took


def small_calls(conns: list[http.client.HTTPSConnection], spacing: float) -> list[float]:
    """Each connection's call, begun `spacing` apart: their latencies."""
    took: list[float] = [0.0] * len(conns)
    failed: list[BaseException] = []

    def call(i: int) -> None:
        try:
            took[i] = post(conns[i], SMALL)
        except Exception as e:  # reported below, once every call has ended
            failed.append(e)

    threads = []
    for i in range(len(conns)):
        thread = threading.Thread(target=call, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(spacing)
    for thread in threads:
        thread.join()
    if failed:
        raise RuntimeError(f"{len(failed)} small calls failed: {failed[0]!r}")
    return took


def measure(tollgate: Tollgate, context: ssl.SSLContext, args: argparse.Namespace, size: int) -> dict[str, float]:
    timeout = 120.0
    conns = [connection(tollgate.port, context, timeout) for _ in range(args.calls)]
    for conn in conns:
        for _ in range(2):
            post(conn, SMALL)  # the tunnel, TLS and the first calls' work done before timing
    big_conn = connection(tollgate.port, context, timeout)
    post(big_conn, SMALL)
    body = hostile_body(size, args.shape)
    alone: list[float] = []
    beside: list[float] = []
    big: list[float] = []
    for _ in range(args.rounds):
        alone += small_calls(conns, args.spacing)
        written = threading.Event()
        big_took: list[float] = []
        big_thread = threading.Thread(target=lambda t=big_took, w=written: t.append(post(big_conn, body, w)))
        big_thread.start()
        if not written.wait(timeout):
            raise RuntimeError("the large body was not written")
        beside += small_calls(conns, args.spacing)
        big_thread.join(timeout)
        if not big_took:
            raise RuntimeError("the large call did not end")
        big += big_took
    for conn in [*conns, big_conn]:
        conn.close()
    base = statistics.median(alone)
    added = sorted(t - base for t in beside)
    return {
        "alone_median_ms": base * 1e3,
        "added_median_ms": statistics.median(added) * 1e3,
        "added_worst_ms": added[-1] * 1e3,
        "large_call_s": statistics.median(big),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout, measured after this one")
    parser.add_argument(
        "--sizes",
        default="10000,60000,100000,5000000",
        help="the hostile bodies' sizes (bytes of content, comma-separated)",
    )
    parser.add_argument(
        "--shape", choices=("groups", "digits", "cards"), default="groups", help="the hostile bodies' content"
    )
    parser.add_argument("--calls", type=int, default=20, help="small calls beside it")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between the small calls' starts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--held", action="store_true", help="the event loop's time held, in process (no proxy)")
    parser.add_argument(
        "--redaction", action="store_true", help="a body of card numbers redacted beside an event loop, in process"
    )
    parser.add_argument("--redaction-here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.held:
        held([10_000, 30_000, 60_000, 65_000])
        return 0
    checkouts = [("this checkout", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    if args.redaction_here:
        redaction_here(int(args.sizes.split(",")[-1]), args.rounds)
        return 0
    if args.redaction:
        redaction(checkouts, int(args.sizes.split(",")[-1]), args.rounds)
        return 0
    ca = trustme.CA()
    upstream = FakeUpstream(ca, provider_answers)
    sizes = [int(size) for size in args.sizes.split(",")]
    shape = {"groups": "digits in groups of four", "digits": "one run of digits", "cards": "card numbers"}[args.shape]
    print(f"bodies of {shape} beside {args.calls} small calls begun {args.spacing:g} s apart;")
    print(f"{args.rounds} rounds; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            ca_pem = work / "upstream-ca.pem"
            ca.cert_pem.write_to_path(str(ca_pem))
            confdir = work / "certs"
            confdir.mkdir()
            context = ssl.create_default_context(cafile=str(ensure_bundle(confdir)))
            for name, checkout in checkouts:
                run = work / name.replace(" ", "-")
                run.mkdir()
                tollgate = Tollgate(checkout, run, confdir, upstream, ca_pem)
                try:
                    tollgate.wait_ready()
                    for size in sizes:
                        figures = measure(tollgate, context, args, size)
                        print(
                            f"  {name:14} {size:>9,} B: small call alone {figures['alone_median_ms']:6.1f} ms (median);"
                            f" added beside the hostile one: median {figures['added_median_ms']:7.1f} ms, worst"
                            f" {figures['added_worst_ms']:7.1f} ms; the hostile call {figures['large_call_s']:.3f} s;"
                            f" load average {os.getloadavg()[0]:.2f}"
                        )
                finally:
                    tollgate.stop()
    finally:
        upstream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
