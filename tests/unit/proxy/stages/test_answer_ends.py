"""How a guarded stream ends in every answer format, whether a value was denied or the answer could
not be read (`GuardedAnswer.fail`: an encoding undone wrongly, a fault): in the format's own form,
the answer read so far whole and then its error, as the client's SDK reads it. Gemini's stream
without alt=sse is one JSON array: its error is the array's last element, the array closed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from support.eventstream import event as frame_event
from support.eventstream import invoke_chunk
from support.guardrail_samples import AWS_KEY_ID
from tollgate.calls.call import Call, Route
from tollgate.formats.framing import EventStreamFramer
from tollgate.formats.framing.eventstream import event_frame
from tollgate.formats.framing.sse import SSEFramer, parse_sse_block
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS
from tollgate.proxy.stages.upstream.stream_tap import GuardedAnswer

DENIED = compiled_for({"secrets.aws_access_key_id": "deny"})


def sse(*events: tuple[str | None, dict[str, Any]]) -> bytes:
    return b"".join(
        (f"event: {name}\n".encode() if name else b"") + b"data: " + json.dumps(data).encode() + b"\n\n"
        for name, data in events
    )


def chat(text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return sse((None, {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}))


def completions(text: str) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
    return sse((None, {"id": "c", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}))


def messages(text: str) -> bytes:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return sse(("content_block_delta", delta))


def messages_start() -> bytes:
    message = {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "claude", "usage": {}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    return sse(("message_start", {"type": "message_start", "message": message}), ("content_block_start", block))


def responses(text: str) -> bytes:
    delta = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0}
    return sse(("response.output_text.delta", {**delta, "delta": text}))


def responses_start() -> bytes:
    item = {"type": "message", "id": "msg_1", "role": "assistant", "content": [], "status": "in_progress"}
    part = {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0}
    return sse(
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
        ("response.content_part.added", {**part, "part": {"type": "output_text", "text": ""}}),
    )


def gemini_item(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}]}


def gemini(text: str) -> bytes:
    return b"data: " + json.dumps(gemini_item(text)).encode() + b"\r\n\r\n"


def code_assist(text: str) -> bytes:
    return b"data: " + json.dumps({"response": gemini_item(text)}).encode() + b"\r\n\r\n"


def claude_frame(event: dict[str, Any]) -> bytes:
    return invoke_chunk(event)


def claude_on_bedrock(text: str) -> bytes:
    return claude_frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def claude_on_bedrock_start() -> bytes:
    message = {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "claude", "usage": {}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    return claude_frame({"type": "message_start", "message": message}) + claude_frame(block)


def converse(text: str) -> bytes:
    return frame_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})


def invoke(text: str) -> bytes:
    return invoke_chunk({"outputText": text, "index": 0})


def mcp(text: str) -> bytes:
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": text}}
    return sse(("message", log))


# Each format: what a stream in it begins with, an event carrying `text`, and how its client reads
# the whole of what it got (each message's object: SSE events' data, frames' payloads and
# exceptions, a JSON array's elements).
SSE = "sse"
FRAMES = "frames"
ARRAY = "array"
FORMATS: dict[str, tuple[bytes, Callable[[str], bytes], str]] = {
    "openai-chat": (b"", chat, SSE),
    "openai-completions": (b"", completions, SSE),
    "openai-responses": (responses_start(), responses, SSE),
    "anthropic-messages": (messages_start(), messages, SSE),
    "claude-on-vertex": (messages_start(), messages, SSE),
    "claude-on-bedrock": (claude_on_bedrock_start(), claude_on_bedrock, FRAMES),
    "gemini-generate": (b"", gemini, SSE),
    "code-assist": (b"", code_assist, SSE),
    "bedrock-converse": (b"", converse, FRAMES),
    "bedrock-invoke": (b"", invoke, FRAMES),
    "mcp": (b"", mcp, SSE),
}


def gemini_array(*texts: str) -> tuple[bytes, list[bytes]]:
    """Gemini's array written as its API writes it: `[` with the first element, `,` before each next."""
    elements = [json.dumps(gemini_item(t), indent=2).encode() for t in texts]
    return b"", [b"[" + elements[0], *(b"\r\n,\r\n" + e for e in elements[1:])]


