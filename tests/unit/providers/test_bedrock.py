"""Bedrock: classification (model ids in paths), request facts and usage; plain data in, plain data out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples
from tests.support.grouped_cases import flat_cases

from tollgate.formats.bedrock_invoke import invoke_finish_reason
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification
from tollgate.providers import bedrock as bedrock_mod
from tollgate.providers.credentials import Presented

from .common import (
    _CLAUDE_INVOKE,
    BEDROCK,
    BEDROCK_MODELS,
    BEDROCK_OPS,
    EMPTY_USAGE,
    NO_FACTS,
    STREAMING_OPS,
    _sent,
    bedrock_model,
    classify,
    facts,
    headers,
    j,
    usage_tuple,
)


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("bedrock-runtime.us-east-1.amazonaws.com", "us-east-1"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("bedrock.us-east-1.amazonaws.com", "us-east-1"),
        ("bedrock-agent-runtime.eu-central-1.amazonaws.com", "eu-central-1"),
        ("bedrock-runtime.us-east-1.api.aws", "us-east-1"),
        ("bedrock-runtime.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("vpce-0a1b2c3d4e5f6a7b8-abcdefgh.bedrock-runtime.eu-west-1.vpce.amazonaws.com", "eu-west-1"),
        ("vpce-0a1b2c3d4e5f6a7b8-abcdefgh-eu-west-1a.bedrock-agent-runtime.eu-west-1.vpce.amazonaws.com", "eu-west-1"),
        ("bedrock.corp.example", None),
        ("api.openai.com", None),
    ],
)
def test_bedrock_region_of(host: str, region: str | None) -> None:
    assert bedrock_mod.region_of(host) == region


def test_every_aws_dns_suffix_is_botocores() -> None:
    """A partition's suffix missing would leave its Bedrock hosts to be tunnelled ungoverned."""
    import json
    from pathlib import Path

    import botocore

    partitions = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())["partitions"]
    suffixes = {p["outputs"][kind] for p in partitions for kind in ("dnsSuffix", "dualStackDnsSuffix")}
    assert suffixes == set(bedrock_mod.AWS_DNS_SUFFIXES)


@pytest.mark.parametrize(
    ("host", "api"),
    [
        ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock-runtime"),
        ("bedrock-runtime-fips.us-east-1.api.aws", "bedrock-runtime"),
        ("bedrock-agent-runtime.us-east-1.amazonaws.com", "bedrock-agent-runtime"),
        ("bedrock-agent-runtime-fips.us-gov-west-1.amazonaws.com", "bedrock-agent-runtime"),
        ("bedrock.us-east-1.amazonaws.com", "bedrock"),
        ("bedrock-fips.us-east-1.amazonaws.com", "bedrock"),
        ("vpce-0abc-def.bedrock-runtime.us-east-1.vpce.amazonaws.com", "bedrock-runtime"),
        ("vpce-0abc-def.bedrock.us-east-1.vpce.amazonaws.com", "bedrock"),
        ("bedrock.corp.example", None),
    ],
)
def test_which_api_a_host_serves(host: str, api: str | None) -> None:
    assert bedrock_mod.api_of(host) == api


@pytest.mark.parametrize("op", BEDROCK_OPS)
@pytest.mark.parametrize(("segment", "model"), BEDROCK_MODELS)
def test_bedrock_model_from_raw_path(segment: str, model: str, op: str) -> None:
    path = f"/model/{segment}/{op}"
    c = classify(BEDROCK, "POST", path, None)
    assert c.endpoint == op
    assert c.model == model
    assert c.wire_format == (
        "bedrock-converse" if op in ("converse", "converse-stream", "count-tokens") else "bedrock-invoke"
    )
    assert c.facts.stream is (op in STREAMING_OPS)
    assert bedrock_model(path) == model
    assert bedrock_model(path + "?x=1") == model


@pytest.mark.parametrize(
    "path",
    [
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/unknown-op",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0",
        "/model//converse",
        "/models/x/converse",
        "/model/arn:aws:bedrock:eu-west-1::foundation-model/mistral.mistral-large-2402-v1:0/invoke",
        "/model/x%2/converse",
        "/model/x%ff/converse",
        "/",
    ],
)
def test_bedrock_paths_that_are_no_operation_are_refused(path: str) -> None:
    with pytest.raises(Unreadable):
        bedrock_model(path)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/async-invoke", "async-invoke"),
        ("/async-invoke/arn%3Ax", "async-invoke"),
    ],
)
def test_bedrock_other_endpoints(path: str, endpoint: str | None) -> None:
    assert classify(BEDROCK, "GET", path, None).endpoint == endpoint


