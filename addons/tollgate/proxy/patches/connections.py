"""Connections mitmproxy ends too soon or not at all: a socket whose reading task was cancelled
while it waited, and an HTTP/2 connection its client closes gracefully with answers to come.

What it changes in mitmproxy (pinned by `test_what_mitmproxy_does`):
- `mitmproxy.proxy.server.ConnectionHandler.handle_connection`, wrapped: without it, a task
  cancelled while it waits for `_server_event_lock` leaves its socket open until the process ends.
- `mitmproxy.proxy.layers.http._http2.BufferedH2Connection._receive_goaway_frame` (h2's), wrapped:
  without it, a client's GOAWAY with NO_ERROR ends the connection at once, answers cut off."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.errors
import h2.events
from mitmproxy import connection
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection
from mitmproxy.proxy.server import ConnectionHandler


def close_connections_cancelled_while_waiting() -> None:
    """mitmproxy closes a connection by cancelling the task that reads it, which then closes its
    socket; but a cancellation that lands while that task waits to hand what it read to the layers
    (another task, such as a hook's reply, holds the lock) escapes before the socket is closed.
    The socket then stays open, unread, until the process ends: a client that keeps sending while
    the proxy answers and closes (a head cut for its size) is never cut off. Taught here, the task
    closes the socket on its way out whatever cancelled it."""
    handler_class = ConnectionHandler
    if getattr(handler_class, "_tollgate_closes_cancelled", False):
        return
    handle_connection_of = handler_class.handle_connection

    async def handle_connection(self: Any, conn: connection.Connection) -> None:
        try:
            await handle_connection_of(self, conn)
        except asyncio.CancelledError:
            io = self.transports.pop(conn, None)  # still there: it escaped before closing the socket
            if io is not None and io.writer is not None:
                conn.state = connection.ConnectionState.CLOSED
                try:
                    io.writer.close()
                except OSError:
                    pass
            raise

    handler_class.handle_connection = handle_connection  # type: ignore[method-assign, assignment]
    handler_class._tollgate_closes_cancelled = True  # type: ignore[attr-defined]


def finish_streams_after_a_clients_goaway() -> None:
    """A client may close an HTTP/2 connection gracefully while its requests are in flight: GOAWAY
    with NO_ERROR, then the answers to the streams it opened, then its socket closed. (The AWS SDK
    for JavaScript does so once an answer's headers have come, on the connection it opens for one
    call.) A client's GOAWAY names the last of the streams the server opened, never its own. h2
    takes any GOAWAY as the connection's end and mitmproxy closes it at once, answers cut off.
    Taught here, a client's graceful GOAWAY leaves the connection open, for the answers to end; the
    client closes it. Also when its answers have all been sent: the client may not have read them
    yet, and Node destroys a stream whose socket closes before it was read (the SDK's event
    stream then fails with "Premature close"). Any other GOAWAY ends the connection as before."""
    connection_class = BufferedH2Connection
    if getattr(connection_class, "_tollgate_finishes_after_goaway", False):
        return
    receive_goaway_of = connection_class._receive_goaway_frame

    def receive_goaway(self: Any, frame: Any) -> Any:
        if not self.config.client_side and frame.error_code == h2.errors.ErrorCodes.NO_ERROR:
            return [], []
        return receive_goaway_of(self, frame)

    connection_class._receive_goaway_frame = receive_goaway  # type: ignore[method-assign]
    connection_class._tollgate_finishes_after_goaway = True  # type: ignore[attr-defined]
