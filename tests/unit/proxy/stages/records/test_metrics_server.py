"""The metrics stage: /metrics served where `metrics.listen` says, moved, stopped and refused as the
configuration says; each call counted at its end."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from prometheus_client.parser import text_string_to_metric_families
from tests.support.proxy import free_port

from tollgate.proxy.health import LOOP_TIMEOUT
from tollgate.proxy.pipeline import gateway
from tollgate.proxy.stages.process import settings as settings_module
from tollgate.proxy.stages.process.settings import Settings
from tollgate.proxy.stages.records import metrics_server as metrics_module
from tollgate.proxy.stages.records.metrics_server import Metrics
from tollgate.proxy.state import Shared

from ..process.test_settings import Running, replace_by_rename


def scrape(listen: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def refused(listen: str) -> bool:
    try:
        scrape(listen)
    except OSError:
        return True
    return False


def config(tmp_path: Path, listen: str | None) -> dict:
    return {
        "providers": {"openai": {"keys": ["sk-one"]}},
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        **({"metrics": {"listen": listen}} if listen else {}),
    }


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    path = tmp_path / "tollgate.yaml"
    listen = f"127.0.0.1:{free_port()}"
    path.write_text(yaml.safe_dump(config(tmp_path, listen)))
    r = Running(path)
    r.listen = listen  # type: ignore[attr-defined]
    with taddons.context(r.gateway) as tctx:
        tctx.configure(r.gateway, tollgate_config=str(path))
        try:
            yield r
        finally:
            r.stop()


def reload(r: Running, data: dict, caplog: pytest.LogCaptureFixture) -> str:
    replace_by_rename(r.path, yaml.safe_dump(data))
    return r.check(caplog)


def test_metrics_are_served_and_follow_reloads(running: Running, tmp_path: Path, caplog) -> None:
    first = running.listen  # type: ignore[attr-defined]
    assert scrape(first)["tollgate_audit_queue_depth"] == 0
    assert running.shared.metrics is not None
    metrics = running.shared.metrics
    # Moved: the old port no longer answers, the new one does, with the same counters.
    second = f"127.0.0.1:{free_port()}"
    assert "configuration reloaded" in reload(running, config(tmp_path, second), caplog)
    assert refused(first) and "process_cpu_seconds_total" in scrape(second)
    assert running.shared.metrics is metrics
    # Off: nothing served, nothing counted.
    assert "configuration reloaded" in reload(running, config(tmp_path, None), caplog)
    assert refused(second) and running.shared.metrics is None


def test_a_port_in_use_on_reload_keeps_the_configuration_and_the_server(running: Running, tmp_path, caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        good = running.shared.loaded
        logged = reload(running, config(tmp_path, busy), caplog)
    assert "configuration not reloaded" in logged and "metrics.listen: cannot serve /metrics on " + busy in logged
    assert running.shared.loaded is good
    assert "tollgate_audit_queue_depth" in scrape(running.listen)  # type: ignore[attr-defined]


def test_a_port_in_use_at_start_up_is_an_error_naming_the_setting(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the built-in configuration's ledger file is made in the working directory
    exits: list[int] = []
    monkeypatch.setattr(settings_module, "exit_now", exits.append)  # the process ends here, not the test's
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        path = tmp_path / "tollgate.yaml"
        path.write_text(yaml.safe_dump(config(tmp_path, busy)))
        g = gateway()
        with (
            taddons.context(proxyserver.Proxyserver(), g) as tctx,
            pytest.raises(SystemExit, match="1"),
        ):
            tctx.configure(g, tollgate_config=str(path))
        # At start-up (mitmproxy's servers not running yet): one line, and the process exits.
        assert exits == [1]
        assert capsys.readouterr().err == (
            f"Tollgate configuration: metrics.listen: cannot serve /metrics on {busy}: Address already in use\n"
        )
        settings: Settings = g.steps["configure"][0].__self__  # type: ignore[attr-defined]
        shared: Shared = settings.shared
        # Nothing of the refused configuration was applied: no /metrics server, not its audit file.
        assert shared.metrics is None
        assert shared.audit is None or shared.audit.path != str(tmp_path / "audit.jsonl")
        pending = g.done()  # type: ignore[attr-defined]
        if pending is not None:
            asyncio.run(pending)


def test_done_stops_the_server(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    listen = f"127.0.0.1:{free_port()}"
    path.write_text(yaml.safe_dump(config(tmp_path, listen)))
    g = gateway()
    with taddons.context(g) as tctx:
        tctx.configure(g, tollgate_config=str(path))
        assert not refused(listen)
        pending = g.done()  # type: ignore[attr-defined]
        if pending is not None:
            asyncio.run(pending)
    assert refused(listen)


# ---- /healthz


def healthz(listen: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics_stage(r: Running) -> Metrics:
    return next(step.__self__ for step in r.gateway.steps["running"] if isinstance(step.__self__, Metrics))  # type: ignore[attr-defined]


def while_running(r: Running, check: Callable[[], None]) -> None:
    """`check` run in a thread while the stages' event loop turns, after mitmproxy's `running`."""

    async def main() -> None:
        r.shared.running = True  # as Decide.running says
        metrics_stage(r).running()
        await asyncio.to_thread(check)

    asyncio.run(main())


@pytest.mark.slow
def test_healthz_says_whether_the_process_serves_calls(
    running: Running, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe's wait for the loop, shorter where the stage reads it: a stuck loop is found the same.
    loop_timeout = LOOP_TIMEOUT / 2
    monkeypatch.setattr(metrics_module, "LOOP_TIMEOUT", loop_timeout)
    listen = running.listen  # type: ignore[attr-defined]
    assert healthz(listen) == (503, "starting\n")  # served as soon as the configuration is, before the proxy listens
    audit = running.shared.audit
    assert audit is not None

    def check() -> None:
        assert healthz(listen) == (200, "ok\n")
        audit.failing, audit.problem = True, "cannot write to audit.jsonl: No space left on device"
        assert healthz(listen) == (503, "audit failing: cannot write to audit.jsonl: No space left on device\n")
        audit.failing, audit.problem = False, None
        running.shared.draining = True
        assert healthz(listen) == (503, "draining\n")
        running.shared.draining = False
        loop = metrics_stage(running)._loop
        assert loop is not None
        loop.call_soon_threadsafe(time.sleep, loop_timeout * 1.5)  # the loop stuck in a callback
        assert healthz(listen) == (503, "event loop not responding\n")
        assert healthz(listen) == (200, "ok\n")  # it turns again

    while_running(running, check)
    # The loop no longer turns (it has ended): the probe fails rather than answer for it.
    assert healthz(listen) == (503, "event loop not responding\n")


def test_a_broken_edit_keeps_healthz_ok_and_says_so(running: Running, tmp_path: Path, caplog) -> None:
    listen = running.listen  # type: ignore[attr-defined]
    broken = {**config(tmp_path, listen), "drain_s": -1}
    assert "configuration not reloaded" in reload(running, broken, caplog)
    replies: list[tuple[int, str]] = []
    while_running(running, lambda: replies.append(healthz(listen)))
    assert replies == [
        (
            200,
            f"ok; the configuration file's last edit was not loaded: {running.path}: drain_s: Input should be"
            " greater than or equal to 0\n",
        )
    ]
    assert "configuration reloaded" in reload(running, config(tmp_path, listen), caplog)
    while_running(running, lambda: replies.append(healthz(listen)))
    assert replies[-1] == (200, "ok\n")


def test_tollgate_metrics_listen_serves_them_elsewhere(tmp_path: Path, monkeypatch) -> None:
    """A fleet's workers share one configuration: each serves /metrics and /healthz where its own
    TOLLGATE_METRICS_LISTEN says, and metrics.listen is left to the fleet."""
    configured, own = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TOLLGATE_METRICS_LISTEN", own)
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, configured)))
    r = Running(path)
    with taddons.context(r.gateway) as tctx:
        tctx.configure(r.gateway, tollgate_config=str(path))
        try:
            assert refused(configured) and "tollgate_audit_queue_depth" in scrape(own)
            replies: list[tuple[int, str]] = []
            while_running(r, lambda: replies.append(healthz(own)))
            assert replies == [(200, "ok\n")]
        finally:
            r.stop()
    assert refused(own)


def test_a_bad_tollgate_metrics_listen_stops_start_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOLLGATE_METRICS_LISTEN", "9464")
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, None)))
    g = gateway()
    with (
        taddons.context(g) as tctx,
        pytest.raises(
            exceptions.OptionsError, match=r"TOLLGATE_METRICS_LISTEN=9464: must be host:port, e\.g\. 127\.0\.0\.1:9464"
        ),
    ):
        tctx.configure(g, tollgate_config=str(path))
    pending = g.done()  # type: ignore[attr-defined]
    if pending is not None:
        asyncio.run(pending)
