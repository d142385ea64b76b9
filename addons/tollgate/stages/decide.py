"""The policy decides every call: 403 in the provider's own shape with the reasons, or on it goes.
Policy files are watched: a good edit takes effect at once, a broken one keeps the last good policy."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from ..call import Call
from ..policy import Policy, PolicyError
from ..providers.base import POLICY_DENIED
from .shared import CallStage, Shared, refuse

logger = logging.getLogger(__name__)

RELOAD_INTERVAL = 1.0


class Decide(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._watcher: asyncio.Task | None = None

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        policy = self.shared.policy
        if policy is None:
            return
        decision = policy.decide_call(call)
        if decision.allowed:
            return
        call.decision = "deny"
        call.deny_reasons = decision.deny_reasons
        if decision.error:
            call.error = decision.error
            logger.error(f"Tollgate: {decision.error}")
        refuse(flow, call, POLICY_DENIED, "Tollgate policy denied this call: " + "; ".join(decision.deny_reasons))

    def running(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def _watch(self) -> None:
        seen = self.shared.policy.mtimes() if self.shared.policy else ()
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            current = self.shared.policy
            if current is None:
                seen = ()
                continue
            mtimes = current.mtimes()
            if mtimes == seen:
                continue
            seen = mtimes
            self.reload(current)

    def reload(self, current: Policy) -> None:
        try:
            fresh = Policy(current.files)
        except PolicyError as e:
            logger.error(f"Tollgate: policy not reloaded, the last good one stays in force: {e}")
            return
        if self.shared.policy is current:  # not replaced by a configuration change meanwhile
            self.shared.policy = fresh
            logger.info(f"Tollgate: policy reloaded from {', '.join(map(str, fresh.files))}")
