"""OpenAI's Realtime API: the model read from the query exactly or refused, a browser's key taken out
of the subprotocols, usage added up from `response.done` events, and the stage that keeps every
message out of the flow while mitmproxy forwards it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.proxy.layers.websocket import WebsocketConnection
from mitmproxy.test import tflow
from mitmproxy.websocket import WebSocketMessage
from tests.support.examples import examples
from wsproto import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, TextMessage
from wsproto.frame_protocol import Opcode

from tollgate.calls.call import Call, Request, Route
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.raw_headers import header_index
from tollgate.formats.openai_realtime import (
    REALTIME,
    insecure_keys,
    realtime_model,
    response_done_usage,
    summed,
)
from tollgate.formats.usage import Usage
from tollgate.providers import PROVIDERS
from tollgate.proxy import patches
from tollgate.proxy.flows import CALL
from tollgate.proxy.stages.transport.websocket import KEPT_MESSAGES, MAX_MESSAGE, WebSocket
from tollgate.proxy.state import Shared

# ---- the model, from the query


@pytest.mark.parametrize(
    ("query", "model"),
    [
        ("model=gpt-realtime", "gpt-realtime"),
        ("model=gpt-4o-realtime-preview-2024-12-17&intent=x", "gpt-4o-realtime-preview-2024-12-17"),
        ("call_id=rtc_1&model=ft%3Agpt-realtime%3Aorg%3Aa1", "ft:gpt-realtime:org:a1"),
        ("mod%65l=gpt-realtime", "gpt-realtime"),  # the name decoded as servers decode it
        ("model=gpt+realtime", "gpt realtime"),
    ],
)
def test_the_model_is_the_querys_one_model_parameter_decoded(query, model):
    assert realtime_model(query) == model


@pytest.mark.parametrize(
    "query",
    [
        "", "intent=transcription", "call_id=rtc_1", "model=", "model", "model=a&model=b", "model=a&model=a",
        "Model=gpt-realtime", "model=a&MODEL=b", "model=a;model=b", "model=%ff", "model=a%00", "model=%0a",
    ],
)  # fmt: skip
def test_no_model_more_than_one_or_one_not_read_exactly_is_refused(query):
    with pytest.raises(ValueError):
        realtime_model(query)


_QUERY_PARTS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["model", "Model", "mod%65l", "intent", "call_id", "x"]),
                  st.text(st.characters(codec="utf-8"), max_size=12).map(quote_plus)),
        st.text(alphabet="model=&;%+ab0-_:.", max_size=12).map(lambda raw: (raw, None)),
    ),
    max_size=5,
)  # fmt: skip


@settings(max_examples=examples(400), deadline=None)
@given(_QUERY_PARTS)
def test_a_model_read_is_the_one_every_query_parser_reads_or_the_query_is_refused(parts):
    query = "&".join(name if value is None else f"{name}={value}" for name, value in parts)
    parsed = parse_qs(query, keep_blank_values=True)
    other_case = any(name.lower() == "model" and name != "model" for name in parsed)
    try:
        model = realtime_model(query)
    except ValueError:
        # Refused: rightly, where a parser reads no one printable model, or could read it otherwise.
        models = parsed.get("model", [])
        readable = len(models) == 1 and models[0] and models[0].isprintable() and "\ufffd" not in models[0]
        assert not readable or ";" in query or other_case
        return
    assert parsed["model"] == [model] and not other_case and ";" not in query


def test_only_a_get_on_the_realtime_endpoint_is_classified_from_its_query():
    openai = PROVIDERS["openai"]
    posted = openai.classify("POST", "/v1/realtime", {"model": "x"}, "model=y")
    assert (posted.endpoint, posted.model) == (REALTIME, "x")
    session = openai.classify("GET", "/v1/realtime", None, "model=gpt-realtime")
    assert (session.endpoint, session.model, session.facts.stream, session.wire_format) == (
        REALTIME,
        "gpt-realtime",
        True,
        "openai-api",
    )
    with pytest.raises(Unreadable):
        openai.classify("GET", "/v1/realtime", None, "")


# ---- a browser's key among the subprotocols


def test_keys_are_taken_out_of_the_subprotocols_in_any_case_and_the_rest_kept_in_order():
    assert insecure_keys("realtime, openai-insecure-api-key.sk-1, openai-beta.realtime-v1") == (
        ["sk-1"],
        "realtime, openai-beta.realtime-v1",
    )
    assert insecure_keys("OpenAI-Insecure-API-Key.sk-2,realtime") == (["sk-2"], "realtime")
    assert insecure_keys("openai-insecure-api-key.") == ([""], "")
    assert insecure_keys("realtime") == ([], "realtime")


_ENTRY = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-._0123456789", min_size=1, max_size=10)


@given(st.lists(st.one_of(_ENTRY, _ENTRY.map(lambda k: "openai-insecure-api-key." + k)), max_size=6), st.data())
def test_no_key_stays_among_the_subprotocols_kept(entries, data):
    separators = [data.draw(st.sampled_from([",", ", ", " ,  "])) for _ in entries]
    value = "".join(s + e for s, e in zip(separators, entries, strict=True)).lstrip(" ,")
    keys, rest = insecure_keys(value)
    prefix = "openai-insecure-api-key."
    assert keys == [e[len(prefix) :] for e in entries if e.lower().startswith(prefix)]
    kept = [e for e in entries if not e.lower().startswith(prefix)]
    assert (rest.split(", ") if rest else []) == kept
    assert "insecure-api-key" not in rest.lower()


# ---- usage from the server's events


def _done(usage: dict | None, status: str = "completed", **response) -> bytes:
    body = {"id": "resp_1", "status": status, **response}
    if usage is not None:
        body["usage"] = usage
    return json.dumps({"type": "response.done", "event_id": "ev_1", "response": body}).encode()


def test_a_response_done_event_gives_the_responses_usage_and_status():
    event = _done({"input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
                   "input_token_details": {"cached_tokens": 64, "text_tokens": 20, "audio_tokens": 100},
                   "output_token_details": {"text_tokens": 10, "audio_tokens": 20}})  # fmt: skip
    assert response_done_usage(event) == Usage(
        input_tokens=120,
        output_tokens=30,
        total_tokens=150,
        cached_tokens=64,
        audio_input_tokens=100,
        audio_output_tokens=20,
        finish_reason="completed",
    )
    incomplete = _done(
        {"input_tokens": 5, "output_tokens": 7},
        "incomplete",
        status_details={"type": "incomplete", "reason": "max_output_tokens"},
    )
    assert response_done_usage(incomplete) == Usage(
        input_tokens=5, output_tokens=7, total_tokens=12, finish_reason="max_output_tokens"
    )
    cancelled = _done(None, "cancelled", status_details={"type": "cancelled", "reason": "turn_detected"})
    assert response_done_usage(cancelled) == Usage(finish_reason="cancelled")


def test_only_a_response_done_event_counts_not_text_that_names_one():
    delta = json.dumps({"type": "response.output_text.delta", "delta": '{"type": "response.done"}'}).encode()
    assert b'"response.done"' in delta.replace(b"\\", b"")
    assert response_done_usage(delta) is None
    assert response_done_usage(b'{"type": "response.created"}') is None
    assert response_done_usage(b'not json, "response.done"') is None


def test_a_sessions_usage_is_the_sum_of_its_responses_with_the_latest_finish_reason():
    first = Usage(input_tokens=100, output_tokens=20, total_tokens=120, cached_tokens=40, finish_reason="completed")
    total = summed(
        summed(None, first), Usage(input_tokens=150, output_tokens=30, total_tokens=180, finish_reason="cancelled")
    )
    assert total == Usage(
        input_tokens=250, output_tokens=50, total_tokens=300, cached_tokens=40, finish_reason="cancelled"
    )
    assert summed(total, Usage()) == total


# ---- the stage


def _realtime_flow(*headers: tuple[bytes, bytes], query: str = "model=gpt-realtime") -> tuple:
    flow = tflow.twebsocketflow()
    flow.response = None
    flow.request.path = f"/v1/realtime?{query}"
    flow.request.headers.fields = (*flow.request.headers.fields, *headers)
    call = Call(Route.as_called("openai"), "api.openai.com", "GET", "/v1/realtime", PROVIDERS["openai"].classify("GET", "/v1/realtime", None, query), request=Request(headers=header_index(flow.request.headers.fields)))  # fmt: skip
    flow.metadata[CALL] = call
    return flow, call


def _stage() -> WebSocket:
    stage = WebSocket(Shared())
    stage.relays_websocket = True  # mitmproxy's default, given at `configure`
    return stage


SUBPROTOCOLS = b"realtime, openai-insecure-api-key.tg-virtual-1, openai-beta.realtime-v1"


def test_a_browsers_key_becomes_the_authorization_and_leaves_the_subprotocols():
    flow, call = _realtime_flow((b"Sec-WebSocket-Protocol", SUBPROTOCOLS))
    _stage().request(flow)
    assert flow.response is None
    assert flow.request.headers["sec-websocket-protocol"] == "realtime, openai-beta.realtime-v1"
    assert flow.request.headers["authorization"] == "Bearer tg-virtual-1"
    assert call.request.headers[b"authorization"] == b"Bearer tg-virtual-1"
    assert call.request.headers[b"sec-websocket-protocol"] == b"realtime, openai-beta.realtime-v1"


@pytest.mark.parametrize(
    "extra",
    [
        ((b"Authorization", b"Bearer tg-virtual-2"),),
        ((b"Sec-WebSocket-Protocol", b"openai-insecure-api-key.tg-virtual-2"),),
    ],
)
def test_two_keys_are_refused_and_neither_kept_among_the_subprotocols(extra):
    flow, call = _realtime_flow((b"Sec-WebSocket-Protocol", SUBPROTOCOLS), *extra)
    _stage().request(flow)
    assert flow.response is not None and flow.response.status_code == 400
    assert flow.response.headers["x-tollgate-error"] == "bad_request"
    assert "insecure" not in flow.request.headers.get("sec-websocket-protocol", "")
    assert call.answer.error == "bad request: more than one API key"


def test_the_same_key_in_both_places_is_one_key():
    flow, _ = _realtime_flow((b"Sec-WebSocket-Protocol", SUBPROTOCOLS), (b"authorization", b"Bearer tg-virtual-1"))
    _stage().request(flow)
    assert flow.response is None
    assert flow.request.headers.get_all("authorization") == ["Bearer tg-virtual-1"]


def test_a_refused_calls_key_leaves_the_subprotocols_and_goes_nowhere_else():
    flow, call = _realtime_flow((b"Sec-WebSocket-Protocol", b"openai-insecure-api-key.tg-virtual-1"))
    flow.response = tflow.tresp(status_code=400)
    _stage().request(flow)
    assert "sec-websocket-protocol" not in flow.request.headers
    assert "authorization" not in flow.request.headers and b"authorization" not in call.request.headers


def test_an_upgrade_mitmproxy_would_not_relay_as_websocket_is_refused():
    flow, call = _realtime_flow()
    flow.request.headers["sec-websocket-version"] = "8"
    call.request.headers = header_index(flow.request.headers.fields)
    _stage().request(flow)
    assert flow.response is not None and flow.response.status_code == 400
    flow, _ = _realtime_flow()
    stage = _stage()
    stage.relays_websocket = False  # mitmproxy would pass it on as raw TCP
    stage.request(flow)
    assert flow.response is not None and flow.response.status_code == 400


def test_each_message_leaves_a_stand_in_in_the_flow_and_server_usage_is_added_up():
    flow, call = _realtime_flow()
    flow.websocket.messages = []
    stage = _stage()
    sent = []
    for content, from_client in ((b'{"type": "response.create"}', True),
                                 (_done({"input_tokens": 3, "output_tokens": 4}), False),
                                 (_done({"input_tokens": 5, "output_tokens": 6}, "failed"), False)):  # fmt: skip
        message = WebSocketMessage(Opcode.TEXT, from_client, content)
        flow.websocket.messages.append(message)
        stage.websocket_message(flow)
        sent.append(message)  # what mitmproxy forwards: its own message object
        assert flow.websocket.messages[-1] is not message
        assert flow.websocket.messages[-1].content == b"[redacted by Tollgate: %d bytes]" % len(content)
        assert flow.websocket.messages[-1].from_client is from_client
    assert [m.content[:5] for m in sent] == [b'{"typ'] * 3 and not any(m.dropped for m in sent)
    assert call.answer.usage == Usage(input_tokens=8, output_tokens=10, total_tokens=18, finish_reason="failed")


def test_a_long_sessions_flow_keeps_the_latest_stand_ins_only_and_counts_every_message():
    flow, call = _realtime_flow()
    flow.websocket.messages = []
    stage = _stage()
    for n in range(2 * KEPT_MESSAGES + 500):
        usage = _done({"input_tokens": 1, "output_tokens": 1}) if n % 2 else b'{"type": "input_audio_buffer.append"}'
        flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, n % 2 == 0, usage))
        stage.websocket_message(flow)
        assert KEPT_MESSAGES <= len(flow.websocket.messages) <= 2 * KEPT_MESSAGES or n < KEPT_MESSAGES
        assert flow.websocket.messages[-1].content == b"[redacted by Tollgate: %d bytes]" % len(usage)
    assert len(flow.websocket.messages) == KEPT_MESSAGES + 499  # trimmed at the 2001st, 499 since
    assert (call.answer.usage.input_tokens, call.answer.usage.output_tokens) == (
        KEPT_MESSAGES + 250,
        KEPT_MESSAGES + 250,
    )


def test_the_close_reason_is_kept_out_and_an_abnormal_close_recorded():
    flow, call = _realtime_flow()
    flow.websocket.close_code, flow.websocket.close_reason, flow.websocket.closed_by_client = 1011, "oops: text", False
    _stage().websocket_end(flow)
    assert flow.websocket.close_reason == "[redacted by Tollgate: 10 bytes]"
    assert call.answer.error == "the server closed the WebSocket with code 1011"


@pytest.mark.parametrize(
    ("path", "body", "endpoint", "model"),
    [
        (
            "/v1/realtime/client_secrets",
            {"session": {"type": "realtime", "model": "gpt-realtime"}},
            "realtime.client_secrets",
            "gpt-realtime",
        ),
        ("/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"}, "realtime.sessions", "gpt-4o-realtime-preview"),
        (
            "/v1/realtime/calls/rtc_1/accept",
            {"type": "realtime", "model": "gpt-realtime"},
            "realtime.calls.accept",
            "gpt-realtime",
        ),
    ],
)
def test_the_realtime_apis_http_calls_name_their_model(path, body, endpoint, model):
    c = PROVIDERS["openai"].classify("POST", path, body)
    assert (c.endpoint, c.model) == (endpoint, model)


def test_a_client_secrets_session_model_of_the_wrong_type_is_refused():
    with pytest.raises(Unreadable, match="'model' is not a string"):
        PROVIDERS["openai"].classify("POST", "/v1/realtime/client_secrets", {"session": {"model": ["gpt-realtime"]}})


# ---- the bound on a message


@pytest.fixture
def bound_of_1000():
    patches.bound_websocket_messages(1000)
    yield
    patches.bound_websocket_messages(MAX_MESSAGE)


def relayed(frames: list[tuple[str, bool]]) -> tuple[list[object], bool]:
    """What mitmproxy's side facing the client reads of these text frames (data, fin), and
    whether the client's connection was noted as closed for a large message."""
    client = Connection(ConnectionType.CLIENT)  # past the handshake, as mitmproxy's are
    proxy = WebsocketConnection(ConnectionType.SERVER, conn=tflow.tclient_conn())
    events = []
    for data, fin in frames:
        proxy.receive_data(client.send(Message(data=data, message_finished=fin)))
        events += list(proxy.events())
    return events, proxy.conn in patches.closed_for_a_large_message


