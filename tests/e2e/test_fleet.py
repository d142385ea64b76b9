"""A fleet end to end: `./run.sh --workers 2` behind a real HAProxy, with a real redis-server,
the official SDKs as clients, fake upstreams behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.clients import CONCURRENT_CHATS, run_client
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.fleet import READY as READY_LINE
from tests.support.fleet import Fleet, accepts, processes
from tests.support.proxy import ROOT, free_port
from tests.support.redis import redis_server

from tollgate.configuration.fleet import Worker, haproxy_config
from tollgate.records.audit.audit_verify import Place, verify

HOST = socket.gethostname()
INSTANCES = {f"{HOST}/w1", f"{HOST}/w2"}
KEYS = {"alice": "tg-alice-fleet-0001", "rpm": "tg-rpm-fleet-0001", "bob": "tg-bob-fleet-0001"}
REAL_OPENAI = "sk-real-openai-fleet-0001"
RESTED, SPARE = "sk-ant-fleet-rested-0001", "sk-ant-fleet-spare-0002"
# An Azure resource's own keys (`providers.azure.resources`), the first refused as the other pool's.
AZURE_RESTED, AZURE_SPARE = "azure-fleet-rested-0003", "azure-fleet-spare-0004"
METRICS = f"127.0.0.1:{free_port()}"


def test_haproxy_accepts_the_config(tmp_path):
    """The configuration `tollgate serve` writes, as HAProxy itself reads it (`haproxy -c`)."""
    workers = [Worker(1, 40001, 40002), Worker(2, 40003, 40004)]
    for listen, metrics in ((("", 8080), ("::1", 9464)), (("127.0.0.1", 8080), None)):
        path = tmp_path / "haproxy.cfg"
        path.write_text(haproxy_config(listen, workers, metrics, 30, tmp_path))
        done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def config(urls: dict[str, str], store: str, clients: tuple[str, ...] = ("alice", "rpm")) -> dict:
    return {
        "providers": {
            "openai": {"upstream": urls["openai"], "keys": [REAL_OPENAI]},
            "anthropic": {"upstream": urls["anthropic"], "keys": [RESTED, SPARE]},
            "azure": {"resources": {"contoso": {"keys": [AZURE_RESTED, AZURE_SPARE], "upstream": urls["azure"]}}},
        },
        "clients": [{"name": name, "keys": [KEYS[name]]} for name in clients],
        "limits": [{"name": "five a minute", "match": {"client": "rpm"}, "requests_per_minute": 5}],
        "ledger": {"store": store},
        "metrics": {"listen": METRICS},
    }


def anthropic_answers(r: Received) -> Reply:
    """The first key is refused as a provider refuses a key over its rate, the second serves."""
    if r.headers.get("x-api-key") == RESTED:
        error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        return Reply(429, error, {"retry-after": "60"})
    return provider_answers(r)


def azure_answers(r: Received) -> Reply:
    """The resource's first key is refused over its rate, the second serves."""
    if r.headers.get("api-key") == AZURE_RESTED:
        return Reply(429, {"error": {"code": "429", "message": "slow down"}}, {"retry-after": "60"})
    return provider_answers(r)


@pytest.fixture(scope="module")
def fakes(upstream_ca):
    made = {
        "openai": FakeUpstream(upstream_ca, provider_answers),
        "anthropic": FakeUpstream(upstream_ca, anthropic_answers),
        "azure": FakeUpstream(upstream_ca, azure_answers),
    }
    yield made
    for fake in made.values():
        fake.close()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = redis_server(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, fakes, redis_url, confdir, upstream_ca_pem):
    urls = {name: fake.url for name, fake in fakes.items()}
    started = Fleet(tmp_path_factory.mktemp("fleet"), config(urls, redis_url), confdir, upstream_ca_pem)
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def openai_calls(fleet: Fleet, bundle, key: str, count: int, timeout: float = 60) -> dict:
    """`count` chat calls, one after the other, each on a connection of its own (a new client)."""
    code = f"""
import openai
outcomes = []
for _ in range({count}):
    with openai.OpenAI(api_key={key!r}, max_retries=0) as client:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hi"}}])
            outcomes.append("ok")
        except openai.APIError as e:
            outcomes.append(type(e).__name__)
report(outcomes=outcomes)
"""
    return run_client(code, fleet.proxy_url, bundle, timeout=timeout)


