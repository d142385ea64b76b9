"""The audit file: records in order, every one written by close, none lost to batching."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tollgate.configuration.fleet import instance_name
from tollgate.records.audit import auditlog
from tollgate.records.audit.auditlog import AuditLog

ADDONS = Path(__file__).resolve().parents[4] / "addons"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _chained(path: Path, line: int) -> dict:
    """The `seq` and `chain` the writer gave the record on `line` (from 1)."""
    record = json.loads(path.read_bytes().split(b"\n")[line - 1])
    return {"seq": record["seq"], "chain": record["chain"]}


def test_close_writes_every_queued_record_in_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    for i in range(500):
        log.write({"event": "llm_call", "n": i, "client": "app"})
    log.close()
    records = _lines(path)
    assert [r["n"] for r in records] == list(range(500))
    # The event first, then the process's instance, then the rest as given.
    assert list(records[0]) == ["event", "instance", "n", "client", "seq", "chain"]
    assert (records[0]["event"], records[0]["instance"]) == ("llm_call", instance_name())


def test_begin_writes_the_started_record_at_once_and_stop_the_stopped_record_last(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "llm_call", "n": 0}\n')  # an earlier run's
    log = AuditLog(str(path), instance="gw-host-1/w2")
    log.begin(auditlog.started_record(["127.0.0.1:8080"], "ab" * 32))
    assert log.begun
    # Written before begin returns, by this thread: nothing waits for the writer.
    started = _lines(path)[1]
    assert list(started) == [
        "event", "instance", "ts", "version", "pid", "listen", "config_sha256", "previous_chain", "seq", "chain"
    ]  # fmt: skip
    assert (started["event"], started["instance"], started["pid"], started["listen"], started["config_sha256"]) == (
        "tollgate_started",
        "gw-host-1/w2",
        os.getpid(),
        ["127.0.0.1:8080"],
        "ab" * 32,
    )
    assert started["version"] == auditlog.tollgate_version() and started["version"]
    for i in range(1, 4):
        log.write({"event": "llm_call", "n": i})
    log.stop()
    records = _lines(path)
    assert records[-1]["event"] == "audit_checkpoint"  # after the stopped record: the last checkpoint
    records = records[:-1]
    assert [r.get("n") for r in records] == [0, None, 1, 2, 3, None]
    assert [r.get("instance") for r in records] == [None, *["gw-host-1/w2"] * 5]  # the earlier run's had none
    stopped = records[-1]
    assert list(stopped) == ["event", "instance", "ts", "pid", "calls", "seq", "chain"]
    assert (stopped["event"], stopped["pid"], stopped["calls"]) == ("tollgate_stopped", os.getpid(), 3)
    assert started["ts"] <= stopped["ts"] and stopped["ts"].endswith("Z")


def test_a_log_that_never_began_writes_no_stopped_record(tmp_path: Path) -> None:
    # A process that did not start (its port in use) opened the file and wrote nothing of its own.
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "llm_call", "n": 0}\n')  # an earlier run's
    log = AuditLog(str(path))
    assert not log.begun
    log.stop()
    assert _lines(path) == [{"event": "llm_call", "n": 0}]


def test_the_instance_is_read_when_the_audit_log_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLGATE_INSTANCE", "edge-2/w1")
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    log.write({"event": "llm_call", "instance": "forged", "n": 1})  # a record cannot name another
    log.close()
    (record,) = _lines(tmp_path / "audit.jsonl")
    assert list(record) == ["event", "instance", "n", "seq", "chain"]
    assert (record["instance"], record["n"]) == ("edge-2/w1", 1)


def test_a_file_that_cannot_take_the_started_record_says_so_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "full.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(str(path))
    try:
        with pytest.raises(OSError, match="No space left on device"):
            log.begin(auditlog.started_record(["127.0.0.1:8080"], None))
    finally:
        log.close()


def test_a_record_reaches_the_file_without_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    try:
        log.write({"event": "llm_call", "n": 1})
        deadline = time.monotonic() + 5
        while not path.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _lines(path) == [{"event": "llm_call", "instance": log.instance, "n": 1, **_chained(path, 1)}]
    finally:
        log.close()


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "llm_call", "n": 0}\n')
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 1})
    log.close()
    assert [r["n"] for r in _lines(path)] == [0, 1]


def test_records_of_a_busy_moment_are_written_together(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data) -> int:
        if fd == log._file.fd:
            writes.append(bytes(data).count(b"\n"))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    try:
        for i in range(200):
            log.write({"event": "llm_call", "n": i})
        deadline = time.monotonic() + 5
        while sum(writes) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == list(range(200))
    assert sum(writes) == 200 and len(writes) <= 3  # the first record at once, the rest in a batch or two


def test_records_of_two_writers_on_one_pipe_stay_whole_lines(tmp_path: Path) -> None:
    # Two writers on one pipe (the audit and mitmdump's console on standard output). A write to a
    # pipe is whole only up to PIPE_BUF bytes: a batch written at once would be cut by the other's.
    fifo = tmp_path / "audit.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    logs = [AuditLog(str(fifo), instance=f"w{n}") for n in (1, 2)]
    received = bytearray()
    padding = "x" * 1000  # records of about a kilobyte: a batch fills the pipe many times over
    try:
        threads = [
            threading.Thread(
                target=lambda log=log: [log.write({"event": "llm_call", "n": i, "p": padding}) for i in range(300)]
            )
            for log in logs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        closing = [threading.Thread(target=log.close) for log in logs]
        for thread in closing:
            thread.start()
        deadline = time.monotonic() + 30
        # Read slowly, so that both writers keep waiting on a full pipe and take turns in it.
        while (any(t.is_alive() for t in closing) or received.count(b"\n") < 600) and time.monotonic() < deadline:
            try:
                received += os.read(reader, 4096)
            except BlockingIOError:
                pass
            time.sleep(0.0002)
        for thread in closing:
            thread.join(timeout=10)
    finally:
        os.close(reader)
    records = [json.loads(line) for line in received.decode().splitlines()]
    for name in ("w1", "w2"):
        assert [r["n"] for r in records if r["instance"] == name] == list(range(300))


def test_a_record_orjson_cannot_write_is_written_escaped_and_the_records_after_it_too(tmp_path: Path) -> None:
    # A path of bytes that are not UTF-8 reaches the record as lone surrogates (mitmproxy decodes
    # it with surrogateescape); such a record once stopped the writer for good.
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "path": "/v1/\udcff", "n": 2**70, "other": object})
    log.write({"event": "llm_call", "client": "grüß"})
    log.close()
    first, second = _lines(path)
    assert first["path"] == "/v1/\udcff" and first["n"] == 2**70 and first["other"] == repr(object)
    assert second == {"event": "llm_call", "instance": log.instance, "client": "grüß", **_chained(path, 2)}
    assert "grüß".encode() in path.read_bytes()  # UTF-8 as it is, not escaped


# ---- when the audit cannot be written: held in order, never half a line, and rotation followed


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


@pytest.fixture
def quick_retry(monkeypatch) -> None:
    monkeypatch.setattr(auditlog, "RETRY_DELAY", 0.1)


def _failing(path: Path) -> AuditLog:
    """An audit log at `path` on a full device, failing: its first record (`n` 0) is held."""
    path.symlink_to("/dev/full")
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 0})
    if not _wait(lambda: log.failing):
        log.close()
        raise AssertionError("the log on a full device never failed")
    return log


def _begun(path: Path) -> AuditLog:
    """An audit log at `path` whose first record (`n` 0) is in the file."""
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 0})
    if not _wait(path.read_text):
        log.close()
        raise AssertionError("the first record never reached the file")
    return log


def _messages(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.slow
def test_a_path_on_a_full_device_fails_and_its_records_are_written_in_order_once_it_names_a_file(
    tmp_path: Path, caplog, quick_retry
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(str(path))
    try:
        assert not log.failing
        log.write({"event": "llm_call", "n": 0})
        assert _wait(lambda: log.failing)
        for i in range(1, 5):
            log.write({"event": "llm_call", "n": i})
        time.sleep(0.35)  # several attempts fail meanwhile: the console says so once
        assert log.failing
        path.unlink()
        path.write_text('{"event": "llm_call", "n": -1}\n')  # another inode: the writer reopens the path
        assert _wait(lambda: not log.failing)
        log.write({"event": "llm_call", "n": 5})
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == [-1, 0, 1, 2, 3, 4, 5]
    failed = _messages(caplog, "cannot write the audit to")
    assert len(failed) == 1 and "No space left on device" in failed[0] and "audit_unavailable" in failed[0]
    assert [r.levelno for r in caplog.records if "cannot write the audit" in r.getMessage()] == [logging.ERROR]
    recovered = _messages(caplog, "is written to")
    assert len(recovered) == 1 and "5 held records written" in recovered[0]


def test_held_records_of_several_megabytes_are_written_in_order(tmp_path: Path, quick_retry) -> None:
    path = tmp_path / "audit.jsonl"
    log = _failing(path)
    try:
        for i in range(1, 3000):
            log.write({"event": "llm_call", "n": i, "pad": ["x" * 250] * 4})
        path.unlink()
        assert _wait(lambda: not log.failing)
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == list(range(3000))


def test_records_beyond_those_held_are_dropped_and_the_console_says_how_many(
    tmp_path: Path, caplog, quick_retry, monkeypatch
) -> None:
    monkeypatch.setattr(auditlog, "MAX_HELD", 5)
    path = tmp_path / "audit.jsonl"
    log = _failing(path)
    try:
        for i in range(1, 8):
            log.write({"event": "llm_call", "n": i})
        time.sleep(0.1)
        path.unlink()  # no file: the writer creates it
        assert _wait(lambda: not log.failing)
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == [0, 1, 2, 3, 4]
    assert len(_messages(caplog, "further ones are dropped")) == 1
    assert len(_messages(caplog, "3 audit records beyond the 5 held were dropped")) == 1


def test_records_still_held_at_close_are_counted_as_lost(tmp_path: Path, caplog, quick_retry) -> None:
    path = tmp_path / "audit.jsonl"
    log = _failing(path)
    log.write({"event": "llm_call", "n": 1})
    log.close()
    assert len(_messages(caplog, "2 audit records could not be written")) == 1


@pytest.mark.slow
def test_a_directory_that_is_gone_fails_until_it_is_back(tmp_path: Path, quick_retry) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "audit.jsonl"
    log = AuditLog(str(path))
    try:
        log.write({"event": "llm_call", "n": 0})
        assert _wait(lambda: path.exists() and path.read_text())
        shutil.rmtree(directory)
        log.write({"event": "llm_call", "n": 1})
        assert _wait(lambda: log.failing)
        log.write({"event": "llm_call", "n": 2})
        directory.mkdir()
        assert _wait(lambda: not log.failing)
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == [1, 2]


def test_a_file_that_does_not_end_a_line_gets_the_records_on_lines_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"event": "llm_call", "n": 0}\n{"event": "llm_ca')  # cut short by a crash, say
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 1})
    log.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"event": "llm_ca' and json.loads(lines[2]) == {
        "event": "llm_call",
        "instance": log.instance,
        "n": 1,
        **_chained(path, 3),
    }
    assert lines[3:] == [b""]


def test_rotation_by_rename_with_a_new_file_created(tmp_path: Path) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = _begun(path)
    try:
        path.rename(rotated)
        path.touch()  # logrotate's `create`
        log.write({"event": "llm_call", "n": 1})
        assert _wait(path.read_text)
    finally:
        log.close()
    assert [r["n"] for r in _lines(rotated)] == [0]
    assert [r["n"] for r in _lines(path)] == [1]


@pytest.mark.slow
def test_rotation_by_rename_with_no_new_file_and_by_delete_creates_the_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = _begun(path)
    try:
        path.rename(rotated)
        log.write({"event": "llm_call", "n": 1})
        assert _wait(lambda: path.exists() and path.read_text())
        rotated.unlink()
        path.unlink()
        log.write({"event": "llm_call", "n": 2})
        assert _wait(lambda: path.exists() and path.read_text())
        log.write({"event": "llm_call", "n": 3})
    finally:
        log.close()
    assert [r["n"] for r in _lines(path)] == [2, 3]
    assert not log.failing


def test_rotation_by_copytruncate_continues_at_the_new_end_without_a_hole(tmp_path: Path) -> None:
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = AuditLog(str(path))
    try:
        for i in range(3):
            log.write({"event": "llm_call", "n": i})
        assert _wait(lambda: len(path.read_text().splitlines()) == 3)
        shutil.copyfile(path, rotated)
        os.truncate(path, 0)  # logrotate's `copytruncate`: the same inode, emptied
        log.write({"event": "llm_call", "n": 3})
    finally:
        log.close()
    assert [r["n"] for r in _lines(rotated)] == [0, 1, 2]
    assert b"\0" not in path.read_bytes()
    assert [r["n"] for r in _lines(path)] == [3]


# A child process, as the limits it sets are its own: its audit file fills up part-way through a
# batch of records (a real short write, then ENOSPC or EFBIG), then gets room again.
_FILLING = r"""
import json, os, resource, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from tollgate.records.audit import auditlog
auditlog.RETRY_DELAY = 0.05
directory, mode = sys.argv[2], sys.argv[3]
path, filler = os.path.join(directory, "audit.jsonl"), os.path.join(directory, "filler")

