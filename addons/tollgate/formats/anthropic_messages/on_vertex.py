"""Claude on Vertex AI's rawPredict: the Messages format, but the model named in the path and the
API version in the body; the answers and streams are Anthropic's own, the platform's errors
Google's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tollgate import formats
from tollgate.formats import gemini_generate
from tollgate.formats.anthropic_messages import ANTHROPIC_MESSAGES
from tollgate.formats.anthropic_messages.errors import read_error as read_messages_error
from tollgate.formats.anthropic_messages.write_request import write_request as write_messages_request
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.chat import ChatError, ChatRequest

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
# Claude's methods on Vertex AI: a Messages body (without `model`, which the path names), whole or
# streamed; and its token count, at models/count-tokens:rawPredict (the body names the model).
CALLS = ("rawPredict", "streamRawPredict")
COUNT = "count-tokens"


def raw_predict_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body as rawPredict takes it (`stream` stays: streamRawPredict reads it too)."""
    out = {k: v for k, v in body.items() if k != "model"}
    out["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
    return out


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    body, headers = write_messages_request(request)
    return raw_predict_body(body), headers


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    """Claude's own errors come in Anthropic's shape, Vertex AI's (authentication, quota) in Google's."""
    data = parse_json(body)
    if data is not None and data.get("type") == "error":
        return read_messages_error(status, headers, body)
    return gemini_generate.read_error(status, headers, body)


CLAUDE_ON_VERTEX = replace(
    ANTHROPIC_MESSAGES,
    name=formats.CLAUDE_ON_VERTEX,
    write_request=write_request,
    read_error=read_error,
)
