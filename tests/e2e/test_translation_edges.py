"""Routes across wire formats at their edges, end to end through mitmdump with the official SDKs:
boto3's Converse (with a virtual key, and signed with virtual AWS credentials) routed to Anthropic
and to OpenAI; a Gemini stream asked for as one JSON array; calls Tollgate cannot translate refused
in the caller's shape before anything goes upstream; Tollgate's own answers (a policy's deny, an
unknown key) in the caller's shape; no secret leaking into what the target, the audit or the
console get; and a dropped parameter named on the console.

Two client runs (boto3; then the OpenAI, Anthropic and Gemini SDKs and a raw request) make every
call once, in order; each test reads its part of what they reported, what the fakes received and
the audit records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from tests.support import chat_fakes, streams
from tests.support.configs import every_provider
from tests.support.fake_upstream import Received

KEYS = {"openai": "sk-REAL-openai-edges-1", "gemini": "AIza-REAL-gemini-edges-2", "anthropic": "sk-ant-REAL-edges-3"}
AWS = ("AKIDREALEDGES0000000", "REAL-aws-SECRET-edges-4")  # Tollgate's own Bedrock credentials
VIRTUAL = "tg-VIRTUAL-edges-5"
SIGNER = ("TGEDGES0000000000000", "virtual-aws-SECRET-edges-6")  # a client's virtual AWS credentials
UNKNOWN = "tg-UNKNOWN-edges-7"
PROMPT = "PROMPT-edges-must-not-leak-8"
SYSTEM = "SYSTEM-edges-must-not-leak-9"
ANSWER = "".join(chat_fakes.ANSWER)  # "Paris is the capital."
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # boto3 → Anthropic
NOVA_PRO = "amazon.nova-pro-v1:0"  # boto3 → OpenAI
NOVA_LITE = "amazon.nova-lite-v1:0"  # Anthropic SDK → Bedrock Converse
FORBIDDEN = "gpt-forbidden"  # the policy denies it
DENIAL = "gpt-forbidden is closed to everyone"
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

# Converse's usage of the fakes' numbers (21 prompt tokens, 5 of them cache reads; 7 output):
# inputTokens without the cache reads, totalTokens with them. Anthropic reports its cache writes
# (0), OpenAI none.
CONVERSE_USAGE = {
    "anthropic": {"inputTokens": 16, "outputTokens": 7, "totalTokens": 28, "cacheReadInputTokens": 5,
                  "cacheWriteInputTokens": 0},
    "openai": {"inputTokens": 16, "outputTokens": 7, "totalTokens": 28, "cacheReadInputTokens": 5},
}  # fmt: skip


def config(urls: dict[str, str], policy: str) -> dict:
    return {
        "providers": every_provider(urls, KEYS, AWS),
        "clients": [
            {"name": "edger", "keys": [VIRTUAL]},
            {"name": "signer", "aws_credentials": [{"access_key_id": SIGNER[0], "secret_access_key": SIGNER[1]}]},
        ],
        "policy": {"rego": [policy]},
        "overrides": [
            {"match": {"provider": "bedrock", "model": "anthropic.claude*"}, "provider": "anthropic",
             "model": "claude-sonnet-4-5"},
            {"match": {"provider": "bedrock", "model": "amazon.nova*"}, "provider": "openai", "model": "gpt-4o"},
            {"match": {"provider": "openai", "model": "claude-*"}, "provider": "anthropic", "api": "native"},
            {"match": {"provider": "openai", "model": "gemini-*"}, "provider": "gemini", "api": "native"},
            {"match": {"provider": "anthropic", "model": "nova-*"}, "provider": "bedrock", "model": NOVA_LITE},
            {"match": {"provider": "gemini", "model": "gpt-*"}, "provider": "openai"},
        ],
    }  # fmt: skip


@dataclass
class Run:
    """One client run: what it reported per step, the audit records of its calls in order, and what
    each fake upstream received meanwhile."""

    result: dict[str, Any]
    audit: list[dict[str, Any]]
    received: dict[str, list[Received]]


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "deny.rego"
    policy.write_text(
        f'package tollgate\nimport rego.v1\ndeny contains "{DENIAL}" if input.requested_model == "{FORBIDDEN}"\n'
    )
    # mitmdump's most verbose flow detail: the console shows whatever the flows keep.
    gateway = start_gateway(lambda urls: config(urls, str(policy)), "--set", "flow_detail=4")
    for fake in gateway.fakes.values():
        fake.handler = chat_fakes.answer
    return gateway


def run(gw, code: str, calls: int, env: dict[str, str] | None = None) -> Run:
    for fake in gw.fakes.values():
        fake.received.clear()
    result = gw.run(PRELUDE + CONSTANTS + code + "report(**out)\n", env=env, timeout=60)
    try:
        audit = gw.new_audit(calls)
    except AssertionError:  # a step failed before it called: the tests show which
        audit = gw.audit()[-calls:]
    # In the order the calls came (a record is written at its call's end, which may follow the
    # next call's start by a hair).
    audit.sort(key=lambda record: record["ts"])
    return Run(result, audit, {name: list(fake.received) for name, fake in gw.fakes.items()})


PRELUDE = """
import json
out = {}
def failure(e):
    status = getattr(e, "status_code", None) or getattr(e, "code", None)
    code, headers, response = None, {}, getattr(e, "response", None)
    if isinstance(response, dict):  # botocore
        meta = response.get("ResponseMetadata", {})
        status, headers = meta.get("HTTPStatusCode"), meta.get("HTTPHeaders", {})
        code = response.get("Error", {}).get("Code")
    elif response is not None and hasattr(response, "headers"):
        headers = dict(response.headers)
    return {"error": type(e).__name__, "status": status, "code": code,
            "grpc_status": getattr(e, "status", None) if isinstance(getattr(e, "status", None), str) else None,
            "headers": {k.lower(): v for k, v in headers.items()}, "message": str(e)[:1000]}
