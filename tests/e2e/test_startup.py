"""A configuration that is wrong stops mitmdump at start-up, naming the field."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import run_tollgate
from tests.support.processes import communicate_within
from tests.support.proxy import GATEWAY, free_port, mitmdump, run_to_exit

ROOT = Path(__file__).resolve().parents[2]


# botocore is loaded at start-up only where a configuration may reach Bedrock: measured in fresh
# processes (a process of its own, so end to end).
ADDONS = ROOT / "addons"
# One process imports Tollgate and mitmproxy (most of the time a fresh process takes), then forks a
# child per configuration: each child starts where a fresh process that imported Tollgate would,
# without botocore, and says whether configuring loaded it.
BOTOCORE_LOADED = """
import os, sys
from mitmproxy.test import taddons
from tollgate.proxy.pipeline import gateway as tollgate

assert "botocore" not in sys.modules, "importing Tollgate loaded botocore"
for path in sys.argv[1:]:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            gateway = tollgate()
            with taddons.context(gateway) as tctx:
                tctx.configure(gateway, tollgate_config=path)
                print(path, "botocore" in sys.modules, flush=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, path
# What it has printed is all: the interpreter's teardown would collect every object mitmproxy and
# Tollgate made, a second or more.
sys.stdout.flush()
os._exit(0)
"""

BEDROCK_MENTIONS = {
    "openai-only": {},
    "bedrock-keys": {"providers": {"bedrock": {"keys": ["ABSK-bedrock-key"]}}},
    "a-clients-aws-keys": {
        "clients": [{"name": "a", "aws_credentials": [{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s"}]}]
    },
    "a-route-to-bedrock": {
        "overrides": [
            {
                "match": {"provider": "openai"},
                "provider": "bedrock",
                "upstream": "https://bedrock-runtime.us-east-1.amazonaws.com",
            }
        ]
    },
}


@pytest.fixture(scope="module")
def botocore_loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Per configuration of BEDROCK_MENTIONS, what its child process printed ("True" when
    configuring it loaded botocore)."""
    tmp_path = tmp_path_factory.mktemp("botocore")
    paths = {}
    for case, mention in BEDROCK_MENTIONS.items():
        config: dict[str, Any] = {
            "providers": {"openai": {"keys": ["sk-real"]}},
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        }
        for name, value in mention.items():
            config[name] = {**config.get(name, {}), **value} if isinstance(value, dict) else value
        paths[case] = tmp_path / f"{case}.yaml"
        paths[case].write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-c", BOTOCORE_LOADED, *map(str, paths.values())],
        cwd=ADDONS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = dict(line.split() for line in done.stdout.splitlines() if line.endswith((" True", " False")))
    return {case: printed.get(str(path), "nothing: " + done.stderr[-2000:]) for case, path in paths.items()}


@pytest.mark.parametrize(
    ("case", "loaded"),
    [("openai-only", False), ("bedrock-keys", True), ("a-clients-aws-keys", True), ("a-route-to-bedrock", True)],
    ids=list(BEDROCK_MENTIONS),
)
def test_botocore_is_loaded_only_for_a_configuration_that_mentions_bedrock(
    botocore_loaded: dict[str, str], case: str, loaded: bool
) -> None:
    # A proxy that never sees Bedrock is spared botocore's objects and start-up time; one that may
    # loads it at start-up, so that no call waits for the import.
    assert botocore_loaded[case] == str(loaded)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("providers:\n  openai:\n    keyz: [a]\n", {}, "providers.openai.keyz: unknown key"),
        ("clients:\n  - name: alice\n    keys: [a]\n    grups: [x]\n", {}, "clients.0.grups: unknown key"),
        (
            "providers:\n  gemini:\n    keys: ['${TOLLGATE_TEST_UNSET_VAR}']\n",
            {},
            "providers.gemini.keys.0: environment variable TOLLGATE_TEST_UNSET_VAR is not set",
        ),
        ("providers:\n  openai:\n    timeout: -1\n", {}, "providers.openai.timeout: Input should be greater than 0"),
        ("providers:\n  openai:\n    upstream: api.openai.com\n", {}, "providers.openai.upstream: must look like"),
        ("providers: [\n", {}, "not valid YAML at line"),
        (
            "ledger:\n  store: sqlite:////nonexistent-tollgate-dir/ledger.sqlite\n",
            {},
            "ledger.store: cannot open the ledger at /nonexistent-tollgate-dir/ledger.sqlite: its directory",
        ),
        ("ledger:\n  store: redis://host:port/0\n", {}, "ledger.store: bad port"),
        (
            "limits:\n  - match: {group: interns}\n",
            {},
            "limits.0: a limit must set at least one of requests_per_minute",
        ),
        ("prices:\n  - input_per_mtok: 1\n", {}, "prices.0.output_per_mtok: missing (it is required)"),
        (
            "providers:\n  openai:\n    ephemeral_credentials: allow\n"
            "limits:\n  - match: {client: alice}\n    tokens_per_day: 1000\n",
            {},
            "providers.openai.ephemeral_credentials: allow lets a caller mint a credential it spends without"
            " Tollgate, and limits.0 ('client=alice per client') caps tokens_per_day",
        ),
        (
            "providers:\n  acme:\n    kind: openai_compatible\n    hosts: [api.acme.example, api.groq.com]\n",
            {},
            "providers.acme.hosts.1: 'api.groq.com' matches hosts of groq ('api.groq.com'), which are its own",
        ),
        (
            "clients:\n  - name: alice\n    keys: [tg-alice-1]\nidentity:\n  jwt:\n    - issuer: https://idp.example\n"
            "      audience: tollgate\n      secret: 0123456789abcdef0123456789abcdef\n      algorithms: [HS256]\n",
            {},
            "identity.jwt.0.client_prefix: not set, and clients are configured: a token of https://idp.example"
            " could take a configured client's name",
        ),
        (
            "egress:\n  deny: ['*.com']\n",
            {},
            "egress.deny.0: '*.com': write out its last two labels (its domain)",
        ),
        (
            "egress:\n  allow: [api.example.com]\n  alow: [x.example.com]\n",
            {},
            "egress.alow: unknown key",
        ),
        (
            "egress:\n  services:\n    notes: ['notes..example.com']\n",
            {},
            "egress.services.notes.0: 'notes..example.com' is not a host name glob",
        ),
    ],
)
def test_bad_configuration_stops_start_up(tmp_path, confdir, monkeypatch, text, env, expected):
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_VAR", raising=False)
    config = tmp_path / "tollgate.yaml"
    config.write_text(text)
    done = run_to_exit(confdir, config)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert expected in output, output


