"""Every string of an answer is read, in every answer format Tollgate guards: a key placed in each
member a client's SDK surfaces, and in members Tollgate does not know, is redacted in place under
`redact` and stops the answer under `deny`, streamed and whole; never does it reach the client.
(OpenAI chat's and Completions' own members: `test_guardrail_chat_answers.py`,
`test_guardrail_completions_answers.py`.)"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from support.answer_guards import compiled
from support.eventstream import invoke_chunk
from support.guardrail_samples import AWS_KEY_ID
from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE,
    GEMINI_GENERATE,
    OPENAI_RESPONSES,
)
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.framing import event_frame
from tollgate.formats.openai_responses.answer_guard import ResponsesSocketGuard
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

KEY = AWS_KEY_ID
KIND = "secrets.aws_access_key_id"
PLACEHOLDER = f"[REDACTED:{KIND}]".encode()


def sse(*events: dict[str, Any], named: bool = False) -> bytes:
    out = b""
    for event in events:
        if named:
            out += b"event: " + event["type"].encode() + b"\n"
        out += b"data: " + json.dumps(event).encode() + b"\n\n"
    return out


def frame(event: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, encode_json(payload))


# ---- Anthropic Messages
_START = {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "c",
          "content": [], "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}  # fmt: skip
_TEXT_START = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
_ENDS = [{"type": "content_block_stop", "index": 0}, {"type": "message_stop"}]


def messages(*middle: dict[str, Any], start: dict[str, Any] = _START) -> bytes:
    return sse(start, _TEXT_START, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
               "text": "Hi. "}}, *middle, *_ENDS, named=True)  # fmt: skip


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copied = json.loads(json.dumps(base))
    holder = copied
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return copied


# ---- Gemini
def gemini(**members: Any) -> dict[str, Any]:
    candidate = {"content": {"role": "model", "parts": [{"text": "Hi. "}]}, "index": 0}
    top = {k: v for k, v in members.items() if not k.startswith("candidate_") and not k.startswith("content_")}
    candidate.update({k[len("candidate_") :]: v for k, v in members.items() if k.startswith("candidate_")})
    candidate["content"].update({k[len("content_") :]: v for k, v in members.items() if k.startswith("content_")})
    return {"candidates": [candidate], **top}


# ---- Responses
def responses(*events: dict[str, Any]) -> bytes:
    delta = {"type": "response.output_text.delta", "item_id": "i", "output_index": 0, "content_index": 0,
             "delta": "Hi. "}  # fmt: skip
    return sse({"type": "response.created", "response": {"id": "r", "object": "response", "output": []}}, delta,
               *events, named=True)  # fmt: skip


# ---- Bedrock
def converse(*middle: tuple[str, dict[str, Any]], start: dict[str, Any] | None = None) -> bytes:
    frames = [("messageStart", start or {"role": "assistant"}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi. "}}), *middle,
              ("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "end_turn"})]  # fmt: skip
    return b"".join(frame(e, p) for e, p in frames)


STREAMED: dict[str, tuple[str, bytes]] = {
    "messages: a tool use's name": (
        ANTHROPIC_MESSAGES,
        messages(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": KEY, "input": {}},
            }
        ),
    ),
    "messages: the message's model": (ANTHROPIC_MESSAGES, messages(start=_with(_START, ("message", "model"), KEY))),
    "messages: a member of the message not known": (
        ANTHROPIC_MESSAGES,
        messages(start=_with(_START, ("message", "vendor"), {"note": KEY})),
    ),
    "messages: a member of the event not known": (ANTHROPIC_MESSAGES, messages(_with(_START, ("vendor",), KEY))),
    "messages: a delta's event's member not known": (
        ANTHROPIC_MESSAGES,
        messages(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "more "}, "vendor": KEY}
        ),
    ),
    "messages: an error's message": (
        ANTHROPIC_MESSAGES,
        messages({"type": "error", "error": {"type": "x", "message": KEY}}),
    ),
    "messages: a ping's member not known": (ANTHROPIC_MESSAGES, messages({"type": "ping", "vendor": KEY})),
    "gemini: the model version": (GEMINI_GENERATE, sse(gemini(modelVersion=KEY))),
    "gemini: a member not known": (GEMINI_GENERATE, sse(gemini(vendor={"note": [KEY]}))),
    "gemini: usage's member not known": (GEMINI_GENERATE, sse(gemini(usageMetadata={"note": KEY}))),
    "gemini: prompt feedback": (GEMINI_GENERATE, sse(gemini(promptFeedback={"blockReasonMessage": KEY}))),
    "gemini: a safety rating": (GEMINI_GENERATE, sse(gemini(candidate_safetyRatings=[{"category": KEY}]))),
    "gemini: a finish reason": (GEMINI_GENERATE, sse(gemini(candidate_finishReason=KEY))),
    "gemini: a content's role": (GEMINI_GENERATE, sse(gemini(content_role=KEY))),
    "gemini: an item of usage alone": (GEMINI_GENERATE, sse(gemini(), {"usageMetadata": {"note": KEY}})),
    "responses: the response's member not known": (
        OPENAI_RESPONSES,
        responses(
            {"type": "response.completed", "response": {"id": "r", "object": "response", "output": [], "vendor": KEY}}
        ),
    ),
    "responses: the instructions a response echoes": (
        OPENAI_RESPONSES,
        responses(
            {
                "type": "response.completed",
                "response": {"id": "r", "object": "response", "output": [], "instructions": KEY},
            }
        ),
    ),
    "converse: a tool use's name": (
        BEDROCK_CONVERSE,
        converse(
            ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": KEY}}})
        ),
    ),
    "converse: a delta's event's member not known": (
        BEDROCK_CONVERSE,
        converse(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "more "}, "vendor": KEY})),
    ),
    "converse: a message start's member not known": (
        BEDROCK_CONVERSE,
        converse(start={"role": "assistant", "vendor": KEY}),
    ),
    "converse: a stop reason": (BEDROCK_CONVERSE, converse(("messageStop", {"stopReason": KEY}))),
    "invoke (Titan): a completion reason": (
        BEDROCK_INVOKE,
        invoke_chunk({"outputText": "Hi. ", "index": 0})
        + invoke_chunk({"outputText": "", "index": 0, "completionReason": KEY}),
    ),
}

WHOLE: dict[str, tuple[str, dict[str, Any]]] = {
    "gemini: the model version": (GEMINI_GENERATE, gemini(modelVersion=KEY)),
    "gemini: a member not known": (GEMINI_GENERATE, gemini(vendor={"note": [KEY]})),
    "gemini: a safety rating": (GEMINI_GENERATE, gemini(candidate_safetyRatings=[{"category": KEY}])),
    "responses: the response's member not known": (
        OPENAI_RESPONSES,
        {"id": "r", "object": "response", "output": [], "vendor": {"note": KEY}},
    ),
    "converse: a tool use's name": (
        BEDROCK_CONVERSE,
        {
            "output": {
                "message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": KEY, "input": {}}}]}
            },
            "stopReason": "tool_use",
        },
    ),
    "converse: a member not known": (
        BEDROCK_CONVERSE,
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Hi."}]}},
            "stopReason": "end_turn",
            "vendor": KEY,
        },
    ),
    "invoke (Titan): a completion reason": (
        BEDROCK_INVOKE,
        {"inputTextTokenCount": 1, "results": [{"tokenCount": 1, "outputText": "Hi.", "completionReason": KEY}]},
    ),
}


def streamed(name: str, action: str) -> tuple[bytes, Any]:
    answer_format, data = STREAMED[name]
    guard = ANSWER_FORMATS[answer_format].stream(compiled(action))
    out = b""
    for at in range(0, len(data), 7):
        out += guard.feed(data[at : at + 7])
    out += guard.flush()
    # InvokeModel's chunks carry their event in base64: read as the client's SDK reads it.
    decoded = b"".join(base64.b64decode(m) for m in re.findall(rb'"bytes":"([A-Za-z0-9+/=]+)"', out))
    return out + decoded, guard


@pytest.mark.parametrize("name", list(STREAMED))
def test_a_key_in_a_member_of_a_stream_is_redacted_in_place(name: str) -> None:
    out, guard = streamed(name, "redact")
    assert KEY.encode() not in out and PLACEHOLDER in out
    assert (guard.denied, guard.counts) == (None, {KIND: 1})


@pytest.mark.parametrize("name", list(STREAMED))
def test_a_key_in_a_member_of_a_stream_stops_it_under_deny(name: str) -> None:
    out, guard = streamed(name, "deny")
    assert KEY[:4].encode() not in out
    assert (guard.denied, guard.counts) == (KIND, {KIND: 1})


@pytest.mark.parametrize("name", list(WHOLE))
def test_a_key_in_a_member_of_a_whole_answer_is_redacted_or_refused(name: str) -> None:
    answer_format, body = WHOLE[name]
    whole = ANSWER_FORMATS[answer_format].whole
    out, denied, counts = whole(compiled("redact"), json.dumps(body).encode())
    assert KEY.encode() not in out and PLACEHOLDER in out
    assert (denied, counts) == (None, {KIND: 1})
    assert whole(compiled("deny"), json.dumps(body).encode())[1:] == (KIND, {KIND: 1})


def test_a_clean_stream_with_members_not_known_goes_on_as_it_came() -> None:
    """Strings outside the text, read clean, leave each event as it came, byte for byte."""
    data = messages(_with(_START, ("vendor",), "nothing to see"), start=_with(_START, ("message", "vendor"), "plain"))
    guard = ANSWER_FORMATS[ANTHROPIC_MESSAGES].stream(compiled("redact"))
    assert guard.feed(data) + guard.flush() == data
    gem = sse(gemini(modelVersion="gemini-2.5-pro", vendor={"note": ["plain"]}))
    guard = ANSWER_FORMATS[GEMINI_GENERATE].stream(compiled("redact"))
    assert guard.feed(gem) + guard.flush() == gem


def test_over_the_responses_websocket_a_member_not_known_is_read() -> None:
    """The Responses WebSocket's events are read as over HTTP: a key in a member of the response
    Tollgate does not know is redacted, or stops the response with the socket's `error` event."""
    delta = {"type": "response.output_text.delta", "item_id": "i", "output_index": 0, "content_index": 0,
             "delta": "Hi. "}  # fmt: skip
    completed = {"type": "response.completed", "response": {"id": "r", "output": [], "vendor": {"note": KEY}}}
    redacting = ResponsesSocketGuard(compiled("redact"))
    sent = [m for e in (delta, completed) for m in redacting.message(json.dumps(e).encode())] + redacting.flush()
    assert json.loads(sent[-1])["response"]["vendor"] == {"note": PLACEHOLDER.decode()}
    assert (redacting.denied, redacting.counts) == (None, {KIND: 1})
    denying = ResponsesSocketGuard(compiled("deny"))
    sent = [m for e in (delta, completed) for m in denying.message(json.dumps(e).encode())] + denying.flush()
    assert not any(KEY[:4].encode() in m for m in sent)
    assert json.loads(sent[-1])["error"]["code"] == "content_denied"
    assert denying.denied == KIND


