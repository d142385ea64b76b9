"""Guardrails on calls, with the official SDKs through mitmdump: what a rule redacts reaches the
fake upstream as `[REDACTED:<kind>]` (a Bedrock call signed over the redacted body), what it denies
reaches no upstream, Tollgate's own key is refused with no rule at all, and no planted secret is in
the audit, the console or the saved flows."""

from __future__ import annotations

import base64
import json
import time

import pytest
from tests.support import guardrail_samples as samples
from tests.support.answers import answered_by
from tests.support.aws import botocore_accepts
from tests.support.configs import every_provider, openai_with_clients
from tests.support.leaks import assert_no_secret, saved_flows, stopped_outputs
from tests.support.mcp_upstream import client_code
from tests.support.raw import send
from tests.support.signed_bedrock import AWS_REAL, signed_answers

from tollgate.records.audit.auditlog import BATCH_DELAY

VIRTUAL = "tg-guarded-alice-0001"
AWS_VIRTUAL = ("TGGUARD0000000000000", "guarded-virtual-SECRET-0000")
# Tollgate's own real OpenAI key, shaped as OpenAI's are.
REAL_OPENAI = samples.SAMPLES["secrets.openai_api_key"][0]
GITHUB = samples.SAMPLES["secrets.github_token"][0]
ENV_FILE = (
    f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\nGITHUB_TOKEN={GITHUB}\n"
)
PEM = samples.pem()
CARD = samples.SAMPLES["pii.payment_card"][0]
MCP_URL = "https://mcp.example.test/mcp"
MCP_BEARER = "real-mcp-bearer-guarded-0001"
PLANTED = [samples.AWS_KEY_ID, samples.AWS_SECRET, GITHUB, REAL_OPENAI, samples.EMAIL, PEM.splitlines()[1], CARD]
SECRETS = ["secrets.aws_access_key_id", "secrets.aws_secret_access_key", "secrets.github_token"]


def config(urls: dict[str, str], mcp_upstream: str) -> dict:
    keys = {
        name: REAL_OPENAI if name == "openai" else f"real-{name}-key-0001" for name in ("openai", "anthropic", "gemini")
    }
    return {
        "providers": every_provider(urls, keys, AWS_REAL),
        "clients": [
            {
                "name": "alice",
                "keys": [VIRTUAL],
                "aws_credentials": [{"access_key_id": AWS_VIRTUAL[0], "secret_access_key": AWS_VIRTUAL[1]}],
            }
        ],
        "guardrails": [
            {"detect": SECRETS, "action": "redact"},
            {"match": {"provider": "anthropic"}, "detect": ["secrets.private_key"], "action": "deny"},
            {"match": {"provider": "gemini"}, "detect": ["pii.email"], "action": "redact"},
            {"detect": ["pii.payment_card"], "action": "deny"},
        ],
        "mcp": {
            "servers": [
                {"name": "notes", "url": MCP_URL, "upstream": mcp_upstream, "credential": {"bearer": MCP_BEARER}}
            ]
        },
        "overrides": [{"match": {"provider": "openai", "model": "claude-*"}, "provider": "anthropic", "api": "native"}],
    }


@pytest.fixture(scope="module")
def gw(start_gateway, mcp_server):
    gateway = start_gateway(
        lambda urls: config(urls, mcp_server.url),
        providers=("openai", "anthropic", "gemini", "bedrock"),
        save_flows=True,
    )
    return answered_by(gateway, signed_answers)


@pytest.fixture(scope="module")
def bare(start_gateway):
    """No guardrails rule: Tollgate's own keys are looked for all the same."""
    return start_gateway(openai_with_clients(REAL_OPENAI, {"alice": VIRTUAL}), providers=("openai",))


