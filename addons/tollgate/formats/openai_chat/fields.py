"""Chat Completions' field tables: what becomes of each request field, message key and content part
(translated, dropped or refused), and the finish reasons as each side says them."""

from __future__ import annotations

from typing import Literal

from tollgate.formats.chat import Effort, FinishReason

Fate = Literal["translated", "dropped", "refused"]

# What becomes of each request field: the docs list this table. A null value counts as absent.
REQUEST_FIELDS: dict[str, Fate] = {
    "model": "translated",
    "messages": "translated",
    "tools": "translated",  # function tools only
    "tool_choice": "translated",
    "parallel_tool_calls": "translated",
    "max_tokens": "translated",
    "max_completion_tokens": "translated",
    "temperature": "translated",
    "top_p": "translated",
    "stop": "translated",
    "n": "translated",
    "seed": "translated",
    "presence_penalty": "translated",
    "frequency_penalty": "translated",
    "logprobs": "translated",
    "top_logprobs": "translated",
    "response_format": "translated",
    "reasoning_effort": "translated",  # "none" as thinking_budget 0; "xhigh" and "max" as "high"
    "stream": "translated",
    "stream_options": "translated",  # include_usage; include_obfuscation dropped
    "user": "translated",
    "safety_identifier": "translated",  # as user
    "modalities": "refused",  # but ["text"], which every answer is anyway
    # Their loss does not change what the answer says.
    "logit_bias": "dropped",
    "store": "dropped",
    "metadata": "dropped",
    "service_tier": "dropped",
    "prediction": "dropped",
    "verbosity": "dropped",
    "prompt_cache_key": "dropped",
    "prompt_cache_retention": "dropped",
    "prompt_cache_options": "dropped",
    "moderation": "refused",  # a blocking policy changes the answer
    "audio": "refused",
    "web_search_options": "refused",
    "functions": "refused",  # the legacy form of tools
    "function_call": "refused",
}

# A message's keys by its role; the legacy `function` role is none of them, so refused.
MESSAGE_FIELDS: dict[str, dict[str, Fate]] = {
    "system": {"role": "translated", "content": "translated", "name": "dropped"},
    "developer": {"role": "translated", "content": "translated", "name": "dropped"},
    "user": {"role": "translated", "content": "translated", "name": "dropped"},
    "assistant": {
        "role": "translated",
        "content": "translated",
        "tool_calls": "translated",
        "refusal": "translated",  # as text
        "reasoning_content": "translated",  # not OpenAI's; compatible endpoints' (DeepSeek, vLLM)
        "name": "dropped",
        "audio": "refused",
        "function_call": "refused",
    },
    "tool": {"role": "translated", "content": "translated", "tool_call_id": "translated"},
}

# Content parts by type, and each type's keys. Cache breakpoints (OpenAI's `prompt_cache_breakpoint`,
# the `cache_control` marks compatible endpoints that front Anthropic take) only steer caching.
_CACHE_MARKS: dict[str, Fate] = {"prompt_cache_breakpoint": "dropped", "cache_control": "dropped"}
PART_FIELDS: dict[str, dict[str, Fate]] = {
    "text": {"type": "translated", "text": "translated", **_CACHE_MARKS},
    "image_url": {"type": "translated", "image_url": "translated", **_CACHE_MARKS},
    "refusal": {"type": "translated", "refusal": "translated"},  # an assistant's, as text
}
REFUSED_PART_TYPES = ("input_audio", "file")
IMAGE_URL_FIELDS: dict[str, Fate] = {"url": "translated", "detail": "dropped"}
TOOL_FIELDS: dict[str, Fate] = {"type": "translated", "function": "translated"}
FUNCTION_FIELDS: dict[str, Fate] = {
    "name": "translated",
    "description": "translated",
    "parameters": "translated",
    "strict": "translated",
}
TOOL_CALL_FIELDS: dict[str, Fate] = {"id": "translated", "type": "translated", "function": "translated"}
CALLED_FUNCTION_FIELDS: dict[str, Fate] = {"name": "translated", "arguments": "translated"}
JSON_SCHEMA_FIELDS: dict[str, Fate] = {
    "name": "translated",
    "schema": "translated",
    "strict": "translated",
    "description": "dropped",
}
STREAM_OPTIONS_FIELDS: dict[str, Fate] = {"include_usage": "translated", "include_obfuscation": "dropped"}

EFFORTS: tuple[Effort, ...] = ("minimal", "low", "medium", "high")

FINISH_OF_OPENAI: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
OPENAI_OF_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "other": "stop",  # the SDK's finish_reason has no other value
}
