"""`agents` on a call: an OpenAI chat completion's request read once (where its text came from,
the taint index, the injection signals), for its answer's tool calls to be decided as it is read
whole (`StreamTap.answer_read_whole`). Without `agents` nothing of this runs. A streamed chat
answer's tool calls are not decided yet: a streamed chat call that declares tools is refused
rather than served undecided. Other formats' answers go as they came."""

from __future__ import annotations

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.routes import client_answer_format
from tollgate.formats import OPENAI_CHAT
from tollgate.formats.refusals import CONTENT_DENIED
from tollgate.governance.agents.chat_calls import read_chat_request
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.settings import AgentsSettings
from tollgate.proxy.flows import refuse
from tollgate.proxy.state import Shared

STREAMED_REFUSAL = (
    "Tollgate refused this call: with `agents`, the tool calls of a streamed chat answer cannot be"
    " decided yet; ask for it without `stream`."
)


class Agents:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # The injection signals of the `agents` settings in force, made once per configuration.
        self._signals: tuple[AgentsSettings, InjectionSignals] | None = None

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        settings = call.loaded.config.agents
        if settings is None or call.agents is not None:
            return  # off; or read already (a failover attempt of a call read)
        body = call.request.client_body if call.request.client_body is not None else call.request.body
        if body is None or client_answer_format(call) != OPENAI_CHAT:
            return
        facts = call.classification.facts
        streamed = bool(facts.stream)
        if streamed and facts.has_tools:
            call.verdict.deny_reasons = (STREAMED_REFUSAL.removeprefix("Tollgate refused this call: "),)
            refuse(flow, call, CONTENT_DENIED, STREAMED_REFUSAL)
            return
        call.agents = read_chat_request(body, settings, self._signals_of(settings))
        call.agents.decides = not streamed

    def _signals_of(self, settings: AgentsSettings) -> InjectionSignals:
        if self._signals is None or self._signals[0] is not settings:
            self._signals = (settings, InjectionSignals(settings.links.allow if settings.links else ()))
        return self._signals[1]
