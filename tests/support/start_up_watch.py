"""Loaded into mitmdump after Tollgate (`-s tests/support/start_up_watch.py`): the work a first
call would do on the event loop that start-up could have done, counted once the proxy listens, at
each full garbage collection after, and when it stops; one JSON line each, in the file
TOLLGATE_START_UP_WATCH names. Counts stand for the time such work takes, which would depend on
the machine:

- `walked`: the objects Python's cyclic garbage collector walks in a full collection (every object
  it tracks that is not frozen);
- `tls_contexts`: the upstream TLS contexts mitmproxy has made (each loads its trusted CAs)."""

from __future__ import annotations

import gc
import json
import os
from typing import Any

from mitmproxy.net import tls as net_tls


class StartUpWatch:
    def __init__(self) -> None:
        self._file: Any = None

    def running(self) -> None:
        self._file = open(os.environ["TOLLGATE_START_UP_WATCH"], "a")  # noqa: SIM115 - open while the proxy runs
        self._write("listening")
        gc.callbacks.append(self._collecting)

    def _collecting(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            self._write("full collection")

    def _write(self, event: str) -> None:
        counts = {
            "walked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "tls_contexts": net_tls.create_proxy_server_context.cache_info().misses,
        }
        self._file.write(json.dumps({"event": event, **counts}) + "\n")
        self._file.flush()

    def done(self) -> None:
        if self._collecting in gc.callbacks:
            gc.callbacks.remove(self._collecting)
        if self._file is not None:
            self._write("done")
            self._file.close()


addons = [StartUpWatch()]
