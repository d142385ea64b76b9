"""Members named `id`, `type`, `object` and `signature` are read as any string, but at the places
their format defines them opaque (signatures, encrypted data, padding): a key in a response's or an
item's id, a member not known's `type` or `object`, a Claude message's or tool use's id, a later
chat chunk's id, a `signature` inside a member not known, a chat audio's transcript, is redacted
under `redact` and stops the answer under `deny`, streamed (split anywhere) and whole. Real ids,
signatures and encrypted data, read, find nothing and go on byte for byte."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.answer_guards import compiled, drawn
from support.guardrail_samples import AWS_KEY_ID
from tollgate.formats import ANTHROPIC_MESSAGES, BEDROCK_CONVERSE, CLAUDE_ON_BEDROCK, OPENAI_CHAT, OPENAI_RESPONSES
from tollgate.formats.answer_reading.scanning import UNREAD
from tollgate.formats.bodies.json_codec import encode_json
from tollgate.formats.framing import event_frame
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

KEY = AWS_KEY_ID
KIND = "secrets.aws_access_key_id"
PLACEHOLDER = f"[REDACTED:{KIND}]".encode()
# Ids, signatures and encrypted data as the providers write them.
RESP_ID = "resp_68b2c0f1a2b48190a1d2c3e4f5a6b7c80d9e1f2a3b4c5d6e"
MSG_ID = "msg_68b2c0f1a2b48190b7c6d5e4f3a2b1c00f1e2d3c4b5a6978"
RS_ID = "rs_68b2c0f1a2b48190c3d4e5f6a7b8c9d00a1b2c3d4e5f6a7b"
FC_ID = "fc_68b2c0f1a2b48190d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9"
CALL_ID = "call_Xk3R9mQ2vL8pT5wN7yB4cF6h"
CHAT_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
CLAUDE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
TOOLU_ID = "toolu_01A09q90qw90lq917835lq9"
SIGNATURE = (
    "EqQBCkgIARABGAIiQL2x7JqW3n9kR8sVbT4mYc1pZ0aH6fGd5eUi2oNt3lQrKw8yXjBvCsDzEgFhIuJkLmOnPqRsTuVwXyZa"
    "BcDeFgHiJkLm+NoPqRs/TuVwXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLm=="
)
ENCRYPTED = "gAAAAABo2v" + "Xk3R9mQ2vL8pT5wN7yB4cF6hJ1sD0gA" * 6 + "=="


def sse(*events: dict[str, Any], named: bool = True) -> bytes:
    out = b""
    for event in events:
        if named and isinstance(event.get("type"), str):
            out += b"event: " + event["type"].encode() + b"\n"
        out += b"data: " + json.dumps(event).encode() + b"\n\n"
    return out


# ---- OpenAI Responses
def responses_stream(
    *, response: dict[str, Any] | None = None, item: dict[str, Any] | None = None, delta: dict[str, Any] | None = None
) -> bytes:
    """A Responses stream: a reasoning item (encrypted), a message in two deltas, a function call."""
    resp = {"id": RESP_ID, "object": "response", "status": "in_progress", "model": "gpt-5", "output": [],
            **(response or {})}  # fmt: skip
    reasoning = {"id": RS_ID, "type": "reasoning", "summary": [], "encrypted_content": ENCRYPTED}
    part = {"type": "output_text", "text": "Hello there.", "annotations": []}
    message = {"id": MSG_ID, "type": "message", "status": "completed", "role": "assistant", "content": [part],
               **(item or {})}  # fmt: skip
    call = {"id": FC_ID, "type": "function_call", "status": "completed", "call_id": CALL_ID, "name": "f",
            "arguments": "{}"}  # fmt: skip
    where = {"item_id": MSG_ID, "output_index": 1, "content_index": 0}
    deltas = [{"type": "response.output_text.delta", **where, "delta": p, "obfuscation": "aB3dE"} for p in
              ("Hello ", "there.")]  # fmt: skip
    deltas[1].update(delta or {})
    return sse(
        {"type": "response.created", "sequence_number": 0, "response": resp},
        {"type": "response.output_item.added", "output_index": 0, "item": reasoning},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *deltas,
        {"type": "response.output_text.done", **where, "text": "Hello there."},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {"type": "response.output_item.added", "output_index": 2, "item": call},
        {"type": "response.output_item.done", "output_index": 2, "item": call},
        {
            "type": "response.completed",
            "response": {**resp, "status": "completed", "output": [reasoning, message, call]},
        },
    )


def responses_whole(*, response: dict[str, Any] | None = None, item: dict[str, Any] | None = None) -> dict[str, Any]:
    reasoning = {"id": RS_ID, "type": "reasoning", "summary": [], "encrypted_content": ENCRYPTED}
    part = {"type": "output_text", "text": "Hello there.", "annotations": []}
    message = {"id": MSG_ID, "type": "message", "status": "completed", "role": "assistant", "content": [part],
               **(item or {})}  # fmt: skip
    return {"id": RESP_ID, "object": "response", "status": "completed", "model": "gpt-5",
            "output": [reasoning, message], **(response or {})}  # fmt: skip


# ---- Anthropic Messages
def claude_stream(
    *, message: dict[str, Any] | None = None, tool: dict[str, Any] | None = None, delta: dict[str, Any] | None = None
) -> bytes:
    start = {"id": CLAUDE_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
             "stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 1}, **(message or {})}  # fmt: skip
    use = {"type": "tool_use", "id": TOOLU_ID, "name": "lookup", "input": {}, **(tool or {})}
    return sse(
        {"type": "message_start", "message": start},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Look it up."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Looking. "}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": use},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None, **(delta or {})},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    )


def claude_whole(*, top: dict[str, Any] | None = None, tool: dict[str, Any] | None = None) -> dict[str, Any]:
    content = [
        {"type": "thinking", "thinking": "Look it up.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": ENCRYPTED},
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": TOOLU_ID, "name": "lookup", "input": {}, **(tool or {})},
    ]
    return {"id": CLAUDE_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": content,
            "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 9}, **(top or {})}  # fmt: skip


# ---- OpenAI chat
def chunk(delta: dict[str, Any], finish: str | None = None, **top: Any) -> dict[str, Any]:
    event = {"id": CHAT_ID, "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o",
             "obfuscation": "aB3dE"}  # fmt: skip
    return {**event, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **top}


def chat_stream(*, later: dict[str, Any] | None = None, delta: dict[str, Any] | None = None) -> bytes:
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello "})]
    events.append({**chunk({"content": "there.", **(delta or {})}), **(later or {})})
    events.append(chunk({}, "stop"))
    return sse(*events, named=False) + b"data: [DONE]\n\n"


def chat_audio_stream(transcript: list[str]) -> bytes:
    first = {"role": "assistant", "audio": {"id": "audio_68b2c0f1a2b4819", "data": ENCRYPTED, "expires_at": 1,
             "transcript": ""}}  # fmt: skip
    events = [chunk(first), *(chunk({"audio": {"transcript": p, "data": ENCRYPTED}}) for p in transcript)]
    return sse(*events, chunk({}, "stop"), named=False) + b"data: [DONE]\n\n"


def chat_whole(message: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": CHAT_ID, "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi.", **message},
                         "finish_reason": "stop"}], **top}  # fmt: skip


# Each place: the stream with the key there, and what a redacted stream does (None: it goes on
# redacted; `unread`: it stops, the place being one no channel reads in pieces).
STREAMED: dict[str, tuple[str, bytes, str | None]] = {
    "responses: the response's id": (OPENAI_RESPONSES, responses_stream(response={"id": KEY}), None),
    "responses: an item's id": (OPENAI_RESPONSES, responses_stream(item={"id": KEY}), None),
    "responses: a delta event's item id": (OPENAI_RESPONSES, responses_stream(delta={"item_id": KEY}), None),
    "responses: a delta event's member's id": (OPENAI_RESPONSES, responses_stream(delta={"x": {"id": KEY}}), UNREAD),
    "responses: an item's member's type": (OPENAI_RESPONSES, responses_stream(item={"x": {"type": KEY}}), None),
    "responses: the response's member's object": (
        OPENAI_RESPONSES,
        responses_stream(response={"x": {"object": KEY}}),
        None,
    ),
    "responses: an item's member's signature": (
        OPENAI_RESPONSES,
        responses_stream(item={"x": {"signature": KEY, "encrypted": KEY}}),
        None,
    ),
    "messages: the message's id": (ANTHROPIC_MESSAGES, claude_stream(message={"id": KEY}), None),
    "messages: a tool use's id": (ANTHROPIC_MESSAGES, claude_stream(tool={"id": KEY}), None),
    "messages: a block's member's type": (ANTHROPIC_MESSAGES, claude_stream(tool={"x": {"type": KEY}}), None),
    "messages: a block's member's signature": (
        ANTHROPIC_MESSAGES,
        claude_stream(tool={"x": {"signature": KEY}}),
        None,
    ),
    "messages: a message delta's member's id": (ANTHROPIC_MESSAGES, claude_stream(delta={"x": {"id": KEY}}), None),
    "chat: a later chunk's id": (OPENAI_CHAT, chat_stream(later={"id": KEY}), None),
    "chat: a later chunk's object": (OPENAI_CHAT, chat_stream(later={"object": KEY}), None),
    "chat: a signature in a chunk's member not known": (
        OPENAI_CHAT,
        chat_stream(later={"x": {"signature": KEY}}),
        None,
    ),
    "chat: a signature in a delta's member not known": (
        OPENAI_CHAT,
        chat_stream(delta={"x": {"signature": KEY}}),
        None,
    ),
    "chat: an audio's transcript": (OPENAI_CHAT, chat_audio_stream(["The key is ", KEY[:7], KEY[7:], "."]), None),
}

WHOLE: dict[str, tuple[str, dict[str, Any]]] = {
    "responses: the response's id": (OPENAI_RESPONSES, responses_whole(response={"id": KEY})),
    "responses: an item's id": (OPENAI_RESPONSES, responses_whole(item={"id": KEY})),
    "responses: an item's member's type": (OPENAI_RESPONSES, responses_whole(item={"x": {"type": KEY}})),
    "responses: the response's member's object": (OPENAI_RESPONSES, responses_whole(response={"x": {"object": KEY}})),
    "messages: the message's id": (ANTHROPIC_MESSAGES, claude_whole(top={"id": KEY})),
    "messages: a tool use's id": (ANTHROPIC_MESSAGES, claude_whole(tool={"id": KEY})),
    "messages: a block's member's type": (ANTHROPIC_MESSAGES, claude_whole(tool={"x": {"type": KEY}})),
    "chat: a signature in a member not known": (OPENAI_CHAT, chat_whole({"x": {"signature": KEY}})),
    "chat: an audio's transcript": (
        OPENAI_CHAT,
        chat_whole({"audio": {"id": "audio_1", "data": ENCRYPTED, "expires_at": 1, "transcript": f"It is {KEY}."}}),
    ),
}


def through(answer_format: str, action: str, data: bytes, cuts: list[int]) -> tuple[bytes, Any]:
    guard = ANSWER_FORMATS[answer_format].stream(compiled(action))
    out, at = b"", 0
    for cut in [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]:
        out += guard.feed(data[at:cut])
        at = cut
    return out + guard.flush(), guard


CUTS = st.lists(st.integers(min_value=0, max_value=4000), max_size=12)


@pytest.mark.parametrize("name", list(STREAMED))
@drawn(40)
@given(cuts=CUTS)
def test_a_key_at_a_place_not_opaque_is_redacted_in_a_stream_split_anywhere(name: str, cuts: list[int]) -> None:
    answer_format, data, redacted = STREAMED[name]
    out, guard = through(answer_format, "redact", data, cuts)
    assert KEY.encode() not in out
    assert guard.denied == redacted
    if redacted is None:
        assert PLACEHOLDER in out and guard.counts.get(KIND, 0) >= 1


@pytest.mark.parametrize("name", list(STREAMED))
@drawn(40)
@given(cuts=CUTS)
def test_a_key_at_a_place_not_opaque_stops_a_stream_under_deny(name: str, cuts: list[int]) -> None:
    answer_format, data, redacted = STREAMED[name]
    out, guard = through(answer_format, "deny", data, cuts)
    assert KEY[:4].encode() not in out
    assert guard.denied == (redacted or KIND)


@pytest.mark.parametrize("name", list(WHOLE))
def test_a_key_at_a_place_not_opaque_is_redacted_or_refused_whole(name: str) -> None:
    answer_format, body = WHOLE[name]
    whole = ANSWER_FORMATS[answer_format].whole
    out, denied, counts = whole(compiled("redact"), json.dumps(body).encode())
    assert KEY.encode() not in out and PLACEHOLDER in out
    assert denied is None and counts.get(KIND, 0) >= 1
    refused = whole(compiled("deny"), json.dumps(body).encode())
    assert refused[1] == KIND


CLEAN_STREAMS = {
    "responses": (OPENAI_RESPONSES, responses_stream()),
    "messages": (ANTHROPIC_MESSAGES, claude_stream()),
    "chat": (OPENAI_CHAT, chat_stream()),
    "chat audio": (OPENAI_CHAT, chat_audio_stream(["Hello ", "there."])),
}


@pytest.mark.parametrize("name", list(CLEAN_STREAMS))
@pytest.mark.parametrize("action", ["redact", "deny"])
@drawn(30)
@given(cuts=CUTS)
def test_real_ids_signatures_and_encrypted_data_go_on_byte_for_byte(name: str, action: str, cuts: list[int]) -> None:
    answer_format, data = CLEAN_STREAMS[name]
    out, guard = through(answer_format, action, data, cuts)
    assert (out, guard.denied, guard.counts) == (data, None, {})


@pytest.mark.parametrize(
    ("answer_format", "body"),
    [(OPENAI_RESPONSES, responses_whole()), (ANTHROPIC_MESSAGES, claude_whole()),
     (OPENAI_CHAT, chat_whole({"audio": {"id": "audio_1", "data": ENCRYPTED, "expires_at": 1, "transcript": "Hi."}}))],
)  # fmt: skip
@pytest.mark.parametrize("action", ["redact", "deny"])
def test_a_whole_answer_with_real_ids_goes_on_as_it_came(answer_format: str, body: dict[str, Any], action: str) -> None:
    data = json.dumps(body).encode()
    assert ANSWER_FORMATS[answer_format].whole(compiled(action), data) == (data, None, {})


# ---- Bedrock's event stream: each frame's headers are read (a header is not written anew: a
# value in one stops the answer, whatever the action).
def converse_frames(extra: dict[str, str] | None = None, event_type: str = "contentBlockDelta") -> bytes:
    def frame(event: str, payload: dict[str, Any], more: dict[str, str] | None = None) -> bytes:
        headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
        return event_frame({**headers, **(more or {})}, encode_json(payload))

    return b"".join(
        (
            frame("messageStart", {"role": "assistant"}),
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello "}}),
            frame(event_type, {"contentBlockIndex": 0, "delta": {"text": "there."}}, extra),
            frame("contentBlockStop", {"contentBlockIndex": 0}),
            frame("messageStop", {"stopReason": "end_turn"}),
        )
    )


def claude_frames(extra: dict[str, str] | None = None) -> bytes:
    events = [
        {"type": "message_start", "message": claude_whole(tool={}) | {"content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    frames = [
        event_frame({**headers, **(extra or {})} if i == 2 else headers, encode_json(
            {"bytes": base64.b64encode(encode_json(e)).decode()}))
        for i, e in enumerate(events)
    ]  # fmt: skip
    return b"".join(frames)


HEADERS: dict[str, tuple[str, bytes]] = {
    "converse: a header not known": (BEDROCK_CONVERSE, converse_frames({"x-vendor-note": KEY})),
    "converse: a header's name": (BEDROCK_CONVERSE, converse_frames({KEY: "1"})),
    "converse: the event type": (BEDROCK_CONVERSE, converse_frames(event_type=KEY)),
    "invoke (Claude): a header not known": (CLAUDE_ON_BEDROCK, claude_frames({"x-vendor-note": KEY})),
}


@pytest.mark.parametrize("name", list(HEADERS))
@pytest.mark.parametrize("action", ["redact", "deny"])
@drawn(30)
@given(cuts=CUTS)
def test_a_key_in_an_event_streams_header_stops_the_answer(name: str, action: str, cuts: list[int]) -> None:
    answer_format, data = HEADERS[name]
    out, guard = through(answer_format, action, data, cuts)
    assert KEY.encode() not in out
    assert guard.denied == KIND and guard.counts == {KIND: 1}


@pytest.mark.parametrize(("answer_format", "data"), [(BEDROCK_CONVERSE, converse_frames()),
                                                     (CLAUDE_ON_BEDROCK, claude_frames())])  # fmt: skip
@pytest.mark.parametrize("action", ["redact", "deny"])
def test_an_event_stream_with_its_own_headers_goes_on_byte_for_byte(
    answer_format: str, data: bytes, action: str
) -> None:
    out, guard = through(answer_format, action, data, list(range(0, len(data), 11)))
    assert (out, guard.denied, guard.counts) == (data, None, {})


# ---- Bedrock's events: a tool use's id and a signature outside reasoning are read; reasoning's
# signature, the counts and the padding are not.
TOOLUSE_ID = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"


def converse_tool(tool_id: str = TOOLUSE_ID, extra: dict[str, Any] | None = None) -> bytes:
    def frame(event: str, payload: dict[str, Any]) -> bytes:
        headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
        return event_frame(headers, encode_json({**payload, "p": "abcdefghijkl"}))

    reasoning = {"reasoningContent": {"signature": SIGNATURE}}
    start = {"toolUse": {"toolUseId": tool_id, "name": "lookup", **(extra or {})}}
    return b"".join(
        (
            frame("messageStart", {"role": "assistant"}),
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hm."}}}),
            frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": reasoning}),
            frame("contentBlockStop", {"contentBlockIndex": 0}),
            frame("contentBlockStart", {"contentBlockIndex": 1, "start": start}),
            frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}}),
            frame("contentBlockStop", {"contentBlockIndex": 1}),
            frame("messageStop", {"stopReason": "tool_use"}),
            frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 5}, "metrics": {"latencyMs": 9}}),
        )
    )


def converse_whole(tool_id: str = TOOLUSE_ID, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    content = [
        {"reasoningContent": {"reasoningText": {"text": "Hm.", "signature": SIGNATURE}}},
        {"toolUse": {"toolUseId": tool_id, "name": "lookup", "input": {}, **(extra or {})}},
    ]
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": "tool_use",
            "usage": {"inputTokens": 3, "outputTokens": 5}, "metrics": {"latencyMs": 9}}  # fmt: skip


BEDROCK_PLACES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "a tool use's id": (converse_tool(f"tooluse_{KEY}"), converse_whole(f"tooluse_{KEY}")),
    "a signature outside reasoning": (
        converse_tool(extra={"x": {"signature": KEY}}),
        converse_whole(extra={"x": {"signature": KEY}}),
    ),
}


@pytest.mark.parametrize("name", list(BEDROCK_PLACES))
@drawn(30)
@given(cuts=CUTS)
def test_a_key_in_a_bedrock_events_id_or_signature_outside_reasoning_is_read(name: str, cuts: list[int]) -> None:
    data, body = BEDROCK_PLACES[name]
    out, guard = through(BEDROCK_CONVERSE, "redact", data, cuts)
    assert KEY.encode() not in out and PLACEHOLDER in out
    assert (guard.denied, guard.counts) == (None, {KIND: 1})
    out, guard = through(BEDROCK_CONVERSE, "deny", data, cuts)
    assert KEY[:4].encode() not in out and guard.denied == KIND
    whole = ANSWER_FORMATS[BEDROCK_CONVERSE].whole
    redacted, denied, counts = whole(compiled("redact"), json.dumps(body).encode())
    assert KEY.encode() not in redacted and PLACEHOLDER in redacted
    assert (denied, counts) == (None, {KIND: 1})
    assert whole(compiled("deny"), json.dumps(body).encode())[1] == KIND


@pytest.mark.parametrize("action", ["redact", "deny"])
def test_a_bedrock_answer_with_real_ids_and_signatures_goes_on_as_it_came(action: str) -> None:
    data = converse_tool()
    out, guard = through(BEDROCK_CONVERSE, action, data, list(range(0, len(data), 13)))
    assert (out, guard.denied, guard.counts) == (data, None, {})
    body = json.dumps(converse_whole()).encode()
    assert ANSWER_FORMATS[BEDROCK_CONVERSE].whole(compiled(action), body) == (body, None, {})
