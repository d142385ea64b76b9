"""Request heads past 64 KiB in all are refused (431) before they are held: over HTTP/1 and HTTP/2,
in the provider's shape, audited, nothing upstream, the proxy's memory flat and the proxy serving on.
A head just under the bound is served as it came. An upstream's answer head past the bound fails
the call (502) rather than being held."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from tests.support.configs import openai_with_clients
from tests.support.fake_upstream import Reply
from tests.support.h2 import H2Request, h2_calls
from tests.support.raw import send

REAL = "sk-REAL-openai-heads-1"
ALICE = "tg-alice-heads-2"
HOST = "api.openai.com"
CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(openai_with_clients(REAL, {"alice": ALICE}))


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def refused_as_openai(response, record) -> None:
    assert response.status == 431, response.body[:300]
    assert response.headers["x-tollgate-error"] == "headers_too_large"
    assert response.json()["error"]["code"] == "headers_too_large"
    assert "past 64 KiB" in response.json()["error"]["message"]
    assert response.headers["x-tollgate-request-id"] == record["request_id"]
    assert (record["status"], record["decision"], record["deny_reasons"]) == (431, "deny", ["headers_too_large"])
    assert (record["provider"], record["method"], record["path"]) == ("openai", "POST", "/v1/chat/completions")
    assert (record["client"], record["upstream_key"], record["error"]) == (None, None, "request headers past 64 KiB")


def test_a_100_kib_header_over_http1_is_refused_431_audited_and_never_sent(g):
    # The key is valid: before the bound, the whole head went upstream with the real key.
    headers = [("Authorization", f"Bearer {ALICE}"), ("X-Filler", "a" * 100 * 1024)]
    before = len(g.audit())
    response = send(g.proxy.port, g.bundle, HOST, "/v1/chat/completions", body=CHAT, headers=headers)
    record = g.wait_audit(before + 1)[before]
    refused_as_openai(response, record)
    assert response.headers["connection"] == "close"
    assert g.fakes["openai"].received == []
    # The proxy serves on.
    served = send(g.proxy.port, g.bundle, HOST, "/v1/chat/completions", body=CHAT, headers=headers[:1])
    assert served.status == 200 and len(g.fakes["openai"].received) == 1


def test_a_100_kib_header_over_http2_is_refused_431_and_the_connection_serves_on(g):
    key = {"authorization": f"Bearer {ALICE}", "content-type": "application/json"}
    big = H2Request("/v1/chat/completions", CHAT, {**key, "x-filler": "b" * 100 * 1024})
    # Sent after it on the same connection: its header block leans on the HPACK table the first
    # one's filled, which stays whole though that block was cut.
    small = H2Request("/v1/chat/completions", CHAT, key)
    before = len(g.audit())
    refused, served = h2_calls(g.proxy.port, g.bundle, HOST, [big, small], timeout=20)
    records = {r["status"]: r for r in g.wait_audit(before + 2)[before:]}
    assert refused.status == 431 and refused.headers["x-tollgate-error"] == "headers_too_large"
    assert refused.json()["error"]["code"] == "headers_too_large"
    assert refused.headers["x-tollgate-request-id"] == records[431]["request_id"]
    assert (records[431]["decision"], records[431]["deny_reasons"]) == ("deny", ["headers_too_large"])
    assert (records[431]["provider"], records[431]["path"]) == ("openai", "/v1/chat/completions")
    assert served.status == 200 and served.json()["usage"]["total_tokens"] == 28
    assert (records[200]["client"], records[200]["decision"]) == ("alice", "allow")
    (seen,) = g.fakes["openai"].received
    assert seen.headers["authorization"] == f"Bearer {REAL}" and "x-filler" not in seen.headers


@pytest.mark.parametrize("protocol", ["http/1.1", "h2"])
def test_a_header_just_under_the_bound_is_served_as_it_came(g, protocol):
    filler = "c" * (60 * 1024)
    if protocol == "h2":
        headers = {"authorization": f"Bearer {ALICE}", "content-type": "application/json", "x-filler": filler}
        (answer,) = h2_calls(g.proxy.port, g.bundle, HOST, [H2Request("/v1/chat/completions", CHAT, headers)], 20)
        status = answer.status
    else:
        headers = [("Authorization", f"Bearer {ALICE}"), ("X-Filler", filler)]
        status = send(g.proxy.port, g.bundle, HOST, "/v1/chat/completions", body=CHAT, headers=headers).status
    assert status == 200
    (seen,) = g.fakes["openai"].received
    assert seen.headers["x-filler"] == filler and seen.headers["authorization"] == f"Bearer {REAL}"


def raw_head(
    port: int, bundle: Path, head: bytes, *, tunnel: str | None = HOST, timeout: float = 20, pause_at: int = 0
) -> bytes:
    """Send `head` (through a CONNECT tunnel to `tunnel` and TLS, or to the proxy itself; with a
    pause after its first `pause_at` bytes) and return the answer, read as a client does (to its
    Content-Length, then closed): b"" when the proxy reset the connection first."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if tunnel is not None:
            sock.sendall(f"CONNECT {tunnel}:443 HTTP/1.1\r\nHost: {tunnel}:443\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200"), reply
            sock = ssl.create_default_context(cafile=str(bundle)).wrap_socket(sock, server_hostname=tunnel)
        answer = b""
        try:
            if pause_at:
                sock.sendall(head[:pause_at])
                time.sleep(0.3)
            sock.sendall(head[pause_at:])
            while not answered(answer) and (chunk := sock.recv(65536)):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass
        return answer
    finally:
        sock.close()


