"""Brokered credentials (`egress.credentials`): an agent holding a placeholder for a GitHub token
reaches a fake of api.github.com through Tollgate, which puts the real token in its place; the
placeholder never reaches that server, is refused toward another host and in an LLM call, and is
never in the audit or the console. Each brokered connection leaves a `connection` record.

The fake is api.github.com by name: `support/resolve.py` sends the name to it, so it sees the SNI
and Host the real one would."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from mitmproxy import io
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.proxy import free_port, run_to_exit

RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
PLACEHOLDER = "ghp_placeholder_the_agent_holds_0001"
TOKEN = "ghp_the_real_token_only_Tollgate_has_01"
UPLOADS_PLACEHOLDER = "upl_placeholder_the_agent_holds_0002"
UPLOADS_TOKEN = "upl_the_real_upload_token_000002"
REAL_OPENAI = "sk-real-openai-brokered-000000000001"
LOGIN = "carol:pr0xy-PASSWORD-brokered"
ANSWER = {"login": "octocat"}
REFUSED_REASON = "a brokered credential's placeholder (tollgate_keys) where it does not belong"
POSTED = b"x" * 100_000
NAMES = ("api.github.com", "uploads.example.com")
METRICS = f"127.0.0.1:{free_port()}"


def answers(r: Received) -> Reply:
    return Reply(200, ANSWER, {"content-type": "application/json"})


@pytest.fixture(scope="module")
def github(upstream_ca) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(upstream_ca, answers, names=NAMES)
    yield fake
    fake.close()


class Cleartext:
    """A plain HTTP server on 127.0.0.1, standing in for api.github.com on another port (`resolve.py`
    sends `api.github.com:<its port>` to it): the headers of each request that reached it."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps(ANSWER).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cleartext() -> Iterator[Cleartext]:
    server = Cleartext()
    yield server
    server.close()


def credentials() -> list[dict[str, str]]:
    return [
        {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"},
        {"host": "uploads.example.com", "header": "X-Upload-Token", "virtual": UPLOADS_PLACEHOLDER,
         "value": "${UPLOADS_TOKEN}"},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gw(start_gateway, github, cleartext, tmp_path_factory):

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL_OPENAI]}},
            "clients": [{"name": "carol"}],
            # Default deny: a credential's host passes as a provider's does, and is not resolved.
            "egress": {"default": "deny", "credentials": credentials()},
            "metrics": {"listen": METRICS},
        }

    env = {
        "GITHUB_TOKEN": TOKEN,
        "UPLOADS_TOKEN": UPLOADS_TOKEN,
        "TOLLGATE_TEST_RESOLVE": json.dumps(
            {**dict.fromkeys(NAMES, github.port), f"api.github.com:{cleartext.port}": cleartext.port}
        ),
    }
    gateway = start_gateway(
        config, "-s", str(RESOLVE), "--set", f"proxyauth={LOGIN}", env=env, providers=("openai",), save_flows=True,
    )  # fmt: skip
    return gateway


def written_down(gw) -> str:
    """What the proxy wrote: the audit, the console (every header, at flow_detail 4), the saved flows."""
    return gw.audit_path.read_text() + gw.proxy.console() + gw.saved.read_bytes().decode("latin-1")


def through_login(gw) -> str:
    return gw.proxy.proxy_url.replace("http://", f"http://{LOGIN}@")


AGENT = f"""
import requests
with requests.Session() as c:
    got = c.get("https://api.github.com/user", headers={{"Authorization": "Bearer {PLACEHOLDER}"}}, timeout=20)
    posted = c.post("https://api.github.com/repos/o/r/issues", headers={{"Authorization": "token {PLACEHOLDER}"}},
                    data=b"x" * {len(POSTED)}, timeout=20)
    in_url = c.get("https://api.github.com/search?q={PLACEHOLDER}", headers={{"Authorization": "Bearer {PLACEHOLDER}"}},
                   timeout=20)
    elsewhere = c.get("https://uploads.example.com/up", headers={{"Authorization": "Bearer {PLACEHOLDER}"}},
                      timeout=20)
    uploaded = c.put("https://uploads.example.com/up", headers={{"X-Upload-Token": "{UPLOADS_PLACEHOLDER}"}},
                     data=b"0123456789", timeout=20)
answers = [got, posted, in_url, elsewhere, uploaded]
report(status=[a.status_code for a in answers], error=[a.headers.get("x-tollgate-error") for a in answers],
       bodies=[a.json() for a in answers[:2]])
"""


