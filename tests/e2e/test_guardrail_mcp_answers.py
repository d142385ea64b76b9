"""Guardrails on MCP results, with the official MCP SDK's client and server through mitmdump: a
`tools/call` result (its text and its structuredContent), a `resources/read` result and a
`prompts/get` result that carry a customer's e-mail address come to the SDK with it replaced
(`redact`); a tool result that carries a card number comes as the JSON-RPC error -32001 the SDK
raises (`deny`), nothing of the number sent; by server-sent events and as JSON, at 2025-06-18's
sessions and at 2026-07-28. The records count what was found (`answer_findings`)."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families
from tests.support import guardrail_samples as samples
from tests.support.mcp_upstream import McpUpstream

VIRTUAL = "tg-mcp-answers-alice-0001"
SSE_URL = "https://mcp-answers.example.test/mcp"
JSON_URL = "https://mcp-answers-json.example.test/mcp"
EMAIL = samples.EMAIL
CARD = samples.SAMPLES["pii.payment_card"][0]
REDACTED = "[REDACTED:pii.email]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS = f"127.0.0.1:{_free_port()}"

CLIENT = """
import asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="{mode}") as client:
{body}

try:
    asyncio.run(main())
except BaseExceptionGroup as group:  # the SDK's task group: the error inside it is the one to see
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    raise first from None
"""


def client_code(url: str, body: str, mode: str) -> str:
    indented = "\n".join("            " + line for line in body.strip().splitlines())
    return CLIENT.format(key=VIRTUAL, url=url, body=indented, mode=mode)


@pytest.fixture(scope="module")
def servers(upstream_ca: trustme.CA) -> Iterator[tuple[McpUpstream, McpUpstream]]:
    sse, json_ = McpUpstream(upstream_ca), McpUpstream(upstream_ca, json_response=True)
    yield sse, json_
    sse.close()
    json_.close()


@pytest.fixture(scope="module")
def gateway(start_gateway, servers, tmp_path_factory):
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
            ]
        },
    }
    saved = tmp_path_factory.mktemp("mcp-answers-saved") / "flows.mitm"
    started = start_gateway(config, "--set", f"save_stream_file={saved}", "--set", "flow_detail=4", providers=())
    started.saved = saved
    return started


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


def answer_samples() -> dict[tuple[str, ...], float]:
    deadline = time.monotonic() + 10  # the metrics' server opens once the configuration has loaded
    while True:
        try:
            with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
                text = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("tollgate_guardrail_answer_findings_total", "tollgate_guardrail_answers_cut_total"):
                labels = sample.labels
                key = (
                    sample.name,
                    labels["provider"],
                    labels["kind"],
                    *([labels["action"]] if "action" in labels else []),
                )
                found[key] = sample.value
    return found


def test_metrics_count_what_mcp_results_held(gateway) -> None:
    before = answer_samples()
    gateway.run(client_code(SSE_URL, REDACTED_CALLS, "legacy"))
    read_records(gateway, 3)
    gateway.run(client_code(SSE_URL, DENIED_CALL, "legacy"))
    read_records(gateway, 2)
    after = answer_samples()
    added = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert added == {
        ("tollgate_guardrail_answer_findings_total", "mcp", "pii.email", "redact"): 4,
        ("tollgate_guardrail_answer_findings_total", "mcp", "pii.payment_card", "deny"): 1,
        ("tollgate_guardrail_answers_cut_total", "mcp", "pii.payment_card"): 1,
    }


def test_zz_no_value_in_any_output(gateway) -> None:
    """Last in this file: it stops the gateway to read its saved flows whole."""
    assert gateway.audit(), "the tests before it made calls"
    gateway.proxy.stop()  # flushes the saved flows
    outputs = {
        "audit": gateway.audit_path.read_bytes(),
        "console": gateway.proxy.output.read_bytes(),
        "saved flows": gateway.saved.read_bytes(),
    }
    assert b"mcp_call" in outputs["saved flows"]
    for where, content in outputs.items():
        for value in (EMAIL, CARD):
            assert value.encode() not in content, f"a planted value in the {where}"
