"""Claude on Bedrock's InvokeModel: a Messages call as it is, in Bedrock's envelope (its API version
and betas in the body), and the Messages stream unwrapped from InvokeModelWithResponseStream's AWS
event stream."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tollgate.formats import chat, fields
from tollgate.formats.anthropic_messages.stream_writer import write_event
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.framing import EventStreamFrame, EventStreamFramer

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"

# Bedrock's stream exceptions, as the Anthropic error a Claude client knows.
_ERROR_TYPE_OF_BEDROCK_EXCEPTION = {
    "throttlingException": "rate_limit_error",
    "serviceQuotaExceededException": "rate_limit_error",
    "validationException": "invalid_request_error",
    "accessDeniedException": "permission_error",
    "resourceNotFoundException": "not_found_error",
    "modelStreamErrorException": "api_error",
    "internalServerException": "api_error",
    "serviceUnavailableException": "overloaded_error",
    "modelNotReadyException": "overloaded_error",
    "modelTimeoutException": "timeout_error",
}


def betas_of_header(value: str | None) -> list[str]:
    """The betas an `anthropic-beta` header names (comma-separated)."""
    return [b.strip() for b in (value or "").split(",") if b.strip()]


def bedrock_invoke_body(body: dict[str, Any], betas: list[str]) -> dict[str, Any]:
    """A Messages call as InvokeModel takes it: the model is in the path and streaming in the
    operation, the API version and betas in the body."""
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    given = out.get("anthropic_beta")
    merged = [*(given if isinstance(given, list) else []), *betas]
    if merged:
        out["anthropic_beta"] = list(dict.fromkeys(merged))
    return out


class InvokeStreamUnwrapper:
    """InvokeModelWithResponseStream's AWS event stream → the Messages stream inside it: each
    `chunk` frame carries one Anthropic stream event, base64-encoded; an exception frame becomes
    an Anthropic `error` event."""

    def __init__(self) -> None:
        self._framer = EventStreamFramer()
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self.error is not None:
            return b""
        out = []
        for frame in self._framer.feed(chunk):
            out.append(self._unwrap(frame))
            if self.error is not None:
                break
        self.error = self.error or self._framer.error
        return b"".join(out)

    def flush(self) -> bytes:
        """The stream ended: every frame was whole, so nothing is held."""
        return b""

    def _unwrap(self, frame: EventStreamFrame) -> bytes:
        kind = frame.headers.get(":message-type")
        if kind == "event":
            return self._chunk(frame) if frame.headers.get(":event-type") == "chunk" else b""
        if kind in ("exception", "error"):
            name = frame.headers.get(":exception-type") or frame.headers.get(":error-code")
            name = name if isinstance(name, str) else "unknown"
            message = fields.str_or_none((parse_json(frame.payload) or {}).get("message"))
            message = message or fields.str_or_none(frame.headers.get(":error-message")) or f"Bedrock: {name}"
            error = {"type": _ERROR_TYPE_OF_BEDROCK_EXCEPTION.get(name, "api_error"), "message": message}
            return write_event("error", {"error": error})
        return b""

    def _chunk(self, frame: EventStreamFrame) -> bytes:
        encoded = (parse_json(frame.payload) or {}).get("bytes")
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        data = parse_json(raw)
        if data is None:
            self.error = "a Bedrock chunk does not hold a JSON event"
            return b""
        if b"\n" in raw or b"\r" in raw:
            raw = encode_json(data)  # an SSE data line holds no line break
        return chat.sse(raw.strip(), fields.str_or_none(data.get("type")) or "message")
