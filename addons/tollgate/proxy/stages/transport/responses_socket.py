"""The Responses API's WebSocket mode (`wss://api.openai.com/v1/responses`), as Codex uses it.

The connection is a session: identified and given its upstream credential at its upgrade, and not a
call itself. Each `response.create` message on it is a call of its own: classified, reserved on the
limits and decided by the policy as a POST /v1/responses would be, and audited when its answer ends,
with the usage its `response.completed` (or `incomplete`, `failed`) reports. A refused one never
goes upstream: the client gets an `error` event in OpenAI's shape, and the connection goes on.

While a message waits for the ledger or the policy, it is held back (dropped, then sent by Tollgate
once allowed): the server's events keep flowing to the client, and the client's later messages wait
their turn behind it, so that none overtakes another.

Under an answer guardrail, each response's events are read as its stream's would be over HTTP
(`ResponsesSocketGuard`): a message whose text is held is held back, one whose value is replaced
sent anew, and the socket's later events go behind it (`SocketRunner`); at a value to deny, the
client gets an `error` event and the WebSocket is closed (1008), which stops the upstream's
generation. A response the upstream begins without a message asking for it is not read: under an
answer rule, or with `agents`, it stops there, as an event that cannot be read does; so does one
begun on a lane whose last response read so has not ended. A large event (32 KiB or more) is read
in a worker thread.

With `agents`, each response.create is read as its HTTP body is (its tools' outputs outside
content), and its response's events are decided as its stream's over HTTP are
(`ResponsesSocketCalls`): from a call's first event on, held until its item is done, a refused
call's events replaced by its refusal message's; where the policy is asked about a call, the hook
awaits its answers, so that the socket's later events wait behind the held ones. The answer
guardrails read what `agents` lets go. With `agents.links`, a link off the list in the response's text
is reduced to its text by the same reader (`answer_links`), with or without an answer rule."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mitmproxy import http
from mitmproxy.websocket import WebSocketMessage

from tollgate.calls.call import Call, Caller, Failure, Route, Target
from tollgate.common.shown import caller_name, nano_usd_text
from tollgate.formats.answer_reading.scanning import READ_APART_BYTES, UNREAD
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import encode_json, parse_json, read_request_json
from tollgate.formats.openai_responses import RESPONSES
from tollgate.formats.openai_responses.answer_guard import ENDS, ResponsesSocketGuard, socket_denied_event
from tollgate.formats.openai_responses.socket import (
    RESPONSE_CREATE,
    SOCKET_ACKNOWLEDGEMENTS,
    SocketEvent,
    classify_response_create,
    lane,
    socket_error,
    socket_event,
    socket_message_type,
)
from tollgate.formats.refusals import BAD_REQUEST, CONTENT_DENIED
from tollgate.formats.request_facts import Classification
from tollgate.governance.agents.answer_links import Detectors, link_scanners
from tollgate.governance.agents.call_state import asked
from tollgate.governance.agents.responses_socket_calls import ResponsesSocketCalls
from tollgate.governance.guardrails.workers import ScanWorkers
from tollgate.proxy import patches
from tollgate.proxy.flows import CALL, CLIENT_DISCONNECTED, call_of, refuse
from tollgate.proxy.sockets import SocketRunner, Waiting, inject, read_event
from tollgate.proxy.state import Shared

if TYPE_CHECKING:
    from tollgate.proxy.runner import CallSteps

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # the WebSocket close code of a message that breaks a policy (RFC 6455 7.4.1)

# Where a message's exchange keeps the upstream its session goes to (`stays_on_the_socket`).
SESSION_UPSTREAM = "tollgate.session_upstream"


class Sent(NamedTuple):
    """A message as the client sent it, and the lane (`stream_id`) it asked for."""

    content: bytes
    lane: str | None


@dataclass(slots=True)
class Tally:
    """What a session's ended calls came to, for its flow (not the calls: a session may be long)."""

    request_ids: list[str] = field(default_factory=list)
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanousd: int | None = None

    def add(self, call: Call) -> None:
        self.request_ids.append(call.request_id)
        self.refused += call.answer.answered_by_tollgate
        if call.answer.usage is not None:
            self.input_tokens += call.answer.usage.input_tokens or 0
            self.output_tokens += call.answer.usage.output_tokens or 0
        cost = call.cost_nanousd()
        if cost is not None:
            self.cost_nanousd = (self.cost_nanousd or 0) + cost

    def summary(self, session: Call) -> str:
        """mitmweb's one line for the session: its responses, their tokens and cost together."""
        refused = f" ({self.refused} refused)" if self.refused else ""
        cost = "" if self.cost_nanousd is None else f" · {nano_usd_text(self.cost_nanousd)}"
        tokens = f"{self.input_tokens}→{self.output_tokens} tokens{cost}"
        count = len(self.request_ids)
        responses = f"{count} response{'' if count == 1 else 's'}{refused}"
        who = caller_name(session.caller.client)
        return f"{who} · {session.route.target.provider} · Responses WebSocket · {responses} · {tokens}"


