"""Every pair of formats through one Translation: a call written in one format reaches the other
meaning the same, and the other's answer, stream (however its bytes are cut) and errors come back
meaning the same in the first. N formats make N×(N−1) routes with no code per pair."""

from __future__ import annotations

import base64
import json
from itertools import pairwise, permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    CLAUDE_ON_VERTEX,
    GEMINI_GENERATE,
    OPENAI_CHAT,
    chat,
)
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.translation import Translation, chat_formats
from tollgate.formats.usage import Usage

FORMATS = chat_formats()

NAMES = (OPENAI_CHAT, ANTHROPIC_MESSAGES, GEMINI_GENERATE, BEDROCK_CONVERSE)
PAIRS = list(permutations(NAMES, 2))
# Claude on Vertex AI is a target only (its callers speak Anthropic's format); from Anthropic's a
# call goes there as it came, through no translation.
TO_VERTEX = [(source, CLAUDE_ON_VERTEX) for source in NAMES if source != ANTHROPIC_MESSAGES]
WEATHER = chat.Tool(
    "get_weather", "The weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def conversation(stream: bool = False) -> chat.ChatRequest:
    return chat.ChatRequest(
        model="m",
        system=[chat.Text("Answer briefly.")],
        messages=[
            chat.Message("user", [chat.Text("Weather in Paris?")]),
            chat.Message("assistant", [chat.ToolCall("call_1", "get_weather", '{"city": "Paris"}')]),
            chat.Message("user", [chat.ToolResult("call_1", "get_weather", [chat.Text("18C and sunny")])]),
            chat.Message("user", [chat.Text("And tomorrow?")]),
        ],
        tools=[WEATHER],
        max_tokens=100,
        temperature=0.5,
        stop=["END"],
        stream=stream,
    )


def written(fmt: str, request: chat.ChatRequest) -> dict:
    """A call as a client of `fmt` sends it (through the JSON it travels as)."""
    body, _ = FORMATS[fmt].write_request(request)
    return parse_json(encode_json(body)) or {}


def gist(request: chat.ChatRequest) -> list:
    """What a call means, whatever its format: roles, texts, tool calls (arguments parsed) and results."""
    out: list = [[t.text for t in request.system]]
    for m in request.messages:
        for p in m.parts:
            if isinstance(p, chat.Text):
                out.append((m.role, p.text))
            elif isinstance(p, chat.ToolCall):
                out.append((m.role, p.name, json.loads(p.arguments)))
            elif isinstance(p, chat.ToolResult):
                texts = "".join(c.text for c in p.content if isinstance(c, chat.Text))
                out.append((m.role, "result", unwrapped(texts)))
    return out


def unwrapped(text: str) -> object:
    """A tool result as text; Gemini's are objects, and a text one goes there as {"result": text}."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value.get("result", value) if isinstance(value, dict) else value


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_a_call_means_the_same_in_the_target_format(source, target):
    t = Translation(source)
    t.target = target
    body, _, dropped = t.request(written(source, conversation()), "target-model", False, {})
    back = FORMATS[target].read_request(parse_json(encode_json(body)) or {})
    back.model = "target-model"
    assert gist(back) == gist(conversation())
    assert (back.max_tokens, back.temperature, back.stop, [x.name for x in back.tools]) == (
        100,
        0.5,
        ["END"],
        ["get_weather"],
    )
    assert dropped == []


@pytest.mark.parametrize(("source", "target"), TO_VERTEX)
def test_a_call_to_claude_on_vertex_is_anthropics_with_its_model_in_the_path(source, target):
    t = Translation(source)
    t.target = target
    body, _, dropped = t.request(written(source, conversation()), "claude-x@1", False, {})
    assert (body.pop("anthropic_version"), "model" in body, dropped) == ("vertex-2023-10-16", False, [])
    back = FORMATS[ANTHROPIC_MESSAGES].read_request({**body, "model": "claude-x@1"})
    assert gist(back) == gist(conversation())


def test_an_anthropic_call_goes_to_claude_on_vertex_as_it_came():
    t = Translation(ANTHROPIC_MESSAGES)
    t.target = CLAUDE_ON_VERTEX
    sent = {"model": "claude-x@1", "max_tokens": 9, "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "enabled", "budget_tokens": 4}, "context_management": {"edits": []}}  # fmt: skip
    body, headers, dropped = t.request(sent, "claude-x@1", True, {"anthropic-beta": "context-1m-2025-08-07"})
    assert body == {**{k: v for k, v in sent.items() if k != "model"}, "anthropic_version": "vertex-2023-10-16"}
    assert (headers, dropped) == ({"anthropic-beta": "context-1m-2025-08-07"}, [])
    assert t.rewriter(stream=True) is None and t.rewriter(stream=False) is None  # Claude's own answers


@pytest.mark.parametrize(
    ("body", "expected"),
    [  # Vertex AI's own errors are Google's, Claude's are Anthropic's
        ({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}, "rate_limit_error"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Quota exceeded"}}, "overloaded_error"),
    ],
)
def test_claude_on_vertex_errors_in_either_shape_reach_an_anthropic_caller(body, expected):
    t = Translation(ANTHROPIC_MESSAGES)
    t.target = CLAUDE_ON_VERTEX
    status, _, out = t.error(429, {"content-type": "application/json"}, encode_json(body))
    assert (status, json.loads(out)["error"]) == (429, {"type": expected, "message": "Quota exceeded"})


def answer(tool: bool) -> chat.ChatResponse:
    parts = (
        [chat.ToolCall("call_9", "get_weather", '{"city": "Paris"}')] if tool else [chat.Text("Paris is the capital.")]
    )
    usage = Usage(input_tokens=21, output_tokens=7, cached_tokens=5)
    return chat.ChatResponse("id-1", "target-model", [chat.Choice(0, parts, "tool_calls" if tool else "stop")], usage)


@pytest.mark.parametrize(("source", "target"), PAIRS + TO_VERTEX)
@pytest.mark.parametrize("tool", [False, True])
def test_an_answer_comes_back_meaning_the_same(source, target, tool):
    t = Translation(source)
    t.target = target
    t.request(written(source, conversation()), "target-model", False, {})
    upstream = encode_json(FORMATS[target].write_response(answer(tool), conversation()))
    rewrite = t.rewriter(stream=False)
    assert rewrite is not None
    got = b"".join([rewrite.feed(upstream[:7]), rewrite.feed(upstream[7:]), rewrite.flush()])
    back = FORMATS[source].read_response(parse_json(got) or {})
    choice = back.choices[0]
    assert choice.finish == ("tool_calls" if tool else "stop")
    if tool:
        (call,) = [p for p in choice.parts if isinstance(p, chat.ToolCall)]
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    else:
        assert "".join(p.text for p in choice.parts if isinstance(p, chat.Text)) == "Paris is the capital."
    u = back.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens) == (21, 7, 5)


def upstream_events(tool: bool) -> list[chat.StreamEvent]:
    events: list[chat.StreamEvent] = [chat.Started("id-1", "target-model")]
    if tool:
        events += [
            chat.ToolCallStarted(0, "call_9", "get_weather"),
            chat.ToolCallDelta(0, '{"city": '),
            chat.ToolCallDelta(0, '"Paris"}'),
        ]
    else:
        events += [chat.TextDelta("Paris is "), chat.TextDelta("the capital.")]
    events += [
        chat.Finished("tool_calls" if tool else "stop"),
        chat.UsageReported(Usage(input_tokens=21, output_tokens=7, cached_tokens=5)),
    ]
    return events


def stream_bytes(fmt: str, events: list[chat.StreamEvent]) -> bytes:
    asked = conversation(stream=True)
    asked.stream_usage = True  # as a translated call always asks an OpenAI stream
    writer = FORMATS[fmt].stream_writer(asked)
    return b"".join([writer.write(e) for e in events]) + writer.end()


def meaning(events: list[chat.StreamEvent]) -> tuple:
    """A stream's text, tool calls, finish and usage, however its events were split."""
    text, calls, finish, usage = "", {}, None, Usage()
    for e in events:
        if isinstance(e, chat.TextDelta):
            text += e.text
        elif isinstance(e, chat.ToolCallStarted):
            calls[e.index] = [e.name, ""]
        elif isinstance(e, chat.ToolCallDelta):
            calls[e.index][1] += e.arguments
        elif isinstance(e, chat.Finished):
            finish = e.reason
        elif isinstance(e, chat.UsageReported):
            for field in ("input_tokens", "output_tokens", "cached_tokens"):
                if getattr(e.usage, field) is not None:
                    setattr(usage, field, getattr(e.usage, field))
    tools = [(name, json.loads(args)) for name, args in calls.values()]
    return text, tools, finish, (usage.input_tokens, usage.output_tokens, usage.cached_tokens)


@settings(max_examples=examples(15), deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8), tool=st.booleans())
def test_a_stream_comes_back_meaning_the_same_however_it_is_cut(cuts, tool):
    for source, target in PAIRS + TO_VERTEX:
        t = Translation(source)
        t.target = target
        t.request(written(source, conversation(stream=True)), "target-model", True, {})
        upstream = stream_bytes(target, upstream_events(tool))
        rewrite = t.rewriter(stream=True)
        assert rewrite is not None
        bounds = sorted({0, len(upstream), *(c % (len(upstream) + 1) for c in cuts)})
        got = b"".join(rewrite.feed(upstream[a:b]) for a, b in pairwise(bounds)) + rewrite.flush()
        reader = FORMATS[source].stream_reader()
        events = reader.feed(got) + reader.end()
        assert reader.error is None, (source, target, got)
        expected = (
            "" if tool else "Paris is the capital.",
            [("get_weather", {"city": "Paris"})] if tool else [],
            "tool_calls" if tool else "stop",
            (21, 7, 5),
        )
        assert meaning(events) == expected, (source, target)


