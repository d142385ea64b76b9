"""Gemini API: generativelanguage.googleapis.com, every API version, and its OpenAI-compatible endpoint."""

from __future__ import annotations

import re
from typing import Any

from ..call import Classification, RequestFacts, Usage
from ..streams import JSONArrayFramer, SSEFramer
from . import openai
from .base import (
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    INTERNAL_ERROR,
    INVALID_SIGNATURE,
    MISCONFIGURED,
    NO_UPSTREAM_CREDENTIAL,
    POLICY_DENIED,
    STATUS,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    Headers,
    Provider,
    Refusal,
    SSEReader,
    UsageReader,
    add_totals,
    as_int,
    count,
    is_event_stream,
    parse_json,
)

# /v1beta/models/gemini-2.0-flash:generateContent, /v1/tunedModels/x:generateContent, …
_MODEL_CALL = re.compile(
    r"^/(?P<version>v\d+(?:alpha|beta)?\d*)/(?P<kind>models|tunedModels)/(?P<model>[^/:]+)(?::(?P<method>[A-Za-z]+))?$"
)
_OPENAI_COMPAT = re.compile(r"^/(?P<version>v\d+(?:alpha|beta)?\d*)/openai/(?P<rest>.*)$")

_REASONS = {
    UNAUTHENTICATED: "UNAUTHENTICATED",
    POLICY_DENIED: "PERMISSION_DENIED",
    NO_UPSTREAM_CREDENTIAL: "INTERNAL",
    MISCONFIGURED: "INTERNAL",
    INVALID_SIGNATURE: "UNAUTHENTICATED",
    INTERNAL_ERROR: "INTERNAL",
    UPSTREAM_UNREACHABLE: "UNAVAILABLE",
    UPSTREAM_TIMEOUT: "DEADLINE_EXCEEDED",
    BAD_REQUEST: "INVALID_ARGUMENT",
    AUDIT_UNAVAILABLE: "UNAVAILABLE",
}


class Gemini(Provider):
    name = "gemini"
    host_pattern = r"^generativelanguage\.googleapis\.com:443$"
    side_header = "X-Gemini-Key"
    key_positions = positions = ("x-goog-api-key", "authorization", "query:key")
    model_in_path = _MODEL_CALL
    key_header = "x-goog-api-key"
    default_host = "generativelanguage.googleapis.com"

    def classify(self, method: str, path: str, data: dict[str, Any] | None) -> Classification:
        if m := _OPENAI_COMPAT.match(path):
            return openai.classify_body(openai.endpoint_of(m["rest"]), method, data)
        m = _MODEL_CALL.match(path)
        if not m:
            rest = path.strip("/").split("/", 1)[-1]
            return Classification(endpoint=rest.split("/")[0] or None)
        if m["method"] is None:
            return Classification(endpoint="models.get", model=m["model"])
        facts = RequestFacts(stream=m["method"] == "streamGenerateContent")
        if data is not None and method == "POST":
            config = data.get("generationConfig", data.get("generation_config"))
            config = config if isinstance(config, dict) else {}
            facts.message_count = count(data.get("contents"))
            facts.has_system = bool(data.get("systemInstruction", data.get("system_instruction")))
            facts.has_tools = bool(data.get("tools"))
            facts.max_tokens = as_int(config.get("maxOutputTokens", config.get("max_output_tokens")))
        return Classification(endpoint=m["method"], model=m["model"], facts=facts)

    def refusal(self, reason: str, message: str) -> Refusal:
        body = {"error": {"code": STATUS[reason], "message": message, "status": _REASONS[reason]}}
        return self._json_refusal(reason, body)

    def usage_reader(self, classification: Classification, headers: Headers) -> UsageReader:
        if classification.wire_format == "openai":
            if is_event_stream(headers):
                return openai.stream_reader(classification.endpoint)
        elif is_event_stream(headers):
            return GenerateStreamReader(SSEFramer(), sse=True)
        elif classification.endpoint == "streamGenerateContent":
            return GenerateStreamReader(JSONArrayFramer(), sse=False)
        return super().usage_reader(classification, headers)

    def usage(self, classification: Classification, headers: Headers, body: bytes | None) -> Usage:
        if classification.wire_format == "openai":
            return openai.usage_of(classification.endpoint, body)
        if classification.endpoint == "countTokens":
            return Usage(input_tokens=as_int((parse_json(body) or {}).get("totalTokens")))
        return usage_of(body)


def usage_of(body: bytes | None) -> Usage:
    data = parse_json(body)
    return usage_from_object(data) if data is not None else Usage()


def usage_from_object(data: dict) -> Usage:
    """Usage from one GenerateContentResponse object (also one element of a stream)."""
    meta = data.get("usageMetadata")
    meta = meta if isinstance(meta, dict) else {}
    candidates = as_int(meta.get("candidatesTokenCount"))
    thoughts = as_int(meta.get("thoughtsTokenCount"))
    u = Usage(
        input_tokens=as_int(meta.get("promptTokenCount")),
        # Every generated token, thinking included, as OpenAI's completion_tokens counts them.
        output_tokens=None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0),
        total_tokens=as_int(meta.get("totalTokenCount")),
        cached_tokens=as_int(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        reason = candidates[0].get("finishReason")
        u.finish_reason = reason if isinstance(reason, str) else None
    return add_totals(u)


_USAGE_METADATA = re.compile(rb'"usageMetadata"\s*:')
_FINISH_REASON = re.compile(rb'"finishReason"\s*:')


class GenerateStreamReader(UsageReader):
    """streamGenerateContent, as server-sent events (alt=sse) or as one JSON array written element
    by element: each element is a GenerateContentResponse; the last usageMetadata counts."""

    def __init__(self, framer: SSEFramer | JSONArrayFramer, sse: bool) -> None:
        self._framer = framer
        self._sse = sse
        self._usage: bytes | None = None
        self._finish: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        for frame in self._framer.feed(chunk):
            if _USAGE_METADATA.search(frame):
                self._usage = frame
            if _FINISH_REASON.search(frame):
                self._finish = frame
        self.error = self._framer.error

    def _object(self, frame: bytes | None) -> dict:
        if frame is None:
            return {}
        if self._sse:
            return SSEReader.data(frame) or {}
        return parse_json(frame) or {}

    def result(self) -> Usage:
        usage = usage_from_object(self._object(self._usage))
        finish = usage_from_object(self._object(self._finish)).finish_reason
        usage.finish_reason = finish or usage.finish_reason
        return usage