def test_calls_spread_over_both_workers_and_an_edit_reaches_both(fleet, fakes, redis_url, bundle):
    before = len(fleet.calls())
    assert openai_calls(fleet, bundle, KEYS["alice"], 6) == {"outcomes": ["ok"] * 6}
    calls = fleet.wait_calls(before + 6)[before:]
    assert Counter(c["instance"] for c in calls) == {f"{HOST}/w1": 3, f"{HOST}/w2": 3}
    assert [c["client"] for c in calls] == ["alice"] * 6
    assert {r.headers["authorization"] for r in fakes["openai"].received} == {f"Bearer {REAL_OPENAI}"}

    # One file, watched by every worker: a client added there can call through either.
    urls = {name: fake.url for name, fake in fakes.items()}
    reloads = fleet.console().count("configuration reloaded from")
    fleet.write_config(config(urls, redis_url, ("alice", "rpm", "bob")))
    fleet.wait_console("configuration reloaded from", reloads + 2)
    assert openai_calls(fleet, bundle, KEYS["bob"], 4) == {"outcomes": ["ok"] * 4}
    calls = fleet.wait_calls(before + 10)[before + 6 :]
    assert {c["instance"] for c in calls} == INSTANCES
    assert [c["client"] for c in calls] == ["bob"] * 4


def test_a_requests_per_minute_limit_is_exact_over_both_workers(fleet, bundle):
    # Eight calls at once in one UTC minute: started early enough in a minute that they all fall in it.
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    before = len(fleet.calls())
    code = CONCURRENT_CHATS.format(key=KEYS["rpm"], count=8)
    assert run_client(code, fleet.proxy_url, bundle) == {"outcomes": {"RateLimitError": 3, "ok": 5}}
    calls = fleet.wait_calls(before + 8)[before:]
    assert {c["instance"] for c in calls} == INSTANCES
    assert Counter(c["status"] for c in calls) == {200: 5, 429: 3}


def each_with_a_client(sdk: str, client: str, call: str, count: int) -> str:
    """`count` calls `client.{call}`, each with a client of its own (`client`, of the SDK `sdk`):
    "ok" or the name of the SDK's error, each."""
    return f"""
import {sdk}
outcomes = []
for _ in range({count}):
    with {client} as client:
        try:
            client.{call}
            outcomes.append("ok")
        except {sdk}.APIError as e:
            outcomes.append(type(e).__name__)
report(outcomes=outcomes)
"""


# Alice's calls whose key rests, by provider: the SDK, its client and call; the header its key goes
# in upstream, the key that rests and the one taken instead.
RESTING = {
    "anthropic": (
        ("anthropic", f"anthropic.Anthropic(api_key={KEYS['alice']!r}, max_retries=0)",
         'messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])'),
        "x-api-key", RESTED, SPARE,
    ),
    "azure": (
        ("openai", f"openai.AzureOpenAI(api_key={KEYS['alice']!r}, azure_endpoint='https://contoso.openai.azure.com',"
                   " api_version='2024-10-21', max_retries=0)",
         'chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])'),
        "api-key", AZURE_RESTED, AZURE_SPARE,
    ),
}  # fmt: skip


@pytest.mark.parametrize("provider", list(RESTING))
def test_a_key_resting_after_a_429_in_one_worker_rests_in_the_other(fleet, fakes, bundle, provider):
    """Anthropic's pool, an Azure resource's keys: the key one worker saw refused rests in both."""
    calls_by, header, rested, spare = RESTING[provider]
    before = len(fleet.calls())
    first = run_client(each_with_a_client(*calls_by, count=1), fleet.proxy_url, bundle)
    assert first == {"outcomes": ["RateLimitError"]}  # its worker took the first key
    time.sleep(0.5)  # the rest, published on Redis, reaches the other worker
    assert run_client(each_with_a_client(*calls_by, count=6), fleet.proxy_url, bundle) == {"outcomes": ["ok"] * 6}
    calls = fleet.wait_calls(before + 7)[before:]
    assert {c["instance"] for c in calls[1:]} == INSTANCES
    used = [r.headers[header] for r in fakes[provider].received]
    assert used == [rested] + [spare] * 6  # neither worker took the rested key again


