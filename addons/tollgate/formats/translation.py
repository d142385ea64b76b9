"""One routed call's translation: its request written in the target's wire format, and what turns
the target's answer, stream or error back into the caller's. Plain Python, knowing nothing of
mitmproxy: the `Translate` stage applies it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    CLAUDE_ON_BEDROCK,
    CLAUDE_ON_VERTEX,
    anthropic_messages,
    gemini_generate,
)
from tollgate.formats.anthropic_messages import on_vertex as claude_on_vertex
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.chat import (
    ChatError,
    ChatFormat,
    ChatRequest,
    Failed,
    StreamEvent,
    StreamReader,
    StreamWriter,
    Untranslatable,
    UsageReported,
)
from tollgate.formats.registry import WIRE_FORMATS, wire_format
from tollgate.formats.usage import Usage

logger = logging.getLogger(__name__)


def chat_format(name: str) -> ChatFormat:
    """A chat format by its name (`formats/registry.py`): what reads and writes it."""
    chat = wire_format(name).chat
    assert chat is not None, f"{name} is not a chat format"
    return chat


def chat_formats() -> dict[str, ChatFormat]:
    """Every chat format a route may translate between, by name."""
    return {name: f.chat for name, f in WIRE_FORMATS.items() if f.chat is not None}


# A whole answer larger than this is not translated (as `WholeBodyReader` does not read one).
ANSWER_LIMIT = 16 * 1024 * 1024


class Rewrite(Protocol):
    """Turns an answer's bytes, piece by piece, into what the caller gets (`UsageTap` applies it)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Translation:
    """A call from format `source` to format `target` (set once the target's API is chosen).
    `json_array`: the caller (a Gemini one) asked for its stream as one JSON array rather than
    server-sent events."""

    def __init__(self, source: str, json_array: bool = False) -> None:
        self.source, self.target = source, ""
        self.json_array = json_array
        self.chat: ChatRequest | None = None  # the call as read, which the answer's writers read
        # What rewrites the answer as it streams by (`UsageTap`); None where it goes as it came.
        self.rewrite: Rewrite | None = None
        self.stream_type = "text/event-stream"  # what the caller's stream is sent as
        # The target's usage as its provider bills it (`Cost.billed_usage`), given to the caller.
        self.billed: Callable[[Usage], Usage] | None = None

    @property
    def caller_headers(self) -> tuple[bytes, ...]:
        """The caller's headers that carry part of its call in its format (`request`'s `headers`)."""
        return wire_format(self.source).caller_headers

    @property
    def passthrough(self) -> bool:
        """An Anthropic call to Claude on Bedrock or Vertex AI: it goes nearly as it came (every
        Anthropic feature Claude has there), not through the common model."""
        return self.source == ANTHROPIC_MESSAGES and self.target in (CLAUDE_ON_BEDROCK, CLAUDE_ON_VERTEX)

    def request(
        self, body: dict[str, Any], model: str, stream: bool, headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        """The body for the target, the headers it needs, and the parameters left out (named).
        Raises Untranslatable. `headers`: the caller's own (lower-case names), for what the
        caller's format carries there (Anthropic's betas)."""
        if self.passthrough and self.target == CLAUDE_ON_VERTEX:  # betas go on in their header
            beta = headers.get("anthropic-beta")
            return claude_on_vertex.raw_predict_body(body), {"anthropic-beta": beta} if beta else {}, []
        if self.passthrough:
            betas = anthropic_messages.betas_of_header(headers.get("anthropic-beta"))
            return anthropic_messages.bedrock_invoke_body(body, betas), {}, []
        chat = chat_format(self.source).read_request(body)
        chat.model, chat.stream = model, stream
        self.chat = chat
        written, extra = chat_format(self.target).write_request(chat)
        return written, extra, chat.dropped

    def content_type(self, stream: bool) -> str:
        """What the caller's answer is, as its format sends it."""
        return self.stream_type if stream else "application/json"

    def rewriter(self, stream: bool) -> Rewrite | None:
        """What rewrites the (successful) answer as it streams by, kept as `rewrite`."""
        self.rewrite = self.stream() if stream else self.answer()
        return self.rewrite

    def stream(self) -> Rewrite | None:
        if self.passthrough:  # Vertex AI streams Claude's own events; Bedrock wraps them
            return anthropic_messages.InvokeStreamUnwrapper() if self.target == CLAUDE_ON_BEDROCK else None
        writer = self._writer()
        self.stream_type = writer.content_type
        return ChatStream(chat_format(self.target).stream_reader(), writer, self.billed)

    def answer(self) -> Rewrite | None:
        """What rewrites a whole (non-streamed) answer; None where it goes as it came."""
        if self.passthrough:
            return None  # Claude on Bedrock and Vertex AI answers in Anthropic's own shape
        return WholeAnswer(self._answer, self._failed)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The target's error answer in the caller's error shape, its status kept."""
        target = BEDROCK_CONVERSE if self.target == CLAUDE_ON_BEDROCK else self.target  # Bedrock's error shape
        error = chat_format(target).read_error(status, headers, body)
        return chat_format(self.source).write_error(error)

    def _answer(self, body: bytes) -> bytes:
        data = parse_json(body)
        if data is None:
            raise Untranslatable("the upstream's answer is not a JSON object")
        response = chat_format(self.target).read_response(data)
        if self.billed is not None:
            response.usage = self.billed(response.usage)
        return encode_json(chat_format(self.source).write_response(response, self._chat()))

    def _failed(self, message: str) -> bytes:
        """What the caller gets where the upstream's answer could not be translated."""
        error = ChatError(502, "server", f"Tollgate could not translate the upstream's answer: {message}")
        return chat_format(self.source).write_error(error)[2]

    def _writer(self) -> StreamWriter:
        if self.json_array:
            return gemini_generate.array_stream_writer(self._chat())
        return chat_format(self.source).stream_writer(self._chat())

    def _chat(self) -> ChatRequest:
        assert self.chat is not None, "the request is translated before its answer"
        return self.chat


class WholeAnswer:
    """A whole answer, held until it ends and then translated at once (its headers went without
    a length). Too large or unreadable: the caller gets an error in its own shape instead."""

    def __init__(self, convert: Callable[[bytes], bytes], failed: Callable[[str], bytes]) -> None:
        self._convert, self._failed = convert, failed
        self._chunks: list[bytes] = []
        self._size = 0
        self.error: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= ANSWER_LIMIT:
            self._chunks.append(chunk)
        return b""

    def flush(self) -> bytes:
        if self._size > ANSWER_LIMIT:
            self.error = "answer larger than 16 MiB"
            return self._failed(self.error)
        try:
            return self._convert(b"".join(self._chunks))
        except Exception as e:  # an answer Tollgate cannot read: said in the caller's shape
            # Only Tollgate's own messages: another exception's may quote the answer.
            self.error = str(e) if isinstance(e, Untranslatable) else type(e).__name__
            return self._failed(self.error)


class ChatStream:
    """A stream, translated event by event as its bytes arrive; the usage it reports counted as
    its provider bills it (`billed`)."""

    def __init__(
        self, reader: StreamReader, writer: StreamWriter, billed: Callable[[Usage], Usage] | None = None
    ) -> None:
        self._reader, self._writer, self._billed = reader, writer, billed
        self.error: str | None = None

    def _write(self, event: StreamEvent) -> bytes:
        if self._billed is not None and isinstance(event, UsageReported):
            event = UsageReported(self._billed(event.usage))
        return self._writer.write(event)

    def feed(self, chunk: bytes) -> bytes:
        if self.error is not None:
            return b""
        try:
            out = b"".join([self._write(event) for event in self._reader.feed(chunk)])
        except Exception as e:  # never lose the stream's end: say it broke, in the caller's format
            return self._break(type(e).__name__)  # not its message, which may quote the answer
        if self._reader.error is not None:
            out += self._break(self._reader.error)
        return out

    def flush(self) -> bytes:
        if self.error is not None:
            return self._end()
        try:
            out = b"".join([self._write(event) for event in self._reader.end()])
        except Exception as e:
            return self._break(type(e).__name__)
        return out + self._end()

    def _break(self, message: str) -> bytes:
        self.error = message
        logger.warning("Tollgate: a translated stream broke off: %s", message)
        try:
            return self._writer.write(
                Failed(ChatError(502, "server", f"Tollgate could not translate the stream: {message}"))
            )
        except Exception:
            return b""

    def _end(self) -> bytes:
        try:
            return self._writer.end()
        except Exception:
            logger.exception("Tollgate: ending a translated stream failed")
            return b""
