"""OpenAI's Realtime API (`wss://api.openai.com/v1/realtime`): each client message a model will read
is read by the guardrails, and each response on a session is a call for the limits. The session
itself is one call, identified, decided and audited at its upgrade, its record adding up its
responses' usage (`WebSocket`); under a limit, each response reserves and settles as a call does.

A client's `response.create` reserves before it goes upstream: its answer's bound (the response's
`max_output_tokens`, else the model's maximum output) and its input, the session's conversation,
which the provider holds and bills whole each time: the model's context window
(`ledger.reserve_input_tokens` where unknown). Refused, it never goes upstream: the client gets an
`error` event in OpenAI's shape, audited `deny`, and the session goes on. While a reservation is
awaited the message is held back (dropped, then sent by Tollgate once allowed), the client's later
messages behind it; the server's events keep flowing.

A response the server begins on its own (voice activity detection with `create_response`) is
reserved when it begins (`response.created`); when no room is left it is cancelled at once
(`response.cancel` sent upstream, an `error` event to the client, audited `deny`) and what it used
until then is charged. Each response settles to the usage its `response.done` reports, priced, and
that event reaches the client once the settlement is in the store.

Guardrails read each `session.update`, `conversation.item.create` and `response.create` as the
body of a call of its own (`realtime_message`): refused, the client gets an `error` event, audited
`deny`, and the session goes on; else it goes on, redacted where a rule says so, and what was found
adds up on the session's record. Audio is not read. A large event read in a worker thread is held
back meanwhile, as a response.create being reserved is, the client's later messages behind it.

With `agents`, each function call the model makes is decided before the client gets it
(`RealtimeCalls`): the client's events are read for the conversation, and the server's events from
a call's first on are held until it is complete, then go in order, a refused call's as its
refusal's message; the session's record names each call's decision (`tool_calls`). A client event
giving the model an MCP server one of whose tools may act is refused: the server calls them itself,
and their approval requests are not decided here."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mitmproxy import http
from mitmproxy.websocket import WebSocketMessage

from tollgate.calls.call import Call, Caller, Route
from tollgate.formats import OPENAI_API
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import encode_json, parse_json, read_request_json
from tollgate.formats.openai_realtime import REALTIME
from tollgate.formats.openai_realtime.responses import (
    ServerEvent,
    cancel,
    realtime_error,
    response_create,
    server_event,
)
from tollgate.formats.refusals import BAD_REQUEST, CONTENT_DENIED
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.governance.agents.call_state import asked
from tollgate.governance.agents.provider_mcp import responses_unapproved, undecided
from tollgate.governance.agents.realtime_calls import RealtimeCalls
from tollgate.proxy.flows import call_of, refuse
from tollgate.proxy.sockets import SocketRunner, Waiting, inject, read_event
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

if TYPE_CHECKING:
    from tollgate.proxy.runner import CallSteps

logger = logging.getLogger(__name__)

# The client events that may give the model tools, as their text names them.
_GIVES_TOOLS = (b'"session.update"', b'"response.create"')


def may_give_mcp(content: bytes) -> bool:
    """Whether a client event may give the model an MCP server or a stored prompt (which may hold
    any MCP tool): a quick look before it is parsed. One with a `\\u` escape is parsed, as a key
    may be written with one."""
    if b"\\u" in content:
        return True
    return (b"mcp" in content or b'"prompt"' in content) and any(k in content for k in _GIVES_TOOLS)


_UNDECIDED = {"error": {"type": "server_error", "message": "Tollgate could not decide a function call (`agents`)."}}
# The client events whose text a model reads: what the guardrails read.
GUARDED = frozenset(("session.update", "conversation.item.create", "response.create"))


@dataclass(slots=True)
class Response:
    """A response's call, the client event that asked for it (None: the server began it), and
    where it stands: its reservation still awaited, or its end come meanwhile."""

    call: Call
    event_id: str | None = None
    deciding: bool = False
    ended: bool = False


@dataclass(slots=True)
class Guarding:
    """A client event the guardrails read: its call and the flow made for it, the event as it came
    and its `event_id`; for a large one read in a worker thread, what to await before it goes on
    or is refused."""

    call: Call
    exchange: http.HTTPFlow
    content: bytes
    event_id: str | None
    pending: Awaitable[None] | None = None


@dataclass(slots=True)
class RealtimeSession:
    """One Realtime WebSocket read by guardrails or under limits: its upgrade's call, and its
    responses as they go (`limited`: a limit counts them)."""

    call: Call
    limited: bool
    asked: deque[Response] = field(default_factory=deque)  # sent upstream, not begun yet: in order
    answering: dict[str, Response] = field(default_factory=dict)  # by response id
    waiting: deque[Waiting] = field(default_factory=deque)
    busy: bool = False  # a response.create is being reserved, or a large event read
    closed: bool = False
    agents: RealtimeCalls | None = None  # with `agents`: its function calls, decided
    asking: bool = False  # the policy's answers on its held calls awaited

    def open_responses(self) -> list[Response]:
        return [*self.asked, *self.answering.values()]


class RealtimeSocket(SocketRunner[RealtimeSession]):
    failed = "Tollgate: reserving a Realtime response failed; its message was not sent"

    def __init__(
        self,
        shared: Shared,
        guarded: CallSteps,
        steps: CallSteps,
        record: Callable[[Call], dict[str, Any]],
        settle: Callable[[Call, dict[str, Any]], None],
        charge: Callable[[Call], None],
        unexpired: Callable[[http.HTTPFlow, Call], None],
        agents: Callable[[Call], RealtimeCalls | None] | None = None,
    ) -> None:
        super().__init__(shared)
        self._agents = agents  # a session's function calls, to be decided (None: without `agents`)
        # Identify's: a call refused once its session's virtual key is removed or has expired.
        self._unexpired = unexpired
        self._guarded = guarded  # what a message a model reads goes through: the guardrails
        self._steps = steps  # what a response goes through: the audit gate, its key unexpired, the limits
        self._record = record  # the audit's: a refused response's record
        self._settle = settle  # the ledger's: a response's reservation settled (its usage is its session's)
        self._charge = charge  # the ledger's: a response refused once begun, charged what it uses

    def _session(self, flow: http.HTTPFlow) -> RealtimeSession | None:
        session = self._sessions.get(flow)
        if session is not None:
            return session if not session.closed else None
        call = call_of(flow)
        if call is None or call.classification.endpoint != REALTIME or call.classification.session:
            return None
        loaded = self.shared.loaded or call.loaded
        if loaded is None:
            return None
        agents = self._agents(call) if self._agents is not None else None
        if not loaded.limits and loaded.guardrails is None and call.caller.key_sha256 is None and agents is None:
            return None  # nothing to read, count or refuse: every message goes as it came
        session = self._sessions[flow] = RealtimeSession(call, limited=bool(loaded.limits), agents=agents)
        return session

    def _server_sent(
        self, flow: http.HTTPFlow, session: RealtimeSession, message: WebSocketMessage
    ) -> list[bytes] | None:
        """With `agents`, a server event goes as `RealtimeCalls` lets it: held, or rewritten."""
        calls = session.agents
        if calls is None:
            return None
        try:
            out = calls.server(message.content)
        except Exception:  # never sent undecided
            logger.exception("Tollgate: deciding a Realtime function call failed; its events were not sent")
            calls.end()
            out = [encode_json(realtime_error(_UNDECIDED, {}, None))]
        if calls.asking is not None and not session.asking:  # the policy's answers awaited first
            session.asking = True
            self._spawn(_once_asked(flow, session, calls))
        if calls.state is not None:
            session.call.agents = calls.state
        return None if out == [message.content] else out

    # ---- the client's response.create

    def _take(
        self,
        flow: http.HTTPFlow,
        session: RealtimeSession,
        content: bytes,
        is_text: bool,
        message: WebSocketMessage | None,
    ) -> None:
        """A client message's turn: read by the guardrails (a large one held back while a worker
        thread reads it), then a response.create under limits is reserved (at once, or held back
        while the store is awaited); anything else goes on. Without limits, no message goes once
        the session's virtual key is removed or has expired. With `agents`, read first for what
        the model reads (a tool's output is outside content)."""
        if is_text and session.agents is not None:
            if self._mcp_refused(flow, session, content, message):
                return
            session.agents.client(content)
        if not session.limited and self._key_refused(flow, session, content, is_text, message):
            return
        if not is_text:  # audio: nothing a guardrail reads, no response asked for
            self._send(flow, content, message)
            return
        guarded = self._guard(flow, session, content, message)
        if isinstance(guarded, Guarding):
            assert guarded.pending is not None
            self._hold(
                flow,
                session,
                message,  # sent by Tollgate once read, in its turn
                guarded.pending,
                lambda: self._reserve_guarded(flow, session, guarded),
                lambda: None,
                "Tollgate: reading a Realtime event failed; it was not sent",
            )
            return
        if guarded is None:
            return  # refused
        content = guarded
        self._reserve(flow, session, content, message)

    def _reserve_guarded(self, flow: http.HTTPFlow, session: RealtimeSession, guarding: Guarding) -> None:
        content = self._guarded_content(flow, session, guarding, None)
        if content is not None:
            self._reserve(flow, session, content, None)

    def _reserve(
        self, flow: http.HTTPFlow, session: RealtimeSession, content: bytes, message: WebSocketMessage | None
    ) -> None:
        """A text message read: a response.create under limits reserved; anything else goes on."""
        try:
            create = response_create(content) if session.limited else None
        except Unreadable as e:
            self._unreadable(flow, session, content, message, e)
            return
        if create is None:
            self._send(flow, content, message)
            return
        call, exchange = self._response_call(flow, session, create.facts, content)
        response = Response(call, create.event_id)
        self._run(
            flow,
            session,
            message,  # sent by Tollgate once reserved, in its turn
            self._steps.run(exchange, call),
            lambda message: self._conclude(flow, session, response, exchange, content, message),
            lambda: self._release(response.call),
            self.failed,
        )

    def _conclude(
        self,
        flow: http.HTTPFlow,
        session: RealtimeSession,
        response: Response,
        exchange: http.HTTPFlow,
        content: bytes,
        message: WebSocketMessage | None,
    ) -> None:
        """The response.create reserved: refused with an error event (audited), or sent upstream."""
        call = response.call
        if exchange.response is not None:
            self._refused(flow, call, exchange, response.event_id, message)
            return
        self._send(flow, content, message)
        if call.ledger.reserved is not None:  # a limit counts it: followed until it ends
            call.answer.request_sent = True
            session.asked.append(response)

    def _key_refused(
        self,
        flow: http.HTTPFlow,
        session: RealtimeSession,
        content: bytes,
        is_text: bool,
        message: WebSocketMessage | None,
    ) -> bool:
        """Whether the session's virtual key is no longer in force (removed by a reload, or expired):
        then the message is refused with an error event, audited. Under limits each response's
        steps ask this instead."""
        who = session.call.caller
        if who.key_sha256 is None:
            return False
        loaded = self.shared.loaded or session.call.loaded
        if loaded.directory.key_refusal(who.key_sha256, who.client, time.time()) is None:
            return False
        call, exchange = self._response_call(flow, session, RequestFacts(stream=True), content)
        self._unexpired(exchange, call)
        event = parse_json(content) if is_text else None
        event_id = event.get("event_id") if isinstance(event, dict) else None
        self._refused(flow, call, exchange, event_id if isinstance(event_id, str) else None, message)
        return True

    def _mcp_refused(
        self, flow: http.HTTPFlow, session: RealtimeSession, content: bytes, message: WebSocketMessage | None
    ) -> bool:
        """With `agents`, whether a client event gives the model an MCP server whose tools the
        provider calls, one of which may act: its calls (and their approval requests) are not decided
        on a Realtime session. Then it is refused with an error event, audited, and never goes."""
        if not may_give_mcp(content):
            return False
        try:
            event = read_request_json(content) or {}
        except Unreadable as e:
            self._unreadable(flow, session, content, message, e)
            return True
        kind = event.get("type")
        given = event.get("session") if kind == "session.update" else event.get("response")
        settings = (self.shared.loaded or session.call.loaded).config.agents
        if kind not in ("session.update", "response.create") or not isinstance(given, dict) or settings is None:
            return False
        why = undecided(responses_unapproved(given, approvals_decided=False), settings)
        if why is None:
            return False
        call, exchange = self._response_call(flow, session, RequestFacts(stream=True), content)
        call.verdict.deny_reasons = (why,)
        refuse(exchange, call, CONTENT_DENIED, f"Tollgate refused this event: {why} (`agents`).")
        event_id = event.get("event_id")
        self._refused(flow, call, exchange, event_id if isinstance(event_id, str) else None, message)
        return True

    def _unreadable(
        self,
        flow: http.HTTPFlow,
        session: RealtimeSession,
        content: bytes,
        message: WebSocketMessage | None,
        e: Unreadable,
    ) -> None:
        """A client message Tollgate must read and cannot, exactly: an error event, audited, and
        the message never goes upstream."""
        call, exchange = self._response_call(flow, session, RequestFacts(stream=True), content)
        call.answer.error = f"bad request: {e}"
        refuse(exchange, call, BAD_REQUEST, f"Tollgate cannot read this message exactly and did not forward it: {e}.")
        self._refused(flow, call, exchange, None, message)

    def _refused(
        self,
        flow: http.HTTPFlow,
        call: Call,
        exchange: http.HTTPFlow,
        event_id: str | None,
        message: WebSocketMessage | None,
    ) -> None:
        self._refusal_event(
            flow, call, exchange, message, lambda status, body, headers: realtime_error(body, headers, event_id)
        )
        self._record(call)

    def _guard(
        self, flow: http.HTTPFlow, session: RealtimeSession, content: bytes, message: WebSocketMessage | None
    ) -> bytes | Guarding | None:
        """A client event a model reads, through the guardrails as a call's body: None when refused
        (an error event, audited), else what goes on (redacted where a rule says so); or, for a large
        event read in a worker thread, what to await first (`Guarding`)."""
        loaded = self.shared.loaded or session.call.loaded
        if loaded is None or loaded.guardrails is None or not loaded.guardrails.reads_requests:
            return content
        try:
            event = read_request_json(content)
        except Unreadable as e:  # what the guardrails cannot read does not go
            self._unreadable(flow, session, content, message, e)
            return None
        kind = event.get("type") if event is not None else None
        if kind not in GUARDED:
            return content
        call, exchange = self._response_call(flow, session, RequestFacts(stream=True), content)
        call.request.body = event
        event_id = event.get("event_id") if event is not None else None
        guarding = Guarding(call, exchange, content, event_id if isinstance(event_id, str) else None)
        pending = self._guarded.run(exchange, call)
        if pending is not None:
            guarding.pending = pending
            return guarding
        return self._guarded_content(flow, session, guarding, message)

    def _guarded_content(
        self, flow: http.HTTPFlow, session: RealtimeSession, guarded: Guarding, message: WebSocketMessage | None
    ) -> bytes | None:
        """A client event read by the guardrails: None when refused (an error event, audited), else
        what goes on."""
        call, exchange = guarded.call, guarded.exchange
        if exchange.response is not None:
            self._refused(flow, call, exchange, guarded.event_id, message)
            return None
        _add_findings(session.call, call)
        return exchange.request.content if call.request.redacted else guarded.content

    # ---- the server's events

    def _server_event(self, flow: http.HTTPFlow, session: RealtimeSession, content: bytes) -> Awaitable[None] | None:
        """Under limits, what a server event tells of the responses; else it goes as it came."""
        return self._response_event(flow, session, content) if session.limited else None

    def _response_event(self, flow: http.HTTPFlow, session: RealtimeSession, content: bytes) -> Awaitable[None] | None:
        event = read_event(server_event, content, "a Realtime event")
        if event is None:
            return None
        if event.kind == "created":
            assert event.response_id is not None
            if session.asked:
                response = session.asked.popleft()
                response.call.answer.first_byte, response.call.answer.status = time.time(), 200
                session.answering[event.response_id] = response
            else:
                self._begun_unasked(flow, session, event.response_id)
            return None
        if event.kind == "done":
            ended = session.answering.pop(event.response_id or "", None)
            if ended is None:
                return None
            ended.call.answer.usage = event.usage
            ended.ended = True
            if ended.deciding:  # settled once its reservation is made
                return None
            # The event that ends the response reaches the client once its settlement is written.
            return self._settled(ended.call)
        self._error(session, event)
        return None

    def _error(self, session: RealtimeSession, event: ServerEvent) -> None:
        """The server refused a client event: if it was a response.create, its response never began."""
        if event.event_id is None:
            return
        response = next((r for r in session.asked if r.event_id == event.event_id), None)
        if response is None:
            return
        session.asked.remove(response)
        response.call.answer.status = 400
        response.call.answer.error = f"upstream error: {event.error}"
        self._settled(response.call)

    def _begun_unasked(self, flow: http.HTTPFlow, session: RealtimeSession, response_id: str) -> None:
        """A response the server began on its own: reserved now; without room, cancelled."""
        call, exchange = self._response_call(flow, session, RequestFacts(stream=True, input_held=True), b"")
        call.answer.request_sent, call.answer.first_byte, call.answer.status = True, time.time(), 200
        response = session.answering[response_id] = Response(call, deciding=True)
        pending = self._steps.run(exchange, call)
        if pending is None:
            self._begun_decided(flow, session, response, exchange, response_id)
            return
        self._spawn(_then(pending, lambda: self._begun_decided(flow, session, response, exchange, response_id)))

    def _begun_decided(
        self,
        flow: http.HTTPFlow,
        session: RealtimeSession,
        response: Response,
        exchange: http.HTTPFlow,
        response_id: str,
    ) -> None:
        response.deciding = False
        call = response.call
        if exchange.response is not None:  # no room: stopped, and charged what it used until then
            if not response.ended and not session.closed:
                inject(flow, to_client=False, content=encode_json(cancel(response_id)))
            if not session.closed:
                self._refused(flow, call, exchange, None, None)
            else:
                self._record(call)
            self._charge(call)
        if response.ended or session.closed:
            self._settled(call)

    # ---- the end

    def _settled(self, call: Call) -> Awaitable[None] | None:
        """A response ended: its reservation settled to its usage; what to await before the client
        hears of it (the store's write)."""
        self._settle(call, audit_record(call))
        store = call.ledger.settled_in
        return None if store is None else store.flushed()

    def _release(self, call: Call) -> None:
        """A response.create that never went: its reservation given back."""
        call.answer.request_sent = False
        self._settle(call, audit_record(call))

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        """Each response still open ends with the WebSocket, keeping what it reserved (the provider
        may bill what it began), or settled to the usage it reported."""
        session = self._sessions.pop(flow, None)
        if session is not None:
            self._close(session)

    def done(self) -> None:
        for session in self._sessions.values():
            self._close(session)
        self._sessions.clear()

    def _close(self, session: RealtimeSession) -> None:
        session.closed = True
        if session.agents is not None:
            session.agents.end()
        for response in session.open_responses():
            if not response.deciding:
                self._settled(response.call)
        session.asked.clear()
        session.answering.clear()
        session.waiting.clear()

    # ---- plumbing

    def _response_call(
        self, flow: http.HTTPFlow, session: RealtimeSession, facts: RequestFacts, content: bytes
    ) -> tuple[Call, http.HTTPFlow]:
        """A response's call (its session's caller, route and upstream, the configuration now in
        force) and the request its message would be over HTTP."""
        s = session.call
        route = Route(s.route.requested, s.route.target, upstream=s.route.upstream)
        call = Call(route, s.host, "POST", s.path, loaded=self.shared.loaded or s.loaded)
        call.classification = Classification(REALTIME, s.classification.model, facts, OPENAI_API)
        who = s.caller
        call.caller = Caller(
            who.client, who.groups, who.auth, who.identity, key_expires=who.key_expires, key_sha256=who.key_sha256
        )
        call.answer.upstream_key, call.trace.context = s.answer.upstream_key, s.trace.context
        call.request.transport = "websocket"
        return call, self._exchange(flow, call, content)


async def _once_asked(flow: http.HTTPFlow, session: RealtimeSession, calls: RealtimeCalls) -> None:
    """The held events, once the policy has answered on their calls, to the client in order; a call
    begun meanwhile is asked about in its turn, once complete (here again, or at its last event)."""
    try:
        while calls.asking is not None:
            try:
                await asked(calls.asking)
                out = calls.resume()
            except Exception:  # never sent undecided
                logger.exception("Tollgate: deciding a Realtime function call failed; its events were not sent")
                calls.end()
                out = [encode_json(realtime_error(_UNDECIDED, {}, None))]
            if calls.state is not None:
                session.call.agents = calls.state
            if not session.closed:
                for event in out:
                    inject(flow, to_client=True, content=event)
    finally:
        session.asking = False


async def _then(pending: Awaitable[None], then: Callable[[], None]) -> None:
    await pending
    then()


def _add_findings(session: Call, message: Call) -> None:
    """What the guardrails found in a message, added up on its session's record."""
    found, into = message.request, session.request
    if found.findings is None:
        return
    into.findings = dict(Counter(into.findings or {}) + Counter(found.findings))
    into.redacted = (into.redacted or 0) + (found.redacted or 0)
    actions = Counter({(kind, action): n for kind, action, n in into.finding_actions})
    actions.update({(kind, action): n for kind, action, n in found.finding_actions})
    into.finding_actions = tuple((kind, action, n) for (kind, action), n in actions.items())
