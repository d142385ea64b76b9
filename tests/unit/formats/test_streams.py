"""Stream framers and per-provider stream usage readers, fed the providers' real wire shapes.

Every stream is built as the provider sends it (OpenAI chat chunks and Responses events, Anthropic
Messages events, Gemini SSE and JSON-array streams, Bedrock AWS event-stream binary frames) and fed
in arbitrary pieces: the framed events and the usage read must not depend on where the network
splits the bytes, nor on the SSE line endings. Corrupt input gives an error result, never an
exception."""

from __future__ import annotations

import base64
import functools
import gzip
import itertools
import json
import struct
import sys
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers
from tests.support.examples import examples

from tollgate.formats import framing
from tollgate.formats.anthropic_messages import MessagesStreamReader
from tollgate.formats.bedrock_converse import EventStreamReader
from tollgate.formats.bodies.json_codec import parse_json
from tollgate.formats.chat import UsageReported
from tollgate.formats.framing import (
    Decompressor,
    EventStreamFrame,
    EventStreamFramer,
    JSONArrayFramer,
    SSEEvent,
    SSEEventFilter,
    SSEFramer,
    parse_sse_block,
    split_events,
)
from tollgate.formats.gemini_generate.stream import GenerateArrayReader, GenerateStreamReader, has_key
from tollgate.formats.openai_api import stream_reader
from tollgate.formats.openai_chat import ChatStreamReader
from tollgate.formats.openai_chat.stream import ChatEventReader
from tollgate.formats.openai_responses import ResponsesStreamReader
from tollgate.formats.usage import Usage
from tollgate.formats.usage_reading import Counted, SSEReader, UsageReader, WholeBodyReader, is_event_stream
from tollgate.providers import PROVIDERS

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

OPENAI = PROVIDERS["openai"]
GEMINI = PROVIDERS["gemini"]
ANTHROPIC = PROVIDERS["anthropic"]
BEDROCK = PROVIDERS["bedrock"]

PROPERTY = settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECOMPRESS = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])

EOLS = ("\n", "\r\n", "\r")
SSE_TYPE = "text/event-stream; charset=utf-8"
EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"


# --- helpers ------------------------------------------------------------------------------------


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def usage_tuple(u: Usage) -> tuple:
    return (u.input_tokens, u.output_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens, u.finish_reason)


def headers(content_type: str) -> Headers:
    return Headers(content_type=content_type)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def chunk(data: bytes, how: tuple[str, Any]) -> list[bytes]:
    kind, arg = how
    if kind == "every":
        return [data[i : i + arg] for i in range(0, len(data), arg)]
    return split_at(data, arg)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# How the network splits a body: random split points, or pieces of a fixed small size.
CHUNKINGS = st.one_of(
    st.tuples(st.just("cuts"), st.lists(st.integers(0, 2**31), max_size=50)),
    st.tuples(st.just("every"), st.integers(1, 12)),
)


def frames_of(framer: Any, chunks: list[bytes]) -> list:
    out: list = []
    for piece in chunks:
        out.extend(framer.feed(piece))
    return out


def read(reader: UsageReader, chunks: list[bytes]) -> Usage:
    for piece in chunks:
        reader.feed(piece)
    return reader.result()


def assert_sane(usage: Usage) -> None:
    assert isinstance(usage, Usage)
    for name in ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        assert getattr(usage, name) is None or type(getattr(usage, name)) is int
    assert usage.finish_reason is None or isinstance(usage.finish_reason, str)


# Message text that looks like the markers the readers search for: JSON escaping must keep it inert.
TRICKY = [
    "data: [DONE]\n\n",
    '"usage": {"prompt_tokens": 999999}',
    '"finish_reason": "evil"',
    "\r\n\r\n",
    "\r",
    "\nevent: error\ndata: {}\n\n",
    '"type":"message_start"',
    '"type": "message_delta", "usage": {"output_tokens": 1}',
    '"type":"response.completed"',
    '"usageMetadata": {"promptTokenCount": 1}',
    '"finishReason": "SAFETY"',
    '[{]}"\\',
    "\\",
    '\\"',
    "]}]}",
    "ü€😀 \u2028\u0085",
]
TEXT = st.one_of(st.text(max_size=24), st.sampled_from(TRICKY))
PIECES = st.lists(TEXT, max_size=6)
COUNT = st.integers(0, 2_000_000)


# --- SSE ----------------------------------------------------------------------------------------


def sse(blocks: list[list[str]], eol: str = "\n") -> bytes:
    """Event blocks (lists of lines) on the wire: each line ends in `eol`, each block in a blank line."""
    return "".join(eol.join(lines) + eol + eol for lines in blocks).encode()


def lf_blocks(blocks: list[list[str]]) -> list[bytes]:
    """What SSEFramer returns for them: each block's lines joined by LF."""
    return ["\n".join(lines).encode() for lines in blocks]


def openai_chat_blocks(
    pieces: list[str], prompt: int, completion: int, cached: int, reasoning: int, finish: str, usage_with_choices: bool
) -> list[list[str]]:
    """chat.completion.chunk events with stream_options.include_usage: every chunk has "usage": null
    but the last. OpenAI sends that last chunk with `choices: []`; other servers put the final
    choice (with finish_reason) into the usage chunk."""
    base = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
    }
    first = {
        "index": 0,
        "delta": {"role": "assistant", "content": "", "refusal": None},
        "logprobs": None,
        "finish_reason": None,
    }
    chunks: list[dict] = [{**base, "choices": [first], "usage": None}]
    for text in pieces:
        choice = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
        chunks.append({**base, "choices": [choice], "usage": None})
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    last_choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
    if usage_with_choices:
        chunks.append({**base, "choices": [last_choice], "usage": usage})
    else:
        chunks.append({**base, "choices": [last_choice], "usage": None})
        chunks.append({**base, "choices": [], "usage": usage})
    return [[f"data: {compact(c)}"] for c in chunks] + [["data: [DONE]"]]


def groq_chat_blocks(pieces: list[str], prompt: int, completion: int, finish: str, asked: bool) -> list[list[str]]:
    """Groq's chat.completion.chunk events: `x_groq` on the first chunk (its request id) and on the
    last choice's (its id and the stream's usage, always); with stream_options.include_usage
    (`asked`), the usage also in that chunk's `usage` and in a last chunk of its own, as OpenAI's."""
    base = {
        "id": "chatcmpl-217967f6-a17e-43ab-a156-6b28ea4e8338",
        "object": "chat.completion.chunk",
        "created": 1761231344,
        "model": "llama-3.3-70b-versatile",
        "system_fingerprint": "fp_5fe129dff6",
    }
    x_groq = {"id": "req_01k88s34vjesy920ksmza5dh2b"}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    chunks: list[dict] = [{**base, "choices": [first], "x_groq": x_groq}]
    chunks += [
        {**base, "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]}
        for text in pieces
    ]
    usage = {
        "queue_time": 0.16084081,
        "prompt_tokens": prompt,
        "prompt_time": 0.012868493,
        "completion_tokens": completion,
        "completion_time": 0.009134913,
        "total_tokens": prompt + completion,
        "total_time": 0.022003406,
    }
    last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
    chunks.append({**base, "choices": [last], "x_groq": {**x_groq, "usage": usage}})
    if asked:
        chunks[-1]["usage"] = usage
        chunks.append({**base, "choices": [], "usage": usage, "service_tier": "on_demand"})
    return [[f"data: {compact(c)}"] for c in chunks] + [["data: [DONE]"]]


def responses_blocks(
    pieces: list[str],
    input_: int,
    output: int,
    cached: int,
    reasoning: int,
    reason: str | None,
    instructions: str | None = None,
    tools: list[dict] | None = None,
) -> list[list[str]]:
    """Responses API events, ending in response.completed, or response.incomplete when `reason`.
    Every `response` object repeats the request's instructions and tools; the final one also holds
    the whole output."""
    status = "incomplete" if reason else "completed"
    response = {
        "id": "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654",
        "object": "response",
        "created_at": 1741290958,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": 64 if reason else None,
        "model": "gpt-4.1-2025-04-14",
        "output": [],
        "parallel_tool_calls": True,
        "service_tier": "flex",
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": tools or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }
    item_id = "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"
    text = "".join(pieces)
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [part]}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict]] = [
        ("response.created", {"response": response}),
        ("response.in_progress", {"response": response}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
    ]
    events += [("response.output_text.delta", {**where, "delta": p, "logprobs": []}) for p in pieces]
    events += [
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
    ]
    final = {
        **response,
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "output": [item],
        "usage": {
            "input_tokens": input_,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_ + output,
        },
    }
    events.append((f"response.{status}", {"response": final}))
    return [
        [f"event: {name}", f"data: {compact({'type': name, 'sequence_number': n, **data})}"]
        for n, (name, data) in enumerate(events)
    ]


def anthropic_blocks(
    pieces: list[str],
    input_: int,
    cache_read: int,
    cache_write: int,
    output: int,
    stop: str,
    delta_has_input: bool = False,
) -> list[list[str]]:
    """Messages API stream: message_start (input and cache counts, output 1), a text block, ping,
    message_delta (cumulative output count, stop reason; newer API versions repeat the input and
    cache counts there), message_stop."""
    start_usage = {
        "input_tokens": input_,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[tuple[str, dict]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    ]
    delta_usage: dict[str, Any] = {"output_tokens": output}
    if delta_has_input:
        delta_usage = {
            "input_tokens": input_,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "output_tokens": output,
            "server_tool_use": None,
        }
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": delta_usage},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [[f"event: {name}", f"data: {compact(data)}"] for name, data in events]


ANTHROPIC_ERROR = ["event: error", 'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}']


def gemini_chunks(
    pieces: list[str],
    prompt: int,
    candidates: int,
    thoughts: int | None,
    cached: int | None,
    finish: str,
    tool_prompt: int | None = None,
) -> list[dict]:
    """GenerateContentResponse objects as streamGenerateContent sends them: usageMetadata in every
    one (running counts), the last with the final counts and finishReason. `tool_prompt`: the
    tools' own prompts (a search's results fed back), counted in the total beside the prompt."""
    pieces = pieces or [""]
    out = []
    for i, text in enumerate(pieces):
        last = i == len(pieces) - 1
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        meta: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt + i}
        if last:
            candidate["finishReason"] = finish
            meta = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": candidates,
                "totalTokenCount": prompt + (tool_prompt or 0) + candidates + (thoughts or 0),
            }
            if tool_prompt is not None:
                meta["toolUsePromptTokenCount"] = tool_prompt
            if cached is not None:
                meta["cachedContentTokenCount"] = cached
                meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
            if thoughts is not None:
                meta["thoughtsTokenCount"] = thoughts
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
        out.append(
            {
                "candidates": [candidate],
                "usageMetadata": meta,
                "modelVersion": "gemini-2.5-flash",
                "responseId": "dDnkaOvTBbqAz7IPmpbl-Q8",
            }
        )
    return out


def gemini_expected(
    prompt: int, candidates: int, thoughts: int | None, cached: int | None, finish: str, tool_prompt: int | None = None
) -> tuple:
    # input_tokens = promptTokenCount + toolUsePromptTokenCount (billed as input);
    # output_tokens = candidatesTokenCount + thoughtsTokenCount; total as reported.
    inputs, outputs = prompt + (tool_prompt or 0), candidates + (thoughts or 0)
    return (inputs, outputs, inputs + outputs, cached, thoughts, finish)


def gemini_sse(objects: list[dict]) -> list[list[str]]:
    return [[f"data: {json.dumps(o, ensure_ascii=False)}"] for o in objects]


def gemini_array(objects: list[dict]) -> bytes:
    """The JSON-array form (no alt=sse): pretty-printed elements separated by CRLF, comma, CRLF."""
    return ("[" + "\r\n,\r\n".join(json.dumps(o, indent=2, ensure_ascii=False) for o in objects) + "]").encode()


# --- AWS event stream ---------------------------------------------------------------------------


