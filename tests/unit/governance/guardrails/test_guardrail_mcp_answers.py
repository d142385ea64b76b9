"""MCP's results read by the answer guardrails (`governance/guardrails/mcp_answer.py`) as the MCP
relay passes them (`formats/mcp/answers.py`): every text of a `tools/call`, `resources/read` and
`prompts/get` result redacted inside its JSON string, or the response replaced by a JSON-RPC error
(-32001, same id) with nothing of the value sent; a clean answer byte for byte, however split."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.answer_guards import strings
from support.examples import examples
from support.guardrail_samples import AWS_KEY_ID, EMAIL, SAMPLES
from tollgate.formats.mcp.answer_guard import McpAnswerGuard, guard_mcp_json, guard_message
from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.formats.mcp.messages import McpRequest
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import AnswerDetectors, compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, detected
from tollgate.governance.mcp.mcp_exchange import McpAnswer, McpExchange
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.result_guard import ResultGuard
from tollgate.records.audit.mcp_record import mcp_records

CARD = SAMPLES["pii.payment_card"][0]
PASSWORD = SAMPLES["secrets.url_password"][0]
DB_URL = SAMPLES["secrets.url_password"][1].format(PASSWORD).strip()
ACTIONS = {"secrets.aws_access_key_id": "redact", "pii.email": "redact", "secrets.url_password": "redact"}
ACTIONS |= {"pii.payment_card": "deny"}
FOUND = compiled_for(ACTIONS)


def sse(*messages: object) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in messages)


def tool_result(rid: Any, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": {
        "content": [
            {"type": "text", "text": text},
            {"type": "resource", "resource": {"uri": "file:///x.env", "mimeType": "text/plain", "text": text}},
            {"type": "image", "data": "aGk=", "mimeType": "image/png"},
        ],
        "structuredContent": {"result": text, "rows": [{"note": text, "n": 1}]},
        "isError": False,
    }}  # fmt: skip


def test_every_text_of_a_tool_result_is_redacted_inside_its_string() -> None:
    message = tool_result(1, f"mail {EMAIL} key {AWS_KEY_ID}")
    read = guard_message(FOUND, json.loads(json.dumps(message)))
    redacted = "mail [REDACTED:pii.email] key [REDACTED:secrets.aws_access_key_id]"
    assert read.value["result"] == tool_result(1, redacted)["result"]
    assert read.findings == {1: {"pii.email": 4, "secrets.aws_access_key_id": 4}}
    assert read.denied == {}


def test_resources_and_prompts_are_read_too() -> None:
    resource = {"jsonrpc": "2.0", "id": 2, "result": {"contents": [{"uri": "notes://db", "text": DB_URL}]}}
    prompt = {"jsonrpc": "2.0", "id": 3, "result": {"messages": [
        {"role": "user", "content": {"type": "text", "text": f"write to {EMAIL}"}},
        {"role": "assistant", "content": [{"type": "resource", "resource": {"uri": "a://b", "text": EMAIL}}]},
    ]}}  # fmt: skip
    read = guard_message(FOUND, [resource, prompt])
    assert read.value[0]["result"]["contents"][0]["text"] == (
        "DATABASE_URL=postgres://app:[REDACTED:secrets.url_password]@db.internal:5432/app"
    )
    assert [m["content"] for m in read.value[1]["result"]["messages"]] == [
        {"type": "text", "text": "write to [REDACTED:pii.email]"},
        [{"type": "resource", "resource": {"uri": "a://b", "text": "[REDACTED:pii.email]"}}],
    ]
    assert read.findings == {2: {"secrets.url_password": 1}, 3: {"pii.email": 2}}


def test_a_value_to_deny_replaces_the_response_by_an_error_with_its_id() -> None:
    batch = [tool_result("a", f"card {CARD}"), tool_result("b", f"mail {EMAIL}")]
    read = guard_message(FOUND, batch)
    assert read.value[0] == {
        "jsonrpc": "2.0", "id": "a",
        "error": {"code": -32001, "message": "Tollgate refused this answer: it holds pii.payment_card."},
    }  # fmt: skip
    assert read.value[1]["result"]["content"][0]["text"] == "mail [REDACTED:pii.email]"
    assert read.denied == {"a": "pii.payment_card"}
    assert CARD not in json.dumps(read.value)


KEY = AWS_KEY_ID
REDACTED_KEY = "[REDACTED:secrets.aws_access_key_id]"
KEY_DENIED = compiled_for({"secrets.aws_access_key_id": "deny"})


def request_of(rid: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def notice(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def result_of(result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": result}


# Each place of a message a client receives, with the key in it (an MCP client hands each to its
# caller or its model); None where the message answers no request.
PLACES: dict[str, dict[str, Any]] = {
    "resource_link name": result_of({"content": [{"type": "resource_link", "uri": "a://b", "name": KEY}]}),
    "resource_link description": result_of({"content": [
        {"type": "resource_link", "uri": "a://b", "name": "n", "description": f"see {KEY}"}]}),
    "resource_link uri": result_of({"content": [{"type": "resource_link", "uri": f"s3://{KEY}/x", "name": "n"}]}),
    "resource blob's neighbour": result_of({"content": [
        {"type": "resource", "resource": {"uri": "a://b", "blob": "aGk=", "title": KEY}}]}),
    "structuredContent key": result_of({"content": [], "structuredContent": {KEY: 1}}),
    "_meta": result_of({"content": [], "_meta": {"example.com/trace": KEY}}),
    "annotations": result_of({"content": [{"type": "text", "text": "ok", "annotations": {"audience": [KEY]}}]}),
    "an unknown member": result_of({"content": [], "extra": [[{"deep": KEY}]]}),
    "tools/list": result_of({"tools": [{"name": "t", "description": f"uses {KEY}", "inputSchema": {}}]}),
    "initialize instructions": result_of({"protocolVersion": "2025-06-18", "instructions": KEY}),
    "error.message": {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": f"bad {KEY}"}},
    "error.data": {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "bad", "data": {"k": KEY}}},
    "notifications/message": notice("notifications/message", {"level": "info", "data": {"msg": KEY}}),
    "notifications/progress": notice("notifications/progress", {"progressToken": 1, "progress": 1,
                                                                "message": KEY}),
    "sampling/createMessage": request_of("s1", "sampling/createMessage", {
        "messages": [{"role": "user", "content": {"type": "text", "text": KEY}}], "maxTokens": 9}),
    "elicitation/create": request_of("e1", "elicitation/create", {"message": KEY, "requestedSchema": {}}),
    "an error without id": {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": KEY}},
}  # fmt: skip


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_string_of_every_message_is_read(place: str) -> None:
    """Wherever the key sits, a client gets it replaced (redact), or gets an error with its
    request's id in place of a response, nothing in place of any other message (deny)."""
    message = PLACES[place]
    rid = message["id"] if "result" in message or ("error" in message and message["id"] is not None) else None
    read = guard_message(FOUND, json.loads(json.dumps(message)))
    assert KEY not in json.dumps(read.value) and REDACTED_KEY in json.dumps(read.value)
    assert (read.findings, read.denied, read.dropped) == ({rid: {"secrets.aws_access_key_id": 1}}, {}, False)
    read = guard_message(KEY_DENIED, json.loads(json.dumps(message)))
    assert read.denied == {rid: "secrets.aws_access_key_id"}
    if rid is None:
        assert (read.value, read.dropped) == (None, True)
    else:
        assert read.value == {"jsonrpc": "2.0", "id": rid, "error": {
            "code": -32001, "message": "Tollgate refused this answer: it holds secrets.aws_access_key_id."}}  # fmt: skip


