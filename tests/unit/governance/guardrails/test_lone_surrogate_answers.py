"""One rule for text in every format's whole-string scan (`formats/answer_reading/scanning.py`,
`scan_whole`): a lone UTF-16 surrogate, which JSON may escape and Python's JSON reader keeps, is no
text. The answer that holds one is refused unread, its body as it came, in every format alike (as
a stream's event that holds one is unread). The same answer text in each format's whole answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.answer_guards import strings
from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    GEMINI_GENERATE,
    MCP_RESULTS,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
)
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

KIND = "pii.email"
COMPILED = compiled_for({KIND: "redact"})
TEXT = "Write to jane.doe@acme-corp.io \ud800 today."
REDACTED = f"Write to [REDACTED:{KIND}] \ud800 today."

ANSWERS: dict[str, dict[str, Any]] = {
    OPENAI_CHAT: {
        "id": "c",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
    },
    OPENAI_COMPLETIONS: {
        "id": "c",
        "object": "text_completion",
        "choices": [{"index": 0, "text": TEXT, "finish_reason": "stop"}],
    },
    BEDROCK_CONVERSE: {
        "output": {"message": {"role": "assistant", "content": [{"text": TEXT}]}},
        "stopReason": "end_turn",
    },
    GEMINI_GENERATE: {"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT}]}, "index": 0}]},
    ANTHROPIC_MESSAGES: {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
    },
    MCP_RESULTS: {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": TEXT}]}},
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_lone_surrogate_is_no_text_and_its_answer_is_refused_unread(name: str) -> None:
    body = json.dumps(ANSWERS[name]).encode()  # the surrogate escaped, `\ud800`, as JSON writes it
    assert ANSWER_FORMATS[name].read_whole(COMPILED, body) == (body, "unread", {})


@pytest.mark.parametrize("name", list(ANSWERS))
def test_the_same_answer_without_it_is_read_and_redacted(name: str) -> None:
    body = json.dumps(ANSWERS[name]).encode().replace(b" \\ud800", b"")
    sent, denied, counts = ANSWER_FORMATS[name].read_whole(COMPILED, body)
    assert (denied, counts) == (None, {KIND: 1})
    assert REDACTED.replace(" \ud800", "") in strings(json.loads(sent))
