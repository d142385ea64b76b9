"""What every streamed answer's guard shares (`formats/answer_reading/events.py`), held to in
each format whose events may carry two pieces of one channel (a chat chunk with two deltas of one
tool call, two choices of one index in a Completions chunk or a Bedrock chunk, two text parts of
one Gemini candidate): the client, reassembling the stream, gets the original text with only the
values replaced, and a clean answer comes through byte for byte. Anthropic's and the Responses
API's events each carry one piece of a channel at most."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import assume, given
from hypothesis import strategies as st

from support.answer_guards import drawn
from support.eventstream import event, invoke_chunk
from support.guardrail_samples import EMAIL
from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE,
    CLAUDE_ON_BEDROCK,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_RESPONSES,
)
from tollgate.formats.answer_reading.events import EventGuard
from tollgate.formats.bedrock_invoke.answer_guard import InvokeAnswerGuard
from tollgate.formats.gemini_generate.answer_guard import GeminiAnswerGuard
from tollgate.formats.openai_api.completions_guard import CompletionsAnswerGuard
from tollgate.formats.openai_chat.answer_guard import ChatAnswerGuard
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import AnswerDetectors, compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

CARD = "5555" + "555555554444"
REDACT = compiled_for(dict.fromkeys(detectors.KINDS, "redact"))
Pair = tuple[str, str]  # the two pieces of one channel an event carries


def _sse(objs: list[dict[str, Any]], end: bytes = b"data: [DONE]\n\n") -> bytes:
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs) + end


def _sse_objs(data: bytes) -> list[dict[str, Any]]:
    """Each event's data (one line each here), its lines read as the SSE spec reads them."""
    lines = re.split(rb"\r\n|\r|\n", data)
    return [json.loads(line[6:]) for line in lines if line.startswith(b"data: ") and line != b"data: [DONE]"]


def chat(pairs: list[Pair]) -> bytes:
    """One tool call's arguments, two deltas of it in each chunk."""
    begin = {"index": 0, "id": "t1", "type": "function", "function": {"name": "run", "arguments": ""}}
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [begin]}, "finish_reason": None}]}]
    for a, b in pairs:
        calls = [{"index": 0, "function": {"arguments": a}}, {"index": 0, "function": {"arguments": b}}]
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return _sse(chunks)


def chat_text(data: bytes) -> str:
    return "".join(
        call["function"].get("arguments", "")
        for obj in _sse_objs(data)
        for choice in obj["choices"]
        for call in choice["delta"].get("tool_calls") or ()
    )


def chat_content(pairs: list[Pair]) -> bytes:
    """One choice's text, in two choices of the same index in each chunk."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": a}}, {"index": 0, "delta": {"content": b}}]} for a, b in pairs
    ]
    return _sse([*chunks, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}])


def chat_content_text(data: bytes) -> str:
    return "".join(c["delta"].get("content") or "" for obj in _sse_objs(data) for c in obj["choices"])


def completions(pairs: list[Pair]) -> bytes:
    choice = {"logprobs": None, "finish_reason": None}
    chunks = [{"choices": [{"index": 0, "text": a, **choice}, {"index": 0, "text": b, **choice}]} for a, b in pairs]
    return _sse([*chunks, {"choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]}])


def completions_text(data: bytes) -> str:
    return "".join(c["text"] for obj in _sse_objs(data) for c in obj["choices"])


def gemini(pairs: list[Pair]) -> bytes:
    items = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": a}, {"text": b}]}, "index": 0}]}
        for a, b in pairs
    ]
    items.append({"candidates": [{"content": {"role": "model", "parts": []}, "index": 0, "finishReason": "STOP"}]})
    return b"".join(b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in items)


def gemini_text(data: bytes) -> str:
    return "".join(
        part.get("text", "")
        for obj in _sse_objs(data)
        for candidate in obj["candidates"]
        for part in candidate["content"]["parts"]
    )


def bedrock(pairs: list[Pair]) -> bytes:
    """An OpenAI model's chunks on Bedrock's InvokeModelWithResponseStream."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": a}}, {"index": 0, "delta": {"content": b}}]} for a, b in pairs
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(invoke_chunk(c) for c in chunks)


def bedrock_text(data: bytes) -> str:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    chunks = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in buffer]
    return "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])


FORMATS: dict[
    str, tuple[Callable[[AnswerDetectors], EventGuard], Callable[[list[Pair]], bytes], Callable[[bytes], str]]
] = {
    "chat tool call": (ChatAnswerGuard, chat, chat_text),
    "chat choice": (ChatAnswerGuard, chat_content, chat_content_text),
    "completions": (CompletionsAnswerGuard, completions, completions_text),
    "gemini": (GeminiAnswerGuard, gemini, gemini_text),
    "bedrock invoke": (InvokeAnswerGuard, bedrock, bedrock_text),
}


