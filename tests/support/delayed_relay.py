"""A TCP relay to a server on 127.0.0.1 that delays what its clients send by a fixed time (all of
it, or the pieces holding a given command; their order kept), and passes the server's answers at
once: a store slow to take one process's writes, while the others reach it directly."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterator

from tests.support.tcp import TcpServer

POLL = 0.02  # seconds: how soon each side of a connection sees the relay closing


class DelayedRelay(TcpServer):
    """Listens on 127.0.0.1 (`port`); each connection goes on to `target` (a port of 127.0.0.1),
    what the client sends `delay` seconds late: each piece holding `holding` (all when None), and
    what follows it meanwhile."""

    def __init__(self, target: int, delay: float, holding: bytes | None = None) -> None:
        super().__init__()
        self.target = target
        self.delay = delay
        self.holding = holding
        self.start()

    def serve(self, sock: socket.socket, number: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            sock.close()
            return
        sock.settimeout(POLL)
        upstream.settimeout(POLL)
        queued: deque[tuple[float, bytes]] = deque()
        lock = threading.Lock()
        ended = threading.Event()
        threads = [
            threading.Thread(target=self._read_client, args=(sock, queued, lock, ended), daemon=True),
            threading.Thread(target=self._send_late, args=(upstream, queued, lock, ended), daemon=True),
            threading.Thread(target=self._answer, args=(upstream, sock, ended), daemon=True),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        ended.set()
        sock.close()
        upstream.close()

    def _over(self, ended: threading.Event) -> bool:
        return ended.is_set() or self._closing.is_set()

    def _received(self, sock: socket.socket, ended: threading.Event) -> Iterator[bytes]:
        """What `sock` receives, piece by piece, until it closes or fails or the relay is over."""
        while not self._over(ended):
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            yield data

    def _read_client(
        self, sock: socket.socket, queued: deque[tuple[float, bytes]], lock: threading.Lock, ended: threading.Event
    ) -> None:
        for data in self._received(sock, ended):
            late = self.holding is None or self.holding in data
            with lock:
                queued.append((time.monotonic() + (self.delay if late else 0.0), data))
        ended.set()

    def _send_late(
        self, upstream: socket.socket, queued: deque[tuple[float, bytes]], lock: threading.Lock, ended: threading.Event
    ) -> None:
        while not self._over(ended):
            with lock:
                due = queued[0] if queued and queued[0][0] <= time.monotonic() else None
                if due is not None:
                    queued.popleft()
            if due is None:
                time.sleep(POLL / 2)
                continue
            try:
                upstream.sendall(due[1])
            except OSError:
                break
        ended.set()

    def _answer(self, upstream: socket.socket, sock: socket.socket, ended: threading.Event) -> None:
        for data in self._received(upstream, ended):
            try:
                sock.sendall(data)
            except OSError:
                break
        ended.set()