@pytest.mark.parametrize(
    "path",
    [
        "/guardrail/gr1/version/1/apply",
        "/guardrail/abcdef123456/version/DRAFT/apply",
        "/guardrail/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aguardrail%2Fabc/version/2/apply",
    ],
)
def test_bedrock_guardrail_apply(path: str) -> None:
    body = j({"source": "INPUT", "content": [{"text": {"text": "x"}}]})
    c = classify(BEDROCK, "POST", path, body)
    assert c.endpoint == "apply-guardrail"
    assert c.model is None
    assert facts(c) == NO_FACTS


def test_bedrock_openai_chat_completions() -> None:
    body = j(
        {
            "model": "openai.gpt-oss-120b-1:0",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "tools": [{"type": "function"}],
            "max_completion_tokens": 64,
            "stream": True,
        }
    )
    c = classify(BEDROCK, "POST", "/openai/v1/chat/completions", body)
    assert (c.endpoint, c.model, c.wire_format) == ("chat.completions", "openai.gpt-oss-120b-1:0", "openai-api")
    assert facts(c) == (2, True, True, True, 64)


def test_bedrock_converse_facts() -> None:
    body = j(
        {
            "messages": [{"role": "user", "content": [{"text": "a"}]}] * 3,
            "system": [{"text": "secret"}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "t"}}]},
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.5},
        }
    )
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse", body)
    assert facts(c) == (3, True, True, False, 256)
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse-stream", body)
    assert facts(c) == (3, True, True, True, 256)


def test_bedrock_converse_minimal() -> None:
    body = j({"messages": [{"role": "user", "content": [{"text": "a"}]}]})
    c = classify(BEDROCK, "POST", "/model/amazon.nova-pro-v1%3A0/converse", body)
    assert facts(c) == (1, False, False, False, None)


def test_bedrock_invoke_claude_body() -> None:
    body = j(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 512,
            "system": "secret",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "tools": [{"name": "t"}],
        }
    )
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", body)
    assert facts(c) == (2, True, True, False, 512)
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream", body)
    assert facts(c) == (2, True, True, True, 512)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Amazon Nova
        (
            {
                "messages": [{"role": "user", "content": [{"text": "a"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"max_new_tokens": 100},
            },
            (1, True, False, False, 100),
        ),
        # Amazon Titan
        ({"inputText": "hello", "textGenerationConfig": {"maxTokenCount": 50}}, (1, False, False, False, 50)),
        # Meta Llama
        ({"prompt": "<s>[INST] hi [/INST]", "max_gen_len": 64}, (1, False, False, False, 64)),
        # Mistral
        ({"prompt": "<s>[INST] hi [/INST]", "max_tokens": 32}, (1, False, False, False, 32)),
        # OpenAI-style messages with a system role (e.g. gpt-oss via InvokeModel)
        (
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "max_tokens": 8},
            (2, True, False, False, 8),
        ),
        # Nothing recognisable
        ({"foo": "bar"}, (None, False, False, False, None)),
    ],
)
def test_bedrock_invoke_model_families(body: dict, expected: tuple) -> None:
    c = classify(BEDROCK, "POST", "/model/some.model-v1%3A0/invoke", j(body))
    assert facts(c) == expected


def test_bedrock_count_tokens_converse_input() -> None:
    body = j(
        {
            "input": {
                "converse": {
                    "messages": [{"role": "user", "content": [{"text": "a"}]}],
                    "system": [{"text": "s"}],
                }
            }
        }
    )
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens", body)
    assert c.endpoint == "count-tokens"
    assert c.model == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert facts(c) == (1, True, False, False, None)


def test_bedrock_count_tokens_empty_input() -> None:
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", j({"input": {}}))
    assert facts(c) == (None, False, False, False, None)