def step(name, fn, *args):
    try:
        value = fn(*args)
    except Exception as e:
        value = failure(e)
    out[name] = json.loads(json.dumps(value, default=str))
"""
CONSTANTS = f"""
VIRTUAL, SIGNER, UNKNOWN, PROMPT, SYSTEM = {VIRTUAL!r}, {SIGNER!r}, {UNKNOWN!r}, {PROMPT!r}, {SYSTEM!r}
CLAUDE, NOVA_PRO, FORBIDDEN, TOOL_SCHEMA = {CLAUDE!r}, {NOVA_PRO!r}, {FORBIDDEN!r}, {TOOL_SCHEMA!r}
"""

# --- boto3 (Bedrock Converse) → Anthropic and OpenAI ----------------------------------------------

BOTO3 = """
import boto3
from botocore.config import Config
once = Config(retries={"total_max_attempts": 1})  # a throttled call is not retried
bearer = boto3.client("bedrock-runtime", region_name="us-east-1", config=once)  # AWS_BEARER_TOKEN_BEDROCK
# Signed with SigV4 although the environment holds a Bedrock API key: set in code, SigV4 wins.
signed = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id=SIGNER[0],
                      aws_secret_access_key=SIGNER[1], config=once.merge(Config(signature_version="v4")))
ask = [{"role": "user", "content": [{"text": PROMPT}]}]
system = [{"text": SYSTEM}]
tools = {"tools": [{"toolSpec": {"name": "get_weather", "description": "The weather in a city",
                                 "inputSchema": {"json": TOOL_SCHEMA}}}]}

def converse(client, model):
    r = client.converse(modelId=model, system=system, messages=ask, inferenceConfig={"maxTokens": 100})
    m = r["output"]["message"]
    return {"role": m["role"], "content": m["content"], "stop": r["stopReason"], "usage": r["usage"]}

def stream(client, model):
    r = client.converse_stream(modelId=model, system=system, messages=ask, inferenceConfig={"maxTokens": 100})
    kinds, text, stop, usage = [], "", None, None
    for i, event in enumerate(r["stream"]):
        assert i < 100, "a stream without end"
        (kind, body), = event.items()
        kinds.append(kind)
        if kind == "contentBlockDelta":
            text += body["delta"]["text"]
        elif kind == "messageStop":
            stop = body["stopReason"]
        elif kind == "metadata":
            usage = body["usage"]
    return {"kinds": kinds, "text": text, "stop": stop, "usage": usage}

