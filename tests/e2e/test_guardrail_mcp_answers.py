"""Guardrails on MCP results, with the official MCP SDK's client and server through mitmdump: a
`tools/call` result (its text and its structuredContent), a `resources/read` result and a
`prompts/get` result that carry a customer's e-mail address come to the SDK with it replaced
(`redact`); a tool result that carries a card number comes as the JSON-RPC error -32001 the SDK
raises (`deny`), nothing of the number sent; by server-sent events and as JSON, at 2025-06-18's
sessions and at 2026-07-28. The records count what was found (`answer_findings`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import trustme
from tests.support import guardrail_samples as samples
from tests.support.answers import answer_samples
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.leaks import assert_no_secret, stopped_outputs
from tests.support.mcp_upstream import RUN_MAIN, event, initialized, log_event, speaks_mcp
from tests.support.mcp_upstream import client_code as sdk_client_code
from tests.support.proxy import free_port
from tests.support.raw import send

VIRTUAL = "tg-mcp-answers-alice-0001"
SSE_URL = "https://mcp-answers.example.test/mcp"
JSON_URL = "https://mcp-answers-json.example.test/mcp"
SCRIPTED_HOST = "mcp-answers-scripted.example.test"
UNREAD_HOST = "mcp-answers-unread.example.test"  # the scripted server too, its records apart
STREAMS_HOST = "mcp-answers-streams.example.test"  # the scripted server too, its records apart
EMAIL = samples.EMAIL
CARD = samples.SAMPLES["pii.payment_card"][0]
REDACTED = "[REDACTED:pii.email]"
METRICS = f"127.0.0.1:{free_port()}"
FILLERS = 100  # events the scripted server would send after a denied result, were it not closed
FILLER_GAP = 0.02


def client_code(url: str, body: str, mode: str) -> str:
    return sdk_client_code(url, body, VIRTUAL, mode)


@pytest.fixture(scope="module")
def scripted(upstream_ca: trustme.CA) -> Iterator[FakeUpstream]:
    """An MCP server whose answers a test scripts: what the SDK's server never sends."""
    server = FakeUpstream(upstream_ca)
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(start_gateway, servers, scripted):
    sse, json_ = servers
    config = {
        "metrics": {"listen": METRICS},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "guardrails": [
            {"on": ["answer"], "detect": ["pii.email"], "action": "redact"},
            {"on": ["answer"], "detect": ["pii.payment_card"], "action": "deny"},
        ],
        "mcp": {
            "servers": [
                {"name": "notes", "url": SSE_URL, "upstream": sse.url},
                {"name": "notes-json", "url": JSON_URL, "upstream": json_.url},
                {"name": "scripted", "url": f"https://{SCRIPTED_HOST}/mcp", "upstream": scripted.url},
                {"name": "unread", "url": f"https://{UNREAD_HOST}/mcp", "upstream": scripted.url},
                {"name": "streams", "url": f"https://{STREAMS_HOST}/mcp", "upstream": scripted.url},
            ]
        },
    }
    return start_gateway(config, providers=(), save_flows=True)


MODES = pytest.mark.parametrize(
    ("url", "mode"),
    [(SSE_URL, "legacy"), (JSON_URL, "legacy"), (SSE_URL, "auto"), (JSON_URL, "auto")],
    ids=["sse-2025", "json-2025", "sse-2026", "json-2026"],
)

REDACTED_CALLS = """
called = await client.call_tool("customer", {"field": "email"})
read = await client.read_resource("notes://customer")
prompt = await client.get_prompt("follow_up")
report(text=[c.text for c in called.content], structured=called.structured_content, error=called.is_error,
       read=[c.text for c in read.contents], prompt=[m.content.text for m in prompt.messages])
"""


def read_records(gateway, count: int) -> list[dict]:
    read = ("tools/call", "resources/read", "prompts/get")
    return gateway.new_audit(count, where=lambda r: r["event"] == "mcp_call" and r["method"] in read)