def test_a_tool_result_with_a_dotenv_goes_redacted(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {{"role": "user", "content": "Read my .env"}},
            {{"role": "assistant", "tool_calls": [{{"id": "c1", "type": "function",
                "function": {{"name": "read_file", "arguments": "{{\\"path\\": \\".env\\"}}"}}}}]}},
            {{"role": "tool", "tool_call_id": "c1", "content": {json.dumps(ENV_FILE)}}}])
        report(ok=r.choices[0].message.content is not None)
        """
    )
    assert result == {"ok": True}
    seen = gw.fakes["openai"].received[-1]
    body = seen.json()  # still JSON
    assert int(seen.headers["content-length"]) == len(seen.body)
    tool = body["messages"][2]["content"]
    assert tool == (
        "AWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
        "GITHUB_TOKEN=[REDACTED:secrets.github_token]\n"
    )
    record = gw.last_audit()
    assert (record["decision"], record["status"]) == ("allow", 200)
    assert record["findings"] == dict.fromkeys(SECRETS, 1)
    assert record["redacted"] == 3


def test_a_private_key_in_claude_codes_context_is_denied(gw):
    before = len(gw.fakes["anthropic"].received)
    result = gw.run(
        f"""
        import anthropic
        context = "def f(x):\\n    return x * 2\\n" * (1_000_000 // 28)  # 1 MB of code
        try:
            anthropic.Anthropic(api_key="{VIRTUAL}", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=10,
                messages=[{{"role": "user", "content": context + {json.dumps(PEM)}}}])
            report(ok=False)
        except anthropic.PermissionDeniedError as e:
            report(status=e.status_code, error=e.response.headers["x-tollgate-error"], message=e.message)
        """
    )
    assert (result["status"], result["error"]) == (403, "content_denied")
    assert "secrets.private_key (1)" in result["message"]
    assert len(gw.fakes["anthropic"].received) == before  # nothing reached the upstream
    record = gw.last_audit()
    assert (record["decision"], record["deny_reasons"], record["status"]) == ("deny", ["content_denied"], 403)
    assert record["refusal"] == "content_denied"
    assert record["findings"] == {"secrets.private_key": 1}


def test_gemini_redacts_an_email(gw):
    result = gw.run(
        f"""
        import json, urllib.request
        req = urllib.request.Request(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
            data=json.dumps({{"contents": [{{"parts": [{{"text": "Write to {samples.EMAIL} today"}}]}}]}}).encode(),
            headers={{"content-type": "application/json", "x-goog-api-key": "{VIRTUAL}"}})
        with urllib.request.urlopen(req) as resp:
            report(ok=resp.status == 200)
        """
    )
    assert result == {"ok": True}
    body = gw.fakes["gemini"].received[-1].json()
    assert body["contents"][0]["parts"][0]["text"] == "Write to [REDACTED:pii.email] today"
    record = gw.last_audit()
    assert (record["findings"], record["redacted"]) == ({"pii.email": 1}, 1)


def test_bedrock_converse_is_signed_over_the_redacted_body(gw):
    result = gw.run(
        f"""
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{AWS_VIRTUAL[0]}",
            aws_secret_access_key="{AWS_VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
        r = client.converse(modelId="amazon.nova-lite-v1:0",
            messages=[{{"role": "user", "content": [{{"text": {json.dumps(ENV_FILE)}}}]}}])
        report(ok=r["stopReason"])
        """
    )
    assert result == {"ok": "end_turn"}
    seen = gw.fakes["bedrock"].received[-1]
    assert botocore_accepts(seen, *AWS_REAL)
    assert "[REDACTED:secrets.github_token]" in seen.json()["messages"][0]["content"][0]["text"]
    record = gw.last_audit()
    assert (record["auth"], record["redacted"]) == ("sigv4", 3)


def test_a_translated_route_sends_the_redacted_body_in_the_targets_format(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="claude-sonnet-4-5",
            messages=[{{"role": "user", "content": {json.dumps("my token: " + GITHUB)}}}])
        report(ok=r.choices[0].message.content is not None)
        """
    )
    assert result == {"ok": True}
    seen = gw.fakes["anthropic"].received[-1]
    assert seen.path == "/v1/messages"
    assert seen.json()["messages"][0]["content"] in (
        "my token: [REDACTED:secrets.github_token]",
        [{"type": "text", "text": "my token: [REDACTED:secrets.github_token]"}],
    )
    record = gw.last_audit()
    assert (record["provider"], record["findings"], record["redacted"]) == (
        "anthropic",
        {"secrets.github_token": 1},
        1,
    )


