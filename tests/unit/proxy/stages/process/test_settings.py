"""The configuration file reloaded while Tollgate runs: what is seen as a change, what a bad edit
does, and what a reload carries over (audit log, policy, key rests) or leaves to calls in flight."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mitmproxy.test import taddons, tflow

from tollgate.common.fingerprint import fingerprint
from tollgate.providers import BUILT_IN_HOSTS
from tollgate.proxy.flows import CALL
from tollgate.proxy.pipeline import gateway
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.process import settings as settings_module
from tollgate.proxy.stages.process.settings import Settings, listen_addresses, stamp_of
from tollgate.proxy.stages.transport.classify import Classify
from tollgate.proxy.stages.upstream.credential import Credential
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_verify import Place, verify

POLICY = 'package tollgate\nimport rego.v1\ndeny contains "no" if input.model == "forbidden"\n'


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def replace_by_rename(path: Path, text: str) -> None:
    """As editors save: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


# --- what is seen as a change -----------------------------------------------------------------------


def test_a_rewrite_that_keeps_the_modification_time_is_seen_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    path.write_text("clients: []\n")
    before = stamp_of(str(path))
    mtime = path.stat().st_mtime_ns
    path.write_text("clients: [ ]\n")
    os.utime(path, ns=(mtime, mtime))
    assert stamp_of(str(path)) != before


