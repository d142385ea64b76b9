"""Bedrock's Converse format through the common chat model: AWS's documented examples read and
written exactly, botocore's own serialization read back, what this module writes parsed by
botocore's own client (responses, ConverseStream events, errors) as boto3 would, streams read the
same however they are cut, and every refusal naming its field."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats import chat
from tollgate.formats.bedrock_converse import (
    BEDROCK_CONVERSE,
    EVENT_STREAM,
    NAME,
    REQUEST_FIELDS,
    ConverseStreamReader,
    converse_usage,
)
from tollgate.formats.framing import event_frame
from tollgate.formats.usage import Usage

FMT = BEDROCK_CONVERSE
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 16).decode()

# ---------------------------------------------------------------------------------------------
# botocore's own client, answered in-process: what boto3 sends and how it reads the answer.


class _Raw:
    """An HTTP body botocore reads in small pieces, as from the network."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        for k in range(0, len(self._data), 5):
            yield self._data[k : k + 5]

    def read(self, *_: Any, **__: Any) -> bytes:
        return self._data

    def close(self) -> None:
        pass


@functools.cache
def _session() -> Any:
    """One botocore session: it loads the service's model once; each client gets its own copy of
    the session's event hooks, so what a client registers stays with it."""
    return botocore.session.get_session()


def _client(answer: tuple[int, dict[str, str], bytes] | None = None, sent: list[dict[str, Any]] | None = None) -> Any:
    client = _session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )

    def send(request: Any, **_: Any) -> AWSResponse:
        if sent is not None:
            sent.append(json.loads(request.body))
        status, headers, body = answer or (200, {"content-type": "application/json"}, b"{}")
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.register("before-send.bedrock-runtime.*", send)
    return client


def _as_parameters(value: Any) -> Any:
    """A body as boto3's parameters: blobs (image bytes, redacted reasoning) as bytes, not base64."""
    if isinstance(value, list):
        return [_as_parameters(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: base64.b64decode(v) if k in ("bytes", "redactedContent") and isinstance(v, str) else _as_parameters(v)
        for k, v in value.items()
    }


def _botocore_body(**params: Any) -> dict[str, Any]:
    """The body botocore serializes for a Converse call."""
    sent: list[dict[str, Any]] = []
    _client(sent=sent).converse(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0", **params)
    return sent[0]


# ---------------------------------------------------------------------------------------------
# Requests: AWS's documented examples


DOC_REQUEST = {
    "messages": [
        {"role": "user", "content": [{"text": "Write an article about impact of high inflation to GDP of a country"}]}
    ],
    "system": [{"text": "You are an economist with access to lots of data"}],
    "inferenceConfig": {"maxTokens": 1000, "temperature": 0.5},
}

TOP_SONG = {
    "toolSpec": {
        "name": "top_song",
        "description": "Get the most popular song played on a radio station.",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {
                    "sign": {
                        "type": "string",
                        "description": "The call sign for the radio station for which you want the most popular song. Example calls signs are WZPZ and WKRP.",
                    }
                },
                "required": ["sign"],
            }
        },
    }
}

TOOL_CONVERSATION = {
    "messages": [
        {"role": "user", "content": [{"text": "What is the most popular song on WZPZ?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "I'll look it up."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "name": "top_song",
                        "input": {"sign": "WZPZ"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "content": [{"json": {"song": "Elemental Hotel", "artist": "8 Storey Hike"}}],
                    }
                }
            ],
        },
    ],
    "toolConfig": {"tools": [TOP_SONG], "toolChoice": {"auto": {}}},
}


def test_reads_the_documented_request() -> None:
    request = FMT.read_request(DOC_REQUEST)
    assert request == chat.ChatRequest(
        model=None,
        messages=[
            chat.Message("user", [chat.Text("Write an article about impact of high inflation to GDP of a country")])
        ],
        system=[chat.Text("You are an economist with access to lots of data")],
        max_tokens=1000,
        temperature=0.5,
    )
    assert FMT.write_request(request) == (DOC_REQUEST, {})