def tool_round_trip(client, model):
    asked = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    first = client.converse(modelId=model, messages=asked, toolConfig=tools, inferenceConfig={"maxTokens": 100})
    message = first["output"]["message"]
    use = next(b["toolUse"] for b in message["content"] if "toolUse" in b)
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "18C and sunny"}]}}
    history = asked + [message, {"role": "user", "content": [result]}]
    second = client.converse(modelId=model, messages=history, toolConfig=tools, inferenceConfig={"maxTokens": 100})
    return {"use": [use["toolUseId"], use["name"], use["input"]], "stops": [first["stopReason"], second["stopReason"]],
            "answer": second["output"]["message"]["content"]}

def fail(client, model):
    client.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "please fail"}]}])

def stream_fail(client, model):
    r = client.converse_stream(modelId=model, messages=[{"role": "user", "content": [{"text": "please fail"}]}])
    return [event for _, event in zip(range(100), r["stream"])]

for target, model in (("anthropic", CLAUDE), ("openai", NOVA_PRO)):
    step(target + ".converse", converse, bearer, model)
    step(target + ".stream", stream, bearer, model)
    step(target + ".tool", tool_round_trip, bearer, model)
    step(target + ".fail", fail, bearer, model)
    step(target + ".stream_fail", stream_fail, bearer, model)
step("signed.converse", converse, signed, NOVA_PRO)
forged = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id=SIGNER[0],
                      aws_secret_access_key="not-" + SIGNER[1], config=once.merge(Config(signature_version="v4")))
step("signed.forged", converse, forged, NOVA_PRO)
"""
# The calls boto3 makes, in order (a tool round trip is two), and where each went (None: nowhere).
BOTO3_CALLS: dict[str, str | None] = {
    **{
        f"{target}.{call}": target
        for target in ("anthropic", "openai")
        for call in ("converse", "stream", "tool", "after_tool", "fail", "stream_fail")
    },
    "signed.converse": "openai",
    "signed.forged": None,
}
BOTO3_TARGET = {
    "anthropic": ("claude-sonnet-4-5", CLAUDE, "messages"),
    "openai": ("gpt-4o", NOVA_PRO, "chat.completions"),
}


@pytest.fixture(scope="module")
def boto3_run(gw) -> Run:
    return run(gw, BOTO3, len(BOTO3_CALLS), env={"AWS_BEARER_TOKEN_BEDROCK": VIRTUAL})


def boto3_call(boto3_run: Run, name: str) -> tuple[dict, Received]:
    """A boto3 call's audit record and what its target received."""
    names, targets = list(BOTO3_CALLS), list(BOTO3_CALLS.values())
    index = names.index(name)
    target = targets[index]
    assert target is not None
    return boto3_run.audit[index], boto3_run.received[target][targets[:index].count(target)]


