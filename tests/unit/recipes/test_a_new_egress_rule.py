"""A kind of egress rule added as the recipe in docs/architecture.md says: its setting in
`EgressConfig` and its check in `Egress`, called where the order in `Egress.decide` puts it (here
by name, in `by_name`, before any lookup), giving a `EgressVerdict` with its reason. The test's subclasses
stand for those two edits. The stage (`EgressGate`) does not change: a CONNECT it refuses by the new
rule is answered 403 `egress_denied` with the rule's reason and recorded; one it lets through goes
to the address decided."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from mitmproxy import http
from mitmproxy.test import tflow

from tollgate.configuration.config import Config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.egress.egress import PASS, Egress, EgressVerdict
from tollgate.governance.egress.egress_settings import EgressConfig
from tollgate.proxy.stages.egress.egress_gate import EgressGate
from tollgate.proxy.state import Shared
from tollgate.records.audit.auditlog import AuditLog

from .conftest import records

PUBLIC = "93.184.215.14"  # what the test's resolver answers; never connected to


class PortsConfig(EgressConfig):
    """`egress.ports`: the ports a connection may go to (none: any)."""

    ports: tuple[int, ...] = ()


class PortsEgress(Egress):
    """`Egress` with the new rule's check, by name: a port `egress.ports` does not name is refused."""

    def __init__(self, config: PortsConfig, *args: object, **kwargs: object) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[arg-type]
        self.ports = frozenset(config.ports)

    def by_name(self, host: str, port: int) -> EgressVerdict:
        verdict = super().by_name(host, port)
        if verdict.allowed and self.ports and port not in self.ports:
            return EgressVerdict.deny(f"{host}:{port} is not on a port of egress.ports")
        return verdict if not verdict.allowed else PASS


def with_ports(ports: tuple[int, ...], audit: AuditLog) -> Shared:
    """A configuration whose egress has the new rule (`egress: {ports: …, record: all}`)."""
    loaded = Loaded.build(Config())
    built = loaded.egress
    egress = PortsEgress(PortsConfig(ports=ports, record="all"), built.governed, built.upstreams, built.providers_host)
    shared = Shared()
    shared.apply(replace(loaded, egress=egress), audit)
    return shared


def connect(host: str, port: int) -> http.HTTPFlow:
    """A client's CONNECT as mitmproxy hands it to `http_connect`."""
    flow = tflow.tflow()
    request = http.Request(
        host, port, b"CONNECT", b"", f"{host}:{port}".encode(), b"", b"HTTP/1.1", http.Headers(), b"", None, 0, 0
    )
    flow.request = request
    return flow


async def public(host: str, port: int) -> str:
    return PUBLIC


def asked(host: str, port: int, audit: AuditLog) -> http.HTTPFlow:
    """A CONNECT to `host:port`, decided by an `EgressGate` whose egress allows port 443 alone and
    resolves every host to a public address."""
    gate = EgressGate(with_ports((443,), audit))
    gate.resolve = public
    flow = connect(host, port)
    pending = gate.http_connect(flow)
    if pending is not None:
        asyncio.run(_awaited(pending))
    return flow


async def _awaited(pending: object) -> None:
    await pending  # type: ignore[misc]


def test_a_connect_the_new_rule_refuses_is_answered_403_and_recorded(audit_log: AuditLog, audit_path: Path) -> None:
    flow = asked("example.org", 22, audit_log)

    assert flow.response is not None
    assert (flow.response.status_code, flow.response.headers["X-Tollgate-Error"]) == (403, "egress_denied")
    assert flow.response.text == "Tollgate refused this connection: example.org:22 is not on a port of egress.ports.\n"
    audit_log.close()
    [record] = records(audit_path)
    assert (record["event"], record["host"], record["port"], record["decision"], record["refusal"]) == (
        "connection",
        "example.org",
        22,
        "deny",
        "egress_denied",
    )
    assert record["deny_reasons"] == ["example.org:22 is not on a port of egress.ports"]


def test_a_connect_the_new_rule_lets_through_goes_to_the_address_decided(audit_log: AuditLog) -> None:
    flow = asked("example.org", 443, audit_log)

    assert flow.response is None
    assert (flow.request.host, flow.request.port) == (PUBLIC, 443)


def test_the_rules_before_it_still_come_first(audit_log: AuditLog) -> None:
    """The order is `Egress.decide`'s: a target that is no host is refused before any rule by name."""
    flow = asked("exa mple.org", 22, audit_log)

    assert flow.response is not None
    assert (flow.response.status_code, flow.response.headers["X-Tollgate-Error"]) == (400, "bad_request")
