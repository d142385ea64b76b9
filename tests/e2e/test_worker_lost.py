"""No call without a record: calls in flight in a process killed outright (SIGKILL) get their
records all the same, `status: null`, `error: "worker lost"`, from the next process of the same
instance: a lone mitmdump started again, a fleet's worker its supervisor starts again."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.clients import run_client
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.fleet import Fleet
from tests.support.proxy import Mitmdump
from tests.support.redis import redis_server

from tollgate.cli.main import main
from tollgate.records.audit.audit_verify import read_lines, verify
from tollgate.records.audit.in_flight import InFlight, in_flight_secret, journal_path

REAL = "sk-REAL-lost-0001"
ALICE = "tg-alice-lost-0001"
STREAMS = 3
# Each stream waits for the test's signal before its last chunks: it is in flight when its proxy dies.
SLOW_STREAM = """
import openai
with openai.OpenAI(api_key={key!r}, max_retries=0, timeout=60) as client:
    try:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=500, messages=[{{"role": "user", "content": "Hi"}}], stream=True
        ):
            pass
        report(outcome="ok")
    except openai.APIError as e:
        report(outcome=type(e).__name__)
"""


def config(upstream: str, audit: Path) -> dict:
    return {
        "providers": {"openai": {"upstream": upstream, "keys": [REAL]}},
        "clients": [{"name": "alice", "keys": [ALICE]}],
        "limits": [{"name": "daily", "match": {"client": "alice"}, "tokens_per_day": 1_000_000}],
        "audit": {"path": str(audit)},
    }


def configured(directory: Path, upstream: str) -> tuple[Path, Path]:
    """The audit file and tollgate.yaml (written) of a gateway in `directory` over `upstream`."""
    audit = directory / "audit.jsonl"
    config_path = directory / "tollgate.yaml"
    config_path.write_text(yaml.safe_dump(config(upstream, audit)))
    return audit, config_path


@pytest.fixture
def instance(tmp_path, confdir, upstream_ca_pem) -> Iterator[Callable[..., Mitmdump]]:
    """Starts mitmdump in `tmp_path` as instance `name` of the gateway configured at `config_path`,
    ready unless `ready` is False; each one started is stopped after the test."""
    started: list[Mitmdump] = []

    def start(config_path: Path, name: str, ready: bool = True) -> Mitmdump:
        proxy = Mitmdump(tmp_path, confdir, upstream_ca_pem, config_path, env={"TOLLGATE_INSTANCE": name})
        started.append(proxy)
        if ready:
            proxy.wait_ready()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


class Holding:
    """A fake upstream whose streams begin, then wait until `release`."""

    def __init__(self, upstream_ca) -> None:
        self.released = threading.Event()
        self.begun = 0
        self.fake = FakeUpstream(upstream_ca, self.answer)

    def answer(self, r: Received) -> Reply:
        self.begun += 1

        def gate(i: int) -> None:
            if i == 1:
                self.released.wait(30)

        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat(), gate=gate)

    def wait_begun(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while self.begun < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.begun >= count


def start_streams(proxy_url: str, bundle: Path) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=run_client, args=(SLOW_STREAM.format(key=ALICE), proxy_url, bundle), daemon=True)
        for _ in range(STREAMS)
    ]
    for thread in threads:
        thread.start()
    return threads


def records(audit: Path) -> list[dict]:
    if not audit.exists():
        return []
    return [json.loads(line) for line in audit.read_text().rpartition("\n")[0].splitlines() if line.strip()]


def left_in_flight(audit: Path, instance: str) -> dict:
    """The calls a next start of the instance would record as lost (its file read, not taken)."""
    journal = InFlight(journal_path(str(audit), instance), in_flight_secret(str(audit), instance, None))
    try:
        return journal.lost
    finally:
        journal.close()


def wait_lost(audit: Path, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lost = [r for r in records(audit) if r.get("error") == "worker lost"]
        if len(lost) >= count:
            return lost
        time.sleep(0.1)
    raise AssertionError(f"expected {count} lost records: {records(audit)}")


def assert_lost(lost: list[dict], instance: str) -> None:
    assert len(lost) == STREAMS
    assert len({r["request_id"] for r in lost}) == STREAMS
    for r in lost:
        assert (r["event"], r["instance"], r["status"], r["error"]) == ("llm_call", instance, None, "worker lost")
        assert (r["client"], r["provider"], r["model"], r["stream"], r["decision"]) == (
            "alice",
            "openai",
            "gpt-4o-mini",
            True,
            "allow",
        )
        assert r["reserved_tokens"] is not None and r["reserved_tokens"] >= 500
        assert r["upstream"] is not None and r["upstream_key"].startswith("sha256:")
        assert r["latency_ms"] is None


def test_calls_in_flight_in_a_killed_process_are_recorded_by_its_next_start(tmp_path, upstream_ca, bundle, instance):
    holding = Holding(upstream_ca)
    audit, config_path = configured(tmp_path, holding.fake.url)
    try:
        proxy = instance(config_path, "solo")
        threads = start_streams(proxy.proxy_url, bundle)
        holding.wait_begun(STREAMS)
        os.kill(proxy.process.pid, signal.SIGKILL)
        proxy.process.wait(10)
        holding.released.set()
        for thread in threads:
            thread.join(60)
        assert not [r for r in records(audit) if r["event"] == "llm_call"]  # it died before any record
        again = instance(config_path, "solo")
        assert_lost(wait_lost(audit, STREAMS), "solo")
        events = [r["event"] for r in records(audit)]
        assert events[-4:] == ["tollgate_started", "llm_call", "llm_call", "llm_call"]  # after its start
        again.stop()
        assert left_in_flight(audit, "solo") == {}  # all recorded: nothing left in flight
        assert len(wait_lost(audit, STREAMS)) == STREAMS  # written once
        # Chained: the killed run is whole, the next naming where it ended.
        assert main(["audit", "verify", str(audit)]) == 0
    finally:
        holding.released.set()
        holding.fake.close()


def test_a_fleet_worker_killed_with_streams_in_flight_has_them_recorded(
    tmp_path, upstream_ca, upstream_ca_pem, confdir, bundle
):
    holding = Holding(upstream_ca)
    redis = redis_server(tmp_path / "redis")
    shared = {**config(holding.fake.url, tmp_path / "audit.jsonl"), "ledger": {"store": redis.url}}
    fleet = Fleet(tmp_path, shared, confdir, upstream_ca_pem)
    try:
        fleet.wait_ready()
        # Straight to w1, past HAProxy (which would spread them over both workers).
        threads = start_streams(f"http://127.0.0.1:{fleet.worker_ports()['w1']}", bundle)
        holding.wait_begun(STREAMS)
        killed = fleet.workers()["w1"]
        os.kill(killed, signal.SIGKILL)
        holding.released.set()
        for thread in threads:
            thread.join(60)
        lost = wait_lost(fleet.audit_path, STREAMS)  # written by the worker started in its place
        assert_lost(lost, f"{socket.gethostname()}/w1")
        fleet.stop()
        # Two workers, one file: two chains, whole (w1's killed run named by its next one).
        verdict = verify(read_lines([str(fleet.audit_path)]))
        assert verdict.faults == [] and verdict.summary.instances == 2
        assert verdict.summary.runs == 3  # w1 twice, w2 once
    finally:
        holding.released.set()
        fleet.stop()
        redis.stop()
        holding.fake.close()


# Codex's way: a Responses WebSocket, a response on it; closed by the client, or still open when the
# proxy stops.
SOCKET_SESSION = """
import asyncio
from openai import AsyncOpenAI

