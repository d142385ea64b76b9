"""Helpers and data the provider tests share."""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import strategies as st
from mitmproxy.http import Headers

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import read_request_json
from tollgate.formats.refusals import (
    AUDIT_UNAVAILABLE,
    BAD_REQUEST,
    BUDGET_EXCEEDED,
    CIRCUIT_OPEN,
    CONTENT_DENIED,
    HEADERS_TOO_LARGE,
    INTERNAL_ERROR,
    INVALID_SIGNATURE,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    MINTS_CREDENTIAL,
    MISCONFIGURED,
    MISDIRECTED,
    NO_UPSTREAM_CREDENTIAL,
    POLICY_DENIED,
    RATE_LIMITED,
    TENANT_DENIED,
    UNAUTHENTICATED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
)
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.providers import PROVIDERS
from tollgate.providers.vendors import OpenAICompatible

OPENAI = PROVIDERS["openai"]
# The OpenAI-compatible vendors' presets.
VENDORS = [p for p in PROVIDERS.values() if isinstance(p, OpenAICompatible)]


GEMINI = PROVIDERS["gemini"]


ANTHROPIC = PROVIDERS["anthropic"]


BEDROCK = PROVIDERS["bedrock"]


VERTEX = PROVIDERS["vertex"]


def classify(provider: Any, method: str, target: str, body: bytes | None) -> Classification:
    """A request as the Classify stage hands it over: its path and query apart, its body parsed once."""
    path, _, query = target.partition("?")
    return provider.classify(method, path, read_request_json(body), query)


REASONS = (
    UNAUTHENTICATED,
    POLICY_DENIED,
    NO_UPSTREAM_CREDENTIAL,
    MISCONFIGURED,
    INVALID_SIGNATURE,
    INTERNAL_ERROR,
    UPSTREAM_UNREACHABLE,
    UPSTREAM_TIMEOUT,
    BAD_REQUEST,
    AUDIT_UNAVAILABLE,
    RATE_LIMITED,
    BUDGET_EXCEEDED,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    HEADERS_TOO_LARGE,
    CIRCUIT_OPEN,
    MISDIRECTED,
    MINTS_CREDENTIAL,
    CONTENT_DENIED,
    TENANT_DENIED,
)


def bedrock_model(raw_path: str) -> str | None:
    """The model Bedrock's classification reads from a raw path (the query is not part of it)."""
    return classify(PROVIDERS["bedrock"], "POST", raw_path.split("?", 1)[0], None).model


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in pairs:
        h.add(name, value)
    return h


def facts(c: Classification) -> tuple:
    f = c.facts
    return (f.message_count, f.has_system, f.has_tools, f.stream, f.max_tokens)


NO_FACTS = (None, None, None, None, None)


def read_request(body: bytes | None) -> Any:
    """A request body as Tollgate reads it: its object, None for no body, "refused" when unreadable."""
    try:
        return read_request_json(body)
    except Unreadable:
        return "refused"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


GEMINI_VERSIONS = ("v1", "v1beta", "v1alpha")


BEDROCK_OPS = ("invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens")


STREAMING_OPS = ("invoke-with-response-stream", "converse-stream")


BEDROCK_MODELS = [
    # (raw path segment(s), decoded model id)
    ("anthropic.claude-3-haiku-20240307-v1%3A0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
    ("amazon.nova-lite-v1%3A0", "amazon.nova-lite-v1:0"),
    ("meta.llama3-8b-instruct-v1%3A0", "meta.llama3-8b-instruct-v1:0"),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2%3A0", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20241022-v2%3A0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Famazon.titan-text-express-v1",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6",
        "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/a1b2c3d4e5f6",
    ),
    (
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprovisioned-model%2Fxyz789",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz789",
    ),
    # An ARN's ':' may come unencoded (its '/' may not: that is another path, refused).
    (
        "arn:aws:bedrock:us-east-1::foundation-model%2Famazon.titan-text-express-v1",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
    ),
    # Decoded exactly once.
    ("model%253Awith%252Fescapes", "model%3Awith%2Fescapes"),
    ("anthropic.claude-v2%25", "anthropic.claude-v2%"),
]


