"""Failover: a call whose attempt failed before its answer began goes again as governance decides,
asked once (`next_attempt.next_step`): on its target with the next key after a wait (`retry`),
else on its next fallback (`fallbacks`), else not at all. This stage reads the failure from the
flow and carries out the whole answer: waits, puts the next credential on, records the failed
attempt, sends again; a retry not made after all is followed by what its answer says goes instead.
Each answer's outcome counts for its key's or upstream's circuit (`circuit`); a key its provider
refused rests (`rest_refused_key`). `governance/routing/failover.py` says how mitmproxy is made to
send a request again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary, WeakSet

from mitmproxy import http

from tollgate.calls.call import Call, Failure
from tollgate.calls.next_attempt import (
    NOT_AGAIN,
    End,
    Fallback,
    Retry,
    Step,
    count_attempt,
    failure_kind,
    next_step,
    retry_of,
)
from tollgate.common.config_base import RetryConfig
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.governance.routing import failover as routing
from tollgate.governance.routing.failover import Attempt, retries_errors, retry_statuses
from tollgate.governance.routing.upstream import rest_refused_key
from tollgate.proxy import patches
from tollgate.proxy.flows import apply_credential, body_size, call_of
from tollgate.proxy.state import Shared

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
        retry = resends_on(call)
        if retry is None:
            return
        c = call.classification
        if call.request.streamed_upload or c.passthrough or c.session or call.caller.caller_credential:
            return
        call.failover.attempt_started = time.time()
        patches.may_resend(flow, retry_statuses(retry), retries_errors(retry))

    def attempt_failed(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """An attempt failed before its answer began (`patches.AttemptFailedHook`). While its
        provider's `retry` or its fallbacks allow and the client still waits, governance decides
        what goes next, asked once (`next_step`: it counts and settles the failure, reserves a
        retry on the limits, and answers whole: the step, the failed attempt to record, what goes
        if a retry cannot be made), and this stage carries the step out (`_carry_out`)."""
        call = call_of(flow)
        if call is None:
            return None
        if call.loaded.providers[call.route.target.provider].retry is None and not call.failover.fallbacks:
            return None
        if not flow.client_conn.connected or patches.ended_by_client(flow):
            return None
        size = body_size(flow, call)
        failure = self._how_it_failed(flow, call)
        step = next_step(call, failure, self.shared.circuits, self.shared.ledger, size)
        if step is NOT_AGAIN:
            return None
        self._counted.add(flow)  # counted for its circuits: its answer's hooks do not count it again
        return self._carry_out(flow, call, step)

    def _how_it_failed(self, flow: http.HTTPFlow, call: Call) -> routing.AttemptFailure:
        """How the attempt failed, as its flow tells: the upstream's status and Retry-After header
        as they came (read by governance), else whether its connection failed or its wait for an
        answer ran out, and the error its record in `attempts` gives."""
        tries = len(call.failover.attempts or ()) - self._target_from.get(flow, 0) + 1
        response = flow.response
        if response is not None:
            return routing.AttemptFailure(response.status_code, None, tries, response.headers.get("retry-after"))
        if call.answer.failure is Failure.UPSTREAM_TIMEOUT:
            return routing.AttemptFailure(
                None, routing.TIMEOUT, tries, unanswered=call.answer.error or _unreachable(flow)
            )
        return routing.AttemptFailure(None, routing.CONNECT, tries, unanswered=_unreachable(flow))

    async def _carry_out_once_decided(self, flow: http.HTTPFlow, call: Call, step: Awaitable[Step]) -> None:
        await _done(self._carry_out(flow, call, await step))

    def _carry_out(self, flow: http.HTTPFlow, call: Call, step: Step | Awaitable[Step]) -> Awaitable[None] | None:
        """The step governance decided (awaited where a retry's reservation was): a retry, on its
        credential after its wait; the next fallback; or nothing, the failed attempt's answer
        standing."""
        if not isinstance(step, (Retry, Fallback, End)):
            return self._carry_out_once_decided(flow, call, step)
        if isinstance(step, Retry):
            return self._retry_after(flow, call, step) if step.wait > 0 else self._retry(flow, call, step)
        if isinstance(step, Fallback):
            return self._fall_back_then(flow, call, step)
        return None

    async def _retry_after(self, flow: http.HTTPFlow, call: Call, step: Retry) -> None:
        """A retry that waits for its key's rest or the Retry-After asked; none if its client left
        meanwhile."""
        await asyncio.sleep(step.wait)
        if flow.client_conn.connected:
            await _done(self._retry(flow, call, step))
            return
        await _done(self._instead(flow, call, step))

    def _retry(self, flow: http.HTTPFlow, call: Call, step: Retry) -> Awaitable[None] | None:
        """The retry's credential on the request, taken now (a signature made anew, a token current
        then), and the call sent again; where it cannot be had, what goes instead."""
        if _applied(flow, call, step):
            self._go_again(flow, call, step.record)
            if step.last:  # its failure goes to the client
                patches.no_more_resends(flow)
            return None
        return self._instead(flow, call, step)

    def _instead(self, flow: http.HTTPFlow, call: Call, step: Retry) -> Awaitable[None] | None:
        """A retry not made after all: what its step says goes instead (`Retry.otherwise`), the
        next fallback or nothing. The reservation it made is given back as the call settles."""
        if isinstance(step.otherwise, Fallback):
            return self._fall_back_then(flow, call, step.otherwise)
        return None

    async def _fall_back_then(self, flow: http.HTTPFlow, call: Call, step: Fallback) -> None:
        """The next fallback the policy allows goes (the pipeline's `failover` steps); its first
        attempt is looked at on its own provider's conditions (`resends_on`). Where none goes,
        the failed attempt's answer stands, not one of the call's `attempts`."""
        if not await self._fall_back(flow, call):
            return
        self._go_again(flow, call, step.record)
        assert call.failover.attempts is not None
        self._target_from[flow] = len(call.failover.attempts)  # its target's attempts begin here
        retry = resends_on(call)
        if retry is None:  # no retry nor fallback after it: its failure goes to the client
            patches.no_more_resends(flow)
        else:
            patches.may_resend(flow, retry_statuses(retry), retries_errors(retry))

    def _go_again(self, flow: http.HTTPFlow, call: Call, record: Attempt | None) -> None:
        """The call goes again (a retry, or a fallback's first attempt), on its new credential, with
        a clock of its own; the failed attempt is recorded among its `attempts`, its status, error
        and first byte forgotten, and a retry's reservation is now its own attempt's."""
        if record is not None:
            call.failover.attempts = [*(call.failover.attempts or ()), record]
        answer = call.answer
        answer.status = answer.error = answer.failure = answer.first_byte = None
        self._counted.discard(flow)
        answer.request_sent = call.ledger.awaits_retry = False  # the next attempt's, once it has gone
        call.failover.attempt_started = time.time()
        patches.resend(flow)
        self._clock(flow, call)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The answer's headers: a pooled key the upstream refused (401, 429) rests, and the
        attempt counts for its circuits."""
        call = call_of(flow)
        if call is None or flow.response is None or call.answer.answered_by_tollgate:
            return
        response = flow.response
        if call.answer.pooled_key is not None:
            pool, key = call.answer.pooled_key
            rest_refused_key(pool, key, response.status_code, response.headers.get("retry-after"), self.shared.ledger)
        self._count(flow, call, response.status_code, None)

    def error(self, flow: http.HTTPFlow) -> None:
        """After `UpstreamWatch.error`: an upstream unreachable or late counts for its circuit."""
        call = call_of(flow)
        if call is not None and call.answer.failure in (Failure.UPSTREAM_UNREACHABLE, Failure.UPSTREAM_TIMEOUT):
            self._count(flow, call, None, failure_kind(call.answer.failure is Failure.UPSTREAM_TIMEOUT))

    def _count(self, flow: http.HTTPFlow, call: Call, status: int | None, kind: str | None) -> None:
        """The answer's outcome for its key's or upstream's circuits (`count_attempt`), once."""
        if self._counted and flow in self._counted:
            return
        if count_attempt(call, status, kind, self.shared.circuits, self.shared.ledger):
            self._counted.add(flow)


def resends_on(call: Call) -> RetryConfig | None:
    """The conditions on which an attempt of the call's target is looked at before its answer goes
    to the client: its provider's `retry` (one attempt on the default conditions where it has none
    and a fallback is left); None where nothing would go after it (no retry and no fallback left)."""
    retry = retry_of(call)
    return None if retry.attempts <= 1 and not call.failover.fallbacks else retry


def _applied(flow: http.HTTPFlow, call: Call, step: Retry) -> bool:
    """The retry's credential on the request; False when it cannot be had (the failed attempt's
    answer stands, or a fallback goes)."""
    try:
        apply_credential(flow, call, step.key)
    except CredentialUnavailable:
        return False
    return True


def _unreachable(flow: http.HTTPFlow) -> str:
    return f"upstream unreachable: {flow.error.msg if flow.error else 'unknown error'}"


async def _done(pending: Awaitable[None] | None) -> None:
    if pending is not None:
        await pending
