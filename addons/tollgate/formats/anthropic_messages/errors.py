"""Anthropic's errors, `{"type": "error", "error": {"type", "message"}}`, read into the common
model's kinds and written from them (a stream's `error` event holds the same object), and
Tollgate's refusals (`refusal`) in that shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.chat import ChatError, ErrorKind
from tollgate.formats.refusals import KIND, Refusal, json_refusal

ERROR_TYPE_OF_KIND: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}
_KIND_OF_ERROR_TYPE: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "billing_error": "permission",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "too_large",
    "rate_limit_error": "rate_limit",
    "api_error": "server",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_of(body: dict[str, Any], status: int | None) -> ChatError:
    """An error body's kind and message; a stream's error event has no status but its type's."""
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    type_name = fields.str_or_none(error.get("type")) or ""
    if status is None:
        status = _STATUS_OF_ERROR_TYPE.get(type_name, 500)
    kind = _KIND_OF_ERROR_TYPE.get(type_name) or chat.kind_of_status(status)
    message = fields.str_or_none(error.get("message")) or f"Anthropic answered HTTP {status}"
    return ChatError(status, kind, message)


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    return error_of(parse_json(body) or {}, status)


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    body = {"type": "error", "error": {"type": ERROR_TYPE_OF_KIND[error.kind], "message": error.message}}
    return error.status, {"content-type": "application/json"}, encode_json(body)


# Each kind of Tollgate's refusals as Anthropic's error type.
REFUSAL_TYPES = {
    "authentication": "authentication_error",
    "permission": "permission_error",
    "server": "api_error",
    "signature": "authentication_error",
    "unavailable": "api_error",
    "timeout": "timeout_error",
    "invalid_request": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "quota": "rate_limit_error",
}


def refusal(reason: str, message: str) -> Refusal:
    return json_refusal(reason, {"type": "error", "error": {"type": REFUSAL_TYPES[KIND[reason]], "message": message}})
