"""Loaded into mitmdump after Tollgate (`-s tests/support/gc_watch.py`): how many objects Python's
cyclic garbage collector has to walk in a full collection (every object it tracks that is not
frozen), once the proxy listens and at each full collection after; one JSON line each, in the file
TOLLGATE_GC_WATCH names. A count of the work such a collection does on the event loop, where its
time would depend on the machine."""

from __future__ import annotations

import gc
import json
import os
from typing import Any


class GcWatch:
    def __init__(self) -> None:
        self._file: Any = None

    def running(self) -> None:
        self._file = open(os.environ["TOLLGATE_GC_WATCH"], "a")  # noqa: SIM115 - open while the proxy runs
        self._write("listening")
        gc.callbacks.append(self._collecting)

    def _collecting(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            self._write("full collection")

    def _write(self, event: str) -> None:
        walked = len(gc.get_objects())
        self._file.write(json.dumps({"event": event, "walked": walked, "frozen": gc.get_freeze_count()}) + "\n")
        self._file.flush()

    def done(self) -> None:
        if self._collecting in gc.callbacks:
            gc.callbacks.remove(self._collecting)
        if self._file is not None:
            self._write("done")
            self._file.close()


addons = [GcWatch()]
