"""Chat Completions as a wire format (`formats/wire.py`): a route's source or target, whose turns
`rollup:` cuts. A call to it is classified as OpenAI's API's (`openai_api`), every endpoint alike."""

from __future__ import annotations

from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.openai_chat import OPENAI_CHAT
from tollgate.formats.openai_chat.answer import answer_usage
from tollgate.formats.openai_chat.errors import refusal
from tollgate.formats.openai_chat.stream import ChatStreamReader
from tollgate.formats.openai_chat.turns import TURNS
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import UsageReader, is_event_stream
from tollgate.formats.wire import Headers, WireFormat


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    data = parse_json(body)
    return answer_usage(data, classification.endpoint) if data is not None else Usage()


def streamed_usage(classification: Classification, headers: Headers) -> UsageReader | None:
    return ChatStreamReader() if is_event_stream(headers) else None


WIRE = WireFormat(
    OPENAI_CHAT.name,
    usage=usage,
    stream_reader=streamed_usage,
    refusal=refusal,
    chat=OPENAI_CHAT,
    turns=TURNS,
    conversation=lambda classification: OPENAI_CHAT.name,
)