class Guarded(NamedTuple):
    """A response read by the answer guardrails (and `agents.links`): its call, its reader, and the
    detectors it reads with (what each finding's action was, for the record and the metrics)."""

    call: Call
    guard: ResponsesSocketGuard
    detectors: Detectors | None = None

    def note(self) -> None:
        """What was found so far, recorded on the call."""
        answer = self.call.answer
        answer.findings = self.guard.counts
        if self.detectors is not None:
            answer.finding_actions = self.detectors.by_action(answer.findings)


@dataclass(slots=True)
class Session:
    """One Responses WebSocket: its upgrade's call, and its messages' calls as they go."""

    call: Call
    waiting: deque[Waiting] = field(default_factory=deque)
    busy: bool = False  # a message is being decided (the ledger's store, the policy's worker)
    closed: bool = False
    # Sent upstream, their `response.created` not yet come: by lane (`stream_id`), in order.
    unanswered: dict[str | None, deque[Call]] = field(default_factory=dict)
    answering: dict[str, Call] = field(default_factory=dict)  # by response id
    ended: Tally = field(default_factory=Tally)
    going_away: bool = False  # closed by the drain, its close under way
    # The responses read by the answer guardrails, by lane: the call and its reader.
    guarded: dict[str | None, Guarded] = field(default_factory=dict)
    cut: bool = False  # a response was denied: the WebSocket is closing, nothing more goes on
    # With `agents`, the responses whose tool calls are decided, by lane: the call and its decider.
    decided: dict[str | None, tuple[Call, ResponsesSocketCalls]] = field(default_factory=dict)

    def open_calls(self) -> list[Call]:
        return [*(c for queue in self.unanswered.values() for c in queue), *self.answering.values()]

    def idle(self) -> bool:
        """No response is being decided, nor sent and not yet ended."""
        return not self.busy and not self.closed and not any(self.unanswered.values()) and not self.answering


class EventRead(NamedTuple):
    """A server event read by its response's decider (`agents`) and guard: what goes on in its
    place; where the policy is to answer on a held call first, `calls`, whose answers to await."""

    call: Call
    guard: ResponsesSocketGuard | None
    out: list[bytes]
    calls: ResponsesSocketCalls | None = None


def _read(session: Session, content: bytes) -> EventRead | None:
    """A server event read by the decider and the guard of its response's lane; None where none
    reads it. Plain work on them alone: a large event's is done in a worker thread."""
    event = parse_json(content)
    where = event.get("stream_id") if event is not None else None
    lane = where if isinstance(where, str) else None
    guarded, decided = session.guarded.get(lane), session.decided.get(lane)
    if guarded is None and decided is None and event is None:
        # Not JSON: whose it is cannot be told. It stops a response that is read, never goes on.
        guarded = next(iter(session.guarded.values()), None)
        decided = next(iter(session.decided.values()), None)
    if guarded is None and decided is None:
        return None
    guard = guarded.guard if guarded is not None else None
    if decided is None:
        assert guarded is not None and guard is not None
        ends = event is not None and event.get("type") in ENDS
        return EventRead(guarded.call, guard, _guard_read(guard, [content], ends))
    call, calls = decided
    try:
        out = calls.message(content)
    except Exception:  # never sent undecided
        logger.exception("Tollgate: deciding a response's tool calls failed; its events were not sent")
        out = calls.fail()
    if guard is not None:
        out = _guard_read(guard, out, calls.ended and not calls.asking)
    return EventRead(call, guard, out, calls if calls.asking else None)


