"""Anthropic: api.anthropic.com, the Messages API."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ..call import Batch, Classification, McpServer, RequestFacts
from ..exact_reading import (
    UNREAD_BODY,
    UNREAD_MODEL,
    Unreadable,
    as_int,
    check_case,
    count,
    path_segments,
    request_flag,
    request_int,
    request_model,
    request_text,
    words,
)
from ..json_codec import json_object, parse_json
from ..streams import split_events
from ..translate.formats import ANTHROPIC_MESSAGES, OPENAI_CHAT
from ..usage import Usage
from ..usage_readers import SSEReader, UsageReader, is_event_stream
from . import openai
from .base import (
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    BUDGET_EXCEEDED,
    HEADERS_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_SIGNATURE,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    MISCONFIGURED,
    NO_UPSTREAM_CREDENTIAL,
    POLICY_DENIED,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    ChatLeg,
    Headers,
    Provider,
    Refusal,
)
from .openai_format import OPENAI_FORMAT

_ENDPOINTS = {
    "messages": "messages",
    "messages/count_tokens": "messages.count_tokens",
    "messages/batches": "messages.batches",
    "complete": "completions",
    "models": "models",
}

# The calls Claude Code makes to Anthropic's own service beside the model API (its settings, limits,
# feature flags and event logging), each by its method and path after /api/ (`{id}` one segment of
# the form given), and the endpoint each is audited as. Any other /api/ path is refused: a key of
# Tollgate's must not reach what it does not know (an organisation's settings may be written).
SERVICE_ENDPOINTS = {
    ("GET", "claude_code/settings"): "api.claude_code.settings",
    ("GET", "claude_code/policy_limits"): "api.claude_code.policy_limits",
    ("GET", "claude_code/organizations/metrics_enabled"): "api.claude_code.organizations.metrics_enabled",
    ("GET", "claude_cli/bootstrap"): "api.claude_cli.bootstrap",
    ("GET", "claude_code_penguin_mode"): "api.claude_code_penguin_mode",
    ("POST", "event_logging/v2/batch"): "api.event_logging.batch",
    ("POST", "eval/sdk-{id}"): "api.eval",  # feature flags, by the client's SDK key
}
# The MCP server registry Claude Code lists servers from: public, read without a credential.
MCP_REGISTRY = ("mcp-registry", "v0", "servers")

WORDS = words(
    "v1", "messages", "count_tokens", "batches", "results", "cancel", "complete", "models", "files",
    "content", "chat", "completions", "skills", "versions", "organizations",
)  # fmt: skip


def _is_upload(method: str, rest: list[str]) -> bool:
    """Files and skills are uploaded as multipart bodies: POST /v1/files, /v1/skills[/{id}/versions]."""
    return method == "POST" and (
        rest in (["files"], ["skills"]) or (len(rest) == 3 and rest[0] == "skills" and rest[2] == "versions")
    )


_ERROR_TYPES = {
    UNAUTHENTICATED: "authentication_error",
    POLICY_DENIED: "permission_error",
    NO_UPSTREAM_CREDENTIAL: "api_error",
    MISCONFIGURED: "api_error",
    INVALID_SIGNATURE: "authentication_error",
    INTERNAL_ERROR: "api_error",
    UPSTREAM_UNREACHABLE: "api_error",
    UPSTREAM_TIMEOUT: "timeout_error",
    BAD_REQUEST: "invalid_request_error",
    AUDIT_UNAVAILABLE: "api_error",
    RATE_LIMITED: "rate_limit_error",
    BUDGET_EXCEEDED: "rate_limit_error",
    LEDGER_UNAVAILABLE: "api_error",
    LIMIT_UNENFORCEABLE: "permission_error",
    HEADERS_TOO_LARGE: "invalid_request_error",
}


def _batch(data: dict[str, Any]) -> Classification:
    """A Message Batch: its requests' one model, which the policy decides on as a call's; where
    they name several (or the batch is not as Anthropic reads it), the model is unread. Every
    request is in the body, and each sets its `max_tokens` (a request without is one whose
    answer is bounded by its model's)."""
    requests = data.get("requests")
    facts = RequestFacts(batch=_batch_bound(requests))
    models = {_model_of(r) for r in requests} if isinstance(requests, list) else set()
    if len(models) == 1 and None not in models:
        return Classification(endpoint="messages.batches", model=models.pop(), facts=facts)
    return Classification(endpoint="messages.batches", facts=facts, unread=UNREAD_MODEL)


def _batch_bound(requests: Any) -> Batch:
    """What a Message Batch's requests may generate together; unbounded where they are not a list
    (which Anthropic refuses)."""
    if not isinstance(requests, list):
        return Batch(None)
    bounded = unbounded = 0
    for request in requests:
        params = request.get("params") if isinstance(request, dict) else None
        bound = request_int(params.get("max_tokens"), "max_tokens") if isinstance(params, dict) else None
        if bound is None:
            unbounded += 1
        else:
            bounded += max(bound, 0)
    return Batch(len(requests), bounded, unbounded)


def _model_of(request: Any) -> str | None:
    """The model one request of a batch names in its `params`."""
    params = request.get("params") if isinstance(request, dict) else None
    return request_model(params) if isinstance(params, dict) else None


class Anthropic(Provider):
    name = semconv_name = "anthropic"
    host_pattern = r"api\.anthropic\.com"
    side_header = "X-Anthropic-Key"
    key_positions = positions = ("x-api-key", "authorization")
    key_header = "x-api-key"
    free_endpoints = frozenset(("files",))
    default_host = "api.anthropic.com"
    openai_compatible_prefix = "/v1/"
    openai_compatible_endpoints = frozenset(("chat.completions",))
    chat_formats: ClassVar[Mapping[str, str]] = {"messages": ANTHROPIC_MESSAGES, "chat.completions": OPENAI_CHAT}
    target_headers = ((b"anthropic-version", b"2023-06-01"),)
    price_table = "anthropic"

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg("/v1/messages", ANTHROPIC_MESSAGES)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path)
        check_case(segments, WORDS)
        if segments[0] == "api":
            return service_call(method, segments[1:])
        if tuple(segments) == MCP_REGISTRY and method == "GET":
            return Classification(passthrough=True)
        if segments[0] != "v1" or len(segments) == 1:
            raise Unreadable("Anthropic's paths start with /v1/ (or are a known /api/ path of Claude Code's)")
        rest = segments[1:]
        if rest == ["chat", "completions"]:  # Anthropic's OpenAI SDK compatibility layer
            return openai.classify_body("chat.completions", method, data)
        if _is_upload(method, rest):
            return Classification(endpoint=".".join(w for w in rest if w in WORDS), unread=UNREAD_BODY)
        endpoint = _ENDPOINTS.get("/".join(rest)) or openai.endpoint_of(rest)
        if data is None or method != "POST":
            return Classification(endpoint=endpoint)
        if rest == ["messages", "batches"]:
            try:
                return _batch(data)
            except Unreadable as e:
                raise e.at(endpoint) from None
        try:
            return Classification(endpoint=endpoint, model=request_model(data), facts=messages_facts(data))
        except Unreadable as e:
            raise e.at(endpoint) from None

    def streams_unread(self, method: str, path: str) -> bool:
        return path.startswith("/v1/") and _is_upload(method, path[4:].split("/"))

    def refusal(self, reason: str, message: str) -> Refusal:
        return self._json_refusal(
            reason, {"type": "error", "error": {"type": _ERROR_TYPES[reason], "message": message}}
        )

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        if not is_event_stream(headers):
            return super().usage_reader(classification, headers)
        if classification.wire_format == OPENAI_FORMAT:
            return openai.stream_reader(classification.endpoint)
        return MessagesStreamReader()

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        if classification.wire_format == OPENAI_FORMAT:
            return openai.usage_of(classification.endpoint, body)
        return messages_usage(body, counted=classification.endpoint == "messages.count_tokens")