def test_a_message_past_the_bound_is_its_senders_close_with_1009_whatever_its_frames(bound_of_1000):
    events, closed = relayed([("a" * 600, False), ("b" * 600, True), ("c" * 10, True)])
    assert [type(e) for e in events] == [TextMessage, CloseConnection]
    assert (events[1].code, events[1].reason) == (1009, "message too big")
    assert closed  # and what the sender sent after it is not relayed


def test_a_frame_read_in_pieces_is_handed_on_whole_once(bound_of_1000):
    # mitmproxy copies the frame so far for each piece it is handed: one piece, one copy.
    client = Connection(ConnectionType.CLIENT)
    proxy = WebsocketConnection(ConnectionType.SERVER, conn=tflow.tclient_conn())
    wire = client.send(Message(data="é" * 200, message_finished=False)) + client.send(
        Message(data="ab" * 100, message_finished=True)
    )
    wire += client.send(Message(data=b"\xff" * 50))
    events = []
    for i in range(len(wire)):  # a byte at a time: a multi-byte character split too
        proxy.receive_data(wire[i : i + 1])
        events += list(proxy.events())
    assert [(type(e), e.data, e.frame_finished, e.message_finished) for e in events] == [
        (TextMessage, "é" * 200, True, False),
        (TextMessage, "ab" * 100, True, True),
        (BytesMessage, b"\xff" * 50, True, True),
    ]


def test_the_bound_counts_a_messages_utf8_bytes_and_starts_anew_with_each_message(bound_of_1000):
    events, closed = relayed([("é" * 500, True), ("é" * 250, False), ("é" * 250, True), ("x" * 1000, True)])
    assert [type(e) for e in events] == [TextMessage, TextMessage, TextMessage, TextMessage]
    assert not closed
    events, closed = relayed([("é" * 501, True)])
    assert [type(e) for e in events] == [CloseConnection] and closed
