"""The one addon mitmproxy sees (`Gateway`) and the call steps (`CallSteps`): each hook runs its
steps in order, a failing call step refuses the call (mitmproxy would skip the later addons and
forward it), a step that returns an awaitable is awaited before the next; the same for every kind of
call, an MCP server's request among them."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from tollgate.calls.call import Call, Caller, Route
from tollgate.formats.mcp.messages import McpRequest
from tollgate.formats.openai_realtime import REALTIME
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.proxy import pipeline
from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps, Gateway
from tollgate.proxy.stages.identity.identify import Identify
from tollgate.proxy.stages.transport.realtime_socket import RealtimeSession, RealtimeSocket


class Broken:
    def handle(self, flow, call):
        raise RuntimeError("boom")


def test_a_failing_call_step_refuses_the_call_in_the_providers_shape():
    flow = tflow.tflow()
    call = Call(Route.as_called("anthropic"), "api.anthropic.com", "POST", "/v1/messages")
    flow.metadata[CALL] = call
    CallSteps(Broken().handle).at_request(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert flow.response.headers["x-tollgate-error"] == "internal_error"
    assert b'"type": "error"' in flow.response.content and b"did not forward it" in flow.response.content
    assert call.answer.error == "internal error in Broken" and call.answer.answered_by_tollgate


def test_a_failing_step_refuses_an_mcp_request_as_a_json_rpc_error_for_each_of_its_requests():
    flow = tflow.tflow()
    server = McpServer(name="docs", url="https://mcp.example.com/mcp")
    exchange = McpExchange(server, "POST", (McpRequest("tools/list", 1), McpRequest("tools/list", 2)), batch=True)
    seen: list[str] = []
    assert CallSteps(Broken().handle, Handles("b", seen).handle).run(flow, exchange) is None
    assert seen == [] and flow.response is not None and flow.response.status_code == 500
    assert flow.response.headers["x-tollgate-error"] == "internal_error"
    message = "Tollgate failed on this request and did not forward it."
    assert json.loads(flow.response.content) == [
        {"jsonrpc": "2.0", "id": i, "error": {"code": -32001, "message": message}} for i in (1, 2)
    ]
    assert (exchange.answer.error, exchange.decision, exchange.answer.answered_by_tollgate) == (
        "internal error",
        "deny",
        True,
    )


def test_an_mcp_requests_steps_are_awaited_in_order_and_the_first_refusal_ends_them():
    seen: list[str] = []
    exchange = McpExchange(McpServer(name="docs", url="https://mcp.example.com/mcp"), "GET")
    steps = CallSteps(Handles("a", seen).handle, Awaits("b", seen, "refuse").handle, Handles("c", seen).handle)
    pending = steps.run(tflow.tflow(), exchange)
    assert pending is not None and seen == ["a.handle", "b.handle"]
    asyncio.run(pending)
    assert seen == ["a.handle", "b.handle", "b.awaited"]


# ---- the one addon mitmproxy sees


class Recorder:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def request(self, flow) -> None:
        self.seen.append(f"{self.name}.request")

    def requestheaders(self, flow) -> None:
        self.seen.append(f"{self.name}.requestheaders")

    def response(self, flow) -> None:
        self.seen.append(f"{self.name}.response")

    def done(self) -> None:
        self.seen.append(f"{self.name}.done")


def test_gateway_runs_each_hook_through_its_steps_in_order():
    seen: list[str] = []
    a, b, only = Recorder("a", seen), Recorder("b", seen), Recorder("only", seen)
    gateway = Gateway(request=[a.request, b.request], response=[only.response], done=[a.done, b.done])
    flow = tflow.tflow()
    gateway.request(flow)
    gateway.response(flow)
    gateway.done()
    assert seen == ["a.request", "b.request", "only.response", "a.done", "b.done"]
    # mitmproxy looks hooks up by name: one with no steps is not there to be called
    assert not hasattr(gateway, "error") and not hasattr(gateway, "addons")


def test_gateway_refuses_a_hook_mitmproxy_does_not_have():
    with pytest.raises(ValueError, match="not mitmproxy hooks: requets"):
        Gateway(requets=[Recorder("a", []).request])


def test_gateway_stops_a_hook_at_a_failing_step_as_mitmproxy_does_for_a_scripts_addons():
    seen: list[str] = []

    def raises(flow) -> None:
        raise RuntimeError("boom")

    gateway = Gateway(request=[Recorder("a", seen).request, raises, Recorder("b", seen).request])
    with pytest.raises(RuntimeError):
        gateway.request(tflow.tflow())
    assert seen == ["a.request"]


class Handles:
    def __init__(self, name: str, seen: list[str], refuses: bool = False) -> None:
        self.name, self.seen, self.refuses = name, seen, refuses

    def handle(self, flow, call) -> None:
        self.seen.append(f"{self.name}.handle")
        if self.refuses:
            flow.response = tflow.tresp()


def _call_flow(streamed_upload: bool = False):
    flow = tflow.tflow()
    flow.metadata[CALL] = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    flow.metadata[CALL].request.streamed_upload = streamed_upload
    return flow


def _gateway(call_steps: CallSteps, plain: Recorder) -> Gateway:
    return Gateway(
        requestheaders=[call_steps.at_headers, plain.requestheaders], request=[call_steps.at_request, plain.request]
    )


def test_call_steps_run_in_order_at_the_hook_their_call_takes():
    seen: list[str] = []
    gateway = _gateway(CallSteps(*(Handles(n, seen).handle for n in "abc")), Recorder("plain", seen))
    gateway.requestheaders(_call_flow())
    assert seen == ["plain.requestheaders"]
    seen.clear()
    gateway.request(_call_flow())
    assert seen == ["a.handle", "b.handle", "c.handle", "plain.request"]
    seen.clear()
    flow = _call_flow(streamed_upload=True)
    gateway.requestheaders(flow)
    gateway.request(flow)
    assert seen == ["a.handle", "b.handle", "c.handle", "plain.requestheaders", "plain.request"]
    seen.clear()
    gateway.request(tflow.tflow())  # no call: not Tollgate's
    assert seen == ["plain.request"]


def test_a_call_outside_the_model_api_runs_the_passthrough_steps_in_their_place():
    seen: list[str] = []
    steps = CallSteps(
        *(Handles(n, seen).handle for n in "abc"),
        passthrough=(Handles("p", seen).handle, Awaits("q", seen).handle, Handles("r", seen).handle),
    )
    flow = _call_flow()
    flow.metadata[CALL].classification = Classification(passthrough=True)
    asyncio.run(_gateway(steps, Recorder("plain", seen)).request(flow))
    assert seen == ["p.handle", "q.handle", "q.awaited", "r.handle", "plain.request"]


def test_no_call_step_runs_after_one_answered_the_call():
    seen: list[str] = []
    steps = CallSteps(Handles("a", seen, refuses=True).handle, Handles("b", seen).handle, Handles("c", seen).handle)
    _gateway(steps, Recorder("plain", seen)).request(_call_flow())
    assert seen == ["a.handle", "plain.request"]


class Awaits:
    """A call step whose work ends in an awaitable, as the decide stage's does when its decision
    comes from the policy's worker process."""

    def __init__(self, name: str, seen: list[str], outcome: str = "allow") -> None:
        self.name, self.seen, self.outcome = name, seen, outcome

    def handle(self, flow, call):
        self.seen.append(f"{self.name}.handle")
        return self._finish(flow)

    async def _finish(self, flow) -> None:
        await asyncio.sleep(0)
        self.seen.append(f"{self.name}.awaited")
        if self.outcome == "raise":
            raise RuntimeError("boom")
        if self.outcome == "refuse":
            flow.response = tflow.tresp()


