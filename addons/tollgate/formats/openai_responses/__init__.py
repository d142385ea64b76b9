"""OpenAI's Responses API (POST /v1/responses, and its WebSocket mode): the facts classification
reads from a request (`request`), the usage of an answer (`answer`) and of a stream (`stream`: its
usage tail), and the messages and events of its WebSocket mode (`socket`, imported from there: it
names the OpenAI wire format, which the providers' registry holds, and the providers import this
package). Tollgate does not translate it: a route to another format takes Chat Completions."""

from __future__ import annotations

from tollgate.formats.openai_responses.answer import response_usage
from tollgate.formats.openai_responses.request import COMPACT, RESPONSES, read_facts, read_tools
from tollgate.formats.openai_responses.stream import ResponsesStreamReader

__all__ = ["COMPACT", "RESPONSES", "ResponsesStreamReader", "read_facts", "read_tools", "response_usage"]
