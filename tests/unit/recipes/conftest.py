"""What the recipes' tests share: the records of an audit file; a configuration, a call and an answer
for the real pipeline (`tests.support.pipeline` drives it through one call's hooks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from mitmproxy import http
from mitmproxy.test import tflow, tutils
from tests.support.pipeline import UPSTREAM, UPSTREAM_KEY, VIRTUAL_KEY, sse

from tollgate.records.audit.auditlog import PROCESS_EVENTS


def records(path: Path) -> list[dict[str, Any]]:
    """The records of an audit file but the process's started and stopped ones."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("event") not in PROCESS_EVENTS]


# --- the real pipeline's configuration, call and answer --------------------------------------------


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
