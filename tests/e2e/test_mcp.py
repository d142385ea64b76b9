"""MCP servers governed end to end: the official MCP SDK's client through Tollgate to the official
SDK's server (`support/mcp_server.py`), answering by server-sent events or as JSON. The caller
comes with its virtual key as the bearer; the server sees only Tollgate's credential for it; each
JSON-RPC request gets its own `mcp_call` record."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import re
import signal
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.h2 import H2Request, h2_calls
from tests.support.jwks import claims, hs256_token
from tests.support.leaks import assert_no_secret, stopped_outputs
from tests.support.mcp_upstream import RUN_MAIN, event, log_event, speaks_mcp
from tests.support.mcp_upstream import client_code as sdk_client_code
from tests.support.metrics import scrape
from tests.support.raw import send
from tests.support.redis import redis_server
from tests.support.stall import SilentServer

from tollgate.records.audit.auditlog import BATCH_DELAY

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

VIRTUAL = "tg-alice-mcp-virtual-0001"
LIMITED = "tg-limited-mcp-virtual-0001"
CAROL = "tg-carol-mcp-virtual-0001"
REAL_BEARER = "ghp-real-mcp-bearer-0001"
JWT_SECRET = "hs256-SECRET-for-mcp-tests-5ecret-0123456789abcdef"
JWT_ISSUER = {
    "issuer": "https://idp.mcp-tests.example",
    "audience": "tollgate",
    "secret": JWT_SECRET,
    "algorithms": ["HS256"],
    "client_prefix": "jwt:",
}
REAL_HEADER = "real-mcp-header-key-0001"
SSE_URL = "https://mcp.example.test/mcp"
JSON_URL = "https://mcp-json.example.test/mcp"
REFUSING_URL = "https://mcp-refusing.example.test/mcp"
DOWN_URL = "https://mcp-down.example.test/mcp"
SILENT_URL = "https://mcp-silent.example.test/mcp"
SLOW_URL = "https://mcp-slow.example.test/mcp"
SCRIPTED_HOST = "mcp-scripted.example.test"
SCRIPTED_URL = f"https://{SCRIPTED_HOST}/mcp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS = f"127.0.0.1:{_free_port()}"


def client_code(url: str, body: str, key: str = VIRTUAL, mode: str = "legacy") -> str:
    """The SDK's client calling `url` with `key` as its bearer (`mcp_upstream.client_code`)."""
    return sdk_client_code(url, body, key, mode)


@pytest.fixture(scope="module")
def scripted(upstream_ca: trustme.CA) -> Iterator[FakeUpstream]:
    """An MCP server whose answers each test scripts (`handler`): what the SDK's server never
    sends (an answer cut off, an encoded one); it records each request's bytes as they came."""
    server = FakeUpstream(upstream_ca, answer_each)
    yield server
    server.close()


def decoded_body(received: Received) -> bytes:
    encoding = received.headers.get("content-encoding", "identity")
    return received.body if encoding == "identity" else DECODERS[encoding](received.body)


def answer_each(received: Received) -> Reply:
    """A JSON answer to each request of a POST: its method and tool as the result."""
    value = json.loads(decoded_body(received))
    answers = [
        {"jsonrpc": "2.0", "id": m["id"], "result": {"method": m["method"], "tool": m.get("params", {}).get("name")}}
        for m in (value if isinstance(value, list) else [value])
        if "id" in m
    ]
    return Reply(200, answers if isinstance(value, list) else answers[0])


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress,
}  # fmt: skip
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress, "deflate": zlib.decompress, "br": brotli.decompress, "zstd": zstd.decompress,
}  # fmt: skip


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentServer]:
    server = SilentServer()  # takes connections, never completes a TLS handshake
    yield server
    server.close()


POLICY = """
package tollgate.mcp
import rego.v1

deny contains sprintf("%s may not call %s", [input.client.name, input.mcp.tool]) if {
    input.mcp.method == "tools/call"
    input.mcp.tool == "delete_everything"
}

deny contains "no prompts here" if input.mcp.method == "prompts/get"

deny contains "modern_only is called at 2026-07-28" if {
    input.mcp.tool == "modern_only"
    input.mcp.protocol_version != "2026-07-28"
}
"""


@pytest.fixture(scope="module")
def gateway(start_gateway, servers, silent, scripted, tmp_path_factory):
    sse, json_ = servers
    policy = tmp_path_factory.mktemp("mcp-policy") / "mcp.rego"
    policy.write_text(POLICY)
    config = {
        "policy": {"rego": [str(policy)]},
        "metrics": {"listen": METRICS},
        "clients": [
            {"name": "alice", "keys": [VIRTUAL], "groups": ["research"]},
            {"name": "limited", "keys": [LIMITED]},
            {"name": "carol", "keys": [CAROL]},
        ],
        "limits": [{"name": "mcp", "match": {"client": "limited"}, "mcp_calls_per_minute": 3}],
        "identity": {"jwt": [JWT_ISSUER]},
        "mcp": {
            "servers": [
                {"name": "notes", "url": SSE_URL, "upstream": sse.url, "credential": {"bearer": REAL_BEARER}},
                {
                    "name": "notes-json",
                    "url": JSON_URL,
                    "upstream": json_.url,
                    "credential": {"header": {"name": "X-API-Key", "value": REAL_HEADER}},
                },
                {
                    "name": "refusing",
                    "url": REFUSING_URL,
                    "upstream": sse.url,
                    "credential": {"bearer": "refused-by-the-server"},
                },
                # Nothing listens on its upstream's port.
                {"name": "down", "url": DOWN_URL, "upstream": f"https://127.0.0.1:{_free_port()}"},
                {"name": "silent", "url": SILENT_URL, "upstream": silent.url, "timeout": 1},
                {"name": "slow", "url": SLOW_URL, "upstream": json_.url, "timeout": 1},
                {"name": "scripted", "url": SCRIPTED_URL, "upstream": scripted.url},
            ]
        },
    }
    started = start_gateway(config, providers=(), save_flows=True)
    return started


CALLS = """
added = await client.call_tool("add", {"a": 2, "b": 3})
failed = await client.call_tool("fail", {"reason": "no such note"})
read = await client.read_resource("notes://hello")
report(added=[c.text for c in added.content], added_error=added.is_error,
       failed_error=failed.is_error, read=[c.text for c in read.contents])
"""


