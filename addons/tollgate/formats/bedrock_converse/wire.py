"""Bedrock's Converse as a wire format (`formats/wire.py`): Converse, ConverseStream and CountTokens,
and the runtime's other JSON operations (ApplyGuardrail), whose errors are AWS's."""

from __future__ import annotations

from tollgate.formats import BEDROCK_CONVERSE, bedrock_converse
from tollgate.formats.bedrock_converse.answer import answer_usage, counted_usage
from tollgate.formats.bedrock_converse.attachments import MARKERS, attachments, runs
from tollgate.formats.bedrock_converse.errors import refusal
from tollgate.formats.bedrock_converse.stream import EventStreamReader
from tollgate.formats.bedrock_converse.turns import TURNS
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader
from tollgate.formats.wire import Headers, WireFormat, conversation_at

# The operations whose body holds a conversation.
_CONVERSATIONS = frozenset(("converse", "converse-stream"))


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    data = parse_json(body) or {}
    if classification.endpoint == "converse":
        return answer_usage(data)
    if classification.endpoint == "count-tokens":
        return counted_usage(data)
    return Usage()


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    return EventStreamReader(invoke=False) if is_aws_event_stream(headers) else None


def is_aws_event_stream(headers: Headers) -> bool:
    return "amazon.eventstream" in headers.get("content-type", "")


WIRE = WireFormat(
    BEDROCK_CONVERSE,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    chat=bedrock_converse.BEDROCK_CONVERSE,
    turns=TURNS,
    conversation=conversation_at(_CONVERSATIONS, BEDROCK_CONVERSE),
    attachments=attachments,
    attachment_markers=MARKERS,
    text_runs=runs,
)
