"""What a Bedrock model family's own body says, read by both of Bedrock's APIs: InvokeModel's body
and events, and what Converse passes on in `additionalModelRequestFields` and relays in its
streams' `chunk` events. Bedrock counts usage the same way for both (`prompt_usage`)."""

from __future__ import annotations

import base64
from typing import Any

from tollgate.formats.anthropic_messages import loads_skills, mcp_servers
from tollgate.formats.bodies.exact import as_int, request_count
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.request_facts import RequestFacts
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import add_totals

# The fields of the model families' own bodies that ask for several answers: Cohere's
# `num_generations`, AI21 Jamba's and the OpenAI format's `n`, AI21 Jurassic's `numResults`.
_ANSWERS = ("n", "num_generations", "numResults")


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


def read_chunk(wrapper: dict[str, Any]) -> tuple[Usage | None, str | None]:
    """The usage and the finish reason one `chunk` event's payload tells, if any: the model
    family's own event, base64 in its `bytes`."""
    encoded = wrapper.get("bytes")
    if not isinstance(encoded, str):
        return None, None
    try:
        data = parse_json(base64.b64decode(encoded, validate=True)) or {}
    except ValueError:
        return None, None
    usage = None
    metrics = data.get("amazon-bedrock-invocationMetrics")
    if isinstance(metrics, dict):
        usage = add_totals(
            prompt_usage(
                as_int(metrics.get("inputTokenCount")),
                as_int(metrics.get("cacheReadInputTokenCount")),
                as_int(metrics.get("cacheWriteInputTokenCount")),
                as_int(metrics.get("outputTokenCount")),
            )
        )
    nested = [data.get(k) for k in ("delta", "messageStop")]  # Claude's and Nova's events
    reason = next((invoke_finish_reason(n) for n in nested if isinstance(n, dict) and invoke_finish_reason(n)), None)
    return usage, reason or invoke_finish_reason(data)


def family_tools(data: dict[str, Any], facts: RequestFacts) -> None:
    """The tools a model family's own body gives the model: `tools` (Claude, Mistral, Cohere, AI21,
    OpenAI's open-weight models…), Nova's `toolConfig`, `functions` and `web_search_options` (the
    OpenAI format's), Claude's `mcp_servers` (read exactly) and the skills its `container` loads."""
    facts.has_tools = bool(
        facts.has_tools
        or data.get("tools")
        or data.get("toolConfig")
        or data.get("functions")
        or data.get("web_search_options") is not None
    )
    # Claude's own fields, as the Anthropic format reads them
    facts.has_tools = facts.has_tools or loads_skills(data.get("container"))
    facts.grants(mcp_servers(data.get("mcp_servers")))


def answers(data: dict[str, Any], prefix: str = "") -> int:
    """How many answers a model's own body asks for: the most any of its fields says."""
    return max(request_count(data.get(name), prefix + name) for name in _ANSWERS)
