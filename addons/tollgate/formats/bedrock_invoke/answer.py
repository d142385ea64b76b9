"""What an InvokeModel answer reports in its headers: its usage, whatever the model family, counted
as Bedrock counts every API's (`bedrock_family.prompt_usage`)."""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.formats.bedrock_family import prompt_usage
from tollgate.formats.bodies.exact import as_int
from tollgate.formats.usage import Usage

# The headers an InvokeModel answer reports its usage in: the input tokens (less the cache's), the
# cache reads and writes, the output tokens.
USAGE_HEADERS = (
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
    "x-amzn-bedrock-output-token-count",
)


def header_usage(headers: Mapping[str, str]) -> Usage:
    """The usage an InvokeModel answer's headers report (no input tokens where they report none)."""
    return prompt_usage(
        as_int(headers.get("x-amzn-bedrock-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-cache-read-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-cache-write-input-token-count")),
        as_int(headers.get("x-amzn-bedrock-output-token-count")),
    )