@pytest.mark.parametrize(
    ("url", "mode"),
    [(SSE_URL, "legacy"), (JSON_URL, "legacy"), (SSE_URL, "auto")],
    ids=["sse", "json", "sse-discover"],
)
def test_tool_calls_and_a_resource_go_with_the_servers_credential(gateway, servers, url: str, mode: str) -> None:
    sse, json_ = servers
    server = sse if url == SSE_URL else json_
    server.clear()
    result = gateway.run(client_code(url, CALLS, mode=mode))
    assert result == {"added": ["5"], "added_error": False, "failed_error": True, "read": ["hello from the notes"]}

    received = server.received()
    assert received, "the server saw nothing"
    for request in received:
        headers = request["headers"]
        if url == SSE_URL:
            assert headers["authorization"] == f"Bearer {REAL_BEARER}"
            assert headers["x-api-key"] is None
        else:
            assert headers["authorization"] is None
            assert headers["x-api-key"] == REAL_HEADER
    if mode == "legacy":
        # The session the server opened at initialize is the one every later request names.
        sessions = [r["headers"]["mcp-session-id"] for r in received]
        assert sessions[0] is None and sessions[1] is not None and set(sessions[1:]) == {sessions[1]}

    records = gateway.new_audit(8 if mode == "legacy" else 5)
    if mode == "legacy":
        # The session's GET stream and the DELETE that ends it, as the client closes: a record each.
        assert sorted((r["method"], r["status"], r["is_error"]) for r in records if r["method"] in UNREQUESTED) == [
            ("DELETE", 200, None),
            ("GET", 200, None),
        ]
    opening = [("initialize", None, False), ("notifications/initialized", None, None)]
    assert [(r["method"], r["tool"], r["is_error"]) for r in requests_of(records)] == [
        *(opening if mode == "legacy" else [("server/discover", None, False)]),
        ("tools/call", "add", False),
        ("tools/list", None, False),  # the SDK lists the tools to check the result's schema
        ("tools/call", "fail", True),
        ("resources/read", None, False),
    ]
    # The revision each request states: the SDK's newest at the handshake (initialize states none).
    versions = [r["protocol_version"] for r in requests_of(records)]
    assert versions == ([None] + ["2025-11-25"] * 5 if mode == "legacy" else ["2026-07-28"] * 5)
    for record in records:
        assert record["event"] == "mcp_call" and record["server"] == server_name(url)
        assert record["client"] == "alice" and record["auth"] == "virtual_key"
        assert record["decision"] == "allow" and record["deny_reasons"] == []
        assert record["status"] == (202 if record["method"].startswith("notifications/") else 200)
        assert record["error"] is None, (record["method"], record["tool"], record["error"])
        assert record["refusal"] is None
        assert isinstance(record["latency_ms"], float)
    text = gateway.audit_path.read_text() + gateway.proxy.console()
    for secret in (VIRTUAL, REAL_BEARER, REAL_HEADER, "no such note", "hello from the notes"):
        assert secret not in text


UNREQUESTED = ("GET", "DELETE")


def requests_of(records: list[dict]) -> list[dict]:
    """The records of JSON-RPC requests, without those of the GET stream and a DELETE (which end as
    the client closes, after its requests)."""
    return [r for r in records if r["method"] not in UNREQUESTED]


def server_name(url: str) -> str:
    return "notes" if url == SSE_URL else "notes-json"


def test_an_unknown_key_is_refused_and_never_reaches_the_server(gateway, servers) -> None:
    sse, _ = servers
    sse.clear()
    result = gateway.run(client_code(SSE_URL, "report(connected=True)", key="tg-nobody"))
    assert result.get("connected") is None
    assert sse.received() == []
    record = gateway.last_audit()
    assert record["event"] == "mcp_call" and record["decision"] == "deny"
    assert record["status"] == 401 and record["deny_reasons"] == ["unknown or missing API key"]
    assert record["refusal"] == "unauthenticated"


RAW = """
import json, os, ssl, urllib.request
proxy = urllib.request.ProxyHandler({{"https": os.environ["HTTPS_PROXY"]}})
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
opener = urllib.request.build_opener(proxy, urllib.request.HTTPSHandler(context=context))
body = json.dumps({body}).encode()
request = urllib.request.Request("{url}", data=body, method="POST", headers={{
    "Authorization": "Bearer {key}", "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}})
try:
    answer = opener.open(request)
except urllib.error.HTTPError as e:
    answer = e
report(status=answer.status, headers={{k.lower(): v for k, v in answer.headers.items()}},
       body=json.loads(answer.read() or b"null"))
"""


def raw_post(gateway, url: str, body: object, key: str = VIRTUAL) -> dict:
    """One POST of `body` as it is, through the proxy (what no SDK sends: a batch, a bad body)."""
    return gateway.run(RAW.format(url=url, body=repr(body), key=key))


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def test_a_server_refusing_tollgates_credential_is_tollgates_problem(gateway, servers) -> None:
    """The server's 401 reaches the client without its WWW-Authenticate (which would start the
    client's OAuth discovery); the audit says whose credential failed."""
    sse, _ = servers
    sse.clear()
    result = raw_post(gateway, REFUSING_URL, INITIALIZE)
    assert result["status"] == 401
    assert "www-authenticate" not in result["headers"]
    assert [r["headers"]["authorization"] for r in sse.received()] == ["Bearer refused-by-the-server"]
    record = gateway.last_audit()
    assert (record["server"], record["method"], record["status"]) == ("refusing", "initialize", 401)
    assert record["error"] == "the MCP server refused Tollgate's credential (401)"
    assert record["decision"] == "allow"


def test_a_body_tollgate_cannot_read_is_refused(gateway, servers) -> None:
    sse, _ = servers
    sse.clear()
    repeated = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "name": "fail"}}'
    result = gateway.run(RAW.format(url=SSE_URL, body=repr(repeated), key=VIRTUAL).replace("json.dumps(", "str("))
    assert result["status"] == 400
    assert result["headers"]["x-tollgate-error"] == "bad_request"
    assert result["body"]["error"]["code"] == -32700
    assert sse.received() == []
    record = gateway.last_audit()
    assert (record["method"], record["decision"], record["status"]) == (None, "deny", 400)
    assert record["error"] == "bad request: the JSON body repeats a key in one object"


