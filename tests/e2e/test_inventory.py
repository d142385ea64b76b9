"""`tollgate inventory` over the audit a real mitmdump wrote: a governed SDK call, a TLS tunnel to a
server of an AI service `egress.services` adds (the client sees that server's own certificate), a
refused CONNECT, then the inventory's figures, exactly as the records have them."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import trustme
from tests.support.cli import run_tollgate
from tests.support.fake_upstream import serving_text

LOGIN = "carol:pr0xy-PASSWORD-inventory"
AUTHORIZATION = "Proxy-Authorization: Basic Y2Fyb2w6cHIweHktUEFTU1dPUkQtaW52ZW50b3J5"  # carol's login
ANSWER = b"an answer of the notes AI"


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def notes_ai(other_ca):
    """A TLS server of an AI service Tollgate does not read, with a certificate of its own CA."""
    with serving_text(other_ca, ANSWER) as server:
        yield server


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-INVENTORY-0001"]}},
            "clients": [{"name": "carol"}],
            "egress": {"allow": ["127.0.0.1"], "deny": ["pastebin.com"], "services": {"notes_ai": ["127.0.0.1"]}},
        },
        "--set",
        f"proxyauth={LOGIN}",
        providers=("openai",),
    )


def connect(proxy_port: int, target: str) -> tuple[socket.socket, bytes]:
    """A CONNECT with carol's login: the socket and the proxy's answer's head."""
    raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{AUTHORIZATION}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and (chunk := raw.recv(4096)):
        head += chunk
    return raw, head


def inventory(*args: str) -> list[dict]:
    done = run_tollgate("inventory", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_inventory_of_what_a_client_reached(gw, notes_ai, other_ca) -> None:
    proxy = gw.proxy.proxy_url.replace("http://", f"http://{LOGIN}@")
    result = gw.run(
        """
        import openai
        r = openai.OpenAI(api_key="unused", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        report(model=r.model)
        """,
        proxy_url=proxy,
    )
    assert "model" in result, result
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=other_ca.cert_pem.bytes().decode())
    raw, head = connect(gw.proxy.port, f"127.0.0.1:{notes_ai.port}")
    with raw:
        assert head.startswith(b"HTTP/1.1 200"), head
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    assert answer.endswith(ANSWER)
    raw, head = connect(gw.proxy.port, "pastebin.com:443")
    raw.close()
    assert head.startswith(b"HTTP/1.1 403"), head
    records = gw.wait_audit(1) + gw.connections(2)
    tunnel = next(r for r in records if r["event"] == "connection" and r["decision"] == "allow")
    call = next(r for r in records if r["event"] == "llm_call")
    denied = next(r for r in records if r["event"] == "connection" and r["decision"] == "deny")
    assert tunnel["bytes_sent"] > 0 and tunnel["bytes_received"] > len(ANSWER)
    assert call["bytes_sent"] > 0 and call["bytes_received"] > 0  # the call's bodies with its upstream
    # A refusal's kind is its own field, the X-Tollgate-Error the client got; null when served.
    assert (tunnel["refusal"], call["refusal"], denied["refusal"]) == (None, None, "egress_denied")
    assert inventory(str(gw.audit_path)) == [
        {"client": "carol", "service": "notes_ai", "category": tunnel["category"], "calls": 0, "connections": 1,
         "refused": 0, "bytes_sent": tunnel["bytes_sent"], "bytes_received": tunnel["bytes_received"],
         "first_seen": tunnel["ts"], "last_seen": tunnel["ts"]},
        {"client": "carol", "service": "openai", "category": "ai_api", "calls": 1, "connections": 0, "refused": 0,
         "bytes_sent": call["bytes_sent"], "bytes_received": call["bytes_received"], "first_seen": call["ts"],
         "last_seen": call["ts"]},
        {"client": "carol", "service": "pastebin.com", "category": None, "calls": 0, "connections": 0,
         "refused": 1, "bytes_sent": 0, "bytes_received": 0, "first_seen": denied["ts"], "last_seen": denied["ts"]},
    ]  # fmt: skip
