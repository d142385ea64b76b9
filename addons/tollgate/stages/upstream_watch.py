"""Upstream failures in the provider's own shape: 502 when unreachable, 504 when it does not
answer within `providers.<name>.timeout`."""

from __future__ import annotations

import asyncio
import time

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from ..call import Call
from ..providers.base import UPSTREAM_TIMEOUT, UPSTREAM_UNREACHABLE
from .shared import CallStage, Shared, call_of, refuse

CLIENT_DISCONNECTED = "client disconnected"
# How often deadlines are checked: a timeout fires at most this much late. One sweep for all calls
# costs less per call than a timer each (docs/performance.md).
SWEEP_INTERVAL = 0.1


class UpstreamWatch(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Each waiting call's deadline (monotonic clock) and timeout.
        self._deadlines: dict[http.HTTPFlow, tuple[float, float]] = {}
        self._sweeper: asyncio.Task | None = None
        # The task that connects to and then reads from each upstream connection, found by the
        # server connection once it is the flow's, and by the client connection while connecting.
        self._task_by_server: dict[str, asyncio.Task] = {}
        self._connecting_for_client: dict[str, asyncio.Task] = {}

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._task_by_server[data.server.id] = task
            self._connecting_for_client[data.client.id] = task

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._connecting_for_client.pop(data.client.id, None)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._forget(data.client, data.server)

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._forget(data.client, data.server)

    def _forget(self, client: connection.Client, server: connection.Server) -> None:
        self._task_by_server.pop(server.id, None)
        self._connecting_for_client.pop(client.id, None)

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        timeout = self.shared.providers[call.provider].timeout
        self._deadlines[flow] = (time.monotonic() + timeout, timeout)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._deadlines:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for flow, (deadline, timeout) in list(self._deadlines.items()):
                if deadline <= now:
                    del self._deadlines[flow]
                    self._expire(flow, timeout)

    def _expire(self, flow: http.HTTPFlow, timeout: float) -> None:
        call = call_of(flow)
        if call is None or flow.response is not None:
            return
        call.error = f"upstream timeout: no response within {timeout:g} s"
        task = self._task_by_server.get(flow.server_conn.id) or self._connecting_for_client.get(flow.client_conn.id)
        if task is not None:
            # mitmproxy cannot kill a flow in transit (issue #4711); ending the upstream
            # connection's task makes it report the failure to the `error` hook.
            task.cancel("tollgate: upstream timeout")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._stop_clock(flow)
        call = call_of(flow)
        if call is not None and not call.answered_by_tollgate:
            call.first_byte = time.time()

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop_clock(flow)
        call = call_of(flow)
        if call is None:
            return
        message = flow.error.msg if flow.error else "unknown error"
        if "Client disconnected" in message or not flow.client_conn.connected:
            call.error = call.error or CLIENT_DISCONNECTED
            return
        if flow.response is not None:
            call.error = call.error or f"upstream broke off the response: {message}"
            return
        if call.error and call.error.startswith("upstream timeout"):
            refuse(flow, call, UPSTREAM_TIMEOUT, f"Tollgate: {call.error} ({call.upstream})")
            return
        call.error = f"upstream unreachable: {message}"
        refuse(flow, call, UPSTREAM_UNREACHABLE, f"Tollgate: {call.upstream} is unreachable: {message}")

    def _stop_clock(self, flow: http.HTTPFlow) -> None:
        self._deadlines.pop(flow, None)

    def done(self) -> None:
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