def test_bedrock_count_tokens_invoke_input_as_json_text() -> None:
    body = j({"input": {"invokeModel": {"body": json.dumps(_CLAUDE_INVOKE)}}})
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", body)
    assert facts(c) == (1, True, False, False, 10)


def test_bedrock_count_tokens_invoke_input_as_botocore_sends_it() -> None:
    encoded = base64.b64encode(json.dumps(_CLAUDE_INVOKE).encode()).decode()
    body = j({"input": {"invokeModel": {"body": encoded}}})
    c = classify(BEDROCK, "POST", "/model/x/count-tokens", body)
    assert facts(c) == (1, True, False, False, 10)


@pytest.mark.parametrize("op", BEDROCK_OPS)
@pytest.mark.parametrize("body", [None, b""])
def test_bedrock_no_body_keeps_model_and_stream(op: str, body: bytes | None) -> None:
    c = classify(BEDROCK, "POST", f"/model/amazon.nova-lite-v1%3A0/{op}", body)
    assert (c.endpoint, c.model) == (op, "amazon.nova-lite-v1:0")
    assert facts(c) == (None, None, None, op in STREAMING_OPS, None)


def test_bedrock_wrong_types_in_converse() -> None:
    body = j({"messages": "x", "system": [], "inferenceConfig": "fast", "max_tokens": 5})
    c = classify(BEDROCK, "POST", "/model/m/converse", body)
    assert facts(c) == (None, False, False, False, 5)


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
@pytest.mark.parametrize(
    ("operation", "endpoint", "kwargs"),
    [
        (
            "converse",
            "converse",
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"maxTokens": 5},
            },
        ),
        (
            "converse_stream",
            "converse-stream",
            {
                "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "system": [{"text": "s"}],
                "inferenceConfig": {"maxTokens": 5},
            },
        ),
        ("invoke_model", "invoke", {"body": json.dumps(_CLAUDE_INVOKE).encode()}),
        (
            "invoke_model_with_response_stream",
            "invoke-with-response-stream",
            {"body": json.dumps(_CLAUDE_INVOKE).encode()},
        ),
        (
            "count_tokens",
            "count-tokens",
            {
                "input": {
                    "converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "s"}]}
                }
            },
        ),
    ],
)
def test_bedrock_paths_as_botocore_sends_them(
    bedrock_client: Any, model_id: str, operation: str, endpoint: str, kwargs: dict
) -> None:
    path, body = _sent(bedrock_client, operation, modelId=model_id, **kwargs)
    c = classify(BEDROCK, "POST", path, body)
    assert c.endpoint == endpoint
    assert c.model == model_id
    expected_max = None if operation == "count_tokens" else (5 if operation.startswith("converse") else 10)
    assert facts(c) == (1, True, False, endpoint in STREAMING_OPS, expected_max)


def test_bedrock_guardrail_as_botocore_sends_it(bedrock_client: Any) -> None:
    path, body = _sent(
        bedrock_client,
        "apply_guardrail",
        guardrailIdentifier="gr1",
        guardrailVersion="1",
        source="INPUT",
        content=[{"text": {"text": "x"}}],
    )
    assert classify(BEDROCK, "POST", path, body).endpoint == "apply-guardrail"


