"""`./run.sh --capture`: clients that ignore HTTPS_PROXY, caught without their help. A Go program
whose Transport has no proxy calls api.openai.com from a network namespace the test makes; its
hosts file sends that name to an address of the namespace's veth pair, where an iptables redirect
(transparent) or a WireGuard tunnel (wireguard) hands the connection to Tollgate."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.support.netns import TOOLS, Namespace, missing
from tests.support.processes import terminate
from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import wait_listening

from tollgate.records.audit.auditlog import PROCESS_EVENTS

GO_CLIENT = Path(__file__).parents[1] / "support" / "go_client" / "main.go"
RESOLVE = Path(__file__).parents[1] / "support" / "resolve.py"
GITHUB = "api.github.com"
PLACEHOLDER, TOKEN = "ghp_placeholder_the_agent_holds_0003", "ghp_the_real_token_only_Tollgate_has_03"
HOST = "api.openai.com"
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]})
KEY, REAL = "tg-go-capture-1", "sk-real-for-capture"
WIREGUARD = {"wireguard-go": "wireguard-go", "wg": "wireguard-tools"}


def needs(tools: dict[str, str]) -> None:
    if reason := missing(tools):
        pytest.skip(f"capture tests {reason}; ./run.sh test installs the packages when root")


@pytest.fixture(scope="session")
def go_client(tmp_path_factory) -> str:
    """The Go client, built once (Debian's golang-go)."""
    needs({"go": "golang-go"})
    binary = tmp_path_factory.mktemp("go") / "go_client"
    done = subprocess.run(
        ["go", "build", "-o", str(binary), GO_CLIENT.name],
        cwd=GO_CLIENT.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GO111MODULE": "off"},  # one file, no module to look up
    )
    assert done.returncode == 0, f"go build failed: {done.stderr[-800:]}"
    return str(binary)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    needs(TOOLS)
    with Namespace([HOST]) as ns:
        yield ns


@pytest.fixture
def fake(upstream_ca) -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(upstream_ca, provider_answers)
    yield upstream
    upstream.close()


def start_run_sh(
    tmp_path: Path,
    fake: FakeUpstream,
    confdir: Path,
    upstream_ca_pem,
    *capture: str,
    extra: dict | None = None,
    env: dict[str, str] | None = None,
) -> tuple:
    """`./run.sh --capture …` in tmp_path (its tollgate.yaml and audit there, `extra` added to
    its configuration, `env` to its environment): the process, its port. `capture` may end with
    mitmdump's own arguments."""
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": fake.url, "keys": [REAL]}},
                "clients": [{"name": "go-binary", "keys": [KEY]}],
                **(extra or {}),
            }
        )
    )
    port = free_port()
    command = [str(ROOT / "run.sh"), "--listen-port", str(port), *capture, "--set", f"confdir={confdir}"]
    command += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}"]
    with open(tmp_path / "console.log", "w") as console:
        proxy = subprocess.Popen(
            command, cwd=tmp_path, stdout=console, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        wait_listening(port, proxy)
        for spec in [spec for option, spec in itertools.pairwise(capture) if option == "--capture"]:
            wait_capturing(tmp_path / "console.log", spec.partition("@")[2], proxy)
    except BaseException:
        terminate(proxy)
        raise
    return proxy, port


def wait_capturing(console: Path, address: str, proxy: subprocess.Popen, seconds: float = 60) -> None:
    """Until the console says a capture mode listens at `address`: mitmproxy starts each mode's
    server on its own, the proxy's port may listen first, and WireGuard writes its keys (to
    confdir, at its first start) only as it starts."""
    deadline = time.monotonic() + seconds
    line = f" listening at {address}."
    while line not in console.read_text(errors="replace"):
        if time.monotonic() > deadline or proxy.poll() is not None:
            raise AssertionError(f"no{line!r} (run.sh exit {proxy.poll()}):\n{console.read_text(errors='replace')}")
        time.sleep(0.05)


def call_from(ns: Namespace, go_client: str, bundle: Path, *host: str) -> dict:
    """The Go client's call to the provider (`host`: another Host header than its TLS server name)."""
    done = subprocess.run(
        ns.command(
            "env", f"SSL_CERT_FILE={bundle}", go_client, f"https://{HOST}/v1/chat/completions", KEY, CHAT, *host
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def audit_records(path: Path) -> list[dict]:
    """The records of calls and connections written so far (whole lines)."""
    lines = path.read_text().rpartition("\n")[0].splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] not in PROCESS_EVENTS]


def audit_record(path: Path) -> dict:
    """The one call's record (connections' records aside)."""
    deadline = time.monotonic() + 10  # the audit writer writes in batches, moments later
    while time.monotonic() < deadline:
        records = [r for r in audit_records(path) if r["event"] != "connection"]
        if records:
            (record,) = records
            return record
        time.sleep(0.05)
    raise AssertionError(f"no call's record in {path}")


def assert_governed(answer: dict, fake: FakeUpstream, audit: Path) -> None:
    assert (answer["status"], answer["proto"]) == (200, "HTTP/2.0")
    assert json.loads(answer["body"])["usage"]["total_tokens"] == 28
    (seen,) = fake.received
    assert seen.headers["authorization"] == f"Bearer {REAL}"
    record = audit_record(audit)
    assert (record["client"], record["host"], record["endpoint"], record["status"]) == (
        "go-binary",
        HOST,
        "chat.completions",
        200,
    )
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (21, 7, 28)


def test_transparent_capture_governs_a_go_client_that_ignores_https_proxy(
    go_client, namespace, fake, tmp_path, confdir, bundle, upstream_ca_pem
):
    ns, capture = namespace, free_port()
    # The namespace's HTTPS to the provider's address, redirected to the capture port as it arrives.
    ns.iptables("nat", "PREROUTING", "-i", ns.outer, "-p", "tcp", "-d", ns.provider, "--dport", "443",
                "-j", "REDIRECT", "--to-ports", str(capture))  # fmt: skip
    spec = f"transparent@{ns.gateway}:{capture}"
    proxy, _ = start_run_sh(tmp_path, fake, confdir, upstream_ca_pem, "--capture", spec)
    try:
        answer = call_from(ns, go_client, bundle)
    finally:
        terminate(proxy)
    assert_governed(answer, fake, tmp_path / "audit.jsonl")


def test_a_captured_call_whose_host_header_names_another_host_than_its_server_name_is_refused(
    go_client, namespace, fake, tmp_path, confdir, bundle, upstream_ca_pem
):
    """The TLS server name is the provider's, the Host header (:authority) another host's: which one
    the call is for cannot be told, and it goes to neither."""
    ns, capture = namespace, free_port()
    ns.iptables("nat", "PREROUTING", "-i", ns.outer, "-p", "tcp", "-d", ns.provider, "--dport", "443",
                "-j", "REDIRECT", "--to-ports", str(capture))  # fmt: skip
    proxy, _ = start_run_sh(
        tmp_path, fake, confdir, upstream_ca_pem, "--capture", f"transparent@{ns.gateway}:{capture}"
    )
    try:
        answer = call_from(ns, go_client, bundle, "attacker.example")
    finally:
        terminate(proxy)
    assert (answer["status"], json.loads(answer["body"])["error"]["code"]) == (421, "misdirected")
    assert fake.received == []
    record = audit_record(tmp_path / "audit.jsonl")
    assert (record["host"], record["decision"], record["deny_reasons"], record["status"]) == (
        HOST,
        "deny",
        ["misdirected"],
        421,
    )
    assert record["error"] == f"misdirected: TLS server name {HOST}, Host attacker.example"


def test_transparent_capture_decides_each_connection_by_its_server_name(
    go_client, fake, tmp_path, confdir, bundle, upstream_ca_pem
):
    """A captured connection has no CONNECT: its TLS server name is decided as a CONNECT's host
    would be. Refused, it is closed before anything is relayed, and recorded; the provider's host
    beside it is still governed."""
    needs(TOOLS)
    paste = "paste.example.com"
    with Namespace([HOST, paste]) as ns:
        capture = free_port()
        ns.iptables("nat", "PREROUTING", "-i", ns.outer, "-p", "tcp", "-d", ns.provider, "--dport", "443",
                    "-j", "REDIRECT", "--to-ports", str(capture))  # fmt: skip
        proxy, _ = start_run_sh(
            tmp_path, fake, confdir, upstream_ca_pem, "--capture", f"transparent@{ns.gateway}:{capture}",
            extra={"egress": {"deny": [paste]}},
        )  # fmt: skip
        try:
            refused = subprocess.run(
                ns.command(
                    "env", f"SSL_CERT_FILE={bundle}", go_client, f"https://{paste}/v1/chat/completions", KEY, CHAT
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
            answer = call_from(ns, go_client, bundle)
        finally:
            terminate(proxy)
    assert refused.returncode != 0 and refused.stdout == "", refused.stderr  # closed: no answer at all
    assert_governed(answer, fake, tmp_path / "audit.jsonl")
    [record] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "connection"]
    assert (record["host"], record["port"], record["address"], record["decision"]) == (paste, 443, ns.provider, "deny")
    assert record["deny_reasons"] == [f"{paste} matches egress.deny {paste!r}"]
    assert (record["bytes_sent"], record["bytes_received"]) == (0, 0)


def test_a_brokered_credential_is_put_in_on_a_captured_connection(
    go_client, upstream_ca, fake, tmp_path, confdir, bundle, upstream_ca_pem
):
    """A credential's host reached without a CONNECT: its connection, captured, is decrypted by its
    server name as a CONNECT's would be, the placeholder replaced by the token on the way."""
    needs(TOOLS)
    github = FakeUpstream(upstream_ca, lambda r: Reply(200, {"login": "octocat"}), names=(GITHUB,))
    credential = {"host": GITHUB, "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"}
    try:
        with Namespace([HOST, GITHUB]) as ns:
            capture = free_port()
            ns.iptables("nat", "PREROUTING", "-i", ns.outer, "-p", "tcp", "-d", ns.provider, "--dport", "443",
                        "-j", "REDIRECT", "--to-ports", str(capture))  # fmt: skip
            # Tollgate connects to the credential's host by its name (not to the address the client
            # dialled), which the stand-in for DNS sends to the fake.
            resolve = {"TOLLGATE_TEST_RESOLVE": json.dumps({GITHUB: github.port}), "GITHUB_TOKEN": TOKEN}
            proxy, _ = start_run_sh(
                tmp_path, fake, confdir, upstream_ca_pem, "--capture", f"transparent@{ns.gateway}:{capture}",
                "-s", str(RESOLVE), extra={"egress": {"credentials": [credential]}}, env=resolve,
            )  # fmt: skip
            try:
                done = subprocess.run(
                    ns.command(
                        "env", f"SSL_CERT_FILE={bundle}", go_client, f"https://{GITHUB}/user", PLACEHOLDER, "{}"
                    ),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            finally:
                terminate(proxy)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert (answer["status"], json.loads(answer["body"])) == (200, {"login": "octocat"})
        (seen,) = github.received
        assert (seen.headers["host"], seen.headers["authorization"]) == (GITHUB, f"Bearer {TOKEN}")
        [record] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "connection"]
        assert (record["host"], record["brokered"], record["refused"], record["decision"]) == (GITHUB, 1, 0, "allow")
        written = (tmp_path / "audit.jsonl").read_text() + (tmp_path / "console.log").read_text()
        assert PLACEHOLDER not in written and TOKEN not in written
    finally:
        github.close()


def test_wireguard_capture_governs_a_go_client_that_ignores_https_proxy(
    go_client, namespace, fake, tmp_path, confdir, bundle, upstream_ca_pem
):
    needs(WIREGUARD)
    ns, port = namespace, free_udp_port()
    spec = f"wireguard@{ns.gateway}:{port}"
    proxy, _ = start_run_sh(tmp_path, fake, confdir, upstream_ca_pem, "--capture", spec)
    tunnel = None
    try:
        keys = json.loads((confdir / "wireguard.conf").read_text())  # mitmproxy's, made at its first start
        tunnel = wireguard_peer(ns, keys, f"{ns.gateway}:{port}", tmp_path)
        answer = call_from(ns, go_client, bundle)
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=10)
        terminate(proxy)
    assert_governed(answer, fake, tmp_path / "audit.jsonl")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wireguard_peer(ns: Namespace, keys: dict, endpoint: str, directory: Path) -> subprocess.Popen:
    """wireguard-go in the namespace as the peer mitmproxy's configuration describes (its address
    10.0.0.1), tunnelling only the provider's address: its process."""
    interface = f"tgw{ns.name[2:]}"
    tunnel = subprocess.Popen(
        ns.command("wireguard-go", "-f", interface), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while ns.exec("ip", "link", "show", interface, check=False).returncode != 0:
        assert time.monotonic() < deadline and tunnel.poll() is None, "wireguard-go made no interface"
        time.sleep(0.05)
    server = subprocess.run(["wg", "pubkey"], input=keys["server_key"], capture_output=True, text=True, timeout=10)
    private = directory / "peer.key"
    private.touch(mode=0o600)
    private.write_text(keys["client_key"])
    ns.exec("wg", "set", interface, "private-key", str(private), "peer", server.stdout.strip(), "endpoint", endpoint,
            "allowed-ips", f"{ns.provider}/32")  # fmt: skip
    ns.exec("ip", "addr", "add", "10.0.0.1/32", "dev", interface)
    ns.exec("ip", "link", "set", interface, "up")
    ns.exec("ip", "route", "add", f"{ns.provider}/32", "dev", interface, "src", "10.0.0.1")
    return tunnel


def test_a_capture_that_cannot_start_exits_at_once_saying_why(tmp_path, confdir):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [
                str(ROOT / "run.sh"),
                "--listen-port",
                str(free_port()),
                "--capture",
                f"transparent@127.0.0.1:{port}",
                "--set",
                f"confdir={confdir}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert time.monotonic() - started < 20
    assert f"Transparent Proxy failed to listen on 127.0.0.1:{port}" in done.stdout
    assert "address already in use" in done.stdout


@pytest.mark.parametrize("mode", ["regular", "transparent@", "local@8080", "socks5"])
def test_run_sh_refuses_a_capture_mode_it_does_not_offer(tmp_path, mode):
    done = subprocess.run(
        [str(ROOT / "run.sh"), "--capture", mode], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert f"--capture {mode}: expected transparent[@[HOST:]PORT], wireguard[@[HOST:]PORT] or local[:PROCESS]" in (
        done.stderr
    )


def test_run_sh_capture_keeps_the_proxy_beside_the_capture_modes():
    def modes(*args: str) -> list[str]:
        done = subprocess.run(
            [
                "bash",
                "-c",
                f'source "{ROOT}/run.sh" && LISTEN_PORT=9090 && capture_args "$@" && echo "${{CAPTURE[*]}}"',
                "-",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert modes("--capture", "transparent") == ["--mode", "regular", "--mode", "transparent@9091"]
    assert modes("--capture=wireguard", "--capture", "local:codex") == [
        "--mode", "regular", "--mode", "wireguard@51820", "--mode", "local:codex",
    ]  # fmt: skip
    assert modes("--mode", "socks5", "--capture", "wireguard@0.0.0.0:5182") == ["--mode", "wireguard@0.0.0.0:5182"]
    assert modes("-p", "1") == []