def test_missing_configuration_file_stops_start_up(tmp_path, confdir):
    done = run_to_exit(confdir, tmp_path / "nope.yaml")
    assert done.returncode != 0
    assert "nope.yaml: cannot read" in done.stdout + done.stderr


def test_environment_variables_are_expanded(tmp_path, confdir, start_gateway, monkeypatch):
    monkeypatch.setenv("TOLLGATE_TEST_OPENAI_KEY", "sk-from-the-environment")
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["${TOLLGATE_TEST_OPENAI_KEY}"]}},
            "clients": [{"name": "ci", "keys": ["tg-ci-1"]}],
        }
    )
    result = gw.run("""
        from openai import OpenAI
        OpenAI(api_key="tg-ci-1", max_retries=0).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        report(ok=True)
    """)
    assert result == {"ok": True}
    assert gw.fakes["openai"].received[-1].headers["authorization"] == "Bearer sk-from-the-environment"


def test_an_audit_that_cannot_take_its_first_record_stops_start_up_naming_it(tmp_path, confdir):
    config = tmp_path / "tollgate.yaml"
    config.write_text("audit:\n  path: /dev/full\n")  # every write fails with ENOSPC, as on a full disk
    began = time.monotonic()
    done = run_to_exit(confdir, config)
    assert time.monotonic() - began < 15
    assert done.returncode != 0
    assert "audit.path: cannot write to /dev/full: No space left on device" in done.stdout + done.stderr


