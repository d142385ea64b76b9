"""Bedrock's InvokeModel as a wire format (`formats/wire.py`), each model family's own body, whose
usage InvokeModel reports in its headers and its streams' invocation metrics; and Bedrock's agent
runtime and control plane's jobs (`AGENTS`), whose only usage is in an agent's traces. Their errors
are AWS's (`bedrock_converse`)."""

from __future__ import annotations

from tollgate.formats import ANTHROPIC_MESSAGES, BEDROCK_AGENTS, BEDROCK_INVOKE
from tollgate.formats.anthropic_messages import usage_from_object
from tollgate.formats.bedrock_converse.errors import refusal
from tollgate.formats.bedrock_converse.stream import EventStreamReader
from tollgate.formats.bedrock_converse.wire import is_aws_event_stream
from tollgate.formats.bedrock_family import invoke_finish_reason
from tollgate.formats.bedrock_invoke.answer import header_usage
from tollgate.formats.bedrock_invoke.attachments import MARKERS, attachments, runs
from tollgate.formats.bedrock_invoke.request import is_claude
from tollgate.formats.bedrock_invoke.stream import AgentTraceReader
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import NoUsage, UsageReader, add_totals
from tollgate.formats.wire import Headers, WireFormat

INVOKE, INVOKE_STREAM = "invoke", "invoke-with-response-stream"


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    """InvokeModel's headers' usage, else (Claude's own body) its body's; the stop reason as the
    family names it."""
    if classification.endpoint != INVOKE:
        return Usage()
    data = parse_json(body) or {}
    u = header_usage(headers)
    if u.input_tokens is None:
        u = usage_from_object(data.get("usage"))  # Claude's own body usage
    u.finish_reason = invoke_finish_reason(data)
    return add_totals(u)


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    if not is_aws_event_stream(headers):
        return None
    return EventStreamReader(invoke=classification.endpoint == INVOKE_STREAM)


def conversation(classification: Classification) -> str | None:
    """Claude's own Messages body holds a conversation as Anthropic's does; no other family's is read."""
    if classification.endpoint in (INVOKE, INVOKE_STREAM) and is_claude(classification.model or ""):
        return ANTHROPIC_MESSAGES
    return None


WIRE = WireFormat(
    BEDROCK_INVOKE,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    conversation=conversation,
    attachments=attachments,
    attachment_markers=MARKERS,
    text_runs=runs,
)

# The agent runtime's operations that run an agent report its model calls' usage in their traces
# (when asked to: `enableTrace`); no other of these APIs reports any.
_AGENT_RUNS = frozenset(("invoke-agent", "invoke-inline-agent"))


def agent_usage(classification: Classification, headers: Headers) -> UsageReader:
    return AgentTraceReader() if classification.endpoint in _AGENT_RUNS else NoUsage()


AGENTS = WireFormat(BEDROCK_AGENTS, stream_reader=agent_usage, refusal=refusal)
