"""The metrics stage: /metrics served where `metrics.listen` says, moved, stopped and refused as the
configuration says; each call counted at its end."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from prometheus_client.parser import text_string_to_metric_families
from tests.support.proxy import free_port

from tollgate.pipeline import gateway
from tollgate.stages.settings import Settings
from tollgate.stages.shared import Shared

from .test_settings import Running, replace_by_rename


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
            pending = r.gateway.done()  # type: ignore[attr-defined]
            if pending is not None:
                asyncio.run(pending)


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


def test_a_port_in_use_at_start_up_is_an_error_naming_the_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the built-in configuration's ledger file is made in the working directory
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        path = tmp_path / "tollgate.yaml"
        path.write_text(yaml.safe_dump(config(tmp_path, busy)))
        g = gateway()
        with (
            taddons.context(proxyserver.Proxyserver(), g) as tctx,
            pytest.raises(exceptions.OptionsError, match=r"metrics\.listen: cannot serve"),
        ):
            tctx.configure(g, tollgate_config=str(path))
        settings: Settings = g.steps["configure"][0].__self__  # type: ignore[attr-defined]
        shared: Shared = settings.shared
        # The configuration in force (the built-in one, before the option was set) stays.
        assert shared.loaded is not None and shared.loaded.config.metrics.listen is None
        assert (
            shared.metrics is None and shared.audit is not None and shared.audit.path != str(tmp_path / "audit.jsonl")
        )
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
