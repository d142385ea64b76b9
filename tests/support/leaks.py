"""What the tests look for where a secret must not be: the audit, the console, the saved flows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from mitmproxy import io
from mitmproxy.flow import Flow


def assert_no_secret(outputs: Mapping[str, bytes], secrets: Iterable[str]) -> None:
    """Fails naming the first secret found and where (`outputs`: each place's name, its bytes)."""
    secrets = list(secrets)
    for where, content in outputs.items():
        for secret in secrets:
            assert secret.encode() not in content, f"{secret} found in {where}"


def saved_flows(path: Path) -> list[Flow]:
    """The flows mitmdump saved to `path` (`--save-stream-file`), in order."""
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())
