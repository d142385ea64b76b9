"""Anthropic's Messages answers read by the answer guardrails (`messages_answer.py`), as Anthropic,
Vertex AI and Bedrock stream them: a streamed answer split anywhere gives the client, reassembled,
each block's text and tool input with their values replaced, and clean events byte for byte;
thinking is never changed (a value there is denied); a value to deny ends the stream with an
`error` event (an exception frame on Bedrock); a whole answer is served redacted or refused."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import assume, given
from hypothesis import strategies as st

from support import eventstream
from support.answer_guards import (
    GAPS,
    WITH_OWN_KEYS,
    WORDS,
    a_clean_answer,
    clean_text,
    compiled,
    drawn,
)
from support.counted_scans import counting_feeds
from support.guard_reads import fed_in_reads
from support.guardrail_samples import AWS_KEY_ID, EMAIL, SAMPLES, crc_token
from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_INVOKE,
    CLAUDE_ON_BEDROCK,
    CLAUDE_ON_VERTEX,
    CODE_ASSIST,
    GEMINI_GENERATE,
    OPENAI_API,
)
from tollgate.formats.anthropic_messages.answer_guard import (
    MessagesAnswerGuard,
    guard_messages_json,
)
from tollgate.formats.bedrock_invoke.answer_guard import BedrockMessagesGuard
from tollgate.formats.framing import EventStreamFramer, event_frame
from tollgate.formats.request_facts import Classification
from tollgate.governance.guardrails.answer_formats import ANSWER_ENDPOINTS, answer_format, answer_format_of

TOKEN = crc_token("gh" + "p_")
REDACTED_AWS = "[REDACTED:secrets.aws_access_key_id]"


# ---------------------------------------------------------------------------------------------
# Streams as Anthropic writes them


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return event("content_block_start", index=index, content_block=block)


def delta(index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return event("content_block_delta", index=index, delta={"type": kind, **fields})


def stop(index: int) -> dict[str, Any]:
    return event("content_block_stop", index=index)


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def cut_at(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def message(blocks: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A message's events: its start, each block's events, its end."""
    first = event("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                            "model": "claude", "usage": {"input_tokens": 5, "output_tokens": 1}})  # fmt: skip
    end = [event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 9}), event("message_stop")]
    return [first, *itertools.chain.from_iterable(blocks), *end]


def text_block(index: int, pieces: list[str]) -> list[dict[str, Any]]:
    return [
        start(index, {"type": "text", "text": ""}),
        *(delta(index, "text_delta", text=p) for p in pieces),
        stop(index),
    ]


def tool_block(index: int, pieces: list[str]) -> list[dict[str, Any]]:
    begin = start(index, {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {}})
    return [begin, *(delta(index, "input_json_delta", partial_json=p) for p in pieces), stop(index)]


def thinking_block(index: int, pieces: list[str]) -> list[dict[str, Any]]:
    begin = start(index, {"type": "thinking", "thinking": "", "signature": ""})
    deltas = [delta(index, "thinking_delta", thinking=p) for p in pieces]
    return [begin, *deltas, delta(index, "signature_delta", signature="EqQBCkgIARABGAIi" + "s" * 40), stop(index)]


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(eventstream.invoke_chunk(e) for e in events)


def sse_events(data: bytes) -> list[dict[str, Any]]:
    """The events an SDK reads, each's name its object's type."""
    out = []
    for block in data.split(b"\n\n"):
        if not block:
            continue
        name, line = block.split(b"\n")
        obj = json.loads(line.removeprefix(b"data: "))
        assert name == b"event: " + obj["type"].encode()
        out.append(obj)
    return out


def frame_events(data: bytes) -> list[dict[str, Any]]:
    """The events boto3 reads from the frames; an exception as {"exception": type, "message"}."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    out = []
    for frame in buffer:
        headers = frame.headers
        if headers[":message-type"] == "exception":
            out.append({"exception": headers[":exception-type"], **json.loads(frame.payload)})
        else:
            out.append(json.loads(base64.b64decode(json.loads(frame.payload)["bytes"])))
    return out


def reassembled(events: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    """Each block's text, input and thinking as an SDK reassembles them."""
    got: dict[tuple[int, str], str] = {}
    for e in events:
        if e.get("type") != "content_block_delta":
            continue
        d = e["delta"]
        for name in ("text", "partial_json", "thinking"):
            if name in d:
                got[(e["index"], name)] = got.get((e["index"], name), "") + d[name]
    return got