SSE_FIELDS = {
    "chat": ("openai-chat", b'data: {"choices":[{"index":0,"delta":{"content":"Hi. "}}]}\n\n'),
    "responses": (
        "openai-responses",
        b'data: {"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"Hi. "}\n\n',
    ),
    "messages": ("anthropic-messages", b'event: ping\ndata: {"type": "ping"}\n\n'),
    "gemini": ("gemini-generate", b'data: {"candidates":[{"content":{"parts":[{"text":"Hi. "}]},"index":0}]}\n\n'),
}


@pytest.mark.parametrize("line", [f"event: {KEY}", f"id: {KEY}", f": {KEY}"], ids=["name", "id", "comment"])
@pytest.mark.parametrize("name", list(SSE_FIELDS))
def test_a_key_in_an_events_other_lines_stops_the_answer(name: str, line: str) -> None:
    """An event's name, id or a comment a raw client reads: a value there cannot be replaced
    exactly, and stops the answer before its event, under `redact` too."""
    answer_format, clean = SSE_FIELDS[name]
    data = clean + line.encode() + b"\n" + clean
    guard = ANSWER_FORMATS[answer_format].stream(compiled("redact"))
    out = guard.feed(data) + guard.flush()
    assert KEY[:4].encode() not in out
    assert out.startswith(clean) and guard.denied == KIND


def test_a_value_an_audit_rule_records_is_counted_in_each_event_and_long_strings_are_not_kept() -> None:
    """Only a string nothing was found in is kept as read (an `audit` finding counts each time it
    comes), and only a short one: a stream's kept strings hold no more than a few hundred kilobytes."""
    from collections import Counter

    from tollgate.formats.answer_reading.string_places import CLEAN_SIZE, read_places

    compiled = compiled_for({"secrets.aws_access_key_id": "audit"})
    counts: Counter[str] = Counter()
    clean: set[str] = set()
    for _ in range(3):
        event = {"extra": f"key {AWS_KEY_ID}", "note": "x" * (CLEAN_SIZE + 1), "model": "m"}
        assert read_places(compiled, [(event, "extra", False), (event, "note", False), (event, "model", False)],
                           counts, clean) == (False, None)  # fmt: skip
    assert counts == {"secrets.aws_access_key_id": 3}
    assert clean == {"m"}
