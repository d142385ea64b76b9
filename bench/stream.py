"""Streaming benchmark: what Tollgate adds to a stream, next to bare mitmdump, for every wire format
it reads and a range of event sizes.

Run from the checkout:

    .venv/bin/python bench/stream.py                  # every format x 256 B, 64 KiB, 1 MiB events (~6 min on 2 CPUs)
    .venv/bin/python bench/stream.py --format openai-chat --event-bytes 0 --size-mb 1024   # one cell, 1 GiB
    .venv/bin/python bench/stream.py --format gemini-array,bedrock-invoke --event-bytes 256,1048576
    .venv/bin/python bench/stream.py --time-tap --format bedrock-invoke --event-bytes 256   # and Tollgate's tap timed
    .venv/bin/python bench/stream.py --control --time-tap   # beside a second bare mitmdump: the run's own noise
    .venv/bin/python bench/stream.py --control --unread     # Tollgate reading no usage: all it costs but the reading
    .venv/bin/python bench/stream.py --help

One TLS fake upstream (a thread of this process, on 127.0.0.1, certificate from a trustme CA) serves
the streams of bench/stream_wires.py: OpenAI chat and Responses server-sent events, Anthropic's,
Gemini's (server-sent events and the JSON array), Bedrock's AWS event stream (ConverseStream and
InvokeModelWithResponseStream), each made of content events of `--event-bytes` bytes, and a tail
that reports the usage (input tokens drawn per call, output tokens = content events). One more
format, gemini-via-openai, is a Gemini client (streamGenerateContent?alt=sse) that an override rule
routes to OpenAI: the fake answers OpenAI chat events and Tollgate translates them into Gemini's.
The client (this process too, raw sockets + ssl, HTTP/1.1) calls it three ways:

  direct    straight to the fake upstream;
  bare      through plain mitmdump with only --map-remote <API host> -> the fake (one per host), made
            to stream responses instead of buffering them, and connection_strategy=lazy (Tollgate
            sets it too; it keeps mitmproxy from resolving the API host at CONNECT time). Streaming:
            bare mitmdump buffers bodies unless told otherwise; `--set stream_large_bodies=1` cannot
            be used with --map-remote for a POST, since it streams the request body as well and a
            streamed request is sent upstream before the `request` hook (where map-remote works)
            runs (502: mitmproxy looks up the real host). So a two-line script sets
            flow.response.stream = True in `responseheaders`: what stream_large_bodies=1 does to
            the response, and what Tollgate itself does (with a callable). Bare mitmdump passes the
            routed format's OpenAI events untranslated;
  tollgate  through `mitmdump -s addons/gateway.py --set tollgate_config=<yaml>` whose YAML sets
            every provider's upstream to the fake and the override rule;
  control   with --control, a second bare mitmdump started as the first, measured in the latency
            and bulk phases as Tollgate is: what two identical proxies differ by in the same run,
            the noise to read each Tollgate / bare figure against.

For each format and event size (a cell):

Latency phase (paced stream, events a few ms apart, more for large events; rounds interleaved across
the modes, as many as `--min-samples` events per mode need: a p99 of fewer than 100 is their
largest, which one pause of the machine decides): the fake records perf_counter_ns() just before
writing each event, the client when the event's last byte was read; the difference is the
per-chunk delay. For the routed format through Tollgate, the Gemini event carrying a content
event's text counts as that event. TTFB is from the request write (on a fresh connection, tunnel
and TLS to the proxy already set up) to the first body byte.

Bulk phase (one large stream, events back to back, in 64-KiB HTTP chunks or one per larger event;
`--bulk-rounds` rounds, the modes' order alternating): throughput, the upstream's bytes over the
time from the first body byte the client read to the last (what a call costs before its answer
flows, the proxy's per-call work and its connection to the upstream, is TTFB's, measured in the
latency phase; for the routed format, the time the client took to read the translated stream),
every byte checked (length and CRC-32; for the routed format through Tollgate, the text and usage
the client got), and the proxy's resident memory: VmRSS before, peak during (VmHWM after resetting it via
/proc/<pid>/clear_refs when allowed, and VmRSS sampled every 20 ms), and its CPU time per upstream MB
(its threads' schedstat; steadier than throughput on a busy machine). Tollgate / bare is the median
of the rounds' ratios: single rounds swing by ±20 % on a 2-CPU virtual machine, so that the
default is many shorter rounds rather than a few long ones. Two identical bare mitmdumps compared
this way (16 rounds of 32 MiB) came out at 1.04x in throughput and 0.92x in CPU per MB: the
resolution of one run.

Side-by-side phase (`--bulk-rounds` rounds of one bulk stream through each mitmdump at the same
time): Tollgate's CPU per upstream MB over bare mitmdump's. The two share the machine's every
moment, so that its drift cancels: two identical bare mitmdumps come out at 1.00x this way. Their
throughput is not compared here, as the client serving both limits them alike (a bare mitmdump
made 13 % more costly per MB streamed as fast as the other, but used 1.17x its CPU).

With --time-tap, Tollgate's mitmdump also loads bench/tap_timer.py, which times every piece through
its stream tap (usage read, or the answer rewritten) in the CPU time of mitmproxy's thread: the
summary's "tap in proxy" is the median bulk stream's time in the tap per MB, and its share of bare
mitmdump's CPU per MB. It is what Tollgate's own code costs in the proxy, cold caches included, and
does not drift with the machine as the ratios do.

With --unread, Tollgate's mitmdump also loads bench/unread_tap.py: its tap passes every piece on
(rewritten where a stream is) without reading usage. Tollgate / bare is then what Tollgate costs in
a stream besides the reading; set beside a run without it, the reading as the proxy pays for it.

Every call through Tollgate is looked up in its audit file (by the X-Tollgate-Request-Id it
answered with): the input and output tokens and the finish reason must be those the fake sent.

Only the command-line interface of Tollgate is used (the script, the tollgate_config option, the
YAML); the CA bundle comes from tollgate.proxy.certs.ensure_bundle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "addons", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import trustme  # noqa: E402
import yaml  # noqa: E402

from stream_wires import FORMATS, HOSTS, OPENAI_HOST, ROUTED_MODEL, VIRTUAL_KEY, Counts, Format  # noqa: E402
from tollgate.proxy.certs import ensure_bundle  # noqa: E402

MiB = 1024 * 1024
MB = 1_000_000
API_HOST = OPENAI_HOST  # what bench/overhead.py and bench/instructions.py call
MODES = ("direct", "bare", "tollgate")
CONTROL = "control"  # --control: a second bare mitmdump, measured as Tollgate is
LABELS = {"direct": "direct", "bare": "bare mitmdump", "tollgate": "Tollgate", CONTROL: "bare mitmdump, again"}
TARGET_ADDED_P99_MS = 2.0
# How bare mitmdump is made to stream responses by default (see --bare-streaming): mitmproxy's own
# switch, response.stream = True, set as soon as the response headers are in.
BARE_STREAM_ADDON = "def responseheaders(flow):\n    flow.response.stream = True\n"
BARE_STREAMING_NOTE = (
    "bare mitmdump (which buffers bodies by default) streams responses through a two-line script "
    "(responseheaders: flow.response.stream = True), not --set stream_large_bodies=1: that option streams the "
    "request body too, and a streamed request connects upstream before map-remote's request hook runs "
    "(502, the real API host looked up instead of the fake upstream)"
)
TARGET_THROUGHPUT_RATIO = 0.95
TARGET_ROUTED_RATIO = 0.8  # translating every event costs more than reading a stream
TARGET_RSS_GROWTH_MB = 50.0
DEFAULT_FORMATS = tuple(FORMATS)
DEFAULT_EVENT_BYTES = (256, 64 * 1024, MiB)
BLOCK_BYTES = 64 * 1024  # bulk: content events are written in HTTP chunks of about this size
PACED_BYTES_PER_S = 20 * MB  # paced: large events are spaced so that the stream stays this slow


def now_ns() -> int:
    return time.perf_counter_ns()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def size_label(event_bytes: int) -> str:
    if event_bytes == 0:
        return "natural"
    if event_bytes % MiB == 0:
        return f"{event_bytes // MiB} MiB"
    if event_bytes % 1024 == 0:
        return f"{event_bytes // 1024} KiB"
    return f"{event_bytes} B"


# --------------------------------------------------------------------------------------------------
# The stream the fake upstream sends


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@dataclass
class Scenario:
    """One call's answer: a head, content events, a tail with the usage. Paced: every event its own
    HTTP chunk, `delay_s` apart. Bulk: `blocks` HTTP chunks of the same `block` of content events."""

    fmt: Format
    kind: str  # "paced" or "bulk"
    counts: Counts
    pieces: list[bytes] = field(default_factory=list)  # paced: what is written, one HTTP chunk each
    seq_piece: dict[int, int] = field(default_factory=dict)  # paced: content event seq -> its piece
    delay_s: float = 0.0
    head: bytes = b""  # bulk
    block: bytes = b""
    blocks: int = 0
    tail: bytes = b""
    text_crc: int = 0  # CRC-32 of the content events' texts in order (what a routed client must get)
    event_bytes: int = 0  # the content events' actual size
    # filled in by the fake upstream
    path: str = ""
    write_ns: list[int] = field(default_factory=list)
    bytes_sent: int = 0
    served: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    @staticmethod
    def _counts(output_tokens: int) -> Counts:
        return Counts(random.randrange(1000, 100_000), output_tokens)

    @classmethod
    def paced(cls, fmt: Format, event_bytes: int, count: int, delay_s: float) -> Scenario:
        stream = fmt.stream
        length = stream.text_length(event_bytes)
        counts = cls._counts(count)
        texts = [stream.text_of(seq, length) for seq in range(1, count + 1)]
        head = stream.head(counts)
        pieces = [head] if head else []
        seq_piece = {}
        for seq, text in enumerate(texts, 1):
            seq_piece[seq] = len(pieces)
            pieces.append(stream.content(seq, text))
        pieces.append(stream.tail(counts, stream.final_text_of(length)))
        crc = zlib.crc32("".join(texts).encode())
        return cls(fmt, "paced", counts, pieces, seq_piece, delay_s, text_crc=crc, event_bytes=len(pieces[-2]))

    @classmethod
    def bulk(cls, fmt: Format, event_bytes: int, size_bytes: int) -> Scenario:
        stream = fmt.stream
        length = stream.text_length(event_bytes)
        one = len(stream.content(0, stream.text_of(0, length)))
        per_block = max(1, BLOCK_BYTES // one)
        # content differs between events of a block (sequence numbers), identical between blocks
        texts = [stream.text_of(seq, length) for seq in range(per_block)]
        block = b"".join(stream.content(seq, text) for seq, text in enumerate(texts))
        blocks = max(1, round(size_bytes / len(block)))
        counts = cls._counts(blocks * per_block)
        crc = 0
        block_text = "".join(texts).encode()
        for _ in range(blocks):
            crc = zlib.crc32(block_text, crc)
        return cls(
            fmt,
            "bulk",
            counts,
            head=stream.head(counts),
            block=block,
            blocks=blocks,
            tail=stream.tail(counts, stream.final_text_of(length)),
            text_crc=crc,
            event_bytes=one,
        )

    def expected_size(self) -> int:
        if self.kind == "paced":
            return sum(map(len, self.pieces))
        return len(self.head) + self.blocks * len(self.block) + len(self.tail)

    def expected_crc(self) -> int:
        if self.kind == "paced":
            return zlib.crc32(b"".join(self.pieces))
        crc = zlib.crc32(self.head)
        for _ in range(self.blocks):
            crc = zlib.crc32(self.block, crc)
        return zlib.crc32(self.tail, crc)

    def expected_tail(self) -> bytes:
        return (self.pieces[-1] if self.kind == "paced" else self.tail)[-64:]


# --------------------------------------------------------------------------------------------------
# Fake upstream: TLS, HTTP/1.1, one thread per connection


def read_chunked_body(buffer: bytearray, fill) -> bytes:
    """A chunked request body from `buffer`, calling `fill()` for more bytes; trailers are skipped."""
    body = bytearray()
    while True:
        while b"\r\n" not in buffer:
            fill()
        i = buffer.index(b"\r\n")
        size = int(bytes(buffer[:i]).split(b";")[0].strip() or b"0", 16)
        del buffer[: i + 2]
        if size == 0:
            while True:  # trailers, up to the empty line
                while b"\r\n" not in buffer:
                    fill()
                i = buffer.index(b"\r\n")
                del buffer[: i + 2]
                if i == 0:
                    return bytes(body)
        while len(buffer) < size + 2:
            fill()
        body += buffer[:size]
        del buffer[: size + 2]
        if len(body) > 16 * MiB:
            raise ConnectionError("request body too large")


class FakeUpstream:
    IDLE_TIMEOUT = 60.0
    MAX_REQUESTS_PER_CONNECTION = 1000

    def __init__(self, ca: trustme.CA) -> None:
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.context.set_alpn_protocols(["http/1.1"])
        self.scenarios: dict[str, Scenario] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._accept_thread = threading.Thread(target=self._accept_loop, name="fake-accept", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self._conns.add(sock)
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(target=self._serve_connection, args=(sock,), name="fake-conn", daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve_connection(self, raw: socket.socket) -> None:
        tls: ssl.SSLSocket | None = None
        try:
            raw.settimeout(10)
            tls = self.context.wrap_socket(raw, server_side=True)  # takes over raw's file descriptor
            with self._lock:
                self._conns.discard(raw)
                self._conns.add(tls)
            buffer = bytearray()
            for _ in range(self.MAX_REQUESTS_PER_CONNECTION):
                request = self._read_request(tls, buffer)
                if request is None:
                    return
                self._answer(tls, *request)
        except (OSError, ValueError):
            pass  # peer went away, or stop() closed the socket
        finally:
            with self._lock:
                self._conns.discard(raw)
                self._conns.discard(tls)
            try:
                (tls or raw).close()
            except OSError:
                pass

    def _read_request(self, tls: ssl.SSLSocket, buffer: bytearray) -> tuple[str, str, dict, bytes] | None:
        deadline = time.monotonic() + self.IDLE_TIMEOUT
        while b"\r\n\r\n" not in buffer:
            if self._stop.is_set() or time.monotonic() > deadline or len(buffer) > 1 * MiB:
                return None
            tls.settimeout(0.2)
            try:
                data = tls.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return None
            buffer += data
        end = buffer.index(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        method, path, _ = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        tls.settimeout(10)

        def fill() -> None:
            data = tls.recv(65536)
            if not data:
                raise ConnectionError("closed in the request body")
            buffer.extend(data)

        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                # httpx sends one for a streamed request body (gemini-calo forwards requests so).
                return method, path, headers, read_chunked_body(buffer, fill)
            length = int(headers.get("content-length") or 0)
            while len(buffer) < length:
                fill()
        except ConnectionError:
            return None
        body = bytes(buffer[:length])
        del buffer[:length]
        return method, path, headers, body

    TOKEN = re.compile(rb"bench-\d+")

    def _answer(self, tls: ssl.SSLSocket, method: str, path: str, headers: dict, body: bytes) -> None:
        found = self.TOKEN.search(body)
        scenario = self.scenarios.get(found.group().decode()) if found else None
        if scenario is None or method != "POST":
            payload = json.dumps({"error": {"message": f"bench fake upstream: unexpected {method} {path}"}}).encode()
            tls.sendall(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                % (len(payload), payload)
            )
            return
        scenario.path = path
        tls.settimeout(120)
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\nx-request-id: req_bench\r\n\r\n"
            % scenario.fmt.stream.content_type.encode()
        )
        sent = 0
        try:
            if scenario.kind == "paced":
                tls.sendall(head)
                start = time.perf_counter()
                for index, piece in enumerate(scenario.pieces):
                    due = start + index * scenario.delay_s
                    pause = due - time.perf_counter()
                    if pause > 0 and self._stop.wait(pause):
                        raise OSError("stopped")
                    scenario.write_ns.append(now_ns())
                    tls.sendall(http_chunk(piece))
                    sent += len(piece)
            else:
                tls.sendall(head + (http_chunk(scenario.head) if scenario.head else b""))
                sent = len(scenario.head)
                framed = http_chunk(scenario.block)
                scenario.write_ns.append(now_ns())
                for _ in range(scenario.blocks):
                    if self._stop.is_set():
                        raise OSError("stopped")
                    tls.sendall(framed)
                    sent += len(scenario.block)
                tls.sendall(http_chunk(scenario.tail))
                sent += len(scenario.tail)
                scenario.write_ns.append(now_ns())
            tls.sendall(b"0\r\n\r\n")
        except OSError as exc:
            scenario.error = f"upstream write failed: {exc}"
            raise
        finally:
            scenario.bytes_sent = sent
            scenario.served.set()

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._accept_thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for sock in conns:
            try:
                # at the descriptor, under TLS: wakes a thread blocked in sendall or recv
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# Client: raw socket + ssl, HTTP/1.1, CONNECT through the proxy


class ChunkedDecoder:
    """Incremental `transfer-encoding: chunked` decoder."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.left = -1  # >0: bytes of chunk data left; -1: expecting a size line; -2: expecting CRLF
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        if not self.buf and 0 < len(data) < self.left:  # fast path: all of it is chunk data
            self.left -= len(data)
            return [data]
        out: list[bytes] = []
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        while not self.done:
            if self.left > 0:
                take = min(self.left, end - pos)
                if take == 0:
                    break
                out.append(bytes(buf[pos : pos + take]))
                pos += take
                self.left -= take
                if self.left == 0:
                    self.left = -2
            elif self.left == -2:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ValueError("bad chunk framing")
                pos += 2
                self.left = -1
            else:
                i = buf.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > 1024:
                        raise ValueError("bad chunk size line")
                    break
                size = int(bytes(buf[pos:i]).split(b";")[0].strip(), 16)
                pos = i + 2
                if size == 0:
                    self.done = True  # trailers, if any, are ignored
                else:
                    self.left = size
        del buf[:pos]
        return out


