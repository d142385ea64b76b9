"""Guard as a call step on mitmproxy's test flows: findings counted by kind, a denied call refused
in its provider's shape (never naming a value), a redacted body still JSON with its length right,
a call it cannot read refused by `unread: deny`, and nothing read where nothing is looked for."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from mitmproxy import flow as flow_module
from mitmproxy import http
from tests.support import guardrail_samples as samples

from tollgate.calls.call import Call
from tollgate.calls.policy_input import policy_input
from tollgate.governance.guardrails.workers import OFF_LOOP_BYTES, ScanWorkers
from tollgate.proxy.flows import call_of
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.guardrails.guard import MCP_READ, Guard
from tollgate.proxy.state import Shared

from ..conftest import HOSTS, api_flow, classified, configured

OWN_KEY = samples.SAMPLES["secrets.openai_api_key"][0]
RULES = {
    "providers": {"openai": {"keys": [OWN_KEY]}},
    "guardrails": [
        {"detect": ["secrets.aws_access_key_id", "secrets.aws_secret_access_key"], "action": "redact"},
        {"match": {"provider": "anthropic"}, "detect": ["secrets.private_key"], "action": "deny"},
        {"match": {"provider": "gemini"}, "detect": ["pii.email"], "action": "audit", "unread": "deny"},
    ],
}
PAIR = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"


def guarded(provider: str, path: str, body: dict, shared: Shared | None = None, **flow_args):
    shared = shared or configured(RULES)
    flow = api_flow(HOSTS[provider], path, body, **flow_args)
    call = classified(shared, flow)
    assert CallSteps(Guard(shared).handle).at_request(flow) is None
    return flow, call


def test_a_redacted_body_is_the_same_json_but_for_the_placeholders() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PAIR}]}
    flow, call = guarded("openai", "/v1/chat/completions", body)
    assert flow.response is None
    sent = json.loads(flow.request.raw_content)
    assert sent["messages"][0]["content"] == (
        "AWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
    )
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))
    assert call.request.body == sent  # what the later steps read and write anew
    assert call.request.findings == {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1}
    assert call.request.redacted == 2
    # The policy sees what the client sent, before the redaction.
    assert policy_input(call)["findings"] == call.request.findings


def test_an_encoded_body_is_read_decoded_and_sent_encoded_again() -> None:
    raw = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": PAIR}]}).encode()
    flow, call = guarded("openai", "/v1/chat/completions", gzip.compress(raw), headers=(("content-encoding", "gzip"),))
    assert flow.response is None and call.request.redacted == 2
    assert b"[REDACTED:secrets.aws_access_key_id]" in gzip.decompress(flow.request.raw_content)


def test_a_denied_call_is_refused_naming_kinds_and_counts_never_a_value() -> None:
    key = samples.pem()
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": key + key}]}
    flow, call = guarded("anthropic", "/v1/messages", body)
    assert flow.response is not None and flow.response.status_code == 403
    assert flow.response.headers["x-tollgate-error"] == "content_denied"
    error = json.loads(flow.response.content)["error"]
    assert error == {
        "type": "permission_error",
        "message": "Tollgate refused this call: its content holds secrets.private_key (2).",
    }
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("content_denied",))
    assert call.request.findings == {"secrets.private_key": 2}


def test_own_keys_are_denied_with_no_rule() -> None:
    shared = configured({"providers": {"openai": {"keys": [OWN_KEY]}}})
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"key: {OWN_KEY}"}]}
    flow, call = guarded("openai", "/v1/chat/completions", body, shared)
    assert flow.response is not None and flow.response.headers["x-tollgate-error"] == "content_denied"
    assert OWN_KEY.encode() not in flow.response.content
    assert call.request.findings == {"tollgate_keys": 1}


def test_a_clean_call_is_scanned_and_clean_and_nothing_is_read_without_anything_to_look_for() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    flow, call = guarded("openai", "/v1/chat/completions", body)
    assert (flow.response, call.request.findings, call.request.redacted) == (None, {}, 0)
    assert policy_input(call)["findings"] == {}
    shared = configured({})
    assert shared.loaded is not None and shared.loaded.guardrails is None
    flow, call = guarded("openai", "/v1/chat/completions", body, shared)
    assert (flow.response, call.request.findings, call.request.redacted) == (None, None, None)
    assert policy_input(call)["findings"] is None


def test_an_audit_rule_counts_without_changing_the_body() -> None:
    body = {"contents": [{"parts": [{"text": f"mail {samples.EMAIL}"}]}]}
    flow, call = guarded("gemini", "/v1beta/models/gemini-2.0-flash:generateContent", body)
    assert flow.response is None
    assert json.loads(flow.request.raw_content) == body
    assert (call.request.findings, call.request.redacted) == ({"pii.email": 1}, 0)


def test_unread_deny_refuses_what_cannot_be_read() -> None:
    body = {"cachedContent": "cachedContents/abc", "contents": [{"parts": [{"text": "hi"}]}]}
    flow, _ = guarded("gemini", "/v1beta/models/gemini-2.0-flash:generateContent", body)
    assert flow.response is not None and flow.response.headers["x-tollgate-error"] == "content_denied"
    assert "cannot read" in json.loads(flow.response.content)["error"]["message"]
    # Where no rule says so, it goes.
    flow, _ = guarded("openai", "/v1/chat/completions", {"model": "gpt-4o", "prompt": {"id": "pmpt_1"}})
    assert flow.response is None


def test_a_reload_with_the_same_rules_and_keys_keeps_the_compiled_guardrails() -> None:
    from tollgate.configuration.config import parse_config
    from tollgate.configuration.runtime import Loaded

    first = Loaded.build(parse_config(RULES, {}))
    again = Loaded.build(parse_config(RULES, {}), previous=first)
    assert again.guardrails is first.guardrails is not None
    other = Loaded.build(
        parse_config({**RULES, "providers": {"openai": {"keys": ["sk-other-key-0001"]}}}, {}), previous=first
    )
    assert other.guardrails is not first.guardrails
    assert OWN_KEY not in repr(first.guardrails)


def test_the_findings_are_a_fact_the_policys_cache_keys_on() -> None:
    from tollgate.governance.policy.policy import facts_read

    assert facts_read(["input.findings"]) == (24,)
    assert facts_read(['input.findings["secrets.github_token"] > 0']) in ((24,), None)


def test_the_metrics_and_mitmwebs_summary_count_the_findings_by_kind() -> None:
    from tollgate.records.audit.audit_record import audit_record
    from tollgate.records.audit.summary import summary
    from tollgate.records.telemetry.metrics import MetricSet

    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PAIR}]}
    _, call = guarded("openai", "/v1/chat/completions", body)
    metrics = MetricSet()
    metrics.observe(call, audit_record(call))
    assert metrics.findings.values == {
        ("openai", "secrets.aws_access_key_id", "redact"): 1,
        ("openai", "secrets.aws_secret_access_key", "redact"): 1,
    }
    line = summary(call)
    assert "found secrets.aws_access_key_id 1, secrets.aws_secret_access_key 1 (2 redacted)" in line
    assert samples.AWS_KEY_ID not in line


def test_guard_runs_before_the_override_the_policy_and_the_credential_where_it_runs() -> None:
    from tollgate.proxy import pipeline

    gateway = pipeline.gateway()
    for kind in ("http", "responses_response"):
        names = [step.__qualname__.split(".")[0] for step in gateway.kinds[kind]]
        assert names.index("Identify") < names.index("Guard") < names.index("Overriding") < names.index("Decide"), kind
        assert "Credential" not in names or names.index("Guard") < names.index("Credential")
    # A Realtime event a model reads; an MCP server's request, before its policy and its credential.
    assert [step.__qualname__ for step in gateway.kinds["realtime_message"]] == ["Guard.handle"]
    mcp = [step.__qualname__ for step in gateway.kinds["mcp_request"]]
    assert mcp.index("Identify.mcp") < mcp.index("Guard.mcp") < mcp.index("McpGate.decide") < mcp.index("McpGate.send")


@pytest.mark.parametrize("in_a_thread", [False, True])
def test_an_mcp_tool_call_is_read_redacted_or_refused_with_a_json_rpc_error(in_a_thread: bool) -> None:
    from mitmproxy.test import tflow, tutils

    from tollgate.formats.mcp.messages import McpRequest
    from tollgate.governance.mcp.mcp_exchange import McpExchange
    from tollgate.governance.mcp.mcp_input import request_input
    from tollgate.governance.mcp.mcp_servers import McpServer

    shared = configured(
        {
            "guardrails": [
                {"detect": ["secrets.aws_access_key_id", "secrets.aws_secret_access_key"], "action": "redact"},
                {"match": {"provider": "openai"}, "detect": ["pii.email"], "action": "deny"},  # no MCP request's
                {"detect": ["pii.payment_card"], "action": "deny"},
            ]
        }
    )
    server = McpServer.model_validate({"name": "gh", "url": "https://mcp.example.test/mcp"})

    def posted(arguments: dict, method: str = "tools/call") -> tuple:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "note", "arguments": arguments}}
        flow = tflow.tflow(req=tutils.treq(content=json.dumps(body).encode()))
        exchange = McpExchange(server, "POST", requests=(McpRequest(method, 1, tool="note"),), request_id="r1")
        exchange.loaded = shared.loaded
        # Scanned at once, or every body in a worker thread, the steps after it awaiting it.
        guard = Guard(shared, ScanWorkers(off_loop_bytes=1 if in_a_thread else OFF_LOOP_BYTES))

        async def read() -> None:
            pending = guard.mcp(flow, exchange)
            assert (pending is not None) is (in_a_thread and method in MCP_READ)
            if pending is not None:
                await asyncio.wait_for(pending, 30)  # type: ignore[arg-type]

        asyncio.run(read())
        guard.done()
        return flow, exchange

    flow, exchange = posted({"text": PAIR, "mail": samples.EMAIL})
    assert flow.response is None
    assert json.loads(flow.request.content)["params"]["arguments"]["text"] == (
        "AWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
    )
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))
    assert (exchange.findings, exchange.redacted) == (
        {"secrets.aws_access_key_id": 1, "secrets.aws_secret_access_key": 1},
        2,
    )
    # The policy decides on what the client sent; the metrics count it by kind and action.
    assert request_input(exchange, exchange.requests[0])["findings"] == exchange.findings
    assert sorted(exchange.finding_actions) == [
        ("secrets.aws_access_key_id", "redact", 1),
        ("secrets.aws_secret_access_key", "redact", 1),
    ]
    flow, exchange = posted({"card": samples.SAMPLES["pii.payment_card"][0]})
    assert flow.response is not None and flow.response.headers["x-tollgate-error"] == "content_denied"
    assert json.loads(flow.response.content) == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32001, "message": "Tollgate refused this request: it holds pii.payment_card (1)."},
    }
    assert (exchange.decision, exchange.deny_reasons) == ("deny", ("content_denied",))
    flow, exchange = posted({"card": samples.SAMPLES["pii.payment_card"][0]}, method="tools/list")
    assert (flow.response, exchange.findings) == (None, None)  # not a tool's or a prompt's arguments
    assert request_input(exchange, exchange.requests[0])["findings"] is None


def test_a_fallback_to_another_provider_is_written_from_the_redacted_body() -> None:
    from tollgate.proxy.stages.routing.override import Overriding

    rules = {
        **RULES,
        "overrides": [
            {
                "match": {"provider": "openai", "model": "gpt-4o"},
                "fallbacks": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}],
            }
        ],
    }
    shared = configured(rules)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PAIR}]}
    flow, call = guarded("openai", "/v1/chat/completions", body, shared)
    assert CallSteps(Overriding(shared).handle).at_request(flow) is None
    kept = call.failover.client_request
    assert kept is not None
    assert b"[REDACTED:secrets.aws_access_key_id]" in kept.content
    assert samples.AWS_KEY_ID.encode() not in kept.content and samples.AWS_SECRET.encode() not in kept.content


def large_call(shared: Shared, provider: str, path: str, content: str) -> tuple[http.HTTPFlow, Call]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    flow = api_flow(HOSTS[provider], path, body)
    return flow, classified(shared, flow)


def test_a_large_body_is_scanned_in_a_thread_and_its_findings_applied_once_awaited() -> None:
    shared = configured(RULES)
    guard = Guard(shared)
    padding = "x = 1\n" * (OFF_LOOP_BYTES // 6)
    redacted_flow, redacted_call = large_call(shared, "openai", "/v1/chat/completions", padding + PAIR)
    denied_flow, denied_call = large_call(shared, "anthropic", "/v1/messages", padding + samples.pem())

    async def steps() -> None:
        for flow in (redacted_flow, denied_flow):
            pending = CallSteps(guard.handle).at_request(flow)
            assert pending is not None  # the later steps await its scan
            assert flow.response is None and call_of(flow).request.findings is None  # type: ignore[union-attr]
            await asyncio.wait_for(pending, 30)  # type: ignore[arg-type]

    try:
        asyncio.run(steps())
    finally:
        guard.done()
    assert redacted_flow.response is None and redacted_call.request.redacted == 2
    sent = json.loads(redacted_flow.request.raw_content)["messages"][0]["content"]
    assert sent.endswith("AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n")
    assert redacted_call.request.body == json.loads(redacted_flow.request.raw_content)
    assert denied_flow.response is not None and denied_flow.response.status_code == 403
    assert denied_call.request.findings == {"secrets.private_key": 1}


def test_a_call_killed_while_its_body_is_scanned_is_counted_and_left_unanswered() -> None:
    shared = configured(RULES)
    guard = Guard(shared)
    flow, call = large_call(shared, "anthropic", "/v1/messages", "x = 1\n" * (OFF_LOOP_BYTES // 6) + samples.pem())

    async def killed_meanwhile() -> None:
        pending = guard.handle(flow, call)
        assert pending is not None
        flow.error = flow_module.Error(flow_module.Error.KILLED_MESSAGE)
        await asyncio.wait_for(pending, 30)  # type: ignore[arg-type]

    try:
        asyncio.run(killed_meanwhile())
    finally:
        guard.done()
    assert flow.response is None  # no refusal written on a flow that has ended
    assert call.request.findings == {"secrets.private_key": 1}  # its record says what it held


def test_a_large_bodys_findings_are_counted_and_redacted_in_its_thread_not_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from mitmproxy.test import tflow, tutils

    from tollgate.formats.mcp.messages import McpRequest
    from tollgate.governance.guardrails.rules import Scan
    from tollgate.governance.mcp.mcp_exchange import McpExchange
    from tollgate.governance.mcp.mcp_servers import McpServer

    where: list[tuple[str, str]] = []  # each step on a scan's findings, and the thread it ran in
    for name in ("counts", "found_in", "redact"):
        step = getattr(Scan, name)

        def traced(self: Scan, *args: object, _step=step, _name=name) -> object:
            where.append((_name, threading.current_thread().name.split("_")[0]))
            return _step(self, *args)

        monkeypatch.setattr(Scan, name, traced)
    shared = configured(RULES)
    guard = Guard(shared)
    flow, call = large_call(shared, "openai", "/v1/chat/completions", "x = 1\n" * (OFF_LOOP_BYTES // 6) + PAIR)
    server = McpServer.model_validate({"name": "gh", "url": "https://mcp.example.test/mcp"})
    mcp_body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "n", "arguments": {"t": PAIR}}}
    mcp_flow = tflow.tflow(req=tutils.treq(content=json.dumps(mcp_body).encode() + b" " * OFF_LOOP_BYTES))
    exchange = McpExchange(server, "POST", requests=(McpRequest("tools/call", 1, tool="n"),), request_id="r1")
    exchange.loaded = shared.loaded

    async def steps() -> None:
        for pending in (CallSteps(guard.handle).at_request(flow), guard.mcp(mcp_flow, exchange)):
            assert pending is not None
            await asyncio.wait_for(pending, 30)  # type: ignore[arg-type]

    try:
        asyncio.run(steps())
    finally:
        guard.done()
    assert (call.request.redacted, exchange.redacted) == (2, 2)
    assert b"[REDACTED:secrets.aws_access_key_id]" in mcp_flow.request.content
    assert sorted(set(where)) == [
        ("counts", "tollgate-scan"),
        ("found_in", "tollgate-scan"),
        ("redact", "tollgate-scan"),
    ]


def test_rules_on_answers_alone_are_loaded_and_read_no_request() -> None:
    """A configuration with answer rules only (no request rule, no key of Tollgate's own: a plan
    user's) has its answers read; its requests are not, their findings null."""
    rule = {"on": ["answer"], "detect": ["pii.payment_card"], "action": "redact"}
    shared = configured({"guardrails": [rule]})
    assert shared.loaded is not None and shared.loaded.guardrails is not None
    assert shared.loaded.guardrails.answer("openai", "gpt-4o", None, ()) is not None
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]}
    flow, call = guarded("openai", "/v1/chat/completions", body, shared)
    assert (flow.response, call.request.findings, call.request.redacted) == (None, None, None)