@pytest.mark.parametrize(("source", "target"), PAIRS + TO_VERTEX)
@pytest.mark.parametrize(
    ("status", "kind"), [(400, "invalid_request"), (401, "authentication"), (429, "rate_limit"), (500, "server")]
)
def test_an_error_keeps_its_status_and_kind(source, target, status, kind):
    t = Translation(source)
    t.target = target
    _, headers, body = FORMATS[target].write_error(chat.ChatError(status, kind, "it went wrong"))  # type: ignore[arg-type]
    got_status, got_headers, got_body = t.error(status, {k.lower(): v for k, v in headers.items()}, body)
    back = FORMATS[source].read_error(got_status, got_headers, got_body)
    assert (got_status, back.status, back.kind) == (status, status, kind)
    assert "it went wrong" in back.message


def test_a_stream_the_target_breaks_ends_with_the_callers_error_event():
    t = Translation(OPENAI_CHAT)
    t.target = BEDROCK_CONVERSE
    t.request(written(OPENAI_CHAT, conversation(stream=True)), "target-model", True, {})
    rewrite = t.rewriter(stream=True)
    assert rewrite is not None
    good = stream_bytes(BEDROCK_CONVERSE, upstream_events(tool=False)[:2])  # messageStart, a delta
    corrupt = b"\x00\x00\x00\x20\x00\x00\x00\x00" + b"\xff" * 24  # a frame whose CRCs do not hold
    got = rewrite.feed(good) + rewrite.feed(corrupt) + rewrite.feed(good) + rewrite.flush()
    reader = FORMATS[OPENAI_CHAT].stream_reader()
    events = reader.feed(got) + reader.end()
    assert [e.text for e in events if isinstance(e, chat.TextDelta)] == ["Paris is "]  # nothing after the break
    (failed,) = [e for e in events if type(e).__name__ == "Failed"]
    assert failed.error.kind == "server" and "could not translate the stream" in failed.error.message