def test_bedrock_converse_usage() -> None:
    body = j(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "secret"}]}},
            "stopReason": "end_turn",
            "usage": {
                "inputTokens": 10,
                "outputTokens": 20,
                "totalTokens": 37,
                "cacheReadInputTokens": 5,
                "cacheWriteInputTokens": 2,
            },
            "metrics": {"latencyMs": 100},
        }
    )
    c = classify(BEDROCK, "POST", "/model/amazon.nova-lite-v1%3A0/converse", None)
    # Bedrock counts cache reads and writes apart from inputTokens; the audit's input_tokens has them all.
    u = BEDROCK.cost.usage(c, headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((17, 20, 37, 5, None, "end_turn"), 2)


CONVERSE = "/model/amazon.nova-pro-v1%3A0/converse"
INVOKE = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
TIER = b"x-amzn-bedrock-service-tier"
LATENCY = b"x-amzn-bedrock-performanceconfig-latency"


def test_bedrock_the_service_tier_and_latency_asked_for_are_read_exactly() -> None:
    message = [{"role": "user", "content": [{"text": "a"}]}]
    asked = {"serviceTier": {"type": "priority"}, "performanceConfig": {"latency": "optimized"}}
    converse = classify(BEDROCK, "POST", CONVERSE, j({"messages": message, **asked}))
    assert (converse.facts.service_tier, converse.facts.speed) == ("priority", "optimized")
    BEDROCK.read_headers({TIER: b"priority", LATENCY: b"optimized"}, converse)  # the same, twice
    assert (converse.facts.service_tier, converse.facts.speed) == ("priority", "optimized")
    invoke = classify(BEDROCK, "POST", INVOKE, j({"anthropic_version": "bedrock-2023-05-31", "messages": message}))
    assert (invoke.facts.service_tier, invoke.facts.speed) == (None, None)
    BEDROCK.read_headers({TIER: b"flex", LATENCY: b"standard"}, invoke)
    assert (invoke.facts.service_tier, invoke.facts.speed) == ("flex", "standard")
    assert invoke.facts.price_context() == (("service_tier", "flex"), ("speed", "standard"))
    wrong = [
        ({"serviceTier": "priority"}, "'serviceTier' is not an object"),
        ({"serviceTier": {"type": 1}}, "'serviceTier.type' is not"),
        ({"performanceConfig": ["optimized"]}, "'performanceConfig' is not an object"),
        ({"performanceConfig": {"latency": True}}, "'performanceConfig.latency' is not"),
    ]
    for fields, why in wrong:
        with pytest.raises(Unreadable, match=why):
            classify(BEDROCK, "POST", CONVERSE, j({"messages": message, **fields}))
    with pytest.raises(Unreadable, match="X-Amzn-Bedrock-Service-Tier differs from the body"):
        BEDROCK.read_headers({TIER: b"flex"}, converse)
    with pytest.raises(Unreadable, match="X-Amzn-Bedrock-PerformanceConfig-Latency differs from the body"):
        BEDROCK.read_headers({LATENCY: b"standard"}, converse)
    with pytest.raises(Unreadable, match="X-Amzn-Bedrock-Service-Tier is not one name"):
        BEDROCK.read_headers({TIER: b"priority, flex"}, invoke)  # the header twice


def test_bedrock_answers_name_their_service_tier_and_latency() -> None:
    ran = {"serviceTier": {"type": "flex"}, "performanceConfig": {"latency": "optimized"}}
    body = j({"stopReason": "end_turn", "usage": {"inputTokens": 2, "outputTokens": 3}, **ran})
    u = BEDROCK.cost.usage(Classification(endpoint="converse", wire_format="bedrock-converse"), headers(), body)
    assert (u.service_tier, u.speed) == ("flex", "optimized")
    answer = {"x-amzn-bedrock-service-tier": "priority", "x-amzn-bedrock-performanceconfig-latency": "optimized"}
    assert (BEDROCK.cost.answer_service_tier(answer), BEDROCK.cost.answer_speed(answer)) == ("priority", "optimized")
    assert (BEDROCK.cost.answer_service_tier({}), BEDROCK.cost.answer_speed({})) == (None, None)
    assert {TIER, LATENCY} <= BEDROCK.cost.response_headers


def test_bedrock_converse_usage_total_computed() -> None:
    body = j({"stopReason": "max_tokens", "usage": {"inputTokens": 2, "outputTokens": 3}})
    u = BEDROCK.cost.usage(Classification(endpoint="converse", wire_format="bedrock-converse"), headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((2, 3, 5, None, None, "max_tokens"), None)


def test_bedrock_invoke_usage_from_headers() -> None:
    h = headers(
        ("X-Amzn-Bedrock-Input-Token-Count", "12"),
        ("X-Amzn-Bedrock-Output-Token-Count", "34"),
        ("X-Amzn-Bedrock-Invocation-Latency", "500"),
    )
    body = j({"stop_reason": "end_turn", "usage": {"input_tokens": 999, "output_tokens": 999}})
    c = classify(BEDROCK, "POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", None)
    assert usage_tuple(BEDROCK.cost.usage(c, h, body)) == (12, 34, 46, None, None, "end_turn")


def test_bedrock_invoke_usage_cache_headers() -> None:
    """The input token count header counts neither cache reads nor writes (as Claude's body
    `usage.input_tokens`, which it equals); the audit's input_tokens counts every prompt token."""
    h = headers(
        ("x-amzn-bedrock-input-token-count", "100"),
        ("x-amzn-bedrock-output-token-count", "1"),
        ("x-amzn-bedrock-cache-read-input-token-count", "64"),
        ("x-amzn-bedrock-cache-write-input-token-count", "16"),
    )
    u = BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), h, j({}))
    assert (usage_tuple(u), u.cache_write_tokens) == ((180, 1, 181, 64, None, None), 16)