@MODES
def test_a_tool_result_a_resource_and_a_prompt_come_redacted(gateway, url: str, mode: str) -> None:
    result = gateway.run(client_code(url, REDACTED_CALLS, mode))
    text = f"on file: {REDACTED}, since 2019"
    assert result == {
        "text": [text],
        "structured": {"result": text},
        "error": False,
        "read": [f"write to {REDACTED} first"],
        "prompt": [f"Write a follow-up to {REDACTED}."],
    }
    called, read, prompt = read_records(gateway, 3)
    assert (called["tool"], called["answer_findings"], called["is_error"], called["error"]) == (
        "customer", {"pii.email": 2}, False, None,
    )  # fmt: skip
    assert read["answer_findings"] == prompt["answer_findings"] == {"pii.email": 1}
    assert called["protocol_version"] == ("2026-07-28" if mode == "auto" else "2025-11-25")


DENIED_CALL = """
added = await client.call_tool("add", {"a": 1, "b": 2})
try:
    await client.call_tool("customer", {"field": "card"})
    report(ok=False)
except Exception as e:
    report(added=[c.text for c in added.content], error=type(e).__name__, code=e.error.code,
           message=e.error.message, said=str(e))
"""


@MODES
def test_a_tool_result_with_a_card_number_is_a_json_rpc_error(gateway, url: str, mode: str) -> None:
    result = gateway.run(client_code(url, DENIED_CALL, mode))
    assert result == {
        "added": ["3"],
        "error": "MCPError",
        "code": -32001,
        "message": "Tollgate refused this answer: it holds pii.payment_card.",
        "said": "Tollgate refused this answer: it holds pii.payment_card.",
    }
    added, denied = read_records(gateway, 2)
    assert (added["answer_findings"], added["error"]) == ({}, None)
    assert (denied["tool"], denied["decision"], denied["is_error"], denied["answer_findings"]) == (
        "customer", "allow", True, {"pii.payment_card": 1},
    )  # fmt: skip
    assert (denied["status"], denied["error"], denied["refusal"]) == (200, "content_denied", "content_denied")


def test_metrics_count_what_mcp_results_held(gateway) -> None:
    before = answer_samples(METRICS)
    gateway.run(client_code(SSE_URL, REDACTED_CALLS, "legacy"))
    read_records(gateway, 3)
    gateway.run(client_code(SSE_URL, DENIED_CALL, "legacy"))
    read_records(gateway, 2)
    after = answer_samples(METRICS)
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("tollgate_guardrail_answer_findings_total", "mcp", "pii.email", "redact"): 4,
        ("tollgate_guardrail_answer_findings_total", "mcp", "pii.payment_card", "deny"): 1,
        ("tollgate_guardrail_answers_cut_total", "mcp", "pii.payment_card"): 1,
    }


def scripted_records(gateway, timeout: float = 10.0) -> list[dict]:
    """The records of the scripted server's calls, once there is one (the audit is written by a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in gateway.audit() if r.get("server") == "scripted"]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


class Stopped:
    """The scripted server's answer to a `tools/call`: a log message, a result carrying a card
    number, then log messages sent slowly, as long as its connection lets it (kept to see when it
    stopped)."""

    def __init__(self) -> None:
        self.reply: Reply | None = None

    def __call__(self, message: dict) -> Reply:
        content = [{"type": "text", "text": f"card {CARD} on file"}]
        result = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": content, "isError": False}}
        chunks = [log_event("working"), event(result), *(log_event("still here") for _ in range(FILLERS))]
        self.reply = Reply(200, chunks=chunks, gate=lambda i: time.sleep(FILLER_GAP if i > 1 else 0))
        return self.reply


def test_a_denied_result_ends_its_stream_and_closes_the_upstream(gateway, scripted) -> None:
    """A client that reads an answer's event stream to its end (the SDK's closes it at its
    answer, which would close the upstream as well): it ends at the result's error, and the
    server's connection is closed there, not read on while the server sends."""
    stopped = Stopped()
    scripted.handler = speaks_mcp(stopped)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "customer", "arguments": {}}}
    headers = {
        "Authorization": f"Bearer {VIRTUAL}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    started = time.monotonic()
    answer = send(gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, "/mcp", headers=headers,
                  body=json.dumps(call).encode())  # fmt: skip
    took = time.monotonic() - started
    data = [json.loads(line[5:]) for line in answer.body.splitlines() if line.startswith(b"data:")]
    assert answer.status == 200
    assert [d.get("params", {}).get("data") for d in data[:1]] == ["working"]
    assert data[1:] == [{"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it holds pii.payment_card."}}]  # fmt: skip
    assert took < FILLERS * FILLER_GAP / 2, "the answer ended with the server's, not at the error"
    # The fillers would take FILLERS * FILLER_GAP to send: past that, the server had stopped soon
    # after the result (a write or two into the closed connection's buffers).
    time.sleep(max(0.0, started + FILLERS * FILLER_GAP + 1.0 - time.monotonic()))
    assert stopped.reply is not None
    assert len(stopped.reply.sent_at) < 2 + 10
    (record,) = scripted_records(gateway)
    assert (record["tool"], record["is_error"], record["answer_findings"]) == (
        "customer",
        True,
        {"pii.payment_card": 1},
    )
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


