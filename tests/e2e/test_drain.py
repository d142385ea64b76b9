"""SIGTERM drains, through a real mitmdump: the listening socket closes at once (a new connection is
refused), /healthz says `draining`, idle connections are closed, a request on an open one is
answered with `Connection: close` (HTTP/2: GOAWAY), the calls in flight end and are audited, then
the process exits 0. Past `drain_s` the calls left are broken off and audited as such."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply
from tests.support.h2 import H2Request, h2_calls
from tests.support.proxy import free_port

PROMPT = "drain the gateway gently"
STREAM = f"""
from openai import OpenAI
text = ""
stream = OpenAI(api_key="sk-own-drain", max_retries=0).chat.completions.create(model="gpt-4o-mini", stream=True,
    stream_options={{"include_usage": True}}, messages=[{{"role": "user", "content": "{PROMPT}"}}])
for chunk in stream:
    text += "".join(c.delta.content or "" for c in chunk.choices)
    usage = chunk.usage
report(text=text, tokens=usage.total_tokens)
"""


def streaming_until_read(marker: Path, script: str = STREAM) -> str:
    """The client's script, writing `marker` once it has read its answer's first piece: from then on
    the proxy holds the answer's head (the upstream having sent it is not enough)."""
    return script.replace("for chunk in stream:\n", f"for chunk in stream:\n    open({str(marker)!r}, 'a').close()\n")