def service_call(method: str, rest: list[str]) -> Classification:
    """A known call to Anthropic's own service (`SERVICE_ENDPOINTS`), else refused."""
    key = "/".join(rest)
    if len(rest) == 2 and rest[0] == "eval" and rest[1].startswith("sdk-") and len(rest[1]) > 4:
        key = "eval/sdk-{id}"
    endpoint = SERVICE_ENDPOINTS.get((method, key))
    if endpoint is None:
        raise Unreadable(f"{method} /api/{'/'.join(rest)} is not a path of Anthropic's service Tollgate knows")
    return Classification(endpoint=endpoint, service=True)


def messages_facts(data: dict[str, Any]) -> RequestFacts:
    """A Messages API body's facts (also Claude's on Vertex AI)."""
    facts = RequestFacts(
        message_count=count(data.get("messages")),
        has_system=bool(data.get("system")),
        # Server tools (web search, code execution, bash, computer use…) are tools too.
        has_tools=bool(data.get("tools")) or loads_skills(data.get("container")),
        stream=request_flag(data.get("stream"), "stream"),
        max_tokens=request_int(data.get("max_tokens"), "max_tokens"),
        service_tier=request_text(data.get("service_tier"), "service_tier"),
        speed=request_text(data.get("speed"), "speed"),
    )
    facts.grants(mcp_servers(data.get("mcp_servers")))
    return facts


