"""A forward proxy a test puts in front of Tollgate: a CONNECT to one of the hosts it is given goes
to a fake of the test's own on 127.0.0.1, and everything else to Tollgate, byte for byte as the
client sent it. For a client that calls, besides the LLM APIs, a host Tollgate tunnels (Gemini CLI
checks its token with Google itself): that one host is the test's fake, the rest goes through
Tollgate unchanged."""

from __future__ import annotations

import select
import socket
import socketserver
import threading

MAX_HEAD = 64 * 1024
IDLE_S = 120.0  # a connection with nothing to relay for this long is closed


def relay(a: socket.socket, b: socket.socket) -> None:
    """Both ways until both sides have ended (or nothing came for IDLE_S)."""
    open_from = {a: b, b: a}
    while open_from:
        ready, _, _ = select.select(list(open_from), [], [], IDLE_S)
        if not ready:
            return
        for source in ready:
            target = open_from[source]
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    target.sendall(data)
                    continue
                except OSError:
                    pass
            del open_from[source]
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class FrontProxy:
    """On a free port of 127.0.0.1: `routes` (host name to a local port) for CONNECTs to those hosts,
    `proxy_port` (Tollgate's) for every other request. `connects`: each CONNECT's target, in order."""

    def __init__(self, proxy_port: int, routes: dict[str, int]) -> None:
        self.connects: list[str] = []
        lock = threading.Lock()
        front = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client: socket.socket = self.request
                head = b""
                while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                    data = client.recv(65536)
                    if not data:
                        return
                    head += data
                method, _, rest = head.partition(b" ")
                target = rest.partition(b" ")[0].decode("latin-1")
                host = target.rpartition(":")[0].lower()
                if method == b"CONNECT":
                    with lock:
                        front.connects.append(target)
                if method == b"CONNECT" and host in routes:
                    with socket.create_connection(("127.0.0.1", routes[host])) as fake:
                        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        fake.sendall(head.partition(b"\r\n\r\n")[2])
                        relay(client, fake)
                    return
                with socket.create_connection(("127.0.0.1", proxy_port)) as tollgate:
                    tollgate.sendall(head)  # as it came
                    relay(client, tollgate)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