def test_audit_lines_stay_whole_under_200_concurrent_calls(fleet, bundle):
    before = len(fleet.calls())
    code = CONCURRENT_CHATS.format(key=KEYS["alice"], count=200)
    assert run_client(code, fleet.proxy_url, bundle, timeout=120) == {"outcomes": {"ok": 200}}
    calls = fleet.wait_calls(before + 200)[before:]  # every line parsed as one JSON object
    assert len(calls) == 200
    assert {c["instance"] for c in calls} == INSTANCES
    text = fleet.audit_path.read_bytes()
    assert text.endswith(b"\n")
    assert all(line.startswith(b'{"event":') and line.endswith(b"}") for line in text.splitlines())


def test_audit_records_on_standard_output_stay_whole_lines(tmp_path, fakes, confdir, upstream_ca_pem, bundle):
    data = {"providers": {"openai": {"upstream": fakes["openai"].url, "keys": [REAL_OPENAI]}}, "audit": {"path": "-"}}
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem)
    try:
        fleet.wait_ready()
        code = CONCURRENT_CHATS.format(key="sk-caller-own", count=200)
        result = run_client(code, fleet.proxy_url, bundle, timeout=120)
        assert result == {"outcomes": {"ok": 200}}, fleet.console()[-6000:]  # what the fleet said, if not
        fleet.stop()  # the workers' last records written
        # Each record whole on the rest of its line, never two on one. (Within one mitmdump, its own
        # console line may be written in two pieces around a record: a record may follow one's text.)
        lines = [line[line.index('{"event":') :] for line in fleet.console().splitlines() if '{"event":' in line]
        assert not [line for line in lines if line.count('{"event":') > 1]
        records = [json.loads(line) for line in lines]
        events = Counter(r["event"] for r in records)
        assert events.pop("audit_checkpoint") >= 2  # at least each worker's at its stop
        assert events == {"llm_call": 200, "tollgate_started": 2, "tollgate_stopped": 2}
        assert {r["instance"] for r in records if r["event"] == "llm_call"} == INSTANCES
        # The two workers' records, interleaved in one stream, verify as two whole chains.
        verdict = verify((Place("-", n), line.encode()) for n, line in enumerate(lines, 1))
        assert verdict.faults == [] and (verdict.summary.instances, verdict.summary.runs) == (2, 2)
    finally:
        fleet.stop()


def test_the_listen_port_is_held_while_the_workers_start(tmp_path, fakes, confdir, upstream_ca_pem, bundle):
    """From the check that the listen address is free to HAProxy's start (while the workers start:
    seconds) no other process takes it, not even one that binds with SO_REUSEADDR as Python's
    servers do: its listener would be taken for HAProxy's (the fleet said ready, HAProxy unable to
    listen), and every client sent to it."""
    data = {"providers": {"openai": {"upstream": fakes["openai"].url, "keys": [REAL_OPENAI]}}}
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem)
    other = socket.socket()
    try:
        fleet.wait_console("anonymous callers", timeout=120)  # the first worker loaded: HAProxy comes later
        assert READY_LINE not in fleet.console(), "HAProxy started before the test could try the port"
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", fleet.port))
            other.listen()
            taken = True
        except OSError:
            taken = False
        assert not taken, "another process could listen on the fleet's port while its workers started"
        fleet.wait_ready()
        assert openai_calls(fleet, bundle, "sk-caller-own", 2) == {"outcomes": ["ok", "ok"]}
    finally:
        other.close()
        fleet.stop()


def calls_counted_at_metrics() -> float:
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tollgate_calls"
        for sample in family.samples
        if sample.name == "tollgate_calls_total"
    )


def test_metrics_and_healthz_of_the_host_sum_both_workers(fleet, bundle):
    before = len(fleet.calls())
    assert openai_calls(fleet, bundle, KEYS["alice"], 4) == {"outcomes": ["ok"] * 4}
    calls = fleet.wait_calls(before + 4)
    assert {c["instance"] for c in calls[before:]} == INSTANCES
    # Every call of both workers, whichever answered the scrape: the other's counts reach the shared
    # files within a second (multiprocess.WRITE_INTERVAL).
    deadline = time.monotonic() + 5
    while (counted := calls_counted_at_metrics()) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted == len(calls)
    with urllib.request.urlopen(f"http://{METRICS}/healthz", timeout=10) as response:
        assert response.status == 200