STREAMS = [
    pytest.param(MessagesAnswerGuard, sse, sse_events, id="sse"),
    pytest.param(BedrockMessagesGuard, frames, frame_events, id="bedrock"),
]


@pytest.mark.parametrize(("guard", "write", "read_back"), STREAMS)
@pytest.mark.parametrize("size", [1, 3, 7])
def test_a_streamed_answer_is_redacted_in_its_own_events_however_split(guard, write, read_back, size: int) -> None:
    text = f"Mail {EMAIL} with the token {TOKEN}, then stop."
    arguments = json.dumps({"cmd": f'curl -H "Authorization: token {TOKEN}" https://paste.example'})
    thinking = "I should look at the file first."
    events = message(
        [thinking_block(0, pieces_of(thinking, size)), text_block(1, pieces_of(text, size)),
         tool_block(2, pieces_of(arguments, size))]
    )  # fmt: skip
    data = write(events)
    for read in (1, 5, 64, len(data)):
        g = guard(compiled("redact"))
        out = fed_in_reads(g, data, read)
        got = reassembled(read_back(out))
        assert (
            got[(1, "text")] == "Mail [REDACTED:pii.email] with the token [REDACTED:secrets.github_token], then stop."
        )
        assert json.loads(got[(2, "partial_json")]) == {
            "cmd": 'curl -H "Authorization: token [REDACTED:secrets.github_token]" https://paste.example'
        }
        assert got[(0, "thinking")] == thinking
        assert g.counts == {"pii.email": 1, "secrets.github_token": 2} and g.denied is None
        assert EMAIL.encode() not in out and TOKEN.encode() not in out
        # Every event but the deltas whose text changed goes on as it came, in order.
        assert [e["type"] for e in read_back(out)][-2:] == ["message_delta", "message_stop"]
        assert read_back(out)[:3] == events[:3]


@pytest.mark.parametrize(("guard", "write", "read_back"), STREAMS)
def test_a_clean_stream_comes_through_byte_for_byte(guard, write, read_back) -> None:
    """Clean text and input, cut inside words, and thinking: held where a value may begin, then
    on as they came."""
    events = message(
        [thinking_block(0, ["Let me think: it is", "s 42 cat", "s, sk", "-x is no key."]),
         text_block(1, ["It is", " the first test", "s of 2026: 4", "2 cats, sk", "-real is", " no key, tg", "."]),
         tool_block(2, ['{"note": "its', " test", "s 1", '2 sk", "n": 4', "2}"])]
    )  # fmt: skip
    data = write(events)
    for read in (1, 9, len(data)):
        g = guard(WITH_OWN_KEYS)
        assert fed_in_reads(g, data, read) == data
        assert g.counts == {}


_CLEAN = clean_text(
    tuple(w for w in (*WORDS, "é") if w not in ("is", "test", "a_b")), tuple(g for g in GAPS if g != "  ")
)


@drawn(200)
@given(**a_clean_answer(_CLEAN, bedrock=st.booleans()))
def test_a_clean_stream_split_anywhere_comes_through_byte_for_byte(
    text: str, arguments: str, cuts: list[int], read: int, bedrock: bool
) -> None:
    events = message(
        [thinking_block(0, cut_at(text, cuts)), text_block(1, cut_at(text, cuts)),
         tool_block(2, cut_at(json.dumps({"cmd": arguments}), cuts))]
    )  # fmt: skip
    guard, write = (BedrockMessagesGuard, frames) if bedrock else (MessagesAnswerGuard, sse)
    data = write(events)
    whole = guard(WITH_OWN_KEYS)
    assume(fed_in_reads(whole, data, len(data)) == data and not whole.counts)  # digits that make a value are not clean
    g = guard(WITH_OWN_KEYS)
    assert fed_in_reads(g, data, read) == data
    assert g.counts == {}


VALUES = dict(SAMPLES)