def es_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length, CRC32 of the two),
    headers (name length, name, type 7 = string, value length, value), payload, CRC32 of all before."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def es_event(kind: str, payload: dict) -> bytes:
    # Bedrock pads payloads with a "p" field of random length to hide the token lengths.
    padded = {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"[: 7 + len(kind)]}
    return es_frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, compact(padded).encode()
    )


def es_exception(kind: str, message: str) -> bytes:
    return es_frame(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        compact({"message": message}).encode(),
    )


def invoke_chunk(model_event: dict) -> bytes:
    return es_event("chunk", {"bytes": base64.b64encode(compact(model_event).encode()).decode()})


def converse_frames(
    pieces: list[str], input_: int, output: int, read: int | None, write: int | None, stop: str
) -> list[bytes]:
    frames = [es_event("messageStart", {"role": "assistant"})]
    frames += [es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces]
    frames += [es_event("contentBlockStop", {"contentBlockIndex": 0}), es_event("messageStop", {"stopReason": stop})]
    usage: dict[str, int] = {
        "inputTokens": input_,
        "outputTokens": output,
        "totalTokens": input_ + output + (read or 0) + (write or 0),
    }
    if read is not None:
        usage["cacheReadInputTokens"] = read
    if write is not None:
        usage["cacheWriteInputTokens"] = write
    frames.append(es_event("metadata", {"usage": usage, "metrics": {"latencyMs": 412}}))
    return frames


def converse_expected(input_: int, output: int, read: int | None, write: int | None, stop: str) -> tuple:
    # input_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens; totalTokens as sent.
    prompt = input_ + (read or 0) + (write or 0)
    return (prompt, output, prompt + output, read, None, stop)


def metrics(input_: int, output: int, **extra: int) -> dict:
    return {
        "inputTokenCount": input_,
        "outputTokenCount": output,
        "invocationLatency": 1203,
        "firstByteLatency": 402,
        **extra,
    }


def claude_invoke_events(pieces: list[str], input_: int, output: int, stop: str, **extra_metrics: int) -> list[dict]:
    """The Anthropic Messages events Bedrock wraps in `chunk` frames; message_stop carries the metrics."""
    message = {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_, "output_tokens": 1},
    }
    events: list[dict] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in pieces]
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": output},
        },
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics(input_, output, **extra_metrics)},
    ]
    return events


def reader_for(provider: Any, path: str, content_type: str) -> UsageReader:
    """The reader the stream tap would pick: classification from the request, then the answer's headers."""
    body = b'{"model": "m", "stream": true, "messages": []}'
    return provider.cost.usage_reader(provider.classify("POST", path, parse_json(body)), headers(content_type))


def openai_chat_reader() -> UsageReader:
    return reader_for(OPENAI, "/v1/chat/completions", SSE_TYPE)


def converse_reader() -> UsageReader:
    return reader_for(BEDROCK, f"/model/{CLAUDE}/converse-stream", EVENTSTREAM_TYPE)


def invoke_reader() -> UsageReader:
    return reader_for(BEDROCK, f"/model/{CLAUDE}/invoke-with-response-stream", EVENTSTREAM_TYPE)


# --- reader selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "path", "content_type", "kind"),
    [
        (OPENAI, "/v1/chat/completions", "text/event-stream", ChatStreamReader),
        (OPENAI, "/v1/chat/completions", "Text/Event-Stream; charset=utf-8", ChatStreamReader),
        (OPENAI, "/v1/responses", SSE_TYPE, ResponsesStreamReader),
        (OPENAI, "/v1/chat/completions", "application/json", WholeBodyReader),
        (ANTHROPIC, "/v1/messages", SSE_TYPE, MessagesStreamReader),
        (ANTHROPIC, "/v1/chat/completions", SSE_TYPE, ChatStreamReader),
        (ANTHROPIC, "/v1/messages", "application/json", WholeBodyReader),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", SSE_TYPE, GenerateStreamReader),
        (
            GEMINI,
            "/v1/models/gemini-2.5-flash:streamGenerateContent",
            "application/json; charset=UTF-8",
            GenerateArrayReader,
        ),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:generateContent", "application/json", WholeBodyReader),
        # A chat's stream read by OpenAI's reader, counted as Gemini bills it (its thoughts as output).
        (GEMINI, "/v1beta/openai/chat/completions", SSE_TYPE, Counted),
        (GEMINI, "/v1beta/openai/responses", SSE_TYPE, ResponsesStreamReader),
        (BEDROCK, f"/model/{CLAUDE}/converse-stream", EVENTSTREAM_TYPE, EventStreamReader),
        (BEDROCK, f"/model/{CLAUDE}/invoke-with-response-stream", EVENTSTREAM_TYPE, EventStreamReader),
        (BEDROCK, f"/model/{CLAUDE}/converse", "application/json", WholeBodyReader),
        (BEDROCK, "/openai/v1/chat/completions", SSE_TYPE, ChatStreamReader),
    ],
)
def test_usage_reader_selection(provider: Any, path: str, content_type: str, kind: type) -> None:
    assert type(reader_for(provider, path, content_type)) is kind


def test_gemini_reader_follows_the_content_type() -> None:
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert type(reader_for(GEMINI, path, SSE_TYPE)) is GenerateStreamReader
    assert type(reader_for(GEMINI, path, "application/json")) is GenerateArrayReader


def test_openai_stream_reader_by_endpoint() -> None:
    assert type(stream_reader("responses")) is ResponsesStreamReader
    for endpoint in ("chat.completions", "completions", None):
        assert type(stream_reader(endpoint)) is ChatStreamReader


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/event-stream", True),
        ("TEXT/EVENT-STREAM", True),
        ("text/event-stream;charset=utf-8", True),
        (" text/event-stream ; charset=utf-8", True),
        ("text/event-streams", False),
        ("application/json", False),
        ("application/vnd.amazon.eventstream", False),
        ("", False),
    ],
)
def test_is_event_stream(value: str, expected: bool) -> None:
    assert is_event_stream(headers(value)) is expected


def test_is_event_stream_without_content_type() -> None:
    assert is_event_stream(Headers()) is False


# --- parse_sse_block ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"data: {}", SSEEvent(None, "{}")),
        (b'event: message_start\ndata: {"a":1}', SSEEvent("message_start", '{"a":1}')),
        (b"data:no-space", SSEEvent(None, "no-space")),
        (b"data:  two spaces", SSEEvent(None, " two spaces")),
        (b"data: a\ndata: b\ndata:", SSEEvent(None, "a\nb\n")),
        (b"data", SSEEvent(None, "")),
        (b": keep-alive\ndata: x", SSEEvent(None, "x")),
        (b"id: 7\nretry: 1000\nevent: ping\ndata: y\nunknown: z", SSEEvent("ping", "y")),
        (b"data: x: y: z", SSEEvent(None, "x: y: z")),
        (b"event: a\nevent: b\ndata: 1", SSEEvent("b", "1")),
        (b"data: caf\xc3\xa9 \xff", SSEEvent(None, "café \ufffd")),
        (b": only a comment", None),
        (b"event: ping", None),
        (b"", None),
    ],
)
def test_parse_sse_block(block: bytes, expected: SSEEvent | None) -> None:
    assert parse_sse_block(block) == expected


SSE_VALUE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)


@PROPERTY
@given(
    name=st.one_of(st.none(), SSE_VALUE.filter(lambda v: not v.startswith(" "))),
    values=st.lists(SSE_VALUE, min_size=1, max_size=4),
)
def test_parse_sse_block_keeps_data_exactly(name: str | None, values: list[str]) -> None:
    lines = ([f"event: {name}"] if name is not None else []) + [f"data: {v}" for v in values]
    assert parse_sse_block("\n".join(lines).encode()) == SSEEvent(name, "\n".join(values))


# --- SSEFramer ----------------------------------------------------------------------------------


SSE_LINE = st.one_of(
    SSE_VALUE.map(lambda v: f"data: {v}"),
    SSE_VALUE.map(lambda v: f"event: {v}"),
    SSE_VALUE.map(lambda v: f": {v}"),
    SSE_VALUE.map(lambda v: f"id:{v}"),
    SSE_VALUE.filter(bool),
)
SSE_BLOCKS = st.lists(st.lists(SSE_LINE, min_size=1, max_size=4), max_size=8)


@PROPERTY
@given(blocks=SSE_BLOCKS, eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_sse_framer_blocks_do_not_depend_on_splits_or_line_endings(
    blocks: list[list[str]], eol: str, how: tuple
) -> None:
    framer = SSEFramer()
    assert frames_of(framer, chunk(sse(blocks, eol), how)) == lf_blocks(blocks)
    assert framer.error is None


@pytest.mark.parametrize("eol", EOLS)
def test_sse_framer_one_byte_chunks(eol: str) -> None:
    blocks = anthropic_blocks(["Hello", TRICKY[0]], 10, 20, 30, 40, "end_turn")
    assert frames_of(SSEFramer(), bytewise(sse(blocks, eol))) == lf_blocks(blocks)


def test_sse_framer_crlf_split_between_chunks() -> None:
    blocks = openai_chat_blocks(["a", "b"], 1, 2, 0, 0, "stop", usage_with_choices=False)
    data = sse(blocks, "\r\n")
    # Cut between the CR and the LF of every CRLF, with and without empty chunks in between.
    cuts = [i for i in range(1, len(data)) if data[i - 1 : i + 1] == b"\r\n"]
    pieces = split_at(data, cuts)
    assert all(p.endswith(b"\r") for p in pieces[:-1])
    assert frames_of(SSEFramer(), pieces) == lf_blocks(blocks)
    with_empty = [x for p in pieces for x in (p, b"")]
    assert frames_of(SSEFramer(), with_empty) == lf_blocks(blocks)


@pytest.mark.parametrize(
    "feeds",
    [
        # "data: x\r\n\r\n" delivered as "data: x\r" | "\n\r" | "\n": one event, not two blank lines.
        pytest.param(
            [(b"data: x\r", []), (b"\n\r", [b"data: x"]), (b"\n", []), (b"data: y\r\r", [b"data: y"])],
            id="blank-line-end-split-as-cr-then-lf-cr-lf",
        ),
        # CR followed by LF is a single line end (CRLF), so no event is dispatched yet.
        pytest.param(
            [(b"data: x\r", []), (b"\n", []), (b"\r", [b"data: x"])],
            id="cr-then-lf-as-separate-line-ends-is-one-line-end",
        ),
        pytest.param(
            [
                (
                    b"\n\n\r\n: OPENROUTER PROCESSING\n\ndata: 1\n\n\n\ndata: 2\n",
                    [b": OPENROUTER PROCESSING", b"data: 1"],
                ),
                (b"\n", [b"data: 2"]),
            ],
            id="ignores-leading-blank-lines-and-keeps-comment-blocks",
        ),
        pytest.param(
            [(b"data: [DONE]", []), (b"\n", []), (b"\n", [b"data: [DONE]"])],
            id="holds-an-unfinished-event",
        ),
    ],
)
def test_sse_framer_gives_each_event_once_its_blank_line_ends(feeds: list[tuple[bytes, list[bytes]]]) -> None:
    """Each piece fed, and the events that piece completes."""
    framer = SSEFramer()
    assert [framer.feed(piece) for piece, _ in feeds] == [events for _, events in feeds]
    assert framer.error is None


def test_sse_framer_rejects_an_event_over_16_mib() -> None:
    assert framing.MAX_FRAME == 16 * 1024 * 1024
    framer = SSEFramer()
    assert framer.feed(b"data: ok\n\n") == [b"data: ok"]
    assert framer.feed(b"data: " + b"x" * framing.MAX_FRAME) == []
    assert framer.error == "server-sent event larger than 16 MiB"
    assert framer.feed(b"\n\ndata: later\n\n") == []


def test_sse_framer_cap_is_on_what_is_buffered() -> None:
    # The cap is on what is buffered, not on an event that arrives complete.
    big = b"data: " + b"y" * 1000
    framer = SSEFramer()
    assert framer.feed(big + b"\n\n") == [big]
    assert framer.error is None


@pytest.mark.parametrize("eol", EOLS)
def test_sse_framer_cap_with_small_max_frame(monkeypatch: pytest.MonkeyPatch, eol: str) -> None:
    monkeypatch.setattr(framing.bounds, "MAX_FRAME", 64)
    framer = SSEFramer()
    small = [["data: small"]]
    big = [["data: " + "z" * 200]]
    out = frames_of(framer, [sse(small, eol), *list(chunk(sse(big + small, eol), ("every", 10)))])
    assert out == [b"data: small"]
    assert framer.error is not None


@PROPERTY
@given(blocks=SSE_BLOCKS, eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_sse_framer_regions_hold_exactly_the_complete_events(blocks: list[list[str]], eol: str, how: tuple) -> None:
    framer = SSEFramer()
    regions = [framer.feed_region(p) for p in chunk(sse(blocks, eol), how)]
    assert all(r == b"" or r.endswith(b"\n\n") for r in regions)
    assert split_events(b"".join(regions)) == lf_blocks(blocks)


# --- SSEEventFilter -----------------------------------------------------------------------------


SSE_NOISE = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"data: x", b"\xff\xfe", b": c", b"event: e"]), max_size=200).map(
        b"".join
    ),
)


