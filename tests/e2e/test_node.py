"""The README's Node example: the official npm SDKs, unchanged, in a shell that evaluated `./run.sh env`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support import streams
from tests.support.aws import botocore_accepts
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.npm_cli import NODE_CLIENTS
from tests.support.proxy import ROOT
from tests.support.run_sh import env_exports, env_run, run_sh_listening
from tests.support.tcp import TcpServer

from tollgate.records.audit.auditlog import PROCESS_EVENTS

SDKS = ("openai", "@anthropic-ai/sdk", "@aws-sdk/client-bedrock-runtime")
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
# The AWS SDK for JavaScript speaks HTTP/2 (node:http2) to Bedrock's runtime; forced onto HTTP/1.1 it
# uses an https.Agent of its own, or the one it is given (here Node's default agent).
AWS_APP = """
import https from "node:https";
import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand } from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler } from "@smithy/node-http-handler";
const input = { modelId: "amazon.nova-lite-v1:0", inferenceConfig: { maxTokens: 64 },
  messages: [{ role: "user", content: [{ text: "Hello" }] }] };
const converse = async (requestHandler) => {
  const client = new BedrockRuntimeClient({ region: "us-east-1", maxAttempts: 1, requestHandler });
  try {
    const answer = await client.send(new ConverseCommand(input));
    return [answer.output.message.content[0].text, answer.usage.totalTokens];
  } finally {
    client.destroy();
  }
};
const client = new BedrockRuntimeClient({ region: "us-east-1", maxAttempts: 1 });
const streamed = await client.send(new ConverseStreamCommand(input));
let text = "", usage = null;
for await (const event of streamed.stream) {
  if (event.contentBlockDelta) text += event.contentBlockDelta.delta.text;
  if (event.metadata) usage = event.metadata.usage;
}
client.destroy();
console.log(JSON.stringify({
  http2: await converse(undefined),
  stream: [text, usage.inputTokens, usage.outputTokens],
  own_agent: await converse(new NodeHttpHandler()),
  default_agent: await converse(new NodeHttpHandler({ httpsAgent: https.globalAgent })),
}));
"""
# Virtual AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) with the SDK's default
# handler: HTTP/2 for every operation, signed over `:authority` in place of `host`.
AWS_SIGNED_APP = """
import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, InvokeModelCommand }
  from "@aws-sdk/client-bedrock-runtime";
const client = new BedrockRuntimeClient({ region: "us-east-1", maxAttempts: 1 });
const sent = [];
client.middlewareStack.add((next) => async (args) => {
  sent.push(args.request.headers.authorization.match(/SignedHeaders=([^,]+)/)[1]);
  return next(args);
}, { step: "deserialize", name: "signedHeaders" });
const input = { modelId: "amazon.nova-lite-v1:0", inferenceConfig: { maxTokens: 64 },
  messages: [{ role: "user", content: [{ text: "Hello" }] }] };
const answer = await client.send(new ConverseCommand(input));
const streamed = await client.send(new ConverseStreamCommand(input));
let text = "", usage = null;
for await (const event of streamed.stream) {
  if (event.contentBlockDelta) text += event.contentBlockDelta.delta.text;
  if (event.metadata) usage = event.metadata.usage;
}
const invoked = await client.send(new InvokeModelCommand({ modelId: "anthropic.claude-3-haiku-20240307-v1:0",
  contentType: "application/json", body: JSON.stringify({ anthropic_version: "bedrock-2023-05-31",
  max_tokens: 64, messages: [{ role: "user", content: "Hello" }] }) }));
