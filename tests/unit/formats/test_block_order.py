"""Parallel tool calls that interleave (OpenAI's chat streams send deltas of call 0, then 1, then 0
again), written by the stream writers of formats whose content blocks follow one another: Anthropic
Messages, Bedrock Converse and Gemini. Each writer's output is read strictly (one block open at a
time, indexes consecutive, no delta to a block that ended) and gives the same final message however
the deltas are ordered and split: each call whole, in its own block, with its id and name. A stream
whose calls come one after the other is not held (`BlockOrder`)."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.formats.anthropic_messages.stream_writer import MessagesStreamWriter
from tollgate.formats.bedrock_converse.stream_writer import ConverseStreamWriter
from tollgate.formats.block_order import BlockOrder, JsonEnd
from tollgate.formats.chat import (
    ChatRequest,
    Finished,
    Started,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    Untranslatable,
    UsageReported,
)
from tollgate.formats.framing import EventStreamFramer
from tollgate.formats.gemini_generate.stream_writer import GeminiStreamWriter
from tollgate.formats.openai_chat.stream import ChatEventReader
from tollgate.formats.translation import ChatStream
from tollgate.formats.usage import Usage

REQUEST = ChatRequest(model="m", messages=[])
CALLS = [
    ("call_a", "get_weather", {"city": "Paris", "unit": "c"}),
    ("call_b", "get_time", {"zone": 'Europe/"Paris" {x}\\', "list": [1, {"a": "]"}]}),
    ("call_c", "noop", {}),
]
TEXT = "Let me look."


def events_of(calls: list[tuple[str, str, list[str]]], order: list[int]) -> list[StreamEvent]:
    """Each call's pieces taken in `order` (the call drawn at each step, a call's pieces in turn);
    a call starts at its first piece, as OpenAI's reader gives it."""
    taken = [0] * len(calls)
    events: list[StreamEvent] = []
    for number in order:
        call_id, name, pieces = calls[number]
        if taken[number] == 0:
            events.append(ToolCallStarted(number, call_id, name))
        if pieces[taken[number]]:
            events.append(ToolCallDelta(number, pieces[taken[number]]))
        taken[number] += 1
    return events


def write(writer: Any, events: list[StreamEvent]) -> bytes:
    return b"".join([writer.write(e) for e in events]) + writer.end()


# -- strict readers of each writer's output -----------------------------------------------------


