"""UpstreamWatch's decisions on mitmproxy's own test flows: what a failure is recorded as, and which
calls a connection given up while being set up takes with it."""

from __future__ import annotations

import asyncio

from mitmproxy import connection
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from tollgate.calls.call import Call, Failure, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.routing.upstream import timeout_message
from tollgate.proxy.flows import CALL
from tollgate.proxy.stages.upstream.upstream_watch import UpstreamWatch
from tollgate.proxy.state import Shared


def flow_with_call(client: connection.Client | None = None):
    flow = tflow.tflow()
    if client is not None:
        flow.client_conn = client
    flow.request.host, flow.request.port = "127.0.0.1", 4443
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    call.route.upstream = "https://127.0.0.1:4443"
    flow.metadata[CALL] = call
    return flow, call


def watch(timeout: float = 1.0) -> UpstreamWatch:
    shared = Shared()
    shared.apply(Loaded.build(parse_config({"providers": {"openai": {"timeout": timeout}}})), None)
    return UpstreamWatch(shared)


def test_a_call_timed_out_is_answered_504_in_the_providers_shape():
    flow, call = flow_with_call()
    call.answer.error, call.answer.failure = timeout_message(1), Failure.UPSTREAM_TIMEOUT
    flow.error = tflow.terr("connection closed")
    watch().error(flow)
    assert flow.response is not None and flow.response.status_code == 504
    assert flow.response.headers["x-tollgate-error"] == "upstream_timeout"
    assert (call.answer.error, call.answer.failure) == (
        "upstream timeout: no response within 1 s",
        Failure.UPSTREAM_TIMEOUT,
    )


def test_any_other_failure_before_the_headers_is_unreachable():
    flow, call = flow_with_call()
    flow.error = tflow.terr("connection closed")
    watch().error(flow)
    assert flow.response is not None and flow.response.status_code == 502
    assert (call.answer.error, call.answer.failure) == (
        "upstream unreachable: connection closed",
        Failure.UPSTREAM_UNREACHABLE,
    )
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("allow", ())  # a failure, not a refusal


def test_a_call_whose_headers_arrived_is_never_a_timeout():
    flow, call = flow_with_call()
    call.answer.error, call.answer.failure = timeout_message(1), Failure.UPSTREAM_TIMEOUT
    watch().responseheaders(flow)
    assert (call.answer.error, call.answer.failure) == (None, None) and call.answer.first_byte is not None


def test_a_connection_not_set_up_in_time_is_given_up_with_the_calls_waiting_for_it():
    async def scenario() -> None:
        w = watch(timeout=0.01)
        first, first_call = flow_with_call()
        second, second_call = flow_with_call(first.client_conn)  # the same client, the same address
        elsewhere, elsewhere_call = flow_with_call()  # another client's
        server = connection.Server(address=("127.0.0.1", 4443))

        async def opening() -> None:  # stands in for mitmproxy's task that opens the connection
            w.server_connect(server_hooks.ServerConnectionHookData(server=server, client=first.client_conn))
            await asyncio.sleep(10)

        task = asyncio.get_running_loop().create_task(opening())
        await asyncio.sleep(0)
        for flow, call in ((first, first_call), (second, second_call), (elsewhere, elsewhere_call)):
            call.loaded = w.shared.loaded  # as Classify takes it
            w.handle(flow, call)
        await asyncio.sleep(0.02)
        assert w._expire(first, 0.01, w._deadlines[first][2]) is True
        await asyncio.sleep(0)
        assert task.cancelled()
        assert first_call.answer.failure is second_call.answer.failure is Failure.UPSTREAM_TIMEOUT
        assert elsewhere_call.answer.failure is None
        assert (
            w._expire(elsewhere, 0.01, w._deadlines[elsewhere][2]) is False
        )  # no connection of its own yet: tried again later

        # mitmproxy would fail this client's later calls to the address at once with the error of
        # the connection given up; they may try again.
        server.error = "connection cancelled"
        w.server_connect_error(server_hooks.ServerConnectionHookData(server=server, client=first.client_conn))
        assert server.error is None
        w.done()

    asyncio.run(scenario())


def test_a_connection_that_failed_by_itself_keeps_its_error():
    w = watch()
    flow, _ = flow_with_call()
    server = connection.Server(address=("127.0.0.1", 4443), error="certificate verify failed")
    w.server_connect_error(server_hooks.ServerConnectionHookData(server=server, client=flow.client_conn))
    assert server.error == "certificate verify failed"
