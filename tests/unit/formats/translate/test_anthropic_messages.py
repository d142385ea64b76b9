"""Anthropic's Messages format read into and written out of the common chat model: calls, answers,
streams and errors, from the API reference's own examples; and the Bedrock InvokeModel envelope."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.eventstream import event as aws_event
from tests.support.eventstream import exception, frame, invoke_chunk
from tests.support.examples import examples

from tollgate.formats import chat
from tollgate.formats.anthropic_messages import (
    ANTHROPIC_MESSAGES,
    NAME,
    REQUEST_FIELDS,
    InvokeStreamUnwrapper,
    bedrock_invoke_body,
    betas_of_header,
)
from tollgate.formats.usage import Usage

FMT = ANTHROPIC_MESSAGES
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
    "required": ["location"],
}


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """A written stream's events' data, checking each event's framing on the way (named by its type)."""
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        assert name.startswith("event: ")
        assert data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:]
        out.append(payload)
    assert raw.endswith(b"\n\n") or not raw
    return out


def stream_of(*events: dict[str, Any]) -> bytes:
    """A stream of `events` as Anthropic writes it, each event named by its type."""
    return b"".join(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode() for data in events)


def read_all(raw: bytes) -> list[chat.StreamEvent]:
    reader = FMT.stream_reader()
    events = reader.feed(raw) + reader.end()
    assert reader.error is None
    return events


def write_all(events: list[chat.StreamEvent], request: chat.ChatRequest | None = None) -> bytes:
    writer = FMT.stream_writer(request or chat.ChatRequest(model="claude-sonnet-4-5", messages=[]))
    assert writer.content_type == "text/event-stream"
    return b"".join(writer.write(e) for e in events) + writer.end()


# ---------------------------------------------------------------------------------------------
# Calls


DOCS_TOOL_CALL = {
    "model": "claude-opus-4-6",
    "max_tokens": 16000,
    "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}}],
    "tools": [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": WEATHER_SCHEMA,
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "messages": [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "The user wants the weather: call get_weather.",
                    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
                },
                {"type": "text", "text": "I'll check the weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="},
                },
            ],
        },
    ],
    "temperature": 1,
    "stop_sequences": ["\n\nHuman:"],
    "metadata": {"user_id": "13803d75-b4b5-4c3f-9ec2-f2c3e8a4e5a1"},
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "stream": True,
    "service_tier": "auto",
}

DOCS_TOOL_CALL_MODEL = chat.ChatRequest(
    model="claude-opus-4-6",
    max_tokens=16000,
    system=[chat.Text("You are a weather bot.")],
    tools=[chat.Tool("get_weather", "Get the current weather in a given location", WEATHER_SCHEMA)],
    tool_choice=chat.ToolChoice("auto"),
    parallel_tool_calls=False,
    messages=[
        chat.Message("user", [chat.Text("What's the weather like in San Francisco?")]),
        chat.Message(
            "assistant",
            [
                chat.Thinking(
                    "The user wants the weather: call get_weather.",
                    signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3h",
                    origin=NAME,
                ),
                chat.Text("I'll check the weather."),
                chat.ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", '{"location":"San Francisco, CA"}'),
            ],
        ),
        chat.Message(
            "user",
            [
                chat.ToolResult("toolu_01A09q90qw90lq917835lq9", None, [chat.Text("15 degrees")]),
                chat.Image(media_type="image/jpeg", data="/9j/4AAQSkZJRg=="),
            ],
        ),
    ],
    temperature=1,
    stop=["\n\nHuman:"],
    user="13803d75-b4b5-4c3f-9ec2-f2c3e8a4e5a1",
    thinking_budget=10000,
    stream=True,
    dropped=["cache_control", "service_tier"],
)


def test_reads_the_documented_tool_call() -> None:
    assert FMT.read_request(DOCS_TOOL_CALL) == DOCS_TOOL_CALL_MODEL


def test_reads_the_simplest_call() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]}
    assert FMT.read_request(body) == chat.ChatRequest(
        model="claude-sonnet-4-5", max_tokens=1024, messages=[chat.Message("user", [chat.Text("Hello, world")])]
    )