client.destroy();
console.log(JSON.stringify({
  converse: [answer.output.message.content[0].text, answer.usage.totalTokens],
  stream: [text, usage.inputTokens, usage.outputTokens],
  invoke: JSON.parse(new TextDecoder().decode(invoked.body)).stop_reason,
  signed: sent,
}));
"""
# Loaded first (`node --require`): every connection or name look-up to anything but loopback is
# written down and refused, so a client that went around Tollgate fails here and reaches nothing.
GUARD = """
"use strict";
const fs = require("node:fs"), net = require("node:net"), dns = require("node:dns");
const loopback = (host) => host === "localhost" || /^127\\./.test(host) || host === "::1";
const refuse = (host) => {
  fs.appendFileSync(process.env.GUARD_LOG, host + "\\n");
  return new Error(`guard: ${host} is not loopback`);
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const options = typeof first === "object" && first !== null ? first : { port: first, host: args[1] };
  const host = options.path ? "localhost" : String(options.host ?? "localhost");
  if (!loopback(host)) throw refuse(host);
  return connect.apply(this, args);
};
const lookup = dns.lookup;
dns.lookup = function (host, ...rest) {
  if (!loopback(host)) throw refuse(host);
  return lookup.call(this, host, ...rest);
};
"""
# Node's own modules, each through the preload: an agent of the program's own, http2, and a host of NO_PROXY.
MODULES_APP = """
const https = require("node:https"), http2 = require("node:http2");
const results = {};
const failure = (name, resolve) => (error) => { results[name] = error.message; resolve(); };
const get = (name, url) => new Promise((resolve) => {
  try {
    const request = https.request(url, { agent: new https.Agent({ keepAlive: true }) }, () => resolve());
    request.on("error", failure(name, resolve)).end();
  } catch (error) {
    failure(name, resolve)(error);
  }
});
const connect = (name, url) => new Promise((resolve) => {
  const session = http2.connect(url);
  session.on("error", (error) => { session.destroy(); failure(name, resolve)(error); });
});
(async () => {
  await get("agent", "https://api.openai.com/v1/models");
  await connect("http2", "https://api.anthropic.com");
  await get("no_proxy", "https://bypass.example/");
  console.log(JSON.stringify(results));
})();
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
    (NODE_CLIENTS / "aws.mjs").write_text(AWS_APP)
    (NODE_CLIENTS / "aws_signed.mjs").write_text(AWS_SIGNED_APP)
    (NODE_CLIENTS / "guard.cjs").write_text(GUARD)
    (NODE_CLIENTS / "modules.cjs").write_text(MODULES_APP)
    return NODE_CLIENTS


@pytest.fixture(scope="module")
def node24(node_clients) -> str:
    """Node 24 from the npm registry (the `node` package ships its binary), once: its node binary."""
    binary = node_clients / "node24" / "node_modules" / "node" / "bin" / "node"
    if not binary.exists():
        (node_clients / "node24").mkdir(exist_ok=True)
        (node_clients / "node24" / "package.json").write_text("{}\n")  # npm installs here, not a level up
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-timeout=60000", "node@24"],
            cwd=node_clients / "node24",
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"npm could not install node@24: {done.stderr[-300:]}")
    return str(binary)


def bedrock_answers(received: Received) -> Reply:
    if received.path.endswith("/converse-stream"):
        return Reply(
            200, chunks=streams.bedrock_converse(), headers={"content-type": "application/vnd.amazon.eventstream"}
        )
    return provider_answers(received)


@pytest.fixture
def run_sh_proxy(tmp_path: Path, upstream_ca, upstream_ca_pem) -> Iterator[tuple[int, dict[str, FakeUpstream]]]:
    """`./run.sh` on a free port, its tollgate.yaml in tmp_path: the audit lands in tmp_path too."""
    fakes = {name: FakeUpstream(upstream_ca, provider_answers) for name in ("openai", "anthropic")}
    fakes["bedrock"] = FakeUpstream(upstream_ca, bedrock_answers)
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "openai": {"upstream": fakes["openai"].url, "keys": ["sk-real-for-node"]},
                    "anthropic": {"upstream": fakes["anthropic"].url, "keys": ["sk-ant-real-for-node"]},
                    "bedrock": {"upstream": fakes["bedrock"].url, "bearer_token": "ABSK-real-for-node"},
                },
                "clients": [{"name": "node-app", "keys": ["tg-node-1"]}],
            }
        )
    )
    try:
        with run_sh_listening(tmp_path, upstream_ca_pem) as port:
            yield port, fakes
    finally:
        for fake in fakes.values():
            fake.close()


def audit_records(path: Path, count: int) -> list[dict]:
    """The calls' records (not the process's started and stopped ones), once there are `count`."""
    deadline = time.monotonic() + 10  # the audit writer writes in batches, moments later
    while time.monotonic() < deadline:
        lines = path.read_text().rpartition("\n")[0].splitlines() if path.exists() else []  # whole lines
        records = [r for r in map(json.loads, lines) if r["event"] not in (*PROCESS_EVENTS, "connection")]
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