@pytest.mark.parametrize("target", ["anthropic", "openai"])
def test_boto3_converse_is_answered_in_converses_shape_with_exact_usage(boto3_run, target):
    result = boto3_run.result[f"{target}.converse"]
    assert result == {
        "role": "assistant",
        "content": [{"text": ANSWER}],
        "stop": "end_turn",
        "usage": CONVERSE_USAGE[target],
    }, boto3_run.result
    model, requested, endpoint = BOTO3_TARGET[target]
    record, seen = boto3_call(boto3_run, f"{target}.converse")
    assert (record["client"], record["auth"], record["requested_provider"], record["provider"]) == (
        "edger",
        "virtual_key",
        "bedrock",
        target,
    )
    assert (record["requested_model"], record["model"], record["endpoint"], record["upstream_endpoint"]) == (
        requested,
        model,
        "converse",
        endpoint,
    )
    assert (record["status"], record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (
        200,
        21,
        7,
        5,
    )
    # The target got the call in its own format, at its own path, the system prompt where it goes
    if target == "anthropic":
        assert (seen.path, seen.headers["anthropic-version"]) == ("/v1/messages", "2023-06-01")
        assert seen.json() == {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        }
    else:
        assert seen.path == "/v1/chat/completions"
        assert seen.json() == {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
            "max_completion_tokens": 100,
        }


@pytest.mark.parametrize("target", ["anthropic", "openai"])
def test_boto3_converse_stream_is_an_event_stream_of_converses_events(boto3_run, target):
    result = boto3_run.result[f"{target}.stream"]
    assert result["text"] == ANSWER and result["stop"] == "end_turn", boto3_run.result
    assert result["usage"] == CONVERSE_USAGE[target]
    assert result["kinds"] == streams.CONVERSE_STREAM_KINDS
    record, seen = boto3_call(boto3_run, f"{target}.stream")
    assert (record["endpoint"], record["upstream_endpoint"], record["stream"], record["status"]) == (
        "converse-stream",
        BOTO3_TARGET[target][2],
        True,
        200,
    )
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (21, 7, 5)
    asked = seen.json()
    assert asked["stream"] is True
    if target == "openai":  # the usage that Converse's metadata event needs is asked for
        assert asked["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in asked


@pytest.mark.parametrize("target", ["anthropic", "openai"])
def test_boto3_tool_round_trip(boto3_run, target):
    result = boto3_run.result[f"{target}.tool"]
    assert result == {
        "use": [chat_fakes.TOOL_CALL_ID, "get_weather", {"city": "Paris"}],
        "stops": ["tool_use", "end_turn"],
        "answer": [{"text": ANSWER}],
    }, boto3_run.result
    first, asked = boto3_call(boto3_run, f"{target}.tool")
    second, answered = boto3_call(boto3_run, f"{target}.after_tool")
    assert (first["has_tools"], first["status"], second["status"]) == (True, 200, 200)
    asked_turns, tools = asked.json()["messages"], asked.json()["tools"]
    turns = answered.json()["messages"]
    assert answered.json()["tools"] == tools and turns[0] == asked_turns[0]
    if target == "anthropic":
        assert tools == [{"name": "get_weather", "description": "The weather in a city", "input_schema": TOOL_SCHEMA}]
        assert turns[1:] == [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": chat_fakes.TOOL_CALL_ID,
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": chat_fakes.TOOL_CALL_ID,
                        "content": [{"type": "text", "text": "18C and sunny"}],
                    }
                ],
            },
        ]
    else:
        assert tools == [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "The weather in a city", "parameters": TOOL_SCHEMA},
            }
        ]
        call = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        assert turns[1:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": chat_fakes.TOOL_CALL_ID, "type": "function", "function": call}],
            },
            {"role": "tool", "tool_call_id": chat_fakes.TOOL_CALL_ID, "content": "18C and sunny"},
        ]


@pytest.mark.parametrize("target", ["anthropic", "openai"])
def test_an_upstream_429_is_botocores_throttling_exception(boto3_run, target):
    result = boto3_run.result[f"{target}.fail"]
    assert (result["error"], result["status"], result["code"]) == ("ThrottlingException", 429, "ThrottlingException")
    assert result["headers"]["x-amzn-errortype"] == "ThrottlingException"
    upstream_message = {"anthropic": "Rate limited (fake)", "openai": "Rate limit reached (fake)"}[target]
    assert result["message"] == (
        "An error occurred (ThrottlingException) when calling the Converse operation (reached max retries: 0): "
        + upstream_message
    )
    record, _ = boto3_call(boto3_run, f"{target}.fail")
    assert (record["status"], record["provider"], record["decision"]) == (429, target, "allow")
    # A stream's 429 comes before its event stream: the same exception
    streamed = boto3_run.result[f"{target}.stream_fail"]
    assert (streamed["error"], streamed["status"], streamed["code"]) == (
        "ThrottlingException",
        429,
        "ThrottlingException",
    ), boto3_run.result
    assert streamed["message"] == result["message"].replace("Converse operation", "ConverseStream operation")
    record, seen = boto3_call(boto3_run, f"{target}.stream_fail")
    assert (record["status"], record["endpoint"], record["stream"]) == (429, "converse-stream", True)
    assert seen.json()["stream"] is True


def test_every_boto3_call_went_once_to_its_target_only(boto3_run):
    # botocore did not retry the throttled calls, and nothing went to Bedrock itself
    sent = {target: list(BOTO3_CALLS.values()).count(target) for target in ("openai", "gemini", "anthropic", "bedrock")}
    assert {name: len(received) for name, received in boto3_run.received.items()} == sent
    assert sent == {"openai": 7, "gemini": 0, "anthropic": 6, "bedrock": 0}
    assert len(boto3_run.audit) == len(BOTO3_CALLS)


