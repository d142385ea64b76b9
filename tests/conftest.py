from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

# ./run.sh starts `tollgate console` beside the proxy on 127.0.0.1:8090: in the tests, only where
# one asks for it (TOLLGATE_CONSOLE=HOST:PORT), so that the proxies they start share no port.
os.environ.setdefault("TOLLGATE_CONSOLE", "off")
# What the tests start with `python -m tollgate …` runs this checkout's code, as pytest does
# (pyproject's pythonpath), not that of a checkout the venv was installed from.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parents[1] / "addons"), os.environ.get("PYTHONPATH")) if p
)
import tests.support.examples  # noqa: F401  (loads the quick profile of property tests)
import trustme
import yaml
from tests.support.canned import provider_answers
from tests.support.clients import run_client
from tests.support.fake_realtime import FakeRealtime
from tests.support.fake_upstream import FakeUpstream
from tests.support.invoice_console import invoice_sign_in  # noqa: F401  (the Invoice tests' OpenID provider)
from tests.support.mcp_upstream import McpUpstream, mcp_servers
from tests.support.postgres import postgres  # noqa: F401  (the session's PostgreSQL, for the tests that ask for it)
from tests.support.proxy import Mitmdump

from tollgate.proxy.certs import ensure_bundle
from tollgate.proxy.stages.process import settings
from tollgate.records.audit.auditlog import BATCH_DELAY, PROCESS_EVENTS

PROVIDERS = ("openai", "gemini", "anthropic", "bedrock")


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collecting made (the modules, their tests) lives as long as the process: frozen, the
    garbage collector's full collections, pytest's own at the end among them, do not walk it again
    (as the proxy freezes what its start-up made: proxy/stages/process/warm_up.py)."""
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_tollgate_yaml_of_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Tollgate a test configures without `tollgate_config` never reads the working directory's
    tollgate.yaml (the checkout's own, written by the README's quick start); the tests of that
    behaviour set `DEFAULT_FILE` back."""
    monkeypatch.setattr(settings, "DEFAULT_FILE", "/nonexistent/tollgate.yaml")


@pytest.fixture(scope="session")
def upstream_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def upstream_ca_pem(tmp_path_factory: pytest.TempPathFactory, upstream_ca: trustme.CA) -> Path:
    path = tmp_path_factory.mktemp("upstream-ca") / "ca.pem"
    upstream_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ensure_bundle(directory)
    return directory


@pytest.fixture(scope="session")
def bundle(confdir: Path) -> Path:
    return confdir / "ca-bundle.pem"


ConfigBuilder = Callable[[dict[str, str]], dict]
RELOADED = "Tollgate: configuration reloaded from"
CONNECTION = "connection"  # the event of a connection's record (egress), not a call's
LOADED = "anonymous callers"  # in the line that says a configuration was loaded, at start-up or reload


def config_data(config: ConfigBuilder | dict, fakes: dict[str, FakeUpstream], audit_path: Path) -> dict:
    """The configuration as written: a builder is given the fake upstreams' URLs; the audit goes
    to `audit_path` unless it says otherwise."""
    data = config({n: f.url for n, f in fakes.items()}) if callable(config) else config
    data.setdefault("audit", {}).setdefault("path", str(audit_path))
    return data


