"""The audit shipped to an OpenTelemetry collector (`audit.otlp`): at least once, from the file.

A `FileSender` (`file_sender.py`: the file followed across rotations, the position in
`<audit path>.otlp-position`, one sender per file by a lock on `<audit path>.otlp-lock`, the
back-off) whose batches go as OTLP/HTTP log records (`otlp_logs.py`). A batch is sent again while
the collector cannot be reached, times out, or answers 5xx or 429; it is dropped only when the
collector refuses it (another 4xx: sending it again would not help), and that is logged. A record
the collector took but whose position was not yet written is sent again after a restart:
`tollgate.record_id` lets a receiver drop the copy."""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Mapping
from typing import Unpack
from urllib.parse import urlsplit

from tollgate.records.senders.file_sender import (
    SENT,
    FileSender,
    Outcome,
    Pacing,
)
from tollgate.records.senders.otlp_logs import LOGS_PATH, export_body

POSITION_SUFFIX = ".otlp-position"
LOCK_SUFFIX = ".otlp-lock"
TIMEOUT_SECONDS = 10.0  # to connect, and for the collector's answer


def position_path(audit_path: str) -> str:
    return audit_path + POSITION_SUFFIX


# ---- retrying


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds (its date form is not used by collectors)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def outcome_of(status: int, reason: str, body: bytes, wait: str | None) -> Outcome:
    """The collector's answer as an outcome: 2xx acknowledged; 429 and 5xx retried (after its
    Retry-After, when it gave one); another 4xx refused for good; anything else retried."""
    if 200 <= status < 300:
        return SENT
    said = body[:200].decode("utf-8", "replace").strip()
    why = f"the collector answered {status} {reason}".rstrip() + (f": {said}" if said else "")
    if 400 <= status < 500 and status != 429:
        return Outcome(False, False, why)
    return Outcome(False, True, why, retry_after(wait))


class Sender:
    """POSTs to `<endpoint>/v1/logs`, on one kept-alive connection (made again after a failure)."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float = TIMEOUT_SECONDS) -> None:
        parts = urlsplit(endpoint.rstrip("/") + LOGS_PATH)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path
        self._headers = {
            **headers,
            "Content-Type": "application/x-protobuf",
            "User-Agent": "tollgate-audit-export",
        }
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, body: bytes, timeout: float | None = None) -> Outcome:
        """POST `body`; `timeout` (seconds) in place of the usual one, for this request."""
        timeout = self._timeout if timeout is None else min(timeout, self._timeout)
        connection = self._connection
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._connection = connection
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request("POST", self._path, body=body, headers=self._headers)
            answer = connection.getresponse()
            data = answer.read()
        except TimeoutError:
            self.close()
            return Outcome(False, True, f"the collector did not answer within {timeout:g} s")
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return Outcome(False, True, f"cannot reach the collector: {getattr(e, 'strerror', None) or e}")
        if answer.will_close:
            self.close()
        return outcome_of(answer.status, answer.reason, data, answer.getheader("retry-after"))

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


# ---- the exporter


class AuditExport(FileSender):
    """Ships the audit file at `audit_path` to `endpoint` (`FileSender`)."""

    POSITION_SUFFIX = POSITION_SUFFIX
    LOCK_SUFFIX = LOCK_SUFFIX
    destination = "the collector"
    verb = "exported"

    def __init__(
        self,
        audit_path: str,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        **pacing: Unpack[Pacing],
    ) -> None:
        super().__init__(audit_path, **pacing)
        self.endpoint = endpoint
        self._sender = Sender(endpoint, headers or {}, timeout)

    @property
    def where(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"

    def started_line(self) -> str:
        return f"Tollgate: the audit is exported to {self.where}{LOGS_PATH} from {self.position_described()}"

    def deliver(self, lines: list[bytes], timeout: float | None) -> Outcome:
        return self._sender.send(export_body(lines, time.time_ns()), timeout)

    def close_destination(self) -> None:
        self._sender.close()
