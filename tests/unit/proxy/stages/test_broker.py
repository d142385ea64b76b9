"""Broker's connection records: one per client connection that reached a credential's host, never
counted among the process's calls."""

from __future__ import annotations

from mitmproxy.test import tflow, tutils

from tollgate.core.config import parse_config
from tollgate.proxy.stages.broker import Broker
from tollgate.records.auditlog import AuditLog, started_record

from .conftest import all_audit_lines, configured

PLACEHOLDER = "ghp_placeholder_the_agent_holds_0001"
CREDENTIALS = {
    "egress": {
        "credentials": [
            {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"}
        ]
    }
}


def test_a_brokered_connection_is_recorded_and_not_counted_as_a_call(audit_log: AuditLog, audit_path) -> None:
    audit_log.begin(started_record(["127.0.0.1:8080"], None))
    broker = Broker(configured(parse_config(CREDENTIALS, {"GITHUB_TOKEN": "ghp_real_token_0001"}), audit=audit_log))
    flow = tflow.tflow(req=tutils.treq(host="api.github.com", port=443, scheme=b"https", path=b"/user"))
    flow.request.headers["authorization"] = f"Bearer {PLACEHOLDER}"
    broker.requestheaders(flow)
    assert flow.request.headers["authorization"] == "Bearer ghp_real_token_0001"
    broker.client_disconnected(flow.client_conn)
    audit_log.stop()
    records = all_audit_lines(audit_path)
    (connection,) = [r for r in records if r["event"] == "connection"]
    (stopped,) = [r for r in records if r["event"] == "tollgate_stopped"]
    assert (connection["host"], connection["brokered"], connection["refused"]) == ("api.github.com", 1, 0)
    assert stopped["calls"] == 0
