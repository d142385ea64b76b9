"""What a call does when an attempt failed before its answer began, decided in one call
(`next_step`): the failure counted (a refused key rested, the circuits told), then the call goes
again on its target with the next credential after a wait (`Retry`, and what goes instead when the
retry cannot be made), goes to its next fallback (`Fallback`), or ends with the failed attempt's
answer (`End`). A step that goes again has the failed attempt recorded and its reservation settled,
and a retry on the limits has its own reserved (where a limit has no room, what goes instead is the
step). Plain logic, no mitmproxy: the `Attempts` stage reads the failure from its flow, asks once
and carries out the step (`retry_not_made` where a retry cannot be made after all)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.common.config_base import RetryConfig
from tollgate.core.settlement import reserve_again, settle_attempt
from tollgate.credentials.keypool import CircuitOpen, retry_after_seconds
from tollgate.governance.routing.failover import (
    CONNECT,
    DEFAULT_WHEN,
    TIMEOUT,
    Attempt,
    Circuits,
    failed,
    failed_status_error,
    fails_the_key,
    model_circuit,
    status_condition,
    upstream_circuit,
    wait_for,
)
from tollgate.governance.routing.upstream import RESTING_STATUSES, credential_for, open_circuit, rest_key

if TYPE_CHECKING:
    from tollgate.core.call import Call
    from tollgate.credentials.base import UpstreamCredential
    from tollgate.ledger.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Failure:
    """How an attempt failed: the upstream's status, else how its connection or wait failed
    (`CONNECT`, `TIMEOUT`); the Retry-After it asked, whether it refused the key (401, 429), and
    which attempt on its target it was (1: the first); the Retry-After header as it came (a
    refused key rests for it), and the error the call's `attempts` record gives it."""

    status: int | None
    kind: str | None
    tries: int
    retry_after: float | None = None
    refused_key: bool = False
    retry_after_header: str | None = None
    error: str | None = None

    @classmethod
    def answered(cls, status: int, retry_after: str | None, tries: int) -> Failure:
        """An attempt its upstream answered with an error: its status and Retry-After header as
        they came, read here (a key refused, the wait asked, the error its record gives)."""
        error = failed_status_error(status)
        seconds = retry_after_seconds(retry_after) if retry_after is not None else None
        return cls(status, None, tries, seconds, status in RESTING_STATUSES, retry_after, error)

    @classmethod
    def unanswered(cls, timed_out: bool, tries: int, error: str) -> Failure:
        """An attempt with no answer: its connection failed, or its wait for one ran out."""
        return cls(None, failure_kind(timed_out), tries, error=error)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The next of the call's fallbacks, (provider, model), and those after it if the policy skips it."""

    target: tuple[str, str]


@dataclass(frozen=True, slots=True)
class End:
    """Nothing goes again: the failed attempt's answer stands. `counted`: the failure was counted
    here (a refused key rested, the circuits told), so the answer's own hooks do not count it
    again; not where it is no failure `retry.when` names, or nothing was left to try."""

    counted: bool = True


END = End()
NOT_AGAIN = End(counted=False)


@dataclass(frozen=True, slots=True)
class Retry:
    """The target again, with this credential, after this wait (seconds); `otherwise`, what goes
    when the retry cannot be made (no room on a limit, the client gone during the wait, the
    credential not to be had): the next fallback, else nothing."""

    key: UpstreamCredential
    wait: float
    otherwise: Fallback | End = END


# What a failed attempt's call does next (`next_step`).
Step = Retry | Fallback | End


def next_step(
    call: Call, failure: Failure, circuits: Circuits, ledger: Store | None, body_size: int = 0
) -> Step | Awaitable[Step]:
    """What a call whose attempt failed does next, the whole order here: nothing (`NOT_AGAIN`)
    where the failure is none `retry.when` names or nothing is left to try; else the failure
    counted (a key the upstream refused rests, the key's or upstream's circuits are told), then
    `plan`: a retry, the next fallback, or the end. A step that goes again has the failed attempt
    recorded in the call's `attempts` and its reservation settled (`settle_attempt`); a retry on
    the limits has its own reserved (`body_size`: the request's, its prompt's tokens estimated
    from it), awaited, and where a limit has no room what goes instead is the step."""
    retry = retry_of(call)
    if not goes_again(call, failure, retry):
        return NOT_AGAIN
    pooled = call.answer.pooled_key
    if pooled is not None and failure.status in RESTING_STATUSES:
        rest_key(*pooled, failure.retry_after_header, ledger)
    count_attempt(call, failure.status, failure.kind, circuits, ledger)
    step = _going_again(call, failure, retry, circuits)
    if isinstance(step, End):
        return step
    _record(call, failure)
    settle_attempt(call, failure.status)
    if isinstance(step, Retry) and call.loaded.limits:
        return _reserved(call, step, ledger, body_size)
    return step


