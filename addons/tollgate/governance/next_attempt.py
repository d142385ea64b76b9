"""What a call does when an attempt failed before its answer began (`plan`): goes again on its
target with the next credential after a wait (`Retry`), goes to its next fallback (`Fallback`),
or ends with the failed attempt's answer (`End`). Plain logic, no mitmproxy: the `Attempts` stage
carries out what it decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.config_base import RetryConfig
from tollgate.credentials.keypool import CircuitOpen
from tollgate.governance.failover import (
    CONNECT,
    TIMEOUT,
    Circuits,
    model_circuit,
    status_condition,
    upstream_circuit,
    wait_for,
)
from tollgate.upstream import credential_for

if TYPE_CHECKING:
    from tollgate.call import Call
    from tollgate.credentials.base import UpstreamCredential


@dataclass(frozen=True, slots=True)
class Failure:
    """How an attempt failed: the upstream's status, else how its connection or wait failed
    (`CONNECT`, `TIMEOUT`); the Retry-After it asked, whether it refused the key (401, 429), and
    which attempt on its target it was (1: the first)."""

    status: int | None
    kind: str | None
    tries: int
    retry_after: float | None = None
    refused_key: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """The target again, with this credential, after this wait (seconds)."""

    key: UpstreamCredential
    wait: float


@dataclass(frozen=True, slots=True)
class Fallback:
    """The next of the call's fallbacks, (provider, model), and those after it if the policy skips it."""

    target: tuple[str, str]


@dataclass(frozen=True, slots=True)
class End:
    """Nothing goes again: the failed attempt's answer stands."""


END = End()


def goes_again(call: Call, failure: Failure, retry: RetryConfig) -> bool:
    """Whether the call may go again at all: its failure one `retry.when` names, and a retry or a
    fallback left. Else the failed attempt is the call's last, and nothing of it is recorded."""
    status = failure.status
    wanted = status_condition(status, retry.when) if status is not None else failure.kind in retry.when
    return wanted and (failure.tries < retry.attempts or bool(call.failover.fallbacks))


def plan(call: Call, failure: Failure, retry: RetryConfig, circuits: Circuits) -> Retry | Fallback | End:
    """What the call does next: a retry while `retry.attempts` leaves one and a credential can be
    had within `retry.max_wait_s` (none while every key rests, nor on an upstream whose circuit is
    open); else its next fallback; else nothing. A retry takes its key from the pool now."""
    if not goes_again(call, failure, retry):
        return END
    if failure.tries < retry.attempts:
        key = _next_key(call, failure, retry, circuits)
        if key is not None:
            return key
    fallbacks = call.failover.fallbacks
    return Fallback(fallbacks[0]) if fallbacks else END


def _next_key(call: Call, failure: Failure, retry: RetryConfig, circuits: Circuits) -> Retry | None:
    name = call.route.target.provider
    try:
        credential = credential_for(call.loaded, call.registry[name], call.sent(), model=circuit_model(call))
    except CircuitOpen:  # every key rests
        return None
    if credential is None:
        return None
    rest_left = None
    if credential.pooled_key is None:
        if upstream_rest_left(call, circuits) > 0:
            return None
    else:
        pool = credential.pool if credential.pool is not None else call.loaded.pools[name]
        rest_left = pool.rest_left(credential.pooled_key)
    wait = wait_for(rest_left, failure.retry_after, failure.refused_key, retry.max_wait_s)
    return None if wait is None else Retry(credential, wait)


def retry_of(call: Call) -> RetryConfig:
    """The provider's `retry`; for a call with fallbacks but none, one attempt on the default conditions."""
    retry = call.loaded.providers[call.route.target.provider].retry
    return retry if retry is not None else NO_RETRY


NO_RETRY = RetryConfig(attempts=1)


def failure_kind(timed_out: bool) -> str:
    """How an attempt with no answer failed, for `retry.when` and the circuits."""
    return TIMEOUT if timed_out else CONNECT


def circuit_model(call: Call) -> str | None:
    """The model a call's circuits count it for: the name sent upstream, in lower case where the
    provider reads names so (Azure's deployments), "" for a call naming none; None when its
    provider has no `circuit`."""
    target = call.route.target
    if call.loaded.providers[target.provider].circuit is None:
        return None
    model = target.model or ""
    return model.lower() if call.registry[target.provider].models_ignore_case else model


def upstream_rest_left(call: Call, circuits: Circuits) -> float:
    """How long the call's upstream rests (its circuit open), for every model or for the call's:
    a call with no pooled key is not sent there meanwhile."""
    model = circuit_model(call)
    if model is None:
        return 0.0
    whole = upstream_circuit(call.route.target.provider, call.route.upstream)
    return max(circuits.rest_left(whole), circuits.rest_left(model_circuit(whole, model)))
