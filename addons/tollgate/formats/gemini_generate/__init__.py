"""The Gemini API's generateContent format (POST /v1beta/models/{model}:generateContent, and
:streamGenerateContent, as server-sent events with alt=sse or else as a JSON array written element
by element), which Vertex AI's Google models speak too: the model is in the path, not the body, and
every field reads under its camelCase or snake_case name (camelCase is written).

One module per concern: `fields` (what each request field becomes), `facts` (the request facts
classification reads), `read_request` and `write_request` (a body read exactly into the common chat
model, and written from it), `thoughts` (thought signatures), `answer` (an answer read and written,
and its usage), `errors`, `stream` (the fast usage tail the audit reads and the full event reader
a translation reads) and `stream_writer`."""

from tollgate.formats.chat import ChatFormat
from tollgate.formats.gemini_generate.answer import read_response, usage_from_object, usage_of, write_response
from tollgate.formats.gemini_generate.errors import read_error, write_error
from tollgate.formats.gemini_generate.facts import mcp_servers, one_of, read_facts
from tollgate.formats.gemini_generate.fields import FIELDS, NAME
from tollgate.formats.gemini_generate.read_request import json_schema_of_openapi, read_request
from tollgate.formats.gemini_generate.stream import GeminiStreamReader, GenerateArrayReader, GenerateStreamReader
from tollgate.formats.gemini_generate.stream_writer import GeminiStreamWriter, array_stream_writer
from tollgate.formats.gemini_generate.thoughts import SKIP_SIGNATURE
from tollgate.formats.gemini_generate.write_request import write_request

GEMINI_GENERATE = ChatFormat(
    name=NAME,
    read_request=read_request,
    write_request=write_request,
    read_response=read_response,
    write_response=write_response,
    stream_reader=GeminiStreamReader,
    stream_writer=GeminiStreamWriter,
    read_error=read_error,
    write_error=write_error,
)

__all__ = [
    "FIELDS",
    "GEMINI_GENERATE",
    "NAME",
    "SKIP_SIGNATURE",
    "GenerateArrayReader",
    "GenerateStreamReader",
    "array_stream_writer",
    "json_schema_of_openapi",
    "mcp_servers",
    "one_of",
    "read_error",
    "read_facts",
    "usage_from_object",
    "usage_of",
]
