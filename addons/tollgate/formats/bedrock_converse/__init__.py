"""AWS Bedrock's Converse API (POST /model/{modelId}/converse and /converse-stream), read and
written through the common chat model, and read at classification and for usage.

The model id and the stream flag are in the path: `read_request` leaves `model` None and the caller
sets `ChatRequest.stream`; `write_request` puts neither in the body. Bedrock counts cache reads and
writes apart from `inputTokens` (as `bedrock_family.prompt_usage` reads them) and its
`totalTokens` counts every token, cache among them: usage is converted both ways accordingly.
The streams are AWS event streams (application/vnd.amazon.eventstream), framed by
`framing.EventStreamFramer` and written here frame by frame as boto3's `converse_stream` reads them.

`fields`: what becomes of each field; `read_request`: a request read exactly, and its facts;
`write_request`; `answer`: a whole answer read and written, and its usage; `stream`: the fast usage
tail and the full event reader; `stream_writer`; `errors`. What the model family's own body holds
(`additionalModelRequestFields`) is read by `bedrock_family`.
"""

from tollgate.formats.bedrock_converse.answer import (
    answer_usage,
    converse_usage,
    counted_usage,
    ran_as,
    read_response,
    read_usage,
    write_response,
    write_usage,
)
from tollgate.formats.bedrock_converse.errors import ERROR_TYPES, error_type, read_error, write_error
from tollgate.formats.bedrock_converse.fields import (
    EVENT_STREAM,
    LATENCY_FIELD,
    NAME,
    REQUEST_FIELDS,
    SERVICE_TIER_FIELD,
    WRITTEN_FIELDS,
)
from tollgate.formats.bedrock_converse.read_request import read_facts, read_request
from tollgate.formats.bedrock_converse.stream import ConverseStreamReader, EventStreamReader
from tollgate.formats.bedrock_converse.stream_writer import ConverseStreamWriter
from tollgate.formats.bedrock_converse.write_request import write_request
from tollgate.formats.chat import ChatFormat

BEDROCK_CONVERSE = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=ConverseStreamReader,
    stream_writer=ConverseStreamWriter,
    read_error=read_error,
    write_error=write_error,
)

__all__ = [
    "BEDROCK_CONVERSE",
    "ERROR_TYPES",
    "EVENT_STREAM",
    "LATENCY_FIELD",
    "NAME",
    "REQUEST_FIELDS",
    "SERVICE_TIER_FIELD",
    "WRITTEN_FIELDS",
    "ConverseStreamReader",
    "ConverseStreamWriter",
    "EventStreamReader",
    "answer_usage",
    "converse_usage",
    "counted_usage",
    "error_type",
    "ran_as",
    "read_error",
    "read_facts",
    "read_request",
    "read_response",
    "read_usage",
    "write_error",
    "write_request",
    "write_response",
    "write_usage",
]
