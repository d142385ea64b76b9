"""A request that names its host in more than one way (the CONNECT target, the TLS server name, the
Host header or HTTP/2's :authority) names one host throughout, or it is refused: 421 `misdirected`
in the provider's shape, audited `deny`, and nothing reaches any upstream. mitmproxy decrypts a
connection whose server name is a provider's whatever address its CONNECT names: without this, a
call to an address of the caller's choosing would pass ungoverned. Raw requests, as an attacker
sends them (curl's `--connect-to`)."""

from __future__ import annotations

import json

import pytest
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream
from tests.support.h2 import H2Request, h2_calls
from tests.support.leaks import assert_no_secret, saved_flows
from tests.support.raw import send

REAL = {
    "openai": "sk-REAL-openai-misdirected-1",
    "gemini": "AIza-REAL-gemini-misdirected-2",
    "anthropic": "sk-ant-REAL-misdirected-3",
    "acme": "sk-REAL-acme-misdirected-4",
}
ALICE = "tg-alice-misdirected-5"
OWN = "sk-CALLERS-OWN-misdirected-6"
PROMPT = "PROMPT-misdirected-never-kept"
ACME = {"kind": "openai_compatible", "hosts": ["api.acme.example"]}
HOSTS = {
    "openai": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
    "anthropic": "api.anthropic.com",
    "acme": "api.acme.example",
}
MCP_HOST = "mcp.example.test"
MCP_BEARER = "ghp-REAL-mcp-misdirected-7"
# A call each, with alice's virtual key where the provider takes one and the caller's own key beside it.
CALLS = {
    "openai": (
        "/v1/chat/completions",
        [("Authorization", f"Bearer {ALICE}"), ("X-OpenAI-Key", OWN)],
        {"model": "gpt-denied", "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "gemini": (
        f"/v1beta/models/gemini-denied:generateContent?key={OWN}",
        [("x-goog-api-key", ALICE)],
        {"contents": [{"parts": [{"text": PROMPT}]}]},
    ),
    "anthropic": (
        "/v1/messages",
        [("x-api-key", ALICE), ("X-Anthropic-Key", OWN)],
        {"model": "claude-denied", "max_tokens": 10, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "acme": (
        "/v1/chat/completions",
        [("Authorization", f"Bearer {ALICE}"), ("X-Vendor-Key", OWN)],
        {"model": "acme-denied", "messages": [{"role": "user", "content": PROMPT}]},
    ),
}
POLICY = 'package tollgate\nimport rego.v1\ndeny contains "denied model" if endswith(input.model, "-denied")\n'
SECRETS = [*REAL.values(), ALICE, OWN, PROMPT, MCP_BEARER]


@pytest.fixture(scope="module")
def elsewhere(upstream_ca):
    """The address the caller chose: a server whose certificate names every provider's host (as a
    caller's own relay, or the provider's own address, would present), recording what reaches it."""
    fake = FakeUpstream(upstream_ca, provider_answers, names=(*HOSTS.values(), MCP_HOST))
    yield fake
    fake.close()


def _start(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "policy.rego"
    policy.write_text(POLICY)

    def config(urls: dict[str, str]) -> dict:
        mcp = urls.pop("mcp")
        providers = {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()}
        providers["acme"].update(ACME)
        return {
            "providers": providers,
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "policy": {"rego": [str(policy)]},
            "mcp": {
                "servers": [
                    {
                        "name": "docs",
                        "url": f"https://{MCP_HOST}/mcp",
                        "upstream": mcp,
                        "credential": {"bearer": MCP_BEARER},
                    },
                ]
            },
            # A CONNECT to `elsewhere` (loopback) is let through, for the calls inside it to be refused.
            "egress": {"allow": ["127.0.0.1"]},
        }

    gateway = start_gateway(
        config,
        "--set", "termlog_verbosity=debug",
        providers=(*HOSTS, "mcp"), save_flows=True,
    )  # fmt: skip
    return gateway


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    return _start(start_gateway, tmp_path_factory)


@pytest.fixture
def g(gw, elsewhere):
    gw.reset()
    elsewhere.received.clear()
    return gw


def call(g, provider: str, **kw):
    """The provider's call as a raw HTTP/1.1 request; the answer and the audit record it added."""
    before = len(g.audit())
    target, headers, body = CALLS[provider]
    pairs = [*headers, ("Content-Type", "application/json")]
    response = send(g.proxy.port, g.bundle, kw.pop("host", HOSTS[provider]), target, body=json.dumps(body).encode(),
                    headers=pairs, **kw)  # fmt: skip
    return response, g.wait_audit(before + 1)[before]


def h2_call(g, provider: str, **kw):
    """The provider's call as a stream of an HTTP/2 connection; the answer and the audit record it added."""
    before = len(g.audit())
    target, headers, body = CALLS[provider]
    request = H2Request(target, json.dumps(body).encode(), {k.lower(): v for k, v in headers})
    (answer,) = h2_calls(g.proxy.port, g.bundle, HOSTS[provider], [request], timeout=20, **kw)
    return answer, g.wait_audit(before + 1)[before]


def assert_misdirected(g, elsewhere, shape: str, status: int, headers, body: bytes, record: dict, named: str) -> None:
    """Refused 421 in `shape`'s provider's error shape, audited `deny`, and sent nowhere."""
    assert status == 421, body
    assert headers["x-tollgate-error"] == "misdirected"
    answer = json.loads(body)
    if shape in ("openai", "acme"):
        assert answer["error"]["code"] == "misdirected" and answer["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":
        assert answer["error"]["code"] == 421 and answer["error"]["status"] == "INVALID_ARGUMENT"
    elif shape == "anthropic":
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    assert elsewhere.received == []
    assert not any(fake.received for fake in g.fakes.values())
    assert (record["decision"], record["deny_reasons"], record["status"]) == ("deny", ["misdirected"], 421)
    assert (record["provider"], record["host"], record["upstream_key"]) == (shape, HOSTS[shape], None)
    assert record["error"].startswith("misdirected: ") and named in record["error"]


@pytest.mark.parametrize("provider", list(HOSTS))
def test_a_connect_to_an_address_with_a_providers_server_name_is_refused(g, elsewhere, provider):
    """curl --connect-to HOST:443:127.0.0.1:PORT: CONNECT to the address, the provider's name as the
    TLS server name and in the Host header."""
    response, record = call(g, provider, connect=f"127.0.0.1:{elsewhere.port}")
    assert_misdirected(g, elsewhere, provider, response.status, response.headers, response.body, record, "127.0.0.1")


def test_over_http2_too(g, elsewhere):
    answer, record = h2_call(g, "openai", connect=f"127.0.0.1:{elsewhere.port}")
    assert_misdirected(g, elsewhere, "openai", answer.status, answer.headers, answer.body, record, "127.0.0.1")


def test_an_http2_authority_naming_another_provider_on_the_connection_is_refused(g, elsewhere):
    """One connection to OpenAI, a stream to Gemini's host on it: the stream is another host's."""
    answer, record = h2_call(g, "gemini", connect="api.openai.com:443", sni="api.openai.com")
    assert_misdirected(g, elsewhere, "gemini", answer.status, answer.headers, answer.body, record, "api.openai.com")


def test_a_connect_to_one_provider_with_another_providers_server_name_is_refused(g, elsewhere):
    response, record = call(g, "anthropic", connect="api.openai.com:443")
    assert_misdirected(
        g, elsewhere, "anthropic", response.status, response.headers, response.body, record, "api.openai.com"
    )


def test_a_host_header_naming_another_host_than_the_connection_is_refused(g, elsewhere):
    response, record = call(g, "openai", sni="api.openai.com", connect="api.openai.com:443", host="evil.example")
    assert_misdirected(g, elsewhere, "openai", response.status, response.headers, response.body, record, "evil.example")


def test_a_call_without_a_server_name_is_governed_by_the_name_it_connected_to(g, elsewhere):
    target, headers, _ = CALLS["openai"]
    before = len(g.audit())
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    headers = [("Authorization", f"Bearer {ALICE}"), ("Content-Type", "application/json")]
    response = send(g.proxy.port, g.bundle, HOSTS["openai"], target, body=body, headers=headers, sni=None)
    record = g.wait_audit(before + 1)[before]
    assert response.status == 200
    (received,) = g.fakes["openai"].received
    assert received.headers["authorization"] == f"Bearer {REAL['openai']}"
    assert (record["client"], record["decision"], record["status"]) == ("alice", "allow", 200)
    # Without a server name, a Host header naming another provider's host is refused all the same.
    response, record = call(g, "anthropic", connect="api.openai.com:443", sni=None)
    assert response.status == 421 and record["deny_reasons"] == ["misdirected"]
    assert elsewhere.received == [] and g.fakes["anthropic"].received == []


def test_an_mcp_servers_host_named_with_another_address_is_refused(g, elsewhere):
    before = len(g.audit())
    message = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).encode()
    headers = [
        ("Authorization", f"Bearer {ALICE}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ]
    response = send(
        g.proxy.port, g.bundle, MCP_HOST, "/mcp", body=message, headers=headers, connect=f"127.0.0.1:{elsewhere.port}"
    )
    (record,) = g.wait_audit(before + 1)[before:]
    assert (response.status, response.headers["x-tollgate-error"]) == (421, "misdirected")
    assert response.json()["id"] == 7 and "names more than one host" in response.json()["error"]["message"]
    assert elsewhere.received == [] and g.fakes["mcp"].received == []
    assert (record["event"], record["server"], record["method"]) == ("mcp_call", "docs", "tools/list")
    assert (record["decision"], record["deny_reasons"], record["status"]) == ("deny", ["misdirected"], 421)
    assert record["error"] == f"misdirected: connection to 127.0.0.1, TLS server name {MCP_HOST}, Host {MCP_HOST}"
    # A path of its host that is no server's: refused too, with nothing to audit it as.
    response = send(g.proxy.port, g.bundle, MCP_HOST, "/.well-known/oauth-authorization-server", method="GET",
                    headers=headers, connect=f"127.0.0.1:{elsewhere.port}")  # fmt: skip
    assert (response.status, response.headers["x-tollgate-error"]) == (421, "misdirected")
    assert elsewhere.received == []


def test_the_refused_calls_keep_no_secret_in_any_output(start_gateway, tmp_path_factory, elsewhere):
    g = _start(start_gateway, tmp_path_factory)
    for provider in HOSTS:
        response, _ = call(g, provider, connect=f"127.0.0.1:{elsewhere.port}")
        assert response.status == 421
    g.proxy.stop()  # flushes the saved flows
    outputs = {
        "audit": g.audit_path.read_bytes(),
        "console": g.proxy.output.read_bytes(),
        "saved": g.saved.read_bytes(),
    }
    assert b"x-tollgate-error: misdirected" in outputs["console"].lower()  # the flows were printed in full
    assert_no_secret(outputs, SECRETS)
    flows = saved_flows(g.saved)
    assert [f.response.status_code for f in flows] == [421] * len(HOSTS)
    assert flows[0].request.headers["authorization"] == "[redacted by Tollgate]"
    assert flows[1].request.query["key"] == "[redacted by Tollgate]"
    assert all(f.request.raw_content is None for f in flows)
    assert elsewhere.received == []
