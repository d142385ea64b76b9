"""The audit's chain and its signed checkpoints (docs/audit.md, "The chain"): plain code the
writer thread (`auditlog.AuditLog`) and `tollgate audit verify` (`records/audit/audit_verify.py`) share.

Each record of an instance's run gets `seq` (1, 2, …) and, last, `chain`: the SHA-256, in
lower-case hex, of the previous record's `chain` (64 `0`s for the run's first record), a newline,
and the record's line up to (not including) `,"chain":"`. A checkpoint (`audit_checkpoint`) names
the last record before it (`covers_seq`, `covers_chain`) and signs that chain with Ed25519."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CHECKPOINT = "audit_checkpoint"
# A run's first and last records (written by `auditlog`; read here and by `audit_verify`, which
# needs nothing else of the writer).
STARTED = "tollgate_started"
STOPPED = "tollgate_stopped"
ZERO = "0" * 64
CHAIN_MARK = b',"chain":"'
# A chained line ends with `,"chain":"<64 hex>"}`: the mark, the digest, a quote and the brace.
SUFFIX = len(CHAIN_MARK) + 64 + 2
TAIL_SCAN = 64 << 20  # bytes read back from a file's end for an instance's last chain, at most
_BLOCK = 1 << 20
_HEX = re.compile(rb"[0-9a-f]{64}")


class Chain:
    """One instance's run as the writer extends it: the last `seq` given, the last `chain`, and
    what the last checkpoint covered. Used by one thread at a time (the writer's)."""

    def __init__(self) -> None:
        self.seq = 0
        self.last = ZERO.encode()
        self.covered = 0  # the seq the last checkpoint covered
        self.checkpoint_seq = 0  # that checkpoint's own seq

    def link(self, line: bytes) -> bytes:
        """`line`, a rendered JSON object (`{…}`), with `seq` and `chain` added as its last members."""
        self.seq += 1
        body = memoryview(line)[:-1]
        seq = b',"seq":%d' % self.seq
        digest = hashlib.sha256(self.last + b"\n")
        digest.update(body)
        digest.update(seq)
        self.last = digest.hexdigest().encode()
        return b"".join((body, seq, CHAIN_MARK, self.last, b'"}'))

    @property
    def unchecked(self) -> int:
        """Records written since the last checkpoint."""
        return self.seq - self.checkpoint_seq

    def checkpoint(self, signer: Signer | None, ts: str) -> dict[str, Any]:
        """The checkpoint record, made at `ts`, of what was written up to now (to be linked next)."""
        covers = self.last.decode()
        record = {
            "event": CHECKPOINT,
            "ts": ts,
            "covers_seq": self.seq,
            "covers_chain": covers,
            "records": self.seq - self.covered,
            "signature": None if signer is None else signer.sign(covers),
            "key_id": None if signer is None else signer.key_id,
        }
        self.covered, self.checkpoint_seq = self.seq, self.seq + 1  # itself covered by the next one
        return record


def chain_of(previous: str, line: bytes) -> str:
    """The chain a line's content gives after `previous`: `line` is the line up to `,"chain":"`."""
    return hashlib.sha256(previous.encode() + b"\n" + line).hexdigest()


def split_line(line: bytes) -> tuple[bytes, str] | None:
    """A chained line's content (up to `,"chain":"`) and its chain; None when it ends otherwise."""
    line = line.rstrip(b"\r\n")
    if len(line) < SUFFIX or not line.endswith(b'"}') or line[-SUFFIX : -SUFFIX + len(CHAIN_MARK)] != CHAIN_MARK:
        return None
    digest = line[-66:-2]
    if _HEX.fullmatch(digest) is None:
        return None
    return line[:-SUFFIX], digest.decode()


# ---- signing


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs checkpoints with an Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id(key.public_key())

    def sign(self, chain: str) -> str:
        return base64.b64encode(self.key.sign(chain.encode("ascii"))).decode("ascii")

    def raw_private(self) -> bytes:
        """The private key's 32 raw bytes (what the in-flight file's MAC key is derived from)."""
        return self.key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM (PKCS#8) file; ValueError saying what is wrong."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"{path} is encrypted: give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path} holds no PEM private key (make one: openssl genpkey -algorithm ed25519)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 key (make one: openssl genpkey -algorithm ed25519)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file (a private key's file gives its public key)."""
    data = _read(path)
    key: object
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(f"{path} holds no PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return key


def signature_holds(public: Ed25519PublicKey, signature: str, chain: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), chain.encode("ascii"))
    except (InvalidSignature, ValueError, UnicodeEncodeError):
        return False
    return True


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None


# ---- the file's tail


def last_chain(fd: int, size: int, instance: str) -> str | None:
    """The `chain` of the last record `instance` wrote in the file open as `fd` (read back from its
    end, up to `TAIL_SCAN` bytes); None when there is none, or its last record is not chained."""
    end, rest = size, b""
    while end > 0 and size - end < TAIL_SCAN:
        start = max(0, end - _BLOCK)
        block = os.pread(fd, end - start, start) + rest
        lines = block.split(b"\n")
        rest = lines[0] if start > 0 else b""
        for line in reversed(lines[1:] if start > 0 else lines):
            if b'"instance"' not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("instance") == instance:
                chain = record.get("chain")
                return chain if isinstance(chain, str) else None
        end = start
    return None