def call_scripted(gateway, scripted, status: int, body: bytes, content_type: str):
    """A raw `tools/call` to the scripted server (as `unread`), which answers it `status` with `body`."""
    scripted.handler = speaks_mcp(lambda message: Reply(status, body, {"content-type": content_type}))
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "customer", "arguments": {}}}
    headers = {
        "Authorization": f"Bearer {VIRTUAL}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    return send(gateway.proxy.port, gateway.bundle, UNREAD_HOST, "/mcp", headers=headers,
                body=json.dumps(call).encode())  # fmt: skip


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_result_that_is_no_json_is_refused_unread(gateway, scripted, content_type: str) -> None:
    """A 2xx answer to a tools/call whose body is no JSON: the JSON-RPC error -32001 in its place,
    nothing of it sent, the record cut."""
    before = len(unread_records(gateway))
    answer = call_scripted(gateway, scripted, 200, f"card {CARD} on file".encode(), content_type)
    assert answer.status == 200
    assert answer.json() == {"jsonrpc": "2.0", "id": 9, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it could not be read for its guardrails."}}  # fmt: skip
    record = unread_record_after(gateway, before)
    assert (record["status"], record["error"], record["refusal"], record["is_error"]) == (
        200, "content_denied", "content_denied", True)  # fmt: skip


def test_a_streamed_event_that_is_no_json_is_refused_unread(gateway, scripted) -> None:
    before = len(unread_records(gateway))
    stream = log_event("working") + f"event: message\r\ndata: card {CARD} on file\r\n\r\n".encode()
    answer = call_scripted(gateway, scripted, 200, stream, "text/event-stream")
    data = [json.loads(line[5:]) for line in answer.body.splitlines() if line.startswith(b"data:")]
    assert answer.status == 200 and CARD.encode() not in answer.body
    assert [d.get("params", {}).get("data") for d in data[:1]] == ["working"]
    assert data[1:] == [{"jsonrpc": "2.0", "id": 9, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it could not be read for its guardrails."}}]  # fmt: skip
    record = unread_record_after(gateway, before)
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


def test_an_error_answer_in_plain_text_goes_on_as_it_came(gateway, scripted) -> None:
    """A server's 500 in plain text carries no result: its client reads an HTTP error."""
    answer = call_scripted(gateway, scripted, 500, b"upstream database timed out", "text/plain")
    assert (answer.status, answer.body) == (500, b"upstream database timed out")


def unread_records(gateway) -> list[dict]:
    return [r for r in gateway.audit() if r.get("server") == "unread" and r.get("method") == "tools/call"]


def unread_record_after(gateway, before: int, timeout: float = 10.0) -> dict:
    """The record of the `unread` server's newest call, once written."""
    deadline = time.monotonic() + timeout
    while True:
        records = unread_records(gateway)
        if len(records) > before or time.monotonic() > deadline:
            assert len(records) > before, "no new record of the unread server"
            return records[-1]
        time.sleep(0.05)


LARGE = "the quick brown fox jumps over the lazy dog. " * 2000  # 90 KB: read in a worker thread


def large_result(content_type: str):
    """A tool's result of 180 KB that carries a customer's address between its halves, by
    server-sent events or as JSON."""

    def answer(message: dict) -> Reply:
        if message["method"] == "tools/list":  # the SDK's client lists the tools before it calls one
            tools = [{"name": "customer", "inputSchema": {"type": "object"}}]
            return Reply(200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": tools}})
        text = f"{LARGE} write to {EMAIL} {LARGE}"
        result = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}}
        body = event(result) if content_type == "text/event-stream" else json.dumps(result).encode()
        pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
        return Reply(200, headers={"content-type": content_type}, chunks=pieces)

    return answer


@pytest.mark.parametrize("content_type", ["text/event-stream", "application/json"], ids=["sse", "json"])
def test_a_large_result_comes_redacted_exactly(gateway, scripted, content_type: str) -> None:
    scripted.handler = speaks_mcp(large_result(content_type))
    called = """
called = await client.call_tool("customer", {})
report(text=[c.text for c in called.content])
"""
    result = gateway.run(client_code(f"https://{SCRIPTED_HOST}/mcp", called, "legacy"))
    assert result == {"text": [f"{LARGE} write to {REDACTED} {LARGE}"]}


# The SDK's client with a callback for each thing a server may send it besides its answers: what
# each was handed, reported with what `body` reports.
HEARD = (
    """
import asyncio
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

heard = {{"logs": [], "progress": [], "sampling": [], "elicitation": []}}

async def on_log(params):
    heard["logs"].append(params.data)

async def on_progress(progress, total, message):
    heard["progress"].append(message)

async def on_sampling(context, params):
    heard["sampling"].append([m.content.text for m in params.messages])
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")

async def on_elicitation(context, params):
    heard["elicitation"].append(params.message)
    return types.ElicitResult(action="decline")

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="legacy", logging_callback=on_log,
                          sampling_callback=on_sampling, elicitation_callback=on_elicitation) as client:
{body}
"""
    + RUN_MAIN
)

CALLED = """
try:
    called = await client.call_tool("customer", {}, progress_callback=on_progress)
    answer = called.model_dump(mode="json", by_alias=True, exclude_none=True)
except MCPError as e:
    answer = {"code": e.error.code, "message": e.error.message, "data": e.error.data}
report(answer=answer, **heard)
"""


def heard_code(body: str) -> str:
    indented = "\n".join("            " + line for line in body.strip().splitlines())
    return HEARD.format(key=VIRTUAL, url=f"https://{STREAMS_HOST}/mcp", body=indented)


def message_of(method: str, params: dict, rid: str | None = None) -> dict:
    message = {"jsonrpc": "2.0", "method": method, "params": params}
    return message if rid is None else {**message, "id": rid}


class Streams:
    """The scripted server as `streams`: a session opened at `initialize`; each `tools/call`
    answered with the events `answer` makes of it (its progress token given), or as JSON
    (`as_json`); the client's answers to its own requests kept; the GET stream's events, one list
    per GET (`gets`; once they are spent, a GET is refused 405)."""

    def __init__(self, answer=None, as_json: bool = False, gets: list[list[dict]] | None = None) -> None:
        self.answer = answer
        self.as_json = as_json
        self.gets = list(gets or [])
        self.answered: list[dict] = []  # the client's answers to the server's requests

    def __call__(self, received: Received) -> Reply:
        session = {"mcp-session-id": "s-streams-1"}
        if received.method == "GET":
            if not self.gets:
                return Reply(405, b"")
            events = self.gets.pop(0)
            return Reply(200, headers={"content-type": "text/event-stream", **session},
                         chunks=[event(m) for m in events])  # fmt: skip
        if received.method != "POST":
            return Reply(200, b"")
        message = json.loads(received.body)
        if message.get("method") == "initialize":
            return Reply(200, initialized(message, "streams"), headers=session)
        if "method" not in message:
            self.answered.append(message)
            return Reply(202, b"")
        if "id" not in message:
            return Reply(202, b"")
        if message["method"] == "tools/list":
            tools = [{"name": "customer", "inputSchema": {"type": "object"}}]
            return Reply(200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": tools}})
        token = message["params"].get("_meta", {}).get("progressToken")
        messages = self.answer(message["id"], token)
        if self.as_json:
            return Reply(200, messages[-1])
        return Reply(200, headers={"content-type": "text/event-stream"}, chunks=[event(m) for m in messages],
                     gate=lambda i: self._wait_for_answers(messages[:i]))  # fmt: skip

    def _wait_for_answers(self, sent: list[dict], timeout: float = 10.0) -> None:
        """Before the next event, the client's answers to the requests sent so far (as a server
        waits for what it asked)."""
        asked = sum(1 for m in sent if "method" in m and "id" in m)
        deadline = time.monotonic() + timeout
        while len(self.answered) < asked and time.monotonic() < deadline:
            time.sleep(0.02)


def log_message(text: str) -> dict:
    return message_of("notifications/message", {"level": "info", "data": text})


def streams_records(gateway, count: int, method: str = "tools/call") -> list[dict]:
    return gateway.new_audit(count, where=lambda r: r.get("server") == "streams" and r["method"] == method)


def everywhere(rid, token) -> list[dict]:
    """A customer's address in every place of a tool call's stream but its plain text."""
    result = {
        "content": [
            {"type": "resource_link", "uri": f"mailto:{EMAIL}", "name": EMAIL, "description": f"the file of {EMAIL}",
             "_meta": {"owner": EMAIL}},
            {"type": "resource", "resource": {"uri": "notes://c", "blob": "aGk=", "_meta": {EMAIL: "owner"}}},
            {"type": "text", "text": "see the link", "annotations": {"audience": ["user"], "priority": 0.5},
             "_meta": {"x.example/to": EMAIL}},
        ],
        "structuredContent": {EMAIL: {"rows": [f"row of {EMAIL}"]}},
        "_meta": {"x.example/trace": f"for {EMAIL}"},
        "isError": False,
    }  # fmt: skip
    return [
        message_of("notifications/message", {"level": "info", "logger": "crm", "data": f"looking up {EMAIL}"}),
        message_of(
            "notifications/progress", {"progressToken": token, "progress": 1, "total": 2, "message": f"found {EMAIL}"}
        ),
        message_of(
            "sampling/createMessage",
            {"maxTokens": 9, "messages": [{"role": "user", "content": {"type": "text", "text": f"summarise {EMAIL}"}}]},
            rid="srv-1",
        ),
        message_of(
            "elicitation/create",
            {"message": f"may I write to {EMAIL}?", "requestedSchema": {"type": "object", "properties": {}}},
            rid="srv-2",
        ),
        {"jsonrpc": "2.0", "id": rid, "result": result},
    ]


def strings_in(value) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def test_every_string_a_client_is_sent_comes_redacted(gateway, scripted) -> None:
    """Logs, progress, the server's sampling and elicitation requests, and every member of the
    result: the SDK's client is handed each with the address replaced."""
    scripted.handler = speaks = Streams(everywhere)
    result = gateway.run(heard_code(CALLED))
    assert result["logs"] == [f"looking up {REDACTED}"]
    assert result["progress"] == [f"found {REDACTED}"]
    assert result["sampling"] == [[f"summarise {REDACTED}"]]
    assert result["elicitation"] == [f"may I write to {REDACTED}?"]
    answer = result["answer"]
    assert answer["content"][0] == {"type": "resource_link", "uri": f"mailto:{REDACTED}", "name": REDACTED,
                                    "description": f"the file of {REDACTED}", "_meta": {"owner": REDACTED}}  # fmt: skip
    assert answer["content"][1]["resource"]["_meta"] == {REDACTED: "owner"}
    assert answer["content"][2]["_meta"] == {"x.example/to": REDACTED}
    assert answer["structuredContent"] == {REDACTED: {"rows": [f"row of {REDACTED}"]}}
    assert answer["_meta"] == {"x.example/trace": f"for {REDACTED}"}
    assert not [s for s in strings_in(result) if EMAIL in s]
    assert [a["id"] for a in speaks.answered] == ["srv-1", "srv-2"]
    (record,) = streams_records(gateway, 1)
    assert (record["answer_findings"], record["is_error"], record["error"]) == ({"pii.email": 13}, False, None)


def test_an_errors_message_and_data_come_redacted(gateway, scripted) -> None:
    def failed(rid, token) -> list[dict]:
        error = {"code": -32000, "message": f"no customer {EMAIL}", "data": {"asked": [EMAIL]}}
        return [{"jsonrpc": "2.0", "id": rid, "error": error}]

    for as_json in (True, False):
        scripted.handler = Streams(failed, as_json=as_json)
        result = gateway.run(heard_code(CALLED))
        assert result["answer"] == {"code": -32000, "message": f"no customer {REDACTED}", "data": {"asked": [REDACTED]}}
        (record,) = streams_records(gateway, 1)
        assert (record["answer_findings"], record["is_error"], record["error"]) == ({"pii.email": 2}, True, None)


@pytest.mark.parametrize("place", ["log", "progress", "sampling", "elicitation"])
def test_a_card_number_anywhere_on_the_stream_ends_the_answer_unseen(gateway, scripted, place: str) -> None:
    """The message that holds it never reaches the client, nor anything after it: the call gets
    Tollgate's error; the record says what was found and that it was cut."""

    def with_card(rid, token) -> list[dict]:
        held = {
            "log": message_of("notifications/message", {"level": "info", "data": f"card {CARD}"}),
            "progress": message_of(
                "notifications/progress", {"progressToken": token, "progress": 1, "message": f"card {CARD}"}
            ),
            "sampling": message_of(
                "sampling/createMessage",
                {"maxTokens": 9, "messages": [{"role": "user", "content": {"type": "text", "text": f"card {CARD}"}}]},
                rid="srv-1",
            ),
            "elicitation": message_of(
                "elicitation/create",
                {"message": f"card {CARD}?", "requestedSchema": {"type": "object", "properties": {}}},
                rid="srv-2",
            ),
        }[place]
        before = message_of("notifications/message", {"level": "info", "data": "starting"})
        after = message_of("notifications/message", {"level": "info", "data": "after"})
        result = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "fine"}]}}
        return [before, held, after, result]

    scripted.handler = speaks = Streams(with_card)
    result = gateway.run(heard_code(CALLED))
    assert result == {
        "answer": {"code": -32001, "message": "Tollgate stopped this answer: a message in it holds pii.payment_card.",
                   "data": None},
        "logs": ["starting"], "progress": [], "sampling": [], "elicitation": [],
    }  # fmt: skip
    assert speaks.answered == []
    (record,) = streams_records(gateway, 1)
    assert (record["answer_findings"], record["is_error"]) == ({"pii.payment_card": 1}, True)
    assert (record["status"], record["error"], record["refusal"]) == (200, "content_denied", "content_denied")