def test_writes_a_call_exactly() -> None:
    request = chat.ChatRequest(
        model="claude-sonnet-4-5",
        messages=[
            chat.Message("user", [chat.Text("Weather?"), chat.Image(url="https://example.com/sky.png")]),
            chat.Message(
                "assistant", [chat.Text(""), chat.ToolCall("toolu_1", "get_weather", '{"location": "Paris"}')]
            ),
            chat.Message(
                "user",
                [chat.Text("and now?"), chat.ToolResult("toolu_1", "get_weather", [chat.Text("12°C")], is_error=True)],
            ),
        ],
        system=[chat.Text("Be brief."), chat.Text("Use tools.")],
        tools=[chat.Tool("get_weather", None, WEATHER_SCHEMA, strict=True), chat.Tool("noop")],
        tool_choice=chat.ToolChoice("tool", "get_weather"),
        parallel_tool_calls=True,
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop=["END"],
        seed=7,
        user="u-1",
        output=chat.OutputFormat("json_schema", {"type": "object"}, name="answer"),
        stream=True,
    )
    body, headers = FMT.write_request(request)
    assert headers == {}
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "12°C"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "and now?"},
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "input_schema": WEATHER_SCHEMA, "strict": True},
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": False},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "stream": True,
    }
    assert request.dropped == ["seed"]


def test_a_call_round_trips() -> None:
    request = DOCS_TOOL_CALL_MODEL
    expected = chat.ChatRequest(**{f: getattr(request, f) for f in chat.ChatRequest.__slots__})  # type: ignore[attr-defined]
    expected.dropped = []
    again = FMT.read_request(FMT.write_request(expected)[0])
    assert again == expected


def test_reads_beta_and_ga_structured_outputs_and_effort() -> None:
    base = {"model": "m", "max_tokens": 10, "messages": []}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    beta = FMT.read_request({**base, "output_format": {"type": "json_schema", "schema": schema}})
    ga = FMT.read_request({**base, "output_config": {"format": {"type": "json_schema", "schema": schema}}})
    assert beta.output == ga.output == chat.OutputFormat("json_schema", schema)
    effort = FMT.read_request({**base, "output_config": {"effort": "max"}, "thinking": {"type": "adaptive"}})
    assert (effort.reasoning_effort, effort.dropped) == ("high", ["output_config.effort"])
    adaptive = FMT.read_request({**base, "thinking": {"type": "adaptive", "display": "omitted"}})
    assert (adaptive.reasoning_effort, adaptive.include_thoughts) == ("medium", False)
    assert FMT.read_request({**base, "thinking": {"type": "disabled"}}).thinking_budget == 0


def test_reading_drops_what_does_not_change_the_answer() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "cache_control": {"type": "ephemeral"},
        "container": None,
        "mcp_servers": [],
        "context_management": {"edits": []},
        "inference_geo": "us",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "citations": [{"type": "char_location"}]}]}
        ],
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "type": "custom", "eager_input_streaming": True}],
    }
    request = FMT.read_request(body)
    assert request.dropped == [
        "citations",
        "eager_input_streaming",
        "cache_control",
        "context_management",
        "inference_geo",
        "mcp_servers",
    ]
    assert request.tools == [chat.Tool("t", None, {"type": "object"})]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"frequency_penalty": 1}, "frequency_penalty cannot be translated"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type 'document'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result"}]}]},
            "messages[0].content[0].type 'search_result'",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]},
            "messages[0].content[0].type 'server_tool_use'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]},
            "'container_upload'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "n", "input": {}}]}]},
            "in a user message",
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role 'system'"),
        ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].source.type 'file'",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}],
                    }
                ]
            },
            "messages[0].content[0].content[0].type 'document'",
        ),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
            "tools[0].type 'web_search_20250305'",
        ),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type 'bash_20250124'"),
        ({"tools": [{"name": "t", "input_schema": {}, "input_examples": []}]}, "tools[0].input_examples"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]}, "mcp_servers"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type 'sometimes'"),
        ({"thinking": {"type": "between_tools"}}, "thinking.type 'between_tools'"),
        ({"max_tokens": "10"}, "max_tokens must be an integer"),
        ({"temperature": True}, "temperature must be a number"),
        ({"stop_sequences": "END"}, "stop_sequences must be an array"),
        ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type 'json_object'"),
        ({"compaction": {"enabled": True}}, "compaction cannot be translated"),
    ],
)
def test_reading_refuses_what_it_cannot_carry(change: dict[str, Any], named: str) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(chat.Untranslatable, match=None) as caught:
        FMT.read_request(body)
    assert named in str(caught.value)


