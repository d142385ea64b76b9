"""Where a body is scanned: a small, common one at once, on the caller's thread (the event loop);
a large one, or one whose pass finds more candidates than a common body has, in a worker thread,
so that while it is read the event loop serves the other calls.

Why threads and not processes (measured; docs/performance.md, "Guardrails"): Hyperscan's pass
releases the GIL, and the exact patterns run in short windows, so a scanning thread gives the
event loop its turn within a millisecond (the switch interval while a thread reads), with no full
collection of the garbage collector meanwhile (`_Reading`). A worker process would keep the event loop's GIL
wholly free, but it would hold a copy of every configuration's detectors (Tollgate's own keys
among them), be given each body and its findings across a pipe, and be one more process to start
and stop; a thread shares the engines already compiled, and is given the body as it is.

Why not every body: a hop to a thread and back costs about 0.1 ms, as much as the scan of a coding
agent's 10 KB turn (0.17 ms), and every call would pay it. A body under `OFF_LOOP_BYTES` is read
at once, its scans allowed `ON_LOOP_CANDIDATES` anchors in all: a common body has a few (a
coding agent's 60 KB turn, 8), each a window of exact patterns of some microseconds. A hostile
body (groups of digits, addresses, key ids at every few bytes) has thousands: its pass stops at
the bound, and it is scanned anew in a worker thread. So a scan on the event loop costs at most a
pass over 64 KiB and the windows of 64 candidates (well under a millisecond)."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tollgate.governance.guardrails.engine import TooManyCandidates, candidates_at_most
from tollgate.governance.guardrails.rules import Guardrails, Scan

T = TypeVar("T")

# A body this large or larger is scanned in a worker thread.
OFF_LOOP_BYTES = 64 * 1024
# A smaller body whose scans find more anchors than this (all its passes together) is scanned in a
# worker thread too.
ON_LOOP_CANDIDATES = 64
# Scans of large bodies that run at once: a body waits for a thread only behind this many others,
# and each more thread takes the GIL from the event loop more often.
THREADS = 2


# The interpreter's switch interval while a worker thread reads: how long the event loop may wait
# for the interpreter lock at each of its turns (the default, 5 ms, is many such waits a call).
READING_SWITCH_INTERVAL = 0.001


class _Reading:
    """While any worker thread reads a body, and until the last has ended (then as they were):

    - the cyclic garbage collector paused. A hostile body's reading makes hundreds of thousands of
      objects (a finding each, each one the collector follows); made so fast, they set off its full
      collections, each a walk of the heap with the interpreter lock held (50 to 300 ms, longer the
      larger the process), during which the event loop serves no one. They are no cycles: their
      counts free them once the call is read. The event loop's own garbage waits the few seconds.
    - the switch interval shortened: the reading is Python holding the interpreter lock, which the
      event loop gets back only once the interval has passed, at each turn of a call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading = 0
        self._was: tuple[bool, float] = (False, 0.0)

    def __enter__(self) -> None:
        with self._lock:
            if self._reading == 0:
                self._was = (gc.isenabled(), sys.getswitchinterval())
                gc.disable()
                sys.setswitchinterval(min(READING_SWITCH_INTERVAL, self._was[1]))
            self._reading += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._reading -= 1
            if self._reading == 0:
                collecting, interval = self._was
                sys.setswitchinterval(interval)
                if collecting:
                    gc.enable()


_READING = _Reading()


def _off_the_loop[R](read: Callable[[], R]) -> R:
    with _READING:
        return read()


class ScanWorkers:
    """The threads large bodies are scanned in: none until the first, all let go at `close`.

    A scan given to a thread reads the `Guardrails` it was given: a reload meanwhile builds new
    ones and leaves these whole. Its result is applied by whoever awaits it, on the event loop."""

    def __init__(
        self, off_loop_bytes: int = OFF_LOOP_BYTES, threads: int = THREADS, on_loop_candidates: int = ON_LOOP_CANDIDATES
    ) -> None:
        self.off_loop_bytes = off_loop_bytes
        self.on_loop_candidates = on_loop_candidates
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._pool is not None

    def scan(
        self,
        guardrails: Guardrails,
        body: bytes,
        provider: str,
        model: str | None,
        client: str | None,
        groups: tuple[str, ...],
        **options: Any,
    ) -> Scan | Awaitable[Scan]:
        """`guardrails.scan` of the body (given `options` too): its result at once for a small,
        common body (or once closed), else an awaitable of it, scanned in a worker thread. Call it
        on the event loop; what it is given must not change until the scan has ended."""
        return self.run(len(body), lambda: guardrails.scan(body, provider, model, client, groups, **options))

    def run(self, size: int, read: Callable[[], T]) -> T | Awaitable[T]:
        """`read()` (a body's reading, `size` bytes of it, plain work that may be begun again): at
        once for a small body whose scans find few candidates (or once closed), else an awaitable
        of its result, run in a worker thread."""
        if self._closed:
            return read()
        if size < self.off_loop_bytes:
            try:
                with candidates_at_most(self.on_loop_candidates):
                    return read()
            except TooManyCandidates:
                pass  # a hostile body: read from the start where it holds no one up
        return asyncio.wrap_future(self._started().submit(_off_the_loop, read))

    def off_loop(self, work: Callable[[], T]) -> T | Awaitable[T]:
        """`work()` in a worker thread, an awaitable of its result (at once, once closed)."""
        if self._closed:
            return work()
        return asyncio.wrap_future(self._started().submit(_off_the_loop, work))

    def _started(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tollgate-scan")
            return self._pool

    def close(self) -> None:
        """No more scans in threads; the threads end once the scans they hold have (not waited for
        here: the interpreter waits for them at its exit, and a scan ends within seconds)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
