"""How the pipeline's steps run: one mitmproxy addon whose hooks each run a list of steps in order,
and the call steps that every kind of call goes through before it goes upstream."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from mitmproxy import addonmanager, hooks, http, log  # noqa: F401 - importing them declares their hooks
from mitmproxy.proxy import layers, server_hooks  # noqa: F401 - likewise

from tollgate.calls.call import Call
from tollgate.formats.refusals import INTERNAL_ERROR
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.proxy.flows import call_of, refuse, refuse_mcp

logger = logging.getLogger(__name__)

Step = Callable[..., Awaitable[None] | None]
CallStep = Callable[[http.HTTPFlow, Call], Awaitable[None] | None]
McpStep = Callable[[http.HTTPFlow, McpExchange], Awaitable[None] | None]
# A step every kind of call takes (pipeline's `every_call`): given whichever record its kind has.
AnyCallStep = Callable[[http.HTTPFlow, Any], Awaitable[None] | None]


class Gateway:
    """The one addon mitmproxy sees: each hook runs its steps in order. A step that raises stops
    the hook's later steps, as mitmproxy does for a script's addons. A step that returns an
    awaitable makes the hook return one that awaits it, then runs the later steps: mitmproxy awaits
    it, serving other flows meanwhile. Otherwise the hook returns None, as it would without this.

    One addon rather than one per stage: mitmproxy dispatches every hook to every addon through
    generic machinery (a walk of the addon tree, the arguments rebuilt per addon, an awaitable
    check), which for a dozen addons cost more per call than the stages' own work.

    `kinds` names each kind of call's steps (an HTTP call's, a failover attempt's, …), for those
    who read the pipeline: mitmproxy never looks at it."""

    def __init__(self, kinds: Mapping[str, Sequence[Step]] | None = None, **steps: Sequence[Step]) -> None:
        unknown = set(steps) - set(hooks.all_hooks)
        if unknown:
            raise ValueError(f"not mitmproxy hooks: {', '.join(sorted(unknown))}")
        self.kinds = {kind: tuple(kind_steps) for kind, kind_steps in (kinds or {}).items()}
        self.steps = {hook: tuple(hook_steps) for hook, hook_steps in steps.items()}
        for hook, hook_steps in self.steps.items():
            setattr(self, hook, _in_order(hook_steps))


def _in_order(steps: tuple[Step, ...]) -> Callable[..., Awaitable[None] | None]:
    def hook(*args: object) -> Awaitable[None] | None:
        for i, step in enumerate(steps):
            pending = step(*args)
            if pending is not None:
                return _then_in_order(pending, steps[i + 1 :], args)
        return None

    return hook


async def _then_in_order(pending: Awaitable[None], steps: tuple[Step, ...], args: tuple[object, ...]) -> None:
    await pending
    for step in steps:
        later = step(*args)
        if later is not None:
            await later


class CallSteps[R: (Call, McpExchange)]:
    """The steps of a kind of call, each given the flow and the call's record, run in order before
    the call goes upstream. The first step that answers the call (a refusal) ends them. A step that
    raises refuses the call, in the shape its kind is refused in: mitmproxy would log the exception
    and run the later addons, and the call would go out unidentified or with the caller's
    credential. A step that returns an awaitable is awaited before the next.

    A request's call runs them at `request`, or at `requestheaders` for an upload streamed unread
    (its body goes upstream as it arrives): `steps`, or in their place `passthrough` for a call
    outside the model API and `session` for an upgrade whose messages are the calls. Every other
    kind of call (a WebSocket's response, an MCP server's request, a failover attempt) is run by the
    stage that makes it (`run`), on a flow of its own or made for it."""

    def __init__(
        self,
        *steps: Callable[[http.HTTPFlow, R], Awaitable[None] | None],
        passthrough: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...] = (),
        session: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...] = (),
    ) -> None:
        self.steps: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...] = steps
        # The steps of a call outside the model API (`Classification.passthrough`), in their place.
        self.passthrough: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...] = passthrough
        # The steps of an upgrade whose messages are the calls (`Classification.session`).
        self.session: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...] = session

    def at_request(self: CallSteps[Call], flow: http.HTTPFlow) -> Awaitable[None] | None:
        return self._run(flow, at_headers=False)

    def at_headers(self: CallSteps[Call], flow: http.HTTPFlow) -> Awaitable[None] | None:
        return self._run(flow, at_headers=True)

    def _run(self: CallSteps[Call], flow: http.HTTPFlow, at_headers: bool) -> Awaitable[None] | None:
        call = call_of(flow)
        if call is None or call.request.streamed_upload is not at_headers:
            return None
        c = call.classification
        steps = self.passthrough if c.passthrough else self.session if c.session else self.steps
        return self._from(steps, 0, flow, call)

    def run(self, flow: http.HTTPFlow, call: R) -> Awaitable[None] | None:
        """All the steps on a call of another kind than a request (a WebSocket's response, an MCP
        server's request, a failover attempt), with its flow or one made for it: as for a request,
        the first that answers it ends them."""
        return self._from(self.steps, 0, flow, call)

    def _from(
        self,
        steps: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...],
        first: int,
        flow: http.HTTPFlow,
        call: R,
    ) -> Awaitable[None] | None:
        for i in range(first, len(steps)):
            if flow.response is not None:
                return None
            step = steps[i]
            try:
                pending = step(flow, call)
            except Exception:
                _refuse_after_failure(flow, call, step)
                return None
            if pending is not None:
                return self._after(steps, pending, i, flow, call)
        return None

    async def _after(
        self,
        steps: tuple[Callable[[http.HTTPFlow, R], Awaitable[None] | None], ...],
        pending: Awaitable[None],
        i: int,
        flow: http.HTTPFlow,
        call: R,
    ) -> None:
        try:
            await pending
        except Exception:
            _refuse_after_failure(flow, call, steps[i])
            return
        rest = self._from(steps, i + 1, flow, call)
        if rest is not None:
            await rest


def _refuse_after_failure(flow: http.HTTPFlow, call: Call | McpExchange, step: Callable[..., object]) -> None:
    """A call whose step failed, refused: in its provider's shape, or an MCP server's request as
    a JSON-RPC error for each of its requests."""
    owner = type(step.__self__).__name__ if hasattr(step, "__self__") else getattr(step, "__name__", "a step")
    if isinstance(call, McpExchange):
        logger.exception(f"Tollgate: {owner} failed on an MCP request; it was refused")
        call.answer.error = "internal error"
        refuse_mcp(flow, call, 500, INTERNAL_ERROR, "Tollgate failed on this request and did not forward it.")
        return
    logger.exception(f"Tollgate: {owner} failed on a call; it was refused")
    call.answer.error = f"internal error in {owner}"
    refuse(flow, call, INTERNAL_ERROR, "Tollgate failed on this call and did not forward it; see its console.")