def wait(condition):
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()

def record(n):
    return {"event": "llm_call", "n": n, "pad": ["x" * 230] * 4}  # within the bounds of a string

if mode == "tmpfs":
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tollgate-test", directory]).returncode:
        sys.exit(77)
    with open(filler, "wb") as f:
        f.write(b"x" * 40 * 1024)  # about 20 KiB left
    make_room = lambda: os.remove(filler)
else:
    resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, resource.RLIM_INFINITY))
    make_room = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log = auditlog.AuditLog(path)
log.write(record(0))
assert wait(lambda: os.path.getsize(path) > 0)
for n in range(1, 41):  # one batch of about 40 KB: the first part fits, the rest does not
    log.write(record(n))
failed = wait(lambda: log.failing)
time.sleep(0.15)  # retries (about three) fail too

def read():
    with open(path, "rb") as f:
        return f.read()

# A retry shows what fits for as long as it takes to cut it off again: what stays is what counts.
deadline = time.monotonic() + 1
while not (during := read()).endswith(b"\n") and time.monotonic() < deadline:
    time.sleep(0.01)
make_room()
recovered = wait(lambda: not log.failing)
log.write(record(41))
log.close()
with open(path, "rb") as f:
    after = f.read()
print(json.dumps({"failed": failed, "recovered": recovered, "during": during.decode("latin-1"),
                  "after": after.decode("latin-1")}))
