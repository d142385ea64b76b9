"""MCP's JSON-RPC read exactly (`formats/mcp/`), the `mcp:` configuration and what a policy decides
MCP requests on (`governance/mcp/mcp_exchange.py`, `data.tollgate.mcp.deny`)."""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.support.examples import examples

from tollgate.configuration.config import Config
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.mcp.answers import AnswerRelay, read_whole
from tollgate.formats.mcp.messages import McpRequest, Posted, decoded_post, read_post
from tollgate.governance.mcp.mcp_exchange import McpAnswer, McpCaller, McpExchange
from tollgate.governance.mcp.mcp_input import listed_tool_input, request_input
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.mcp_sessions import McpSessions, session_owner, shared_session_key
from tollgate.governance.policy.policy import CALL_DECISION, MCP_DECISION, Policy, whole
from tollgate.records.audit.mcp_record import mcp_records


def post(value: object) -> Posted:
    return read_post(json.dumps(value).encode())


def test_each_request_of_a_post_is_read_with_what_the_policy_decides_on() -> None:
    batch = post([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}},
        {"jsonrpc": "2.0", "id": "r", "method": "resources/read", "params": {"uri": "File:///etc/passwd"}},
        {"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "review"}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 7, "result": {}},  # the client's answer to the server's request
    ])  # fmt: skip
    assert batch == Posted(
        (
            McpRequest("tools/call", 1, tool="add"),
            McpRequest("resources/read", "r", resource_scheme="file"),
            McpRequest("prompts/get", 3, prompt="review"),
            McpRequest("notifications/initialized"),
        ),
        responses=1,
        batch=True,
    )
    single = post({"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
    assert single == Posted((McpRequest("tools/list", 0),))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"[]", "neither a JSON-RPC message nor a batch"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "name": "b"}}', "repeats a key"),
        (b'{"id": 1, "method": "tools/list"}', '"jsonrpc": "2.0"'),
        (b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', "neither a string nor an integer"),
        (b'{"jsonrpc": "2.0", "id": 1.0, "method": "tools/list"}', "neither a string nor an integer"),
        (b'{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', "neither a string nor an integer"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}', "names no tool"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}', "params are not an object"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "prompts/get"}', "names no prompt"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": 5}}', "names no URI"),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "a"}, {"jsonrpc": "2.0", "id": 1, "method": "b"}]', "repeats"),
        (b'{"jsonrpc": "2.0", "id": 1}', "neither a request"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"n": NaN}}', "not JSON"),
        ('{"jsonrpc": "2.0"}'.encode("utf-16"), "not UTF-8"),
    ],
)
def test_a_post_tollgate_cannot_read_exactly_is_unreadable(body: bytes, reason: str) -> None:
    with pytest.raises(Unreadable, match=reason):
        read_post(body)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "br", "zstd", " GZIP "])
def test_an_encoded_post_is_decoded_exactly(encoding: str) -> None:
    import gzip
    import zlib

    import brotli

    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    name = encoding.strip().lower()
    encode = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}
    encoded = encode.get(name, zstd.compress)(body)
    assert decoded_post(encoded, encoding, 1024) == body
    assert decoded_post(body, None, 1024) == decoded_post(body, "identity", 1024) == body
    with pytest.raises(Unreadable, match="decodes to more than 16 bytes"):
        decoded_post(encoded, encoding, 16)
    with pytest.raises(
        Unreadable,
        match=f"ends before its {name}-encoded data does|does not decode as its Content-Encoding \\({name}\\)",
    ):
        decoded_post(encoded[:-3], encoding, 1024)


@pytest.mark.parametrize("encoding", ["compress", "base64", "gzip, gzip", "gzip,identity", "hex"])
def test_an_encoding_tollgate_does_not_read_is_unreadable(encoding: str) -> None:
    with pytest.raises(Unreadable, match=f"not {re.escape(repr(encoding))}"):
        decoded_post(b"{}", encoding, 1024)


