"""Small builders for the stage tests: a configured `Shared`, an API call as a mitmproxy test
flow, the call record Classify makes of it, and real audit logs on temporary files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from tollgate.calls.call import Call, Request, Route
from tollgate.configuration.config import Config, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.bodies.raw_headers import header_index
from tollgate.proxy.flows import CALL
from tollgate.proxy.stages.transport.classify import Classify
from tollgate.proxy.state import Shared
from tollgate.records.audit import auditlog
from tollgate.records.audit.auditlog import PROCESS_EVENTS, AuditLog

# Each provider's public host, as clients call it.
HOSTS = {
    "openai": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
    "anthropic": "api.anthropic.com",
    "bedrock": "bedrock-runtime.us-east-1.amazonaws.com",
}
PROVIDERS = tuple(HOSTS)
# A plain call to each provider, read without fault: its path and JSON body.
VALID = {
    "openai": ("/v1/chat/completions", {"model": "gpt-4o", "messages": []}),
    "gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", {"contents": []}),
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-5", "messages": [], "max_tokens": 10}),
    "bedrock": ("/model/amazon.nova-lite-v1%3A0/converse", {"messages": []}),
}


# Each refusal's status and, per provider, the error type its SDK reads (Bedrock: x-amzn-ErrorType).
REFUSALS = {
    "bad_request": (400, ("invalid_request_error", "INVALID_ARGUMENT", "invalid_request_error", "ValidationException")),
    "misconfigured": (500, ("server_error", "INTERNAL", "api_error", "InternalServerException")),
    "audit_unavailable": (503, ("server_error", "UNAVAILABLE", "api_error", "ServiceUnavailableException")),
    "headers_too_large": (
        431,
        ("invalid_request_error", "INVALID_ARGUMENT", "invalid_request_error", "ValidationException"),
    ),
    "misdirected": (421, ("invalid_request_error", "INVALID_ARGUMENT", "invalid_request_error", "ValidationException")),
}


def refusal_of(provider: str, reason: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, body and headers each provider's SDK reads an error from, as Tollgate answers."""
    status, types = REFUSALS[reason]
    kind = dict(zip(PROVIDERS, types, strict=True))[provider]
    headers = {"content-type": "application/json", "x-tollgate-error": reason}
    if provider == "bedrock":
        return status, {"message": message}, {**headers, "x-amzn-errortype": kind}
    headers |= {"x-should-retry": "false"} if status < 502 else {}
    if provider == "openai":
        return status, {"error": {"message": message, "type": kind, "param": None, "code": reason}}, headers
    if provider == "gemini":
        return status, {"error": {"code": status, "message": message, "status": kind}}, headers
    return status, {"type": "error", "error": {"type": kind, "message": message}}, headers


def assert_refused(flow: http.HTTPFlow, provider: str, reason: str, message: str) -> None:
    """The flow answered by Tollgate with exactly this refusal, in the provider's own shape."""
    status, body, headers = refusal_of(provider, reason, message)
    call = flow.metadata[CALL]
    assert flow.response is not None, "not refused"
    assert (flow.response.status_code, json.loads(flow.response.content)) == (status, body)
    assert dict(flow.response.headers) == {
        **headers,
        "x-tollgate-request-id": call.request_id,
        "content-length": str(len(flow.response.content)),
    }
    assert call.answer.answered_by_tollgate is True


def configured(config: Config | dict | None = None, audit: AuditLog | None = None) -> Shared:
    """What Settings makes of a configuration (given as a Config or as the YAML's data)."""
    if isinstance(config, dict):
        config = parse_config(config, {})
    shared = Shared()
    shared.apply(Loaded.build(config or Config()), audit)
    return shared


def api_flow(
    host: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    method: str = "POST",
    headers: tuple[tuple[str, str], ...] = (),
    scheme: str = "https",
    port: int = 443,
) -> http.HTTPFlow:
    """A request as mitmproxy hands it to the addon: Host header first, then `headers`, then the
    body's Content-Type and Content-Length (a dict is sent as compact JSON, as SDKs send it)."""
    if isinstance(body, dict):
        body = json.dumps(body, separators=(",", ":")).encode()
    fields = [(b"Host", host.encode()), *((k.encode(), v.encode()) for k, v in headers)]
    if body is not None:
        fields += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
    request = tutils.treq(
        host=host,
        port=port,
        scheme=scheme.encode(),
        method=method.encode(),
        path=path.encode(),
        headers=http.Headers(fields),
        content=body or b"",
    )
    flow = tflow.tflow(req=request)
    flow.client_conn.sni = host  # the TLS server name a client sends for the host it calls
    return flow


def classified(shared: Shared, flow: http.HTTPFlow) -> Call:
    """The call record Classify makes of a request it reads."""
    Classify(shared).request(flow)
    call = flow.metadata[CALL]
    assert isinstance(call, Call) and flow.response is None, flow.response and flow.response.content
    return call


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def audit_lines(path: Path) -> list[dict[str, Any]]:
    """The calls' records in an audit file (not the process's started and stopped records)."""
    return [r for r in all_audit_lines(path) if r.get("event") not in PROCESS_EVENTS]


def all_audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def failing_audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditLog]:
    """An audit log whose file is on a full device: failing once it has tried to write."""
    monkeypatch.setattr(auditlog, "RETRY_DELAY", 0.1)
    path = tmp_path / "full.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(str(path))
    log.write({"event": "llm_call", "n": 0})
    assert wait_for(lambda: log.failing)
    yield log
    log.close()


def openai_flow(*fields: tuple[str, str], shared: Shared | None = None) -> tuple[object, Call]:
    flow = tflow.tflow()
    flow.request.host, flow.request.port, flow.request.path = "api.openai.com", 443, "/v1/chat/completions"
    flow.request.headers.fields = tuple((k.encode(), v.encode()) for k, v in fields)
    call = Call(
        Route.as_called("openai"),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        request=Request(headers=header_index(flow.request.headers.fields)),
        loaded=(shared or configured()).loaded,
    )  # as Classify reads them
    call.caller.auth, call.caller.client = "virtual_key", "alice"
    flow.metadata[CALL] = call
    return flow, call