async def main():
    async with AsyncOpenAI(api_key={key!r}, max_retries=0).responses.connect() as conn:
        await conn.response.create(model="gpt-4o", input="hi")
        while (await asyncio.wait_for(conn.recv(), 20)).type != "response.completed":
            pass
        if {hold}:  # open until the proxy closes it
            try:
                while True:
                    await asyncio.wait_for(conn.recv(), 30)
            except Exception as e:
                return type(e).__name__
    return "closed"

report(outcome=asyncio.run(main()))
"""


def socket_records(audit: Path) -> list[dict]:
    return [r for r in records(audit) if r["event"] == "llm_call" and r.get("transport") == "websocket"]


def test_responses_websockets_ended_before_a_clean_stop_are_not_lost(tmp_path, upstream_ca, bundle, instance):
    from tests.support.fake_realtime import FakeRealtime, responding, responses_usage

    fake = FakeRealtime(upstream_ca)
    fake.script = responding(["Hello.", "Again."], [responses_usage(10, 2), responses_usage(11, 3)])
    audit, config_path = configured(tmp_path, fake.url)
    try:
        proxy = instance(config_path, "codex-host")
        assert run_client(SOCKET_SESSION.format(key=ALICE, hold=False), proxy.proxy_url, bundle) == {
            "outcome": "closed"
        }
        held: dict = {}
        holder = threading.Thread(
            target=lambda: held.update(
                run_client(SOCKET_SESSION.format(key=ALICE, hold=True), proxy.proxy_url, bundle)
            ),
            daemon=True,
        )
        holder.start()
        deadline = time.monotonic() + 30
        while len(socket_records(audit)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(socket_records(audit)) == 2
        proxy.stop()  # SIGTERM: the open socket is closed by the drain
        holder.join(60)
        assert held.get("outcome") not in (None, "closed")
        again = instance(config_path, "codex-host")
        again.stop()
        assert [r for r in records(audit) if r.get("error") == "worker lost"] == []
        assert [(r["client"], r["status"], r["output_tokens"]) for r in socket_records(audit)] == [
            ("alice", 200, 2),
            ("alice", 200, 3),
        ]
        assert "worker lost" not in again.output.read_text()
        assert main(["audit", "verify", str(audit)]) == 0
    finally:
        fake.close()


CALL = """
import openai
client = openai.OpenAI(api_key={key!r}, max_retries=0)
r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hi"}}])
report(tokens=r.usage.total_tokens)
"""


def test_a_line_planted_in_the_in_flight_file_is_refused_at_the_next_start(tmp_path, upstream_ca, bundle, instance):
    fake = FakeUpstream(upstream_ca, provider_answers)
    audit, config_path = configured(tmp_path, fake.url)
    try:
        proxy = instance(config_path, "solo")
        assert "tokens" in run_client(CALL.format(key=ALICE), proxy.proxy_url, bundle)
        proxy.stop()
        # Someone who can write the file, not read the secret beside it: a call that never was.
        planted = {
            "sent": "planted-0001",
            "call": {
                "ts": "2026-11-26T10:00:00.000Z", "request_id": "planted-0001", "client": "mallory",
                "provider": "openai", "model": "gpt-planted", "decision": "allow",
                "findings": {"secrets.aws_access_key": 1},
            },
        }  # fmt: skip
        with open(journal_path(str(audit), "solo"), "a") as f:
            f.write(json.dumps(planted) + "\n")
        again = instance(config_path, "solo")
        assert "tokens" in run_client(CALL.format(key=ALICE), again.proxy_url, bundle)
        again.stop()
        written = records(audit)
        assert not [r for r in written if r.get("client") == "mallory" or r.get("request_id") == "planted-0001"]
        assert not [r for r in written if r.get("error") == "worker lost"]
        refusals = [r for r in written if r["event"] == "in_flight_refused"]
        assert [(r["instance"], r["lines"]) for r in refusals] == [("solo", 1)]
        assert [r["event"] for r in written[: written.index(refusals[0]) + 1]][-2:] == [
            "tollgate_started",
            "in_flight_refused",
        ]  # right after the start
        assert "were not written by Tollgate" in again.output.read_text()
        assert [r["client"] for r in written if r["event"] == "llm_call"] == ["alice", "alice"]
        assert main(["audit", "verify", str(audit)]) == 0
    finally:
        fake.close()


def test_a_second_process_of_one_instance_beside_one_audit_file_is_refused(tmp_path, upstream_ca, bundle, instance):
    fake = FakeUpstream(upstream_ca, provider_answers)
    audit, config_path = configured(tmp_path, fake.url)
    try:
        first = instance(config_path, "twin")
        second = instance(config_path, "twin", ready=False)
        second.process.wait(30)
        assert second.process.returncode != 0
        output = second.output.read_text()
        assert "instance: another process of instance 'twin' is running beside this audit file" in output
        assert "TOLLGATE_INSTANCE" in output
        # The first goes on serving, alone in the file.
        assert "tokens" in run_client(CALL.format(key=ALICE), first.proxy_url, bundle)
        first.stop()
        assert [r["event"] for r in records(audit)].count("tollgate_started") == 1
        assert main(["audit", "verify", str(audit)]) == 0
        # Another instance name beside the same file is no mistake.
        instance(config_path, "twin-2").stop()
    finally:
        fake.close()


def signing_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    return path


def test_a_changed_signing_key_refuses_no_line_of_a_clean_stop(tmp_path, upstream_ca, bundle, instance):
    """Each start after a clean stop, with `audit.signing_key` added, changed, then removed: no line
    of the in-flight file is called not Tollgate's; a line planted afterwards still is."""
    fake = FakeUpstream(upstream_ca, provider_answers)
    audit = tmp_path / "audit.jsonl"
    config_path = tmp_path / "tollgate.yaml"
    plain = config(fake.url, audit)
    keys = [signing_key(tmp_path / "one.pem"), signing_key(tmp_path / "two.pem")]
    runs = [plain, *({**plain, "audit": {**plain["audit"], "signing_key": str(k)}} for k in keys), plain, plain]
    try:
        for run in runs:
            config_path.write_text(yaml.safe_dump(run))
            proxy = instance(config_path, "solo")
            assert "tokens" in run_client(CALL.format(key=ALICE), proxy.proxy_url, bundle)
            proxy.stop()
            assert "were not written by Tollgate" not in proxy.output.read_text()
        written = records(audit)
        assert [r for r in written if r["event"] == "in_flight_refused"] == []
        assert main(["audit", "verify", str(audit)]) == 0
        # A line planted now is still named, the key unchanged.
        with open(journal_path(str(audit), "solo"), "a") as f:
            f.write(json.dumps({"sent": "planted-0002", "call": {"request_id": "planted-0002"}}) + "\n")
        proxy = instance(config_path, "solo")
        proxy.stop()
        assert "1 lines of" in proxy.output.read_text()
        assert "were not written by Tollgate" in proxy.output.read_text()
        refusals = [r for r in records(audit) if r["event"] == "in_flight_refused"]
        assert [(r["instance"], r["lines"]) for r in refusals] == [("solo", 1)]
        assert not [r for r in records(audit) if r.get("request_id") == "planted-0002"]
    finally:
        fake.close()