def test_every_field_has_a_handling() -> None:
    assert {h for h, _ in REQUEST_FIELDS.values()} == {"translated", "dropped", "refused"}


def call(**fields: Any) -> chat.ChatRequest:
    return chat.ChatRequest(
        **{"model": "claude-sonnet-4-5", "messages": [chat.Message("user", [chat.Text("hi")])], **fields}
    )


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (call(n=2), "n 2: Anthropic returns one answer"),
        (call(logprobs=True), "logprobs"),
        (call(top_logprobs=3), "top_logprobs"),
        (call(output=chat.OutputFormat("json")), "no plain JSON mode"),
        (call(temperature=1.5), "temperature 1.5"),
        (call(max_tokens=2000, reasoning_effort="medium"), "max_tokens 2000 must be above the 8192 thinking tokens"),
        (call(max_tokens=1024, thinking_budget=1024), "max_tokens 1024"),
        (
            call(tools=[chat.Tool("f")], tool_choice=chat.ToolChoice("required"), reasoning_effort="low"),
            "tool_choice 'required'",
        ),
        (
            call(messages=[chat.Message("user", [chat.Image(url="gs://bucket/a.png")])]),
            "messages[0].parts[0]: an image at gs URL",
        ),
        (call(messages=[chat.Message("user", [chat.Image(media_type="image/heic", data="AAAA")])]), "image/heic"),
        (call(messages=[chat.Message("user", [chat.ToolCall("c", "f", "{}")])]), "messages[0].parts[0]: a ToolCall"),
        (
            call(messages=[chat.Message("assistant", [chat.ToolResult("c", None, [])])]),
            "a ToolResult cannot be in an assistant",
        ),
    ],
)
def test_writing_refuses_what_anthropic_cannot_carry(request_: chat.ChatRequest, named: str) -> None:
    with pytest.raises(chat.Untranslatable) as caught:
        FMT.write_request(request_)
    assert named in str(caught.value)


def test_writing_drops_what_anthropic_lacks() -> None:
    request = call(
        seed=1,
        presence_penalty=0.5,
        frequency_penalty=0.2,
        messages=[
            chat.Message("user", [chat.Text("hi")]),
            chat.Message(
                "assistant", [chat.Thinking("gemini thought"), chat.Thinking(redacted="EnCrYpTeD"), chat.Text("hello")]
            ),
        ],
    )
    body, _ = FMT.write_request(request)
    assert body["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "EnCrYpTeD"},
        {"type": "text", "text": "hello"},
    ]
    assert request.dropped == ["seed", "presence_penalty", "frequency_penalty", "thinking without signature"]


@pytest.mark.parametrize(
    ("fields", "thinking", "max_tokens"),
    [
        ({"reasoning_effort": "medium"}, {"type": "enabled", "budget_tokens": 8192}, 8192 + 4096),
        ({"reasoning_effort": "minimal", "max_tokens": 2000}, {"type": "enabled", "budget_tokens": 1024}, 2000),
        ({"thinking_budget": 3000, "max_tokens": 5000}, {"type": "enabled", "budget_tokens": 3000}, 5000),
        ({"thinking_budget": 0, "reasoning_effort": "high"}, {"type": "disabled"}, 4096),
        ({"thinking_budget": -1}, {"type": "enabled", "budget_tokens": 8192}, 8192 + 4096),
        ({}, None, 4096),
    ],
)
def test_thinking_fits_within_max_tokens(
    fields: dict[str, Any], thinking: dict[str, Any] | None, max_tokens: int
) -> None:
    body, _ = FMT.write_request(call(**fields))
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == max_tokens


