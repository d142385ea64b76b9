"""Anthropic: api.anthropic.com, the Messages API."""

from __future__ import annotations

from ..call import Classification, RequestFacts, Usage
from . import openai
from .base import (
    UNAUTHENTICATED,
    Headers,
    Provider,
    Refusal,
    as_int,
    count,
    parse_json,
)

_ENDPOINTS = {
    "messages": "messages",
    "messages/count_tokens": "messages.count_tokens",
    "messages/batches": "messages.batches",
    "complete": "completions",
    "models": "models",
}

_ERROR_TYPES = {
    UNAUTHENTICATED: "authentication_error",
    "policy_denied": "permission_error",
    "no_upstream_credential": "api_error",
    "misconfigured": "api_error",
    "upstream_unreachable": "api_error",
    "upstream_timeout": "timeout_error",
}


class Anthropic(Provider):
    name = "anthropic"
    host_pattern = r"^api\.anthropic\.com:443$"
    side_header = "X-Anthropic-Key"
    key_positions = positions = ("x-api-key", "authorization")

    def classify(self, method: str, path: str, body: bytes | None) -> Classification:
        rest = path.removeprefix("/v1/").strip("/")
        if rest.startswith("openai/"):  # Anthropic's OpenAI SDK compatibility layer
            c = openai.classify_body(openai.endpoint_of(rest.removeprefix("openai/")), method, body)
            c.wire_format = "openai"
            return c
        endpoint = _ENDPOINTS.get(rest) or openai.endpoint_of(rest)
        c = Classification(endpoint=endpoint)
        data = parse_json(body) if method == "POST" else None
        if data is None:
            return c
        model = data.get("model")
        c.model = model if isinstance(model, str) else None
        stream = data.get("stream")
        c.facts = RequestFacts(
            message_count=count(data.get("messages")),
            has_system=bool(data.get("system")),
            has_tools=bool(data.get("tools")),
            stream=stream if isinstance(stream, bool) else False,
            max_tokens=as_int(data.get("max_tokens")),
        )
        return c



    def inject(self, headers: Headers, key: str, classification: Classification) -> None:
        if classification.wire_format == "openai":
            headers["authorization"] = f"Bearer {key}"
        else:
            headers["x-api-key"] = key

    def refusal(self, reason: str, message: str) -> Refusal:
        return self._json_refusal(
            reason, {"type": "error", "error": {"type": _ERROR_TYPES[reason], "message": message}}
        )

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        if classification.wire_format == "openai":
            return openai.usage_of(classification.endpoint, body)
        data = parse_json(body)
        if data is None:
            return Usage()
        if classification.endpoint == "messages.count_tokens":
            return Usage(input_tokens=as_int(data.get("input_tokens")))
        usage = usage_from_object(data.get("usage"))
        reason = data.get("stop_reason")
        usage.finish_reason = reason if isinstance(reason, str) else None
        return usage


def usage_from_object(raw: object) -> Usage:
    """Anthropic reports input tokens apart from cache reads and writes; the audit's
    `input_tokens` is every prompt token, as for the other providers, and `cached_tokens`
    the cache reads among them."""
    if not isinstance(raw, dict):
        return Usage()
    fresh = as_int(raw.get("input_tokens"))
    read = as_int(raw.get("cache_read_input_tokens"))
    written = as_int(raw.get("cache_creation_input_tokens"))
    output = as_int(raw.get("output_tokens"))
    prompt = None if fresh is None else fresh + (read or 0) + (written or 0)
    total = None if prompt is None or output is None else prompt + output
    return Usage(input_tokens=prompt, output_tokens=output, total_tokens=total, cached_tokens=read)
