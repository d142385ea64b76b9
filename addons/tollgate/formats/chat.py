"""A chat call in no provider's wire format: what each format module reads a call, an answer, a
stream or an error into, and writes one out of. N formats, not N² translators.

Plain data, knowing nothing of mitmproxy. Token counts are the project's one `usage.Usage`, in
its one convention whatever the format (every prompt token in `input_tokens`, every generated one
in `output_tokens`); a format that counts otherwise (Anthropic's input without its cache, Gemini's
candidates without thoughts) converts on reading and writing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.usage import Usage

Role = Literal["user", "assistant"]
# Why an answer ended: its natural end or a stop sequence, the token limit, tool calls to make, a
# filter (safety, recitation, a refusal), or anything else.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
# What went wrong, as every format's error shape can say it (the HTTP status is kept apart).
ErrorKind = Literal[
    "invalid_request",  # 400
    "authentication",  # 401
    "permission",  # 403
    "not_found",  # 404
    "too_large",  # 413
    "rate_limit",  # 429
    "server",  # 500
    "overloaded",  # 503, Anthropic's 529
    "timeout",  # 504
]
Effort = Literal["minimal", "low", "medium", "high"]


class Untranslatable(ValueError):
    """A call (or a part of one) the target format cannot carry without changing what it means:
    the caller gets a 400 in its own format with this message, which names the parameter."""


# ---------------------------------------------------------------------------------------------
# Content


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    """An image given inline (base64 `data`) or by reference (`url`: https, or a provider's file
    URI); `media_type` as the caller gave it, or guessed from nothing ("image/*" stays unknown)."""

    media_type: str | None = None
    data: str | None = None  # base64, as every format carries inline images
    url: str | None = None


@dataclass(slots=True)
class Thinking:
    """Reasoning the model showed. `signature` (Anthropic's, Bedrock's) or Gemini's thought
    signature must go back with it on the next turn; `redacted` is Anthropic's encrypted form.
    Both are valid only for the provider that made them: `origin` names the format of its model
    (a `formats` name), so that a signature goes back to it and to no other (`seal`)."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    origin: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the arguments object as JSON text, as OpenAI carries it


@dataclass(slots=True)
class ToolResult:
    id: str  # the ToolCall's id it answers
    name: str | None  # the tool's name where the format carries it (Gemini needs it: `tool_names`)
    content: list[Text | Image]
    is_error: bool = False


Part = Text | Image | Thinking | ToolCall | ToolResult


@dataclass(slots=True)
class Message:
    """One turn. Tool results are parts of a user message (as in Anthropic's and Bedrock's
    formats); OpenAI's `tool` messages and Gemini's function responses are read into one."""

    role: Role
    parts: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema object
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None  # for "tool": the one tool to call


@dataclass(slots=True)
class OutputFormat:
    kind: Literal["text", "json", "json_schema"]
    schema: dict[str, Any] | None = None  # for json_schema
    name: str | None = None
    strict: bool | None = None


# ---------------------------------------------------------------------------------------------
# A call


@dataclass(slots=True)
class ChatRequest:
    model: str | None
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int | None = None  # answers wanted (OpenAI's n, Gemini's candidateCount)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    output: OutputFormat | None = None
    reasoning_effort: Effort | None = None
    thinking_budget: int | None = None  # tokens; 0 turns thinking off where the target can
    include_thoughts: bool | None = None
    user: str | None = None  # the end user's id (OpenAI's user, Anthropic's metadata.user_id)
    stream: bool = False
    # The caller asked its stream for usage (OpenAI's stream_options.include_usage); formats that
    # always report it ignore this.
    stream_usage: bool = False
    # Parameters read but not carried to the target, by name: the proxy warns of them once per
    # call. Readers add what their format has and the model does not (OpenAI's logit_bias);
    # writers add what the target cannot honour and dropping does not change the answer's meaning.
    dropped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# An answer


def input_with_cache(uncached: int | None, cache_read: int | None, cache_write: int | None) -> int | None:
    """The input as the model counts it, cache reads and writes among it, from a format that counts
    them apart (Anthropic, Bedrock); None where the uncached input is not known."""
    return None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0)