def test_two_authorization_headers_are_refused(gateway, servers) -> None:
    """A server reads one of them, and Tollgate cannot know which: a caller's own token could go
    beside the virtual key Tollgate identified it by."""
    sse, _ = servers
    sse.clear()
    time.sleep(BATCH_DELAY + 0.1)  # the records of the test before written
    before = len(gateway.audit())
    headers = [("Authorization", f"Bearer {VIRTUAL}"), ("Authorization", "Bearer callers-own-token"),
               ("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]  # fmt: skip
    answer = send(gateway.proxy.port, gateway.bundle, "mcp.example.test", "/mcp", body=json.dumps(INITIALIZE).encode(),
                  headers=headers)  # fmt: skip
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    assert answer.json()["error"]["code"] == -32700
    assert sse.received() == []
    (record,) = gateway.wait_audit(before + 1)[before:]
    assert (record["decision"], record["status"]) == ("deny", 400)
    assert record["error"] == "bad request: the request carries more than one Authorization header"


def test_an_unreachable_server_is_a_json_rpc_error_for_each_request(gateway) -> None:
    result = gateway.run(CLIENT_FAILS.format(url=DOWN_URL, key=VIRTUAL))
    assert result["error"] == "MCPError" and result["code"] == -32603, result
    assert re.fullmatch(r"Tollgate: MCP server down is unreachable: .+\.", result["message"]), result
    record = gateway.last_audit()
    assert (record["server"], record["method"], record["decision"]) == ("down", "initialize", "allow")
    assert record["status"] == 502
    assert record["error"].startswith("upstream unreachable: "), record["error"]
    assert record["deny_reasons"] == []

    answer = raw_post(gateway, DOWN_URL, BATCH[:1])
    assert answer["status"] == 502 and answer["headers"]["x-tollgate-error"] == "upstream_unreachable"
    assert [(e["id"], e["error"]["code"]) for e in answer["body"]] == [(1, -32603)]
    assert gateway.last_audit()["status"] == 502


@pytest.mark.parametrize(("url", "name"), [(SILENT_URL, "silent"), (SLOW_URL, "slow")], ids=["tls", "answer"])
def test_a_server_that_does_not_answer_in_time_is_a_504(gateway, url: str, name: str) -> None:
    """`silent` never completes its TLS handshake (the initialize times out); `slow` answers the
    initialize, then its tool's answer comes after its one second."""
    result = gateway.run(CLIENT_FAILS.format(url=url, key=VIRTUAL))
    assert result["error"] == "MCPError" and result["code"] == -32603, result
    assert result["message"] == f"Tollgate: MCP server {name} did not answer within 1 s."
    assert 1 <= result["seconds"] < 5, result
    records = requests_of(gateway.new_audit(1 if name == "silent" else 3))
    assert [(r["method"], r["tool"], r["status"], r["decision"], r["error"]) for r in records][-1] == (
        "initialize" if name == "silent" else "tools/call",
        None if name == "silent" else "slow",
        504,
        "allow",
        "upstream timeout: no response within 1 s",
    )


CLIENT_FAILS = (
    """
import asyncio, time
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        started = time.monotonic()
        try:
            async with Client(streamable_http_client("{url}", http_client=http), mode="legacy") as client:
                started = time.monotonic()
                await client.call_tool("slow", {{"seconds": 3}})
        except Exception as e:
            while isinstance(e, BaseExceptionGroup):  # the SDK's task group: the error inside it
                e = e.exceptions[0]
            error = getattr(e, "error", None)
            report(error=type(e).__name__, code=getattr(error, "code", None),
                   message=getattr(error, "message", str(e)), seconds=time.monotonic() - started)
"""
    + RUN_MAIN
)


DENIED = """
listed = await client.list_tools()
added = await client.call_tool("add", {"a": 1, "b": 1})
try:
    await client.call_tool("delete_everything", {"really": True})
except Exception as e:
    report(added=[c.text for c in added.content], tools=sorted(t.name for t in listed.tools),
           error=type(e).__name__, code=e.error.code, message=e.error.message)
"""


@pytest.mark.parametrize("url", [SSE_URL, JSON_URL], ids=["sse", "json"])
def test_the_policy_denies_a_tool_the_model_never_sees(gateway, servers, url: str) -> None:
    sse, json_ = servers
    server = sse if url == SSE_URL else json_
    server.clear()
    result = gateway.run(client_code(url, DENIED))
    assert result == {
        "added": ["2"],
        # delete_everything is left out of tools/list
        "tools": ["add", "approve", "customer", "fail", "send_mail", "slow"],
        "error": "MCPError",
        "code": -32001,
        "message": "Tollgate policy denied this request: alice may not call delete_everything",
    }
    calls = [call for r in server.received() for call in r["calls"]]
    assert ["tools/call", "delete_everything"] not in calls
    assert ["tools/call", "add"] in calls
    records = gateway.new_audit(7)  # initialize, initialized, tools/list, two tools/call, GET and DELETE
    denied = [r for r in records if r["decision"] == "deny"]
    assert [(r["method"], r["tool"], r["status"], r["deny_reasons"], r["is_error"]) for r in denied] == [
        ("tools/call", "delete_everything", 200, ["alice may not call delete_everything"], None)
    ]


BATCH = [
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
    {"jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": {"name": "review"}},
]


def test_a_batch_with_a_denied_request_is_refused_whole(gateway, servers) -> None:
    sse, _ = servers
    sse.clear()
    result = raw_post(gateway, SSE_URL, BATCH)
    assert result["status"] == 200
    assert result["headers"]["x-tollgate-error"] == "policy_denied"
    assert "www-authenticate" not in result["headers"]
    assert result["body"] == [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": "Tollgate refused this batch: another request in it was denied"}},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "Tollgate policy denied this request: no prompts here"}},
    ]  # fmt: skip
    assert sse.received() == []
    records = gateway.new_audit(2)
    assert [(r["method"], r["tool"], r["decision"], r["deny_reasons"]) for r in records] == [
        ("tools/call", "add", "deny", ["no prompts here"]),
        ("prompts/get", None, "deny", ["no prompts here"]),
    ]


LIMITED_CALLS = """
try:
    await client.call_tool("delete_everything", {"really": True})
except Exception as e:
    denied = type(e).__name__
first = await client.call_tool("add", {"a": 1, "b": 2})
try:
    await client.call_tool("add", {"a": 2, "b": 2})
except Exception as e:
    report(denied=denied, first=[c.text for c in first.content], error=type(e).__name__, message=str(e))
"""


def test_mcp_calls_per_minute_counts_each_request_sent(gateway, servers) -> None:
    """Three a minute: server/discover, a tools/call and the SDK's tools/list; the call the policy
    denied never went and counts for nothing; the fourth is refused 429."""
    if time.time() % 60 > 45:  # the three calls in one minute window
        time.sleep(61 - time.time() % 60)
    sse, _ = servers
    sse.clear()
    result = gateway.run(client_code(SSE_URL, LIMITED_CALLS, key=LIMITED, mode="auto"))
    assert result["denied"] == "MCPError" and result["first"] == ["3"]
    assert result["error"] == "MCPError"
    assert re.fullmatch(
        r"Tollgate limit 'mcp': mcp_calls_per_minute is 3 for limited; 3 used, this call needs up to 1\."
        r" The minute window ends in \d+ s\.",
        result["message"],
    )
    calls = [call for r in sse.received() for call in r["calls"]]
    assert [c for c in calls if c[0] == "tools/call"] == [["tools/call", "add"]]
    records = gateway.new_audit(5)
    assert [(r["method"], r["tool"], r["decision"], r["status"]) for r in records] == [
        ("server/discover", None, "allow", 200),
        ("tools/call", "delete_everything", "deny", 200),
        ("tools/call", "add", "allow", 200),
        ("tools/list", None, "allow", 200),
        ("tools/call", "add", "deny", 429),
    ]
    assert records[-1]["deny_reasons"] == ["limit 'mcp': mcp_calls_per_minute 3 reached for limited"]


def mcp_samples() -> dict[tuple[str, ...], float]:
    text = scrape(METRICS)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tollgate_mcp_calls_total":
                labels = sample.labels
                key = (labels["client"], labels["server"], labels["method"], labels["tool"], labels["outcome"])
                found[key] = sample.value
    return found


METERED = """
await client.call_tool("add", {"a": 1, "b": 1})
await client.call_tool("fail", {"reason": "x"})
try:
    await client.call_tool("delete_everything", {"really": True})
except Exception as e:
    report(done=True)
"""


def test_metrics_count_each_request_by_server_tool_and_outcome(gateway) -> None:
    before = mcp_samples()
    assert gateway.run(client_code(JSON_URL, METERED, mode="auto")) == {"done": True}
    gateway.new_audit(5)
    after = mcp_samples()
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("alice", "notes-json", "server/discover", "", "ok"): 1,
        ("alice", "notes-json", "tools/call", "add", "ok"): 1,
        ("alice", "notes-json", "tools/list", "", "ok"): 1,
        ("alice", "notes-json", "tools/call", "fail", "error"): 1,
        ("alice", "notes-json", "tools/call", "delete_everything", "denied"): 1,
    }


WHO = """
added = await client.call_tool("add", {"a": 20, "b": 22})
report(added=[c.text for c in added.content])
"""


def test_a_jwt_caller_is_identified_and_its_token_never_reaches_the_server(gateway, servers) -> None:
    sse, _ = servers
    sse.clear()
    token = hs256_token(claims(JWT_ISSUER["issuer"], "tollgate", "dana", groups=["ops"]), JWT_SECRET.encode())
    assert gateway.run(client_code(SSE_URL, WHO, key=token)) == {"added": ["42"]}
    assert {r["headers"]["authorization"] for r in sse.received()} == {f"Bearer {REAL_BEARER}"}
    records = gateway.new_audit(6)  # initialize, initialized, the call, the SDK's tools/list, GET and DELETE
    assert {(r["client"], r["auth"]) for r in records} == {("jwt:dana", "jwt")}
    assert token not in gateway.audit_path.read_text() + gateway.proxy.console()


@pytest.fixture(scope="module")
def login_gateway(start_gateway, servers):
    sse, _ = servers
    config = {
        "clients": [{"name": "carol", "groups": ["admins"]}],
        "mcp": {
            "servers": [{"name": "notes", "url": SSE_URL, "upstream": sse.url, "credential": {"bearer": REAL_BEARER}}]
        },
    }
    return start_gateway(config, "--set", "proxyauth=carol:pr0xy-PASSWORD-mcp", providers=())


def test_a_proxy_login_identifies_an_mcp_caller(login_gateway, servers) -> None:
    sse, _ = servers
    sse.clear()
    proxy = login_gateway.proxy.proxy_url.replace("http://", "http://carol:pr0xy-PASSWORD-mcp@")
    result = login_gateway.run(client_code(SSE_URL, WHO, key="the-callers-own-token"), proxy_url=proxy)
    assert result == {"added": ["42"]}
    assert {r["headers"]["authorization"] for r in sse.received()} == {f"Bearer {REAL_BEARER}"}
    records = login_gateway.new_audit(6)
    assert {(r["client"], r["auth"]) for r in records} == {("carol", "proxyauth")}


def policy_workers(pid: int) -> list[int]:
    """The proxy's policy worker processes (its children running `policy_worker`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"policy_worker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            pass
    return found


@pytest.fixture(scope="module")
def session_gateway(start_gateway, servers, tmp_path_factory):
    sse, _ = servers
    policy = tmp_path_factory.mktemp("mcp-session-policy") / "mcp.rego"
    policy.write_text(POLICY)  # reads the method, the tool and the client: never the session
    config = {
        "policy": {"rego": [str(policy)], "timeout": 1},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "mcp": {
            "servers": [{"name": "notes", "url": SSE_URL, "upstream": sse.url, "credential": {"bearer": REAL_BEARER}}]
        },
    }
    return start_gateway(config, providers=())


def test_a_new_session_hits_the_cache_of_a_policy_that_does_not_read_it(session_gateway) -> None:
    """The first session's decisions are cached; with the policy's worker stopped, a second
    session's requests (the same but for their session) are decided from the cache alone."""
    assert session_gateway.run(client_code(SSE_URL, WHO)) == {"added": ["42"]}
    session_gateway.new_audit(6)
    workers = policy_workers(session_gateway.proxy.process.pid)
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGSTOP)  # a request not in the cache would wait 1 s, then be denied
    try:
        assert session_gateway.run(client_code(SSE_URL, WHO)) == {"added": ["42"]}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(workers[0], signal.SIGCONT)
    records = session_gateway.new_audit(6)
    assert len({r["request_id"] for r in records}) == 6
    assert [(r["decision"], r["error"]) for r in records] == [("allow", None)] * 6