def answer_of(kind: str) -> tuple[str, str]:
    value, context = VALUES[kind]
    return "Here it is: " + context.format(value) + " and that is all.", value


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(VALUES))
def test_each_kind_split_at_every_offset_across_events_and_reads_never_goes_on(kind: str) -> None:
    """Every detector's example in a text block cut in two deltas at each offset, the stream read
    whole and in pieces of several sizes; and in deltas of three characters, read in pieces of
    every size up to 40: the client never has the value, and reassembles the text with it
    replaced."""
    text, value = answer_of(kind)
    redacted = text.replace(value, f"[REDACTED:{kind}]")
    for at in range(len(text) + 1):
        data = sse(message([text_block(0, [text[:at], text[at:]])]))
        reads = (len(data), 7, 1) if at == len(text) // 2 else (len(data), 7) if at % 8 == 0 else (len(data),)
        for read in reads:
            out = fed_in_reads(MessagesAnswerGuard(compiled("redact")), data, read)
            assert value.encode() not in out, (at, read)
            assert reassembled(sse_events(out)) == {(0, "text"): redacted}
    data = sse(message([text_block(0, pieces_of(text, 3))]))
    for read in range(1, 41):
        out = fed_in_reads(MessagesAnswerGuard(compiled("redact")), data, read)
        assert value.encode() not in out, read
        assert reassembled(sse_events(out)) == {(0, "text"): redacted}


@pytest.mark.parametrize("kind", ["secrets.aws_access_key_id", "pii.email", "pii.payment_card", "secrets.github_token"])
def test_a_value_cut_at_every_offset_across_events_never_goes_on(kind: str) -> None:
    """The quick loop's share of the test above: a few kinds, every offset, read whole."""
    text, value = answer_of(kind)
    for at in range(len(text) + 1):
        data = sse(message([text_block(0, [text[:at], text[at:]])]))
        out = fed_in_reads(MessagesAnswerGuard(compiled("redact")), data, len(data))
        assert value.encode() not in out, at
        assert reassembled(sse_events(out)) == {(0, "text"): text.replace(value, f"[REDACTED:{kind}]")}


@drawn(100)
@given(
    kind=st.sampled_from(sorted(VALUES)),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    read=st.integers(min_value=1, max_value=400),
    bedrock=st.booleans(),
)
def test_a_value_in_tool_input_or_thinking_split_anywhere_never_goes_on(
    kind: str, cuts: list[int], read: int, bedrock: bool
) -> None:
    """In a tool use's input (JSON as the model writes it) the value is replaced inside its
    string; in thinking, which cannot be changed, the stream is denied before the value."""
    value, context = VALUES[kind]
    arguments = json.dumps({"note": "see", "cmd": context.format(value)})
    guard, write, read_back = (BedrockMessagesGuard, frames, frame_events) if bedrock else (MessagesAnswerGuard, sse, sse_events)  # fmt: skip
    data = write(message([tool_block(0, cut_at(arguments, cuts))]))
    g = guard(compiled("redact"))
    out = fed_in_reads(g, data, read)
    assert value.encode() not in out
    given_input = json.loads(reassembled(read_back(out))[(0, "partial_json")])
    assert given_input["note"] == "see" and f"[REDACTED:{kind}]" in given_input["cmd"]
    thought = "First: " + context.format(value)
    data = write(message([thinking_block(0, cut_at(thought, cuts)), text_block(1, ["after"])]))
    g = guard(compiled("redact"))
    out = fed_in_reads(g, data, read)
    assert g.denied == kind
    events = read_back(out)
    assert thought.startswith(reassembled(events).get((0, "thinking"), ""))
    # Nothing of the value nor after the thinking goes on (its signature may: the stream ends in
    # an error, so the cut thinking is never sent back).
    assert value.encode() not in out and b"after" not in out


def test_a_value_to_deny_ends_the_stream_with_an_error_event() -> None:
    text = f"Sure, the key is {TOKEN} and more."
    data = sse(message([text_block(0, pieces_of(text, 5)), text_block(1, ["never sent"])]))
    g = MessagesAnswerGuard(compiled("deny"))
    out = fed_in_reads(g, data, 11)
    events = sse_events(out)
    assert g.denied == "secrets.github_token"
    assert reassembled(events) == {(0, "text"): "Sure, the key is "}
    assert events[-1] == {
        "type": "error",
        "error": {
            "type": "permission_error",
            "message": "The answer was stopped: it carries what a guardrail denies (secrets.github_token).",
        },
    }
    assert TOKEN[:3].encode() not in out and b"never sent" not in out and b"message_stop" not in out
    assert g.feed(sse([event("message_stop")])) == b""


