"""tollgate.yaml edited while mitmdump runs: a good edit takes effect within a second or so, a bad
one keeps the last good configuration and names the field, and a call in flight finishes under
the configuration it started with."""

from __future__ import annotations

import array
import fcntl
import json
import os
import signal
import termios
import threading
import time
from pathlib import Path

import pytest
import yaml
from tests.e2e.test_policy_timeout import children
from tests.support.canned import provider_answers
from tests.support.fake_upstream import FakeUpstream

from tollgate.common.fingerprint import fingerprint

ALICE, BOB, CAROL = "tg-alice-reload-1", "tg-bob-reload-1", "tg-carol-reload-1"
OLD_KEY, NEW_KEY = "sk-real-before-reload", "sk-real-after-reload"
POLICY = 'package tollgate\n\nimport rego.v1\n\ndeny contains "model forbidden" if input.model == "forbidden"\n'
RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
NOT_RELOADED = "Tollgate: configuration not reloaded, the last good one stays in force"

CHAT = """
    import openai
    client = openai.OpenAI(api_key="%s", max_retries=0, timeout=60)
    try:
        client.chat.completions.create(model="%s", messages=[{"role": "user", "content": "hi"}])
        report(outcome=200)
    except openai.AuthenticationError as e:
        report(outcome="AuthenticationError", status=e.status_code)
"""


def configuration(rego: Path, clients: dict[str, str], key: str = OLD_KEY, **extra):
    return lambda urls: {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [key]}},
        "clients": [{"name": name, "keys": [virtual]} for name, virtual in clients.items()],
        # A time limit far above any test's: a call may wait on a stopped worker on purpose.
        "policy": {"rego": [str(rego)], "timeout": 60},
        **extra,
    }


