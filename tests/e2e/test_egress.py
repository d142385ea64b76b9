"""Egress: every CONNECT a client makes through Tollgate is decided before anything is relayed
(`egress.deny`, private addresses, the policy's `data.tollgate.egress.deny`, `egress.default`),
refused with 403 egress_denied, and recorded as a `connection` when the tunnel closes. The tunnels
go to servers of the test's own on 127.0.0.1, raw TCP and TLS, which Tollgate never reads."""

from __future__ import annotations

import socket
import ssl
import threading

import certifi
import pytest
import trustme
from tests.support.fake_upstream import serving_text
from tests.support.raw import get_through_tunnel, tunnel
from tests.support.tcp import TcpServer

ALICE = "tg-alice-EGRESS-0001"
EGRESS_POLICY = """package tollgate.egress

deny contains sprintf("%s is not for agents", [input.service]) if input.service in {"huggingface", "replicate"}

deny contains "no model hub" if input.service == "huggingface"
"""
CALL_POLICY = """package tollgate

deny contains "never" if input.model == "forbidden-model"
"""


class Sink(TcpServer):
    """A plain TCP server on 127.0.0.1: reads `expect` bytes from each connection, answers
    `answer`, and closes. It counts what it received."""

    def __init__(self, expect: int, answer: bytes) -> None:
        super().__init__(threaded=False, poll=0.2)
        self.expect, self.answer = expect, answer
        self.received: list[int] = []
        self.start()

    def serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            conn.settimeout(10)
            got = 0
            while got < self.expect:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            self.received.append(got)
            conn.sendall(self.answer)


def refused(proxy_port: int, target: str) -> str:
    """A CONNECT that must be refused: the one-line reason it is given."""
    raw, answer = tunnel(proxy_port, target)
    raw.close()
    assert answer.startswith(b"HTTP/1.1 403"), answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nX-Tollgate-Error: egress_denied\r\n" in head, head
    text = body.decode()
    assert (
        b"\r\ncontent-length: " in head.lower()
        and text.count("\n") == 1
        and text.startswith("Tollgate refused this connection: ")
    ), text
    return text.removeprefix("Tollgate refused this connection: ").rstrip("\n").removesuffix(".")


def through_tunnel(proxy_port: int, port: int, *pieces: bytes) -> bytes:
    """`pieces` sent to 127.0.0.1:`port` through a tunnel the proxy opens: all that comes back."""
    raw, head = tunnel(proxy_port, f"127.0.0.1:{port}")
    with raw:
        assert head.startswith(b"HTTP/1.1 200"), head
        for piece in pieces:
            raw.sendall(piece)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    return answer


@pytest.fixture(scope="module")
def sink():
    server = Sink(expect=3000, answer=b"y" * 12345)
    yield server
    server.close()


@pytest.fixture(scope="module")
def other_ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def own(other_ca):
    """A TLS server of the test's own, with a certificate of a CA Tollgate does not know."""
    with serving_text(other_ca, b"not an llm") as server:
        yield server


@pytest.fixture(scope="module")
def gw(start_gateway):
    """`default: allow`, everything recorded, loopback allowed by name for the test's servers."""
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"]}},
            "egress": {"allow": ["127.0.0.1"], "deny": ["*.pastebin.com", "pastebin.com"], "record": "all"},
        },
        providers=("openai",),
    )


def test_a_raw_tunnel_is_relayed_and_recorded_with_its_bytes_each_way(gw, sink):
    before = len(gw.connections())
    answer = through_tunnel(gw.proxy.port, sink.port, b"x" * 1000, b"x" * 2000)
    assert answer == b"y" * 12345 and sink.received[-1] == 3000
    [record] = [r for r in gw.connections(before + 1)[before:] if r["event"] == "connection"]
    assert (record["host"], record["port"], record["address"], record["decision"]) == (
        "127.0.0.1",
        sink.port,
        "127.0.0.1",  # an IP address: allowed by name, its address is itself
        "allow",
    )
    assert (record["bytes_sent"], record["bytes_received"], record["error"]) == (3000, 12345, None)
    assert record["source"].startswith("127.0.0.1:") and record["client"] is None
    assert record["service"] is None and record["deny_reasons"] == []
    assert isinstance(record["duration_ms"], float) and record["chain"]


