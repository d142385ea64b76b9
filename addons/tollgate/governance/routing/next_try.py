"""A failed attempt on its target, as routing decides it in one call (`next_try`): whether its call
goes again at all, the failure counted (a key the upstream refused rests, the key's or upstream's
circuits are told: `count`), and the credential a retry goes with, after how long. Plain logic, no
mitmproxy: `calls/next_attempt.py` reads the call into a `Tried` and makes the step of what this
decides (a retry, the next fallback, the end)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.common.config_base import CircuitConfig, RetryConfig
from tollgate.credentials.keypool import CircuitOpen, KeyPool, retry_after_seconds
from tollgate.governance.routing.failover import (
    AttemptFailure,
    Circuits,
    failed,
    fails_the_key,
    model_circuit,
    status_condition,
    upstream_circuit,
    upstream_rest_left,
    wait_for,
)
from tollgate.governance.routing.upstream import Configured, credential_for, open_circuit, rest_refused_key

if TYPE_CHECKING:
    from tollgate.credentials.base import UpstreamCredential
    from tollgate.formats.request_facts import Classification
    from tollgate.ledger.store import Store
    from tollgate.providers.base import Provider

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tried:
    """An attempt of a call, as routing reads it: its provider and what its configuration loaded,
    the request as sent (`Classification`), the upstream it went to, the pooled key it went with
    and that key's fingerprint, its provider's `retry` and `circuit`, and the model its circuits
    count it for (None: the provider has no `circuit`)."""

    loaded: Configured
    provider: Provider
    classification: Classification
    upstream: str | None
    pooled: tuple[KeyPool, str] | None
    fingerprint: str | None
    retry: RetryConfig
    circuit: CircuitConfig | None
    model: str | None


@dataclass(frozen=True, slots=True)
class Again:
    """The call goes again: on its target with `key` after `wait` seconds, else (`key` None: no
    retry left, no credential to be had within `retry.max_wait_s`) on its next fallback if any."""

    key: UpstreamCredential | None = None
    wait: float = 0.0


NO_RETRY_LEFT = Again()


def next_try(
    tried: Tried, failure: AttemptFailure, fallbacks: bool, circuits: Circuits, ledger: Store | None
) -> Again | None:
    """What becomes of a call whose attempt failed, on its target: None where the failure is none
    `retry.when` names, or nothing is left to try (no retry, no fallback: `fallbacks`); else the
    failure counted (the circuits are told, a key the upstream refused rests for the Retry-After
    asked: `rest_refused_key`), then a retry while `retry.attempts` leaves one and a credential
    can be had within `retry.max_wait_s` (none while every key rests, nor on an upstream whose
    circuit is open). A retry takes its key from the pool now."""
    retry = tried.retry
    if not goes_again(failure, retry, fallbacks):
        return None
    count(tried, failure.status, failure.kind, circuits, ledger)
    asked = retry_after_seconds(failure.retry_after) if failure.retry_after is not None else None
    if tried.pooled is not None:
        rest_refused_key(*tried.pooled, failure.status, failure.retry_after, ledger)
    if failure.tries >= retry.attempts:
        return NO_RETRY_LEFT
    return _next_key(tried, failure, asked, circuits)


def goes_again(failure: AttemptFailure, retry: RetryConfig, fallbacks: bool) -> bool:
    """Whether the call may go again at all: its failure one `retry.when` names, and a retry or a
    fallback left. Else the failed attempt is the call's last, and nothing of it is recorded."""
    status = failure.status
    wanted = status_condition(status, retry.when) if status is not None else failure.kind in retry.when
    return wanted and (failure.tries < retry.attempts or fallbacks)


def count(tried: Tried, status: int | None, kind: str | None, circuits: Circuits, ledger: Store | None) -> None:
    """An attempt's outcome for its key's or upstream's circuits (`providers.<name>.circuit`): a
    failure as `retry.when` says (else `DEFAULT_WHEN`) counts for the key or upstream when it is
    the key's (429, a failed connection: `fails_the_key`), else for the model the call asked for
    there, which alone then rests on that key or upstream; any other answer closes both. A provider
    with no `retry` has `DEFAULT_WHEN`'s conditions (`Tried.retry`)."""
    circuit, model = tried.circuit, tried.model
    if circuit is None or model is None:
        return
    pooled, provider = tried.pooled, tried.provider.name
    whole = tried.fingerprint if pooled is not None else upstream_circuit(provider, tried.upstream)
    assert whole is not None
    for_model = model_circuit(whole, model)
    if not failed(status, kind, tried.retry.when):
        circuits.succeeded(whole)
        circuits.succeeded(for_model)
        return
    of_key = fails_the_key(status, kind)
    name = whole if of_key else for_model
    if circuits.failed(name, circuit.failures):
        pool, key = pooled if pooled is not None else (None, None)
        open_circuit(pool, key, name, circuit.rest_s, circuits, ledger, None if of_key else model)
        what = f"key {whole}" if pooled is not None else f"upstream {tried.upstream}"
        if not of_key:
            what += f" (model {model!r})"
        rest = f"{circuit.rest_s:g} s"
        logger.warning(f"Tollgate: {provider} {what} failed {circuit.failures} calls in a row: it rests {rest}")


def _next_key(tried: Tried, failure: AttemptFailure, asked: float | None, circuits: Circuits) -> Again:
    """The retry's credential, taken now, and its wait (`wait_for`, with the Retry-After `asked`):
    none while every key rests, on an upstream whose circuit is open, or past `retry.max_wait_s`."""
    try:
        credential = credential_for(tried.loaded, tried.provider, tried.classification, model=tried.model)
    except CircuitOpen:  # every key rests
        return NO_RETRY_LEFT
    if credential is None:
        return NO_RETRY_LEFT
    rest_left = None
    if credential.pooled_key is None:
        model = tried.model
        if model is not None and upstream_rest_left(circuits, tried.provider.name, tried.upstream, model) > 0:
            return NO_RETRY_LEFT
    else:
        pool = credential.pool if credential.pool is not None else tried.loaded.pools[tried.provider.name]
        rest_left = pool.rest_left(credential.pooled_key)
    wait = wait_for(rest_left, asked, failure.refused_key, tried.retry.max_wait_s)
    return NO_RETRY_LEFT if wait is None else Again(credential, wait)
