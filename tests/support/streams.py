"""Streamed answers as the providers send them, one event (or frame) per piece."""

from __future__ import annotations

import json

from . import eventstream
from .usage import chat_usage, responses_usage


def sse(data: dict | str, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def _chat_chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> dict:
    chunk = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


OPENAI_STREAM_USAGE = chat_usage(19, 5, cached=3, reasoning=1)


def openai_chat(usage_with_choices: bool = False) -> list[bytes]:
    pieces = [
        sse(_chat_chunk({"role": "assistant", "content": ""})),
        sse(_chat_chunk({"content": "Hel"})),
        sse(_chat_chunk({"content": "lo"})),
    ]
    if usage_with_choices:  # some servers put usage on the chunk that finishes the choice
        pieces.append(sse(_chat_chunk({}, "stop", OPENAI_STREAM_USAGE)))
    else:
        pieces += [sse(_chat_chunk({}, "stop")), sse(_chat_chunk({}, usage=OPENAI_STREAM_USAGE, choices=False))]
    return [*pieces, sse("[DONE]")]


def openai_chat_as_asked(request: dict, obfuscation: str | None = None) -> list[bytes]:
    """A chat stream as OpenAI answers `request`: with `stream_options.include_usage`, every chunk
    carries `"usage":null` and one more chunk the usage; without it, no chunk has a `usage`
    member. JSON as OpenAI writes it (no spaces), with its `obfuscation` last when given."""
    asked = (request.get("stream_options") or {}).get("include_usage") is True

    def event(chunk: dict, usage: dict | None = None) -> bytes:
        if asked:
            chunk["usage"] = usage
        if obfuscation is not None:
            chunk["obfuscation"] = obfuscation
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode()

    pieces = [
        event(_chat_chunk({"role": "assistant", "content": "", "refusal": None})),
        event(_chat_chunk({"content": "Hel"})),
        event(_chat_chunk({"content": "lo"})),
        event(_chat_chunk({}, "stop")),
    ]
    if asked:
        pieces.append(event(_chat_chunk({}, choices=False), OPENAI_STREAM_USAGE))
    return [*pieces, b"data: [DONE]\n\n"]


def openai_responses() -> list[bytes]:
    response = {
        "id": "resp_s",
        "object": "response",
        "created_at": 1700000000,
        "model": "gpt-4.1",
        "output": [],
        "status": "in_progress",
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    done = {
        **response,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "m",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            }
        ],
        "usage": responses_usage(11, 4, cached=2),
    }
    return [
        sse({"type": "response.created", "sequence_number": 0, "response": response}, "response.created"),
        sse(
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "Hel",
                "logprobs": [],
            },
            "response.output_text.delta",
        ),
        sse(
            {
                "type": "response.output_text.delta",
                "sequence_number": 2,
                "item_id": "m",
                "output_index": 0,
                "content_index": 0,
                "delta": "lo",
                "logprobs": [],
            },
            "response.output_text.delta",
        ),
        sse({"type": "response.completed", "sequence_number": 3, "response": done}, "response.completed"),
    ]


def responses_call_events(at: int, item: dict) -> list[dict]:
    """A Responses function call `item`'s stream events at output index `at`: added, its arguments in
    two deltas, done, item done (no `sequence_number`: the stream numbers them)."""
    arguments, place = item["arguments"], {"output_index": at, "item_id": item["id"]}
    return [
        {"type": "response.output_item.added", "output_index": at, "item": {**item, "arguments": ""}},
        {"type": "response.function_call_arguments.delta", **place, "delta": arguments[:9]},
        {"type": "response.function_call_arguments.delta", **place, "delta": arguments[9:]},
        {"type": "response.function_call_arguments.done", **place, "arguments": arguments},
        {"type": "response.output_item.done", "output_index": at, "item": item},
    ]


def anthropic() -> list[bytes]:
    message = {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    return [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
            "content_block_delta",
        ),
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]


def gemini_objects() -> list[dict]:
    def part(text: str, prompt: int, out: int, finish: str | None = None) -> dict:
        candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "modelVersion": "gemini-2.0-flash",
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out},
        }

    return [part('He said "[{\\"', 8, 2), part("l]}", 8, 4), part("lo", 8, 6, "STOP")]


def gemini_sse() -> list[bytes]:
    return [f"data: {json.dumps(o)}\r\n\r\n".encode() for o in gemini_objects()]


def gemini_array() -> list[bytes]:
    texts = [json.dumps(o, indent=1) for o in gemini_objects()]
    return [("[" + texts[0]).encode(), ("\r\n,\r\n" + texts[1]).encode(), ("\r\n,\r\n" + texts[2] + "\r\n]").encode()]


# Converse's stream as botocore reads it off the event stream: its events' kinds, the text in two pieces.
CONVERSE_STREAM_KINDS = [
    "messageStart",
    "contentBlockDelta",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
]


def bedrock_converse() -> list[bytes]:
    return [
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        eventstream.event("contentBlockStop", {"contentBlockIndex": 0}),
        eventstream.event("messageStop", {"stopReason": "end_turn"}),
        eventstream.event(
            "metadata",
            {"usage": {"inputTokens": 14, "outputTokens": 7, "totalTokens": 21}, "metrics": {"latencyMs": 90}},
        ),
    ]


def bedrock_invoke() -> list[bytes]:
    return [
        eventstream.invoke_chunk(
            {
                "type": "message_start",
                "message": {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude",
                    "usage": {"input_tokens": 14, "output_tokens": 1},
                },
            }
        ),
        eventstream.invoke_chunk(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}
        ),
        eventstream.invoke_chunk(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}
        ),
        eventstream.invoke_chunk(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": 14,
                    "outputTokenCount": 9,
                    "invocationLatency": 300,
                    "firstByteLatency": 100,
                },
            }
        ),
    ]