_CLAUDE_INVOKE = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 10,
    "system": "s",
    "messages": [{"role": "user", "content": "hi"}],
}


class _Sent(Exception):
    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(url)
        self.url = url
        self.body = body


def _sent(client: Any, operation: str, **kwargs: Any) -> tuple[str, bytes]:
    with pytest.raises(_Sent) as info:
        getattr(client, operation)(**kwargs)
    parts = urlsplit(info.value.url)
    return parts.path, info.value.body


def usage_tuple(u: Usage) -> tuple:
    return (u.input_tokens, u.output_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens, u.finish_reason)


EMPTY_USAGE = (None, None, None, None, None, None)


OPENAI_REFUSALS = {
    UNAUTHENTICATED: (401, "invalid_request_error", "invalid_api_key"),
    POLICY_DENIED: (403, "permission_denied", "policy_denied"),
    NO_UPSTREAM_CREDENTIAL: (500, "server_error", "no_upstream_credential"),
    MISCONFIGURED: (500, "server_error", "misconfigured"),
    INVALID_SIGNATURE: (403, "server_error", "invalid_signature"),
    INTERNAL_ERROR: (500, "server_error", "internal_error"),
    UPSTREAM_UNREACHABLE: (502, "server_error", "upstream_unreachable"),
    UPSTREAM_TIMEOUT: (504, "server_error", "upstream_timeout"),
    BAD_REQUEST: (400, "invalid_request_error", "bad_request"),
    AUDIT_UNAVAILABLE: (503, "server_error", "audit_unavailable"),
    RATE_LIMITED: (429, "requests", "rate_limit_exceeded"),
    BUDGET_EXCEEDED: (429, "insufficient_quota", "insufficient_quota"),
    LEDGER_UNAVAILABLE: (503, "server_error", "ledger_unavailable"),
    LIMIT_UNENFORCEABLE: (403, "permission_denied", "limit_unenforceable"),
    HEADERS_TOO_LARGE: (431, "invalid_request_error", "headers_too_large"),
    MISDIRECTED: (421, "invalid_request_error", "misdirected"),
    CIRCUIT_OPEN: (503, "server_error", "circuit_open"),
    MINTS_CREDENTIAL: (403, "permission_denied", "mints_credential"),
    CONTENT_DENIED: (403, "permission_denied", "content_denied"),
    TENANT_DENIED: (403, "permission_denied", "tenant_denied"),
}


GEMINI_REFUSALS = {
    UNAUTHENTICATED: (401, "UNAUTHENTICATED"),
    POLICY_DENIED: (403, "PERMISSION_DENIED"),
    NO_UPSTREAM_CREDENTIAL: (500, "INTERNAL"),
    MISCONFIGURED: (500, "INTERNAL"),
    INVALID_SIGNATURE: (403, "UNAUTHENTICATED"),
    INTERNAL_ERROR: (500, "INTERNAL"),
    UPSTREAM_UNREACHABLE: (502, "UNAVAILABLE"),
    UPSTREAM_TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    BAD_REQUEST: (400, "INVALID_ARGUMENT"),
    AUDIT_UNAVAILABLE: (503, "UNAVAILABLE"),
    RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    BUDGET_EXCEEDED: (429, "RESOURCE_EXHAUSTED"),
    LEDGER_UNAVAILABLE: (503, "UNAVAILABLE"),
    LIMIT_UNENFORCEABLE: (403, "PERMISSION_DENIED"),
    HEADERS_TOO_LARGE: (431, "INVALID_ARGUMENT"),
    MISDIRECTED: (421, "INVALID_ARGUMENT"),
    CIRCUIT_OPEN: (503, "UNAVAILABLE"),
    MINTS_CREDENTIAL: (403, "PERMISSION_DENIED"),
    CONTENT_DENIED: (403, "PERMISSION_DENIED"),
    TENANT_DENIED: (403, "PERMISSION_DENIED"),
}


