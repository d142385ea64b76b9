"""A WebSocket whose client messages are read as calls (`SocketRunner`): the Responses API's, the
Realtime API's. One runner takes each client message in its turn: a message that must wait for
the ledger's store, the policy's worker or a guardrail's thread is held back (dropped, then sent
by Tollgate once allowed), the server's events flowing meanwhile, and the client's later messages
wait behind it so that none overtakes another. A message Tollgate sends (held back, written anew,
an error event) goes through mitmproxy's event queue, after what it relays as it came: while one is
on its way, a later message of the same direction is sent by Tollgate too, behind it, so that each
side gets the other's messages in the order they were sent. A refused message never goes upstream: the client
gets an `error` event in the socket's own shape, and the connection goes on. Each kind of socket
declares what differs: which flows are its sessions, what a client message and a server event
mean to it, what a refusal's event looks like."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from mitmproxy import ctx, http
from mitmproxy.websocket import WebSocketMessage

from tollgate.calls.call import Call
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.proxy.flows import CALL
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

# The headers of a refusal that its error event carries (inside its `error`, as OpenAI's do).
EVENT_HEADERS = ("x-tollgate-error", "x-tollgate-request-id", "retry-after")


@dataclass(slots=True)
class Waiting:
    """A client message that came while one before it was held back: it waits its turn."""

    content: bytes
    is_text: bool


@dataclass(slots=True)
class OnTheirWay:
    """Messages Tollgate has sent on a WebSocket that mitmproxy has not relayed yet, each way."""

    to_client: int = 0
    to_server: int = 0


# By WebSocket flow: what `inject` has sent that its `websocket_message` hook has not seen yet.
_on_their_way: weakref.WeakKeyDictionary[http.HTTPFlow, OnTheirWay] = weakref.WeakKeyDictionary()


class SocketTurns(Protocol):
    """What the runner reads of a session: its held-back messages' turns."""

    waiting: deque[Waiting]
    busy: bool  # a message is held back (its decision, reservation or reading awaited)
    closed: bool


