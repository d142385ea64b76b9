"""Fallback routes: a call whose target failed (after its retries) goes to the next of its override
rule's `fallbacks`, another model of the same provider, if the policy allows it (`input.fallback_of`
names the target it falls back from). A denied fallback is skipped, never answered: the failed
attempt's answer stands when none is left."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from mitmproxy import http

from tollgate.call import Call, Target
from tollgate.formats import OPENAI_API
from tollgate.formats.exact import Unreadable
from tollgate.formats.json_codec import encode_json, read_request_json
from tollgate.governance.limits import Reserved
from tollgate.governance.policy import Decision
from tollgate.proxy.flows import call_of, provider_of
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


class Fallback:
    def __init__(
        self,
        shared: Shared,
        apply_credential: Callable[[http.HTTPFlow, Call], bool],
        reserve: Callable[[http.HTTPFlow, Call], Awaitable[Reserved | bool | None]],
        release: Callable[[Reserved | None], None],
    ) -> None:
        self.shared = shared
        self._apply_credential = apply_credential  # `Credential.fall_back`
        self._reserve, self._release = reserve, release  # `Ledger.reserve_fallback`, `Ledger.release`

    def attempt_failed(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """After `Credential.again`, before `UpstreamWatch.go_again`: a failed target with no retry
        left (none configured, the last made, or none that can be made)."""
        call = call_of(flow)
        if call is None or not call.failover.falling_back:
            return None
        call.failover.falling_back = False
        return None if call.failover.retrying else self._next(flow, call)

    async def _next(self, flow: http.HTTPFlow, call: Call) -> None:
        failover = call.failover
        while failover.fallbacks:
            (provider, model), failover.fallbacks = failover.fallbacks[0], failover.fallbacks[1:]
            route = call.route
            if provider != route.target.provider:  # the configuration allows none other (not translated again)
                continue
            before = (route.target, failover.fallback_of, call.ledger.usage_counters)
            failover.fallback_of = (route.target.provider, call.target_model)
            route.target = Target(provider, model)
            # Its own reservation first (the policy sees its counters), the failed target's kept
            # until it goes.
            reserved = await self._reserve(flow, call)
            if reserved is not False:
                assert reserved is not True
                if (
                    await self._allowed(call)
                    and self._call_model(flow, call, model)
                    and self._apply_credential(flow, call)
                ):
                    self._release(call.ledger.reserved)
                    call.ledger.reserved = reserved
                    assert failover.attempts is not None
                    failover.target_attempts_from = len(failover.attempts)
                    failover.retrying = True
                    return
                self._release(reserved)
            route.target, failover.fallback_of, call.ledger.usage_counters = before
        if failover.attempts:  # nothing goes again: the failed attempt is the call's last
            failover.attempts.pop()

    async def _allowed(self, call: Call) -> bool:
        policy = call.loaded.policy
        if policy is None:
            return True
        decision = policy.decide_call_in_worker(call)
        if type(decision) is not Decision:
            decision = await decision  # type: ignore[misc]
        if not decision.allowed:
            target = call.route.target
            logger.info(
                f"Tollgate: fallback to {target.provider} {target.model} skipped, the policy denied it: "
                + "; ".join(decision.deny_reasons)
            )
        return decision.allowed

    @staticmethod
    def _call_model(flow: http.HTTPFlow, call: Call, model: str) -> bool:
        """The request as sent, calling `model`: its path, else its body's model field (read again:
        the call's parsed body was let go once it was decided). False where neither names it."""
        provider = provider_of(call)
        request = flow.request
        path = None if call.classification.wire_format == OPENAI_API else provider.path_with_model(request.path, model)
        if path is not None:
            request.path = path
            return True
        field = provider.model_field(call.classification)
        try:
            body = read_request_json(request.content)
        except (Unreadable, ValueError):
            return False
        if body is None or field is None:
            return False
        body[field] = provider.model_in_body(body.get(field), model)
        request.content = encode_json(body)  # the setter keeps its encoding and Content-Length
        call.body_sha256 = None
        return True
