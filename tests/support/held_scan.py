"""Loaded into the tests' mitmdump after Tollgate (`-s tests/support/held_scan.py`): a body that
holds the marker `HOLD-SCAN` is scanned as always, but only once the file TOLLGATE_TEST_RELEASE
names exists (waited for at most 30 s); while it waits, the file TOLLGATE_TEST_SCANNING names
exists. A test then knows that a scan is under way, and for how long: until it says so, not for a
time a loaded machine might not keep. Every other body is scanned as it is."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tollgate.governance.guardrails.rules import Guardrails

MARKER = b"HOLD-SCAN"
LONGEST_S = 30.0


class HeldScan:
    def __init__(self) -> None:
        self._scan = Guardrails.scan

    def load(self, _loader: Any) -> None:
        scan = self._scan
        scanning = Path(os.environ["TOLLGATE_TEST_SCANNING"])
        release = Path(os.environ["TOLLGATE_TEST_RELEASE"])

        def held(guardrails: Guardrails, body: bytes, *args: Any, **kwargs: Any) -> Any:
            if MARKER in body:
                scanning.touch()
                deadline = time.monotonic() + LONGEST_S
                while not release.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return scan(guardrails, body, *args, **kwargs)

        Guardrails.scan = held  # type: ignore[method-assign]

    def done(self) -> None:
        Guardrails.scan = self._scan  # type: ignore[method-assign]


addons = [HeldScan()]