class LengthDecoder:
    def __init__(self, length: int | None) -> None:
        self.left = length
        self.done = length == 0

    def feed(self, data: bytes) -> list[bytes]:
        if self.left is None:
            return [data]
        data = data[: self.left]
        self.left -= len(data)
        self.done = self.left == 0
        return [data]


class RoutedView:
    """What a Gemini client gets from Tollgate's translation, read as it arrives: the text of its
    events (CRC-32, in order), its last usageMetadata and finishReason, and for a paced stream when
    the event carrying each content event's text (`w000123 ...`) was read."""

    TEXT_KEY = b'"text":"'
    SEQ = re.compile(rb'"text":"w(\d{6}) ')

    def __init__(self, paced: bool) -> None:
        self.paced = paced
        self.pending: list[bytes] = []  # the pieces of the event not yet complete
        self.text_crc = 0
        self.last_usage: bytes | None = None
        self.seq_times: dict[int, int] = {}
        self.escaped = False  # a text with an escape: not what the fake sent

    def feed(self, piece: bytes, t_read: int) -> None:
        # Only the new piece (and the seam before it) is searched: a large event comes in many.
        seam = self.pending[-1][-3:] if self.pending else b""
        end = piece.rfind(b"\r\n\r\n")
        if end < 0 and seam:
            at = (seam + piece[:3]).rfind(b"\r\n\r\n")
            end = at - len(seam) if at >= 0 else -1
        if end < 0:
            self.pending.append(piece)
            return
        region = b"".join([*self.pending, piece[: end + 4]])
        rest = piece[end + 4 :]
        self.pending = [rest] if rest else []
        self.read_texts(region)
        if self.paced:
            for seq in self.SEQ.findall(region):
                self.seq_times.setdefault(int(seq), t_read)
        if b'"usageMetadata"' in region:
            self.last_usage = region[region.rfind(b"data: ") + 6 :].strip()

    def read_texts(self, region: bytes) -> None:
        """The texts of complete events into the CRC, found by memchr (a regular expression reads
        a megabyte of text slower than Tollgate translates it)."""
        view = memoryview(region)
        at = region.find(self.TEXT_KEY)
        while at >= 0:
            start = at + len(self.TEXT_KEY)
            end = region.find(b'"', start)
            if end < 0:
                self.escaped = True
                return
            self.escaped = self.escaped or region.find(b"\\", start, end) >= 0
            self.text_crc = zlib.crc32(view[start:end], self.text_crc)
            at = region.find(self.TEXT_KEY, end)

    def usage(self) -> dict:
        data = json.loads(self.last_usage) if self.last_usage else {}
        meta = data.get("usageMetadata", {})
        finish = (data.get("candidates") or [{}])[0].get("finishReason")
        return {
            "input_tokens": meta.get("promptTokenCount"),
            "output_tokens": meta.get("candidatesTokenCount"),
            "finish_reason": finish,
        }


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    t_send: int = 0
    t_headers: int = 0
    t_first_body: int = 0
    t_last_body: int = 0
    connect_ms: float = 0.0
    piece_times: list[int] = field(default_factory=list)  # paced: when each piece's last byte was read
    body_bytes: int = 0
    crc: int = 0
    tail: bytes = b""
    complete: bool = False
    routed: RoutedView | None = None  # a routed call through Tollgate: what the Gemini client got