def test_the_audit_opens_with_the_started_record_and_closes_with_the_stopped_one(start_gateway):
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-REAL-startup-1"]}},
            "clients": [{"name": "alice", "keys": ["tg-alice-startup-2"]}],
        },
        env={"TOLLGATE_INSTANCE": "gw-test-host/w2"},  # as `tollgate serve` names a fleet's worker
    )
    result = gw.run("""
        import openai
        served = openai.OpenAI(api_key="tg-alice-startup-2", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        try:
            openai.OpenAI(api_key="tg-nobody", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        except openai.AuthenticationError as e:
            report(tokens=served.usage.total_tokens, refused=e.status_code)
    """)
    assert result == {"tokens": 28, "refused": 401}
    assert len(gw.wait_audit(2)) == 2  # the calls' records, as every test reads them
    pid = gw.proxy.process.pid
    gw.proxy.stop()  # SIGTERM, as a service manager stops it
    assert gw.proxy.process.returncode == 0
    started, served, refused, stopped, checkpoint = gw.audit_records()
    assert checkpoint["event"] == "audit_checkpoint"
    assert started == {
        "event": "tollgate_started",
        "instance": "gw-test-host/w2",
        "ts": started["ts"],
        "version": importlib.metadata.version("tollgate"),
        "pid": pid,
        "listen": [f"127.0.0.1:{gw.proxy.port}"],
        "config_sha256": hashlib.sha256(gw.config_path.read_bytes()).hexdigest(),
        "previous_chain": None,
        "seq": 1,
        "chain": started["chain"],
    }
    assert [(r["event"], r["instance"], r["status"]) for r in (served, refused)] == [
        ("llm_call", "gw-test-host/w2", 200),
        ("llm_call", "gw-test-host/w2", 401),
    ]
    assert stopped == {
        "event": "tollgate_stopped",
        "instance": "gw-test-host/w2",
        "ts": stopped["ts"],
        "pid": pid,
        "calls": 2,
        "seq": 4,
        "chain": stopped["chain"],
    }
    assert started["ts"] <= served["ts"] <= refused["ts"] <= stopped["ts"]

    # `tollgate usage` sums the calls and nothing else: the process's records are no calls, nor malformed.
    done = run_tollgate(
        "usage", "--from-audit", str(gw.audit_path), "--since", "1d", "--by", "client", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["total"]["requests"], report["total"]["total_tokens"], report["malformed"]) == (2, 28, 0)
    assert done.stderr == ""


POLICY = 'package tollgate\n\nimport rego.v1\n\ndeny contains "no" if input.model == "nope"\n'