def test_reads_the_documented_tool_conversation() -> None:
    request = FMT.read_request(TOOL_CONVERSATION)
    call = chat.ToolCall("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "top_song", '{"sign":"WZPZ"}')
    assert request.messages == [
        chat.Message("user", [chat.Text("What is the most popular song on WZPZ?")]),
        chat.Message("assistant", [chat.Text("I'll look it up."), call]),
        chat.Message(
            "user",
            [chat.ToolResult(call.id, None, [chat.Text('{"song":"Elemental Hotel","artist":"8 Storey Hike"}')])],
        ),
    ]
    assert request.tools == [
        chat.Tool(
            "top_song",
            "Get the most popular song played on a radio station.",
            TOP_SONG["toolSpec"]["inputSchema"]["json"],
        )  # type: ignore[index]
    ]
    assert request.tool_choice == chat.ToolChoice("auto")
    body, _ = FMT.write_request(request)
    # The JSON result comes back as its text: the common model holds text and images only.
    result = body["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": '{"song":"Elemental Hotel","artist":"8 Storey Hike"}'}]
    assert body["toolConfig"] == TOOL_CONVERSATION["toolConfig"]
    assert body["messages"][:2] == TOOL_CONVERSATION["messages"][:2]


def test_reads_what_botocore_sends() -> None:
    """botocore serializes blobs (image bytes, redacted reasoning) as base64 in the JSON body."""
    png = base64.b64decode(PNG)
    body = _botocore_body(
        messages=[
            {
                "role": "user",
                "content": [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": png}}}],
            },
            {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "A picture.", "signature": "c2ln"}}},
                    {"reasoningContent": {"redactedContent": b"\x01\x02"}},
                    {"toolUse": {"toolUseId": "t1", "name": "describe", "input": {"detail": "high"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "t1",
                            "content": [
                                {"text": "a square"},
                                {"image": {"format": "jpeg", "source": {"bytes": b"\xff\xd8\xff"}}},
                            ],
                            "status": "error",
                        }
                    },
                    {"cachePoint": {"type": "default"}},
                ],
            },
        ],
        system=[{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        inferenceConfig={"maxTokens": 2048, "temperature": 1, "topP": 0.9, "stopSequences": ["END"]},
        toolConfig={
            "tools": [{"toolSpec": {"name": "describe", "inputSchema": {"json": {"type": "object"}}}}],
            "toolChoice": {"any": {}},
        },
        additionalModelRequestFields={"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        requestMetadata={"team": "a"},
    )
    request = FMT.read_request(body)
    assert request.messages == [
        chat.Message("user", [chat.Text("What is this?"), chat.Image("image/png", PNG)]),
        chat.Message(
            "assistant",
            [
                chat.Thinking("A picture.", signature="c2ln", origin=NAME),
                chat.Thinking(redacted=base64.b64encode(b"\x01\x02").decode(), origin=NAME),
                chat.ToolCall("t1", "describe", '{"detail":"high"}'),
            ],
        ),
        chat.Message(
            "user",
            [
                chat.ToolResult(
                    "t1",
                    None,
                    [chat.Text("a square"), chat.Image("image/jpeg", base64.b64encode(b"\xff\xd8\xff").decode())],
                    True,
                )
            ],
        ),
    ]
    assert request.system == [chat.Text("Be brief.")]
    assert (request.max_tokens, request.temperature, request.top_p, request.stop) == (2048, 1, 0.9, ["END"])
    assert request.tool_choice == chat.ToolChoice("required")
    assert (request.top_k, request.thinking_budget, request.include_thoughts) == (40, 1024, True)
    assert request.dropped == ["requestMetadata", "cachePoint"]
    written, headers = FMT.write_request(request)
    assert headers == {}
    # All but the cache points, which the common model does not keep.
    body["messages"][2]["content"].pop()
    body["system"].pop()
    del body["requestMetadata"]
    assert written == body


def test_writes_a_request_exactly() -> None:
    request = chat.ChatRequest(
        model="gpt-4o",
        messages=[
            chat.Message("user", [chat.Text("Hi"), chat.Image("image/webp", "UklGRg==")]),
            chat.Message(
                "assistant", [chat.Thinking("unsigned"), chat.Text("")]
            ),  # nothing Bedrock can carry: left out
            chat.Message("user", [chat.Text("Again")]),
            chat.Message("assistant", [chat.Thinking("why", signature="s"), chat.ToolCall("c1", "f", "")]),
            chat.Message("user", [chat.ToolResult("c1", "f", [chat.Text("ok")])]),
        ],
        system=[chat.Text("sys")],
        tools=[chat.Tool("f", None, None, strict=True)],
        tool_choice=chat.ToolChoice("tool", "f"),
        max_tokens=4096,
        top_k=5,
        reasoning_effort="high",
        stop=["x"],
        seed=1,
        user="u",
        stream=True,
        output=chat.OutputFormat("json_schema", {"type": "object"}, name="answer"),
    )
    body, headers = FMT.write_request(request)
    assert headers == {}
    assert body == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Hi"},
                    {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
                    {"text": "Again"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "why", "signature": "s"}}},
                    {"toolUse": {"toolUseId": "c1", "name": "f", "input": {}}},
                ],
            },
            {"role": "user", "content": [{"toolResult": {"toolUseId": "c1", "content": [{"text": "ok"}]}}]},
        ],
        "system": [{"text": "sys"}],
        "inferenceConfig": {"maxTokens": 4096, "stopSequences": ["x"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "f",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                        "strict": True,
                    }
                }
            ],
            "toolChoice": {"tool": {"name": "f"}},
        },
        "additionalModelRequestFields": {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 4095}},
        "outputConfig": {
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": '{"type":"object"}', "name": "answer"}},
            }
        },
    }
    assert request.dropped == ["seed", "user", "thinking without a signature"]
    # What botocore itself validates and sends for these parameters is this body.
    assert _botocore_body(**_as_parameters(body)) == body


