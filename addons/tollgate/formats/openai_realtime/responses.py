"""A Realtime session's responses, each a call of its own for the limits: the `response.create`
a client sends (read for its output bound), the server events that begin a response, end it with
its usage, or refuse a client event, and Tollgate's refusal as the session's `error` event.

Most messages carry audio: a client message is parsed only where it may ask for a response (it
names `response.create`, or holds an escape that could spell it), a server event only where it
names one of the events read here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tollgate.formats.bodies.exact import Unreadable, request_int, request_text
from tollgate.formats.bodies.json_codec import parse_json, read_request_json
from tollgate.formats.openai_realtime.events import done_usage
from tollgate.formats.request_facts import RequestFacts
from tollgate.formats.usage import Usage

RESPONSE_CREATE = "response.create"
_NAMES_CREATE = b'"response.create"'
_ESCAPE = b"\\u"  # a JSON string may spell any letter as an escape: such a message is read whole
_SERVER_EVENT = re.compile(rb'"type"\s*:\s*"(?:response\.(?:created|done)|error)"')
# A response's output bound: the GA API's `max_output_tokens`, the beta's `max_response_output_tokens`;
# either may be "inf" (the model's own maximum).
_BOUNDS = ("max_output_tokens", "max_response_output_tokens")


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    """A client's `response.create`: the facts its call is reserved by, and its `event_id` (which
    the server's `error` event names when it refuses it)."""

    facts: RequestFacts
    event_id: str | None


def response_create(message: bytes) -> ResponseCreate | None:
    """The `response.create` a client message is, or None for any other message. `Unreadable`
    where the message may ask for a response and cannot be read exactly."""
    if _NAMES_CREATE not in message and _ESCAPE not in message:
        return None
    event = read_request_json(message)
    if event is None or event.get("type") != RESPONSE_CREATE:
        return None
    response = event.get("response")
    if response is None:
        response = {}
    if not isinstance(response, dict):
        raise Unreadable("a response.create's 'response' is not an object")
    facts = RequestFacts(stream=True, input_held=True)  # the session's conversation is the input
    bounds = [_bound(response.get(name), f"response.{name}") for name in _BOUNDS if name in response]
    given = [b for b in bounds if b is not None]
    facts.max_tokens = min(given) if given else None
    return ResponseCreate(facts, request_text(event.get("event_id"), "event_id"))


def _bound(value: Any, name: str) -> int | None:
    if value == "inf":
        return None
    return request_int(value, name)


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """What a server event tells of the session's responses: one began (`created`), one ended with
    its usage (`done`), or a client event was refused (`error`, naming the client's `event_id`)."""

    kind: Literal["created", "done", "error"]
    response_id: str | None = None
    usage: Usage | None = None
    event_id: str | None = None  # an error's: the client event it refuses
    error: str | None = None  # an error's code, never its message


def server_event(message: bytes) -> ServerEvent | None:
    """The event a server message is, if it is one of those that begin or end a response or refuse a
    client event."""
    if not _SERVER_EVENT.search(message):
        return None
    event = parse_json(message)
    kind = event.get("type") if event is not None else None
    if event is None or not isinstance(kind, str):
        return None
    if kind == "error":
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        code, refused = error.get("code") or error.get("type"), error.get("event_id")
        return ServerEvent(
            "error",
            event_id=refused if isinstance(refused, str) else None,
            error=code if isinstance(code, str) else "unknown",
        )
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        return None
    if kind == "response.created":
        return ServerEvent("created", response["id"])
    if kind == "response.done":
        return ServerEvent("done", response["id"], done_usage(response))
    return None


def cancel(response_id: str) -> dict[str, Any]:
    """The client event that cancels a response under way."""
    return {"type": "response.cancel", "response_id": response_id}


def realtime_error(body: dict[str, Any], headers: Mapping[str, str], event_id: str | None) -> dict[str, Any]:
    """Tollgate's refusal of a response as the session's `error` event: the error object it would
    have had over HTTP, with the client event it refuses and the refusal's headers inside it."""
    error = body.get("error")
    error = dict(error) if isinstance(error, dict) else {"message": str(error), "type": "server_error"}
    error["event_id"] = event_id
    error["headers"] = dict(headers)
    return {"type": "error", "error": error}