def sse(*messages: object) -> bytes:
    return b"".join(b"event: message\r\ndata: " + json.dumps(m).encode() + b"\r\n\r\n" for m in messages)


ANSWERS = (
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
    {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}},
    {"jsonrpc": "2.0", "id": "two", "result": {"content": [{"type": "text", "text": "x"}], "isError": True}},
    {"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "no such tool"}},
    {"jsonrpc": "2.0", "id": 4, "method": "sampling/createMessage", "params": {}},  # the server's request
)
OUTCOMES = {1: False, "two": True, 3: True}


def fed(relay: AnswerRelay, chunk: bytes) -> bytes:
    """What the relay passes on of a chunk (mitmproxy takes bytes or a list of them)."""
    out = relay(chunk)
    return out if isinstance(out, bytes) else b"".join(out)


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(sse(*ANSWERS))), max_size=12))
@settings(max_examples=examples(200), deadline=None)
def test_outcomes_are_read_from_server_sent_events_however_split(cuts: list[int]) -> None:
    stream = sse(*ANSWERS)
    relay = AnswerRelay(sse=True)
    bounds = [0, *sorted(cuts), len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds) if a < b]  # b"" is the end
    passed = b"".join(fed(relay, piece) for piece in pieces) + fed(relay, b"")
    assert passed == stream  # every byte passed on unchanged, each event whole
    assert relay.outcomes == OUTCOMES


def test_events_go_on_whole_and_as_they_come() -> None:
    relay = AnswerRelay(sse=True)
    first, second = sse(ANSWERS[0]), sse(ANSWERS[1])
    assert fed(relay, first + second[:10]) == first  # the second event is held until its end
    assert relay(second[10:-3]) == []  # never b"" before the end: it would end a chunked body
    assert fed(relay, second[-3:]) == second
    assert relay.outcomes == {1: False}


def test_outcomes_are_read_from_a_json_answer_and_a_batch() -> None:
    assert read_whole(json.dumps(ANSWERS[1]).encode(), sse=False) == {1: False}
    assert read_whole(json.dumps(list(ANSWERS)).encode(), sse=False) == OUTCOMES
    assert read_whole(b"not json", sse=False) == {}


TOOLS = {"jsonrpc": "2.0", "id": 5, "result": {"tools": [{"name": "add"}, {"name": "delete"}, {"title": "no name"}]}}
OTHER = {"jsonrpc": "2.0", "id": 6, "result": {"tools": [{"name": "delete"}]}}


def values_of(passed: bytes, as_sse: bool) -> list:
    if not as_sse:
        return json.loads(passed)
    return [json.loads(line.removeprefix(b"data: ")) for line in passed.splitlines() if line.startswith(b"data: ")]


@pytest.mark.parametrize("as_sse", [False, True], ids=["json", "sse"])
def test_a_tools_list_answer_loses_the_tools_not_allowed(as_sse: bool) -> None:
    asked: list[list[str]] = []
    allowed = lambda names: asked.append(names) or (lambda name: name != "delete")  # noqa: E731
    relay = AnswerRelay(as_sse, [5], tools_of=frozenset({5}), allowed=allowed)
    body = sse(TOOLS, OTHER) if as_sse else json.dumps([TOOLS, OTHER]).encode()
    values = values_of(fed(relay, body) + fed(relay, b""), as_sse)
    assert values[0]["result"]["tools"] == [{"name": "add"}]
    assert values[1] == OTHER  # not an answer to a tools/list of this POST: as it came
    assert asked == [["add", "delete"]]
    assert relay.outcomes == {5: False, 6: False}


def test_a_tools_list_event_waits_for_its_tools_then_goes_on() -> None:
    decided: dict[str, bool] = {}
    relay = AnswerRelay(True, [5], tools_of=frozenset({5}), allowed=lambda names: decided.get if decided else None)
    progress = sse(ANSWERS[0])
    assert fed(relay, progress + sse(TOOLS)) == progress  # the notification at once; the list waits
    assert fed(relay, progress) == b"" and fed(relay, b"") == b""  # and what follows it
    assert relay.waiting and relay.waiting_for == ["add", "delete"]
    decided.update(add=True, delete=False)
    released = relay.release()
    assert [v.get("result", {}).get("tools") for v in values_of(released, True)] == [[{"name": "add"}], None]
    assert not relay.waiting and relay.outcomes == {5: False}