def test_a_tunnel_closed_before_its_first_byte_is_recorded_too(gw, sink):
    before = len(gw.connections())
    raw, head = tunnel(gw.proxy.port, f"127.0.0.1:{sink.port}")
    raw.close()
    assert head.startswith(b"HTTP/1.1 200")
    [record] = gw.connections(before + 1)[before:]
    assert (record["port"], record["decision"], record["bytes_sent"], record["bytes_received"]) == (
        sink.port,
        "allow",
        0,
        0,
    )


def test_a_tls_tunnel_shows_the_servers_own_certificate(gw, own, other_ca):
    before = len(gw.connections())
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=other_ca.cert_pem.bytes().decode())
    raw, head = tunnel(gw.proxy.port, f"127.0.0.1:{own.port}")
    with raw:
        assert head.startswith(b"HTTP/1.1 200")
        issuer, answer = get_through_tunnel(raw, context)
    assert "mitmproxy" not in str(issuer) and answer.endswith(b"not an llm")
    [record] = [r for r in gw.connections(before + 1)[before:] if r["event"] == "connection"]
    # The TLS records each way, handshake included: more than the request and answer themselves.
    assert record["bytes_sent"] > 60 and record["bytes_received"] > len(b"not an llm") + 500


@pytest.mark.parametrize("host", ["paste.pastebin.com", "PASTEBIN.com."])
def test_a_deny_glob_refuses_the_connect(gw, host):
    before = len(gw.connections())
    reason = refused(gw.proxy.port, f"{host}:443")
    name = host.lower().rstrip(".")
    glob = "pastebin.com" if name == "pastebin.com" else "*.pastebin.com"
    assert reason == f"{name} matches egress.deny {glob!r}"
    [record] = gw.connections(before + 1)[before:]
    assert (record["event"], record["host"], record["decision"], record["deny_reasons"]) == (
        "connection",
        name,
        "deny",
        [reason],
    )
    assert (record["bytes_sent"], record["bytes_received"], record["address"]) == (0, 0, None)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("169.254.169.254:80", "169.254.169.254 is a link-local address (egress.private_addresses: deny)"),
        ("10.1.2.3:443", "10.1.2.3 is a private address (egress.private_addresses: deny)"),
        ("[fd00::1]:443", "fd00::1 is a unique local address (egress.private_addresses: deny)"),
        ("[::ffff:127.0.0.2]:443", "::ffff:127.0.0.2 is a loopback address (egress.private_addresses: deny)"),
        # An IPv4 address inside an IPv6 one: NAT64, translated, compatible; local-use NAT64 and Teredo whole.
        ("[64:ff9b::a9fe:a9fe]:80", "64:ff9b::a9fe:a9fe is a link-local address (egress.private_addresses: deny)"),
        ("[::ffff:0:a9fe:a9fe]:80", "::ffff:0:a9fe:a9fe is a link-local address (egress.private_addresses: deny)"),
        ("[::a9fe:a9fe]:80", "::a9fe:a9fe is a link-local address (egress.private_addresses: deny)"),
        ("[::7f00:1]:443", "::7f00:1 is a loopback address (egress.private_addresses: deny)"),
        (
            "[64:ff9b:1::a9fe:a9fe]:80",
            "64:ff9b:1::a9fe:a9fe is a local-use NAT64 address (egress.private_addresses: deny)",
        ),
        ("[2001:0:4136:e378::1]:443", "2001:0:4136:e378::1 is a Teredo address (egress.private_addresses: deny)"),
    ],
)
def test_a_private_address_is_refused(start_gateway, gw, target, reason):
    before = len(gw.connections())
    assert refused(gw.proxy.port, target) == reason
    [record] = gw.connections(before + 1)[before:]
    assert record["decision"] == "deny" and record["address"] == reason.split(" ")[0]


def test_a_name_that_resolves_to_loopback_is_refused(gw):
    """`localhost` is no address that `allow` names: it is resolved, and its address decides."""
    before = len(gw.connections())
    reason = refused(gw.proxy.port, "localhost:22")
    assert reason in (
        "localhost resolves to 127.0.0.1, which is a loopback address (egress.private_addresses: deny)",
        "localhost resolves to ::1, which is a loopback address (egress.private_addresses: deny)",
    )
    [record] = gw.connections(before + 1)[before:]
    assert record["address"] in ("127.0.0.1", "::1") and record["host"] == "localhost"