class Gateway:
    """A running mitmdump with Tollgate, a fake upstream per provider, and its audit file."""

    def __init__(
        self,
        proxy: Mitmdump,
        fakes: dict[str, FakeUpstream],
        audit_path: Path,
        bundle: Path,
        config_path: Path | None = None,
        saved: Path | None = None,
    ) -> None:
        self.proxy = proxy
        self.fakes = fakes
        self.audit_path = audit_path
        self.bundle = bundle
        self.config_path = config_path
        self.saved = saved  # the flows mitmdump saves, where it was started with `save_flows`
        self._before = 0
        self._last_run_end = 0.0
        self._run_started = 0.0

    def run(
        self, code: str, env: dict[str, str] | None = None, timeout: float = 60, proxy_url: str | None = None
    ) -> dict:
        """Run client code through the proxy (`proxy_url`: another URL of it, e.g. with a login)."""
        # The audit writer may hold the previous run's last record for up to BATCH_DELAY: count
        # the records only once it has been written (with a margin for the thread to be scheduled).
        time.sleep(max(0.0, self._last_run_end + BATCH_DELAY + 0.05 - time.monotonic()))
        self._before = len(self.audit())
        self._run_started = time.time()
        try:
            return run_client(code, proxy_url or self.proxy.proxy_url, self.bundle, env, timeout)
        finally:
            self._last_run_end = time.monotonic()

    def audit(self) -> list[dict[str, Any]]:
        """The calls' records written so far (not the process's own nor the connections': `audit_records`)."""
        return [
            r for r in self.audit_records() if r.get("event") not in PROCESS_EVENTS and r.get("event") != CONNECTION
        ]

    def connections(self, count: int = 0, timeout: float = 10.0, since_run: bool = False) -> list[dict[str, Any]]:
        """The connections' records (`egress`) written so far, or of connections begun since the last
        `run` began, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            records = [
                r
                for r in self.audit_records()
                if r.get("event") == CONNECTION and (not since_run or self._since_run(r))
            ]
            if len(records) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert len(records) >= count, f"expected {count} connection records, have {len(records)}"
        return records

    def audit_records(self) -> list[dict[str, Any]]:
        """Every record written so far, the process's `tollgate_started` and `tollgate_stopped` too:
        whole lines (a record being written may show in part)."""
        if not self.audit_path.exists():
            return []
        whole = self.audit_path.read_text().rpartition("\n")[0]
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def wait_audit(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.audit()
            if len(records) >= count:
                return records
            time.sleep(0.05)
        raise AssertionError(f"expected {count} audit records, have {len(self.audit())}")

    def new_audit(
        self, count: int, timeout: float = 10.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """The records the last `run` added (those `where` accepts), once there are `count` of them:
        those written since it began, of calls begun since (a call of the run before, ended late, is
        not among them)."""
        deadline = time.monotonic() + timeout
        while True:
            records = [r for r in self.audit()[self._before :] if self._since_run(r) and (where is None or where(r))]
            if len(records) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert len(records) >= count, f"expected {count} audit records of the last run, have {len(records)}"
        return records

    def last_audit(self) -> dict[str, Any]:
        """The newest record, once the last `run` has added one (the audit is written by a thread)."""
        return self.new_audit(1)[-1]

    def _since_run(self, record: dict[str, Any]) -> bool:
        ts = record.get("ts")
        if not isinstance(ts, str):
            return True
        # Records name their call's start to the millisecond.
        return datetime.fromisoformat(ts).timestamp() >= self._run_started - 0.01

    def reconfigure(self, config: ConfigBuilder | dict, expect: str = RELOADED, timeout: float = 10.0) -> str:
        """Rewrite the running gateway's configuration file as editors save one (a new file renamed
        over it) and wait for the console line `expect` that says Tollgate saw it; the console's new part."""
        assert self.config_path is not None, "started without a configuration file"
        # mitmdump may accept connections before it has read the file: a rewrite before then
        # would be the file it starts with, not a change.
        self.wait_console(LOADED, timeout)
        before = self.proxy.console()
        written = self.config_path.with_name(self.config_path.name + ".new")
        written.write_text(yaml.safe_dump(config_data(config, self.fakes, self.audit_path)))
        os.replace(written, self.config_path)
        return self.wait_console(expect, timeout, after=before)[len(before) :]

    def wait_console(self, text: str, timeout: float = 10.0, after: str = "") -> str:
        """The console once it shows `text` more often than `after` (what it showed before) did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            console = self.proxy.console()
            if console.count(text) > after.count(text):
                return console
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.proxy.console()[len(after) :]}")

    def reset(self) -> None:
        for fake in self.fakes.values():
            fake.received.clear()
            fake.handler = provider_answers


@pytest.fixture
def g(gw: Gateway) -> Gateway:
    """The module's gateway `gw`, its fake upstreams reset for the test (modules that start one)."""
    gw.reset()
    return gw


@pytest.fixture(scope="module")
def mcp_server(upstream_ca: trustme.CA) -> Iterator[McpUpstream]:
    """A fake MCP server (answering by server-sent events), one for the module."""
    server = McpUpstream(upstream_ca)
    yield server
    server.close()


@pytest.fixture(scope="module")
def realtime_fake(upstream_ca: trustme.CA) -> Iterator[FakeRealtime]:
    """A fake Realtime API and Responses WebSocket server (answering as its script says), one for the module."""
    server = FakeRealtime(upstream_ca)
    yield server
    server.close()


@pytest.fixture(scope="module")
def servers(upstream_ca: trustme.CA) -> Iterator[tuple[McpUpstream, McpUpstream]]:
    """Two fake MCP servers, one answering by server-sent events and one as JSON, a pair for the module."""
    with mcp_servers(upstream_ca) as both:
        yield both


@pytest.fixture(scope="module")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_ca: trustme.CA,
    upstream_ca_pem: Path,
    confdir: Path,
    bundle: Path,
) -> Iterator[Callable[..., Gateway]]:
    started: list[tuple[Mitmdump, dict[str, FakeUpstream]]] = []

    def start(
        config: ConfigBuilder | dict | None,
        *extra: str,
        tool: type[Mitmdump] = Mitmdump,
        env: dict[str, str] | None = None,
        providers: tuple[str, ...] = PROVIDERS,
        save_flows: bool = False,
    ) -> Gateway:
        """A gateway with a fake upstream for each of `providers` (the config builder gets their URLs).
        `save_flows`: mitmdump saves every flow, at its most verbose flow detail, to `Gateway.saved`."""
        workdir = tmp_path_factory.mktemp("gateway")
        saved = workdir / "flows.mitm" if save_flows else None
        if saved is not None:
            extra = ("--set", f"save_stream_file={saved}", "--set", "flow_detail=4", *extra)
        fakes = {name: FakeUpstream(upstream_ca, provider_answers) for name in providers}
        audit_path = workdir / "audit.jsonl"
        config_path = None
        if config is not None:
            config_path = workdir / "tollgate.yaml"
            config_path.write_text(yaml.safe_dump(config_data(config, fakes, audit_path)))
        proxy = tool(workdir, confdir, upstream_ca_pem, config_path, *extra, env=env)
        started.append((proxy, fakes))
        proxy.wait_ready()
        return Gateway(proxy, fakes, audit_path, bundle, config_path, saved)

    yield start
    for proxy, fakes in started:
        proxy.stop()
        for fake in fakes.values():
            fake.close()
