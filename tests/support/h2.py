"""HTTP/2 on both sides of the proxy: a fake TLS upstream that speaks only HTTP/2 and answers each
stream on its own schedule, and a client that sends several streams on one connection through
the proxy's CONNECT."""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import trustme
from hyperframe.frame import GoAwayFrame
from tests.support.tcp import TcpServer


@dataclass
class H2Received:
    connection: int  # which upstream connection (0, 1, …) the stream came on
    stream_id: int
    headers: dict[str, str]  # pseudo-headers too (":path"); lower-case names
    body: bytes
    trailers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class H2Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)
    delay: float | None = 0.0  # before the headers; None: never answer
    interval: float = 0.0  # between pieces


H2Handler = Callable[[H2Received], H2Reply]


class H2Upstream(TcpServer):
    """An HTTP/2-only TLS server on 127.0.0.1, one thread per connection. It records each stream it
    received and each stream the proxy reset (`resets`: (connection, stream id, error code))."""

    def __init__(self, ca: trustme.CA, handler: H2Handler) -> None:
        super().__init__()
        self.handler = handler
        self.received: list[H2Received] = []
        self.resets: list[tuple[int, int, int]] = []
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._context.set_alpn_protocols(["h2"])
        self.start()

    def serve(self, sock: socket.socket, number: int) -> None:
        try:
            sock.settimeout(5)
            tls = self._context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        with tls:
            if tls.selected_alpn_protocol() != "h2":
                return
            _H2ServerConnection(self, tls, number).run(self._closing)


class _H2ServerConnection:
    def __init__(self, upstream: H2Upstream, tls: ssl.SSLSocket, number: int) -> None:
        self.upstream, self.tls, self.number = upstream, tls, number
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.schedule: list[tuple[float, int, Callable[[], None]]] = []  # (when, stream, send step)

    def run(self, closing: threading.Event) -> None:
        self.conn.initiate_connection()
        self.flush()
        while not closing.is_set():
            now = time.monotonic()
            for step in [s for s in self.schedule if s[0] <= now]:
                self.schedule.remove(step)
                step[2]()
            self.flush()
            wait = min([s[0] for s in self.schedule], default=now + 0.05) - now
            if not self.tls.pending():
                readable, _, _ = select.select([self.tls], [], [], max(0.0, min(wait, 0.05)))
                if not readable:
                    continue
            try:
                data = self.tls.recv(65535)
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            for event in self.conn.receive_data(data):
                self.on_event(event)
            self.flush()

    def on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.requests[event.stream_id] = (dict(event.headers), bytearray())
        elif isinstance(event, h2.events.DataReceived):
            self.requests[event.stream_id][1].extend(event.data)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            headers, body = self.requests[event.stream_id]
            trailers = self.trailers.pop(event.stream_id, {})
            received = H2Received(self.number, event.stream_id, headers, bytes(body), trailers)
            self.upstream.received.append(received)
            self.answer(event.stream_id, self.upstream.handler(received))
        elif isinstance(event, h2.events.StreamReset):
            self.upstream.resets.append((self.number, event.stream_id, event.error_code))
            self.schedule = [s for s in self.schedule if s[1] != event.stream_id]

    def answer(self, stream_id: int, reply: H2Reply) -> None:
        if reply.delay is None:
            return
        at = time.monotonic() + reply.delay
        headers = [(":status", str(reply.status)), *reply.headers.items()]
        send_headers = partial(self.conn.send_headers, stream_id, headers, end_stream=not reply.pieces)
        self.schedule.append((at, stream_id, send_headers))
        for i, piece in enumerate(reply.pieces):
            send_piece = partial(self.conn.send_data, stream_id, piece, end_stream=i == len(reply.pieces) - 1)
            self.schedule.append((at + i * reply.interval, stream_id, send_piece))
        self.schedule.sort(key=lambda s: s[0])

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.tls.sendall(data)


@dataclass
class H2Answer:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None  # the error code, when the proxy reset the stream
    cancelled: bool = False  # the client reset it (CANCEL), as `H2Request` asked
    trailers: dict[str, str] = field(default_factory=dict)  # a HEADERS frame after the body
    seconds: float | None = None  # from the first request sent to the stream's end

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class H2Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)  # a HEADERS frame after the body
    # The client resets the stream (CANCEL), as HTTP/2 clients do when they stop reading: once this
    # many bytes of its answer's body came (0: once its headers came), or this many seconds after it
    # was sent, whichever is first.
    cancel_after: int | None = None
    cancel_in: float | None = None


class _GoawaysNoted(h2.connection.H2Connection):
    """A client connection that notes each GOAWAY it gets and goes on reading its streams, as
    browsers and Go's client do after a graceful one (h2 would take it as the connection's end)."""

    def __init__(self, config: h2.config.H2Configuration, goaways: list[tuple[int, int]]) -> None:
        super().__init__(config)
        self._goaways = goaways

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list, list]:
        self._goaways.append((frame.last_stream_id, frame.error_code))
        return [], []