@FUZZ
@given(data=SSE_NOISE, how=CHUNKINGS)
def test_sse_event_filter_keeping_everything_forwards_every_byte(data: bytes, how: tuple) -> None:
    f = SSEEventFilter(lambda event: event)
    assert b"".join(f.feed(p) for p in chunk(data, how)) + f.flush() == data


MARK = "\u27e6drop\u27e7"


@PROPERTY
@given(
    blocks=SSE_BLOCKS.filter(lambda bs: all(MARK not in line for b in bs for line in b)),
    eol=st.sampled_from(EOLS),
    tail=st.lists(SSE_LINE.filter(lambda line: MARK not in line), max_size=2),
    data=st.data(),
)
def test_sse_event_filter_drops_whole_events_byte_for_byte(
    blocks: list[list[str]], eol: str, tail: list[str], data: st.DataObject
) -> None:
    dropped = data.draw(st.sets(st.integers(0, max(len(blocks) - 1, 0))), label="dropped") if blocks else set()
    blocks = [[*b, f"data: {MARK}"] if i in dropped else b for i, b in enumerate(blocks)]
    raws = [(eol.join(lines) + eol + eol).encode() for lines in blocks]
    if eol == "\r" and blocks and not tail:
        tail = ["data: [DONE]"]  # a stream's last CR may be half a CRLF: only what follows settles it
    rest = eol.join(tail).encode()  # an unfinished event at the end: forwarded by flush()
    seen: list[bytes] = []

    def drop(event: bytes) -> bytes:
        seen.append(event)
        return b"" if MARK.encode() in event else event

    f = SSEEventFilter(drop)
    out = b"".join(f.feed(p) for p in chunk(b"".join(raws) + rest, data.draw(CHUNKINGS, label="how")))
    assert out == b"".join(r for i, r in enumerate(raws) if i not in dropped)
    assert seen == raws  # each event judged once, whole, with its own line ends
    assert f.flush() == rest


def test_sse_event_filter_forwards_a_last_event_held_for_its_cr_at_flush() -> None:
    f = SSEEventFilter(lambda event: event)
    assert f.feed(b"data: 1\r\rdata: 2\r\r") == b"data: 1\r\r"
    assert f.flush() == b"data: 2\r\r"


def test_sse_event_filter_holds_a_trailing_cr() -> None:
    f = SSEEventFilter(lambda event: b"" if b"usage" in event else event)
    assert f.feed(b"data: 1\r\n\r") == b""
    assert f.feed(b"\ndata: usage\r\n\r\ndata: [DONE]\r\n\r\n") == b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n"
    assert f.flush() == b""


# --- OpenAI chat completions --------------------------------------------------------------------


CHAT_FINISH = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])


@st.composite
def chat_streams(draw: st.DrawFn) -> tuple[list[list[str]], tuple]:
    prompt, completion = draw(COUNT), draw(COUNT)
    cached, reasoning = draw(st.integers(0, prompt)), draw(st.integers(0, completion))
    finish = draw(CHAT_FINISH)
    blocks = openai_chat_blocks(draw(PIECES), prompt, completion, cached, reasoning, finish, draw(st.booleans()))
    return blocks, (prompt, completion, prompt + completion, cached, reasoning, finish)


@PROPERTY
@given(stream=chat_streams(), eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_openai_chat_stream_usage_however_split(stream: tuple, eol: str, how: tuple) -> None:
    blocks, expected = stream
    data = sse(blocks, eol)
    reader = openai_chat_reader()
    assert usage_tuple(read(reader, chunk(data, how))) == expected
    assert reader.error is None
    assert frames_of(SSEFramer(), chunk(data, how)) == lf_blocks(blocks)


@pytest.mark.parametrize("usage_with_choices", [False, True])
@pytest.mark.parametrize("eol", EOLS)
def test_openai_chat_stream_exact(usage_with_choices: bool, eol: str) -> None:
    blocks = openai_chat_blocks(["Hello", "!", " How can I help?"], 19, 10, 4, 2, "stop", usage_with_choices)
    data = sse(blocks, eol)
    assert blocks[-1] == ["data: [DONE]"]
    if not usage_with_choices:
        assert '"choices":[],"usage":{' in blocks[-2][0]
    for pieces in ([data], bytewise(data)):
        reader = openai_chat_reader()
        usage = read(reader, pieces)
        assert usage_tuple(usage) == (19, 10, 29, 4, 2, "stop")
        assert usage.service_tier == "default"  # the tier it ran at, priced by
        assert reader.error is None


def test_openai_chat_stream_without_usage_has_finish_reason_only() -> None:
    blocks = [*openai_chat_blocks(["Hi"], 1, 1, 0, 0, "length", usage_with_choices=False)[:-2], ["data: [DONE]"]]
    assert usage_tuple(read(openai_chat_reader(), [sse(blocks)])) == (None, None, None, None, None, "length")


def test_openai_chat_stream_cut_before_the_end() -> None:
    blocks = openai_chat_blocks(["Hi", "there"], 5, 6, 0, 0, "stop", usage_with_choices=False)
    data = sse(blocks)
    cut = data.index(b'"choices":[],"usage":{')
    reader = openai_chat_reader()
    assert usage_tuple(read(reader, [data[:cut]])) == (None, None, None, None, None, "stop")
    assert reader.error is None


GROQ = PROVIDERS["groq"]


@st.composite
def groq_streams(draw: st.DrawFn) -> tuple[list[list[str]], tuple]:
    prompt, completion, finish = draw(COUNT), draw(COUNT), draw(CHAT_FINISH)
    blocks = groq_chat_blocks(draw(PIECES), prompt, completion, finish, asked=draw(st.booleans()))
    return blocks, (prompt, completion, prompt + completion, None, None, finish)


@PROPERTY
@given(stream=groq_streams(), eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_groq_stream_usage_however_split_asked_for_or_not(stream: tuple, eol: str, how: tuple) -> None:
    """Unasked, Groq reports a stream's usage in its last chunk's `x_groq.usage` only; asked, there
    and in `usage` too: counted once either way."""
    blocks, expected = stream
    reader = reader_for(GROQ, "/openai/v1/chat/completions", SSE_TYPE)
    assert usage_tuple(read(reader, chunk(sse(blocks, eol), how))) == expected
    assert reader.error is None


def test_a_groq_stream_read_for_a_translation_reports_its_usage_once() -> None:
    for asked in (False, True):
        data = sse(groq_chat_blocks(["Ol", "á!"], 20, 4, "stop", asked))
        reader = ChatEventReader()
        usage = [e.usage for e in reader.feed(data) + reader.end() if isinstance(e, UsageReported)]
        assert usage and all((u.input_tokens, u.output_tokens) == (20, 4) for u in usage)


# --- OpenAI Responses API -----------------------------------------------------------------------


@st.composite
def responses_streams(draw: st.DrawFn) -> tuple[list[list[str]], tuple]:
    input_, output = draw(COUNT), draw(COUNT)
    cached, reasoning = draw(st.integers(0, input_)), draw(st.integers(0, output))
    reason = draw(st.sampled_from([None, "max_output_tokens", "content_filter"]))
    blocks = responses_blocks(draw(PIECES), input_, output, cached, reasoning, reason)
    return blocks, (input_, output, input_ + output, cached, reasoning, reason or "completed")


@PROPERTY
@given(stream=responses_streams(), eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_openai_responses_stream_usage_however_split(stream: tuple, eol: str, how: tuple) -> None:
    blocks, expected = stream
    reader = reader_for(OPENAI, "/v1/responses", SSE_TYPE)
    assert usage_tuple(read(reader, chunk(sse(blocks, eol), how))) == expected
    assert reader.error is None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (None, (36, 87, 123, 10, 20, "completed")),
        ("max_output_tokens", (36, 87, 123, 10, 20, "max_output_tokens")),
    ],
)
def test_openai_responses_stream_exact(reason: str | None, expected: tuple) -> None:
    blocks = responses_blocks(["Once", " upon", " a time"], 36, 87, 10, 20, reason)
    assert blocks[-1][0] == f"event: response.{'incomplete' if reason else 'completed'}"
    data = sse(blocks)
    for pieces in ([data], bytewise(data)):
        usage = read(reader_for(OPENAI, "/v1/responses", SSE_TYPE), pieces)
        assert (usage_tuple(usage), usage.service_tier) == (expected, "flex")


def test_openai_responses_failed_event() -> None:
    failed = {
        "type": "response.failed",
        "sequence_number": 3,
        "response": {
            "id": "resp_1",
            "status": "failed",
            "error": {"code": "server_error", "message": "x"},
            "incomplete_details": None,
            "usage": None,
        },
    }
    data = sse([["event: response.failed", f"data: {compact(failed)}"]])
    assert usage_tuple(read(ResponsesStreamReader(), [data])) == (None, None, None, None, None, "failed")


def test_openai_responses_stream_cut_before_completion_has_no_usage() -> None:
    blocks = responses_blocks(["a"], 1, 2, 0, 0, None)[:-1]
    reader = ResponsesStreamReader()
    assert usage_tuple(read(reader, [sse(blocks)])) == (None,) * 6
    assert reader.error is None


# --- Anthropic Messages -------------------------------------------------------------------------


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[list[list[str]], tuple, int]:
    input_, read_, write, output = draw(COUNT), draw(COUNT), draw(COUNT), draw(COUNT)
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]))
    blocks = anthropic_blocks(draw(PIECES), input_, read_, write, output, stop, delta_has_input=draw(st.booleans()))
    # input_tokens = input + cache reads + cache writes; cached_tokens = cache reads.
    prompt = input_ + read_ + write
    return blocks, (prompt, output, prompt + output, read_, None, stop), write


@PROPERTY
@given(stream=anthropic_streams(), eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_anthropic_stream_usage_however_split(stream: tuple, eol: str, how: tuple) -> None:
    blocks, expected, write = stream
    data = sse(blocks, eol)
    reader = reader_for(ANTHROPIC, "/v1/messages", SSE_TYPE)
    usage = read(reader, chunk(data, how))
    assert (usage_tuple(usage), usage.cache_write_tokens) == (expected, write)
    assert reader.error is None
    assert frames_of(SSEFramer(), chunk(data, how)) == lf_blocks(blocks)


@pytest.mark.parametrize("eol", EOLS)
def test_anthropic_stream_exact(eol: str) -> None:
    blocks = anthropic_blocks(["Hello", "!"], 25, 2000, 100, 15, "end_turn")
    assert blocks[0][0] == "event: message_start" and blocks[-1][0] == "event: message_stop"
    data = sse(blocks, eol)
    for pieces in ([data], bytewise(data)):
        reader = MessagesStreamReader()
        usage = read(reader, pieces)
        assert (usage_tuple(usage), usage.cache_write_tokens) == ((2125, 15, 2140, 2000, None, "end_turn"), 100)
        assert (usage.service_tier, usage.speed) == ("standard", None)  # how it ran, priced by
        assert reader.error is None


def test_anthropic_message_delta_updates_input_counts_and_ignores_nulls() -> None:
    blocks = anthropic_blocks(["x"], 25, 0, 0, 15, "tool_use")
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 30, "cache_read_input_tokens": None, "output_tokens": 40},
    }
    blocks[-2] = ["event: message_delta", f"data: {compact(delta)}"]
    assert usage_tuple(read(MessagesStreamReader(), [sse(blocks)])) == (30, 40, 70, 0, None, "tool_use")


