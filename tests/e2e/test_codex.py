"""OpenAI's Codex CLI (`@openai/codex` from npm, `codex exec`), unchanged, in a shell that evaluated
`./run.sh env`: it opens the Responses API over a WebSocket (`wss://api.openai.com/v1/responses`),
which Tollgate governs as every call: each `response.create` on it decided and audited with the
usage its answer reports, the virtual key swapped for the real one."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.codex import clean_env, installed_codex, run_in_session
from tests.support.fake_realtime import FakeRealtime, over_http, responding, responses_usage
from tests.support.proxy import ROOT
from tests.support.run_sh import run_sh_listening

REAL = "sk-REAL-openai-for-codex-5ecret"
VIRTUAL = "tg-VIRTUAL-codex-user-5ecret"
ANSWER = "Hello from the fake upstream."
# Codex warms the connection up first (a response.create with `generate: false`), then asks.
USAGES = [responses_usage(1900, 0), responses_usage(1950, 7, cached=1792, reasoning=3)]


@pytest.fixture(scope="module")
def codex() -> Path:
    return installed_codex()


@pytest.fixture
def upstream(upstream_ca) -> Iterator[FakeRealtime]:
    fake = FakeRealtime(upstream_ca, responding([ANSWER] * len(USAGES), USAGES))
    yield fake
    fake.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: FakeRealtime, upstream_ca_pem: Path) -> Iterator[int]:
    """`./run.sh` on a free port, its tollgate.yaml (and so its audit) in tmp_path."""
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": upstream.url, "keys": [REAL]}},
                "clients": [{"name": "codex-user", "keys": [VIRTUAL]}],
            }
        )
    )
    with run_sh_listening(tmp_path, upstream_ca_pem) as port:
        yield port


def run_codex(codex: Path, port: int, home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`codex exec` in a shell that evaluated `./run.sh env`, its own home, a virtual key as its API key."""
    home.mkdir(exist_ok=True)
    env = clean_env(HOME=str(home), CODEX_API_KEY=VIRTUAL)
    quoted = " ".join(shlex.quote(option) for option in options)
    script = (
        f'eval "$("{ROOT}/run.sh" env -p {port})" && exec "{codex}" exec --skip-git-repo-check {quoted} "Say hello"'
    )
    return run_in_session(["bash", "-c", script], home, env)


def responses_records(audit: Path, count: int) -> list[dict]:
    """The audit's records of responses, once there are `count` (the audit writes moments later)."""
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline:
        lines = audit.read_text().rpartition("\n")[0].splitlines() if audit.exists() else []  # whole lines
        records = [r for r in map(json.loads, lines) if r["event"] == "llm_call" and r["endpoint"] == "responses"]
        if len(records) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"expected {count} records of responses in {audit}, have {records}")


def test_codex_exec_over_the_responses_websocket_is_governed_and_audited_with_exact_tokens(
    codex, proxy, upstream, tmp_path
):
    done = run_codex(codex, proxy, tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    assert "Falling back from WebSockets" not in done.stderr
    (session,) = upstream.sessions
    assert session.target == "/v1/responses"
    assert session.headers["authorization"] == f"Bearer {REAL}"
    assert not any(VIRTUAL in value for value in session.headers.values())
    sent = [json.loads(m) for m in session.received]
    assert [(m["type"], m.get("generate", True)) for m in sent] == [
        ("response.create", False),
        ("response.create", True),
    ]
    records = responses_records(tmp_path / "audit.jsonl", 2)
    assert [(r["client"], r["transport"], r["model"], r["status"], r["decision"], r["error"]) for r in records] == [
        ("codex-user", "websocket", sent[0]["model"], 200, "allow", None)
    ] * 2
    assert [(r["input_tokens"], r["output_tokens"], r["cached_tokens"], r["reasoning_tokens"]) for r in records] == [
        (1900, 0, 0, 0),
        (1950, 7, 1792, 3),
    ]


# OpenAI's API, as a provider of Codex's own whose WebSocket is off.
OVER_HTTP = (
    "model_providers.over_http={name='OpenAI over HTTP', base_url='https://api.openai.com/v1',"
    " wire_api='responses', env_key='CODEX_API_KEY', supports_websockets=false}"
)


def test_codex_exec_over_http2_is_audited_whole_though_it_cancels_each_stream_at_its_end(
    codex, proxy, upstream, tmp_path
):
    # With its WebSocket off, Codex POSTs /v1/responses over HTTP/2 and resets each stream (CANCEL)
    # once it has read `response.completed`, before the server ends it: the call ended as it should.
    upstream.http = over_http(upstream.script)
    done = run_codex(codex, proxy, tmp_path / "home", "-c", "model_provider=over_http", "-c", OVER_HTTP)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ANSWER in done.stdout
    assert upstream.sessions == []
    sent = [r for r in upstream.requests if r.target == "/v1/responses"]
    records = responses_records(tmp_path / "audit.jsonl", len(sent))
    assert len(sent) == len(records) >= 1
    assert [(r["transport"], r["status"], r["decision"], r["error"], r["finish_reason"]) for r in records] == [
        ("http", 200, "allow", None, "completed")
    ] * len(sent)
    assert [(r["input_tokens"], r["output_tokens"]) for r in records] == [(1900, 0), (1950, 7)][: len(sent)]
