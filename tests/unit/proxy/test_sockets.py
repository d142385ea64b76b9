"""The runner of a WebSocket's client messages (`SocketRunner`): each taken in its turn, one held
back while its decision is awaited and the later ones behind it; a kind of socket declares only
what a message means to it. No proxy: a WebSocket flow and its messages as mitmproxy hands them."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from tollgate.proxy.sockets import SocketRunner, Waiting, inject
from tollgate.proxy.stages.transport.realtime_socket import RealtimeSocket
from tollgate.proxy.stages.transport.responses_socket import ResponsesSocket
from tollgate.proxy.state import Shared


@dataclass(slots=True)
class Turns:
    waiting: deque[Waiting] = field(default_factory=deque)
    busy: bool = False
    closed: bool = False


class Kind(SocketRunner[Turns]):
    """A socket whose message `slow` waits for `gate` before it is concluded."""

    def __init__(self, gate: asyncio.Future[None]) -> None:
        super().__init__(Shared())
        self.session, self.gate, self.taken = Turns(), gate, list[str]()

    def _session(self, flow):
        return self.session

    def _take(self, flow, session, content, is_text, message) -> None:
        self.taken.append(f"{content.decode()} {'as it came' if message is not None else 'held'}")
        if content == b"slow":
            conclude = self.taken.append
            self._run(flow, session, message, self.gate, lambda m: conclude(f"slow concluded {m}"), lambda: None, "x")

    def _server_event(self, flow, session, content):
        self.taken.append(f"server {content.decode()}")


def _message(flow, content: bytes, from_client: bool = True) -> WebSocketMessage:
    message = WebSocketMessage(Opcode.TEXT, from_client, content)
    flow.websocket.messages.append(message)
    return message


def test_a_held_message_keeps_the_clients_later_ones_behind_it_and_none_of_the_servers():
    async def run() -> tuple[Kind, list[WebSocketMessage]]:
        flow = tflow.twebsocketflow()
        flow.websocket.messages = []
        kind = Kind(asyncio.get_running_loop().create_future())
        sent = []
        for content, from_client in ((b"slow", True), (b"next", True), (b"event", False), (b"last", True)):
            sent.append(_message(flow, content, from_client))
            assert kind.websocket_message(flow) is None
        assert kind.session.busy and [w.content for w in kind.session.waiting] == [b"next", b"last"]
        kind.gate.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
        return kind, sent

    kind, sent = asyncio.run(run())
    assert kind.taken == [
        "slow as it came",
        "server event",  # the server's events keep flowing meanwhile
        "slow concluded None",  # sent by Tollgate once allowed, in its turn
        "next held",
        "last held",
    ]
    assert [m.dropped for m in sent] == [True, True, False, True]
    assert not kind.session.busy and not kind.session.waiting


def test_each_socket_kind_is_a_declaration_of_the_one_runner():
    assert issubclass(ResponsesSocket, SocketRunner) and issubclass(RealtimeSocket, SocketRunner)
    for kind in (ResponsesSocket, RealtimeSocket):
        assert "websocket_message" not in vars(kind) and "_take_waiting" not in vars(kind)


class ProxyServer:
    """mitmproxy's proxyserver addon as `inject` uses it: what it was given to send, in order."""

    name = "proxyserver"

    def __init__(self) -> None:
        self.injected: list[tuple[bool, bytes]] = []

    def inject_websocket(self, flow, to_client: bool, message: bytes, is_text: bool = True) -> None:
        self.injected.append((to_client, message))


def _hooked(kind: Kind, flow, content: bytes, from_client: bool) -> WebSocketMessage:
    message = _message(flow, content, from_client)
    assert kind.websocket_message(flow) is None
    return message


def test_a_message_never_overtakes_one_tollgate_sent_before_it_the_same_way():
    """mitmproxy relays a message Tollgate sends once its event loop gets to it, one it relays as it
    came at once after its hook: a later one goes behind Tollgate's, sent by Tollgate too, until
    mitmproxy has relayed them (their hook seen); then messages go on as they came again."""
    proxyserver = ProxyServer()
    with taddons.context(proxyserver):
        flow = tflow.twebsocketflow()
        flow.websocket.messages = []
        kind = Kind(asyncio.Future(loop=asyncio.new_event_loop()))
        inject(flow, to_client=True, content=b"anew")  # a held event written anew, say
        inject(flow, to_client=False, content=b"held")  # a client message let go once decided
        later = [_hooked(kind, flow, b"event", False), _hooked(kind, flow, b"next", True)]
        assert [m.dropped for m in later] == [True, True]
        assert proxyserver.injected == [(True, b"anew"), (False, b"held"), (True, b"event"), (False, b"next")]
        for to_client, content in proxyserver.injected:  # mitmproxy relays them, each at its hook
            flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, not to_client, content, injected=True))
            assert kind.websocket_message(flow) is None
        again = [_hooked(kind, flow, b"then", False), _hooked(kind, flow, b"more", True)]
        assert [m.dropped for m in again] == [False, False]
        assert len(proxyserver.injected) == 4
    assert kind.taken == ["server event", "next as it came", "server then", "more as it came"]
