"""Anthropic's Messages API as a wire format (`formats/wire.py`): every call to Anthropic's own API
but its OpenAI-compatible one, and Claude's calls on Vertex AI's rawPredict (its answers are
Anthropic's own); and Claude's body on rawPredict as a route's target (`ON_VERTEX`)."""

from __future__ import annotations

from tollgate.formats import ANTHROPIC_MESSAGES, CLAUDE_ON_VERTEX, anthropic_messages
from tollgate.formats.anthropic_messages import on_vertex
from tollgate.formats.anthropic_messages.answer import messages_usage
from tollgate.formats.anthropic_messages.attachments import MARKERS, attachments, runs
from tollgate.formats.anthropic_messages.errors import refusal
from tollgate.formats.anthropic_messages.stream import MessagesStreamReader
from tollgate.formats.anthropic_messages.turns import TURNS
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, is_event_stream
from tollgate.formats.wire import Headers, WireFormat, conversation_at

# Where a call holds a conversation: Anthropic's Messages endpoint, Claude's calls on Vertex AI.
_CONVERSATIONS = frozenset(("messages", *on_vertex.CALLS))
# Where an answer is a count of tokens: Anthropic's, and Claude's on Vertex AI.
_COUNTS = frozenset(("messages.count_tokens", on_vertex.COUNT))


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    return messages_usage(body, counted=classification.endpoint in _COUNTS)


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    return MessagesStreamReader() if is_event_stream(headers) else None


WIRE = WireFormat(
    ANTHROPIC_MESSAGES,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    chat=anthropic_messages.ANTHROPIC_MESSAGES,
    turns=TURNS,
    conversation=conversation_at(_CONVERSATIONS, ANTHROPIC_MESSAGES),
    # Its betas: a route to Claude elsewhere carries them on (Bedrock's body, Vertex AI's header).
    caller_headers=(b"anthropic-beta",),
    attachments=attachments,
    attachment_markers=MARKERS,
    text_runs=runs,
)
# Claude's Messages body on Vertex AI's rawPredict, as a route writes it.
ON_VERTEX = WireFormat(CLAUDE_ON_VERTEX, chat=on_vertex.CLAUDE_ON_VERTEX)
