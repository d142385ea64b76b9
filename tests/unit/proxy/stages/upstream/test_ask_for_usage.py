"""AskForUsage as a call step: under `audit.stream_usage: inject` an OpenAI-format chat stream is
asked for its usage (`stream_options.include_usage`), keeping the options the client set; nothing
else is touched, nor a body whose SigV4 signature the caller made."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.upstream.stream_tap import AskForUsage
from tollgate.proxy.state import Shared

from ..conftest import HOSTS, api_flow, classified, configured

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)


def asked(
    provider: str,
    path: str,
    body: dict,
    *,
    shared: Shared | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> tuple[http.HTTPFlow, Call, bytes]:
    shared = shared or configured()  # `stream_usage: inject` is the default
    flow = api_flow(HOSTS[provider], path, body, headers=headers)
    call = classified(shared, flow)
    sent = flow.request.raw_content
    assert CallSteps(AskForUsage(shared).handle).at_request(flow) is None
    assert flow.response is None
    return flow, call, sent


def sent_json(flow: http.HTTPFlow) -> dict:
    assert flow.request.headers.get_all("content-length") == [str(len(flow.request.raw_content))]
    return json.loads(flow.request.raw_content)


def test_an_openai_chat_stream_is_asked_for_its_usage() -> None:
    flow, call, _sent = asked("openai", "/v1/chat/completions", CHAT)
    assert flow.request.raw_content == (
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"stream":true,'
        b'"stream_options":{"include_usage":true}}'
    )
    assert sent_json(flow) == {**CHAT, "stream_options": {"include_usage": True}}
    assert call.request.usage_asked is True
    assert call.request.body["stream_options"] == {"include_usage": True}


def test_the_options_the_client_set_are_kept() -> None:
    body = {**CHAT, "stream_options": {"include_obfuscation": False}}
    flow, call, _sent = asked("openai", "/v1/chat/completions", body)
    assert sent_json(flow)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert call.request.usage_asked is True


def test_a_client_that_declined_usage_is_asked_all_the_same() -> None:
    body = {**CHAT, "stream_options": {"include_usage": False}}
    flow, call, _sent = asked("openai", "/v1/chat/completions", body)
    assert sent_json(flow)["stream_options"] == {"include_usage": True}
    assert call.request.usage_asked is True


@pytest.mark.parametrize(
    ("provider", "path", "model"),
    [
        ("gemini", "/v1beta/openai/chat/completions", "gemini-2.0-flash"),
        ("anthropic", "/v1/chat/completions", "claude-sonnet-4-5"),
        ("bedrock", "/openai/v1/chat/completions", "openai.gpt-oss-20b-1:0"),
    ],
)
def test_every_openai_compatible_chat_stream_is_asked(provider, path, model) -> None:
    flow, call, _sent = asked(provider, path, {**CHAT, "model": model}, headers=(("Authorization", "Bearer k"),))
    assert sent_json(flow)["stream_options"] == {"include_usage": True}
    assert call.request.usage_asked is True


def test_a_body_that_changes_loses_the_hash_its_signature_was_verified_over() -> None:
    shared = configured()
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", CHAT)
    call = classified(shared, flow)
    call.request.body_sha256 = "a" * 64
    CallSteps(AskForUsage(shared).handle).at_request(flow)
    assert call.request.usage_asked is True and call.request.body_sha256 is None


# ---- left as they came


def untouched(flow: http.HTTPFlow, call: Call, sent: bytes) -> None:
    assert flow.request.raw_content == sent
    assert flow.request.headers["content-length"] == str(len(sent))
    assert call.request.usage_asked is False


@pytest.mark.parametrize(
    ("provider", "path", "body"),
    [
        ("openai", "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}),  # asked already
        ("openai", "/v1/chat/completions", {**CHAT, "stream": False}),
        ("openai", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}),
        ("openai", "/v1/chat/completions", {**CHAT, "stream_options": "usage"}),  # not ours to read
        ("openai", "/v1/responses", {"model": "gpt-4o", "input": "Hi", "stream": True}),
        ("openai", "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "stream": True}),
        ("anthropic", "/v1/messages", {"model": "claude-sonnet-4-5", "messages": [], "max_tokens": 9, "stream": True}),
        ("gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", {"contents": []}),
        ("bedrock", "/model/amazon.nova-lite-v1%3A0/converse-stream", {"messages": []}),
    ],
)
def test_only_an_openai_format_chat_stream_not_asked_yet_is_changed(provider, path, body) -> None:
    untouched(*asked(provider, path, body))


def test_nothing_is_asked_under_passive() -> None:
    shared = configured({"audit": {"stream_usage": "passive"}})
    untouched(*asked("openai", "/v1/chat/completions", CHAT, shared=shared))


def test_a_body_the_caller_signed_with_sigv4_goes_as_signed() -> None:
    body = {**CHAT, "model": "openai.gpt-oss-20b-1:0"}
    untouched(*asked("bedrock", "/openai/v1/chat/completions", body, headers=(("Authorization", SIGV4),)))