def test_an_mcp_tool_call_with_a_card_number_gets_a_json_rpc_error(gw, mcp_server):
    mcp_server.clear()
    called = f"""
added = await client.call_tool("add", {{"a": 1, "b": 2}})
try:
    await client.call_tool("fail", {{"reason": "charge card {CARD} now"}})
    report(ok=False)
except Exception as e:
    report(added=[c.text for c in added.content], error=type(e).__name__, code=e.error.code, message=e.error.message)
"""
    result = gw.run(client_code(MCP_URL, called, VIRTUAL))
    assert result == {
        "added": ["3"],
        "error": "MCPError",
        "code": -32001,
        "message": "Tollgate refused this request: it holds pii.payment_card (1).",
    }
    calls = [call for r in mcp_server.received() for call in r["calls"]]
    assert ["tools/call", "add"] in calls and ["tools/call", "fail"] not in calls
    added, refused = gw.new_audit(2, where=lambda r: r["event"] == "mcp_call" and r["method"] == "tools/call")
    assert (added["tool"], added["findings"], added["redacted"]) == ("add", {}, 0)
    assert (refused["tool"], refused["decision"], refused["deny_reasons"], refused["findings"]) == (
        "fail",
        "deny",
        ["content_denied"],
        {"pii.payment_card": 1},
    )


def denied_chat(gateway, content: str) -> dict:
    """An OpenAI chat call of `content` through `gateway` that is to be refused 403: its status and
    X-Tollgate-Error (ok False if it went through)."""
    return gateway.run(
        f"""
        import openai
        try:
            openai.OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": {json.dumps(content)}}}])
            report(ok=False)
        except openai.PermissionDeniedError as e:
            report(status=e.status_code, error=e.response.headers["x-tollgate-error"])
        """
    )


def test_tollgates_own_key_in_a_prompt_is_refused_without_rules(bare):
    result = denied_chat(bare, f"use this key: {REAL_OPENAI}")
    assert result == {"status": 403, "error": "content_denied"}
    assert bare.fakes["openai"].received == []
    record = bare.last_audit()
    assert (record["decision"], record["findings"]) == ("deny", {"tollgate_keys": 1})
    # A clean call: scanned, nothing found.
    assert bare.run(
        f"""
        from openai import OpenAI
        OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(model="gpt-4o",
            messages=[{{"role": "user", "content": "hello"}}])
        report(ok=True)
        """
    ) == {"ok": True}
    record = bare.last_audit()
    assert (record["findings"], record["redacted"]) == ({}, 0)
    bare.proxy.stop()
    for where, content in (("audit", bare.audit_path.read_bytes()), ("console", bare.proxy.output.read_bytes())):
        assert REAL_OPENAI.encode() not in content, f"the real key in {where}"


def test_an_mcp_tool_calls_arguments_reach_the_server_redacted(gw, mcp_server):
    mcp_server.clear()
    called = f"""
added = await client.call_tool("add", {{"a": 1, "b": 2, "note": "key {samples.AWS_KEY_ID} here"}})
report(added=[c.text for c in added.content])
"""
    result = gw.run(client_code(MCP_URL, called, VIRTUAL))
    assert result == {"added": ["3"]}
    (arguments,) = [a for r in mcp_server.received() for a in r["arguments"] if a]
    assert arguments == {"a": 1, "b": 2, "note": "key [REDACTED:secrets.aws_access_key_id] here"}
    # initialize, its notification, the tool's call, the event stream (GET) and the session's end (DELETE)
    records = gw.new_audit(5)
    (record,) = [r for r in records if r["event"] == "mcp_call" and r["method"] == "tools/call"]
    assert (record["decision"], record["findings"], record["redacted"]) == (
        "allow",
        {"secrets.aws_access_key_id": 1},
        1,
    )


MAIL = """
import asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="auto") as client:
            await client.list_tools()  # the tools' schemas say which arguments go in Mcp-Param-* headers
            sent = await client.call_tool("send_mail", {{"to": "{to}", "text": "hello"}})
            report(sent=[c.text for c in sent.content], error=sent.is_error)

asyncio.run(main())
"""