@pytest.fixture(scope="module")
def gw_deny(start_gateway, tmp_path_factory):
    """`default: deny` for agents: the providers, the MCP servers and `allow` alone; the policy
    refuses model hubs; only AI services and refusals recorded (`record: ai`, the default)."""
    policy = tmp_path_factory.mktemp("egress-policy") / "egress.rego"
    policy.write_text(EGRESS_POLICY)
    calls = policy.with_name("calls.rego")
    calls.write_text(CALL_POLICY)
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-EGRESS"]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "policy": {"rego": [str(policy), str(calls)]},
            "egress": {
                "default": "deny",
                "allow": ["127.0.0.1", "huggingface.co", "*.cursor.sh"],
                "services": {"notes_ai": ["127.0.0.1"]},
            },
        },
        providers=("openai",),
    )


def test_default_deny_refuses_a_host_not_allowed(gw_deny):
    before = len(gw_deny.connections())
    assert refused(gw_deny.proxy.port, "example.org:443") == "example.org is not in egress.allow (egress.default: deny)"
    [record] = gw_deny.connections(before + 1)[before:]
    assert (record["event"], record["decision"], record["service"]) == ("connection", "deny", None)


def test_default_deny_lets_a_providers_host_through_and_reads_its_calls(gw_deny):
    result = gw_deny.run(f"""
        import openai
        r = openai.OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        report(model=r.model)
    """)
    assert "model" in result, result
    [record] = gw_deny.new_audit(1)
    assert (record["event"], record["client"], record["decision"]) == ("llm_call", "alice", "allow")
    assert len(gw_deny.fakes["openai"].received) == 1


def test_default_deny_lets_an_allowed_host_through_recorded_as_its_service(gw_deny, sink):
    before = len(gw_deny.connections())
    through_tunnel(gw_deny.proxy.port, sink.port, b"z" * 3000)
    [record] = gw_deny.connections(before + 1)[before:]
    assert (record["service"], record["category"], record["bytes_sent"], record["bytes_received"]) == (
        "notes_ai",
        None,
        3000,
        12345,
    )


def test_the_policy_refuses_a_connection_by_its_service(gw_deny):
    """huggingface.co is allowed by name, so not resolved: the policy decides it, on its service."""
    before = len(gw_deny.connections())
    reason = refused(gw_deny.proxy.port, "huggingface.co:443")
    assert reason == "egress policy: huggingface is not for agents; no model hub"
    [record] = gw_deny.connections(before + 1)[before:]
    assert (record["service"], record["category"], record["decision"]) == ("huggingface", "ai_models", "deny")
    assert record["deny_reasons"] == ["huggingface is not for agents", "no model hub"]


def test_the_call_policy_and_the_egress_policy_are_apart(gw_deny):
    """The call rules never decide a connection; the egress rules never a call."""
    result = gw_deny.run(f"""
        import openai
        try:
            openai.OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
                model="forbidden-model", messages=[{{"role": "user", "content": "hi"}}])
        except openai.APIStatusError as e:
            report(status=e.status_code)
    """)
    assert result == {"status": 403}


def test_a_connection_not_to_an_ai_service_is_not_recorded_by_default(start_gateway, sink):
    gw = start_gateway({"egress": {"allow": ["127.0.0.1"]}}, providers=())
    through_tunnel(gw.proxy.port, sink.port, b"z" * 3000)
    assert refused(gw.proxy.port, "10.9.9.9:443").startswith("10.9.9.9 is a private address")
    [record] = gw.connections(1)
    assert (record["host"], record["decision"]) == ("10.9.9.9", "deny")  # the tunnel to 127.0.0.1: not recorded


