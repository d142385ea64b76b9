"""Failover: whether a call whose attempt failed before its answer began goes again, and what each
attempt was (`Attempt`), for its audit record. Plain logic, no mitmproxy.

How a call goes again, through mitmproxy's own upstream path: `patches.resend` teaches mitmproxy's
HTTP stream (`HttpStream`) to stop, when an attempt's answer has only its status and headers, or
when its connection failed or it timed out, before it runs the `responseheaders` or `error` hook: it
runs Tollgate's `attempt_failed` hook instead (`patches.AttemptFailedHook`). Governance then decides
what goes next in one call (`next_attempt.next_step`, which asks routing once, `next_try`: counts
the failure, rests the key, picks the next key; else the next fallback); the stage puts the next key
on the request (a signature made anew) and may wait out a Retry-After. When they ask for it, the
stream cancels the attempt upstream (an HTTP/2 stream reset, an HTTP/1 connection closed, with what
it may still report dropped) and sends the request again as it first did: the connection comes from
mitmproxy's own pool (its TLS trust, ALPN, HTTP/2, client certificates and upstream proxy), the
answer then goes through the usual hooks and streams to the client unbuffered. Nothing of a failed
attempt reaches the client, since mitmproxy sends an answer's headers only after `responseheaders`.

Other ways were weighed and left: a second HTTP client (httpx, `upstream.send`) would trust other
CAs, speak another HTTP and buffer or re-stream the answer outside mitmproxy's flow; mitmproxy's
`replay.client` makes a new flow whose answer never reaches the waiting client; and setting
`flow.response = None` in a hook does not make mitmproxy send the request again."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollgate.common.config_base import RetryConfig

CONNECT = "connect"
TIMEOUT = "timeout"
# Statuses after which a pooled key rests for the provider's Retry-After.
RESTING_STATUSES = (401, 429)
# What counts as a failure for a circuit when the provider has no `retry` to say.
DEFAULT_WHEN = RetryConfig().when


def status_condition(status: int, when: tuple[int | str, ...]) -> bool:
    """Whether an answer's status is one `retry.when` names (itself, or `5xx`). A 4xx other than
    408, 409 and 429 never is: the configuration refuses it."""
    return status in when or (500 <= status <= 599 and "5xx" in when)


def retry_statuses(retry: RetryConfig) -> frozenset[int]:
    """The statuses on which an attempt's answer is looked at before it goes to the client."""
    return _statuses(retry.when)


@functools.cache  # asked on every call that may go again: "5xx" alone is a hundred statuses
def _statuses(when: tuple[int | str, ...]) -> frozenset[int]:
    named = {w for w in when if isinstance(w, int)}
    if "5xx" in when:
        named.update(range(500, 600))
    return frozenset(named)


def retries_errors(retry: RetryConfig) -> bool:
    return CONNECT in retry.when or TIMEOUT in retry.when


@dataclass(slots=True)
class Attempt:
    """One attempt of a call, as its audit record lists it."""

    provider: str
    model: str | None
    status: int | None
    upstream_key: str | None
    error: str | None
    latency_ms: float

    def record(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "upstream_key": self.upstream_key,
            "error": self.error,
            "latency_ms": self.latency_ms,
        }


def failed_status_error(status: int) -> str:
    return f"upstream answered {status}"


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """How an attempt failed, as its flow tells: the upstream's status and its Retry-After header
    as they came, else how its connection or its wait for an answer failed (`CONNECT`, `TIMEOUT`,
    with the error its flow gives, `unanswered`); and which attempt on its target it was (1: the
    first)."""

    status: int | None
    kind: str | None
    tries: int
    retry_after: str | None = None
    unanswered: str | None = None

    @property
    def refused_key(self) -> bool:
        """Whether the upstream refused the key (401, 429): it rests for the Retry-After."""
        return self.status in RESTING_STATUSES

    @property
    def error(self) -> str | None:
        """The error the call's `attempts` record gives the attempt."""
        return failed_status_error(self.status) if self.status is not None else self.unanswered