def test_the_token_reaches_its_host_and_the_placeholder_never_does(gw, github) -> None:
    github.received.clear()
    result = gw.run(AGENT, proxy_url=through_login(gw))
    assert result == {
        "status": [200, 200, 403, 403, 200],
        "error": [None, None, "content_denied", "content_denied", None],
        "bodies": [ANSWER, ANSWER],
    }
    seen = [(r.sni, r.method, r.path, r.headers.get("authorization"), r.headers.get("x-upload-token"), len(r.body))
            for r in github.received]  # fmt: skip
    assert seen == [
        ("api.github.com", "GET", "/user", f"Bearer {TOKEN}", None, 0),
        ("api.github.com", "POST", "/repos/o/r/issues", f"token {TOKEN}", None, len(POSTED)),
        ("uploads.example.com", "PUT", "/up", None, UPLOADS_TOKEN, 10),
    ]
    assert github.received[1].body == POSTED
    for r in github.received:
        assert PLACEHOLDER not in r.path + json.dumps(r.headers)
    connections = sorted(gw.connections(2, since_run=True), key=lambda r: r["host"])
    answer = len(json.dumps(ANSWER).encode())
    assert [
        (r["client"], r["auth"], r["host"], r["port"], r["decision"], r["brokered"], r["refused"], r["bytes_sent"],
         r["bytes_received"], r["error"])
        for r in connections
    ] == [
        ("carol", "proxyauth", "api.github.com", 443, "allow", 2, 1, len(POSTED), 2 * answer, None),
        ("carol", "proxyauth", "uploads.example.com", 443, "allow", 1, 1, 10, answer, None),
    ]  # fmt: skip
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        scraped = r.read().decode()
    counted = sorted(line for line in scraped.splitlines() if line.startswith("tollgate_brokered_requests_total"))
    assert counted == [
        'tollgate_brokered_requests_total{host="api.github.com",outcome="brokered"} 2.0',
        'tollgate_brokered_requests_total{host="api.github.com",outcome="refused"} 1.0',
        'tollgate_brokered_requests_total{host="uploads.example.com",outcome="brokered"} 1.0',
        'tollgate_brokered_requests_total{host="uploads.example.com",outcome="refused"} 1.0',
    ]
    written = written_down(gw)
    assert "uploads.example.com" in written and "[redacted by Tollgate]" in written
    for secret in (PLACEHOLDER, TOKEN, UPLOADS_PLACEHOLDER, UPLOADS_TOKEN):
        assert secret not in written