@pytest.mark.parametrize("to", [GITHUB, f"{GITHUB} é"], ids=["plain", "base64"])
def test_an_mcp_param_header_is_redacted_as_its_body_is(gw, mcp_server, to: str):
    """At 2026-07-28 the SDK's client mirrors `to` into `Mcp-Param-To` (in the base64 form where it
    is not plain ASCII), and the SDK's server refuses a call whose header and body disagree: both
    redacted alike, the call goes through."""
    mcp_server.clear()
    result = gw.run(MAIL.format(key=VIRTUAL, url=MCP_URL, to=to))
    redacted = to.replace(GITHUB, "[REDACTED:secrets.github_token]")
    assert result == {"sent": [f"sent to {redacted}"], "error": False}
    (call,) = [r for r in mcp_server.received() if ["tools/call", "send_mail"] in r["calls"]]
    header = call["headers"]["mcp-param-to"]
    if to.isascii():
        assert header == redacted
    else:
        assert header == "=?base64?" + base64.b64encode(redacted.encode()).decode() + "?="
    assert call["arguments"] == [{"to": redacted, "text": "hello"}]
    records = gw.new_audit(3)  # server/discover, tools/list, the call
    (record,) = [r for r in records if r["method"] == "tools/call"]
    # Found in the body and in the header it is mirrored into.
    assert (record["decision"], record["findings"], record["redacted"]) == ("allow", {"secrets.github_token": 2}, 2)


def test_an_mcp_param_header_holding_what_a_rule_denies_is_refused(gw, mcp_server):
    """A card number in `Mcp-Param-To` alone (base64), its body clean: refused, never sent."""
    mcp_server.clear()
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "send_mail", "arguments": {"to": "bob", "text": "hi"}, "_meta": meta}}  # fmt: skip
    fields = [
        ("Authorization", f"Bearer {VIRTUAL}"), ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"), ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"), ("Mcp-Name", "send_mail"),
        ("Mcp-Param-To", "=?base64?" + base64.b64encode(CARD.encode()).decode() + "?="),
    ]  # fmt: skip
    time.sleep(BATCH_DELAY + 0.05)  # the last run's records written: new_audit counts from here
    gw._before = len(gw.audit())
    answer = send(gw.proxy.port, gw.bundle, "mcp.example.test", "/mcp", headers=fields, body=json.dumps(body).encode())
    assert (answer.status, answer.headers["x-tollgate-error"]) == (200, "content_denied")
    assert answer.json()["error"] == {
        "code": -32001, "message": "Tollgate refused this request: it holds pii.payment_card (1).",
    }  # fmt: skip
    assert mcp_server.received() == []
    (record,) = gw.new_audit(1)
    assert (record["tool"], record["decision"], record["findings"]) == ("send_mail", "deny", {"pii.payment_card": 1})


APPROVE = """
import asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import ElicitResult

async def why(context, params):
    return ElicitResult(action="accept", content={{"note": "{note}"}})

async def main():
    http = create_mcp_http_client(headers={{"Authorization": "Bearer {key}"}})
    async with http:
        async with Client(streamable_http_client("{url}", http_client=http), mode="auto",
                          elicitation_callback=why) as client:
            approved = await client.call_tool("approve", {{"item": "the budget"}})
            report(approved=[c.text for c in approved.content], error=approved.is_error)

asyncio.run(main())
"""