def scripted_post(gateway, body: bytes, headers: dict[str, str] | None = None, key: str = VIRTUAL):
    """One POST to the scripted server through the proxy, as raw HTTP (no MCP SDK encodes a body)."""
    fields = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **(headers or {}),
    }
    time.sleep(BATCH_DELAY + 0.05)  # the last request's records written: new_audit counts from here
    gateway._before = len(gateway.audit())
    return send(gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, "/mcp", headers=fields, body=body)


def tool_call(tool: str, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_an_encoded_request_is_decoded_decided_and_sent_as_it_came(gateway, scripted, encoding: str) -> None:
    scripted.received.clear()
    scripted.handler = answer_each
    allowed = ENCODERS[encoding](json.dumps(tool_call("add")).encode())
    answer = scripted_post(gateway, allowed, {"Content-Encoding": encoding})
    assert answer.status == 200, answer
    assert answer.json() == {"jsonrpc": "2.0", "id": 1, "result": {"method": "tools/call", "tool": "add"}}
    [received] = scripted.received
    assert (received.headers["content-encoding"], received.body) == (encoding, allowed)
    record = gateway.last_audit()
    assert (record["method"], record["tool"], record["decision"], record["status"]) == (
        "tools/call",
        "add",
        "allow",
        200,
    )
    assert (record["is_error"], record["error"]) == (False, None)

    denied = ENCODERS[encoding](json.dumps([tool_call("add"), tool_call("delete_everything", 2)]).encode())
    answer = scripted_post(gateway, denied, {"Content-Encoding": encoding})
    assert (answer.status, answer.headers["x-tollgate-error"]) == (200, "policy_denied")
    assert [(e["id"], e["error"]["code"]) for e in answer.json()] == [(1, -32001), (2, -32001)]
    assert (
        answer.json()[1]["error"]["message"]
        == "Tollgate policy denied this request: alice may not call delete_everything"
    )
    assert len(scripted.received) == 1  # the denied batch never reached the server
    records = gateway.new_audit(2)
    assert [(r["tool"], r["decision"]) for r in records] == [("add", "deny"), ("delete_everything", "deny")]


@pytest.mark.parametrize(
    ("encoding", "body", "error"),
    [
        ("compress", b"\x1f\x9d\x90", "Tollgate reads MCP requests encoded with gzip, deflate, br or zstd, not 'compress'"),
        ("base64", b"e30=", "Tollgate reads MCP requests encoded with gzip, deflate, br or zstd, not 'base64'"),
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}")),
         "Tollgate reads MCP requests encoded with gzip, deflate, br or zstd, not 'gzip, gzip'"),
        ("gzip", b"\x1f\x8b not gzip", "the body does not decode as its Content-Encoding (gzip) says"),
        ("gzip", gzip.compress(json.dumps(tool_call("add")).encode())[:-6], "the body ends before its gzip-encoded data does"),
        ("deflate", zlib.compress(json.dumps(tool_call("add")).encode()) + b"more",
         "the body does not decode as its Content-Encoding (deflate) says"),
        ("br", brotli.compress(b" " * (65 * 2**20)), "the body decodes to more than 64 MiB"),
    ],
    ids=["compress", "base64", "twice", "corrupt", "cut", "trailing", "bomb"],
)  # fmt: skip
def test_an_encoding_tollgate_cannot_read_exactly_is_refused(gateway, scripted, encoding: str, body: bytes, error: str):
    scripted.received.clear()
    answer = scripted_post(gateway, body, {"Content-Encoding": encoding})
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    message = f"Tollgate cannot read this request exactly and did not forward it: {error}."
    assert answer.json() == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": message}}
    assert scripted.received == []
    record = gateway.last_audit()
    assert (record["server"], record["decision"], record["status"]) == ("scripted", "deny", 400)
    assert record["error"] == f"bad request: {error}"