class Target:
    """Where the client sends its request: the fake directly, or a proxy."""

    def __init__(self, mode: str, fake: FakeUpstream, ca: trustme.CA, bundle: Path, proxy_port: int | None) -> None:
        self.mode = mode
        self.fake = fake
        self.proxy_port = proxy_port
        if proxy_port is None:
            self.context = ssl.create_default_context()
            ca.configure_trust(self.context)
        else:
            self.context = ssl.create_default_context(cafile=str(bundle))
        self.context.set_alpn_protocols(["http/1.1"])

    def host_header(self, host: str) -> str:
        return f"127.0.0.1:{self.fake.port}" if self.proxy_port is None else host

    def open(self, host: str, timeout: float) -> ssl.SSLSocket:
        if self.proxy_port is None:
            sock = socket.create_connection(("127.0.0.1", self.fake.port), timeout=timeout)
        else:
            sock = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.proxy_port is None:
                return self.context.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                data = sock.recv(4096)
                if not data or len(reply) > 65536:
                    raise ConnectionError(f"proxy closed the CONNECT: {reply[:200]!r}")
                reply += data
            status = reply.split(b"\r\n", 1)[0]
            if b" 200" not in status:
                raise ConnectionError(f"CONNECT refused: {status!r}")
            return self.context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise


def piece_ends(pieces: list[bytes]) -> list[int]:
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    return ends


