"""`agents`' quarantine, acted on (`governance/agents/quarantine.py` holds its logic): started by an
`injection.*` finding in an LLM call's request (`call`, after `Agents` read it) or in an MCP
server's `tools/call` result (`mcp_results`, as the answer's relay reads it); then, while it holds,
an MCP session's or a personal caller's acting `tools/call` refused as JSON-RPC errors (`mcp`), and
a proxy login's new connections to hosts off `agents.egress_allow` refused 403 (`connection`).

Without `agents` each step is one attribute read; with it and no quarantine in force, one more. With
the ledger on Redis, the quarantines are written there too (`ledger/redis_quarantines.py`: the LLM
call or MCP result that began one goes on once it is written, never when it cannot be), and read
there only for a request with an acting `tools/call`, or a proxy login's new connection to a host
off the allowed ones, that this process holds in no quarantine: one round trip each."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.configuration.runtime import Loaded
from tollgate.formats.mcp.messages import TOOLS_CALL, RequestId, error_message
from tollgate.formats.refusals import LEDGER_UNAVAILABLE, POLICY_DENIED
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.mcp_results import McpResultSignals
from tollgate.governance.agents.quarantine import (
    SESSION,
    UNKNOWN,
    Held,
    caller_key,
    fleet_key,
    injected,
    login_key,
    refusal,
    session_key,
    shared_key,
    unknown_refusal,
)
from tollgate.governance.agents.taint import matches
from tollgate.governance.egress.egress import Globs
from tollgate.governance.mcp.mcp_exchange import REFUSED_CODE, McpExchange
from tollgate.ledger.store import SharedQuarantines
from tollgate.proxy.flows import answer_mcp, refuse
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)


# How long an MCP answer holding an injected result waits for its quarantine's write at most: the
# store's own time limit (2 × its command timeout) ends it sooner.
WRITE_WAIT_S = 10.0
# What the agent reads in place of results withheld because their quarantine could not be written.
UNWRITTEN = (
    "Tollgate withheld this answer: a result in it began a quarantine that could not be written to"
    " Tollgate's ledger (unavailable); retry later."
)


class Written:
    """A quarantine's write to the fleet's Redis, which the MCP answer carrying its result waits
    for (`formats/mcp/withheld.py`'s `Pending`): made wherever the result is read, settled on the
    event loop."""

    def __init__(self) -> None:
        self.failure: tuple[int, str] | None = None
        self._settled = False
        self._done = asyncio.Event()  # bound to the event loop where it is first awaited or set

    def settled(self) -> bool:
        return self._settled

    async def wait(self) -> None:
        """Done once settled; one that never is within WRITE_WAIT_S (and a margin) counts as failed."""
        try:
            async with asyncio.timeout(WRITE_WAIT_S + 1):
                await self._done.wait()
        except TimeoutError:
            self.settle(False)

    def settle(self, written: bool) -> None:
        """On the event loop: written, or not (its answer's requests then get `UNWRITTEN`)."""
        if not written:
            self.failure = (REFUSED_CODE, UNWRITTEN)
        self._settled = True
        self._done.set()


class Fleet(NamedTuple):
    """The quarantines every process sharing the ledger's Redis holds, and the key their names
    there are keyed with (from `ledger.secret`: never logged, never recorded)."""

    store: SharedQuarantines
    key: bytes

    def names(self, keys: Sequence[str]) -> list[str]:
        return [shared_key(k, self.key) for k in keys]


class Quarantines:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Made once per `agents` settings in force: the injection signals, `egress_allow`'s globs.
        self._signals: tuple[AgentsSettings, InjectionSignals] | None = None
        self._allow: tuple[AgentsSettings, Globs | None] | None = None
        self._key: tuple[str, bytes] | None = None  # `ledger.secret`, and the key derived from it
        self._acknowledging: set[asyncio.Task[None]] = set()  # the writes MCP answers wait for

    # --- started ---------------------------------------------------------------------------

    def call(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        """A call step after `Agents`: outside content holding an injection quarantines the
        conversation's caller, when it is one person (the request goes on: its answer's calls are
        `Agents`' to decide). With the ledger on Redis, the call waits until it is written there
        (one round trip, on such a call alone), so that no other process serves the answer's
        acting calls unaware of it; one whose quarantine cannot be written is refused (503
        `ledger_unavailable`), as an MCP result is withheld."""
        state = call.agents
        if state is None:
            return None
        kinds = injected(state.findings)
        key = caller_key(call.caller.client, call.caller.auth) if kinds else None
        if key is None or not self._start(key, state.settings, kinds):
            return None
        write = self._share(key, state.settings.quarantine_s, kinds)
        return None if write is None else _written_or_refused(flow, call, write)

    def mcp_results(self, exchange: McpExchange) -> Callable[[Any], Written | None] | None:
        """What reads an MCP answer's `tools/call` results as the relay passes them (None: not
        read: no `agents`, a trusted server, no tools/call): each result's findings on the exchange
        (`tool_findings`), an injection quarantining the session and a personal caller. With the
        ledger on Redis, the message holding it is held until the quarantine is written there
        (`Written`), so that no other process serves the session's acting calls unaware of it;
        one that cannot be written is not delivered (fail closed)."""
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
        # Written to Redis from the event loop: a large answer is read in a worker thread.
        loop = asyncio.get_running_loop() if self._fleet() is not None else None

        def read(value: Any) -> Written | None:
            kinds = injected(reading(value))
            begun = [key for key in (keys if kinds else ()) if self._start(key, settings, kinds)]
            if not begun or loop is None:
                return None
            written = Written()
            loop.call_soon_threadsafe(self._write_for, exchange, written, begun, settings.quarantine_s, kinds)
            return written

        return read

    def _write_for(
        self, exchange: McpExchange, written: Written, keys: list[str], seconds: float, kinds: tuple[str, ...]
    ) -> None:
        """On the event loop: the quarantines of `keys` written to Redis, `written` settled once
        they are (or once one failed)."""
        fleet = self._fleet()
        if fleet is None:  # the ledger no longer on Redis (a reload): this process holds it alone
            written.settle(True)
            return
        until = time.time() + seconds
        try:
            writes = [fleet.store.start(name, until, kinds) for name in fleet.names(keys)]
        except Exception:  # a write not even begun is one not written
            logger.exception("Tollgate: an MCP result's quarantine could not be sent to the ledger")
            writes = [_unwritten()]
        task = asyncio.ensure_future(self._acknowledged(exchange, written, writes))
        self._acknowledging.add(task)
        task.add_done_callback(self._acknowledging.discard)

    @staticmethod
    async def _acknowledged(exchange: McpExchange, written: Written, writes: list[Awaitable[bool]]) -> None:
        try:
            async with asyncio.timeout(WRITE_WAIT_S):
                done = [await write for write in writes]
        except Exception:  # not known to be written: as failed
            done = [False]
        ok = all(d is True for d in done)
        if not ok:
            # As a quarantine that cannot be read: the result is not let through unknown to the
            # others, whatever `ledger.on_store_error` says (it lets calls go uncounted only).
            logger.error(
                "Tollgate: an MCP result's quarantine could not be written to the ledger; its answer is withheld"
            )
            exchange.answer.error = "ledger unavailable: a result's quarantine could not be written"
            exchange.answer.refused = LEDGER_UNAVAILABLE
        written.settle(ok)

    def _start(self, key: str, settings: AgentsSettings, kinds: tuple[str, ...]) -> bool:
        """In this process's memory (at once, from any thread): whether a quarantine began."""
        held = self.shared.quarantine.start(key, settings.quarantine_s, kinds)
        if held is not None:
            whom = "an MCP session" if held.key_kind == SESSION else "a person's conversation"
            logger.info(f"Tollgate: {whom} quarantined for {settings.quarantine_s} s after {', '.join(kinds)}")
        return held is not None

    def _share(self, key: str, seconds: float, kinds: tuple[str, ...]) -> Awaitable[bool] | None:
        """On the event loop: with the ledger on Redis, the quarantine written there for every
        process (done once written, or once the first attempt failed: it is tried again)."""
        fleet = self._fleet()
        return None if fleet is None else fleet.store.start(fleet.names([key])[0], time.time() + seconds, kinds)

    def _fleet(self) -> Fleet | None:
        """The quarantines every process sharing the ledger's store holds (Redis), or None; None
        too without `ledger.secret` (the configuration requires it where a quarantine can begin)."""
        store, loaded = self.shared.ledger, self.shared.loaded
        shared = None if store is None else store.quarantines
        secret = None if loaded is None else loaded.config.ledger.secret
        if shared is None or secret is None:
            return None
        if self._key is None or self._key[0] != secret:
            self._key = (secret, fleet_key(secret))
        return Fleet(shared, self._key[1])

    def _signals_of(self, settings: AgentsSettings) -> InjectionSignals:
        if self._signals is None or self._signals[0] is not settings:
            self._signals = (settings, InjectionSignals(settings.links.allow if settings.links else ()))
        return self._signals[1]

    # --- acted on ----------------------------------------------------------------------------

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """A call step of an MCP request, once its session is known to be its caller's: each acting
        `tools/call` of a session or a personal caller in quarantine refused (a batch whole, as the
        policy refuses one), with a text the agent reads; recorded only under `after_injection:
        record`. With the ledger on Redis, a request with an acting call not held in this process's
        memory is looked up there (one round trip); one that cannot be is refused."""
        quarantine = self.shared.quarantine
        loaded = exchange.loaded
        settings = loaded.config.agents if isinstance(loaded, Loaded) else None
        fleet = self._fleet()
        if settings is None or (not quarantine and fleet is None):
            return None
        acting = [
            i for i, r in enumerate(exchange.requests)
            if r.method == TOOLS_CALL and r.tool is not None and matches(r.tool, settings.acting_tools)
        ]  # fmt: skip
        if not acting:
            return None
        keys = (
            session_key(exchange.server.name, exchange.session),
            caller_key(exchange.caller.client, exchange.caller.auth),
        )
        held = quarantine.holding(keys[0]) or quarantine.holding(keys[1])
        if held is None and fleet is not None:
            return self._looked_up(flow, exchange, settings, acting, keys, fleet)
        if held is not None:
            self._held(flow, exchange, settings, acting, held)
        return None

    async def _looked_up(
        self, flow: http.HTTPFlow, exchange: McpExchange, settings: AgentsSettings, acting: list[int],
        keys: tuple[str | None, str | None], fleet: Fleet,
    ) -> None:  # fmt: skip
        present = [k for k in keys if k is not None]
        try:
            found = await fleet.store.holding(fleet.names(present))
        except Exception as e:  # what cannot be read is unknown: refused, never let through
            self._unknown(flow, exchange, settings, acting, str(e))
            return
        quarantine = self.shared.quarantine
        now = time.time()
        for key, entry in zip(present, found, strict=True):
            if entry is not None:  # kept here too: the next call asks Redis nothing
                quarantine.start(key, entry[0] - now, entry[1])
        held = quarantine.holding(keys[0]) or quarantine.holding(keys[1])
        if held is not None:
            self._held(flow, exchange, settings, acting, held)

    def _held(
        self, flow: http.HTTPFlow, exchange: McpExchange, settings: AgentsSettings, acting: list[int], held: Held
    ) -> None:
        told: dict[int, str] = {}
        for i in acting:
            tool = exchange.requests[i].tool or ""
            text, reason = refusal(tool, held, self.shared.quarantine.remaining(held))
            exchange.quarantined[i] = reason
            if settings.after_injection == "refuse":
                exchange.denied[i] = (reason,)
                told[i] = text
        if told:
            self._refuse(flow, exchange, told, POLICY_DENIED)

    def _unknown(
        self, flow: http.HTTPFlow, exchange: McpExchange, settings: AgentsSettings, acting: list[int], error: str
    ) -> None:
        """Redis cannot be read: whether the session is quarantined cannot be told, and its acting
        calls are refused (under `record`, they go on, the error recorded), whatever
        `ledger.on_store_error` says: it lets calls go uncounted, never undecided."""
        logger.error(f"Tollgate: an acting MCP call's quarantine cannot be read: {error}")
        exchange.answer.error = f"ledger unavailable: {error}"
        told: dict[int, str] = {}
        for i in acting:
            exchange.quarantined[i] = UNKNOWN
            if settings.after_injection == "refuse":
                exchange.denied[i] = (UNKNOWN,)
                told[i] = unknown_refusal(exchange.requests[i].tool or "")
        if told:
            self._refuse(flow, exchange, told, LEDGER_UNAVAILABLE)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, exchange: McpExchange, told: dict[int, str], why: str) -> None:
        exchange.deny_reasons = tuple(dict.fromkeys(r for i in sorted(exchange.denied) for r in exchange.denied[i]))
        errors = []
        for i, request in enumerate(exchange.requests):
            if request.id is None:
                continue
            message = told.get(i, "Tollgate refused this batch: another request in it was refused")
            errors.append(error_message(request.id, REFUSED_CODE, message))
        answer_mcp(flow, exchange, 200, why, errors)

    def connection(
        self, client: str | None, auth: str | None, host: str, port: int
    ) -> str | Awaitable[str | None] | None:
        """Why a new connection of a proxy login in quarantine is refused (None: it is not): its host
        is not in `agents.egress_allow` (by default the providers' and the MCP servers' hosts).
        With the ledger on Redis, a connection to such a host not held in this process's memory is
        looked up there (awaited); one that cannot be is refused."""
        quarantine = self.shared.quarantine
        loaded = self.shared.loaded
        if loaded is None or client is None or auth != "proxyauth" or (not quarantine and self._fleet() is None):
            return None
        settings = loaded.config.agents
        if settings is None or settings.after_injection != "refuse":
            return None  # under `record`, nothing is refused
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
        held = quarantine.holding(login_key(client))
        if held is not None:
            return self._off_allowed(host, where, held)
        fleet = self._fleet()
        return None if fleet is None else self._connection_looked_up(fleet, login_key(client), host, where)

    async def _connection_looked_up(self, fleet: Fleet, key: str, host: str, where: str) -> str | None:
        try:
            (entry,) = await fleet.store.holding(fleet.names([key]))
        except Exception as e:  # what cannot be read is unknown: refused, never let through
            logger.error(f"Tollgate: a proxy login's quarantine cannot be read: {e}")
            return f"{host} is not in {where}, and Tollgate cannot tell whether this client is quarantined ({UNKNOWN})"
        if entry is None:
            return None
        held = self.shared.quarantine.start(key, entry[0] - time.time(), entry[1])
        return None if held is None else self._off_allowed(host, where, held)

    def _off_allowed(self, host: str, where: str, held: Held) -> str:
        kinds = ", ".join(held.kinds)
        return (
            f"{host} is not in {where}, and this client is quarantined for"
            f" {max(1, round(self.shared.quarantine.remaining(held)))} s more after outside content holding {kinds}"
        )

    def _allow_of(self, settings: AgentsSettings) -> Globs | None:
        if self._allow is None or self._allow[0] is not settings:
            globs = None if settings.egress_allow is None else Globs(settings.egress_allow)
            self._allow = (settings, globs)
        return self._allow[1]


async def _unwritten() -> bool:
    return False


async def _written_or_refused(flow: http.HTTPFlow, call: Call, write: Awaitable[bool]) -> None:
    """The call goes once its quarantine is written; is refused when it cannot be, whatever
    `ledger.on_store_error` says (it lets calls go uncounted, never unknown to the other processes)."""
    try:
        async with asyncio.timeout(WRITE_WAIT_S):
            written = await write
    except Exception:  # not known to be written: as failed
        written = False
    if written is True:
        return
    logger.error("Tollgate: a call's quarantine could not be written to the ledger; the call is refused")
    call.answer.error = "ledger unavailable"
    message = "Tollgate cannot write this conversation's quarantine to its ledger; retry later."
    refuse(flow, call, LEDGER_UNAVAILABLE, message)
