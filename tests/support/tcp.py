"""A stub TCP server on 127.0.0.1 for the tests' fake upstreams and proxies: it accepts until closed
and gives each connection to the subclass's `serve`."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any


class TcpServer:
    """Listens on 127.0.0.1 on a free port. A subclass says what a connection gets in `serve` and
    calls `start` once it is ready for the first one. `threaded`: each connection on a thread of its
    own; otherwise one at a time on the accepting thread. `close` waits for the connections' threads
    too unless `join_connections` is off. `accepted` counts connections taken."""

    def __init__(self, *, threaded: bool = True, join_connections: bool = True, poll: float = 0.05) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(poll)  # how soon the accepting loop sees `close`
        self.port: int = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.accepted = 0
        self._threaded = threaded
        self._join_connections = join_connections
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._accept, keep=True)

    def serve(self, sock: socket.socket, number: int) -> None:
        """Answers connection `number` (0, 1, …); the subclass closes `sock`."""
        raise NotImplementedError

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _spawn(self, target: Callable[..., None], *args: Any, keep: bool) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        if keep:
            self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            number, self.accepted = self.accepted, self.accepted + 1
            if self._threaded:
                self._spawn(self.serve, sock, number, keep=self._join_connections)
            else:
                self.serve(sock, number)