def wait_until_read(marker: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not marker.exists():
        assert time.monotonic() < deadline, "the client read no piece of its answer"
        time.sleep(0.05)


def config(listen: str, drain_s: float | None = None) -> Callable[[dict[str, str]], dict]:
    def build(urls: dict[str, str]) -> dict:
        data: dict[str, Any] = {
            "providers": {"openai": {"upstream": urls["openai"]}},
            "metrics": {"listen": listen},
        }
        if drain_s is not None:
            data["drain_s"] = drain_s
        return data

    return build


class Drip:
    """A streamed answer that holds its second piece until `release`, then drips the rest."""

    def __init__(self, pieces: list[bytes], pause: float = 0.1, hold: float = 20.0) -> None:
        self.pieces = pieces
        self.pause = pause
        self.hold = hold
        self.first_sent = threading.Event()
        self.released = threading.Event()

    def gate(self, i: int) -> None:
        if i == 1:
            self.first_sent.set()
            self.released.wait(self.hold)
        else:
            time.sleep(self.pause)

    def reply(self, _: Received) -> Reply:
        return Reply(200, chunks=self.pieces, gate=self.gate)


def dripping_gateway(start_gateway, drain_s: float | None = None, hold: float = 20.0) -> tuple[Any, str, Drip]:
    """A gateway serving, its metrics and /healthz on a free address, OpenAI's answer a chat stream
    dripped (`Drip`, holding for `hold` s): the gateway, that address, the drip."""
    listen = f"127.0.0.1:{free_port()}"
    gw = start_gateway(config(listen, drain_s))
    drip = Drip(streams.openai_chat(), hold=hold)
    gw.fakes["openai"].handler = drip.reply
    gw.wait_console("Prometheus metrics served")
    return gw, listen, drip


def healthz(listen: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ready(listen: str) -> tuple[int, bytes]:
    """/healthz once the proxy serves: `starting` until mitmproxy's servers are up, a moment after
    /metrics is (a few seconds at most, on a loaded machine)."""
    deadline = time.monotonic() + 10
    while (answer := healthz(listen)) == (503, b"starting\n") and time.monotonic() < deadline:
        time.sleep(0.1)
    return answer


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = work()
        except BaseException as e:  # the test reads it
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def calls_and_process_records(gw) -> tuple[list[dict], dict, dict]:
    records = gw.audit_records()
    assert records[-1]["event"] == "audit_checkpoint"  # the last: a checkpoint after the stopped record
    return [r for r in records if r["event"] == "llm_call"], records[0], records[-2]


def test_sigterm_lets_a_slow_stream_finish_audited_then_exits_0(start_gateway) -> None:
    gw, listen, drip = dripping_gateway(start_gateway)
    assert ready(listen) == (200, b"ok\n")

    client, out = in_thread(lambda: gw.run(STREAM, timeout=60))
    assert drip.first_sent.wait(30), "the stream never began"
    gw.proxy.process.send_signal(signal.SIGTERM)
    gw.wait_console("Tollgate: SIGTERM: draining")
    # Draining: a new connection is refused, and the balancer's probe says why.
    assert refused(gw.proxy.port)
    assert healthz(listen) == (503, b"draining\n")
    assert gw.proxy.process.poll() is None  # still serving the stream
    drip.released.set()

    client.join(60)
    assert out == {"result": {"text": "Hello", "tokens": 24}}
    assert gw.proxy.process.wait(20) == 0
    calls, started, stopped = calls_and_process_records(gw)
    (call,) = calls
    assert (call["status"], call["stream"], call["error"]) == (200, True, None)
    assert (call["input_tokens"], call["output_tokens"], call["total_tokens"]) == (19, 5, 24)
    assert (started["event"], stopped["event"], stopped["calls"]) == ("tollgate_started", "tollgate_stopped", 1)
    assert "drained: every call has ended" in gw.proxy.console()


def _tls_through(port: int, bundle, host: str = "api.openai.com") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    return ssl.create_default_context(cafile=str(bundle)).wrap_socket(raw, server_hostname=host)


def _request(body: bytes) -> tuple[bytes, bytes]:
    """A keep-alive chat call: its head and its body."""
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-own-drain\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def _read_answer(tls: ssl.SSLSocket) -> tuple[bytes, bytes]:
    """One answer with a Content-Length: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")) if k.lower() == b"content-length"
    )
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk
        body += chunk
    return head, body


def _closed(tls: ssl.SSLSocket) -> bool:
    """Whether the proxy has closed the connection (an EOF, with or without TLS's close_notify)."""
    tls.settimeout(10)
    try:
        return tls.recv(1) == b""
    except (ssl.SSLEOFError, ConnectionResetError):
        return True


def test_an_open_connections_next_request_is_answered_with_connection_close(start_gateway) -> None:
    listen = f"127.0.0.1:{free_port()}"
    gw = start_gateway(config(listen))
    gw.fakes["openai"].handler = provider_answers
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    head, body = _request(body)
    gw.wait_console("Prometheus metrics served")

    busy, idle = _tls_through(gw.proxy.port, gw.bundle), _tls_through(gw.proxy.port, gw.bundle)
    for tls in (busy, idle):  # one call each: both connections kept alive
        tls.sendall(head + body)
        answer_head, _ = _read_answer(tls)
        assert answer_head.startswith(b"HTTP/1.1 200") and b"connection: close" not in answer_head.lower()
    # The busy connection's next request has begun (its head and half its body sent) when SIGTERM comes.
    busy.sendall(head + body[: len(body) // 2])
    time.sleep(0.5)  # read by the proxy (loopback): the connection now carries a request
    gw.proxy.process.send_signal(signal.SIGTERM)
    gw.wait_console("Tollgate: SIGTERM: draining")
    assert refused(gw.proxy.port)
    assert _closed(idle)  # the idle connection, closed at once
    busy.sendall(body[len(body) // 2 :])
    answer_head, answer_body = _read_answer(busy)
    assert answer_head.startswith(b"HTTP/1.1 200")
    assert b"\r\nconnection: close" in answer_head.lower()
    assert json.loads(answer_body)["usage"]["total_tokens"] == 28
    assert _closed(busy)  # once answered
    for tls in (busy, idle):
        tls.close()
    assert gw.proxy.process.wait(20) == 0
    calls, _, stopped = calls_and_process_records(gw)
    assert [(c["status"], c["error"], c["total_tokens"]) for c in calls] == [(200, None, 28)] * 3
    assert stopped["calls"] == 3


def test_past_drain_s_the_call_left_is_broken_off_and_audited(start_gateway, tmp_path) -> None:
    gw, _, drip = dripping_gateway(start_gateway, drain_s=1, hold=30)  # never released: it would take 30 s
    script = streaming_until_read(tmp_path / "read", STREAM.replace("report(text", "report(late=True, text"))
    client, out = in_thread(lambda: gw.run(script, timeout=60))
    wait_until_read(tmp_path / "read")
    began = time.monotonic()
    gw.proxy.process.send_signal(signal.SIGTERM)
    assert gw.proxy.process.wait(20) == 0
    assert 1 <= time.monotonic() - began < 6  # drain_s, and no more than a moment after it
    drip.released.set()
    client.join(60)
    assert "late" not in out.get("result", {})  # the client saw its stream break off
    calls, _, stopped = calls_and_process_records(gw)
    (call,) = calls
    assert (call["status"], call["error"]) == (200, "proxy shut down during the call: drain_s (1 s) ran out")
    assert stopped["calls"] == 1
    assert "drained for 1 s (drain_s): 1 call(s) broken off" in gw.proxy.console()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_sigterm_or_sigint_ends_the_drain_at_once(start_gateway, second: signal.Signals, tmp_path) -> None:
    gw, _, drip = dripping_gateway(start_gateway, drain_s=60, hold=30)
    client, _ = in_thread(lambda: gw.run(streaming_until_read(tmp_path / "read"), timeout=60))
    wait_until_read(tmp_path / "read")
    gw.proxy.process.send_signal(signal.SIGTERM)
    gw.wait_console("Tollgate: SIGTERM: draining")
    began = time.monotonic()
    gw.proxy.process.send_signal(second)
    assert gw.proxy.process.wait(20) == 0
    assert time.monotonic() - began < 5
    drip.released.set()
    client.join(60)
    calls, _, stopped = calls_and_process_records(gw)
    assert [(c["status"], c["error"]) for c in calls] == [(200, "proxy shut down during the call")]
    assert stopped["calls"] == 1


def test_an_http2_connection_gets_goaway_and_its_stream_finishes(start_gateway) -> None:
    gw, _, drip = dripping_gateway(start_gateway)
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    ).encode()
    goaways: list[tuple[int, int]] = []
    request = H2Request(
        "/v1/chat/completions", body, {"authorization": "Bearer sk-own-drain", "content-type": "application/json"}
    )
    began = time.monotonic()
    client, out = in_thread(
        lambda: h2_calls(gw.proxy.port, gw.bundle, "api.openai.com", [request], 60, goaways=goaways)
    )
    assert drip.first_sent.wait(30)
    gw.proxy.process.send_signal(signal.SIGTERM)
    gw.wait_console("Tollgate: SIGTERM: draining")
    drip.released.set()
    client.join(60)
    (answer,) = out["result"]
    assert answer.status == 200 and answer.reset is None
    assert b'"content": "lo"' in answer.body and answer.body.endswith(b"data: [DONE]\n\n")
    # A graceful GOAWAY at the drain's start (no new stream), then one naming the stream served, then the
    # close: the client read until the proxy closed the connection, long before its time limit.
    assert goaways == [(2**31 - 1, 0), (1, 0)]
    assert time.monotonic() - began < 30
    assert gw.proxy.process.wait(20) == 0
    calls, _, _ = calls_and_process_records(gw)
    assert [(c["status"], c["error"], c["total_tokens"]) for c in calls] == [(200, None, 24)]


TWO_SOCKETS = """
import asyncio, time
from openai import AsyncOpenAI

async def closed(conn):
    try:
        while True:
            event = await asyncio.wait_for(conn.recv(), 30)
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
            if event.type in ("response.completed", "error"):
                ended.append(event.type)
    except asyncio.TimeoutError:
        return "open"
    except Exception as e:
        return getattr(getattr(e, "rcvd", None), "code", type(e).__name__)

async def main():
    client = AsyncOpenAI(api_key="sk-own-drain", max_retries=0)
    async with client.responses.connect() as idle, client.responses.connect() as busy:
        await busy.response.create(model="gpt-4o", input="PROMPT")
        began = time.monotonic()
        idle_code = await closed(idle)
        idle_after = time.monotonic() - began
        busy_code = await closed(busy)
    report(idle=idle_code, idle_before_busy_ended=idle_after < 2.5, busy=busy_code, text="".join(texts), ended=ended)

texts, ended = [], []
asyncio.run(main())
""".replace("PROMPT", PROMPT)


def test_a_responses_websocket_ends_its_response_then_closes_going_away(start_gateway, upstream_ca) -> None:
    """Its calls are its responses: one in flight ends and is audited, then the socket closes with
    1001 (going away) on both sides; a socket with none in flight closes at once."""
    from tests.support.fake_realtime import FakeRealtime, responding, responses_usage

    fake = FakeRealtime(upstream_ca, responding(["in flight when it began"], [responses_usage(40, 7)], hold=3))
    try:
        gw = start_gateway(lambda urls: {"providers": {"openai": {"upstream": fake.url}}})
        client, out = in_thread(lambda: gw.run(TWO_SOCKETS, timeout=60))
        deadline = time.monotonic() + 30
        while not any(s.received for s in fake.sessions) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fake.sessions) == 2, "both sockets open, the busy one's response.create upstream"
        gw.proxy.process.send_signal(signal.SIGTERM)  # within the 3 s the answer is held
        client.join(60)
        assert out == {
            "result": {
                "idle": 1001,
                "idle_before_busy_ended": True,
                "busy": 1001,
                "text": "in flight when it began",
                "ended": ["response.completed"],
            }
        }
        assert sorted(s.close_code for s in fake.sessions) == [1001, 1001]  # upstream told it too
        assert gw.proxy.process.wait(20) == 0
        calls, _, stopped = calls_and_process_records(gw)
        assert [(c["transport"], c["status"], c["error"], c["total_tokens"]) for c in calls] == [
            ("websocket", 200, None, 47)
        ]
        assert stopped["calls"] == 1
    finally:
        fake.close()
