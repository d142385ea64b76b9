"""Upstream failures in the provider's own shape: 502 when unreachable, 504 when it does not
answer within `providers.<name>.timeout` (an MCP server: within its `timeout`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import server_hooks

from tollgate.calls.call import Call, Failure
from tollgate.formats.refusals import UPSTREAM_TIMEOUT, UPSTREAM_UNREACHABLE
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.routing.upstream import timeout_message
from tollgate.proxy import patches
from tollgate.proxy.flows import CLIENT_DISCONNECTED, call_of, refuse
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

# How often deadlines are checked: a timeout fires at most this much late. One sweep for all calls
# costs less per call than a timer each (docs/performance.md).
SWEEP_INTERVAL = 0.1


class SettingUp(NamedTuple):
    """An upstream connection not yet ready for requests (connecting, or in its TLS handshake)."""

    task: asyncio.Task  # mitmproxy's task that opens and then reads the connection
    client: str  # the id of the client connection it is for
    server: connection.Server


class UpstreamWatch:
    """A call that has not had its upstream's response headers by its deadline ends with a 504.

    Waiting for a connection to be set up, the call is ended by abandoning that connection (and with
    it every call waiting for it, all timed out). Once its request has gone upstream, it is ended
    alone, by mitmproxy's HTTP layer (`patches.EndIfWaiting`), which decides in order with the
    upstream's answer: a call whose headers arrived first is never a timeout."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # Each waiting flow's deadline (monotonic clock), timeout, and what notes it timed out.
        self._deadlines: dict[http.HTTPFlow, tuple[float, float, Callable[[], None]]] = {}
        self._sweeper: asyncio.Task | None = None
        self._open: set[str] = set()  # ids of the upstream connections open or opening
        self._setting_up: dict[str, SettingUp] = {}  # by server connection id
        self._abandoned: set[str] = set()  # ids of the connections given up while being set up

    def load(self, _loader: object) -> None:
        patches.end_flows_waiting_for_response()
        patches.note_requests_sent(_request_sent)
        patches.note_flows_ended_by_client()
        patches.resend_failed_attempts()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._open.add(data.server.id)
        task = asyncio.current_task()
        if task is not None:
            self._setting_up[data.server.id] = SettingUp(task, data.client.id, data.server)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if not data.server.tls:
            self._setting_up.pop(data.server.id, None)

    def tls_established_server(self, data: tls.TlsData) -> None:
        self._setting_up.pop(data.conn.id, None)

    def tls_failed_server(self, data: tls.TlsData) -> None:
        self._may_be_tried_again(data.conn)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._may_be_tried_again(data.server)
        self._forget(data.server)

    def _may_be_tried_again(self, server: connection.Connection) -> None:
        """mitmproxy fails a client's later requests to an address at once with the error of a
        connection to it that could not be set up; given up for a timeout, the next may try again."""
        if server.id in self._abandoned:
            self._abandoned.discard(server.id)
            server.error = None

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._forget(data.server)

    def _forget(self, server: connection.Server) -> None:
        self._open.discard(server.id)
        self._setting_up.pop(server.id, None)
        self._abandoned.discard(server.id)

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        settings = call.loaded.providers[call.route.target.provider]
        self._start_clock(flow, settings.timeout, partial(_timed_out, call, settings.timeout))

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> None:
        """A call step of an MCP server's request, last: the clock for the server's response
        headers (its `timeout`). Run out, the request is marked timed out just before its `error`
        hook, which answers it 504 (`Mcp.error`)."""
        self._start_clock(flow, exchange.server.timeout, partial(_mcp_timed_out, exchange))

    def _start_clock(self, flow: http.HTTPFlow, timeout: float, timed_out: Callable[[], None]) -> None:
        self._deadlines[flow] = (time.monotonic() + timeout, timeout, timed_out)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._deadlines:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for flow, (deadline, timeout, timed_out) in list(self._deadlines.items()):
                if deadline > now:
                    continue
                try:
                    expired = self._expire(flow, timeout, timed_out)
                except Exception:  # one call's fault must not stop the watch over the others
                    logger.exception("Tollgate: ending a call that timed out failed")
                    expired = True
                if expired:
                    # Possibly gone already: mitmproxy runs new tasks eagerly, the `error` hook included.
                    self._deadlines.pop(flow, None)

    def _expire(self, flow: http.HTTPFlow, timeout: float, timed_out: Callable[[], None]) -> bool:
        """End the flow for want of an answer; False if there is nothing to end yet (its connection is
        about to be opened)."""
        if flow.response is not None or flow.error is not None:
            return True
        if flow.server_conn.id in self._open:  # the flow has its connection: its request went upstream
            message = timeout_message(timeout)
            try:
                ctx.master.addons.get("proxyserver").inject_event(patches.EndIfWaiting(flow, message, timed_out))
            except ValueError:  # the client has gone: the flow is ending anyway
                pass
            return True
        # Still waiting for a connection: the client's connections to that address not set up yet.
        address = (flow.request.host, flow.request.port)
        client = flow.client_conn.id
        stalled = [s for s in self._setting_up.values() if s.client == client and s.server.address == address]
        if not stalled:
            return False
        for setting_up in stalled:
            # mitmproxy reports the connection failed to every flow waiting for it (the `error` hook).
            self._abandoned.add(setting_up.server.id)
            setting_up.task.cancel("tollgate: upstream timeout")
        for other, (_, _, other_timed_out) in list(self._deadlines.items()):
            waiting = other.client_conn is flow.client_conn and other.server_conn.id not in self._open
            if waiting and other.response is None and (other.request.host, other.request.port) == address:
                other_timed_out()
        return True

    def attempt_failed(self, flow: http.HTTPFlow) -> None:
        """First of an attempt that failed before its answer began (`patches.AttemptFailedHook`):
        its clock stops; a call that goes again has a clock of its own (`Attempts`, `handle`)."""
        self._stop_clock(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._stop_clock(flow)
        call = call_of(flow)
        if call is None or call.answer.answered_by_tollgate:
            return
        call.answer.first_byte = time.time()
        call.answer.request_sent = True  # an answer came from the upstream
        if call.answer.failure is Failure.UPSTREAM_TIMEOUT:  # its connection came after all
            call.answer.failure = call.answer.error = None

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop_clock(flow)
        call = call_of(flow)
        if call is None:
            return
        message = flow.error.msg if flow.error else "unknown error"
        # The client left: its connection closed, or its HTTP/2 stream reset (mitmproxy's message
        # for that reads as an upstream's reset does).
        if patches.ended_by_client(flow) or "Client disconnected" in message or not flow.client_conn.connected:
            if call.answer.error is None:
                call.answer.error, call.answer.failure = CLIENT_DISCONNECTED, Failure.CLIENT_DISCONNECTED
            return
        if flow.response is not None:
            if call.answer.error is None:
                call.answer.error, call.answer.failure = (
                    f"upstream broke off the response: {message}",
                    Failure.UPSTREAM_BROKE_OFF,
                )
            return
        if call.answer.failure is Failure.UPSTREAM_TIMEOUT:
            refuse(flow, call, UPSTREAM_TIMEOUT, f"Tollgate: {call.answer.error} ({call.route.upstream})")
            return
        call.answer.error, call.answer.failure = f"upstream unreachable: {message}", Failure.UPSTREAM_UNREACHABLE
        refuse(flow, call, UPSTREAM_UNREACHABLE, f"Tollgate: {call.route.upstream} is unreachable: {message}")

    def _stop_clock(self, flow: http.HTTPFlow) -> None:
        self._deadlines.pop(flow, None)

    def done(self) -> None:
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()


def _request_sent(flow: http.HTTPFlow) -> None:
    call = call_of(flow)
    if call is not None:
        call.answer.request_sent = True


def _mcp_timed_out(exchange: McpExchange) -> None:
    exchange.answer.timed_out = True
    exchange.answer.error = timeout_message(exchange.server.timeout)


def _timed_out(call: Call, timeout: float) -> None:
    call.answer.error, call.answer.failure = timeout_message(timeout), Failure.UPSTREAM_TIMEOUT