def test_a_sigv4_signed_boto3_caller_is_translated_too(boto3_run):
    result = boto3_run.result["signed.converse"]
    assert result == {
        "role": "assistant",
        "content": [{"text": ANSWER}],
        "stop": "end_turn",
        "usage": CONVERSE_USAGE["openai"],
    }, boto3_run.result
    record, seen = boto3_call(boto3_run, "signed.converse")
    assert (record["client"], record["auth"], record["provider"], record["model"], record["status"]) == (
        "signer",
        "sigv4",
        "openai",
        "gpt-4o",
        200,
    )
    assert seen.json() == boto3_call(boto3_run, "openai.converse")[1].json()  # as the virtual key's call
    assert seen.headers["authorization"] == f"Bearer {KEYS['openai']}"
    assert not any(name.startswith("x-amz") for name in seen.headers), seen.headers


def test_a_forged_signature_on_a_route_is_refused_in_bedrocks_shape(boto3_run):
    result = boto3_run.result["signed.forged"]
    # Not one of bedrock-runtime's modelled exceptions: botocore's ClientError with its code
    assert (result["error"], result["status"], result["code"]) == ("ClientError", 403, "InvalidSignatureException"), (
        boto3_run.result
    )
    assert result["headers"]["x-tollgate-error"] == "invalid_signature"
    record = boto3_run.audit[-1]
    assert (record["client"], record["decision"], record["status"], record["upstream_key"]) == (None, "deny", 403, None)


# --- the OpenAI, Anthropic and Gemini SDKs, and a raw Gemini request ------------------------------

SDKS = """
import openai, anthropic, urllib.request
from google import genai
from google.genai import types

oa = openai.OpenAI(api_key=VIRTUAL, max_retries=0)
ant = anthropic.Anthropic(api_key=VIRTUAL, max_retries=0)
gem = genai.Client(api_key=VIRTUAL)

def openai_n():
    oa.chat.completions.create(model="claude-sonnet-4-5", n=2, messages=[{"role": "user", "content": PROMPT}])

def openai_logit_bias():
    r = oa.chat.completions.create(model="gemini-2.5-flash", logit_bias={"50256": -100}, max_tokens=100,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    u = r.usage
    return [r.choices[0].message.content, r.choices[0].finish_reason, u.prompt_tokens, u.completion_tokens,
            u.total_tokens, u.prompt_tokens_details.cached_tokens]

def anthropic_image_url():
    ant.messages.create(model="nova-lite", max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "text", "text": PROMPT}]}])

def anthropic_text():
    r = ant.messages.create(model="nova-lite", max_tokens=100, system=SYSTEM,
                            messages=[{"role": "user", "content": PROMPT}])
    u = r.usage
    return [r.content[0].text, r.stop_reason, u.input_tokens, u.output_tokens, u.cache_read_input_tokens,
            u.cache_creation_input_tokens]

def gemini_text():
    r = gem.models.generate_content(model="gpt-4o", contents=PROMPT,
                                    config=types.GenerateContentConfig(system_instruction=SYSTEM))
    u = r.usage_metadata
    return [r.text, r.candidates[0].finish_reason.name, u.prompt_token_count, u.candidates_token_count,
            u.thoughts_token_count, u.total_token_count]

def gemini_denied():
    gem.models.generate_content(model=FORBIDDEN, contents=PROMPT)

def gemini_unknown_key():
    stranger = genai.Client(api_key=UNKNOWN)  # kept: a Client let go closes its HTTP client
    stranger.models.generate_content(model="gpt-4o", contents=PROMPT)

def gemini_json_array():
    # Without alt=sse: the stream comes as one JSON array (google-genai always asks for events).
    request = urllib.request.Request(
        "https://generativelanguage.googleapis.com/v1beta/models/gpt-4o:streamGenerateContent",
        data=json.dumps({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}).encode(),
        headers={"content-type": "application/json", "x-goog-api-key": VIRTUAL})
    with urllib.request.urlopen(request, timeout=30) as response:
        return {"status": response.status, "content_type": response.headers["content-type"],
                "body": response.read().decode()}

for name, fn in [("openai_n", openai_n), ("openai_logit_bias", openai_logit_bias),
                 ("anthropic_image_url", anthropic_image_url), ("anthropic_text", anthropic_text),
                 ("gemini_text", gemini_text), ("gemini_denied", gemini_denied),
                 ("gemini_unknown_key", gemini_unknown_key), ("gemini_json_array", gemini_json_array)]:
    step(name, fn)
"""
SDK_CALLS = [
    "openai_n",
    "openai_logit_bias",
    "anthropic_image_url",
    "anthropic_text",
    "gemini_text",
    "gemini_denied",
    "gemini_unknown_key",
    "gemini_json_array",
]


