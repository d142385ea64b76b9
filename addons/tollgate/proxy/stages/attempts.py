"""Failover: a call whose attempt failed before its answer began goes again as governance decides,
asked once (`next_attempt.next_step`): on its target with the next key after a wait (`retry`),
else on its next fallback (`fallbacks`), else not at all. This stage reads the failure from the
flow and carries out the step: waits, reserves anew, puts the next credential on, sends again.
Each answer's outcome counts for its key's or upstream's circuit (`circuit`); a key its provider
refused rests. `governance/routing/failover.py` says how mitmproxy is made to send a request again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary, WeakSet

from mitmproxy import http

from tollgate.core.call import Call, Failure
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.credentials.keypool import KeyPool, retry_after_seconds
from tollgate.governance.limits.settlement import reserve_again, settle_attempt
from tollgate.governance.routing.failover import failed_status_error, retries_errors, retry_statuses
from tollgate.governance.routing.next_attempt import (
    NOT_AGAIN,
    End,
    Fallback,
    Retry,
    count_attempt,
    failure_kind,
    next_step,
    retry_of,
)
from tollgate.governance.routing.next_attempt import (
    Failure as AttemptFailure,
)
from tollgate.governance.routing.upstream import RESTING_STATUSES, rest_key
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
        provider's `retry` or its fallbacks allow and the client still waits, governance decides
        what goes next (`next_step`: it records and counts the failure) and this stage carries it
        out; a retry not made (no room on a limit, the client gone during its wait, no credential
        to be had) leaves what the step says goes instead."""
        call = call_of(flow)
        if call is None:
            return None
        if call.loaded.providers[call.route.target.provider].retry is None and not call.failover.fallbacks:
            return None
        if not flow.client_conn.connected or patches.ended_by_client(flow):
            return None
        step = next_step(call, self._failure(flow, call), self.shared.circuits, self.shared.ledger)
        if step is NOT_AGAIN:
            return None
        self._counted.add(flow)  # counted for its circuits: its answer's hooks do not count it again
        if isinstance(step, Retry):
            if call.loaded.limits or step.wait > 0:
                return self._retry(flow, call, step)
            if _applied(flow, call, step):
                self._go_again(flow, call)
                return None
            return self._instead(flow, call, step.otherwise)
        if isinstance(step, Fallback):
            return self._next_target(flow, call)
        return None  # the end: nothing was recorded, the failed attempt's answer stands

    def _failure(self, flow: http.HTTPFlow, call: Call) -> AttemptFailure:
        """How the attempt failed, with the error its record in `attempts` gives."""
        tries = len(call.failover.attempts or ()) - self._target_from.get(flow, 0) + 1
        response = flow.response
        if response is not None:
            status = response.status_code
            asked = response.headers.get("retry-after")
            retry_after = retry_after_seconds(asked) if asked is not None else None
            refused = status in RESTING_STATUSES
            return AttemptFailure(status, None, tries, retry_after, refused, asked, failed_status_error(status))
        timed_out = call.answer.failure is Failure.UPSTREAM_TIMEOUT
        message = flow.error.msg if flow.error else "unknown error"
        error = call.answer.error if timed_out and call.answer.error else f"upstream unreachable: {message}"
        return AttemptFailure(None, failure_kind(timed_out), tries, error=error)

    async def _retry(self, flow: http.HTTPFlow, call: Call, step: Retry) -> None:
        """A retry that waits: for its reservation on the limits that apply (once the failed
        attempt is settled), then for its key's rest or the Retry-After asked; its credential goes
        on the request then (a signature made anew, a token current then)."""
        if call.loaded.limits:
            size = body_size(flow, call)
            settle_attempt(call, _status(flow))
            reserved = await reserve_again(call, self.shared.ledger, size)
            if reserved is False:
                target = call.route.target.provider
                logger.info(f"Tollgate: retry of a {target} call not made: a limit has no room for it")
                await _done(self._instead(flow, call, step.otherwise))
                return
            assert reserved is not True
            call.ledger.reserved = reserved
        if step.wait > 0:
            await asyncio.sleep(step.wait)
            if not flow.client_conn.connected:  # its client left meanwhile: nothing goes again
                await _done(self._instead(flow, call, step.otherwise))
                return
        if _applied(flow, call, step):
            self._go_again(flow, call)
            return
        await _done(self._instead(flow, call, step.otherwise))

    def _instead(self, flow: http.HTTPFlow, call: Call, step: Fallback | End) -> Awaitable[None] | None:
        """The next fallback, or nothing: the failed attempt recorded is then the call's last."""
        if isinstance(step, Fallback):
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
        """The answer's outcome for its key's or upstream's circuits (`count_attempt`), once."""
        if self._counted and flow in self._counted:
            return
        if count_attempt(call, status, kind, self.shared.circuits, self.shared.ledger):
            self._counted.add(flow)


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
