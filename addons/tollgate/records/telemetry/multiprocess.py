"""One /metrics for several Tollgate processes on a host (a fleet's workers): prometheus-client's
multiprocess mode. Each process writes its metric values into files of its own in the directory
`PROMETHEUS_MULTIPROC_DIR` names, and any of them serves what all of them wrote, summed
(`host_registry`). Pure: `stages/records/metrics_server.py` starts it when the variable is set.

prometheus-client's metric classes write each update to the files as it happens; Tollgate's own
families (`metrics.py`) are plain dictionaries updated under one lock per call, for speed. So the
values are copied into the files instead, by a thread of their own every `WRITE_INTERVAL` seconds,
when this process serves a scrape (its own values fresh), and when it stops: the calls cost nothing
more. What another process counted is at most that old.

How each family adds up across processes:

- counters and histograms: summed, over every process that ever wrote (one that died or was
  restarted included), so that a total never goes back;
- `tollgate_limit_remaining`: the value set most recently by any process (`mostrecent`);
- the key pools' keys and resting keys: the highest among the live processes (`livemax`: they share
  one configuration, and the rests through the ledger's store);
- the audit export's lag: the highest among the live processes (the one that ships the file);
- the audit queue, resident and virtual memory, open file descriptors: summed over the live
  processes (`livesum`);
- `process_start_time_seconds`, `process_max_fds`: the lowest among the live ones (`livemin`);
- `tollgate_info`: one series per live process (`liveall`, with its `pid`).

A live-only value leaves with its process: its files are removed when it stops, or by whoever
restarts a process killed outright (`prometheus_client.multiprocess.mark_process_dead(pid, dir)`).
The directory must be empty when the processes start (the supervisor makes it anew)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress

from prometheus_client import CollectorRegistry, PlatformCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
WRITE_INTERVAL = 1.0  # seconds between two writes of the values, at most

# How a gauge adds up across processes (prometheus-client's multiprocess modes); a gauge not named
# here is summed over the live processes.
GAUGE_MODES = {
    "tollgate_limit_remaining": "mostrecent",
    "tollgate_pool_keys": "livemax",
    "tollgate_pool_keys_resting": "livemax",
    "tollgate_audit_queue_depth": "livesum",
    "tollgate_audit_export_lag_records": "livemax",  # the one process that ships the file says it
    "tollgate_audit_postgres_lag_records": "livemax",  # likewise
    "tollgate_agents_responses_kept": "livesum",  # each process keeps its own
    "tollgate_agents_responses_kept_chars": "livesum",
    "tollgate_info": "liveall",
    "process_resident_memory_bytes": "livesum",
    "process_virtual_memory_bytes": "livesum",
    "process_open_fds": "livesum",
    "process_max_fds": "livemin",
    "process_start_time_seconds": "livemin",
}
DEFAULT_GAUGE_MODE = "livesum"
# The interpreter's own families (garbage collection, version) are the serving process's alone.
NOT_SHARED = ("python_",)

Key = tuple[str, str]  # (file kind, the sample's key in it)


class SharedFiles:
    """This process's values, written into its files in `directory` (named by `pid`, as
    prometheus-client names them: `counter_<pid>.db`, `gauge_livesum_<pid>.db`, …)."""

    def __init__(self, directory: str, collect: Collector, pid: int | None = None) -> None:
        self.directory = directory
        self.pid = os.getpid() if pid is None else pid
        self._collect = collect  # this process's registry
        self._files: dict[str, MmapedDict] = {}
        self._written: dict[Key, float] = {}  # what each sample last was, as written
        self._lock = threading.Lock()  # the writer thread, the scrapes' threads, `stop`
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Write now, then every WRITE_INTERVAL seconds from a thread of its own."""
        self.write()
        self._thread = threading.Thread(target=self._run, name="tollgate-metrics-files", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(WRITE_INTERVAL):
            try:
                self.write()
            except Exception:  # the next write tries again
                logger.exception("Tollgate: writing the metrics' values for the other processes failed")

    def write(self) -> None:
        """The values that changed since they were last written, into the files."""
        now = time.time()
        with self._lock:
            if self._stopped.is_set():
                return
            seen: set[Key] = set()
            for kind, key, value in shared_samples(self._collect.collect()):
                seen.add((kind, key))
                if self._written.get((kind, key)) != value:
                    self._file(kind).write_value(key, value, now)
                    self._written[(kind, key)] = value
            # A gauge's series that is gone (a provider no longer configured) reads 0, not what it was.
            for kind, key in [k for k in self._written if k not in seen and k[0].startswith("gauge_")]:
                if self._written[(kind, key)] != 0:
                    self._file(kind).write_value(key, 0.0, now)
                    self._written[(kind, key)] = 0.0

    def _file(self, kind: str) -> MmapedDict:
        file = self._files.get(kind)
        if file is None:
            file = self._files[kind] = MmapedDict(os.path.join(self.directory, f"{kind}_{self.pid}.db"))
        return file

    def stop(self) -> None:
        """As the process stops: its values written a last time (its counters count on in the
        others' totals), its live-only values removed."""
        with suppress(Exception):
            self.write()
        with self._lock:
            self._stopped.set()
            for file in self._files.values():
                file.close()
            self._files.clear()
        with suppress(OSError):
            mark_process_dead(self.pid, self.directory)


def shared_samples(families: Iterable[Metric]) -> Iterable[tuple[str, str, float]]:
    """Each sample of `families` as the files hold it: its file's kind (`counter`, `histogram`,
    `gauge_<mode>`), its key and its value. A histogram's buckets are written each on its own
    (prometheus-client adds them up when it reads), without `_count` (it counts them)."""
    for family in families:
        if family.name.startswith(NOT_SHARED):
            continue
        if family.type == "counter":
            for s in family.samples:
                if s.name.endswith("_total"):
                    yield "counter", _key(family, s.name, s.labels), s.value
        elif family.type == "gauge":
            kind = f"gauge_{GAUGE_MODES.get(family.name, DEFAULT_GAUGE_MODE)}"
            for s in family.samples:
                yield kind, _key(family, s.name, s.labels), s.value
        elif family.type == "histogram":
            yield from _histogram_samples(family)


def _histogram_samples(family: Metric) -> Iterable[tuple[str, str, float]]:
    cumulative: dict[tuple[tuple[str, str], ...], list[tuple[float, str, float]]] = defaultdict(list)
    for s in family.samples:
        if s.name.endswith("_bucket"):
            rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            cumulative[rest].append((float(s.labels["le"]), s.labels["le"], s.value))
        elif s.name.endswith("_sum"):
            yield "histogram", _key(family, s.name, s.labels), s.value
    for rest, buckets in cumulative.items():
        before = 0.0
        for _, le, total in sorted(buckets):
            yield "histogram", _key(family, f"{family.name}_bucket", {**dict(rest), "le": le}), total - before
            before = total


def _key(family: Metric, name: str, labels: dict[str, str]) -> str:
    return mmap_key(family.name, name, list(labels), list(labels.values()), family.documentation)


def host_registry(directory: str) -> CollectorRegistry:
    """What every process wrote into `directory`, added up as the modes say, and this process's
    interpreter (`python_info`): what /metrics serves in multiprocess mode."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    PlatformCollector(registry=registry)
    return registry


def usable_directory(value: str) -> str:
    """`value` when it names a directory this process can write in; else ValueError saying why."""
    if not os.path.isdir(value):
        raise ValueError("not a directory")
    if not os.access(value, os.W_OK | os.X_OK):
        raise ValueError("not writable")
    return value
