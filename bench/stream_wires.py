"""The streams bench/stream.py's fake upstream answers with, one per wire format Tollgate reads:
the request a client sends (host, path, headers, body) and the events of the answer, built to a
chosen event size. Plain functions of their arguments, so that the client can check what it got
against what the fake sent.

Every stream is: a head (what opens it), content events each carrying a piece of text (`w000123`
and filler, no character that JSON escapes), and a tail that reports the finish reason and the
usage — input tokens chosen per call, output tokens the number of content events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from tollgate.formats.framing import event_frame  # what Tollgate writes Bedrock's frames with

MiB = 1024 * 1024
FILLER = "abcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ROUTED_MODEL = "gemini-bench-routed"  # the model the override rule routes to OpenAI
VIRTUAL_KEY = "tg-bench-routed"  # the routed call's caller (a route needs Tollgate's upstream key)


def text_of(seq: int, length: int) -> str:
    """Content text: a sequence number, then filler to `length` characters (at least the number)."""
    head = f"w{seq:06d} "
    fill = max(0, length - len(head))
    return head + (FILLER * (fill // len(FILLER) + 1))[:fill]


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sse(data: object, event: str | None = None, eol: bytes = b"\n") -> bytes:
    name = b"event: " + event.encode() + eol if event else b""
    return name + b"data: " + compact(data) + eol + eol


@dataclass(frozen=True)
class Counts:
    input_tokens: int
    output_tokens: int


# --------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: Callable[[str], bytes]  # the body, given the call's token (which the fake finds in it)


def ask(token: str) -> str:
    return f"Say something long. [{token}]"


OPENAI_HOST = "api.openai.com"
ANTHROPIC_HOST = "api.anthropic.com"
GEMINI_HOST = "generativelanguage.googleapis.com"
BEDROCK_HOST = "bedrock-runtime.us-east-1.amazonaws.com"
HOSTS = (OPENAI_HOST, ANTHROPIC_HOST, GEMINI_HOST, BEDROCK_HOST)

CHAT_REQUEST = Request(
    OPENAI_HOST,
    "/v1/chat/completions",
    (("Authorization", "Bearer sk-bench-not-a-real-key"),),
    lambda token: compact(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": ask(token)}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": token,
        }
    ),
)
RESPONSES_REQUEST = Request(
    OPENAI_HOST,
    "/v1/responses",
    (("Authorization", "Bearer sk-bench-not-a-real-key"),),
    lambda token: compact({"model": "gpt-4.1", "input": ask(token), "stream": True}),
)
ANTHROPIC_REQUEST = Request(
    ANTHROPIC_HOST,
    "/v1/messages",
    (("x-api-key", "sk-ant-bench-not-a-real-key"), ("anthropic-version", "2023-06-01")),
    lambda token: compact(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100000,
            "stream": True,
            "messages": [{"role": "user", "content": ask(token)}],
        }
    ),
)


def gemini_request(model: str, sse_: bool, key: str = "AIza-bench-not-a-real-key") -> Request:
    method = "streamGenerateContent?alt=sse" if sse_ else "streamGenerateContent"
    return Request(
        GEMINI_HOST,
        f"/v1beta/models/{model}:{method}",
        (("x-goog-api-key", key),),
        lambda token: compact({"contents": [{"role": "user", "parts": [{"text": ask(token)}]}]}),
    )


def bedrock_request(model: str, operation: str, body: Callable[[str], dict]) -> Request:
    return Request(
        BEDROCK_HOST,
        f"/model/{model.replace(':', '%3A')}/{operation}",
        (("Authorization", "Bearer bedrock-api-key-bench"), ("Accept", "application/vnd.amazon.eventstream")),
        lambda token: compact(body(token)),
    )


CONVERSE_REQUEST = bedrock_request(
    "amazon.nova-lite-v1:0",
    "converse-stream",
    lambda token: {"messages": [{"role": "user", "content": [{"text": ask(token)}]}]},
)
INVOKE_REQUEST = bedrock_request(
    "anthropic.claude-3-haiku-20240307-v1:0",
    "invoke-with-response-stream",
    lambda token: {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100000,
        "messages": [{"role": "user", "content": ask(token)}],
    },
)


# --------------------------------------------------------------------------------------------------
# Streams


class Stream:
    """One wire format's answer: head, content events, tail."""

    content_type = "text/event-stream; charset=utf-8"
    finish = "stop"  # the finish reason the audit reads from the tail
    final_text = False  # the tail repeats text (and is then as large as a content event, or larger)

    def head(self, counts: Counts) -> bytes:
        return b""

    def content(self, seq: int, text: str) -> bytes:
        raise NotImplementedError

    def tail(self, counts: Counts, text: str) -> bytes:
        raise NotImplementedError

    def text_length(self, event_bytes: int) -> int:
        """How long a content event's text is for the event to be about `event_bytes` long (0: the
        sequence number alone, an event as small as the format makes it)."""
        bare = len(self.content(0, text_of(0, 0)))
        if event_bytes <= bare:
            return 0
        probe = 4096
        per_char = (len(self.content(0, text_of(0, probe))) - bare) / probe
        return round((event_bytes - bare) / per_char)

    @staticmethod
    def text_of(seq: int, length: int) -> str:
        return text_of(seq, length)

    def final_text_of(self, length: int) -> str:
        """The text the tail repeats, for formats whose last event carries text."""
        return text_of(0, length) if self.final_text else ""


