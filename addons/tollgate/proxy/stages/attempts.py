"""Failover: a call whose attempt failed before its answer began goes again, as `plan` decides
(`governance/next_attempt.py`): on its target with the next key after a wait (`retry`), else on its
next fallback (`fallbacks`), else not at all. Each attempt's outcome counts for its key's or
upstream's circuit (`circuit`); a key its provider refused rests. `governance/failover.py` says
how mitmproxy is made to send a request again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary, WeakSet

from mitmproxy import http

from tollgate.call import Call, Failure
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.credentials.keypool import KeyPool, retry_after_seconds
from tollgate.governance.failover import (
    DEFAULT_WHEN,
    Attempt,
    failed,
    failed_status_error,
    fails_the_key,
    model_circuit,
    retries_errors,
    retry_statuses,
    upstream_circuit,
)
from tollgate.governance.next_attempt import (
    Failure as AttemptFailure,
)
from tollgate.governance.next_attempt import (
    Fallback,
    Retry,
    circuit_model,
    failure_kind,
    goes_again,
    plan,
    retry_of,
)
from tollgate.governance.settlement import reserve_again, settle_attempt
from tollgate.proxy import patches
from tollgate.proxy.flows import apply_credential, body_size, call_of
from tollgate.proxy.state import Shared
from tollgate.upstream import RESTING_STATUSES, open_circuit, rest_key

logger = logging.getLogger(__name__)

# The failed target's fallbacks tried in turn (`Fallback.next`): True once one goes.
FallBack = Callable[[http.HTTPFlow, Call], Awaitable[bool]]
# The clock for the upstream's response headers, started for each attempt (`UpstreamWatch.handle`).
Clock = Callable[[http.HTTPFlow, Call], None]


class Attempts:
    def __init__(self, shared: Shared, fall_back: FallBack, clock: Clock) -> None:
        self.shared = shared
        self._fall_back = fall_back
        self._clock = clock
        # The flows whose failed attempt counted for its circuit already: its answer's headers or
        # its error, if nothing goes again, do not count it twice.
        self._counted: WeakSet[http.HTTPFlow] = WeakSet()
        # Where in a call's `attempts` its current target's began (a fallback's: after the others').
        self._target_from: WeakKeyDictionary[http.HTTPFlow, int] = WeakKeyDictionary()

    def load(self, _loader: object) -> None:
        patches.resend_failed_attempts()

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call step, before the clock starts: a call that may go again (read whole, not an
        upload streamed unread; of the model API; with a credential of Tollgate's) has its failed
        attempts looked at before their answer goes to the client (`patches.may_resend`)."""
        settings = call.loaded.providers[call.route.target.provider]
        if (settings.retry is None or settings.retry.attempts <= 1) and not call.failover.fallbacks:
            return
        c = call.classification
        if call.request.streamed_upload or c.passthrough or c.session or call.caller.caller_credential:
            return
        retry = retry_of(call)
        call.failover.attempt_started = time.time()
        patches.may_resend(flow, retry_statuses(retry), retries_errors(retry))

    def attempt_failed(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """An attempt failed before its answer began (`patches.AttemptFailedHook`). While its
        provider's `retry` or its fallbacks allow and the client still waits, it is recorded and
        the call goes again as `plan` decides; a retry not made (no room on a limit, the client
        gone during its wait, no credential to be had) leaves the fallbacks next."""
        call = call_of(flow)
        if call is None:
            return None
        if call.loaded.providers[call.route.target.provider].retry is None and not call.failover.fallbacks:
            return None
        retry = retry_of(call)
        failure, error = self._failure(flow, call)
        if not goes_again(call, failure, retry) or not flow.client_conn.connected or patches.ended_by_client(flow):
            return None
        self._record(call, failure.status, error)
        response = flow.response
        if call.answer.pooled_key is not None and response is not None:
            _rest_refused_key(response, call.answer.pooled_key, self.shared)
        self._count(flow, call, failure.status, failure.kind)
        step = plan(call, failure, retry, self.shared.circuits)
        if isinstance(step, Retry):
            if call.loaded.limits or step.wait > 0:
                return self._retry(flow, call, step)
            if _applied(flow, call, step):
                self._go_again(flow, call)
                return None
            return self._not_retried(flow, call)
        if isinstance(step, Fallback):
            return self._next_target(flow, call)
        _take_back(call)
        return None

    def _failure(self, flow: http.HTTPFlow, call: Call) -> tuple[AttemptFailure, str]:
        """How the attempt failed, and the error its record in `attempts` gives."""
        tries = len(call.failover.attempts or ()) - self._target_from.get(flow, 0) + 1
        response = flow.response
        if response is not None:
            status = response.status_code
            asked = response.headers.get("retry-after")
            retry_after = retry_after_seconds(asked) if asked is not None else None
            refused = status in RESTING_STATUSES
            return AttemptFailure(status, None, tries, retry_after, refused), failed_status_error(status)
        timed_out = call.answer.failure is Failure.UPSTREAM_TIMEOUT
        message = flow.error.msg if flow.error else "unknown error"
        error = call.answer.error if timed_out and call.answer.error else f"upstream unreachable: {message}"
        return AttemptFailure(None, failure_kind(timed_out), tries), error

    @staticmethod
    def _record(call: Call, status: int | None, error: str) -> None:
        """The failed attempt in the call's `attempts`, taken back if nothing goes again (the
        record's last attempt is then that one)."""
        failover = call.failover
        attempts = failover.attempts if failover.attempts is not None else []
        begun = failover.attempt_started or call.started
        latency_ms = round((time.time() - begun) * 1000, 1)
        target = call.route.target.provider
        attempts.append(Attempt(target, call.target_model, status, call.answer.upstream_key, error, latency_ms))
        failover.attempts = attempts

    async def _retry(self, flow: http.HTTPFlow, call: Call, step: Retry) -> None:
        """A retry that waits: for its reservation on the limits that apply (once the failed
        attempt is settled), then for its key's rest or the Retry-After asked; its credential goes
        on the request then (a signature made anew, a token current then)."""
        if call.loaded.limits:
            settle_attempt(call, _status(flow))
            reserved = await reserve_again(call, self.shared.ledger, body_size(flow, call))
            if reserved is False:
                target = call.route.target.provider
                logger.info(f"Tollgate: retry of a {target} call not made: a limit has no room for it")
                await _done(self._not_retried(flow, call))
                return
            assert reserved is not True
            call.ledger.reserved = reserved
        if step.wait > 0:
            await asyncio.sleep(step.wait)
            if not flow.client_conn.connected:  # its client left meanwhile: nothing goes again
                await _done(self._not_retried(flow, call))
                return
        if _applied(flow, call, step):
            self._go_again(flow, call)
            return
        await _done(self._not_retried(flow, call))

    def _not_retried(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        """A retry not made: the fallbacks are next, if any."""
        if call.failover.fallbacks:
            return self._next_target(flow, call)
        _take_back(call)
        return None

    def _next_target(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None]:
        """A failed target with no retry left: its attempt settled, the next fallback the policy
        allows goes (the pipeline's `failover` steps), with retries of its own."""
        settle_attempt(call, _status(flow))
        return self._fall_back_then(flow, call)

    async def _fall_back_then(self, flow: http.HTTPFlow, call: Call) -> None:
        if not await self._fall_back(flow, call):
            _take_back(call)
            return
        assert call.failover.attempts is not None
        self._target_from[flow] = len(call.failover.attempts)
        self._go_again(flow, call)

    def _go_again(self, flow: http.HTTPFlow, call: Call) -> None:
        """The call goes again, on its new credential, with a clock of its own; the failed
        attempt's status, error and first byte are forgotten."""
        failover, answer = call.failover, call.answer
        answer.status = answer.error = answer.failure = answer.first_byte = None
        self._counted.discard(flow)
        answer.request_sent = False  # the next attempt's, once it has gone
        failover.attempt_started = time.time()
        assert failover.attempts is not None
        retry = retry_of(call)
        target_from = self._target_from.get(flow, 0)
        if len(failover.attempts) - target_from + 1 >= retry.attempts and not failover.fallbacks:
            patches.no_more_resends(flow)
        elif target_from == len(failover.attempts):  # a fallback's first: its provider's `retry.when`
            patches.may_resend(flow, retry_statuses(retry), retries_errors(retry))
        patches.resend(flow)
        self._clock(flow, call)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The answer's headers: a pooled key the upstream refused (401, 429) rests, and the
        attempt counts for its circuits."""
        call = call_of(flow)
        if call is None or flow.response is None or call.answer.answered_by_tollgate:
            return
        if call.answer.pooled_key is not None:
            _rest_refused_key(flow.response, call.answer.pooled_key, self.shared)
        self._count(flow, call, flow.response.status_code, None)

    def error(self, flow: http.HTTPFlow) -> None:
        """After `UpstreamWatch.error`: an upstream unreachable or late counts for its circuit."""
        call = call_of(flow)
        if call is not None and call.answer.failure in (Failure.UPSTREAM_UNREACHABLE, Failure.UPSTREAM_TIMEOUT):
            self._count(flow, call, None, failure_kind(call.answer.failure is Failure.UPSTREAM_TIMEOUT))

    def _count(self, flow: http.HTTPFlow, call: Call, status: int | None, kind: str | None) -> None:
        """The attempt's outcome for its key's or upstream's circuits (`providers.<name>.circuit`):
        a failure as `retry.when` says (else `DEFAULT_WHEN`) counts for the key or upstream when it
        is the key's (429, a failed connection: `fails_the_key`), else for the model the call asked
        for there, which alone then rests on that key or upstream; any other answer closes both."""
        settings = call.loaded.providers[call.route.target.provider]
        circuit = settings.circuit
        model = circuit_model(call)
        if circuit is None or model is None or (self._counted and flow in self._counted):
            return
        self._counted.add(flow)
        pooled = call.answer.pooled_key
        whole = (
            call.answer.upstream_key
            if pooled is not None
            else upstream_circuit(call.route.target.provider, call.route.upstream)
        )
        assert whole is not None
        circuits, for_model = self.shared.circuits, model_circuit(whole, model)
        if not failed(status, kind, settings.retry.when if settings.retry is not None else DEFAULT_WHEN):
            circuits.succeeded(whole)
            circuits.succeeded(for_model)
            return
        of_key = fails_the_key(status, kind)
        name = whole if of_key else for_model
        if circuits.failed(name, circuit.failures):
            pool, key = pooled if pooled is not None else (None, None)
            rested = None if of_key else model
            open_circuit(pool, key, name, circuit.rest_s, circuits, self.shared.ledger, rested)
            what = f"key {whole}" if pooled is not None else f"upstream {call.route.upstream}"
            if not of_key:
                what += f" (model {model!r})"
            rest = f"{circuit.rest_s:g} s"
            provider = call.route.target.provider
            logger.warning(f"Tollgate: {provider} {what} failed {circuit.failures} calls in a row: it rests {rest}")


def _applied(flow: http.HTTPFlow, call: Call, step: Retry) -> bool:
    """The retry's credential on the request; False when it cannot be had (the failed attempt's
    answer stands, or a fallback goes)."""
    try:
        apply_credential(flow, call, step.key)
    except CredentialUnavailable:
        return False
    return True


def _take_back(call: Call) -> None:
    """Nothing goes again: the failed attempt recorded is the call's last, not one of `attempts`."""
    if call.failover.attempts:
        call.failover.attempts.pop()


async def _done(pending: Awaitable[None] | None) -> None:
    if pending is not None:
        await pending


def _status(flow: http.HTTPFlow) -> int | None:
    return flow.response.status_code if flow.response is not None else None


def _rest_refused_key(response: http.Response, pooled: tuple[KeyPool, str], shared: Shared) -> None:
    if response.status_code in RESTING_STATUSES:
        pool, key = pooled
        rest_key(pool, key, response.headers.get("retry-after"), shared.ledger)