def _guard_read(guard: ResponsesSocketGuard, messages: list[bytes], ended: bool) -> list[bytes]:
    """Messages of a response read by the answer guardrails (`ended`: its last among them)."""
    try:
        out = [m for message in messages for m in guard.message(message)]
        return out + guard.flush() if ended else out
    except Exception:  # what cannot be read does not go on
        logger.exception("Tollgate: reading an answer for its guardrails failed")
        return guard.fail()


def _sent(flow: http.HTTPFlow, messages: list[bytes]) -> None:
    for message in messages:
        inject(flow, to_client=True, content=message)


async def _sent_once_written(flow: http.HTTPFlow, written: Awaitable[None], messages: list[bytes]) -> None:
    await written
    _sent(flow, messages)


def answer_detectors(call: Call) -> Detectors | None:
    """The detectors that read a response's answer, if any: the answer rules' that apply to it, with
    links off `agents.links`' list reduced to their text first where it is set (as over HTTP)."""
    loaded = call.loaded
    guardrails = loaded.guardrails if loaded is not None else None
    agents = loaded.config.agents if loaded is not None else None
    links = agents.links if agents is not None else None
    detectors: Detectors | None = None
    if guardrails is not None and guardrails.answer_rules:
        who = call.caller
        detectors = guardrails.answer(call.route.target.provider, call.target_model, who.client, who.groups)
    return link_scanners(links, detectors) if links is not None else detectors


def stays_on_the_socket(flow: http.HTTPFlow, call: Call) -> None:
    """A call step, after `Override`: a message goes up the WebSocket it came on, to its provider and
    upstream. A rule that routes it elsewhere cannot be followed there: refused (over HTTP it can)."""
    upstream = flow.metadata.get(SESSION_UPSTREAM)
    if not call.route.rerouted and call.route.translated is None and call.route.upstream == upstream:
        return
    call.answer.error = "bad request: an override routes this response elsewhere"
    refuse(
        flow,
        call,
        BAD_REQUEST,
        "Tollgate: an override routes this model to another provider or upstream, which a response on the"
        " Responses WebSocket cannot go to; call POST /v1/responses over HTTP instead.",
    )


