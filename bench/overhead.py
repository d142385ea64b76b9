"""Overhead benchmark: what Tollgate adds to a non-streamed OpenAI chat call, next to bare mitmdump,
gemini-calo and LiteLLM's proxy, all measured in one run.

Run from the checkout:

    .venv/bin/python bench/overhead.py                       # first run installs the peers (~1-3 min)
    .venv/bin/python bench/overhead.py --calls 100 --concurrent-seconds 3 --concurrent-rounds 1 --ab-pairs 4   # quick
    .venv/bin/python bench/overhead.py --peers none          # only direct, bare mitmdump, Tollgate
    .venv/bin/python bench/overhead.py --baseline DIR        # and another checkout's Tollgate beside it
    .venv/bin/python bench/overhead.py --help

One TLS fake upstream (threads of this process, on 127.0.0.1, certificate from a trustme CA, the same
FakeUpstream as bench/stream.py) answers POST /v1/chat/completions with a fixed ~600-byte
chat.completion JSON (content-length framing) and counts, per call, the model it was asked for and
whether the Authorization header held the real key. The client (this process too) is one small
keep-alive HTTP/1.1 client over raw sockets, the same code for every mode: one connection per worker,
opened and warmed up before timing, reused for every call; a call is timed from the request write to
the last body byte (perf_counter_ns). Modes:

  direct       straight to the fake upstream (TLS, the real key);
  bare         forward proxy: plain mitmdump, CONNECT api.openai.com:443 through it (the client trusts
               the mitmproxy CA), only --map-remote api.openai.com -> the fake (plus
               connection_strategy=lazy, which Tollgate sets too: mitmproxy must not resolve or
               connect to the real api.openai.com at CONNECT time); the client sends the real key;
  tollgate     forward proxy, the same way: mitmdump -s addons/gateway.py with a realistic
               tollgate.yaml: two clients with virtual keys, providers.openai.upstream = the fake with
               one real-looking key, an override rule (gpt-4o -> gpt-4o-mini for group support), the
               Rego policy docs/examples/policies/model_allowlist.rego with
               bench/policies/max_tokens_ceiling.rego, two limits (a rate limit per client and a
               budget per group: five counters each call reserves and settles, caps never reached)
               with the ledger in SQLite beside audit.path = a file; the client sends its virtual
               key, the fake must see the real key and gpt-4o-mini;
  tollgate-translated  the same Tollgate process, called by a Gemini client: CONNECT
               generativelanguage.googleapis.com:443 (the mitmproxy CA signs any host; the lazy
               connection strategy keeps mitmproxy from resolving it), POST
               /v1beta/models/gpt-4o:generateContent with x-goog-api-key: the virtual key, the same
               call as a Gemini body (systemInstruction, one user message, maxOutputTokens 64). A
               second override rule, {match: {provider: gemini, model: gpt-4o}, provider: openai,
               model: gpt-4o-mini}, which the other modes' calls never reach (the first fits them),
               routes it to OpenAI: the fake must see an OpenAI chat call (/v1/chat/completions,
               gpt-4o-mini, the real key), and its chat.completion comes back translated into a
               GenerateContentResponse (warm-up checks candidates[0].content.parts[0].text and
               usageMetadata). Its added latency is printed beside untranslated Tollgate's, as a
               ratio to bare mitmdump's, with no target (informational);
  tollgate-redis  the same Tollgate configuration in a second mitmdump, its ledger.store on a
               redis-server started for the run (skipped when there is none);
  tollgate-baseline  with --baseline DIR: the same configuration in a mitmdump running DIR's
               addons/gateway.py (another checkout, e.g. `git worktree add DIR main`): a change's
               cost, measured in the run that measures the change;
  tollgate-otlp  the same Tollgate configuration in another mitmdump, plus metrics.otlp: a span per
               call exported over OTLP/HTTP to a collector stand-in (threads of this process that
               take and count the POSTs; see OtlpCollector);
  tollgate-postgres  the same Tollgate configuration in another mitmdump, plus audit.postgres: its audit
               file's records sent to a PostgreSQL started for the run (Debian's; skipped when there is
               none); its p50 and CPU per call are judged against Tollgate's in PostgreSQL pairs
               (<= 1.05x, as retry pairs are), and the table must hold every record at the end;
  tollgate-plan  the same Tollgate configuration in another mitmdump, plus providers.copilot.upstream =
               the fake and a proxy login (proxyauth, an htpasswd of one user, alice of group research):
               the same chat call as a Copilot client makes it, CONNECT api.business.githubcopilot.com,
               POST /chat/completions with a Copilot plan's token (`tid=…;…:mac`), the login on the
               CONNECT. A subscription call: the token goes upstream unchanged, no override applies
               (the fake must see gpt-4o and not the real key), the policy, limits and audit do;
  tollgate-retry  the same Tollgate configuration in another mitmdump, plus providers.openai.retry
               (attempts 3 on 429, 529, 5xx, connect and timeout): the fake never fails, so this is
               what a call that needs no retry costs with retries configured; its p50 and CPU per
               call are judged against Tollgate's in retry pairs (<= 1.02x, see below);
  gemini-calo  reverse proxy at http://127.0.0.1:PORT (its own server: the `gemini-calo` entry point's
               start_server(), with the middlewares it installs: logging, proxy-key auth, model
               override, conversation roll-up), configured by its environment variables; the built-in
               server has no setting for its upstream (GeminiProxyService(base_url=...) defaults to
               https://generativelanguage.googleapis.com), so a 10-line launcher passes
               base_url = the fake and binds 127.0.0.1 instead of 0.0.0.0 (see CALO_LAUNCHER);
               GEMINI_CALO_MODEL_OVERRIDE=gpt-4o-mini (in 0.7.3 it does not reach the upstream: the
               middleware's rewritten Request is not what Starlette passes on; the run prints a note),
               the proxy key as the client's key;
  litellm      reverse proxy: `litellm --config config.yaml --port PORT` (host 127.0.0.1), one
               model_list entry gpt-4o -> openai/gpt-4o-mini with api_base = the fake and the real
               key, general_settings.master_key (the client's key); no database.

Every mode makes the same call (model gpt-4o, a system and a user message, max_tokens 64).
The peers reach the fake over TLS with verification on: SSL_CERT_FILE = the trustme CA (httpx, which
both use, honours it; so does litellm's own SSL set-up) — no ssl_verify: false. Their per-request
logging is off: LITELLM_LOG=ERROR (uvicorn log level error, so no access log), the LITELLM_LOCAL_*
switches (no fetching of the cost map and other JSON from GitHub at start-up), no callbacks, no
database; gemini-calo with GEMINI_CALO_LOG_LEVEL=CRITICAL (its default), uvicorn access log off,
and the roll-up middleware's summary threshold raised so that it never calls Google. For the same
reason both mitmdumps run with flow_detail=0 (no per-flow console line; --proxy-console keeps
mitmdump's default); Tollgate still writes its audit file.

Phases: sequential (one connection per mode; --calls calls per mode after --warmup, in blocks of
--block interleaved across the modes so that drift in the machine's load spreads evenly); the added
latency of a mode is its p50 (p99) minus direct's. Concurrent (--connections workers, one thread and
one keep-alive connection each, for --concurrent-seconds per mode and round, --concurrent-rounds
rounds with the mode order rotated): requests/s (median round) and latency p50/p99 (all rounds), and
the CPU time of the proxy's process tree per call (from /proc). Spread among those rounds (a share
after each rotation): --ab-pairs A/B pairs, a round of bare mitmdump and one of Tollgate of
--ab-seconds each, back to back, the order alternating from pair to pair; the requests/s target is
judged on the median of the pairs' ratios. As many retry pairs, a round of Tollgate and one of
Tollgate with `retry` configured, judge what retries cost a call that needs none (p50 and CPU per
call, the median of the pairs' ratios); as many PostgreSQL pairs judge what the sender costs. Single rounds on a shared machine differ by 10-20 % from
one to the next, so many short pairs spread over the run measure the ratio more surely than a few
long rounds; the rotation's own ratios are printed too.

The peers are installed on demand, each into a venv of its own under bench/.venv-peers/
(gitignored; `pip install gemini-calo` and `pip install 'litellm[proxy]'`, with the Python >= 3.12
that run.sh would pick, or the one running this script): an install, start-up or check that fails
skips that peer with the reason printed, and the other modes still run.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import platform
import secrets
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
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import jwt  # noqa: E402
import trustme  # noqa: E402
import yaml  # noqa: E402

# bench/stream.py puts the checkout and addons/ on sys.path; reuse its fake upstream and helpers.
from stream import (  # noqa: E402
    API_HOST,
    Check,
    FakeUpstream,
    MiB,
    Proxy,
    checks_table,
    ensure_bundle,
    fmt,
    free_port,
    loadavg,
    now_ns,
    percentile,
    table,
)
from tollgate.governance.policy.policy import CACHE_SIZE  # noqa: E402

ROOT = BENCH.parent
POLICIES = (
    ROOT / "docs" / "examples" / "policies" / "model_allowlist.rego",
    BENCH / "policies" / "max_tokens_ceiling.rego",
)
DEFAULT_PEERS_DIR = BENCH / ".venv-peers"

REQUESTED_MODEL = "gpt-4o"
OVERRIDDEN_MODEL = "gpt-4o-mini"
PATH = "/v1/chat/completions"


def request_body(max_tokens: int = 64) -> bytes:
    return json.dumps(
        {
            "model": REQUESTED_MODEL,
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "Say hello in five words."},
            ],
            "max_tokens": max_tokens,
        },
        separators=(",", ":"),
    ).encode()


REQUEST_BODY = request_body()

GEMINI_HOST = "generativelanguage.googleapis.com"
# The mode "tollgate-plan": the same chat call made with a Copilot plan's token on Copilot's host.
COPILOT_HOST = "api.business.githubcopilot.com"
COPILOT_PATH = "/chat/completions"
GEMINI_PATH = f"/v1beta/models/{REQUESTED_MODEL}:generateContent"


def gemini_request_body(max_tokens: int = 64) -> bytes:
    """request_body()'s call in Gemini's generateContent format (the mode "tollgate-translated")."""
    return json.dumps(
        {
            "systemInstruction": {"parts": [{"text": "You are a terse assistant."}]},
            "contents": [{"role": "user", "parts": [{"text": "Say hello in five words."}]}],
            "generationConfig": {"maxOutputTokens": max_tokens},
        },
        separators=(",", ":"),
    ).encode()


# Tollgate caches a pure policy's decision by the input facts it reads (CACHE_SIZE of them); the
# mode "tollgate-distinct" sends this many different max_tokens, which the max_tokens ceiling reads,
# so that every call is decided anew.
DISTINCT_REQUESTS = 3 * CACHE_SIZE

PEERS = ("gemini-calo", "litellm")
LABELS = {
    "direct": "direct",
    "bare": "bare mitmdump",
    "tollgate": "Tollgate",
    "tollgate-distinct": "Tollgate, distinct requests",
    "tollgate-jwt": "Tollgate, JWT caller",
    "tollgate-translated": "Tollgate, Gemini call to OpenAI",
    "tollgate-plan": "Tollgate, Copilot plan call",
    "tollgate-redis": "Tollgate, ledger on Redis",
    "tollgate-otlp": "Tollgate, OTLP traces",
    "tollgate-retry": "Tollgate, retry configured",
    "tollgate-postgres": "Tollgate, audit sent to PostgreSQL",
    "tollgate-baseline": "Tollgate of the --baseline checkout",
    "gemini-calo": "gemini-calo",
    "litellm": "LiteLLM proxy",
}
PEER_PACKAGES = {"gemini-calo": ["gemini-calo"], "litellm": ["litellm[proxy]"]}
PEER_DISTRIBUTION = {"gemini-calo": "gemini-calo", "litellm": "litellm"}

TARGET_ADDED_RATIO = 1.10  # (tollgate - direct) / (bare - direct), p50
TARGET_RPS_RATIO = 0.9  # tollgate / bare, requests/s at 16 connections
TARGET_RETRY_RATIO = 1.02  # tollgate-retry / tollgate, p50 and CPU per call of a call that needs no retry
TARGET_POSTGRES_RATIO = 1.05  # tollgate-postgres / tollgate, p50 and CPU per call with the sender on
# The modes judged against Tollgate in pairs of rounds back to back: their target and what they show.
PAIRED = {"tollgate-retry": (TARGET_RETRY_RATIO, "retry configured / not"),
          "tollgate-postgres": (TARGET_POSTGRES_RATIO, "audit.postgres / not")}  # fmt: skip

MAX_CALLS = 100_000
MAX_CONNECTIONS = 256
CALL_TIMEOUT = 30.0  # seconds, one call (socket timeout for each read)

# gemini-calo's built-in server (gemini_calo.__main__.start_server) unchanged, except that its
# GeminiProxyService gets base_url = the fake upstream (the server has no setting for it) and uvicorn
# binds 127.0.0.1 (not 0.0.0.0) without an access log.
CALO_LAUNCHER = """\
import functools, os, types
import uvicorn
import gemini_calo.__main__ as calo_main
from gemini_calo.proxy import GeminiProxyService