def test_round_trips_a_request() -> None:
    request = chat.ChatRequest(
        model=None,
        messages=[
            chat.Message("user", [chat.Text("a"), chat.Image("image/gif", "R0lGODlh")]),
            chat.Message(
                "assistant",
                [
                    chat.Thinking("t", signature="s", origin=NAME),
                    chat.Thinking(redacted="cmVk", origin=NAME),
                    chat.Text("b"),
                    chat.ToolCall("i", "n", '{"x":[1,2]}'),
                ],
            ),
            chat.Message("user", [chat.ToolResult("i", None, [chat.Text("r")], is_error=True), chat.Text("c")]),
        ],
        system=[chat.Text("s1"), chat.Text("s2")],
        tools=[chat.Tool("n", "d", {"type": "object", "properties": {"x": {"type": "array"}}})],
        tool_choice=chat.ToolChoice("required"),
        max_tokens=10,
        temperature=0.2,
        top_p=0.5,
        top_k=3,
        stop=["a", "b"],
        thinking_budget=2000,
        include_thoughts=True,
        output=chat.OutputFormat("json_schema", {"type": "object", "properties": {}}),
    )
    assert FMT.read_request(FMT.write_request(request)[0]) == request


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"topK": 7}, {"top_k": 7}),
        ({"inferenceConfig": {"topK": 7}}, {"top_k": 7}),
        ({"thinking": {"type": "disabled"}}, {"thinking_budget": 0}),
        (
            {"reasoning_config": {"type": "enabled", "budget_tokens": 3000}},
            {"thinking_budget": 3000, "include_thoughts": True},
        ),
        (
            {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}},
            {"reasoning_effort": "low", "include_thoughts": True},
        ),
        ({"reasoning_effort": "medium"}, {"reasoning_effort": "medium"}),
    ],
)
def test_reads_model_parameters(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    request = FMT.read_request({"messages": [], "additionalModelRequestFields": fields})
    assert {k: getattr(request, k) for k in expected} == expected


def test_drops_what_does_not_change_the_answer() -> None:
    request = FMT.read_request(
        {
            "messages": [{"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "default"}}]}],
            "toolConfig": {"tools": [TOP_SONG, {"cachePoint": {"type": "default"}}]},
            "additionalModelResponseFieldPaths": ["/stop_sequence"],
            "performanceConfig": {"latency": "optimized"},
            "serviceTier": {"type": "flex"},
        }
    )
    assert request.dropped == ["additionalModelResponseFieldPaths", "performanceConfig", "serviceTier", "cachePoint"]
    assert request.messages == [chat.Message("user", [chat.Text("x")])]
    assert [t.name for t in request.tools] == ["top_song"]
    request = chat.ChatRequest(None, [], parallel_tool_calls=False, presence_penalty=0.1, frequency_penalty=0.2)
    FMT.write_request(request)
    assert request.dropped == ["presence_penalty", "frequency_penalty", "parallel_tool_calls"]


def test_tool_choice_none_leaves_the_tools_out() -> None:
    request = chat.ChatRequest(
        None, [chat.Message("user", [chat.Text("x")])], tools=[chat.Tool("f")], tool_choice=chat.ToolChoice("none")
    )
    assert "toolConfig" not in FMT.write_request(request)[0]


def test_thinking_effort_is_a_budget_claude_takes() -> None:
    body, _ = FMT.write_request(chat.ChatRequest(None, [], reasoning_effort="minimal"))
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    body, _ = FMT.write_request(chat.ChatRequest(None, [], thinking_budget=0))
    assert "additionalModelRequestFields" not in body


def test_a_sniffed_image_format() -> None:
    body, _ = FMT.write_request(chat.ChatRequest(None, [chat.Message("user", [chat.Image(None, JPEG)])]))
    assert body["messages"][0]["content"][0]["image"]["format"] == "jpeg"


# ---------------------------------------------------------------------------------------------
# Refusals


USER = {"role": "user", "content": [{"text": "x"}]}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"messages": [], "modelId": "m"}, "modelId cannot be translated"),
        ({"messages": [], "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}}, "guardrailConfig"),
        ({"messages": [], "promptVariables": {"a": {"text": "b"}}}, "promptVariables"),
        ({"messages": [{"role": "user", "content": [{"document": {}}]}]}, "messages[0].content[0].document"),
        ({"messages": [{"role": "user", "content": [{"video": {}}]}]}, "messages[0].content[0].video"),
        ({"messages": [{"role": "user", "content": [{"guardContent": {}}]}]}, "messages[0].content[0].guardContent"),
        (
            {"messages": [{"role": "assistant", "content": [{"citationsContent": {}}]}]},
            "messages[0].content[0].citationsContent",
        ),
        ({"messages": [{"role": "user", "content": [{"audio": {}}]}]}, "messages[0].content[0].audio"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/k"}}}}],
                    }
                ]
            },
            "messages[0].content[0].image.source.s3Location",
        ),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "tiff", "source": {"bytes": "AA=="}}}]}]},
            "messages[0].content[0].image.format",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"document": {}}]}}]}
                ]
            },
            "messages[0].content[0].toolResult.content[0].document",
        ),
        (
            {"messages": [{"role": "user", "content": [{"toolUse": {"toolUseId": "t", "name": "n", "input": {}}}]}]},
            "toolUse",
        ),
        ({"messages": [{"role": "system", "content": []}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"text": 1}]}]}, "messages[0].content[0].text must be a string"),
        ({"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]}, "messages[0].content[0]"),
        ({"messages": [USER], "system": [{"guardContent": {"text": {"text": "x"}}}]}, "system[0].guardContent"),
        ({"messages": [USER], "inferenceConfig": {"maxTokens": "5"}}, "inferenceConfig.maxTokens"),
        ({"messages": [USER], "inferenceConfig": {"topK": 5}}, "inferenceConfig.topK"),
        (
            {"messages": [USER], "toolConfig": {"tools": [{"systemTool": {"name": "nova_grounding"}}]}},
            "toolConfig.tools[0].systemTool",
        ),
        (
            {"messages": [USER], "toolConfig": {"tools": [TOP_SONG], "toolChoice": {"none": {}}}},
            "toolConfig.toolChoice.none",
        ),
        (
            {"messages": [USER], "additionalModelRequestFields": {"anthropic_beta": ["x"]}},
            "additionalModelRequestFields.anthropic_beta",
        ),
        (
            {"messages": [USER], "additionalModelRequestFields": {"thinking": {"type": "adaptive"}}},
            "additionalModelRequestFields.thinking.type",
        ),
        ({"messages": [USER], "outputConfig": {"effort": "high"}}, "outputConfig.effort"),
        ({"messages": "hi"}, "messages must be an array"),
    ],
)
def test_refuses_what_it_cannot_read(body: dict[str, Any], named: str) -> None:
    with pytest.raises(chat.Untranslatable, match=named.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        FMT.read_request(body)


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (
            chat.ChatRequest(None, [chat.Message("user", [chat.Image("image/png", url="https://x/y.png")])]),
            "Bedrock takes images as bytes",
        ),
        (chat.ChatRequest(None, [chat.Message("user", [chat.Image("image/bmp", "Qk0=")])]), "image/bmp"),
        (chat.ChatRequest(None, [], n=2), "n cannot"),
        (chat.ChatRequest(None, [], logprobs=True), "logprobs"),
        (chat.ChatRequest(None, [], output=chat.OutputFormat("json")), "response format 'json'"),
        (
            chat.ChatRequest(
                None,
                [
                    chat.Message("assistant", [chat.ToolCall("c", "f", "{}")]),
                    chat.Message("user", [chat.ToolResult("c", "f", [chat.Text("r")])]),
                ],
                tools=[chat.Tool("f")],
                tool_choice=chat.ToolChoice("none"),
            ),
            "tool_choice 'none'",
        ),
        (
            chat.ChatRequest(None, [chat.Message("assistant", [chat.ToolCall("c", "f", "{not json")])]),
            r"messages\[0\]\.parts\[0\]",
        ),
    ],
)
def test_refuses_what_it_cannot_write(request_: chat.ChatRequest, named: str) -> None:
    with pytest.raises(chat.Untranslatable, match=named):
        FMT.write_request(request_)


