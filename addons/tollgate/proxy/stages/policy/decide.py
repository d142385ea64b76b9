"""The policy decides every call: 403 in the provider's own shape with the reasons, or on it goes.
A call that would mint a credential usable without Tollgate is refused before the policy is asked
(403 mints_credential), unless its provider's `ephemeral_credentials` allows it (never an
administration API's keys).
A decision not in the policy's cache is awaited from its worker process, within the time limit,
while mitmproxy serves other calls. Policy files are watched: a good edit takes effect at once
(with a new worker), a broken one keeps the last good policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.policy_input import input_facts
from tollgate.formats.refusals import MINTS_CREDENTIAL, POLICY_DENIED
from tollgate.governance.policy.policy import CALL_DECISION, Decision, Policy, PolicyError
from tollgate.proxy.flows import refuse
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

RELOAD_INTERVAL = 1.0


class Decide:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._watcher: asyncio.Task | None = None

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        if call.classification.mints_credential and not self._may_mint(call):
            provider = call.route.target.provider
            endpoint = call.classification.endpoint
            call.verdict.deny_reasons = (f"{endpoint} mints a credential usable without Tollgate",)
            allowed_by = (
                "no setting permits it"
                if call.classification.administers_keys
                else f"providers.{provider}.ephemeral_credentials: allow permits it"
            )
            refuse(
                flow,
                call,
                MINTS_CREDENTIAL,
                f"Tollgate refuses {endpoint}: it mints a credential that calls {provider} without Tollgate"
                f" (no policy, limit or audit); {allowed_by}.",
            )
            return None
        policy = call.loaded.policy
        if policy is None:
            return None
        decision = policy.decide(CALL_DECISION, input_facts(call))
        if type(decision) is Decision:
            self._apply(flow, call, decision)
            return None
        return self._apply_once_decided(flow, call, decision)  # type: ignore[arg-type]

    def fallback(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        """A call step of a failover attempt: the policy on its fallback target (`input.fallback_of`
        names the target it falls back from). A denied one is refused, so skipped."""
        policy = call.loaded.policy
        if policy is None:
            return None
        decision = policy.decide(CALL_DECISION, input_facts(call))
        if type(decision) is Decision:
            _deny_fallback(flow, call, decision)
            return None
        return _deny_fallback_once_decided(flow, call, decision)  # type: ignore[arg-type]

    @staticmethod
    def _may_mint(call: Call) -> bool:
        if call.classification.administers_keys:  # a lasting key, never an ephemeral credential
            return False
        return call.loaded.providers[call.route.target.provider].ephemeral_credentials == "allow"

    async def _apply_once_decided(self, flow: http.HTTPFlow, call: Call, evaluation: Awaitable[Decision]) -> None:
        start = time.perf_counter()
        decision = await evaluation
        metrics = self.shared.metrics
        if metrics is not None:
            outcome = "error" if decision.error else "allow" if decision.allowed else "deny"
            metrics.policy_evaluated(time.perf_counter() - start, outcome)
        self._apply(flow, call, decision)

    def _apply(self, flow: http.HTTPFlow, call: Call, decision: Decision) -> None:
        if decision.allowed:
            return
        call.verdict.deny_reasons = decision.deny_reasons
        if decision.error:
            call.answer.error = decision.error
            logger.error(f"Tollgate: {decision.error}")
        refuse(flow, call, POLICY_DENIED, "Tollgate policy denied this call: " + "; ".join(decision.deny_reasons))

    def running(self) -> None:
        self.shared.running = True
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        policy = self._policy()
        if policy is not None:
            policy.start()

    def done(self) -> Awaitable[None] | None:
        if self._watcher is not None:
            self._watcher.cancel()
        policy = self._policy()
        # Awaited, so that the worker has exited before the event loop ends.
        return None if policy is None else policy.aclose()

    def _policy(self) -> Policy | None:
        loaded = self.shared.loaded
        return None if loaded is None else loaded.policy

    async def _watch(self) -> None:
        watched: Policy | None = None
        seen: tuple[float | None, ...] = ()
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            current = self._policy()
            if current is None:
                continue
            if current is not watched:
                # A policy new to the watch (reloaded, or a reloaded configuration's) is compared with
                # its files as they were when it was compiled, not compiled again.
                watched, seen = current, current.loaded_mtimes
            mtimes = current.mtimes()
            if mtimes == seen:
                continue
            seen = mtimes
            await self.reload(current)

    async def reload(self, current: Policy) -> None:
        try:
            # Compiled in a process of its own, waited for in a thread: calls go on meanwhile.
            fresh = await asyncio.to_thread(Policy, current.files, current.timeout, apart=True, network=current.network)
        except PolicyError as e:
            logger.error(f"Tollgate: policy not reloaded, the last good one stays in force: {e}")
            return
        if self.shared.replace_policy(current, fresh):
            logger.info(f"Tollgate: policy reloaded from {', '.join(map(str, fresh.files))}")


def _deny_fallback(flow: http.HTTPFlow, call: Call, decision: Decision) -> None:
    if not decision.allowed:
        call.verdict.deny_reasons = decision.deny_reasons
        refuse(flow, call, POLICY_DENIED, "Tollgate policy denied this fallback: " + "; ".join(decision.deny_reasons))


async def _deny_fallback_once_decided(flow: http.HTTPFlow, call: Call, evaluation: Awaitable[Decision]) -> None:
    _deny_fallback(flow, call, await evaluation)