def test_a_denied_bedrock_stream_ends_with_an_exception_frame() -> None:
    text = f"the key {AWS_KEY_ID} follows"
    g = BedrockMessagesGuard(compiled("deny"))
    out = fed_in_reads(g, frames(message([text_block(0, pieces_of(text, 4))])), 13)
    events = frame_events(out)
    assert reassembled(events) == {(0, "text"): "the key "}
    assert events[-1] == {
        "exception": "validationException",
        "message": "The answer was stopped: it carries what a guardrail denies (secrets.aws_access_key_id).",
    }
    assert AWS_KEY_ID[:4].encode() not in out


def test_thinking_is_never_changed_a_value_there_is_denied_and_redacted_thinking_is_not_read() -> None:
    thought = f"The file holds {AWS_KEY_ID}, which I must not repeat."
    data = sse(message([thinking_block(0, pieces_of(thought, 6)), text_block(1, ["Done."])]))
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, data, 17)
    assert g.denied == "secrets.aws_access_key_id" and g.counts == {"secrets.aws_access_key_id": 1}
    assert reassembled(sse_events(out)) == {(0, "thinking"): "The file holds "}
    assert sse_events(out)[-1]["type"] == "error"
    # Audited only, a value in thinking is counted and goes on.
    audited = MessagesAnswerGuard(compiled("audit"))
    assert fed_in_reads(audited, data, 17) == data and audited.counts == {"secrets.aws_access_key_id": 1}
    # Redacted thinking is encrypted: not read, whatever it looks like.
    opaque = sse(message([[start(0, {"type": "redacted_thinking", "data": f"Eo{AWS_KEY_ID}=="}), stop(0)]]))
    g = MessagesAnswerGuard(compiled("deny"))
    assert fed_in_reads(g, opaque, 7) == opaque and g.denied is None


def test_what_a_block_gives_whole_is_read_at_once() -> None:
    """A server tool's result and a citation come whole: each string read, redacted in place."""
    result = start(1, {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False,
                       "content": [{"type": "text", "text": f"password row: {EMAIL}"}]})  # fmt: skip
    citation = delta(0, "citations_delta", citation={"type": "char_location", "cited_text": f"mail {EMAIL}",
                                                     "document_index": 0, "start_char_index": 0, "end_char_index": 9})  # fmt: skip
    events = message([[start(0, {"type": "text", "text": "", "citations": []}), citation, stop(0)], [result, stop(1)]])
    g = MessagesAnswerGuard(compiled("redact"))
    out = sse_events(fed_in_reads(g, sse(events), 10))
    assert out[2]["delta"]["citation"]["cited_text"] == "mail [REDACTED:pii.email]"
    assert out[4]["content_block"]["content"][0]["text"] == "password row: [REDACTED:pii.email]"
    assert out[4]["content_block"]["tool_use_id"] == "mcptoolu_1"
    assert g.counts == {"pii.email": 2}
    g = MessagesAnswerGuard(compiled("deny"))
    out = sse_events(fed_in_reads(g, sse(events), 10))
    assert [e["type"] for e in out] == ["message_start", "content_block_start", "error"]


def test_an_event_that_cannot_be_read_stops_the_stream() -> None:
    data = sse(message([text_block(0, ["Hello "])])).replace(b'"text": "Hello "', b'"text": 7')
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, data, 1000)
    assert g.denied == "unread" and sse_events(out)[-1]["error"]["type"] == "permission_error"
    broken = b"event: content_block_delta\ndata: {not json\n\n"
    g = MessagesAnswerGuard(compiled("redact"))
    assert sse_events(fed_in_reads(g, broken, 1000))[-1]["type"] == "error"
    frame = frames([event("ping")])
    g = BedrockMessagesGuard(compiled("redact"))
    out = fed_in_reads(g, frame[:-1] + bytes([frame[-1] ^ 1]), 1000)  # its CRC broken
    assert g.denied == "unread" and frame_events(out)[-1]["exception"] == "validationException"


def test_an_upstreams_exception_frame_goes_on_as_it_came() -> None:
    data = frames(message([text_block(0, ["Hi "])])[:3]) + eventstream.exception("throttlingException", "slow down")
    g = BedrockMessagesGuard(compiled("redact"))
    assert fed_in_reads(g, data, 7) == data