@pytest.fixture(scope="module")
def sdk_run(gw, boto3_run) -> Run:  # after boto3's: each run clears the fakes
    return run(gw, SDKS, len(SDK_CALLS))


def sdk_record(sdk_run: Run, name: str) -> dict:
    return sdk_run.audit[SDK_CALLS.index(name)]


def test_only_the_calls_that_could_go_went_upstream(sdk_run):
    # The refusals (n, an image by URL, the policy, the unknown key) sent nothing anywhere.
    assert {name: len(received) for name, received in sdk_run.received.items()} == {
        "openai": 2,  # gemini_text, gemini_json_array
        "gemini": 1,  # openai_logit_bias
        "anthropic": 0,
        "bedrock": 1,  # anthropic_text
    }, sdk_run.result
    assert [r["endpoint"] for r in sdk_run.audit] == [
        "chat.completions",
        "chat.completions",
        "messages",
        "messages",
        "generateContent",
        "generateContent",
        "generateContent",
        "streamGenerateContent",
    ]


def test_a_gemini_stream_asked_as_a_json_array_comes_as_one(sdk_run):
    result = sdk_run.result["gemini_json_array"]
    assert (result["status"], result["content_type"]) == (200, "application/json"), sdk_run.result
    responses = json.loads(result["body"])
    assert isinstance(responses, list) and len(responses) >= 2, result["body"]
    texts = [p["text"] for r in responses for c in r.get("candidates", []) for p in c["content"].get("parts", [])]
    assert "".join(texts) == ANSWER
    last = responses[-1]
    assert last["usageMetadata"] == {
        "promptTokenCount": 21,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 2,
        "cachedContentTokenCount": 5,
        "totalTokenCount": 28,
    }
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert all("usageMetadata" not in r for r in responses[:-1])
    # The target was asked for a stream with its usage; the audit counts it
    seen = sdk_run.received["openai"][1].json()
    assert (seen["model"], seen["stream"], seen["stream_options"]) == ("gpt-4o", True, {"include_usage": True})
    record = sdk_record(sdk_run, "gemini_json_array")
    assert (record["stream"], record["upstream_endpoint"], record["status"]) == (True, "chat.completions", 200)
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (21, 7, 5)


def refused_record(record: dict, requested: str, target: str) -> None:
    assert (record["status"], record["decision"], record["deny_reasons"], record["error"]) == (
        400,
        "deny",
        ["bad_request"],
        "untranslatable request",
    )
    assert (record["requested_provider"], record["provider"], record["upstream_key"]) == (requested, target, None)
    assert record["input_tokens"] is None and record["ttfb_ms"] is None


def test_n_2_routed_to_anthropic_is_refused_in_openais_shape(sdk_run):
    result = sdk_run.result["openai_n"]
    assert (result["error"], result["status"]) == ("BadRequestError", 400), sdk_run.result
    assert (
        result["message"]
        == "Error code: 400 - Tollgate cannot route this call to anthropic: n 2: Anthropic returns one answer"
    )
    assert result["headers"]["x-tollgate-error"] == "bad_request"
    refused_record(sdk_record(sdk_run, "openai_n"), "openai", "anthropic")


def test_an_image_by_url_routed_to_converse_is_refused_in_anthropics_shape(sdk_run):
    result = sdk_run.result["anthropic_image_url"]
    assert (result["error"], result["status"]) == ("BadRequestError", 400), sdk_run.result
    # Anthropic's error shape, naming the image by URL
    assert result["message"] == (
        "Error code: 400 - {'type': 'error', 'error': {'type': 'invalid_request_error', 'message': "
        "'Tollgate cannot route this call to bedrock: messages[0].parts[0]: an image by URL cannot be translated: "
        "Bedrock takes images as bytes'}}"
    )
    assert result["headers"]["x-tollgate-error"] == "bad_request"
    refused_record(sdk_record(sdk_run, "anthropic_image_url"), "anthropic", "bedrock")


