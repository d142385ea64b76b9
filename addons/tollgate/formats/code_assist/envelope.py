"""Code Assist's envelope around Gemini's generateContent, as Gemini CLI writes it: a request
`{model, project, user_prompt_id, request: {contents, generationConfig, …}}` (countTokens:
`{request: {model: "models/…", contents}}`), an answer `{response: {candidates, usageMetadata, …},
traceId}` (each server-sent event one such answer), countTokens's `{totalTokens}`. What the
envelope wraps is read by Gemini's own readers."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.attachments import TextRuns
from tollgate.formats.bodies.exact import Unreadable, request_text
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.gemini_generate.answer import counted_usage, usage_from_object
from tollgate.formats.gemini_generate.attachments import runs
from tollgate.formats.gemini_generate.facts import read_facts
from tollgate.formats.gemini_generate.stream import GenerateStreamReader
from tollgate.formats.request_facts import RequestFacts
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import SSEReader

REQUEST = "request"
RESPONSE = "response"
COUNT_TOKENS = "countTokens"


def inner_request(data: dict[str, Any] | None) -> dict[str, Any]:
    """The Gemini request an envelope wraps; `Unreadable` where there is none."""
    inner = (data or {}).get(REQUEST)
    if not isinstance(inner, dict):
        raise Unreadable("the body's 'request' is not an object")
    return inner


def read_envelope(method: str, data: dict[str, Any] | None, facts: RequestFacts) -> tuple[str | None, str | None]:
    """A call's model and project, its wrapped request's facts set on `facts`. countTokens names its
    model inside the request (`models/…`) and no project."""
    inner = inner_request(data)
    assert data is not None
    if method == COUNT_TOKENS:
        model = request_text(inner.get("model"), "request.model")
        return (model.removeprefix("models/") if model else None), None
    read_facts(inner, facts)
    return request_text(data.get("model"), "model"), request_text(data.get("project"), "project")


def response_of(data: dict[str, Any] | None) -> dict[str, Any]:
    """The Gemini answer an envelope wraps (none: empty)."""
    inner = (data or {}).get(RESPONSE)
    return inner if isinstance(inner, dict) else {}


def usage(endpoint: str | None, body: bytes | None) -> Usage:
    """A whole answer's usage: the wrapped answer's, countTokens's count."""
    if endpoint == COUNT_TOKENS:
        return counted_usage(body)
    data = parse_json(body)
    return usage_from_object(response_of(data)) if data is not None else Usage()


class EnvelopeStreamReader(GenerateStreamReader):
    """streamGenerateContent's server-sent events, each an envelope: Gemini's usage tail, each event
    it parses unwrapped."""

    @staticmethod
    def data(block: bytes | None) -> dict[str, Any] | None:
        data = SSEReader.data(block)
        return None if data is None else response_of(data)


def text_runs(data: dict[str, Any]) -> TextRuns:
    """The wrapped request's runs of adjacent text parts, at their place in the envelope."""
    inner = data.get(REQUEST)
    if not isinstance(inner, dict):
        return []
    return [[((REQUEST, *path), text) for path, text in run] for run in runs(inner)]