LISTENED = """
for _ in range(200):  # until the GET stream's messages came (at most 10 s)
    if len(heard["logs"]) >= {count}:
        break
    await asyncio.sleep(0.05)
report(**heard)
"""


def test_the_get_stream_is_read_too(gateway, scripted) -> None:
    """The server's own stream: a message redacted; a message with a card number ends the stream
    there (the client opens it again, as the SDK's does), nothing of it nor after it sent."""
    log = log_message
    gets = [[log(f"mail {EMAIL}")], [log("before"), log(f"card {CARD}"), log("after")], [log("again")]]
    scripted.handler = Streams(gets=gets)
    result = gateway.run(heard_code(LISTENED.format(count=3)))
    assert result["logs"] == [f"mail {REDACTED}", "before", "again"]
    redacted, cut, again = streams_records(gateway, 3, method="GET")[:3]
    assert (redacted["answer_findings"], redacted["error"], redacted["status"]) == ({"pii.email": 1}, None, 200)
    assert (cut["answer_findings"], cut["error"], cut["refusal"]) == (
        {"pii.payment_card": 1}, "content_denied", "content_denied")  # fmt: skip
    assert (again["answer_findings"], again["error"]) == ({}, None)


def test_zz_no_value_in_any_output(gateway) -> None:
    """Last in this file: it stops the gateway to read its saved flows whole."""
    assert gateway.audit(), "the tests before it made calls"
    outputs = stopped_outputs(gateway)
    assert b"mcp_call" in outputs["saved flows"]
    assert_no_secret(outputs, (EMAIL, CARD))