class OpenAIChat(Stream):
    def _chunk(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {
            "id": "chatcmpl-bench000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "system_fingerprint": "fp_bench0000",
            "choices": choices,
            "usage": usage,
        }

    def head(self, counts: Counts) -> bytes:
        return sse(self._chunk({"role": "assistant", "content": "", "refusal": None}))

    def content(self, seq: int, text: str) -> bytes:
        return sse(self._chunk({"content": text}))

    def tail(self, counts: Counts, text: str) -> bytes:
        usage = {
            "prompt_tokens": counts.input_tokens,
            "completion_tokens": counts.output_tokens,
            "total_tokens": counts.input_tokens + counts.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        return sse(self._chunk({}, "stop")) + sse(self._chunk(None, usage=usage)) + b"data: [DONE]\n\n"


class OpenAIResponses(Stream):
    """The Responses API: its final `response.completed` repeats the whole answer, so it is made at
    least 96 KiB, larger than the readers' 64-KiB window of latest events."""

    finish = "completed"
    final_text = True
    FINAL_MIN = 96 * 1024

    def final_text_of(self, length: int) -> str:
        return text_of(0, max(length, self.FINAL_MIN))

    def _response(self, status: str, output: list, usage: dict | None) -> dict:
        return {
            "id": "resp_bench",
            "object": "response",
            "created_at": 1700000000,
            "status": status,
            "model": "gpt-4.1",
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage,
        }

    def head(self, counts: Counts) -> bytes:
        created = {
            "type": "response.created",
            "sequence_number": 0,
            "response": self._response("in_progress", [], None),
        }
        return sse(created, "response.created")

    def content(self, seq: int, text: str) -> bytes:
        delta = {
            "type": "response.output_text.delta",
            "sequence_number": seq + 1,
            "item_id": "msg_bench",
            "output_index": 0,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        }
        return sse(delta, "response.output_text.delta")

    def tail(self, counts: Counts, text: str) -> bytes:
        message = {
            "type": "message",
            "id": "msg_bench",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        usage = {
            "input_tokens": counts.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": counts.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counts.input_tokens + counts.output_tokens,
        }
        done = {
            "type": "response.completed",
            "sequence_number": 0,
            "response": self._response("completed", [message], usage),
        }
        return sse(done, "response.completed")


class AnthropicMessages(Stream):
    finish = "end_turn"

    def head(self, counts: Counts) -> bytes:
        message = {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": counts.input_tokens,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        return sse({"type": "message_start", "message": message}, "message_start") + sse(start, "content_block_start")

    def content(self, seq: int, text: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return sse(delta, "content_block_delta")

    def tail(self, counts: Counts, text: str) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": counts.output_tokens},
        }
        return (
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + sse(delta, "message_delta")
            + sse({"type": "message_stop"}, "message_stop")
        )


class Gemini(Stream):
    """streamGenerateContent: every chunk a GenerateContentResponse with the prompt count; the last
    one carries text too, the finish reason and the full usage. Server-sent events end their lines
    in CRLF, as Google's do; the JSON array is indented, its elements separated by CRLF-comma-CRLF."""

    finish = "STOP"
    final_text = True

    def __init__(self, array: bool) -> None:
        self.array = array
        if array:
            self.content_type = "application/json; charset=UTF-8"

    def _element(self, text: str, usage: dict, finish: str | None = None) -> bytes:
        candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        data = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash"}
        if self.array:
            return json.dumps(data, indent=2).encode()
        return b"data: " + compact(data) + b"\r\n\r\n"

    PROMPT_ONLY: ClassVar[dict] = {"promptTokenCount": 1, "totalTokenCount": 1}  # in the chunks before the last

    def head(self, counts: Counts) -> bytes:
        return b"[" + self._element("", self.PROMPT_ONLY) if self.array else b""

    def content(self, seq: int, text: str) -> bytes:
        element = self._element(text, self.PROMPT_ONLY)
        return b"\r\n,\r\n" + element if self.array else element

    def tail(self, counts: Counts, text: str) -> bytes:
        usage = {
            "promptTokenCount": counts.input_tokens,
            "candidatesTokenCount": counts.output_tokens,
            "totalTokenCount": counts.input_tokens + counts.output_tokens,
        }
        element = self._element(text, usage, "STOP")
        return b"\r\n,\r\n" + element + b"\r\n]" if self.array else element


def bedrock_event(kind: str, payload: dict) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, compact(payload))


class BedrockConverse(Stream):
    content_type = "application/vnd.amazon.eventstream"
    finish = "end_turn"

    def head(self, counts: Counts) -> bytes:
        return bedrock_event("messageStart", {"role": "assistant"})

    def content(self, seq: int, text: str) -> bytes:
        return bedrock_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})

    def tail(self, counts: Counts, text: str) -> bytes:
        usage = {
            "inputTokens": counts.input_tokens,
            "outputTokens": counts.output_tokens,
            "totalTokens": counts.input_tokens + counts.output_tokens,
        }
        return (
            bedrock_event("contentBlockStop", {"contentBlockIndex": 0})
            + bedrock_event("messageStop", {"stopReason": "end_turn"})
            + bedrock_event("metadata", {"usage": usage, "metrics": {"latencyMs": 100}})
        )


class BedrockInvoke(Stream):
    """InvokeModelWithResponseStream of a Claude model: each `chunk` event carries one of
    Anthropic's events, base64-encoded; the last one adds Bedrock's invocation metrics."""

    content_type = "application/vnd.amazon.eventstream"
    finish = "end_turn"

    def _chunk(self, event: dict) -> bytes:
        return bedrock_event("chunk", {"bytes": base64.b64encode(compact(event)).decode()})

    def head(self, counts: Counts) -> bytes:
        message = {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-haiku-20240307",
            "content": [],
            "usage": {"input_tokens": counts.input_tokens, "output_tokens": 1},
        }
        return self._chunk({"type": "message_start", "message": message})

    def content(self, seq: int, text: str) -> bytes:
        return self._chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})

    def tail(self, counts: Counts, text: str) -> bytes:
        metrics = {
            "inputTokenCount": counts.input_tokens,
            "outputTokenCount": counts.output_tokens,
            "invocationLatency": 300,
            "firstByteLatency": 100,
        }
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": counts.output_tokens},
        }
        return self._chunk(delta) + self._chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics})