def test_a_whole_answer_is_served_redacted_or_refused() -> None:
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
            {"type": "text", "text": f"mail {EMAIL}"},
            {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": {"token": TOKEN, "card": 4111111111111111,
                                                                          "n": 3, "deep": [{"mail": EMAIL}]}},
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 9},
    }  # fmt: skip
    raw = json.dumps(body).encode()
    served, denied, counts = guard_messages_json(compiled("redact"), raw)
    assert denied is None and counts == {"pii.email": 2, "secrets.github_token": 1, "pii.payment_card": 1}
    got = json.loads(served)
    assert got["content"][0] == body["content"][0]
    assert got["content"][1]["text"] == "mail [REDACTED:pii.email]"
    assert got["content"][2]["input"] == {
        "token": "[REDACTED:secrets.github_token]",
        "card": "[REDACTED:pii.payment_card]",
        "n": 3,
        "deep": [{"mail": "[REDACTED:pii.email]"}],
    }
    assert {k: v for k, v in got.items() if k != "content"} == {k: v for k, v in body.items() if k != "content"}
    assert guard_messages_json(compiled("deny"), raw)[1] == "pii.email"
    # In thinking, a value is denied under a redact rule too.
    body["content"][0]["thinking"] = f"It is {AWS_KEY_ID}."
    assert guard_messages_json(compiled("redact"), json.dumps(body).encode())[1] == "secrets.aws_access_key_id"
    clean = json.dumps({"content": [{"type": "text", "text": "fine"}, {"type": "redacted_thinking", "data": EMAIL}]})
    assert guard_messages_json(compiled("deny"), clean.encode()) == (clean.encode(), None, {})


def test_the_formats_are_registered_where_claude_answers() -> None:
    for name in (ANTHROPIC_MESSAGES, CLAUDE_ON_VERTEX):
        found = answer_format(name)
        assert found is not None and found.stream is MessagesAnswerGuard and found.streams("text/event-stream")
    bedrock = answer_format(CLAUDE_ON_BEDROCK)
    assert bedrock is not None and bedrock.stream is BedrockMessagesGuard
    assert bedrock.streams("application/vnd.amazon.eventstream") and not bedrock.streams("application/json")
    assert "messages" not in ANSWER_ENDPOINTS

    def of(endpoint: str, model: str, wire: str) -> str | None:
        return answer_format_of(Classification(endpoint=endpoint, model=model, wire_format=wire), model)

    assert of("invoke", "anthropic.claude-sonnet-4-5-v1:0", BEDROCK_INVOKE) == CLAUDE_ON_BEDROCK
    assert of("invoke-with-response-stream", "us.anthropic.claude-3-haiku", BEDROCK_INVOKE) == CLAUDE_ON_BEDROCK
    assert of("invoke", "amazon.nova-lite-v1:0", BEDROCK_INVOKE) == BEDROCK_INVOKE
    assert of("streamRawPredict", "claude-sonnet-4-5", ANTHROPIC_MESSAGES) == CLAUDE_ON_VERTEX
    assert of("rawPredict", "llama-3", GEMINI_GENERATE) is None
    assert of("messages", "claude-sonnet-4", ANTHROPIC_MESSAGES) == ANTHROPIC_MESSAGES  # Copilot's
    assert of("messages", "gpt-4o", OPENAI_API) is None
    assert of("generateContent", "gemini-2.5-flash", GEMINI_GENERATE) == CODE_ASSIST  # Gemini's: a chat format


def test_a_frame_read_is_written_again_byte_for_byte() -> None:
    data = eventstream.invoke_chunk(event("ping")) + eventstream.exception("throttlingException", "slow down")
    read = EventStreamFramer().feed(data)
    assert b"".join(event_frame(f.raw_headers, f.payload) for f in read) == data


