"""`agents`' quarantine, acted on (`governance/agents/quarantine.py` holds its logic): started by an
`injection.*` finding in an LLM call's request (`call`, after `Agents` read it) or in an MCP
server's `tools/call` result (`mcp_results`, as the answer's relay reads it); then, while it holds,
an MCP session's or a personal caller's acting `tools/call` refused as JSON-RPC errors (`mcp`), and
a proxy login's new connections to hosts off `agents.egress_allow` refused 403 (`connection`).

Without `agents` each step is one attribute read; with it and no quarantine in force, one more."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.configuration.runtime import Loaded
from tollgate.formats.mcp.messages import TOOLS_CALL, RequestId, error_message
from tollgate.formats.refusals import POLICY_DENIED
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.mcp_results import McpResultSignals
from tollgate.governance.agents.quarantine import SESSION, caller_key, injected, login_key, refusal, session_key
from tollgate.governance.agents.taint import matches
from tollgate.governance.egress.egress import Globs
from tollgate.governance.mcp.mcp_exchange import REFUSED_CODE, McpExchange
from tollgate.proxy.flows import answer_mcp
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


class Quarantines:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Made once per `agents` settings in force: the injection signals, `egress_allow`'s globs.
        self._signals: tuple[AgentsSettings, InjectionSignals] | None = None
        self._allow: tuple[AgentsSettings, Globs | None] | None = None

    # --- started ---------------------------------------------------------------------------

    def call(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call step after `Agents`: outside content holding an injection quarantines the
        conversation's caller, when it is one person (the request goes on: its answer's calls are
        `Agents`' to decide)."""
        state = call.agents
        if state is None:
            return
        kinds = injected(state.findings)
        key = caller_key(call.caller.client, call.caller.auth) if kinds else None
        if key is not None:
            self._start(key, state.settings, kinds)

    def mcp_results(self, exchange: McpExchange) -> Callable[[Any], object] | None:
        """What reads an MCP answer's `tools/call` results as the relay passes them (None: not
        read: no `agents`, a trusted server, no tools/call): each result's findings on the exchange
        (`tool_findings`), an injection quarantining the session and a personal caller."""
        loaded = exchange.loaded
        settings = loaded.config.agents if isinstance(loaded, Loaded) else None
        if settings is None or exchange.server.trusted:
            return None
        calls: dict[RequestId, str] = {
            r.id: r.tool or "" for r in exchange.requests if r.method == TOOLS_CALL and r.id is not None
        }
        if not calls:
            return None
        reading = McpResultSignals(self._signals_of(settings), calls)
        exchange.tool_findings = reading.found
        keys = [k for k in (session_key(exchange.server.name, exchange.session),
                            caller_key(exchange.caller.client, exchange.caller.auth)) if k is not None]  # fmt: skip

        def read(value: Any) -> None:
            kinds = injected(reading(value))
            for key in keys if kinds else ():
                self._start(key, settings, kinds)

        return read

    def _start(self, key: str, settings: AgentsSettings, kinds: tuple[str, ...]) -> None:
        held = self.shared.quarantine.start(key, settings.quarantine_s, kinds)
        if held is not None:
            whom = "an MCP session" if held.key_kind == SESSION else "a person's conversation"
            logger.info(f"Tollgate: {whom} quarantined for {settings.quarantine_s} s after {', '.join(kinds)}")

    def _signals_of(self, settings: AgentsSettings) -> InjectionSignals:
        if self._signals is None or self._signals[0] is not settings:
            self._signals = (settings, InjectionSignals(settings.links.allow if settings.links else ()))
        return self._signals[1]

    # --- acted on ----------------------------------------------------------------------------

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """A call step of an MCP request, once its session is known to be its caller's: each acting
        `tools/call` of a session or a personal caller in quarantine refused (a batch whole, as the
        policy refuses one), with a text the agent reads; recorded only under `after_injection:
        record`."""
        quarantine = self.shared.quarantine
        loaded = exchange.loaded
        settings = loaded.config.agents if isinstance(loaded, Loaded) else None
        if settings is None or not quarantine:
            return
        caller = exchange.caller
        keys = (session_key(exchange.server.name, exchange.session), caller_key(caller.client, caller.auth))
        told: dict[int, str] = {}
        for i, request in enumerate(exchange.requests):
            if request.method != TOOLS_CALL or request.tool is None or not matches(request.tool, settings.acting_tools):
                continue
            held = quarantine.holding(keys[0]) or quarantine.holding(keys[1])
            if held is None:
                continue
            text, reason = refusal(request.tool, held, quarantine.remaining(held))
            exchange.quarantined[i] = reason
            if settings.after_injection == "refuse":
                exchange.denied[i] = (reason,)
                told[i] = text
        if told:
            self._refuse(flow, exchange, told)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, exchange: McpExchange, told: dict[int, str]) -> None:
        exchange.deny_reasons = tuple(dict.fromkeys(r for i in sorted(exchange.denied) for r in exchange.denied[i]))
        errors = []
        for i, request in enumerate(exchange.requests):
            if request.id is None:
                continue
            message = told.get(i, "Tollgate refused this batch: another request in it was refused")
            errors.append(error_message(request.id, REFUSED_CODE, message))
        answer_mcp(flow, exchange, 200, POLICY_DENIED, errors)

    def connection(self, client: str | None, auth: str | None, host: str, port: int) -> str | None:
        """Why a new connection of a proxy login in quarantine is refused (None: it is not): its host
        is not in `agents.egress_allow` (by default the providers' and the MCP servers' hosts)."""
        quarantine = self.shared.quarantine
        loaded = self.shared.loaded
        if not quarantine or loaded is None or client is None or auth != "proxyauth":
            return None
        settings = loaded.config.agents
        if settings is None or settings.after_injection != "refuse":
            return None  # under `record`, nothing is refused
        held = quarantine.holding(login_key(client))
        if held is None:
            return None
        allow = self._allow_of(settings)
        if allow is None:
            egress = loaded.egress
            allowed = egress.providers_host(host) or (host, port) in egress.upstreams
            where = "the providers' and MCP servers' hosts"
        else:
            allowed = allow.match(host) is not None
            where = "agents.egress_allow"
        if allowed:
            return None
        kinds = ", ".join(held.kinds)
        return (
            f"{host} is not in {where}, and this client is quarantined for"
            f" {max(1, round(quarantine.remaining(held)))} s more after outside content holding {kinds}"
        )

    def _allow_of(self, settings: AgentsSettings) -> Globs | None:
        if self._allow is None or self._allow[0] is not settings:
            globs = None if settings.egress_allow is None else Globs(settings.egress_allow)
            self._allow = (settings, globs)
        return self._allow[1]
