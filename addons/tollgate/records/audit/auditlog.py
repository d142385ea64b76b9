"""The audit file: one JSON object per line, rendered by structlog and written by a thread of its
own, so that a slow disk never stalls the proxy's event loop (and with it every other flow).

An audited gateway must not serve calls it cannot record: while the file cannot be written (a full
disk, its directory gone, a closed pipe) `failing` is true, and the records are held in memory, in
order, until a retry succeeds. A failed write never leaves part of a line behind, and a file that
logrotate moved, deleted or truncated is followed.

Besides the calls' records, the process writes its own: `tollgate_started` first, written at once
(`begin`) once the proxy listens, so that a file that cannot take it stops start-up before any call
is served, and `tollgate_stopped` last (`stop`), only after a started record. Every record names
the process's `instance` (`instance_name`), right after its `event`: several processes (a fleet's
workers) may append to one file."""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import json
import logging
import os
import queue
import select
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from tollgate.common.audit_chain import CHECKPOINT, STARTED, STOPPED, Chain, Signer, last_chain
from tollgate.configuration.fleet import instance_name
from tollgate.records.audit.anchors import ANCHOR, ANCHOR_GAP, Anchorer
from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.bounded import bounded, within_line
from tollgate.records.audit.in_flight import InFlight, InstanceBusy, in_flight_secret, journal_path

logger = logging.getLogger(__name__)

# Lines of the in-flight file Tollgate did not write, or calls it kept under another key.
IN_FLIGHT_REFUSED = "in_flight_refused"
# The records of the process rather than of a call: readers of calls skip them.
PROCESS_EVENTS = frozenset((STARTED, STOPPED, CHECKPOINT, IN_FLIGHT_REFUSED, ANCHOR, ANCHOR_GAP))

_CLOSE = object()
_CHECKPOINT = object()  # a checkpoint here (at stop)
_WAKE = object()  # nothing to write: the writer looks at the time of the next checkpoint again


class _Anchoring(bytes):
    """An anchor's record (`audit_anchor`, `anchor_gap`): linked as any, but it does not by itself
    make a checkpoint due (else each anchor would make the next checkpoint, anchored in turn)."""


# While calls keep coming, the writer wakes once per batch, not once per record: each wake-up costs
# both threads a hand-over of the interpreter lock (futex calls, context switches, the event loop
# stalled meanwhile), which per record cost the proxy ~15 % of its requests/s under load, and with
# 50 ms batches still ~2 % more than with 250 ms ones. A record that comes after a quiet spell is
# written at once.
BATCH_DELAY = 0.25  # seconds between two writes, at most what a record waits for others to join it
RETRY_DELAY = 1.0  # seconds between two attempts while writing fails
# Records held while writing fails. Calls are refused meanwhile, so what comes is mostly their short
# records; beyond this many, records are dropped (and the console says how many).
MAX_HELD = 100_000
_CHUNK = 1 << 20  # bytes per write of held records: a failure part-way keeps what was written
# Bytes per write to a pipe or a device: only so much is written whole while another writer writes
# to it (mitmdump's console lines, from the event loop's thread; another process); a larger write
# may be cut by theirs.
_PIPE_CHUNK = select.PIPE_BUF

_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


@functools.cache
def tollgate_version() -> str | None:
    try:
        return importlib.metadata.version("tollgate")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return None


def started_record(listen: Sequence[str], config_sha256: str | None) -> dict[str, Any]:
    """The record that opens the process's part of the file: when and what started, where it
    listens, and which configuration file (by its bytes' SHA-256; None without one)."""
    return {
        "event": STARTED,
        "ts": utc_timestamp(time.time()),
        "version": tollgate_version(),
        "pid": os.getpid(),
        "listen": list(listen),
        "config_sha256": config_sha256,
    }