@dataclass(slots=True)
class Choice:
    index: int
    parts: list[Part]  # Text, Thinking and ToolCall
    finish: FinishReason | None = None
    stop_sequence: str | None = None  # the one that ended it, where the format says


@dataclass(slots=True)
class ChatResponse:
    id: str | None
    model: str | None
    choices: list[Choice]
    usage: Usage = field(default_factory=Usage)
    created: int | None = None  # epoch seconds


@dataclass(slots=True)
class ChatError:
    status: int
    kind: ErrorKind
    message: str


# ---------------------------------------------------------------------------------------------
# A stream, as events in order. `choice` tells candidates apart (OpenAI's n, Gemini's candidates).


@dataclass(slots=True)
class Started:
    id: str | None = None
    model: str | None = None
    created: int | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ThinkingDelta:
    text: str = ""
    signature: str | None = None  # comes once, after the text, in Anthropic's and Bedrock's streams
    redacted: str | None = None
    choice: int = 0
    origin: str | None = None  # as Thinking's: the format whose model signed it


@dataclass(slots=True)
class ToolCallStarted:
    index: int  # the call's position among its choice's tool calls, from 0
    id: str
    name: str
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # the next piece of the arguments' JSON text
    choice: int = 0


@dataclass(slots=True)
class Finished:
    reason: FinishReason
    choice: int = 0
    stop_sequence: str | None = None


@dataclass(slots=True)
class UsageReported:
    """The usage so far; a later report replaces an earlier one field by field (None keeps it:
    `Usage.update`)."""

    usage: Usage


@dataclass(slots=True)
class Failed:
    """The upstream sent an error inside its stream."""

    error: ChatError


StreamEvent = Started | TextDelta | ThinkingDelta | ToolCallStarted | ToolCallDelta | Finished | UsageReported | Failed


class StreamReader(Protocol):
    """Reads a format's stream incrementally: the same events however the bytes are cut."""

    error: str | None  # set (and reading stops) when the stream cannot be read

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...

    def end(self) -> list[StreamEvent]:
        """The stream ended: whatever a last incomplete frame completes (usually nothing)."""
        ...


class StreamWriter(Protocol):
    """Writes a format's stream as events arrive: never holds back what it can already write,
    except where the format needs a whole thing at once (Gemini's function calls) or a block must
    wait for the one before it to end (`block_order.BlockOrder`)."""

    content_type: str

    def write(self, event: StreamEvent) -> bytes: ...

    def end(self) -> bytes:
        """The upstream stream ended: what closes this format's stream (OpenAI's `[DONE]`)."""
        ...


@dataclass(frozen=True, slots=True)
class ChatFormat:
    """One wire format of chat calls: its name, and what reads and writes each thing in it (a format
    module's functions and stream classes)."""

    name: str
    read_request: Callable[[dict[str, Any]], ChatRequest]
    """Raises Untranslatable for what it cannot read exactly (an unknown field, a content type it
    does not know), naming it."""
    write_request: Callable[[ChatRequest], tuple[dict[str, Any], dict[str, str]]]
    """The body, and headers the target needs (an Anthropic beta, say). Raises Untranslatable where
    dropping a parameter would change the answer's meaning; adds to `request.dropped` what it leaves
    out otherwise."""
    read_response: Callable[[dict[str, Any]], ChatResponse]
    write_response: Callable[[ChatResponse, ChatRequest], dict[str, Any]]
    """The answer in this format, for the call it answers (`request`: its model, where the answer
    names none)."""
    stream_reader: Callable[[], StreamReader]
    stream_writer: Callable[[ChatRequest], StreamWriter]
    read_error: Callable[[int, Mapping[str, str], bytes], ChatError]
    """An error answer (status, headers, body) as a ChatError."""
    write_error: Callable[[ChatError], tuple[int, dict[str, str], bytes]]
    """Status, headers (content-type among them) and body in this format's error shape."""


# ---------------------------------------------------------------------------------------------
# What several formats need


