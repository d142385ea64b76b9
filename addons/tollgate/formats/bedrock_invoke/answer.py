"""What an InvokeModel answer reports: its usage, in headers (and a stream's invocation metrics)
whatever the model family, counted as Bedrock counts every API's (`prompt_usage`); and the stop
reason each family names in its own body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.formats.exact import as_int
from tollgate.formats.usage import Usage

# The headers an InvokeModel answer reports its usage in: the input tokens (less the cache's), the
# cache reads and writes, the output tokens.
USAGE_HEADERS = (
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
    "x-amzn-bedrock-output-token-count",
)


def prompt_usage(fresh: int | None, read: int | None, written: int | None, output: int | None) -> Usage:
    """Bedrock, like Anthropic, counts cache reads and writes apart from the input tokens it
    reports (Converse's `inputTokens`, InvokeModel's input token count header and invocation
    metrics); the audit's input_tokens is every prompt token."""
    return Usage(
        input_tokens=None if fresh is None else fresh + (read or 0) + (written or 0),
        output_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
    )


def header_usage(headers: Mapping[str, str]) -> Usage:
    """The usage an InvokeModel answer's headers report (no input tokens where they report none)."""
    return prompt_usage(
        as_int(headers.get("x-amzn-bedrock-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-cache-read-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-cache-write-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-output-token-count")),
    )


def invoke_finish_reason(data: dict[str, Any]) -> str | None:
    """The stop reason in the model family's own InvokeModel body."""
    for key in ("stop_reason", "stopReason", "finish_reason", "completionReason"):
        if isinstance(data.get(key), str):
            return data[key]
    for key in ("choices", "results", "generations", "outputs"):
        items = data.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            for inner in ("finish_reason", "completionReason", "stop_reason"):
                if isinstance(items[0].get(inner), str):
                    return items[0][inner]
    return None