def test_the_field_table_names_each_treatment() -> None:
    assert set(REQUEST_FIELDS.values()) == {"translated", "dropped", "refused"}


# ---------------------------------------------------------------------------------------------
# Responses


DOC_RESPONSE = {
    "output": {
        "message": {"role": "assistant", "content": [{"text": "High inflation can have a significant impact."}]}
    },
    "stopReason": "end_turn",
    "usage": {"inputTokens": 30, "outputTokens": 628, "totalTokens": 658},
    "metrics": {"latencyMs": 1275},
}


def test_reads_the_documented_response() -> None:
    response = FMT.read_response(DOC_RESPONSE)
    assert response == chat.ChatResponse(
        id=None,
        model=None,
        choices=[chat.Choice(0, [chat.Text("High inflation can have a significant impact.")], "stop")],
        usage=Usage(input_tokens=30, output_tokens=628),
    )
    assert FMT.write_response(response, chat.ChatRequest(None, [])) == {**DOC_RESPONSE, "metrics": {"latencyMs": 0}}


def test_reads_a_tool_use_answer_with_cache_and_reasoning() -> None:
    body = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "sig"}}},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {
            "inputTokens": 11,
            "outputTokens": 80,
            "totalTokens": 2047,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 1956,
        },
        "metrics": {"latencyMs": 900},
    }
    response = FMT.read_response(body)
    assert response.choices == [
        chat.Choice(
            0,
            [
                chat.Thinking("Look it up.", "sig", origin=NAME),
                chat.ToolCall("tooluse_1", "top_song", '{"sign":"WZPZ"}'),
            ],
            "tool_calls",
        )
    ]
    assert response.usage == Usage(input_tokens=1967, output_tokens=80, cached_tokens=0, cache_write_tokens=1956)
    assert response.usage.counted_total == 2047
    assert FMT.write_response(response, chat.ChatRequest(None, [])) == {**body, "metrics": {"latencyMs": 0}}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "other"),
        (None, None),
    ],
)
def test_reads_stop_reasons(stop: str | None, finish: str | None) -> None:
    assert FMT.read_response({"stopReason": stop}).choices[0].finish == finish