# Reasoning effort ↔ thinking budget, for formats that speak one and targets that take the other.
EFFORT_BUDGET: dict[str, int] = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


def effort_of_budget(budget: int) -> Effort:
    """The effort whose budget is the nearest at or above `budget` (the largest past it)."""
    for effort, tokens in EFFORT_BUDGET.items():
        if budget <= tokens:
            return effort  # type: ignore[return-value]
    return "high"


# A sealed signature's bytes begin so; base64 spells their first 12 bytes as below in either alphabet.
_SEAL = b"tollgate-sig:"
_SEALED_START = "dG9sbGdhdGUtc2ln"


def seal(signature: str, origin: str) -> str:
    """A signature (or redacted reasoning) made by `origin`'s model, as a caller of another format
    is given it: its origin travels with it, so that when the caller sends it back in its history
    it goes to that model and to no other (`unseal`). Canonical base64: google-genai decodes a
    thoughtSignature into bytes and encodes them again when it sends them back, and to the
    Anthropic SDK and boto3 it is an opaque string."""
    return base64.b64encode(_SEAL + origin.encode() + b":" + signature.encode()).decode()


def unseal(value: str) -> tuple[str, str | None]:
    """(signature, origin) of a sealed signature; (value, None) of anything else. google-genai sends
    bytes back in URL-safe base64, which is read too."""
    if not value.startswith(_SEALED_START):
        return value, None
    try:
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        origin, colon, signature = raw.removeprefix(_SEAL).partition(b":")
        if not raw.startswith(_SEAL) or not colon or not origin:
            return value, None
        return signature.decode(), origin.decode()
    except (binascii.Error, ValueError):  # not base64, or not UTF-8 (UnicodeDecodeError)
        return value, None


def signed_for(value: str, origin: str | None, writer: str) -> str:
    """A signature as the format `writer` gives it to its caller: as it is if `writer`'s own model
    made it (or no one knows which), else sealed with its origin."""
    return seal(value, origin) if origin is not None and origin != writer else value


def tool_names(messages: Iterable[Message]) -> dict[str, str]:
    """Each tool call's name by its id, for formats whose tool results must name their tool."""
    return {p.id: p.name for m in messages for p in m.parts if isinstance(p, ToolCall)}


STATUS_OF_KIND: dict[str, int] = {
    "invalid_request": 400,
    "authentication": 401,
    "permission": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limit": 429,
    "server": 500,
    "overloaded": 503,
    "timeout": 504,
}


def kind_of_status(status: int) -> ErrorKind:
    """The error kind an HTTP status says, where the body says no more."""
    for kind, code in STATUS_OF_KIND.items():
        if code == status:
            return kind  # type: ignore[return-value]
    if status == 529:
        return "overloaded"
    if status == 408:
        return "timeout"
    return "server" if status >= 500 else "invalid_request"


def sse(data: str | bytes, event: str | None = None, newline: bytes = b"\n") -> bytes:
    """One server-sent event; `data` holds no newline (compact JSON never does). `newline`: CRLF
    where the provider writes its lines so (Gemini)."""
    payload = data.encode() if isinstance(data, str) else data
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + payload + newline + newline


def answer_id(prefix: str, given: str | None) -> str:
    """An answer's id as a format spells it ("chatcmpl-…", "msg_…"): the upstream's, prefixed where it
    is not already, else a random one."""
    if given and given.startswith(prefix):
        return given
    return prefix + (given or os.urandom(12).hex())


def json_text(value: Any) -> str:
    """A JSON value as compact text (a tool call's arguments, a tool result's object)."""
    return encode_json(value).decode()


def arguments_object(text: str) -> dict[str, Any] | None:
    """A tool call's arguments as the JSON object they spell (none at all: an empty one), or None
    where they spell something else or are not JSON."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# The first bytes of each image type the formats take.
_IMAGE_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def sniffed_media_type(data: str) -> str | None:
    """An image's media type from its first bytes (`data` base64, as images are carried inline), for
    an image given without one: PNG, JPEG, GIF or WebP, else None."""
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return None
    for magic, media_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
