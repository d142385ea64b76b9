"""What becomes of each field of a Messages call: translated, dropped or refused, when read into the
common chat model and when written out of it."""

from __future__ import annotations

from typing import Literal

from tollgate import formats

NAME = formats.ANTHROPIC_MESSAGES
Handling = Literal["translated", "dropped", "refused"]

# Every top-level field of a Messages call, and what becomes of it when read. A field not listed
# is refused as unknown (compaction, fallbacks, thread, … change what the call means).
REQUEST_FIELDS: dict[str, tuple[Handling, str]] = {
    "model": ("translated", "model"),
    "max_tokens": ("translated", "max_tokens"),
    "messages": (
        "translated",
        "text, image (base64 or url), tool_use, tool_result, thinking and redacted_thinking blocks; "
        "document, search_result, server tool blocks, container_upload and the like are refused",
    ),
    "system": ("translated", "a string or text blocks"),
    "tools": ("translated", "custom tools; server tools (web_search, bash, text_editor, computer, …) are refused"),
    "tool_choice": ("translated", "auto/any/tool/none; disable_parallel_tool_use ↔ parallel_tool_calls"),
    "temperature": ("translated", "temperature"),
    "top_p": ("translated", "top_p"),
    "top_k": ("translated", "top_k"),
    "stop_sequences": ("translated", "stop"),
    "stream": ("translated", "stream"),
    "metadata": ("translated", "metadata.user_id ↔ user"),
    "thinking": (
        "translated",
        "enabled ↔ thinking_budget; disabled ↔ thinking_budget 0; adaptive → reasoning_effort; "
        "display ↔ include_thoughts (read only)",
    ),
    "output_config": ("translated", "format (json_schema) ↔ output; effort → reasoning_effort (xhigh, max → high)"),
    "output_format": ("translated", "the structured-outputs beta's json_schema → output"),
    "cache_control": ("dropped", "top-level, and on any block or tool"),
    "service_tier": ("dropped", "capacity, not the answer"),
    "container": ("dropped", "only server tools, which are refused, use it"),
    "context_management": ("dropped", "server-side context editing"),
    "inference_geo": ("dropped", "where the call runs, not the answer"),
    "speed": ("dropped", "how fast, not what"),
    "diagnostics": ("dropped", "cache-miss diagnostics"),
    "user_profile_id": ("dropped", "attribution"),
    "workspace_id": ("dropped", "attribution"),
    "mcp_servers": ("refused", "remote MCP servers run inside Anthropic's API (an empty list is dropped)"),
}
# What else is dropped when read, inside blocks and tools (names as they go into `ChatRequest.dropped`);
# a block's or a tool's other fields (a tool's input_examples, an image's transformations…) are refused.
DROPPED_MARKS = ("cache_control", "citations", "eager_input_streaming")
DROPPED_TOOL_FIELDS = ("cache_control", "eager_input_streaming")

# What becomes of the common model's fields when written to Anthropic.
WRITE_FIELDS: dict[str, tuple[Handling, str]] = {
    "max_tokens": ("translated", "4096 when the call gives none (Anthropic requires it)"),
    "reasoning_effort": ("translated", "thinking.budget_tokens from chat.EFFORT_BUDGET (at least 1024)"),
    "thinking_budget": ("translated", "thinking enabled (at least 1024) or disabled (0)"),
    "output": ("translated", "json_schema → output_config.format (GA, no beta header); plain JSON mode is refused"),
    "tool_choice": ("translated", "required → any; forcing a tool while thinking is refused"),
    "temperature": ("translated", "0 to 1, else refused; dropped while thinking unless 1"),
    "top_p": ("translated", "dropped while thinking if below 0.95"),
    "top_k": ("translated", "dropped while thinking"),
    "messages": ("translated", "images by https URL or inline JPEG/PNG/GIF/WebP; other images are refused"),
    "n": ("refused", "above 1: Anthropic returns one answer"),
    "logprobs": ("refused", "Anthropic returns no log probabilities"),
    "top_logprobs": ("refused", "Anthropic returns no log probabilities"),
    "seed": ("dropped", "Anthropic has none"),
    "presence_penalty": ("dropped", "Anthropic has none"),
    "frequency_penalty": ("dropped", "Anthropic has none"),
    "include_thoughts": ("dropped", "when false: Anthropic shows the thinking it is asked for"),
    "thinking without signature": ("dropped", "another provider's reasoning in the history: Anthropic needs its own"),
    "thinking signed by another provider": ("dropped", "its signature (or redacted data) is valid there only"),
}