@pytest.mark.parametrize(
    ("finish", "sequence", "stop"),
    [
        ("stop", None, "end_turn"),
        ("stop", "END", "stop_sequence"),
        ("tool_calls", None, "tool_use"),
        ("length", None, "max_tokens"),
        ("content_filter", None, "content_filtered"),
        ("other", None, "end_turn"),
    ],
)
def test_writes_stop_reasons(finish: Any, sequence: str | None, stop: str) -> None:
    response = chat.ChatResponse(None, None, [chat.Choice(0, [chat.Text("x")], finish, sequence)])
    assert FMT.write_response(response, chat.ChatRequest(None, []))["stopReason"] == stop


def test_reads_leniently() -> None:
    response = FMT.read_response(
        {"output": {"message": {"content": [{"text": 3}, "x", {"video": {}}, {"text": "ok"}]}}, "usage": "?"}
    )
    assert response.choices == [chat.Choice(0, [chat.Text("ok")], None)]
    assert response.usage == Usage()
    assert FMT.read_response({}).choices == [chat.Choice(0, [], None)]


@given(
    fresh=st.integers(0, 10**6),
    read=st.none() | st.integers(0, 10**6),
    written=st.none() | st.integers(0, 10**6),
    output=st.integers(0, 10**6),
)
@settings(max_examples=examples(60), deadline=None)
def test_usage_agrees_with_what_the_audit_reads(fresh: int, read: int | None, written: int | None, output: int) -> None:
    usage = Usage(
        input_tokens=fresh + (read or 0) + (written or 0),
        output_tokens=output,
        cached_tokens=read,
        cache_write_tokens=written,
    )
    body = FMT.write_response(
        chat.ChatResponse(None, None, [chat.Choice(0, [chat.Text("x")], "stop")], usage), chat.ChatRequest(None, [])
    )
    assert FMT.read_response(body).usage == usage
    audited = converse_usage(body["usage"], body["stopReason"])
    assert (audited.input_tokens, audited.output_tokens, audited.total_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.counted_total,
    )
    assert (audited.cached_tokens, audited.cache_write_tokens) == (read, written)


