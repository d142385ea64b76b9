"""A call whose answer carries model text no answer format reads, through the real pipeline: refused
403 `content_denied` before it goes upstream where an answer rule matches it, the reason named; a
call no answer rule matches goes on (`stages/guardrails/guard.py`, `governance/guardrails/unread_answers.py`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from tests.support.pipeline import VIRTUAL_KEY, one_call

from tollgate.proxy.pipeline import gateway
from unit.recipes.conftest import chat_flow, openai_config, records

REALTIME = "a Realtime session's text and transcripts"


def realtime_upgrade() -> http.HTTPFlow:
    flow = chat_flow({}, VIRTUAL_KEY)
    flow.request.method = "GET"
    flow.request.path = "/v1/realtime?model=gpt-realtime"
    flow.request.content = b""
    for name, value in (("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")):  # fmt: skip
        flow.request.headers[name] = value
    del flow.request.headers["Content-Type"]
    return flow


@pytest.mark.parametrize("applies", [True, False])
def test_a_realtime_session_is_refused_at_its_upgrade_under_an_answer_rule(applies: bool, tmp_path: Path) -> None:
    rule = {"detect": ["pii.email"], "action": "redact", "on": ["answer"]}
    if not applies:
        rule["match"] = {"client": "bob"}
    addon = gateway()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(addon, tollgate_config=str(openai_config(tmp_path, guardrails=[rule])), websocket=True)
        flow = realtime_upgrade()
        asyncio.run(one_call(addon, flow, []))
    [record] = records(tmp_path / "audit.jsonl")
    if not applies:
        assert record["deny_reasons"] == [] and record["decision"] == "allow"
        return
    assert flow.response is not None and flow.response.status_code == 403
    assert json.loads(flow.response.content or b"")["error"]["code"] == "content_denied"
    assert record["deny_reasons"] == [f"an answer guardrail applies and Tollgate cannot read {REALTIME}"]
    assert (record["endpoint"], record["answer_findings"]) == ("realtime", None)
