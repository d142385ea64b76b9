"""Overriding as a call step on mitmproxy's test flows: the first matching rule changes the model where
the provider reads it (the body, or the path for Gemini and Bedrock), may route an OpenAI-format call
to another provider's OpenAI-compatible API, and leaves every other call exactly as it came."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http

from tollgate.calls.call import Call, Target
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.routing.override import Overriding
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

from ..conftest import HOSTS, api_flow, classified, configured

RULES = {
    "overrides": [
        {"match": {"provider": "openai", "model": "gpt-4o", "group": "support"}, "model": "gpt-4o-mini"},
        {"match": {"provider": "openai", "model": "gemini-*"}, "provider": "gemini", "model": "gemini-2.5-pro"},
        {
            "match": {"provider": "openai", "model": "nova-*"},
            "provider": "bedrock",
            "upstream": "https://bedrock-runtime.eu-west-1.amazonaws.com",
        },
        {"match": {"provider": "openai", "model": "claude-*", "client": "ci-*"}, "provider": "anthropic"},
        {"match": {"provider": "anthropic", "model": "claude-opus-*"}, "model": "claude-haiku-4-5"},
        {"match": {"provider": "gemini", "model": "gemini-2.0-flash"}, "model": "gemini-2.5-flash"},
        {
            "match": {"provider": "bedrock", "model": "anthropic.claude-3-haiku-*"},
            "model": "anthropic.claude-3-5-haiku-20241022-v1:0",
        },
        {"match": {"provider": "openai", "model": "gpt-4.1"}, "upstream": "https://llm-gateway.internal:8443"},
        {"match": {"model": "same-model"}, "model": "same-model"},
    ]
}


def overridden(
    provider: str,
    path: str,
    body: dict | None = None,
    *,
    method: str = "POST",
    client: str | None = "alice",
    groups: tuple[str, ...] = (),
    shared: Shared | None = None,
) -> tuple[http.HTTPFlow, Call, bytes | None]:
    """A call classified, identified as `client`, then through Overriding; the body as sent too."""
    shared = shared or configured(RULES)
    flow = api_flow(HOSTS[provider], path, body, method=method)
    call = classified(shared, flow)
    call.caller.client, call.caller.groups = client, groups
    sent = flow.request.raw_content
    assert CallSteps(Overriding(shared).handle).at_request(flow) is None
    assert flow.response is None
    return flow, call, sent


def test_the_model_in_the_body_is_rewritten_and_the_length_follows() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "grüß dich"}], "seed": 2**70}
    flow, call, sent = overridden("openai", "/v1/chat/completions", body, groups=("support",))
    assert flow.request.raw_content == sent.replace(b'"gpt-4o"', b'"gpt-4o-mini"')
    assert flow.request.headers.get_all("content-length") == [str(len(flow.request.raw_content))]
    assert json.loads(flow.request.raw_content)["seed"] == 2**70
    assert flow.request.path == "/v1/chat/completions"
    assert (call.route.target.model, call.classification.model, call.request.body["model"]) == (
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4o-mini",
    )
    assert (call.route.target.provider, call.route.requested.provider, call.route.upstream) == (
        "openai",
        "openai",
        None,
    )
    record = audit_record(call)
    assert (record["requested_model"], record["model"]) == ("gpt-4o", "gpt-4o-mini")


def test_an_anthropic_model_is_rewritten_in_its_body() -> None:
    body = {"model": "claude-opus-4-1", "messages": [], "max_tokens": 10}
    flow, call, sent = overridden("anthropic", "/v1/messages", body)
    assert flow.request.raw_content == sent.replace(b'"claude-opus-4-1"', b'"claude-haiku-4-5"')
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))
    assert call.route.target.model == "claude-haiku-4-5"


def test_a_gemini_model_is_rewritten_in_the_path_and_the_body_left_as_sent() -> None:
    flow, call, sent = overridden(
        "gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", {"contents": []}
    )
    assert flow.request.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert flow.request.raw_content == sent
    assert flow.request.headers["content-length"] == str(len(sent))
    assert (call.route.target.model, call.classification.model) == ("gemini-2.5-flash", "gemini-2.0-flash")


def test_a_bedrock_model_is_rewritten_in_the_path_percent_encoded_as_botocore_sends_it() -> None:
    flow, call, sent = overridden(
        "bedrock", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream", {"messages": []}
    )
    assert flow.request.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    assert flow.request.raw_content == sent
    assert call.route.target.model == "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.mark.parametrize(
    ("path", "body", "sent"),
    [
        pytest.param(
            "/v1beta/openai/chat/completions",
            {"model": "gemini-2.0-flash", "messages": []},
            b'{"model":"gemini-2.5-flash","messages":[]}',
            id="openai-compatible",
        ),
        # A body that names its model as a resource keeps the resource form.
        pytest.param(
            "/v1beta/cachedContents",
            {"model": "models/gemini-2.0-flash", "contents": []},
            b'{"model":"models/gemini-2.5-flash","contents":[]}',
            id="resource-form",
        ),
    ],
)
def test_a_gemini_call_that_names_its_model_in_the_body_gets_it_rewritten_there(
    path: str, body: dict, sent: bytes
) -> None:
    flow, call, _sent = overridden("gemini", path, body)
    assert flow.request.path == path
    assert flow.request.raw_content == sent
    assert flow.request.headers["content-length"] == str(len(sent))
    assert (call.route.target.model, call.classification.model) == ("gemini-2.5-flash", "gemini-2.0-flash")


@pytest.mark.parametrize(
    ("host", "path", "body", "field"),
    [
        ("bedrock-agent-runtime.us-east-1.amazonaws.com", "/agents/session-7",
         {"foundationModel": "anthropic.claude-3-haiku-20240307-v1:0", "inputText": "hi"}, "foundationModel"),
        ("bedrock.us-east-1.amazonaws.com", "/model-invocation-job",
         {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "jobName": "j"}, "modelId"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "/async-invoke",
         {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "modelInput": {}}, "modelId"),
    ],
)  # fmt: skip
def test_a_bedrock_body_that_names_its_model_in_its_own_field_gets_it_rewritten_there(host, path, body, field) -> None:
    shared = configured(RULES)
    flow = api_flow(host, path, body)
    call = classified(shared, flow)
    CallSteps(Overriding(shared).handle).at_request(flow)
    sent = json.loads(flow.request.raw_content)
    assert (sent[field], "model" in sent) == ("anthropic.claude-3-5-haiku-20241022-v1:0", False)
    assert call.route.target.model == "anthropic.claude-3-5-haiku-20241022-v1:0"


def test_a_bedrock_body_that_names_its_model_deep_inside_goes_as_asked() -> None:
    arn = "anthropic.claude-3-haiku-20240307-v1:0"
    body = {
        "retrieveAndGenerateConfiguration": {
            "type": "EXTERNAL_SOURCES",
            "externalSourcesConfiguration": {"modelArn": arn},
        }
    }
    shared = configured(RULES)
    flow = api_flow("bedrock-agent-runtime.us-east-1.amazonaws.com", "/retrieveAndGenerate", body)
    call = classified(shared, flow)
    sent = flow.request.raw_content
    CallSteps(Overriding(shared).handle).at_request(flow)
    assert (flow.request.raw_content, call.route.target, audit_record(call)["model"]) == (
        sent,
        call.route.requested,
        arn,
    )


# ---- routes to another provider's OpenAI-compatible API


def test_a_route_changes_the_provider_the_path_and_the_model() -> None:
    body = {"model": "gemini-2.0-flash", "messages": [], "stream": True}
    flow, call, _sent = overridden("openai", "/v1/chat/completions?trace=1", body)
    assert (call.route.target.provider, call.route.requested.provider) == ("gemini", "openai")
    assert flow.request.path == "/v1beta/openai/chat/completions?trace=1"
    assert flow.request.raw_content == b'{"model":"gemini-2.5-pro","messages":[],"stream":true}'
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content))
    assert call.route.target.model == "gemini-2.5-pro"
    assert call.route.upstream is None  # Route picks Gemini's own host
    record = audit_record(call)
    assert (record["provider"], record["requested_provider"], record["requested_model"], record["model"]) == (
        "gemini",
        "openai",
        "gemini-2.0-flash",
        "gemini-2.5-pro",
    )


def test_a_route_to_bedrock_goes_to_its_upstream_with_the_model_as_asked() -> None:
    body = {"model": "nova-pro", "messages": []}
    flow, call, sent = overridden("openai", "/v1/chat/completions", body)
    assert (call.route.target.provider, call.route.requested.provider) == ("bedrock", "openai")
    assert flow.request.path == "/openai/v1/chat/completions"
    assert call.route.upstream == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert flow.request.raw_content == sent and call.route.target.model == call.route.requested.model == "nova-pro"


def test_a_route_for_some_clients_only() -> None:
    body = {"model": "claude-sonnet-4-5", "messages": []}
    flow, call, _sent = overridden("openai", "/v1/chat/completions", body, client="ci-nightly")
    assert (call.route.target.provider, flow.request.path) == ("anthropic", "/v1/chat/completions")
    flow, call, _sent = overridden("openai", "/v1/chat/completions", body, client="alice")
    assert (call.route.rerouted, flow.request.path) == (False, "/v1/chat/completions")


def test_a_route_applies_only_to_endpoints_the_target_offers() -> None:
    body = {"model": "gemini-2.0-flash", "input": "hi"}
    flow, call, sent = overridden("openai", "/v1/responses", body)  # Gemini has no OpenAI Responses API
    assert call.route.target == call.route.requested == Target("openai", "gemini-2.0-flash")
    assert (flow.request.path, flow.request.raw_content) == ("/v1/responses", sent)


def test_an_upstream_alone_changes_neither_model_nor_path() -> None:
    flow, call, sent = overridden("openai", "/v1/chat/completions", {"model": "gpt-4.1", "messages": []})
    assert call.route.upstream == "https://llm-gateway.internal:8443"
    assert (call.route.target, flow.request.path, flow.request.raw_content) == (
        Target("openai", "gpt-4.1"),
        "/v1/chat/completions",
        sent,
    )


# ---- what goes as it came


def unchanged(flow: http.HTTPFlow, call: Call, sent: bytes | None, path: str) -> None:
    assert (flow.request.path, flow.request.raw_content) == (path, sent)
    assert (call.route.target, call.route.upstream) == (call.route.requested, None)


def test_a_get_is_untouched_even_when_its_model_matches_a_rule() -> None:
    path = "/v1beta/models/gemini-2.0-flash"
    flow, call, sent = overridden("gemini", path, method="GET")
    assert (call.classification.endpoint, call.classification.model) == ("models.get", "gemini-2.0-flash")
    unchanged(flow, call, sent, path)


def test_a_listing_is_untouched() -> None:
    flow, call, sent = overridden("openai", "/v1/models", method="GET")
    unchanged(flow, call, sent, "/v1/models")
    assert call.route.target.provider == "openai"


@pytest.mark.parametrize(
    ("provider", "path", "body", "groups"),
    [
        ("openai", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}, ("research",)),  # not its group
        ("openai", "/v1/chat/completions", {"model": "gpt-4o-2024-08-06", "messages": []}, ("support",)),
        ("anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "messages": [], "max_tokens": 1}, ()),
        ("gemini", "/v1beta/models/gemini-2.5-pro:generateContent", {"contents": []}, ()),
        ("openai", "/v1/chat/completions", {"model": "same-model", "messages": []}, ()),  # already the model
        ("openai", "/v1/embeddings", {"input": "x"}, ()),  # no model named
    ],
)
def test_a_call_no_rule_changes_goes_as_it_came(provider, path, body, groups) -> None:
    flow, call, sent = overridden(provider, path, body, groups=groups)
    unchanged(flow, call, sent, path)
    assert call.route.target.provider == provider


def test_without_rules_nothing_changes() -> None:
    body = {"model": "gpt-4o", "messages": []}
    flow, call, sent = overridden("openai", "/v1/chat/completions", body, groups=("support",), shared=configured())
    unchanged(flow, call, sent, "/v1/chat/completions")
