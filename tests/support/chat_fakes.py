"""A provider answering chat calls in its own wire format, as a route's target: a plain answer, a tool
call when tools are offered and no tool result is in the conversation yet, JSON when JSON is asked
for, a stream when the call streams, and a 429 when the prompt says "please fail". Token counts
are fixed per format; each format's convention makes the same totals: 21 prompt tokens (5 of them
cache reads) and 7 output tokens (2 of them reasoning, where the format tells them apart)."""

from __future__ import annotations

import json
from typing import Any

from . import eventstream
from .answers import gemini_item
from .fake_upstream import Received, Reply
from .streams import sse
from .usage import chat_usage

ANSWER = ["Paris is ", "the capital."]
TOOL_ARGS = ['{"city": ', '"Paris"}']
JSON_ANSWER = ['{"city": ', '"Paris"}']
FAIL = "please fail"
TOOL_CALL_ID = "toolu_01"


def mode(r: Received) -> str:
    """What the call asks for: "fail", "tool", "json" or "text"."""
    text = r.body.decode("utf-8", "replace")
    if FAIL in text:
        return "fail"
    data = r.json()
    has_tools = bool(data.get("tools") or data.get("toolConfig"))
    answered = any(marker in text for marker in ('"tool"', '"tool_result"', '"functionResponse"', '"toolResult"'))
    if has_tools and not answered:
        return "tool"
    wants_json = (
        data.get("response_format", {}).get("type", "text") != "text"
        or "format" in data.get("output_config", {})
        or "outputConfig" in data
        or data.get("generationConfig", {}).get("responseMimeType") == "application/json"
    )
    return "json" if wants_json else "text"


def pieces(how: str) -> list[str]:
    return JSON_ANSWER if how == "json" else ANSWER


def answer(r: Received) -> Reply:
    path = r.path.split("?", 1)[0]
    how = mode(r)
    if path.endswith("/chat/completions"):
        return openai(r, how)
    if path == "/v1/messages":
        return anthropic(r, how)
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return gemini(r, how, stream=":streamGenerateContent" in path)
    if path.endswith(("/converse", "/converse-stream")):
        return converse(how, stream=path.endswith("-stream"))
    if path.endswith(("/invoke", "/invoke-with-response-stream")):
        return claude_on_bedrock(how, stream=path.endswith("-stream"))
    return Reply(404, {"error": {"message": f"no fake for {path}"}})


# --- OpenAI Chat Completions


OPENAI_USAGE = chat_usage(21, 7, cached=5, reasoning=2)


