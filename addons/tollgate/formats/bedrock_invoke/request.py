"""What an InvokeModel body asks, read at classification: its messages, system prompt, tools, the
most tokens it may answer with and how many answers, in whichever model family's format it is; the
tier and latency InvokeModel asks for in its headers; and the request a CountTokens call counts."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from tollgate.formats.bedrock_family import answers, family_tools
from tollgate.formats.bodies.exact import Unreadable, count, largest, request_int
from tollgate.formats.bodies.json_codec import json_object, read_request_json
from tollgate.formats.request_facts import RequestFacts

# How a call asks to run in InvokeModel's headers: its service tier (`priority`, `default`, `flex`,
# `reserved`) and its latency (`standard`, `optimized`: a faster version of the model, at a higher
# price), which the audit and the policy call its speed. Its answer names them in the same headers.
SERVICE_TIER_HEADER = "X-Amzn-Bedrock-Service-Tier"
LATENCY_HEADER = "X-Amzn-Bedrock-PerformanceConfig-Latency"
_NAME = re.compile(rb"[A-Za-z0-9_-]+")


def is_claude(model: str) -> bool:
    """A Claude model id, inference profile or ARN (`anthropic.claude-…`, `us.anthropic.claude-…`)."""
    return "anthropic.claude" in model


def read_facts(data: dict[str, Any], facts: RequestFacts) -> None:
    """InvokeModel bodies are the model family's own format: Claude, Nova, Titan, Llama, Mistral, …"""
    messages = data.get("messages")
    facts.message_count = count(messages)
    if facts.message_count is None and isinstance(data.get("inputText") or data.get("prompt"), str):
        facts.message_count = 1
    facts.has_system = bool(data.get("system")) or (
        isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "system" for m in messages)
    )
    family_tools(data, facts)
    inference = json_object(data.get("inferenceConfig"))
    titan = json_object(data.get("textGenerationConfig"))
    facts.max_tokens = largest(
        request_int(data.get("max_tokens"), "max_tokens"),
        request_int(data.get("max_completion_tokens"), "max_completion_tokens"),  # the OpenAI format's
        request_int(data.get("maxTokens"), "maxTokens"),  # AI21 Jurassic's
        request_int(inference.get("max_new_tokens"), "inferenceConfig.max_new_tokens"),
        request_int(inference.get("maxTokens"), "inferenceConfig.maxTokens"),
        request_int(titan.get("maxTokenCount"), "textGenerationConfig.maxTokenCount"),
        request_int(data.get("max_gen_len"), "max_gen_len"),
    )
    facts.answers = answers(data)


def counted_request(data: dict[str, Any]) -> dict[str, Any]:
    """The request a CountTokens call counts: a Converse body, or an InvokeModel body as a string."""
    given = data.get("input")
    given = given if isinstance(given, dict) else {}
    if isinstance(given.get("converse"), dict):
        return given["converse"]
    invoke = given.get("invokeModel")
    if isinstance(invoke, dict) and isinstance(invoke.get("body"), str):
        # botocore sends the counted InvokeModel body base64-encoded (a blob in the API model). It is
        # read as a request's body is: UTF-8 JSON, exactly, or refused.
        try:
            body = base64.b64decode(invoke["body"], validate=True)
        except ValueError:
            body = invoke["body"].encode()
        return read_request_json(body) or {}
    return {}


def header_name(headers: Mapping[bytes, bytes], header: str, body: str | None) -> str | None:
    """The name a header gives, where the body (`body`) gives none or the same; as the body has it
    without the header."""
    raw = headers.get(header.lower().encode())
    if raw is None:
        return body
    if not _NAME.fullmatch(raw):  # a header sent twice is joined with a comma
        raise Unreadable(f"{header} is not one name")
    value = raw.decode("ascii")
    if body not in (None, value):
        raise Unreadable(f"{header} differs from the body")
    return value