def test_thinking_drops_the_sampling_anthropic_refuses_with_it() -> None:
    request = call(thinking_budget=2000, temperature=0.2, top_p=0.9, top_k=5)
    body, _ = FMT.write_request(request)
    assert ("temperature" in body, "top_p" in body, "top_k" in body) == (False, False, False)
    assert request.dropped == ["temperature", "top_p", "top_k"]
    kept = FMT.write_request(call(thinking_budget=2000, temperature=1, top_p=0.95))[0]
    assert (kept["temperature"], kept["top_p"]) == (1, 0.95)


@pytest.mark.parametrize(
    ("choice", "parallel", "written"),
    [
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (chat.ToolChoice("required"), None, {"type": "any"}),
        (chat.ToolChoice("none"), False, {"type": "none"}),
        (chat.ToolChoice("auto"), True, {"type": "auto", "disable_parallel_tool_use": False}),
    ],
)
def test_tool_choice(choice: chat.ToolChoice | None, parallel: bool | None, written: dict[str, Any] | None) -> None:
    body, _ = FMT.write_request(call(tools=[chat.Tool("f")], tool_choice=choice, parallel_tool_calls=parallel))
    assert body.get("tool_choice") == written
    assert "tool_choice" not in FMT.write_request(call(tool_choice=chat.ToolChoice("none")))[0]


def test_images_inline_get_their_type() -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n....").decode()
    body, _ = FMT.write_request(
        call(
            messages=[
                chat.Message("user", [chat.Image(data=png), chat.Image(url="data:image/webp;base64,UklGRgAAAABXRUJQ")])
            ]
        )
    )
    sources = [b["source"] for b in body["messages"][0]["content"]]
    assert sources == [
        {"type": "base64", "media_type": "image/png", "data": png},
        {"type": "base64", "media_type": "image/webp", "data": "UklGRgAAAABXRUJQ"},
    ]


# ---------------------------------------------------------------------------------------------
# Answers


DOCS_ANSWER = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-6",
    "content": [
        {
            "type": "thinking",
            "thinking": "Plan the call.",
            "signature": "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve",
        },
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA"},
        },
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 503,
        "output_tokens_details": {"thinking_tokens": 200},
        "service_tier": "standard",
    },
}

DOCS_ANSWER_MODEL = chat.ChatResponse(
    id="msg_013Zva2CMHLNnXjNJJKqJ2EF",
    model="claude-opus-4-6",
    choices=[
        chat.Choice(
            0,
            [
                chat.Thinking("Plan the call.", signature="WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve", origin=NAME),
                chat.Thinking(redacted="EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP", origin=NAME),
                chat.Text("I'll check the weather."),
                chat.ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", '{"location":"San Francisco, CA"}'),
            ],
            "tool_calls",
        )
    ],
    usage=Usage(input_tokens=3195, output_tokens=503, cached_tokens=1000, cache_write_tokens=100, reasoning_tokens=200),
)


def test_reads_the_documented_answer() -> None:
    assert FMT.read_response(DOCS_ANSWER) == DOCS_ANSWER_MODEL


def test_writes_an_answer_exactly_and_back() -> None:
    written = FMT.write_response(DOCS_ANSWER_MODEL, call())
    expected = {**DOCS_ANSWER, "content": DOCS_ANSWER["content"][:4]}
    expected["usage"] = {k: v for k, v in DOCS_ANSWER["usage"].items() if k != "service_tier"}
    assert written == expected
    assert FMT.read_response(written) == DOCS_ANSWER_MODEL


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "other"),
        (None, None),
    ],
)
def test_stop_reasons_read(stop_reason: str | None, finish: str | None) -> None:
    answer = FMT.read_response({"id": "msg_1", "content": [], "stop_reason": stop_reason})
    assert answer.choices[0].finish == finish
    assert answer.usage == Usage()