def test_a_worker_killed_mid_run_is_routed_around_and_started_again(fleet, bundle, tmp_path):
    paused, go = tmp_path / "paused", tmp_path / "go"
    code = f"""
import os, time, openai
outcomes = []
def calls(count):
    for _ in range(count):
        with openai.OpenAI(api_key={KEYS["alice"]!r}, max_retries=0) as client:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hi"}}])
                outcomes.append("ok")
            except openai.APIError as e:
                outcomes.append(type(e).__name__)
calls(3)
open({str(paused)!r}, "w").close()
deadline = time.monotonic() + 20
while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
calls(8)
report(outcomes=outcomes)
"""
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(run_client(code, fleet.proxy_url, bundle)))
    client.start()
    deadline = time.monotonic() + 30
    while not paused.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = fleet.workers()["w1"]
    restarts = fleet.console().count("starting w1 again")
    started = len([r for r in fleet.audit_records() if r["event"] == "tollgate_started"])
    os.kill(killed, signal.SIGKILL)
    go.touch()
    client.join(60)
    assert result == {"outcomes": ["ok"] * 11}  # HAProxy sent the connections w1 refused to w2
    fleet.wait_console("starting w1 again", restarts + 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (fleet.workers().get("w1") in (None, killed)):
        time.sleep(0.1)
    assert fleet.workers()["w1"] != killed
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and len([r for r in fleet.audit_records() if r["event"] == "tollgate_started"]) == started
    ):
        time.sleep(0.1)
    restarted = [r for r in fleet.audit_records() if r["event"] == "tollgate_started"][started:]
    assert [r["instance"] for r in restarted] == [f"{HOST}/w1"]
    # Back in HAProxy's rotation once its /healthz answers.
    time.sleep(1.5)
    before = len(fleet.calls())
    assert openai_calls(fleet, bundle, KEYS["alice"], 4) == {"outcomes": ["ok"] * 4}
    assert {c["instance"] for c in fleet.wait_calls(before + 4)[before:]} == INSTANCES


def test_sigterm_drains_a_slow_stream_that_completes_and_is_audited(
    tmp_path, upstream_ca, confdir, upstream_ca_pem, bundle, redis_url
):
    def slowly(r: Received) -> Reply:
        return Reply(
            200,
            headers={"content-type": "text/event-stream"},
            chunks=streams.openai_chat(),
            gate=lambda i: time.sleep(0.4),
        )

    fake = FakeUpstream(upstream_ca, slowly)
    fleet = Fleet(
        tmp_path, {"providers": {"openai": {"upstream": fake.url, "keys": [REAL_OPENAI]}}}, confdir, upstream_ca_pem
    )
    try:
        fleet.wait_ready()
        code = """
import openai
with openai.OpenAI(api_key="sk-caller-own", max_retries=0) as client:
    pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True) if c.choices]
report(text="".join(p or "" for p in pieces))
"""
        result: dict = {}
        client = threading.Thread(target=lambda: result.update(run_client(code, fleet.proxy_url, bundle)))
        client.start()
        deadline = time.monotonic() + 30
        while not fake.received and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # its first pieces are on their way
        fleet.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while accepts(fleet.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not accepts(fleet.port)  # no new connection, while the stream goes on
        client.join(60)
        assert result == {"text": "Hello"}
        assert fleet.wait_exit(40) == 0
        [call] = fleet.calls()
        assert (call["status"], call["error"], call["output_tokens"]) == (200, None, 5)
        assert [r["event"] for r in fleet.audit_records()].count("tollgate_stopped") == 2
        assert "tollgate serve: stopped" in fleet.console()
    finally:
        fleet.stop()
        fake.close()


def test_a_worker_that_fails_at_start_stops_the_fleet(tmp_path, confdir, upstream_ca_pem):
    (tmp_path / "broken.rego").write_text("package tollgate\ndeny contains msg if {\n")
    fleet = Fleet(tmp_path, {"policy": {"rego": ["broken.rego"]}}, confdir, upstream_ca_pem)
    try:
        assert fleet.wait_exit(30) == 1  # at once, not after restarts
        [said] = [line for line in fleet.console().splitlines() if line.startswith("tollgate serve: w1 exited")]
        assert said.startswith("tollgate serve: w1 exited with status 1: ")  # and the worker's last line:
        assert "policy.rego" in said
        assert said.endswith("(at start: the fleet stops)")
        assert not accepts(fleet.port)
        assert not [p for p in processes() if "--listen-port\0" in p[2] and p[1] == fleet.process.pid]
    finally:
        fleet.stop()


@pytest.mark.parametrize(
    ("extra", "data", "said"),
    [
        (
            (),
            {"limits": [{"match": {"client": "alice"}, "requests_per_minute": 5}]},
            "tollgate serve: Tollgate configuration: ledger.store: 2 workers with limits must share their counters on"
            " Redis: set ledger.store: redis://host:port/0",
        ),
        (
            ("--capture", "transparent"),
            {},
            "tollgate serve: --workers runs the regular proxy only, behind HAProxy; --mode transparent@",
        ),
    ],
    ids=["limits-without-redis", "capture"],
)
def test_what_a_fleet_cannot_run_is_refused_at_start(tmp_path, confdir, upstream_ca_pem, extra, data, said):
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem, *extra)
    try:
        assert fleet.wait_exit(30) == 1
        assert said in fleet.console()
        assert "mitmdump" not in " ".join(p[2] for p in processes() if p[1] == fleet.process.pid)
        assert not fleet.audit_path.exists()  # no worker started
    finally:
        fleet.stop()