@pytest.mark.parametrize("source", NAMES)
def test_an_answer_that_cannot_be_read_becomes_the_callers_error(source):
    t = Translation(source)
    t.target = OPENAI_CHAT if source != OPENAI_CHAT else ANTHROPIC_MESSAGES
    t.request(written(source, conversation()), "target-model", False, {})
    rewrite = t.rewriter(stream=False)
    assert rewrite is not None
    got = rewrite.feed(b"<html>Bad gateway</html>") + rewrite.flush()
    error = FORMATS[source].read_error(502, {}, got)
    assert error.kind == "server" and "not a JSON object" in error.message


# ---------------------------------------------------------------------------------------------
# Signatures: each valid only for the provider that made it


@given(signature=st.text(), origin=st.sampled_from(NAMES))
def test_a_sealed_signature_unseals_to_itself_and_its_origin(signature, origin):
    sealed = chat.seal(signature, origin)
    raw = base64.b64decode(sealed, validate=True)
    assert base64.b64encode(raw).decode() == sealed  # canonical: google-genai's bytes round trip keeps it
    assert chat.unseal(sealed) == (signature, origin)
    assert chat.unseal(base64.urlsafe_b64encode(raw).decode()) == (signature, origin)  # as google-genai sends it


@given(value=st.text() | st.binary().map(lambda b: base64.b64encode(b).decode()))
def test_anything_not_sealed_unseals_to_itself(value):
    assert chat.unseal(value) == (value, None)