def test_anthropic_stream_without_cache_fields() -> None:
    start = {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 8, "output_tokens": 1}}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}}
    data = sse(
        [["event: message_start", f"data: {compact(start)}"], ["event: message_delta", f"data: {compact(delta)}"]]
    )
    assert usage_tuple(read(MessagesStreamReader(), [data])) == (8, 3, 11, None, None, "max_tokens")


def test_anthropic_error_event_keeps_usage_so_far() -> None:
    blocks = [*anthropic_blocks(["partial"], 25, 2000, 100, 15, "end_turn")[:4], ANTHROPIC_ERROR]
    reader = MessagesStreamReader()
    # message_start's counts (output_tokens 1) are what was seen before the error.
    assert usage_tuple(read(reader, chunk(sse(blocks), ("every", 7)))) == (2125, 1, 2126, 2000, None, None)


@pytest.mark.parametrize("pieces", ["whole", "bytewise"])
def test_anthropic_error_event_sets_error(pieces: str) -> None:
    data = sse([*anthropic_blocks(["partial"], 25, 2000, 100, 15, "end_turn")[:4], ANTHROPIC_ERROR])
    reader = MessagesStreamReader()
    usage = read(reader, [data] if pieces == "whole" else bytewise(data))  # the error is known by result()
    assert reader.error == "the stream ended in an error event: overloaded_error"
    assert usage_tuple(usage) == (2125, 1, 2126, 2000, None, None)


def test_anthropic_stream_error_from_the_framer_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing.bounds, "MAX_FRAME", 2048)
    blocks = anthropic_blocks(["x" * 5000], 25, 0, 0, 15, "end_turn")
    reader = MessagesStreamReader()
    usage = read(reader, chunk(sse(blocks), ("every", 100)))
    assert reader.error == "server-sent event larger than 16 MiB"
    assert usage_tuple(usage) == (25, 1, 26, 0, None, None)  # message_start was read before the cap hit
    reader.feed(b"data: more\n\n")
    assert reader.error == "server-sent event larger than 16 MiB"


# --- the SSE readers' window of latest events ---------------------------------------------------
# SSE readers keep only the latest SSEReader.WINDOW bytes of complete events (the first, possibly
# cut, event of the window dropped) and read the usage from there at the end.


def needed_tail(blocks: list[list[str]], marker: str) -> int:
    """Bytes (LF-normalised) from the first block holding `marker` to the stream's end."""
    lf = lf_blocks(blocks)
    first = next(i for i, b in enumerate(lf) if marker.encode() in b)
    return sum(len(b) + 2 for b in lf[first:])


FILLER = st.lists(st.text(min_size=50, max_size=400), min_size=5, max_size=30)


@PROPERTY
@given(
    kind=st.sampled_from(["chat", "responses", "anthropic"]),
    filler=FILLER,
    extra=st.integers(2, 400),
    eol=st.sampled_from(EOLS),
    how=CHUNKINGS,
)
def test_sse_readers_read_usage_from_a_window_that_holds_the_last_events(
    kind: str, filler: list[str], extra: int, eol: str, how: tuple
) -> None:
    if kind == "chat":
        blocks = openai_chat_blocks(filler, 19, 10, 4, 2, "length", usage_with_choices=False)
        reader, marker, expected = ChatStreamReader(), '"finish_reason":"', (19, 10, 29, 4, 2, "length")
    elif kind == "responses":
        blocks = responses_blocks(filler, 36, 87, 10, 20, None)
        reader, marker, expected = (
            ResponsesStreamReader(),
            '"type":"response.completed"',
            (36, 87, 123, 10, 20, "completed"),
        )
    else:
        blocks = anthropic_blocks(filler, 25, 2000, 100, 15, "end_turn")
        reader, marker, expected = (
            MessagesStreamReader(),
            '"type":"message_delta"',
            (2125, 15, 2140, 2000, None, "end_turn"),
        )
    reader.WINDOW = needed_tail(blocks, marker) + extra
    data = sse(blocks, eol)
    assert len(data) > reader.WINDOW + 1000  # the window is cut
    assert usage_tuple(read(reader, chunk(data, how))) == expected
    assert reader.error is None


@pytest.mark.parametrize("eol", EOLS)
def test_long_streams_keep_their_usage(eol: str) -> None:
    assert SSEReader.WINDOW == 64 * 1024
    pieces = ["word " * 40] * 2000  # 400 KB of text
    chat = sse(openai_chat_blocks(pieces, 19, 10, 4, 2, "stop", usage_with_choices=True), eol)
    assert usage_tuple(read(ChatStreamReader(), chunk(chat, ("every", 1500)))) == (19, 10, 29, 4, 2, "stop")
    anthropic = sse(anthropic_blocks(pieces, 25, 2000, 100, 15, "max_tokens"), eol)
    usage = read(MessagesStreamReader(), chunk(anthropic, ("every", 1500)))
    assert usage_tuple(usage) == (2125, 15, 2140, 2000, None, "max_tokens")
    responses = sse(responses_blocks(["word " * 40] * 200, 36, 87, 10, 20, None), eol)  # 40 KB of text
    assert usage_tuple(read(ResponsesStreamReader(), chunk(responses, ("every", 1500)))) == (
        36,
        87,
        123,
        10,
        20,
        "completed",
    )


def test_responses_stream_with_a_completed_event_over_64_kib() -> None:
    instructions = "You are a coding agent. Follow the repository's conventions. " * 800  # ~48 KB, as agents send
    tools = [
        {
            "type": "function",
            "name": f"tool_{i}",
            "description": "Runs a command in the sandbox. " * 20,
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
            "strict": False,
        }
        for i in range(20)
    ]
    blocks = responses_blocks(["token "] * 3000, 18_000, 3_000, 16_000, 0, None, instructions, tools)
    assert len(blocks[-1][1]) > SSEReader.WINDOW
    reader = reader_for(OPENAI, "/v1/responses", SSE_TYPE)
    assert usage_tuple(read(reader, chunk(sse(blocks), ("every", 4096)))) == (
        18_000,
        3_000,
        21_000,
        16_000,
        0,
        "completed",
    )


# --- Gemini -------------------------------------------------------------------------------------


@st.composite
def gemini_streams(draw: st.DrawFn) -> tuple[list[dict], tuple]:
    prompt, candidates = draw(COUNT), draw(COUNT)
    thoughts = draw(st.one_of(st.none(), COUNT))
    cached = draw(st.one_of(st.none(), st.integers(0, prompt)))
    finish = draw(st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "OTHER"]))
    tool_prompt = draw(st.one_of(st.none(), COUNT))
    objects = gemini_chunks(draw(PIECES), prompt, candidates, thoughts, cached, finish, tool_prompt)
    return objects, gemini_expected(prompt, candidates, thoughts, cached, finish, tool_prompt)


GEMINI_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


@PROPERTY
@given(stream=gemini_streams(), eol=st.sampled_from(EOLS), how=CHUNKINGS)
def test_gemini_sse_stream_usage_however_split(stream: tuple, eol: str, how: tuple) -> None:
    objects, expected = stream
    blocks = gemini_sse(objects)
    data = sse(blocks, eol)
    reader = reader_for(GEMINI, GEMINI_STREAM, SSE_TYPE)
    assert usage_tuple(read(reader, chunk(data, how))) == expected
    assert reader.error is None
    assert frames_of(SSEFramer(), chunk(data, how)) == lf_blocks(blocks)


@PROPERTY
@given(stream=gemini_streams(), how=CHUNKINGS)
def test_gemini_json_array_stream_usage_however_split(stream: tuple, how: tuple) -> None:
    objects, expected = stream
    data = gemini_array(objects)
    reader = reader_for(GEMINI, GEMINI_STREAM, "application/json; charset=UTF-8")
    assert usage_tuple(read(reader, chunk(data, how))) == expected
    assert reader.error is None
    framer = JSONArrayFramer()
    elements = frames_of(framer, chunk(data, how))
    assert [json.loads(e) for e in elements] == objects
    assert elements == frames_of(JSONArrayFramer(), [data])
    assert framer.error is None


def test_gemini_sse_stream_exact() -> None:
    objects = gemini_chunks(["The", " answer [is] {42}"], 9, 20, 31, 4, "STOP")
    data = sse(gemini_sse(objects), "\r\n")
    for pieces in ([data], bytewise(data)):
        reader = GenerateStreamReader()
        assert usage_tuple(read(reader, pieces)) == (9, 51, 60, 4, 31, "STOP")
        assert reader.error is None


def test_gemini_json_array_stream_exact() -> None:
    texts = ['say "hi" \\ [', ']} {\\"', "ok"]
    objects = gemini_chunks(texts, 12, 7, None, None, "MAX_TOKENS")
    data = gemini_array(objects)
    assert data.startswith(b"[{") and b"\r\n,\r\n" in data and data.endswith(b"}]")
    for pieces in ([data], bytewise(data)):
        framer = JSONArrayFramer()
        assert [json.loads(e) for e in frames_of(framer, pieces)] == objects
        assert framer.error is None
        reader = GenerateArrayReader()
        assert usage_tuple(read(reader, pieces)) == (12, 7, 19, None, None, "MAX_TOKENS")


def test_gemini_last_usage_metadata_counts_and_finish_reason_may_come_earlier() -> None:
    objects = [
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6},
        },
        {"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}},
    ]
    assert usage_tuple(read(GenerateArrayReader(), [gemini_array(objects)])) == (
        5,
        3,
        8,
        None,
        None,
        "STOP",
    )
    data = sse(gemini_sse(objects))
    assert usage_tuple(read(GenerateStreamReader(), [data])) == (5, 3, 8, None, None, "STOP")