ANTHROPIC_REFUSALS = {
    UNAUTHENTICATED: (401, "authentication_error"),
    POLICY_DENIED: (403, "permission_error"),
    NO_UPSTREAM_CREDENTIAL: (500, "api_error"),
    MISCONFIGURED: (500, "api_error"),
    INVALID_SIGNATURE: (403, "authentication_error"),
    INTERNAL_ERROR: (500, "api_error"),
    UPSTREAM_UNREACHABLE: (502, "api_error"),
    UPSTREAM_TIMEOUT: (504, "timeout_error"),
    BAD_REQUEST: (400, "invalid_request_error"),
    AUDIT_UNAVAILABLE: (503, "api_error"),
    RATE_LIMITED: (429, "rate_limit_error"),
    BUDGET_EXCEEDED: (429, "rate_limit_error"),
    LEDGER_UNAVAILABLE: (503, "api_error"),
    LIMIT_UNENFORCEABLE: (403, "permission_error"),
    HEADERS_TOO_LARGE: (431, "invalid_request_error"),
    MISDIRECTED: (421, "invalid_request_error"),
    CIRCUIT_OPEN: (503, "api_error"),
    MINTS_CREDENTIAL: (403, "permission_error"),
    CONTENT_DENIED: (403, "permission_error"),
    TENANT_DENIED: (403, "permission_error"),
}


BEDROCK_REFUSALS = {
    UNAUTHENTICATED: (403, "UnrecognizedClientException"),
    POLICY_DENIED: (403, "AccessDeniedException"),
    NO_UPSTREAM_CREDENTIAL: (500, "InternalServerException"),
    MISCONFIGURED: (500, "InternalServerException"),
    INVALID_SIGNATURE: (403, "InvalidSignatureException"),
    INTERNAL_ERROR: (500, "InternalServerException"),
    UPSTREAM_UNREACHABLE: (502, "ServiceUnavailableException"),
    UPSTREAM_TIMEOUT: (504, "ModelTimeoutException"),
    BAD_REQUEST: (400, "ValidationException"),
    AUDIT_UNAVAILABLE: (503, "ServiceUnavailableException"),
    RATE_LIMITED: (429, "ThrottlingException"),
    BUDGET_EXCEEDED: (429, "ThrottlingException"),
    LEDGER_UNAVAILABLE: (503, "ServiceUnavailableException"),
    LIMIT_UNENFORCEABLE: (403, "AccessDeniedException"),
    HEADERS_TOO_LARGE: (431, "ValidationException"),
    MISDIRECTED: (421, "ValidationException"),
    CIRCUIT_OPEN: (503, "ServiceUnavailableException"),
    MINTS_CREDENTIAL: (403, "AccessDeniedException"),
    CONTENT_DENIED: (403, "AccessDeniedException"),
    TENANT_DENIED: (403, "AccessDeniedException"),
}


MESSAGE = 'Tollgate: "no" — reasons: a, b'


def _common_refusal_headers(refusal: Any, reason: str) -> None:
    assert refusal.headers["content-type"] == "application/json"
    assert refusal.headers["x-tollgate-error"] == reason


_FIELD_NAMES = [
    "model",
    "messages",
    "stream",
    "tools",
    "functions",
    "system",
    "instructions",
    "input",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "output_tokens_details",
    "choices",
    "finish_reason",
    "status",
    "incomplete_details",
    "reason",
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "maxOutputTokens",
    "max_output_tokens",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
    "thoughtsTokenCount",
    "candidates",
    "finishReason",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "stop_reason",
    "stopReason",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "cacheReadInputTokens",
    "cacheWriteInputTokens",
    "inferenceConfig",
    "maxTokens",
    "max_new_tokens",
    "toolConfig",
    "converse",
    "invokeModel",
    "body",
    "inputText",
    "prompt",
    "textGenerationConfig",
    "maxTokenCount",
    "max_gen_len",
    "results",
    "generations",
    "outputs",
    "completionReason",
    "role",
]


