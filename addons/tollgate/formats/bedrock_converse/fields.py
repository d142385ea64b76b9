"""What becomes of each field of a Converse request, and of each part of the common chat model
that Converse cannot carry as is (for the docs; the readers and writers follow them); the request's
top-level fields as the reader sorts them, and the fields that name a call's tier and latency."""

from __future__ import annotations

from typing import Literal

from tollgate import formats

NAME = formats.BEDROCK_CONVERSE
EVENT_STREAM = "application/vnd.amazon.eventstream"

Treatment = Literal["translated", "dropped", "refused"]

# What becomes of each field of a Converse request, for the docs. "dropped": read, not carried,
# named in `ChatRequest.dropped`; "refused": the call is Untranslatable.
REQUEST_FIELDS: dict[str, Treatment] = {
    "messages[].role": "translated",
    "messages[].content[].text": "translated",
    "messages[].content[].image (source.bytes)": "translated",
    "messages[].content[].image (source.s3Location)": "refused",
    "messages[].content[].toolUse": "translated",
    "messages[].content[].toolResult (text, json, image; status)": "translated",
    "messages[].content[].toolResult.content[] (document, video, searchResult)": "refused",
    "messages[].content[].reasoningContent": "translated",
    "messages[].content[].cachePoint": "dropped",
    "messages[].content[] (document, video, audio, guardContent, citationsContent, searchResult, "
    "toolAddition, toolRemoval)": "refused",
    "system[].text": "translated",
    "system[].cachePoint": "dropped",
    "system[].guardContent": "refused",
    "inferenceConfig (maxTokens, temperature, topP, stopSequences)": "translated",
    "toolConfig.tools[].toolSpec": "translated",
    "toolConfig.tools[].cachePoint": "dropped",
    "toolConfig.tools[].systemTool": "refused",
    "toolConfig.toolChoice (auto, any, tool)": "translated",
    "additionalModelRequestFields (top_k, topK, inferenceConfig.topK)": "translated",
    "additionalModelRequestFields (thinking, reasoning_config, reasoningConfig, reasoning_effort)": "translated",
    "additionalModelRequestFields (any other key)": "refused",
    "outputConfig.textFormat (json_schema)": "translated",
    "outputConfig.effort": "refused",
    "additionalModelResponseFieldPaths": "dropped",
    "guardrailConfig": "refused",
    "promptVariables": "refused",
    "requestMetadata": "dropped",
    "performanceConfig": "dropped",
    "serviceTier": "dropped",
}

# What `write_request` does with each part of the common model that Converse cannot carry as is.
WRITTEN_FIELDS: dict[str, Treatment] = {
    "top_k": "translated",  # additionalModelRequestFields.top_k
    "thinking_budget, reasoning_effort": "translated",  # additionalModelRequestFields.thinking
    "output (json_schema)": "translated",  # outputConfig.textFormat
    "output (json)": "refused",
    "image by url": "refused",
    "image other than png, jpeg, gif, webp": "refused",
    "tool_choice none, with tool calls or results in the history": "refused",
    "n > 1": "refused",
    "logprobs, top_logprobs": "refused",
    "seed, presence_penalty, frequency_penalty": "dropped",
    "parallel_tool_calls, user": "dropped",
    "thinking without a signature (history)": "dropped",
    "thinking signed by another provider (history)": "dropped",
}

TOP_LEVEL = frozenset(
    (
        "messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields",
        "additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables", "requestMetadata",
        "performanceConfig", "serviceTier", "outputConfig",
    )
)  # fmt: skip
DROPPED_TOP_LEVEL = ("additionalModelResponseFieldPaths", "requestMetadata", "performanceConfig", "serviceTier")
REFUSED_TOP_LEVEL = {
    "guardrailConfig": "guardrailConfig cannot be translated: the target would not apply the guardrail",
    "promptVariables": "promptVariables cannot be translated: the prompt lives in Bedrock's Prompt management",
}
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")

# How a call asks to run and ran, in Converse's bodies (InvokeModel's say it in headers): its service
# tier (`priority`, `default`, `flex`, `reserved`) and its latency (`standard`, `optimized`: a faster
# version of the model, at a higher price), which the audit and the policy call its speed; each as
# `{key: {field: name}}`.
SERVICE_TIER_FIELD = ("serviceTier", "type")
LATENCY_FIELD = ("performanceConfig", "latency")
