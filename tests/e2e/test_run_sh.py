"""The commands of the README, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import time

import yaml

from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy import ROOT, free_port


def test_env_prints_absolute_exports():
    done = subprocess.run([str(ROOT / "run.sh"), "env"], capture_output=True, text=True, timeout=300, check=True)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    bundle = f'"{ROOT}/certs/ca-bundle.pem"'
    assert exports["HTTPS_PROXY"] == '"http://127.0.0.1:8080"'
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert exports[name] == bundle
    assert exports["NODE_EXTRA_CA_CERTS"] == f'"{ROOT}/certs/mitmproxy-ca-cert.pem"'
    text = (ROOT / "certs" / "ca-bundle.pem").read_text()
    assert text.count("BEGIN CERTIFICATE") > 10  # the system's roots, and Tollgate's CA last
    assert text.rstrip().endswith((ROOT / "certs" / "mitmproxy-ca-cert.pem").read_text().rstrip())


def test_run_sh_uses_tollgate_yaml_here_and_the_callers_options(tmp_path, upstream_ca, upstream_ca_pem, confdir, bundle):
    fake = FakeUpstream(upstream_ca, provider_answers)
    (tmp_path / "tollgate.yaml").write_text(yaml.safe_dump({
        "providers": {"openai": {"upstream": fake.url, "keys": ["sk-real-run-sh"]}},
        "clients": [{"name": "curl-user", "keys": ["tg-curl-user-1"]}],
    }))
    port = free_port()
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "--listen-port", str(port), "--set", f"confdir={confdir}",
         "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proxy.poll() is None:
            done = subprocess.run(
                ["curl", "-sS", "--max-time", "10", "https://api.openai.com/v1/chat/completions",
                 "-H", "Authorization: Bearer tg-curl-user-1", "-H", "Content-Type: application/json",
                 "-d", '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'],
                capture_output=True, text=True, timeout=30,
                env={**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{port}", "CURL_CA_BUNDLE": str(bundle)})
            if done.returncode != 7:  # 7: nothing listens yet
                break
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["usage"]["total_tokens"] == 28
        assert fake.received[-1].headers["authorization"] == "Bearer sk-real-run-sh"
        audit = tmp_path / "audit.jsonl"
        deadline = time.monotonic() + 10  # the audit writer writes in batches, moments later
        while time.monotonic() < deadline and not (audit.exists() and audit.read_text()):
            time.sleep(0.05)
        record = json.loads(audit.read_text().splitlines()[-1])
        assert (record["client"], record["model"], record["total_tokens"]) == ("curl-user", "gpt-4o-mini", 28)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        fake.close()
