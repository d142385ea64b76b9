"""What the recipes' tests share: a real audit log on a temporary file and the records it holds; the
real pipeline, configured from a file and driven in process through one call's hooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tflow, tutils

from tollgate.proxy.pipeline import gateway
from tollgate.proxy.runner import Gateway
from tollgate.records.auditlog import PROCESS_EVENTS, AuditLog


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def audit_log(audit_path: Path) -> Iterator[AuditLog]:
    """A real audit log; closing it writes what it holds."""
    log = AuditLog(str(audit_path))
    yield log
    log.close()


def records(path: Path) -> list[dict[str, Any]]:
    """The records of an audit file but the process's started and stopped ones."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("event") not in PROCESS_EVENTS]


# --- the real pipeline, driven in process through each hook of one call ---------------------------

UPSTREAM = "https://127.0.0.1:9"  # never connected to: the hooks are driven in process
UPSTREAM_KEY = "sk-upstream-0123456789"
VIRTUAL_KEY = "tg-alice-0123456789"


def openai_config(tmp_path: Path, **more: Any) -> Path:
    """A tollgate.yaml: OpenAI with a key, a client `alice` (group `support`), the audit in
    `tmp_path`, and `more`."""
    path = tmp_path / "tollgate.yaml"
    config = {
        "providers": {"openai": {"upstream": UPSTREAM, "keys": [UPSTREAM_KEY]}},
        "clients": [{"name": "alice", "keys": [VIRTUAL_KEY], "groups": ["support"]}],
        "allow_anonymous": False,
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        **more,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def configured_gateway(config_path: Path, addon: Gateway | None = None) -> Iterator[Gateway]:
    """The pipeline as mitmdump loads and configures it."""
    addon = addon or gateway()
    with taddons.context(proxyserver.Proxyserver(), addon) as tctx:
        tctx.configure(addon, tollgate_config=str(config_path))
        yield addon


def chat_flow(body: dict[str, Any], key: str = VIRTUAL_KEY) -> http.HTTPFlow:
    """An OpenAI chat call as mitmproxy hands it to the addon."""
    content = json.dumps(body, separators=(",", ":")).encode()
    fields = (
        (b"Host", b"api.openai.com"),
        (b"Authorization", f"Bearer {key}".encode()),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(content)).encode()),
    )
    request = tutils.treq(
        host="api.openai.com", port=443, scheme=b"https", method=b"POST", path=b"/v1/chat/completions",
        headers=http.Headers(fields), content=content,
    )  # fmt: skip
    flow = tflow.tflow(req=request)
    flow.client_conn.sni = "api.openai.com"
    return flow


async def run_hook(addon: Gateway, hook: str, *args: object) -> None:
    pending = getattr(addon, hook)(*args)
    if pending is not None:
        await pending


async def one_call(
    addon: Gateway, flow: http.HTTPFlow, answer: list[bytes], content_type: bytes = b"text/event-stream"
) -> tuple[http.Request, bytes]:
    """The call through every hook: what went upstream, and what the client got (the answer
    streamed back, where the call was not refused)."""
    await run_hook(addon, "requestheaders", flow)
    await run_hook(addon, "request", flow)
    sent = flow.request.copy()
    received = b""
    if flow.response is None:
        flow.response = tutils.tresp(status_code=200, content=b"")
        flow.response.headers.fields = ((b"content-type", content_type),)
        await run_hook(addon, "responseheaders", flow)
        if callable(flow.response.stream):
            for part in [*answer, b""]:  # b"": the answer's end
                out = flow.response.stream(part)
                received += out if isinstance(out, bytes) else b"".join(out)
        else:  # read whole (a JSON answer an answer guardrail reads): served at `response`
            flow.response.content = b"".join(answer)
    else:
        await run_hook(addon, "responseheaders", flow)
    await run_hook(addon, "response", flow)
    if not received:
        received = flow.response.content or b""
    await run_hook(addon, "done")  # the audit log closed: every record written
    return sent, received


def sse(data: dict[str, Any] | str) -> bytes:
    return b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"


def chat_chunks(text: str) -> list[bytes]:
    """An OpenAI chat stream that says `text`, with its usage."""
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o"}
    return [
        sse({**head, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}),
        sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse({**head, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}),
        sse("[DONE]"),
    ]


def said(received: bytes) -> str:
    """The text an OpenAI chat stream says, its deltas joined."""
    text = ""
    for block in received.split(b"\n\n"):
        data = block.removeprefix(b"data: ")
        if not data or data == b"[DONE]":
            continue
        for choice in json.loads(data).get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
    return text