def read(guard: EventGuard, data: bytes, size: int) -> bytes:
    out = b"".join(guard.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + guard.flush()


def redacted(text: str) -> str:
    """The text as a scanner given it whole sends it on: its values replaced."""
    scanner = REDACT.scanner()
    return (scanner.feed(text.encode()).text + scanner.flush().text).decode()


def paired(text: str, cuts: list[int]) -> list[Pair]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    if len(pieces) % 2:
        pieces.append(" ")
    return [(pieces[i], pieces[i + 1]) for i in range(0, len(pieces), 2)]


_WORDS = st.text(alphabet="abcdefgh ", min_size=1, max_size=60)


@drawn(200)
@given(
    name=st.sampled_from(sorted(FORMATS)),
    before=_WORDS,
    after=_WORDS,
    value=st.sampled_from([None, EMAIL, CARD]),
    cuts=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=12),
    size=st.sampled_from([1, 7, 50, 100_000]),
)
def test_two_pieces_of_one_channel_an_event_give_the_text_with_only_its_values_replaced(
    name: str, before: str, after: str, value: str | None, cuts: list[int], size: int
) -> None:
    guard_of, write, text_of = FORMATS[name]
    pairs = paired(before + (f" {value} " if value else " ") + after, cuts)
    text = "".join(a + b for a, b in pairs)
    data = write(pairs)
    assert text_of(data) == text
    out = read(guard_of(REDACT), data, size)
    if value is None:
        assume(redacted(text) == text)  # letters that happen to make a value are not clean
        assert out == data
    else:
        assert value not in text_of(out) and text_of(out) == redacted(text)


def test_a_value_in_the_second_piece_of_an_event_leaves_the_first_as_it_came() -> None:
    """An event of two pieces of one channel whose second holds a value: written anew, the first
    piece keeps its text, the second carries the value replaced."""
    for name, (guard_of, write, text_of) in FORMATS.items():
        data = write([("Mail ", f"{EMAIL} now."), ("Fine ", "then.")])
        out = read(guard_of(REDACT), data, 100_000)
        assert text_of(out) == "Mail [REDACTED:pii.email] now.Fine then.", name
        if name != "bedrock invoke":  # its chunks are base64 in their frames
            data, out = data.replace(b"\r\n", b"\n"), out.replace(b"\r\n", b"\n")
            (later,) = [block for block in data.split(b"\n\n") if b"Fine " in block]
            assert later in out.split(b"\n\n"), name  # the event after it goes on as it came
            assert b'"Mail "' in out, name  # the first piece keeps its own text


# A piece of text, then one with a surrogate not paired (json.dumps writes it `\ud800`), in each
# streamed format's own events.
LONE = "a\ud800b"


def _messages_events(texts: list[str]) -> list[dict[str, Any]]:
    begin = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}} for t in texts]
    return [{"type": "message_start", "message": {"role": "assistant", "content": []}}, begin, *deltas]


def _responses_events(texts: list[str]) -> list[dict[str, Any]]:
    item = {"type": "message", "id": "m1", "role": "assistant", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        *(
            {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "content_index": 0, "delta": t}
            for t in texts
        ),
    ]


LONE_STREAMS: dict[str, Callable[[list[str]], bytes]] = {
    OPENAI_CHAT: lambda texts: _sse([{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts], b""),
    OPENAI_COMPLETIONS: lambda texts: _sse([{"choices": [{"index": 0, "text": t}]} for t in texts], b""),
    OPENAI_RESPONSES: lambda texts: _sse(_responses_events(texts), b""),
    ANTHROPIC_MESSAGES: lambda texts: b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in _messages_events(texts)
    ),
    CLAUDE_ON_BEDROCK: lambda texts: b"".join(invoke_chunk(e) for e in _messages_events(texts)),
    GEMINI_GENERATE: lambda texts: _sse([{"candidates": [{"content": {"parts": [{"text": t}]}}]} for t in texts], b""),
    BEDROCK_CONVERSE: lambda texts: b"".join(
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in texts
    ),
    BEDROCK_INVOKE: lambda texts: b"".join(
        invoke_chunk({"choices": [{"index": 0, "delta": {"content": t}}]}) for t in texts
    ),
}


def _seen(data: bytes) -> bytes:
    """What a client reads of a stream: an event stream's frames, a chunk's bytes decoded."""
    if not data.startswith(b"\x00"):
        return data
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    payloads = [json.loads(m.payload) for m in buffer]
    return b"".join(base64.b64decode(p["bytes"]) if "bytes" in p else json.dumps(p).encode() for p in payloads)


@pytest.mark.parametrize("read", [1, 100_000])
@pytest.mark.parametrize("name", sorted(LONE_STREAMS))
def test_a_lone_surrogate_in_a_delta_stops_the_stream_unread(name: str, read: int) -> None:
    """A delta whose text holds a surrogate not paired cannot be read: the stream stops before
    it, unread, with the format's own end; what came before it goes on; nothing is raised."""
    data = LONE_STREAMS[name](["Fine. ", LONE, "more"])
    assert b"\\ud800" in _seen(data)
    answer = ANSWER_FORMATS[name]
    guard = answer.stream(REDACT)
    out = b"".join(guard.feed(data[i : i + read]) for i in range(0, len(data), read))
    out += guard.flush()
    assert guard.denied == "unread"
    assert out.endswith(answer.denied_end("unread"))
    assert b"ud800" not in _seen(out) and b"more" not in _seen(out) and b"Fine. " in _seen(out)