async def _reserved(call: Call, retry: Retry, ledger: Store | None, body_size: int) -> Step:
    """A retry with its own reservation on the limits that apply (`reserve_again`); where it is not
    to be made (no room on a limit), what goes instead (`retry_not_made`)."""
    reserved = await reserve_again(call, ledger, body_size)
    if reserved is False:
        target = call.route.target.provider
        logger.info(f"Tollgate: retry of a {target} call not made: a limit has no room for it")
        return retry_not_made(call, retry)
    assert reserved is not True
    call.ledger.reserved = reserved
    return retry


def retry_not_made(call: Call, retry: Retry) -> Fallback | End:
    """A retry decided and not made after all (no room on a limit, its client gone during its
    wait, its credential not to be had): what goes instead (`Retry.otherwise`). The reservation it
    made is given back whole, whatever goes instead: its request never went (the failed attempt's
    was settled as it was decided). Where nothing goes, the failed attempt recorded is the call's
    last (`take_back`)."""
    reserved, call.ledger.reserved = call.ledger.reserved, None
    if reserved is not None:
        reserved.give_back()
    otherwise = retry.otherwise
    if isinstance(otherwise, End):
        take_back(call)
    return otherwise


def take_back(call: Call) -> None:
    """Nothing goes again: the failed attempt recorded is the call's last, not one of `attempts`."""
    if call.failover.attempts:
        call.failover.attempts.pop()


def resends(call: Call, target_from: int) -> tuple[bool, RetryConfig]:
    """How the attempt going now may go again (`target_from`: where its target's began in the
    call's `attempts`): whether it is its call's last (no retry nor fallback left after it), and
    its target's `retry` (a fallback's first attempt fails on its own provider's conditions)."""
    failover = call.failover
    assert failover.attempts is not None
    retry = retry_of(call)
    last = len(failover.attempts) - target_from + 1 >= retry.attempts and not failover.fallbacks
    return last, retry


def _record(call: Call, failure: Failure) -> None:
    """The failed attempt in the call's `attempts`."""
    failover = call.failover
    attempts = failover.attempts if failover.attempts is not None else []
    begun = failover.attempt_started or call.started
    latency_ms = round((time.time() - begun) * 1000, 1)
    target = call.route.target.provider
    model, key = call.target_model, call.answer.upstream_key
    attempts.append(Attempt(target, model, failure.status, key, failure.error, latency_ms))
    failover.attempts = attempts


def count_attempt(call: Call, status: int | None, kind: str | None, circuits: Circuits, ledger: Store | None) -> bool:
    """An attempt's outcome for its key's or upstream's circuits (`providers.<name>.circuit`): a
    failure as `retry.when` says (else `DEFAULT_WHEN`) counts for the key or upstream when it is
    the key's (429, a failed connection: `fails_the_key`), else for the model the call asked for
    there, which alone then rests on that key or upstream; any other answer closes both. False
    where the provider has no `circuit` (nothing counted)."""
    settings = call.loaded.providers[call.route.target.provider]
    circuit = settings.circuit
    model = circuit_model(call)
    if circuit is None or model is None:
        return False
    pooled = call.answer.pooled_key
    provider = call.route.target.provider
    whole = call.answer.upstream_key if pooled is not None else upstream_circuit(provider, call.route.upstream)
    assert whole is not None
    for_model = model_circuit(whole, model)
    if not failed(status, kind, settings.retry.when if settings.retry is not None else DEFAULT_WHEN):
        circuits.succeeded(whole)
        circuits.succeeded(for_model)
        return True
    of_key = fails_the_key(status, kind)
    name = whole if of_key else for_model
    if circuits.failed(name, circuit.failures):
        pool, key = pooled if pooled is not None else (None, None)
        open_circuit(pool, key, name, circuit.rest_s, circuits, ledger, None if of_key else model)
        what = f"key {whole}" if pooled is not None else f"upstream {call.route.upstream}"
        if not of_key:
            what += f" (model {model!r})"
        rest = f"{circuit.rest_s:g} s"
        logger.warning(f"Tollgate: {provider} {what} failed {circuit.failures} calls in a row: it rests {rest}")
    return True


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
    return _going_again(call, failure, retry, circuits)


def _going_again(call: Call, failure: Failure, retry: RetryConfig, circuits: Circuits) -> Retry | Fallback | End:
    """`plan` for a call that may go again (`goes_again`)."""
    fallbacks = call.failover.fallbacks
    otherwise = Fallback(fallbacks[0]) if fallbacks else END
    if failure.tries < retry.attempts:
        key = _next_key(call, failure, retry, circuits)
        if key is not None:
            return Retry(key.key, key.wait, otherwise)
    return otherwise


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
    return model.lower() if call.registry[target.provider].models.ignore_case else model


def upstream_rest_left(call: Call, circuits: Circuits) -> float:
    """How long the call's upstream rests (its circuit open), for every model or for the call's:
    a call with no pooled key is not sent there meanwhile."""
    model = circuit_model(call)
    if model is None:
        return 0.0
    whole = upstream_circuit(call.route.target.provider, call.route.upstream)
    return max(circuits.rest_left(whole), circuits.rest_left(model_circuit(whole, model)))
