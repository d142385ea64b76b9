"""`agents` on a call: its request read once (where its text came from, the taint index, the
injection signals), for its answer's tool calls to be decided as it is read whole
(`StreamTap.answer_read_whole`) or, streamed, as its events come (`AgentsFormat.held_stream`).
Without `agents` nothing of this runs. A format `agents` does not decide (`agents_format`) goes
as it came. Where the policy has a `data.tollgate.tools.deny` rule, it is asked about each tool
call (`tool_policy`), in its worker process: its answers awaited before the calls are decided.
A `response.create` on the Responses API's WebSocket is read here as its HTTP body would be; its
response's events are decided by `ResponsesSocket`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.policy_input import input_facts
from tollgate.calls.routes import client_answer_format
from tollgate.formats.bodies.raw_headers import with_header
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.governance.agents.agents_formats import agents_format
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, ToolPolicy
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.realtime_calls import RealtimeCalls
from tollgate.governance.agents.response_index import ResponseIndex
from tollgate.governance.agents.tool_decision import redacted
from tollgate.governance.guardrails.workers import OFF_LOOP_BYTES, ScanWorkers
from tollgate.governance.policy.policy import TOOLS_DECISION, Decision
from tollgate.proxy.flows import refuse, write_body
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


class Agents:
    def __init__(self, shared: Shared, workers: ScanWorkers | None = None) -> None:
        self.shared = shared
        self._workers = workers or ScanWorkers()  # the guardrails' threads, shared
        # The injection signals of the `agents` settings in force, made once per configuration.
        self._signals: tuple[AgentsSettings, InjectionSignals] | None = None
        # What Tollgate saw of each Responses conversation, by its last answer's id, across reloads.
        self.responses = ResponseIndex()

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        settings = call.loaded.config.agents
        if settings is None or call.agents is not None:
            return None  # off; or read already (a failover attempt of a call read)
        body = call.request.client_body if call.request.client_body is not None else call.request.body
        if body is None:
            return None
        answers = agents_format(client_answer_format(call), call.target_model, body)
        if answers is None:
            return None
        why = answers.undecidable(body, settings)
        if why is not None:  # a call must never reach the agent undecided
            call.verdict.deny_reasons = (why,)
            refuse(flow, call, CONTENT_DENIED, f"Tollgate refused this call: {why} (`agents`).")
            return None
        facts = call.classification.facts
        # A stream without tools carries no call to decide: it goes as it came, unheld; but read
        # where its format's answers are continued by their id, for the next turn to be judged on it.
        decides = not facts.stream or bool(facts.has_tools) or answers.continued is not None
        if facts.stream and decides:
            # Its events are read as they come (`held_stream`): asked for no encoding.
            request = flow.request.data
            request.headers.fields = with_header(request.headers.fields, b"accept-encoding", b"identity")
        signals = self.signals_of(settings)
        caller = call.caller.client or ""
        # A turn continuing an answer whose calls were refused answers them with their refusals: the
        # provider kept those calls, and refuses a turn that leaves them unanswered.
        if call.request.client_body is None and answers.answer_refusals(body, self.responses, caller):
            write_body(flow.request, call)

        def read() -> AgentsCall:
            return answers.read(body, settings, signals, self.responses, caller)

        if len(flow.request.data.content or b"") < OFF_LOOP_BYTES:  # most turns: read at once
            call.agents = read()
            call.agents.decides = decides
            call.agents.policy = tool_policy(call)
            return None
        return self._read_off_loop(call, read, decides)

    def kept(self) -> tuple[int, int] | None:
        """The Responses answers kept and their characters, for the metrics; None without `agents`.
        Read from the metrics server's thread: two reads, no change."""
        loaded = self.shared.loaded
        if loaded is None or loaded.config.agents is None:
            return None
        return len(self.responses), self.responses.chars

    async def _read_off_loop(self, call: Call, read: Callable[[], AgentsCall], decides: bool) -> None:
        """A long conversation read in a worker thread, the event loop serving the other calls."""
        done = self._workers.off_loop(read)
        state = await done if isinstance(done, Awaitable) else done
        state.decides = decides
        state.policy = tool_policy(call)
        call.agents = state

    def realtime(self, call: Call) -> RealtimeCalls | None:
        """A Realtime session's function calls, to be decided as its events come (None without
        `agents`): the policy's tools rule asked on the session's facts."""
        settings = call.loaded.config.agents
        if settings is None:
            return None
        return RealtimeCalls(settings, self.signals_of(settings), tool_policy(call))

    def signals_of(self, settings: AgentsSettings) -> InjectionSignals:
        """The injection signals of the settings in force, made once per configuration."""
        if self._signals is None or self._signals[0] is not settings:
            self._signals = (settings, InjectionSignals(settings.links.allow if settings.links else ()))
        return self._signals[1]


def tool_policy(call: Call) -> ToolPolicy | None:
    """How the policy is asked about one of the call's tool calls (`data.tollgate.tools.deny` on
    the call's facts and the tool call's); None where it has no such rule: nothing is asked."""
    policy = call.loaded.policy
    if policy is None or not policy.decides(TOOLS_DECISION):
        return None
    call_facts = input_facts(call)

    def ask(tool_facts: dict[str, Any]) -> Sequence[str] | Awaitable[Sequence[str]]:
        decision = policy.decide(TOOLS_DECISION, (call_facts, tool_facts))
        arguments = tool_facts["tool"]["arguments"]
        if type(decision) is Decision:
            return _reasons(decision, arguments)
        return _reasons_once_decided(decision, arguments)  # type: ignore[arg-type]

    return ask


async def _reasons_once_decided(evaluation: Awaitable[Decision], arguments: Any) -> Sequence[str]:
    return _reasons(await evaluation, arguments)


def _reasons(decision: Decision, arguments: Any) -> Sequence[str]:
    if decision.error:  # OPA's words may quote the input: its argument values redacted
        logger.error(f"Tollgate: the policy's tools rule: {redacted([decision.error], arguments)[0]}")
    return decision.deny_reasons