class KeptChat(ChatStreamReader):
    """A chat reader that records the events it is given to keep."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[bytes] = []

    def keep(self, block: bytes) -> None:
        self.kept.append(block)
        super().keep(block)


def test_sse_readers_keep_the_newest_events_and_stop_once_they_have_what_they_read() -> None:
    # Two answers (n=2): index 1 finishes first, then index 0, then the usage chunk.
    blocks = openai_chat_blocks(["a", "b"], 19, 10, 4, 2, "stop", usage_with_choices=False)
    choice_1 = json.loads(blocks[1][0].removeprefix("data: "))
    choice_1["choices"] = [{"index": 1, "delta": {}, "logprobs": None, "finish_reason": "length"}]
    blocks.insert(2, [f"data: {compact(choice_1)}"])
    reader = KeptChat()
    assert usage_tuple(read(reader, [sse(blocks)])) == (19, 10, 29, 4, 2, "stop")
    usage_chunk, finish_chunk = lf_blocks(blocks[-2:-4:-1])
    assert reader.kept == [usage_chunk, finish_chunk]  # index 1's finish, older, is never searched


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        (b'{"usageMetadata":{"promptTokenCount":1}}', True),
        (b'{"usageMetadata" \r\n : {}}', True),
        (b'{"usageMetadata":{},"candidates":[{"content":{"parts":[{"text":"usageMetadata"}]}}]}', True),
        (b'{"candidates":[{"content":{"parts":[{"text":"\\"usageMetadata\\": 1"}]}}]}', False),
        (b'{"text":"usageMetadata","x":["usageMetadata"]}', False),
        (b'{"usageMetadataX":{}}', False),
    ],
)
def test_gemini_has_key_finds_the_key_from_the_end_whatever_text_holds(element: bytes, expected: bool) -> None:
    assert has_key(element, b'"usageMetadata"') is expected


# --- JSONArrayFramer ----------------------------------------------------------------------------


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(TRICKY),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(TRICKY), inner, max_size=4)
    ),
    max_leaves=12,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8) | st.sampled_from(TRICKY), JSON_VALUES, max_size=5)
ARRAY_ELEMENTS = st.lists(JSON_OBJECTS | st.lists(JSON_VALUES, max_size=4), max_size=6)
ARRAY_SEPARATORS = st.sampled_from([",", "\r\n,\r\n", " , ", ",\n", "\n,"])  # Gemini's: "\r\n,\r\n"
# A JSON array: its elements, each written with an indent, ASCII or not, and the separator between.
JSON_ARRAYS = {
    "objects": ARRAY_ELEMENTS,
    "indent": st.sampled_from([None, 1, 2]),
    "ascii_": st.booleans(),
    "separator": ARRAY_SEPARATORS,
}


@PROPERTY
@given(**JSON_ARRAYS, how=CHUNKINGS)
@pytest.mark.slow
def test_json_array_framer_elements_however_split(
    objects: list, indent: int | None, ascii_: bool, separator: str, how: tuple
) -> None:
    data = ("[" + separator.join(json.dumps(o, indent=indent, ensure_ascii=ascii_) for o in objects) + "]").encode()
    framer = JSONArrayFramer()
    elements = frames_of(framer, chunk(data, how))
    assert framer.error is None
    assert [json.loads(e) for e in elements] == objects
    assert elements == [json.dumps(o, indent=indent, ensure_ascii=ascii_).encode() for o in objects]


def test_json_array_framer_ignores_whitespace_around_and_stops_at_the_end() -> None:
    framer = JSONArrayFramer()
    assert framer.feed(b" \r\n[ ") == []
    assert framer.feed(b'{"a": "]"}') == [b'{"a": "]"}']
    assert framer.feed(b" ] trailing") == []
    assert framer.feed(b'[{"b": 1}]') == []
    assert framer.error is None


def test_json_array_framer_empty_array() -> None:
    framer = JSONArrayFramer()
    assert frames_of(framer, [b"[", b"]"]) == []
    assert framer.error is None


def test_json_array_framer_escape_split_across_chunks() -> None:
    framer = JSONArrayFramer()
    pieces = [b'[{"t": "a\\', b'"', b"b\\", b"\\", b'"}', b"]"]
    assert frames_of(framer, pieces) == [b'{"t": "a\\"b\\\\"}']
    assert json.loads(b'{"t": "a\\"b\\\\"}') == {"t": 'a"b\\'}
    assert framer.error is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"candidates": []}',  # an object, not an array
        b'hello [{"a": 1}]',
        b'"text"',
        b"]",
        b"}",
        b"\\",
        b"[1, 2]",  # scalars are not GenerateContentResponse elements
        b'["a"]',
        b"[{}]]",
        b"[{}}",
        b"[{\\}]",
    ],
)
def test_json_array_framer_errors(data: bytes) -> None:
    for pieces in ([data], bytewise(data)):
        framer = JSONArrayFramer()
        frames_of(framer, pieces)
        if data in (b"[{}]]",):
            assert framer.error is None  # the array ended; what follows is ignored
            continue
        assert framer.error is not None
        assert framer.feed(b'[{"a": 1}]') == []


def test_gemini_reader_on_a_non_array_body_is_an_error() -> None:
    reader = reader_for(GEMINI, GEMINI_STREAM, "application/json")
    usage = read(reader, [b'{"usageMetadata": {"promptTokenCount": 3}}'])
    assert reader.error == "the stream is not a JSON array"
    assert usage_tuple(usage) == (None,) * 6


def test_json_array_framer_cap_on_completed_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(framing.bounds, "MAX_FRAME", 100)
    framer = JSONArrayFramer()
    frames_of(framer, [b'[{"a": [' + b"[1], " * 10] + [b"[2], "] * 30)
    assert framer.error == "JSON array element larger than 16 MiB"
    assert framer.feed(b"]}]") == []


@pytest.mark.parametrize("opening", [b'[{"text": "', b'[{"n": '], ids=["in-string", "between-specials"])
def test_json_array_framer_caps_an_element_growing_without_brackets(
    monkeypatch: pytest.MonkeyPatch, opening: bytes
) -> None:
    monkeypatch.setattr(framing.bounds, "MAX_FRAME", 100)
    framer = JSONArrayFramer()
    filler = b"x" if b'"' in opening[-1:] else b"1"
    frames_of(framer, [opening] + [filler * 50] * 20)  # 1000 bytes of one element, never closed
    assert framer.error is not None


# --- AWS event stream ---------------------------------------------------------------------------


def test_es_frame_encoder_matches_botocore() -> None:
    payload = b'{"bytes":"eyJ0eXBlIjoicGluZyJ9"}'
    data = es_frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    messages = list(buffer)
    assert len(messages) == 1
    assert messages[0].headers == {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert messages[0].payload == payload
    assert messages[0].to_response_dict()["status_code"] == 200
    total, header_length = struct.unpack(">II", data[:8])
    assert total == len(data) and header_length == len(data) - 16 - len(payload)
    exception = EventStreamBuffer()
    exception.add_data(es_exception("modelStreamErrorException", "boom"))
    assert next(exception).to_response_dict()["status_code"] == 400


HEADER_NAME = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
ES_FRAMES = st.lists(
    st.tuples(st.dictionaries(HEADER_NAME, st.text(max_size=20), max_size=4), st.binary(max_size=200)), max_size=6
)


@PROPERTY
@given(frames=ES_FRAMES, how=CHUNKINGS)
def test_event_stream_framer_frames_however_split(frames: list[tuple[dict, bytes]], how: tuple) -> None:
    data = b"".join(es_frame(h, p) for h, p in frames)
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    assert [(m.headers, m.payload) for m in buffer] == frames  # the encoder is botocore-compatible
    framer = EventStreamFramer()
    assert frames_of(framer, chunk(data, how)) == [EventStreamFrame(h, p) for h, p in frames]
    assert framer.error is None


@PROPERTY
@given(frames=ES_FRAMES.filter(bool), data=st.data())
def test_event_stream_framer_any_flipped_byte_is_an_error(
    frames: list[tuple[dict, bytes]], data: st.DataObject
) -> None:
    encoded = [es_frame(h, p) for h, p in frames]
    stream = bytearray(b"".join(encoded))
    position = data.draw(st.integers(0, len(stream) - 1), label="position")
    stream[position] ^= data.draw(st.integers(1, 255), label="xor")
    broken_frame, start = 0, 0
    while start + len(encoded[broken_frame]) <= position:
        start += len(encoded[broken_frame])
        broken_frame += 1
    framer = EventStreamFramer()
    got = frames_of(framer, chunk(bytes(stream), data.draw(CHUNKINGS, label="how")))
    assert got == [EventStreamFrame(h, p) for h, p in frames[:broken_frame]]
    assert framer.error is not None and framer.error.startswith("broken AWS event stream: ")
    assert framer.feed(es_frame({}, b"after")) == []


@PROPERTY
@given(frames=ES_FRAMES, data=st.data())
def test_event_stream_framer_truncated_stream_gives_the_whole_frames(
    frames: list[tuple[dict, bytes]], data: st.DataObject
) -> None:
    encoded = [es_frame(h, p) for h, p in frames]
    stream = b"".join(encoded)
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    whole = 0
    while whole < len(encoded) and sum(map(len, encoded[: whole + 1])) <= cut:
        whole += 1
    framer = EventStreamFramer()
    assert frames_of(framer, chunk(stream[:cut], data.draw(CHUNKINGS, label="how"))) == [
        EventStreamFrame(h, p) for h, p in frames[:whole]
    ]
    assert framer.error is None  # nothing broken yet: the rest may still come


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("prelude", "broken AWS event stream: ChecksumMismatch"),
        ("prelude-crc", "broken AWS event stream: ChecksumMismatch"),
        ("payload", "broken AWS event stream: ChecksumMismatch"),
        ("message-crc", "broken AWS event stream: ChecksumMismatch"),
    ],
)
def test_event_stream_framer_flipped_crc_byte(where: str, error: str) -> None:
    good = es_event("messageStart", {"role": "assistant"})
    bad = bytearray(es_event("messageStop", {"stopReason": "end_turn"}))
    index = {"prelude": 1, "prelude-crc": 9, "payload": len(bad) - 6, "message-crc": len(bad) - 1}[where]
    bad[index] ^= 0x01
    framer = EventStreamFramer()
    assert [f.headers[":event-type"] for f in framer.feed(good + bytes(bad))] == ["messageStart"]
    assert framer.error == error


def test_event_stream_framer_oversized_prelude_is_an_error() -> None:
    prelude = struct.pack(">II", 30 * 1024 * 1024, 0)
    framer = EventStreamFramer()
    assert framer.feed(prelude + struct.pack(">I", zlib.crc32(prelude))) == []
    assert framer.error == "broken AWS event stream: InvalidPayloadLength"


def crc_valid_frame(raw_headers: bytes, payload: bytes = b"{}", total: int | None = None) -> bytes:
    """A frame whose CRCs are right but whose contents are not (hand-encoded headers, or a bad length)."""
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4 if total is None else total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


@pytest.mark.parametrize(
    "data",
    [
        crc_valid_frame(bytes([1]) + b"a" + bytes([42]) + b"xx"),  # header value type 42 does not exist
        crc_valid_frame(bytes([1]) + b"\xff" + b"\x00"),  # header name not UTF-8
        crc_valid_frame(bytes([5]) + b"ab"),  # header name longer than the headers section
        crc_valid_frame(b"", b"", total=0)[:12] + b"\x00" * 8,  # total length 0
    ],
    ids=["unknown-header-type", "non-utf8-name", "truncated-header", "total-length-0"],
)
def test_event_stream_framer_crc_valid_garbage_is_an_error_not_an_exception(data: bytes) -> None:
    framer = EventStreamFramer()
    assert framer.feed(data) == []
    assert framer.error is not None


# --- Bedrock ConverseStream ---------------------------------------------------------------------


@st.composite
def converse_streams(draw: st.DrawFn) -> tuple[list[bytes], tuple, int | None]:
    input_, output = draw(COUNT), draw(COUNT)
    read_, write = draw(st.one_of(st.none(), COUNT)), draw(st.one_of(st.none(), COUNT))
    stop = draw(st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "guardrail_intervened"]))
    frames = converse_frames(draw(PIECES), input_, output, read_, write, stop)
    return frames, converse_expected(input_, output, read_, write, stop), write


@PROPERTY
@given(stream=converse_streams(), how=CHUNKINGS)
def test_bedrock_converse_stream_usage_however_split(stream: tuple, how: tuple) -> None:
    frames, expected, write = stream
    data = b"".join(frames)
    reader = converse_reader()
    usage = read(reader, chunk(data, how))
    assert (usage_tuple(usage), usage.cache_write_tokens) == (expected, write)
    assert reader.error is None
    got = frames_of(EventStreamFramer(), chunk(data, how))
    assert [f.headers[":event-type"] for f in got][-2:] == ["messageStop", "metadata"]
    assert len(got) == len(frames)


def test_bedrock_converse_stream_names_its_service_tier_and_latency_in_its_metadata() -> None:
    frames = converse_frames(["Hello"], 11, 7, None, None, "end_turn")
    ran = {"serviceTier": {"type": "flex"}, "performanceConfig": {"latency": "optimized"}}
    frames[-1] = es_event("metadata", {"usage": {"inputTokens": 11, "outputTokens": 7}, **ran})
    usage = read(converse_reader(), [b"".join(frames)])
    assert (usage.service_tier, usage.speed, usage.input_tokens) == ("flex", "optimized", 11)


def test_bedrock_converse_stream_exact() -> None:
    data = b"".join(converse_frames(["Hello", " world"], 11, 7, 1024, 32, "end_turn"))
    for pieces in ([data], bytewise(data)):
        reader = converse_reader()
        usage = read(reader, pieces)
        assert (usage_tuple(usage), usage.cache_write_tokens) == ((1067, 7, 1074, 1024, None, "end_turn"), 32)
        assert reader.error is None


def test_bedrock_converse_stream_without_cache_fields() -> None:
    data = b"".join(converse_frames(["Hi"], 11, 7, None, None, "max_tokens"))
    assert usage_tuple(read(converse_reader(), [data])) == (11, 7, 18, None, None, "max_tokens")


@pytest.mark.parametrize("kind", ["modelStreamErrorException", "throttlingException", "internalServerException"])
def test_bedrock_converse_exception_frame(kind: str) -> None:
    frames = converse_frames(["partial"], 11, 7, None, None, "end_turn")[:-1]  # through messageStop
    data = b"".join(frames) + es_exception(kind, "The model stream broke.")
    for pieces in ([data], bytewise(data)):
        reader = converse_reader()
        usage = read(reader, pieces)
        assert reader.error == f"the stream ended in an exception: {kind}"
        assert usage_tuple(usage) == (None, None, None, None, None, "end_turn")


def test_bedrock_error_message_type() -> None:
    frame = es_frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "x"}, b"")
    reader = converse_reader()
    read(reader, [b"".join(converse_frames(["a"], 1, 2, None, None, "end_turn")), frame])
    assert reader.error == "the stream ended in an exception: InternalFailure"
    assert usage_tuple(reader.result()) == (1, 2, 3, None, None, "end_turn")


def test_bedrock_reader_reads_the_headers_of_the_frames_it_reads() -> None:
    """Only the frames read from the newest have their headers read: garbage in an older frame's
    headers (its CRCs right) does not count; in the last frame's, it is an error, and the frames
    before it are read still."""
    garbage = crc_valid_frame(bytes([1]) + b"a" + bytes([42]) + b"xx")  # header value type 42
    usage_frames = converse_frames(["a"], 1, 2, None, None, "end_turn")
    reader = converse_reader()
    assert usage_tuple(read(reader, [garbage + b"".join(usage_frames)])) == (1, 2, 3, None, None, "end_turn")
    assert reader.error is None
    reader = converse_reader()
    assert usage_tuple(read(reader, [b"".join(usage_frames) + garbage])) == (1, 2, 3, None, None, "end_turn")
    assert reader.error == "broken AWS event stream: KeyError"


def test_bedrock_converse_broken_crc_stops_reading() -> None:
    frames = converse_frames(["a", "b"], 11, 7, None, None, "end_turn")
    broken = bytearray(frames[1])
    broken[-1] ^= 0xFF
    reader = converse_reader()
    usage = read(reader, [frames[0], bytes(broken), *frames[2:]])
    assert reader.error == "broken AWS event stream: ChecksumMismatch"
    assert usage_tuple(usage) == (None,) * 6


# --- Bedrock InvokeModelWithResponseStream ------------------------------------------------------


@st.composite
def claude_invoke_streams(draw: st.DrawFn) -> tuple[list[bytes], tuple]:
    input_, output = draw(COUNT), draw(COUNT)
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use"]))
    frames = [invoke_chunk(e) for e in claude_invoke_events(draw(PIECES), input_, output, stop)]
    return frames, (input_, output, input_ + output, None, None, stop)


@PROPERTY
@given(stream=claude_invoke_streams(), how=CHUNKINGS)
def test_bedrock_invoke_stream_usage_however_split(stream: tuple, how: tuple) -> None:
    frames, expected = stream
    data = b"".join(frames)
    reader = invoke_reader()
    assert usage_tuple(read(reader, chunk(data, how))) == expected
    assert reader.error is None
    got = frames_of(EventStreamFramer(), chunk(data, how))
    assert {f.headers[":event-type"] for f in got} == {"chunk"} and len(got) == len(frames)


def test_bedrock_invoke_stream_exact() -> None:
    events = claude_invoke_events(["Hello", "!"], 14, 9, "end_turn")
    data = b"".join(invoke_chunk(e) for e in events)
    wrapper = json.loads(frames_of(EventStreamFramer(), [data])[-1].payload)
    assert "amazon-bedrock-invocationMetrics" in json.loads(base64.b64decode(wrapper["bytes"]))
    for pieces in ([data], bytewise(data)):
        reader = invoke_reader()
        assert usage_tuple(read(reader, pieces)) == (14, 9, 23, None, None, "end_turn")
        assert reader.error is None


def test_bedrock_invoke_stream_cache_metrics() -> None:
    """inputTokenCount counts neither cache reads nor writes (as Claude's own input_tokens); the
    audit's input_tokens counts every prompt token."""
    events = claude_invoke_events(["x"], 14, 9, "end_turn", cacheReadInputTokenCount=1000, cacheWriteInputTokenCount=5)
    usage = read(invoke_reader(), [b"".join(invoke_chunk(e) for e in events)])
    assert usage_tuple(usage) == (1019, 9, 1028, 1000, None, "end_turn")
    assert usage.cache_write_tokens == 5


@pytest.mark.parametrize(
    ("model_events", "expected"),
    [
        (  # Meta Llama
            [
                {"generation": "Hi", "prompt_token_count": 12, "generation_token_count": 1, "stop_reason": None},
                {
                    "generation": "",
                    "prompt_token_count": None,
                    "generation_token_count": 30,
                    "stop_reason": "stop",
                    "amazon-bedrock-invocationMetrics": metrics(12, 30),
                },
            ],
            (12, 30, 42, None, None, "stop"),
        ),
        (  # Amazon Titan Text
            [
                {
                    "outputText": "Hi",
                    "index": 0,
                    "totalOutputTextTokenCount": 1,
                    "completionReason": None,
                    "inputTextTokenCount": 6,
                },
                {
                    "outputText": "",
                    "index": 0,
                    "totalOutputTextTokenCount": 8,
                    "completionReason": "FINISH",
                    "inputTextTokenCount": 6,
                    "amazon-bedrock-invocationMetrics": metrics(6, 8),
                },
            ],
            (6, 8, 14, None, None, "FINISH"),
        ),
        (  # Mistral
            [
                {"outputs": [{"text": "Hi", "stop_reason": None}]},
                {"outputs": [{"text": "", "stop_reason": "length"}], "amazon-bedrock-invocationMetrics": metrics(3, 4)},
            ],
            (3, 4, 7, None, None, "length"),
        ),
        (  # OpenAI-format models (gpt-oss) on the invoke API
            [
                {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
                {
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "amazon-bedrock-invocationMetrics": metrics(20, 2),
                },
            ],
            (20, 2, 22, None, None, "stop"),
        ),
    ],
    ids=["llama", "titan", "mistral", "gpt-oss"],
)
def test_bedrock_invoke_stream_other_model_families(model_events: list[dict], expected: tuple) -> None:
    data = b"".join(invoke_chunk(e) for e in model_events)
    for pieces in ([data], bytewise(data)):
        assert usage_tuple(read(invoke_reader(), pieces)) == expected


def test_bedrock_invoke_stream_nova_finish_reason() -> None:
    model_events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hi"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {"usage": {"inputTokens": 9, "outputTokens": 100}, "metrics": {}, "trace": {}},
            "amazon-bedrock-invocationMetrics": metrics(9, 100),
        },
    ]
    usage = read(invoke_reader(), [b"".join(invoke_chunk(e) for e in model_events)])
    assert usage_tuple(usage) == (9, 100, 109, None, None, "end_turn")


