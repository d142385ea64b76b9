"""Answers read as their clients read them (docs/guardrails.md, "Answers"): a UTF-8 byte order mark
before a stream's first event is read past, in every framing the answer guardrails read, however
the stream is split; an object that repeats a key stops the answer as `unread`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.examples import examples
from support.guardrail_samples import crc_token
from tollgate.formats.framing import BOM, SSEFramer
from tollgate.formats.mcp.answers import AnswerRelay
from tollgate.governance.guardrails import detectors
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, detected
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_servers import McpServer
from tollgate.governance.mcp.result_guard import ResultGuard

TOKEN = crc_token("gh" + "p_")
DENY = compiled_for(dict.fromkeys(detectors.KINDS, "deny"))


def _sse(*events: tuple[str | None, Any], end: bytes = b"\n") -> bytes:
    out = b""
    for name, data in events:
        if name is not None:
            out += b"event: " + name.encode() + end
        out += b"data: " + json.dumps(data, separators=(",", ":")).encode() + end + end
    return out


def _gemini(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]}


# One stream of each framing the answer guardrails read, its text `{}`: server-sent events with and
# without `event:` lines, with CR LF line ends, a JSON array streamed element by element.
STREAMS: dict[str, Any] = {
    "openai-chat": lambda text: _sse(
        (None, {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    ) + b"data: [DONE]\n\n",
    "openai-completions": lambda text: _sse(
        (None, {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": text}]})
    ) + b"data: [DONE]\n\n",
    "openai-responses": lambda text: _sse(
        (None, {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
                "delta": text}),
    ),
    "anthropic-messages": lambda text: _sse(
        (None, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ("message_stop", {"type": "message_stop"}),
    ),
    "gemini-generate": lambda text: _sse((None, _gemini(text)), end=b"\r\n"),
    "code-assist": lambda text: _sse((None, {"response": _gemini(text)})),
    "gemini-array": lambda text: b"[" + json.dumps(_gemini(text)).encode() + b"]",
    "mcp": lambda text: _sse(
        ("message", {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}})
    ),
}  # fmt: skip


def _guarded(name: str, data: bytes, cut: int) -> tuple[bytes, Any]:
    guard = ANSWER_FORMATS["gemini-generate" if name == "gemini-array" else name].stream(DENY)
    out = b"".join(guard.feed(data[i : i + cut]) for i in range(0, len(data), cut))
    return out + guard.flush(), guard


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("cut", [1, 2, 4, 64, 1 << 20])
def test_a_byte_order_mark_before_the_first_event_is_read_past(name: str, cut: int) -> None:
    out, guard = _guarded(name, BOM + STREAMS[name](f"the token {TOKEN} now"), cut)
    assert guard.denied == "secrets.github_token"
    assert TOKEN.encode() not in out and TOKEN[:8].encode() not in out
    # A clean answer goes on as it came, but for the mark: what a client reads of it is the same.
    clean = STREAMS[name]("nothing to see")
    out, guard = _guarded(name, BOM + clean, cut)
    assert (out, guard.denied, guard.counts) == (clean, None, {})


def test_a_byte_order_mark_after_the_first_byte_is_no_stream_mark() -> None:
    """Only the first bytes of a stream may be its mark: one further on is text of an event (a
    field the standard ignores), as every client reads it."""
    framer = SSEFramer()
    assert framer.feed(b"\n" + BOM + b"data: x\n\ndata: y\n\n") == [BOM + b"data: x", b"data: y"]


@given(data=st.lists(st.binary(max_size=40).filter(lambda b: b"\r" not in b), max_size=4), cuts=st.data())
@settings(max_examples=examples(300), deadline=None)
def test_the_framer_frames_a_stream_with_its_mark_as_without(data: list[bytes], cuts: st.DataObject) -> None:
    stream = b"".join(b"data: " + d.replace(b"\n", b" ") + b"\n\n" for d in data)
    marked = BOM + stream
    points = sorted(cuts.draw(st.lists(st.integers(0, len(marked)), max_size=6)))
    framer = SSEFramer()
    got = []
    for a, b in zip([0, *points], [*points, len(marked)], strict=True):
        got += framer.feed(marked[a:b])
    assert got == SSEFramer().feed(stream)


def test_an_mcp_stream_relayed_reads_past_its_mark() -> None:
    server = McpServer.model_validate({"name": "gh", "url": "https://mcp.example.test/mcp"})
    guard = ResultGuard(McpExchange(server, "POST"), DENY, frozenset({1}))
    relay = AnswerRelay(True, [1], guard=guard)
    result = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f"the token {TOKEN} now"}]}}
    data = BOM + _sse((None, result))  # its first line the data's
    out = b""
    for piece in [data[:1], data[1:2], data[2:40], data[40:], b""]:
        got = relay(piece)
        out += got if isinstance(got, bytes) else b"".join(got)
    assert TOKEN.encode() not in out
    assert json.loads(out.split(b"data: ")[1])["error"]["code"] == -32001
    assert relay.outcomes == {1: True}


def test_a_saved_answer_with_a_mark_is_told_by_its_first_event() -> None:
    assert detected(BOM + STREAMS["openai-chat"]("hi")) == ["openai-chat"]
    assert detected(BOM + b'{"id":"c","object":"chat.completion","choices":[]}') == ["openai-chat"]


# Where each stream's text is, by its key: a repeated key there puts two texts in one event.
TEXT_KEYS = {
    "openai-chat": "content", "openai-completions": "text", "openai-responses": "delta",
    "anthropic-messages": "text", "gemini-generate": "text", "code-assist": "text", "gemini-array": "text",
    "mcp": "text",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("secret_first", [True, False])
def test_an_event_that_repeats_a_key_stops_the_answer_unread(name: str, secret_first: bool) -> None:
    """orjson keeps a repeated key's last value, as most clients' parsers do; others keep the first.
    Read either way, one value would go on unread: the answer stops there (`unread`), nothing of
    either value sent."""
    values = [TOKEN, "clean words"] if secret_first else ["clean words", TOKEN]
    key = TEXT_KEYS[name].encode()
    twice = json.dumps(values[0]).encode() + b',"' + key + b'":' + json.dumps(values[1]).encode()
    data = STREAMS[name]("MARK").replace(b'"MARK"', twice)
    for cut in (3, 1 << 20):
        out, guard = _guarded(name, data, cut)
        assert guard.denied == "unread"
        assert TOKEN.encode() not in out and b"clean words" not in out


def test_a_github_token_without_its_checksum_stops_an_answer() -> None:
    """The answer's reading holds it as it streams, a character an event, as a checksummed one."""
    unchecked = TOKEN[:-6] + ("AAAAAA" if not TOKEN.endswith("AAAAAA") else "BBBBBB")
    events = [_sse((None, {"choices": [{"index": 0, "delta": {"content": ch}}]})) for ch in f"use {unchecked} now"]
    guard = ANSWER_FORMATS["openai-chat"].stream(DENY)
    out = b"".join(guard.feed(event) for event in events) + guard.flush()
    assert guard.denied == "secrets.github_token"
    assert b'"content":"u"' in out and b'"content":"g"' not in out
