"""Anthropic's Messages API (POST /v1/messages), one home for the format: what a call's fields become
(`fields`), a call read exactly into the common chat model and the facts classification reads from it
(`read_request`), a call written (`write_request`), a whole answer and its usage (`answer`), the
stream readers, the audit's usage tail and the translation's event reader (`stream`), the stream
writer (`stream_writer`) and errors (`errors`). Claude speaks it on other platforms too: on Vertex
AI's rawPredict (`on_vertex`) and Bedrock's InvokeModel (`on_bedrock`), where a Messages call goes
nearly as it came."""

from tollgate.formats.anthropic_messages.answer import (
    messages_usage,
    read_response,
    usage_from_object,
    write_response,
)
from tollgate.formats.anthropic_messages.errors import read_error, write_error
from tollgate.formats.anthropic_messages.fields import NAME, REQUEST_FIELDS, WRITE_FIELDS
from tollgate.formats.anthropic_messages.on_bedrock import (
    InvokeStreamUnwrapper,
    bedrock_invoke_body,
    betas_of_header,
)
from tollgate.formats.anthropic_messages.read_request import (
    loads_skills,
    mcp_servers,
    read_completion_facts,
    read_facts,
)
from tollgate.formats.anthropic_messages.read_request import read_request as read_messages_request
from tollgate.formats.anthropic_messages.stream import MessagesEventReader, MessagesStreamReader
from tollgate.formats.anthropic_messages.stream_writer import MessagesStreamWriter
from tollgate.formats.anthropic_messages.write_request import write_request as write_messages_request
from tollgate.formats.chat import ChatFormat

ANTHROPIC_MESSAGES = ChatFormat(
    name=NAME,
    read_request=read_messages_request,
    write_request=write_messages_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=MessagesEventReader,
    stream_writer=MessagesStreamWriter,
    read_error=read_error,
    write_error=write_error,
)

__all__ = [
    "ANTHROPIC_MESSAGES",
    "NAME",
    "REQUEST_FIELDS",
    "WRITE_FIELDS",
    "InvokeStreamUnwrapper",
    "MessagesStreamReader",
    "bedrock_invoke_body",
    "betas_of_header",
    "loads_skills",
    "mcp_servers",
    "messages_usage",
    "read_completion_facts",
    "read_facts",
    "usage_from_object",
]