def test_stop_sequence_both_ways() -> None:
    answer = FMT.read_response(
        {"content": [{"type": "text", "text": "x"}], "stop_reason": "stop_sequence", "stop_sequence": "END"}
    )
    assert answer.choices[0] == chat.Choice(0, [chat.Text("x")], "stop", "END")
    assert FMT.write_response(answer, call())["stop_reason"] == "stop_sequence"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("other", "end_turn"),
    ],
)
def test_stop_reasons_written(finish: chat.FinishReason, stop_reason: str) -> None:
    response = chat.ChatResponse(id=None, model=None, choices=[chat.Choice(0, [], finish)])
    written = FMT.write_response(response, call(model="claude-haiku-4-5"))
    assert written["stop_reason"] == stop_reason
    assert written["id"].startswith("msg_")
    assert written["model"] == "claude-haiku-4-5"
    assert written["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_writes_the_first_of_several_answers_and_survives_broken_arguments() -> None:
    response = chat.ChatResponse(
        id="chatcmpl-9",
        model="gpt-x",
        choices=[
            chat.Choice(1, [chat.Text("second")], "stop"),
            chat.Choice(0, [chat.ToolCall("", "f", "{not json"), chat.ToolCall("call_2", "g", "[1]")], "tool_calls"),
        ],
        usage=Usage(input_tokens=10, output_tokens=5),
    )
    written = FMT.write_response(response, call())
    assert written["id"] == "msg_chatcmpl-9"
    assert written["content"] == [
        {"type": "tool_use", "id": "toolu_chatcmpl-9_0", "name": "f", "input": {}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert written["usage"] == {"input_tokens": 10, "output_tokens": 5}


def test_reads_odd_answers_without_crashing() -> None:
    odd = {
        "id": 5,
        "content": [None, {"type": "text"}, {"type": "tool_use", "input": "x"}],
        "usage": {"input_tokens": "9"},
    }
    answer = FMT.read_response(odd)
    assert answer.id is None
    assert answer.choices[0].parts == [chat.Text(""), chat.ToolCall("", "", "{}")]
    assert answer.usage == Usage()


# ---------------------------------------------------------------------------------------------
# Streams


DOCS_TOOL_STREAM = stream_of(
    {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-6",
            "stop_sequence": None,
            "usage": {"input_tokens": 472, "cache_read_input_tokens": 100, "output_tokens": 2},
            "content": [],
            "stop_reason": None,
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Weather: use the tool."},
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": ", let's check."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {},
        },
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"location":'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
)

DOCS_TOOL_STREAM_EVENTS: list[chat.StreamEvent] = [
    chat.Started("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-opus-4-6"),
    chat.UsageReported(Usage(input_tokens=572, output_tokens=2, cached_tokens=100)),
    chat.ThinkingDelta("Weather: use the tool."),
    chat.ThinkingDelta(signature="EqQBCgIYAhIM", origin=NAME),
    chat.TextDelta("Okay"),
    chat.TextDelta(", let's check."),
    chat.ToolCallStarted(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
    chat.ToolCallDelta(0, '{"location":'),
    chat.ToolCallDelta(0, ' "San Francisco, CA"}'),
    chat.Finished("tool_calls"),
    chat.UsageReported(Usage(output_tokens=89)),
]


def test_reads_the_documented_stream() -> None:
    assert read_all(DOCS_TOOL_STREAM) == DOCS_TOOL_STREAM_EVENTS


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(DOCS_TOOL_STREAM)), max_size=12))
def test_reading_does_not_depend_on_the_cuts(cuts: list[int]) -> None:
    reader = FMT.stream_reader()
    events: list[chat.StreamEvent] = []
    last = 0
    for cut in [*sorted(cuts), len(DOCS_TOOL_STREAM)]:
        events += reader.feed(DOCS_TOOL_STREAM[last:cut])
        last = cut
    events += reader.end()
    assert reader.error is None
    assert events == DOCS_TOOL_STREAM_EVENTS


def test_reads_usage_updates_and_errors_in_a_stream() -> None:
    raw = stream_of(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "m",
                "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "abc"}},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "web_search_tool_result", "content": []},
        },
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
            "usage": {"input_tokens": 12, "output_tokens": 30},
        },
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert read_all(raw) == [
        chat.Started("msg_1", "m"),
        chat.UsageReported(Usage(input_tokens=15, output_tokens=1, cache_write_tokens=5)),
        chat.TextDelta("Hi"),
        chat.ThinkingDelta(redacted="abc", origin=NAME),
        chat.ToolCallStarted(0, "t", "f"),
        chat.ToolCallDelta(0, '{"a":1}'),
        chat.Finished("stop", stop_sequence="END"),
        chat.UsageReported(Usage(input_tokens=17, output_tokens=30)),
        chat.Failed(chat.ChatError(529, "overloaded", "Overloaded")),
    ]


