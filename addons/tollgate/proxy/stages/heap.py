"""The objects made at start-up kept out of the garbage collector's full collections.

Loading mitmproxy, Tollgate, its price table and its configuration leaves some 150 000 objects that
live as long as the process. Python's cyclic garbage collector walks every one of them in its first
full collection, which the first few calls' allocations set off: some 100 ms on the event loop
(more on a loaded machine), during which every stream in flight waits. Before the proxy listens,
they are collected once and frozen (`gc.freeze`): later collections walk only what was made since.
A configuration a reload replaces is freed as before, by reference counting; the few of its
objects in reference cycles (a dozen) stay."""

from __future__ import annotations

import gc
import logging
import time

from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


class Heap:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._frozen = False

    def configure(self, _updated: set[str]) -> None:
        """Once, when the first configuration has been loaded: mitmproxy listens after its options
        are configured, and only then."""
        if self._frozen or self.shared.loaded is None:
            return
        self._frozen = True
        start = time.perf_counter()
        gc.collect()
        gc.freeze()
        took = (time.perf_counter() - start) * 1000
        logger.debug(f"Tollgate: {gc.get_freeze_count()} objects of start-up collected and frozen in {took:.0f} ms")