class ResponsesSocket(SocketRunner[Session]):
    failed = "Tollgate: deciding a message on the Responses WebSocket failed; it was not sent"

    def __init__(
        self,
        shared: Shared,
        steps: CallSteps,
        record: Callable[[Call], dict[str, Any]],
        workers: ScanWorkers | None = None,
    ) -> None:
        super().__init__(shared)
        self._steps = steps  # what a response.create goes through: the audit gate, overrides, limits, policy
        self._record = record  # the audit's: a message's call ends
        self._workers = workers or ScanWorkers()  # where a large event is read for the answer guardrails

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        """The session begins with its WebSocket (a drain closes one that has carried nothing yet)."""
        self._session(flow)

    def _server_event(self, flow: http.HTTPFlow, session: Session, content: bytes) -> Awaitable[None] | None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not (session.cut or session.guarded or session.decided):
            return self._told(flow, session, content, message, None)
        if session.cut:  # the WebSocket is closing: nothing more goes on
            message.drop()
            return None
        if len(content) >= READ_APART_BYTES:
            return self._read_apart(flow, session, content, message)
        read = _read(session, content)
        if read is not None and read.calls is not None:  # the policy's answers awaited in the hook
            return self._once_asked(flow, session, content, message, read)
        out = self._guarded_event(flow, session, message, read)
        return None if session.cut else self._told(flow, session, content, message, out)

    async def _read_apart(
        self, flow: http.HTTPFlow, session: Session, content: bytes, message: WebSocketMessage
    ) -> None:
        """A large event read in a worker thread while the event loop serves the other calls (the
        WebSocket's later messages wait their turn behind it)."""
        reading = self._workers.off_loop(lambda: _read(session, content))
        read = await reading if isinstance(reading, Awaitable) else reading
        if read is not None and read.calls is not None:
            await self._once_asked(flow, session, content, message, read)
            return
        out = self._guarded_event(flow, session, message, read)
        told = None if session.cut else self._told(flow, session, content, message, out)
        if told is not None:
            await told

    async def _once_asked(
        self, flow: http.HTTPFlow, session: Session, content: bytes, message: WebSocketMessage, read: EventRead
    ) -> None:
        """A server event after which the policy is to answer on a held call: its answers awaited
        (mitmproxy relays none of the socket's later messages meanwhile), then what was held goes,
        decided; a call begun meanwhile is asked about in its turn."""
        calls, out = read.calls, list(read.out)
        assert calls is not None
        while calls.asking:
            try:
                await asked(calls.state)
                more = calls.resume()
            except Exception:  # never sent undecided
                logger.exception("Tollgate: deciding a response's tool calls failed; its events were not sent")
                more = calls.fail()
            if read.guard is not None:
                more = _guard_read(read.guard, more, calls.ended and not calls.asking)
            out += more
        if session.closed:  # the WebSocket ended meanwhile: nothing more goes, its calls recorded
            message.drop()
            return
        out = self._guarded_event(flow, session, message, read._replace(out=out)) or []
        told = None if session.cut else self._told(flow, session, content, message, out)
        if told is not None:
            await told

    def _told(
        self,
        flow: http.HTTPFlow,
        session: Session,
        content: bytes,
        message: WebSocketMessage,
        out: list[bytes] | None,
    ) -> Awaitable[None] | None:
        """What a server event (`message`, its `content`) tells of its response, and what goes on in
        its place (`out`; None: itself, as it came)."""
        ended = self._response_event(flow, session, content, message)
        # The event that ends a counted response goes to the client once its settlement is
        # written: mitmproxy relays the message after the hook.
        store = None if ended is None else ended.ledger.settled_in
        written = None if store is None else store.flushed()
        if out is None:
            return written
        if written is None:
            _sent(flow, out)
            return None
        return _sent_once_written(flow, written, out)

    def _guarded_event(
        self, flow: http.HTTPFlow, session: Session, message: WebSocketMessage, read: EventRead | None
    ) -> list[bytes] | None:
        """A server event of a response read by `agents` or the answer guardrails (`read`): where
        anything changed (nothing goes while held, or it is written anew with what was held), it is
        dropped here and what goes on in its place is sent by Tollgate, so that none overtakes
        another; a value to deny cuts the response. None where it goes on as it came (relayed in
        its turn, behind what Tollgate sent) or its response is not read."""
        if read is None:
            return None
        call, guard, out, _ = read
        if out == [message.content] and (guard is None or guard.denied is None):
            return None  # as it came: relayed in its turn, behind what Tollgate sent
        message.drop()
        if guard is not None and guard.denied is not None:
            _sent(flow, out)
            self._cut(flow, session, call, guard)
        return out

    def _cut(self, flow: http.HTTPFlow, session: Session, call: Call, guard: ResponsesSocketGuard | None) -> None:
        """A response denied: recorded as cut, and the WebSocket closed (the upstream stops)."""
        session.cut = True
        call.answer.findings = guard.counts if guard is not None else call.answer.findings
        for guarded in session.guarded.values():
            if guarded.guard is guard:
                guarded.note()  # with each finding's action
        call.answer.error = call.answer.refused = CONTENT_DENIED
        call.answer.cut = (guard.denied if guard is not None else None) or UNREAD
        session.guarded.clear()
        session.decided.clear()
        for response_id, answering in list(session.answering.items()):
            if answering is call:
                del session.answering[response_id]
        self._end(session, call)
        patches.close_websocket(flow, POLICY_VIOLATION, "Tollgate stopped the answer: content_denied")

    def _takes_waiting(self) -> bool:
        return not self.shared.draining

    def _session(self, flow: http.HTTPFlow) -> Session | None:
        session = self._sessions.get(flow)
        if session is None:
            call = call_of(flow)
            if call is None or not call.classification.session:
                return None
            session = self._sessions[flow] = Session(call)
        return session

    def _take(
        self, flow: http.HTTPFlow, session: Session, content: bytes, is_text: bool, message: WebSocketMessage | None
    ) -> None:
        """A client message's turn: an acknowledgement goes on; a response.create is decided (at once,
        or held back while the ledger or policy is awaited); anything else is refused."""
        call = self._message_call(session)
        exchange = self._exchange(flow, call, content)
        exchange.metadata[SESSION_UPSTREAM] = call.route.upstream
        try:
            if not is_text:
                raise Unreadable("a binary message")
            data = read_request_json(content) or {}
            kind = socket_message_type(data)
            if kind in SOCKET_ACKNOWLEDGEMENTS:
                self._send(flow, content, message)
                return
            if kind != RESPONSE_CREATE:
                raise Unreadable("Tollgate forwards only response.create messages (and acknowledgements) here")
            if self.shared.draining:
                # Never sent: the WebSocket closes once its responses in flight have ended, and
                # the client sends it again on a new connection.
                if message is not None:
                    message.drop()
                session.waiting.append(Waiting(content, is_text))
                self._close_if_idle(flow, session)
                return
            call.classified(classify_response_create(data))
            where = lane(data)
        except Unreadable as e:
            call.classified(Classification(endpoint=RESPONSES))
            call.answer.error = f"bad request: {e}"
            why = f"Tollgate cannot read this message exactly and did not forward it: {e}."
            refuse(exchange, call, BAD_REQUEST, why)
            self._conclude(flow, session, call, exchange, Sent(content, None), message)
            return
        call.request.body = data
        sent = Sent(content, where)
        self._run(
            flow,
            session,
            message,  # sent by Tollgate once allowed, in its turn
            self._steps.run(exchange, call),
            lambda message: self._conclude(flow, session, call, exchange, sent, message),
            lambda: self._never_sent(session, call, exchange),
            self.failed,
        )

    def _never_sent(self, session: Session, call: Call, exchange: http.HTTPFlow) -> None:
        """A message held back whose WebSocket ended meanwhile: it never went."""
        if exchange.response is None:
            call.answer.error = call.answer.error or "the WebSocket closed before the request was sent"
        call.request.body = None
        self._end(session, call)

    def _conclude(
        self,
        flow: http.HTTPFlow,
        session: Session,
        call: Call,
        exchange: http.HTTPFlow,
        sent: Sent,
        message: WebSocketMessage | None,
    ) -> None:
        """The message decided: refused with an error event to the client (audited at once), or sent
        upstream (as an override rewrote it), its answer awaited."""
        call.request.body = None
        content, where = sent
        refused = exchange.response
        if refused is not None:
            self._refusal_event(
                flow, call, exchange, message, lambda status, body, headers: socket_error(status, body, headers, where)
            )
            self._end(session, call)
            return
        if call.route.target.model != call.route.requested.model or call.request.redacted or call.agents is not None:
            # An override changed the model, a guardrail redacted it, or `agents` answered the
            # refused calls of the response it continues: the message as rewritten.
            content = exchange.request.raw_content or content
        self._send(flow, content, message)
        call.answer.request_sent = True
        session.unanswered.setdefault(where, deque()).append(call)

    def _message_call(self, session: Session) -> Call:
        """A message's call: the session's caller and upstream, the configuration now in force."""
        s = session.call
        call = Call(
            Route.as_called(s.route.target.provider), s.host, "POST", s.path, loaded=self.shared.loaded or s.loaded
        )
        who = s.caller
        call.caller = Caller(
            who.client,
            who.groups,
            who.auth,
            who.identity,
            key_expires=who.key_expires,
            key_sha256=who.key_sha256,
            subscription=who.subscription,  # a plan's session: each response is a plan call too
        )
        call.route.upstream, call.answer.upstream_key, call.trace.context = (
            s.route.upstream,
            s.answer.upstream_key,
            s.trace.context,
        )
        call.request.transport = "websocket"
        return call

    def _response_event(
        self, flow: http.HTTPFlow, session: Session, content: bytes, message: WebSocketMessage
    ) -> Call | None:
        """What a server event tells of the responses: the call it ends, if it ends one."""
        event = read_event(socket_event, content, "a Responses WebSocket event")
        if event is None:
            return None
        queue = session.unanswered.get(event.lane)
        if event.kind == "created":
            if not queue:
                self._unasked(flow, session, content, message, event.lane)
                return None
            call = queue.popleft()
            call.answer.first_byte, call.answer.status = time.time(), 200
            assert event.response_id is not None
            earlier = session.decided.get(event.lane)
            if (earlier is not None and not earlier[1].ended) or (earlier is None and event.lane in session.guarded):
                self._overlapping(flow, session, call, message, event.lane)
                return None
            if earlier is not None:  # its response ended: it reads no more (this one may not decide)
                del session.decided[event.lane]
            session.answering[event.response_id] = call
            detectors = answer_detectors(call)
            if detectors is not None:
                call.answer.findings = {}
                session.guarded[event.lane] = Guarded(call, ResponsesSocketGuard(detectors, event.lane), detectors)
            if call.agents is not None and call.agents.decides:
                session.decided[event.lane] = (call, ResponsesSocketCalls(call.agents, event.lane))
            return None
        if event.kind == "done":
            found = session.answering.pop(event.response_id or "", None)
            if found is None and queue:  # ended without having begun
                found = queue.popleft()
                found.answer.status = 200
            if found is None:
                return None
            session.decided.pop(event.lane, None)
            guarded = session.guarded.pop(event.lane, None)
            if guarded is not None and guarded.call is found:
                guarded.note()
            found.answer.usage = event.usage
            found.answer.error = found.answer.error or event.error
            self._end(session, found)
            return found
        if queue:  # an error before its response began: the request failed
            call = queue.popleft()
            call.answer.status = event.status
            call.answer.error = f"upstream error: {event.error}"
            self._end(session, call)
            return call
        return self._broken_off(session, event)

    def _broken_off(self, session: Session, event: SocketEvent) -> Call | None:
        """An error event on a lane whose response is being read: that response ends with it (its
        record written with what was found), and the lane takes the next one as new."""
        guarded = session.guarded.pop(event.lane, None)
        decided = session.decided.pop(event.lane, None)
        call = guarded.call if guarded is not None else decided[0] if decided is not None else None
        if guarded is not None:
            guarded.note()
        answering = next((id for id, c in session.answering.items() if c is call), None)
        if call is None or answering is None:
            return None  # none read there, or its response already ended
        del session.answering[answering]
        call.answer.error = call.answer.error or f"upstream error: {event.error}"
        self._end(session, call)
        return call

    def _overlapping(
        self, flow: http.HTTPFlow, session: Session, call: Call, message: WebSocketMessage, lane: str | None
    ) -> None:
        """A response begun on a lane whose last response, read by `agents` or an answer rule, has
        not ended (an `error` event ends it too): whose later events are cannot be
        told (the first's call would be read as the second's, undecided). Both stop there, as an
        event that cannot be read does: the client gets the error event, the WebSocket closes,
        each audited as cut."""
        message.drop()
        earlier, guard = (session.decided.get(lane) or session.guarded[lane])[0], None
        if lane in session.guarded:
            guard = session.guarded[lane][1]
        call.answer.findings = {}
        call.answer.error = call.answer.refused = CONTENT_DENIED
        call.answer.cut = UNREAD
        self._end(session, call)
        _sent(flow, guard.fail() if guard is not None else [encode_json(socket_denied_event(UNREAD, lane))])
        self._cut(flow, session, earlier, guard)

    def _unasked(
        self, flow: http.HTTPFlow, session: Session, content: bytes, message: WebSocketMessage, lane: str | None
    ) -> None:
        """A response the upstream began without a message asking for it (`message`: its
        `response.created`, `content` what it holds). Under an answer rule for its model its text would go on unread: it
        stops here, as an event that cannot be read does (the client gets the error event, the
        WebSocket closes), audited as a call of its own."""
        call = self._message_call(session)
        response = (parse_json(content) or {}).get("response")
        model = response.get("model") if isinstance(response, dict) else None
        if isinstance(model, str) and model:
            call.route.requested = call.route.target = Target(call.route.target.provider, model)
        detectors = answer_detectors(call)
        if detectors is None and call.loaded.config.agents is None:
            logger.warning("Tollgate: the upstream began a response no message on its WebSocket asked for")
            return
        message.drop()
        call.answer.first_byte, call.answer.status = time.time(), 200
        call.answer.findings = {}
        guard = ResponsesSocketGuard(detectors, lane) if detectors is not None else None
        # Its tool calls, with `agents`, would reach the client undecided: it stops too.
        _sent(flow, guard.fail() if guard is not None else [encode_json(socket_denied_event(UNREAD, lane))])
        self._cut(flow, session, call, guard)

    def _end(self, session: Session, call: Call) -> None:
        try:
            self._record(call)
        finally:
            session.ended.add(call)
        if self.shared.draining:
            flow = next((f for f, s in self._sessions.items() if s is session), None)
            if flow is not None:
                self._close_if_idle(flow, session)

    def drain(self) -> None:
        """The drain begins: each WebSocket with no response in flight closes now (1001, going
        away), the others once theirs have ended; none takes a new response meanwhile."""
        for flow, session in list(self._sessions.items()):
            self._close_if_idle(flow, session)

    def _close_if_idle(self, flow: http.HTTPFlow, session: Session) -> None:
        if session.idle() and not session.going_away:
            session.going_away = True
            patches.close_websocket(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        """After `WebSocket.websocket_end`, which says how the WebSocket ended: each response still
        open ends with it."""
        session = self._sessions.pop(flow, None)
        if session is None:
            return
        websocket = flow.websocket
        assert websocket is not None
        by_client = bool(websocket.closed_by_client)
        for call in session.open_calls():
            if by_client:
                call.answer.error, call.answer.failure = CLIENT_DISCONNECTED, Failure.CLIENT_DISCONNECTED
            else:
                why = session.call.answer.error or "the server closed the WebSocket"
                call.answer.error, call.answer.failure = (
                    f"upstream broke off the response: {why}",
                    Failure.UPSTREAM_BROKE_OFF,
                )
        self._close(flow, session)

    def done(self) -> None:
        """Before the audit's `done`: the responses still open end with the proxy."""
        for flow, session in list(self._sessions.items()):
            for call in session.open_calls():
                call.answer.error = self.shared.shut_down_error
            self._close(flow, session)
        self._sessions.clear()

    def _close(self, flow: http.HTTPFlow, session: Session) -> None:
        """The session ends: its open responses audited; the flow keeps what it was (the records of
        its responses went to the audit), and no call record, so that no record is written for it:
        its upgrade, kept in flight since it went upstream, has ended all the same."""
        session.closed = True
        for guarded in session.guarded.values():  # broken off: what was found so far
            guarded.note()
        session.guarded.clear()
        for _, calls in session.decided.values():  # broken off: its held calls decided, for the record
            calls.end()
        session.decided.clear()
        for call in session.open_calls():
            self._end(session, call)
        session.unanswered.clear()
        session.answering.clear()
        session.waiting.clear()
        flow.comment = session.ended.summary(session.call)
        audit = self.shared.audit
        if audit is not None and audit.in_flight is not None:  # the upgrade's call ends with no record
            audit.in_flight.ended(session.call.request_id)
        flow.metadata[CALL] = {
            "event": "responses_websocket",
            "client": session.call.caller.client,
            "request_ids": session.ended.request_ids,
        }
