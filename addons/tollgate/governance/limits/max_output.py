"""The most a model writes in one answer, as its provider documents it: what a call under a token or
USD limit that sets no output bound reserves for each answer. genai-prices' table gives context
windows, not output limits, so the figures are the providers' own (their model pages). A model not
here reserves `ledger.reserve_output_tokens`."""

from __future__ import annotations

import re
from functools import lru_cache

# Model families by the start of their id, and the output tokens one answer may hold. The longest
# start that matches wins, and only where the id goes on with '-', '@', ':' or nothing
# (`gpt-4` is not `gpt-4.1`, `gpt-5` is not `gpt-5.2`).
MAX_OUTPUT_TOKENS = {
    # OpenAI
    "gpt-3.5-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-4-turbo": 4_096,
    "gpt-4-1106-preview": 4_096,
    "gpt-4-0125-preview": 4_096,
    "gpt-4.5-preview": 16_384,
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4_096,
    "gpt-4o-mini": 16_384,
    "chatgpt-4o-latest": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "gpt-5": 128_000,
    "gpt-5-mini": 128_000,
    "gpt-5-nano": 128_000,
    "gpt-5-codex": 128_000,
    "gpt-5-chat-latest": 16_384,
    "gpt-5-pro": 272_000,
    "gpt-5.1": 128_000,
    "gpt-5.1-codex": 128_000,
    "gpt-5.1-chat-latest": 16_384,
    "o1": 100_000,
    "o1-mini": 65_536,
    "o1-pro": 100_000,
    "o3": 100_000,
    "o3-mini": 100_000,
    "o3-pro": 100_000,
    "o3-deep-research": 100_000,
    "o4-mini": 100_000,
    "o4-mini-deep-research": 100_000,
    "codex-mini-latest": 100_000,
    "gpt-oss-20b": 131_072,
    "gpt-oss-120b": 131_072,
    # The Realtime models: 4 096 tokens a response.
    "gpt-realtime": 4_096,
    "gpt-realtime-mini": 4_096,
    "gpt-4o-realtime-preview": 4_096,
    "gpt-4o-mini-realtime-preview": 4_096,
    # An image's output tokens at its largest size and quality (1024x1536, high).
    "gpt-image-1": 6_240,
    # Anthropic (also on Bedrock and Vertex AI). Claude 3.7 Sonnet writes up to 128k tokens with
    # the `output-128k` beta header: the header is not read, so the larger figure is reserved.
    "claude-3-haiku": 4_096,
    "claude-3-sonnet": 4_096,
    "claude-3-opus": 4_096,
    "claude-3-5-haiku": 8_192,
    "claude-3-5-sonnet": 8_192,
    "claude-3-7-sonnet": 128_000,
    "claude-sonnet-4": 64_000,
    "claude-sonnet-4-5": 64_000,
    "claude-haiku-4-5": 64_000,
    "claude-opus-4": 32_000,
    "claude-opus-4-1": 32_000,
    "claude-opus-4-5": 64_000,
    # Google (the Gemini API and Vertex AI)
    "gemini-1.5-flash": 8_192,
    "gemini-1.5-flash-8b": 8_192,
    "gemini-1.5-pro": 8_192,
    "gemini-2.0-flash": 8_192,
    "gemini-2.0-flash-lite": 8_192,
    "gemini-2.5-flash": 65_536,
    "gemini-2.5-flash-lite": 65_536,
    "gemini-2.5-pro": 65_536,
    "gemini-3-pro-preview": 65_536,
}

# Bedrock's ids: a cross-region inference profile's geography, then the model's vendor.
_BEDROCK_PREFIX = re.compile(r"^(?:(?:us|eu|apac|jp|au|ca|us-gov|global)\.)?(?:anthropic|openai|google)\.")
_BOUNDARY = frozenset("-@:")


@lru_cache(maxsize=512)  # the same few models call after call
def max_output_tokens(model: str | None) -> int | None:
    """The most one answer of the model may hold, or None when Tollgate does not know it."""
    if not model:
        return None
    name = model.lower().rpartition("/")[2]  # `models/x`, `publishers/google/models/x`, an ARN's last part
    name = _BEDROCK_PREFIX.sub("", name)
    found = [
        start
        for start in MAX_OUTPUT_TOKENS
        if name.startswith(start) and (len(name) == len(start) or name[len(start)] in _BOUNDARY)
    ]
    return MAX_OUTPUT_TOKENS[max(found, key=len)] if found else None