@pytest.mark.parametrize("guard, write", [(MessagesAnswerGuard, sse), (BedrockMessagesGuard, frames)])
def test_a_read_of_many_events_feeds_each_channels_scanner_once(guard, write) -> None:
    """Thinking, text and a tool's input in 300 small events, all in one read: each block's
    scanner is fed once (and each of the strings the tool's start gives whole, its id and type
    among them, the message's id, type, role and model with their keys, the 4 event names of
    server-sent events, and a frame's headers, read alone), and the events go on byte for byte."""
    found, feeds = counting_feeds(compiled("redact"))
    text = "The cats sat on 12 mats in 2026. " * 5
    blocks = [thinking_block(0, pieces_of(text, 2)), text_block(1, pieces_of(text, 2))]
    events = message([*blocks, tool_block(2, pieces_of('{"path": "notes/a.txt"}', 2))])
    reading = guard(found)
    data = write(events[:-3])  # all but the tool block's end and the message's
    out = reading.feed(data)
    assert feeds == [1] * (22 if write is sse else 19)
    rest = write(events[-3:])
    assert out + reading.feed(rest) + reading.flush() == data + rest


@pytest.mark.parametrize(("guard", "write", "read_back"), STREAMS)
@pytest.mark.parametrize("read", [1, 7, 4096])
def test_at_a_deny_nothing_after_the_values_event_goes(guard, write, read_back, read: int) -> None:
    """A value at thinking's end is found only at its block's end: the thinking's signature, which
    came after it, does not go before the error (nor anything else after the value's event)."""
    thought = f"The token is {TOKEN}"
    g = guard(compiled("deny"))
    out = fed_in_reads(g, write(message([thinking_block(0, pieces_of(thought, 6)), text_block(1, ["Done."])])), read)
    events = read_back(out)
    assert g.denied == "secrets.github_token"
    assert reassembled(events) == {(0, "thinking"): "The token is "}
    kinds = [e.get("type", e.get("exception")) for e in events]
    assert kinds[-1] in ("error", "validationException")
    assert "signature_delta" not in [e["delta"]["type"] for e in events if e.get("type") == "content_block_delta"]
    assert b"EqQBCkgI" not in out and TOKEN[:3].encode() not in out


# ---------------------------------------------------------------------------------------------
# What no reader knows, and what is signed besides thinking


@drawn(60)
@given(
    kind=st.sampled_from(sorted(VALUES)),
    at=st.integers(min_value=0, max_value=10_000),
    read=st.integers(min_value=1, max_value=400),
    bedrock=st.booleans(),
)
def test_a_delta_of_a_type_not_known_that_carries_text_stops_the_stream(
    kind: str, at: int, read: int, bedrock: bool
) -> None:
    """A delta newer than the reader may carry its text in pieces, which read one event at a time
    would let a value split across two of them through: one that carries text stops the stream
    before it (`unread`), whatever the split. One that carries none goes on."""
    text, value = answer_of(kind)
    at %= len(text) + 1
    guard, write, read_back = (BedrockMessagesGuard, frames, frame_events) if bedrock else (MessagesAnswerGuard, sse, sse_events)  # fmt: skip
    future = [delta(0, "prose_delta", prose=text[:at]), delta(0, "prose_delta", prose=text[at:])]
    data = write(message([[start(0, {"type": "text", "text": ""}), *future, stop(0)]]))
    g = guard(compiled("redact"))
    out = fed_in_reads(g, data, read)
    assert g.denied == "unread" and value.encode() not in out
    events = read_back(out)
    assert [e.get("type") for e in events[:2]] == ["message_start", "content_block_start"]
    assert not any(e.get("delta", {}).get("prose") for e in events)
    assert events[-1].get("type") == "error" or events[-1].get("exception") == "validationException"
    empty = write(message([[start(0, {"type": "text", "text": ""}), delta(0, "pause_delta", ms=5), stop(0)]]))
    g = guard(compiled("redact"))
    assert fed_in_reads(g, empty, read) == empty and g.denied is None


def test_an_event_of_a_type_not_known_that_carries_text_stops_the_stream() -> None:
    """An event the reader does not know (or of no type: Claude's Text Completions on Bedrock, each
    chunk `{"completion": …}`) is not read: one that carries text stops the stream before it. A
    ping, an upstream's error and an event of another type without text go on as they came."""
    legacy = [{"completion": f"The key is {AWS_KEY_ID[:8]}", "stop_reason": None},
              {"completion": AWS_KEY_ID[8:], "stop_reason": "stop_sequence"}]  # fmt: skip
    g = BedrockMessagesGuard(compiled("redact"))
    out = fed_in_reads(g, frames(legacy), 13)
    assert g.denied == "unread" and frame_events(out) == [{"exception": "validationException", "message": ANY_MESSAGE}]
    news = sse([*message([text_block(0, ["Hi"])])[:4], event("message_note", note=f"mail {EMAIL}")])
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, news, 9)
    assert g.denied == "unread" and EMAIL.encode() not in out
    assert [e["type"] for e in sse_events(out)] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
    ]
    quiet = sse([event("ping"), event("message_heartbeat", id="hb_1"), *message([text_block(0, ["Hi"])])])
    g = MessagesAnswerGuard(compiled("deny"))
    assert fed_in_reads(g, quiet, 9) == quiet and g.denied is None