def test_a_file_renamed_over_the_old_one_is_seen_though_size_and_time_are_the_same(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    path.write_text("clients: []\n")
    before = stamp_of(str(path))
    mtime = path.stat().st_mtime_ns
    replace_by_rename(path, "clients: []\n")
    os.utime(path, ns=(mtime, mtime))
    assert before is not None and stamp_of(str(path)) != before
    assert stamp_of(str(path)) == stamp_of(str(path))  # stable while nothing changes


def test_a_missing_file_has_no_stamp(tmp_path: Path) -> None:
    assert stamp_of(str(tmp_path / "gone.yaml")) is None


# --- Settings.check ---------------------------------------------------------------------------------


class Running:
    """Tollgate's stages configured from a file, as mitmdump would at start-up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gateway = gateway()
        self.settings: Settings = self.gateway.steps["configure"][0].__self__  # type: ignore[attr-defined]
        self.shared: Shared = self.settings.shared

    def stop(self) -> None:
        """As mitmdump stops: the audit log closed, the policy's worker stopped, the stream tap's
        logging hook removed."""
        pending = self.gateway.done()  # type: ignore[attr-defined]
        if pending is not None:
            asyncio.run(pending)

    def check(self, caplog: pytest.LogCaptureFixture) -> str:
        """What one look of the watcher logs."""
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=settings_module.__name__):
            self.settings.check()
        return caplog.text


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    path = write(
        tmp_path / "tollgate.yaml",
        {
            "providers": {"openai": {"keys": ["sk-one", "sk-two"]}},
            "clients": [{"name": "alice", "keys": ["tg-alice"]}],
            "audit": {"path": str(tmp_path / "audit.jsonl")},
        },
    )
    r = Running(path)
    with taddons.context(r.gateway) as tctx:
        r.tctx = tctx  # type: ignore[attr-defined]
        tctx.configure(r.gateway, tollgate_config=str(path))
        r.settings.started()  # as at `running`, once mitmproxy's servers listen
        try:
            yield r
        finally:
            r.stop()


def edit(r: Running, change) -> None:
    data = yaml.safe_load(r.path.read_text())
    change(data)
    replace_by_rename(r.path, yaml.safe_dump(data))


def clients(r: Running) -> list[str]:
    assert r.shared.loaded is not None
    return [c.name for c in r.shared.loaded.config.clients]


def test_an_unchanged_file_is_not_read_again(running: Running, caplog) -> None:
    loaded = running.shared.loaded
    assert running.check(caplog) == ""
    assert running.shared.loaded is loaded


def test_a_good_edit_is_swapped_in_and_logged_once(running: Running, caplog) -> None:
    edit(running, lambda d: d.update(clients=[{"name": "bob", "keys": ["tg-bob"]}]))
    logged = running.check(caplog)
    assert clients(running) == ["bob"]
    assert logged.count("Tollgate: configuration reloaded from") == 1
    assert f"configuration reloaded from {running.path}: 1 client, anonymous callers refused" in logged
    assert "tg-bob" not in logged and "sk-one" not in logged


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("clients:\n  - name: bob\n    nmae: x\n", "clients.0.nmae: unknown key"),
        ("clients: [\n", "not valid YAML at line"),
        (
            "providers:\n  openai:\n    keys: ['${TOLLGATE_TEST_UNSET_RELOAD}']\n",
            "providers.openai.keys.0: environment variable TOLLGATE_TEST_UNSET_RELOAD is not set",
        ),
        ("policy:\n  rego: [missing.rego]\n", "policy.rego: "),
        ("audit:\n  path: /nonexistent-dir/audit.jsonl\n", "audit.path: cannot open /nonexistent-dir/audit.jsonl"),
        ("guardrails:\n  - {detect: [nosuch], action: deny}\n", "guardrails.0.detect.0: "),
    ],
)
def test_a_bad_edit_keeps_the_last_good_configuration_and_says_why_once(
    running: Running, caplog, monkeypatch, text: str, names: str
) -> None:
    monkeypatch.delenv("TOLLGATE_TEST_UNSET_RELOAD", raising=False)
    good, audit = running.shared.loaded, running.shared.audit
    replace_by_rename(running.path, text)
    logged = running.check(caplog)
    assert running.shared.loaded is good and running.shared.audit is audit
    assert "Tollgate: configuration not reloaded, the last good one stays in force: " in logged
    assert names in logged
    assert running.check(caplog) == ""  # reported once, not at every look


def test_a_worker_of_a_fleet_keeps_its_configuration_when_an_edit_adds_limits_without_redis(
    running: Running, caplog, monkeypatch
) -> None:
    monkeypatch.setenv("TOLLGATE_FLEET_WORKERS", "2")  # as `tollgate serve --workers 2` sets it
    good = running.shared.loaded
    edit(running, lambda d: d.update(limits=[{"name": "rpm", "requests_per_minute": 5}]))
    logged = running.check(caplog)
    assert running.shared.loaded is good
    assert (
        "configuration not reloaded, the last good one stays in force: ledger.store: 2 workers with limits must"
        " share their counters on Redis" in logged
    )
    monkeypatch.delenv("TOLLGATE_FLEET_WORKERS")
    edit(running, lambda d: d.update(clients=[{"name": "bob", "keys": ["tg-bob"]}]))
    running.check(caplog)
    assert clients(running) == ["bob"]  # one process alone counts exactly in SQLite


def test_environment_variables_are_read_again_on_reload(running: Running, caplog, monkeypatch) -> None:
    monkeypatch.delenv("TOLLGATE_TEST_RELOAD_KEY", raising=False)
    edit(running, lambda d: d["providers"]["openai"].update(keys=["${TOLLGATE_TEST_RELOAD_KEY}"]))
    assert "TOLLGATE_TEST_RELOAD_KEY is not set" in running.check(caplog)
    monkeypatch.setenv("TOLLGATE_TEST_RELOAD_KEY", "sk-from-env")
    edit(running, lambda d: None)  # saved again: only the environment changed
    assert "configuration reloaded" in running.check(caplog)
    assert running.shared.loaded is not None
    assert running.shared.loaded.config.providers.openai.keys == ("sk-from-env",)


def test_a_missing_file_is_a_bad_edit_and_its_return_a_good_one(running: Running, caplog) -> None:
    good = running.shared.loaded
    text = running.path.read_text()
    running.path.unlink()
    logged = running.check(caplog)
    assert running.shared.loaded is good
    assert f"the last good one stays in force: {running.path}: cannot read: No such file or directory" in logged
    running.path.write_text(text.replace("alice", "carol"))
    assert "configuration reloaded" in running.check(caplog)
    assert clients(running) == ["carol"]


@pytest.mark.slow
def test_the_audit_log_survives_a_reload_that_keeps_its_path(running: Running, caplog, tmp_path: Path) -> None:
    audit = running.shared.audit
    edit(running, lambda d: d.update(allow_anonymous=True))
    running.check(caplog)
    assert running.shared.audit is audit

    edit(running, lambda d: d["audit"].update(path=str(tmp_path / "other.jsonl")))
    running.check(caplog)
    assert running.shared.audit is not audit and running.shared.audit.path == str(tmp_path / "other.jsonl")
    assert audit._closed.is_set()  # the old one was closed once it had written what it held


def started(path: Path) -> dict:
    first = json.loads(path.read_text().splitlines()[0])
    assert first["event"] == "tollgate_started", first
    return first


def test_the_audit_opens_with_the_started_record_naming_the_configuration_by_its_bytes(
    running: Running, tmp_path: Path
) -> None:
    record = started(tmp_path / "audit.jsonl")
    assert record == {
        "event": "tollgate_started",
        "instance": socket.gethostname(),  # no TOLLGATE_INSTANCE: the host's name
        "ts": record["ts"],
        "version": importlib.metadata.version("tollgate"),
        "pid": os.getpid(),
        "listen": ["*:8080"],  # mitmproxy's defaults: every address, port 8080
        "config_sha256": hashlib.sha256(running.path.read_bytes()).hexdigest(),
        "previous_chain": None,
        "seq": 1,
        "chain": record["chain"],
    }


def test_a_start_that_never_listened_writes_no_record(tmp_path: Path) -> None:
    # mitmdump loads the configuration, then listens, then runs `running` (`Settings.started`):
    # a start that failed in between (its port in use) has not begun its part of the audit file.
    audit = tmp_path / "audit.jsonl"
    path = write(tmp_path / "tollgate.yaml", {"audit": {"path": str(audit)}})
    r = Running(path)
    with taddons.context(r.gateway) as tctx:
        tctx.configure(r.gateway, tollgate_config=str(path))
        assert audit.read_text() == ""
        r.stop()
    assert audit.read_text() == ""  # no started record, and so no stopped one


def test_without_a_configuration_file_the_started_record_names_none(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the built-in defaults' audit.jsonl is in the working directory
    r = Running(tmp_path / "unused.yaml")
    with taddons.context(r.gateway) as tctx:
        tctx.configure(r.gateway, tollgate_config="")
        r.settings.started()
        r.stop()
    first, last, checkpoint = (json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines())
    assert checkpoint["event"] == "audit_checkpoint"
    assert (first["event"], first["config_sha256"]) == ("tollgate_started", None)
    assert (last["event"], last["calls"]) == ("tollgate_stopped", 0)


def test_a_reload_that_opens_another_audit_file_writes_the_started_record_there_first(
    running: Running, caplog, tmp_path: Path
) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"event": "llm_call", "n": 0}\n')  # an earlier run's records stay first
    edit(running, lambda d: d["audit"].update(path=str(other)))
    running.tctx.options.update(listen_host="127.0.0.1", listen_port=9099)  # type: ignore[attr-defined]
    assert "configuration reloaded" in running.check(caplog)
    record = json.loads(other.read_text().splitlines()[1])
    assert (record["event"], record["listen"]) == ("tollgate_started", ["127.0.0.1:9099"])
    assert record["config_sha256"] == hashlib.sha256(running.path.read_bytes()).hexdigest()
    # The file left behind gets no stopped record: the process goes on.
    assert [json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()] == [
        "tollgate_started"
    ]
    # Nor does its chain start again: the new file's started record follows the old file's last.
    first = (tmp_path / "audit.jsonl").read_bytes().splitlines()[0]
    assert record["seq"] == 2
    going_on = [(Place("audit.jsonl", 1), first), (Place("other.jsonl", 2), other.read_bytes().splitlines()[1])]
    assert verify(going_on, live=True).faults == []


@pytest.mark.slow
def test_a_reload_to_an_audit_file_that_cannot_take_the_started_record_is_refused(
    running: Running, caplog, tmp_path: Path
) -> None:
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")
    good, audit = running.shared.loaded, running.shared.audit
    edit(running, lambda d: d["audit"].update(path=str(full)))
    logged = running.check(caplog)
    assert f"the last good one stays in force: audit.path: cannot write to {full}: No space left on device" in logged
    assert running.shared.loaded is good and running.shared.audit is audit and not audit.failing
    # Its chain goes on where it was: the refused file's started record took no place in it.
    audit.write({"event": "llm_call"})
    path = tmp_path / "audit.jsonl"
    deadline = time.monotonic() + 5
    while len(path.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2]


def test_where_the_proxy_listens_one_address_per_mode() -> None:
    assert listen_addresses(["regular"], "127.0.0.1", 8080) == ["127.0.0.1:8080"]
    assert listen_addresses(["regular", "wireguard"], "", None) == ["*:8080", "wireguard@*:51820"]
    assert listen_addresses(["regular@::1:9000", "local"], "", 8080) == ["[::1]:9000", "local"]


@pytest.mark.slow
def test_the_policy_survives_a_reload_that_keeps_its_files_and_timeout(running: Running, caplog) -> None:
    (running.path.parent / "policy.rego").write_text(POLICY)
    edit(running, lambda d: d.update(policy={"rego": ["policy.rego"]}))
    running.check(caplog)
    policy = running.shared.loaded.policy
    assert policy is not None and policy.files == (running.path.parent / "policy.rego",)

    edit(running, lambda d: d.update(clients=[{"name": "bob", "keys": ["tg-bob"]}]))
    running.check(caplog)
    assert running.shared.loaded.policy is policy

    edit(running, lambda d: d["policy"].update(timeout=2.5))
    running.check(caplog)
    assert running.shared.loaded.policy is not policy and running.shared.loaded.policy.timeout == 2.5

    edit(running, lambda d: d.pop("policy"))
    running.check(caplog)
    assert running.shared.loaded.policy is None


def test_a_key_resting_stays_resting_across_a_reload(running: Running, caplog) -> None:
    pool = running.shared.loaded.pools["openai"]
    pool.rest("sk-one", 60)
    edit(running, lambda d: d["providers"]["openai"].update(keys=["sk-one", "sk-two", "sk-three"]))
    running.check(caplog)
    renewed = running.shared.loaded.pools["openai"]
    assert renewed is not pool
    assert "sk-one" not in {renewed.take() for _ in range(6)}


def test_a_call_classified_before_a_reload_gets_its_credential_from_the_configuration_it_started_with(
    running: Running, caplog
) -> None:
    flow = tflow.tflow()
    flow.request.scheme, flow.request.host, flow.request.port = "https", "api.openai.com", 443
    flow.request.path, flow.request.content = "/v1/models", b""
    flow.request.method = "GET"
    flow.request.headers.fields = ((b"authorization", b"Bearer tg-alice"),)
    Classify(running.shared).request(flow)
    call = flow.metadata[CALL]
    before = running.shared.loaded
    assert call.loaded is before

    edit(running, lambda d: d["providers"]["openai"].update(keys=["sk-new"]))
    running.check(caplog)
    assert running.shared.loaded is not before
    CallSteps(Credential(running.shared).handle).at_request(flow)
    assert flow.request.headers["authorization"] == "Bearer sk-one"
    assert call.answer.upstream_key == fingerprint("sk-one")


def test_a_new_tollgate_config_is_watched_instead_of_the_old(running: Running, caplog, tmp_path: Path) -> None:
    other = write(
        tmp_path / "other.yaml",
        {"clients": [{"name": "dave", "keys": ["tg-dave"]}], "audit": {"path": str(tmp_path / "audit.jsonl")}},
    )
    running.tctx.configure(running.gateway, tollgate_config=str(other))  # type: ignore[attr-defined]
    assert clients(running) == ["dave"]
    edit(running, lambda d: d.update(clients=[{"name": "erin", "keys": ["tg-erin"]}]))
    assert running.check(caplog) == ""  # the old file is no longer the configuration
    write(other, {"clients": [{"name": "frank", "keys": ["tg-frank"]}], "audit": {"path": str(tmp_path / "a.jsonl")}})
    assert "configuration reloaded" in running.check(caplog)
    assert clients(running) == ["frank"]


def test_the_hosts_a_reload_adds_are_decrypted_and_those_it_drops_no_longer(running: Running, caplog) -> None:
    tctx = running.tctx  # type: ignore[attr-defined]
    options = tctx.options
    options.add_option("connection_strategy", str, "lazy", "")  # mitmproxy's proxy server declares it
    tctx.configure(running.gateway, connection_strategy="lazy")  # as mitmdump configures at start-up
    built_in = "|".join(f"(?:{p})" for p in BUILT_IN_HOSTS.allow_hosts())
    assert list(options.allow_hosts) == [built_in]  # one pattern: mitmproxy tries each on every connection
    options.update(allow_hosts=["^own\\.example:443$", built_in])  # the user's own stays throughout
    edit(running, lambda d: d["providers"].update(vertex={"hosts": ["*.llm.corp.example"]}))
    assert "configuration reloaded" in running.check(caplog)
    added = r"(?:^(?:[a-z0-9_-]*\.llm\.corp\.example)\.?:\d+$)"
    assert list(options.allow_hosts) == ["^own\\.example:443$", f"{built_in}|{added}"]
    assert running.shared.loaded is not None and running.shared.loaded.hosts.provider_for("eu.llm.corp.example")
    edit(running, lambda d: d["providers"].pop("vertex"))
    assert "configuration reloaded" in running.check(caplog)
    assert list(options.allow_hosts) == ["^own\\.example:443$", built_in]


def test_a_client_certificate_that_cannot_be_used_fails_the_configuration_naming_it(tmp_path: Path) -> None:
    import trustme

    from tollgate.configuration.config import ConfigError

    ca = trustme.CA()
    good, other = ca.issue_cert("tollgate-client"), ca.issue_cert("someone-else")
    files = {
        "missing.pem": None,
        "no-cert.pem": good.private_key_pem.bytes(),
        "no-key.pem": good.cert_chain_pems[0].bytes(),
        "mismatch.pem": other.private_key_pem.bytes() + good.cert_chain_pems[0].bytes(),
        "good.pem": good.private_key_and_cert_chain_pem.bytes(),
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    why = {
        "missing.pem": "cannot read",
        "no-cert.pem": "holds no PEM certificate",
        "no-key.pem": "holds no unencrypted PEM private key",
        "mismatch.pem": "the private key is not the certificate's",
    }
    audit = {"path": str(tmp_path / "audit.jsonl")}
    for name, fault in why.items():
        path = write(
            tmp_path / "t.yaml", {"providers": {"vertex": {"client_cert": str(tmp_path / name)}}, "audit": audit}
        )
        with pytest.raises(ConfigError) as e:
            settings_module.load(str(path), None, None)
        assert str(e.value).startswith("providers.vertex.client_cert: ") and fault in str(e.value), str(e.value)
        assert "PRIVATE KEY" not in str(e.value)
    path = write(
        tmp_path / "t.yaml", {"providers": {"gemini": {"client_cert": str(tmp_path / "good.pem")}}, "audit": audit}
    )
    loaded, log, store = settings_module.load(str(path), None, None)
    try:
        assert list(loaded.client_certs) == ["gemini"]
    finally:
        log.close()
        asyncio.run(store.aclose())


def test_without_a_configuration_file_it_says_a_file_made_later_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # the built-in defaults' audit file is written here
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", "tollgate.yaml")
    g = gateway()
    with caplog.at_level(logging.INFO, logger=settings_module.__name__), taddons.context(g) as tctx:
        configure_unset(tctx, g)
        pending = g.done()  # type: ignore[attr-defined]
        if pending is not None:
            asyncio.run(pending)
    assert settings_module.no_config_note(str(tmp_path / "tollgate.yaml")) in caplog.text
    assert f"{tmp_path / 'tollgate.yaml'} is loaded within a second of being written" in caplog.text


def configure_unset(tctx, addon) -> None:
    """As mitmproxy starts with `tollgate_config` never set (not set empty): configured with it unchanged."""
    if addon not in tctx.master.addons:
        tctx.master.addons.register(addon)
    tctx.options.changed.send(updated={"tollgate_config"})


@pytest.fixture
def awaiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """Tollgate started with no `tollgate_config` in a directory without a tollgate.yaml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", "tollgate.yaml")
    r = Running(tmp_path / "tollgate.yaml")
    with taddons.context(r.gateway) as tctx:
        configure_unset(tctx, r.gateway)
        r.settings.started()
        try:
            yield r
        finally:
            r.stop()


def test_a_tollgate_yaml_made_after_a_start_without_one_is_loaded_and_said_once(awaiting: Running, caplog) -> None:
    assert awaiting.shared.loaded is not None and awaiting.shared.loaded.config_sha256 is None
    assert awaiting.check(caplog) == ""  # nothing there yet: the defaults hold, nothing said
    write(
        awaiting.path,
        {"providers": {"openai": {"keys": ["sk-real"]}}, "clients": [{"name": "alice", "keys": ["tg-alice"]}]},
    )
    logged = awaiting.check(caplog)
    assert clients(awaiting) == ["alice"]
    assert logged.count("Tollgate: configuration loaded from") == 1
    assert f"Tollgate: configuration loaded from {awaiting.path}: 1 client, anonymous callers refused" in logged
    assert "sk-real" not in logged and "tg-alice" not in logged
    assert awaiting.check(caplog) == ""
    edit(awaiting, lambda d: d.update(clients=[{"name": "bob", "keys": ["tg-bob"]}]))  # then watched as any
    assert "Tollgate: configuration reloaded from" in awaiting.check(caplog)
    assert clients(awaiting) == ["bob"]


def test_a_broken_tollgate_yaml_made_after_the_start_keeps_the_defaults_and_is_loaded_once_mended(
    awaiting: Running, caplog
) -> None:
    replace_by_rename(awaiting.path, "clients:\n  - name: bob\n    nmae: x\n")
    logged = awaiting.check(caplog)
    assert "Tollgate: configuration not loaded, the built-in defaults stay in force: " in logged
    assert "clients.0.nmae: unknown key" in logged
    assert clients(awaiting) == [] and awaiting.shared.loaded is not None
    assert awaiting.shared.loaded.config.anonymous_allowed
    assert awaiting.check(caplog) == ""
    replace_by_rename(awaiting.path, "clients:\n  - name: bob\n    keys: [tg-bob]\n")
    assert "Tollgate: configuration loaded from" in awaiting.check(caplog)
    assert clients(awaiting) == ["bob"]


def test_a_tollgate_yaml_there_at_start_is_read_when_no_tollgate_config_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", "tollgate.yaml")
    write(tmp_path / "tollgate.yaml", {"clients": [{"name": "alice", "keys": ["tg-alice"]}]})
    r = Running(tmp_path / "tollgate.yaml")
    with taddons.context(r.gateway) as tctx:
        configure_unset(tctx, r.gateway)
        try:
            assert clients(r) == ["alice"]
        finally:
            r.stop()


def test_tollgate_config_set_empty_reads_no_tollgate_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "DEFAULT_FILE", "tollgate.yaml")
    write(tmp_path / "tollgate.yaml", {"clients": [{"name": "alice", "keys": ["tg-alice"]}]})
    r = Running(tmp_path / "tollgate.yaml")
    with taddons.context(r.gateway) as tctx:
        tctx.configure(r.gateway, tollgate_config="")  # set empty: the built-in defaults
        try:
            assert clients(r) == []
        finally:
            r.stop()