def test_a_batch_loses_only_the_messages_denied() -> None:
    log = notice("notifications/message", {"level": "info", "data": KEY})
    read = guard_message(KEY_DENIED, [log, tool_result(1, "fine")])
    assert read.value == [tool_result(1, "fine")] and not read.dropped
    assert guard_message(KEY_DENIED, [log]).dropped


def test_what_names_a_message_is_denied_not_redacted() -> None:
    """A request's id or method redacted would be another message to the client."""
    read = guard_message(FOUND, request_of(f"r-{KEY}", "sampling/createMessage", {}))
    assert (read.dropped, read.denied) == (True, {None: "secrets.aws_access_key_id"})
    read = guard_message(FOUND, {"jsonrpc": "2.0", "method": KEY, "params": {}})
    assert read.denied == {None: "secrets.aws_access_key_id"}
    read = guard_message(FOUND, result_of({"id": f"r-{KEY}"}))  # deeper: a member as any other
    assert read.value == result_of({"id": f"r-{REDACTED_KEY}"})


def test_two_keys_redacted_alike_are_denied() -> None:
    other = EMAIL.replace("jane", "john")
    read = guard_message(FOUND, result_of({"structuredContent": {EMAIL: 1, other: 2}}))
    assert read.denied == {1: "pii.email"}
    read = guard_message(FOUND, result_of({"structuredContent": {KEY: 1, "n": 2}}))
    assert read.value == result_of({"structuredContent": {REDACTED_KEY: 1, "n": 2}})


