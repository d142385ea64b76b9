"""Bedrock's errors, read and written: its whole runtime answers in this shape, InvokeModel as
Converse; its error types, whose names ConverseStream's exception events take too; and Tollgate's
refusals (`refusal`) in that shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.chat import (
    ChatError,
    ErrorKind,
    kind_of_status,
)
from tollgate.formats.refusals import KIND, STATUS, Refusal

# Bedrock's error types (x-amzn-errortype; in a stream, the same names with a lowercase first letter).
ERROR_TYPES: dict[str, tuple[int, ErrorKind]] = {
    "ValidationException": (400, "invalid_request"),
    "ConflictException": (400, "invalid_request"),
    "SerializationException": (400, "invalid_request"),
    "UnrecognizedClientException": (403, "authentication"),
    "InvalidSignatureException": (403, "authentication"),
    "IncompleteSignatureException": (403, "authentication"),
    "ExpiredTokenException": (403, "authentication"),
    "MissingAuthenticationTokenException": (403, "authentication"),
    "AccessDeniedException": (403, "permission"),
    "ResourceNotFoundException": (404, "not_found"),
    "ThrottlingException": (429, "rate_limit"),
    "ServiceQuotaExceededException": (400, "rate_limit"),
    "ModelNotReadyException": (429, "overloaded"),
    "ModelTimeoutException": (408, "timeout"),
    "InternalServerException": (500, "server"),
    "ModelErrorException": (424, "server"),
    "ModelStreamErrorException": (424, "server"),
    "ServiceUnavailableException": (503, "overloaded"),
}
_ERROR_TYPE_OF_KIND: dict[str, str] = {
    "invalid_request": "ValidationException",
    "too_large": "ValidationException",
    "authentication": "UnrecognizedClientException",
    "permission": "AccessDeniedException",
    "not_found": "ResourceNotFoundException",
    "rate_limit": "ThrottlingException",
    "server": "InternalServerException",
    "overloaded": "ServiceUnavailableException",
    "timeout": "ModelTimeoutException",
}
# A ConverseStream's exception events are only these (botocore's ConverseStreamOutput union).
STREAM_EXCEPTION_OF_KIND: dict[str, str] = {
    "rate_limit": "throttlingException",
    "overloaded": "serviceUnavailableException",
    "server": "internalServerException",
    "timeout": "modelStreamErrorException",
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def error_type(headers: Mapping[str, str], body: dict[str, Any] | None) -> str | None:
    """The error's type: x-amzn-errortype (less any ":http://…" suffix), else the body's __type
    (less any "namespace#" prefix)."""
    raw = _header(headers, "x-amzn-errortype")
    if not raw and body is not None:
        given = body.get("__type") or body.get("code")
        raw = given if isinstance(given, str) else None
    if not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip() or None


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    data = parse_json(body)
    name = error_type(headers, data)
    kind = ERROR_TYPES[name][1] if name in ERROR_TYPES else kind_of_status(status)
    message = (data or {}).get("message") or (data or {}).get("Message")
    if not isinstance(message, str) or not message:
        message = f"Bedrock answered HTTP {status}" + (f" ({name})" if name else "")
    return ChatError(status, kind, message)


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    name = _ERROR_TYPE_OF_KIND.get(error.kind, "InternalServerException")
    if error.kind == "server" and error.status == 424:
        name = "ModelErrorException"
    headers = {"content-type": "application/json", "x-amzn-errortype": name}
    return error.status, headers, encode_json({"message": error.message})


# Each kind of Tollgate's refusals as an x-amzn-ErrorType.
REFUSAL_TYPES = {
    "authentication": "UnrecognizedClientException",
    "permission": "AccessDeniedException",
    "server": "InternalServerException",
    "signature": "InvalidSignatureException",
    "unavailable": "ServiceUnavailableException",
    "timeout": "ModelTimeoutException",
    "invalid_request": "ValidationException",
    "rate_limit": "ThrottlingException",
    "quota": "ThrottlingException",
}


def refusal(reason: str, message: str) -> Refusal:
    """AWS's shape: the reason's status and error type, no retry hint (botocore reads none). AWS
    answers a key it does not know 403, not 401."""
    kind = KIND[reason]
    status, error_type = 403 if kind == "authentication" else STATUS[reason], REFUSAL_TYPES[kind]
    headers = {"content-type": "application/json", "x-amzn-errortype": error_type, "x-tollgate-error": reason}
    return Refusal(status, headers, json.dumps({"message": message}).encode())