def test_an_https_url_sent_in_cleartext_is_refused(gateway, scripted) -> None:
    # `POST https://…/mcp` over plain TCP to the proxy, no CONNECT: its key crossed that hop unencrypted.
    scripted.received.clear()
    time.sleep(BATCH_DELAY + 0.05)
    gateway._before = len(gateway.audit())
    fields = {"Authorization": f"Bearer {VIRTUAL}", "Content-Type": "application/json"}
    body = json.dumps(tool_call("add")).encode()
    answer = send(gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, "/mcp", headers=fields, body=body, tls=False,
                  scheme="https")  # fmt: skip
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    assert "came to the proxy in cleartext" in answer.json()["error"]["message"]
    assert scripted.received == []
    (record,) = gateway.new_audit(1)
    assert (record["server"], record["decision"], record["status"]) == ("scripted", "deny", 400)


def listed(message: dict) -> dict:
    tools = [{"name": name, "inputSchema": {"type": "object"}} for name in ("add", "delete_everything")]
    return {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": tools}}


def test_an_sse_answer_broken_off_ends_with_a_json_rpc_error(gateway, scripted) -> None:
    """The server sends a log message and the start of its answer, then resets the connection: the
    client has the log message, then the tool call's JSON-RPC error, and the answer ends."""
    scripted.received.clear()

    def broken(message: dict) -> Reply:
        partial = b'event: message\r\ndata: {"jsonrpc": "2.0", "id": ' + str(message["id"]).encode()
        return Reply(200, chunks=[log_event("working"), partial, b"never sent"], reset_after=2)

    scripted.handler = speaks_mcp(broken)
    result = gateway.run(LOGGED.format(url=SCRIPTED_URL, key=VIRTUAL, body='await client.call_tool("add", {})'))
    assert result["logs"] == ["working"]
    assert (result["error"], result["code"]) == ("MCPError", -32603), result
    assert re.fullmatch(r"Tollgate: MCP server scripted broke off its answer: .+\.", result["message"]), result
    records = gateway.new_audit(3)  # initialize, initialized, the call (no session: no GET, no DELETE)
    call = records[-1]
    assert (call["method"], call["tool"], call["decision"], call["status"]) == ("tools/call", "add", "allow", 200)
    assert call["is_error"] is True
    assert call["error"].startswith("the server broke off its answer: "), call["error"]


LOGGED = (
    """
import asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

logs = []

async def log(params):
    logs.append(params.data)

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="legacy",
                          logging_callback=log) as client:
            try:
                {body}
            except Exception as e:
                error = getattr(e, "error", None)
                report(logs=logs, error=type(e).__name__, code=getattr(error, "code", None),
                       message=getattr(error, "message", str(e)))
"""
    + RUN_MAIN
)


def test_a_json_answer_broken_off_is_a_json_rpc_error_for_each_request(gateway, scripted) -> None:
    """A JSON answer is read whole before it goes on: cut short, none of it went, and the client
    gets the errors of a batch in its place."""
    scripted.received.clear()
    partial = b'[{"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, {"jsonrpc": "2.0", "id"'
    scripted.handler = lambda r: Reply(
        200, headers={"content-type": "application/json"}, chunks=[partial, b"x"], reset_after=1
    )
    batch = [tool_call("add"), tool_call("fail", 2)]
    before = mcp_samples()
    answer = scripted_post(gateway, json.dumps(batch).encode())
    assert answer.status == 200
    errors = answer.json()
    assert [(e["id"], e["error"]["code"]) for e in errors] == [(1, -32603), (2, -32603)]
    assert errors[0]["error"]["message"].startswith("Tollgate: MCP server scripted broke off its answer: ")
    records = gateway.new_audit(2)
    assert [(r["tool"], r["decision"], r["is_error"]) for r in records] == [
        ("add", "allow", True),
        ("fail", "allow", True),
    ]
    assert all(r["error"].startswith("the server broke off its answer: ") for r in records)
    after = mcp_samples()
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("alice", "scripted", "tools/call", "add", "error"): 1,
        ("alice", "scripted", "tools/call", "fail", "error"): 1,
    }


@pytest.mark.parametrize("as_sse", [True, False], ids=["sse", "json"])
def test_an_answer_broken_off_ends_whole_over_http2(gateway, scripted, as_sse: bool) -> None:
    """Over HTTP/2 the client's stream ends as a whole answer's would (no reset)."""
    scripted.received.clear()
    if as_sse:
        chunks, content_type = [event(tool_answer(1)), b"event: message\r\ndata: {", b"x"], "text/event-stream"
    else:
        chunks, content_type = [b'[{"jsonrpc": "2.0", "id": 1, "result": {}}', b"x"], "application/json"
    cut = len(chunks) - 1
    scripted.handler = lambda r: Reply(200, headers={"content-type": content_type}, chunks=chunks, reset_after=cut)
    headers = {
        "authorization": f"Bearer {VIRTUAL}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    body = json.dumps([tool_call("add"), tool_call("fail", 2)]).encode()
    time.sleep(BATCH_DELAY + 0.05)
    gateway._before = len(gateway.audit())
    [answer] = h2_calls(gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, [H2Request("/mcp", body, headers)], 20)
    assert (answer.status, answer.reset) == (200, None), answer
    if as_sse:
        messages = [json.loads(line[6:]) for line in answer.body.splitlines() if line.startswith(b"data: ")]
        assert [(m["id"], "error" in m) for m in messages] == [(1, False), (2, True)]
    else:
        messages = json.loads(answer.body)
        assert [(m["id"], m["error"]["code"]) for m in messages] == [(1, -32603), (2, -32603)]
    records = gateway.new_audit(2)
    assert [(r["tool"], r["is_error"]) for r in records] == [("add", not as_sse), ("fail", True)]


def tool_answer(request_id: int) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [], "isError": False}}