def openai(r: Received, how: str) -> Reply:
    if how == "fail":
        return Reply(
            429,
            {
                "error": {
                    "message": "Rate limit reached (fake)",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        )
    base = {"id": "chatcmpl-f", "created": 1700000000, "model": "gpt-4o-2024-08-06"}
    call = {
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": "get_weather", "arguments": "".join(TOOL_ARGS)},
    }
    finish = "tool_calls" if how == "tool" else "stop"
    if not r.json().get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None if how == "tool" else "".join(pieces(how))}
        if how == "tool":
            message["tool_calls"] = [call]
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return Reply(200, {**base, "object": "chat.completion", "choices": [choice], "usage": OPENAI_USAGE})

    def chunk(delta: dict, finish_reason: str | None = None, usage: dict | None = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        return sse(
            {**base, "object": "chat.completion.chunk", "choices": choices, **({"usage": usage} if usage else {})}
        )

    out = [chunk({"role": "assistant", "content": ""})]
    if how == "tool":
        out.append(chunk({"tool_calls": [{"index": 0, **call, "function": {"name": "get_weather", "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in TOOL_ARGS]
    else:
        out += [chunk({"content": p}) for p in pieces(how)]
    out += [chunk({}, finish), chunk({}, usage=OPENAI_USAGE), sse("[DONE]")]
    return Reply(200, chunks=out, headers={"content-type": "text/event-stream"})


# --- Anthropic Messages (and Claude's body on Bedrock's InvokeModel)

ANTHROPIC_USAGE = {
    "input_tokens": 16,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 0,
    "output_tokens": 7,
}


def anthropic_message(how: str) -> dict:
    if how == "tool":
        content = [{"type": "tool_use", "id": TOOL_CALL_ID, "name": "get_weather", "input": {"city": "Paris"}}]
    else:
        content = [{"type": "text", "text": "".join(pieces(how))}]
    stop = "tool_use" if how == "tool" else "end_turn"
    return {
        "id": "msg_f",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }


def anthropic_events(how: str) -> list[dict]:
    message = {
        **anthropic_message(how),
        "content": [],
        "stop_reason": None,
        "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
    }
    events: list[dict] = [{"type": "message_start", "message": message}]
    if how == "tool":
        block = {"type": "tool_use", "id": TOOL_CALL_ID, "name": "get_weather", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": a} for a in TOOL_ARGS]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces(how)]
    events.append({"type": "content_block_start", "index": 0, "content_block": block})
    events += [{"type": "content_block_delta", "index": 0, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": 0})
    stop = "tool_use" if how == "tool" else "end_turn"
    events.append(
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 7}}
    )
    events.append({"type": "message_stop"})
    return events


def anthropic(r: Received, how: str) -> Reply:
    if how == "fail":
        return Reply(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited (fake)"}})
    if not r.json().get("stream"):
        return Reply(200, anthropic_message(how))
    return Reply(
        200, chunks=[sse(e, e["type"]) for e in anthropic_events(how)], headers={"content-type": "text/event-stream"}
    )


INVOKE_METRICS = {
    "inputTokenCount": 16,
    "outputTokenCount": 7,
    "cacheReadInputTokenCount": 5,
    "cacheWriteInputTokenCount": 0,
    "invocationLatency": 100,
    "firstByteLatency": 50,
}


def bedrock_error(status: int, kind: str, message: str) -> Reply:
    return Reply(
        status,
        {"message": message},
        {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    )


def claude_on_bedrock(how: str, stream: bool) -> Reply:
    if how == "fail":
        return bedrock_error(429, "ThrottlingException", "Too many requests (fake)")
    if not stream:
        headers = {
            "x-amzn-bedrock-input-token-count": "16",
            "x-amzn-bedrock-output-token-count": "7",
            "x-amzn-bedrock-cache-read-input-token-count": "5",
        }
        return Reply(200, anthropic_message(how), headers)
    events = anthropic_events(how)
    events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": INVOKE_METRICS}
    return Reply(
        200,
        chunks=[eventstream.invoke_chunk(e) for e in events],
        headers={"content-type": "application/vnd.amazon.eventstream"},
    )


# --- Gemini generateContent

GEMINI_USAGE = {
    "promptTokenCount": 21,
    "cachedContentTokenCount": 5,
    "candidatesTokenCount": 5,
    "thoughtsTokenCount": 2,
    "totalTokenCount": 28,
}


def gemini(r: Received, how: str, stream: bool) -> Reply:
    if how == "fail":
        return Reply(
            429, {"error": {"code": 429, "message": "Resource exhausted (fake)", "status": "RESOURCE_EXHAUSTED"}}
        )

    if how == "tool":
        parts = [[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]]
    else:
        parts = [[{"text": p}] for p in pieces(how)]
    if not stream:
        whole = parts[0] if how == "tool" else [{"text": "".join(pieces(how))}]
        return Reply(200, gemini_item(*whole, finish="STOP", usage=GEMINI_USAGE))
    objects = [
        gemini_item(
            *ps, finish="STOP" if i == len(parts) - 1 else None, usage=GEMINI_USAGE if i == len(parts) - 1 else None
        )
        for i, ps in enumerate(parts)
    ]
    if "alt=sse" in r.path:
        return Reply(
            200,
            chunks=[f"data: {json.dumps(o)}\r\n\r\n".encode() for o in objects],
            headers={"content-type": "text/event-stream"},
        )
    text = "[" + ",\r\n".join(json.dumps(o) for o in objects) + "]"
    return Reply(200, chunks=[text.encode()], headers={"content-type": "application/json"})


# --- Bedrock Converse

CONVERSE_USAGE = {
    "inputTokens": 16,
    "cacheReadInputTokens": 5,
    "cacheWriteInputTokens": 0,
    "outputTokens": 7,
    "totalTokens": 28,
}


def converse(how: str, stream: bool) -> Reply:
    if how == "fail":
        return bedrock_error(429, "ThrottlingException", "Too many requests (fake)")
    stop = "tool_use" if how == "tool" else "end_turn"
    if not stream:
        if how == "tool":
            content = [{"toolUse": {"toolUseId": TOOL_CALL_ID, "name": "get_weather", "input": {"city": "Paris"}}}]
        else:
            content = [{"text": "".join(pieces(how))}]
        body = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": CONVERSE_USAGE,
            "metrics": {"latencyMs": 100},
        }
        return Reply(200, body)
    frames = [eventstream.event("messageStart", {"role": "assistant"})]
    if how == "tool":
        frames.append(
            eventstream.event(
                "contentBlockStart",
                {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": TOOL_CALL_ID, "name": "get_weather"}}},
            )
        )
        frames += [
            eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": a}}})
            for a in TOOL_ARGS
        ]
    else:
        frames += [
            eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces(how)
        ]
    frames.append(eventstream.event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(eventstream.event("messageStop", {"stopReason": stop}))
    frames.append(eventstream.event("metadata", {"usage": CONVERSE_USAGE, "metrics": {"latencyMs": 100}}))
    return Reply(200, chunks=frames, headers={"content-type": "application/vnd.amazon.eventstream"})