# Strings are ASCII here: non-ASCII digit strings have their own tests above.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=string.printable, max_size=12)
    | st.sampled_from(["system", "developer", "user", "12", "0", "", "STOP", "end_turn"])
)


json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=30,
)


json_objects = st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), json_values, max_size=8)


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


json_bodies = (
    json_objects.map(_dump)
    | json_values.map(_dump)
    | st.binary(max_size=200)
    | json_objects.map(_dump).flatmap(lambda b: st.integers(0, max(len(b) - 1, 0)).map(lambda n: b[:n]))
    | st.none()
)


PATHS = {
    "code_assist": [
        "/v1internal:generateContent",
        "/v1internal:streamGenerateContent",
        "/v1internal:countTokens",
        "/v1internal:loadCodeAssist",
        "/v1internal:onboardUser",
        "/v1internal/operations/x",
        "/v1internal:GenerateContent",
    ],
    "openai": [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/models",
        "/v1/files/file-1/content",
    ],
    "gemini": [
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "/v1/models/gemini-2.0-flash:streamGenerateContent",
        "/v1alpha/models/gemini-2.0-flash:countTokens",
        "/v1beta/models/text-embedding-004:embedContent",
        "/v1beta/tunedModels/t1:generateContent",
        "/v1beta/models/gemini-2.0-flash",
        "/v1beta/models",
        "/v1beta/openai/chat/completions",
        "/v1beta/openai/embeddings",
    ],
    "anthropic": ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches", "/v1/complete", "/v1/models"],
    "chatgpt": ["/backend-api/codex/responses", "/backend-api/codex/models", "/backend-api/codex/a/B-1"],
    "copilot": [
        "/chat/completions",
        "/v1/chat/completions",
        "/responses",
        "/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/models",
        "/_ping",
        "/agents/A-1/skills",
    ],
    "bedrock": [
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
        "/model/amazon.nova-lite-v1%3A0/converse",
        "/model/amazon.nova-lite-v1%3A0/converse-stream",
        "/model/amazon.nova-lite-v1%3A0/count-tokens",
        "/guardrail/g/version/1/apply",
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
    ],
    "azure": [
        "/openai/deployments/gpt4o-prod/chat/completions",
        "/openai/deployments/gpt4o-prod/embeddings",
        "/openai/deployments/gpt4o-prod/audio/transcriptions",
        "/openai/responses",
        "/openai/v1/chat/completions",
        "/openai/v1/responses",
        "/openai/files",
    ],
    "vertex": [
        "/v1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
        "/v1beta1/projects/p-1/locations/global/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
        "/v1beta1/publishers/google/models/gemini-2.5-flash:countTokens",
        "/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
        "/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
        "/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict",
        "/v1/projects/p-1/locations/us-central1/endpoints/openapi/chat/completions",
        "/v1/projects/p-1/locations/us-central1/endpoints/123:generateContent",
        "/v1/projects/p-1/locations/us-central1/cachedContents",
    ],
    **{
        vendor.name: [
            f"{base}/{path}"
            for base in vendor.base_paths
            for path in ("chat/completions", "embeddings", "responses", "completions", "models", "files")
        ]
        for vendor in PROVIDERS.values()
        if isinstance(vendor, OpenAICompatible)
    },
}


ALL_ENDPOINTS = [
    "chat.completions",
    "responses",
    "embeddings",
    "completions",
    "models",
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "models.get",
    "messages",
    "messages.count_tokens",
    "invoke",
    "invoke-with-response-stream",
    "converse",
    "converse-stream",
    "count-tokens",
    "apply-guardrail",
    None,
]


header_texts = st.text(alphabet=string.printable, max_size=8)


_header_names = st.sampled_from([b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Accept", b"X-A"])