def stopped_record(calls: int) -> dict[str, Any]:
    """The record that closes it: the call records the process wrote since its started record."""
    return {"event": STOPPED, "ts": utc_timestamp(time.time()), "pid": os.getpid(), "calls": calls}


CHECKPOINT_S = 60.0


class AuditLog:
    def __init__(
        self,
        path: str,
        instance: str | None = None,
        follows: AuditLog | None = None,
        checkpoint_s: float = CHECKPOINT_S,
        signer: Signer | None = None,
    ) -> None:
        self.path = path
        self.instance = instance_name() if instance is None else instance
        # The chain goes on from the log this one replaces (a reload that names another file).
        self._chain: Chain = Chain() if follows is None else follows._chain
        self._follows = follows
        self._handed_over = False  # another log goes on with the chain: this one links nothing more
        self.checkpoint_s, self.signer = checkpoint_s, signer
        # What anchors the checkpoints (`audit.anchor`), told of each one written but the last.
        self.anchorer: Anchorer | None = None
        self._anchoring = 0  # anchor records linked since the last checkpoint
        self._to_anchor: tuple[int, str] | None = None  # the checkpoint linked, told once written
        # Monotonic time of the first record no checkpoint covers yet: the next timed checkpoint is
        # `checkpoint_s` after it (read anew at each look: a reload may change the interval).
        self._unchecked_since: float | None = None
        # Read by AuditGate on every call, written by the writer thread only.
        self.failing = False
        self.problem: str | None = None  # while failing: why, in words (for /healthz)
        self.calls = 0  # the call records given to `write` (the event loop's count)
        self.begun = False  # the started record is written (`begin`)
        # The calls sent and not yet recorded, beside the file (from `begin`; none on standard output).
        self.in_flight: InFlight | None = None
        # structlog's renderer, without a bound logger around it: a record is a whole event dict
        # already (its "event" first). A file gets UTF-8 from orjson (the standard library's
        # encoder cost several times more per record); standard output, whose encoding may not be
        # UTF-8, text escaped to ASCII.
        if path == "-":
            self._render = structlog.processors.JSONRenderer(sort_keys=False, ensure_ascii=True)
            self._file = _AppendedFile(path, standard_output=True)
        else:
            self._render = structlog.processors.JSONRenderer(serializer=_utf8_json)
            self._file = _AppendedFile(path)  # fails start-up when it cannot
            if self._file.regular:  # a file beside it; none beside a device or a pipe
                try:
                    self.in_flight = self._open_in_flight()
                except BaseException:
                    os.close(self._file.fd)
                    raise
        self._held: deque[bytes] = deque()  # records not yet written, oldest first (writer thread only)
        self._dropped = 0
        self._retry_at = 0.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._writer = threading.Thread(target=self._run, name=f"tollgate-audit {path}", daemon=True)
        self._writer.start()

    def begin(self, record: dict[str, Any]) -> None:
        """Write `record` (`started_record`) before any other, at once and from this thread: OSError
        when the file cannot take it. Nothing is queued yet, so the writer thread is idle. It
        names the last chain this instance wrote before (`previous_chain`). A log that
        follows another (a reload) takes the chain once that one has linked what it was given."""
        follows = self._follows
        if follows is not None:
            follows._hand_over()
        chain = self._chain
        saved = (chain.seq, chain.last, chain.covered, chain.checkpoint_seq)
        try:
            record = {**record, "previous_chain": self._previous_chain()}
            line = self._render(None, "info", self._named(record))
            started = chain.link(line.encode() if isinstance(line, str) else line) + b"\n"
            self._file.write_whole(started)
        except BaseException:
            chain.seq, chain.last, chain.covered, chain.checkpoint_seq = saved
            if follows is not None:
                follows._handed_over = False
            raise
        self._follows = None
        self.begun = True
        self._queue.put(_WAKE)  # the writer times the next checkpoint from this record on
        if self._file.identity is not None:
            self._recover(follows.in_flight if follows is not None else None, started)

    def configure(self, checkpoint_s: float, signer: Signer | None) -> None:
        """The checkpoints' interval and signing key (a reload may change them): a checkpoint due
        sooner under the new interval is written then, not when the old one would have had it."""
        changed = checkpoint_s != self.checkpoint_s
        self.checkpoint_s, self.signer = checkpoint_s, signer
        if changed:
            self._queue.put(_WAKE)  # the writer may be waiting for the old interval's time

    def anchor_with(self, anchorer: Anchorer | None) -> None:
        """The anchorer of `audit.anchor` from now on (None: none); the one before it is stopped."""
        before, self.anchorer = self.anchorer, anchorer
        if before is not None and before is not anchorer:
            before.stop()

    def write_anchor(self, record: dict[str, Any]) -> None:
        """An anchor's record (`audit_anchor`, `anchor_gap`), queued from the anchorer's thread: it
        never makes a checkpoint due by itself."""
        line = self._render(None, "info", self._named(record))
        self._queue.put(_Anchoring(line.encode() if isinstance(line, str) else line))

    def _previous_chain(self) -> str | None:
        """The last chain this instance wrote: read back from the file's end, else (the file rotated
        since, or new) as its in-flight file remembers it; None for the instance's first run."""
        found = None
        if self._file.regular:
            try:
                found = last_chain(self._file.fd, os.fstat(self._file.fd).st_size, self.instance)
            except OSError:  # a file opened for writing only
                pass
        if found is None and self._follows is None and self.in_flight is not None:
            found = self.in_flight.last_chain
        return found

    def _open_in_flight(self) -> InFlight | None:
        """The file of this instance's calls in flight, locked: InstanceBusy when another live
        process of the instance holds it; None (and said) when it cannot be kept."""
        try:
            key = None if self.signer is None else self.signer.raw_private()
            secret = in_flight_secret(self.path, self.instance, key)
            return InFlight(journal_path(self.path, self.instance), secret, self.instance)
        except InstanceBusy:
            raise
        except OSError as e:
            self._say(logging.ERROR, f"Tollgate: cannot keep the calls in flight beside {self.path}: {e}")
            return None

    def _hand_over(self) -> None:
        """Another log goes on with this one's chain: wait until the writer has linked every
        record queued, then link nothing more (its timed checkpoints stop)."""
        linked = threading.Event()
        self._queue.put(linked)
        if not self._closed.is_set():
            linked.wait(timeout=10)
        self._handed_over = True

    def _recover(self, before: InFlight | None, started: bytes) -> None:
        """The file of this instance's calls in flight taken over: the calls its previous process
        sent and never recorded (it was killed) are written now, after the started record. They
        stay in flight until written: a process killed again before that leaves them to the next.
        Lines Tollgate did not write (their MAC does not hold) are refused, and calls kept under
        another key (`audit.signing_key` changed) cannot be checked: a record says how many,
        nothing of what they hold. After a reload (`before`: the log this one follows), the calls
        still in flight go on here."""
        in_flight = self.in_flight
        if in_flight is None:
            return
        in_flight.take()
        in_flight.written(started)  # the chain's last, until the writer writes more
        if before is not None:
            in_flight.take_over(before)
        if in_flight.refused or in_flight.other_key:
            refusal = {
                "event": IN_FLIGHT_REFUSED,
                "ts": utc_timestamp(time.time()),
                "lines": in_flight.refused,
                "other_key": in_flight.other_key,
            }
            self._queue.put(self._render(None, "info", self._named({**refusal, "file": in_flight.path})))
        if in_flight.refused:
            self._say(  # a warning: an error logged while mitmproxy starts would stop it
                logging.WARNING,
                f"Tollgate: {in_flight.refused} lines of {in_flight.path} were not written by Tollgate (their MAC"
                " does not hold): refused, nothing of them is written to the audit",
            )
        if in_flight.other_key:
            self._say(
                logging.WARNING,
                f"Tollgate: {in_flight.other_key} calls of this instance's previous process were kept in"
                f" {in_flight.path} under another key (audit.signing_key changed since): they cannot be"
                " checked, and are not recorded",
            )
        for request_id, records in in_flight.lost.items():
            in_flight.began_records(request_id, records)
            for record in records:
                self.write(record)
        if in_flight.lost:
            self._say(
                logging.WARNING,
                f"Tollgate: {len(in_flight.lost)} calls of this instance's previous process ended with it"
                f" unrecorded; their records are written now (error: worker lost)",
            )

    def write(self, record: dict[str, Any], call: bool = True) -> dict[str, Any]:
        """Render one call's record (an event dict) and queue it. It reaches the file at once or,
        while calls keep coming, within `BATCH_DELAY`; records keep their order. Rendered here, not
        by the writer, so that the writer holds the interpreter lock only to hand lines to the file.
        `call`: whether it counts among the calls `tollgate_stopped` names (a connection's does not).
        What it takes from a caller, a policy or an upstream is bounded first (`bounded`): the
        record as bounded is returned, for those who follow the calls' ends."""
        if call:
            self.calls += 1
        record = bounded(record)
        self._queue.put(within_line(self._named(record), self._rendered))
        return record

    def _rendered(self, record: dict[str, Any]) -> bytes | str:
        return self._render(None, "info", record)

    def stop(self) -> None:
        """As the process stops: `stopped_record` after every other record, then `close`. A process
        that never began its part of the file (it did not start) writes none."""
        self.anchor_with(None)  # no anchor's record after the stopped one
        if self.begun:
            self._queue.put(self._render(None, "info", self._named(stopped_record(self.calls))))
            self._queue.put(_CHECKPOINT)
        self.close()

    def _named(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as written: its `event`, then this process's `instance`, then the rest (a copy:
        the caller's record, which the flow keeps, is left as it was). A record cannot name another."""
        named = {"event": record.get("event"), "instance": None, **record}
        named["instance"] = self.instance
        return named

    def queued(self) -> int:
        """Records not yet written: queued for the writer, or held by it while writing fails. Safe
        from any thread (it only reads)."""
        return self._queue.qsize() + len(self._held)

    def close(self) -> None:
        """Write what is queued and held (one last attempt), then close the file."""
        self.anchor_with(None)
        self._closed.set()
        self._queue.put(_CLOSE)
        self._writer.join(timeout=10)
        if self.in_flight is not None:
            self.in_flight.close()
            self.in_flight = None
        if self._file.identity is not None:
            try:
                os.close(self._file.fd)
            except OSError:
                pass

    # ---- the writer thread

    def _run(self) -> None:
        try:
            self._write_all()
        except BaseException:  # a bug: refuse calls rather than serve them unrecorded
            self.problem = f"the writer for {self.path} stopped"
            self.failing = True
            logger.exception(f"Tollgate: the audit writer for {self.path} stopped; calls are refused")

    def _write_all(self) -> None:
        last_write = 0.0
        while True:
            batch = self._next_records(last_write)
            closing = _CLOSE in batch
            self._hold(self._linked(batch[: batch.index(_CLOSE)] if closing else batch))
            if self.failing and not closing and time.monotonic() < self._retry_at:
                continue  # records gather until the next attempt
            if self._held or self.failing:
                self._write_held()
            if self._to_anchor is not None and not self._held and not closing:
                covers, self._to_anchor = self._to_anchor, None
                anchorer = self.anchorer
                if anchorer is not None:
                    anchorer.checkpointed(*covers)
            last_write = time.monotonic()
            if closing:
                if self._held or self._dropped:
                    self._say(
                        logging.ERROR,
                        f"Tollgate: {len(self._held) + self._dropped} audit records could not be written to"
                        f" {self.path} before shutting down and are lost",
                    )
                return

    def _next_records(self, last_write: float) -> list[Any]:
        """What has come: at least one record, or, while writing fails, what came until the next attempt."""
        since = self._unchecked_since
        due = None if since is None else since + self.checkpoint_s
        if self.failing:
            try:
                until = self._retry_at if due is None else min(due, self._retry_at)
                batch = [self._queue.get(timeout=max(0.0, until - time.monotonic()))]
            except queue.Empty:
                batch = []
        else:
            try:
                batch = [self._queue.get(timeout=None if due is None else max(0.0, due - time.monotonic()))]
            except queue.Empty:
                return []  # a checkpoint is due
            pause = last_write + BATCH_DELAY - time.monotonic()
            if pause > 0:
                self._closed.wait(pause)  # a busy moment: let its records gather (not when closing)
        try:
            while True:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _linked(self, batch: list[Any]) -> list[bytes]:
        """The batch's records, each given its `seq` and `chain`, with the checkpoints due among them."""
        chain, lines = self._chain, []
        for item in batch:
            if isinstance(item, threading.Event):  # `_hand_over`: what came before it is linked
                self._handed_over = True  # before it is told: no timed checkpoint after it
                item.set()
            elif item is _CHECKPOINT:
                if not self._handed_over:
                    lines.append(self._checkpoint(anchored=False))  # at stop: nothing follows it
            elif item is not _WAKE and not self._handed_over:
                if isinstance(item, _Anchoring):
                    self._anchoring += 1
                lines.append(chain.link(item.encode() if isinstance(item, str) else item))
        if self._handed_over:
            self._unchecked_since = None
        elif chain.unchecked > self._anchoring:
            now = time.monotonic()
            if self._unchecked_since is None:
                self._unchecked_since = now
            elif now >= self._unchecked_since + self.checkpoint_s:
                lines.append(self._checkpoint())
        return lines

    def _checkpoint(self, anchored: bool = True) -> bytes:
        self._unchecked_since = None
        self._anchoring = 0
        record = self._chain.checkpoint(self.signer, utc_timestamp(time.time()))
        self._to_anchor = (record["covers_seq"], record["covers_chain"]) if anchored else None
        line = self._render(None, "info", self._named(record))
        return self._chain.link(line.encode() if isinstance(line, str) else line)

    def _hold(self, lines: list[bytes]) -> None:
        if not lines:
            return
        room = MAX_HELD - len(self._held)
        if len(lines) > room:
            if not self._dropped:
                self._say(
                    logging.ERROR,
                    f"Tollgate: {MAX_HELD} audit records are held for {self.path}; further ones are dropped"
                    " until it can be written",
                )
            self._dropped += len(lines) - room
            lines = lines[:room]
        self._held.extend(lines)

    def _write_held(self) -> None:
        held = len(self._held)
        try:
            self._file.follow_rotation()
            while self._held:
                count, data = self._next_chunk()
                self._file.write_whole(data)
                if self.in_flight is not None:
                    self.in_flight.written(data)
                for _ in range(count):
                    self._held.popleft()
        except OSError as e:
            self._retry_at = time.monotonic() + RETRY_DELAY
            self.problem = f"cannot write to {self.path}: {e.strerror or e}"
            if not self.failing:
                self.failing = True
                self._say(
                    logging.ERROR,
                    f"Tollgate: cannot write the audit to {self.path}: {e.strerror or e}; calls are refused"
                    " (503 audit_unavailable) and their records held until it can be written",
                )
            return
        if self.failing:
            self.failing = False
            self.problem = None
            self._say(
                logging.INFO,
                f"Tollgate: the audit is written to {self.path} again ({held} held records written); calls are"
                " served again",
            )
        if self._dropped:
            self._say(
                logging.ERROR,
                f"Tollgate: {self._dropped} audit records beyond the {MAX_HELD} held were dropped and are lost",
            )
            self._dropped = 0

    def _next_chunk(self) -> tuple[int, bytes]:
        """The oldest held records, up to `_CHUNK` bytes (`_PIPE_CHUNK` to what is not a file; at
        least one record), as lines."""
        limit = _CHUNK if self._file.regular else _PIPE_CHUNK
        size, count = 0, 0
        for line in self._held:
            if count and size + len(line) + 1 > limit:
                break
            size += len(line) + 1
            count += 1
        lines = self._held if count == len(self._held) else itertools.islice(self._held, count)
        return count, b"\n".join(lines) + b"\n"

    @staticmethod
    def _say(level: int, message: str) -> None:
        try:
            logger.log(level, message)
        except (Exception, SystemExit):  # the console may be what failed (mitmdump's exits on EPIPE)
            pass


class _AppendedFile:
    """The file (or standard output) an audit log appends to: each write whole or none of it, a
    record on a line of its own, and the path followed when it is rotated."""

    def __init__(self, path: str, standard_output: bool = False) -> None:
        self.path = path
        self.fd: int
        self.identity: tuple[int, int] | None  # (device, inode) of a path's file; None: standard output
        if standard_output:
            self.fd, self.identity, self.regular = _stdout_fd(), None, False
        else:
            self.fd, self.identity, self.regular = self._open()
        # Whether the file may not end with a newline (never checked for new lines of ours): a
        # record written then starts on a line of its own.
        self._check_end = self.regular

    def write_whole(self, data: bytes) -> None:
        """Append `data` whole, or leave the file as it was: a write that fails part-way (a full
        disk writes what fits first) is cut off again, so that no half line is ever left."""
        fd = self.fd
        if self.identity is None and sys.stdout is not None:
            sys.stdout.flush()  # mitmdump's own console lines first, whole
        size = os.fstat(fd).st_size if self.regular else None
        if self._check_end and size and _ends_mid_line(fd, size):
            data = b"\n" + data
        view, written = memoryview(data), 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError:
            self._check_end = self.regular
            if written and size is not None:
                self._cut_back(size)
            raise
        self._check_end = False

    def _cut_back(self, size: int) -> None:
        try:
            # Only ever shorter: a file truncated meanwhile (copytruncate) must not grow a hole.
            if os.fstat(self.fd).st_size > size:
                os.ftruncate(self.fd, size)
        except OSError:
            pass  # the next write starts on a new line (`_check_end`)

    def follow_rotation(self) -> None:
        """Reopen the path when it no longer names the open file: logrotate's `create` renamed it
        (and maybe created a new one), or it was deleted. A file truncated in place (copytruncate)
        needs nothing: appends go to its new end."""
        if self.identity is None:
            return
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self.identity:
                return
        except FileNotFoundError:
            pass  # created anew below
        fd, identity, regular = self._open()
        os.close(self.fd)
        self.fd, self.identity, self.regular = fd, identity, regular
        self._check_end = regular

    def _open(self) -> tuple[int, tuple[int, int], bool]:
        # Read and write: the last byte is read to see whether the file ends with a whole line.
        try:
            fd = os.open(self.path, _FLAGS, 0o666)
        except PermissionError:
            fd = os.open(self.path, _FLAGS & ~os.O_RDWR | os.O_WRONLY, 0o666)  # a file we may only write
        st = os.fstat(fd)
        return fd, (st.st_dev, st.st_ino), stat.S_ISREG(st.st_mode)


def _stdout_fd() -> int:
    try:
        return sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by an object without one
        return 1


def _ends_mid_line(fd: int, size: int) -> bool:
    try:
        return os.pread(fd, 1, size - 1) != b"\n"
    except OSError:  # a file opened for writing only
        return False


def _utf8_json(record: dict[str, Any], **_: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # a lone surrogate (from bytes that were not UTF-8), or a value orjson cannot write
        return json.dumps(record, default=repr).encode()