# --------------------------------------------------------------------------------------------------
# Formats: a request and the stream answering it


@dataclass(frozen=True)
class Format:
    name: str
    request: Request
    stream: Stream  # what the upstream answers
    routed: bool = False  # Tollgate translates the upstream's stream into the caller's format (Gemini SSE)


FORMATS = {
    f.name: f
    for f in (
        Format("openai-chat", CHAT_REQUEST, OpenAIChat()),
        Format("openai-responses", RESPONSES_REQUEST, OpenAIResponses()),
        Format("anthropic", ANTHROPIC_REQUEST, AnthropicMessages()),
        Format("gemini-sse", gemini_request("gemini-2.0-flash", sse_=True), Gemini(array=False)),
        Format("gemini-array", gemini_request("gemini-2.0-flash", sse_=False), Gemini(array=True)),
        Format("bedrock-converse", CONVERSE_REQUEST, BedrockConverse()),
        Format("bedrock-invoke", INVOKE_REQUEST, BedrockInvoke()),
        # A Gemini client routed by an override rule to OpenAI: an OpenAI chat stream upstream,
        # Gemini server-sent events to the client.
        Format(
            "gemini-via-openai",
            gemini_request(ROUTED_MODEL, sse_=True, key=VIRTUAL_KEY),
            OpenAIChat(),
            routed=True,
        ),
    )
}