def test_a_tools_list_event_stream_is_filtered_event_by_event(gateway, scripted, tmp_path) -> None:
    """The log message before the list reaches the client while the server still holds the list
    back (until the client has it, or 10 s); the list then comes without the denied tool."""
    scripted.received.clear()
    marker = tmp_path / "logged"
    streamed: list[bool] = []

    def after_the_log(_: int) -> None:
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        streamed.append(marker.exists())

    scripted.handler = speaks_mcp(
        lambda m: Reply(200, chunks=[log_event("listing"), event(listed(m))], gate=after_the_log)
    )
    code = LOGGED.replace("logs.append(params.data)", f"logs.append(params.data); open({str(marker)!r}, 'w').close()")
    body = "listed = await client.list_tools(); report(logs=logs, tools=sorted(t.name for t in listed.tools))"
    result = gateway.run(code.format(url=SCRIPTED_URL, key=VIRTUAL, body=body))
    assert result == {"logs": ["listing"], "tools": ["add"]}
    assert streamed == [True]
    call = gateway.new_audit(3)[-1]
    assert (call["method"], call["is_error"], call["error"]) == ("tools/list", False, None)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("as_sse", [True, False], ids=["sse", "json"])
def test_an_encoded_answer_is_read_and_its_tools_filtered(gateway, scripted, encoding: str, as_sse: bool) -> None:
    scripted.received.clear()

    def encoded(message: dict) -> Reply:
        tool = message.get("params", {}).get("name")
        answer = listed(message) if message["method"] == "tools/list" else {
            "jsonrpc": "2.0", "id": message["id"], "result": {"content": [], "isError": tool == "fail"},
        }  # fmt: skip
        body = event(answer) if as_sse else json.dumps(answer).encode()
        content_type = "text/event-stream" if as_sse else "application/json"
        return Reply(200, ENCODERS[encoding](body), {"content-encoding": encoding, "content-type": content_type})

    scripted.handler = speaks_mcp(encoded)
    body = """listed = await client.list_tools()
                failed = await client.call_tool("fail", {})
                report(tools=sorted(t.name for t in listed.tools), failed=failed.is_error)"""
    result = gateway.run(LOGGED.format(url=SCRIPTED_URL, key=VIRTUAL, body=body))
    assert result == {"tools": ["add"], "failed": True}
    calls = gateway.new_audit(4)[-2:]
    assert [(r["method"], r["tool"], r["is_error"], r["error"]) for r in calls] == [
        ("tools/list", None, False, None),
        ("tools/call", "fail", True, None),
    ]


def test_an_answer_in_an_encoding_tollgate_cannot_read_is_refused(gateway, scripted) -> None:
    scripted.received.clear()
    scripted.handler = lambda r: Reply(200, b"\x1f\x9d\x90 compressed", {"content-encoding": "compress"})
    answer = scripted_post(gateway, json.dumps(tool_call("add")).encode())
    assert answer.status == 200 and "content-encoding" not in answer.headers
    assert answer.json()["error"] == {
        "code": -32603,
        "message": "Tollgate cannot read the MCP server's answer: its Content-Encoding 'compress' is not one"
        " Tollgate reads.",
    }
    record = gateway.last_audit()
    assert (record["tool"], record["is_error"]) == ("add", True)
    assert record["error"] == "its Content-Encoding 'compress' is not one Tollgate reads"


SESSION_ATTACK = """
import json, os, ssl, urllib.request
proxy = urllib.request.ProxyHandler({{"https": os.environ["HTTPS_PROXY"]}})
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
opener = urllib.request.build_opener(proxy, urllib.request.HTTPSHandler(context=context))

def call(key, body=None, session=None, method="POST"):
    headers = {{"Authorization": "Bearer " + key, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}}
    if session is not None:
        headers["Mcp-Session-Id"] = session
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request("{url}", data=data, method=method, headers=headers)
    try:
        answer = opener.open(request)
    except urllib.error.HTTPError as e:
        answer = e
    text = answer.read()
    return answer.status, answer.headers.get("mcp-session-id"), json.loads(text) if text else None

status, session, _ = call("{alice}", {initialize})
call("{alice}", {{"jsonrpc": "2.0", "method": "notifications/initialized"}}, session)
add = {{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {{"name": "add", "arguments": {{"a": 2, "b": 3}}}}}}
stolen = call("{carol}", add, session)
deleted = call("{carol}", None, session, "DELETE")
unknown = call("{alice}", add, "no-such-session-0001")
own = call("{alice}", add, session)
report(opened=status, session=session is not None, stolen=[stolen[0], stolen[2]], deleted=[deleted[0], deleted[2]],
       unknown=unknown[0], own=[own[0], own[2]["result"]["content"][0]["text"]])
"""