def test_bedrock_invoke_exception_keeps_usage_so_far() -> None:
    events = claude_invoke_events(["partial"], 14, 9, "max_tokens")[:-1]  # up to message_delta
    data = b"".join(invoke_chunk(e) for e in events) + es_exception("modelStreamErrorException", "broke")
    reader = invoke_reader()
    usage = read(reader, chunk(data, ("every", 5)))
    assert reader.error == "the stream ended in an exception: modelStreamErrorException"
    assert usage_tuple(usage) == (None, None, None, None, None, "max_tokens")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"bytes": 5}',
        b'{"bytes": "!!!not base64"}',
        b'{"bytes": "\xc3\xa9"}',
        b'{"bytes": "' + base64.b64encode(b"[1, 2]") + b'"}',
        b'{"bytes": "' + base64.b64encode(b"\xff\xfe") + b'"}',
    ],
)
def test_bedrock_invoke_bad_chunk_payloads_are_skipped(payload: bytes) -> None:
    bad = es_frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)
    events = claude_invoke_events(["x"], 14, 9, "end_turn")
    data = bad + b"".join(invoke_chunk(e) for e in events)
    reader = invoke_reader()
    assert usage_tuple(read(reader, [data])) == (14, 9, 23, None, None, "end_turn")
    assert reader.error is None


def test_bedrock_converse_reader_ignores_invoke_chunks_and_vice_versa() -> None:
    invoke_data = b"".join(invoke_chunk(e) for e in claude_invoke_events(["x"], 14, 9, "end_turn"))
    converse_data = b"".join(converse_frames(["x"], 11, 7, None, None, "end_turn"))
    assert usage_tuple(read(converse_reader(), [invoke_data])) == (None,) * 6
    assert usage_tuple(read(invoke_reader(), [converse_data])) == (None,) * 6


# --- corrupt input: an error result, never an exception -----------------------------------------


READERS: dict[str, Callable[[], UsageReader]] = {
    "openai-chat": ChatStreamReader,
    "openai-responses": ResponsesStreamReader,
    "anthropic": MessagesStreamReader,
    "gemini-sse": GenerateStreamReader,
    "gemini-json": GenerateArrayReader,
    "bedrock-converse": lambda: EventStreamReader(invoke=False),
    "bedrock-invoke": lambda: EventStreamReader(invoke=True),
}

VALID: dict[str, bytes] = {
    "openai-chat": sse(openai_chat_blocks(["a", "b"], 3, 4, 1, 0, "stop", usage_with_choices=False)),
    "openai-responses": sse(responses_blocks(["a"], 3, 4, 1, 0, None)),
    "anthropic": sse(anthropic_blocks(["a"], 3, 4, 5, 6, "end_turn")),
    "gemini-sse": sse(gemini_sse(gemini_chunks(["a", "b"], 3, 4, 5, 1, "STOP")), "\r\n"),
    "gemini-json": gemini_array(gemini_chunks(["a", "b"], 3, 4, 5, 1, "STOP")),
    "bedrock-converse": b"".join(converse_frames(["a"], 3, 4, 5, 6, "end_turn")),
    "bedrock-invoke": b"".join(invoke_chunk(e) for e in claude_invoke_events(["a"], 3, 4, "end_turn")),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_valid_stream_fixtures_read_cleanly(name: str) -> None:
    reader = READERS[name]()
    usage = read(reader, [VALID[name]])
    assert reader.error is None and usage.input_tokens is not None and usage.finish_reason is not None


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.binary(max_size=3000), how=CHUNKINGS)
def test_readers_never_raise_on_random_bytes(name: str, data: bytes, how: tuple) -> None:
    reader = READERS[name]()
    usage = read(reader, chunk(data, how))
    assert_sane(usage)
    assert reader.error is None or isinstance(reader.error, str)
    if name.startswith("bedrock") and len(data) >= 12:
        assert reader.error is not None  # the prelude CRC cannot match by chance


MUTATION = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 2**31), st.integers(0, 255))


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=6), how=CHUNKINGS)
@pytest.mark.slow
def test_readers_never_raise_on_damaged_streams(name: str, mutations: list[tuple[str, int, int]], how: tuple) -> None:
    data = bytearray(VALID[name])
    for op, where, value in mutations:
        i = where % (len(data) + 1)
        if op == "insert":
            data[i:i] = bytes([value])
        elif data and i < len(data):
            if op == "flip":
                data[i] ^= value or 1
            else:
                del data[i]
    reader = READERS[name]()
    assert_sane(read(reader, chunk(bytes(data), how)))
    assert reader.error is None or isinstance(reader.error, str)


