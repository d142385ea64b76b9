"""A call written for one format leaves out the thinking another provider signed: each format's
case of one test, its own history in, the parts its body keeps out."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.formats import chat
from tollgate.formats.anthropic_messages import ANTHROPIC_MESSAGES
from tollgate.formats.anthropic_messages import NAME as ANTHROPIC
from tollgate.formats.bedrock_converse import BEDROCK_CONVERSE
from tollgate.formats.bedrock_converse import NAME as CONVERSE
from tollgate.formats.gemini_generate import GEMINI_GENERATE, SKIP_SIGNATURE
from tollgate.formats.gemini_generate import NAME as GEMINI


def _conversation(model: str | None, assistant: list[chat.Part], asked: str = "hi") -> chat.ChatRequest:
    return chat.ChatRequest(model, [chat.Message("user", [chat.Text(asked)]), chat.Message("assistant", assistant)])


@pytest.mark.parametrize(
    ("fmt", "request_", "kept", "expected"),
    [
        pytest.param(
            ANTHROPIC_MESSAGES,
            _conversation(
                "claude-sonnet-4-5",
                [
                    chat.Thinking("theirs", signature="c2ln", origin=GEMINI),
                    chat.Thinking(redacted="cmVk", origin=CONVERSE),
                    chat.Thinking("mine", signature="EqQB", origin=ANTHROPIC),
                    chat.ToolCall("toolu_1", "f", "{}"),
                ],
            ),
            lambda body: body["messages"][1]["content"],
            [
                {"type": "thinking", "thinking": "mine", "signature": "EqQB"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            ],
            id="anthropic-messages",
        ),
        pytest.param(
            BEDROCK_CONVERSE,
            _conversation(
                None,
                [
                    chat.Thinking("theirs", signature="c2ln", origin=GEMINI),
                    chat.Thinking(redacted="EnCr", origin=ANTHROPIC),
                    chat.Thinking("mine", signature="own", origin=CONVERSE),
                    chat.ToolCall("c1", "f", "{}"),
                ],
            ),
            lambda body: body["messages"][1]["content"],
            [
                {"reasoningContent": {"reasoningText": {"text": "mine", "signature": "own"}}},
                {"toolUse": {"toolUseId": "c1", "name": "f", "input": {}}},
            ],
            id="bedrock-converse",
        ),
        pytest.param(
            GEMINI_GENERATE,
            _conversation(
                "gemini-3-pro-preview",
                [
                    chat.Thinking("", signature="EqQB", origin=ANTHROPIC),
                    chat.ToolCall("c1", "get_weather", "{}"),
                    chat.Thinking("", signature="own", origin=GEMINI),
                    chat.Text("Checking."),
                ],
                asked="Weather?",
            ),
            lambda body: body["contents"][1]["parts"],
            [
                {"functionCall": {"id": "c1", "name": "get_weather", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
                {"text": "Checking.", "thoughtSignature": "own"},
            ],
            id="gemini-generate",
        ),
    ],
)
def test_writing_a_call_leaves_out_thinking_another_provider_signed(
    fmt: Any, request_: chat.ChatRequest, kept: Any, expected: list[dict]
) -> None:
    body, _ = fmt.write_request(request_)
    assert kept(body) == expected
    assert request_.dropped == ["thinking signed by another provider"]