def test_a_clean_message_is_left_as_it_came() -> None:
    read = guard_message(FOUND, PROGRESS_DONE)
    assert (read.value, read.dropped, read.findings) == (None, False, {None: {}})


PROGRESS_DONE = notice("notifications/progress", {"progressToken": 1, "progress": 2, "message": "done"})


def relayed(relay: AnswerRelay, pieces: list[bytes]) -> bytes:
    out = []
    for piece in [*(p for p in pieces if p), b""]:  # b"" is the end
        got = relay(piece)
        out.append(got if isinstance(got, bytes) else b"".join(got))
    return b"".join(out)


SERVER = McpServer.model_validate({"name": "gh", "url": "https://mcp.example.test/mcp"})


class Guard(ResultGuard):
    """The proxy's guard (`governance/mcp.ResultGuard`), on an exchange of its own."""

    def __init__(self, found: AnswerDetectors, ids: frozenset[Any] | list[Any], method: str = "POST") -> None:
        super().__init__(McpExchange(SERVER, method), found, sorted(ids))

    @property
    def findings(self) -> dict[Any, dict[str, int]]:
        return self._exchange.answer.found

    @property
    def denied(self) -> dict[Any, str]:
        return self._exchange.answer.cut


PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
REDACTED_STREAM = sse(PROGRESS, tool_result(1, f"to {EMAIL}"))
DENIED_STREAM = sse(PROGRESS, tool_result(1, f"card {CARD} now"))


def data_of(stream: bytes) -> list[Any]:
    return [json.loads(line[6:]) for line in stream.splitlines() if line.startswith(b"data: ")]


def cut_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(DENIED_STREAM)), max_size=8))
@settings(max_examples=examples(150), deadline=None)
def test_a_streamed_result_is_redacted_or_denied_however_split(cuts: list[int]) -> None:
    guard = Guard(FOUND, frozenset({1}))
    out = relayed(AnswerRelay(True, [1], guard=guard), cut_at(REDACTED_STREAM, cuts))
    assert out.startswith(sse(PROGRESS))  # the notification as it came
    events = data_of(out)
    assert events[1]["result"]["content"][0]["text"] == "to [REDACTED:pii.email]"
    assert EMAIL.encode() not in out
    guard = Guard(FOUND, frozenset({1}))
    relay = AnswerRelay(True, [1], guard=guard)
    out = relayed(relay, cut_at(DENIED_STREAM, [c % len(DENIED_STREAM) for c in cuts]))
    events = data_of(out)
    assert events[1] == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it holds pii.payment_card."}}  # fmt: skip
    assert b"4111" not in out and relay.outcomes == {1: True}
    assert (guard.findings, guard.denied) == ({1: {"pii.payment_card": 1}}, {1: "pii.payment_card"})