def call(target: Target, scenario: Scenario, token: str, timeout: float, routed_view: bool) -> Result:
    """One streaming call on a fresh connection; reads the whole response within `timeout` s.
    `routed_view`: the answer is Tollgate's translation, read as a Gemini client would."""
    deadline = time.monotonic() + timeout
    request = scenario.fmt.request
    paced = scenario.kind == "paced"
    result = Result()
    t0 = now_ns()
    tls = target.open(request.host, timeout=min(timeout, 30))
    try:
        result.connect_ms = (now_ns() - t0) / 1e6
        body = request.body(token)
        extra = "".join(f"{name}: {value}\r\n" for name, value in request.headers)
        head = (
            f"POST {request.path} HTTP/1.1\r\nHost: {target.host_header(request.host)}\r\n{extra}"
            f"Content-Type: application/json\r\nUser-Agent: tollgate-bench/1\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        result.t_send = now_ns()
        tls.sendall(head.encode() + body)

        def receive() -> bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"response not complete within {timeout:.0f} s")
            tls.settimeout(min(remaining, 30))
            return tls.recv(256 * 1024)

        raw = bytearray()
        while b"\r\n\r\n" not in raw:
            data = receive()
            if not data:
                raise ConnectionError("connection closed before the response headers")
            raw += data
            if len(raw) > 1 * MiB:
                raise ValueError("response headers too large")
        result.t_headers = now_ns()
        end = raw.index(b"\r\n\r\n")
        lines = bytes(raw[:end]).decode("latin-1").split("\r\n")
        rest = bytes(raw[end + 4 :])
        result.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            result.headers[name.strip().lower()] = value.strip()
        if "chunked" in result.headers.get("transfer-encoding", "").lower():
            decoder: ChunkedDecoder | LengthDecoder = ChunkedDecoder()
        elif "content-length" in result.headers:
            decoder = LengthDecoder(int(result.headers["content-length"]))
        else:
            decoder = LengthDecoder(None)  # until the connection closes
        if result.status != 200:
            error_body = b"".join(decoder.feed(rest))
            while not decoder.done and len(error_body) < 65536:
                data = receive()
                if not data:
                    break
                error_body += b"".join(decoder.feed(data))
            raise RuntimeError(f"{target.mode}: HTTP {result.status}: {error_body[:300]!r}")

        view = result.routed = RoutedView(paced) if routed_view else None
        ends = piece_ends(scenario.pieces) if paced and view is None else []
        crc = 0
        size = 0
        tail = b""
        data = rest
        t_read = result.t_headers
        while True:
            if data:
                for piece in decoder.feed(data):
                    if not piece:
                        continue
                    if not result.t_first_body:
                        result.t_first_body = t_read
                    size += len(piece)
                    crc = zlib.crc32(piece, crc)
                    tail = (tail + piece[-64:])[-64:]
                    if view is not None:
                        view.feed(piece, t_read)
                    while len(result.piece_times) < len(ends) and size >= ends[len(result.piece_times)]:
                        result.piece_times.append(t_read)
                result.t_last_body = t_read
            if decoder.done:
                result.complete = True
                break
            data = receive()
            t_read = now_ns()
            if not data:
                result.complete = isinstance(decoder, LengthDecoder) and decoder.left is None
                break
        result.body_bytes, result.crc, result.tail = size, crc, tail
        return result
    finally:
        try:
            tls.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# Proxies


def mitmdump_path() -> str:
    found = Path(sys.executable).with_name("mitmdump")
    if not found.exists():
        raise SystemExit(f"mitmdump not found next to {sys.executable}")
    return str(found)


class Proxy:
    def __init__(self, name: str, args: list[str], workdir: Path, launcher: Sequence[str] = ()) -> None:
        """`launcher`: what runs mitmdump's script (e.g. valgrind and the interpreter), if not itself."""
        self.name = name
        self.port = free_port()
        listen = ["--listen-host", "127.0.0.1", "--listen-port", str(self.port)]
        self.args = [*launcher, mitmdump_path(), *listen, *args]
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open as long as the process
        self.process = subprocess.Popen(
            self.args, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} mitmdump exited with {self.process.returncode}:\n{self.console()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} mitmdump did not listen within {timeout:.0f} s:\n{self.console()}")

    def console(self, last: int = 3000) -> str:
        try:
            self._log.flush()
            return self.log_path.read_text(errors="replace")[-last:]
        except (OSError, ValueError):
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def command_line(self) -> str:
        def quote(arg: str) -> str:
            return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"

        return " ".join(quote(a) for a in self.args)


def cpu_ns(pid: int) -> int:
    """CPU time the process's threads have used, in ns (schedstat: finer than /proc/<pid>/stat's ticks)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    values[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return values


def reset_hwm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    def __init__(self, pid: int, interval: float, max_seconds: float) -> None:
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# Measurements


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class Audit:
    """Tollgate's audit file, read as it grows: records by request id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.records: dict[str, dict] = {}

    def find(self, request_id: str, wait_s: float = 5.0) -> dict | None:
        deadline = time.monotonic() + wait_s
        while True:
            self._read()
            record = self.records.pop(request_id, None)
            if record is not None or time.monotonic() > deadline:
                return record
            time.sleep(0.05)  # the audit writer batches records a quarter of a second apart

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        for line in data[:complete].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("request_id"):
                self.records[record["request_id"]] = record


@dataclass(frozen=True)
class Cell:
    fmt: Format
    event_bytes: int

    @property
    def name(self) -> str:
        return f"{self.fmt.name} {size_label(self.event_bytes)}"


