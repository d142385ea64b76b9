"""The README's Node example: the official npm SDKs, unchanged, in a shell that evaluated `./run.sh env`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy import ROOT, free_port
from tests.support.run_sh import env_exports, env_run, wait_listening

from tollgate.auditlog import PROCESS_EVENTS

NODE_CLIENTS = ROOT / ".node-clients"
SDKS = ("openai", "@anthropic-ai/sdk")
PRELOAD = f"--require={ROOT}/node-proxy/proxy.cjs"
APP = """
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
const messages = [{ role: "user", content: "Hello" }];
const chat = await new OpenAI({ apiKey: "tg-node-1", maxRetries: 0 }).chat.completions.create(
  { model: "gpt-4o-mini", messages });
const message = await new Anthropic({ apiKey: "tg-node-1", maxRetries: 0 }).messages.create(
  { model: "claude-sonnet-4-5", max_tokens: 64, messages });
console.log(JSON.stringify({
  openai: [chat.choices[0].message.content, chat.usage.total_tokens],
  anthropic: [message.content[0].text, message.usage.input_tokens, message.usage.output_tokens],
}));
"""
# What a user's shell may carry that would route Node without run.sh's help.
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NODE_USE_ENV_PROXY", "NODE_OPTIONS")


def node_and_npm() -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")


@pytest.fixture(scope="module")
def node_clients() -> Path:
    node_and_npm()
    NODE_CLIENTS.mkdir(exist_ok=True)
    if not all((NODE_CLIENTS / "node_modules" / sdk).exists() for sdk in SDKS):
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-timeout=60000", *SDKS],
            cwd=NODE_CLIENTS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm could not install {SDKS}: {done.stderr[-500:]}"
    (NODE_CLIENTS / "app.mjs").write_text(APP)
    return NODE_CLIENTS


@pytest.fixture
def run_sh_proxy(tmp_path: Path, upstream_ca, upstream_ca_pem) -> Iterator[tuple[int, dict[str, FakeUpstream]]]:
    """`./run.sh` on a free port, its tollgate.yaml in tmp_path: the audit lands in tmp_path too."""
    fakes = {name: FakeUpstream(upstream_ca, provider_answers) for name in ("openai", "anthropic")}
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "openai": {"upstream": fakes["openai"].url, "keys": ["sk-real-for-node"]},
                    "anthropic": {"upstream": fakes["anthropic"].url, "keys": ["sk-ant-real-for-node"]},
                },
                "clients": [{"name": "node-app", "keys": ["tg-node-1"]}],
            }
        )
    )
    port = free_port()
    proxy = subprocess.Popen(
        [
            str(ROOT / "run.sh"),
            "--listen-port",
            str(port),
            "--set",
            f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proxy)
        yield port, fakes
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for fake in fakes.values():
            fake.close()


def audit_records(path: Path, count: int) -> list[dict]:
    """The calls' records (not the process's started and stopped ones), once there are `count`."""
    deadline = time.monotonic() + 10  # the audit writer writes in batches, moments later
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        records = [r for r in map(json.loads, lines) if r["event"] not in PROCESS_EVENTS]
        if len(records) >= count:
            return records
        time.sleep(0.05)
    raise AssertionError(f"expected {count} audit records in {path}")


def test_node_sdks_through_run_sh_env(node_clients, run_sh_proxy, tmp_path):
    port, fakes = run_sh_proxy
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    done = subprocess.run(
        ["bash", "-c", f'eval "$("{ROOT}/run.sh" env -p {port})" && exec node app.mjs'],
        cwd=node_clients,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"openai": ["Hi there.", 28], "anthropic": ["Hello!", 25, 11]}
    assert fakes["openai"].received[-1].headers["authorization"] == "Bearer sk-real-for-node"
    assert fakes["anthropic"].received[-1].headers["x-api-key"] == "sk-ant-real-for-node"
    records = audit_records(tmp_path / "audit.jsonl", 2)
    assert [(r["client"], r["provider"], r["total_tokens"]) for r in records] == [
        ("node-app", "openai", 28),
        ("node-app", "anthropic", 136),
    ]


def fake_node(directory: Path, version: str) -> dict[str, str]:
    """An environment whose `node --version` says `version`; the real node does everything else (npm)."""
    directory.mkdir(exist_ok=True)
    script = directory / "node"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && {{ echo {version}; exit 0; }}\nexec {shutil.which("node")} "$@"\n'
    )
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return {**env, "PATH": f"{directory}:{env['PATH']}"}


@pytest.mark.parametrize("version", ["v22.21.0", "v22.22.1", "v24.0.0", "v24.5.0", "v25.2.1"])
def test_env_leaves_node_options_alone_where_node_routes_fetch_itself(tmp_path, version):
    node_and_npm()
    env = fake_node(tmp_path / "bin", version)
    # An npm that leaves a trace: nothing may be installed for this node.
    npm = tmp_path / "bin" / "npm"
    npm.write_text(f"#!/bin/sh\ntouch {tmp_path}/npm-ran\nexit 1\n")
    npm.chmod(0o755)
    done = env_run(env=env)
    assert "NODE_OPTIONS" not in done.stdout
    assert "export NODE_USE_ENV_PROXY=1\n" in done.stdout
    assert not (tmp_path / "npm-ran").exists()
    assert done.stderr == ""


@pytest.mark.parametrize("version", ["v18.20.0", "v20.20.2", "v22.20.0", "v23.11.0"])
def test_env_preloads_undici_where_node_ignores_https_proxy(tmp_path, version):
    node_and_npm()
    exports = env_exports(env=fake_node(tmp_path / "bin", version))
    assert exports["NODE_OPTIONS"] == f'"{PRELOAD}"'
    assert (ROOT / "node-proxy" / "node_modules" / "undici" / "package.json").exists()


def test_env_keeps_the_callers_node_options_and_adds_the_preload_once(tmp_path):
    node_and_npm()
    env = fake_node(tmp_path / "bin", "v20.20.2")
    done = subprocess.run(
        ["bash", "-c", f'eval "$("{ROOT}/run.sh" env)" && eval "$("{ROOT}/run.sh" env)" && printf %s "$NODE_OPTIONS"'],
        env={**env, "NODE_OPTIONS": '--max-old-space-size=512 --title="a $b"'},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f'--max-old-space-size=512 --title="a $b" {PRELOAD}'


def test_env_says_what_to_do_when_npm_cannot_install_undici(tmp_path):
    node_and_npm()
    # A checkout of its own, where undici is not installed yet; the venv and the CA are shared.
    root = tmp_path / "tollgate"
    (root / "node-proxy").mkdir(parents=True)
    for name in ("run.sh", "pyproject.toml", "node-proxy/package.json", "node-proxy/proxy.cjs"):
        shutil.copy2(ROOT / name, root / name)
    for name in (".venv", "certs"):
        (root / name).symlink_to(ROOT / name)
    env = fake_node(tmp_path / "bin", "v20.20.2")
    npm = tmp_path / "bin" / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error network request failed' >&2\nexit 1\n")
    npm.chmod(0o755)
    done = env_run(env=env, root=root)
    assert [line.split("=", 1)[0] for line in done.stdout.splitlines()] == [
        f"export {name}"
        for name in (
            "HTTPS_PROXY",
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "AWS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "NODE_USE_ENV_PROXY",
        )
    ]
    assert f"npm could not install undici into {root}/node-proxy" in done.stderr
    assert "would send fetch calls past Tollgate" in done.stderr
    assert not (root / "node-proxy" / "node_modules").exists()
