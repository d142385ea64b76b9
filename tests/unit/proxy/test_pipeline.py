"""Tollgate's real pipeline (`pipeline.gateway()`), configured from a file through mitmproxy's test
context and driven in process through each hook as mitmproxy calls them for one call: no proxy, no
sockets. What goes upstream, what the client gets, what the flow keeps and what the audit says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from tests.support.pipeline import UPSTREAM, UPSTREAM_KEY, VIRTUAL_KEY, configured_gateway, one_call, sse

from tollgate.common.fingerprint import fingerprint
from tollgate.providers.base import REDACTED
from tollgate.proxy.flows import CALL
from tollgate.proxy.pipeline import gateway
from tollgate.proxy.runner import Gateway

from .stages.conftest import HOSTS, api_flow, audit_lines

REQUEST_ID = ((b"x-request-id", b"req_9"),)  # the upstream's, on its answer
FILES_OWN = ("instance", "seq", "chain")  # what the audit file adds to a flow's record
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hi."}],
    "stream": True,
    "max_tokens": 16,
}


def chunk(**fields: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini", **fields}


CONTENT = sse(chunk(choices=[{"index": 0, "delta": {"content": "Hi!"}, "finish_reason": None}]))
FINISH = sse(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
USAGE = sse(chunk(choices=[], usage={"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}))
DONE = sse("[DONE]")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "tollgate.yaml"
    config = {
        "providers": {"openai": {"upstream": UPSTREAM, "keys": [UPSTREAM_KEY], "timeout": 30}},
        "clients": [{"name": "alice", "keys": [VIRTUAL_KEY], "groups": ["support"]}],
        "allow_anonymous": False,
        "overrides": [{"match": {"provider": "openai", "model": "gpt-4o", "group": "support"}, "model": "gpt-4o-mini"}],
        "audit": {"path": str(tmp_path / "audit.jsonl")},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def tollgate(config_path: Path) -> Iterator[Gateway]:
    with configured_gateway(config_path) as addon:
        yield addon


def chat_flow(key: str) -> http.HTTPFlow:
    headers = (("Authorization", f"Bearer {key}"), ("Accept", "application/json"), ("User-Agent", "OpenAI/Python"))
    return api_flow(HOSTS["openai"], "/v1/chat/completions", BODY, headers=headers)


def test_a_virtual_key_call_goes_upstream_with_the_upstream_key_and_is_audited(tollgate, tmp_path) -> None:
    flow = chat_flow(VIRTUAL_KEY)
    sent, received = asyncio.run(one_call(tollgate, flow, [CONTENT, FINISH, USAGE, DONE], headers=REQUEST_ID))

    # Upstream: the configured upstream, the pooled key in place of the virtual key, the model the
    # override set, and the stream asked for its usage.
    assert sent.url == f"{UPSTREAM}/v1/chat/completions"
    assert sent.headers.get_all("authorization") == [f"Bearer {UPSTREAM_KEY}"]
    assert VIRTUAL_KEY.encode() not in b"".join(v for _, v in sent.headers.fields)
    assert (sent.headers["host"], sent.headers["user-agent"]) == ("127.0.0.1:9", "OpenAI/Python")
    assert json.loads(sent.raw_content) == {
        **BODY,
        "model": "gpt-4o-mini",
        "stream_options": {"include_usage": True},
    }
    assert sent.headers["content-length"] == str(len(sent.raw_content))

    # The client: the answer as it came, but the usage chunk it did not ask for.
    assert received == CONTENT + FINISH + DONE
    [record] = audit_lines(tmp_path / "audit.jsonl")
    assert flow.response.headers["x-tollgate-request-id"] == record["request_id"]

    # The flow: no credential, no prompt; the plain audit record and its summary.
    assert flow.request.headers.get_all("authorization") == [REDACTED]
    assert flow.request.raw_content is None
    assert flow.metadata[CALL] == {k: v for k, v in record.items() if k not in FILES_OWN}
    assert record["cost_usd"] == 0.0000039  # gpt-4o-mini: 14 x $0.15 + 3 x $0.60 per Mtok
    assert flow.comment == "alice · 14→3 $0.0000039 · openai/gpt-4o-mini"

    assert {k: record[k] for k in ("client", "auth", "groups", "provider", "endpoint", "requested_model", "model")} == {
        "client": "alice",
        "auth": "virtual_key",
        "groups": ["support"],
        "provider": "openai",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o",
        "model": "gpt-4o-mini",
    }
    assert {k: record[k] for k in ("input_tokens", "output_tokens", "total_tokens", "finish_reason")} == {
        "input_tokens": 14,
        "output_tokens": 3,
        "total_tokens": 17,
        "finish_reason": "stop",
    }
    assert (record["message_count"], record["has_system"], record["stream"], record["max_tokens"]) == (
        2,
        True,
        True,
        16,
    )
    assert (record["status"], record["decision"], record["deny_reasons"], record["error"]) == (200, "allow", [], None)
    assert (record["upstream"], record["upstream_key"]) == (UPSTREAM, fingerprint(UPSTREAM_KEY))
    assert record["ttfb_ms"] is not None


def test_a_step_every_call_takes_runs_on_a_call_decided_before_its_credential_goes_in(config_path) -> None:
    seen: list[tuple[str | None, str, str | None]] = []

    def scan(flow: http.HTTPFlow, call: Any) -> None:
        seen.append((call.caller.client, call.verdict.decision, flow.request.headers.get("authorization")))

    addon = gateway(every_call=(scan,))
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(addon, tollgate_config=str(config_path))
        sent, _ = asyncio.run(
            one_call(addon, chat_flow(VIRTUAL_KEY), [CONTENT, FINISH, USAGE, DONE], headers=REQUEST_ID)
        )

    assert seen == [("alice", "allow", f"Bearer {VIRTUAL_KEY}")]
    assert sent.headers.get_all("authorization") == [f"Bearer {UPSTREAM_KEY}"]


def test_an_unknown_key_is_refused_401_and_no_upstream_key_is_put_in(tollgate, tmp_path) -> None:
    flow = chat_flow("tg-unknown-key")
    sent, received = asyncio.run(one_call(tollgate, flow, []))

    assert flow.response.status_code == 401
    assert json.loads(received) == {
        "error": {
            "message": "Tollgate: unknown or missing API key. Use the virtual key Tollgate's operator gave you.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert flow.response.headers["x-tollgate-error"] == "unauthenticated"
    # Nothing of Tollgate's went into the request: not the upstream key, not the override's model.
    assert sent.headers.get_all("authorization") == ["Bearer tg-unknown-key"]
    assert UPSTREAM_KEY.encode() not in b"".join(v for _, v in sent.headers.fields)
    assert json.loads(sent.raw_content) == BODY
    assert sent.url == "https://api.openai.com/v1/chat/completions"

    [record] = audit_lines(tmp_path / "audit.jsonl")
    assert flow.response.headers["x-tollgate-request-id"] == record["request_id"]
    assert (record["client"], record["auth"], record["decision"], record["deny_reasons"]) == (
        None,
        "anonymous",
        "deny",
        ["unknown or missing API key"],
    )
    assert (record["status"], record["upstream"], record["upstream_key"], record["model"]) == (
        401,
        None,
        None,
        "gpt-4o",
    )
    assert flow.request.headers.get_all("authorization") == [REDACTED]
    assert flow.request.raw_content is None
    assert flow.metadata[CALL] == {k: v for k, v in record.items() if k not in FILES_OWN}
    assert flow.marked == ":no_entry:"