def node_through(
    port: int, script: str, node_clients: Path, env: dict[str, str], guard_log: Path
) -> subprocess.CompletedProcess[str]:
    """`script` run by Node with the proxy `./run.sh env` gives for `port`, and the guard that writes
    to `guard_log` each host it reached around it: checked that none was, and that it succeeded."""
    done = subprocess.run(
        ["bash", "-c", f'eval "$("{ROOT}/run.sh" env -p {port})" && exec node --require ./guard.cjs {script}'],
        cwd=node_clients,
        env={**env, "GUARD_LOG": str(guard_log)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not guard_log.exists(), f"went around Tollgate to {guard_log.read_text()}"
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("node", ["node", "node24"])
def test_aws_sdk_for_javascript_through_run_sh_env(node_clients, run_sh_proxy, tmp_path, request, node):
    """HTTP/2 to Bedrock (Converse and ConverseStream), on the machine's Node and on Node 24."""
    binary = request.getfixturevalue("node24") if node == "node24" else shutil.which("node")
    port, fakes = run_sh_proxy
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith("AWS_")}
    guard_log = tmp_path / "guard.log"
    env |= {"PATH": f"{Path(binary).parent}:{env['PATH']}", "AWS_BEARER_TOKEN_BEDROCK": "tg-node-1"}
    done = node_through(port, "aws.mjs", node_clients, env, guard_log)
    assert json.loads(done.stdout) == {
        "http2": ["Hello!", 23],
        "stream": ["Hello", 14, 7],
        "own_agent": ["Hello!", 23],
        "default_agent": ["Hello!", 23],
    }
    converse, stream = "/model/amazon.nova-lite-v1%3A0/converse", "/model/amazon.nova-lite-v1%3A0/converse-stream"
    assert [r.path for r in fakes["bedrock"].received] == [stream, converse, converse, converse]
    assert {r.headers["authorization"] for r in fakes["bedrock"].received} == {"Bearer ABSK-real-for-node"}
    records = audit_records(tmp_path / "audit.jsonl", 4)
    assert [(r["client"], r["endpoint"], r["input_tokens"], r["output_tokens"], r["status"]) for r in records] == [
        ("node-app", "converse-stream", 14, 7, 200),
        *[("node-app", "converse", 17, 6, 200)] * 3,
    ]


VIRTUAL_AWS = ("TGNODE00000000000000", "node-virtual-SECRET-0000")
REAL_AWS = ("AKIAREALNODE00000000", "real-node-aws-SECRET-0000")


@pytest.fixture
def run_sh_signing_proxy(tmp_path: Path, upstream_ca, upstream_ca_pem) -> Iterator[tuple[int, FakeUpstream]]:
    """`./run.sh` whose client signs with virtual AWS credentials and whose Bedrock checks the
    signature Tollgate makes with the real ones (botocore, over what it received)."""

    def answers(received: Received) -> Reply:
        if not botocore_accepts(received, *REAL_AWS):
            return Reply(
                403, {"message": "fake Bedrock: bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"}
            )
        return bedrock_answers(received)

    fake = FakeUpstream(upstream_ca, answers)
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "bedrock": {
                        "upstream": fake.url,
                        "credentials": {"access_key_id": REAL_AWS[0], "secret_access_key": REAL_AWS[1]},
                    }
                },
                "clients": [
                    {
                        "name": "node-app",
                        "aws_credentials": [{"access_key_id": VIRTUAL_AWS[0], "secret_access_key": VIRTUAL_AWS[1]}],
                    }
                ],
            }
        )
    )
    try:
        with run_sh_listening(tmp_path, upstream_ca_pem) as port:
            yield port, fake
    finally:
        fake.close()


def test_aws_sdk_for_javascript_signs_with_virtual_aws_credentials(node_clients, run_sh_signing_proxy, tmp_path):
    """The SDK's default handler speaks HTTP/2 and signs `:authority` in place of `host`: Tollgate
    verifies that signature as AWS does, then signs the request anew with the real credentials."""
    port, fake = run_sh_signing_proxy
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": VIRTUAL_AWS[0], "AWS_SECRET_ACCESS_KEY": VIRTUAL_AWS[1]}
    guard_log = tmp_path / "guard.log"
    done = node_through(port, "aws_signed.mjs", node_clients, env, guard_log)
    result = json.loads(done.stdout)
    assert {key: value for key, value in result.items() if key != "signed"} == {
        "converse": ["Hello!", 23],
        "stream": ["Hello", 14, 7],
        "invoke": "max_tokens",
    }
    # What the SDK signed: `:authority`, never `host` (its HTTP/2 requests carry none).
    assert len(result["signed"]) == 3
    assert all(s.split(";")[0] == ":authority" and "host" not in s.split(";") for s in result["signed"])
    model = "/model/amazon.nova-lite-v1%3A0"
    assert [r.path for r in fake.received] == [
        f"{model}/converse",
        f"{model}/converse-stream",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
    ]
    for received in fake.received:
        assert botocore_accepts(received, *REAL_AWS) and VIRTUAL_AWS[0] not in str(received.headers)
    records = audit_records(tmp_path / "audit.jsonl", 3)
    assert [(r["client"], r["auth"], r["endpoint"], r["status"], r["total_tokens"]) for r in records] == [
        ("node-app", "sigv4", "converse", 200, 23),
        ("node-app", "sigv4", "converse-stream", 200, 21),
        ("node-app", "sigv4", "invoke", 200, 77),
    ]