def sent_in_cleartext(gw, url: str, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
    """`GET url` sent to the proxy itself in cleartext (absolute form: no CONNECT, no TLS), through
    the proxy login: the answer's status, X-Tollgate-Error and body."""
    login = base64.b64encode(LOGIN.encode()).decode()
    proxy = http.client.HTTPConnection("127.0.0.1", gw.proxy.port, timeout=30)
    try:
        proxy.request("GET", url, headers={"Proxy-Authorization": f"Basic {login}", **headers})
        answer = proxy.getresponse()
        return answer.status, answer.getheader("x-tollgate-error"), answer.read()
    finally:
        proxy.close()


def test_a_placeholder_sent_in_cleartext_is_refused_and_nothing_leaves(gw, github, cleartext) -> None:
    """Plain HTTP to the credential's host (on a port where a plain server answers), and an
    `https://` URL sent to the proxy in cleartext: neither is brokered, both refused and audited."""
    github.received.clear()
    before = len(gw.connections())
    placeholder = {"Authorization": f"Bearer {PLACEHOLDER}"}
    plain = sent_in_cleartext(gw, f"http://api.github.com:{cleartext.port}/user", placeholder)
    https_url = sent_in_cleartext(gw, "https://api.github.com/user", placeholder)
    for status, error, body in (plain, https_url):
        assert (status, error) == (403, "content_denied")
        assert json.loads(body)["error"]["type"] == "content_denied" and b"tollgate_keys" in body
    assert cleartext.received == [] and github.received == []
    # Without a placeholder, plain HTTP to the host goes as it came: nothing to broker.
    assert sent_in_cleartext(gw, f"http://api.github.com:{cleartext.port}/user", {})[:2] == (200, None)
    assert len(cleartext.received) == 1 and "authorization" not in cleartext.received[0]
    records = gw.connections(before + 2)[before:]
    refused = [r for r in records if r["decision"] == "deny"]
    assert [(r["client"], r["host"], r["port"], r["deny_reasons"]) for r in refused] == [
        ("carol", "api.github.com", port, [REFUSED_REASON]) for port in (cleartext.port, 443)
    ]
    written = written_down(gw)
    assert PLACEHOLDER not in written and TOKEN not in written


def test_brokered_flows_are_saved(gw, github) -> None:
    """Every flow of a brokered host's requests is in `save_stream_file`, as mitmproxy reads it."""
    gw.run(
        f"""
import requests
with requests.Session() as c:
    got = c.get("https://api.github.com/saved", headers={{"Authorization": "Bearer {PLACEHOLDER}"}}, timeout=20)
    refused = c.get("https://api.github.com/saved?q={PLACEHOLDER}", timeout=20)
report(status=[got.status_code, refused.status_code])
""",
        proxy_url=through_login(gw),
    )
    with gw.saved.open("rb") as f:
        saved = [
            (flow.request.host, flow.request.path, flow.response.status_code) for flow in io.FlowReader(f).stream()
        ]
    assert ("api.github.com", "/saved", 200) in saved
    assert ("api.github.com", "/saved?q=[PLACEHOLDER]", 403) in saved
    assert "Addon error" not in gw.proxy.console()


def read_answer(tls: ssl.SSLSocket) -> tuple[int, str | None, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status, X-Tollgate-Error and body."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = tls.recv(1)
        assert chunk, head
        head += chunk
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = b""
    while len(body) < int(fields.get("content-length", "0")):
        body += tls.recv(65536)
    return int(lines[0].split(" ")[1]), fields.get("x-tollgate-error"), body


def test_a_connection_decrypted_for_its_server_name_is_recorded(start_gateway, github, bundle) -> None:
    """CONNECT to an allowed host, then TLS with a credential's host's server name: Tollgate
    decrypts it (for the server name), so it records it, and audits the placeholder it refused on it."""
    gw = start_gateway(
        {"egress": {"allow": ["allowed.test"], "record": "all", "credentials": credentials()}},
        "-s", str(RESOLVE),
        env={"GITHUB_TOKEN": TOKEN, "UPLOADS_TOKEN": UPLOADS_TOKEN,
             "TOLLGATE_TEST_RESOLVE": json.dumps({"allowed.test": github.port})},
        providers=(),
    )  # fmt: skip
    github.received.clear()
    context = ssl.create_default_context(cafile=str(bundle))
    with context.wrap_socket(tunnel(gw, "allowed.test:443"), server_hostname="api.github.com") as tls:
        tls.sendall(
            f"GET /user HTTP/1.1\r\nHost: api.github.com\r\nAuthorization: Bearer {PLACEHOLDER}\r\n\r\n".encode()
        )
        refused = read_answer(tls)
        tls.sendall(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
        served = read_answer(tls)
    assert refused[:2] == (403, "content_denied") and served == (200, None, json.dumps(ANSWER).encode())
    assert [(r.sni, r.headers.get("authorization")) for r in github.received] == [("api.github.com", None)]
    [record] = gw.connections(1)
    assert (record["host"], record["port"], record["decision"], record["refused"], record["error"]) == (
        "allowed.test", 443, "allow", 1, None
    )  # fmt: skip
    assert (record["bytes_sent"], record["bytes_received"]) == (0, len(json.dumps(ANSWER).encode()))
    # Decrypted, and no request made on it: recorded all the same.
    with context.wrap_socket(tunnel(gw, "allowed.test:443"), server_hostname="api.github.com") as tls:
        pass
    [_, record] = gw.connections(2)
    assert (record["host"], record["refused"], record["bytes_sent"], record["bytes_received"]) == (
        "allowed.test", 0, 0, 0
    )  # fmt: skip
    assert PLACEHOLDER not in gw.audit_path.read_text() + gw.proxy.console()


def tunnel(gw, target: str, login: str | None = None) -> socket.socket:
    """A CONNECT through the proxy (with the proxy `login`, if given), answered 200: its socket."""
    raw = socket.create_connection(("127.0.0.1", gw.proxy.port), timeout=30)
    auth = f"Proxy-Authorization: Basic {base64.b64encode(login.encode()).decode()}\r\n" if login else ""
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and (chunk := raw.recv(4096)):
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return raw


OWN = "agents-own-token-0000000001"
TWICE = {
    "api.github.com": [
        [("Authorization", f"Bearer {PLACEHOLDER}"), ("Authorization", f"Bearer {OWN}")],
        [("authorization", f"Bearer {OWN}"), ("Authorization", f"token {PLACEHOLDER}")],
        [("Authorization", f"Bearer {OWN}"), ("AUTHORIZATION", "Bearer another")],  # no placeholder: two all the same
    ],
    "uploads.example.com": [
        [("X-Upload-Token", UPLOADS_PLACEHOLDER), ("x-upload-token", OWN)],
        [("X-Upload-Token", UPLOADS_PLACEHOLDER), ("X_Upload_Token", OWN)],  # many servers read `_` as `-`
        [("X-Upload-Token", UPLOADS_PLACEHOLDER), ("Authorization", f"Bearer {OWN}"), ("Authorization", "Basic eA==")],
    ],
}
SERVED = {"api.github.com": ("Authorization", f"Bearer {PLACEHOLDER}"),
          "uploads.example.com": ("X-Upload-Token", UPLOADS_PLACEHOLDER)}  # fmt: skip


def test_two_of_a_credentials_header_are_refused(gw, github, bundle) -> None:
    """A server reads one of two (which, Tollgate cannot know): the token put in one, the agent's own
    in the other. Two Authorization headers, or two of a credential's header, are refused 400 on a
    credential's host, as on every host Tollgate governs; nothing is sent, and the refusals counted."""
    github.received.clear()
    before = len(gw.connections())
    context = ssl.create_default_context(cafile=str(bundle))
    answers = {}
    for host, requests in TWICE.items():
        with context.wrap_socket(tunnel(gw, f"{host}:443", LOGIN), server_hostname=host) as tls:
            for fields in [*requests, [SERVED[host]]]:
                head = "".join(f"{name}: {value}\r\n" for name, value in fields)
                tls.sendall(f"GET /twice HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
                answers.setdefault(host, []).append(read_answer(tls))
    for host, got in answers.items():
        assert [(status, error) for status, error, _ in got] == [(400, "bad_request")] * 3 + [(200, None)], host
        assert {json.loads(body)["error"]["type"] for _, _, body in got[:3]} == {"bad_request"}
    assert [(r.sni, r.headers.get("authorization"), r.headers.get("x-upload-token")) for r in github.received] == [
        ("api.github.com", f"Bearer {TOKEN}", None),
        ("uploads.example.com", None, UPLOADS_TOKEN),
    ]
    records = sorted(gw.connections(before + 2)[before:], key=lambda r: r["host"])
    assert [(r["host"], r["brokered"], r["refused"]) for r in records] == [
        ("api.github.com", 1, 3),
        ("uploads.example.com", 1, 3),
    ]
    written = written_down(gw)
    for secret in (PLACEHOLDER, TOKEN, UPLOADS_PLACEHOLDER, UPLOADS_TOKEN):
        assert secret not in written


LLM_CALLS = f"""
import openai
client = openai.OpenAI(api_key="sk-carols-own-unused-0000")
found = []
for content, headers in (("send {PLACEHOLDER} to the repo", {{}}), ("hello", {{"X-GitHub": "{PLACEHOLDER}"}}),
                         ("hello", {{}})):
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": content}}],
                                       extra_headers=headers)
        found.append(200)
    except openai.APIStatusError as e:
        found.append([e.status_code, e.response.headers.get("x-tollgate-error")])
report(found=found)
"""


def test_the_placeholder_in_an_llm_call_is_refused(gw) -> None:
    openai = gw.fakes["openai"]
    openai.received.clear()
    result = gw.run(LLM_CALLS, proxy_url=through_login(gw))
    assert result == {"found": [[403, "content_denied"], [403, "content_denied"], 200]}
    assert len(openai.received) == 1 and PLACEHOLDER not in json.dumps(openai.received[0].headers)
    calls = [r for r in gw.new_audit(3) if r["event"] == "llm_call"]
    assert [(r["client"], r["decision"], r["findings"]) for r in calls] == [
        ("carol", "deny", {"tollgate_keys": 1}),
        ("carol", "deny", {"tollgate_keys": 1}),
        ("carol", "allow", {}),
    ]
    written = written_down(gw)
    assert PLACEHOLDER not in written and TOKEN not in written


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"scope": "repo"}, "egress.credentials.0.scope: unknown key"),
        ({"value": TOKEN}, "egress.credentials.0.value: write the token as ${NAME}"),
        ({"host": "api.anthropic.com"}, "egress.credentials.0.host: api.anthropic.com is anthropic's"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_field(confdir, tmp_path, monkeypatch, change, said) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump({"egress": {"credentials": [{**credentials()[0], **change}]}}))
    ended = run_to_exit(confdir, path)
    assert ended.returncode == 1
    assert said in ended.stderr + ended.stdout
    assert TOKEN not in ended.stderr + ended.stdout and PLACEHOLDER not in ended.stderr + ended.stdout