@contextmanager
def h2_tunnel(
    proxy_port: int, bundle: Path, host: str, timeout: float, *, connect: str | None = None, sni: str | None = None
) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to `host` through the proxy's CONNECT that agreed on HTTP/2 (ALPN), closed after."""
    raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    try:
        connect = connect or f"{host}:443"
        raw.sendall(f"CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = raw.recv(4096)
            if not chunk:
                raise ConnectionError(f"proxy closed the CONNECT: {reply!r}")
            reply += chunk
        if not reply.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"CONNECT refused: {reply!r}")
        context = ssl.create_default_context(cafile=str(bundle))
        context.set_alpn_protocols(["h2"])
        tls = context.wrap_socket(raw, server_hostname=sni or host)
    except BaseException:
        raw.close()
        raise
    with tls:
        if tls.selected_alpn_protocol() != "h2":
            raise ConnectionError(f"the proxy did not speak HTTP/2: {tls.selected_alpn_protocol()}")
        yield tls


def h2_calls(
    proxy_port: int,
    bundle: Path,
    host: str,
    requests: list[H2Request],
    timeout: float,
    *,
    goaway: bool = False,
    goaways: list[tuple[int, int]] | None = None,
    connect: str | None = None,
    sni: str | None = None,
) -> list[H2Answer]:
    """Send `requests` as concurrent streams of one HTTP/2 connection to `host` through the proxy;
    return each one's answer, once all have ended or `timeout` has passed. With `goaway`, a graceful
    GOAWAY (NO_ERROR, last stream 0) follows the requests at once, as a client that will open no
    more streams sends it (h2 would stop reading after its own: the frame is written past it).
    With `goaways`, the proxy's GOAWAY frames are noted there (last stream id, error code), the
    streams read on after them, and the connection read until the proxy closes it. `connect` is
    the CONNECT authority and `sni` the TLS server name, where they are not `host`'s (which is
    each request's :authority)."""
    with h2_tunnel(proxy_port, bundle, host, timeout, connect=connect, sni=sni) as tls:
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config) if goaways is None else _GoawaysNoted(config, goaways)
        conn.initiate_connection()
        started = time.monotonic()
        answers: dict[int, H2Answer] = {}
        ids = []
        for request in requests:
            stream_id = conn.get_next_available_stream_id()
            ids.append(stream_id)
            answers[stream_id] = H2Answer()
            headers = [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", host),
                (":path", request.path),
                ("content-length", str(len(request.body))),
                *request.headers.items(),
            ]
            conn.send_headers(stream_id, headers)
            conn.send_data(stream_id, request.body, end_stream=not request.trailers)
            if request.trailers:
                conn.send_headers(stream_id, list(request.trailers.items()), end_stream=True)
        tls.sendall(conn.data_to_send())
        if goaway:
            tls.sendall(GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
        open_streams = set(ids)
        deadline = started + timeout
        asked = dict(zip(ids, requests, strict=True))

        def cancel_due() -> None:
            for stream_id in list(open_streams):
                request, answer = asked[stream_id], answers[stream_id]
                late = request.cancel_in is not None and time.monotonic() >= started + request.cancel_in
                read = request.cancel_after is not None and answer.status is not None
                if late or (read and len(answer.body) >= (request.cancel_after or 0)):
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                    answer.cancelled, answer.seconds = True, time.monotonic() - started
                    open_streams.discard(stream_id)
            if data_out := conn.data_to_send():
                tls.sendall(data_out)

        while True:
            cancel_due()
            # Noting GOAWAYs: read on until the proxy closes the connection (a GOAWAY may follow the streams' end).
            if (not open_streams and goaways is None) or time.monotonic() >= deadline:
                break
            due = [started + asked[s].cancel_in for s in open_streams if asked[s].cancel_in is not None]  # type: ignore[operator]
            tls.settimeout(max(0.01, min([*due, deadline]) - time.monotonic()))
            try:
                data = tls.recv(65535)
            except TimeoutError:
                continue
            if not data:
                break
            for event in conn.receive_data(data):
                answer = answers.get(getattr(event, "stream_id", 0))
                if isinstance(event, h2.events.ResponseReceived) and answer:
                    answer.headers = dict(event.headers)
                    answer.status = int(answer.headers[":status"])
                elif isinstance(event, h2.events.TrailersReceived) and answer:
                    answer.trailers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived) and answer:
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and answer:
                    if isinstance(event, h2.events.StreamReset):
                        answer.reset = event.error_code
                    answer.seconds = time.monotonic() - started
                    open_streams.discard(event.stream_id)
            if data_out := conn.data_to_send():
                tls.sendall(data_out)
        return [answers[i] for i in ids]