def run_sh_to_exit(directory: Path, confdir: Path, port: int, limit: float = 30) -> tuple[int, str]:
    """`./run.sh` in `directory` as a user starts it: how it ended and what it said (a failure past
    `limit` seconds)."""
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "--listen-port", str(port), "--set", f"confdir={confdir}"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output, _, ended = communicate_within(proxy, limit)  # killed past it: it ignores SIGTERM when hung
    if not ended:
        pytest.fail(f"run.sh did not exit within {limit:g} s:\n{output}")
    return proxy.returncode, output


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("policy:\n  rego: [policy.rego]\n", "address already in use"),
        ("policy:\n  rego: [policy.rego]\nclients: [{name: a, keyz: [x]}]\n", "clients.0.keyz: unknown key"),
        ("policy:\n  rego: [policy.rego]\naudit:\n  path: /dev/full\n", "audit.path: cannot write to /dev/full"),
        ("policy:\n  rego: [broken.rego]\n", "broken.rego:3"),
    ],
    ids=["busy port", "bad configuration", "unwritable audit", "policy that does not compile"],
)
def test_a_start_up_failure_exits_within_seconds_naming_why(tmp_path, confdir, config, expected):
    (tmp_path / "tollgate.yaml").write_text(config)
    (tmp_path / "policy.rego").write_text(POLICY)
    (tmp_path / "broken.rego").write_text("package tollgate\n\ndeny contains if {\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1] if expected == "address already in use" else free_port()
        code, output = run_sh_to_exit(tmp_path, confdir, port)
    # It exited on its own, within run_sh_to_exit's limit: nothing hung.
    assert code != 0, output
    assert expected in output, output


def advice(port: int) -> str:
    return (
        f"Tollgate cannot listen on 127.0.0.1:{port}: another program listens there (another Tollgate?). Stop what"
        " holds it, or listen elsewhere: --listen-port PORT (and --listen-host HOST), or TOLLGATE_LISTEN=HOST:PORT"
        " for ./run.sh and tollgate serve"
    )


def process_records(audit: Path) -> list[dict]:
    return [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []


def test_a_start_that_cannot_listen_writes_no_started_record_and_says_what_to_change(tmp_path, confdir):
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"audit:\n  path: {audit}\n")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [mitmdump(), "-s", str(GATEWAY), "--listen-host", "127.0.0.1", "--listen-port", str(port),
             "--set", f"confdir={confdir}", "--set", f"tollgate_config={config}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert process_records(audit) == []  # no tollgate_started, and so no tollgate_stopped
    assert advice(port) in output, output

    # Started where it can listen, the same file takes the started record, once listening, and the
    # stopped one at the end.
    port = free_port()
    proxy = subprocess.Popen(
        [mitmdump(), "-s", str(GATEWAY), "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"confdir={confdir}", "--set", f"tollgate_config={config}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not process_records(audit) and proxy.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        (started,) = process_records(audit)
        assert (started["event"], started["listen"]) == ("tollgate_started", [f"127.0.0.1:{port}"])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it listens, as its record says
    finally:
        proxy.terminate()
        output, _ = proxy.communicate(timeout=30)
    events = [r["event"] for r in process_records(audit)]
    assert events == ["tollgate_started", "tollgate_stopped", "audit_checkpoint"], output


def test_run_sh_with_tollgate_listen_on_a_port_in_use_says_what_to_change(tmp_path, confdir):
    (tmp_path / "tollgate.yaml").write_text("clients: [{name: alice, keys: [tg-alice-startup-3]}]\n")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(ROOT / "run.sh"), "--set", f"confdir={confdir}"],
            cwd=tmp_path,
            env={**os.environ, "TOLLGATE_LISTEN": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert process_records(tmp_path / "audit.jsonl") == []
    assert advice(port) in output, output
    assert "--mode" not in output, output  # one hint, Tollgate's: not mitmproxy's too


RUNTIME_POLICY = "package tollgate\n\nimport rego.v1\n\ndeny contains r if {\n  r := opa.runtime().env.HOME\n}\n"


class Knocker:
    """Tries to connect to a port every few milliseconds while a start-up runs, within a bound."""

    def __init__(self, port: int, limit: float = 60) -> None:
        self.port, self.limit = port, limit
        self.accepted = 0
        self.tries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._knock, daemon=True)
        self._thread.start()

    def _knock(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.tries += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.accepted += 1
            except OSError:
                pass
            self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a tiny tmpfs filled to the last block (mounting needs root)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        with open(mount / "fill", "wb") as fill:
            try:
                while True:
                    fill.write(b"\0" * 4096)
                    fill.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "clients:\n  - name: alice\n    keyz: [a]\n",
            "Tollgate configuration: {config}: clients.0.keyz: unknown key (did you mean keys?)",
        ),
        (
            "providers:\n  openai:\n    keys: [sk-REAL-startup-9]\nclients:\n  - name: bob\n    keys: [sk-REAL-startup-9]\n",
            "Tollgate configuration: {config}: clients.0.keys.0: client 'bob' is given providers.openai.keys.0,"
            " a real key of the provider; give the client a virtual key of its own (tollgate key new --client bob)",
        ),
        (
            "policy:\n  rego: [runtime.rego]\n  network: allow\n",
            "Tollgate configuration: policy.rego: {dir}/runtime.rego:6: calls opa.runtime, which a policy may not"
            " call: its env holds Tollgate's environment, the providers' real keys among it",
        ),
        (
            "audit:\n  path: {full}/audit.jsonl\nledger:\n  store: sqlite:///{dir}/ledger.sqlite\n",
            "Tollgate configuration: audit.path: cannot write to {full}/audit.jsonl: No space left on device",
        ),
    ],
    ids=["unknown key", "real key as virtual key", "policy calls opa.runtime", "audit on a full disk"],
)
@pytest.mark.parametrize("how", ["mitmdump", "mitmdump on an address", "run.sh"])
def test_a_bad_configuration_is_one_line_and_nothing_ever_listens(tmp_path, confdir, request, config, expected, how):
    full = request.getfixturevalue("full_disk") if "{full}" in config else tmp_path
    path = tmp_path / "tollgate.yaml"
    path.write_text(config.format(full=full, dir=tmp_path))
    (tmp_path / "runtime.rego").write_text(RUNTIME_POLICY)
    port = free_port()
    # mitmdump as a user runs it by hand (listening on every address, or on one IP address, which
    # mitmproxy binds before it loads the script), or ./run.sh (on 127.0.0.1).
    command = (
        [mitmdump(), "-s", str(GATEWAY), "--set", f"tollgate_config={path}"]
        if how.startswith("mitmdump")
        else [str(ROOT / "run.sh")]
    )
    if how == "mitmdump on an address":
        command += ["--listen-host", "127.0.0.1"]
    knocker = Knocker(port)
    try:
        done = subprocess.run(
            [*command, "--listen-port", str(port), "--set", f"confdir={confdir}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        knocker.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == expected.format(config=path, dir=tmp_path, full=full) + "\n", done.stdout + done.stderr
    assert "Traceback" not in done.stdout and "listening" not in done.stdout, done.stdout
    assert knocker.tries > 10
    if how != "mitmdump on an address":
        assert knocker.accepted == 0
    # On an IP address, mitmproxy listens while it loads the script, and the connections it took
    # then are let go as the process ends at once (docs/configuration.md says so): none is served.


@pytest.mark.parametrize("workers", [None, "1"], ids=["mitmdump", "tollgate serve"])
def test_a_start_refused_for_a_busy_port_leaves_no_process_in_its_group(tmp_path, confdir, workers):
    (tmp_path / "tollgate.yaml").write_text("policy:\n  rego: [policy.rego]\n")
    (tmp_path / "policy.rego").write_text(POLICY)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        command = [str(ROOT / "run.sh"), "--listen-port", str(port), "--set", f"confdir={confdir}"]
        proxy = subprocess.Popen(
            command + (["--workers", workers] if workers else []),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = proxy.communicate(timeout=60)
        finally:
            if proxy.returncode is None:
                os.killpg(proxy.pid, signal.SIGKILL)
                proxy.communicate()
        assert proxy.returncode == 1, output
        assert advice(port) in output, output
        # The group's leader has exited and been reaped: no process of its group is left, a
        # zombie neither.
        left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(proxy.pid)], capture_output=True, text=True)
        try:
            os.killpg(proxy.pid, 0)
        except ProcessLookupError:
            pass
        else:
            os.killpg(proxy.pid, signal.SIGKILL)
            pytest.fail(f"processes left in the group of {proxy.pid}:\n{left.stdout}")