@pytest.mark.parametrize(
    "value",
    [
        "dG9sbGdhdGUtc2ln",  # "tollgate-sig" with no colon
        base64.b64encode(b"tollgate-sig:").decode(),  # no origin
        base64.b64encode(b"tollgate-sig::sig").decode(),  # an empty origin
        base64.b64encode(b"tollgate-sig:\xff:sig").decode(),  # not UTF-8
        "dG9sbGdhdGUtc2lnOm!!",  # not base64
    ],
)
def test_unsealing_something_nearly_sealed_never_raises(value):
    assert chat.unseal(value) == (value, None)


SIGNING = (ANTHROPIC_MESSAGES, GEMINI_GENERATE, BEDROCK_CONVERSE)
SIGNATURE = "c2ln>>>???"  # opaque to everyone but its maker; sealed, it holds "+" and "/"
THOUGHT = "Look it up."


def signed_answer(stream: bool) -> chat.ChatResponse | list[chat.StreamEvent]:
    """The target's answer: its reasoning, signed, and a tool call."""
    if stream:
        return [
            chat.Started("id-1", "target-model"),
            chat.ThinkingDelta(THOUGHT),
            chat.ThinkingDelta(signature=SIGNATURE),
            chat.ToolCallStarted(0, "call_9", "get_weather"),
            chat.ToolCallDelta(0, '{"city": "Paris"}'),
            chat.Finished("tool_calls"),
        ]
    parts = [chat.Thinking(THOUGHT, signature=SIGNATURE), chat.ToolCall("call_9", "get_weather", '{"city": "Paris"}')]
    return chat.ChatResponse("id-1", "target-model", [chat.Choice(0, parts, "tool_calls")])


def whole(fmt: str, events: list[chat.StreamEvent]) -> dict:
    """A stream the caller read, as the whole answer its client makes of it (as the SDKs do)."""
    thinking, call = chat.Thinking(), chat.ToolCall("", "", "")
    for e in events:
        if isinstance(e, chat.ThinkingDelta):
            thinking.text += e.text
            thinking.signature = e.signature or thinking.signature
        elif isinstance(e, chat.ToolCallStarted):
            call.id, call.name = e.id, e.name
        elif isinstance(e, chat.ToolCallDelta):
            call.arguments += e.arguments
    answer = chat.ChatResponse("id-1", "m", [chat.Choice(0, [thinking, call], "tool_calls")])
    return parse_json(encode_json(FORMATS[fmt].write_response(answer, conversation()))) or {}


