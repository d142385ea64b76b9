"""The usage of an OpenAI-format answer, whichever endpoint gave it: a Responses answer's (a compacted
conversation's too), else one in Chat Completions' shape (chat, legacy completions, embeddings);
read whole or as it streams."""

from __future__ import annotations

from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.openai_chat import ChatStreamReader, answer_usage
from tollgate.formats.openai_responses import COMPACT, RESPONSES, ResponsesStreamReader, response_usage
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, is_event_stream
from tollgate.formats.wire import Headers

CHAT = "chat.completions"
# The endpoints whose answers count their usage as a Responses answer does (`usage.input_tokens`, …).
IN_RESPONSES_USAGE = frozenset((RESPONSES, COMPACT))


def usage_of(endpoint: str | None, body: bytes | None) -> Usage:
    """Token usage and finish reason from a non-streamed OpenAI-format response."""
    data = parse_json(body)
    if data is None:
        return Usage()
    return response_usage(data) if endpoint in IN_RESPONSES_USAGE else answer_usage(data, endpoint)


def stream_reader(endpoint: str | None) -> UsageReader:
    return ResponsesStreamReader() if endpoint == RESPONSES else ChatStreamReader()


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    return usage_of(classification.endpoint, body)


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    return stream_reader(classification.endpoint) if is_event_stream(headers) else None
