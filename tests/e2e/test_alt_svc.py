"""A governed answer reaches its client without `Alt-Svc`: the header would send the client's next
call to the host over HTTP/3 (UDP), which Tollgate does not intercept under `--capture`. The
official OpenAI SDK over HTTP/1.1 and HTTP/2, a streamed answer (still streamed), and an MCP
server's answers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.support.canned import OPENAI_CHAT
from tests.support.configs import openai_with_clients
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.h2 import H2Reply, H2Upstream
from tests.support.raw import send
from tests.support.streams import openai_chat

ALICE = "tg-alice-alt-svc-1"
REAL = "sk-REAL-alt-svc-2"
ALT_SVC = 'h3=":443"; ma=86400, h3-29=":443"; ma=86400'
MCP_HOST = "mcp.example.test"
RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"


def answers(received: Received) -> Reply:
    if received.path.startswith("/mcp"):
        message = json.loads(received.body)
        return Reply(200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}}, {"alt-svc": ALT_SVC})
    if received.path.startswith("/.well-known/"):
        return Reply(200, {"issuer": f"https://{MCP_HOST}"}, {"alt-svc": ALT_SVC})
    return Reply(200, OPENAI_CHAT, {"alt-svc": ALT_SVC})


@pytest.fixture(scope="module")
def mcp_server(upstream_ca):
    """The MCP server's host, reached by its name (`support/resolve.py`): its server's URL and its other paths."""
    server = FakeUpstream(upstream_ca, answers, names=(MCP_HOST,))
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(start_gateway, mcp_server):
    config = openai_with_clients(
        REAL, {"alice": ALICE}, mcp={"servers": [{"name": "docs", "url": f"https://{MCP_HOST}/mcp"}]}
    )
    env = {"TOLLGATE_TEST_RESOLVE": json.dumps({MCP_HOST: mcp_server.port})}
    return start_gateway(config, "-s", str(RESOLVE), env=env, providers=("openai",))


@pytest.fixture
def g(gw, mcp_server):
    gw.reset()
    gw.fakes["openai"].handler = answers
    mcp_server.received.clear()
    return gw


CHAT = f"""
    import openai
    client = openai.OpenAI(api_key="{ALICE}", max_retries=0{{http2}})
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{{{{"role": "user", "content": "hi"}}}}])
    report(status=raw.status_code, http_version=raw.http_version, alt_svc=raw.headers.get_list("alt-svc"),
           tokens=raw.parse().usage.total_tokens)
"""


def test_an_answer_reaches_the_sdk_without_its_alt_svc(g):
    result = g.run(CHAT.format(http2=""))
    assert result == {"status": 200, "http_version": "HTTP/1.1", "alt_svc": [], "tokens": 28}
    assert g.fakes["openai"].received[0].headers["authorization"] == f"Bearer {REAL}"
    assert g.last_audit()["total_tokens"] == 28


def test_an_http2_answer_reaches_the_sdk_without_its_alt_svc(start_gateway, upstream_ca):
    """The SDK with HTTP/2 on, to an HTTP/2 upstream (mitmproxy offers the upstream the client's protocol)."""
    body = json.dumps(OPENAI_CHAT).encode()
    upstream = H2Upstream(
        upstream_ca, lambda r: H2Reply(200, {"content-type": "application/json", "alt-svc": ALT_SVC}, [body])
    )
    try:
        gw = start_gateway(
            {"providers": {"openai": {"upstream": upstream.url, "keys": [REAL]}}, "clients": [{"name": "alice", "keys": [ALICE]}]},
            providers=(),
        )  # fmt: skip
        result = gw.run(CHAT.format(http2=", http_client=openai.DefaultHttpxClient(http2=True)"))
        assert result == {"status": 200, "http_version": "HTTP/2", "alt_svc": [], "tokens": 28}
        assert len(upstream.received) == 1
    finally:
        upstream.close()


def test_a_streamed_answer_loses_its_alt_svc_and_still_streams(g, tmp_path):
    """The upstream holds its second piece until the client has the first: the answer is not held back."""
    marker = tmp_path / "first-piece"
    held: list[bool] = []

    def until_the_client_has_the_first(i: int) -> None:
        if i == 1:
            deadline = time.monotonic() + 10
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            held.append(marker.exists())

    g.fakes["openai"].handler = lambda r: Reply(
        200, chunks=openai_chat(), headers={"alt-svc": ALT_SVC}, gate=until_the_client_has_the_first
    )
    result = g.run(f"""
        import openai
        client = openai.OpenAI(api_key="{ALICE}", max_retries=0)
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", stream=True, messages=[{{"role": "user", "content": "hi"}}]) as raw:
            text = ""
            for chunk in raw.parse():
                open({str(marker)!r}, "w").close()  # this piece has come
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
            report(alt_svc=raw.headers.get_list("alt-svc"), text=text)
    """)
    assert result == {"alt_svc": [], "text": "Hello"}
    assert held == [True]
    assert g.last_audit()["total_tokens"] == 24


def test_an_mcp_servers_answers_lose_their_alt_svc(g, mcp_server):
    headers = [
        ("Authorization", f"Bearer {ALICE}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ]
    message = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    answer = send(g.proxy.port, g.bundle, MCP_HOST, "/mcp", body=message, headers=headers)
    assert (answer.status, answer.json()["id"]) == (200, 1)
    assert "alt-svc" not in answer.headers
    # Another path of the server's host, which passes with the caller's own credential.
    answer = send(g.proxy.port, g.bundle, MCP_HOST, "/.well-known/oauth-authorization-server", method="GET")
    assert (answer.status, answer.json()) == (200, {"issuer": f"https://{MCP_HOST}"})
    assert "alt-svc" not in answer.headers
    assert [r.path for r in mcp_server.received] == ["/mcp", "/.well-known/oauth-authorization-server"]