def test_botocore_reads_a_written_response() -> None:
    response = chat.ChatResponse(
        "chatcmpl-1",
        "gpt-4o",
        [
            chat.Choice(
                0,
                [
                    chat.Thinking(redacted=base64.b64encode(b"opaque").decode()),
                    chat.Text("Hi"),
                    chat.ToolCall("c", "f", '{"a":1}'),
                ],
                "tool_calls",
            )
        ],
        Usage(input_tokens=12, output_tokens=3, cached_tokens=2),
    )
    body = json.dumps(FMT.write_response(response, chat.ChatRequest(None, []))).encode()
    parsed = _client((200, {"content-type": "application/json"}, body)).converse(modelId="m", messages=[])
    assert parsed["output"]["message"]["content"] == [
        {"reasoningContent": {"redactedContent": b"opaque"}},
        {"text": "Hi"},
        {"toolUse": {"toolUseId": "c", "name": "f", "input": {"a": 1}}},
    ]
    assert parsed["stopReason"] == "tool_use"
    assert parsed["usage"] == {"inputTokens": 10, "outputTokens": 3, "totalTokens": 15, "cacheReadInputTokens": 2}


# ---------------------------------------------------------------------------------------------
# Streams


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, json.dumps(payload).encode())


def _exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return event_frame(headers, json.dumps({"message": message}).encode())


# A ConverseStream as Bedrock sends it for Claude with thinking and a tool call.
BEDROCK_STREAM = b"".join(
    (
        _event("messageStart", {"role": "assistant"}),
        _event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user wants "}}}
        ),
        _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "a song."}}}),
        _event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqoBCkgIARAB"}}}
        ),
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Let me "}}),
        _event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "check."}}),
        _event("contentBlockStop", {"contentBlockIndex": 1}),
        _event(
            "contentBlockStart",
            {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "top_song"}}},
        ),
        _event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"sign": '}}}),
        _event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '"WZPZ"}'}}}),
        _event("contentBlockStop", {"contentBlockIndex": 2}),
        _event("messageStop", {"stopReason": "tool_use"}),
        _event(
            "metadata",
            {
                "usage": {"inputTokens": 20, "outputTokens": 45, "totalTokens": 75, "cacheReadInputTokens": 10},
                "metrics": {"latencyMs": 1021},
            },
        ),
    )
)

BEDROCK_EVENTS: list[chat.StreamEvent] = [
    chat.Started(),
    chat.ThinkingDelta("The user wants "),
    chat.ThinkingDelta("a song."),
    chat.ThinkingDelta(signature="EqoBCkgIARAB", origin=NAME),
    chat.TextDelta("Let me "),
    chat.TextDelta("check."),
    chat.ToolCallStarted(0, "tooluse_abc", "top_song"),
    chat.ToolCallDelta(0, '{"sign": '),
    chat.ToolCallDelta(0, '"WZPZ"}'),
    chat.Finished("tool_calls"),
    chat.UsageReported(Usage(input_tokens=30, output_tokens=45, cached_tokens=10)),
]


def _read(data: bytes, cuts: list[int] | None = None) -> tuple[list[chat.StreamEvent], str | None]:
    reader = FMT.stream_reader()
    events: list[chat.StreamEvent] = []
    start = 0
    for cut in sorted(set(cuts or [])):
        events += reader.feed(data[start:cut])
        start = cut
    events += reader.feed(data[start:])
    return events + reader.end(), reader.error


def test_reads_a_stream() -> None:
    assert _read(BEDROCK_STREAM) == (BEDROCK_EVENTS, None)


@given(st.lists(st.integers(0, len(BEDROCK_STREAM)), max_size=30))
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reads_a_stream_however_it_is_cut(cuts: list[int]) -> None:
    assert _read(BEDROCK_STREAM, cuts) == (BEDROCK_EVENTS, None)


def test_a_stream_exception_is_a_failure() -> None:
    data = _event("messageStart", {"role": "assistant"}) + _exception("throttlingException", "Too many requests")
    assert _read(data)[0] == [chat.Started(), chat.Failed(chat.ChatError(429, "rate_limit", "Too many requests"))]
    for kind, status, error_kind in [
        ("validationException", 400, "invalid_request"),
        ("modelStreamErrorException", 424, "server"),
        ("internalServerException", 500, "server"),
        ("serviceUnavailableException", 503, "overloaded"),
        ("modelTimeoutException", 408, "timeout"),
    ]:
        assert _read(_exception(kind, "m"))[0] == [chat.Failed(chat.ChatError(status, error_kind, "m"))]  # type: ignore[arg-type]


def test_a_broken_stream_sets_an_error() -> None:
    reader = ConverseStreamReader()
    frame = bytearray(_event("messageStart", {"role": "assistant"}))
    frame[-1] ^= 0xFF  # the message CRC
    assert reader.feed(bytes(frame)) == []
    assert reader.error is not None
    assert reader.feed(BEDROCK_STREAM) == []


def _written(events: list[chat.StreamEvent]) -> bytes:
    writer = FMT.stream_writer(chat.ChatRequest(None, [], stream=True))
    assert writer.content_type == EVENT_STREAM
    return b"".join(writer.write(e) for e in events) + writer.end()


