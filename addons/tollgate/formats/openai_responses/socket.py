"""The Responses API's WebSocket mode: the messages a client sends on it (each `response.create` a
call, read as its HTTP body would be) and the server events that begin and end a response."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tollgate.formats import OPENAI_API
from tollgate.formats.bodies.exact import UNREAD_MODEL, Unreadable, request_flag, request_model, request_text
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.openai_chat import body_facts, nested
from tollgate.formats.openai_responses.answer import response_usage
from tollgate.formats.openai_responses.request import RESPONSES, read_facts
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage

# The Responses API's WebSocket mode (`wss://api.openai.com/v1/responses`): each `response.create`
# message is a call, read as a POST /v1/responses body is (the body's fields at its top level), with
# `stream_id` (the lane it runs in, for responses run side by side) and `generate` (false: a warm-up
# that writes no answer). Codex acknowledges each answer it has read with `response.processed`,
# which asks for nothing. Every other message (`response.steer`, `response.inject`, …) may start a
# response no `response.create` asked for: refused.
RESPONSE_CREATE = "response.create"
SOCKET_ACKNOWLEDGEMENTS = frozenset(("response.processed",))


def socket_message_type(data: dict[str, Any]) -> str:
    kind = data.get("type")
    if type(kind) is not str:
        raise Unreadable("a message on the Responses WebSocket names no type")
    return kind


def classify_body(data: dict[str, Any]) -> Classification:
    """Model and request facts from a Responses body (its JSON object)."""
    facts = body_facts(data)
    read_facts(data, facts)
    return Classification(RESPONSES, request_model(data), facts, OPENAI_API)


def classify_response_create(data: dict[str, Any]) -> Classification:
    """A `response.create` message, read as its body would be over HTTP; every answer over the
    WebSocket streams. `Unreadable` where it cannot be read exactly."""
    if "response" in data:  # the Realtime API's nesting: which fields the server reads is not known
        raise Unreadable("a response.create nests its fields under 'response'").at(RESPONSES)
    try:
        lane(data)
        generate = data.get("generate")
        generates = generate is None or request_flag(generate, "generate")
        classification = classify_body(data)
    except Unreadable as e:
        raise e.at(RESPONSES) from None
    facts = classification.facts
    facts.stream = True
    if not generates:
        facts.answers = 0  # a warm-up: the request's state prepared, no answer written
    if classification.model is None:
        classification.unread = UNREAD_MODEL  # from a stored prompt, or the previous response's
    return classification


def lane(data: dict[str, Any]) -> str | None:
    """The WebSocket lane (`stream_id`) a message or event belongs to; None for the default one."""
    return request_text(data.get("stream_id"), "stream_id")


@dataclass(frozen=True, slots=True)
class SocketEvent:
    """What a server event of the Responses WebSocket tells of a response: it began (`created`),
    ended with its usage (`done`: completed, incomplete or failed), or its request failed
    (`error`)."""

    kind: Literal["created", "done", "error"]
    lane: str | None
    response_id: str | None = None
    usage: Usage | None = None
    status: int | None = None  # an error's HTTP status
    error: str | None = None  # what went wrong, in a few words (a code, never a message)


# Before an event is parsed: only these few are, every delta passes on a byte search.
_SOCKET_EVENT = re.compile(rb'"type"\s*:\s*"(?:response\.(?:created|completed|incomplete|failed)|error)"')
_DONE_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))


def socket_event(message: bytes) -> SocketEvent | None:
    """What a server message of the Responses WebSocket tells, if it is one of the events that
    begin or end a response."""
    if not _SOCKET_EVENT.search(message):
        return None
    event = parse_json(message)
    kind = event.get("type") if event is not None else None
    if event is None or not isinstance(kind, str):
        return None
    where = event.get("stream_id")
    where = where if isinstance(where, str) else None
    if kind == "error":
        error = event.get("error")
        error = error if isinstance(error, dict) else event  # flat, as over SSE
        status = event.get("status")
        code = error.get("code") or error.get("type")
        return SocketEvent(
            "error",
            where,
            status=status if type(status) is int else None,
            error=code if isinstance(code, str) else "unknown",
        )
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        return None
    if kind == "response.created":
        return SocketEvent("created", where, response["id"])
    if kind not in _DONE_EVENTS:
        return None
    error = None
    if kind == "response.failed":
        code = nested(response, "error", "code")
        error = f"the response failed: {code if isinstance(code, str) else 'unknown'}"
    return SocketEvent("done", where, response["id"], response_usage(response), error=error)


def socket_error(status: int, body: dict[str, Any], headers: Mapping[str, str], where: str | None) -> dict[str, Any]:
    """Tollgate's refusal of a `response.create` as the Responses WebSocket's `error` event: the
    status and error object it would have had over HTTP, the headers inside it."""
    error = body.get("error")
    error = dict(error) if isinstance(error, dict) else {"message": str(error), "type": "server_error"}
    error["headers"] = dict(headers)
    event: dict[str, Any] = {"type": "error", "status": status, "error": error}
    if where is not None:
        event["stream_id"] = where
    return event
