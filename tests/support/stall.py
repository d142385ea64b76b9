"""An upstream that accepts TCP connections and then says nothing: a TLS handshake with it never
completes."""

from __future__ import annotations

import socket
import threading

from tests.support.tcp import TcpServer


class SilentServer(TcpServer):
    """Listens on 127.0.0.1, reads what a connection sends and never answers. `hung_up` counts the
    connections the other side has closed."""

    def __init__(self) -> None:
        super().__init__()
        self.hung_up = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.start()

    def serve(self, sock: socket.socket, number: int) -> None:
        with self._lock:
            self._sockets.append(sock)
        sock.settimeout(0.05)
        while not self._closing.is_set():
            try:
                if not sock.recv(65536):
                    with self._lock:
                        self.hung_up += 1
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        super().close()
        for sock in self._sockets:
            sock.close()