def test_a_denied_result_ends_the_event_stream_its_other_requests_refused() -> None:
    """A batch's answer: the result denied, then what the server would send after it. The stream
    ends with its error and an error for each request still unanswered; nothing after goes on,
    and the relay says it has stopped (the proxy closes the upstream)."""
    later = sse(PROGRESS, tool_result(2, "fine"))
    relay = AnswerRelay(True, [1, 2], batch=True, guard=Guard(FOUND, frozenset({1, 2})))
    assert not relay.stopped
    out = relayed(relay, [DENIED_STREAM + later[:20], later[20:]])
    assert out.startswith(sse(PROGRESS))
    assert data_of(out)[1:] == [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32001,
                                               "message": "Tollgate refused this answer: it holds pii.payment_card."}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32001,
                                               "message": "Tollgate stopped this answer: another result in it holds pii.payment_card."}},
    ]  # fmt: skip
    assert out.endswith(b"\n\n") and b"fine" not in out
    assert relay.stopped and relay.ended and relay.outcomes == {1: True, 2: True}


@pytest.mark.parametrize("as_sse", [True, False], ids=["sse", "json"])
def test_a_clean_answer_goes_on_byte_for_byte(as_sse: bool) -> None:
    message = tool_result(1, "nothing to see, 42 rows")
    body = sse(PROGRESS, message) if as_sse else json.dumps(message, indent=1).encode()
    guard = Guard(FOUND, frozenset({1}))
    assert relayed(AnswerRelay(as_sse, [1], guard=guard), [body[:17], body[17:]]) == body
    assert guard.findings == {1: {}}


def test_a_json_answer_is_written_anew_where_redacted() -> None:
    body = json.dumps(tool_result(1, f"to {EMAIL}")).encode()
    relay = AnswerRelay(False, [1], guard=Guard(FOUND, frozenset({1})))
    out = json.loads(relayed(relay, [body]))
    assert out["result"]["structuredContent"]["result"] == "to [REDACTED:pii.email]"


def test_a_result_too_large_to_read_is_refused_where_a_rule_says_so(monkeypatch) -> None:
    monkeypatch.setattr("tollgate.formats.mcp.answers.MAX_JSON_ANSWER", 64)
    body = json.dumps(tool_result(1, "x" * 100)).encode()
    guard = Guard(FOUND, frozenset({1}))
    assert relayed(AnswerRelay(False, [1], guard=guard), [body]) == body  # unread: on as it came
    guard.refuses_unread = True
    refused = json.loads(relayed(AnswerRelay(False, [1], guard=guard), [body]))
    assert (refused["id"], refused["error"]["code"]) == (1, -32603)


def test_the_records_say_what_each_result_held() -> None:
    requests = (McpRequest("tools/call", 1, tool="add"), McpRequest("tools/call", 2, tool="dump"),
                McpRequest("tools/list", 3))  # fmt: skip
    exchange = McpExchange(
        SERVER, "POST", requests=requests, answer=McpAnswer(status=200, outcomes={1: False, 2: True, 3: False})
    )
    exchange.answer.found = {1: {"pii.email": 2}, 2: {"pii.payment_card": 1}}
    exchange.answer.cut = {2: "pii.payment_card"}
    exchange.answer.actions = dict(ACTIONS)
    first, second, third = mcp_records(exchange)
    assert (first["answer_findings"], first["error"], first["refusal"]) == ({"pii.email": 2}, None, None)
    assert (second["answer_findings"], second["error"], second["refusal"], second["decision"]) == (
        {"pii.payment_card": 1}, "content_denied", "content_denied", "allow",
    )  # fmt: skip
    assert third["answer_findings"] is None  # not read
    # What was done: the e-mail addresses redacted, the card number's result refused (none redacted).
    assert [r["answer_redacted"] for r in (first, second, third)] == [2, 0, None]
    assert sorted(exchange.answer.finding_actions()) == [("pii.email", "redact", 2), ("pii.payment_card", "deny", 1)]