def test_gateway_returns_an_awaitable_only_when_a_step_did_and_runs_the_later_steps_after_it():
    seen: list[str] = []
    sync = _gateway(CallSteps(Handles("a", seen).handle, Handles("b", seen).handle), Recorder("plain", seen))
    assert sync.request(_call_flow()) is None and seen == ["a.handle", "b.handle", "plain.request"]
    seen.clear()
    steps = CallSteps(Handles("a", seen).handle, Awaits("b", seen).handle, Handles("c", seen).handle)
    gateway = _gateway(steps, Recorder("plain", seen))
    pending = gateway.request(_call_flow())
    assert pending is not None and seen == ["a.handle", "b.handle"]  # nothing after b has run yet
    asyncio.run(pending)
    assert seen == ["a.handle", "b.handle", "b.awaited", "c.handle", "plain.request"]


def _through_an_awaited_step_that_ends(outcome: str) -> tuple[http.HTTPFlow, list[str]]:
    """A call through awaited step `a` (ending as `outcome` says), then `b`, and a plain step: the
    flow, and the steps seen at work."""
    seen: list[str] = []
    steps = CallSteps(Awaits("a", seen, outcome).handle, Handles("b", seen).handle)
    flow = _call_flow()
    asyncio.run(_gateway(steps, Recorder("plain", seen)).request(flow))
    return flow, seen


def test_no_call_step_runs_after_an_awaited_one_that_answered_the_call():
    flow, seen = _through_an_awaited_step_that_ends("refuse")
    # Plain steps (redaction, audit) still see the refused call, as on the synchronous path.
    assert seen == ["a.handle", "a.awaited", "plain.request"]
    assert flow.response is not None and flow.response.status_code == 200