def answered(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(blank) and bool(lengths) and len(body) >= int(lengths[0])


def big_head(size: int) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {ALICE}\r\n"
        f"X-Filler: {'d' * size}\r\nContent-Length: {len(CHAT)}\r\n\r\n"
    ).encode() + CHAT


def settled_audit_count(g, quiet_s: float = 0.5, rounds: int = 20) -> int:
    """The audit's record count once no record has come for `quiet_s`: an earlier test's call may
    still be writing its own (its client's connection closing)."""
    count = len(g.audit())
    for _ in range(rounds):
        time.sleep(quiet_s)
        now = len(g.audit())
        if now == count:
            return count
        count = now
    raise AssertionError(f"the audit kept growing: {count} records")


def test_memory_stays_flat_over_50_refused_heads_and_8_parallel_20_mb_ones(g):
    pid = g.proxy.process.pid
    before = settled_audit_count(g)
    for _ in range(5):  # warm up: the first calls load what every call uses
        assert raw_head(g.proxy.port, g.bundle, big_head(100 * 1024)).startswith(b"HTTP/1.1 431")
    start = rss_kib(pid)
    for _ in range(50):
        assert raw_head(g.proxy.port, g.bundle, big_head(100 * 1024)).startswith(b"HTTP/1.1 431")
    after_50 = rss_kib(pid)
    assert after_50 - start < 8 * 1024, (start, after_50)
    assert len(g.wait_audit(before + 55)) == before + 55

    # The attack: eight at once, each with a 20 MB header (the proxy went from 219 to 800 MiB).
    answers: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: answers.append(raw_head(g.proxy.port, g.bundle, big_head(20 * 2**20))))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8 and all(a == b"" or a.startswith(b"HTTP/1.1 431") for a in answers)
    assert rss_kib(pid) - start < 32 * 1024, (start, rss_kib(pid))
    assert g.fakes["openai"].received == []
    key = [("Authorization", f"Bearer {ALICE}")]
    assert send(g.proxy.port, g.bundle, HOST, "/v1/chat/completions", body=CHAT, headers=key).status == 200
    records = g.wait_audit(before + 55 + 9)[before + 55 :]
    assert sorted(r["status"] for r in records) == [200] + [431] * 8


def test_a_request_line_past_the_bound_gets_the_proxys_own_431(g):
    before = len(g.audit())
    head = f"GET /v1/models?{'e' * 70 * 1024} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    answer = raw_head(g.proxy.port, g.bundle, head)
    assert answer.startswith(b"HTTP/1.1 431")
    time.sleep(0.5)  # a record, were there one, would be written by now
    assert len(g.audit()) == before and g.fakes["openai"].received == []


def test_a_request_line_longer_than_a_tls_record_is_still_read_as_http(g):
    # mitmproxy took a first read with no whole line for another protocol, and relayed it to the
    # provider as raw bytes, ungoverned.
    before = len(g.audit())
    target = f"/v1/chat/completions?padding={'p' * 20 * 1024}"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {ALICE}\r\n"
        f"Content-Length: {len(CHAT)}\r\n\r\n"
    ).encode() + CHAT
    answer = raw_head(g.proxy.port, g.bundle, head, pause_at=10 * 1024)  # the line comes in two reads
    record = g.wait_audit(before + 1)[before]
    assert answer.startswith(b"HTTP/1.1 ") and record["request_id"].encode() in answer
    assert (record["client"], record["path"]) == ("alice", "/v1/chat/completions")


@pytest.mark.parametrize(("host", "audited"), [(HOST, True), ("example.com", False)])
def test_a_connect_past_the_bound_is_refused_431(g, host, audited):
    before = len(g.audit())
    head = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nX-Filler: {'f' * 100 * 1024}\r\n\r\n".encode()
    answer = raw_head(g.proxy.port, g.bundle, head, tunnel=None)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    if audited:
        record = g.wait_audit(before + 1)[before]
        assert (record["provider"], record["method"], record["status"], record["deny_reasons"]) == (
            "openai",
            "CONNECT",
            431,
            ["headers_too_large"],
        )
        assert b'"code": "headers_too_large"' in answer or b'"code":"headers_too_large"' in answer
    else:
        time.sleep(0.5)
        assert len(g.audit()) == before and answer.endswith(b"Tollgate did not read or forward them.")


def test_an_upstream_answer_head_past_the_bound_fails_the_call_502(g):
    g.fakes["openai"].handler = lambda _r: Reply(200, {"ok": True}, headers={"X-Filler": "g" * 100 * 1024})
    before = len(g.audit())
    key = [("Authorization", f"Bearer {ALICE}")]
    response = send(g.proxy.port, g.bundle, HOST, "/v1/chat/completions", body=CHAT, headers=key)
    record = g.wait_audit(before + 1)[before]
    assert response.status == 502, response.body[:300]
    assert response.headers["x-tollgate-error"] == "upstream_unreachable"
    assert len(g.fakes["openai"].received) == 1
    assert record["status"] == 502
    assert record["error"] == "upstream unreachable: the upstream's response head is past 65536 bytes"