@pytest.mark.parametrize("framer", [SSEFramer, JSONArrayFramer, EventStreamFramer])
@FUZZ
@given(data=st.binary(max_size=3000), how=CHUNKINGS)
def test_framers_never_raise_on_random_bytes(framer: type, data: bytes, how: tuple) -> None:
    f = framer()
    frames_of(f, chunk(data, how))
    assert f.error is None or isinstance(f.error, str)


@FUZZ
@given(data=st.binary(max_size=500))
def test_parse_sse_block_never_raises(data: bytes) -> None:
    event = parse_sse_block(data)
    assert event is None or isinstance(event.data, str)


@pytest.mark.parametrize("name", sorted(READERS))
def test_readers_ignore_empty_chunks(name: str) -> None:
    pieces = [x for p in chunk(VALID[name], ("every", 13)) for x in (b"", p)]
    assert usage_tuple(read(READERS[name](), pieces)) == usage_tuple(read(READERS[name](), [VALID[name]]))


def test_whole_body_reader_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WholeBodyReader, "LIMIT", 10)
    seen: list[bytes | None] = []
    reader = WholeBodyReader(lambda body: seen.append(body) or Usage(input_tokens=1))
    reader.feed(b"12345")
    reader.feed(b"67890")
    assert reader.error is None
    reader.result()
    reader.feed(b"x")
    assert reader.error == "answer larger than 16 MiB, not read for usage"
    reader.feed(b"y")
    reader.result()
    assert seen == [b"1234567890", None]


# --- Decompressor -------------------------------------------------------------------------------


def compress(encoding: str, data: bytes) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    return zstd.compress(data)


def compress_flushed(encoding: str, pieces: list[bytes]) -> list[bytes]:
    """As a streaming server compresses: one compressor, flushed after every event; then finished."""
    out: list[bytes] = []
    if encoding in ("gzip", "x-gzip", "deflate"):
        z = zlib.compressobj(wbits=zlib.MAX_WBITS | (16 if "gzip" in encoding else 0))
        out = [z.compress(p) + z.flush(zlib.Z_SYNC_FLUSH) for p in pieces]
        out.append(z.flush())
    elif encoding == "br":
        b = brotli.Compressor()
        out = [b.process(p) + b.flush() for p in pieces]
        out.append(b.finish())
    else:
        c = zstd.ZstdCompressor()
        out = [c.compress(p, c.FLUSH_BLOCK) for p in pieces]
        out.append(c.flush())
    return out


ENCODINGS = ["gzip", "x-gzip", "deflate", "br", "zstd"]
BODIES = st.one_of(
    st.binary(max_size=4000),
    st.sampled_from(sorted(VALID.values())),
    st.text(max_size=2000).map(str.encode),
)


@pytest.mark.parametrize("encoding", ENCODINGS)
@DECOMPRESS
@given(body=BODIES, how=CHUNKINGS)
def test_decompressor_round_trip_however_split(encoding: str, body: bytes, how: tuple) -> None:
    d = Decompressor(encoding)
    assert b"".join(d.feed(p) for p in chunk(compress(encoding, body), how)) == body


@pytest.mark.parametrize("encoding", ENCODINGS)
@DECOMPRESS
@given(pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=8), data=st.data())
@pytest.mark.slow
def test_decompressor_yields_each_flushed_event_as_it_arrives(
    encoding: str, pieces: list[bytes], data: st.DataObject
) -> None:
    d = Decompressor(encoding)
    out = b""
    for i, part in enumerate(compress_flushed(encoding, pieces)):
        for p in chunk(part, data.draw(CHUNKINGS, label=f"how{i}")):
            out += d.feed(p)
        assert out == b"".join(pieces[: i + 1])  # nothing held back once the server flushed


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompressor_one_byte_chunks_of_a_real_stream(encoding: str) -> None:
    body = VALID["anthropic"] * 3
    d = Decompressor(encoding)
    assert b"".join(d.feed(p) for p in bytewise(compress(encoding, body))) == body
    reader = MessagesStreamReader()
    d = Decompressor(encoding)
    for p in bytewise(compress(encoding, VALID["anthropic"])):
        reader.feed(d.feed(p))
    assert usage_tuple(reader.result()) == (12, 6, 18, 4, None, "end_turn")


@pytest.mark.parametrize("encoding", [" GZIP ", "Br", "ZSTD", "Deflate"])
def test_decompressor_encoding_names_are_case_insensitive(encoding: str) -> None:
    name = encoding.strip().lower()
    assert Decompressor(encoding).feed(compress(name, b"abc")) == b"abc"