def test_an_mcp_session_belongs_to_the_caller_that_opened_it(gateway, servers) -> None:
    """carol holding alice's Mcp-Session-Id gets what a server answers for a session it does not
    know, for a call and for a DELETE, and neither reaches the server; alice's session goes on."""
    _, json_ = servers
    json_.clear()
    result = gateway.run(SESSION_ATTACK.format(url=JSON_URL, alice=VIRTUAL, carol=CAROL, initialize=repr(INITIALIZE)))
    not_found = {"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "Session not found"}}
    assert result == {
        "opened": 200,
        "session": True,
        "stolen": [404, not_found],
        "deleted": [404, {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Session not found"}}],
        "unknown": 404,
        "own": [200, "5"],
    }
    # The server saw alice's requests only: carol's and the unknown session's never reached it.
    assert [r["method"] for r in json_.received()] == ["POST", "POST", "POST"]
    records = gateway.new_audit(6)
    carol = [r for r in records if r["client"] == "carol"]
    assert [(r["method"], r["tool"], r["status"], r["decision"], r["deny_reasons"]) for r in carol] == [
        ("tools/call", "add", 404, "deny", ["the MCP session belongs to another caller"]),
        ("DELETE", None, 404, "deny", ["the MCP session belongs to another caller"]),
    ]
    alice = [(r["method"], r["status"], r["decision"], r["deny_reasons"]) for r in records if r["client"] == "alice"]
    assert alice == [
        ("initialize", 200, "allow", []),
        ("notifications/initialized", 202, "allow", []),
        ("tools/call", 404, "deny", ["the MCP session was not opened through Tollgate"]),
        ("tools/call", 200, "allow", []),
    ]


SESSION_ACROSS = """
import json, ssl, urllib.request
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])

def call(proxy_url, key, body=None, session=None):
    proxy = urllib.request.ProxyHandler({{"https": proxy_url}})
    opener = urllib.request.build_opener(proxy, urllib.request.HTTPSHandler(context=context))
    headers = {{"Authorization": "Bearer " + key, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}}
    if session is not None:
        headers["Mcp-Session-Id"] = session
    request = urllib.request.Request("{url}", data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        answer = opener.open(request)
    except urllib.error.HTTPError as e:
        answer = e
    answer.read()
    return answer.status, answer.headers.get("mcp-session-id")

_, session = call("{a}", "{alice}", {initialize})
call("{a}", "{alice}", {{"jsonrpc": "2.0", "method": "notifications/initialized"}}, session)
add = {{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {{"name": "add", "arguments": {{"a": 2, "b": 3}}}}}}
report(carol_on_b=call("{b}", "{carol}", add, session)[0], alice_on_b=call("{b}", "{alice}", add, session)[0])
"""


def test_an_mcp_sessions_owner_is_known_to_every_process_sharing_a_redis_ledger(
    start_gateway, servers, tmp_path
) -> None:
    """alice opens a session through one process; through another sharing the Redis ledger her
    session goes on and carol's use of it is refused."""
    _, json_ = servers
    redis = redis_server(tmp_path / "redis")
    try:
        config = {
            "clients": [{"name": "alice", "keys": [VIRTUAL]}, {"name": "carol", "keys": [CAROL]}],
            "ledger": {"store": redis.url},
            "mcp": {"servers": [{"name": "notes-json", "url": JSON_URL, "upstream": json_.url}]},
        }
        # Each its own copy: a gateway writes its audit file's path into the configuration.
        a, b = start_gateway(dict(config), providers=()), start_gateway(dict(config), providers=())
        json_.clear()
        code = "import os\n" + SESSION_ACROSS.format(
            url=JSON_URL, a=a.proxy.proxy_url, b=b.proxy.proxy_url, alice=VIRTUAL, carol=CAROL,
            initialize=repr(INITIALIZE),
        )  # fmt: skip
        assert a.run(code) == {"carol_on_b": 404, "alice_on_b": 200}
        assert [r["method"] for r in json_.received()] == ["POST", "POST", "POST"]
        carol, alice = b.wait_audit(2)
        assert (carol["client"], carol["decision"], carol["deny_reasons"]) == (
            "carol", "deny", ["the MCP session belongs to another caller"],
        )  # fmt: skip
        assert (alice["client"], alice["decision"], alice["status"]) == ("alice", "allow", 200)
    finally:
        redis.stop()


NOW = "2026-07-28"
VERSION_META = "io.modelcontextprotocol/protocolVersion"


def modern_call(tool: str = "add", request_id: int = 1, **params: object) -> dict:
    """A tools/call at 2026-07-28 as the SDK's client sends it: its revision in its `_meta`."""
    meta = {VERSION_META: NOW, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": {}, "_meta": meta, **params}}  # fmt: skip


def modern_headers(method: str = "tools/call", name: str | None = "add") -> list[tuple[str, str]]:
    fields = [("MCP-Protocol-Version", NOW), ("Mcp-Method", method)]
    return fields + ([("Mcp-Name", name)] if name is not None else [])


def modern_post(gateway, body: object, fields: list[tuple[str, str]]):
    """One hand-made POST to the scripted server with exactly these MCP headers (repeated ones too)."""
    pairs = [("Authorization", f"Bearer {VIRTUAL}"), ("Content-Type", "application/json"),
             ("Accept", "application/json, text/event-stream"), *fields]  # fmt: skip
    time.sleep(BATCH_DELAY + 0.05)
    gateway._before = len(gateway.audit())
    return send(
        gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, "/mcp", headers=pairs, body=json.dumps(body).encode()
    )


def refused_unsent(gateway, scripted, answer, code: int, message: str) -> dict:
    """Tollgate answered the request (id 1) 400 (bad_request) with the JSON-RPC error `code` and
    `message`, and sent nothing to the scripted server: the call's one record."""
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    assert answer.json() == {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}
    assert scripted.received == []
    (record,) = gateway.new_audit(1)
    return record


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (modern_headers(name="delete_everything"), "mcp-name header does not match what the request body names"),
        (modern_headers(name=None), "mcp-name header does not match what the request body names"),
        ([*modern_headers(), ("Mcp-Name", "add")], "mcp-name header appears more than once"),
        ([("MCP-Protocol-Version", NOW), ("Mcp-Name", "add")], "mcp-method header does not match the request body's method"),
        (modern_headers("tools/list"), "mcp-method header does not match the request body's method"),
        ([*modern_headers(), ("Mcp-Method", "tools/list")], "mcp-method header appears more than once"),
        (modern_headers()[1:], "mcp-protocol-version header does not match the protocol version the body states"),
        ([("MCP-Protocol-Version", "2025-11-25"), *modern_headers()[1:]],
         "mcp-protocol-version header does not match the protocol version the body states"),
        ([*modern_headers(), ("MCP-Protocol-Version", NOW)], "mcp-protocol-version header appears more than once"),
    ],
    ids=["other-name", "no-name", "name-twice", "no-method", "other-method", "method-twice", "no-version",
         "version-2025", "version-twice"],
)  # fmt: skip
def test_a_2026_request_whose_headers_disagree_with_its_body_is_refused(gateway, scripted, fields, error) -> None:
    scripted.received.clear()
    scripted.handler = answer_each
    answer = modern_post(gateway, modern_call("add"), fields)
    record = refused_unsent(gateway, scripted, answer, -32020, f"Tollgate refused this request as it came: {error}.")
    assert (record["event"], record["method"], record["tool"], record["decision"], record["status"]) == (
        "mcp_call", "tools/call", "add", "deny", 400,
    )  # fmt: skip
    assert record["error"] == f"bad request: {error}" and record["client"] == "alice"


@pytest.mark.parametrize(
    ("header", "value"),
    [("Mcp-Param-To", "=?base64?YQ?="), ("Mcp-Param-To", "=?base64?-_8=?="), ("Mcp-Param-To", "=?base64?YW Rk?="),
     ("Mcp-Name", "=?BASE64?YWRk?=")],
    ids=["unpadded", "url-safe", "space", "upper-case"],
)  # fmt: skip
def test_a_header_in_the_base64_form_not_canonical_is_refused(gateway, scripted, header: str, value: str) -> None:
    """A server or a load balancer may decode it otherwise than Tollgate, or read it as it is."""
    scripted.received.clear()
    scripted.handler = answer_each
    fields = [*modern_headers(name=None), ("Mcp-Name", value)] if header == "Mcp-Name" else modern_headers()
    answer = modern_post(gateway, modern_call("add"), fields + ([(header, value)] if header != "Mcp-Name" else []))
    error = f"{header.lower()} header is not in the canonical =?base64?…?= form"
    record = refused_unsent(gateway, scripted, answer, -32020, f"Tollgate refused this request as it came: {error}.")
    assert (record["method"], record["decision"], record["status"], record["error"]) == (
        "tools/call", "deny", 400, f"bad request: {error}")  # fmt: skip


@pytest.mark.parametrize("twin", ["Mcp_Name", "Mcp_Method", "Mcp_Param_To", "MCP_Protocol_Version", "Mcp_Session_Id"])
@pytest.mark.parametrize("revision", [NOW, "2025-11-25"])
def test_an_mcp_header_written_with_underscores_is_refused(gateway, scripted, twin: str, revision: str) -> None:
    """A server behind a CGI-like gateway reads `Mcp_Name` as `Mcp-Name`, which Tollgate would not
    have checked: refused, nothing sent."""
    scripted.received.clear()
    scripted.handler = answer_each
    fields = modern_headers() if revision == NOW else [("MCP-Protocol-Version", revision)]
    body = modern_call("add") if revision == NOW else tool_call("add")
    answer = modern_post(gateway, body, [*fields, (twin, "delete_everything")])
    problem = f"the request carries {twin!r}, an MCP header's name written with _ for -"
    message = f"Tollgate cannot read this request exactly and did not forward it: {problem}."
    record = refused_unsent(gateway, scripted, answer, -32700, message)
    assert (record["method"], record["tool"], record["decision"], record["status"], record["error"]) == (
        "tools/call", "add", "deny", 400, f"bad request: {problem}")  # fmt: skip


def test_a_2026_request_whose_headers_agree_goes_on_as_it_came(gateway, scripted) -> None:
    scripted.received.clear()
    scripted.handler = answer_each
    name = "résumé"  # not printable ASCII: its Mcp-Name in the base64 form
    encoded = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    answer = modern_post(gateway, modern_call(name), modern_headers(name=encoded))
    assert answer.status == 200, answer
    [received] = scripted.received
    assert (received.headers["mcp-name"], received.headers["mcp-method"]) == (encoded, "tools/call")
    (record,) = gateway.new_audit(1)
    assert (record["tool"], record["decision"], record["protocol_version"]) == (name, "allow", NOW)


def test_the_policy_decides_on_the_revision(gateway, scripted) -> None:
    scripted.received.clear()
    scripted.handler = answer_each
    answer = modern_post(gateway, modern_call("modern_only"), modern_headers(name="modern_only"))
    assert answer.status == 200 and answer.json()["result"]["tool"] == "modern_only"
    legacy = tool_call("modern_only")
    answer = modern_post(gateway, legacy, [("MCP-Protocol-Version", "2025-11-25")])
    assert (answer.status, answer.json()["error"]["code"]) == (200, -32001)
    assert len(scripted.received) == 1
    (record,) = gateway.new_audit(1)
    assert (record["decision"], record["deny_reasons"], record["protocol_version"]) == (
        "deny", ["modern_only is called at 2026-07-28"], "2025-11-25",
    )  # fmt: skip


def test_a_batch_at_2026_is_refused_and_earlier_ones_decided_member_by_member(gateway, scripted) -> None:
    scripted.received.clear()
    scripted.handler = answer_each
    answer = modern_post(gateway, [modern_call("add"), modern_call("add", 2)], modern_headers())
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    assert [(e["id"], e["error"]["code"]) for e in answer.json()] == [(1, -32600), (2, -32600)]
    assert answer.json()[0]["error"]["message"] == (
        "Tollgate refused this request as it came: at 2026-07-28 a POST carries one JSON-RPC request or notification."
    )
    assert scripted.received == []
    assert [(r["tool"], r["decision"], r["status"]) for r in gateway.new_audit(2)] == [("add", "deny", 400)] * 2
    # At 2025-03-26 a batch is each of its requests, each decided.
    answer = modern_post(gateway, [tool_call("add"), tool_call("add", 2)], [("MCP-Protocol-Version", "2025-03-26")])
    assert answer.status == 200 and [m["result"]["tool"] for m in answer.json()] == ["add", "add"]
    assert len(scripted.received) == 1
    assert [(r["decision"], r["protocol_version"]) for r in gateway.new_audit(2)] == [("allow", "2025-03-26")] * 2


def test_a_2026_request_naming_a_session_is_refused(gateway, scripted) -> None:
    """2026-07-28 has no sessions: a request naming one is malformed (400), where at 2025 it would
    be checked against the session's owner (404)."""
    scripted.received.clear()
    scripted.handler = answer_each
    answer = modern_post(gateway, modern_call("add"), [*modern_headers(), ("Mcp-Session-Id", "abc")])
    assert (answer.status, answer.headers["x-tollgate-error"]) == (400, "bad_request")
    assert answer.json()["error"] == {
        "code": -32600,
        "message": "Tollgate refused this request as it came: at 2026-07-28 there are no sessions: a request"
        " carries no Mcp-Session-Id.",
    }
    assert scripted.received == []
    (record,) = gateway.new_audit(1)
    assert (record["decision"], record["status"], record["protocol_version"]) == ("deny", 400, NOW)
    answer = modern_post(gateway, tool_call("add"), [("MCP-Protocol-Version", "2025-11-25"), ("Mcp-Session-Id", "abc")])
    assert (answer.status, answer.json()["error"]["message"]) == (404, "Session not found")
    assert scripted.received == []
    # The GET stream naming a session at 2026-07-28: refused as the POST is.
    time.sleep(BATCH_DELAY + 0.05)
    gateway._before = len(gateway.audit())
    fields = [("Authorization", f"Bearer {VIRTUAL}"), ("Accept", "text/event-stream"),
              ("MCP-Protocol-Version", NOW), ("Mcp-Session-Id", "abc")]  # fmt: skip
    answer = send(gateway.proxy.port, gateway.bundle, SCRIPTED_HOST, "/mcp", method="GET", headers=fields)
    assert (answer.status, answer.json()["error"]["code"]) == (400, -32600)
    assert scripted.received == []
    (record,) = gateway.new_audit(1)
    assert (record["method"], record["decision"], record["status"]) == ("GET", "deny", 400)


LISTEN = """
async with client.listen(tools_list_changed=True) as subscription:
    honored = subscription.honored.tools_list_changed
report(honored=honored)
"""


def test_a_subscription_its_client_closes_has_ended(gateway, servers) -> None:
    """At 2026-07-28 a client ends `subscriptions/listen` by closing its stream: no error."""
    sse, _ = servers
    sse.clear()
    assert gateway.run(client_code(SSE_URL, LISTEN, mode="auto")) == {"honored": True}
    records = gateway.new_audit(2)
    assert [(r["method"], r["decision"], r["status"], r["protocol_version"]) for r in records] == [
        ("server/discover", "allow", 200, NOW),
        ("subscriptions/listen", "allow", 200, NOW),
    ]
    assert [(r["is_error"], r["error"]) for r in records] == [(False, None), (None, None)]


def test_zz_no_credential_argument_or_result_in_any_output(gateway) -> None:
    """Last in this file: it stops the gateway to read its saved flows whole."""
    assert gateway.audit(), "the tests before it made calls"
    outputs = stopped_outputs(gateway)
    assert b"mcp_call" in outputs["saved flows"] and b"x-tollgate-request-id" in outputs["console"].lower()
    assert_no_secret(
        outputs, (VIRTUAL, LIMITED, CAROL, REAL_BEARER, REAL_HEADER, "no such note", "hello from the notes")
    )