def test_a_configured_upstream_is_reached_though_private_and_no_other_port_of_its_host(start_gateway, sink):
    """The providers' upstreams are this machine's (the fakes on 127.0.0.1): a CONNECT to one is
    not refused for its address though `allow` does not name it; another port of 127.0.0.1 is."""
    gw = start_gateway(lambda urls: {"providers": {"openai": {"upstream": urls["openai"]}}}, providers=("openai",))
    raw, head = tunnel(gw.proxy.port, f"127.0.0.1:{gw.fakes['openai'].port}")
    raw.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    reason = refused(gw.proxy.port, f"127.0.0.1:{sink.port}")
    assert reason == "127.0.0.1 is a loopback address (egress.private_addresses: deny)"


def plain_get(proxy_port: int, url: str) -> bytes:
    """`GET url` sent to the proxy as plain HTTP (absolute form, no CONNECT): the whole answer."""
    host = url.split("/")[2]
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as raw:
        raw.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    return answer


def test_a_plain_http_request_to_the_metadata_address_is_refused(gw):
    before = len(gw.connections())
    answer = plain_get(gw.proxy.port, "http://169.254.169.254/latest/meta-data/iam/security-credentials/")
    assert answer.startswith(b"HTTP/1.1 403") and b"\r\nX-Tollgate-Error: egress_denied\r\n" in answer, answer
    assert answer.endswith(b"169.254.169.254 is a link-local address (egress.private_addresses: deny).\n")
    [record] = gw.connections(before + 1)[before:]
    assert (record["host"], record["port"], record["decision"]) == ("169.254.169.254", 80, "deny")