def test_a_broken_stream_sets_error_and_stops() -> None:
    reader = FMT.stream_reader()
    assert reader.feed(b"event: message_start\ndata: {not json\n\n") == []
    assert reader.error is not None
    assert reader.feed(DOCS_TOOL_STREAM) == []


def test_writes_a_stream_exactly() -> None:
    events: list[chat.StreamEvent] = [
        chat.Started("chatcmpl-1", "gpt-x"),
        chat.UsageReported(Usage(input_tokens=20, cached_tokens=5)),
        chat.ThinkingDelta("hmm"),
        chat.ThinkingDelta(signature="sig"),
        chat.TextDelta("Hel"),
        chat.TextDelta("lo", choice=1),
        chat.TextDelta("lo"),
        chat.ToolCallStarted(0, "call_1", "f"),
        chat.ToolCallDelta(0, '{"a":'),
        chat.ToolCallDelta(0, "1}"),
        chat.Finished("tool_calls"),
        chat.UsageReported(Usage(output_tokens=7)),
    ]
    raw = write_all(events)
    assert raw.startswith(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_chatcmpl-1",')
    assert sse_events(raw) == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_chatcmpl-1",
                "type": "message",
                "role": "assistant",
                "model": "gpt-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
        },
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"input_tokens": 15, "cache_read_input_tokens": 5, "output_tokens": 7},
        },
        {"type": "message_stop"},
    ]


def test_a_stream_without_start_or_content_is_still_whole() -> None:
    raw = write_all([chat.Finished("length")], chat.ChatRequest(model="claude-x", messages=[]))
    names = [data["type"] for data in sse_events(raw)]
    assert names == ["message_start", "message_delta", "message_stop"]
    start = sse_events(raw)[0]["message"]
    assert start["id"].startswith("msg_")
    assert start["model"] == "claude-x"
    assert sse_events(raw)[1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}


def test_a_tool_call_without_id_gets_one() -> None:
    raw = write_all(
        [
            chat.Started("resp_1"),
            chat.ToolCallStarted(0, "", "f"),
            chat.ToolCallDelta(0, "{}"),
            chat.Finished("tool_calls"),
        ]
    )
    assert sse_events(raw)[1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_resp_1_0",
        "name": "f",
        "input": {},
    }


def test_a_failed_stream_ends_in_an_error_event() -> None:
    writer = FMT.stream_writer(call())
    out = writer.write(chat.Started("msg_1", "m")) + writer.write(chat.TextDelta("x"))
    out += writer.write(chat.Failed(chat.ChatError(429, "rate_limit", "slow down")))
    out += writer.write(chat.TextDelta("more")) + writer.end()
    assert sse_events(out)[-1] == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_the_documented_stream_round_trips() -> None:
    written = write_all(DOCS_TOOL_STREAM_EVENTS)
    again = read_all(written)
    # message_start goes out before any usage is known; message_delta carries all of it at the end.
    assert again == [
        DOCS_TOOL_STREAM_EVENTS[0],
        chat.UsageReported(Usage(input_tokens=0, output_tokens=0)),
        *DOCS_TOOL_STREAM_EVENTS[2:-1],
        chat.UsageReported(Usage(input_tokens=572, output_tokens=89, cached_tokens=100)),
    ]


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (400, "invalid_request", "invalid_request_error"),
        (401, "authentication", "authentication_error"),
        (403, "permission", "permission_error"),
        (404, "not_found", "not_found_error"),
        (413, "too_large", "request_too_large"),
        (429, "rate_limit", "rate_limit_error"),
        (500, "server", "api_error"),
        (503, "overloaded", "overloaded_error"),
        (504, "timeout", "timeout_error"),
        (529, "overloaded", "overloaded_error"),
    ],
)
def test_errors_both_ways(status: int, kind: chat.ErrorKind, error_type: str) -> None:
    error = chat.ChatError(status, kind, "Something went wrong")
    written_status, headers, body = FMT.write_error(error)
    assert (written_status, headers) == (status, {"content-type": "application/json"})
    assert json.loads(body) == {"type": "error", "error": {"type": error_type, "message": "Something went wrong"}}
    assert FMT.read_error(status, {}, body) == error