class RefusingProxy(TcpServer):
    """A proxy that writes down each CONNECT head it gets and answers 407."""

    def __init__(self) -> None:
        super().__init__(threaded=False)
        self.heads: list[str] = []
        self.start()

    def serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                head += chunk
            self.heads.append(head.decode("latin-1"))
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")


def test_preload_tunnels_node_modules_with_the_proxy_login_and_honours_no_proxy(node_clients, tmp_path):
    proxy = RefusingProxy()
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    guard_log = tmp_path / "guard.log"
    try:
        done = subprocess.run(
            [
                "bash",
                "-c",
                f'eval "$("{ROOT}/run.sh" env -p {proxy.port})"'
                f' && export HTTPS_PROXY="http://alice:s%3Acret@127.0.0.1:{proxy.port}" NO_PROXY=".example, localhost"'
                " && exec node --require ./guard.cjs modules.cjs",
            ],
            cwd=node_clients,
            env={**env, "GUARD_LOG": str(guard_log)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    refused = f"the proxy 127.0.0.1:{proxy.port} refused CONNECT %s:443: HTTP/1.1 407 Proxy Authentication Required"
    assert json.loads(done.stdout) == {
        "agent": refused % "api.openai.com",
        "http2": refused % "api.anthropic.com",
        "no_proxy": "guard: bypass.example is not loopback",
    }
    login = base64.b64encode(b"alice:s:cret").decode()
    assert proxy.heads == [
        f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nProxy-Authorization: Basic {login}\r\n\r\n"
        for host in ("api.openai.com", "api.anthropic.com")
    ]
    assert guard_log.read_text() == "bypass.example\n"  # NO_PROXY's host went straight, past the proxy


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
def test_env_preloads_without_undici_where_node_routes_fetch_itself(tmp_path, version):
    """Node's own NODE_USE_ENV_PROXY routes fetch and the default agents, not the agents libraries
    make nor http2: the preload, which needs nothing installed for them."""
    node_and_npm()
    env = fake_node(tmp_path / "bin", version)
    # An npm that leaves a trace: nothing may be installed for this node.
    npm = tmp_path / "bin" / "npm"
    npm.write_text(f"#!/bin/sh\ntouch {tmp_path}/npm-ran\nexit 1\n")
    npm.chmod(0o755)
    done = env_run(env=env)
    assert f'export NODE_OPTIONS="{PRELOAD}"\n' in done.stdout
    assert "export NODE_USE_ENV_PROXY=1\n" in done.stdout
    assert not (tmp_path / "npm-ran").exists()
    assert done.stderr.startswith("tollgate: HTTPS_PROXY: ") and done.stderr.count("\n") == 1


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
    for name in (".venv", "certs", "requirements"):
        (root / name).symlink_to(ROOT / name)
    env = fake_node(tmp_path / "bin", "v20.20.2")
    npm = tmp_path / "bin" / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error network request failed' >&2\nexit 1\n")
    npm.chmod(0o755)
    # What ./run.sh does as its proxy starts: it says what it could not install, and starts.
    done = subprocess.run(
        ["/bin/bash", "-c", f'source "{root}/run.sh" && node_proxy_for_env'],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0
    assert f"npm could not install undici into {root}/node-proxy" in done.stderr
    assert "would send fetch calls past Tollgate" in done.stderr
    assert not (root / "node-proxy" / "node_modules").exists()
    # `./run.sh env` installs nothing: it says what is missing, and to run ./run.sh first, and
    # prints the other exports.
    done = subprocess.run([str(root / "run.sh"), "env"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0
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
    assert f"missing: undici beside the Node preload, for node v20.20.2 ({root}/node-proxy/node_modules)" in done.stderr
    assert "run ./run.sh first (it installs it)" in done.stderr
    assert not (root / "node-proxy" / "node_modules").exists()