def _frames(data: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(dict(m.headers), json.loads(m.payload)) for m in buffer]


def test_writes_the_stream_bedrock_sends() -> None:
    """The same frames, headers and payloads, but for the latency the writer does not know."""
    expected = _frames(BEDROCK_STREAM)
    expected[-1][1]["metrics"] = {"latencyMs": 0}
    assert _frames(_written(BEDROCK_EVENTS)) == expected


def test_a_written_stream_reads_back() -> None:
    assert _read(_written(BEDROCK_EVENTS)) == (BEDROCK_EVENTS, None)


def test_botocore_reads_a_written_stream() -> None:
    events: list[chat.StreamEvent] = [
        chat.Started("chatcmpl-1", "gpt-4o"),
        chat.TextDelta("Hel"),
        chat.TextDelta("lo"),
        chat.ThinkingDelta(redacted=base64.b64encode(b"opaque").decode()),
        chat.ToolCallStarted(0, "call_1", "f"),
        chat.ToolCallDelta(0, '{"a":1}'),
        chat.TextDelta("ignored", choice=1),
        chat.Finished("tool_calls"),
        chat.UsageReported(Usage(input_tokens=5, output_tokens=7)),
    ]
    data = _written(events)
    answer = (200, {"content-type": EVENT_STREAM}, data)
    parsed = list(_client(answer).converse_stream(modelId="m", messages=[])["stream"])
    assert parsed == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hel"}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "lo"}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": b"opaque"}}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"contentBlockStart": {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "call_1", "name": "f"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a":1}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 2}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}, "metrics": {"latencyMs": 0}}},
    ]


def test_usage_before_the_finish_waits_for_the_end() -> None:
    writer = FMT.stream_writer(chat.ChatRequest(None, []))
    assert writer.write(chat.UsageReported(Usage(input_tokens=4))) == b""
    assert writer.write(chat.UsageReported(Usage(output_tokens=2))) == b""
    finish = writer.write(chat.Finished("stop"))
    assert [h[":event-type"] for h, _ in _frames(finish)] == ["messageStart", "messageStop"]
    assert _frames(writer.end()) == [
        (
            {":event-type": "metadata", ":content-type": "application/json", ":message-type": "event"},
            {"usage": {"inputTokens": 4, "outputTokens": 2, "totalTokens": 6}, "metrics": {"latencyMs": 0}},
        )
    ]


def test_usage_after_the_finish_goes_at_once() -> None:
    writer = FMT.stream_writer(chat.ChatRequest(None, []))
    writer.write(chat.TextDelta("x"))
    writer.write(chat.Finished("length"))
    assert [p for _, p in _frames(writer.write(chat.UsageReported(Usage(input_tokens=3, output_tokens=4))))] == [
        {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {"latencyMs": 0}}
    ]
    assert writer.write(chat.UsageReported(Usage(input_tokens=3, output_tokens=5))) == b""
    assert writer.end() == b""