def loads_skills(container: Any) -> bool:
    """Whether a Messages body's `container` loads Agent Skills into the code execution container:
    capabilities the model may use, as tools."""
    return isinstance(container, dict) and bool(container.get("skills"))


def mcp_servers(value: Any) -> tuple[McpServer, ...]:
    """The remote MCP servers a Messages body's `mcp_servers` gives the model, each a `{"type":
    "url", "url", "name"}` (Anthropic runs them inside its API); anything else is refused, never
    skipped: a server the policy did not see would still be called."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Unreadable("'mcp_servers' is not a list")
    servers = []
    for i, entry in enumerate(value):
        where = f"mcp_servers[{i}]"
        if not isinstance(entry, dict):
            raise Unreadable(f"{where} is not an object")
        if entry.get("type") != "url":
            raise Unreadable(f"{where}.type is not 'url'")
        url, name = request_text(entry.get("url"), f"{where}.url"), request_text(entry.get("name"), f"{where}.name")
        if url is None or name is None:
            raise Unreadable(f"{where} names no {'url' if url is None else 'name'}")
        servers.append(McpServer(url, name))
    return tuple(servers)


def messages_usage(body: bytes | None, counted: bool = False) -> Usage:
    """Usage from a whole Messages API answer, or from a count of tokens' (`counted`)."""
    data = parse_json(body)
    if data is None:
        return Usage()
    if counted:
        return Usage(input_tokens=as_int(data.get("input_tokens")))
    usage = usage_from_object(data.get("usage"))
    reason = data.get("stop_reason")
    usage.finish_reason = reason if isinstance(reason, str) else None
    return usage


def usage_from_object(raw: object) -> Usage:
    """Anthropic reports input tokens apart from cache reads and writes; the audit's
    `input_tokens` is every prompt token, as for the other providers, `cached_tokens` the cache
    reads among them and `cache_write_tokens` the cache writes."""
    if not isinstance(raw, dict):
        return Usage()
    fresh = as_int(raw.get("input_tokens"))
    read = as_int(raw.get("cache_read_input_tokens"))
    written = as_int(raw.get("cache_creation_input_tokens"))
    output = as_int(raw.get("output_tokens"))
    prompt = None if fresh is None else fresh + (read or 0) + (written or 0)
    total = None if prompt is None or output is None else prompt + output
    tier, speed = raw.get("service_tier"), raw.get("speed")
    return Usage(
        input_tokens=prompt, output_tokens=output, total_tokens=total, cached_tokens=read, cache_write_tokens=written,
        service_tier=tier if isinstance(tier, str) else None, speed=speed if isinstance(speed, str) else None,
    )  # fmt: skip


_MESSAGE_START = re.compile(rb'"type"\s*:\s*"message_start"')
_MESSAGE_DELTA = re.compile(rb'"type"\s*:\s*"message_delta"')
_ERROR_EVENT = re.compile(rb"^event:\s*error\s*$", re.MULTILINE)


class MessagesStreamReader(SSEReader):
    """Messages API stream: input and cache tokens in `message_start`, the cumulative output
    (and, in newer API versions, updated input) counts and the stop reason in `message_delta`."""

    wanted = (b'"message_delta"', b"event: error", b"event:error")
    reads_start = True  # message_start, the stream's first event

    def __init__(self) -> None:
        super().__init__()
        self._message_start: bytes | None = None
        self._delta: bytes | None = None

    def first(self, region: bytes) -> bool:
        if b'"message_start"' in region:
            self._message_start = next((b for b in split_events(region) if _MESSAGE_START.search(b)), None)
        return self._message_start is not None

    def keep(self, block: bytes) -> None:
        if self._delta is None and _MESSAGE_DELTA.search(block):
            self._delta = block
        elif _ERROR_EVENT.search(block):
            error = (self.data(block) or {}).get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            self.error = f"the stream ended in an error event: {kind or 'unknown'}"

    def has_all(self) -> bool:
        return self._delta is not None

    def read(self) -> Usage:
        start = self.data(self._message_start) or {}
        message = json_object(start.get("message"))
        counts = dict(json_object(message.get("usage")))
        delta = self.data(self._delta) or {}
        if isinstance(delta.get("usage"), dict):
            counts.update({k: v for k, v in delta["usage"].items() if v is not None})
        usage = usage_from_object(counts)
        reason = delta.get("delta", {}).get("stop_reason") if isinstance(delta.get("delta"), dict) else None
        usage.finish_reason = reason if isinstance(reason, str) else None
        return usage
