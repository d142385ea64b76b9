"""A TLS server on 127.0.0.1 standing in for a provider: it records what it received and answers
with what the test scripted."""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import trustme
from tests.support.quiet_handler import QuietHandler


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    sni: str | None
    trailers: list[str] = field(default_factory=list)  # a chunked body's trailer lines
    client_cert: str | None = None  # the common name of the certificate the client presented

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the headers
    # A streamed answer: these pieces, chunked, each written and flushed on its own. Before
    # piece i > 0, `gate(i)` may hold the stream back (e.g. until the client has piece i - 1).
    chunks: list[bytes] | None = None
    gate: Callable[[int], None] | None = None
    reset_after: int | None = None  # drop the connection after this many pieces
    trailers: list[tuple[str, str]] = field(default_factory=list)  # after the last piece
    end_delay: float = 0.0  # after the last piece, before the body's end (a stream closed a while later)
    sent_at: list[float] = field(default_factory=list)

    def encoded(self) -> bytes:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode()
        return self.body


Handler = Callable[[Received], Reply]


class FakeUpstream:
    def __init__(
        self,
        ca: trustme.CA,
        handler: Handler | None = None,
        names: tuple[str, ...] = (),
        client_ca: trustme.CA | None = None,
    ) -> None:
        """`names`: more host names its certificate covers, for a test that sends them here by
        name (`support/resolve.py`); `client_ca`: only a client with a certificate of it is served
        (mutual TLS)."""
        self.received: list[Received] = []
        self.handler: Handler = handler or (lambda r: Reply(200, {"ok": True}))
        self.handshake_delay = 0.0  # before each connection's TLS handshake
        # The delays of the next connections, one each in the order they are accepted, before
        # `handshake_delay` again: a test that needs one connection slow and the next one quick.
        self.handshake_delays: list[float] = []
        self._lock = threading.Lock()
        cert = ca.issue_cert("127.0.0.1", "localhost", *names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(context)
        snis: dict[int, str | None] = {}
        delays: dict[int, float] = {}  # a connection's handshake delay, chosen when it was accepted

        def remember_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            snis[id(sock)] = name

        context.sni_callback = remember_sni
        upstream = self

        class RequestHandler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                time.sleep(delays.pop(id(self.request), 0.0))  # the handshake is done by the first read
                super().setup()

            def _serve(self) -> None:
                trailers: list[str] = []
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    body = self._read_chunked(trailers)
                else:
                    length = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(length) if length else b""
                peer = self.connection.getpeercert() if client_ca is not None else None
                names = [value for rdn in (peer or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
                received = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    snis.get(id(self.connection)),
                    trailers,
                    names[0] if names else None,
                )
                with upstream._lock:
                    upstream.received.append(received)
                reply = upstream.handler(received)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.chunks is not None:
                    self._stream(reply)
                    return
                payload = reply.encoded()
                self.send_response(reply.status)
                headers = {"content-type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD's answer has no body
                    self.wfile.write(payload)

            def _read_chunked(self, trailers: list[str]) -> bytes:
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                            trailers.append(line.decode("latin-1").strip())
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()

            def _stream(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in {"content-type": "text/event-stream", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                for i, piece in enumerate(reply.chunks or []):
                    if reply.reset_after is not None and i >= reply.reset_after:
                        self.connection.close()
                        self.close_connection = True
                        return
                    if i and reply.gate is not None:
                        reply.gate(i)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    reply.sent_at.append(time.monotonic())
                time.sleep(reply.end_delay)
                fields = b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in reply.trailers)
                self.wfile.write(b"0\r\n%s\r\n" % fields)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.server.daemon_threads = True
        print_error = self.server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            """A client gone while it was being answered (the proxy cut a stream, a test ended) is
            no error of the fake's: said, it would land in whatever test reads stderr next."""
            if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
                print_error(request, client_address)

        self.server.handle_error = handle_error  # type: ignore[method-assign]
        raw_accept = self.server.socket.accept

        def accept_tls():
            sock, addr = raw_accept()
            tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.settimeout(30)
            with upstream._lock:
                delays[id(tls)] = (
                    upstream.handshake_delays.pop(0) if upstream.handshake_delays else upstream.handshake_delay
                )
            return tls, addr

        self.server.get_request = accept_tls  # type: ignore[method-assign]
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serving_text(ca: trustme.CA, text: bytes) -> Iterator[FakeUpstream]:
    """A TLS server with a certificate of `ca`, answering every request with `text` (text/plain),
    until the block ends."""
    server = FakeUpstream(ca, lambda r: Reply(200, text, {"content-type": "text/plain"}))
    try:
        yield server
    finally:
        server.close()