def test_the_registry_reads_a_saved_mcp_answer() -> None:
    assert detected(REDACTED_STREAM) == ["mcp"]
    assert detected(json.dumps(tool_result(1, "x")).encode()) == ["mcp"]
    guard = ANSWER_FORMATS["mcp"].stream(FOUND)
    assert isinstance(guard, McpAnswerGuard)
    out = guard.feed(DENIED_STREAM[:50]) + guard.feed(DENIED_STREAM[50:]) + guard.flush()
    assert (guard.denied, guard.counts) == ("pii.payment_card", {"pii.payment_card": 1})
    assert b"4111" not in out and b"-32001" in out
    body, denied, counts = guard_mcp_json(FOUND, json.dumps(tool_result(1, f"to {EMAIL}")).encode())
    assert (denied, counts) == (None, {"pii.email": 4})
    assert EMAIL.encode() not in body and b"[REDACTED:pii.email]" in body
    assert strings(json.loads(body)).count("to [REDACTED:pii.email]") == 4


def test_a_saved_streams_last_event_without_its_blank_line_is_read() -> None:
    guard = McpAnswerGuard(FOUND)
    saved = REDACTED_STREAM.rstrip(b"\r\n")
    out = guard.feed(saved) + guard.flush()
    assert data_of(out)[1]["result"]["content"][0]["text"] == "to [REDACTED:pii.email]"
    assert guard.counts == {"pii.email": 4}


EVERY = compiled_for(dict.fromkeys(detectors.KINDS, "redact"))
EVERY_DENIED = compiled_for(dict.fromkeys(detectors.KINDS, "deny"))


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kinds_value_in_a_result_split_anywhere_in_it_never_goes_on(kind: str) -> None:
    """The relay reads a message once its event has come whole: a read that ends inside the
    value (at its start, its middle, its end, …) sends none of it."""
    value, context = SAMPLES[kind]
    text = "Found: " + context.format(value) + " and that is all."
    stream = sse(PROGRESS, tool_result(1, text))
    first = stream.index(json.dumps(value)[1:-1].encode())
    cuts = sorted({first + len(value) * k // 8 for k in range(9)})
    for found, redacted in ((EVERY, True), (EVERY_DENIED, False)):
        for at in cuts:
            out = relayed(AnswerRelay(True, [1], guard=Guard(found, frozenset({1}))), [stream[:at], stream[at:]])
            assert value.encode() not in out
            (_, sent) = data_of(out)
            if redacted:
                assert f"[REDACTED:{kind}]" in sent["result"]["content"][0]["text"]
            else:
                assert sent["error"]["code"] == -32001


# An event's data that no JSON reader takes (a raw control character inside a string).
UNREADABLE = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"pw\x01 hunter2"}]}}'


def test_a_streamed_event_that_cannot_be_read_ends_the_answer() -> None:
    """The relay: what came before it goes on, then each request's error; nothing of it."""
    body = sse(PROGRESS) + b"event: message\r\ndata: " + UNREADABLE + b"\r\n\r\n" + sse(tool_result(1, "after"))
    guard = Guard(FOUND, frozenset({1}))
    relay = AnswerRelay(True, [1], guard=guard)
    out = relayed(relay, [body[:40], body[40:]])
    assert out.startswith(sse(PROGRESS)) and b"hunter2" not in out and b"after" not in out
    assert data_of(out)[1]["id"] == 1 and data_of(out)[1]["error"]["code"] == -32001
    assert guard.denied == {1: "unread"}
    assert relay.ended and relay.error == "a server-sent event that is no JSON-RPC message"


