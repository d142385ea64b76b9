"""Tollgate's patches of mitmproxy that no end-to-end test can time: a connection cancelled while
its reader waits for the event lock still has its socket closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mitmproxy import options
from mitmproxy.proxy import mode_specs, server

from tollgate.proxy import patches


class Writer:
    """What mitmproxy's handler needs of an asyncio StreamWriter."""

    def __init__(self) -> None:
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def close(self) -> None:
        self.closed = True


class Handler(server.LiveConnectionHandler):
    async def handle_hook(self, hook: Any) -> None:
        pass


def test_a_connection_cancelled_while_its_reader_waits_for_the_event_lock_is_closed() -> None:
    patches.close_connections_cancelled_while_waiting()

    async def scenario() -> Writer:
        reader, writer = asyncio.StreamReader(), Writer()
        handler = Handler(reader, writer, options.Options(), mode_specs.ProxyMode.parse("regular"))  # type: ignore[arg-type]
        reader.feed_data(b"more of a head that was cut")
        # Another task (a hook's reply, a timer) holds the lock and closes the connection, which
        # cancels the reader's task while it waits to hand over what it read.
        async with handler._server_event_lock:
            task = asyncio.create_task(handler.handle_connection(handler.client))
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handler.client not in handler.transports
        return writer

    assert asyncio.run(scenario()).closed
