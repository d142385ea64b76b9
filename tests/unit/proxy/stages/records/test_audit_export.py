"""The audit export on a configured `Shared`: started by the configuration that asks for it, kept
across a reload that leaves `audit.otlp` alone, replaced or stopped by one that changes it, its lag
read by /metrics, and `done` sending the audit's last records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.otlp import Collector

from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.proxy.stages.records.audit import Audit
from tollgate.proxy.stages.records.audit_export import AuditExporter, AuditPostgresSender
from tollgate.proxy.state import Shared
from tollgate.records.audit.auditlog import AuditLog, started_record
from tollgate.records.senders.audit_postgres import AuditPostgres

from ..conftest import HOSTS, api_flow, classified, configured


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector.start()
    yield collector
    collector.close()


def data(audit: Path, collector: Collector | None, **otlp) -> dict:
    section: dict = {"path": str(audit)}
    if collector is not None:
        section["otlp"] = {"endpoint": collector.url, **otlp}
    return {"audit": section}


def reload(shared: Shared, config: dict) -> None:
    shared.apply(Loaded.build(parse_config(config, {}), previous=shared.loaded), shared.audit)


def finish_call(shared: Shared, audit: Audit) -> None:
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", {"model": "gpt-4o", "messages": []})
    classified(shared, flow)
    audit.request(flow)
    audit.error(flow)


def test_without_audit_otlp_nothing_runs(tmp_path: Path) -> None:
    shared = configured(data(tmp_path / "audit.jsonl", None))
    exporter = AuditExporter(shared)
    exporter.configure({"tollgate_config"})
    assert exporter.lag() is None
    assert exporter.done() is None


@pytest.mark.slow
def test_the_records_reach_the_collector_and_done_sends_the_last(tmp_path: Path, collector: Collector) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="unit")
    log.begin(started_record(["127.0.0.1:8080"], None))
    shared = configured(data(path, collector, headers={"x-key": "k"}), log)
    exporter = AuditExporter(shared)
    exporter.configure({"tollgate_config"})
    audit = Audit(shared, recorded=[exporter.recorded])
    for _ in range(3):
        finish_call(shared, audit)
    collector.wait_logs(4)
    audit.done()  # the stopped record written, the file closed
    pending = exporter.done()
    assert pending is not None
    asyncio.run(pending)  # type: ignore[arg-type]
    lines = path.read_text().splitlines()
    assert [entry["body"] for entry in collector.logs] == lines
    assert [entry["attributes"]["event.name"] for entry in collector.logs] == [
        "tollgate_started", "llm_call", "llm_call", "llm_call", "tollgate_stopped", "audit_checkpoint",
    ]  # fmt: skip
    assert collector.requests[0].headers["x-key"] == "k"


def test_a_reload_keeps_replaces_or_stops_the_exporter(tmp_path: Path, collector: Collector) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    shared = configured(data(path, collector))
    exporter = AuditExporter(shared)
    exporter.configure({"tollgate_config"})
    first = exporter._export
    assert first is not None
    reload(shared, data(path, collector))
    exporter.recorded(None, {})  # type: ignore[arg-type]  # a call's end sees the reload
    assert exporter._export is first
    reload(shared, data(path, collector, headers={"x-key": "new"}))
    exporter.recorded(None, {})  # type: ignore[arg-type]
    second = exporter._export
    assert second is not None and second is not first
    # The new one takes over once the old one let its lock go.
    deadline = time.monotonic() + 5
    while second.lag() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.lag() == 0
    reload(shared, data(path, None))
    exporter.recorded(None, {})  # type: ignore[arg-type]
    assert exporter._export is None and exporter.lag() is None
    second.stop()


def test_audit_postgres_starts_a_sender_a_reload_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    shared = configured({"audit": {"path": str(path)}})
    sender = AuditPostgresSender(shared)
    sender.configure({"tollgate_config"})
    assert sender._export is None and sender.lag() is None and sender.done() is None
    dsn = "postgresql://tollgate@127.0.0.1:1/records"
    postgres = {"path": str(path), "postgres": {"dsn": dsn}}
    sender = AuditPostgresSender(shared)
    reload(shared, {"audit": postgres})
    sender.configure({"tollgate_config"})
    first = sender._export
    assert isinstance(first, AuditPostgres) and first.table == "tollgate_records" and first.keep_days is None
    reload(shared, {"audit": {**postgres, "postgres": {"dsn": dsn, "keep_days": 7}}})
    sender.recorded(None, {})  # type: ignore[arg-type]  # a call's end sees the reload
    second = sender._export
    assert isinstance(second, AuditPostgres) and second is not first and second.keep_days == 7
    reload(shared, {"audit": {"path": str(path)}})
    sender.recorded(None, {})  # type: ignore[arg-type]
    assert sender._export is None
    assert first.stop(0.1) and second.stop(0.1)