def test_a_listen_address_taken_stops_the_fleet_before_any_worker_starts(tmp_path, confdir, upstream_ca_pem):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        fleet = Fleet(tmp_path, {}, confdir, upstream_ca_pem, port=port)
        try:
            assert fleet.wait_exit(30) == 1
            said = (
                f"tollgate serve: Tollgate cannot listen on 127.0.0.1:{port}: another program listens there (another"
                " Tollgate?). Stop what holds it, or listen elsewhere: --listen-port PORT (and --listen-host HOST),"
                " or TOLLGATE_LISTEN=HOST:PORT for ./run.sh and tollgate serve"
            )
            assert said in fleet.console()
            assert not fleet.audit_path.exists()  # no worker started
        finally:
            fleet.stop()


def test_one_worker_is_mitmdump_itself_without_haproxy(tmp_path, fakes, confdir, upstream_ca_pem, bundle):
    data = {"providers": {"openai": {"upstream": fakes["openai"].url, "keys": [REAL_OPENAI]}}}
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem, workers=1)
    try:
        deadline = time.monotonic() + 60
        while not accepts(fleet.port) and fleet.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        command = Path(f"/proc/{fleet.process.pid}/cmdline").read_bytes().split(b"\0")
        # tollgate serve became mitmdump, in the process that checked its configuration first.
        assert command[1:4] == [b"-m", b"tollgate.proxy.start", b"mitmdump"]
        assert not [p for p in processes() if p[1] == fleet.process.pid and "haproxy" in p[2]]
        assert openai_calls(fleet, bundle, "sk-caller-own", 1) == {"outcomes": ["ok"]}
        [call] = fleet.wait_calls(1)
        assert call["instance"] == f"{HOST}/w1"
    finally:
        fleet.stop()


def test_each_worker_does_before_it_listens_what_its_first_calls_would(
    tmp_path, fakes, confdir, upstream_ca_pem, bundle, monkeypatch
):
    """A fresh worker's first full garbage collection walked every object of its start-up, and its
    first upstream connection made mitmproxy's TLS context, holding its streams in flight
    (tests/e2e/test_first_calls.py): each worker does both before it listens."""
    watch = tmp_path / "start-up.jsonl"
    monkeypatch.setenv("TOLLGATE_START_UP_WATCH", str(watch))
    data = {"providers": {"openai": {"upstream": fakes["openai"].url, "keys": [REAL_OPENAI]}}}
    # run.sh names the gateway's script first; this one is loaded after it, in each worker.
    fleet = Fleet(tmp_path, data, confdir, upstream_ca_pem, "-s", str(ROOT / "tests" / "support" / "start_up_watch.py"))
    try:
        fleet.wait_ready()
        code = CONCURRENT_CHATS.format(key="sk-caller-own", count=20)
        assert run_client(code, fleet.proxy_url, bundle, timeout=120) == {"outcomes": {"ok": 20}}
        assert {c["instance"] for c in fleet.wait_calls(20)} == INSTANCES
        fleet.stop()  # each worker's `done`: what a full collection would walk after the calls
    finally:
        fleet.stop()
    seen = [json.loads(line) for line in watch.read_text().splitlines()]
    listening = [s for s in seen if s["event"] == "listening"]
    assert len(listening) == 2 and len([s for s in seen if s["event"] == "done"]) == 2, seen
    for worker in listening:
        assert worker["frozen"] > 50_000, seen
    heap = min(w["frozen"] + w["walked"] for w in listening)
    assert [s for s in seen if s["walked"] * 10 > heap] == [], seen
    assert {s["tls_contexts"] for s in seen} == {1}, seen  # each worker's, made before it listened