def test_bedrock_invoke_usage_cache_read_header_only() -> None:
    h = headers(
        ("x-amzn-bedrock-input-token-count", "100"),
        ("x-amzn-bedrock-output-token-count", "1"),
        ("x-amzn-bedrock-cache-read-input-token-count", "64"),
    )
    u = BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), h, j({}))
    assert (usage_tuple(u), u.cache_write_tokens) == ((164, 1, 165, 64, None, None), None)


def test_bedrock_invoke_usage_from_claude_body_without_headers() -> None:
    usage = {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 2}
    body = j({"stop_reason": "end_turn", "usage": usage})
    u = BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), headers(), body)
    assert (usage_tuple(u), u.cache_write_tokens) == ((18, 2, 20, 5, None, "end_turn"), 3)


def test_bedrock_invoke_usage_headers_and_non_json_body() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "3"), ("x-amzn-bedrock-output-token-count", "4"))
    assert usage_tuple(
        BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), h, b"\x89PNG...")
    ) == (
        3,
        4,
        7,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"stop_reason": "end_turn"}, "end_turn"),  # Claude
        ({"stopReason": "end_turn", "output": {}}, "end_turn"),  # Nova
        ({"stop_reason": "stop", "generation": "x"}, "stop"),  # Llama
        ({"results": [{"completionReason": "FINISH"}]}, "FINISH"),  # Titan
        ({"outputs": [{"text": "x", "stop_reason": "length"}]}, "length"),  # Mistral
        ({"generations": [{"finish_reason": "COMPLETE"}]}, "COMPLETE"),  # Cohere
        ({"choices": [{"finish_reason": "stop"}]}, "stop"),  # OpenAI-style
        ({"completionReason": "LENGTH"}, "LENGTH"),
        ({"results": []}, None),
        ({"stop_reason": 1}, None),
        ({}, None),
    ],
)
def test_bedrock_invoke_finish_reason(body: dict, reason: str | None) -> None:
    assert invoke_finish_reason(body) == reason
    assert (
        BEDROCK.cost.usage(
            Classification(endpoint="invoke", wire_format="bedrock-invoke"), headers(), j(body)
        ).finish_reason
        == reason
    )


def test_bedrock_count_tokens_usage() -> None:
    u = BEDROCK.cost.usage(
        Classification(endpoint="count-tokens", wire_format="bedrock-converse"), headers(), j({"inputTokens": 7})
    )
    assert usage_tuple(u) == (7, None, None, None, None, None)


@pytest.mark.parametrize("endpoint", ["converse-stream", "invoke-with-response-stream", "apply-guardrail", None])
def test_bedrock_other_endpoints_have_no_body_usage(endpoint: str | None) -> None:
    body = j({"usage": {"inputTokens": 1, "outputTokens": 2}, "stopReason": "end_turn"})
    assert (
        usage_tuple(
            BEDROCK.cost.usage(Classification(endpoint=endpoint, wire_format="bedrock-converse"), headers(), body)
        )
        == EMPTY_USAGE
    )


def test_bedrock_openai_usage() -> None:
    c = classify(BEDROCK, "POST", "/openai/v1/chat/completions", j({"model": "openai.gpt-oss-20b-1:0", "messages": []}))
    body = j(
        {
            "choices": [{"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 2}},
        }
    )
    assert usage_tuple(BEDROCK.cost.usage(c, headers(), body)) == (5, 5, 10, None, 2, "stop")


def test_bedrock_usage_wrong_types() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "lots"), ("x-amzn-bedrock-output-token-count", "-1"))
    assert (
        usage_tuple(BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), h, b"[]"))
        == EMPTY_USAGE
    )
    body = j({"usage": "x", "stopReason": ["end_turn"]})
    assert (
        usage_tuple(
            BEDROCK.cost.usage(Classification(endpoint="converse", wire_format="bedrock-converse"), headers(), body)
        )
        == EMPTY_USAGE
    )
    assert (
        usage_tuple(
            BEDROCK.cost.usage(
                Classification(endpoint="count-tokens", wire_format="bedrock-converse"),
                headers(),
                j({"inputTokens": "7x"}),
            )
        )
        == EMPTY_USAGE
    )


