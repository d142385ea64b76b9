"""The Gemini generateContent format: calls, answers, streams (SSE and JSON array) and errors read
into the common chat model and written out of it, against the API reference's own examples."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats import chat
from tollgate.formats.gemini_generate import (
    FIELDS,
    GEMINI_GENERATE,
    NAME,
    SKIP_SIGNATURE,
    array_stream_writer,
    json_schema_of_openapi,
)
from tollgate.formats.usage import Usage

G = GEMINI_GENERATE

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "The city name, e.g. San Francisco"}},
    "required": ["location"],
}


# ---------------------------------------------------------------------------------------------
# Requests: golden reads


def test_reads_the_text_generation_example() -> None:
    # ai.google.dev/api/generate-content: system instruction and configuration (snake_case as in the curl example)
    body = {
        "system_instruction": {"parts": [{"text": "You are a cat. Your name is Neko."}]},
        "contents": [{"parts": [{"text": "Hello there"}]}],
        "generationConfig": {
            "stopSequences": ["Title"],
            "temperature": 1.0,
            "maxOutputTokens": 800,
            "topP": 0.8,
            "topK": 10,
        },
        "safetySettings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_ONLY_HIGH"}],
    }
    request = G.read_request(body)
    assert request == chat.ChatRequest(
        model=None,
        messages=[chat.Message("user", [chat.Text("Hello there")])],
        system=[chat.Text("You are a cat. Your name is Neko.")],
        max_tokens=800,
        temperature=1.0,
        top_p=0.8,
        top_k=10,
        stop=["Title"],
        dropped=["safetySettings"],
    )


def test_reads_the_function_calling_example() -> None:
    # ai.google.dev/gemini-api/docs/function-calling, the REST example's second turn
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "What's the temperature in London?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_current_temperature", "args": {"location": "London"}},
                        "thoughtSignature": "c2lnbmF0dXJl",
                    }
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_current_temperature", "response": {"temperature": 18}}}],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_current_temperature",
                        "description": "Gets the current temperature for a given location.",
                        "parameters": WEATHER_PARAMETERS,
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_current_temperature"]}},
    }
    request = G.read_request(body)
    assert request.messages == [
        chat.Message("user", [chat.Text("What's the temperature in London?")]),
        chat.Message(
            "assistant",
            [
                chat.Thinking("", signature="c2lnbmF0dXJl", origin=NAME),
                chat.ToolCall("call_0", "get_current_temperature", '{"location":"London"}'),
            ],
        ),
        chat.Message("user", [chat.ToolResult("call_0", "get_current_temperature", [chat.Text('{"temperature":18}')])]),
    ]
    assert request.tools == [
        chat.Tool("get_current_temperature", "Gets the current temperature for a given location.", WEATHER_PARAMETERS)
    ]
    assert request.tool_choice == chat.ToolChoice("tool", "get_current_temperature")
    assert request.model is None and request.dropped == []


def test_reads_structured_output_thinking_and_images() -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"inline_data": {"mime_type": "image/jpeg", "data": "/9j/4AAQ"}},
                    {
                        "fileData": {
                            "mimeType": "image/png",
                            "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                        }
                    },
                    {"text": "Describe both."},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Looking at the pictures", "thought": True},
                    {"text": "A cat and a dog.", "thoughtSignature": "AAAA"},
                ],
            },
        ],
        "systemInstruction": "Be brief.",
        "generationConfig": {
            "candidateCount": 2,
            "seed": 7,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
            "responseLogprobs": True,
            "logprobs": 3,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {"names": {"type": "ARRAY", "items": {"type": "STRING"}, "max_items": 2}},
                "nullable": True,
            },
            "responseModalities": ["TEXT"],
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True, "thinking_level": "low"},
            "mediaResolution": "MEDIA_RESOLUTION_LOW",
        },
        "labels": {"team": "a"},
    }
    request = G.read_request(body)
    assert request.messages == [
        chat.Message(
            "user",
            [
                chat.Image("image/jpeg", data="/9j/4AAQ"),
                chat.Image("image/png", url="https://generativelanguage.googleapis.com/v1beta/files/abc"),
                chat.Text("Describe both."),
            ],
        ),
        chat.Message(
            "assistant",
            [chat.Thinking("Looking at the pictures", signature="AAAA", origin=NAME), chat.Text("A cat and a dog.")],
        ),
    ]
    assert request.system == [chat.Text("Be brief.")]
    assert (request.n, request.seed, request.presence_penalty, request.frequency_penalty) == (2, 7, 0.5, -0.5)
    assert (request.logprobs, request.top_logprobs) == (True, 3)
    assert request.output == chat.OutputFormat(
        "json_schema",
        schema={
            "type": ["object", "null"],
            "properties": {"names": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
        },
    )
    assert (request.thinking_budget, request.include_thoughts, request.reasoning_effort) == (1024, True, "low")
    assert request.dropped == ["labels", "generationConfig.mediaResolution"]


@pytest.mark.parametrize(
    ("config", "choice"),
    [
        ({"mode": "AUTO"}, chat.ToolChoice("auto")),
        ({"mode": "VALIDATED"}, chat.ToolChoice("auto")),
        ({"mode": "NONE"}, chat.ToolChoice("none")),
        ({"mode": "ANY"}, chat.ToolChoice("required")),
        ({"mode": "ANY", "allowed_function_names": ["a"]}, chat.ToolChoice("tool", "a")),
        ({"mode": "ANY", "allowedFunctionNames": ["a", "b"]}, chat.ToolChoice("required")),  # every declared one
        ({}, None),
    ],
)
def test_reads_function_calling_modes(config: dict[str, Any], choice: chat.ToolChoice | None) -> None:
    tools = [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]
    body = {"contents": [], "tools": tools, "toolConfig": {"functionCallingConfig": config}}
    assert G.read_request(body).tool_choice == choice


def test_function_responses_match_calls_by_id_or_by_name() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "f", "args": {"n": 1}}},
                    {"functionCall": {"name": "f", "args": {"n": 2}}},
                    {"functionCall": {"name": "g", "args": {}, "id": "given"}},
                ],
            },
            {
                "role": "function",
                "parts": [
                    {"functionResponse": {"name": "g", "id": "given", "response": {"error": "nope"}}},
                    {"functionResponse": {"name": "f", "response": {"output": 2}}},
                    {"functionResponse": {"name": "f", "response": {"output": 1}}},
                ],
            },
        ]
    }
    results = G.read_request(body).messages[2].parts
    assert results == [
        chat.ToolResult("given", "g", [chat.Text('{"error":"nope"}')], is_error=True),
        chat.ToolResult("call_1", "f", [chat.Text('{"output":2}')]),
        chat.ToolResult("call_0", "f", [chat.Text('{"output":1}')]),
    ]


def test_openapi_parameters_become_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"type": {"type": "STRING", "enum": ["OBJECT"]}},
        "any_of": [{"type": "INTEGER"}],
    }
    assert json_schema_of_openapi(schema, "x") == {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": ["OBJECT"]}},
        "anyOf": [{"type": "integer"}],
    }
    body = {"contents": [], "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]}
    assert G.read_request(body).tools[0].parameters == json_schema_of_openapi(schema, "x")


# ---------------------------------------------------------------------------------------------
# Requests: refusals


def _with_config(**config: Any) -> dict[str, Any]:
    return {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": config}


REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"contents": [], "cachedContent": "cachedContents/x"}, "cachedContent"),
    ({"contents": [], "continuationToken": "t"}, "continuationToken"),
    ({"contents": [], "model": "models/gemini-2.5-flash"}, "model"),
    (
        {"contents": [{"parts": [{"executableCode": {"language": "PYTHON", "code": "1"}}]}]},
        "contents[0].parts[0].executableCode",
    ),
    (
        {"contents": [{"role": "model", "parts": [{"codeExecutionResult": {"outcome": "OUTCOME_OK"}}]}]},
        "codeExecutionResult",
    ),
    ({"contents": [{"parts": [{"videoMetadata": {}, "text": "x"}]}]}, "contents[0].parts[0].videoMetadata"),
    (
        {"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}]}]},
        "contents[0].parts[0].inlineData.mimeType 'application/pdf'",
    ),
    (
        {"contents": [{"parts": [{"fileData": {"mimeType": "video/mp4", "fileUri": "https://x"}}]}]},
        "contents[0].parts[0].fileData.mimeType 'video/mp4'",
    ),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role 'system'"),
    (
        {"contents": [{"parts": [{"text": "x", "inlineData": {"mimeType": "image/png", "data": ""}}]}]},
        "contents[0].parts[0] holds both text and inlineData",
    ),
    ({"contents": [{"parts": [{}]}]}, "contents[0].parts[0] holds no content"),
    (
        {"contents": [{"parts": [{"functionCall": {"name": "f"}}]}]},
        "contents[0].parts[0].functionCall in a user content",
    ),
    (
        {"contents": [{"role": "model", "parts": [{"functionResponse": {"name": "f"}}]}]},
        "contents[0].parts[0].functionResponse in a model content",
    ),
    (
        {"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
        "contents[0].parts[0].functionResponse answers no earlier functionCall named 'f'",
    ),
    ({"contents": [{"parts": [{"text": "x", "thought": True}]}]}, "contents[0].parts[0]: a thought"),
    ({"contents": [{"parts": [{"text": 3}]}]}, "contents[0].parts[0].text is not a string"),
    ({"contents": [{"parts": [{"text": "a"}], "parts_extra": 1}]}, "contents[0].parts_extra"),
    ({"contents": [], "tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
    ({"contents": [], "tools": [{"google_search_retrieval": {}}]}, "tools[0].google_search_retrieval"),
    ({"contents": [], "tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
    ({"contents": [], "tools": [{"urlContext": {}}]}, "tools[0].urlContext"),
    ({"contents": [], "tools": [{"retrieval": {}}]}, "tools[0].retrieval"),
    (
        {
            "contents": [],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}],
        },
        "tools[0].functionDeclarations[0] sets both parameters and parametersJsonSchema",
    ),
    (
        {
            "contents": [],
            "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}, {"name": "h"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}},
        },
        "allowedFunctionNames with several names",
    ),
    (
        {
            "contents": [],
            "tools": [{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
        },
        "allowedFunctionNames with mode AUTO",
    ),
    (_with_config(responseMimeType="text/x.enum"), "generationConfig.responseMimeType 'text/x.enum'"),
    (_with_config(responseSchema={"type": "STRING"}), "generationConfig.responseSchema without responseMimeType"),
    (
        _with_config(responseMimeType="application/json", responseSchema={}, responseJsonSchema={}),
        "both responseSchema and responseJsonSchema",
    ),
    (_with_config(responseModalities=["TEXT", "IMAGE"]), "generationConfig.responseModalities"),
    (_with_config(routingConfig={}), "generationConfig.routingConfig"),
    (_with_config(temperature="hot"), "generationConfig.temperature is not a number"),
    (_with_config(maxOutputTokens=1.5), "generationConfig.maxOutputTokens is not an integer"),
    (
        _with_config(thinkingConfig={"thinkingLevel": "extreme"}),
        "generationConfig.thinkingConfig.thinkingLevel 'extreme'",
    ),
    (_with_config(maxOutputTokens=5, max_output_tokens=5), "sets both 'maxOutputTokens' and its snake_case spelling"),
    ({"contents": [], "system_instruction": "a", "systemInstruction": "b"}, "sets both 'systemInstruction'"),
]


@pytest.mark.parametrize(("body", "message"), REFUSALS)
def test_refuses_what_it_cannot_read_exactly(body: dict[str, Any], message: str) -> None:
    with pytest.raises(chat.Untranslatable) as raised:
        G.read_request(body)
    assert message in str(raised.value)


def test_the_field_table_lists_each_disposition() -> None:
    assert FIELDS["safetySettings"] == "dropped"
    assert FIELDS["cachedContent"] == "refused"
    assert FIELDS["tools[].googleSearch"] == "refused"
    assert FIELDS["generationConfig.thinkingConfig.thinkingLevel"] == "translated"


# ---------------------------------------------------------------------------------------------
# Requests: writing


def _full_request() -> chat.ChatRequest:
    return chat.ChatRequest(
        model="gemini-2.5-flash",
        messages=[
            chat.Message("user", [chat.Text("Weather in Paris? See"), chat.Image("image/png", data="iVBORw0KGgo=")]),
            chat.Message(
                "assistant",
                [
                    chat.Thinking("Let me check", signature="sig1"),
                    chat.ToolCall("call_9", "get_weather", '{"city": "Paris"}'),
                ],
            ),
            chat.Message("user", [chat.ToolResult("call_9", None, [chat.Text("18 degrees")])]),
        ],
        system=[chat.Text("Be brief."), chat.Text("Use metric.")],
        tools=[chat.Tool("get_weather", "The weather", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice=chat.ToolChoice("auto"),
        parallel_tool_calls=False,
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop=["END"],
        n=1,
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logprobs=True,
        top_logprobs=2,
        output=chat.OutputFormat("json_schema", schema={"type": "object"}, name="answer", strict=True),
        reasoning_effort="medium",
        include_thoughts=True,
        user="u-1",
        stream=True,
    )


def test_writes_a_full_request() -> None:
    request = _full_request()
    body, headers = G.write_request(request)
    assert headers == {}
    assert body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather in Paris? See"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"id": "call_9", "name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "sig1",
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "call_9", "name": "get_weather", "response": {"result": "18 degrees"}}}
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "The weather",
                        "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "topK": 40,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "candidateCount": 1,
            "seed": 3,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "responseLogprobs": True,
            "logprobs": 2,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True},
        },
    }
    assert request.dropped == ["thinking in history", "parallel_tool_calls", "user"]


def test_writes_tool_choices_results_and_signatures() -> None:
    request = chat.ChatRequest(
        model="gemini-3-pro-preview",
        messages=[
            chat.Message("user", [chat.Text("go")]),
            chat.Message(
                "assistant",
                [chat.ToolCall("a", "f", ""), chat.ToolCall("b", "f", "{}"), chat.Thinking("", signature="s")],
            ),
            chat.Message(
                "user",
                [
                    chat.ToolResult("a", "f", [chat.Text('{"ok": true}')]),
                    chat.ToolResult("b", None, [chat.Text("boom")], is_error=True),
                ],
            ),
        ],
        tool_choice=chat.ToolChoice("tool", "f"),
    )
    body, _ = G.write_request(request)
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"id": "a", "name": "f", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
        {"functionCall": {"id": "b", "name": "f", "args": {}}},
        {"text": "", "thoughtSignature": "s"},
    ]
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"id": "a", "name": "f", "response": {"ok": True}}},
        {"functionResponse": {"id": "b", "name": "f", "response": {"error": "boom"}}},
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    assert "model" not in body
    # Gemini 2 models neither need nor check signatures.
    request.model = "gemini-2.5-flash"
    assert "thoughtSignature" not in G.write_request(request)[0]["contents"][1]["parts"][0]


def test_writes_images_gemini_can_take() -> None:
    def parts(image: chat.Image) -> Any:
        return G.write_request(chat.ChatRequest(None, [chat.Message("user", [image])]))[0]["contents"][0]["parts"]

    assert parts(chat.Image(data="/9j/4AAQSkZJRg==")) == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}
    ]
    assert parts(chat.Image(url="data:image/webp;base64,UklGR")) == [
        {"inlineData": {"mimeType": "image/webp", "data": "UklGR"}}
    ]
    uri = "https://generativelanguage.googleapis.com/v1beta/files/f1"
    assert parts(chat.Image("image/png", url=uri)) == [{"fileData": {"mimeType": "image/png", "fileUri": uri}}]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            chat.Message("user", [chat.Image(url="https://example.com/cat.png")]),
            "messages[0].parts[0]: an image by URL",
        ),
        (chat.Message("user", [chat.Image(data="AAAA")]), "messages[0].parts[0]: the image's media type is unknown"),
        (
            chat.Message("assistant", [chat.ToolCall("x", "f", "[1]")]),
            "messages[0].parts[0]: the tool call's arguments are not a JSON object",
        ),
        (
            chat.Message("user", [chat.ToolResult("nope", None, [chat.Text("x")])]),
            "messages[0].parts[0]: the tool result answers no known tool call",
        ),
        (
            chat.Message("user", [chat.ToolResult("x", "f", [chat.Image("image/png", data="AA")])]),
            "messages[0].parts[0].content[0]: an image in a tool result",
        ),
    ],
)
def test_write_refuses_what_gemini_cannot_carry(message: chat.Message, expected: str) -> None:
    with pytest.raises(chat.Untranslatable) as raised:
        G.write_request(chat.ChatRequest(None, [message]))
    assert expected in str(raised.value)


def test_request_round_trip() -> None:
    request = _full_request()
    request.messages[1].parts[0] = chat.Thinking("", signature="sig1", origin=NAME)  # thought text is not sent back
    request.reasoning_effort = None
    request.thinking_budget = 2048
    request.output = chat.OutputFormat("json_schema", schema={"type": "object"})
    request.parallel_tool_calls = request.user = None
    request.stream = False
    request.n = 2
    body, _ = G.write_request(request)
    back = G.read_request(json.loads(json.dumps(body)))
    back.model = request.model
    request.messages[1].parts[1] = chat.ToolCall("call_9", "get_weather", '{"city":"Paris"}')
    request.messages[2].parts[0] = chat.ToolResult("call_9", "get_weather", [chat.Text('{"result":"18 degrees"}')])
    assert back == request


# ---------------------------------------------------------------------------------------------
# Answers


def test_reads_the_documented_answer() -> None:
    body = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hello! How can I help?"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": 12,
            "totalTokenCount": 45,
            "thoughtsTokenCount": 25,
            "cachedContentTokenCount": 4,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
    }
    assert G.read_response(body) == chat.ChatResponse(
        id="mAitaLmkHPPlz7IPvtfUqQ4",
        model="gemini-2.5-flash",
        choices=[chat.Choice(0, [chat.Text("Hello! How can I help?")], "stop")],
        usage=Usage(input_tokens=8, output_tokens=37, cached_tokens=4, reasoning_tokens=25),
    )


def test_reads_function_calls_thoughts_and_finish_reasons() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "I should check.", "thought": True},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig"},
                        {"functionCall": {"name": "get_time", "args": {}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
            },
            {"content": {"parts": [{"text": "Cut"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
            {"finishReason": "RECITATION", "index": 2},
            {"finishReason": "MALFORMED_FUNCTION_CALL", "index": 3},
        ],
        "usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 5, "totalTokenCount": 15},
        "responseId": "r1",
    }
    response = G.read_response(body)
    assert response.choices == [
        chat.Choice(
            0,
            [
                chat.Thinking("I should check.", signature="sig", origin=NAME),
                chat.ToolCall("call_r1_0_0", "get_weather", '{"city":"Paris"}'),
                chat.ToolCall("call_r1_0_1", "get_time", "{}"),
            ],
            "tool_calls",
        ),
        chat.Choice(1, [chat.Text("Cut")], "length"),
        chat.Choice(2, [], "content_filter"),
        chat.Choice(3, [], "other"),
    ]
    assert response.usage == Usage(input_tokens=15, output_tokens=0)


def test_a_blocked_prompt_reads_as_a_filtered_choice() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    response = G.read_response(body)
    assert response.choices == [chat.Choice(0, [], "content_filter")]
    assert response.usage.input_tokens == 7


def test_reads_odd_answers_without_crashing() -> None:
    for body in ({}, {"candidates": "x"}, {"candidates": [None, {"content": {"parts": [1, {"functionCall": 3}]}}]}):
        G.read_response(body)
    assert G.read_response({}).usage == Usage()


def test_writes_an_answer() -> None:
    response = chat.ChatResponse(
        id="r9",
        model=None,
        choices=[
            chat.Choice(
                0,
                [chat.Thinking("plan", signature="c2ln"), chat.Text("Hi"), chat.ToolCall("c1", "f", '{"a":1}')],
                "tool_calls",
            )
        ],
        usage=Usage(input_tokens=10, output_tokens=30, cached_tokens=2, reasoning_tokens=20),
    )
    assert G.write_response(response, chat.ChatRequest("gemini-2.5-pro", [])) == {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "plan", "thought": True, "thoughtSignature": "c2ln"},
                        {"text": "Hi"},
                        {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 10,
            "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 2,
            "totalTokenCount": 40,
        },
        "modelVersion": "gemini-2.5-pro",
        "responseId": "r9",
    }


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls", "content_filter", "other", None])
def test_response_round_trip(finish: Any) -> None:
    parts: list[Any] = [chat.Thinking("plan", signature="s", origin=NAME), chat.Text("Hi")]
    if finish == "tool_calls":
        parts.append(chat.ToolCall("c1", "f", '{"a":[1,2]}'))
    response = chat.ChatResponse(
        id="r1",
        model="gemini-2.5-flash",
        choices=[chat.Choice(0, parts, finish), chat.Choice(1, [chat.Text("Other")], "stop" if finish else None)],
        usage=Usage(input_tokens=5, output_tokens=9, reasoning_tokens=4),
    )
    assert G.read_response(G.write_response(response, chat.ChatRequest(None, []))) == response


# ---------------------------------------------------------------------------------------------
# Streams

GOLDEN_SSE_CHUNKS: list[dict[str, Any]] = [
    {
        "candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "abc",
    },
    {
        "candidates": [
            {"content": {"parts": [{"text": " sky is blue."}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "abc",
    },
]
GOLDEN_EVENTS: list[chat.StreamEvent] = [
    chat.Started("abc", "gemini-2.0-flash"),
    chat.TextDelta("The"),
    chat.UsageReported(Usage(input_tokens=9, output_tokens=1)),
    chat.TextDelta(" sky is blue."),
    chat.Finished("stop"),
    chat.UsageReported(Usage(input_tokens=9, output_tokens=5)),
]


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


def _array(chunks: list[dict[str, Any]]) -> bytes:
    # As Gemini writes it: pretty-printed elements, ",\r\n" between them.
    return b"[" + b",\r\n".join(json.dumps(c, indent=2).encode() for c in chunks) + b"]"


def _read_all(data: bytes, cuts: list[int] | None = None) -> list[chat.StreamEvent]:
    reader = G.stream_reader()
    events: list[chat.StreamEvent] = []
    start = 0
    for cut in [*sorted(set(cuts or [])), len(data)]:
        events += reader.feed(data[start:cut])
        start = cut
    events += reader.end()
    assert reader.error is None
    return events


@pytest.mark.parametrize("frame", [_sse, _array])
def test_reads_the_documented_stream(frame: Any) -> None:
    assert _read_all(frame(GOLDEN_SSE_CHUNKS)) == GOLDEN_EVENTS


def test_reads_a_stream_of_function_calls_and_thoughts() -> None:
    chunks = [
        {
            "candidates": [{"content": {"parts": [{"text": "Hmm", "thought": True}], "role": "model"}, "index": 0}],
            "responseId": "r",
        },
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "s"},
                            {"functionCall": {"name": "g", "args": {}, "id": "own"}},
                        ],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 4,
                "thoughtsTokenCount": 2,
                "totalTokenCount": 9,
            },
        },
    ]
    assert _read_all(_sse(chunks)) == [
        chat.Started("r", None),
        chat.ThinkingDelta("Hmm"),
        chat.ThinkingDelta("", signature="s", origin=NAME),
        chat.ToolCallStarted(0, "call_r_0_0", "f"),
        chat.ToolCallDelta(0, '{"x":1}'),
        chat.ToolCallStarted(1, "own", "g"),
        chat.ToolCallDelta(1, "{}"),
        chat.Finished("tool_calls"),
        chat.UsageReported(Usage(input_tokens=3, output_tokens=6, reasoning_tokens=2)),
    ]


def test_reads_errors_and_garbage_in_streams() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    assert _read_all(_sse([GOLDEN_SSE_CHUNKS[0], error]))[-1] == chat.Failed(
        chat.ChatError(503, "overloaded", "The model is overloaded.")
    )
    reader = G.stream_reader()
    assert reader.feed(b"data: {not json}\n\n") == [] and reader.error is not None
    assert reader.feed(_sse(GOLDEN_SSE_CHUNKS)) == []
    reader = G.stream_reader()
    reader.feed(b"[{}, 3]")
    assert reader.error is not None
    # A last event with no blank line after it still counts.
    assert _read_all(_sse(GOLDEN_SSE_CHUNKS).rstrip(b"\r\n")) == GOLDEN_EVENTS


@settings(max_examples=examples(150), deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=900), max_size=12), array=st.booleans())
def test_stream_reading_does_not_depend_on_cuts(cuts: list[int], array: bool) -> None:
    chunks = [*GOLDEN_SSE_CHUNKS]
    chunks[0] = {**chunks[0], "candidates": [{"content": {"parts": [{"text": 'é{["\\'}]}, "index": 0}]}
    data = (_array if array else _sse)(chunks)
    assert _read_all(data, cuts) == _read_all(data)


STREAM_EVENTS: list[chat.StreamEvent] = [
    chat.Started("resp1", "gemini-2.5-flash"),
    chat.ThinkingDelta("hmm"),
    chat.ThinkingDelta("", signature="c2ln", origin=NAME),
    chat.TextDelta("Hello"),
    chat.TextDelta(" world", choice=1),
    chat.ToolCallStarted(0, "call_a", "get_weather"),
    chat.ToolCallDelta(0, '{"city":'),
    chat.ToolCallDelta(0, '"Paris"}'),
    chat.ToolCallStarted(1, "call_b", "get_time"),
    chat.ToolCallDelta(1, ""),
    chat.Finished("tool_calls"),
    chat.Finished("length", choice=1),
    chat.UsageReported(Usage(input_tokens=10, output_tokens=20, cached_tokens=2, reasoning_tokens=5)),
]


def _write_all(events: list[chat.StreamEvent], array: bool = False) -> bytes:
    request = chat.ChatRequest("gemini-2.5-flash", [])
    writer = array_stream_writer(request) if array else G.stream_writer(request)
    assert writer.content_type == ("application/json" if array else "text/event-stream")
    return b"".join(writer.write(e) for e in events) + writer.end()


def test_writes_a_stream() -> None:
    written = _write_all(STREAM_EVENTS)
    chunks = [json.loads(block.removeprefix(b"data: ")) for block in written.split(b"\r\n\r\n") if block]
    meta = {"modelVersion": "gemini-2.5-flash", "responseId": "resp1"}

    def one(parts: list[dict[str, Any]], index: int = 0) -> dict[str, Any]:
        return {"candidates": [{"content": {"parts": parts, "role": "model"}, "index": index}], **meta}

    assert chunks == [
        one([{"text": "hmm", "thought": True}]),
        one([{"text": "", "thought": True, "thoughtSignature": "c2ln"}]),
        one([{"text": "Hello"}]),
        one([{"text": " world"}], 1),
        one([{"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Paris"}}}]),
        one([{"functionCall": {"id": "call_b", "name": "get_time", "args": {}}}]),
        {
            "candidates": [
                {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0},
                {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
            ],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 15,
                "thoughtsTokenCount": 5,
                "cachedContentTokenCount": 2,
                "totalTokenCount": 30,
            },
            **meta,
        },
    ]
    # The same chunks as a JSON array.
    assert json.loads(_write_all(STREAM_EVENTS, array=True)) == chunks


@pytest.mark.parametrize("array", [False, True])
def test_stream_round_trip(array: bool) -> None:
    back = _read_all(_write_all(STREAM_EVENTS, array))
    # The events written, but for whole calls coming back as one delta each.
    assert back == [
        *STREAM_EVENTS[:6],
        chat.ToolCallDelta(0, '{"city":"Paris"}'),
        STREAM_EVENTS[8],
        chat.ToolCallDelta(1, "{}"),
        *STREAM_EVENTS[10:],
    ]


def test_stream_writer_holds_what_it_must_and_never_raises() -> None:
    writer = G.stream_writer(chat.ChatRequest("m", []))
    assert writer.write(chat.ToolCallStarted(0, "c", "f")) == b""
    assert writer.write(chat.ToolCallDelta(0, "{broken")) == b""
    out = writer.write(chat.Finished("tool_calls"))
    assert b'"args":{}' in out and writer.notes  # written whole, with {} for arguments that were no object
    assert writer.write(chat.Finished("stop", choice=1)) == b""  # waits for the usage
    tail = writer.end()
    assert b'"finishReason":"STOP"' in tail and b"usageMetadata" not in tail
    assert writer.end() == b""
    failing = array_stream_writer(chat.ChatRequest("m", []))
    out = failing.write(chat.Failed(chat.ChatError(429, "rate_limit", "slow"))) + failing.end()
    assert json.loads(out) == [{"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}}]
    assert array_stream_writer(chat.ChatRequest("m", [])).end() == b"[]"


def test_usage_after_the_finish_chunk_goes_out_in_a_chunk_of_its_own() -> None:
    writer = G.stream_writer(chat.ChatRequest("m", []))
    writer.write(chat.Finished("stop"))
    first = writer.write(chat.UsageReported(Usage(input_tokens=5)))
    second = writer.write(chat.UsageReported(Usage(output_tokens=3)))
    assert b'"finishReason":"STOP"' in first and b'"promptTokenCount":5' in first
    assert json.loads(second.removeprefix(b"data: "))["usageMetadata"] == {
        "promptTokenCount": 5,
        "candidatesTokenCount": 3,
        "totalTokenCount": 8,
    }


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "INVALID_ARGUMENT", "invalid_request"),
        (400, "FAILED_PRECONDITION", "invalid_request"),
        (401, "UNAUTHENTICATED", "authentication"),
        (403, "PERMISSION_DENIED", "permission"),
        (404, "NOT_FOUND", "not_found"),
        (413, "INVALID_ARGUMENT", "too_large"),
        (429, "RESOURCE_EXHAUSTED", "rate_limit"),
        (500, "INTERNAL", "server"),
        (503, "UNAVAILABLE", "overloaded"),
        (504, "DEADLINE_EXCEEDED", "timeout"),
    ],
)
def test_reads_errors(status: int, code: str, kind: str) -> None:
    body = json.dumps({"error": {"code": status, "message": "m", "status": code}}).encode()
    assert G.read_error(status, {}, body) == chat.ChatError(status, kind, "m")  # type: ignore[arg-type]


def test_reads_odd_errors() -> None:
    bad_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    assert G.read_error(400, {}, json.dumps(bad_key).encode()).kind == "authentication"
    assert G.read_error(503, {}, json.dumps([{"error": {"code": 503, "message": "busy"}}]).encode()) == chat.ChatError(
        503, "overloaded", "busy"
    )
    assert G.read_error(529, {}, b"<html>") == chat.ChatError(529, "overloaded", "Gemini API error (HTTP 529)")
    assert G.read_error(502, {}, b"") == chat.ChatError(502, "server", "Gemini API error (HTTP 502)")


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("invalid_request", 400, "INVALID_ARGUMENT"),
        ("authentication", 401, "UNAUTHENTICATED"),
        ("permission", 403, "PERMISSION_DENIED"),
        ("not_found", 404, "NOT_FOUND"),
        ("too_large", 413, "INVALID_ARGUMENT"),
        ("rate_limit", 429, "RESOURCE_EXHAUSTED"),
        ("server", 500, "INTERNAL"),
        ("overloaded", 529, "UNAVAILABLE"),
        ("timeout", 504, "DEADLINE_EXCEEDED"),
    ],
)
def test_writes_errors(kind: Any, status: int, code: str) -> None:
    out_status, headers, body = G.write_error(chat.ChatError(status, kind, "Nope"))
    assert (out_status, headers) == (status, {"content-type": "application/json"})
    assert json.loads(body) == {"error": {"code": status, "message": "Nope", "status": code}}
    back = G.read_error(status, {}, body)
    assert back.status == status and back.message == "Nope"
    assert back.kind == kind


# ---------------------------------------------------------------------------------------------
# Signatures: each valid only for the provider that made it

# Sealed, this one holds "+" and "/", which google-genai sends back URL-safe.
CLAUDE_SIGNATURE = "c2ln>>>???"


def test_an_answer_and_a_stream_seal_another_providers_signatures() -> None:
    theirs = chat.Thinking("plan", signature=CLAUDE_SIGNATURE, origin="anthropic-messages")
    response = chat.ChatResponse(
        "r", None, [chat.Choice(0, [theirs, chat.Thinking("", "own", origin=NAME), chat.Text("Hi")], "stop")]
    )
    parts = G.write_response(response, chat.ChatRequest("gemini-3-pro-preview", []))["candidates"][0]["content"][
        "parts"
    ]
    assert parts[:2] == [
        {"text": "plan", "thought": True, "thoughtSignature": chat.seal(CLAUDE_SIGNATURE, "anthropic-messages")},
        {"text": "", "thought": True, "thoughtSignature": "own"},
    ]
    streamed = _write_all(
        [chat.ThinkingDelta("", "s", origin="bedrock-converse"), chat.ThinkingDelta("", "g", origin=NAME)]
    )
    chunks = [json.loads(block.removeprefix(b"data: ")) for block in streamed.split(b"\r\n\r\n") if block]
    assert [c["candidates"][0]["content"]["parts"] for c in chunks] == [
        [{"text": "", "thought": True, "thoughtSignature": chat.seal("s", "bedrock-converse")}],
        [{"text": "", "thought": True, "thoughtSignature": "g"}],
    ]


def test_reading_a_call_unseals_signatures_and_knows_geminis_own() -> None:
    sealed = chat.seal(CLAUDE_SIGNATURE, "anthropic-messages")
    url_safe = sealed.replace("+", "-").replace("/", "_")  # as google-genai sends bytes back
    assert url_safe != sealed
    body = {
        "contents": [
            {
                "role": "model",
                "parts": [
                    {"text": "plan", "thought": True, "thoughtSignature": url_safe},
                    {"text": "Hi", "thoughtSignature": "own"},
                    {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
                ],
            }
        ]
    }
    assert G.read_request(body).messages[0].parts == [
        chat.Thinking("plan", signature=CLAUDE_SIGNATURE, origin="anthropic-messages"),
        chat.Thinking("", signature="own", origin=NAME),
        chat.Text("Hi"),
        chat.ToolCall("call_0", "f", "{}"),
    ]


def test_a_streamed_turn_kept_as_a_content_per_chunk_reads_as_one() -> None:
    """As google-genai's chats keep it: the thought summary joins the signature that follows it."""
    chunks = [
        [{"text": "pl", "thought": True}],
        [{"text": "an", "thought": True}],
        [{"text": "", "thought": True, "thoughtSignature": "sig"}],
        [{"functionCall": {"name": "f", "args": {}}}],
    ]
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}, *({"role": "model", "parts": p} for p in chunks)]}
    assert G.read_request(body).messages == [
        chat.Message("user", [chat.Text("Hi")]),
        chat.Message(
            "assistant", [chat.Thinking("plan", signature="sig", origin=NAME), chat.ToolCall("call_0", "f", "{}")]
        ),
    ]


THEIRS = chat.Thinking("plan", signature=CLAUDE_SIGNATURE, origin="anthropic-messages")


def answers() -> list[str]:
    """What the upstream answers google-genai's chats: an answer, then a stream, each with THEIRS."""
    call = chat.ToolCall("call_9", "get_weather", '{"city": "Paris"}')
    answer = chat.ChatResponse("r", None, [chat.Choice(0, [THEIRS, call], "tool_calls")])
    stream = [
        chat.ThinkingDelta("pl"),
        chat.ThinkingDelta("an"),
        chat.ThinkingDelta(signature=CLAUDE_SIGNATURE, origin="anthropic-messages"),
        chat.ToolCallStarted(0, "call_9", "get_weather"),
        chat.ToolCallDelta(0, '{"city": "Paris"}'),
        chat.Finished("tool_calls"),
    ]
    request = chat.ChatRequest("gemini-3-pro-preview", [])
    return [json.dumps(G.write_response(answer, request)), _write_all(stream).decode()]
