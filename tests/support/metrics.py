"""Reading Tollgate's Prometheus endpoint, and waiting for what the tests watch come true."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable


def scrape(listen: str, wait: float = 10.0) -> str:
    """The metrics the endpoint at `listen` gives now. Its server opens once the configuration has
    loaded: waited for, up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def gauge(listen: str, name: str) -> float | None:
    """The value of the unlabelled metric `name` at `listen`, if it has one."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", scrape(listen), re.M)
    return None if found is None else float(found.group(1))


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Fails saying `what` it waited for, unless `condition` holds within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