def test_bedrock_invoke_odd_digit_header_does_not_raise() -> None:
    h = headers(("x-amzn-bedrock-input-token-count", "²"))
    assert (
        BEDROCK.cost.usage(Classification(endpoint="invoke", wire_format="bedrock-invoke"), h, j({})).input_tokens
        is None
    )


def test_bedrock_presented() -> None:
    assert BEDROCK.credentials.caller.presented(headers(("Authorization", "Bearer ABSK-token")), {}) == [
        Presented("ABSK-token", "authorization")
    ]
    sigv4 = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc"
    )
    h = headers(("Authorization", sigv4), ("X-Amz-Security-Token", "session"), ("X-Amz-Date", "20240101T000000Z"))
    assert BEDROCK.credentials.caller.presented(h, {}) == []


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=80))
def test_bedrock_model_id_is_read_or_refused(path: str) -> None:
    try:
        result = bedrock_model(path)
    except Unreadable:
        return
    assert result is None or isinstance(result, str)


@settings(max_examples=examples(200), deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="?", blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_bedrock_model_id_round_trips_through_percent_encoding(model: str) -> None:
    from urllib.parse import quote

    assume(model not in (".", ".."))  # a dot segment, refused: servers resolve it away
    # A path word in another letter case (`OPENAI`) is refused: a server that ignores case would
    # read it as the word.
    assume(bedrock_mod.WORDS.get(model.lower(), model) == model)

    path = f"/model/{quote(model, safe='')}/converse"
    assert bedrock_model(path) == model
    assert classify(BEDROCK, "POST", path, None).model == model


# --- the agent runtime and the control plane's jobs ------------------------------------------------

AGENTS = "bedrock-agent-runtime.us-east-1.amazonaws.com"
CONTROL = "bedrock.us-east-1.amazonaws.com"
RUNTIME = "bedrock-runtime.us-east-1.amazonaws.com"
ADDED = "bedrock.corp.example"  # a host a configuration adds: its name says no API
HAIKU = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"


def classify_at(host: str, method: str, target: str, body: Any = None) -> Classification:
    path, _, query = target.partition("?")
    return BEDROCK.classify_at(host, method, path, body, query)


@pytest.mark.parametrize("host", [AGENTS, ADDED])
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/agents/AGENT12345/agentAliases/ALIAS12345/sessions/s-1/text", {"inputText": "hi", "enableTrace": True},
         ("invoke-agent", None, True, 1, None, None, ("model", "request"))),
        ("POST", "/agents/session-7", {"foundationModel": "anthropic.claude-3-haiku-20240307-v1:0", "inputText": "hi",
                                       "instruction": "be brief", "actionGroups": [{"actionGroupName": "x"}]},
         ("invoke-inline-agent", "anthropic.claude-3-haiku-20240307-v1:0", True, 1, True, None, ())),
        ("POST", "/retrieveAndGenerate", {"input": {"text": "q"}, "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": "KB12345678", "modelArn": HAIKU,
            "generationConfiguration": {"inferenceConfig": {"textInferenceConfig": {"maxTokens": 300}}}}}},
         ("retrieve-and-generate", HAIKU, False, 1, None, 300, ())),
        ("POST", "/retrieveAndGenerateStream", {"retrieveAndGenerateConfiguration": {
            "type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": HAIKU, "sources": []}}},
         ("retrieve-and-generate-stream", HAIKU, True, 1, None, None, ())),
        ("POST", "/knowledgebases/KB12345678/retrieve", {"retrievalQuery": {"text": "q"}},
         ("retrieve", None, False, None, None, None, ("model",))),
        ("POST", "/rerank", {"rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
            "modelConfiguration": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"}}}},
         ("rerank", "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0", False, None, None, None, ())),
        ("POST", "/flows/FLOW123456/aliases/ALIAS12345", {"inputs": []},
         ("invoke-flow", None, True, None, None, None, ("model", "request"))),
        ("POST", "/flows/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aflow%2FFLOW123456/aliases/TSTALIASID/executions",
         {"inputs": []}, ("start-flow-execution", None, False, None, None, None, ("model", "request"))),
        ("PUT", "/sessions/", {}, ("create-session", None, False, None, None, None, ())),
        ("POST", "/sessions/", {}, ("list-sessions", None, False, None, None, None, ())),
        ("GET", "/sessions/s-1/", None, ("get-session", None, False, None, None, None, ())),
        ("PATCH", "/sessions/s-1", None, ("end-session", None, False, None, None, None, ())),
        ("GET", "/agents/AGENT12345/agentAliases/ALIAS12345/memories?memoryType=SESSION_SUMMARY", None,
         ("get-agent-memory", None, False, None, None, None, ())),
        ("DELETE", "/tags/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aflow%2FFLOW123456", None,
         ("untag-resource", None, False, None, None, None, ())),
    ],
)  # fmt: skip
def test_the_agent_runtimes_operations_are_read(host, method, path, body, expected) -> None:
    c = classify_at(host, method, path, body)
    assert (
        c.endpoint,
        c.model,
        c.facts.stream,
        c.facts.message_count,
        c.facts.has_tools,
        c.facts.max_tokens,
        c.unread,
    ) == expected
    assert c.facts.batch is None and not c.passthrough
    assert (c.endpoint in BEDROCK.cost.free_endpoints) is (method != "POST" or c.endpoint in ("list-sessions",))