ANY_MESSAGE = "The answer was stopped: it carries what a guardrail denies (unread)."


def test_a_message_delta_is_read() -> None:
    """A message's last delta (its stop sequence, a refusal's explanation) is read whole, its
    counts not."""
    last = event("message_delta", delta={"stop_reason": "stop_sequence", "stop_sequence": f"END {EMAIL}"},
                 usage={"output_tokens": 4111111111111111})  # fmt: skip
    data = sse([*message([text_block(0, ["Hi"])])[:-2], last, event("message_stop")])
    g = MessagesAnswerGuard(compiled("redact"))
    out = sse_events(fed_in_reads(g, data, 11))
    assert out[-2]["delta"]["stop_sequence"] == "END [REDACTED:pii.email]"
    assert out[-2]["usage"] == {"output_tokens": 4111111111111111} and g.counts == {"pii.email": 1}


def test_a_text_or_thinking_block_whose_text_is_not_a_string_stops_the_stream() -> None:
    for kind in ("text", "thinking"):
        data = sse(message([[start(0, {"type": kind, kind: {"note": f"mail {EMAIL}"}}), stop(0)]]))
        g = MessagesAnswerGuard(compiled("redact"))
        out = fed_in_reads(g, data, 1000)
        assert g.denied == "unread" and EMAIL.encode() not in out, kind
    begun = sse([event("message_start", message={"type": "message", "content": [f"mail {EMAIL}"]})])
    g = MessagesAnswerGuard(compiled("redact"))
    assert EMAIL.encode() not in fed_in_reads(g, begun, 1000) and g.denied == "unread"


@pytest.mark.parametrize(("guard", "write", "read_back"), STREAMS)
def test_a_delta_to_a_block_that_ended_stops_the_stream(guard, write, read_back) -> None:
    """A block's text is read as ended at its stop: a delta to it after that (which an SDK joins to
    its text) would carry the rest of a value unread. The stream stops before it."""
    late = [*text_block(0, [f"Key {AWS_KEY_ID[:10]}"]), delta(0, "text_delta", text=AWS_KEY_ID[10:])]
    g = guard(compiled("redact"))
    out = fed_in_reads(g, write(message([late])), 1000)
    assert g.denied == "unread"
    assert AWS_KEY_ID[10:].encode() not in out
    again = [*text_block(0, ["one"]), *text_block(0, ["two"])]
    g = guard(compiled("redact"))
    fed_in_reads(g, write(message([again])), 7)
    assert g.denied == "unread"


def test_a_compaction_is_signed_never_changed() -> None:
    """A compaction's summary is signed (sent back verbatim): a value to redact there is denied,
    given whole in a block, in its delta or in a JSON answer."""
    summary = f"The user shared {EMAIL}."
    block = {"type": "compaction", "content": summary, "encrypted_content": "Eo12", "signature": "sig"}
    body = json.dumps({"type": "message", "role": "assistant", "content": [block]}).encode()
    assert guard_messages_json(compiled("redact"), body) == (body, "pii.email", {"pii.email": 1})
    data = sse(message([[start(0, block), stop(0)]]))
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, data, 1000)
    assert g.denied == "pii.email" and EMAIL.encode() not in out
    streamed = [start(0, {"type": "compaction", "content": None}),
                delta(0, "compaction_delta", content=summary, encrypted_content="Eo12"), stop(0)]  # fmt: skip
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, sse(message([streamed])), 1000)
    assert g.denied == "pii.email" and EMAIL.encode() not in out
    g = MessagesAnswerGuard(compiled("audit"))
    clean = sse(message([streamed]))
    assert fed_in_reads(g, clean, 1000) == clean and g.counts == {"pii.email": 1}