def sse_data(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data += line[6:]
        out.append((name, json.loads(data)))
    return out


def messages_content(raw: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The content blocks and the usage the anthropic SDK's accumulator would build, reading
    strictly: one block open at a time, started at the next index, deltas only to it."""
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    open_: int | None = None
    usage: dict[str, Any] = {}
    for name, data in sse_data(raw):
        assert data["type"] == name
        if name == "content_block_start":
            assert open_ is None and data["index"] == len(content)
            content.append(dict(data["content_block"]))
            open_ = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_, f"a delta to block {data['index']}, block {open_} open"
            delta = data["delta"]
            if delta["type"] == "input_json_delta":
                partial[open_] = partial.get(open_, "") + delta["partial_json"]
            else:
                content[open_]["text"] += delta["text"]
        elif name == "content_block_stop":
            assert data["index"] == open_
            if content[open_]["type"] == "tool_use":
                content[open_]["input"] = json.loads(partial.get(open_) or "{}")
            open_ = None
        elif name == "message_delta":
            usage = data["usage"]
    assert open_ is None and name == "message_stop"
    return content, usage


def converse_content(raw: bytes) -> list[dict[str, Any]]:
    """The content blocks a Converse stream builds, read strictly as above (a text block begins
    with its first delta)."""
    content: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    open_: int | None = None
    frames = EventStreamFramer().feed(raw)
    for frame in frames:
        kind, data = frame.headers[":event-type"], json.loads(frame.payload)
        index = data.get("contentBlockIndex")
        if kind == "contentBlockStart" or (kind == "contentBlockDelta" and index != open_):
            assert open_ is None and index == len(content), f"block {index} begun, {open_} open"
            use = data.get("start", {}).get("toolUse")
            content.append({"toolUse": dict(use)} if use else {"text": ""})
            open_ = index
        if kind == "contentBlockDelta":
            delta = data["delta"]
            if "toolUse" in delta:
                partial[index] = partial.get(index, "") + delta["toolUse"]["input"]
            else:
                content[index]["text"] += delta["text"]
        elif kind == "contentBlockStop":
            assert index == open_
            if "toolUse" in content[index]:
                content[index]["toolUse"]["input"] = json.loads(partial.get(index) or "{}")
            open_ = None
    assert open_ is None and [f.headers[":event-type"] for f in frames[-2:]] == ["messageStop", "metadata"]
    return content


def gemini_parts(raw: bytes) -> list[dict[str, Any]]:
    parts = [p for _, chunk in sse_data(raw) for c in chunk["candidates"] for p in c["content"]["parts"]]
    return [p for p in parts if p != {"text": ""}]


# -- the writers, with what each gives for CALLS -------------------------------------------------


def anthropic_final(events: list[StreamEvent]) -> list[dict[str, Any]]:
    content, usage = messages_content(write(MessagesStreamWriter(REQUEST), events))
    assert usage == {"input_tokens": 11, "output_tokens": 7}
    return content


def converse_final(events: list[StreamEvent]) -> list[dict[str, Any]]:
    return converse_content(write(ConverseStreamWriter(REQUEST), events))


def gemini_final(events: list[StreamEvent]) -> list[dict[str, Any]]:
    writer = GeminiStreamWriter(REQUEST)
    parts = gemini_parts(write(writer, events))
    assert writer.notes == []
    return parts


def expected(fmt: str, n: int, text: str) -> list[dict[str, Any]]:
    calls = CALLS[:n]
    if fmt == "anthropic":
        head = [{"type": "text", "text": text}] if text else []
        return head + [{"type": "tool_use", "id": i, "name": name, "input": a} for i, name, a in calls]
    if fmt == "converse":
        head = [{"text": text}] if text else []
        return head + [{"toolUse": {"toolUseId": i, "name": name, "input": a}} for i, name, a in calls]
    head = [{"text": text}] if text else []
    return head + [{"functionCall": {"id": i, "name": name, "args": a}} for i, name, a in calls]


FINALS = {"anthropic": anthropic_final, "converse": converse_final, "gemini": gemini_final}
END: list[StreamEvent] = [Finished("tool_calls"), UsageReported(Usage(input_tokens=11, output_tokens=7))]


def stream(data: st.DataObject, n: int, text: str) -> list[StreamEvent]:
    """CALLS[:n], their deltas interleaved in an order drawn (each call started at its first step,
    the calls started in their order, as OpenAI's are) and their arguments cut anywhere."""
    drawn = data.draw(st.lists(st.integers(0, n - 1), max_size=24))
    steps: list[int] = []
    for number in [*drawn, *range(n)]:  # every call has a step; the first of each in order
        steps.append(min(number, len(set(steps))) if number not in steps else number)
    counts = [steps.count(k) for k in range(n)]
    calls = []
    for (call_id, name, args), count in zip(CALLS[:n], counts, strict=True):
        whole = json.dumps(args)
        points = sorted(data.draw(st.lists(st.integers(0, len(whole)), min_size=count - 1, max_size=count - 1)))
        bounds = [0, *points, len(whole)]
        calls.append((call_id, name, [whole[a:b] for a, b in pairwise(bounds)]))
    events: list[StreamEvent] = [Started(id="x")] + ([TextDelta(text)] if text else [])
    return events + events_of(calls, steps) + END


@pytest.mark.parametrize("fmt", list(FINALS))
@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(2, 3), text=st.sampled_from(["", TEXT]))
def test_interleaved_calls_give_the_same_final_message_however_ordered_and_cut(
    fmt: str, data: st.DataObject, n: int, text: str
) -> None:
    assert FINALS[fmt](stream(data, n, text)) == expected(fmt, n, text)


def documented_interleaving() -> list[StreamEvent]:
    """Two calls as OpenAI streams them interleaved: 0, 1, 0, 1 — a value cut between them."""
    return [
        Started(id="x"),
        ToolCallStarted(0, "call_a", "get_weather"),
        ToolCallDelta(0, '{"city": "Pa'),
        ToolCallStarted(1, "call_b", "get_time"),
        ToolCallDelta(1, '{"zone": "Europe/\\"Paris\\" {x}\\\\", '),
        ToolCallDelta(0, 'ris", "unit": "c"}'),
        ToolCallDelta(1, '"list": [1, {"a": "]"}]}'),
        *END,
    ]


@pytest.mark.parametrize("fmt", list(FINALS))
def test_two_calls_interleaved_each_whole_in_its_own_block(fmt: str) -> None:
    assert FINALS[fmt](documented_interleaving()) == expected(fmt, 2, "")


@pytest.mark.parametrize("fmt", list(FINALS))
def test_text_after_an_unfinished_call_waits_for_it(fmt: str) -> None:
    events = [
        Started(id="x"),
        ToolCallStarted(0, "call_a", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        TextDelta("Done"),
        ToolCallDelta(0, '"Paris", "unit": "c"}'),
        TextDelta("."),
        *END,
    ]
    # Anthropic's and Converse's text block takes both pieces; Gemini sends each piece of text.
    after = {"anthropic": [{"type": "text", "text": "Done."}], "converse": [{"text": "Done."}]}
    assert FINALS[fmt](events) == expected(fmt, 1, "") + after.get(fmt, [{"text": "Done"}, {"text": "."}])


def test_only_a_later_calls_deltas_are_held_and_they_go_on_once_the_call_before_is_whole() -> None:
    order = BlockOrder()
    first = ToolCallStarted(0, "a", "f")
    assert order.feed(first) == [first]
    assert order.feed(ToolCallDelta(0, '{"x": "1')) == [ToolCallDelta(0, '{"x": "1')]
    later = [ToolCallStarted(1, "b", "g"), ToolCallDelta(1, '{"y": 2'), TextDelta("so")]
    assert [order.feed(e) for e in later] == [[], [], []]
    # Call 0's last delta makes it whole: call 1 goes on at once, the text after it held still.
    assert order.feed(ToolCallDelta(0, '"}')) == [ToolCallDelta(0, '"}'), *later[:2]]
    assert order.feed(ToolCallDelta(1, "}")) == [ToolCallDelta(1, "}"), later[2]]
    assert order.feed(TextDelta(" on")) == [TextDelta(" on")]
    assert order.feed(Finished("tool_calls")) == [Finished("tool_calls")]
    assert order.end() == []


def test_calls_one_after_the_other_are_not_held() -> None:
    order = BlockOrder()
    events = [
        TextDelta("Hi"),
        ToolCallStarted(0, "a", "f"),
        ToolCallDelta(0, '{"x": '),
        ToolCallDelta(0, "[1]}"),
        ToolCallStarted(1, "b", "g"),
        ToolCallDelta(1, "{}"),
        ToolCallDelta(1, "  "),  # white space after the whole JSON
        ToolCallStarted(2, "c", "h"),
        ToolCallDelta(0, " \n"),  # after its block ended: changes nothing
        ToolCallDelta(2, '{"z": 1}'),
    ]
    assert [order.feed(e) for e in events] == [[e] for e in events[:8]] + [[], [events[9]]]


def test_held_blocks_go_on_at_the_finish_or_the_end_in_order() -> None:
    order = BlockOrder()
    events = [ToolCallStarted(0, "a", "f"), ToolCallDelta(0, "{"), ToolCallStarted(1, "b", "g"), TextDelta("t")]
    assert [e for event in events for e in order.feed(event)] == events[:2]
    assert order.feed(Finished("tool_calls")) == [*events[2:], Finished("tool_calls")]
    order = BlockOrder()
    assert [e for event in events for e in order.feed(event)] == events[:2]
    assert order.end() == events[2:]


def test_arguments_after_a_whole_call_ended_are_untranslatable() -> None:
    order = BlockOrder()
    for event in [ToolCallStarted(0, "a", "f"), ToolCallDelta(0, "{}"), ToolCallStarted(1, "b", "g")]:
        order.feed(event)
    with pytest.raises(Untranslatable, match="after they were whole"):
        order.feed(ToolCallDelta(0, '{"more": 1}'))


def test_what_is_held_is_bounded_and_counted_down_as_it_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for a call whose arguments never end, a stream holds at most HELD_AT_MOST characters
    of the blocks after it: past that, it breaks off (a stream is not buffered whole)."""
    monkeypatch.setattr("tollgate.formats.block_order.HELD_AT_MOST", 10)
    order = BlockOrder()
    order.feed(ToolCallStarted(0, "a", "f"))
    order.feed(ToolCallDelta(0, "{"))
    assert order.feed(ToolCallStarted(1, "b", "g")) == []  # 1 held
    assert order.feed(ToolCallDelta(1, '{"x":')) == []  # 6 held
    assert order.feed(ToolCallDelta(0, "}")) == [ToolCallDelta(0, "}"), ToolCallStarted(1, "b", "g"),
                                                 ToolCallDelta(1, '{"x":')]  # fmt: skip
    assert order.feed(TextDelta("0123456789")) == []  # what went on is no longer counted: 10 held
    with pytest.raises(Untranslatable, match="more than 10 characters waited"):
        order.feed(TextDelta("!"))


def test_a_translated_stream_whose_call_goes_on_after_it_ended_breaks_off_in_the_callers_format() -> None:
    """OpenAI's chat stream, translated to Messages: call 0 is whole when call 1 starts, then more
    arguments come for it. It cannot be written in its block: the stream ends with an error."""

    def chunk(calls: list[dict[str, Any]], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": {"tool_calls": calls}, "finish_reason": finish}
        return b"data: " + json.dumps({"id": "c", "choices": [choice]}).encode() + b"\n\n"

    translated = ChatStream(ChatEventReader(), MessagesStreamWriter(REQUEST))
    out = translated.feed(chunk([{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]))
    out += translated.feed(chunk([{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]))
    out += translated.feed(chunk([{"index": 0, "function": {"arguments": "{}"}}]))
    out += translated.feed(chunk([{"index": 1, "function": {"arguments": "}"}}], "tool_calls"))
    out += translated.flush()
    events = sse_data(out)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "error",
    ]  # fmt: skip
    assert events[-1][1]["error"]["message"] == "Tollgate could not translate the stream: Untranslatable"
    assert translated.error == "Untranslatable"


@pytest.mark.parametrize(
    ("pieces", "whole"),
    [
        (["{}"], True),
        (["{", '"a": "}', '"}'], True),
        (['{"a": "\\', '"}"}'], True),
        (['{"a": "\\\\"', "}"], True),
        (["  [1, [2]", "]  "], True),
        (["{}", " x"], False),
        (['"text"'], False),
        (["", " "], False),
        (['{"a": {}'], False),
    ],
)
def test_json_end(pieces: list[str], whole: bool) -> None:
    end = JsonEnd()
    for piece in pieces:
        end.feed(piece)
    assert end.whole is whole


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab{}[]"\\\n é'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='a{}"\\', max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON, ascii_only=st.booleans(), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_json_end_tells_a_whole_object_or_array_however_cut(value: Any, ascii_only: bool, cuts: list[int]) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    end, short = JsonEnd(), JsonEnd()
    for a, b in pairwise(bounds):
        end.feed(text[a:b])
        short.feed(text[a : min(b, len(text) - 1)])
    assert end.whole is isinstance(value, dict | list)
    assert not short.whole
