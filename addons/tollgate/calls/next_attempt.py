"""What a call does when an attempt failed before its answer began, decided in one call
(`next_step`): routing decides on its target, asked once (`next_try`: the failure counted, a
refused key rested, the next credential and its wait), and the step is a whole answer: a retry on
its target (`Retry`, with what goes instead when the retry cannot be made and whether it is the
call's last), its next fallback (`Fallback`), or the end with the failed attempt's answer (`End`).
A step that goes again carries the failed attempt to record once it goes (`record`) and has its
reservation settled; a retry on the limits has its own reserved (where a limit has no room, what
goes instead is the step), which the call's settlement gives back whole where the retry is not made
after all (`LedgerState.awaits_retry`). Plain logic, no mitmproxy: the `Attempts` stage reads the
failure from its flow, asks once and carries out the step."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tollgate.calls.settlement import reserve_again, settle_attempt
from tollgate.common.config_base import RetryConfig
from tollgate.governance.routing import failover
from tollgate.governance.routing.failover import CONNECT, TIMEOUT, Attempt, AttemptFailure, Circuits
from tollgate.governance.routing.next_try import Tried, count, next_try

if TYPE_CHECKING:
    from tollgate.calls.call import Call
    from tollgate.credentials.base import UpstreamCredential
    from tollgate.ledger.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The next of the call's fallbacks, (provider, model), and those after it if the policy skips
    it; `record`: the failed attempt, one of the call's `attempts` once a fallback goes."""

    target: tuple[str, str]
    record: Attempt | None = field(default=None, compare=False)


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
    """The target again, with this credential, after this wait (seconds); `record`: the failed
    attempt, one of the call's `attempts` once the retry goes; `last`: no retry nor fallback would
    be left after it (its failure goes to the client); `otherwise`, what goes when the retry cannot
    be made (no room on a limit, the client gone during the wait, the credential not to be had):
    the next fallback, else nothing. A reservation it made for itself is given back as the call
    settles, whatever goes instead (`LedgerState.awaits_retry`)."""

    key: UpstreamCredential
    wait: float
    record: Attempt
    otherwise: Fallback | End = END
    last: bool = False


# What a failed attempt's call does next (`next_step`).
Step = Retry | Fallback | End


def next_step(
    call: Call, failure: AttemptFailure, circuits: Circuits, ledger: Store | None, body_size: int = 0
) -> Step | Awaitable[Step]:
    """What a call whose attempt failed does next, the whole order here: routing decides on its
    target (`next_try`: nothing where the failure is none `retry.when` names or nothing is left to
    try, `NOT_AGAIN`; else the failure counted, then a retry's credential and wait, if any); the
    step is that retry, else the next fallback, else the end. A step that goes again carries the
    failed attempt to record (`record`) and has its reservation settled (`settle_attempt`); a
    retry on the limits has its own reserved (`body_size`: the request's, its prompt's tokens
    estimated from it), awaited, and where a limit has no room what goes instead is the step."""
    tried, fallbacks = _tried(call), call.failover.fallbacks
    again = next_try(tried, failure, bool(fallbacks), circuits, ledger)
    if again is None:
        return NOT_AGAIN
    if again.key is None and not fallbacks:
        return END
    record = _attempt(call, failure)
    otherwise = Fallback(fallbacks[0], record) if fallbacks else END
    settle_attempt(call, failure.status)
    if again.key is None:
        return otherwise
    last = failure.tries + 1 >= tried.retry.attempts and not fallbacks
    retry = Retry(again.key, again.wait, record, otherwise, last)
    return _reserved(call, retry, ledger, body_size) if call.loaded.limits else retry


async def _reserved(call: Call, retry: Retry, ledger: Store | None, body_size: int) -> Step:
    """A retry with its own reservation on the limits that apply (`reserve_again`), given back as
    the call settles where the retry never goes (`LedgerState.awaits_retry`); where it is not to
    be made (no room on a limit), what goes instead (`Retry.otherwise`)."""
    reserved = await reserve_again(call, ledger, body_size)
    if reserved is False:
        target = call.route.target.provider
        logger.info(f"Tollgate: retry of a {target} call not made: a limit has no room for it")
        return retry.otherwise
    assert reserved is not True
    call.ledger.reserved, call.ledger.awaits_retry = reserved, reserved is not None
    return retry


def _attempt(call: Call, failure: AttemptFailure) -> Attempt:
    """The failed attempt, as the call's `attempts` record it once something goes again."""
    begun = call.failover.attempt_started or call.started
    latency_ms = round((time.time() - begun) * 1000, 1)
    model, key = call.target_model, call.answer.upstream_key
    return Attempt(call.route.target.provider, model, failure.status, key, failure.error, latency_ms)


def _tried(call: Call) -> Tried:
    """The call's attempt as routing reads it (`next_try`, `count`)."""
    name = call.route.target.provider
    settings = call.loaded.providers[name]
    return Tried(
        call.loaded, call.registry[name], call.sent(), call.route.upstream, call.answer.pooled_key,
        call.answer.upstream_key, retry_of(call), settings.circuit, circuit_model(call),
    )  # fmt: skip


def count_attempt(call: Call, status: int | None, kind: str | None, circuits: Circuits, ledger: Store | None) -> bool:
    """An answer's outcome for its key's or upstream's circuits (routing's `count`). False where
    the provider has no `circuit` (nothing counted)."""
    if call.loaded.providers[call.route.target.provider].circuit is None:
        return False
    count(_tried(call), status, kind, circuits, ledger)
    return True


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
    return failover.upstream_rest_left(circuits, call.route.target.provider, call.route.upstream, model)