def test_a_plain_http_request_allowed_is_relayed_and_recorded_with_its_bodies(gw):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"w" * 5000)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = len(gw.connections())
        answer = plain_get(gw.proxy.port, f"http://127.0.0.1:{server.server_port}/file")
        assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"w" * 5000)  # http.server's version
        [record] = gw.connections(before + 1)[before:]
        assert (record["host"], record["decision"], record["bytes_sent"], record["bytes_received"]) == (
            "127.0.0.1",
            "allow",
            0,
            5000,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_a_connection_that_cannot_be_recorded_is_not_made(start_gateway, tmp_path_factory, sink):
    """While the audit cannot be written, a connection to record is refused 503 audit_unavailable
    before anything is relayed, as a call is; one not recorded (`record: ai`, no AI service) goes."""
    import os
    import time

    directory = tmp_path_factory.mktemp("egress-audit")
    link = directory / "audit.jsonl"
    link.symlink_to(directory / "first.jsonl")
    gw = start_gateway(
        {"audit": {"path": str(link)}, "egress": {"allow": ["127.0.0.1"], "services": {"notes_ai": ["127.0.0.1"]}}},
        providers=(),
    )
    gw.wait_console("anonymous callers")  # the configuration loaded
    deadline = time.monotonic() + 15
    while not (directory / "first.jsonl").exists() or not (directory / "first.jsonl").read_text():
        assert time.monotonic() < deadline, "no started record"
        time.sleep(0.05)
    new = link.with_name("audit.jsonl.new")
    new.symlink_to("/dev/full")  # the disk is full: every write fails
    os.replace(new, link)
    raw, head = tunnel(gw.proxy.port, f"127.0.0.1:{sink.port}")  # served: nothing has failed yet
    raw.close()
    assert head.startswith(b"HTTP/1.1 200")
    while "cannot write the audit to" not in gw.proxy.console():
        assert time.monotonic() < deadline, gw.proxy.console()
        time.sleep(0.05)
    raw, head = tunnel(gw.proxy.port, f"127.0.0.1:{sink.port}")
    raw.close()
    assert head.startswith(b"HTTP/1.1 503") and b"\r\nX-Tollgate-Error: audit_unavailable\r\n" in head, head


@pytest.mark.parametrize("url", ["http://example.org/", "https://example.org/", "https://paste.pastebin.com/raw/1"])
def test_a_request_sent_to_the_proxy_in_cleartext_is_decided_as_a_connect(gw_deny, url):
    """`default: deny` and the deny globs hold for a request sent to the proxy itself, not through
    CONNECT: a plain `http://` URL, and an `https://` one the proxy would fetch over TLS."""
    before = len(gw_deny.connections())
    answer = plain_get(gw_deny.proxy.port, url)
    assert answer.startswith(b"HTTP/1.1 403") and b"\r\nX-Tollgate-Error: egress_denied\r\n" in answer, answer
    host = url.split("/")[2]
    assert answer.endswith(f"{host} is not in egress.allow (egress.default: deny).\n".encode())
    [record] = gw_deny.connections(before + 1)[before:]
    assert (record["host"], record["port"], record["decision"]) == (host, 80 if url[4] == ":" else 443, "deny")


@pytest.mark.parametrize("target", ["[zz]:443", "[1.2.3.4]:443"])
def test_a_target_that_is_no_host_is_a_bad_request(gw, target):
    before = len(gw.connections())
    raw, answer = tunnel(gw.proxy.port, target)
    raw.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"\r\nX-Tollgate-Error: bad_request\r\n" in head, answer
    assert body.startswith(b"Tollgate refused this connection: ") and b"is no host" in body, body
    [record] = gw.connections(before + 1)[before:]
    assert (record["decision"], record["bytes_sent"]) == ("deny", 0)


def test_single_label_names_and_globs_are_allowed_and_denied(start_gateway, sink):
    """`localhost`, an intranet name and a glob of one label: no other owner's domain is opened."""
    gw = start_gateway(
        {"egress": {"default": "deny", "allow": ["loc*host", "wiki"], "deny": ["intra*"], "record": "all",
                    "private_addresses": "allow"}},
        providers=(),
    )  # fmt: skip
    raw, head = tunnel(gw.proxy.port, f"localhost:{sink.port}")
    raw.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert refused(gw.proxy.port, "intranet:443") == "intranet matches egress.deny 'intra*'"
    assert refused(gw.proxy.port, "localhostx.example.com:443") == (
        "localhostx.example.com is not in egress.allow (egress.default: deny)"
    )


def test_a_providers_connection_is_recorded_as_its_calls_or_as_a_connection_when_none(gw, bundle):
    """Decrypted: with a call on it, its call's record alone; with none, a `connection` record."""
    before = len(gw.connections())
    raw, head = tunnel(gw.proxy.port, "api.openai.com:443")
    assert head.startswith(b"HTTP/1.1 200"), head
    with ssl.create_default_context(cafile=str(bundle)).wrap_socket(raw, server_hostname="api.openai.com"):
        pass
    [record] = gw.connections(before + 1)[before:]
    assert (record["host"], record["port"], record["decision"], record["bytes_sent"], record["refused"]) == (
        "api.openai.com",
        443,
        "allow",
        0,
        0,
    )
    result = gw.run("""
        import openai
        r = openai.OpenAI(api_key="sk-own-EGRESS", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        report(model=r.model)
    """)
    assert "model" in result, result
    [call] = gw.new_audit(1)
    # A refused CONNECT's record, written at once, after the client's connection closed: none between.
    before = len(gw.connections())
    refused(gw.proxy.port, "pastebin.com:443")
    gw.connections(before + 1)
    records = gw.audit_records()
    since = records[records.index(call) :]
    assert [(r["event"], r.get("host")) for r in since] == [
        ("llm_call", "api.openai.com"),
        ("connection", "pastebin.com"),
    ]


def test_a_client_that_does_not_trust_the_ca_is_told_in_its_record_and_on_the_console(gw):
    """A first user's likeliest mistake: HTTPS_PROXY set, the CA not trusted. The SDK says only
    "Connection error"; the record says why nothing went through, the console what to do, once."""
    before = len(gw.connections())
    for _ in range(2):
        raw, head = tunnel(gw.proxy.port, "api.openai.com:443")
        assert head.startswith(b"HTTP/1.1 200"), head
        with pytest.raises(ssl.SSLCertVerificationError), raw:
            ssl.create_default_context(cafile=certifi.where()).wrap_socket(raw, server_hostname="api.openai.com")
    records = gw.connections(before + 2)[before:]
    for record in records:
        assert (record["host"], record["decision"], record["bytes_sent"]) == ("api.openai.com", "allow", 0)
        assert record["error"].startswith(
            "client TLS handshake failed: The client does not trust the proxy's certificate for api.openai.com"
        ), record["error"]
    console = gw.proxy.console()
    assert console.count("Tollgate: a client does not trust Tollgate's CA (") == 1, console
    assert 'In its shell, eval "$(./run.sh env)" sets its CA bundle' in console