def test_an_answer_broken_off_ends_with_an_error_for_each_request_unanswered() -> None:
    relay = AnswerRelay(True, [1, "two", 3])
    whole = sse(ANSWERS[1])
    assert fed(relay, whole + b"event: message\r\ndata: {") == whole
    tail = relay.fail("gone", -32603)
    assert tail is not None and values_of(tail, True) == [
        {"jsonrpc": "2.0", "id": "two", "error": {"code": -32603, "message": "gone"}},
        {"jsonrpc": "2.0", "id": 3, "error": {"code": -32603, "message": "gone"}},
    ]
    assert relay.outcomes == {1: False, "two": True, 3: True}

    json_relay = AnswerRelay(False, [1, 2], batch=True)
    assert fed(json_relay, b'[{"jsonrpc": "2.0", "id": 1, "res') == b""  # held whole: nothing went on
    assert json.loads(json_relay.fail("gone", -32603) or b"") == [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "gone"}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "gone"}},
    ]


SERVER = {"name": "gh", "url": "https://mcp.example.com/mcp", "credential": {"bearer": "real"}}


@pytest.mark.parametrize(
    ("servers", "where"),
    [
        ([{**SERVER, "url": "http://mcp.example.com/mcp"}], "mcp.servers.0.url"),
        ([{**SERVER, "credential": {}}], "mcp.servers.0.credential"),
        ([{**SERVER, "credential": {"bearer": "a", "header": {"name": "x-key", "value": "b"}}}], "credential"),
        ([{**SERVER, "credential": {"header": {"name": "Host", "value": "b"}}}], "credential.header.name"),
        ([{**SERVER, "upstream": "https://x/path"}], "mcp.servers.0.upstream"),
        ([SERVER, {**SERVER, "url": "https://other/mcp"}], "servers.1.name"),
        ([SERVER, {**SERVER, "name": "other"}], "servers.1.url"),
        ([{**SERVER, "extra": 1}], "mcp.servers.0.extra"),
        ([{**SERVER, "url": "https://api.openai.com/mcp"}], "mcp.servers.0.url: api.openai.com is openai's"),
    ],
)
def test_a_bad_mcp_server_is_named_by_its_field(servers: list, where: str) -> None:
    with pytest.raises(ValidationError, match=where.replace(".", r"\.")):
        Config.model_validate({"mcp": {"servers": servers}})


@pytest.mark.parametrize(
    ("providers", "host", "where"),
    [
        ({"openai": {"hosts": ["*.llm.corp.example"]}}, "gw.llm.corp.example", "openai's (providers.openai.hosts.0)"),
        (
            {"acme": {"kind": "openai_compatible", "hosts": ["api.acme.example", "ai.acme.example"]}},
            "ai.acme.example",
            "acme's (providers.acme.hosts.1)",
        ),
    ],
    ids=["a-providers-hosts", "a-configured-vendors-hosts"],
)
def test_an_mcp_server_on_a_host_a_configuration_gives_a_provider_is_refused(
    providers: dict, host: str, where: str
) -> None:
    """The calls to such a host are the provider's LLM calls: it cannot hold an MCP server too."""
    server = {**SERVER, "url": f"https://{host}/mcp"}
    expected = f"mcp.servers.0.url: {host} is {where}, whose calls are LLM calls"
    with pytest.raises(ValidationError, match=re.escape(expected)):
        Config.model_validate({"providers": providers, "mcp": {"servers": [server]}})
    Config.model_validate(
        {"providers": providers, "mcp": {"servers": [{**server, "url": "https://mcp.corp.example/"}]}}
    )