@pytest.mark.parametrize("encoding", ["compress", "identity", "gzip, br", ""])
def test_decompressor_unknown_encoding(encoding: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        Decompressor(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
@pytest.mark.parametrize("how", [("every", 7), ("every", 1)])
def test_decompressor_members_one_after_another(encoding: str, how: tuple) -> None:
    d = Decompressor(encoding)
    members = [compress(encoding, b"data: one\n\n"), compress(encoding, b"data: two\n\n")]
    assert b"".join(d.feed(p) for p in chunk(b"".join(members), how)) == b"data: one\n\ndata: two\n\n"
    # A member that ends with a piece: the next piece starts the next one.
    d = Decompressor(encoding)
    assert [d.feed(m) for m in members] == [b"data: one\n\n", b"data: two\n\n"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@DECOMPRESS
@given(body=st.binary(max_size=3000), limit=st.integers(0, 3000), how=CHUNKINGS)
def test_decompressor_limit_is_on_what_one_piece_decodes_to(encoding: str, body: bytes, limit: int, how: tuple) -> None:
    whole = Decompressor(encoding, limit=limit)
    if len(body) <= limit:
        assert whole.feed(compress(encoding, body)) == body and whole.finished
    else:
        with pytest.raises(framing.DecodedTooLarge):
            whole.feed(compress(encoding, body))
    pieces = Decompressor(encoding, limit=limit)
    out = []
    try:
        out = [pieces.feed(p) for p in chunk(compress(encoding, body), how)]
    except framing.DecodedTooLarge:
        assert len(body) > limit  # some piece decoded to more than the limit
    else:
        assert b"".join(out) == body and all(len(o) <= limit for o in out)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.slow
def test_decompressor_stops_a_compression_bomb_at_its_limit(encoding: str) -> None:
    zeros = bytes(16 * 1024 * 1024)
    # 16 MiB of zeros, a few KiB encoded (brotli's quality 5 makes as small a bomb, 30 times faster):
    # its first 4 KiB decode to far more than the 1 MiB limit, as a bigger bomb's do.
    bomb = brotli.compress(zeros, quality=5) if encoding == "br" else compress(encoding, zeros)
    assert len(bomb) < 100_000
    d = Decompressor(encoding, limit=1024 * 1024)
    with pytest.raises(framing.DecodedTooLarge, match="more than 1 MiB at once"):
        d.feed(bomb[:4096] if encoding != "br" else bomb)


@pytest.mark.parametrize("how", [("every", 1), ("every", 5)])
@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib-wrapped", "raw"])
def test_decompressor_reads_deflate_wrapped_or_raw(wbits: int, how: tuple) -> None:
    z = zlib.compressobj(wbits=wbits)
    encoded = z.compress(VALID["anthropic"]) + z.flush()
    d = Decompressor("deflate")
    assert b"".join(d.feed(p) for p in chunk(encoded, how)) == VALID["anthropic"] and d.finished


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompressor_finished_only_where_the_encoded_body_ends(encoding: str) -> None:
    encoded = compress(encoding, VALID["openai-chat"])
    d = Decompressor(encoding)
    assert d.feed(encoded[:-3]) is not None and not d.finished
    d.feed(encoded[-3:])
    assert d.finished


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decompressor_refuses_bytes_after_the_end_and_bytes_that_do_not_decode(encoding: str) -> None:
    with pytest.raises(framing.Undecodable):
        Decompressor(encoding).feed(compress(encoding, b"data: one\n\n") + b"trailing garbage")
    with pytest.raises(framing.Undecodable, match="does not decode"):
        Decompressor(encoding).feed(b"not encoded at all, plain text" * 3)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_decode_whole_reads_a_whole_body_exactly(encoding: str) -> None:
    body = VALID["openai-chat"]
    assert framing.decode_whole(compress(encoding, body), encoding, len(body)) == body
    assert framing.decode_whole(b"", encoding, 0) == b""
    with pytest.raises(framing.DecodedTooLarge):
        framing.decode_whole(compress(encoding, body), encoding, len(body) - 1)
    with pytest.raises(framing.Undecodable, match="ends before"):
        framing.decode_whole(compress(encoding, body)[:-4], encoding, len(body))
    assert framing.decode_whole(body, " Identity ", 0) == body  # nothing to undo


# --- reading a stream's tail --------------------------------------------------------------------
# The readers frame nothing while a stream flows: they keep its tail (StreamTail), cut where an
# event begins, and frame it at the end. Where the events begin is found in each piece alone (and
# at the seams between pieces); the tail keeps the last window and the last complete event whole.


def blank_line_ends(data: bytes) -> set[int]:
    """Where each event of raw server-sent events ends, reading the whole stream at once."""
    ends, i = set(), 0
    while i < len(data):
        first = data[i : i + 1]
        step = 2 if data[i : i + 2] == b"\r\n" else 1
        if first in (b"\r", b"\n") and data[i + step : i + step + 1] in (b"\r", b"\n"):
            second = i + step
            ends.add(second + (2 if data[second : second + 2] == b"\r\n" else 1))
        i += step if first in (b"\r", b"\n") else 1
    return ends


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


MIXED_EOL_BLOCKS = st.lists(st.tuples(st.lists(SSE_LINE, min_size=1, max_size=3), st.sampled_from(EOLS)), max_size=8)


@PROPERTY
@given(blocks=MIXED_EOL_BLOCKS, how=CHUNKINGS)
def test_sse_event_start_is_where_the_events_of_the_rest_begin(blocks: list[tuple[list[str], str]], how: tuple) -> None:
    data = b"".join(sse([lines], eol) for lines, eol in blocks)  # line ends mixed from event to event
    whole = split_events(lf(data))
    ends = blank_line_ends(data)
    offset, before, recorded = 0, -1, {-1}
    for piece in chunk(data, how):
        start = framing.sse_event_start(piece, before)
        # the events that end in this piece, but for the LF of a CR LF whose CR ended the last one
        inside = [e for e in ends if offset < e <= offset + len(piece) and e - 1 not in recorded]
        if start is None:
            assert inside == []
        else:
            at = offset + start
            recorded.add(at)
            # the last event end in the piece (before the LF of its CR LF, if that is not there yet)
            assert (inside and at == max(inside)) or (at == offset + len(piece) and at + 1 in ends)
            rest = split_events(lf(data[at:]))
            assert rest == whole[len(whole) - len(rest) :]
        offset += len(piece)
        before = piece[-1] if piece else before


@PROPERTY
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=60), data=st.data())
def test_stream_tail_keeps_the_window_and_the_last_complete_event(sizes: list[int], data: st.DataObject) -> None:
    window = data.draw(st.integers(1, 200), label="window")
    tail = framing.StreamTail(window)
    stream, starts = b"", [0]
    for n in sizes:
        piece = bytes(range(len(stream) % 200, len(stream) % 200 + n)) if len(stream) % 200 + n <= 256 else b"x" * n
        start = data.draw(st.one_of(st.none(), st.integers(0, n)), label="start")
        if start is not None and len(stream) + start > starts[-1]:
            starts.append(len(stream) + start)
        stream += piece
        tail.add(piece, start)
        kept = tail.data()
        assert kept == stream[tail.cut :] and tail.cut in starts and tail.cut_at_start
        # the first start after the cut is within `window` of the end, or the cut is one of the
        # last starts (the last complete events are kept whole)
        later = [s for s in starts if s > tail.cut]
        assert len(later) <= framing.StreamTail.LAST_EVENTS or len(stream) - later[0] < window


@pytest.mark.parametrize("limit", [100, 250])
def test_stream_tail_limit_keeps_the_last_bytes_without_starts(limit: int) -> None:
    tail = framing.StreamTail(10, limit=limit)
    stream = b""
    for i in range(40):
        piece = bytes([65 + i % 26]) * 30
        stream += piece
        tail.add(piece, None)
    assert tail.data() == stream[-limit:] and not tail.cut_at_start
    for piece in (b"yz", b"a" * 20, b"bc", b"de"):
        tail.add(piece, 1)  # events begin at "z", at the second "a", at "c" and at "e"
    assert tail.cut_at_start and tail.data() == b"z" + b"a" * 20 + b"bcde"  # the latest cut leaving 10


@PROPERTY
@given(**JSON_ARRAYS, data=st.data())
@pytest.mark.slow
def test_array_elements_backward_are_the_whole_elements_of_any_tail(
    objects: list, indent: int | None, ascii_: bool, separator: str, data: st.DataObject
) -> None:
    texts = [json.dumps(o, indent=indent, ensure_ascii=ascii_).encode() for o in objects]
    stream = b"[" + separator.encode().join(texts) + b"]" + data.draw(st.sampled_from([b"", b"\r\n", b" \n"]))
    starts, at = [], 1
    for text in texts:
        starts.append(at)
        at += len(text) + len(separator.encode())
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    got = list(framing.array_elements_backward(stream[cut:]))
    assert got == [t for t, s in zip(texts, starts, strict=True) if s >= cut][::-1]


def test_array_elements_backward_needs_the_array_end() -> None:
    assert list(framing.array_elements_backward(b'[{"a": 1}, {"b": 2}')) == []
    assert list(framing.array_elements_backward(b'{"b": 2}]')) == [b'{"b": 2}']
    assert list(framing.array_elements_backward(b'"x\\\\"}, {"b": "\\\\\\""}]')) == [b'{"b": "\\\\\\""}']


def test_array_separator_is_a_line_that_starts_with_a_comma() -> None:
    data = gemini_array(gemini_chunks(["a", "b", "c"], 1, 2, None, None, "STOP"))
    last = data.rindex(b"\r\n,\r\n") + 2
    assert framing.array_separator(data) == last
    assert framing.array_separator(data[:last]) == data.index(b"\r\n,\r\n") + 2
    assert framing.array_separator(b'[{"a": [1,\n2]},{"b": ",\\n"}]') == -1


def es_frames_of(data: bytes) -> set[int]:
    starts, at = set(), 0
    while at + 12 <= len(data):
        starts.add(at)
        at += struct.unpack(">I", data[at : at + 4])[0]
    return starts


@PROPERTY
@given(frames=ES_FRAMES.filter(bool), how=CHUNKINGS, guess=st.integers(-2, 2000))
def test_eventstream_frame_starts_are_frames_starts(frames: list[tuple[dict, bytes]], how: tuple, guess: int) -> None:
    data = b"".join(es_frame(h, p) for h, p in frames)
    starts = es_frames_of(data)
    offset = 0
    for piece in chunk(data, how):
        start = framing.eventstream_frame_start(piece)
        if start >= 0:
            assert offset + start in starts
        offset += len(piece)
    last = max(s for s in starts if s + 12 <= len(data))
    for known in (-1, *starts, guess):  # a frame's start, or what is not one
        assert framing.eventstream_frame_start(data, known=known) == last
    assert framing.eventstream_first_frame(data[1:]) == (
        min(s for s in starts if s > 0) - 1 if len(frames) > 1 else len(data) - 1
    )


def test_eventstream_frame_start_beyond_short_headers() -> None:
    """Frames with headers of 256 bytes or more, or zero bytes in their payload, are found too (by
    trying each zero byte rather than in one search), and a frame's start is found only where its
    whole prelude is."""
    long_headers = es_frame({":event-type": "x" * 300}, b'{"a": 1}')
    zeros = es_frame({":event-type": "chunk"}, bytes(10))
    assert framing.eventstream_frame_start(long_headers + zeros) == len(long_headers)
    assert framing.eventstream_frame_start(zeros + long_headers + zeros[:11]) == len(zeros)
    assert framing.eventstream_frame_start(zeros + long_headers + zeros[:12]) == len(zeros + long_headers)


# Streams much longer than a (small) window, ending in a usage event larger than the window.
SMALL_WINDOW = 512


def padded(obj: dict, size: int) -> dict:
    return {**obj, "padding": "z" * size}


@functools.cache
def long_streams(pad: int) -> dict[str, tuple[bytes, tuple, Callable[[], UsageReader]]]:
    """Every format's stream of 60 events of text, its usage event padded with `pad` bytes (made
    once per `pad`: the tests only read it)."""
    pieces = [f"word {i} " * 20 for i in range(60)]  # ~9 KB of text
    chat = openai_chat_blocks(pieces, 19, 10, 4, 2, "stop", usage_with_choices=False)
    usage_chunk = json.loads(chat[-2][0].removeprefix("data: "))
    chat[-2] = [f"data: {compact(padded(usage_chunk, pad))}"]
    responses = responses_blocks(pieces, 36, 87, 10, 20, None)
    anthropic = anthropic_blocks(pieces, 25, 2000, 100, 15, "end_turn")
    delta = json.loads(anthropic[-2][1].removeprefix("data: "))
    anthropic[-2] = ["event: message_delta", f"data: {compact(padded(delta, pad))}"]
    gemini = gemini_chunks(pieces, 9, 20, 31, 4, "STOP")
    gemini[-1] = padded(gemini[-1], pad)
    converse = converse_frames(pieces, 11, 7, 1024, 32, "end_turn")
    converse[-1] = es_event(
        "metadata",
        padded(
            {
                "usage": {
                    "inputTokens": 11,
                    "outputTokens": 7,
                    "totalTokens": 1074,
                    "cacheReadInputTokens": 1024,
                    "cacheWriteInputTokens": 32,
                }
            },
            pad,
        ),
    )
    invoke = claude_invoke_events(pieces, 14, 9, "end_turn")
    invoke[-1] = padded(invoke[-1], pad)
    return {
        "openai-chat": (sse(chat), (19, 10, 29, 4, 2, "stop"), ChatStreamReader),
        "openai-responses": (sse(responses), (36, 87, 123, 10, 20, "completed"), ResponsesStreamReader),
        "anthropic": (sse(anthropic, "\r\n"), (2125, 15, 2140, 2000, None, "end_turn"), MessagesStreamReader),
        "gemini-sse": (sse(gemini_sse(gemini), "\r\n"), (9, 51, 60, 4, 31, "STOP"), GenerateStreamReader),
        "gemini-json": (gemini_array(gemini), (9, 51, 60, 4, 31, "STOP"), GenerateArrayReader),
        "bedrock-converse": (b"".join(converse), (1067, 7, 1074, 1024, None, "end_turn"), converse_reader),
        "bedrock-invoke": (
            b"".join(invoke_chunk(e) for e in invoke),
            (14, 9, 23, None, None, "end_turn"),
            invoke_reader,
        ),
    }


def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (SSEReader, GenerateArrayReader, EventStreamReader):
        monkeypatch.setattr(cls, "WINDOW", SMALL_WINDOW)


@pytest.mark.parametrize("big_final", [False, True], ids=["small-final", "final-larger-than-the-window"])
@pytest.mark.parametrize("kind", list(long_streams(0)))
@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(how=st.one_of(CHUNKINGS, st.tuples(st.just("every"), st.integers(13, 3000))))
@pytest.mark.slow
def test_readers_read_usage_exactly_from_the_tail_of_a_long_stream(
    monkeypatch: pytest.MonkeyPatch, kind: str, big_final: bool, how: tuple
) -> None:
    small_window(monkeypatch)
    data, expected, make = long_streams(4 * SMALL_WINDOW if big_final else 0)[kind]
    assert len(data) > 10 * SMALL_WINDOW
    reader = make()
    pieces = chunk(data, how)
    assert usage_tuple(read(reader, pieces)) == expected
    assert reader.error is None
    if max(map(len, pieces)) < len(data) // 4:
        assert reader._tail.cut > 0  # the tail was cut: what was read came from it


def test_a_final_usage_event_larger_than_the_window_is_read_exactly() -> None:
    for kind, (data, expected, make) in long_streams(2 * SSEReader.WINDOW).items():
        reader = make()
        assert usage_tuple(read(reader, chunk(data, ("every", 4096)))) == expected, kind


@pytest.mark.parametrize("cut", ["between-elements", "mid-element"])
def test_gemini_array_that_broke_off_reads_the_last_whole_element(monkeypatch: pytest.MonkeyPatch, cut: str) -> None:
    small_window(monkeypatch)
    objects = gemini_chunks([f"word {i} " * 20 for i in range(60)], 9, 20, None, None, "STOP")
    data = gemini_array(objects)
    end = data.rindex(b"\r\n,\r\n") if cut == "between-elements" else data.rindex(b"\r\n,\r\n") - 40
    reader = GenerateArrayReader()
    usage = read(reader, chunk(data[:end], ("every", 300)))
    # The last whole element is the last but one (or two): its running count, no finish reason yet.
    last = 58 if cut == "between-elements" else 57
    assert usage_tuple(usage) == (9, None, 9 + last, None, None, None)
    assert reader._tail.cut > 0 and reader.error is None


def test_gemini_array_written_otherwise_is_kept_up_to_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    small_window(monkeypatch)
    monkeypatch.setattr(framing.bounds, "MAX_FRAME", 4096)
    objects = gemini_chunks([f"word {i} " * 20 for i in range(60)], 9, 20, None, None, "STOP")
    data = ("[" + ",".join(compact(o) for o in objects) + "]").encode()  # no line starts with a comma
    reader = GenerateArrayReader()
    assert usage_tuple(read(reader, chunk(data, ("every", 300)))) == (9, 20, 29, None, None, "STOP")
    assert not reader._tail.cut_at_start and len(reader._tail.data()) <= 4096 + SMALL_WINDOW


@PROPERTY
@given(
    blocks=SSE_BLOCKS.filter(lambda bs: all(MARK not in line for b in bs for line in b)),
    eol=st.sampled_from(EOLS),
    data=st.data(),
)
def test_sse_event_filter_with_a_needle_forwards_what_judging_every_event_does(
    blocks: list[list[str]], eol: str, data: st.DataObject
) -> None:
    dropped = data.draw(st.sets(st.integers(0, max(len(blocks) - 1, 0))), label="dropped") if blocks else set()
    blocks = [[*b, f"data: {MARK}"] if i in dropped else b for i, b in enumerate(blocks)]
    stream = sse(blocks, eol) + b"data: [DONE]"
    pieces = chunk(stream, data.draw(CHUNKINGS, label="how"))

    def drop(event: bytes) -> bytes:
        return b"" if MARK.encode() in event else event

    judged, needled = SSEEventFilter(drop), SSEEventFilter(drop, needle=MARK.encode())
    out = [(judged.feed(p), needled.feed(p)) for p in pieces]
    assert b"".join(a for a, _ in out) + judged.flush() == b"".join(b for _, b in out) + needled.flush()


@PROPERTY
@given(region=st.lists(st.sampled_from([b"\n", b"\n\n", b"data: x", b"a", b": c", b"\xff"]), max_size=40).map(b"".join))
def test_split_events_splits_at_blank_lines(region: bytes) -> None:
    assert split_events(region) == [b.strip(b"\n") for b in region.split(b"\n\n") if b.strip(b"\n")]


@PROPERTY
@given(data=SSE_NOISE)
def test_raw_event_spans_are_the_events_of_the_lf_normalised_stream(data: bytes) -> None:
    lf_data = lf(data)
    end = lf_data.rfind(b"\n\n")
    complete = split_events(lf_data[: end + 2]) if end >= 0 else []
    assert [lf(data[begin:stop]) for begin, stop in framing.raw_event_spans(data)] == complete