"""


def _fill_up(tmp_path: Path, mode: str) -> dict:
    directory = tmp_path / "small"
    directory.mkdir()
    command = [sys.executable, "-c", _FILLING, str(ADDONS), str(directory), mode]
    if mode == "tmpfs":
        if shutil.which("unshare") is None:
            pytest.skip("no unshare to mount a small tmpfs with")
        command = ["unshare", "--mount", "--propagation", "private", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if mode == "tmpfs" and (done.returncode == 77 or "unshare:" in done.stderr):
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("mode", ["tmpfs", "rlimit"])
@pytest.mark.slow
def test_a_write_that_fails_part_way_leaves_no_half_line_and_its_records_follow_once_there_is_room(
    tmp_path: Path, mode: str
) -> None:
    result = _fill_up(tmp_path, mode)
    assert result["failed"] and result["recovered"]
    during = result["during"].encode("latin-1")
    assert during.endswith(b"\n") and [json.loads(line)["n"] for line in during.splitlines()] == [0]
    after = result["after"].encode("latin-1")
    assert after.endswith(b"\n") and b"\0" not in after
    assert [json.loads(line)["n"] for line in after.splitlines()] == list(range(42))


# Standard output closed by its reader (EPIPE), then pointed at a file: the records held meanwhile follow.
_BROKEN_PIPE = r"""
import json, logging, os, sys, time
sys.path.insert(0, sys.argv[1])
from tollgate.records.audit import auditlog
auditlog.RETRY_DELAY = 0.1
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
sys.stdin.read()  # until the reader of our standard output has closed it
log = auditlog.AuditLog("-")
log.write({"event": "llm_call", "n": 0})
deadline = time.monotonic() + 10
while not log.failing and time.monotonic() < deadline:
    time.sleep(0.01)
