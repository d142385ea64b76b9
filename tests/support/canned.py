"""Provider answers as the real APIs give them (shapes from the providers' API references),
with usage numbers the tests assert on exactly."""

from __future__ import annotations

from collections.abc import Callable

from .fake_upstream import Received, Reply
from .usage import chat_usage, responses_usage

OPENAI_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": chat_usage(21, 7, cached=5, reasoning=2),
}
OPENAI_COMPLETION = {  # the legacy completions endpoint
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1700000000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": "Hi there.", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 150, "total_tokens": 154},
}
OPENAI_RESPONSES = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1700000000,
    "status": "completed",
    "model": "gpt-4.1",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello.", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": responses_usage(31, 9),
}
OPENAI_EMBEDDINGS = {
    "object": "list",
    "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}
GEMINI_GENERATE = {
    "candidates": [{"content": {"parts": [{"text": "Hello!"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15},
    "modelVersion": "gemini-2.0-flash",
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 25,
        "output_tokens": 11,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0,
    },
}
BEDROCK_CONVERSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 17, "outputTokens": 6, "totalTokens": 23},
    "metrics": {"latencyMs": 120},
}
BEDROCK_INVOKE_BODY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-haiku",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "max_tokens",
    "usage": {"input_tokens": 13, "output_tokens": 64},
}


def provider_answers(r: Received) -> Reply:
    """Answer like the provider whose path this is."""
    path = r.path.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        return Reply(200, OPENAI_CHAT)
    if path.endswith("/completions"):
        return Reply(200, OPENAI_COMPLETION)
    if path.endswith("/responses"):
        return Reply(200, OPENAI_RESPONSES)
    if path.endswith("/embeddings"):
        return Reply(200, OPENAI_EMBEDDINGS)
    if ":generateContent" in path:
        return Reply(200, GEMINI_GENERATE)
    if path == "/v1/messages":
        return Reply(200, ANTHROPIC_MESSAGE)
    if path.endswith("/converse"):
        return Reply(200, BEDROCK_CONVERSE)
    if path.endswith("/invoke"):
        return Reply(
            200,
            BEDROCK_INVOKE_BODY,
            {"x-amzn-bedrock-input-token-count": "13", "x-amzn-bedrock-output-token-count": "64"},
        )
    if path.endswith("/audio/transcriptions"):
        return Reply(200, {"text": f"{len(r.body)} bytes heard"})
    if path.endswith("/models") or "/models?" in r.path:
        return Reply(200, {"object": "list", "data": []})
    return Reply(404, {"error": {"message": f"no fake for {path}"}})


def by_model(
    path: str, whole: Callable[[str], dict], streamed: Callable[[str], list[bytes]]
) -> Callable[[Received], Reply]:
    """A fake upstream that answers a call to `path` by the model it names: `whole(model)` as JSON,
    or the events `streamed(model)` when it asks for a stream; any other call as `provider_answers`."""

    def upstream(received: Received) -> Reply:
        if not received.path.endswith(path):
            return provider_answers(received)
        body = received.json()
        if body.get("stream"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streamed(body["model"]))
        return Reply(200, whole(body["model"]), {"content-type": "application/json"})

    return upstream