def read_sse(body: bytes) -> list[Any]:
    blocks = SSEFramer().feed(body)
    assert body.replace(b"\r\n", b"\n").endswith(b"\n\n"), "the stream ends with a whole event"
    return [json.loads(event.data) for event in map(parse_sse_block, blocks) if event is not None]


def read_frames(body: bytes) -> list[Any]:
    framer = EventStreamFramer()
    frames = framer.feed(body)
    whole = b"".join(event_frame(f.raw_headers, f.payload) for f in frames)
    assert framer.error is None and whole == body, "whole frames, and nothing else"
    out = []
    for f in frames:
        payload = json.loads(f.payload)
        if f.headers.get(":message-type") == "exception":
            out.append({"exception": f.headers[":exception-type"], **payload})
        elif "bytes" in payload:
            out.append(json.loads(base64.b64decode(payload["bytes"])))
        else:
            out.append(payload)
    return out


READERS = {SSE: read_sse, FRAMES: read_frames, ARRAY: json.loads}


def is_error(message: Any) -> bool:
    """Whether a message is the format's error: an SSE object with `error` (OpenAI's, Gemini's,
    MCP's JSON-RPC error) or of type `error` (Anthropic's, the Responses API's), an exception frame."""
    return isinstance(message, dict) and (
        "error" in message or message.get("type") == "error" or "exception" in message
    )


def guarded(name: str, array: bool = False) -> GuardedAnswer:
    found = ANSWER_FORMATS[name]
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    return GuardedAnswer(found.stream(DENIED), found.denied_end, call, None, DENIED, found.array_end, array)


def cases() -> list[tuple[str, bool]]:
    return [*((name, False) for name in FORMATS), ("gemini-generate", True)]


def stream_of(name: str, array: bool, *texts: str) -> tuple[bytes, list[bytes], str]:
    if array:
        start, events = gemini_array(*texts)
        return start, events, ARRAY
    start, event, framing = FORMATS[name]
    return start, [event(t) for t in texts], framing


def test_every_format_the_registry_names_is_ended_here() -> None:
    """Every format with streams (one read whole only, as image generations, has none to end)."""
    assert set(FORMATS) == {name for name, found in ANSWER_FORMATS.items() if found.stream_types}


@pytest.mark.parametrize(("name", "array"), cases(), ids=[f"{n}{'-array' if a else ''}" for n, a in cases()])
def test_an_answer_that_cannot_be_read_ends_with_its_formats_error(name: str, array: bool) -> None:
    start, events, framing = stream_of(name, array, "Hello ", "world, ")
    answer = guarded(name, array)
    body = answer.feed(start + events[0]) + answer.feed(events[1]) + answer.fail()
    assert answer.stopped and answer.feed(events[0]) == b""
    *read, last = READERS[framing](body)
    assert read and not any(is_error(m) for m in read), "what was read went on whole before the error"
    assert is_error(last) and "unread" in json.dumps(last)


@pytest.mark.parametrize(("name", "array"), cases(), ids=[f"{n}{'-array' if a else ''}" for n, a in cases()])
def test_an_answer_that_cannot_be_read_from_its_start_ends_with_its_formats_error_alone(name: str, array: bool) -> None:
    *_, framing = stream_of(name, array, "x")
    answer = guarded(name, array)
    [last] = READERS[framing](answer.fail())
    assert is_error(last) and "unread" in json.dumps(last)


@pytest.mark.parametrize(("name", "array"), cases(), ids=[f"{n}{'-array' if a else ''}" for n, a in cases()])
def test_a_denied_answer_ends_with_its_formats_error(name: str, array: bool) -> None:
    if ANSWER_FORMATS[name].denied_inside:
        pytest.skip("a value to deny replaces its message; the answer goes on")
    start, events, framing = stream_of(name, array, "Hello ", f"the key {AWS_KEY_ID} ", "more")
    answer = guarded(name, array)
    body = b"".join(answer.feed(piece) for piece in (start + events[0], events[1], events[2]))
    assert answer.stopped and AWS_KEY_ID.encode() not in body
    *read, last = READERS[framing](body)
    assert read and not any(is_error(m) for m in read)
    assert is_error(last) and "secrets.aws_access_key_id" in json.dumps(last)