calo_main.GeminiProxyService = functools.partial(GeminiProxyService, base_url=os.environ["BENCH_CALO_BASE_URL"])

def run(app, **kwargs):
    kwargs.update(host="127.0.0.1", log_level="warning", access_log=False)
    uvicorn.run(app, **kwargs)

calo_main.uvicorn = types.SimpleNamespace(run=run)
calo_main.start_server()
"""

# Environment variables that would send the peers' traffic elsewhere.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def say(message: str) -> None:
    print(message, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------------
# Fake upstream: non-streamed chat completions


def chat_completion(answer_id: str, model: str, content: str | None, finish: str, usage: dict, **more: Any) -> dict:
    """A non-streamed chat completion of one choice: its message's `content` and `more` members."""
    message = {"role": "assistant", "content": content, **more, "refusal": None, "annotations": []}
    return {
        "id": answer_id,
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


class ChatFake(FakeUpstream):
    """bench/stream.py's TLS fake upstream, answering non-streamed chat completions instead."""

    MAX_REQUESTS_PER_CONNECTION = MAX_CALLS * 2

    def __init__(self, ca: trustme.CA, real_key: str) -> None:
        self.expected_auth = f"Bearer {real_key}"
        self.seen: Counter[tuple[str, str, bool]] = Counter()  # (path, model, real key) -> calls
        self._seen_lock = threading.Lock()
        self._payloads: dict[str, bytes] = {}
        super().__init__(ca)

    def snapshot(self) -> Counter[tuple[str, str, bool]]:
        with self._seen_lock:
            return Counter(self.seen)

    def _payload(self, model: str) -> bytes:
        """The answer's bytes for `model`, made once."""
        payload = self._payloads.get(model)
        if payload is None:
            payload = json.dumps(self._completion(model), separators=(",", ":")).encode()
            self._payloads[model] = payload
        return payload

    def _completion(self, model: str) -> dict:
        """The chat completion answered to a call of `model`."""
        usage = {
            "prompt_tokens": 24,
            "completion_tokens": 7,
            "total_tokens": 31,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        return {
            **chat_completion(
                "chatcmpl-bench0000000000000000000000", model, "Hello there, nice to meet!", "stop", usage
            ),
            "service_tier": "default",
            "system_fingerprint": "fp_bench0000",
        }

    def _answer(self, tls: ssl.SSLSocket, method: str, path: str, headers: dict, body: bytes) -> None:
        model = "?"
        try:
            model = str(json.loads(body).get("model"))
        except (ValueError, AttributeError):
            pass
        real_key = headers.get("authorization") == self.expected_auth
        path = path.split("?", maxsplit=1)[0]  # httpx (gemini-calo) sends an empty query: /v1/chat/completions?
        with self._seen_lock:
            self.seen[(path, model, real_key)] += 1
        if method != "POST" or path not in (PATH, "/v1beta/openai/chat/completions", COPILOT_PATH):
            payload = json.dumps(
                {
                    "error": {
                        "message": f"bench fake upstream: unexpected {method} {path}",
                        "type": "invalid_request_error",
                    }
                }
            ).encode()
            tls.sendall(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                % (len(payload), payload)
            )
            return
        payload = self._payload(model)
        tls.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"x-request-id: req_bench\r\nopenai-processing-ms: 1\r\n\r\n%b" % (len(payload), payload)
        )


# --------------------------------------------------------------------------------------------------
# Client: one keep-alive HTTP/1.1 connection, raw sockets, identical for every mode


@dataclass
class Target:
    """Where a mode's client connects and what it sends."""

    mode: str
    kind: str  # "tls" (straight to the fake), "connect" (CONNECT through a forward proxy), "plain" (reverse proxy)
    port: int
    key: str  # what goes in Authorization: Bearer (x-goog-api-key for a Gemini client)
    expect_model: str  # what the fake must be asked for
    expect_real_key: bool = True
    context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    distinct: int = 1  # how many different requests it cycles through (max_tokens 64, 65, ...)
    gemini: bool = False  # a Gemini client (generateContent on generativelanguage.googleapis.com)
    copilot: bool = False  # a Copilot client (its plan's token, /chat/completions on Copilot's business host)
    proxy_login: str | None = None  # "user:password" sent with the CONNECT (Proxy-Authorization)
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.connect_host = GEMINI_HOST if self.gemini else COPILOT_HOST if self.copilot else API_HOST
        self.answer_marker = b'"candidates"' if self.gemini else b'"choices"'
        self.upstream_path = COPILOT_PATH if self.copilot else PATH  # what the fake must be asked on
        host = self.connect_host if self.kind == "connect" else f"127.0.0.1:{self.port}"
        path, auth = (
            (GEMINI_PATH, "x-goog-api-key: ") if self.gemini else (self.upstream_path, "Authorization: Bearer ")
        )
        for body in self._bodies():
            self.requests.append(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{self.key}\r\n"
                    f"Content-Type: application/json\r\nAccept: application/json\r\nUser-Agent: tollgate-bench/1\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
        self._next = itertools.count()  # shared by the mode's connections: a request recurs only after all others

    def _bodies(self) -> list[bytes]:
        """The bodies of the `distinct` requests it cycles through."""
        return [gemini_request_body(64 + i) if self.gemini else request_body(64 + i) for i in range(self.distinct)]

    def next_request(self) -> bytes:
        return self.requests[next(self._next) % self.distinct]


class CallError(Exception):
    pass


class Conn:
    """One keep-alive connection to a target. `call()` sends the request and reads the whole response;
    it reconnects (outside the timed part) when the server closed the connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.calls_on_conn = 0
        self.reconnects = -1  # the first connect is not a reconnect
        self.last_status = 0
        self.last_body = b""
        self.last_headers: dict[str, str] = {}

    def connect(self) -> None:
        self.close()
        t = self.target
        sock = socket.create_connection(("127.0.0.1", t.port), timeout=CALL_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if t.kind == "connect":
                host = t.connect_host
                login = ""
                if t.proxy_login is not None:
                    login = f"Proxy-Authorization: Basic {base64.b64encode(t.proxy_login.encode()).decode()}\r\n"
                sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n{login}\r\n".encode())
                reply = b""
                while b"\r\n\r\n" not in reply:
                    data = sock.recv(4096)
                    if not data or len(reply) > 65536:
                        raise CallError(f"proxy closed the CONNECT: {reply[:200]!r}")
                    reply += data
                if b" 200" not in reply.split(b"\r\n", 1)[0]:
                    raise CallError(f"CONNECT refused: {reply.split(chr(13).encode(), 1)[0]!r}")
            if t.kind in ("connect", "tls"):
                assert t.context is not None
                sock = t.context.wrap_socket(sock, server_hostname=t.server_hostname)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buf = bytearray()
        self.calls_on_conn = 0
        self.reconnects += 1

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionResetError("connection closed by the server")
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > 65536:
                raise CallError("line too long")
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 1 * MiB:
                raise CallError("response headers too large")
            self._fill()
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    break
                parts.append(self._exactly(size))
                if self._exactly(2) != b"\r\n":
                    raise CallError("bad chunk framing")
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        else:  # until the connection closes
            try:
                while True:
                    self._fill()
            except ConnectionResetError:
                pass
            body = bytes(self.buf)
            self.buf = bytearray()
            headers["connection"] = "close"
        return status, headers, body

    def call(self) -> int:
        """One call; returns its duration in ns (request write to last body byte)."""
        for attempt in range(2):
            if self.sock is None:
                self.connect()
            reused = self.calls_on_conn > 0
            t0 = now_ns()
            try:
                self.sock.sendall(self.target.next_request())
                status, headers, body = self._response()
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise CallError(f"{exc!r}") from exc
            except (OSError, ValueError) as exc:
                self.close()
                raise CallError(f"{exc!r}") from exc
            elapsed = now_ns() - t0
            self.calls_on_conn += 1
            self.last_status, self.last_headers, self.last_body = status, headers, body
            if headers.get("connection", "").lower() == "close":
                self.close()
            if status != 200:
                raise CallError(f"HTTP {status}: {body[:300]!r}")
            if not body.startswith(b"{") or self.target.answer_marker not in body:
                raise CallError(f"not a chat completion: {body[:300]!r}")
            return elapsed
        raise CallError("unreachable")


# --------------------------------------------------------------------------------------------------
# Processes: the peers' (mitmdump is stream.Proxy)


class Service:
    """A reverse-proxy peer: started in a session of its own, stopped by its process group."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], workdir: Path, port: int, ready_path: str
    ) -> None:
        self.name = name
        self.args = args
        self.port = port
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open as long as the process
        self.process = subprocess.Popen(
            args,
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def console(self, last: int = 3000) -> str:
        try:
            self._log.flush()
            return self.log_path.read_text(errors="replace")[-last:]
        except (OSError, ValueError):
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Until GET ready_path answers 200 (bounded)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with status {self.process.returncode}:\n{self.console()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.settimeout(5)
                    sock.sendall(
                        f"GET {self.ready_path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                        f"Connection: close\r\n\r\n".encode()
                    )
                    reply = sock.recv(4096)
                if reply.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    return
                last = repr(reply[:100])
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise RuntimeError(f"not ready within {timeout:.0f} s (GET {self.ready_path}: {last}):\n{self.console()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        else:  # its leader is gone; children it left in the group, if any
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()

    def command_line(self) -> str:
        return " ".join(self.args)


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        child, parent = int(entry), int(fields[1])
        children.setdefault(parent, []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


# --------------------------------------------------------------------------------------------------
# Installing the peers


def python_ok(python: str) -> bool:
    try:
        r = subprocess.run(
            [python, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"],
            check=False,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def find_python() -> str | None:
    """A Python >= 3.12, looked for like run.sh does ($TOLLGATE_PYTHON, python3.14..3.12, pyenv's
    versions, python3), after the interpreter running this script (the one .venv was made with)."""
    candidates = []
    if os.environ.get("TOLLGATE_PYTHON"):
        candidates.append(os.environ["TOLLGATE_PYTHON"])
    base = getattr(sys, "_base_executable", None)
    if base:
        candidates.append(base)
    candidates += ["python3.14", "python3.13", "python3.12"]
    try:
        root = subprocess.run(["pyenv", "root"], check=False, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = ""
    if root and Path(root, "versions").is_dir():
        found = list(Path(root, "versions").glob("3.1[2-9]*/bin/python3"))
        found.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parts[-3].split(".")], reverse=True)
        candidates += [str(p) for p in found]
    candidates += ["python3", "python"]
    for candidate in candidates:
        resolved = shutil.which(candidate) or candidate
        if python_ok(resolved):
            return resolved
    return None


def tail_reason(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if line.startswith("ERROR") or "error:" in line.lower()]
    picked = (errors or [line for line in text if line.strip() and not line.startswith("WARNING: Location")])[-lines:]
    return " | ".join(line.strip() for line in picked) or "(empty log)"


def ensure_peer(name: str, root: Path, reinstall: bool, allow_install: bool, timeout: float) -> tuple[Path | None, str]:
    """The peer's venv python, or None and why not."""
    venv = root / name
    python = venv / "bin" / "python"
    marker = venv / ".tollgate-bench-installed"
    spec = " ".join(PEER_PACKAGES[name])
    if not reinstall and marker.exists() and marker.read_text().strip() == spec and python.exists():
        return python, ""
    if not allow_install:
        return None, f"not installed in {venv} and --no-install given"
    base = find_python()
    if base is None:
        return None, "no Python 3.12 or newer found (set TOLLGATE_PYTHON=/path/to/python3.12)"
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"{name}-install.log"
    shutil.rmtree(venv, ignore_errors=True)
    say(f"installing {spec} into {venv} with {base} (log: {log}; only when missing) ...")
    started = time.monotonic()
    with open(log, "wb") as out:
        steps = [
            ("python -m venv", [base, "-m", "venv", str(venv)]),
            (
                f"pip install {spec}",
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", *PEER_PACKAGES[name]],
            ),
        ]
        for what, step in steps:
            out.write(f"$ {' '.join(step)}\n".encode())
            out.flush()
            left = timeout - (time.monotonic() - started)
            try:
                process = subprocess.Popen(
                    step, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )  # pip keeps the environment (its proxy, index)
            except OSError as exc:
                return None, f"{step[0]}: {exc}"
            try:
                code = process.wait(timeout=max(1.0, left))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return None, f"`{what}` did not finish within {timeout:.0f} s (log: {log})"
            except BaseException:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                raise
            if code != 0:
                return None, f"`{what}` failed (exit {code}): {tail_reason(log)}"
    marker.write_text(spec + "\n")
    say(f"  {name} installed in {time.monotonic() - started:.0f} s")
    return python, ""


def peer_version(python: Path, name: str) -> str:
    try:
        code = f"import importlib.metadata as m; print(m.version({PEER_DISTRIBUTION[name]!r}))"
        r = subprocess.run(
            [str(python), "-c", code], check=False, capture_output=True, text=True, timeout=60, env=clean_env()
        )
        return r.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class Round:
    """One mode's concurrent round."""

    rps: float
    latencies: list[float]  # ms
    cpu_ms: float  # the proxy's CPU per call
    harness_cpu_ms: float  # this process's (client and fake upstream) CPU per call


@dataclass
class ModeState:
    target: Target
    version: str = ""
    process: Proxy | Service | None = None
    seq: list[float] = field(default_factory=list)  # ms
    conc_rps: list[float] = field(default_factory=list)
    conc_lat: list[float] = field(default_factory=list)  # ms
    conc_cpu_ms: list[float] = field(default_factory=list)  # proxy CPU ms per call, per round
    conc_harness_cpu_ms: list[float] = field(default_factory=list)
    ab_rps: list[float] = field(default_factory=list)  # its rounds in the A/B pairs (bare and Tollgate only)
    ab_cpu_ms: list[float] = field(default_factory=list)
    errors: int = 0
    untimed_calls: int = 0  # each round's connection warm-up
    reconnects: int = 0
    calls: int = 0
    upstream_seen: Counter = field(default_factory=Counter)


@dataclass
class Trust:
    """What the clients and mitmdumps of a bench trust: the fake upstream's CA (its PEM in the work
    directory), a client's context straight to the fake (`direct`) and through a mitmdump
    (`proxied`, trusting the mitmdump's CA in `confdir`), and the arguments every mitmdump shares
    (`common`: its confdir, the fake's CA, and no per-flow console line unless `console`)."""

    ca: trustme.CA
    ca_pem: Path
    direct: ssl.SSLContext
    proxied: ssl.SSLContext
    common: list[str]

    @classmethod
    def made(cls, workdir: Path, console: bool = False) -> Trust:
        ca = trustme.CA()
        ca_pem = workdir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        direct = ssl.create_default_context()
        ca.configure_trust(direct)
        direct.set_alpn_protocols(["http/1.1"])
        confdir = workdir / "confdir"
        proxied = ssl.create_default_context(cafile=str(ensure_bundle(confdir)))
        proxied.set_alpn_protocols(["http/1.1"])
        common = ["--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={ca_pem}"]
        if not console:
            common += ["--set", "flow_detail=0"]
        return cls(ca, ca_pem, direct, proxied, common)


def bare_args(upstream: str, common: list[str]) -> list[str]:
    """Bare mitmdump's arguments: only `--map-remote` api.openai.com to the fake (and the lazy
    connection strategy Tollgate sets too)."""
    return [
        "--mode",
        "regular",
        "--map-remote",
        f"|^https://api\\.openai\\.com|{upstream}",
        "--set",
        "connection_strategy=lazy",
        *common,
    ]


def tollgate_config(
    upstream: str,
    real_key: str,
    virtual_key: str,
    audit_path: Path,
    other_key: str = "tg-alice-7f3c9b2e41d8a0b6",
    policies: tuple[Path, ...] = POLICIES,
    jwt_secret: str | None = None,
    ledger_store: str | None = None,
    metrics_listen: str | None = None,
) -> dict:
    """Tollgate's configuration in the benchmarks: virtual keys (and, given a secret, a JWT issuer), an
    override rule, a policy, two limits whose counters every call charges (never reached: the run
    measures their cost, not refusals), an audit file, the ledger's store (default: SQLite
    beside the audit), and Prometheus metrics served (every call counted) where `metrics_listen` says."""
    identity = {"identity": {"jwt": [jwt_issuer(jwt_secret)]}} if jwt_secret else {}
    return {
        "providers": {"openai": {"upstream": upstream, "keys": [real_key], "timeout": 60}},
        "clients": [
            {"name": "bench-app", "keys": [virtual_key], "groups": ["support"]},
            {"name": "alice", "keys": [other_key], "groups": ["research"]},
        ],
        "allow_anonymous": False,
        "overrides": [
            {"match": {"provider": "openai", "model": REQUESTED_MODEL, "group": "support"}, "model": OVERRIDDEN_MODEL}
        ],
        **({"policy": {"rego": [str(p) for p in policies]}} if policies else {}),
        "limits": BENCH_LIMITS,
        "audit": {"path": str(audit_path)},
        **({"ledger": {"store": ledger_store}} if ledger_store else {}),
        **({"metrics": {"listen": metrics_listen}} if metrics_listen else {}),
        **identity,
    }


# A rate limit per client and a budget per group: five counters a call (requests and tokens a
# minute; tokens, dollars and requests a day), each checked and charged in one reservation.
BENCH_LIMITS = [
    {"name": "per client", "per": "client", "requests_per_minute": 10**9, "tokens_per_minute": 10**12},
    {"name": "per group", "per": "group", "tokens_per_day": 10**13, "usd_per_day": 10**6, "requests_per_day": 10**10},
]


JWT_ISSUER = "https://idp.bench.invalid"


def jwt_issuer(secret: str) -> dict:
    # Its token names the virtual-key caller, a configured client: written out, as Tollgate asks.
    return {
        "issuer": JWT_ISSUER,
        "audience": "tollgate",
        "secret": secret,
        "algorithms": ["HS256"],
        "client_prefix": "",
    }


def jwt_token(secret: str) -> str:
    """The JWT caller's token: the virtual-key caller's name and group, valid for the whole run."""
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "aud": "tollgate", "sub": "bench-app", "groups": ["support"]}
    return jwt.encode({**claims, "iat": now, "exp": now + 86400}, secret, algorithm="HS256")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.fake: ChatFake | None = None
        self.modes: dict[str, ModeState] = {}
        self.skipped: dict[str, str] = {}
        self.processes: list[Proxy | Service] = []
        self.loadavg_start = loadavg()
        # Tollgate's rounds and a PAIRED mode's, back to back, by that mode.
        self.pairs: dict[str, list[tuple[Round, Round]]] = {}
        self.postgres: Any = None  # the PostgreSQL server of the mode tollgate-postgres
        self.real_key = "sk-proj-" + secrets.token_urlsafe(48)
        self.virtual_key = "tg-bench-app-" + secrets.token_hex(12)
        self.jwt_secret = secrets.token_urlsafe(48)
        self.metrics_ports: dict[str | None, int] = {}  # each Tollgate's /metrics port, by its ledger store
        self.calo_key = "calo-bench-" + secrets.token_hex(12)
        self.litellm_key = "sk-litellm-master-" + secrets.token_hex(12)
        self.commands: list[str] = []
        self.notes: list[str] = []
        self.collector: OtlpCollector | None = None

    # ---- set-up

    def setup(self, peers: list[str]) -> None:
        args = self.args
        # Installs first (when needed), so that they are over before anything is measured.
        installed: dict[str, Path] = {}
        for name in peers:
            python, reason = ensure_peer(
                name, args.peers_venv, args.reinstall_peers, not args.no_install, args.install_timeout
            )
            if python is None:
                self.skipped[name] = f"install failed: {reason}"
                say(f"SKIPPED {LABELS[name]}: install failed: {reason}")
            else:
                installed[name] = python
        self.loadavg_start = loadavg()
        # The mitmdumps trust as in bench/stream.py.
        trust = Trust.made(self.workdir, console=args.proxy_console)
        self.ca_pem, proxy_ctx, common = trust.ca_pem, trust.proxied, trust.common
        self.fake = ChatFake(trust.ca, self.real_key)
        say(f"fake upstream: {self.fake.url} (threads of this process)")

        self.modes["direct"] = ModeState(
            Target(
                "direct",
                "tls",
                self.fake.port,
                self.real_key,
                REQUESTED_MODEL,
                context=trust.direct,
                server_hostname="127.0.0.1",
            )
        )

        bare = bare_args(self.fake.url, common)
        config = self.workdir / "tollgate.yaml"
        self.audit_path = self.workdir / "audit.jsonl"
        config.write_text(yaml.safe_dump(self.tollgate_config(), sort_keys=False))
        tollgate = ["-s", str(ROOT / "addons" / "gateway.py"), "--set", f"tollgate_config={config}", *common]
        import mitmproxy.version

        for name, proxy_args, key, model in (
            ("bare", bare, self.real_key, REQUESTED_MODEL),
            ("tollgate", tollgate, self.virtual_key, OVERRIDDEN_MODEL),
        ):
            proxy = Proxy(name, proxy_args, self.workdir)
            self.processes.append(proxy)
            proxy.wait_ready()
            self.commands.append(f"{name}: {proxy.command_line()}")
            self.modes[name] = ModeState(
                Target(name, "connect", proxy.port, key, model, context=proxy_ctx, server_hostname=API_HOST),
                version=f"mitmproxy {mitmproxy.version.VERSION}",
                process=proxy,
            )
        # The same Tollgate, asked for requests that all differ: its policy is evaluated on every call.
        self.modes["tollgate-distinct"] = ModeState(
            Target(
                "tollgate-distinct",
                "connect",
                self.modes["tollgate"].target.port,
                self.virtual_key,
                OVERRIDDEN_MODEL,
                context=proxy_ctx,
                server_hostname=API_HOST,
                distinct=DISTINCT_REQUESTS,
            ),
            version=self.modes["tollgate"].version,
            process=self.modes["tollgate"].process,
        )
        # The same Tollgate, its caller identified by a JWT (verified once, then remembered) rather
        # than a virtual key.
        self.modes["tollgate-jwt"] = ModeState(
            Target(
                "tollgate-jwt",
                "connect",
                self.modes["tollgate"].target.port,
                jwt_token(self.jwt_secret),
                OVERRIDDEN_MODEL,
                context=proxy_ctx,
                server_hostname=API_HOST,
            ),
            version=self.modes["tollgate"].version,
            process=self.modes["tollgate"].process,
        )
        # The same Tollgate, called by a Gemini client whose call the second override rule routes to
        # OpenAI: translated there and back.
        self.modes["tollgate-translated"] = ModeState(
            Target(
                "tollgate-translated",
                "connect",
                self.modes["tollgate"].target.port,
                self.virtual_key,
                OVERRIDDEN_MODEL,
                context=proxy_ctx,
                server_hostname=GEMINI_HOST,
                gemini=True,
            ),
            version=self.modes["tollgate"].version,
            process=self.modes["tollgate"].process,
        )
        self.commands.append("tollgate.yaml: " + json.dumps(self.tollgate_config(redact=True)))
        for mode, start in (
            ("tollgate-redis", self.start_redis_tollgate),
            ("tollgate-otlp", self.start_otlp_tollgate),
            ("tollgate-retry", self.start_retry_tollgate),
            ("tollgate-postgres", self.start_postgres_tollgate),
            ("tollgate-plan", self.start_plan_tollgate),
        ):
            if mode in args.without:
                self.skipped[mode] = "left out (--without)"
            else:
                start(common, proxy_ctx)
        if self.args.baseline is not None:
            self.start_baseline_tollgate(common, proxy_ctx)

        for name, python in installed.items():
            try:
                self.start_peer(name, python)
            except PeerSkipped as exc:
                self.skipped[name] = str(exc)
                say(f"SKIPPED {LABELS[name]}: {exc}")

    def tollgate_config(self, redact: bool = False, ledger_store: str | None = None) -> dict:
        hide = (lambda s: s[:12] + "…") if redact else (lambda s: s)
        assert self.fake is not None
        data = tollgate_config(
            self.fake.url,
            hide(self.real_key),
            hide(self.virtual_key),
            self.audit_path if ledger_store is None else self.workdir / "audit-redis.jsonl",
            hide("tg-alice-" + "7f3c9b2e41d8a0b6"),
            jwt_secret=hide(self.jwt_secret),
            ledger_store=ledger_store,
            metrics_listen=f"127.0.0.1:{self.metrics_ports.setdefault(ledger_store, free_port())}",
        )
        # The mode "tollgate-translated": a Gemini call routed to OpenAI. Second, so that the other
        # modes' calls, which the first rule fits, never reach it.
        data["overrides"].append(
            {"match": {"provider": "gemini", "model": REQUESTED_MODEL}, "provider": "openai", "model": OVERRIDDEN_MODEL}
        )
        return data

    def start_redis_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """A second Tollgate, its ledger on a redis-server of its own (when there is one to start)."""
        server = shutil.which("redis-server")
        if server is None:
            self.skipped["tollgate-redis"] = "redis-server is not installed"
            return
        port = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir()
        redis = Service(
            "redis",
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            clean_env(),
            self.workdir,
            port,
            "",
        )
        self.processes.append(redis)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.skipped["tollgate-redis"] = "redis-server did not start: " + redis.console(500)
                    return
                time.sleep(0.05)
        store = f"redis://127.0.0.1:{port}/0"
        data = self.tollgate_config(ledger_store=store)
        self.start_another_tollgate("tollgate-redis", data, f"ledger.store {store}", common, proxy_ctx)

    def start_otlp_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """A third Tollgate, exporting a span per call to a collector stand-in of this process."""
        self.collector = OtlpCollector()
        data = self.tollgate_config()
        data["audit"] = {"path": str(self.workdir / "audit-otlp.jsonl")}
        data["ledger"] = {"store": f"sqlite:///{self.workdir / 'ledger-otlp.sqlite'}"}
        data["metrics"] = {"otlp": {"endpoint": self.collector.url}}
        note = f"metrics.otlp.endpoint {self.collector.url}"
        self.start_another_tollgate("tollgate-otlp", data, note, common, proxy_ctx)

    def start_retry_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """Another Tollgate, the same configuration with `providers.openai.retry` (every condition):
        what a call that needs no retry costs with retries configured."""
        data = self.tollgate_config(ledger_store=f"sqlite:///{self.workdir / 'ledger-retry.sqlite'}")
        data["audit"] = {"path": str(self.workdir / "audit-retry.jsonl")}
        data["providers"]["openai"]["retry"] = {"attempts": 3, "when": [429, 529, "5xx", "connect", "timeout"]}
        self.start_another_tollgate("tollgate-retry", data, "providers.openai.retry", common, proxy_ctx)

    def start_postgres_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """Another Tollgate, the same configuration with `audit.postgres`: its records sent to a
        PostgreSQL of the run's own as they are written."""
        sys.path.insert(0, str(BENCH.parent))
        from tests.support.postgres_server import PostgresServer, postgres_bin

        if postgres_bin() is None:
            self.skipped["tollgate-postgres"] = "PostgreSQL is not installed (Debian: apt-get install -y postgresql)"
            return
        # A directory of its own: the work directory is not the postgres user's to enter.
        self.postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="tollgate-postgres-"))).start()
        data = self.tollgate_config(ledger_store=f"sqlite:///{self.workdir / 'ledger-postgres.sqlite'}")
        data["audit"] = {"path": str(self.workdir / "audit-postgres.jsonl"), "postgres": {"dsn": self.postgres.dsn()}}
        self.start_another_tollgate("tollgate-postgres", data, "audit.postgres", common, proxy_ctx)

    def start_plan_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """Another Tollgate, the same configuration plus Copilot's upstream and a proxy login (a
        plan's token names no caller: the login does, alice of group research, whom the policy lets
        call gpt-4o), called with a Copilot plan's token: its subscription call, the same chat call,
        goes with the token unchanged and no override (plans are not rewritten)."""
        data = self.tollgate_config(ledger_store=f"sqlite:///{self.workdir / 'ledger-plan.sqlite'}")
        data["audit"] = {"path": str(self.workdir / "audit-plan.jsonl")}
        assert self.fake is not None
        data["providers"]["copilot"] = {"upstream": self.fake.url, "timeout": 60}
        password = secrets.token_urlsafe(18)
        htpasswd = self.workdir / "plan.htpasswd"
        htpasswd.write_text(f"alice:{{SHA}}{base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()}\n")
        config = self.workdir / "tollgate-plan.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        args = ["-s", str(ROOT / "addons" / "gateway.py"), "--set", f"tollgate_config={config}",
                "--set", f"proxyauth=@{htpasswd}", *common]  # fmt: skip
        proxy = Proxy("tollgate-plan", args, self.workdir)
        self.processes.append(proxy)
        proxy.wait_ready()
        self.commands.append(f"tollgate-plan: {proxy.command_line()} (providers.copilot, proxyauth)")
        token = f"tid={secrets.token_hex(16)};exp=4102444800;sku=copilot_for_business_seat;proxy-ep=proxy.business.githubcopilot.com;st=dotcom;chat=1:{secrets.token_hex(32)}"
        self.modes["tollgate-plan"] = ModeState(
            Target("tollgate-plan", "connect", proxy.port, token, REQUESTED_MODEL, expect_real_key=False,
                   context=proxy_ctx, server_hostname=COPILOT_HOST, copilot=True, proxy_login=f"alice:{password}"),
            version=self.modes["tollgate"].version,
            process=proxy,
        )  # fmt: skip

    def start_baseline_tollgate(self, common: list[str], proxy_ctx: ssl.SSLContext) -> None:
        """Another checkout's Tollgate (`--baseline`), with the same configuration: what a change
        costs, measured in the same run as the checkout's own."""
        # A ledger of its own, and with it a /metrics port of its own
        data = self.tollgate_config(ledger_store=f"sqlite:///{self.workdir / 'ledger-baseline.sqlite'}")
        data["audit"] = {"path": str(self.workdir / "audit-baseline.jsonl")}
        script = self.args.baseline.resolve() / "addons" / "gateway.py"
        self.start_another_tollgate("tollgate-baseline", data, f"the script {script}", common, proxy_ctx, script)

    def start_another_tollgate(
        self,
        mode: str,
        data: dict,
        note: str,
        common: list[str],
        proxy_ctx: ssl.SSLContext,
        script: Path = ROOT / "addons" / "gateway.py",
    ) -> None:
        """A mitmdump of its own running Tollgate (`script`, which puts its own package first on
        mitmproxy's path) with configuration `data`, measured as `mode`."""
        config = self.workdir / f"{mode}.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        args = ["-s", str(script), "--set", f"tollgate_config={config}", *common]
        proxy = Proxy(mode, args, self.workdir)
        self.processes.append(proxy)
        proxy.wait_ready()
        self.commands.append(f"{mode}: {proxy.command_line()} ({note})")
        self.modes[mode] = ModeState(
            Target(mode, "connect", proxy.port, self.virtual_key, OVERRIDDEN_MODEL,
                   context=proxy_ctx, server_hostname=API_HOST),
            version=self.modes["tollgate"].version,
            process=proxy,
        )  # fmt: skip

    def start_peer(self, name: str, python: Path) -> None:
        args = self.args
        assert self.fake is not None
        version = peer_version(python, name)
        port = free_port()
        common_env = {"SSL_CERT_FILE": str(self.ca_pem), "PYTHONUNBUFFERED": "1"}
        if name == "gemini-calo":
            launcher = self.workdir / "calo_launch.py"
            launcher.write_text(CALO_LAUNCHER)
            env = clean_env(
                **common_env,
                GEMINI_CALO_API_KEYS=self.real_key,
                GEMINI_CALO_PROXY_API_KEYS=self.calo_key,
                GEMINI_CALO_HTTP_PORT=str(port),
                GEMINI_CALO_LOG_LEVEL="CRITICAL",
                GEMINI_CALO_LOG_FILE=str(self.workdir / "gemini-calo-app.log"),
                GEMINI_CALO_MODEL_OVERRIDE=OVERRIDDEN_MODEL,
                # its roll-up middleware summarises conversations longer than this through Google's API
                GEMINI_CALO_CONVERSATION_SIZE_SUMMARIZATION_THRESHOLD=str(10**12),
                BENCH_CALO_BASE_URL=self.fake.url,
            )
            cmd = [str(python), str(launcher)]
            ready = "/"
            key = self.calo_key
        else:
            config = self.workdir / "litellm-config.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "model_list": [
                            {
                                "model_name": REQUESTED_MODEL,
                                "litellm_params": {
                                    "model": f"openai/{OVERRIDDEN_MODEL}",
                                    "api_base": f"{self.fake.url}/v1",
                                    "api_key": self.real_key,
                                },
                            }
                        ],
                        "general_settings": {"master_key": self.litellm_key},
                    },
                    sort_keys=False,
                )
            )
            env = clean_env(
                **common_env,
                LITELLM_LOG="ERROR",
                LITELLM_LOCAL_MODEL_COST_MAP="True",
                LITELLM_LOCAL_BLOG_POSTS="True",
                LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True",
                LITELLM_LOCAL_AUTOROUTER_PRESETS="True",
                LITELLM_LOCAL_POLICY_TEMPLATES="True",
            )
            for var in (
                "DATABASE_URL",
                "LITELLM_MASTER_KEY",
                "REDIS_HOST",
                "REDIS_URL",
                "OPENAI_API_KEY",
                "LITELLM_CONFIG_PATH",
                "CONFIG_FILE_PATH",
            ):
                env.pop(var, None)
            cmd = [
                str(python.with_name("litellm")),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            ready = "/health/liveliness"
            key = self.litellm_key
        for var in ("SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_VERIFY"):
            env.pop(var, None)  # e.g. from `eval "$(./run.sh env)"`: only SSL_CERT_FILE = the fake's CA
        service = Service(name, cmd, env, self.workdir, port, ready)
        self.processes.append(service)
        say(f"starting {LABELS[name]} {version} ...")
        try:
            service.wait_ready(args.peer_start_timeout)
        except RuntimeError as exc:
            service.stop()
            raise PeerSkipped(f"did not start: {exc}") from None
        shown = " ".join(
            f"{k}={v}"
            for k, v in env.items()
            if k.startswith(("GEMINI_CALO_", "LITELLM_", "SSL_CERT", "BENCH_")) and "KEYS" not in k
        )
        self.commands.append(f"{name}: {shown} {service.command_line()}")
        self.modes[name] = ModeState(
            Target(name, "plain", port, key, OVERRIDDEN_MODEL), version=f"{name} {version}", process=service
        )

    # ---- checks

    def warm_up(self) -> None:
        """A few calls per mode; the fake must have seen what the mode should send. A peer that fails is
        skipped; direct, bare or Tollgate failing stops the benchmark."""
        assert self.fake is not None
        for name in list(self.modes):
            state = self.modes[name]
            conn = Conn(state.target)
            before = self.fake.snapshot()
            problem = ""
            try:
                for _ in range(self.args.warmup):
                    conn.call()
                if name.startswith("tollgate") and "x-tollgate-request-id" not in conn.last_headers:
                    problem = "no X-Tollgate-Request-Id header: the calls did not go through Tollgate"
                answer = json.loads(conn.last_body)
                if state.target.gemini and not (
                    isinstance(answer["candidates"][0]["content"]["parts"][0]["text"], str)
                    and isinstance(answer["usageMetadata"], dict)
                ):
                    problem = f"not a GenerateContentResponse: {conn.last_body[:300]!r}"
            except (CallError, OSError, ValueError, LookupError, TypeError) as exc:
                problem = f"call failed: {exc!r}" if isinstance(exc, OSError) else f"call failed: {exc}"
            finally:
                conn.close()
            seen = self.fake.snapshot() - before
            state.upstream_seen = seen
            wanted = (state.target.upstream_path, state.target.expect_model, state.target.expect_real_key)
            if not problem and seen.get(wanted, 0) != self.args.warmup:
                models = {
                    model
                    for (path, model, real), n in seen.items()
                    if path == PATH and real == state.target.expect_real_key
                }
                if (
                    name in PEERS
                    and sum(seen.values()) == self.args.warmup
                    and len(models) == 1
                    and all(path == PATH and real == state.target.expect_real_key for (path, _, real) in seen)
                ):
                    # the call went through, with the real key, but the peer's model rewrite did not apply
                    self.notes.append(
                        f"{LABELS[name]}: its model override did not take effect: the upstream was "
                        f"asked for {models.pop()}, not {state.target.expect_model}; measured as is"
                    )
                else:
                    problem = (
                        f"the fake upstream saw {dict(seen)} (path, model, real key) for "
                        f"{self.args.warmup} calls; expected model {wanted[1]} with the real key on {wanted[0]}"
                    )
            if problem:
                if name in PEERS:
                    self.drop_peer(name, f"warm-up: {problem}")
                else:
                    process = state.process
                    console = f"\n--- console (tail) ---\n{process.console()}" if process else ""
                    raise RuntimeError(f"{LABELS[name]}: warm-up: {problem}{console}")

    # ---- phases

    def sequential(self) -> None:
        args = self.args
        names = list(self.modes)
        conns = {name: Conn(self.modes[name].target) for name in names}
        try:
            for name, conn in conns.items():
                try:
                    for _ in range(min(args.warmup, 5)):
                        conn.call()
                except (CallError, OSError) as exc:
                    if name not in PEERS:
                        raise
                    self.drop_peer(name, f"sequential phase: {exc}")
            names = [name for name in names if name in self.modes]
            left = dict.fromkeys(names, args.calls)
            deadline = time.monotonic() + args.phase_timeout
            rotation = 0
            while any(left.values()):
                if time.monotonic() > deadline:
                    self.notes.append(
                        f"sequential phase stopped at its {args.phase_timeout:.0f} s limit: "
                        + ", ".join(f"{n} {args.calls - left[n]}" for n in names)
                        + " calls"
                    )
                    break
                order = names[rotation % len(names) :] + names[: rotation % len(names)]
                rotation += 1
                for name in order:
                    if name not in self.modes:
                        continue  # a peer skipped in this phase
                    conn, state = conns[name], self.modes[name]
                    for _ in range(min(args.block, left[name])):
                        left[name] -= 1
                        try:
                            state.seq.append(conn.call() / 1e6)
                            state.calls += 1
                        except (CallError, OSError) as exc:
                            state.errors += 1
                            if state.errors <= args.max_errors:
                                continue
                            problem = f"more than {args.max_errors} failed calls; last: {exc}"
                            if name not in PEERS:
                                raise RuntimeError(f"{LABELS[name]}: {problem}") from exc
                            self.drop_peer(name, f"sequential phase: {problem}")
                            left[name] = 0
                            break
        finally:
            for name, conn in conns.items():
                if name in self.modes:
                    self.modes[name].reconnects += max(0, conn.reconnects)
                conn.close()

    def drop_peer(self, name: str, reason: str) -> None:
        """Skip a peer from here on: it leaves the table, the reason is printed, its process is stopped."""
        state = self.modes.pop(name)
        process = state.process
        console = f"\n--- console (tail) ---\n{process.console()}" if process else ""
        self.skipped[name] = reason
        say(f"SKIPPED {LABELS[name]}: {reason}{console}")
        if isinstance(process, Service):
            process.stop()

    def concurrent_round(self, name: str, seconds: float) -> Round:
        """`--connections` workers call the mode for `seconds`; their calls and errors are counted in
        the mode's state, the round's figures returned."""
        args = self.args
        state = self.modes[name]
        workers = args.connections
        conns = [Conn(state.target) for _ in range(workers)]
        latencies: list[list[float]] = [[] for _ in range(workers)]
        errors = [0] * workers
        ends = [0.0] * workers
        failures: list[str] = []
        try:
            for conn in conns:  # open and warm every connection before the clock starts
                conn.call()
                conn.call()
                state.untimed_calls += 2
            barrier = threading.Barrier(workers + 1, timeout=60)
            stop_at = [0.0]
            per_worker = max(1, MAX_CALLS // workers)

            def work(i: int) -> None:
                conn, lat = conns[i], latencies[i]
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    return
                for _ in range(per_worker):
                    if time.perf_counter() >= stop_at[0]:
                        break
                    try:
                        lat.append(conn.call() / 1e6)
                    except CallError as exc:
                        errors[i] += 1
                        if errors[i] > args.max_errors:
                            failures.append(str(exc))
                            break
                    except Exception as exc:
                        failures.append(repr(exc))
                        break
                ends[i] = time.perf_counter()

            threads = [
                threading.Thread(target=work, args=(i,), name=f"client-{i}", daemon=True) for i in range(workers)
            ]
            for thread in threads:
                thread.start()
            pid = state.process.pid if state.process else None
            cpu0 = tree_cpu_seconds(pid) if pid else 0.0
            self_cpu0 = time.process_time()
            start = time.perf_counter()
            stop_at[0] = start + seconds
            barrier.wait()
            for thread in threads:
                thread.join(timeout=max(1.0, stop_at[0] + CALL_TIMEOUT * 2 + 5 - time.perf_counter()))
            stuck = [t for t in threads if t.is_alive()]
            if stuck:
                for conn in conns:
                    conn.close()
                raise RuntimeError(f"{LABELS[name]}: {len(stuck)} client threads did not finish")
            cpu1 = tree_cpu_seconds(pid) if pid else 0.0
            self_cpu1 = time.process_time()
            done = sum(len(lat) for lat in latencies)
            elapsed = max(ends) - start
            state.errors += sum(errors)
            state.calls += done
            if failures:
                raise RuntimeError(f"{LABELS[name]}: a client gave up: {failures[0]}")
            nan = float("nan")
            return Round(
                rps=done / elapsed if elapsed > 0 else nan,
                latencies=[x for lat in latencies for x in lat],
                cpu_ms=(cpu1 - cpu0) * 1000 / done if pid and done else nan,
                harness_cpu_ms=(self_cpu1 - self_cpu0) * 1000 / done if done else nan,
            )
        finally:
            for conn in conns:
                state.reconnects += max(0, conn.reconnects)
                conn.close()

    def concurrent(self) -> None:
        """The modes' rounds in rotation; after each rotation, a share of the A/B pairs, so that the
        pairs sample the machine's state over the whole phase rather than one stretch of it."""
        names = list(self.modes)
        rounds, pairs = self.args.concurrent_rounds, self.args.ab_pairs
        done_pairs = 0
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                say(f"  round {r + 1}: {LABELS[name]} ...")
                try:
                    result = self.concurrent_round(name, self.args.concurrent_seconds)
                except (CallError, RuntimeError, OSError) as exc:
                    if name not in PEERS:
                        raise
                    self.drop_peer(name, f"concurrent phase: {exc}")
                    names.remove(name)
                    continue
                state = self.modes[name]
                state.conc_rps.append(result.rps)
                state.conc_lat.extend(result.latencies)
                state.conc_cpu_ms.append(result.cpu_ms)
                state.conc_harness_cpu_ms.append(result.harness_cpu_ms)
            share = pairs * (r + 1) // rounds - done_pairs
            for i in range(done_pairs, done_pairs + share):
                self.ab_pair(i)
                for mode in PAIRED:
                    if mode in self.modes:
                        self.paired(mode, i)
            done_pairs += share

    def ab_pair(self, i: int) -> None:
        """Bare mitmdump and Tollgate in a pair of short rounds, back to back, the order alternating
        from pair to pair (a drift in the machine's speed within a pair favours neither). Each pair
        gives one ratio; the requests/s target is judged on their median."""
        args = self.args
        order = ("bare", "tollgate") if i % 2 == 0 else ("tollgate", "bare")
        say(f"  A/B pair {i + 1} of {args.ab_pairs}: {LABELS[order[0]]}, {LABELS[order[1]]} ...")
        for name in order:
            result = self.concurrent_round(name, args.ab_seconds)
            self.modes[name].ab_rps.append(result.rps)
            self.modes[name].ab_cpu_ms.append(result.cpu_ms)

    def paired(self, mode: str, i: int) -> None:
        """Tollgate and `mode` (the same Tollgate with one thing more) as an A/B pair: what that
        thing costs a call is judged on the pairs' median ratios."""
        order = ("tollgate", mode) if i % 2 == 0 else (mode, "tollgate")
        say(f"  pair {i + 1} of {self.args.ab_pairs}: {LABELS[order[0]]}, {LABELS[order[1]]} ...")
        rounds = {name: self.concurrent_round(name, self.args.ab_seconds) for name in order}
        self.pairs.setdefault(mode, []).append((rounds["tollgate"], rounds[mode]))

    def check_processes(self, phase: str) -> None:
        for name, state in list(self.modes.items()):
            process = state.process
            if process is not None and not process.alive():
                if name not in PEERS:
                    raise RuntimeError(f"{LABELS[name]} died:\n{process.console()}")
                self.drop_peer(name, f"{phase}: exited with status {process.process.returncode}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception:
                pass
        if self.fake is not None:
            self.fake.close()
        if self.collector is not None:
            self.collector.close()
        if self.postgres is not None:
            self.postgres.stop()
            shutil.rmtree(self.postgres.directory, ignore_errors=True)


def postgres_arrived(audit: Path, server: Any, wait_s: float = 30.0) -> str:
    """Whether the table holds every line of the audit file the sender follows (waiting up to
    `wait_s` for the last batch)."""
    lines = rows = 0
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with open(audit, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        with server.connect() as connection:
            rows = connection.execute("SELECT count(*) FROM tollgate_records").fetchone()[0]
        if rows >= lines:
            break
        time.sleep(0.5)
    verdict = "every record once" if rows == lines else "MISSING RECORDS" if rows < lines else "MORE ROWS THAN LINES"
    return f"PostgreSQL: {rows} rows for {lines} lines of {audit.name}: {verdict}"


class OtlpCollector:
    """A stand-in for an OpenTelemetry collector: threads of this process on 127.0.0.1 that take
    every POST (the OTLP/HTTP exports, not decoded), count them and their bytes, and answer 200 with
    an empty ExportTraceServiceResponse (which is zero bytes of protobuf)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts = 0
        self.bytes = 0
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    collector.posts += 1
                    collector.bytes += len(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="otlp-collector", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PeerSkipped(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# Report


def ratios(tollgate: list[float], bare: list[float]) -> list[float]:
    """Each Tollgate round's requests/s over the bare round run next to it."""
    return [x / y for x, y in zip(tollgate, bare, strict=False) if y > 0]


def report(bench: Bench, elapsed: float) -> bool:
    args = bench.args
    modes = bench.modes
    print()
    print(
        f"Tollgate overhead benchmark — Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}; all on 127.0.0.1; client and fake upstream in this process"
    )
    print("versions: " + ", ".join(dict.fromkeys(s.version for s in modes.values() if s.version)))
    print(
        f"request: POST {PATH}, model {REQUESTED_MODEL}, {len(REQUEST_BODY)}-byte body, non-streamed; response "
        f"{len(bench.fake._payload(OVERRIDDEN_MODEL)) if bench.fake else 0}-byte JSON; translated: POST "
        f"{GEMINI_PATH} on {GEMINI_HOST}, {len(gemini_request_body())}-byte Gemini body, routed to OpenAI"
    )
    print(
        f"sequential: {args.calls} calls per mode on one kept-alive connection, after warm-up, in blocks of "
        f"{args.block} interleaved across modes; concurrent: {args.connections} connections (one thread each), "
        f"{args.concurrent_rounds} x {args.concurrent_seconds:g} s per mode, req/s = median round; A/B: "
        f"{args.ab_pairs} pairs of {args.ab_seconds:g}-s rounds of bare mitmdump and Tollgate, back to back, "
        "spread over the concurrent phase"
    )
    print(f"load average at start: {bench.loadavg_start}, at end: {loadavg()}")
    print(
        "forward proxies (bare mitmdump, Tollgate): CONNECT + TLS to the proxy (mitmproxy CA), as Tollgate's clients "
        "do; reverse proxies (gemini-calo, LiteLLM): plain HTTP to 127.0.0.1, as they are deployed"
    )
    print(
        "per-request console/access logging off everywhere (mitmdump flow_detail=0"
        + (" — NOT set: --proxy-console" if args.proxy_console else "")
        + ", LITELLM_LOG=ERROR, gemini-calo log level CRITICAL + no access log); Tollgate writes its audit file"
    )
    print(
        "units: ms; 'added' = mode minus direct (same percentile); CPU = the proxy's process tree, per call, "
        "concurrent phase"
    )
    print()
    header = [
        "mode",
        "seq p50",
        "seq p99",
        "added p50",
        "added p99",
        "conc req/s",
        "conc p50",
        "conc p99",
        "CPU ms/call",
        "calls",
        "errors",
    ]
    rows = []
    stats: dict[str, dict[str, float]] = {}
    for name, s in modes.items():
        st = {
            "p50": percentile(s.seq, 50),
            "p99": percentile(s.seq, 99),
            "rps": statistics.median(s.conc_rps) if s.conc_rps else float("nan"),
            "cp50": percentile(s.conc_lat, 50),
            "cp99": percentile(s.conc_lat, 99),
            "cpu": statistics.median(s.conc_cpu_ms) if s.conc_cpu_ms else float("nan"),
        }
        stats[name] = st
        base = stats["direct"]
        rows.append(
            [
                LABELS[name],
                fmt(st["p50"], 3),
                fmt(st["p99"], 3),
                fmt(st["p50"] - base["p50"], 3, True) if name != "direct" else "-",
                fmt(st["p99"] - base["p99"], 3, True) if name != "direct" else "-",
                fmt(st["rps"], 0),
                fmt(st["cp50"], 2),
                fmt(st["cp99"], 2),
                fmt(st["cpu"], 3) if name != "direct" else "-",
                str(s.calls),
                str(s.errors),
            ]
        )
    rows += [[LABELS[name], "skipped", *["-"] * (len(header) - 2)] for name in bench.skipped if name not in modes]
    print(table(rows, header))
    harness = [x for s in modes.values() for x in s.conc_harness_cpu_ms]
    if harness:
        print(
            f"harness (client + fake upstream) CPU: {statistics.median(harness):.3f} ms per call (median over "
            f"modes and rounds); direct's req/s is the harness's ceiling"
        )
    print()

    base, b, t = stats["direct"], stats["bare"], stats["tollgate"]
    checks: list[Check] = []
    bare_added, tg_added = b["p50"] - base["p50"], t["p50"] - base["p50"]
    ratio = tg_added / bare_added if bare_added > 0 else float("inf")
    checks.append(
        (
            "added p50: (Tollgate - direct) / (bare - direct)",
            f"{ratio:.2f}x ({tg_added:+.3f} / {bare_added:+.3f} ms)",
            f"<= {TARGET_ADDED_RATIO:.2f}x",
            ratio <= TARGET_ADDED_RATIO,
        )
    )
    bare_added99, tg_added99 = b["p99"] - base["p99"], t["p99"] - base["p99"]
    ratio99 = tg_added99 / bare_added99 if bare_added99 > 0 else float("inf")
    checks.append(
        (
            "added p99: (Tollgate - direct) / (bare - direct)",
            f"{ratio99:.2f}x ({tg_added99:+.3f} / {bare_added99:+.3f} ms)",
            "(no target)",
            None,
        )
    )
    # Judged pair by pair: a bare and a Tollgate round run back to back, so a change in the machine's
    # speed (a neighbour on this VM) moves both; single rounds here differ by 10-20 % from one to the
    # next, which the median of many pairs evens out where a few long rounds do not.
    pairs = ratios(modes["tollgate"].ab_rps, modes["bare"].ab_rps)
    paired = statistics.median(pairs) if pairs else float("nan")
    spread = f", middle half {percentile(pairs, 25):.3f}-{percentile(pairs, 75):.3f}" if len(pairs) >= 4 else ""
    checks.append(
        (
            f"req/s at {args.connections} connections: Tollgate / bare, median of {len(pairs)} A/B pairs",
            f"{paired:.3f}x (of {min(pairs, default=0):.3f}-{max(pairs, default=0):.3f}{spread})",
            f">= {TARGET_RPS_RATIO:.2f}x",
            paired >= TARGET_RPS_RATIO,
        )
    )
    ab_cpu = {n: statistics.median(modes[n].ab_cpu_ms) for n in ("bare", "tollgate") if modes[n].ab_cpu_ms}
    if len(ab_cpu) == 2:
        tg_cpu, bare_cpu = ab_cpu["tollgate"], ab_cpu["bare"]
        checks.append(
            (
                "CPU per call in the A/B pairs: Tollgate - bare",
                f"{tg_cpu - bare_cpu:+.3f} ms ({tg_cpu:.3f} / {bare_cpu:.3f})",
                "(no target)",
                None,
            )
        )
    per_round = ratios(modes["tollgate"].conc_rps, modes["bare"].conc_rps)
    checks.append(
        (
            f"req/s at {args.connections} connections: Tollgate / bare, median of the rotation's rounds' ratios",
            f"{statistics.median(per_round):.3f}x ({' '.join(f'{r:.3f}' for r in per_round)})" if per_round else "-",
            "(no target)",
            None,
        )
    )
    checks.append(
        (
            f"req/s at {args.connections} connections: Tollgate / bare, ratio of the rotation's median rounds",
            f"{t['rps'] / b['rps']:.3f}x ({t['rps']:.0f} / {b['rps']:.0f})" if b["rps"] > 0 else "-",
            "(no target)",
            None,
        )
    )
    checks.append(
        (
            f"p99 at {args.connections} connections: Tollgate - bare",
            f"{t['cp99'] - b['cp99']:+.2f} ms ({t['cp99']:.2f} / {b['cp99']:.2f})",
            "(no target)",
            None,
        )
    )
    # Tollgate's other modes, each beside bare mitmdump: its added p50 (with a target where it has
    # one) and its requests/s.
    for mode, label, target in (
        ("tollgate-distinct", "distinct requests", None),
        ("tollgate-jwt", "JWT caller", 1.10),
        ("tollgate-redis", "ledger on Redis", None),
        ("tollgate-otlp", "OTLP traces", None),
        ("tollgate-retry", "retry configured", None),
        ("tollgate-postgres", "audit sent to PostgreSQL", None),
        ("tollgate-plan", "a Copilot plan's call (its token, a proxy login)", None),
        ("tollgate-baseline", "the --baseline checkout", None),
    ):
        if mode not in stats:
            checks.append((f"added p50, {label}", f"not measured: {bench.skipped.get(mode, '?')}", "", None))
            continue
        m = stats[mode]
        added = m["p50"] - base["p50"]
        checks.append(
            (
                f"added p50, {label}: (Tollgate - direct) / (bare - direct)",
                f"{added / bare_added:.2f}x ({added:+.3f} / {bare_added:+.3f} ms)" if bare_added > 0 else "-",
                f"<= {target:.2f}x" if target else "(no target)",
                added / bare_added <= target if target and bare_added > 0 else None,
            )
        )
        checks.append(
            (
                f"req/s at {args.connections} connections, {label}: Tollgate / bare",
                f"{m['rps'] / b['rps']:.2f}x ({m['rps']:.0f} / {b['rps']:.0f})",
                "(no target)",
                None,
            )
        )
    # A call with a PAIRED mode's one thing more and without (retry configured, the audit sent to
    # PostgreSQL): judged on the pairs' median ratios (p50 of the pair's calls, the proxy's CPU per
    # call), as requests/s is on the A/B pairs'; the sequential p50 is printed beside them.
    for mode, (target, shown) in PAIRED.items():
        if mode not in stats:
            continue
        r = stats[mode]
        checks.append(
            (
                f"sequential p50, {shown}",
                f"{r['p50'] / t['p50']:.3f}x ({r['p50']:.3f} / {t['p50']:.3f} ms)",
                "(no target)",
                None,
            )
        )
        # The time the proxy adds (its p50 less direct's), with the one thing more and without.
        r_added, t_added = r["p50"] - base["p50"], t["p50"] - base["p50"]
        checks.append(
            (
                f"sequential added p50, {shown}",
                f"{r_added / t_added:.3f}x ({r_added:+.3f} / {t_added:+.3f} ms)" if t_added > 0 else "-",
                "(no target)",
                None,
            )
        )
        for label, ratio in (
            ("p50", lambda tg, rt: statistics.median(rt.latencies) / statistics.median(tg.latencies)),
            ("CPU per call", lambda tg, rt: rt.cpu_ms / tg.cpu_ms),
        ):
            pairs = bench.pairs.get(mode, [])
            paired_ratios = [ratio(tg, rt) for tg, rt in pairs if tg.latencies and tg.cpu_ms > 0]
            median = statistics.median(paired_ratios) if paired_ratios else float("nan")
            checks.append(
                (
                    f"{label} at {args.connections} connections, {shown}, median of {len(paired_ratios)} pairs",
                    f"{median:.3f}x (of {min(paired_ratios, default=0):.3f}-{max(paired_ratios, default=0):.3f})",
                    f"<= {target:.2f}x",
                    median <= target,
                )
            )
    # A Gemini call translated to OpenAI and back, beside the same Tollgate's untranslated OpenAI call
    # (informational: no target).
    tr = stats["tollgate-translated"]
    for q, bare_q, tg_q in (("p50", bare_added, tg_added), ("p99", bare_added99, tg_added99)):
        tr_q = tr[q] - base[q]
        checks.append(
            (
                f"added {q}, Gemini call translated to OpenAI: (Tollgate - direct) / (bare - direct)",
                f"{tr_q / bare_q:.2f}x ({tr_q:+.3f} / {bare_q:+.3f} ms); untranslated "
                f"{tg_q / bare_q:.2f}x ({tg_q:+.3f} ms)"
                if bare_q > 0
                else f"({tr_q:+.3f} / {bare_q:+.3f} ms); untranslated {tg_q:+.3f} ms",
                "(no target)",
                None,
            )
        )
    for peer in PEERS:
        label = LABELS[peer]
        if peer in stats:
            p = stats[peer]
            peer_added = p["p50"] - base["p50"]
            checks.append(
                (
                    f"added p50: Tollgate / {label}",
                    f"{tg_added / peer_added:.2f}x ({tg_added:+.3f} / {peer_added:+.3f} ms)"
                    if peer_added > 0
                    else f"({tg_added:+.3f} / {peer_added:+.3f} ms)",
                    "< 1 (below)",
                    tg_added < peer_added,
                )
            )
            checks.append(
                (
                    f"req/s at {args.connections} connections: Tollgate / {label}",
                    f"{t['rps'] / p['rps']:.2f}x ({t['rps']:.0f} / {p['rps']:.0f})",
                    "(no target)",
                    None,
                )
            )
        else:
            why = "not measured: skipped" if peer in bench.skipped else "not measured: not in --peers"
            checks.append((f"added p50: Tollgate / {label}", why, "< 1 (below)", None))
    print(checks_table(checks, "ratios (targets)"))
    if bench.skipped:
        print()
        for name, reason in bench.skipped.items():
            print(f"SKIPPED {LABELS[name]}: {reason}")
    audit_lines = 0
    # The audit writer may still hold the last records of a busy moment; shut down, Tollgate writes them.
    bench.modes["tollgate"].process.stop()
    try:
        with open(bench.audit_path, "rb") as f:
            audit_lines = sum(1 for line in f if b'"event":"llm_call"' in line)  # not the started and stopped records
    except OSError:
        pass
    tollgates = [modes[n] for n in ("tollgate", "tollgate-distinct", "tollgate-jwt", "tollgate-translated")]
    through = sum(s.calls + s.untimed_calls + args.warmup + min(args.warmup, 5) for s in tollgates)
    print(f"\nTollgate audit records: {audit_lines} (calls through Tollgate incl. warm-up: {through})")
    if "tollgate-postgres" in modes and bench.postgres is not None:
        print(postgres_arrived(bench.workdir / "audit-postgres.jsonl", bench.postgres))
        bench.modes["tollgate-postgres"].process.stop()
    if "tollgate-otlp" in modes and bench.collector is not None:
        bench.modes["tollgate-otlp"].process.stop()  # exports what it still holds
        otlp = modes["tollgate-otlp"]
        print(
            f"OTLP stand-in: {bench.collector.posts} exports, {bench.collector.bytes / 1024:.0f} KiB of spans "
            f"(calls through Tollgate with traces incl. warm-up: {otlp.calls + otlp.untimed_calls + args.warmup + min(args.warmup, 5)})"
        )
    print(
        "the fake upstream saw, per mode in warm-up (path, model, real key): "
        + "; ".join(
            f"{LABELS[n]} "
            + ", ".join(f"{p} {m} {'yes' if k else 'no'} x{c}" for (p, m, k), c in s.upstream_seen.items())
            for n, s in modes.items()
        )
    )
    reconnects = {LABELS[n]: s.reconnects for n, s in modes.items() if s.reconnects}
    if reconnects:
        print(f"reconnects (a kept-alive connection the server closed): {reconnects}")
    for note in bench.notes:
        print(f"note: {note}")
    if base["rps"] < 2 * max(st["rps"] for n, st in stats.items() if n != "direct"):
        print(
            "note: direct (harness) req/s is less than twice a proxy's; the client/upstream harness, sharing the "
            "2 cores, may limit the concurrent figures"
        )
    print(f"\ntotal {elapsed:.1f} s")
    return all(ok for *_, ok in checks if ok is not None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per mode (after warm-up)")
    parser.add_argument("--block", type=int, default=50, help="sequential calls per mode in a row")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls per mode (checked)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (threads)")
    parser.add_argument("--concurrent-seconds", type=float, default=8.0, help="seconds per mode and round")
    parser.add_argument("--concurrent-rounds", type=int, default=2, help="concurrent rounds (mode order rotated)")
    parser.add_argument(
        "--ab-pairs", type=int, default=12, help="pairs of bare mitmdump and Tollgate rounds for the requests/s target"
    )
    parser.add_argument("--ab-seconds", type=float, default=3.0, help="seconds per round of an A/B pair")
    parser.add_argument(
        "--peers",
        default="gemini-calo,litellm",
        help="comma-separated peers to include (gemini-calo, litellm), or 'none'",
    )
    parser.add_argument(
        "--peers-venv", type=Path, default=DEFAULT_PEERS_DIR, help="directory of the peers' venvs (one per peer)"
    )
    parser.add_argument("--reinstall-peers", action="store_true", help="recreate the peers' venvs")
    parser.add_argument("--no-install", action="store_true", help="never install; skip a peer that is missing")
    parser.add_argument("--install-timeout", type=float, default=900.0, help="seconds allowed for one peer's install")
    parser.add_argument("--peer-start-timeout", type=float, default=180.0, help="seconds allowed for a peer to start")
    parser.add_argument("--phase-timeout", type=float, default=600.0, help="seconds allowed for the sequential phase")
    parser.add_argument("--max-errors", type=int, default=20, help="failed calls tolerated per mode")
    parser.add_argument(
        "--proxy-console",
        action="store_true",
        help="keep mitmdump's per-flow console line (flow_detail default) for both mitmdumps",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. a git worktree of main) whose Tollgate is measured beside this one's",
    )
    parser.add_argument(
        "--without",
        type=lambda text: frozenset(text.split(",")),
        default=frozenset(),
        help="Tollgate's extra modes left out, comma-separated (tollgate-redis, tollgate-otlp, tollgate-retry,"
        " tollgate-plan): fewer processes on a busy machine",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs, audit)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    peers = [] if args.peers.strip() in ("", "none") else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    if not (
        1 <= args.calls <= MAX_CALLS
        and args.block >= 1
        and 1 <= args.warmup <= 1000
        and 1 <= args.connections <= MAX_CONNECTIONS
        and 0.5 <= args.concurrent_seconds <= 600
        and 1 <= args.concurrent_rounds <= 20
        and 1 <= args.ab_pairs <= 100
        and 0.5 <= args.ab_seconds <= 600
    ):
        parser.error(
            f"need 1 <= --calls <= {MAX_CALLS}, --block >= 1, 1 <= --warmup <= 1000, "
            f"1 <= --connections <= {MAX_CONNECTIONS}, 0.5 <= --concurrent-seconds <= 600, "
            "1 <= --concurrent-rounds <= 20, 1 <= --ab-pairs <= 100, 0.5 <= --ab-seconds <= 600"
        )
    args.peers_venv = args.peers_venv.resolve()

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-overhead-"))
    bench = Bench(args, workdir)
    ok = False
    try:
        bench.setup(peers)
        print("commands:")
        for line in bench.commands:
            print(f"  {line}")
        say("warming up ...")
        bench.warm_up()
        say(f"sequential phase: {args.calls} calls per mode ...")
        bench.sequential()
        bench.check_processes("sequential phase")
        say(
            f"concurrent phase: {args.connections} connections, {args.concurrent_rounds} x "
            f"{args.concurrent_seconds:g} s per mode, and {args.ab_pairs} A/B pairs of {args.ab_seconds:g}-s rounds "
            "spread among them ..."
        )
        bench.concurrent()
        bench.check_processes("concurrent phase")
        ok = report(bench, time.monotonic() - start)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (RuntimeError, CallError, OSError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.stop()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