def test_reads_errors_it_does_not_know() -> None:
    body = b'{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low"},"request_id":"req_1"}'
    assert FMT.read_error(402, {}, body) == chat.ChatError(402, "permission", "Your credit balance is too low")
    assert FMT.read_error(502, {}, b"<html>Bad gateway</html>") == chat.ChatError(
        502, "server", "Anthropic answered HTTP 502"
    )
    assert FMT.read_error(429, {}, b'{"error": "x"}') == chat.ChatError(
        429, "rate_limit", "Anthropic answered HTTP 429"
    )


# ---------------------------------------------------------------------------------------------
# Claude on Bedrock's InvokeModel


def test_bedrock_invoke_body() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    betas = betas_of_header("context-1m-2025-08-07, interleaved-thinking-2025-05-14")
    assert bedrock_invoke_body(body, betas) == {
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
    }
    assert "anthropic_beta" not in bedrock_invoke_body(body, [])
    assert body["model"] == "claude-sonnet-4-5"  # the caller's body is left as it was


def invoke_stream() -> tuple[bytes, bytes]:
    """The documented stream as Bedrock wraps it, and the Anthropic stream inside it."""
    events = [json.loads(block.split("\n")[1][6:]) for block in DOCS_TOOL_STREAM.decode().split("\n\n")[:-1]]
    events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": {"inputTokenCount": 472, "outputTokenCount": 89}}
    wrapped = b"".join(invoke_chunk(e) for e in events)
    inner = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    return wrapped, inner


def test_unwraps_bedrock_invoke_stream() -> None:
    wrapped, inner = invoke_stream()
    unwrapper = InvokeStreamUnwrapper()
    assert unwrapper.feed(wrapped) + unwrapper.flush() == inner
    assert unwrapper.error is None
    assert read_all(inner) == DOCS_TOOL_STREAM_EVENTS


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=10))
def test_unwrapping_does_not_depend_on_the_cuts(cuts: list[int]) -> None:
    wrapped, inner = invoke_stream()
    unwrapper = InvokeStreamUnwrapper()
    out, last = b"", 0
    for cut in [*sorted(c % (len(wrapped) + 1) for c in cuts), len(wrapped)]:
        out += unwrapper.feed(wrapped[last:cut]) if cut >= last else b""
        last = max(last, cut)
    assert out == inner


@pytest.mark.parametrize(
    ("exception_type", "error_type", "status", "kind"),
    [
        ("throttlingException", "rate_limit_error", 429, "rate_limit"),
        ("modelStreamErrorException", "api_error", 500, "server"),
        ("internalServerException", "api_error", 500, "server"),
        ("validationException", "invalid_request_error", 400, "invalid_request"),
        ("serviceUnavailableException", "overloaded_error", 529, "overloaded"),
        ("modelTimeoutException", "timeout_error", 504, "timeout"),
        ("somethingNewException", "api_error", 500, "server"),
    ],
)
def test_bedrock_exceptions_become_anthropic_errors(
    exception_type: str, error_type: str, status: int, kind: str
) -> None:
    unwrapper = InvokeStreamUnwrapper()
    first = {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 1, "output_tokens": 0}},
    }
    out = unwrapper.feed(invoke_chunk(first) + exception(exception_type, "It broke"))
    error = {"type": "error", "error": {"type": error_type, "message": "It broke"}}
    assert sse_events(out)[-1] == error
    assert read_all(out)[-1] == chat.Failed(chat.ChatError(status, kind, "It broke"))  # type: ignore[arg-type]


