"""The drain's timing, without a proxy: SIGTERM begins it, the process ends once nothing is in
flight or when drain_s has passed (the calls left then audited as broken off by it), a second
SIGTERM ends it at once, drain_s 0 ends at once. `tests/e2e/test_drain.py` runs it for real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from mitmproxy import connection
from mitmproxy.test import taddons, tflow

from tollgate.configuration.config import Config
from tollgate.configuration.runtime import Loaded
from tollgate.proxy import patches
from tollgate.proxy.stages.process import drain as drain_module
from tollgate.proxy.stages.process.drain import Drain
from tollgate.proxy.state import Shared


class Proxyserver:
    """mitmproxy's proxy server as the stage hands it to `patches.begin_drain`."""


def scenario(
    monkeypatch: pytest.MonkeyPatch, drain_s: float, body: Callable[[Drain, set, Callable[[], bool]], Awaitable[None]]
) -> list[object]:
    """Run `body(drain, calls, stopped)` in a running loop, mitmproxy's master about it; what
    `patches.begin_drain` was given."""
    begun: list[object] = []
    monkeypatch.setattr(patches, "begin_drain", lambda proxyserver: begun.append(proxyserver) or 0)
    monkeypatch.setattr(drain_module, "POLL", 0.01)

    async def run() -> None:
        with taddons.context(Proxyserver()) as tctx:
            shared = Shared()
            shared.loaded = Loaded.build(Config(drain_s=drain_s))
            calls: set = set()
            stage = Drain(shared, lambda: calls)
            await body(stage, calls, tctx.master.should_exit.is_set)

    asyncio.run(run())
    return begun


def with_a_call_at_sigterm(
    monkeypatch: pytest.MonkeyPatch,
    drain_s: float,
    after_sigterm: Callable[[Drain, Callable[[], bool]], Awaitable[None]],
) -> list[object]:
    """`scenario` with one call in flight when SIGTERM comes, then `after_sigterm(drain, stopped)`."""

    async def body(stage: Drain, calls: set, stopped: Callable[[], bool]) -> None:
        calls.add(tflow.tflow())
        stage.sigterm()
        await after_sigterm(stage, stopped)

    return scenario(monkeypatch, drain_s, body)


@pytest.mark.slow
def test_the_drain_ends_once_nothing_is_in_flight(monkeypatch) -> None:
    async def body(stage: Drain, calls: set, stopped: Callable[[], bool]) -> None:
        call, upload = tflow.tflow(), tflow.tflow()
        calls.add(call)
        stage.requestheaders(upload)  # a request whose body is still coming: no call yet, but in flight
        stage.sigterm()
        assert stage.shared.draining
        await asyncio.sleep(0.1)
        assert not stopped()
        calls.discard(call)
        await asyncio.sleep(0.1)
        assert not stopped()  # the upload still
        stage.ended(upload)
        await asyncio.sleep(0.1)
        assert stopped()
        assert stage.shared.shut_down_error == "proxy shut down during the call"  # none was broken off

    assert [type(p).__name__ for p in scenario(monkeypatch, 30, body)] == ["Proxyserver"]


@pytest.mark.slow
def test_past_drain_s_the_calls_left_are_broken_off_saying_why(monkeypatch) -> None:
    async def after_sigterm(stage: Drain, stopped: Callable[[], bool]) -> None:
        await asyncio.sleep(0.1)
        assert not stopped()
        await asyncio.sleep(0.3)
        assert stopped()
        assert stage.shared.shut_down_error == "proxy shut down during the call: drain_s (0.25 s) ran out"

    with_a_call_at_sigterm(monkeypatch, 0.25, after_sigterm)


def test_a_second_sigterm_ends_it_at_once(monkeypatch) -> None:
    async def after_sigterm(stage: Drain, stopped: Callable[[], bool]) -> None:
        await asyncio.sleep(0.05)
        assert not stopped()
        stage.sigterm()
        await asyncio.sleep(0)
        assert stopped()
        stage.done()

    with_a_call_at_sigterm(monkeypatch, 30, after_sigterm)


def test_drain_s_0_stops_at_once_as_mitmproxy_would(monkeypatch) -> None:
    async def after_sigterm(stage: Drain, stopped: Callable[[], bool]) -> None:
        await asyncio.sleep(0)
        assert stopped() and stage.shared.draining

    # Nothing drained: the listening sockets end with the process.
    assert with_a_call_at_sigterm(monkeypatch, 0, after_sigterm) == []


def test_a_connection_accepted_while_draining_is_refused() -> None:
    stage = Drain(Shared(), set)
    client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080), timestamp_start=0)
    stage.client_connected(client)
    assert client.error is None
    stage.shared.draining = True
    stage.client_connected(client)
    assert client.error == "Tollgate is shutting down"


def test_a_goaway_is_written_apart_from_h2s_state() -> None:
    from hyperframe.frame import Frame, GoAwayFrame

    frame, length = Frame.parse_frame_header(memoryview(patches.connection_drain._goaway(2**31 - 1)[:9]))
    frame.parse_body(memoryview(patches.connection_drain._goaway(2**31 - 1)[9 : 9 + length]))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.stream_id, frame.last_stream_id, frame.error_code) == (0, 2**31 - 1, 0)
