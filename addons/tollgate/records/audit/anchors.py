"""The audit anchored outside the operator's reach (`audit.anchor`; docs/audit.md, "Anchors"): the
newest checkpoint's `covers_chain` time-stamped (RFC 3161) by every TSA listed, from a thread of its
own beside the audit writer, at most once per `every_s`.

The imprint is the SHA-256 of the checkpoint's `covers_chain`, its 64 ASCII characters; each
request carries a nonce and asks for the TSA's certificate. Each reply is checked as it comes
(status, imprint, nonce, signature and certificate chain to `ca_file`; its certificates in any
order, as verifiers read them) and written as an
`audit_anchor` record, its `token` the TimeStampToken's DER in base64, which `openssl ts -verify
-token_in -in TOKEN -data FILE -CAfile CA` checks where FILE holds the 64 characters. A TSA that
fails, or whose reply does not check, is an `anchor_gap` record, and is asked again next time.
Neither record makes a checkpoint due by itself (`AuditLog.write_anchor`)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography import x509

from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.der_order import reply_in_der_order, token_of

logger = logging.getLogger(__name__)

ANCHOR = "audit_anchor"
ANCHOR_GAP = "anchor_gap"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TIMEOUT = 10.0  # seconds a TSA has to answer, connection included
MAX_REPLY = 1 << 20  # bytes of a reply read, at most
SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_STATUS = {0: "granted", 1: "grantedWithMods", 2: "rejection", 3: "waiting", 4: "revocationWarning",
           5: "revocationNotification"}  # fmt: skip


_OPENSSL_DATA = re.compile(r'data: "([^"]+)"')


class AnchorError(Exception):
    """A TSA that failed, or a reply that does not check: what went wrong, in words (never a header)."""


def imprint_of(covers_chain: str) -> bytes:
    """The SHA-256 of a checkpoint's `covers_chain`, its 64 ASCII characters."""
    return hashlib.sha256(covers_chain.encode("ascii")).digest()


def request_for(covers_chain: str) -> tuple[bytes, int]:
    """A TimeStampReq for the checkpoint's chain (SHA-256 imprint, a nonce, certReq true): its DER
    and its nonce."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    request = (
        TimestampRequestBuilder()
        .data(covers_chain.encode("ascii"))
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    nonce = request.nonce
    assert nonce is not None
    return request.as_bytes(), nonce


@dataclass(frozen=True, slots=True)
class Token:
    gen_time: str  # the TSA's time, as the audit's `ts` is written
    der: bytes  # the TimeStampToken (a CMS SignedData), DER


def check_reply(reply: bytes, covers_chain: str, nonce: int, roots: Sequence[x509.Certificate]) -> Token:
    """The token of a TSA's reply to `request_for(covers_chain)`, once it checks: status granted,
    the imprint the chain's, the request's nonce, its signature by a certificate (with critical
    extendedKeyUsage timeStamping) that chains to one of `roots` as of its time. AnchorError otherwise."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    try:  # its certificates read in any order, as `openssl ts -verify` reads them (`der_order`)
        response = decode_timestamp_response(reply_in_der_order(reply))
    except ValueError as e:
        raise AnchorError(f"the reply is no RFC 3161 TimeStampResp: {e}") from None
    status = int(response.status)
    if status not in (0, 1):
        words = "; ".join(response.status_string)
        raise AnchorError(
            f"the TSA refused: status {status} ({_STATUS.get(status, 'unknown')})" + (f": {words}" if words else "")
        )
    try:
        info = response.tst_info
    except ValueError as e:
        raise AnchorError(f"the reply holds no readable token: {e}") from None
    imprint = info.message_imprint
    if imprint.hash_algorithm != SHA256_OID or imprint.message != imprint_of(covers_chain):
        raise AnchorError("the token's imprint is not this checkpoint's (SHA-256 of its covers_chain)")
    if info.nonce != nonce:
        raise AnchorError("the token's nonce is not the request's")
    if not response.signed_data.certificates:  # asked for (certReq): without it, nothing to check its signer by
        raise AnchorError("the token carries no certificate: the TSA did not send its own, as asked")
    verifier = VerifierBuilder(roots=list(roots)).build()
    try:
        verifier.verify(response, imprint_of(covers_chain))
    except VerificationError as e:
        found = _OPENSSL_DATA.search(str(e))  # OpenSSL's error stack: its last words say it
        why = found.group(1) if found else str(e)
        raise AnchorError(f"the token does not verify against audit.anchor.ca_file: {why}") from None
    # The token kept is the TSA's, byte for byte (its certificates in the order it sent them).
    return Token(utc_timestamp(info.gen_time.timestamp()), token_of(reply) or response.time_stamp_token())