@pytest.mark.parametrize("body", [b"card " + CARD.encode() + b" on file", UNREADABLE])
def test_a_json_answer_that_is_no_json_is_refused_unread(body: bytes) -> None:
    """A 2xx answer to a read request that no JSON reader takes: its requests' error -32001, nothing
    of it; each of its results cut as unread."""
    guard = Guard(FOUND, frozenset({1}))
    relay = AnswerRelay(False, [1], guard=guard)
    out = relayed(relay, [body[:9], body[9:]])
    assert json.loads(out) == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it could not be read for its guardrails."}}  # fmt: skip
    assert (relay.outcomes, guard.denied, relay.error) == (
        {1: True},
        {1: "unread"},
        "the answer is no JSON-RPC message",
    )


def test_an_error_status_in_plain_text_goes_on_as_it_came() -> None:
    """No result in it: what its client reads is an HTTP error."""
    relay = AnswerRelay(False, [1], guard=Guard(FOUND, frozenset({1})), succeeded=False)
    assert relayed(relay, [b"upstream timed out"]) == b"upstream timed out"


def test_an_error_status_with_a_result_is_read_all_the_same() -> None:
    relay = AnswerRelay(False, [1], guard=Guard(EVERY, frozenset({1})), succeeded=False)
    out = json.loads(relayed(relay, [json.dumps(tool_result(1, f"to {EMAIL}")).encode()]))
    assert out["result"]["content"][0]["text"] == "to [REDACTED:pii.email]"


def test_an_event_without_data_still_goes_on_unread() -> None:
    body = b"id: 7\r\ndata: \r\n\r\n" + sse(tool_result(1, "fine"))
    relay = AnswerRelay(True, [1], guard=Guard(FOUND, frozenset({1})))
    assert relayed(relay, [body]) == body


def test_the_scan_of_an_event_that_cannot_be_read_ends_there() -> None:
    guard = McpAnswerGuard(FOUND)
    body = sse(PROGRESS) + b"event: message\ndata: " + UNREADABLE + b"\n\n" + sse(tool_result(1, "after"))
    out = guard.feed(body) + guard.flush()
    assert guard.denied == "unread" and b"hunter2" not in out and b"after" not in out
    assert data_of(out)[0] == PROGRESS and data_of(out)[-1]["error"]["code"] == -32001


LOG_KEY = notice("notifications/message", {"level": "info", "logger": "db", "data": f"connecting with {KEY}"})


def test_a_notification_on_a_calls_stream_is_redacted_its_findings_the_calls() -> None:
    guard = Guard(FOUND, [1])
    body = sse(LOG_KEY, tool_result(1, "fine"))
    out = relayed(AnswerRelay(True, [1], guard=guard), [body[:30], body[30:]])
    assert KEY.encode() not in out
    assert data_of(out)[0]["params"]["data"] == f"connecting with {REDACTED_KEY}"
    assert data_of(out)[1] == tool_result(1, "fine")
    assert guard.findings == {1: {"secrets.aws_access_key_id": 1}}


def test_a_denied_notification_is_left_out_and_ends_the_answer() -> None:
    """Nothing of it goes on; the request still awaiting its answer gets Tollgate's error, and
    nothing the server sends after it goes on."""
    guard = Guard(KEY_DENIED, [1])
    body = sse(PROGRESS, LOG_KEY, tool_result(1, "fine"))
    relay = AnswerRelay(True, [1], guard=guard)
    out = relayed(relay, [body])
    assert KEY.encode() not in out and b"fine" not in out
    assert out == sse(PROGRESS).replace(b"\r\n", b"\r\n") + (
        b'event: message\ndata: {"jsonrpc":"2.0","id":1,"error":{"code":-32001,'
        b'"message":"Tollgate stopped this answer: a message in it holds secrets.aws_access_key_id."}}\n\n'
    )
    assert (guard.findings, guard.denied) == ({1: {"secrets.aws_access_key_id": 1}}, {1: "secrets.aws_access_key_id"})
    assert relay.stopped and relay.outcomes == {1: True}


