"""The calls a process has sent whose records are not in the audit file yet, kept in a file beside
it (`<audit path>.in-flight.<instance>`), so that a process killed outright (SIGKILL, the OOM
killer) loses no call: the next process of the same instance (a fleet's worker started again, a
lone process restarted on its host) writes their records, `error: "worker lost"`.

Each call sent appends a line holding what is known of it (`sent_record`; an MCP request, the
records it would have); the audit's writer appends a line naming each call whose record it has
written, and one naming the last `chain` it wrote, so that the instance's next run names it
(`previous_chain`) even when the audit file it wrote to was rotated away meanwhile.

Every line ends with a MAC of the rest (`mac`, keyed BLAKE2b-256), keyed with `in_flight_secret`: a line
that does not hold one (planted by someone who can write the file, not read the secret) is refused
at the next start, and said, rather than written into the audit as a record of Tollgate's.

The file's first line names its key (`key_id`, a digest of it): when `audit.signing_key` changed
since the file was written, its lines cannot be checked, and are not read; that is no sign of
someone else's hand, and is said only when calls were lost with them (a clean stop leaves none).

A process holds an exclusive lock on its file while it runs: the lock is free once the process is
gone, however it ended. A second process of the same instance beside the same audit file is a
mistake (its records would read as a broken chain): `InstanceBusy`."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollgate.records.audit.audit_record import RECORD_FIELDS, WORKER_LOST, lost_record
from tollgate.records.audit.bounded import bounded

# A file grows by two lines a call: it is written anew with only the open calls past this size.
COMPACT_AT = 1 << 20
_REQUEST_ID = re.compile(rb'"request_id": ?"([^"\\]+)"')
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_MAC_MARK = b',"mac":"'
_MAC_SUFFIX = len(_MAC_MARK) + 64 + 2  # the mark, the MAC in hex, a quote and the brace
_CHAIN_MARK = b'"chain":"'
_CHAIN_TAIL = len(_CHAIN_MARK) + 64 + 3  # the mark, the chain, `"}` and the newline
_KEY_LINE = re.compile(rb'\{"key":"([0-9a-f]{16})"\}')


Mac = hashlib.blake2b


class InstanceBusy(Exception):
    """Another live process of the same instance holds the file: two processes would write one
    chain. Its message names `instance`."""


def check_free(audit_path: str, instance: str) -> None:
    """InstanceBusy when a live process of `instance` writes beside `audit_path`, found without
    creating or changing anything (a check before start-up; the lock itself is taken at start)."""
    path = journal_path(audit_path, instance)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no file, or one this process cannot read: start-up says so when it opens it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InstanceBusy(_busy(instance, path)) from None
    finally:
        os.close(fd)  # the lock, if taken, goes with it


def _busy(instance: str, path: str) -> str:
    return (
        f"instance: another process of instance {instance!r} is running beside this audit file (it holds"
        f" {path}): give each process its own TOLLGATE_INSTANCE"
    )


def journal_path(audit_path: str, instance: str) -> str:
    return f"{audit_path}.in-flight.{_UNSAFE.sub('_', instance)}"


def secret_path(audit_path: str, instance: str) -> str:
    return f"{journal_path(audit_path, instance)}.key"


def in_flight_secret(audit_path: str, instance: str, signing_key: bytes | None) -> bytes:
    """The key of the lines' MACs: derived from the audit's signing key (its raw private bytes)
    when there is one, else a random secret kept beside the audit file, mode 0600, made once."""
    if signing_key is not None:
        return hmac.new(signing_key, b"tollgate in-flight " + instance.encode(), hashlib.sha256).digest()
    path = secret_path(audit_path, instance)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            secret = f.read()
        if len(secret) == 32:
            return secret
        raise OSError(f"{path} does not hold an in-flight secret (32 bytes): remove it") from None
    try:
        secret = secrets.token_bytes(32)
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


def key_id(secret: bytes) -> str:
    """What the file's first line names its MAC's key by: a digest of it, which says whether the
    key changed and nothing of the key."""
    return hashlib.blake2b(secret, digest_size=8, person=b"tollgate-in-flt").hexdigest()


@dataclass
class InFlightRead:
    """What a file holds for the next process: the calls its previous process sent and never
    recorded (`lost`, by request id), how many lines were not written by Tollgate (`refused`), the
    last chain named, and how many calls were kept under another key (`other_key`: not read)."""

    lost: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: int = 0
    last_chain: str | None = None
    other_key: int = 0


class InFlight:
    """One process's calls in flight, in `path`. Opened (and locked) when the audit is: `lost`
    holds the records of the calls a previous process of the same instance sent and never recorded,
    `refused` how many of its lines were not written by Tollgate, `last_chain` the last chain it
    wrote, and `other_key` how many calls it kept under another key (`audit.signing_key` changed
    since: not read). `take` makes the file this process's own (from its started record on): until
    then, a start that fails leaves it as it was."""

    def __init__(self, path: str, secret: bytes, instance: str = "") -> None:
        self.path = path
        self._mac = keyed_mac(secret)
        self._key_line = b'{"key":"%s"}\n' % key_id(secret).encode()
        self._open: dict[str, bytes] = {}  # by request id: its line
        self._lock = threading.Lock()  # the event loop begins calls; the audit's writer ends them
        self._successor: InFlight | None = None  # the file that took its calls over (a reload)
        self._chain_line = b""  # the line naming the last chain written
        self._taken = False
        fd = os.open(path, _FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InstanceBusy(_busy(instance or path, path)) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        read = _unended(_read(fd), self._mac, self._key_line)
        self.lost, self.refused, self.last_chain = read.lost, read.refused, read.last_chain
        self.other_key = read.other_key
        self._size = 0

    def take(self) -> None:
        """From now on the file is this process's: what it held is read (`lost`), and it starts
        again with only the last chain."""
        with self._lock:
            os.ftruncate(self._fd, 0)
            self._size = 0
            self._taken = True
            self._append(self._key_line)
            if self.last_chain is not None:
                self._chain_line = self._signed({"chain": self.last_chain})
                self._append(self._chain_line)

    def began(self, request_id: str, sent: dict[str, Any]) -> None:
        """An LLM call sent: what is known of it (`sent_record`; a later call of the same id, a
        failover's attempt, replaces it). Bounded as the audit bounds it (`bounded`): a caller's
        long value does not grow the file by more than its record would."""
        self._began(request_id, self._signed({"sent": request_id, "call": bounded(sent)}))

    def began_records(self, request_id: str, records: list[dict[str, Any]]) -> None:
        """A request sent whose records are known whole (an MCP server's; a lost call's), bounded."""
        self._began(request_id, self._signed({"sent": request_id, "records": [bounded(r) for r in records]}))

    def _began(self, request_id: str, line: bytes) -> None:
        with self._lock:
            self._open[request_id] = line
            self._append(line)

    def ended(self, request_id: str) -> None:
        """A request sent ended with no record of its own (a Responses WebSocket's upgrade: its
        messages have theirs)."""
        with self._lock:
            if self._open.pop(request_id, None) is not None:
                self._append(self._signed({"ended": [request_id]}))

    def written(self, data: bytes) -> None:
        """The audit's writer wrote `data` (whole lines): the calls whose records it holds ended,
        and its last line's chain is the instance's last."""
        with self._lock:
            ended = [i for i in (m.decode() for m in _REQUEST_ID.findall(data)) if self._open.pop(i, None)]
            tail = data[-_CHAIN_TAIL:]
            if tail.startswith(_CHAIN_MARK):  # one line for both: one MAC, one write
                chain = tail[len(_CHAIN_MARK) : len(_CHAIN_MARK) + 64].decode()
                self._chain_line = self._signed({"chain": chain})
                self._append(self._signed({"ended": ended, "chain": chain}) if ended else self._chain_line)
            elif ended:
                self._append(self._signed({"ended": ended}))
            successor = self._successor
        if successor is not None:  # records its calls' processes had queued here, written after a reload
            successor.written(data)

    def take_over(self, before: InFlight) -> None:
        """A reload moved the audit to another file: the calls in flight in `before` go on here, and
        what its writer still writes ends them here."""
        with before._lock:
            moved, before._open, before._successor = before._open, {}, self
        with self._lock:
            for request_id, line in moved.items():
                self._open[request_id] = line
                self._append(line)

    def close(self) -> None:
        """At the process's end, every record written: the file keeps the last chain only. Calls
        still open (a reload moved the audit to another file while they ran) are left for the next
        process. A file never taken (the start failed) is left as it was."""
        with self._lock:
            if self._taken and not self._open:
                os.ftruncate(self._fd, 0)
                self._size = 0
                self._append(self._key_line + self._chain_line)
            os.close(self._fd)

    def _signed(self, entry: dict[str, Any]) -> bytes:
        body = orjson.dumps(entry)[:-1] + _MAC_MARK
        mac = self._mac.copy()
        mac.update(body)
        return body + mac.hexdigest().encode() + b'"}\n'

    def _append(self, data: bytes) -> None:
        if self._size + len(data) > COMPACT_AT:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next writes start at 0
            data = self._key_line + self._chain_line + b"".join(self._open.values()) + data
            self._size = 0
        written = os.write(self._fd, data)
        self._size += written


def _read(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def keyed_mac(secret: bytes) -> Mac:
    """The MAC of the lines with its key and no data: BLAKE2b-256 in its keyed mode (a MAC by
    design; at about half the instructions of an HMAC-SHA256 by OpenSSL), copied for each line."""
    return hashlib.blake2b(key=secret, digest_size=32)


def authentic(line: bytes, keyed: Mac) -> bool:
    """Whether the line ends with the MAC of the rest, `keyed` the MAC with its key and no data."""
    if (
        len(line) < _MAC_SUFFIX
        or not line.endswith(b'"}')
        or line[-_MAC_SUFFIX : -_MAC_SUFFIX + len(_MAC_MARK)] != _MAC_MARK
    ):
        return False
    mac = keyed.copy()
    mac.update(line[: -_MAC_SUFFIX + len(_MAC_MARK)])
    return hmac.compare_digest(mac.hexdigest().encode(), line[-66:-2])


def _unended(data: bytes, keyed: Mac, key_line: bytes) -> InFlightRead:
    """The records of the calls a file says were sent and not ended, by request id in the order
    sent, each saying its process was lost; how many lines were not written by Tollgate (their
    MAC does not hold); and the last chain named. A last line cut short (the process died writing
    it) is skipped. A file whose first line names another key than `key_line` does is not read:
    how many calls it says were sent and not ended is counted (`other_key`), nothing of them is
    kept. A file without that line (written before files named their key) is read with this key."""
    read = InFlightRead()
    first, _, rest = data.partition(b"\n")
    if _KEY_LINE.fullmatch(first) is not None:
        if first + b"\n" != key_line:
            read.other_key = _unchecked_calls(rest)
            return read
        data = rest
    sent = read.lost
    refused, last_chain = 0, None
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        if not authentic(line, keyed):
            if n < len(lines) - 1:  # not the last one, cut short by the process's death
                refused += 1
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            refused += 1
            continue
        if not isinstance(entry, dict):
            continue
        if isinstance(chain := entry.get("chain"), str):
            last_chain = chain
        if not isinstance(request_id := entry.get("sent"), str):
            ended = entry.get("ended")
            for i in ended if isinstance(ended, list) else ():
                if isinstance(i, str):
                    sent.pop(i, None)
            continue
        sent.pop(request_id, None)  # a later attempt in place of the earlier
        if isinstance(call := entry.get("call"), dict):
            sent[request_id] = [lost_record(call, RECORD_FIELDS)]
        elif isinstance(records := entry.get("records"), list):
            sent[request_id] = [_lost(r) for r in records if isinstance(r, dict)]
    read.refused, read.last_chain = refused, last_chain
    return read


def _unchecked_calls(data: bytes) -> int:
    """How many calls lines that cannot be checked say were sent and not ended: only counted, so
    that a file of a clean stop (its last chain alone) is told from one a killed process left."""
    sent: set[str] = set()
    for line in data.split(b"\n"):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        if isinstance(request_id := entry.get("sent"), str):
            sent.add(request_id)
        elif isinstance(ended := entry.get("ended"), list):
            sent.difference_update(i for i in ended if isinstance(i, str))
    return len(sent)


def _lost(record: dict[str, Any]) -> dict[str, Any]:
    """A request's record as known when it was sent (an MCP server's), its end never come."""
    lost = {**record, "status": None, "error": WORKER_LOST}
    if "latency_ms" in lost:
        lost["latency_ms"] = None
    return lost