def wait_for(rest_left: float | None, retry_after: float | None, refused_key: bool, max_wait_s: float) -> float | None:
    """How long to wait before the next attempt, or None when it is not to be made (a wait past
    `max_wait_s`). A key the provider refused (401, 429) rests for its Retry-After, and the next
    attempt waits only for the rest left of the key it goes with (`rest_left`: None when the
    credential is not pooled); an upstream that failed otherwise (5xx, 529) asked every key to wait
    its Retry-After."""
    if refused_key:
        wait = rest_left if rest_left is not None else (retry_after or 0.0)
    else:
        wait = max(rest_left or 0.0, retry_after or 0.0)
    return None if wait > max_wait_s else wait


def failed(status: int | None, kind: str | None, when: tuple[int | str, ...]) -> bool:
    """Whether an attempt failed as `when` says: its answer's status, else how it failed (`CONNECT`,
    `TIMEOUT`; None: it did not fail on its way, its client left, say)."""
    if status is not None:
        return status_condition(status, when)
    return kind is not None and kind in when


def upstream_circuit(provider: str, upstream: str | None) -> str:
    """The name of the circuit of an upstream a call goes to with no pooled key."""
    return f"{provider} {upstream}"


def upstream_rest_left(circuits: Circuits, provider: str, upstream: str | None, model: str) -> float:
    """How long an upstream rests (its circuit open), for every model or for `model`'s calls."""
    whole = upstream_circuit(provider, upstream)
    return max(circuits.rest_left(whole), circuits.rest_left(model_circuit(whole, model)))


# What a circuit for one model adds to its key's or upstream's name: neither a fingerprint nor an
# upstream's URL holds it.
FOR_MODEL = " for "
# The statuses that fail a call for its key or upstream, whatever model it asks for: the key is
# refused or over its rate limit (401 rests it without counting); every other failure counts for
# the model the call asked for on that key (`model_circuit`). A failed connection counts for the
# key or upstream too: no model was asked yet.
KEY_STATUSES = frozenset((401, 429))


def model_circuit(name: str, model: str) -> str:
    """The circuit of a key (its fingerprint) or an upstream (`upstream_circuit`) for one model."""
    return f"{name}{FOR_MODEL}{model}"


def split_circuit(name: str) -> tuple[str, str | None]:
    """A circuit's key or upstream name, and its model (None: the whole key's or upstream's)."""
    whole, found, model = name.partition(FOR_MODEL)
    return (whole, model) if found else (whole, None)


def fails_the_key(status: int | None, kind: str | None) -> bool:
    """Whether a failure counts for the key's or upstream's own circuit rather than its model's."""
    return status in KEY_STATUSES if status is not None else kind == CONNECT


class Circuits:
    """How many calls in a row each key (by its fingerprint) and upstream (`upstream_circuit`)
    failed, for every model or for one (`model_circuit`), and which upstreams' circuits are open (a
    key's is open in its pool, which then does not take it). Once a circuit has rested, one more
    failure opens it again; a call that did not fail closes it. Counted in this process; an
    opening is shared (`upstream.open_circuit`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def failed(self, name: str, failures: int) -> bool:
        """One more failure in a row; True when the circuit opens with it."""
        count = self._failures.get(name, 0) + 1
        if count < failures:
            self._failures[name] = count
            return False
        self._failures[name] = failures - 1  # half open once it has rested
        return True

    def succeeded(self, name: str) -> None:
        if self._failures:
            self._failures.pop(name, None)

    def open(self, name: str, seconds: float) -> None:
        self._open_until[name] = max(self._clock() + seconds, self._open_until.get(name, 0.0))

    def rest_left(self, name: str) -> float:
        """How long the upstream's circuit stays open (0: it is closed)."""
        if not self._open_until:
            return 0.0
        until = self._open_until.get(name)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._open_until[name]
            return 0.0
        return left