print("FAILING" if log.failing else "SERVING", file=sys.stderr, flush=True)
log.write({"event": "llm_call", "n": 1})
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.dup2(fd, 1)
deadline = time.monotonic() + 10
while log.failing and time.monotonic() < deadline:
    time.sleep(0.01)
log.write({"event": "llm_call", "n": 2})
log.close()
"""


@pytest.mark.slow
def test_a_broken_standard_output_fails_until_it_can_be_written(tmp_path: Path) -> None:
    out = tmp_path / "stdout.jsonl"
    reader, writer = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c", _BROKEN_PIPE, str(ADDONS), str(out)],
        stdin=subprocess.PIPE,
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(writer)
    os.close(reader)  # nobody reads the child's standard output any more
    try:
        _, stderr = child.communicate("", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == 0, stderr
    assert "FAILING" in stderr
    assert stderr.count("cannot write the audit to -") == 1 and "Broken pipe" in stderr
    assert [r["n"] for r in _lines(out)] == [0, 1, 2]


def test_what_a_record_takes_from_a_caller_is_bounded_and_its_chain_holds(tmp_path: Path) -> None:
    from tollgate.records.audit.audit_verify import read_lines, verify

    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), instance="gw")
    log.begin(auditlog.started_record(["127.0.0.1:8080"], None))
    record = {"event": "llm_call", "model": "m" * 2_200_000, "deny_reasons": ["no"] * 40, "client": "alice"}
    log.write(record)
    log.write(
        {
            "event": "llm_call",
            "model": "gpt-4o-mini",
            "findings": {("k" * 300): 1} | {f"k{i}": 1 for i in range(10_000)},
        }
    )
    log.stop()
    lines = path.read_bytes().splitlines()
    assert max(map(len, lines)) <= 64 * 1024
    written = [json.loads(line) for line in lines]
    assert written[1]["model"] == "m" * 255 + "…"
    assert written[1]["deny_reasons"] == ["no"] * 32 + ["… 8 more"]
    assert record["model"] == "m" * 2_200_000  # the caller's record (the flow keeps it) is left as it was
    assert written[2]["model"] == "gpt-4o-mini" and written[2]["findings"].endswith(" bytes cut")
    assert verify(read_lines([str(path)])).faults == []