def test_a_whole_answer_of_another_shape_is_read_whole() -> None:
    """Every field of a whole answer is read, not its content alone: Claude's Text Completions on
    Bedrock (`completion`), an item of the content that is no block."""
    legacy = json.dumps({"type": "completion", "completion": f"Key {AWS_KEY_ID}", "stop_reason": "stop_sequence"})
    served, denied, counts = guard_messages_json(compiled("redact"), legacy.encode())
    assert denied is None and counts == {"secrets.aws_access_key_id": 1}
    assert json.loads(served)["completion"] == f"Key {REDACTED_AWS}"
    assert guard_messages_json(compiled("deny"), legacy.encode())[1] == "secrets.aws_access_key_id"
    odd = json.dumps({"type": "message", "content": [f"mail {EMAIL}", {"type": "text", "text": "ok"}]}).encode()
    served, denied, counts = guard_messages_json(compiled("redact"), odd)
    assert json.loads(served)["content"] == ["mail [REDACTED:pii.email]", {"type": "text", "text": "ok"}]
    counted = json.dumps({"type": "message", "content": [], "usage": {"output_tokens": 4111111111111111}}).encode()
    assert guard_messages_json(compiled("deny"), counted) == (counted, None, {})


def test_what_a_blocks_or_the_messages_end_carries_is_read() -> None:
    """Bedrock may give a guardrail's trace of the answer (`modelOutput`: the text as the model
    wrote it) in the message's last event: it is read whole, redacted there too."""
    trace = {"guardrail": {"modelOutput": [f"Key {AWS_KEY_ID}."]}}
    metrics = {"inputTokenCount": 5, "outputTokenCount": 4111111111111111}
    last = event("message_stop", **{"amazon-bedrock-trace": trace, "amazon-bedrock-invocationMetrics": metrics})
    data = frames([*message([text_block(0, [f"Key {AWS_KEY_ID[:6]}", f"{AWS_KEY_ID[6:]}."])])[:-1], last])
    g = BedrockMessagesGuard(compiled("redact"))
    out = fed_in_reads(g, data, 9)
    assert AWS_KEY_ID.encode() not in out and g.denied is None
    events = frame_events(out)
    assert events[-1]["amazon-bedrock-trace"] == {"guardrail": {"modelOutput": [f"Key {REDACTED_AWS}."]}}
    assert events[-1]["amazon-bedrock-invocationMetrics"] == metrics
    assert reassembled(events) == {(0, "text"): f"Key {REDACTED_AWS}."}
    g = BedrockMessagesGuard(compiled("deny"))
    fed_in_reads(g, frames([*message([text_block(0, ["Hi"])])[:-1], last]), 9)
    assert g.denied == "secrets.aws_access_key_id"


def test_a_translated_answer_whose_parallel_calls_interleave_is_read_and_redacted() -> None:
    """An answer translated to Messages (`MessagesStreamWriter`) from an upstream that interleaves
    two tool calls' arguments comes with each call whole in its own block (the second held until
    the first is whole): a value split across the interleaved deltas is read and redacted."""
    from tollgate.formats.anthropic_messages.stream_writer import MessagesStreamWriter
    from tollgate.formats.chat import ChatRequest, Started, ToolCallDelta, ToolCallStarted

    writer = MessagesStreamWriter(ChatRequest(model="m", messages=[]))
    written: list[Any] = [Started(), ToolCallStarted(0, "a", "f"), ToolCallDelta(0, '{"x": "' + AWS_KEY_ID[:8]),
               ToolCallStarted(1, "b", "g"), ToolCallDelta(1, '{"y": "' + AWS_KEY_ID[:5]),
               ToolCallDelta(0, AWS_KEY_ID[8:] + '"}'), ToolCallDelta(1, AWS_KEY_ID[5:] + '"}')]  # fmt: skip
    data = b"".join(writer.write(e) for e in written) + writer.end()
    g = MessagesAnswerGuard(compiled("redact"))
    out = fed_in_reads(g, data, 7)
    assert g.denied is None and AWS_KEY_ID[8:].encode() not in out
    assert reassembled(sse_events(out)) == {
        (0, "partial_json"): '{"x": "' + REDACTED_AWS + '"}',
        (1, "partial_json"): '{"y": "' + REDACTED_AWS + '"}',
    }
    assert g.counts == {"secrets.aws_access_key_id": 2}