def test_a_policy_deny_on_a_route_is_in_the_callers_shape(sdk_run):
    result = sdk_run.result["gemini_denied"]
    assert (result["error"], result["status"], result["grpc_status"]) == ("ClientError", 403, "PERMISSION_DENIED"), (
        sdk_run.result
    )
    # Gemini's error body (not OpenAI's, the target's), with the policy's reason
    assert result["message"] == (
        "403 PERMISSION_DENIED. {'error': {'code': 403, 'message': 'Tollgate policy denied this call: "
        f"{DENIAL}', 'status': 'PERMISSION_DENIED'}}}}"
    )
    assert result["headers"]["x-tollgate-error"] == "policy_denied"
    record = sdk_record(sdk_run, "gemini_denied")
    assert (record["status"], record["decision"], record["deny_reasons"]) == (403, "deny", [DENIAL])
    assert (record["requested_provider"], record["provider"]) == ("gemini", "openai")


def test_an_unknown_key_on_a_route_gets_the_callers_401(sdk_run):
    result = sdk_run.result["gemini_unknown_key"]
    assert (result["error"], result["status"], result["grpc_status"]) == ("ClientError", 401, "UNAUTHENTICATED"), (
        sdk_run.result
    )
    assert result["headers"]["x-tollgate-error"] == "unauthenticated"
    record = sdk_record(sdk_run, "gemini_unknown_key")
    assert (record["status"], record["decision"], record["deny_reasons"]) == (
        401,
        "deny",
        ["unknown or missing API key"],
    )


def test_the_translated_calls_that_went_are_answered_in_the_callers_shape(sdk_run):
    assert sdk_run.result["openai_logit_bias"] == [ANSWER, "stop", 21, 7, 28, 5], sdk_run.result
    # Anthropic counts its input without the cache reads; Converse reports no cache writes here
    assert sdk_run.result["anthropic_text"] == [ANSWER, "end_turn", 16, 7, 5, 0], sdk_run.result
    assert sdk_run.result["gemini_text"] == [ANSWER, "STOP", 21, 5, 2, 28], sdk_run.result


def test_a_dropped_parameter_is_named_on_the_console(gw, sdk_run):
    assert "logit_bias" not in json.dumps(sdk_run.received["gemini"][0].json())
    console = gw.wait_console("without logit_bias")
    assert console.count("Tollgate: openai call routed to gemini without logit_bias (no equivalent there)") == 1
    assert sdk_record(sdk_run, "openai_logit_bias")["status"] == 200


# --- secrets -------------------------------------------------------------------------------------


def test_no_secret_reaches_the_target_the_audit_or_the_console(gw, boto3_run, sdk_run):
    callers = {"virtual key": VIRTUAL, "virtual AWS key id": SIGNER[0], "virtual AWS secret": SIGNER[1]}
    callers["unknown key"] = UNKNOWN
    sent = 0
    for run_ in (boto3_run, sdk_run):
        for target, received in run_.received.items():
            # The target's own credential (Bedrock's: its signature's key id) and nothing else of anyone's
            others = {f"{name} key": key for name, key in KEYS.items() if name != target}
            if target != "bedrock":
                others["AWS key id"] = AWS[0]
            forbidden = {**callers, **others, "AWS secret": AWS[1]}
            for seen in received:
                sent += 1
                everything = seen.path + json.dumps(seen.headers) + seen.body.decode("utf-8", "replace")
                leaked = [what for what, value in forbidden.items() if value in everything]
                assert leaked == [], f"{target} received {leaked} in {seen.method} {seen.path}"
    assert sent == 13 + 4  # every call that went: boto3's, and one of each other SDK's and the raw request
    # The audit and the console: no key, prompt or system prompt
    secrets = {**callers, **{f"{n} key": k for n, k in KEYS.items()}, "AWS secret": AWS[1]}
    secrets |= {"prompt": PROMPT, "system prompt": SYSTEM, "answer": "the capital."}
    audit, console = gw.audit_path.read_text(), gw.proxy.console()
    assert [what for what, value in secrets.items() if value in audit] == []
    assert [what for what, value in secrets.items() if value in console] == []
    assert "18C and sunny" not in audit + console  # a tool result
    assert "Rate limit" in console  # the console shows what flows keep: the errors' bodies
