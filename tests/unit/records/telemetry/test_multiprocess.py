"""Several processes' metrics in one /metrics (prometheus-client's multiprocess mode): what each
writes into the shared directory, read back summed as each family says, by prometheus-client's own
collector and parser."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tollgate.credentials.keypool import KeyPool
from tollgate.records.telemetry import multiprocess
from tollgate.records.telemetry.metrics import MetricSet
from tollgate.records.telemetry.multiprocess import SharedFiles, host_registry

CALL = ("alice", "", "openai", "gpt-4o", "allow", "2xx", "")
GEN_AI = ("chat", "openai", "gpt-4o")


class Process:
    """One Tollgate process as its metrics see it: its families, pools and audit queue, and its files."""

    def __init__(self, directory: Path, pid: int, keys: int, queued: int) -> None:
        self.pools = {"openai": KeyPool(tuple(f"sk-{i}" for i in range(keys)))}
        self.queued = queued
        self.set = MetricSet(pools=lambda: self.pools, audit_depth=lambda: self.queued)
        self.files = SharedFiles(str(directory), self.set.registry, pid=pid)


def served(directory: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = generate_latest(host_registry(str(directory))).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    matches = [v for ls, v in found.get(name, []) if all(ls.get(k) == x for k, x in labels.items())]
    return sum(matches) if matches else None


@pytest.fixture
def two(tmp_path: Path) -> tuple[Process, Process]:
    return Process(tmp_path, 1001, keys=2, queued=3), Process(tmp_path, 1002, keys=3, queued=4)


def test_counters_and_histograms_are_summed_over_the_processes(two, tmp_path: Path) -> None:
    a, b = two
    a.set.calls.inc(CALL, 3)
    b.set.calls.inc(CALL, 2)
    b.set.calls.inc(("bob", "", "openai", "gpt-4o", "deny", "4xx", "policy_denied"))
    for seconds, process in ((0.015, a), (0.3, a), (0.3, b), (100.0, b)):
        process.set.duration.observe((*GEN_AI, "chat.completions", "2xx", ""), seconds)
    a.files.write()
    b.files.write()
    found = served(tmp_path)
    assert value(found, "tollgate_calls_total", client="alice") == 5
    assert value(found, "tollgate_calls_total", client="bob", error_kind="policy_denied") == 1
    duration = "gen_ai_client_operation_duration_seconds"
    # Cumulative again, as Prometheus reads buckets: each process's counted once.
    assert value(found, f"{duration}_bucket", le="0.01") == 0
    assert value(found, f"{duration}_bucket", le="0.02") == 1
    assert value(found, f"{duration}_bucket", le="0.32") == 3
    assert value(found, f"{duration}_bucket", le="81.92") == 3
    assert value(found, f"{duration}_bucket", le="+Inf") == 4
    assert value(found, f"{duration}_count") == 4
    assert value(found, f"{duration}_sum") == pytest.approx(100.615)


def test_each_gauge_adds_up_as_its_mode_says(two, tmp_path: Path) -> None:
    a, b = two
    b.pools["openai"].rest("sk-1", 60)
    key = ("daily", "alice", "requests_per_day")
    a.set.limit_remaining.set(key, 7)
    a.files.write()
    time.sleep(0.01)
    b.set.limit_remaining.set(key, 5)  # later: the counter as it is now
    b.files.write()
    found = served(tmp_path)
    assert value(found, "tollgate_limit_remaining", limit="daily") == 5
    assert value(found, "tollgate_pool_keys", provider="openai") == 3  # the most any live process has
    assert value(found, "tollgate_pool_keys_resting", provider="openai") == 1
    assert value(found, "tollgate_audit_queue_depth") == 7  # summed: each process's own queue
    infos = sorted(ls["pid"] for ls, _ in found["tollgate_info"])
    assert infos == ["1001", "1002"]  # one per live process, each with its instance
    assert value(found, "process_resident_memory_bytes") > 0
    assert "python_info" in found  # the serving process's own
    assert "python_gc_objects_collected_total" not in found  # not summed across interpreters

    time.sleep(0.01)
    a.set.limit_remaining.set(key, 4)
    a.files.write()
    assert value(served(tmp_path), "tollgate_limit_remaining", limit="daily") == 4


@pytest.mark.slow
def test_a_process_that_stops_leaves_its_counts_and_takes_its_live_values(two, tmp_path: Path) -> None:
    a, b = two
    a.set.calls.inc(CALL, 3)
    b.set.calls.inc(CALL, 2)
    a.files.write()
    b.files.start()  # written now, then by its thread
    a.set.calls.inc(CALL, 10)  # counted after the last write: `stop` writes it
    a.files.stop()
    found = served(tmp_path)
    assert value(found, "tollgate_calls_total") == 15
    assert value(found, "tollgate_audit_queue_depth") == 4  # b's alone
    assert [ls["pid"] for ls, _ in found["tollgate_info"]] == ["1002"]
    assert value(found, "tollgate_pool_keys", provider="openai") == 3
    b.set.calls.inc(CALL, 1)
    deadline = time.monotonic() + 5
    while value(served(tmp_path), "tollgate_calls_total") != 16 and time.monotonic() < deadline:
        time.sleep(0.05)  # b's thread writes within WRITE_INTERVAL
    assert value(served(tmp_path), "tollgate_calls_total") == 16
    b.files.stop()
    assert sorted(os.listdir(tmp_path)) == ["counter_1001.db", "counter_1002.db"]  # the live values gone


def test_a_gauge_series_that_goes_reads_zero(two, tmp_path: Path) -> None:
    a, _ = two
    a.files.write()
    assert value(served(tmp_path), "tollgate_pool_keys", provider="openai") == 2
    a.pools = {}  # the provider's keys configured no more
    a.files.write()
    assert value(served(tmp_path), "tollgate_pool_keys", provider="openai") == 0


def test_the_directory_must_be_one_this_process_can_write_in(tmp_path: Path) -> None:
    assert multiprocess.usable_directory(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        multiprocess.usable_directory(str(tmp_path / "missing"))
