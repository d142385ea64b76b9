"""CPU per audit record of the audit's export (`audit.otlp`), at speed: what the exporter's thread
costs the process it runs in, for each record a call writes.

bench/instructions.py --otlp counts the export with the rest of a call under valgrind, where time
runs about 50× slower: the exporter's timed work (a look at the file every 0.2 s, a request to the
collector every second) then falls on a few calls each, where at speed it falls on hundreds. This
runs the exporter alone, in this process, against a collector in another process (a subprocess
that answers 200), while this process appends records like the audit writer at a steady rate;
the process's CPU time, less that of the same appends without an exporter, is the export's.

    .venv/bin/python bench/audit_export.py                  # 200 records/s for 10 s
    .venv/bin/python bench/audit_export.py --rate 50 --seconds 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "addons"))
sys.path.insert(0, str(ROOT))

from bench.audit_sample import RECORD  # noqa: E402

from tollgate.records.senders.audit_otlp import AuditExport  # noqa: E402

COLLECTOR = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


def line(n: int) -> bytes:
    record = {**RECORD, "request_id": f"{n:032x}", "latency_ms": 900 + n % 1000 / 10, "input_tokens": 20 + n % 500}
    return orjson.dumps(record) + b"\n"


def append_for(path: Path, rate: float, seconds: float) -> tuple[float, int]:
    """Append `rate` records a second for `seconds`, each with one write as the audit writer does;
    the process's CPU seconds meanwhile, and the records written."""
    fd = open(path, "ab", buffering=0)  # noqa: SIM115
    began, cpu, n = time.monotonic(), time.process_time(), 0
    while (now := time.monotonic()) - began < seconds:
        due = int((now - began) * rate)
        while n < due:
            fd.write(line(n))
            n += 1
        time.sleep(0.005)
    fd.close()
    return time.process_time() - cpu, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200, help="records a second")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    collector = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    try:
        assert collector.stdout is not None
        url = f"http://127.0.0.1:{collector.stdout.readline().strip()}"
        with tempfile.TemporaryDirectory() as work:
            bare = Path(work) / "bare.jsonl"
            base_cpu, base_n = append_for(bare, args.rate, args.seconds)
            audit = Path(work) / "audit.jsonl"
            audit.write_bytes(b"")
            export = AuditExport(str(audit), url).start()
            began = time.process_time()
            _, n = append_for(audit, args.rate, args.seconds)
            deadline = time.monotonic() + 5
            while export.shipped < n and time.monotonic() < deadline:
                time.sleep(0.05)
            cpu = time.process_time() - began  # appending, and shipping every record
            shipped = export.shipped
            export.stop()
    finally:
        collector.terminate()
        collector.wait()
    extra = cpu - base_cpu * n / base_n
    print(f"{n} records at {args.rate:g}/s over {args.seconds:g} s, {shipped} shipped")
    print(
        f"  the export's CPU: {extra * 1e6 / n:.1f} µs per record (appending alone: {base_cpu * 1e6 / base_n:.1f} µs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
