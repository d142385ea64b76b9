"""OpenAI's Chat Completions (POST /v1/chat/completions), the format of OpenAI's SDKs and of most
providers' OpenAI-compatible endpoints: its field tables (`fields`), its requests read exactly into
the common chat model and written out of it, with the facts classification reads (`read_request`,
`write_request`), its answers and their usage (`answer`), its streams (`stream`: the usage tail and
the full event reader; `stream_writer`) and its errors (`errors`).

Requests are read exactly: what no table names is refused. Answers, streams and errors from an
upstream are read leniently."""

from __future__ import annotations

from tollgate import formats
from tollgate.formats.chat import ChatFormat
from tollgate.formats.openai_chat.answer import answer_usage, nested, read_response, service_tier, write_response
from tollgate.formats.openai_chat.errors import read_error, write_error
from tollgate.formats.openai_chat.fields import REQUEST_FIELDS
from tollgate.formats.openai_chat.read_request import (
    body_facts,
    has_system_message,
    read_facts,
    read_request,
)
from tollgate.formats.openai_chat.stream import ChatEventReader, ChatStreamReader
from tollgate.formats.openai_chat.stream_writer import ChatStreamWriter
from tollgate.formats.openai_chat.write_request import ask_for_usage, write_request

__all__ = [
    "OPENAI_CHAT",
    "REQUEST_FIELDS",
    "ChatStreamReader",
    "answer_usage",
    "ask_for_usage",
    "body_facts",
    "has_system_message",
    "nested",
    "read_facts",
    "service_tier",
]

NAME = formats.OPENAI_CHAT

OPENAI_CHAT = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=ChatEventReader,
    stream_writer=ChatStreamWriter,
    read_error=read_error,
    write_error=write_error,
)