@pytest.mark.parametrize(
    ("method", "path", "fault"),
    flat_cases(
        {
            "GET": [
                ("/retrieveAndGenerate", "called with POST"),
            ],
            "POST": [
                ("/sessions/s-1/", "called with DELETE or GET or PUT"),
                ("/agents/AGENT12345/agentAliases/ALIAS12345/sessions/s-1/voice", "none of this API's operations"),
                ("/Agents/session-7", "is not written 'agents'"),
                ("/agents/session-7/", "none of this API's operations"),
                ("/retrieveAndGenerate%2F", "not an operation of Bedrock's agent runtime"),
                ("/agents//x", "empty segment"),
                ("/model/amazon.nova-lite-v1%3A0/converse", "not an operation of Bedrock's agent runtime"),
                ("/model-invocation-job", "not an operation of Bedrock's agent runtime"),
            ],
        }
    ),
)
def test_what_the_agent_runtime_does_not_serve_is_refused(method: str, path: str, fault: str) -> None:
    with pytest.raises(Unreadable, match=fault):
        classify_at(AGENTS, method, path, {})


@pytest.mark.parametrize("host", [CONTROL, ADDED, "vpce-0abc-def.bedrock.us-east-1.vpce.amazonaws.com"])
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/model-invocation-job", {"jobName": "j", "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                                           "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://b/in.jsonl"}}},
         ("create-model-invocation-job", "anthropic.claude-3-haiku-20240307-v1:0", True, ())),
        ("POST", "/model-customization-jobs", {"baseModelIdentifier": "amazon.titan-text-express-v1"},
         ("create-model-customization-job", "amazon.titan-text-express-v1", True, ())),
        ("POST", "/evaluation-jobs", {"jobName": "e"}, ("create-evaluation-job", None, True, ("model",))),
        ("GET", "/model-invocation-job/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Amodel-invocation-job%2Fabc", None,
         ("get-model-invocation-job", None, False, ())),
        ("POST", "/model-invocation-job/abc123/stop", None, ("stop-model-invocation-job", None, False, ())),
        ("GET", "/model-invocation-jobs?maxResults=10", None, ("list-model-invocation-jobs", None, False, ())),
    ],
)  # fmt: skip
def test_the_control_planes_jobs_are_read_and_a_jobs_requests_are_unbounded(host, method, path, body, expected) -> None:
    c = classify_at(host, method, path, body)
    assert (c.endpoint, c.model, c.facts.batch is not None, c.unread) == expected
    if c.facts.batch is not None:
        assert c.facts.batch.requests is None  # in S3: Tollgate reads none of them
        assert c.endpoint not in BEDROCK.cost.free_endpoints
    else:
        assert c.endpoint in BEDROCK.cost.free_endpoints


