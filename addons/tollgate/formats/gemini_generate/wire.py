"""The Gemini API's generateContent as a wire format (`formats/wire.py`): every call to the Gemini
API's own paths and to Vertex AI's Google models, whose answers, streams and errors are Google's."""

from __future__ import annotations

from tollgate.formats import GEMINI_GENERATE, gemini_generate
from tollgate.formats.gemini_generate.answer import counted_usage, usage_of
from tollgate.formats.gemini_generate.attachments import MARKERS, attachments, runs
from tollgate.formats.gemini_generate.errors import refusal
from tollgate.formats.gemini_generate.stream import GenerateArrayReader, GenerateStreamReader
from tollgate.formats.gemini_generate.turns import TURNS
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, is_event_stream
from tollgate.formats.wire import Headers, WireFormat, conversation_at

STREAM = "streamGenerateContent"
# The methods whose body holds a conversation.
_CONVERSATIONS = frozenset(("generateContent", STREAM))


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    return counted_usage(body) if classification.endpoint == "countTokens" else usage_of(body)


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    """Server-sent events (`alt=sse`), else a stream's JSON array."""
    if is_event_stream(headers):
        return GenerateStreamReader()
    return GenerateArrayReader() if classification.endpoint == STREAM else None


WIRE = WireFormat(
    GEMINI_GENERATE,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    chat=gemini_generate.GEMINI_GENERATE,
    turns=TURNS,
    conversation=conversation_at(_CONVERSATIONS, GEMINI_GENERATE),
    attachments=attachments,
    attachment_markers=MARKERS,
    text_runs=runs,
)
