"""Bedrock's InvokeModel answers where the model id does not say the model's family (an application
inference profile's ARN names none, `arn:aws:bedrock:…:application-inference-profile/…`; nor does
Bedrock's answer in a header): read by the reader of the family the answer itself shows. Claude's
answer says it is one, in Anthropic's own Messages body: a JSON answer's `"type": "message"`, a
stream's first chunk's `message_start` event. It is read as Anthropic's (`messages_answer`: every
block, citations and tool results too); any other by the families' reader (`bedrock_answer`),
which reads where every family's text sits.

Nothing of a stream goes on before its first frame is whole and its reader chosen: a stream cut
before then, or one whose first frame cannot be read, goes to the families' reader, which ends it
as an answer that cannot be read. Plain code, knowing nothing of mitmproxy."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

from tollgate.formats.framing import EventStreamFrame, EventStreamFramer
from tollgate.formats.json_codec import parse_json
from tollgate.governance.guardrails.answer import AnswerDetectors
from tollgate.governance.guardrails.bedrock_answer import InvokeAnswerGuard, guard_bedrock_json
from tollgate.governance.guardrails.messages_answer import BedrockMessagesGuard, guard_messages_json

# The event a Claude stream begins with, and the type of a Claude answer read whole.
MESSAGE_START = "message_start"
MESSAGE = "message"


class _Guard(Protocol):
    denied: str | None

    @property
    def counts(self) -> dict[str, int]: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def is_claudes(frame: EventStreamFrame) -> bool:
    """Whether a stream's first frame is Claude's: a chunk whose event is `message_start`."""
    if frame.headers.get(":message-type") != "event" or frame.headers.get(":event-type") != "chunk":
        return False
    encoded = (parse_json(frame.payload) or {}).get("bytes")
    if not isinstance(encoded, str):
        return False
    try:
        event = parse_json(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return False
    return event is not None and event.get("type") == MESSAGE_START


class InvokeByAnswerGuard:
    """InvokeModelWithResponseStream's frames, read by Claude's reader where the first frame is
    Claude's `message_start`, else by the families' (`denied`, `counts`: its reader's)."""

    def __init__(self, compiled: AnswerDetectors) -> None:
        self._compiled = compiled
        self._framer: EventStreamFramer | None = EventStreamFramer()
        self._held: list[bytes] = []  # what came before the first frame was whole
        self._reader: _Guard | None = None
        self.denied: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return self._reader.counts if self._reader is not None else {}

    def feed(self, chunk: bytes) -> bytes:
        reader = self._reader
        if reader is not None:
            out = reader.feed(chunk)
            self.denied = reader.denied
            return out
        assert self._framer is not None
        self._held.append(chunk)
        frames = self._framer.feed(chunk)
        if not frames and self._framer.error is None:
            return b""
        claudes = bool(frames) and is_claudes(frames[0])
        return self._chosen(BedrockMessagesGuard(self._compiled) if claudes else InvokeAnswerGuard(self._compiled))

    def flush(self) -> bytes:
        out = b""
        if self._reader is None:  # ended before a whole frame: the families' reader ends it
            out = self._chosen(InvokeAnswerGuard(self._compiled))
            if self.denied is not None:
                return out
        reader = self._reader
        assert reader is not None
        out += reader.flush()
        self.denied = reader.denied
        return out

    def _chosen(self, reader: _Guard) -> bytes:
        """The reader chosen, given what came so far."""
        self._reader, self._framer = reader, None
        held, self._held = b"".join(self._held), []
        out = reader.feed(held)
        self.denied = reader.denied
        return out


def guard_invoke_json(compiled: AnswerDetectors, body: bytes) -> tuple[bytes, str | None, dict[str, int]]:
    """InvokeModel's whole answer: read as Claude's where it is Anthropic's Messages body (its
    `type` `message`), else by the families' reader."""
    obj: Any = parse_json(body)
    if isinstance(obj, dict) and obj.get("type") == MESSAGE:
        return guard_messages_json(compiled, body)
    return guard_bedrock_json(compiled, body)
