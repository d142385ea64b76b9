"""OpenAI's Chat Completions read into and written out of the common chat model: the API reference's
own examples, round trips, every refusal, errors both ways, and streams however they are cut."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats import chat
from tollgate.formats.openai_chat import OPENAI_CHAT, REQUEST_FIELDS
from tollgate.formats.usage import Usage

FORMAT: chat.ChatFormat = OPENAI_CHAT
CUTS = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_name_and_table() -> None:
    assert FORMAT.name == "openai-chat"
    assert REQUEST_FIELDS["logit_bias"] == "dropped"
    assert REQUEST_FIELDS["functions"] == "refused"
    assert REQUEST_FIELDS["max_completion_tokens"] == "translated"


# ---------------------------------------------------------------------------------------------
# Requests: the API reference's examples


def test_reads_the_default_example() -> None:
    body = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    }
    assert FORMAT.read_request(body) == chat.ChatRequest(
        model="gpt-4.1",
        system=[chat.Text("You are a helpful assistant.")],
        messages=[chat.Message("user", [chat.Text("Hello!")])],
    )


def test_reads_the_image_input_example() -> None:
    body = {
        "model": "gpt-4.1",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in this image?"},
                    {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/boardwalk.jpg"}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
                ],
            }
        ],
        "max_tokens": 300,
    }
    request = FORMAT.read_request(body)
    assert request.messages == [
        chat.Message(
            "user",
            [
                chat.Text("What's in this image?"),
                chat.Image(url="https://upload.wikimedia.org/boardwalk.jpg"),
                chat.Image(media_type="image/jpeg", data="/9j/4AAQ"),
            ],
        )
    ]
    assert request.max_tokens == 300
    assert request.dropped == ["messages[].content[].image_url.detail"]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


def test_reads_the_functions_example() -> None:
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    request = FORMAT.read_request(body)
    function: dict[str, Any] = WEATHER_TOOL["function"]  # type: ignore[assignment]
    assert request.tools == [chat.Tool(function["name"], function["description"], function["parameters"])]
    assert request.tool_choice == chat.ToolChoice("auto")


def test_reads_every_translated_field() -> None:
    body = {
        "model": "o4-mini",
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            },
            {"role": "user", "content": "What's the weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Two cities: two calls.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
            {"role": "user", "content": "And tomorrow?"},
            {"role": "developer", "content": "Answer in French."},
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}, "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 500,
        "temperature": 0.5,
        "top_p": 1,
        "stop": "END",
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.2,
        "logprobs": True,
        "top_logprobs": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "forecast", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
        "safety_identifier": "user-42",
        "modalities": ["text"],
    }
    assert FORMAT.read_request(body) == chat.ChatRequest(
        model="o4-mini",
        system=[chat.Text("Be brief."), chat.Text("Be kind."), chat.Text("Answer in French.")],
        messages=[
            chat.Message("user", [chat.Text("What's the weather in Paris and Rome?")]),
            chat.Message(
                "assistant",
                [
                    chat.Thinking("Two cities: two calls."),
                    chat.ToolCall("call_1", "weather", '{"city":"Paris"}'),
                    chat.ToolCall("call_2", "weather", '{"city":"Rome"}'),
                ],
            ),
            chat.Message(
                "user",
                [
                    chat.ToolResult("call_1", None, [chat.Text("18C")]),
                    chat.ToolResult("call_2", None, [chat.Text("24C")]),
                ],
            ),
            chat.Message("user", [chat.Text("And tomorrow?")]),
        ],
        tools=[chat.Tool("weather", None, {"type": "object"}, True)],
        tool_choice=chat.ToolChoice("tool", "weather"),
        parallel_tool_calls=False,
        max_tokens=500,
        temperature=0.5,
        top_p=1,
        stop=["END"],
        n=2,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        logprobs=True,
        top_logprobs=3,
        output=chat.OutputFormat("json_schema", {"type": "object"}, "forecast", True),
        reasoning_effort="low",
        user="user-42",
        stream=True,
        stream_usage=True,
    )


def test_reads_the_smaller_forms() -> None:
    request = FORMAT.read_request(
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}]},
                {"role": "assistant", "content": "", "refusal": "I can't."},
            ],
            "max_tokens": 10,
            "stop": ["a", "b"],
            "response_format": {"type": "json_object"},
            "reasoning_effort": "none",
            "user": "u1",
            "tool_choice": "required",
            "temperature": None,
            "stream_options": None,
        }
    )
    assert request.model is None
    assert request.messages == [
        chat.Message("assistant", [chat.Text("a"), chat.Text("no")]),
        chat.Message("assistant", [chat.Text("I can't.")]),
    ]
    assert (request.max_tokens, request.stop, request.output) == (10, ["a", "b"], chat.OutputFormat("json"))
    assert (request.thinking_budget, request.reasoning_effort, request.user) == (0, None, "u1")
    assert request.tool_choice == chat.ToolChoice("required")
    assert request.temperature is None
    assert request.stream is False


def test_xhigh_effort_reads_as_high_and_says_so() -> None:
    request = FORMAT.read_request({"messages": [], "reasoning_effort": "xhigh"})
    assert request.reasoning_effort == "high"
    assert request.dropped == ["reasoning_effort 'xhigh' (read as 'high')"]


def test_a_user_message_after_tool_results_stays_apart() -> None:
    request = FORMAT.read_request(
        {
            "messages": [
                {"role": "tool", "tool_call_id": "a", "content": "1"},
                {"role": "user", "content": "next"},
                {"role": "tool", "tool_call_id": "b", "content": "2"},
            ]
        }
    )
    assert request.messages == [
        chat.Message("user", [chat.ToolResult("a", None, [chat.Text("1")])]),
        chat.Message("user", [chat.Text("next")]),
        chat.Message("user", [chat.ToolResult("b", None, [chat.Text("2")])]),
    ]


def test_reads_harmless_fields_as_dropped() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "s", "name": "boss"},
            {
                "role": "user",
                "name": "ann",
                "content": [{"type": "text", "text": "hi", "prompt_cache_breakpoint": {"mode": "explicit"}}],
            },
            {"role": "user", "name": "bob", "content": "hey"},
        ],
        "logit_bias": {"50256": -100},
        "store": True,
        "metadata": {"a": "b"},
        "service_tier": "flex",
        "prediction": {"type": "content", "content": "x"},
        "verbosity": "low",
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "implicit"},
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "audio": None,
    }
    request = FORMAT.read_request(body)
    assert request.dropped == [
        "logit_bias",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "verbosity",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "messages[].name",
        "messages[].content[].prompt_cache_breakpoint",
        "stream_options.include_obfuscation",
    ]
    assert request.messages == [chat.Message("user", [chat.Text("hi")]), chat.Message("user", [chat.Text("hey")])]
    assert request.stream_usage is False


def _user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


REFUSED_REQUESTS = [
    ({"messages": [], "frobnicate": 1}, "frobnicate"),
    ({"messages": [], "modalities": ["text", "audio"]}, "modalities"),
    ({"messages": [], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"messages": [], "web_search_options": {}}, "web_search_options"),
    ({"messages": [], "functions": [{"name": "f"}]}, "functions"),
    ({"messages": [], "function_call": "auto"}, "function_call"),
    ({"messages": [], "moderation": {"model": "omni-moderation-latest"}}, "moderation"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role 'function'"),
    ({"messages": [{"role": "user", "content": "x", "extra": 1}]}, "messages[0].extra"),
    (
        _user([{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {}}]),
        "messages[0].content[1].type 'input_audio'",
    ),
    (_user([{"type": "file", "file": {"file_id": "f"}}]), "messages[0].content[0].type 'file'"),
    (_user([{"type": "video", "video": {}}]), "messages[0].content[0].type 'video'"),
    (_user([{"type": "text", "text": 3}]), "messages[0].content[0].text"),
    (_user([{"type": "image_url", "image_url": {"url": "gs://b/o.png"}}]), "messages[0].content[0].image_url.url"),
    (
        _user([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]),
        "messages[0].content[0].image_url.url",
    ),
    (_user(None), "messages[0].content"),
    (
        {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]},
        "messages[0].content[0].type 'image_url'",
    ),
    (
        {"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
        "messages[0].function_call",
    ),
    ({"messages": [{"role": "assistant", "audio": {"id": "a"}}]}, "messages[0].audio"),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}]},
        "messages[0].tool_calls[0].type 'custom'",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
                }
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": "hello"}, "messages"),
    ({}, "messages"),
    ({"messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type 'custom'"),
    (
        {"messages": [], "tools": [{"type": "function", "function": {"name": "f", "extra": 1}}]},
        "tools[0].function.extra",
    ),
    ({"messages": [], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "tool_choice"),
    ({"messages": [], "response_format": {"type": "grammar"}}, "response_format.type 'grammar'"),
    ({"messages": [], "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"messages": [], "max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
    ({"messages": [], "temperature": "hot"}, "temperature"),
    ({"messages": [], "n": True}, "n"),
    ({"messages": [], "stream": "yes"}, "stream"),
    ({"messages": [], "stop": [1]}, "stop[0]"),
    ({"messages": [], "stream_options": {"include_usage": True, "chunk": 1}}, "stream_options.chunk"),
    ({"messages": [], "model": 4}, "model"),
]


@pytest.mark.parametrize(("body", "named"), REFUSED_REQUESTS)
def test_refuses_what_it_cannot_read_exactly(body: dict[str, Any], named: str) -> None:
    with pytest.raises(
        chat.Untranslatable, match="^" + named.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        FORMAT.read_request(body)


# ---------------------------------------------------------------------------------------------
# Requests written


def test_writes_a_request_exactly() -> None:
    request = chat.ChatRequest(
        model="gpt-4o",
        system=[chat.Text("Be brief.")],
        messages=[
            chat.Message(
                "user",
                [
                    chat.Text("Look:"),
                    chat.Image(media_type="image/png", data="iVBORw0KGgo"),
                    chat.Image(url="https://x/y.jpg"),
                ],
            ),
            chat.Message(
                "assistant",
                [
                    chat.Thinking("hmm", signature="sig"),
                    chat.Text("Calling."),
                    chat.ToolCall("call_1", "weather", '{"city":"Paris"}'),
                ],
            ),
            chat.Message(
                "user", [chat.ToolResult("call_1", "weather", [chat.Text("18C")], is_error=True), chat.Text("Thanks")]
            ),
            chat.Message("assistant", [chat.ToolCall("call_2", "weather", "{}")]),
        ],
        tools=[chat.Tool("weather", "The weather", {"type": "object"}), chat.Tool("noop")],
        tool_choice=chat.ToolChoice("tool", "weather"),
        max_tokens=100,
        top_k=40,
        stop=["END"],
        output=chat.OutputFormat("json_schema", {"type": "object"}),
        thinking_budget=2000,
        include_thoughts=True,
        user="u1",
        stream=True,
    )
    body, headers = FORMAT.write_request(request)
    assert headers == {}
    assert body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Calling.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "The weather", "parameters": {"type": "object"}},
            },
            {"type": "function", "function": {"name": "noop"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_completion_tokens": 100,
        "stop": ["END"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
        "user": "u1",
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request.dropped == ["reasoning in history", "is_error", "include_thoughts", "top_k"]


def test_writes_reasoning_as_effort() -> None:
    def effort(**fields: Any) -> tuple[Any, list[str]]:
        request = chat.ChatRequest(model="o3", messages=[], **fields)
        return FORMAT.write_request(request)[0].get("reasoning_effort"), request.dropped

    assert effort(reasoning_effort="high", thinking_budget=100) == ("high", ["thinking_budget"])
    assert effort(thinking_budget=0) == ("none", [])
    assert effort(thinking_budget=500) == ("minimal", [])
    assert effort(thinking_budget=100_000) == ("high", [])
    assert effort(include_thoughts=False) == (None, [])


def test_writes_images_without_a_media_type_by_their_signature() -> None:
    request = chat.ChatRequest(
        None, [chat.Message("user", [chat.Image(media_type="image/*", data="/9j/4AAQ"), chat.Image(data="abcd")])]
    )
    content = FORMAT.write_request(request)[0]["messages"][0]["content"]
    assert [c["image_url"]["url"] for c in content] == ["data:image/jpeg;base64,/9j/4AAQ", "data:image/png;base64,abcd"]


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (chat.Message("user", [chat.ToolResult("c", None, [chat.Image(data="AAAA")])]), "messages[0].parts[0]"),
        (chat.Message("user", [chat.Image(url="gs://bucket/cat.png")]), "messages[0].parts[0]"),
        (chat.Message("user", [chat.ToolCall("c", "f", "{}")]), "messages[0].parts[0]"),
        (chat.Message("assistant", [chat.Image(data="AAAA")]), "messages[0].parts[0]"),
    ],
)
def test_refuses_to_write_what_chat_completions_cannot_carry(message: chat.Message, named: str) -> None:
    with pytest.raises(chat.Untranslatable, match=named.replace("[", r"\[").replace("]", r"\]")):
        FORMAT.write_request(chat.ChatRequest("gpt-4o", [message]))


ROUND_TRIP_REQUESTS = [
    chat.ChatRequest("gpt-4o", [chat.Message("user", [chat.Text("hi")])]),
    chat.ChatRequest(
        "gpt-4o",
        system=[chat.Text("a"), chat.Text("b")],
        messages=[
            chat.Message("user", [chat.Text("x"), chat.Text("y"), chat.Image("image/gif", "R0lGOD")]),
            chat.Message("assistant", [chat.Text("one"), chat.Text("two"), chat.ToolCall("c1", "f", '{"a":1}')]),
            chat.Message(
                "user",
                [chat.ToolResult("c1", None, [chat.Text("r1"), chat.Text("r2")]), chat.ToolResult("c2", None, [])],
            ),
            chat.Message("assistant", [chat.Text("done")]),
            chat.Message("user", [chat.Image(url="https://example.com/cat.png")]),
        ],
        tools=[chat.Tool("f", "does f", {"type": "object", "properties": {}}, False)],
        tool_choice=chat.ToolChoice("none"),
        parallel_tool_calls=True,
        max_tokens=5,
        temperature=1.5,
        top_p=0.9,
        stop=["x", "y"],
        n=3,
        seed=1,
        presence_penalty=1.0,
        frequency_penalty=0.5,
        logprobs=True,
        top_logprobs=2,
        output=chat.OutputFormat("json_schema", {"type": "object"}, "out", False),
        reasoning_effort="minimal",
        user="someone",
        stream=True,
        stream_usage=True,
    ),
    chat.ChatRequest("m", [chat.Message("user", [chat.Text("")])], output=chat.OutputFormat("text"), thinking_budget=0),
    chat.ChatRequest("m", [], output=chat.OutputFormat("json"), tool_choice=chat.ToolChoice("required")),
]


@pytest.mark.parametrize("request_", ROUND_TRIP_REQUESTS)
def test_a_written_request_reads_back(request_: chat.ChatRequest) -> None:
    original = copy.deepcopy(request_)
    body, _ = FORMAT.write_request(request_)
    assert request_.dropped == []
    assert FORMAT.read_request(json.loads(json.dumps(body))) == original


# ---------------------------------------------------------------------------------------------
# Answers

DOCS_RESPONSE = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I assist you today?",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
}

DOCS_TOOL_RESPONSE = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": '{\n"location": "Boston, MA"\n}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}


def test_reads_the_documented_answers() -> None:
    assert FORMAT.read_response(DOCS_RESPONSE) == chat.ChatResponse(
        id="chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        model="gpt-4.1-2025-04-14",
        choices=[chat.Choice(0, [chat.Text("Hello! How can I assist you today?")], "stop")],
        usage=Usage(input_tokens=19, output_tokens=10, total_tokens=29, cached_tokens=0, reasoning_tokens=0),
        created=1741569952,
    )
    assert FORMAT.read_response(DOCS_TOOL_RESPONSE) == chat.ChatResponse(
        id="chatcmpl-abc123",
        model="gpt-4o-mini",
        choices=[
            chat.Choice(
                0, [chat.ToolCall("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}')], "tool_calls"
            )
        ],
        usage=Usage(input_tokens=82, output_tokens=17, total_tokens=99),
        created=1699896916,
    )


def test_writes_the_documented_answer() -> None:
    request = chat.ChatRequest("gpt-4.1", [])
    body = FORMAT.write_response(FORMAT.read_response(DOCS_TOOL_RESPONSE), request)
    expected = copy.deepcopy(DOCS_TOOL_RESPONSE)
    expected["choices"][0]["message"]["refusal"] = None  # type: ignore[index]
    assert body == expected


def test_writes_an_answer_exactly() -> None:
    response = chat.ChatResponse(
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        model="claude-sonnet-4-5",
        choices=[
            chat.Choice(
                0, [chat.Thinking("Let me think", signature="s"), chat.Text("Hello"), chat.Text(" there")], "other"
            ),
            chat.Choice(1, [chat.ToolCall("toolu_1", "f", "{}")], None),
        ],
        usage=Usage(input_tokens=100, output_tokens=50, cached_tokens=80, cache_write_tokens=10, reasoning_tokens=20),
        created=1700000000,
    )
    assert FORMAT.write_response(response, chat.ChatRequest("alias", [])) == {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello there",
                    "refusal": None,
                    "reasoning_content": "Let me think",
                },
                "finish_reason": "stop",
                "logprobs": None,
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "stop",
                "logprobs": None,
            },
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 20},
        },
    }


def test_makes_up_what_an_answer_lacks() -> None:
    body = FORMAT.write_response(chat.ChatResponse(None, None, [chat.Choice(0, [])]), chat.ChatRequest("gpt-4o", []))
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len("chatcmpl-") + 24
    assert isinstance(body["created"], int) and body["created"] > 1_700_000_000
    assert body["model"] == "gpt-4o"
    assert "usage" not in body
    assert body["choices"][0]["message"]["content"] is None
    assert "tool_calls" not in body["choices"][0]["message"]
    partial = FORMAT.write_response(chat.ChatResponse("x", "m", [], Usage(input_tokens=3)), chat.ChatRequest("m", []))
    assert partial["usage"] == {"prompt_tokens": 3}


def test_an_answer_reads_back() -> None:
    response = chat.ChatResponse(
        id="chatcmpl-1",
        model="m",
        choices=[
            chat.Choice(0, [chat.Thinking("t"), chat.Text("a"), chat.ToolCall("c", "f", "{}")], "tool_calls"),
            chat.Choice(1, [chat.Text("b")], "length"),
            chat.Choice(2, [chat.Text("c")], "content_filter"),
        ],
        usage=Usage(input_tokens=10, output_tokens=20, cached_tokens=1, cache_write_tokens=2, reasoning_tokens=3),
        created=5,
    )
    read = FORMAT.read_response(FORMAT.write_response(response, chat.ChatRequest("m", [])))
    assert read == replace(response, usage=replace(response.usage, total_tokens=30))  # as written


def test_reads_odd_answers_leniently() -> None:
    body = {
        "id": 5,
        "choices": [
            "junk",
            {
                "message": {"content": "x", "reasoning": "r", "tool_calls": [{"function": {"name": "f"}}, 3]},
                "finish_reason": "stop",
            },
            {"index": 4, "message": None, "finish_reason": "weird"},
            {"index": 5, "message": {"content": [{"type": "text", "text": "p"}, {"type": "text", "text": "q"}, 7]}},
        ],
        "usage": {"prompt_tokens": "many", "completion_tokens": 2},
    }
    assert FORMAT.read_response(body) == chat.ChatResponse(
        id=None,
        model=None,
        choices=[
            chat.Choice(1, [chat.Thinking("r"), chat.Text("x"), chat.ToolCall("call_0", "f", "")], "tool_calls"),
            chat.Choice(4, [], "other"),
            chat.Choice(5, [chat.Text("pq")]),
        ],
        usage=Usage(output_tokens=2),
    )
    assert FORMAT.read_response({}) == chat.ChatResponse(None, None, [])


# ---------------------------------------------------------------------------------------------
# Streams


def sse(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n" for c in chunks)


HEAD = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini"}


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**HEAD, "system_fingerprint": "fp_44709d6fcb", "choices": [choice]}


DOCS_STREAM = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": "!"}),
    chunk({}, "stop"),
    {**HEAD, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    "[DONE]",
)

TOOL_STREAM = sse(
    chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    ]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
    chunk({}, "tool_calls"),
    "[DONE]",
)  # fmt: skip


def read_all(data: bytes, cuts: list[int] | None = None) -> list[chat.StreamEvent]:
    reader = FORMAT.stream_reader()
    events: list[chat.StreamEvent] = []
    start = 0
    for cut in sorted(cuts or []):
        events += reader.feed(data[start:cut])
        start = max(start, cut)
    events += reader.feed(data[start:])
    events += reader.end()
    assert reader.error is None
    return events


def test_reads_the_documented_stream() -> None:
    assert read_all(DOCS_STREAM) == [
        chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190),
        chat.TextDelta("Hello"),
        chat.TextDelta("!"),
        chat.Finished("stop"),
        chat.UsageReported(Usage(input_tokens=9, output_tokens=2, total_tokens=11)),
    ]


def test_reads_a_tool_call_stream() -> None:
    assert read_all(TOOL_STREAM) == [
        chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190),
        chat.ToolCallStarted(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"),
        chat.ToolCallDelta(0, '{"location":'),
        chat.ToolCallDelta(0, '"Paris"}'),
        chat.ToolCallStarted(1, "call_2", "get_time"),
        chat.ToolCallDelta(1, "{}"),
        chat.Finished("tool_calls"),
    ]


def test_reads_what_compatible_endpoints_stream() -> None:
    stream = sse(
        chunk({"reasoning_content": "think"}, index=1),
        # no index, the id repeated, then a call with a name only; "stop" ends a turn of calls
        chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"id": "c1", "function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "[]"}}]}),
        chunk({"tool_calls": [{"index": 7, "function": {"arguments": "lost"}}]}),
        chunk({"content": "x"}, "stop"),
        {**HEAD, "choices": [], "usage": None},
    )
    assert read_all(stream) == [
        chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190),
        chat.ThinkingDelta("think", choice=1),
        chat.ToolCallStarted(0, "c1", "f"),
        chat.ToolCallDelta(0, "{"),
        chat.ToolCallDelta(0, "}"),
        chat.ToolCallStarted(1, "call_0_1", "g"),
        chat.ToolCallDelta(1, "[]"),
        chat.TextDelta("x"),
        chat.Finished("tool_calls"),
    ]


def test_reads_a_last_event_without_its_blank_line() -> None:
    assert read_all(DOCS_STREAM[:-2].replace(b"data: [DONE]", b""))[-1] == chat.UsageReported(
        Usage(input_tokens=9, output_tokens=2, total_tokens=11)
    )
    assert read_all(sse(chunk({"content": "a"})).rstrip(b"\n")) == [
        chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190),
        chat.TextDelta("a"),
    ]


def test_reads_a_mid_stream_error() -> None:
    stream = sse(
        chunk({"content": "a"}),
        {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}},
    )
    assert read_all(stream)[-1] == chat.Failed(chat.ChatError(500, "server", "The server had an error"))
    stream = sse({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}})
    assert read_all(stream) == [chat.Failed(chat.ChatError(429, "rate_limit", "Resource exhausted"))]


def test_stops_reading_a_broken_stream_without_raising() -> None:
    reader = FORMAT.stream_reader()
    events = reader.feed(sse(chunk({"content": "a"}), "not json", chunk({"content": "b"})))
    assert events == [chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190), chat.TextDelta("a")]
    assert reader.error is not None
    assert reader.feed(sse(chunk({"content": "c"}))) == []
    assert reader.end() == []


def test_ignores_what_follows_done_and_comments() -> None:
    stream = b": keep-alive\n\n" + sse(chunk({"content": "a"}), "[DONE]", chunk({"content": "late"}))
    assert read_all(stream) == [chat.Started("chatcmpl-123", "gpt-4o-mini", 1694268190), chat.TextDelta("a")]


@CUTS
@given(
    st.sampled_from([DOCS_STREAM, TOOL_STREAM, DOCS_STREAM.replace(b"\n", b"\r\n")]),
    st.lists(st.integers(0, 2000), max_size=12),
)
def test_reads_the_same_events_however_the_stream_is_cut(stream: bytes, cuts: list[int]) -> None:
    assert read_all(stream, cuts) == read_all(stream)


def write_all(request: chat.ChatRequest, events: list[chat.StreamEvent]) -> bytes:
    writer = FORMAT.stream_writer(request)
    assert writer.content_type == "text/event-stream"
    return b"".join(writer.write(e) for e in events) + writer.end()


def chunks_of(stream: bytes) -> list[Any]:
    blocks = [b.removeprefix(b"data: ") for b in stream.split(b"\n\n") if b]
    return [b.decode() if b == b"[DONE]" else json.loads(b) for b in blocks]


EVENTS: list[chat.StreamEvent] = [
    chat.Started("msg_1", "claude-x", 1700000000),
    chat.ThinkingDelta("hmm"),
    chat.ThinkingDelta(signature="sig"),
    chat.TextDelta("Hel"),
    chat.TextDelta("lo", choice=1),
    chat.ToolCallStarted(0, "call_1", "f"),
    chat.ToolCallDelta(0, '{"a":1}'),
    chat.Finished("tool_calls"),
    chat.Finished("other", choice=1),
    chat.UsageReported(Usage(input_tokens=10, output_tokens=5)),
    chat.UsageReported(Usage(output_tokens=7, cached_tokens=2)),
]


def test_writes_a_stream_exactly() -> None:
    head = {"id": "chatcmpl-msg_1", "object": "chat.completion.chunk", "created": 1700000000, "model": "claude-x"}

    def out(delta: dict[str, Any], index: int = 0, finish: str | None = None) -> dict[str, Any]:
        return {
            **head,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    assert chunks_of(write_all(chat.ChatRequest("alias", [], stream=True, stream_usage=True), EVENTS)) == [
        out({"role": "assistant", "reasoning_content": "hmm"}),
        out({"content": "Hel"}),
        out({"role": "assistant", "content": "lo"}, 1),
        out(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        out({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
        out({}, 0, "tool_calls"),
        out({}, 1, "stop"),
        {
            **head,
            "choices": [],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 7,
                "total_tokens": 17,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
        },
        "[DONE]",
    ]


def test_writes_usage_only_when_the_caller_asked() -> None:
    written = chunks_of(
        write_all(
            chat.ChatRequest("gpt-4o", [], stream=True),
            [chat.TextDelta("a"), chat.UsageReported(Usage(input_tokens=1, output_tokens=1))],
        )
    )
    assert written[-1] == "[DONE]"
    assert len(written) == 2 and "usage" not in written[0]
    assert written[0]["model"] == "gpt-4o" and written[0]["id"].startswith("chatcmpl-")
    assert chunks_of(write_all(chat.ChatRequest("m", [], stream=True, stream_usage=True), [])) == ["[DONE]"]


def test_makes_up_the_head_once() -> None:
    written = chunks_of(
        write_all(
            chat.ChatRequest("gpt-4o", []), [chat.TextDelta("a"), chat.Started("late", "x", 1), chat.TextDelta("b")]
        )
    )
    assert written[0]["id"] == written[1]["id"] != "chatcmpl-late"
    assert written[0]["created"] == written[1]["created"]
    assert written[1]["model"] == "gpt-4o"


def test_writes_a_mid_stream_error_and_stops() -> None:
    writer = FORMAT.stream_writer(chat.ChatRequest("m", [], stream=True))
    writer.write(chat.Started("chatcmpl-1", "m", 1))
    assert writer.write(chat.Failed(chat.ChatError(529, "overloaded", "Overloaded"))) == (
        b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded"}}\n\n'
    )
    assert writer.write(chat.TextDelta("more")) == b""
    assert writer.end() == b""


def test_a_written_stream_reads_back() -> None:
    written = write_all(chat.ChatRequest("m", [], stream=True, stream_usage=True), EVENTS)
    assert read_all(written) == [
        chat.Started("chatcmpl-msg_1", "claude-x", 1700000000),
        chat.ThinkingDelta("hmm"),  # the signature cannot go
        chat.TextDelta("Hel"),
        chat.TextDelta("lo", choice=1),
        chat.ToolCallStarted(0, "call_1", "f"),
        chat.ToolCallDelta(0, '{"a":1}'),
        chat.Finished("tool_calls"),
        chat.Finished("stop", choice=1),  # "other" has no name in the format
        chat.UsageReported(
            Usage(input_tokens=10, output_tokens=7, total_tokens=17, cached_tokens=2)
        ),  # the reports, merged
    ]


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (
            400,
            {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None},
            "invalid_request",
        ),
        (
            400,
            {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"},
            "invalid_request",
        ),
        (
            401,
            {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"},
            "authentication",
        ),
        (
            403,
            {"message": "region", "type": "invalid_request_error", "code": "unsupported_country_region_territory"},
            "permission",
        ),
        (
            404,
            {"message": "The model `x` does not exist", "type": "invalid_request_error", "code": "model_not_found"},
            "not_found",
        ),
        (413, {"message": "big", "type": "invalid_request_error"}, "too_large"),
        (429, {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}, "rate_limit"),
        (429, {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}, "rate_limit"),
        (500, {"message": "The server had an error", "type": "server_error", "code": None}, "server"),
        (503, {"message": "overloaded", "type": "server_error", "code": None}, "overloaded"),
        (529, {"message": "overloaded", "type": "overloaded_error"}, "overloaded"),
        (504, {"message": "slow", "type": "timeout"}, "timeout"),
    ],
)
def test_reads_errors(status: int, error: dict[str, Any], kind: str) -> None:
    body = json.dumps({"error": error}).encode()
    assert FORMAT.read_error(status, {}, body) == chat.ChatError(status, kind, error["message"])  # type: ignore[arg-type]


def test_reads_errors_without_openai_shape() -> None:
    assert FORMAT.read_error(502, {}, b"<html>Bad gateway</html>") == chat.ChatError(
        502, "server", "the upstream answered HTTP 502"
    )
    assert FORMAT.read_error(429, {}, b'{"error": "slow down"}') == chat.ChatError(429, "rate_limit", "slow down")
    assert FORMAT.read_error(404, {}, b'{"detail": "x"}') == chat.ChatError(
        404, "not_found", "the upstream answered HTTP 404"
    )


@pytest.mark.parametrize(
    ("error", "type_", "code"),
    [
        (chat.ChatError(400, "invalid_request", "bad"), "invalid_request_error", None),
        (chat.ChatError(401, "authentication", "no key"), "authentication_error", "invalid_api_key"),
        (chat.ChatError(403, "permission", "no"), "permission_error", None),
        (chat.ChatError(404, "not_found", "no model"), "not_found_error", None),
        (chat.ChatError(413, "too_large", "big"), "invalid_request_error", None),
        (chat.ChatError(429, "rate_limit", "slow"), "requests", "rate_limit_exceeded"),
        (chat.ChatError(500, "server", "oops"), "server_error", None),
        (chat.ChatError(529, "overloaded", "busy"), "server_error", "overloaded"),
        (chat.ChatError(504, "timeout", "late"), "timeout", None),
    ],
)
def test_writes_errors(error: chat.ChatError, type_: str, code: str | None) -> None:
    status, headers, body = FORMAT.write_error(error)
    assert (status, headers) == (error.status, {"content-type": "application/json"})
    assert json.loads(body) == {"error": {"message": error.message, "type": type_, "param": None, "code": code}}
    assert FORMAT.read_error(status, headers, body) == error