def test_a_failure_is_an_exception_botocore_raises() -> None:
    writer = FMT.stream_writer(chat.ChatRequest(None, []))
    data = writer.write(chat.TextDelta("partial")) + writer.write(
        chat.Failed(chat.ChatError(429, "rate_limit", "Slow down"))
    )
    assert writer.write(chat.TextDelta("more")) == b"" and writer.end() == b""
    stream = _client((200, {"content-type": EVENT_STREAM}, data)).converse_stream(modelId="m", messages=[])["stream"]
    with pytest.raises(EventStreamError) as raised:
        list(stream)
    assert raised.value.response["Error"] == {"Code": "throttlingException", "Message": "Slow down"}
    assert _read(data)[0][-1] == chat.Failed(chat.ChatError(429, "rate_limit", "Slow down"))


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [
        (400, "ValidationException", "invalid_request"),
        (403, "UnrecognizedClientException", "authentication"),
        (403, "AccessDeniedException", "permission"),
        (404, "ResourceNotFoundException", "not_found"),
        (408, "ModelTimeoutException", "timeout"),
        (424, "ModelErrorException", "server"),
        (429, "ThrottlingException", "rate_limit"),
        (400, "ServiceQuotaExceededException", "rate_limit"),
        (429, "ModelNotReadyException", "overloaded"),
        (500, "InternalServerException", "server"),
        (503, "ServiceUnavailableException", "overloaded"),
    ],
)
def test_reads_errors(status: int, error_type: str, kind: str) -> None:
    body = json.dumps({"message": "what went wrong"}).encode()
    expected = chat.ChatError(status, kind, "what went wrong")  # type: ignore[arg-type]
    assert (
        FMT.read_error(status, {"X-Amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/"}, body)
        == expected
    )
    assert (
        FMT.read_error(
            status, {}, json.dumps({"__type": f"com.amazon.coral#{error_type}", "message": "what went wrong"}).encode()
        )
        == expected
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request"),
        (401, "authentication"),
        (404, "not_found"),
        (429, "rate_limit"),
        (500, "server"),
        (503, "overloaded"),
        (529, "overloaded"),
    ],
)
def test_reads_errors_by_status(status: int, kind: str) -> None:
    assert FMT.read_error(status, {}, b"<html>") == chat.ChatError(status, kind, f"Bedrock answered HTTP {status}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        (chat.ChatError(400, "invalid_request", "bad"), "ValidationException"),
        (chat.ChatError(401, "authentication", "who"), "UnrecognizedClientException"),
        (chat.ChatError(403, "permission", "no"), "AccessDeniedException"),
        (chat.ChatError(404, "not_found", "none"), "ResourceNotFoundException"),
        (chat.ChatError(413, "too_large", "big"), "ValidationException"),
        (chat.ChatError(429, "rate_limit", "slow"), "ThrottlingException"),
        (chat.ChatError(424, "server", "model"), "ModelErrorException"),
        (chat.ChatError(500, "server", "oops"), "InternalServerException"),
        (chat.ChatError(503, "overloaded", "busy"), "ServiceUnavailableException"),
        (chat.ChatError(529, "overloaded", "busy"), "ServiceUnavailableException"),
        (chat.ChatError(504, "timeout", "late"), "ModelTimeoutException"),
    ],
)
def test_writes_errors_botocore_reads(error: chat.ChatError, error_type: str) -> None:
    status, headers, body = FMT.write_error(error)
    assert (status, headers, json.loads(body)) == (
        error.status,
        {"content-type": "application/json", "x-amzn-errortype": error_type},
        {"message": error.message},
    )
    with pytest.raises(ClientError) as raised:
        _client((status, headers, body)).converse(modelId="m", messages=[])
    assert raised.value.response["Error"] == {"Code": error_type, "Message": error.message}
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == error.status
    assert FMT.read_error(status, headers, body).message == error.message


# ---------------------------------------------------------------------------------------------
# Signatures: each valid only for the provider that made it


def test_an_answer_seals_another_providers_reasoning_and_botocore_sends_it_back() -> None:
    theirs = chat.Thinking("plan", signature="EqQB", origin="anthropic-messages")
    redacted = chat.Thinking(redacted="EnCr", origin="anthropic-messages")
    own = chat.Thinking("mine", signature="own", origin=NAME)
    call = chat.ToolCall("c1", "f", '{"a":1}')
    response = chat.ChatResponse(None, None, [chat.Choice(0, [theirs, redacted, own, call], "tool_calls")])
    body = FMT.write_response(response, chat.ChatRequest(None, []))
    assert body["output"]["message"]["content"][:3] == [
        {"reasoningContent": {"reasoningText": {"text": "plan", "signature": chat.seal("EqQB", "anthropic-messages")}}},
        {"reasoningContent": {"redactedContent": chat.seal("EnCr", "anthropic-messages")}},
        {"reasoningContent": {"reasoningText": {"text": "mine", "signature": "own"}}},
    ]
    # boto3 holds redactedContent as bytes and encodes them again: the seal comes back the same.
    parsed = _client((200, {"content-type": "application/json"}, json.dumps(body).encode())).converse(
        modelId="m", messages=[]
    )
    result = {"toolResult": {"toolUseId": "c1", "content": [{"text": "ok"}]}}
    sent = _botocore_body(messages=[parsed["output"]["message"], {"role": "user", "content": [result]}])
    assert FMT.read_request(sent).messages[0].parts == [theirs, redacted, own, call]


def test_a_stream_seals_another_providers_reasoning() -> None:
    events: list[chat.StreamEvent] = [
        chat.ThinkingDelta("plan"),
        chat.ThinkingDelta(signature="g", origin="gemini-generate"),
        chat.ThinkingDelta(redacted="EnCr", origin="anthropic-messages"),
        chat.ThinkingDelta(signature="own", origin=NAME),
    ]
    deltas = [payload["delta"] for _, payload in _frames(_written(events)) if "delta" in payload]
    assert deltas == [
        {"reasoningContent": {"text": "plan"}},
        {"reasoningContent": {"signature": chat.seal("g", "gemini-generate")}},
        {"reasoningContent": {"redactedContent": chat.seal("EnCr", "anthropic-messages")}},
        {"reasoningContent": {"signature": "own"}},
    ]
