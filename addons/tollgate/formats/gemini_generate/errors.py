"""Google's errors (google.rpc.Status: `{"error": {"code", "message", "status"}}`), as the Gemini API
and Vertex AI answer: read into and written out of the common chat model, and Tollgate's refusals
(`refusal`) in that shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tollgate.formats import fields
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.chat import ChatError, ErrorKind, kind_of_status
from tollgate.formats.gemini_generate.answer import loose_int
from tollgate.formats.refusals import KIND, STATUS, Refusal, json_refusal

_KIND_OF_STATUS: dict[str, ErrorKind] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "INTERNAL": "server",
    "UNKNOWN": "server",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}
_STATUS_OF_KIND: dict[ErrorKind, str] = {
    "invalid_request": "INVALID_ARGUMENT",
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "too_large": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "INTERNAL",
    "overloaded": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
}


def error_of(error: Any, status: int | None) -> ChatError:
    """A ChatError from Gemini's `error` object (google.rpc.Status), trusting its code over `status`."""
    error = error if isinstance(error, dict) else {}
    code = loose_int(error.get("code"))
    status = code if code is not None and 100 <= code < 600 else (status or 500)
    message = fields.str_or_none(error.get("message")) or f"Gemini API error (HTTP {status})"
    kind = _KIND_OF_STATUS.get(fields.str_or_none(error.get("status")) or "") or kind_of_status(status)
    if kind == "invalid_request" and kind_of_status(status) == "too_large":
        kind = "too_large"
    details = error.get("details")
    reasons = {d.get("reason") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
    if "API_KEY_INVALID" in reasons:  # Gemini answers a bad key with 400 INVALID_ARGUMENT
        kind = "authentication"
    return ChatError(status=status, kind=kind, message=message)


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    try:
        value: Any = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, list) and value:  # the JSON array stream's form
        value = value[0]
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict):
        return ChatError(status=status, kind=kind_of_status(status), message=f"Gemini API error (HTTP {status})")
    result = error_of(error, status)
    result.status = status
    return result


def error_body(error: ChatError) -> dict[str, Any]:
    return {"error": {"code": error.status, "message": error.message, "status": _STATUS_OF_KIND[error.kind]}}


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    return error.status, {"content-type": "application/json"}, encode_json(error_body(error))


# ---------------------------------------------------------------------------------------------


# Each kind of Tollgate's refusals as a google.rpc.Status name.
REFUSAL_TYPES = {
    "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "server": "INTERNAL",
    "signature": "UNAUTHENTICATED",
    "unavailable": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "invalid_request": "INVALID_ARGUMENT",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "quota": "RESOURCE_EXHAUSTED",
}


def refusal(reason: str, message: str) -> Refusal:
    """Google's shape, which Vertex AI answers in too."""
    error = {"code": STATUS[reason], "message": message, "status": REFUSAL_TYPES[KIND[reason]]}
    return json_refusal(reason, {"error": error})