def test_an_input_required_retry_is_decided_tied_to_its_call_and_its_answers_read(gw, mcp_server):
    """At 2026-07-28 `approve` answers `input_required` (it asks why); the SDK's client retries with
    its answer and the server's requestState: a call of its own, decided and recorded, tied to the
    first, its answer redacted as a tool's arguments are. A retry naming another tool with that
    state is refused."""
    mcp_server.clear()
    note = f"token {GITHUB}"
    result = gw.run(APPROVE.format(key=VIRTUAL, url=MCP_URL, note=note))
    assert result == {"approved": ["approved the budget: token [REDACTED:secrets.github_token]"], "error": False}
    calls = [r for r in mcp_server.received() if ["tools/call", "approve"] in r["calls"]]
    assert len(calls) == 2
    [answers] = calls[1]["answers"]
    assert "[REDACTED:secrets.github_token]" in json.dumps(answers) and GITHUB not in json.dumps(answers)
    [state] = calls[1]["states"]
    records = [r for r in gw.new_audit(4) if r["method"] == "tools/call"]  # server/discover, tools/list too
    first, retry = records
    assert (first["tool"], first["decision"], first["is_error"], first["retry_of"]) == ("approve", "allow", False, None)
    assert (retry["tool"], retry["decision"], retry["retry_of"]) == ("approve", "allow", first["request_id"])
    assert (retry["findings"], retry["redacted"]) == ({"secrets.github_token": 1}, 1)

    mcp_server.clear()
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": 2}, "requestState": state, "_meta": meta}}  # fmt: skip
    fields = [
        ("Authorization", f"Bearer {VIRTUAL}"), ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"), ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"), ("Mcp-Name", "add"),
    ]  # fmt: skip
    time.sleep(BATCH_DELAY + 0.05)
    gw._before = len(gw.audit())
    answer = send(gw.proxy.port, gw.bundle, "mcp.example.test", "/mcp", headers=fields, body=json.dumps(body).encode())
    assert (answer.status, answer.headers["x-tollgate-error"]) == (200, "policy_denied")
    message = "Tollgate refused this request: the retry answers a call of another tool, prompt or resource."
    assert answer.json()["error"] == {"code": -32001, "message": message}
    assert mcp_server.received() == []
    (record,) = gw.new_audit(1)
    assert (record["tool"], record["decision"], record["deny_reasons"]) == (
        "add", "deny", ["the retry answers a call of another tool, prompt or resource"],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content", "cards"),
    [
        ("Card: " + CARD.replace(" ", "") + ", exp 12/29", 1),
        ("name,card,exp\nalice," + CARD.replace(" ", "") + ",12/29\n", 1),
        ("cards = [" + CARD.replace(" ", "") + ", " + samples.luhn_complete("550000000000000") + "]", 2),
    ],
    ids=["before a comma", "a CSV row", "a Python list"],
)
def test_a_card_between_commas_is_denied(gw, content, cards):
    before = len(gw.fakes["openai"].received)
    result = denied_chat(gw, content)
    assert result == {"status": 403, "error": "content_denied"}
    assert len(gw.fakes["openai"].received) == before
    record = gw.last_audit()
    assert (record["decision"], record["findings"]) == ("deny", {"pii.payment_card": cards})


# Bodies under the size that is always scanned in a worker thread (64 KiB) whose every few bytes
# are a candidate: scanned in a worker thread all the same, and read whole there.
NOT_CARDS = "4111 1111 1111 1112 " * 3000  # a card's shape at every group, none a card (Luhn)
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Each id's 16 characters spread over the alphabet (a multiplicative hash of its number): an id of
# runs of `A` would be a placeholder's, which no detector takes.
KEY_IDS = "".join(
    "id AKIA" + "".join(BASE32[((i + 1) * 0x9E3779B97F4A7C15 >> 5 * k) & 31] for k in range(16)) + " "
    for i in range(2550)
)
# The SDKs' bodies: the content and some 100 bytes of JSON about it, under 64 KiB.
assert 60_000 < len(json.dumps(NOT_CARDS)) < 64 * 1024 - 200 and 60_000 < len(KEY_IDS) < 64 * 1024 - 200


def test_a_hostile_body_just_under_64_kib_with_a_card_is_denied(gw):
    before = len(gw.fakes["openai"].received)
    content = NOT_CARDS[:30_000] + CARD + " " + NOT_CARDS[30_000:]
    result = denied_chat(gw, content)
    assert result == {"status": 403, "error": "content_denied"}
    assert len(gw.fakes["openai"].received) == before
    record = gw.last_audit()
    assert (record["decision"], record["findings"]) == ("deny", {"pii.payment_card": 1})


def test_a_hostile_body_just_under_64_kib_goes_redacted_whole(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{VIRTUAL}", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{{"role": "user", "content": {json.dumps(KEY_IDS)}}}])
        report(ok=r.choices[0].message.content is not None)
        """
    )
    assert result == {"ok": True}
    content = gw.fakes["openai"].received[-1].json()["messages"][0]["content"]
    assert content == "id [REDACTED:secrets.aws_access_key_id] " * 2550
    record = gw.last_audit()
    assert record["findings"] == {"secrets.aws_access_key_id": 2550}
    assert record["redacted"] == 2550


def test_no_planted_secret_reaches_any_output(gw):
    """Last in the file: it stops the gateway to read its saved flows whole."""
    assert len(gw.audit()) >= 6
    outputs = stopped_outputs(gw)
    assert b"content_denied" in outputs["audit"]
    assert_no_secret(outputs, PLANTED)
    # mitmweb's summary of a call says what was found.
    comments = [flow.comment for flow in saved_flows(gw.saved)]
    assert any("found secrets.aws_access_key_id 1" in c and "(3 redacted)" in c for c in comments), comments