def test_bedrock_oddities() -> None:
    unwrapper = InvokeStreamUnwrapper()
    other = aws_event("metadata", {"x": 1}) + frame(
        {":message-type": "error", ":error-code": "Oops", ":error-message": "bad"}, b""
    )
    assert sse_events(unwrapper.feed(other)) == [{"type": "error", "error": {"type": "api_error", "message": "bad"}}]
    spaced = aws_event("chunk", {"bytes": base64.b64encode(b'{\n "type": "ping"\n}').decode()})
    assert unwrapper.feed(spaced) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert unwrapper.feed(aws_event("chunk", {"bytes": "!!notbase64"})) == b""
    assert unwrapper.error is not None
    broken = InvokeStreamUnwrapper()
    assert broken.feed(b"\x00\x00\x00\x10garbage-garbage-garbage") == b""
    assert broken.error is not None


# ---------------------------------------------------------------------------------------------
# Signatures: each valid only for the provider that made it


def test_an_answer_seals_another_providers_signatures() -> None:
    gemini_signed = chat.Thinking("plan", signature="c2ln+/==", origin="gemini-generate")
    converse_redacted = chat.Thinking(redacted="cmVk", origin="bedrock-converse")
    own = chat.Thinking("mine", signature="EqQB", origin=NAME)
    response = chat.ChatResponse(
        "msg_1", "m", [chat.Choice(0, [gemini_signed, converse_redacted, own, chat.Text("Hi")], "stop")]
    )
    content = FMT.write_response(response, call())["content"]
    assert content[:3] == [
        {"type": "thinking", "thinking": "plan", "signature": chat.seal("c2ln+/==", "gemini-generate")},
        {"type": "redacted_thinking", "data": chat.seal("cmVk", "bedrock-converse")},
        {"type": "thinking", "thinking": "mine", "signature": "EqQB"},
    ]
    # The client sends them back in its history: each goes back to its own provider.
    history = FMT.read_request(
        {"model": "m", "max_tokens": 10, "messages": [{"role": "assistant", "content": content}]}
    )
    assert history.messages[0].parts == [gemini_signed, converse_redacted, own, chat.Text("Hi")]


def test_a_stream_seals_another_providers_signatures() -> None:
    events: list[chat.StreamEvent] = [
        chat.ThinkingDelta("plan"),
        chat.ThinkingDelta(signature="c2ln", origin="gemini-generate"),
        chat.ThinkingDelta(redacted="cmVk", origin="bedrock-converse"),
        chat.ThinkingDelta(signature="EqQB", origin=NAME),
        chat.Finished("stop"),
    ]
    written = sse_events(write_all(events))
    deltas = [data["delta"] for data in written if data["type"] == "content_block_delta"]
    blocks = [data["content_block"] for data in written if data["type"] == "content_block_start"]
    assert {"type": "signature_delta", "signature": chat.seal("c2ln", "gemini-generate")} in deltas
    assert {"type": "signature_delta", "signature": "EqQB"} in deltas
    assert {"type": "redacted_thinking", "data": chat.seal("cmVk", "bedrock-converse")} in blocks


def test_reading_a_call_unseals_signatures_and_knows_anthropics_own() -> None:
    sealed = chat.seal("c2ln", "gemini-generate")
    blocks = [
        {"type": "thinking", "thinking": "a", "signature": sealed},
        {"type": "thinking", "thinking": "b", "signature": "EqQB"},
        {"type": "redacted_thinking", "data": "EnCr"},
    ]
    request = FMT.read_request({"model": "m", "max_tokens": 10, "messages": [{"role": "assistant", "content": blocks}]})
    assert request.messages[0].parts == [
        chat.Thinking("a", signature="c2ln", origin="gemini-generate"),
        chat.Thinking("b", signature="EqQB", origin=NAME),
        chat.Thinking(redacted="EnCr", origin=NAME),
    ]