POLICY = """
package tollgate.mcp
import rego.v1

deny contains sprintf("%s may not call %s", [input.client.name, input.mcp.tool]) if {
    input.mcp.method == "tools/call"
    startswith(input.mcp.tool, "delete")
    not "admins" in input.client.groups
}
"""
LLM_POLICY = """
package tollgate
import rego.v1

deny contains "only gpt-4o" if input.model != "gpt-4o"
"""


def test_mcp_requests_are_decided_by_their_own_rules_only(tmp_path: Path) -> None:
    (tmp_path / "mcp.rego").write_text(POLICY)
    (tmp_path / "llm.rego").write_text(LLM_POLICY)
    policy = Policy([tmp_path / "mcp.rego", tmp_path / "llm.rego"])
    server = McpServer.model_validate(SERVER)
    exchange = McpExchange(server, "POST", caller=McpCaller("bob", ("research",), "virtual_key"))
    denied = policy.decide(MCP_DECISION, request_input(exchange, McpRequest("tools/call", 1, tool="delete_repo")))
    assert denied.deny_reasons == ("bob may not call delete_repo",)
    # The LLM rule (no model here) does not apply to an MCP request.
    assert policy.decide(MCP_DECISION, request_input(exchange, McpRequest("tools/call", 2, tool="add"))).allowed
    exchange.caller.groups = ("admins",)
    assert policy.decide(MCP_DECISION, listed_tool_input(exchange, "delete_repo")).allowed
    assert request_input(exchange, McpRequest("resources/read", 3, resource_scheme="file"))["mcp"] == {
        "server": "gh", "method": "resources/read", "tool": None, "resource_scheme": "file", "prompt": None,
        "session": None, "protocol_version": None,
    }  # fmt: skip


def test_a_policy_of_mcp_rules_alone_loads(tmp_path: Path) -> None:
    (tmp_path / "mcp.rego").write_text(POLICY)
    assert Policy([tmp_path / "mcp.rego"]).decide(whole(CALL_DECISION), {"model": "x"}).allowed


def test_the_records_of_a_post_one_per_request() -> None:
    server = McpServer.model_validate(SERVER)
    exchange = McpExchange(
        server, "POST", requests=(McpRequest("tools/call", 1, tool="add"), McpRequest("notifications/x")),
        request_id="r1", started=1_790_000_000.0, caller=McpCaller("alice", auth="virtual_key"),
        answer=McpAnswer(status=200, outcomes={1: True}, ended=1_790_000_000.25),
    )  # fmt: skip
    exchange.answer.used_credential("real")
    first, second = mcp_records(exchange)
    assert first == {
        "event": "mcp_call", "ts": "2026-09-21T14:13:20.000Z", "request_id": "r1", "client": "alice",
        "auth": "virtual_key", "server": "gh", "protocol_version": None, "method": "tools/call", "tool": "add",
        "decision": "allow", "deny_reasons": [], "findings": None, "redacted": None, "answer_findings": None,
        "answer_redacted": None, "is_error": True, "retry_of": None, "tool_findings": None, "quarantined": None,
        "status": 200,
        "upstream_key": first["upstream_key"],
        "latency_ms": 250.0, "error": None, "refusal": None,
    }  # fmt: skip
    assert first["upstream_key"].startswith("sha256:") and "real" not in first["upstream_key"]
    assert (second["method"], second["is_error"]) == ("notifications/x", None)
    # A refusal before any request was read: one record saying so.
    refused = McpExchange(server, "POST", decision="deny", deny_reasons=("bad_request",), answer=McpAnswer(status=400))
    assert [(r["method"], r["decision"], r["deny_reasons"]) for r in mcp_records(refused)] == [
        (None, "deny", ["bad_request"])
    ]
    # The GET stream and a DELETE carry no JSON-RPC request: one record each, named by the HTTP method.
    for method in ("GET", "DELETE"):
        (record,) = mcp_records(McpExchange(server, method, answer=McpAnswer(status=200)))
        assert (record["method"], record["tool"], record["decision"], record["is_error"]) == (
            method,
            None,
            "allow",
            None,
        )
    refused = McpExchange(
        server, "GET", decision="deny", deny_reasons=("unauthenticated",), answer=McpAnswer(status=401)
    )
    assert [(r["method"], r["decision"], r["deny_reasons"]) for r in mcp_records(refused)] == [
        ("GET", "deny", ["unauthenticated"])
    ]
    # A POST of answers alone (to the server's own requests) is no request of the client's: no record.
    assert mcp_records(McpExchange(server, "POST", answer=McpAnswer(status=202))) == []


