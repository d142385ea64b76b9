"""Broker's connection records: one per client connection that reached a credential's host, never
counted among the process's calls; a request that names another host than the credential's gets
no token (421 `misdirected`)."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils

from tollgate.configuration.config import parse_config
from tollgate.proxy.stages.egress.broker import Broker
from tollgate.records.audit.auditlog import AuditLog, started_record

from ..conftest import all_audit_lines, configured

PLACEHOLDER = "ghp_placeholder_the_agent_holds_0001"
CREDENTIALS = {
    "egress": {
        "credentials": [
            {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"}
        ]
    }
}


def to_github(sni: str | None = "api.github.com", host_header: str | None = None) -> http.HTTPFlow:
    """A request in a tunnel to api.github.com with the placeholder, its client's TLS server name
    `sni`, and a Host header where one is given."""
    flow = tflow.tflow(req=tutils.treq(host="api.github.com", port=443, scheme=b"https", path=b"/user"))
    flow.client_conn.sni = sni
    flow.request.headers["authorization"] = f"Bearer {PLACEHOLDER}"
    if host_header is not None:
        flow.request.headers["host"] = host_header
    return flow


def test_a_brokered_connection_is_recorded_and_not_counted_as_a_call(audit_log: AuditLog, audit_path) -> None:
    audit_log.begin(started_record(["127.0.0.1:8080"], None))
    broker = Broker(configured(parse_config(CREDENTIALS, {"GITHUB_TOKEN": "ghp_real_token_0001"}), audit=audit_log))
    flow = to_github()
    broker.requestheaders(flow)
    assert flow.request.headers["authorization"] == "Bearer ghp_real_token_0001"
    broker.client_disconnected(flow.client_conn)
    audit_log.stop()
    records = all_audit_lines(audit_path)
    (connection,) = [r for r in records if r["event"] == "connection"]
    (stopped,) = [r for r in records if r["event"] == "tollgate_stopped"]
    assert (connection["host"], connection["brokered"], connection["refused"]) == ("api.github.com", 1, 0)
    assert stopped["calls"] == 0


@pytest.mark.parametrize(
    ("mode", "sni", "host_header", "named"),
    [
        ("regular", "evil.example", None, "connection to api.github.com, TLS server name evil.example"),
        ("regular", "evil.example", "evil.example",
         "connection to api.github.com, TLS server name evil.example, Host evil.example"),
        ("regular", "api.github.com", "evil.example",
         "connection to api.github.com, TLS server name api.github.com, Host evil.example"),
        # Captured: no CONNECT; the request was named by its Host header (`name_captured_host`).
        ("wireguard", "evil.example", "api.github.com", "TLS server name evil.example, Host api.github.com"),
        # A Host Tollgate cannot read as a host, which a lenient server may read as evil.example.
        ("regular", "api.github.com", "evil.example:", "Host evil.example:, which names no host"),
        ("regular", "api.github.com", "user@evil.example", "Host user@evil.example, which names no host"),
    ],
)  # fmt: skip
def test_a_request_naming_another_host_gets_no_token(
    audit_log: AuditLog, audit_path, mode: str, sni: str, host_header: str | None, named: str
) -> None:
    audit_log.begin(started_record(["127.0.0.1:8080"], None))
    broker = Broker(configured(parse_config(CREDENTIALS, {"GITHUB_TOKEN": "ghp_real_token_0001"}), audit=audit_log))
    flow = to_github(sni, host_header)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    broker.requestheaders(flow)
    assert flow.response is not None
    assert (flow.response.status_code, flow.response.headers["x-tollgate-error"]) == (421, "misdirected")
    assert json.loads(flow.response.content)["error"]["type"] == "misdirected"
    assert flow.request.headers["authorization"] == "Bearer [PLACEHOLDER]"
    broker.client_disconnected(flow.client_conn)
    audit_log.stop()
    (connection,) = [r for r in all_audit_lines(audit_path) if r["event"] == "connection"]
    assert (connection["host"], connection["brokered"], connection["refused"], connection["error"]) == (
        "api.github.com",
        0,
        1,
        f"misdirected: {named}",
    )