@pytest.mark.parametrize("host", [CONTROL, ADDED])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/foundation-models"),
        ("GET", "/foundation-models/anthropic.claude-3-haiku-20240307-v1:0"),
        ("POST", "/guardrails"),
        ("POST", "/provisioned-model-throughput"),
        ("PUT", "/logging/modelinvocations"),
        ("GET", "/anything/Else//at-all/"),
    ],
)
def test_the_rest_of_the_control_plane_is_outside_the_model_api(host: str, method: str, path: str) -> None:
    c = classify_at(host, method, path, None)
    assert (c.passthrough, c.endpoint, c.model) == (True, None, None)


@pytest.mark.parametrize(
    ("host", "path", "fault"),
    [
        (CONTROL, "/model-invocation-job/a/b/c", "none of this API's operations"),
        # In another letter case: a server that ignored case would start a job passed on unread.
        (CONTROL, "/Model-Invocation-Job", "is not written 'model-invocation-job'"),
        (CONTROL, "/foundation-models", None),
        (RUNTIME, "/model-invocation-job", "not a Bedrock runtime operation"),
        (RUNTIME, "/foundation-models", "not a Bedrock runtime operation"),
        (ADDED, "/agents/x/y", "none of this API's operations"),
    ],
)
def test_a_path_a_host_does_not_serve_as_asked_is_refused(host: str, path: str, fault: str | None) -> None:
    if fault is None:
        assert classify_at(host, "POST", path, {}).passthrough
        return
    with pytest.raises(Unreadable, match=fault):
        classify_at(host, "POST", path, {})


def test_a_runtime_call_at_a_host_a_configuration_adds_is_read_as_the_runtimes() -> None:
    c = classify_at(
        ADDED, "POST", "/model/amazon.nova-lite-v1%3A0/converse", {"messages": [], "inferenceConfig": {"maxTokens": 5}}
    )
    assert (c.endpoint, c.model, c.facts.max_tokens) == ("converse", "amazon.nova-lite-v1:0", 5)


def trace(kind: str, given: int, made: int) -> bytes:
    from tests.support.eventstream import event

    usage = {"inputTokens": given, "outputTokens": made}
    return event("trace", {"agentId": "A", "trace": {kind: {"modelInvocationOutput": {"metadata": {"usage": usage}}}}})


def test_an_agents_traces_tell_the_usage_of_each_of_its_model_calls() -> None:
    from tests.support.eventstream import event, exception

    c = classify_at(AGENTS, "POST", "/agents/AGENT12345/agentAliases/ALIAS12345/sessions/s-1/text", {"inputText": "hi"})
    reader = BEDROCK.cost.usage_reader(c, headers(("content-type", "application/vnd.amazon.eventstream")))
    stream = b"".join(
        [
            trace("preProcessingTrace", 100, 10),
            event("trace", {"trace": {"orchestrationTrace": {"rationale": {"text": "thinking"}}}}),
            trace("orchestrationTrace", 1200, 80),
            event("chunk", {"bytes": base64.b64encode(b"Hello").decode()}),
            trace("postProcessingTrace", 300, 20),
        ]
    )
    for i in range(0, len(stream), 7):  # in pieces that cut frames anywhere
        reader.feed(stream[i : i + 7])
    u = reader.result()
    assert (u.input_tokens, u.output_tokens, u.total_tokens, reader.error) == (1600, 110, 1710, None)
    quiet = BEDROCK.cost.usage_reader(c, headers(("content-type", "application/vnd.amazon.eventstream")))
    quiet.feed(event("chunk", {"bytes": "SGk="}) + exception("throttlingException", "slow down"))
    assert (quiet.result().input_tokens, quiet.error) == (None, "the stream ended in an exception: throttlingException")


def test_the_other_apis_report_no_usage() -> None:
    for host, method, path in (
        (AGENTS, "POST", "/retrieveAndGenerate"),
        (AGENTS, "POST", "/retrieveAndGenerateStream"),
        (CONTROL, "POST", "/model-invocation-job"),
    ):
        c = classify_at(host, method, path, {})
        reader = BEDROCK.cost.usage_reader(c, headers(("content-type", "application/json")))
        reader.feed(json.dumps({"usage": {"inputTokens": 5, "outputTokens": 5}}).encode())
        assert reader.result().input_tokens is None