def test_a_server_request_with_a_value_to_deny_never_reaches_the_client() -> None:
    sampling = PLACES["sampling/createMessage"]
    relay = AnswerRelay(True, [1], guard=Guard(KEY_DENIED, [1]))
    out = relayed(relay, [sse(sampling, tool_result(1, "fine"))])
    assert KEY.encode() not in out and b"sampling/createMessage" not in out
    assert [d["id"] for d in data_of(out)] == [1] and relay.stopped


@pytest.mark.parametrize("place", ["error.message", "error.data"])
def test_a_json_error_is_read_as_a_result_is(place: str) -> None:
    body = json.dumps(PLACES[place]).encode()
    out = json.loads(relayed(AnswerRelay(False, [1], guard=Guard(FOUND, [1])), [body]))
    assert KEY not in json.dumps(out) and out["error"]["code"] == -32000
    guard = Guard(KEY_DENIED, [1])
    out = json.loads(relayed(AnswerRelay(False, [1], guard=guard), [body]))
    assert out["error"] == {
        "code": -32001,
        "message": "Tollgate refused this answer: it holds secrets.aws_access_key_id.",
    }
    assert guard.denied == {1: "secrets.aws_access_key_id"}


def test_a_json_answer_of_a_denied_notification_alone_is_its_requests_error() -> None:
    relay = AnswerRelay(False, [1], guard=Guard(KEY_DENIED, [1]))
    out = json.loads(relayed(relay, [json.dumps(LOG_KEY).encode()]))
    assert out == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32001, "message": "Tollgate stopped this answer: a message in it holds secrets.aws_access_key_id."}}  # fmt: skip


def test_the_get_stream_is_read_and_recorded() -> None:
    """The server's own stream (no request): a message redacted, one denied left out and the
    stream ended there; its record says what it held and that it was cut."""
    guard = Guard(FOUND, [], method="GET")
    out = relayed(AnswerRelay(True, [], guard=guard), [sse(LOG_KEY, PROGRESS)])
    assert data_of(out) == [
        notice("notifications/message", {"level": "info", "logger": "db", "data": f"connecting with {REDACTED_KEY}"}),
        PROGRESS,
    ]
    assert guard.findings == {None: {"secrets.aws_access_key_id": 1}}
    guard = Guard(KEY_DENIED, [], method="GET")
    relay = AnswerRelay(True, [], guard=guard)
    assert relayed(relay, [sse(PROGRESS, LOG_KEY, PROGRESS_DONE)]) == sse(PROGRESS)
    assert relay.stopped and guard.denied == {None: "secrets.aws_access_key_id"}
    exchange = guard._exchange
    exchange.answer.status = 200
    (record,) = mcp_records(exchange)
    assert (record["method"], record["answer_findings"], record["error"], record["refusal"]) == (
        "GET", {"secrets.aws_access_key_id": 1}, "content_denied", "content_denied")  # fmt: skip
    clean = Guard(FOUND, [], method="GET")
    relayed(AnswerRelay(True, [], guard=clean), [sse(PROGRESS)])
    (record,) = mcp_records(clean._exchange)
    assert (record["answer_findings"], record["error"]) == ({}, None)