def history_turn(fmt: str, answer: dict) -> dict:
    """The assistant turn of an answer in `fmt`, as its client keeps it for the next call."""
    if fmt == ANTHROPIC_MESSAGES:
        return {"role": "assistant", "content": answer["content"]}
    if fmt == GEMINI_GENERATE:
        return answer["candidates"][0]["content"]
    return answer["output"]["message"]


def next_call(fmt: str, turn: dict) -> dict:
    """The caller's next call: its question, the answer's turn as it was given, and the tool's result."""
    request = chat.ChatRequest(
        "m",
        [
            chat.Message("user", [chat.Text("Weather in Paris?")]),
            chat.Message(
                "assistant", [chat.ToolCall("call_9", "get_weather", "{}")]
            ),  # its place: the turn given goes there
            chat.Message("user", [chat.ToolResult("call_9", "get_weather", [chat.Text("18C and sunny")])]),
        ],
        tools=[WEATHER],
        max_tokens=100,
    )
    body = written(fmt, request)
    body["contents" if fmt == GEMINI_GENERATE else "messages"][1] = turn
    return body


def reasoning_sent(target: str, body: dict) -> list[chat.Thinking]:
    sent = FORMATS[target].read_request(parse_json(encode_json(body)) or {})
    return [p for m in sent.messages for p in m.parts if isinstance(p, chat.Thinking) and p.signature is not None]


@pytest.mark.parametrize(("source", "target"), list(permutations(SIGNING, 2)))
@pytest.mark.parametrize("stream", [False, True])
def test_a_signature_goes_back_to_the_provider_that_made_it(source, target, stream):
    """A caller of another format gets the target's signature (sealed) and sends it back next turn:
    the target gets it as it made it, with its reasoning."""
    t = Translation(source)
    t.target = target
    t.request(written(source, conversation(stream)), "target-model", stream, {})
    upstream = signed_answer(stream)
    rewrite = t.rewriter(stream)
    assert rewrite is not None
    if isinstance(upstream, list):
        got = rewrite.feed(stream_bytes(target, upstream)) + rewrite.flush()
        reader = FORMATS[source].stream_reader()
        answer = whole(source, reader.feed(got) + reader.end())
    else:
        got = rewrite.feed(encode_json(FORMATS[target].write_response(upstream, conversation()))) + rewrite.flush()
        answer = parse_json(got) or {}
    assert SIGNATURE not in json.dumps(answer)  # not as it is: sealed

    following = Translation(source)
    following.target = target
    body, _, dropped = following.request(next_call(source, history_turn(source, answer)), "target-model", False, {})
    thought = "" if target == GEMINI_GENERATE else THOUGHT  # Gemini takes no thought text back
    assert reasoning_sent(target, body) == [chat.Thinking(thought, SIGNATURE, origin=target)]
    assert "thinking signed by another provider" not in dropped


@pytest.mark.parametrize(("source", "target"), list(permutations(SIGNING, 2)))
def test_a_signature_never_goes_to_another_provider(source, target):
    """The caller's own provider's signature (history from before the route), or a third's."""
    for origin in [source, *(f for f in SIGNING if f not in (source, target))]:
        signed = chat.Thinking(THOUGHT, signature=SIGNATURE, origin=origin)
        answer = chat.ChatResponse(
            "id-1", "m", [chat.Choice(0, [signed, chat.ToolCall("call_9", "get_weather", "{}")], "tool_calls")]
        )
        kept = parse_json(encode_json(FORMATS[source].write_response(answer, conversation()))) or {}
        t = Translation(source)
        t.target = target
        body, _, dropped = t.request(next_call(source, history_turn(source, kept)), "target-model", False, {})
        assert reasoning_sent(target, body) == []
        assert SIGNATURE not in json.dumps(body)
        assert "thinking signed by another provider" in dropped
