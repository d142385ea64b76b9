"""`agents` on a call: an OpenAI chat completion's request read once (where its text came from,
the taint index, the injection signals), for its answer's tool calls to be decided as it is read
whole (`StreamTap.answer_read_whole`) or, streamed, as its events come (`HeldChatCalls`). Without
`agents` nothing of this runs. Other formats' answers go as they came."""

from __future__ import annotations

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.routes import client_answer_format
from tollgate.formats import OPENAI_CHAT
from tollgate.formats.bodies.raw_headers import with_header
from tollgate.governance.agents.chat_calls import read_chat_request
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.settings import AgentsSettings
from tollgate.proxy.state import Shared


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
        call.agents = read_chat_request(body, settings, self._signals_of(settings))
        # A stream without tools carries no call to decide: it goes as it came, unheld.
        call.agents.decides = not facts.stream or bool(facts.has_tools)
        if facts.stream and facts.has_tools:
            # Its events are read as they come (`HeldChatCalls`): asked for no encoding.
            request = flow.request.data
            request.headers.fields = with_header(request.headers.fields, b"accept-encoding", b"identity")

    def _signals_of(self, settings: AgentsSettings) -> InjectionSignals:
        if self._signals is None or self._signals[0] is not settings:
            self._signals = (settings, InjectionSignals(settings.links.allow if settings.links else ()))
        return self._signals[1]