class Bench:
    proxy_class: Callable[[str, list[str], Path], Proxy] = Proxy  # what runs each mitmdump
    start_timeout = 60.0

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.tokens = 0
        self.proxies: dict[str, Proxy] = {}
        self.targets: dict[str, Target] = {}
        self.fake: FakeUpstream | None = None
        self.audit: Audit | None = None
        self.loadavg_start = loadavg()
        self.usage_checked = 0
        self.usage_problems: list[str] = []
        self.tap_times = workdir / "tap_times.jsonl"  # bench/tap_timer.py's lines, with --time-tap
        self.modes = (*MODES, CONTROL) if args.control else MODES

    def token(self, scenario: Scenario) -> str:
        assert self.fake is not None
        self.tokens += 1
        token = f"bench-{self.tokens}"
        self.fake.scenarios[token] = scenario
        return token

    def setup(self) -> None:
        ca = trustme.CA()
        ca_pem = self.workdir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        confdir = self.workdir / "confdir"
        bundle = ensure_bundle(confdir)
        self.fake = FakeUpstream(ca)
        audit = self.workdir / "audit.jsonl"
        self.audit = Audit(audit)
        config = self.workdir / "tollgate.yaml"
        providers: dict = {name: {"upstream": self.fake.url} for name in ("openai", "anthropic", "gemini", "bedrock")}
        providers["openai"]["keys"] = ["sk-bench-upstream"]  # the routed calls' key
        config.write_text(
            yaml.safe_dump(
                {
                    "providers": providers,
                    # Native calls come with their own keys (anonymous callers); the routed call
                    # with a virtual key, as a route needs Tollgate's key for the other provider.
                    "clients": [{"name": "bench", "keys": [VIRTUAL_KEY]}],
                    "allow_anonymous": True,
                    "overrides": [
                        {
                            "match": {"provider": "gemini", "model": ROUTED_MODEL},
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                        }
                    ],
                    "audit": {"path": str(audit)},
                }
            )
        )
        common = ["--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={ca_pem}"]
        if self.args.quiet_proxies:
            common += ["--set", "flow_detail=0"]
        bare = ["--mode", "regular", "--set", "connection_strategy=lazy", *common]
        for host in HOSTS:
            bare += ["--map-remote", f"|^https://{re.escape(host)}|{self.fake.url}"]
        addon = self.workdir / "bare_stream.py"
        addon.write_text(BARE_STREAM_ADDON)
        bare += ["-s", str(addon)]
        tollgate = ["-s", str(ROOT / "addons" / "gateway.py"), "--set", f"tollgate_config={config}", *common]
        if self.args.unread:
            tollgate += ["-s", str(ROOT / "bench" / "unread_tap.py")]
        if self.args.time_tap:
            tollgate += ["-s", str(ROOT / "bench" / "tap_timer.py"), "--set", f"tap_timer_file={self.tap_times}"]
        self.proxies["bare"] = self.proxy_class("bare", bare, self.workdir)
        self.proxies["tollgate"] = self.proxy_class("tollgate", tollgate, self.workdir)
        if CONTROL in self.modes:
            self.proxies[CONTROL] = self.proxy_class(CONTROL, bare, self.workdir)
        for proxy in self.proxies.values():
            proxy.wait_ready(self.start_timeout)
        self.targets["direct"] = Target("direct", self.fake, ca, bundle, None)
        for name, proxy in self.proxies.items():
            self.targets[name] = Target(name, self.fake, ca, bundle, proxy.port)

    def run_call(self, mode: str, scenario: Scenario, timeout: float) -> Result:
        assert self.fake is not None
        token = self.token(scenario)
        routed_view = scenario.fmt.routed and mode == "tollgate"
        try:
            result = call(self.targets[mode], scenario, token, timeout, routed_view)
        except Exception as exc:
            proxy = self.proxies.get(mode)
            console = f"\n--- {mode} mitmdump console (tail) ---\n{proxy.console()}" if proxy else ""
            raise RuntimeError(f"{LABELS[mode]}: call failed: {exc!r}{console}") from exc
        scenario.served.wait(timeout=10)
        self.fake.scenarios.pop(token, None)
        problems = []
        if scenario.error:
            problems.append(scenario.error)
        if not result.complete:
            problems.append("response ended early")
        if result.routed is not None:
            problems += self.routed_problems(scenario, result.routed)
        else:
            if result.body_bytes != scenario.expected_size() or result.crc != scenario.expected_crc():
                problems.append(
                    f"body differs from what the upstream sent ({result.body_bytes} bytes read, "
                    f"{scenario.expected_size()} sent)"
                )
            if not result.tail.endswith(scenario.expected_tail()):
                problems.append("body does not end as the upstream's")
        if mode == "tollgate":
            problems += self.audit_problems(scenario, result)
        if problems:
            raise RuntimeError(f"{LABELS[mode]}, {scenario.fmt.name}: " + "; ".join(problems))
        return result

    @staticmethod
    def routed_problems(scenario: Scenario, view: RoutedView) -> list[str]:
        problems = []
        if not scenario.path.startswith("/v1/chat/completions"):
            problems.append(f"the upstream was called at {scenario.path}, not OpenAI's /v1/chat/completions")
        if view.escaped or view.text_crc != scenario.text_crc:
            problems.append("the translated text differs from the text the upstream sent")
        counts = scenario.counts
        expected = {"input_tokens": counts.input_tokens, "output_tokens": counts.output_tokens, "finish_reason": "STOP"}
        if view.usage() != expected:
            problems.append(f"the client got usage {view.usage()}, the upstream sent {expected}")
        return problems

    def audit_problems(self, scenario: Scenario, result: Result) -> list[str]:
        assert self.audit is not None
        request_id = result.headers.get("x-tollgate-request-id")
        if not request_id:
            return ["no X-Tollgate-Request-Id header: the call did not go through Tollgate"]
        record = self.audit.find(request_id)
        if record is None:
            return [f"no audit record for {request_id}"]
        if self.args.unread:
            return []  # no usage read
        got = (record.get("input_tokens"), record.get("output_tokens"), record.get("finish_reason"))
        counts = scenario.counts
        expected = (counts.input_tokens, counts.output_tokens, scenario.fmt.stream.finish)
        self.usage_checked += 1
        if got != expected or record.get("error"):
            problem = f"audit has usage {got} (error {record.get('error')!r}), the upstream sent {expected}"
            self.usage_problems.append(f"{scenario.fmt.name}: {problem}")
            return [problem]
        return []

    def warm_up(self, cell: Cell) -> None:
        for mode in self.modes:
            last: Exception | None = None
            for _ in range(3):
                try:
                    self.run_call(mode, Scenario.paced(cell.fmt, cell.event_bytes, 5, 0.0), timeout=30)
                    self.run_call(mode, Scenario.bulk(cell.fmt, cell.event_bytes, 2 * MiB), timeout=30)
                    last = None
                    break
                except RuntimeError as exc:
                    last = exc
                    time.sleep(0.5)
            if last is not None:
                raise last

    def paced_shape(self, cell: Cell) -> tuple[int, float]:
        """Events per paced call and the pause between them: large events fewer and further apart,
        so that the paced stream stays a trickle (PACED_BYTES_PER_S) rather than a bulk transfer."""
        size = max(cell.event_bytes, 256)
        count = min(self.args.chunks, max(20, (4 * MiB) // size))
        delay = max(self.args.delay_ms / 1000, size / PACED_BYTES_PER_S)
        return count, delay

    def latency_rounds(self, cell: Cell) -> int:
        """`--rounds`, or more where a call has few events: enough for `--min-samples` delays per mode
        (a p99 of fewer than 100 is their largest, one pause of the machine)."""
        count, _ = self.paced_shape(cell)
        return max(self.args.rounds, math.ceil(self.args.min_samples / count))

    def latency(self, cell: Cell) -> dict[str, dict[str, float]]:
        count, delay = self.paced_shape(cell)
        delays: dict[str, list[float]] = {m: [] for m in self.modes}
        ttfb: dict[str, list[float]] = {m: [] for m in self.modes}
        connect: dict[str, list[float]] = {m: [] for m in self.modes}
        timeout = 30 + count * delay * 4
        for _ in range(self.latency_rounds(cell)):
            for mode in self.modes:
                scenario = Scenario.paced(cell.fmt, cell.event_bytes, count, delay)
                result = self.run_call(mode, scenario, timeout)
                delays[mode] += self.chunk_delays(mode, scenario, result)
                ttfb[mode].append((result.t_first_body - result.t_send) / 1e6)
                connect[mode].append(result.connect_ms)
        out = {}
        for mode in self.modes:
            out[mode] = {
                "ttfb_p50": percentile(ttfb[mode], 50),
                "ttfb_max": max(ttfb[mode]),
                "connect_p50": percentile(connect[mode], 50),
                "delay_p50": percentile(delays[mode], 50),
                "delay_p99": percentile(delays[mode], 99),
                "delay_max": max(delays[mode]),
                "samples": len(delays[mode]),
                "events": count,
                "delay_ms": delay * 1000,
            }
        return out

    @staticmethod
    def chunk_delays(mode: str, scenario: Scenario, result: Result) -> list[float]:
        """Per-chunk delays in ms: every piece, or for a routed call through Tollgate, every content
        event whose text the client got."""
        if result.routed is not None:
            times = result.routed.seq_times
            if len(times) != len(scenario.seq_piece):
                raise RuntimeError(
                    f"{LABELS[mode]}: {len(times)} content events read, {len(scenario.seq_piece)} written"
                )
            return [(t - scenario.write_ns[scenario.seq_piece[seq]]) / 1e6 for seq, t in times.items()]
        if len(result.piece_times) != len(scenario.write_ns):
            raise RuntimeError(
                f"{LABELS[mode]}: {len(result.piece_times)} events read, {len(scenario.write_ns)} written"
            )
        return [(t_read - t_write) / 1e6 for t_read, t_write in zip(result.piece_times, scenario.write_ns, strict=True)]

    def bulk(self, cell: Cell) -> dict[str, dict[str, float]]:
        """`--bulk-rounds` large streams per mode, interleaved, bare mitmdump and Tollgate taking
        turns to go first (with --control, the two bare mitmdumps first and last in turn, Tollgate
        between them). Throughput: the median round; Tollgate / bare: the median of the rounds'
        ratios. RSS growth: the highest peak over all rounds minus VmRSS before the first."""
        size = self.args.size_mb * MiB
        timeout = self.args.bulk_timeout or 60 + self.args.size_mb * 0.6
        rates: dict[str, list[float]] = {m: [] for m in self.modes}
        cpu: dict[str, list[float]] = {m: [] for m in self.modes}  # the proxy's CPU µs per upstream MB
        memory: dict[str, dict[str, float]] = {}
        body_bytes = 0
        taps_before = self.tap_lines()
        for round_ in range(self.args.bulk_rounds):
            proxies = self.modes[1:]
            order = ("direct", *(proxies if round_ % 2 == 0 else reversed(proxies)))
            for mode in order:
                scenario = Scenario.bulk(cell.fmt, cell.event_bytes, size)
                proxy = self.proxies.get(mode)
                if proxy is None:
                    result = self.run_call(mode, scenario, timeout)
                else:
                    before = proc_status(proxy.pid)
                    hwm_reset = reset_hwm(proxy.pid)
                    if hwm_reset:
                        before = proc_status(proxy.pid)
                    cpu_before = cpu_ns(proxy.pid)
                    with RssSampler(proxy.pid, 0.02, timeout + 5) as sampler:
                        result = self.run_call(mode, scenario, timeout)
                    cpu[mode].append((cpu_ns(proxy.pid) - cpu_before) / 1000 / (scenario.bytes_sent / MB))
                    after = proc_status(proxy.pid)
                    peak = max(sampler.peak, after.get("VmRSS", 0))
                    if hwm_reset:
                        peak = max(peak, after.get("VmHWM", 0))
                    m = memory.setdefault(
                        mode, {"rss_before": before.get("VmRSS", 0) / MB, "rss_peak": 0.0, "hwm_reset": 1.0}
                    )
                    m["rss_peak"] = max(m["rss_peak"], peak / MB)
                    m["rss_after"] = after.get("VmRSS", 0) / MB
                    m["rss_growth"] = m["rss_peak"] - m["rss_before"]
                    m["hwm_reset"] = min(m["hwm_reset"], float(hwm_reset))
                seconds = (result.t_last_body - result.t_first_body) / 1e9
                # The upstream's bytes: for the routed format, what Tollgate read and translated.
                rates[mode].append(scenario.bytes_sent / MB / seconds)
                body_bytes = scenario.bytes_sent
        out = {}
        for mode in self.modes:
            out[mode] = {
                "bytes": body_bytes,
                "mbps": percentile(rates[mode], 50),
                "mbps_min": min(rates[mode]),
                "mbps_max": max(rates[mode]),
                "cpu_us_per_mb": percentile(cpu[mode], 50),
                # A proxy's over bare mitmdump's, round by round.
                "ratios": [t / b for t, b in zip(rates[mode], rates["bare"], strict=True)]
                if mode in self.proxies
                else [],
                "cpu_ratios": [t / b for t, b in zip(cpu[mode], cpu["bare"], strict=True)]
                if mode in self.proxies
                else [],
                **memory.get(mode, {}),
            }
        if self.args.time_tap:
            out["tollgate"]["tap_us_per_mb"] = percentile(
                [t["ns"] / 1000 / (t["bytes"] / MB) for t in self.tap_lines()[len(taps_before) :]], 50
            )
        return out

    def tap_lines(self) -> list[dict]:
        """The streams timed through Tollgate's tap so far (`--time-tap`): pieces, bytes, ns each."""
        if not self.tap_times.exists():
            return []
        return [json.loads(line) for line in self.tap_times.read_text().splitlines()]

    def side_by_side(self, cell: Cell) -> list[float]:
        """`--bulk-rounds` rounds of one bulk stream through each mitmdump at once: Tollgate's CPU
        per upstream MB over bare mitmdump's, per round. Both run through the same moments of the
        machine, whose speed drifts by tens of percent between sequential rounds; the streams'
        throughput is not compared (the client, serving both, limits them alike)."""
        size = self.args.size_mb * MiB
        timeout = self.args.bulk_timeout or 60 + self.args.size_mb * 0.6
        ratios = []
        proxies = {mode: self.proxies[mode] for mode in ("bare", "tollgate")}
        for _ in range(self.args.bulk_rounds):
            scenarios = {mode: Scenario.bulk(cell.fmt, cell.event_bytes, size) for mode in proxies}
            before = {mode: cpu_ns(proxy.pid) for mode, proxy in proxies.items()}
            failures: list[BaseException] = []
            threads = [
                threading.Thread(target=self._call_into, args=(mode, scenarios[mode], timeout, failures))
                for mode in proxies
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if failures:
                raise failures[0]
            per_mb = {
                mode: (cpu_ns(proxy.pid) - before[mode]) / (scenarios[mode].bytes_sent / MB)
                for mode, proxy in proxies.items()
            }
            ratios.append(per_mb["tollgate"] / per_mb["bare"])
        return ratios

    def _call_into(self, mode: str, scenario: Scenario, timeout: float, failures: list[BaseException]) -> None:
        """`run_call` in a thread of its own: what it raises goes into `failures`."""
        try:
            self.run_call(mode, scenario, timeout)
        except BaseException as exc:
            failures.append(exc)

    def stop(self) -> None:
        for proxy in self.proxies.values():
            try:
                proxy.stop()
            except Exception:
                pass
        if self.fake is not None:
            self.fake.close()


# --------------------------------------------------------------------------------------------------
# Report


def fmt(value: float, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


Check = tuple[str, str, str, bool | None]  # what, measured, target, passed (None: no target)


def checks_table(checks: list[Check], title: str) -> str:
    rows = [
        [name, value, target, "-" if ok is None else ("PASS" if ok else "FAIL")] for name, value, target, ok in checks
    ]
    return table(rows, [title, "measured", "target", "result"])


def us(ns: float) -> str:
    """Nanoseconds as microseconds with one decimal; "-" for none."""
    return "-" if math.isnan(ns) else f"{ns / 1000:.1f}"


def dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


@dataclass
class CellResult:
    cell: Cell
    lat: dict
    bulk: dict
    side: list[float]  # Tollgate's CPU per MB over bare mitmdump's, the two streaming at once, per round
    load: str  # load average after the cell

    def ratio(self) -> float:
        return percentile(self.bulk["tollgate"]["ratios"], 50)

    def added_p99(self, mode: str = "tollgate") -> float:
        return self.lat[mode]["delay_p99"] - self.lat["bare"]["delay_p99"]

    def control_ratio(self) -> float | None:
        """The second bare mitmdump's throughput over the first's (--control): the run's own noise."""
        return percentile(self.bulk[CONTROL]["ratios"], 50) if CONTROL in self.bulk else None

    def target_ratio(self) -> float:
        return TARGET_ROUTED_RATIO if self.cell.fmt.routed else TARGET_THROUGHPUT_RATIO

    def checks(self) -> list[Check]:
        t_bulk, b_bulk = self.bulk["tollgate"], self.bulk["bare"]
        growth = t_bulk.get("rss_growth", float("nan"))
        ratios = " ".join(f"{r:.2f}" for r in t_bulk["ratios"])
        return [
            (
                "per-chunk delay p99, Tollgate - bare mitmdump",
                f"{self.added_p99():+.3f} ms (p50 {self.lat['tollgate']['delay_p50'] - self.lat['bare']['delay_p50']:+.3f} ms)",
                f"<= {TARGET_ADDED_P99_MS:g} ms",
                self.added_p99() <= TARGET_ADDED_P99_MS,
            ),
            (
                "TTFB p50, Tollgate - bare mitmdump",
                f"{self.lat['tollgate']['ttfb_p50'] - self.lat['bare']['ttfb_p50']:+.2f} ms",
                "(no target)",
                None,
            ),
            (
                "throughput, Tollgate / bare mitmdump (median of rounds)",
                f"{self.ratio():.2f}x (rounds {ratios}; {t_bulk['mbps']:.1f} / {b_bulk['mbps']:.1f} MB/s)",
                f">= {self.target_ratio():g}x",
                self.ratio() >= self.target_ratio(),
            ),
            *self.control_checks(),
            (
                "CPU per MB, Tollgate / bare mitmdump, streaming side by side (median of rounds)",
                f"{percentile(self.side, 50):.3f}x (rounds {' '.join(f'{r:.2f}' for r in self.side)})",
                "(no target)",
                None,
            ),
            (
                "peak RSS growth, Tollgate",
                f"{growth:+.1f} MB (bare mitmdump {b_bulk.get('rss_growth', float('nan')):+.1f} MB)",
                f"<= {TARGET_RSS_GROWTH_MB:g} MB",
                growth <= TARGET_RSS_GROWTH_MB,
            ),
        ]

    def control_checks(self) -> list[Check]:
        """What the same figures are for a second bare mitmdump (--control): how far noise goes."""
        if CONTROL not in self.bulk:
            return []
        ratios = " ".join(f"{r:.2f}" for r in self.bulk[CONTROL]["ratios"])
        return [
            (
                "per-chunk delay p99, bare mitmdump again - bare mitmdump",
                f"{self.added_p99(CONTROL):+.3f} ms",
                "(no target)",
                None,
            ),
            (
                "throughput, bare mitmdump again / bare mitmdump",
                f"{self.control_ratio():.2f}x (rounds {ratios})",
                "(no target)",
                None,
            ),
        ]

    def passed(self) -> bool:
        return all(ok for *_, ok in self.checks() if ok is not None)


def preamble(bench: Bench) -> None:
    import mitmproxy.version

    args = bench.args
    print()
    print(
        f"Tollgate streaming benchmark — mitmproxy {mitmproxy.version.VERSION}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; all on 127.0.0.1, client and fake upstream in one process"
    )
    print(
        f"latency phase: {args.rounds} rounds per mode (more for at least {args.min_samples} events) of up to "
        f"{args.chunks} events, {args.delay_ms:g} ms apart or "
        f"further for large events ({PACED_BYTES_PER_S / MB:g} MB/s at most), a fresh connection per call"
    )
    print(
        f"bulk phase: {args.bulk_rounds} x {args.size_mb} MiB stream per mode and cell, the modes' order alternating, "
        f"every byte checked (length + CRC-32; the routed format through Tollgate: text and usage); MB/s is the "
        f"median round, Tollgate / bare the median of the rounds' ratios; routed: the upstream's bytes per second"
    )
    print(
        f"side by side: {args.bulk_rounds} x {args.size_mb} MiB through both mitmdumps at once; CPU per MB, "
        f"Tollgate / bare: the median of the rounds' ratios (throughput not compared: the client limits both alike)"
    )
    print(
        f"usage: every call through Tollgate found in its audit with the fake's input and output tokens and finish "
        f"reason ({bench.usage_checked} calls checked, {len(bench.usage_problems)} differed)"
    )
    print(
        f"load average at start: {bench.loadavg_start}, at end: {loadavg()} (other processes on the machine add noise)"
    )
    if args.unread:
        print("Tollgate reads no usage (--unread, bench/unread_tap.py): its audit's usage is not checked")
    if CONTROL in bench.modes:
        print(
            "control: a second bare mitmdump, started as the first and measured in the same rounds ('again'): "
            "how far two identical proxies differ in this run"
        )
    print(BARE_STREAMING_NOTE)
    print("bare mitmdump also gets --set connection_strategy=lazy, as Tollgate sets it")
    print(
        "units: ms; MB = 10^6 bytes; 'added' = over direct; RSS of the mitmdump process (VmRSS before, "
        "peak = max(VmHWM after reset, VmRSS sampled every 20 ms))"
    )


def cell_report(result: CellResult) -> None:
    """One cell in full: every mode's latency, throughput and memory, then the checks."""
    lat, bulk = result.lat, result.bulk
    print()
    print(
        f"{result.cell.name}: content events of {bulk['direct'].get('event_bytes', 0) or '?'} bytes; paced: "
        f"{lat['direct']['events']} events {lat['direct']['delay_ms']:.1f} ms apart; bulk: {bulk['direct']['bytes']:,} "
        f"upstream bytes; load {result.load}"
    )
    header = [
        "mode",
        "connect p50",
        "TTFB p50",
        "TTFB max",
        "chunk p50",
        "chunk p99",
        "chunk max",
        "added p50",
        "added p99",
        "MB/s",
        "MB/s range",
        "RSS before",
        "RSS peak",
        "RSS growth",
        "RSS after",
    ]
    rows = []
    base = lat["direct"]
    for mode in lat:
        latm, bulkm = lat[mode], bulk[mode]
        rows.append(
            [
                LABELS[mode],
                fmt(latm["connect_p50"]),
                fmt(latm["ttfb_p50"]),
                fmt(latm["ttfb_max"]),
                fmt(latm["delay_p50"], 3),
                fmt(latm["delay_p99"], 3),
                fmt(latm["delay_max"], 3),
                fmt(latm["delay_p50"] - base["delay_p50"], 3, True) if mode != "direct" else "-",
                fmt(latm["delay_p99"] - base["delay_p99"], 3, True) if mode != "direct" else "-",
                fmt(bulkm["mbps"], 1),
                f"{bulkm['mbps_min']:.0f}-{bulkm['mbps_max']:.0f}",
                fmt(bulkm.get("rss_before", float("nan")), 1),
                fmt(bulkm.get("rss_peak", float("nan")), 1),
                fmt(bulkm.get("rss_growth", float("nan")), 1, True),
                fmt(bulkm.get("rss_after", float("nan")), 1),
            ]
        )
    print(table(rows, header))
    print()
    print(checks_table(result.checks(), "vs bare mitmdump"))
    if not all(bulk[m].get("hwm_reset", 1.0) for m in ("bare", "tollgate")):
        print("note: /proc/<pid>/clear_refs was not writable; peak RSS is from 20 ms VmRSS samples only")
    if bulk["direct"]["mbps"] < 2 * max(bulk["bare"]["mbps"], bulk["tollgate"]["mbps"]):
        print(
            "note: the direct (harness) throughput is less than twice the proxies'; the client/upstream harness "
            "may limit the figures"
        )


def summary(results: list[CellResult]) -> None:
    """Every cell in one line: format x event size -> Tollgate / bare, and the other targets. CPU/MB:
    the proxy process's CPU time per upstream MB (median round; in brackets the median of the rounds'
    Tollgate / bare ratios). CPU side by side: the median of the side-by-side rounds' CPU ratios
    (their range in brackets), the steadiest figure on a shared machine."""
    print()
    header = [
        "format",
        "event",
        "bare MB/s",
        "Tollgate MB/s",
        "Tollgate / bare",
        "rounds",
        "target",
        "CPU/MB bare",
        "CPU/MB Tollgate",
        "CPU side by side",
        "added p99 ms",
        "RSS growth MB",
        "load",
        "result",
    ]
    timed = "tap_us_per_mb" in results[0].bulk["tollgate"] if results else False
    if timed:
        header.insert(header.index("added p99 ms"), "tap in proxy, of bare's CPU")
    controlled = bool(results) and results[0].control_ratio() is not None
    if controlled:
        header[header.index("target") + 1 : header.index("target") + 1] = ["again / bare", "again: added p99 ms"]
    rows = []
    for r in results:
        ratios = r.bulk["tollgate"]["ratios"]
        cpu_ratio = percentile(r.bulk["tollgate"]["cpu_ratios"], 50)
        rows.append(
            [
                r.cell.fmt.name,
                size_label(r.cell.event_bytes),
                fmt(r.bulk["bare"]["mbps"], 1),
                fmt(r.bulk["tollgate"]["mbps"], 1),
                f"{r.ratio():.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                f">= {r.target_ratio():g}x",
                f"{r.bulk['bare']['cpu_us_per_mb']:.0f} µs",
                f"{r.bulk['tollgate']['cpu_us_per_mb']:.0f} µs ({cpu_ratio:.2f}x)",
                f"{percentile(r.side, 50):.3f}x ({min(r.side):.2f}-{max(r.side):.2f})",
                fmt(r.added_p99(), 3, True),
                fmt(r.bulk["tollgate"].get("rss_growth", float("nan")), 1, True),
                r.load,
                "PASS" if r.passed() else "FAIL",
            ]
        )
        if controlled:
            at = header.index("again / bare")
            rows[-1][at:at] = [f"{r.control_ratio():.2f}x", fmt(r.added_p99(CONTROL), 3, True)]
        if timed:
            tap = r.bulk["tollgate"]["tap_us_per_mb"]
            share = tap / r.bulk["bare"]["cpu_us_per_mb"]
            rows[-1].insert(header.index("tap in proxy, of bare's CPU"), f"{tap:.0f} µs/MB ({share:.1%})")
    print(table(rows, header))
    if controlled:
        pooled(results)


def pooled(results: list[CellResult]) -> None:
    """Tollgate / bare over all the cells of the formats Tollgate reads, beside the control's: one
    cell's ratio moves by about the control's spread, their mean by that over the root of their
    number, which tells apart what no single cell can."""
    read = [r for r in results if not r.cell.fmt.routed]
    if len(read) < 3:
        return
    tollgate = [math.log(r.ratio()) for r in read]
    control = [math.log(r.control_ratio() or 1.0) for r in read]
    spread = statistics.stdev(control)
    margin = 2 * spread / math.sqrt(len(read))
    mean = statistics.mean(tollgate)
    print(
        f"\nover the {len(read)} cells Tollgate reads: Tollgate / bare {math.exp(mean):.3f}x (geometric mean; "
        f"{math.exp(mean - margin):.3f}-{math.exp(mean + margin):.3f} at two standard errors), bare again / bare "
        f"{math.exp(statistics.mean(control)):.3f}x; one cell's ratio moves by ±{spread:.0%} (the control's "
        f"standard deviation)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--format",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated stream formats, of: {', '.join(FORMATS)}",
    )
    parser.add_argument(
        "--event-bytes",
        default=",".join(str(n) for n in DEFAULT_EVENT_BYTES),
        help="comma-separated sizes of the content events in bytes (0: as small as the format makes them)",
    )
    parser.add_argument("--size-mb", type=int, default=24, help="bulk stream size in MiB")
    parser.add_argument("--chunks", type=int, default=100, help="events per paced call at most (>= 4)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="pause between paced events, at least")
    parser.add_argument("--rounds", type=int, default=3, help="paced calls per mode and cell")
    parser.add_argument(
        "--min-samples", type=int, default=200, help="paced events per mode and cell at least (more rounds if need be)"
    )
    parser.add_argument(
        "--bulk-rounds",
        type=int,
        default=9,
        help="large streams per mode and cell (interleaved); throughput is the median",
    )
    parser.add_argument(
        "--bulk-timeout", type=float, default=0.0, help="seconds allowed for one bulk call (0: 60 + 0.6 s per MiB)"
    )
    parser.add_argument("--quiet-proxies", action="store_true", help="flow_detail=0 for both mitmdumps")
    parser.add_argument(
        "--time-tap",
        action="store_true",
        help="time Tollgate's stream tap inside its mitmdump (bench/tap_timer.py): its share of bare's CPU per MB",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="run a second bare mitmdump, measured as Tollgate is: the run's own noise, beside each Tollgate figure",
    )
    parser.add_argument(
        "--unread",
        action="store_true",
        help="Tollgate's tap reads no usage (bench/unread_tap.py): what Tollgate costs in a stream besides the reading",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, config, audit)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.chunks < 4 or args.rounds < 1 or args.size_mb < 1 or args.delay_ms < 0 or not 1 <= args.bulk_rounds <= 100:
        parser.error("need --chunks >= 4, --rounds >= 1, --size-mb >= 1, --delay-ms >= 0, 1 <= --bulk-rounds <= 100")
    if args.chunks * args.rounds > 1_000_000 or not 0 <= args.min_samples <= 100_000:
        parser.error("--chunks x --rounds is limited to 1,000,000, --min-samples to 100,000")
    try:
        formats = [FORMATS[name.strip()] for name in args.format.split(",") if name.strip()]
        sizes = [int(n) for n in args.event_bytes.split(",") if n.strip()]
    except (KeyError, ValueError) as exc:
        parser.error(f"--format takes {', '.join(FORMATS)}; --event-bytes takes numbers ({exc})")
    if not formats or not sizes or any(not 0 <= n <= 16 * MiB for n in sizes):
        parser.error("need a format and event sizes from 0 to 16 MiB")
    cells = [Cell(f, n) for f in formats for n in sizes]

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    bench = Bench(args, workdir)
    results: list[CellResult] = []
    try:
        bench.setup()
        print("commands:")
        for proxy in bench.proxies.values():
            print(f"  {proxy.name}: {proxy.command_line()}")
        print(
            f"  fake upstream: {bench.fake.url} (thread of this process); tollgate.yaml: "
            f"{(workdir / 'tollgate.yaml').read_text().strip().replace(chr(10), ' | ')}"
        )
        for cell in cells:
            print(
                f"{cell.name}: warm-up, latency ({bench.latency_rounds(cell)} rounds), "
                f"bulk ({args.bulk_rounds} x {args.size_mb} MiB), "
                "side by side ...",
                flush=True,
            )
            bench.warm_up(cell)
            lat = bench.latency(cell)
            bulk_stats = bench.bulk(cell)
            side = bench.side_by_side(cell)
            bulk_stats["direct"]["event_bytes"] = Scenario.bulk(cell.fmt, cell.event_bytes, 1).event_bytes
            for name, proxy in bench.proxies.items():
                if not proxy.alive():
                    raise RuntimeError(f"{name} mitmdump died:\n{proxy.console()}")
            result = CellResult(cell, lat, bulk_stats, side, loadavg())
            results.append(result)
            control = f", bare again / bare {result.control_ratio():.2f}x" if args.control else ""
            print(
                f"  Tollgate / bare {result.ratio():.2f}x{control} (CPU side by side {percentile(side, 50):.3f}x), "
                f"added p99 {result.added_p99():+.3f} ms, "
                f"RSS growth {bulk_stats['tollgate'].get('rss_growth', 0):+.1f} MB, load {result.load}",
                flush=True,
            )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.stop()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    preamble(bench)
    if len(results) == 1:
        cell_report(results[0])
    summary(results)
    print(f"\ntotal {time.monotonic() - start:.1f} s")
    ok = all(r.passed() for r in results) and not bench.usage_problems
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
