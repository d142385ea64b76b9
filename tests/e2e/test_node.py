"""The README's Node example: the official openai package, through Tollgate, unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from tests.support.proxy import ROOT

NODE_CLIENTS = ROOT / ".node-clients"
APP = """
import OpenAI from "openai";
const client = new OpenAI({ apiKey: "tg-node-1", maxRetries: 0 });
const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] });
console.log(JSON.stringify({ text: r.choices[0].message.content, tokens: r.usage.total_tokens }));
"""
# Node before 22.21 ignores HTTPS_PROXY; the README's preload for it.
PRELOAD = (
    'import { setGlobalDispatcher, EnvHttpProxyAgent } from "undici"; setGlobalDispatcher(new EnvHttpProxyAgent());\n'
)


@pytest.fixture(scope="module")
def node_clients() -> str:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are not installed")
    NODE_CLIENTS.mkdir(exist_ok=True)
    if not (NODE_CLIENTS / "node_modules" / "openai").exists():
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "openai", "undici"],
            cwd=NODE_CLIENTS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install openai and undici: {done.stderr[-300:]}")
    (NODE_CLIENTS / "app.mjs").write_text(APP)
    (NODE_CLIENTS / "proxy.mjs").write_text(PRELOAD)
    return str(NODE_CLIENTS)


def test_node_openai_through_tollgate(start_gateway, node_clients, confdir):
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-for-node"]}},
            "clients": [{"name": "node-app", "keys": ["tg-node-1"]}],
        }
    )
    env = {
        **os.environ,
        "HTTPS_PROXY": gw.proxy.proxy_url,
        "NODE_USE_ENV_PROXY": "1",
        "NODE_EXTRA_CA_CERTS": str(confdir / "mitmproxy-ca-cert.pem"),
    }
    done = subprocess.run(
        ["node", "--import", "./proxy.mjs", "app.mjs"],
        cwd=node_clients,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"text":"Hi there.","tokens":28}'
    assert gw.fakes["openai"].received[-1].headers["authorization"] == "Bearer sk-real-for-node"
    assert gw.wait_audit(1)[-1]["client"] == "node-app"