class SocketRunner[S: SocketTurns]:
    """Each message of a kind's sessions, in its turn. A kind says which flows are its sessions
    (`_session`), what a client message (`_take`) and a server event (`_server_event`) do, whether
    waiting messages may still go (`_takes_waiting`), and what its log says when a message fails."""

    failed = "Tollgate: deciding a message on a WebSocket failed; it was not sent"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._sessions: dict[http.HTTPFlow, S] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def websocket_message(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        session = self._session(flow)
        if session is None:
            return None
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if message.injected:  # Tollgate's own: a message it let go once decided, or its error event
            _relayed(flow, message)
            return None
        if not message.from_client:
            instead = self._server_sent(flow, session, message) if message.is_text else None
            told = self._server_event(flow, session, message.content)  # read as it came
            if instead is not None:
                message.drop()
                if told is None:
                    _sent(flow, instead)
                    return None
                return _sent_once(flow, instead, told)
            if told is None:
                _in_turn(flow, message)
                return None
            return _in_turn_once(flow, message, told)
        if session.busy or session.waiting:
            message.drop()
            session.waiting.append(Waiting(message.content, message.is_text))
            return None
        try:
            self._take(flow, session, message.content, message.is_text, message)
        except Exception:  # never sent undecided; and the hook goes on, to keep the message out of the flow
            logger.exception(self.failed)
            message.drop()
        _in_turn(flow, message)
        return None

    def _session(self, flow: http.HTTPFlow) -> S | None:
        raise NotImplementedError

    def _take(
        self, flow: http.HTTPFlow, session: S, content: bytes, is_text: bool, message: WebSocketMessage | None
    ) -> None:
        """A client message's turn (`message`: None for one held back, which Tollgate sends)."""
        raise NotImplementedError

    def _server_event(self, flow: http.HTTPFlow, session: S, content: bytes) -> Awaitable[None] | None:
        """A server event: what to await before it reaches the client, if anything."""
        raise NotImplementedError

    def _server_sent(self, flow: http.HTTPFlow, session: S, message: WebSocketMessage) -> list[bytes] | None:
        """The events the client gets in a server event's place (none while it is held), in order;
        None: the event itself."""
        return None

    def _takes_waiting(self) -> bool:
        """Whether the messages waiting may still be taken (none, once the proxy drains, say)."""
        return True

    def _run(
        self,
        flow: http.HTTPFlow,
        session: S,
        message: WebSocketMessage | None,
        steps: Awaitable[None] | None,
        conclude: Callable[[WebSocketMessage | None], None],
        closed: Callable[[], None],
        failed: str,
    ) -> None:
        """A message's call through its steps (`steps`, what `CallSteps.run` returns): concluded
        at once, or held back while what they await is (`_hold`), then concluded without it."""
        if steps is None:
            conclude(message)
            return
        self._hold(flow, session, message, steps, lambda: conclude(None), closed, failed)

    def _hold(
        self,
        flow: http.HTTPFlow,
        session: S,
        message: WebSocketMessage | None,
        pending: Awaitable[None],
        then: Callable[[], None],
        closed: Callable[[], None],
        failed: str,
    ) -> None:
        """A message held back while `pending` is awaited: `then` once it is (`closed` where the
        WebSocket ended meanwhile), then the messages that waited behind it, each in its turn."""
        if message is not None:
            message.drop()  # sent by Tollgate once allowed, in its turn
        session.busy = True
        self._spawn(self._once(flow, session, pending, then, closed, failed))

    async def _once(
        self,
        flow: http.HTTPFlow,
        session: S,
        pending: Awaitable[None],
        then: Callable[[], None],
        closed: Callable[[], None],
        failed: str,
    ) -> None:
        try:
            await pending
        finally:
            session.busy = False
        if session.closed:  # the WebSocket ended meanwhile: the message never went
            closed()
            return
        try:
            then()
        except Exception:
            logger.exception(failed)
        self._take_waiting(flow, session)

    def _take_waiting(self, flow: http.HTTPFlow, session: S) -> None:
        """The client messages that came while one before them was held back, each in its turn."""
        while session.waiting and not session.busy and not session.closed and self._takes_waiting():
            waiting = session.waiting.popleft()
            try:
                self._take(flow, session, waiting.content, waiting.is_text, None)
            except Exception:
                logger.exception(self.failed)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _exchange(flow: http.HTTPFlow, call: Call, content: bytes) -> http.HTTPFlow:
        """The request a message would be over HTTP, for the steps that read one."""
        exchange = http.HTTPFlow(flow.client_conn, flow.server_conn)
        exchange.request = http.Request.make(
            "POST", f"https://{call.host}{call.path}", content, ((b"content-type", b"application/json"),)
        )
        exchange.metadata[CALL] = call
        return exchange

    @staticmethod
    def _send(flow: http.HTTPFlow, content: bytes, message: WebSocketMessage | None) -> None:
        """A client message upstream: as it came, or as rewritten (redacted, its model changed)."""
        if message is None:
            inject(flow, to_client=False, content=content)
        elif message.content != content:
            message.content = content  # mitmproxy sends it on after the hook

    @staticmethod
    def _refusal_event(
        flow: http.HTTPFlow,
        call: Call,
        exchange: http.HTTPFlow,
        message: WebSocketMessage | None,
        event: Callable[[int, dict[str, Any], dict[str, str]], dict[str, Any]],
    ) -> None:
        """A message refused (`exchange.response`): never sent; an error event to the client in
        the socket's shape (`event`, from the refusal's status, body and headers)."""
        if message is not None:
            message.drop()
        refused = exchange.response
        assert refused is not None
        body = parse_json(refused.content) or {}
        headers = {name: refused.headers[name] for name in EVENT_HEADERS if name in refused.headers}
        inject(flow, to_client=True, content=encode_json(event(refused.status_code, body, headers)))
        call.answer.status = refused.status_code


def inject(flow: http.HTTPFlow, to_client: bool, content: bytes, is_text: bool = True) -> None:
    """A message sent by Tollgate: mitmproxy relays it once its event loop gets to it (its
    `websocket_message` hook sees it then, `injected`)."""
    on_their_way = _on_their_way.get(flow)
    if on_their_way is None:
        on_their_way = _on_their_way[flow] = OnTheirWay()
    if to_client:
        on_their_way.to_client += 1
    else:
        on_their_way.to_server += 1
    ctx.master.addons.get("proxyserver").inject_websocket(flow, to_client, content, is_text)


def _relayed(flow: http.HTTPFlow, message: WebSocketMessage) -> None:
    """A message Tollgate sent, at its hook: mitmproxy relays it next, before any later one."""
    on_their_way = _on_their_way.get(flow)
    if on_their_way is None:
        return
    if message.from_client:
        on_their_way.to_server = max(0, on_their_way.to_server - 1)
    else:
        on_their_way.to_client = max(0, on_their_way.to_client - 1)


def _in_turn(flow: http.HTTPFlow, message: WebSocketMessage) -> None:
    """A message that goes on, at the end of its hook: as it came where nothing Tollgate sent the
    same way is still on its way; else sent by Tollgate too, behind what is (mitmproxy would relay
    it at once, ahead of them)."""
    on_their_way = _on_their_way.get(flow)
    if message.dropped or on_their_way is None:
        return
    if on_their_way.to_server if message.from_client else on_their_way.to_client:
        message.drop()
        inject(flow, to_client=not message.from_client, content=message.content, is_text=message.is_text)


def _sent(flow: http.HTTPFlow, events: list[bytes]) -> None:
    """Server events sent to the client by Tollgate in a server event's place, in order."""
    for event in events:
        inject(flow, to_client=True, content=event)


async def _sent_once(flow: http.HTTPFlow, events: list[bytes], told: Awaitable[None]) -> None:
    await told
    _sent(flow, events)


async def _in_turn_once(flow: http.HTTPFlow, message: WebSocketMessage, told: Awaitable[None]) -> None:
    await told
    _in_turn(flow, message)


def read_event[T](read: Callable[[bytes], T | None], content: bytes, what: str) -> T | None:
    """A server event as `read` reads it; None where it is none, or where the reader failed: a
    reader's fault must not stop the hook, the message goes on regardless (the fault logged)."""
    try:
        return read(content)
    except Exception:
        logger.exception("Tollgate: reading %s failed", what)
        return None