def test_a_json_answer_past_its_bound_streams_on_unless_its_tools_are_filtered(monkeypatch) -> None:
    from tollgate.formats.mcp import answers

    monkeypatch.setattr(answers, "MAX_JSON_ANSWER", 16)
    body = json.dumps(ANSWERS[1]).encode()
    relay = AnswerRelay(False, [1])
    assert fed(relay, body[:10]) == b"" and fed(relay, body[10:]) == body and fed(relay, b"") == b""
    assert relay.outcomes == {} and relay.error is None  # unknown: not read
    filtering = AnswerRelay(False, [5], tools_of=frozenset({5}), allowed=lambda names: lambda name: True)
    refused = json.loads(fed(filtering, json.dumps(TOOLS).encode()))
    assert (
        refused["error"]["message"]
        == "Tollgate cannot read the MCP server's answer: the answer is larger than 16 bytes."
    )
    assert filtering.outcomes == {5: True} and fed(filtering, b"more") == b""


def test_an_event_past_its_bound_streams_on_unless_its_tools_are_filtered(monkeypatch) -> None:
    from tollgate.formats.mcp import answers

    monkeypatch.setattr(answers, "MAX_EVENT", 16)
    stream = sse(ANSWERS[1], ANSWERS[3])
    relay = AnswerRelay(True, [1, 3])
    assert fed(relay, stream[:10]) == b"" and fed(relay, stream[10:20]) == stream[:20]  # past 16 bytes
    assert fed(relay, stream[20:-5]) == stream[20:-5]
    assert relay.outcomes == {} and relay.fail("gone", -32603) is None  # broken off: no whole answer now
    filtering = AnswerRelay(True, [5], tools_of=frozenset({5}), allowed=lambda names: lambda name: True)
    refused = values_of(fed(filtering, sse(TOOLS)[:20]), True)
    assert refused[0]["error"]["message"] == (
        "Tollgate cannot read the MCP server's answer: a server-sent event is larger than 16 bytes."
    )


def test_a_session_keeps_its_first_owner_and_the_least_recently_used_is_forgotten() -> None:
    sessions = McpSessions(limit=2)
    alice, carol = session_owner("alice"), session_owner("carol")
    assert sessions.bind("notes", "s1", alice) == alice
    assert sessions.bind("notes", "s1", carol) == alice  # opened again for another: still alice's
    assert sessions.owner("other", "s1") is None  # sessions are a server's own
    sessions.bind("notes", "s2", carol)
    assert sessions.owner("notes", "s1") == alice  # used: s2 is now the least recently used
    sessions.bind("notes", "s3", carol)
    assert (sessions.owner("notes", "s2"), len(sessions)) == (None, 2)
    sessions.forget("notes", "s1")
    assert sessions.owner("notes", "s1") is None
    assert session_owner(None) == "anonymous" != session_owner("anonymous")
    # An anonymous caller's sessions are its own credential's: another's, or none, is another owner.
    assert len({session_owner(None, "own-token-1"), session_owner(None, "own-token-2"), session_owner(None)}) == 3
    assert "own-token-1" not in session_owner(None, "own-token-1")


def test_a_shared_sessions_name_is_not_its_id() -> None:
    key = shared_session_key("notes", "secret-session-id")
    assert "secret-session-id" not in key and len(key) == 64
    assert key != shared_session_key("other", "secret-session-id")