def ask(url: str, query: bytes, headers: Mapping[str, str], timeout: float = TIMEOUT) -> bytes:
    """POST `query` to the TSA at `url`: its reply's body; AnchorError when it cannot be had."""
    request = urllib.request.Request(
        url, data=query, method="POST", headers={**headers, "Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = answer.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as e:
        raise AnchorError(f"the TSA answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise AnchorError(f"cannot reach the TSA: {getattr(reason, 'strerror', None) or reason}") from None
    if len(body) > MAX_REPLY:
        raise AnchorError(f"the TSA's reply is larger than {MAX_REPLY} bytes")
    return body


class Checkpoint(NamedTuple):
    """The newest checkpoint written: what its anchors cover (set as one value, read whole by
    the anchoring thread)."""

    covers_seq: int
    covers_chain: str


class Anchorer:
    """A thread of its own beside the audit writer: given each checkpoint written (`checkpointed`,
    from the writer's thread: it never waits), it anchors the newest one with every TSA that has
    not anchored it yet, at most once per `every_s`, and hands each `audit_anchor` or `anchor_gap`
    record to `write`. `on_gap(tsa)` is told of each gap (the metric)."""

    def __init__(
        self,
        tsa: Sequence[str],
        roots: Sequence[x509.Certificate],
        every_s: float,
        headers: Mapping[str, str],
        write: Callable[[dict[str, Any]], None],
        on_gap: Callable[[str], None] = lambda tsa: None,
    ) -> None:
        self.tsa, self.roots, self.every_s, self.headers = tuple(tsa), list(roots), every_s, dict(headers)
        self._write, self._on_gap = write, on_gap
        self._newest: Checkpoint | None = None
        self._anchored: dict[str, int] = {}  # each TSA's last covers_seq anchored
        self._last_round = float("-inf")  # monotonic time of the last round of requests
        self.gaps = 0
        self._failing: set[str] = set()  # TSAs whose last request was a gap (said once, not each time)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        # Held while a record is written, and by `stop`: once it returns, no record is written.
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tollgate-audit-anchor", daemon=True)
        self._thread.start()

    def configure(self, every_s: float, headers: Mapping[str, str]) -> None:
        """A reload that keeps the TSAs and their roots: the interval and headers in force now."""
        self.every_s, self.headers = every_s, dict(headers)
        self._wake.set()

    def checkpointed(self, covers_seq: int, covers_chain: str) -> None:
        """A checkpoint was written: the newest to anchor."""
        self._newest = Checkpoint(covers_seq, covers_chain)
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        """No more rounds, and no record written once it returns; a round under way ends by itself
        (its requests' time-out), unrecorded."""
        with self._writing:
            self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)

    def _due(self) -> list[str]:
        newest = self._newest
        if newest is None:
            return []
        return [url for url in self.tsa if self._anchored.get(url, 0) < newest.covers_seq]

    def _record(self, record: dict[str, Any]) -> bool:
        """`record` written (and a gap counted), unless the anchorer was stopped: whether it was."""
        with self._writing:
            if self._stopped.is_set():
                return False
            if record["event"] == ANCHOR_GAP:
                self.gaps += 1
                self._on_gap(record["tsa"])
            self._write(record)
            return True

    def _run(self) -> None:
        while not self._stopped.is_set():
            wait = None
            if self._due():
                wait = self._last_round + self.every_s - time.monotonic()
                if wait <= 0:
                    self._round()
                    continue
            self._wake.wait(wait)
            self._wake.clear()

    def _round(self) -> None:
        """Every TSA due asked at once, each reply checked and recorded as it comes."""
        self._last_round = time.monotonic()
        checkpoint = self._newest
        assert checkpoint is not None
        askers = [
            threading.Thread(target=self._anchor, args=(url, checkpoint), name="tollgate-audit-anchor-tsa", daemon=True)
            for url in self._due()
        ]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + TIMEOUT * 2
        for asker in askers:
            asker.join(max(0.0, deadline - time.monotonic()))

    def _anchor(self, url: str, checkpoint: Checkpoint) -> None:
        try:
            query, nonce = request_for(checkpoint.covers_chain)
            reply = ask(url, query, self.headers)
            token = check_reply(reply, checkpoint.covers_chain, nonce, self.roots)
        except AnchorError as e:
            error = str(e)
        except Exception as e:  # a bug, or a reply the library could not take: a gap all the same
            error = f"the reply could not be checked: {type(e).__name__}: {e}"
        else:
            self._anchored[url] = max(self._anchored.get(url, 0), checkpoint.covers_seq)
            self._record(
                {
                    "event": ANCHOR,
                    "ts": utc_timestamp(time.time()),
                    "covers_seq": checkpoint.covers_seq,
                    "covers_chain": checkpoint.covers_chain,
                    "tsa": url,
                    "gen_time": token.gen_time,
                    "token": base64.b64encode(token.der).decode("ascii"),
                }
            )
            if url in self._failing:
                self._failing.discard(url)
                logger.info(f"Tollgate: the audit is anchored by {url} again (checkpoint {checkpoint.covers_seq})")
            return
        if not self._record(
            {
                "event": ANCHOR_GAP,
                "ts": utc_timestamp(time.time()),
                "covers_seq": checkpoint.covers_seq,
                "tsa": url,
                "error": error,
            }
        ):
            return
        if url not in self._failing:
            self._failing.add(url)
            logger.warning(
                f"Tollgate: audit checkpoint {checkpoint.covers_seq} not anchored by {url}: {error}"
                " (anchor_gap records until it answers again)"
            )
