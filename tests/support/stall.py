"""An upstream that accepts TCP connections and then says nothing: a TLS handshake with it never
completes."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Listens on 127.0.0.1, reads what a connection sends and never answers. `hung_up` counts the
    connections the other side has closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.accepted = 0
        self.hung_up = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._sockets.append(sock)
            thread = threading.Thread(target=self._hold, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _hold(self, sock: socket.socket) -> None:
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
        self._closing.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()
