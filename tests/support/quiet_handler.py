"""A request handler for the tests' own HTTP servers, and their switch: down and up again."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A `BaseHTTPRequestHandler` that writes no line per request to standard error."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Switchable:
    """A test HTTP server on one port (`port`) that stops listening (`down`: connections refused)
    and listens again (`up`). The subclass's `_make_server` makes each server with `_serve`."""

    port: int
    _serving = False
    _fresh = False  # a server made and not yet started

    def _make_server(self) -> None:
        raise NotImplementedError

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        # Polled every 50 ms, as fake_upstream's: `down` (a test's teardown) waits for a poll.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._fresh = True

    def down(self) -> None:
        """Nothing listens on its port (connections refused) until `up`."""
        if self._serving:
            self._serving = False
            self._server.shutdown()
            self._server.server_close()

    def up(self) -> None:
        """Listening again, on the same port."""
        if not self._serving:
            if not self._fresh:
                self._make_server()
            self._fresh = False
            self._thread.start()
            self._serving = True

    def close(self) -> None:
        self.down()
        if self._fresh:
            self._fresh = False
            self._server.server_close()
