"""OpenAI's errors, the shape of its whole API: an upstream's error read into a `ChatError`, one
written in OpenAI's shape, and Tollgate's refusals (`refusal`) in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.formats import fields
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.chat import STATUS_OF_KIND, ChatError, ErrorKind, kind_of_status
from tollgate.formats.refusals import BUDGET_EXCEEDED, KIND, RATE_LIMITED, UNAUTHENTICATED, Refusal, json_refusal

# Each error kind as OpenAI says it: the error's type and code.
ERROR_OF_KIND: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("not_found_error", None),
    "too_large": ("invalid_request_error", None),
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "server": ("server_error", None),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("timeout", None),
}
# Codes first (they say the most), then types; OpenAI's and compatible endpoints'.
KIND_OF_CODE: dict[str, ErrorKind] = {
    "invalid_api_key": "authentication",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "model_not_found": "not_found",
    "overloaded": "overloaded",
    "timeout": "timeout",
    "context_length_exceeded": "invalid_request",
}
KIND_OF_TYPE: dict[str, ErrorKind] = {
    "authentication_error": "authentication",
    "permission_error": "permission",
    "permission_denied": "permission",
    "not_found_error": "not_found",
    "requests": "rate_limit",
    "tokens": "rate_limit",
    "rate_limit_error": "rate_limit",
    "insufficient_quota": "rate_limit",
    "overloaded_error": "overloaded",
    "timeout": "timeout",
    "timeout_error": "timeout",
    "request_too_large": "too_large",
}
# Types so broad that the status says more (a 404 of type invalid_request_error is a not_found).
_BROAD_TYPES = ("invalid_request_error", "server_error", "api_error")


def error_of(error: Any, status: int | None) -> ChatError:
    """An error object (`{"message", "type", "code"}`) as a ChatError; a status from the HTTP answer,
    else the object's numeric code (compatible endpoints put it there), else the kind's."""
    given = error if isinstance(error, dict) else {}
    code, kind_name = given.get("code"), given.get("type")
    if status is None and type(code) is int and 400 <= code < 600:
        status = code
    kind: ErrorKind | None = KIND_OF_CODE.get(code) if isinstance(code, str) else None
    if kind is None and isinstance(kind_name, str) and kind_name not in _BROAD_TYPES:
        kind = KIND_OF_TYPE.get(kind_name)
    if kind is None:
        if status is not None:
            kind = kind_of_status(status)
        else:
            kind = "invalid_request" if kind_name == "invalid_request_error" else "server"
    message = fields.str_or_none(given.get("message")) or fields.str_or_none(error)
    if status is None:
        status = STATUS_OF_KIND[kind]
    return ChatError(status=status, kind=kind, message=message or f"the upstream answered HTTP {status}")


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    data = parse_json(body)
    if data is None:
        return ChatError(status=status, kind=kind_of_status(status), message=f"the upstream answered HTTP {status}")
    return error_of(data.get("error", data), status)


def error_body(error: ChatError) -> dict[str, Any]:
    kind, code = ERROR_OF_KIND.get(error.kind, ("server_error", None))
    return {"error": {"message": error.message, "type": kind, "param": None, "code": code}}


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    return error.status, {"content-type": "application/json"}, encode_json(error_body(error))


# ---------------------------------------------------------------------------------------------
# Tollgate's refusals, in OpenAI's shape (its API's whole, every compatible API's too)

# Each kind of refusal's error type, as OpenAI's API says it.
REFUSAL_TYPES = {
    "authentication": "invalid_request_error",
    "permission": "permission_denied",
    "server": "server_error",
    "signature": "server_error",
    "unavailable": "server_error",
    "timeout": "server_error",
    "invalid_request": "invalid_request_error",
    "rate_limit": "requests",
    "quota": "insufficient_quota",
}
# OpenAI's own codes where a reason has one; else the reason itself.
_REFUSAL_CODES = {
    UNAUTHENTICATED: "invalid_api_key",
    RATE_LIMITED: "rate_limit_exceeded",
    BUDGET_EXCEEDED: "insufficient_quota",
}


def refusal_body(reason: str, message: str) -> dict[str, Any]:
    code = _REFUSAL_CODES.get(reason, reason)
    return {"error": {"message": message, "type": REFUSAL_TYPES[KIND[reason]], "param": None, "code": code}}


def refusal(reason: str, message: str) -> Refusal:
    return json_refusal(reason, refusal_body(reason, message))