@pytest.fixture(scope="module")
def rego(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.rego"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def gw(start_gateway, rego):
    return start_gateway(configuration(rego, {"alice": ALICE}))


def chat(gw, key: str, model: str = "gpt-4o") -> dict:
    return gw.run(CHAT % (key, model))


def upstream_key(gw) -> str:
    return gw.fakes["openai"].received[-1].headers["authorization"].removeprefix("Bearer ")


def test_clients_change_without_a_restart_and_a_bad_edit_keeps_the_last_good(gw, rego):
    gw.reset()
    pid = gw.proxy.process.pid
    gw.reconfigure(configuration(rego, {"alice": ALICE}))
    assert chat(gw, ALICE) == {"outcome": 200}
    assert gw.last_audit()["client"] == "alice"

    gw.reconfigure(configuration(rego, {"bob": BOB}))
    assert chat(gw, BOB) == {"outcome": 200}
    assert (gw.last_audit()["client"], gw.last_audit()["status"]) == ("bob", 200)
    assert chat(gw, ALICE) == {"outcome": "AuthenticationError", "status": 401}
    assert (gw.last_audit()["client"], gw.last_audit()["status"]) == (None, 401)

    bad = configuration(rego, {"bob": BOB})
    broken = lambda urls: {**bad(urls), "clients": [{"name": "bob", "keys": [BOB], "grups": ["x"]}]}  # noqa: E731
    said = gw.reconfigure(broken, expect=NOT_RELOADED)
    assert "clients.0.grups: unknown key" in said
    assert chat(gw, BOB) == {"outcome": 200}
    assert gw.last_audit()["client"] == "bob"

    gw.reconfigure(configuration(rego, {"bob": BOB, "carol": CAROL}))
    assert chat(gw, CAROL) == {"outcome": 200}
    assert gw.last_audit()["client"] == "carol"
    assert gw.proxy.process.pid == pid and gw.proxy.process.poll() is None
    console = gw.proxy.console()
    assert BOB not in console and CAROL not in console and OLD_KEY not in console


def test_a_provider_key_change_is_used_by_the_next_call(gw, rego):
    gw.reset()
    gw.reconfigure(configuration(rego, {"alice": ALICE}, key=OLD_KEY))
    assert chat(gw, ALICE) == {"outcome": 200}
    assert upstream_key(gw) == OLD_KEY
    gw.reconfigure(configuration(rego, {"alice": ALICE}, key=NEW_KEY))
    assert chat(gw, ALICE) == {"outcome": 200}
    assert upstream_key(gw) == NEW_KEY
    assert gw.last_audit()["upstream_key"] == fingerprint(NEW_KEY)


def policy_worker(proxy_pid: int) -> int:
    workers = [p for p in children(proxy_pid) if b"policy_worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 1, workers
    return workers[0]


def unread(pid: int) -> int:
    """Bytes waiting in the process's standard input (a pipe), unread."""
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]
    finally:
        os.close(fd)


def test_a_call_in_flight_during_a_reload_keeps_the_key_it_started_with(gw, rego):
    gw.reset()
    gw.reconfigure(configuration(rego, {"alice": ALICE}, key=OLD_KEY))
    assert chat(gw, ALICE) == {"outcome": 200}  # the policy's worker is up
    worker = policy_worker(gw.proxy.process.pid)
    held: dict = {}
    client = threading.Thread(target=lambda: held.update(chat(gw, ALICE, model="gpt-4o-held")))
    # The worker stopped, the call waits for its decision: identified, not yet given a key.
    os.kill(worker, signal.SIGSTOP)
    try:
        client.start()
        deadline = time.monotonic() + 30
        while unread(worker) == 0:
            assert time.monotonic() < deadline, "the call never reached the policy"
            time.sleep(0.05)
        gw.reconfigure(configuration(rego, {"alice": ALICE}, key=NEW_KEY))
    finally:
        os.kill(worker, signal.SIGCONT)
    client.join(60)
    assert held == {"outcome": 200}
    received = gw.fakes["openai"].received
    assert [(r.json()["model"], r.headers["authorization"]) for r in received[-1:]] == [
        ("gpt-4o-held", f"Bearer {OLD_KEY}")
    ]
    assert gw.last_audit()["upstream_key"] == fingerprint(OLD_KEY)

    assert chat(gw, ALICE, model="gpt-4o-next") == {"outcome": 200}
    assert (received[-1].json()["model"], upstream_key(gw)) == ("gpt-4o-next", NEW_KEY)


def test_a_tollgate_yaml_written_after_a_start_without_one_takes_effect_as_the_readme_says(start_gateway, upstream_ca):
    """The README's quick start: started with no tollgate.yaml (pure audit mode), a call goes with
    the caller's own key to the provider's host; the file written then puts the real key in and the
    virtual one out, within a second, said in one line."""
    openai = FakeUpstream(upstream_ca, provider_answers, names=("api.openai.com",))
    try:
        resolve = {"TOLLGATE_TEST_RESOLVE": json.dumps({"api.openai.com": openai.port})}
        gw = start_gateway(None, "-s", str(RESOLVE), env=resolve, providers=())
        gw.fakes["openai"] = openai
        config_file = gw.proxy.workdir / "tollgate.yaml"
        gw.wait_console(f"{config_file} is loaded within a second of being written")
        assert chat(gw, "sk-callers-own-key") == {"outcome": 200}
        assert upstream_key(gw) == "sk-callers-own-key"
        assert (gw.last_audit()["auth"], gw.last_audit()["client"]) == ("anonymous", None)

        before = gw.proxy.console()
        config = {
            "providers": {"openai": {"keys": [NEW_KEY]}},
            "clients": [{"name": "alice", "keys": [ALICE], "groups": ["research"]}],
        }
        config_file.write_text(yaml.safe_dump(config))
        said = gw.wait_console("Tollgate: configuration loaded from", timeout=5, after=before)[len(before) :]
        assert said.count("Tollgate: configuration loaded from") == 1
        assert f"Tollgate: configuration loaded from {config_file}: 1 client, anonymous callers refused" in said
        assert chat(gw, ALICE) == {"outcome": 200}
        assert upstream_key(gw) == NEW_KEY
        assert (gw.last_audit()["client"], gw.last_audit()["upstream_key"]) == ("alice", fingerprint(NEW_KEY))
        assert chat(gw, "sk-callers-own-key") == {"outcome": "AuthenticationError", "status": 401}
        assert ALICE not in gw.proxy.console() and NEW_KEY not in gw.proxy.console()
    finally:
        openai.close()


def test_tollgate_config_set_empty_is_the_built_in_defaults_and_reads_no_tollgate_yaml(confdir, tmp_path):
    """`--set tollgate_config=` says so: the built-in defaults, though a ./tollgate.yaml is there,
    and none written later is read either."""
    from tests.support.proxy import Mitmdump

    config_file = tmp_path / "tollgate.yaml"
    config_file.write_text(yaml.safe_dump({"clients": [{"name": "alice", "keys": [ALICE]}]}))
    proxy = Mitmdump(tmp_path, confdir, None, None, "--set", "tollgate_config=")
    try:
        proxy.wait_ready()
        deadline = time.monotonic() + 10
        while "tollgate_config is set empty" not in proxy.console() and time.monotonic() < deadline:
            time.sleep(0.05)
        console = proxy.console()
        assert "Tollgate: tollgate_config is set empty: built-in defaults, pure audit mode; no file is read" in console
        assert "configuration loaded from" not in console and "is loaded within a second" not in console
        config_file.write_text(yaml.safe_dump({"clients": [{"name": "bob", "keys": [ALICE]}]}))
        time.sleep(2)  # the watcher looks every second: it would have read it by now
        assert "configuration loaded from" not in proxy.console()
    finally:
        proxy.stop()
