"""The audit shipped to a collector (`audit.otlp`) end to end: official OpenAI SDK calls through
mitmdump while the stand-in collector is down, then answers 503, then takes what it is sent. Every
record of the audit file arrives, none is lost, a copy carries its original's `tollgate.record_id`,
no call waited for the collector, the lag is on /metrics, and a restarted proxy resumes from its
position: nothing that was acknowledged is sent twice. A fleet of two workers ships its one file
once, and a worker killed outright hands the export to the other."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.clients import CHAT_THEN_STREAM, CONCURRENT_CHATS, run_client
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.fleet import Fleet
from tests.support.metrics import gauge, wait_for
from tests.support.otlp import Collector
from tests.support.proxy import Mitmdump, free_port

HOST = socket.gethostname()

REAL_KEY = "sk-real-openai-export-0001"
KEY = "tg-exported-app-key-0001"
COLLECTOR_KEY = "collector-secret-export-0001"
PROMPT = "never-export-this-prompt-text"


@pytest.fixture(scope="module")
def collector():
    collector = Collector.start(listening=False)  # down at first
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def metrics_listen() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def gw(start_gateway, collector, metrics_listen):
    def build(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL_KEY]}},
            "clients": [{"name": "exported-app", "keys": [KEY]}],
            "metrics": {"listen": metrics_listen},
            "audit": {"otlp": {"endpoint": collector.url, "headers": {"x-collector-key": COLLECTOR_KEY}}},
        }

    def answer(r: Received) -> Reply:
        if r.json().get("stream"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat())
        return provider_answers(r)

    g = start_gateway(build, providers=("openai",))
    g.fakes["openai"].handler = answer
    return g


def calls(g, proxy_url: str | None = None) -> None:
    """Two calls (one streamed), which complete."""
    assert g.run(CHAT_THEN_STREAM.format(key=KEY, prompt=PROMPT), proxy_url=proxy_url) == {"done": True}


def file_lines(path: Path) -> list[str]:
    return path.read_text().rpartition("\n")[0].split("\n")


def lag(listen: str) -> float | None:
    return gauge(listen, "tollgate_audit_export_lag_records")


def test_every_record_arrives_though_the_collector_was_down_then_failing(
    gw, collector, metrics_listen, confdir, upstream_ca_pem
):
    g = gw
    # Down: the calls complete all the same, their records wait in the file.
    calls(g)
    calls(g)
    records = g.wait_audit(4)
    assert all(r["status"] == 200 for r in records)
    assert collector.requests == [] and collector.logs == []
    wait_for(lambda: (lag(metrics_listen) or 0) >= 5, 10, "the lag to count the records (started + 4 calls)")

    # Up, answering 503: still nothing taken; the calls go on.
    collector.log_status = 503
    collector.up()
    wait_for(lambda: collector.refused_logs > 0, 40, "an attempt answered 503")
    calls(g)
    assert collector.logs == []
    g.wait_audit(6)

    # Taking them: every line of the file arrives.
    collector.log_status = 200
    lines = file_lines(g.audit_path)
    assert '"tollgate_started"' in lines[0] and sum('"llm_call"' in line for line in lines) == 6
    wait_for(lambda: {log["body"] for log in collector.logs} >= set(lines), 60, "every record at the collector")
    wait_for(lambda: lag(metrics_listen) == 0, 10, "no lag")
    received = list(collector.logs)
    ids: dict[str, str] = {}
    for log in received:
        rid = log["attributes"]["tollgate.record_id"]
        assert ids.setdefault(log["body"], rid) == rid  # a copy has its original's id
    assert len(set(ids.values())) == len(ids)

    # What a log record says: the line as its body, the conventions' names, the resource.
    by_body = {log["body"]: log for log in received}
    call_line = next(line for line in lines if '"llm_call"' in line and '"stream":true' in line)
    log = by_body[call_line]
    attributes = log["attributes"]
    assert attributes["event.name"] == "llm_call"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["tollgate.client"] == "exported-app"
    assert log["resource"]["service.name"] == "tollgate"
    assert log["resource"]["service.instance.id"]
    assert log["time_ns"] > 0
    logs_requests = [r for r in collector.requests if r.path == "/v1/logs"]
    assert all(r.headers["x-collector-key"] == COLLECTOR_KEY for r in logs_requests)
    assert all(r.headers["content-type"] == "application/x-protobuf" for r in logs_requests)
    # Never a prompt, never a key.
    for log in received:
        for secret in (PROMPT, KEY, REAL_KEY):
            assert secret not in str(log)

    # Stopped: its last records (tollgate_stopped, the last checkpoint) sent as it stops.
    g.proxy.stop()
    lines = file_lines(g.audit_path)
    assert '"tollgate_stopped"' in lines[-2] and '"audit_checkpoint"' in lines[-1]
    wait_for(lambda: {log["body"] for log in collector.logs} >= set(lines), 10, "the last records")
    taken = len(collector.logs)

    # Restarted on the same file: from its position; nothing acknowledged is sent again.
    assert g.audit_path.with_name(g.audit_path.name + ".otlp-position").exists()
    again = Mitmdump(g.proxy.workdir, confdir, upstream_ca_pem, g.config_path)
    try:
        again.wait_ready()
        calls(g, proxy_url=again.proxy_url)
        wait_for(lambda: len(file_lines(g.audit_path)) >= len(lines) + 3, 10, "the second run's records")
        new_lines = file_lines(g.audit_path)[len(lines) :]
        wait_for(lambda: len(collector.logs) >= taken + len(new_lines), 30, "the second run's records sent")
        time.sleep(1.5)  # a batch more would be here by now
        assert [log["body"] for log in collector.logs[taken:]] == new_lines
    finally:
        again.stop()
    bodies = [log["body"] for log in collector.logs]
    assert len(bodies) == len(set(bodies))  # the collector never failed after taking: no copy at all


def lock_holder(lock: Path) -> int | None:
    """The process holding the flock on `lock` (from /proc/locks), if any."""
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and fields[-3].endswith(f":{inode}") and "->" not in line:
            return int(fields[-4])
    return None


def test_a_fleet_ships_its_one_file_once_and_a_worker_takes_over(
    tmp_path, upstream_ca, confdir, upstream_ca_pem, bundle
):
    """Two workers append to one audit file: one of them ships it (every line once), and when it is
    killed outright the other takes over from the position."""
    collector = Collector.start()
    fake = FakeUpstream(upstream_ca, provider_answers)
    data = {
        "providers": {"openai": {"upstream": fake.url, "keys": [REAL_KEY]}},
        "audit": {"otlp": {"endpoint": collector.url}},
    }
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem)
    try:
        fleet.wait_ready()
        code = CONCURRENT_CHATS.format(key="sk-caller-own", count=40)
        assert run_client(code, fleet.proxy_url, bundle, timeout=120) == {"outcomes": {"ok": 40}}
        calls = fleet.wait_calls(40)
        assert {c["instance"] for c in calls} == {f"{HOST}/w1", f"{HOST}/w2"}
        lines = file_lines(fleet.audit_path)
        wait_for(lambda: len(collector.logs) >= len(lines), 30, "every line at the collector")
        time.sleep(1.5)  # a second exporter's copies would be here by now
        assert sorted(log["body"] for log in collector.logs) == sorted(lines)  # each once: one exporter

        lock = fleet.audit_path.with_name(fleet.audit_path.name + ".otlp-lock")
        holder = lock_holder(lock)
        assert holder in fleet.workers().values()
        os.kill(holder, signal.SIGKILL)
        wait_for(lambda: lock_holder(lock) not in (None, holder), 15, "the other worker to take the lock")
        assert run_client(code, fleet.proxy_url, bundle, timeout=120) == {"outcomes": {"ok": 40}}
        fleet.wait_calls(80)
        lines = file_lines(fleet.audit_path)
        wait_for(lambda: {log["body"] for log in collector.logs} >= set(lines), 30, "every line after the takeover")
        ids: dict[str, str] = {}
        for log in collector.logs:
            rid = log["attributes"]["tollgate.record_id"]
            assert ids.setdefault(log["body"], rid) == rid
    finally:
        fleet.stop()
        fake.close()
        collector.close()