def test_the_scan_of_a_saved_stream_leaves_out_a_denied_notification() -> None:
    guard = McpAnswerGuard(KEY_DENIED)
    out = guard.feed(sse(PROGRESS, LOG_KEY, tool_result(1, "fine"))) + guard.flush()
    assert data_of(out) == [PROGRESS, tool_result(1, "fine")]
    assert (guard.denied, guard.counts) == ("secrets.aws_access_key_id", {"secrets.aws_access_key_id": 1})
    body, denied, counts = guard_mcp_json(KEY_DENIED, json.dumps(LOG_KEY).encode())
    assert json.loads(body)["error"]["code"] == -32001 and KEY.encode() not in body
    assert (denied, counts) == ("secrets.aws_access_key_id", {"secrets.aws_access_key_id": 1})


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_kinds_value_is_found_in_a_key_and_a_deep_member(kind: str) -> None:
    """The one pass over a message finds what the string-by-string read finds: every kind."""
    value, context = SAMPLES[kind]
    text = context.format(value)
    for message in (result_of({"_meta": {"x": [{"y": text}]}}), notice("notifications/message", {text: 1})):
        read = guard_message(EVERY, json.loads(json.dumps(message)))
        assert value not in json.dumps(read.value), kind
        assert f"[REDACTED:{kind}]" in json.dumps(read.value)


NOTIFIED = sse(PROGRESS, LOG_KEY, PROGRESS_DONE, tool_result(1, "fine"))
STOPPED_AT_LOG = (
    b'event: message\ndata: {"jsonrpc":"2.0","id":1,"error":{"code":-32001,'
    b'"message":"Tollgate stopped this answer: a message in it holds secrets.aws_access_key_id."}}\n\n'
)


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(NOTIFIED)), max_size=8))
@settings(max_examples=examples(150), deadline=None)
def test_a_notification_is_redacted_or_left_out_however_split(cuts: list[int]) -> None:
    pieces = cut_at(NOTIFIED, cuts)
    out = relayed(AnswerRelay(True, [1], guard=Guard(FOUND, [1])), pieces)
    assert data_of(out)[1]["params"]["data"] == f"connecting with {REDACTED_KEY}"
    assert data_of(out)[2:] == [PROGRESS_DONE, tool_result(1, "fine")] and KEY.encode() not in out
    relay = AnswerRelay(True, [1], guard=Guard(KEY_DENIED, [1]))
    assert relayed(relay, pieces) == sse(PROGRESS) + STOPPED_AT_LOG
    listened = AnswerRelay(True, [], guard=Guard(KEY_DENIED, [], method="GET"))
    assert relayed(listened, pieces) == sse(PROGRESS) and listened.stopped


@pytest.mark.parametrize(
    "lines",
    [f"event: {KEY}\r\n", f"id: {KEY}\r\n", f": {KEY}\r\n", f"note: {KEY}\r\n"],
    ids=["name", "id", "comment", "unknown-field"],
)
def test_an_events_other_lines_holding_a_value_stop_the_answer_unread(lines: str) -> None:
    """A raw client reads them too, and they are no JSON to redact inside."""
    event = lines.encode() + b"data: " + json.dumps(tool_result(1, "fine")).encode() + b"\r\n\r\n"
    guard = Guard(FOUND, [1])
    relay = AnswerRelay(True, [1], guard=guard)
    out = relayed(relay, [sse(PROGRESS) + event])
    assert KEY.encode() not in out and b"fine" not in out
    assert data_of(out) == [PROGRESS, {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it could not be read for its guardrails."}}]  # fmt: skip
    assert guard.denied == {1: "unread"}
    assert relay.error == "a server-sent event whose name, id or comment holds what an answer rule finds"
    scan = McpAnswerGuard(FOUND)
    out = scan.feed(sse(PROGRESS) + event) + scan.flush()
    assert KEY.encode() not in out and scan.denied == "unread"


def test_an_events_usual_lines_go_on_as_they_came() -> None:
    body = b"id: 42\r\nretry: 1000\r\n" + sse(PROGRESS) + b": keep-alive\r\n\r\n" + sse(tool_result(1, "fine"))
    assert relayed(AnswerRelay(True, [1], guard=Guard(FOUND, [1])), [body]) == body
