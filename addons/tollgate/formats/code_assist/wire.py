"""Code Assist's envelope as a wire format (`formats/wire.py`): its usage and streams read through
the envelope by Gemini's readers, its refusals in Google's error shape."""

from __future__ import annotations

from tollgate.formats import CODE_ASSIST
from tollgate.formats.code_assist.envelope import EnvelopeStreamReader, text_runs
from tollgate.formats.code_assist.envelope import usage as envelope_usage
from tollgate.formats.gemini_generate.attachments import MARKERS, attachments
from tollgate.formats.gemini_generate.errors import refusal
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, is_event_stream
from tollgate.formats.wire import Headers, WireFormat


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    if classification.service:
        return Usage()  # a service call reports no tokens
    return envelope_usage(classification.endpoint, body)


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    return EnvelopeStreamReader() if is_event_stream(headers) and not classification.service else None


WIRE = WireFormat(
    CODE_ASSIST,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    attachments=attachments,  # a walk of the whole body: the envelope's request within it
    attachment_markers=MARKERS,
    text_runs=text_runs,
)
