"""One rule for text in every format's whole-string scan (`formats/answer_reading/scanning.py`,
`scan_whole`): a string is read as it is. A lone UTF-16 surrogate, which JSON may escape and
Python's JSON reader keeps, is scanned with the rest of its string and goes on as it came (its
escape): never an exception, never dropped. The same answer text, with a value to redact beside
the surrogate, in each format's whole answer."""

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


@pytest.mark.parametrize("name", [OPENAI_CHAT, OPENAI_COMPLETIONS, BEDROCK_CONVERSE, ANTHROPIC_MESSAGES, MCP_RESULTS])
def test_a_lone_surrogate_is_scanned_and_goes_on_as_it_came(name: str) -> None:
    body = json.dumps(ANSWERS[name]).encode()  # the surrogate escaped, `\ud800`, as JSON writes it
    sent, denied, counts = ANSWER_FORMATS[name].whole(COMPILED, body)
    assert (denied, counts) == (None, {KIND: 1})
    assert REDACTED in strings(json.loads(sent))
    assert b"\\ud800" in sent  # the surrogate, as the escape it came as: valid UTF-8 JSON
    sent.decode("utf-8")


def test_gemini_refuses_a_lone_surrogate_before_its_scan() -> None:
    """Gemini's reader holds a string with a lone surrogate to be no text before any scan
    (`test_guardrail_gemini_answers.py::test_a_lone_surrogate_is_not_text_and_stops_the_answer`):
    the answer is refused unread, without an exception, its body as it came."""
    body = json.dumps(ANSWERS[GEMINI_GENERATE]).encode()
    sent, denied, counts = ANSWER_FORMATS[GEMINI_GENERATE].whole(COMPILED, body)
    assert (sent, denied, counts) == (body, "unread", {})
