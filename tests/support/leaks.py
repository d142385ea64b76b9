"""What the tests look for where a secret must not be: the audit, the console, the saved flows."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mitmproxy import io
from mitmproxy.flow import Flow


def assert_no_secret(outputs: Mapping[str, bytes], secrets: Iterable[str]) -> None:
    """Fails naming the first secret found and where (`outputs`: each place's name, its bytes)."""
    secrets = list(secrets)
    for where, content in outputs.items():
        for secret in secrets:
            assert secret.encode() not in content, f"{secret} found in {where}"


def stopped_outputs(gateway: Any) -> dict[str, bytes]:
    """A gateway started with `save_flows`, stopped (which flushes its saved flows); what it wrote:
    its audit, its console, its saved flows."""
    gateway.proxy.stop()
    return {
        "audit": gateway.audit_path.read_bytes(),
        "console": gateway.proxy.output.read_bytes(),
        "saved flows": gateway.saved.read_bytes(),
    }


def stopped_texts(gateway: Any, metrics: str) -> dict[str, str]:
    """A gateway started with `save_flows`, serving its metrics at `metrics` (host:port): its metrics
    scraped, then it is stopped (which flushes its saved flows); what it wrote, as text: its console,
    its audit, its saved flows and those metrics."""
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as scraped:
        text = scraped.read().decode()
    console = gateway.proxy.console()
    gateway.proxy.stop()
    return {
        "console": console,
        "audit": gateway.audit_path.read_text(),
        "saved flows": gateway.saved.read_bytes().decode("latin-1"),
        "metrics": text,
    }


def saved_flows(path: Path) -> list[Flow]:
    """The flows mitmdump saved to `path` (`--save-stream-file`), in order."""
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())