def test_an_awaited_call_step_that_fails_refuses_the_call_in_the_providers_shape():
    flow, seen = _through_an_awaited_step_that_ends("raise")
    assert seen == ["a.handle", "a.awaited", "plain.request"]
    assert flow.response is not None and flow.response.status_code == 500
    assert flow.response.headers["x-tollgate-error"] == "internal_error"
    assert flow.metadata[CALL].answer.error == "internal error in Awaits"


def test_tollgates_pipeline_is_one_addon_with_its_call_steps_in_order():
    gateway = pipeline.gateway()
    # The call is in flight once classified (Audit), before any step that may be awaited.
    assert [type(step.__self__).__name__ for step in gateway.steps["request"][:4]] == [
        "Classify",
        "Audit",
        "WebSocket",
        "EgressGate",  # its connection recorded by its calls from here
    ]
    call_steps = gateway.steps["request"][4].__self__
    assert [type(step.__self__).__name__ for step in call_steps.steps] == [
        "AuditGate",
        "Identify",
        "Guard",
        "Overriding",
        "Translate",
        "Destination",
        "Ledger",
        "Decide",
        "Agents",  # `agents`: a chat request's provenance, taint and injection signals
        "Quarantines",  # an injection in its outside content quarantines a personal caller
        "Guard",  # its answer's detectors compiled (`answer_ready`)
        "RollUp",
        "AskForUsage",
        "Tracing",
        "Credential",
        "Attempts",  # a failed attempt looked at before it is answered (retries, fallbacks)
        "UpstreamWatch",
        "AuditGate",  # in flight from here (`sent`)
    ]
    # A call outside the model API: refused with a virtual credential, else sent with its own.
    assert [step.__name__ for step in call_steps.passthrough] == [
        "handle",
        "own_credential_only",
        "handle",
        "own",
        "handle",
        "sent",
    ]
    assert [type(step.__self__).__name__ for step in call_steps.passthrough] == [
        "AuditGate",
        "Identify",
        "Destination",
        "Credential",
        "UpstreamWatch",
        "AuditGate",
    ]
    assert gateway.steps["requestheaders"][7].__self__ is call_steps
    # A failed attempt: its clock stopped, then failover in one stage.
    assert [type(step.__self__).__name__ for step in gateway.steps["attempt_failed"]] == ["UpstreamWatch", "Attempts"]
    for hook in (
        "load",
        "configure",
        "running",
        "client_connected",
        "done",
        "requestheaders",
        "request",
        "responseheaders",
        "response",
        "error",
        "http_connect",
        "server_connect",
        "server_disconnected",
        "websocket_message",
        "websocket_end",
    ):
        assert callable(getattr(gateway, hook)), hook


def test_a_step_in_the_pipelines_shared_list_is_in_every_kind_of_calls_steps():
    def scan(flow, call):
        pass

    gateway = pipeline.gateway(every_call=(scan,))
    assert set(gateway.kinds) == {
        "http",
        "passthrough",
        "session",
        "responses_response",
        "realtime_message",
        "realtime_response",
        "mcp_request",
        "failover",
    }
    for kind, steps in gateway.kinds.items():
        assert steps.count(scan) == 1, kind
    # The kinds' lists are the ones their calls run.
    call_steps = gateway.steps["request"][4].__self__
    assert gateway.kinds["http"] is call_steps.steps
    assert all(scan not in steps for steps in pipeline.gateway().kinds.values())


def test_a_realtime_response_is_refused_401_once_its_sessions_virtual_key_expired():
    """Each Realtime response passes the identity check a Responses WebSocket's does."""
    gateway = pipeline.gateway()
    realtime_response = gateway.kinds["realtime_response"]
    assert Identify.unexpired in realtime_response
    assert Identify.unexpired in gateway.kinds["responses_response"]

    session = Call(Route.as_called("openai"), "api.openai.com", "GET", "/v1/realtime")
    session.classification = Classification(REALTIME, "gpt-realtime")
    session.caller = Caller("alice", ("support",), "virtual_key", key_expires=time.time() - 1)
    realtime_socket = next(
        step.__self__ for step in gateway.steps["websocket_message"] if isinstance(step.__self__, RealtimeSocket)
    )
    call, flow = realtime_socket._response_call(
        tflow.twebsocketflow(), RealtimeSession(session, limited=True), RequestFacts(stream=True), b"{}"
    )
    assert call.caller.key_expires == session.caller.key_expires
    Identify.unexpired(flow, call)
    assert flow.response.status_code == 401
