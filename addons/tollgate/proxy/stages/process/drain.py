"""SIGTERM drains: the process takes no new connection, lets the calls in flight end (up to
`drain_s`), then exits 0. mitmproxy's own SIGTERM ends the process at once, breaking off every call,
and a rolling restart (Kubernetes, Docker, a fleet's supervisor) would lose them.

At SIGTERM (`patches.begin_drain`): /healthz says `draining`; the listening sockets close, so a
client that connects now is refused (a balancer tries another instance); every connection that
carries no request is closed; the others close as their requests end (HTTP/1 answers say
`Connection: close`, HTTP/2 gets GOAWAY). A Responses API WebSocket closes (1001, going away) once
its responses in flight have ended, taking no new one meanwhile (`ResponsesSocket.drain`). A Realtime
session is one call: it is waited for like any other.

The process exits once no call is in flight (every one audited as it ended), or when `drain_s` has
passed: the calls still in flight are then broken off and audited with `shut_down_error` saying so.
A second SIGTERM, or SIGINT, ends the drain at once, auditing likewise. In flight are the calls not
yet ended (a WebSocket that is a call until it closes) and every request whose head has come and
whose answer has not ended; a tunnel to a host Tollgate does not decrypt is not waited for."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Collection, Sequence

from mitmproxy import connection, ctx, http

from tollgate.configuration.config import DRAIN_S
from tollgate.proxy import patches
from tollgate.proxy.state import SHUT_DOWN, Shared

logger = logging.getLogger(__name__)

POLL = 0.05  # seconds between two looks at the calls in flight, while draining


class Drain:
    def __init__(
        self,
        shared: Shared,
        calls: Callable[[], Collection[http.HTTPFlow]],
        draining: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.shared = shared
        self._calls = calls  # the flows of the calls not yet ended (the audit's), WebSockets among them
        self._draining = tuple(draining)  # told when the drain begins (the Responses WebSockets)
        # The requests from their head to their answer's end: one whose body is still coming is no
        # call yet, and will be one.
        self._requests: set[http.HTTPFlow] = set()
        self._task: asyncio.Task[None] | None = None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._requests.add(flow)

    def ended(self, flow: http.HTTPFlow) -> None:
        """At `response` (a WebSocket's upgrade: a call's WebSocket stays in flight with its call)
        and at `error`."""
        self._requests.discard(flow)

    def _in_flight(self) -> int:
        calls = self._calls()
        return len(self._requests.union(calls)) if self._requests else len(calls)

    def load(self, loader: object) -> None:
        patches.drain_connections()

    def running(self) -> None:
        # In place of mitmproxy's own handler, which shuts down at once. SIGINT keeps mitmproxy's.
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.sigterm)
        except NotImplementedError:  # an event loop without signal handlers (Windows)
            logger.warning("Tollgate: this event loop takes no signal handler: SIGTERM stops at once, without a drain")

    def client_connected(self, client: connection.Client) -> None:
        """A connection accepted just before the listening sockets closed: refused as they are."""
        if self.shared.draining:
            client.error = "Tollgate is shutting down"

    def sigterm(self) -> None:
        if self.shared.draining:
            logger.info("Tollgate: a second SIGTERM: the drain ends now")
            ctx.master.shutdown()
            return
        loaded = self.shared.loaded
        drain_s = loaded.config.drain_s if loaded is not None else DRAIN_S
        self.shared.draining = True
        calls = self._in_flight()
        if drain_s == 0:
            logger.info(f"Tollgate: SIGTERM: stopping now (drain_s: 0), {calls} call(s) in flight")
            ctx.master.shutdown()
            return
        closed = 0
        try:
            closed = patches.begin_drain(ctx.master.addons.get("proxyserver"))
            for draining in self._draining:
                draining()
        except Exception:  # the calls in flight are still given their time
            logger.exception("Tollgate: beginning the drain failed")
        logger.info(
            f"Tollgate: SIGTERM: draining: no new connection taken, {closed} idle one(s) closed, {calls} call(s) in"
            f" flight given up to {drain_s:g} s to end"
        )
        self._task = asyncio.get_running_loop().create_task(self._until_drained(drain_s))

    async def _until_drained(self, drain_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while self._in_flight() and loop.time() < deadline:
            await asyncio.sleep(min(POLL, max(0.0, deadline - loop.time())))
        left = self._in_flight()
        if left:
            self.shared.shut_down_error = f"{SHUT_DOWN}: drain_s ({drain_s:g} s) ran out"
            logger.warning(f"Tollgate: drained for {drain_s:g} s (drain_s): {left} call(s) broken off")
        else:
            logger.info("Tollgate: drained: every call has ended")
        ctx.master.shutdown()

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
