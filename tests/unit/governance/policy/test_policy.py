"""Rego policies without a proxy: the example policies' decisions, the input document, load errors
that name file, line and column, fail-closed evaluation, hot reload, and `python -m tollgate policy eval`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.test import tflow
from tests.support.examples import examples
from tests.support.runaway_policy import PATHOLOGICAL, RUNAWAY

from tollgate.calls.call import Call, Caller, Route, Target
from tollgate.calls.policy_input import input_facts, policy_input
from tollgate.cli.main import main
from tollgate.configuration.config import Config, load_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.governance.identity.jwt_identity import JwtIdentity
from tollgate.governance.policy.policy import (
    CALL_DECISION,
    INPUT_LAYOUT,
    MCP_DECISION,
    POLICY_ERROR,
    Decision,
    Policy,
    PolicyError,
    facts_read,
    whole,
)
from tollgate.governance.subscriptions.plan import Subscription
from tollgate.providers import PROVIDERS
from tollgate.proxy.flows import CALL
from tollgate.proxy.runner import CallSteps
from tollgate.proxy.stages.policy import decide as decide_module
from tollgate.proxy.stages.policy.decide import Decide
from tollgate.proxy.state import Shared
from tollgate.records.audit.audit_record import audit_record

ROOT = Path(__file__).resolve().parents[4]
ADDONS = ROOT / "addons"
EXAMPLES = ROOT / "docs" / "examples" / "policies"

ALLOWLIST = EXAMPLES / "model_allowlist.rego"
BLOCKED = EXAMPLES / "blocked_group.rego"
CAP = EXAMPLES / "max_tokens_cap.rego"
STREAMING = EXAMPLES / "streaming_clients.rego"
ALL_EXAMPLES = (ALLOWLIST, BLOCKED, CAP, STREAMING)

HOSTS = {
    "openai": "api.openai.com",
    "gemini": "generativelanguage.googleapis.com",
    "anthropic": "api.anthropic.com",
    "bedrock": "bedrock-runtime.us-east-1.amazonaws.com",
}

_compiled: dict[tuple[Path, ...], Policy] = {}


def example(*files: Path) -> Policy:
    """The example policies, compiled once per combination for the whole module."""
    if files not in _compiled:
        _compiled[files] = Policy(files)
    return _compiled[files]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path, seconds: int) -> None:
    """Force a distinct modification time: a rewrite within the clock's granularity may keep it."""
    now = time.time_ns()
    os.utime(path, ns=(now, now + seconds * 10**9))


# --- inputs as the classify and identify stages leave them -----------------------------------------


def call_of(
    provider: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    client: str | None = "alice",
    groups: tuple[str, ...] = ("research",),
    auth: str = "virtual_key",
    model: str | None = None,
    claims: dict[str, Any] | None = None,
    issuer: str = "https://issuer.example",
) -> Call:
    """A Call classified by the provider module itself, from a real request path and body; with
    `claims`, a JWT caller's."""
    call = Call(Route.as_called(provider), HOSTS[provider], method, path)
    call.classified(PROVIDERS[provider].classify(method, path, body))
    call.caller.client, call.caller.groups, call.caller.auth = client, tuple(groups), auth  # type: ignore[assignment]
    if model is not None:  # a rule's
        call.route.target = Target(provider, model)
    if claims is not None:
        call.caller.auth = "jwt"
        call.caller.identity = jwt_identity(issuer, claims)
    return call


def jwt_identity(issuer: str, claims: dict[str, Any]) -> JwtIdentity:
    key = json.dumps(claims, sort_keys=True, separators=(",", ":"))
    return JwtIdentity(issuer, str(claims.get("sub")), (), claims, key, time.time() + 3600)


def request(provider: str, method: str, path: str, body: dict[str, Any] | None = None, **who: Any) -> dict:
    return policy_input(call_of(provider, method, path, body, **who))


ANONYMOUS = {"client": None, "groups": (), "auth": "anonymous"}


def chat(model: str | None = "gpt-4o", max_tokens: int | None = 256, stream: bool = False, **who: Any) -> dict:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if model is not None:
        body["model"] = model
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return request("openai", "POST", "/v1/chat/completions", body, **who)


def responses(model: str = "gpt-4o", max_output_tokens: int | None = 256, **who: Any) -> dict:
    body: dict[str, Any] = {"model": model, "input": "hi"}
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens
    return request("openai", "POST", "/v1/responses", body, **who)


def embeddings(model: str = "text-embedding-3-small", **who: Any) -> dict:
    return request("openai", "POST", "/v1/embeddings", {"model": model, "input": "hi"}, **who)


def list_models(**who: Any) -> dict:
    return request("openai", "GET", "/v1/models", **who)


def messages(model: str = "claude-sonnet-4-5", max_tokens: int | None = 256, stream: bool = False, **who: Any) -> dict:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return request("anthropic", "POST", "/v1/messages", body, **who)


def count_tokens_anthropic(model: str = "claude-sonnet-4-5", **who: Any) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return request("anthropic", "POST", "/v1/messages/count_tokens", body, **who)


def gemini(
    model: str = "gemini-2.0-flash", method: str = "generateContent", max_tokens: int | None = 256, **who: Any
) -> dict:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    if max_tokens is not None:
        body["generationConfig"] = {"maxOutputTokens": max_tokens}
    return request("gemini", "POST", f"/v1beta/models/{model}:{method}", body, **who)


def converse(
    model: str = "amazon.nova-pro-v1:0", op: str = "converse", max_tokens: int | None = 256, **who: Any
) -> dict:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    if max_tokens is not None:
        body["inferenceConfig"] = {"maxTokens": max_tokens}
    return request("bedrock", "POST", f"/model/{model.replace(':', '%3A')}/{op}", body, **who)


def invoke(model: str = "anthropic.claude-3-5-sonnet-20240620-v1:0", max_tokens: int | None = 256, **who: Any) -> dict:
    body: dict[str, Any] = {"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return request("bedrock", "POST", f"/model/{model.replace(':', '%3A')}/invoke", body, **who)


def not_allowed(model: str, groups: str) -> str:
    return f"model {model} is not allowed for groups {groups}"


# --- model_allowlist.rego --------------------------------------------------------------------------

SUPPORT = {"client": "sam", "groups": ("support",)}

ALLOWLIST_CASES = [
    pytest.param(chat("gpt-4o"), [], id="research-gpt-4o"),
    pytest.param(chat("gpt-4o-mini"), [], id="research-gpt-4o-mini"),
    pytest.param(chat("gpt-4o-2024-08-06"), [], id="research-dated-gpt-4o"),
    pytest.param(chat("gpt-4.1-mini"), [], id="research-gpt-4.1-mini"),
    pytest.param(responses("gpt-4.1"), [], id="research-responses-gpt-4.1"),
    pytest.param(messages("claude-opus-4-1"), [], id="research-claude"),
    pytest.param(gemini("gemini-2.5-pro"), [], id="research-gemini-2.5"),
    pytest.param(gemini("gemini-1.5-pro"), [not_allowed("gemini-1.5-pro", '["research"]')], id="research-gemini-1.5"),
    pytest.param(chat("o3"), [not_allowed("o3", '["research"]')], id="research-o3"),
    # glob.match with null delimiters: `*` matches dots too.
    pytest.param(messages("claude-3.7-sonnet"), [], id="glob-across-dots"),
    pytest.param(
        converse("anthropic.claude-3-5-sonnet-20240620-v1:0"),
        [not_allowed("anthropic.claude-3-5-sonnet-20240620-v1:0", '["research"]')],
        id="research-bedrock-model-id",
    ),
    pytest.param(chat("gpt-4o-mini", **SUPPORT), [], id="support-gpt-4o-mini"),
    pytest.param(gemini("gemini-2.0-flash", **SUPPORT), [], id="support-gemini-2.0-flash"),
    pytest.param(gemini("gemini-2.0-flash-001", **SUPPORT), [], id="support-gemini-2.0-flash-001"),
    pytest.param(chat("gpt-4o", **SUPPORT), [not_allowed("gpt-4o", '["support"]')], id="support-gpt-4o"),
    pytest.param(
        chat("gpt-4o-mini-2024-07-18", **SUPPORT),
        [not_allowed("gpt-4o-mini-2024-07-18", '["support"]')],
        id="support-exact-name-only",
    ),
    pytest.param(
        converse("amazon.nova-pro-v1:0", **SUPPORT),
        [not_allowed("amazon.nova-pro-v1:0", '["support"]')],
        id="support-bedrock",
    ),
    # Any one of the caller's groups may permit the model.
    pytest.param(chat("gpt-4.1", client="bob", groups=("support", "research")), [], id="two-groups-one-permits"),
    pytest.param(
        chat("gpt-4.1", client="bob", groups=("support", "ml")),
        [not_allowed("gpt-4.1", '["support", "ml"]')],
        id="two-groups-none-permits",
    ),
    pytest.param(chat("gpt-4o", client="eve", groups=("ml",)), [not_allowed("gpt-4o", '["ml"]')], id="unlisted-group"),
    pytest.param(chat("gpt-4o", client="eve", groups=()), [not_allowed("gpt-4o", "[]")], id="no-groups"),
    pytest.param(chat("gpt-4o", **ANONYMOUS), [not_allowed("gpt-4o", "[]")], id="anonymous"),
    # Calls that name no model pass: listing models, a body without a model.
    pytest.param(list_models(**ANONYMOUS), [], id="model-null-list-models"),
    pytest.param(chat(model=None, client="eve", groups=()), [], id="model-null-body-without-model"),
    pytest.param(request("openai", "GET", "/v1/files/file-abc", **ANONYMOUS), [], id="model-null-files"),
    # A call whose model the provider takes from elsewhere is decided as an upload is.
    pytest.param(
        request("openai", "POST", "/v1/batches", {"input_file_id": "file-1", "completion_window": "24h"}, **SUPPORT),
        ['the model of this batches call is not read; groups ["support"] may not make one'],
        id="support-openai-batch",
    ),
    pytest.param(request("openai", "POST", "/v1/batches", {"input_file_id": "file-1"}), [], id="research-openai-batch"),
    pytest.param(
        request("openai", "POST", "/v1/threads/thread_1/runs", {"assistant_id": "asst_1"}, **SUPPORT),
        ['the model of this threads.runs call is not read; groups ["support"] may not make one'],
        id="support-assistant-run",
    ),
    pytest.param(
        request(
            "anthropic",
            "POST",
            "/v1/messages/batches",
            {"requests": [{"custom_id": "a", "params": {"model": "claude-opus-4-1", "max_tokens": 5}}]},
            **SUPPORT,
        ),
        [not_allowed("claude-opus-4-1", '["support"]')],
        id="support-anthropic-batch-of-one-model",
    ),
    # The policy sees the model actually called, not only the one asked for.
    pytest.param(
        request("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}, model="o1"),
        [not_allowed("o1", '["research"]')],
        id="overridden-model-decides",
    ),
]


@pytest.mark.parametrize(("document", "reasons"), ALLOWLIST_CASES)
def test_model_allowlist(document: dict, reasons: list[str]) -> None:
    decision = example(ALLOWLIST).decide(whole(CALL_DECISION), document)
    assert decision == Decision(tuple(reasons))
    assert decision.allowed is (not reasons)


# --- blocked_group.rego ----------------------------------------------------------------------------

BLOCKED_CASES = [
    pytest.param(chat(client="zed", groups=("suspended",)), ["group suspended is blocked"], id="suspended"),
    pytest.param(
        messages(client="ian", groups=("research", "interns-after-hours")),
        ["group interns-after-hours is blocked"],
        id="one-of-two-groups",
    ),
    pytest.param(
        gemini(client="zed", groups=("interns-after-hours", "suspended")),
        ["group interns-after-hours is blocked", "group suspended is blocked"],
        id="two-blocked-groups-two-reasons-sorted",
    ),
    pytest.param(
        list_models(client="zed", groups=("suspended",)), ["group suspended is blocked"], id="even-listing-models"
    ),
    pytest.param(chat(groups=("research",)), [], id="research"),
    pytest.param(chat(client="eve", groups=()), [], id="no-groups"),
    pytest.param(chat(**ANONYMOUS), [], id="anonymous"),
    pytest.param(chat(client="zed", groups=("Suspended",)), [], id="group-names-are-case-sensitive"),
]


@pytest.mark.parametrize(("document", "reasons"), BLOCKED_CASES)
def test_blocked_group(document: dict, reasons: list[str]) -> None:
    assert example(BLOCKED).decide(whole(CALL_DECISION), document) == Decision(tuple(reasons))


# --- max_tokens_cap.rego ---------------------------------------------------------------------------


def over(max_tokens: int, cap: int = 8192) -> str:
    return f"max_tokens {max_tokens} is over the cap of {cap}"


AGENTS = {"client": "claude-code", "groups": ("research", "agents")}

CAP_CASES = [
    pytest.param(chat(max_tokens=256), [], id="chat-256"),
    pytest.param(chat(max_tokens=8192), [], id="chat-at-cap"),
    pytest.param(chat(max_tokens=0), [], id="chat-0"),
    pytest.param(chat(max_tokens=8193), [over(8193)], id="chat-over-cap"),
    pytest.param(
        request(
            "openai",
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [], "max_completion_tokens": 10000},
        ),
        [over(10000)],
        id="chat-max_completion_tokens-over-cap",
    ),
    pytest.param(responses(max_output_tokens=16384), [over(16384)], id="responses-over-cap"),
    pytest.param(messages(max_tokens=64000), [over(64000)], id="messages-over-cap"),
    pytest.param(gemini(max_tokens=9000), [over(9000)], id="gemini-over-cap"),
    pytest.param(converse(max_tokens=8193), [over(8193)], id="converse-over-cap"),
    pytest.param(invoke(max_tokens=1024), [], id="invoke-1024"),
    # A coding agent's large max_tokens, in the group with the higher cap.
    pytest.param(messages(max_tokens=32000, **AGENTS), [], id="agents-32000"),
    pytest.param(messages(max_tokens=64000, **AGENTS), [], id="agents-at-cap"),
    pytest.param(messages(max_tokens=64001, **AGENTS), [over(64001, 64000)], id="agents-over-cap"),
    # No max_tokens (null): not judged, on any endpoint.
    pytest.param(chat(max_tokens=None), [], id="chat-null"),
    pytest.param(responses(max_output_tokens=None), [], id="responses-null"),
    pytest.param(messages(max_tokens=None), [], id="messages-null"),
    pytest.param(gemini(method="streamGenerateContent", max_tokens=None), [], id="streamGenerateContent-null"),
    pytest.param(converse(op="converse-stream", max_tokens=None), [], id="converse-stream-null"),
    pytest.param(embeddings(), [], id="embeddings-null"),
    pytest.param(list_models(), [], id="models-null"),
    pytest.param(count_tokens_anthropic(), [], id="count_tokens-null"),
    pytest.param(
        request(
            "openai", "POST", "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "max_tokens": 9000}
        ),
        [over(9000)],
        id="legacy-completions-over-cap",
    ),
]


@pytest.mark.parametrize(("document", "reasons"), CAP_CASES)
def test_max_tokens_cap(document: dict, reasons: list[str]) -> None:
    assert example(CAP).decide(whole(CALL_DECISION), document) == Decision(tuple(reasons))


@pytest.mark.parametrize(
    "path", ["/v1/responses/resp_0123", "/v1/chat/completions", "/v1/chat/completions/chatcmpl-0123"]
)
def test_max_tokens_cap_lets_stored_answers_be_read(path: str) -> None:
    assert example(CAP).decide(whole(CALL_DECISION), request("openai", "GET", path)).allowed


# --- streaming_clients.rego ------------------------------------------------------------------------

STREAMING_CASES = [
    pytest.param(chat(stream=True, client="alice"), [], id="alice-streams"),
    pytest.param(chat(stream=True, client="chat-ui", groups=("support",)), [], id="chat-ui-streams"),
    pytest.param(chat(stream=True, client="bob"), ["client bob may not stream"], id="bob-streams"),
    pytest.param(chat(stream=False, client="bob"), [], id="bob-no-stream"),
    pytest.param(messages(stream=True, client="bob"), ["client bob may not stream"], id="bob-anthropic-stream"),
    pytest.param(
        gemini(method="streamGenerateContent", client="bob"), ["client bob may not stream"], id="bob-gemini-stream"
    ),
    pytest.param(gemini(method="streamGenerateContent", client="alice"), [], id="alice-gemini-stream"),
    pytest.param(converse(op="converse-stream", client="bob"), ["client bob may not stream"], id="bob-converse-stream"),
    pytest.param(chat(stream=True, **ANONYMOUS), ["client null may not stream"], id="anonymous-streams"),
    pytest.param(chat(stream=False, **ANONYMOUS), [], id="anonymous-no-stream"),
    pytest.param(list_models(client="bob"), [], id="stream-null"),
    pytest.param(chat(stream=True, client="Alice"), ["client Alice may not stream"], id="names-are-case-sensitive"),
]


@pytest.mark.parametrize(("document", "reasons"), STREAMING_CASES)
def test_streaming_clients(document: dict, reasons: list[str]) -> None:
    assert example(STREAMING).decide(whole(CALL_DECISION), document) == Decision(tuple(reasons))


# --- inference_only.rego ---------------------------------------------------------------------------

INFERENCE_ONLY = EXAMPLES / "inference_only.rego"


def not_inference(endpoint: str, groups: str) -> str:
    return f"endpoint {endpoint} is not inference; groups {groups} may not call it"


TRACES = ("openai", "POST", "/v1/traces/ingest", {"data": [{"object": "trace.span", "id": "span_0"}]})
INFERENCE_ONLY_CASES = [
    # Inference passes for anyone, groups or none.
    pytest.param(chat("gpt-4o", **ANONYMOUS), [], id="chat-anonymous"),
    pytest.param(responses("gpt-4.1", client="eve", groups=()), [], id="responses-no-groups"),
    pytest.param(embeddings(), [], id="embeddings"),
    pytest.param(list_models(**ANONYMOUS), [], id="list-models"),
    pytest.param(messages(), [], id="anthropic-messages"),
    pytest.param(count_tokens_anthropic(), [], id="anthropic-count-tokens"),
    pytest.param(gemini(method="streamGenerateContent"), [], id="gemini-stream"),
    pytest.param(converse(op="converse-stream"), [], id="bedrock-converse-stream"),
    pytest.param(invoke(), [], id="bedrock-invoke"),
    pytest.param(
        request("gemini", "POST", "/v1beta/openai/chat/completions", {"model": "gemini-2.5-pro"}),
        [],
        id="gemini-openai-compatible",
    ),
    # openai-agents' trace upload: refused unless a group allows it.
    pytest.param(request(*TRACES), [not_inference("traces.ingest", '["research"]')], id="traces"),
    pytest.param(request(*TRACES, **ANONYMOUS), [not_inference("traces.ingest", "[]")], id="traces-anonymous"),
    pytest.param(request(*TRACES, groups=("research", "agents")), [], id="traces-agents"),
    pytest.param(request(*TRACES, groups=("platform",)), [], id="traces-platform"),
    pytest.param(request(*TRACES, groups=("data",)), [not_inference("traces.ingest", '["data"]')], id="traces-data"),
    # Files, uploads, batches, fine-tuning, vector stores: the data group, or platform.
    pytest.param(request("openai", "GET", "/v1/files"), [not_inference("files", '["research"]')], id="files-list"),
    pytest.param(request("openai", "POST", "/v1/files"), [not_inference("files", '["research"]')], id="files-upload"),
    pytest.param(request("openai", "GET", "/v1/files/file-abc/content", groups=("data",)), [], id="files-content-data"),
    pytest.param(
        request("openai", "POST", "/v1/batches", {"input_file_id": "file-abc"}, groups=("data",)), [], id="batches-data"
    ),
    pytest.param(
        request("openai", "POST", "/v1/uploads", {"purpose": "batch"}),
        [not_inference("uploads", '["research"]')],
        id="uploads",
    ),
    pytest.param(
        request("openai", "POST", "/v1/vector_stores", {"name": "docs"}, groups=("support",)),
        [not_inference("vector_stores", '["support"]')],
        id="vector-stores",
    ),
    pytest.param(
        request("openai", "POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini"}, groups=("data",)),
        [not_inference("fine_tuning.jobs", '["data"]')],
        id="fine-tuning-data",
    ),
    pytest.param(
        request("openai", "POST", "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini"}, groups=("platform",)),
        [],
        id="fine-tuning-platform",
    ),
    pytest.param(
        request("openai", "POST", "/v1/assistants", {"model": "gpt-4o"}),
        [not_inference("assistants", '["research"]')],
        id="assistants",
    ),
    pytest.param(
        request("anthropic", "POST", "/v1/messages/batches", {"requests": []}),
        [not_inference("messages.batches", '["research"]')],
        id="anthropic-batches",
    ),
    pytest.param(
        request("anthropic", "POST", "/v1/messages/batches", {"requests": []}, groups=("data",)),
        [],
        id="anthropic-batches-data",
    ),
    pytest.param(
        request(
            "gemini",
            "POST",
            "/v1beta/models/gemini-2.0-flash:batchGenerateContent",
            {"batch": {"inputConfig": {"fileName": "files/requests"}}},
        ),
        [not_inference("batchGenerateContent", '["research"]')],
        id="gemini-batch",
    ),
    pytest.param(
        request("gemini", "GET", "/v1beta/cachedContents"),
        [not_inference("cachedContents", '["research"]')],
        id="gemini-cached-contents",
    ),
    pytest.param(
        request("bedrock", "POST", "/async-invoke", {"modelId": "amazon.nova-reel-v1:0"}),
        [not_inference("async-invoke", '["research"]')],
        id="bedrock-async-invoke",
    ),
    # An endpoint Tollgate cannot name is not inference, whatever the groups.
    pytest.param(
        request("openai", "GET", "/v1/file-abc", groups=("platform",)),
        [not_inference("null", '["platform"]')],
        id="endpoint-null",
    ),
]


@pytest.mark.parametrize(("document", "reasons"), INFERENCE_ONLY_CASES)
def test_inference_only(document: dict, reasons: list[str]) -> None:
    assert example(INFERENCE_ONLY).decide(whole(CALL_DECISION), document) == Decision(tuple(reasons))


# --- several policies together ---------------------------------------------------------------------

COMBINED_CASES = [
    pytest.param(chat("gpt-4o", max_tokens=256, stream=True, client="alice"), [], id="allowed-by-all"),
    pytest.param(
        chat("o3", max_tokens=9000, stream=True, client="bob", groups=("suspended",)),
        [
            "client bob may not stream",
            "group suspended is blocked",
            "max_tokens 9000 is over the cap of 8192",
            'model o3 is not allowed for groups ["suspended"]',
        ],
        id="denied-by-all-four",
    ),
    pytest.param(
        messages("claude-opus-4-1", max_tokens=9000, stream=True, client="bob"),
        ["client bob may not stream", over(9000)],
        id="two-reasons",
    ),
    pytest.param(
        gemini("gemini-2.5-pro", method="streamGenerateContent", max_tokens=None, **ANONYMOUS),
        ["client null may not stream", "model gemini-2.5-pro is not allowed for groups []"],
        id="anonymous-gemini-stream",
    ),
    pytest.param(list_models(**ANONYMOUS), [], id="listing-models-anonymously"),
]


@pytest.mark.parametrize(("document", "reasons"), COMBINED_CASES)
def test_examples_loaded_together_combine_their_reasons(document: dict, reasons: list[str]) -> None:
    together = example(*ALL_EXAMPLES).decide(whole(CALL_DECISION), document)
    assert together == Decision(tuple(sorted(reasons)))
    union = sorted({r for f in ALL_EXAMPLES for r in example(f).decide(whole(CALL_DECISION), document).deny_reasons})
    assert list(together.deny_reasons) == union


def test_two_files_and_a_file_of_my_own(tmp_path: Path) -> None:
    mine = write(
        tmp_path / "tools.rego",
        'package tollgate\n\nimport rego.v1\n\ndeny contains "tools are not allowed" if input.request.has_tools\n',
    )
    policy = Policy([BLOCKED, mine])
    document = request(
        "anthropic",
        "POST",
        "/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [], "tools": [{"name": "t"}]},
        client="zed",
        groups=("suspended",),
    )
    assert policy.decide(whole(CALL_DECISION), document) == Decision(
        ("group suspended is blocked", "tools are not allowed")
    )
    assert policy.decide(whole(CALL_DECISION), chat()).allowed


def test_the_same_reason_from_two_rules_is_given_once(tmp_path: Path) -> None:
    policy = Policy(
        [
            write(
                tmp_path / "a.rego", 'package tollgate\nimport rego.v1\ndeny contains "no" if input.request.stream\n'
            ),
            write(
                tmp_path / "b.rego",
                'package tollgate\nimport rego.v1\ndeny contains "no" if input.client.name == "bob"\n',
            ),
        ]
    )
    assert policy.decide(whole(CALL_DECISION), chat(stream=True, client="bob")) == Decision(("no",))


def test_helpers_of_the_same_name_in_two_files_are_one_rule(tmp_path: Path) -> None:
    first = write(
        tmp_path / "a.rego", 'package tollgate\nimport rego.v1\ncap := 4096\ndeny contains "a" if input.x > cap\n'
    )
    same = write(
        tmp_path / "b.rego", 'package tollgate\nimport rego.v1\ncap := 4096\ndeny contains "b" if input.y > cap\n'
    )
    other = write(
        tmp_path / "c.rego", 'package tollgate\nimport rego.v1\ncap := 1000\ndeny contains "c" if input.y > cap\n'
    )
    assert Policy([first, same]).decide(whole(CALL_DECISION), {"x": 1, "y": 5000}) == Decision(("b",))
    assert Policy([first, other]).decide(whole(CALL_DECISION), {"x": 1, "y": 1}).deny_reasons == (POLICY_ERROR,)


def test_a_failing_builtin_denies_as_under_opas_strict_builtin_errors(tmp_path: Path) -> None:
    source = (
        "package tollgate\nimport rego.v1\n"
        'deny contains "glob" if glob.match("gpt-*", [], input.model)\n'
        'deny contains "arithmetic" if input.request.max_tokens * 2 > 10\n'
        'deny contains "not permitted" if not glob.match("gpt-*", [], input.model)\n'
    )
    policy = Policy([write(tmp_path / "p.rego", source)])
    # A null model: glob.match fails, which `opa eval --strict-builtin-errors` reports as an error.
    decision = policy.decide(whole(CALL_DECISION), list_models())
    assert decision.deny_reasons == (POLICY_ERROR,)
    assert decision.error == (
        f"policy evaluation failed: {tmp_path / 'p.rego'}:4: eval_type_error: mul: operand 1 must be number but"
        " got null"
    )
    assert policy.decide(whole(CALL_DECISION), chat("gpt-4o", max_tokens=100)) == Decision(("arithmetic", "glob"))


def test_a_policy_with_an_always_empty_deny_allows_everything(tmp_path: Path) -> None:
    policy = Policy([write(tmp_path / "open.rego", "package tollgate\n\nimport rego.v1\n\ndeny := set()\n")])
    assert policy.decide(whole(CALL_DECISION), chat()) == Decision(())
    assert policy.decide(whole(CALL_DECISION), {}) == Decision(())


# --- the input document ----------------------------------------------------------------------------


def test_policy_input_is_designs_input_document() -> None:
    call = Call(
        Route(Target("openai", "gpt-4o"), Target("openai", "gpt-4o-mini")),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        classification=Classification(
            endpoint="chat.completions",
            model="gpt-4o",
            facts=RequestFacts(
                message_count=3, has_system=True, has_tools=False, stream=False, max_tokens=256, service_tier="flex"
            ),
            wire_format="openai-api",
        ),
        caller=Caller(
            credential_positions=("authorization",), client="alice", groups=("research",), auth="virtual_key"
        ),
    )
    document = policy_input(call)
    assert document == {
        "client": {"name": "alice", "groups": ["research"], "auth": "virtual_key"},
        "provider": "openai",
        "host": "api.openai.com",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o",
        "model": "gpt-4o-mini",
        "publisher": None,
        "fallback_of": None,
        "request": {
            "message_count": 3,
            "has_system": True,
            "has_tools": False,
            "stream": False,
            "max_tokens": 256,
            "service_tier": "flex",
            "speed": None,
            "batch": None,
            "mcp_servers": [],
        },
        "unread": [],
        "findings": None,
        "usage": {},
        "subscription": None,
    }
    # Exactly these keys, in this order, and nothing else (no wire format, no credentials, no ids).
    assert list(document) == [
        "client",
        "provider",
        "host",
        "method",
        "path",
        "endpoint",
        "requested_model",
        "model",
        "publisher",
        "fallback_of",
        "request",
        "unread",
        "findings",
        "usage",
        "subscription",
    ]
    assert list(document["client"]) == ["name", "groups", "auth"]
    assert list(document["request"]) == [
        "message_count",
        "has_system",
        "has_tools",
        "stream",
        "max_tokens",
        "service_tier",
        "speed",
        "batch",
        "mcp_servers",
    ]
    assert json.loads(json.dumps(document)) == document  # plain JSON: groups is a list, not a tuple


def test_a_plan_calls_input_names_its_vendor_and_auth_subscription() -> None:
    call = Call(
        Route.as_called("anthropic", "claude-sonnet-4-5"),
        "api.anthropic.com",
        "POST",
        "/v1/messages",
        classification=Classification(endpoint="messages", model="claude-sonnet-4-5", wire_format="anthropic"),
        caller=Caller(auth="subscription", subscription=Subscription("anthropic")),
    )
    document = policy_input(call)
    assert document["client"] == {"name": None, "groups": [], "auth": "subscription"}
    assert document["subscription"] == {
        "vendor": "anthropic",
        "account": None,
        "email": None,
        "plan": None,
        "tenant": None,
    }


def test_policy_input_without_override_or_facts() -> None:
    call = Call(Route.as_called("gemini"), "generativelanguage.googleapis.com", "GET", "/v1beta/models")
    assert policy_input(call) == {
        "client": {"name": None, "groups": [], "auth": "anonymous"},
        "provider": "gemini",
        "host": "generativelanguage.googleapis.com",
        "method": "GET",
        "path": "/v1beta/models",
        "endpoint": None,
        "requested_model": None,
        "model": None,
        "publisher": None,
        "fallback_of": None,
        "request": {  # nothing read: every fact None, no MCP server
            **dict.fromkeys(
                ("message_count", "has_system", "has_tools", "stream", "max_tokens", "service_tier", "speed", "batch")
            ),
            "mcp_servers": [],
        },
        "unread": [],
        "findings": None,
        "usage": {},
        "subscription": None,
    }


def test_policy_input_model_falls_back_to_the_requested_one() -> None:
    document = request(
        "bedrock",
        "POST",
        "/model/amazon.nova-lite-v1%3A0/converse-stream",
        {
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "system": [{"text": "be brief"}],
            "inferenceConfig": {"maxTokens": 100},
        },
        client="carol",
        groups=("support", "ml"),
        auth="proxyauth",
    )
    assert document == {
        "client": {"name": "carol", "groups": ["support", "ml"], "auth": "proxyauth"},
        "provider": "bedrock",
        "host": "bedrock-runtime.us-east-1.amazonaws.com",
        "method": "POST",
        "path": "/model/amazon.nova-lite-v1%3A0/converse-stream",
        "endpoint": "converse-stream",
        "requested_model": "amazon.nova-lite-v1:0",
        "model": "amazon.nova-lite-v1:0",
        "publisher": None,
        "fallback_of": None,
        "request": {
            "message_count": 1,
            "has_system": True,
            "has_tools": False,
            "stream": True,
            "max_tokens": 100,
            "service_tier": None,
            "speed": None,
            "batch": None,
            "mcp_servers": [],
        },
        "unread": [],
        "findings": None,
        "usage": {},
        "subscription": None,
    }


def test_policy_input_names_the_tools_a_call_grants_and_what_it_cannot_see_into(tmp_path: Path) -> None:
    """A stored prompt's tools are unseen: has_tools is true and `unread` says why; the MCP servers a
    call grants are named, so that a rule may deny one by its URL."""
    stored = request("openai", "POST", "/v1/responses", {"input": "hi", "prompt": {"id": "pmpt_1"}})
    assert (stored["request"]["has_tools"], stored["request"]["has_system"]) == (True, True)
    assert stored["unread"] == ["model", "stored_prompt"]
    mcp = {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"}
    granted = request("openai", "POST", "/v1/responses", {"model": "gpt-5", "input": "hi", "tools": [mcp]})
    assert granted["request"]["mcp_servers"] == [{"url": "https://mcp.deepwiki.com/mcp", "name": "deepwiki"}]
    assert granted["unread"] == []
    source = """package tollgate
import rego.v1
deny contains sprintf("MCP server %s is not allowed", [s.url]) if {
	some s in input.request.mcp_servers
	not startswith(s.url, "https://mcp.internal.example/")
}
deny contains "stored prompts are not allowed" if "stored_prompt" in input.unread
"""
    policy = Policy([write(tmp_path / "mcp.rego", source)])
    assert policy.decide(whole(CALL_DECISION), granted) == Decision(
        ("MCP server https://mcp.deepwiki.com/mcp is not allowed",)
    )
    assert policy.decide(whole(CALL_DECISION), stored) == Decision(("stored prompts are not allowed",))
    assert policy.decide(whole(CALL_DECISION), responses()) == Decision(())


def test_policy_input_takes_what_the_policy_can_check() -> None:
    """The document carries what the classify stage counted, so a policy can test it."""
    policy = Policy([EXAMPLES / "streaming_clients.rego"])
    document = request(
        "openai", "POST", "/v1/responses", {"model": "gpt-4o", "input": "x", "stream": True}, client="bob"
    )
    assert document["endpoint"] == "responses" and document["request"]["stream"] is True
    assert policy.decide(whole(CALL_DECISION), document) == Decision(("client bob may not stream",))


# --- policy.rego in tollgate.yaml ----------------------------------------------------------------


def test_policy_paths_are_relative_to_the_configuration_file(tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    write(conf / "policy.rego", (EXAMPLES / "blocked_group.rego").read_text())
    write(conf / "tollgate.yaml", f"policy:\n  rego: [policy.rego, {STREAMING}]\n")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory does not matter
    config = load_config(conf / "tollgate.yaml", env={})
    assert config.policy.rego == (str(conf / "policy.rego"), str(STREAMING))
    policy = Policy(config.policy.rego)
    assert policy.decide(whole(CALL_DECISION), chat(stream=True, client="bob", groups=("suspended",))) == Decision(
        ("client bob may not stream", "group suspended is blocked")
    )


def test_no_policy_configured(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "tollgate.yaml", "audit: {path: '-'}\n"), env={}).policy.rego == ()


# --- load errors: OPA's own, naming the file and line -----------------------------------------------

UNCLOSED = 'package tollgate\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := "x"\n'


def load_error(files: list[Path]) -> str:
    with pytest.raises(PolicyError) as info:
        Policy(files)
    return str(info.value)


def test_compile_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.rego", UNCLOSED)
    assert load_error([path]) == f"{path}:7: rego_parse_error: unexpected eof token"


def test_a_parse_error_is_named_without_the_source_excerpt_opa_adds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "policy.rego", 'package tollgate\nimport rego.v1\ndeny contains "x" if {\n  input.a ==\n}\n'
    )
    assert load_error([path]) == f"{path}:5: rego_parse_error: unexpected }} token"


def test_every_compile_error_is_named_one_a_line(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.rego", 'package tollgate\ndeny["x"] { input.a }\n')  # Rego v0
    assert load_error([path]) == (
        f"{path}:2: rego_parse_error: `if` keyword is required before rule body\n"
        f"{path}:2: rego_parse_error: `contains` keyword is required for partial set rules"
    )


def test_compile_error_in_the_second_file_names_that_file(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.rego", UNCLOSED)
    assert load_error([BLOCKED, broken]) == f"{broken}:7: rego_parse_error: unexpected eof token"


def test_an_empty_file_does_not_load(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.rego", "")
    assert load_error([path]) == f"{path}:0: rego_parse_error: empty module"


def test_a_file_without_package_does_not_load(tmp_path: Path) -> None:
    path = write(tmp_path / "nopkg.rego", 'deny contains "x" if true\n')
    assert load_error([path]) == f"{path}:1: rego_parse_error: package expected"


def test_compile_error_line_after_non_ascii_text(tmp_path: Path) -> None:
    source = "package tollgate\n# Café — naïve\nimport rego.v1\n\ndeny contains msg if {\n\tx := input.a\n\ty := no_such(x)\n}\n"
    path = write(tmp_path / "policy.rego", source)
    assert load_error([path]) == f"{path}:7: rego_type_error: undefined function no_such"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.rego"
    assert load_error([BLOCKED, path]) == f"{path}: cannot read: No such file or directory"


def test_a_directory_is_not_a_policy(tmp_path: Path) -> None:
    assert load_error([tmp_path]) == f"{tmp_path}: cannot read: Is a directory"


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "latin1.rego", 'package tollgate\n# caf\xe9\ndeny contains "x" if false\n'.encode("latin-1")
    )
    message = load_error([path])
    assert message.startswith(f"{path}: cannot read: ")
    assert "'utf-8' codec can't decode byte 0xe9" in message


def test_utf8_text_in_reasons_is_fine(tmp_path: Path) -> None:
    source = 'package tollgate\nimport rego.v1\ndeny contains "modèle refusé — désolé" if true\n'
    path = write(tmp_path / "utf8.rego", source)
    assert Policy([path]).decide(whole(CALL_DECISION), chat()) == Decision(("modèle refusé — désolé",))


def test_policy_keeps_its_files_in_order(tmp_path: Path) -> None:
    policy = Policy([str(STREAMING), BLOCKED])
    assert policy.files == (STREAMING, BLOCKED)


# --- evaluation problems deny with "policy error" --------------------------------------------------


def runtime_decision(tmp_path: Path, source: str, document: dict | None = None) -> Decision:
    policy = Policy([write(tmp_path / "policy.rego", source)])
    return policy.decide(whole(CALL_DECISION), chat() if document is None else document)


def test_conflicting_values_for_a_complete_rule_deny_with_policy_error(tmp_path: Path) -> None:
    source = (
        "package tollgate\n\nimport rego.v1\n\n"
        'tier := "gold" if input.client.name == "alice"\n'
        'tier := "silver" if "research" in input.client.groups\n\n'
        'deny contains "no tier" if not tier\n'
    )
    decision = runtime_decision(tmp_path, source)  # alice in research: both values, a conflict
    assert decision.deny_reasons == (POLICY_ERROR,) and not decision.allowed
    assert decision.error is not None and decision.error.startswith("policy evaluation failed")
    # The same policy is fine for a caller for whom the rule has one value.
    assert runtime_decision(tmp_path, source, chat(client="bob")) == Decision(())
    assert runtime_decision(tmp_path, source, chat(client="eve", groups=())) == Decision(("no tier",))


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param('deny := "no"', id="a-string"),
        pytest.param("deny := true", id="a-boolean"),
        pytest.param('deny := {"reason": "no"}', id="an-object"),
        pytest.param("deny contains 1 if true", id="a-set-of-numbers"),
        pytest.param('deny := {"no", 1}', id="a-set-with-a-non-string"),
        pytest.param('deny := {"no", null}', id="a-set-with-null"),
        pytest.param('deny := {["a", "b"]}', id="a-set-of-arrays"),
        pytest.param('deny contains msg if { msg := {"reason": input.model} }', id="a-set-of-objects"),
    ],
)
def test_deny_that_is_not_a_set_of_strings_denies_with_policy_error(tmp_path: Path, rule: str) -> None:
    decision = runtime_decision(tmp_path, f"package tollgate\n\nimport rego.v1\n\n{rule}\n")
    assert decision == Decision((POLICY_ERROR,), "data.tollgate.deny is not a set of strings")
    assert not decision.allowed


def test_an_unknown_function_stops_the_policy_loading(tmp_path: Path) -> None:
    source = "package tollgate\n\nimport rego.v1\n\ndeny contains msg if {\n\tmsg := no_such_function(input.model)\n}\n"
    path = write(tmp_path / "p.rego", source)
    assert load_error([path]) == f"{path}:6: rego_type_error: undefined function no_such_function"


def test_a_policy_error_does_not_stick(tmp_path: Path) -> None:
    source = (
        "package tollgate\n\nimport rego.v1\n\n"
        "x := 1 if input.request.stream\nx := 2 if input.request.stream\n\n"
        'deny contains "never" if x == 3\n'
    )
    policy = Policy([write(tmp_path / "policy.rego", source)])
    assert policy.decide(whole(CALL_DECISION), chat(stream=True)).deny_reasons == (POLICY_ERROR,)
    assert policy.decide(whole(CALL_DECISION), chat(stream=False)) == Decision(())
    assert policy.decide(whole(CALL_DECISION), chat(stream=True)).deny_reasons == (POLICY_ERROR,)


UNDEFINED_DENY = {
    "package-typo": 'package tolgate\n\nimport rego.v1\n\ndeny contains "x" if input.request.stream\n',
    "complete-rule-undefined": 'package tollgate\n\nimport rego.v1\n\ndeny := {"streaming"} if input.request.stream\n',
}


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """In a child process: what is tested here used to abort the interpreter (regopy, in C++)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ADDONS, capture_output=True, text=True, timeout=120)


def decisions_in_a_child(path: Path) -> list[str]:
    """Load the policy in a child process; decide a call that streams and one that does not."""
    code = (
        "from tollgate.governance.policy.policy import CALL_DECISION, Policy, PolicyError, whole\n"
        "try:\n"
        f"    policy = Policy([{str(path)!r}])\n"
        "except PolicyError as e:\n"
        "    print('PolicyError', e)\n"
        "else:\n"
        "    for stream in (False, True):\n"
        "        d = policy.decide(whole(CALL_DECISION), {'client': {'name': 'bob', 'groups': [], 'auth': 'anonymous'},"
        " 'request': {'stream': stream}})\n"
        "        print(list(d.deny_reasons))\n"
    )
    done = run_isolated(code)
    # An undefined data.tollgate.deny made regopy's output.binding() abort the process
    # (std::out_of_range, SIGABRT): mitmdump died on the first call.
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    return done.stdout.strip().splitlines()


@pytest.mark.slow
def test_a_complete_deny_rule_that_does_not_hold_allows(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.rego", UNDEFINED_DENY["complete-rule-undefined"])
    assert decisions_in_a_child(path) == ["[]", "['streaming']"]


@pytest.fixture(scope="module")
def typo_decisions(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """What a child given the misspelt package printed (one child for the tests of it)."""
    path = write(tmp_path_factory.mktemp("typo") / "policy.rego", UNDEFINED_DENY["package-typo"])
    return decisions_in_a_child(path)


@pytest.mark.slow
def test_a_policy_without_a_deny_rule_does_not_abort(typo_decisions: list[str]) -> None:
    assert len(typo_decisions) in (1, 2)


def test_a_policy_without_a_deny_rule_does_not_allow_everything(typo_decisions: list[str]) -> None:
    lines = typo_decisions
    assert lines[0].startswith("PolicyError") or "[]" not in lines


# --- the decide stage: 403 in the provider's shape ------------------------------------------------


def flow_for(call: Call, shared: Shared | None = None):
    """A flow carrying the call; with the configuration of `shared`, as Classify gives it."""
    if shared is not None:
        call.loaded = shared.loaded
    flow = tflow.tflow()
    flow.request.method = call.method
    flow.request.host = call.host
    flow.request.path = call.path
    flow.metadata[CALL] = call
    return flow


def shared_with(policy: Policy | None) -> Shared:
    shared = Shared()
    shared.loaded = Loaded.build(Config(), policy)
    return shared


def reload(decide: Decide, policy: Policy) -> None:
    """A reload as the watcher makes it, in an event loop whose end stops the worker it started."""

    async def reloaded() -> None:
        await decide.reload(policy)
        current = decide.shared.loaded.policy
        if current is not None and current is not policy:
            await current.aclose()

    asyncio.run(reloaded())


def hook_run(decide: Decide, flow) -> None:
    """The decide stage's request hook as mitmproxy runs it: a decision not cached comes from the
    policy's worker process, awaited in an event loop (which the worker is stopped before leaving)."""
    call = flow.metadata[CALL]
    call.loaded = call.loaded or decide.shared.loaded  # as Classify takes it
    pending = CallSteps(decide.handle).at_request(flow)
    if pending is None:
        return

    async def finish() -> None:
        try:
            await pending
        finally:
            await decide.shared.loaded.policy.aclose()

    asyncio.run(finish())


DENIED_MESSAGE = "Tollgate policy denied this call: client bob may not stream; group suspended is blocked"


def bob_streaming(provider: str) -> Call:
    who = {"client": "bob", "groups": ("suspended",)}
    if provider == "openai":
        body = {"model": "gpt-4o-mini", "messages": [], "stream": True, "max_tokens": 10}
        return call_of("openai", "POST", "/v1/chat/completions", body, **who)
    if provider == "anthropic":
        body = {"model": "claude-sonnet-4-5", "messages": [], "stream": True, "max_tokens": 10}
        return call_of("anthropic", "POST", "/v1/messages", body, **who)
    if provider == "gemini":
        return call_of(
            "gemini", "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", {"contents": []}, **who
        )
    return call_of("bedrock", "POST", "/model/amazon.nova-lite-v1%3A0/converse-stream", {"messages": []}, **who)


@pytest.mark.parametrize(
    ("provider", "body", "extra_headers"),
    [
        (
            "openai",
            {"error": {"message": DENIED_MESSAGE, "type": "permission_denied", "param": None, "code": "policy_denied"}},
            {"x-should-retry": "false"},
        ),
        (
            "gemini",
            {"error": {"code": 403, "message": DENIED_MESSAGE, "status": "PERMISSION_DENIED"}},
            {"x-should-retry": "false"},
        ),
        (
            "anthropic",
            {"type": "error", "error": {"type": "permission_error", "message": DENIED_MESSAGE}},
            {"x-should-retry": "false"},
        ),
        ("bedrock", {"message": DENIED_MESSAGE}, {"x-amzn-errortype": "AccessDeniedException"}),
    ],
)
def test_decide_refuses_with_403_in_the_providers_shape(provider: str, body: dict, extra_headers: dict) -> None:
    decide = Decide(shared_with(example(BLOCKED, STREAMING)))
    call = bob_streaming(provider)
    flow = flow_for(call)
    hook_run(decide, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert json.loads(flow.response.content) == body
    assert flow.response.headers["x-tollgate-error"] == "policy_denied"
    assert flow.response.headers["x-tollgate-request-id"] == call.request_id
    for name, value in extra_headers.items():
        assert flow.response.headers[name] == value
    assert call.verdict.decision == "deny"
    assert call.verdict.deny_reasons == ("client bob may not stream", "group suspended is blocked")
    assert call.answer.answered_by_tollgate and call.answer.error is None
    record = audit_record(call)
    assert (record["decision"], record["deny_reasons"]) == ("deny", list(call.verdict.deny_reasons))


def test_decide_lets_an_allowed_call_go() -> None:
    decide = Decide(shared_with(example(*ALL_EXAMPLES)))
    call = call_of(
        "openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": [], "stream": True, "max_tokens": 100}
    )
    flow = flow_for(call)
    hook_run(decide, flow)
    assert flow.response is None
    assert (call.verdict.decision, call.verdict.deny_reasons, call.answer.error) == ("allow", (), None)


def test_decide_without_a_policy_allows_everything() -> None:
    decide = Decide(shared_with(None))
    call = bob_streaming("openai")
    flow = flow_for(call)
    hook_run(decide, flow)
    assert flow.response is None and call.verdict.decision == "allow"


def test_decide_on_a_policy_error_denies_and_records_why(tmp_path: Path, caplog) -> None:
    policy = Policy([write(tmp_path / "p.rego", 'package tollgate\nimport rego.v1\ndeny := "not a set"\n')])
    decide = Decide(shared_with(policy))
    call = bob_streaming("anthropic")
    flow = flow_for(call)
    with caplog.at_level(logging.ERROR, logger=decide_module.__name__):
        hook_run(decide, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert json.loads(flow.response.content)["error"]["message"] == "Tollgate policy denied this call: policy error"
    assert (call.verdict.decision, call.verdict.deny_reasons) == ("deny", ("policy error",))
    assert call.answer.error == "data.tollgate.deny is not a set of strings"
    assert "data.tollgate.deny is not a set of strings" in caplog.text


def test_decide_leaves_an_already_answered_call_alone() -> None:
    decide = Decide(shared_with(example(BLOCKED)))
    call = bob_streaming("openai")
    flow = flow_for(call)
    flow.response = tflow.tresp()
    hook_run(decide, flow)
    assert call.verdict.decision == "allow" and flow.response.status_code == 200


# --- hot reload ------------------------------------------------------------------------------------

OPEN = "package tollgate\n\nimport rego.v1\n\ndeny := set()\n"
CLOSED = (
    "package tollgate\n\nimport rego.v1\n\n"
    'deny contains "research is closed today" if "research" in input.client.groups\n'
)


@pytest.mark.slow
def test_an_edit_takes_effect_on_reload(tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "live.rego", OPEN)
    shared = shared_with(Policy([path]))
    decide = Decide(shared)
    old = shared.loaded.policy
    assert old.decide(whole(CALL_DECISION), chat()).allowed

    write(path, CLOSED)
    bump_mtime(path, 1)
    with caplog.at_level(logging.INFO, logger=decide_module.__name__):
        reload(decide, shared.loaded.policy)
    assert shared.loaded.policy is not old
    assert shared.loaded.policy.files == (path,)
    assert shared.loaded.policy.decide(whole(CALL_DECISION), chat()) == Decision(("research is closed today",))
    assert shared.loaded.policy.decide(whole(CALL_DECISION), chat(client="sam", groups=("support",))).allowed
    assert f"policy reloaded from {path}" in caplog.text

    flow = flow_for(call_of("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}))
    hook_run(decide, flow)
    assert flow.response is not None and flow.response.status_code == 403


@pytest.mark.slow
def test_a_broken_edit_keeps_the_last_good_policy(tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "live.rego", CLOSED)
    shared = shared_with(Policy([path]))
    decide = Decide(shared)
    good = shared.loaded.policy

    write(path, "package tollgate\ndeny contains x if {\n")
    bump_mtime(path, 1)
    with caplog.at_level(logging.ERROR, logger=decide_module.__name__):
        reload(decide, shared.loaded.policy)
    assert shared.loaded.policy is good
    assert "policy not reloaded, the last good one stays in force" in caplog.text
    assert f"{path}:3: rego_parse_error: unexpected eof token" in caplog.text
    # The last good policy still decides, from its compiled form (the file on disk is broken).
    assert shared.loaded.policy.decide(whole(CALL_DECISION), chat()) == Decision(("research is closed today",))
    flow = flow_for(call_of("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}))
    hook_run(decide, flow)
    assert flow.response is not None and flow.response.status_code == 403

    # Fixing the file is picked up by the next reload.
    write(path, OPEN)
    bump_mtime(path, 2)
    reload(decide, shared.loaded.policy)
    assert shared.loaded.policy is not good and shared.loaded.policy.decide(whole(CALL_DECISION), chat()).allowed


def test_a_deleted_file_keeps_the_last_good_policy(tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "live.rego", CLOSED)
    shared = shared_with(Policy([path]))
    decide = Decide(shared)
    good = shared.loaded.policy
    path.unlink()
    with caplog.at_level(logging.ERROR, logger=decide_module.__name__):
        reload(decide, shared.loaded.policy)
    assert shared.loaded.policy is good
    assert f"{path}: cannot read: No such file or directory" in caplog.text


def test_reload_does_not_undo_a_configuration_change(tmp_path: Path) -> None:
    path = write(tmp_path / "live.rego", OPEN)
    shared = shared_with(Policy([path]))
    decide = Decide(shared)
    watched = shared.loaded.policy
    replacement = Policy([BLOCKED])
    shared.loaded = Loaded.build(Config(), replacement)  # a new configuration was applied meanwhile
    write(path, CLOSED)
    reload(decide, watched)
    assert shared.loaded.policy is replacement


def test_mtimes_change_when_a_file_is_rewritten(tmp_path: Path) -> None:
    first = write(tmp_path / "a.rego", OPEN)
    second = write(tmp_path / "b.rego", OPEN)
    policy = Policy([first, second])
    before = policy.mtimes()
    assert len(before) == 2 and all(isinstance(m, int) for m in before)
    assert policy.mtimes() == before  # stable while nothing changes

    write(second, CLOSED)
    bump_mtime(second, 5)
    after = policy.mtimes()
    assert after[0] == before[0] and after[1] != before[1]

    second.unlink()
    assert policy.mtimes() == (before[0], None)


@pytest.mark.slow
def test_the_watcher_picks_up_an_edit_and_survives_a_broken_one(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(decide_module, "RELOAD_INTERVAL", 0.01)
    path = write(tmp_path / "live.rego", OPEN)
    shared = shared_with(Policy([path]))
    decide = Decide(shared)
    first = shared.loaded.policy

    async def until(condition, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "the watcher did not act in time"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        decide.running()
        try:
            await asyncio.sleep(0.05)
            assert shared.loaded.policy is first  # nothing changed, nothing reloaded
            write(path, CLOSED)
            bump_mtime(path, 1)
            await until(lambda: shared.loaded.policy is not first)
            second = shared.loaded.policy
            assert not (await second.decide(whole(CALL_DECISION), chat())).allowed  # asked in the loop: in the worker

            write(path, "package tollgate\ndeny contains x if {\n")
            bump_mtime(path, 2)
            await until(lambda: "policy not reloaded" in caplog.text)
            await asyncio.sleep(0.05)  # the broken file is tried once, not in a loop
            assert shared.loaded.policy is second
            assert caplog.text.count("policy not reloaded") == 1
        finally:
            await decide.done()

    with caplog.at_level(logging.INFO, logger=decide_module.__name__):
        asyncio.run(scenario())


@pytest.mark.slow
def test_the_watcher_does_not_compile_again_a_policy_a_new_configuration_brought(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(decide_module, "RELOAD_INTERVAL", 0.01)
    first, second = write(tmp_path / "a.rego", OPEN), write(tmp_path / "b.rego", CLOSED)
    shared = shared_with(Policy([first]))
    decide = Decide(shared)

    async def scenario() -> None:
        decide.running()
        try:
            await asyncio.sleep(0.05)
            brought = Policy([second])  # as a reloaded tollgate.yaml naming another file does
            shared.apply(Loaded.build(Config(), brought), None)
            await asyncio.sleep(0.1)
            assert shared.loaded.policy is brought
            write(second, OPEN)
            bump_mtime(second, 1)
            deadline = time.monotonic() + 5
            while shared.loaded.policy is brought:  # the edit is picked up
                assert time.monotonic() < deadline, "the watcher did not act in time"
                await asyncio.sleep(0.01)
            assert (await shared.loaded.policy.decide(whole(CALL_DECISION), chat())).allowed  # in the worker
        finally:
            await decide.done()

    with caplog.at_level(logging.INFO, logger=decide_module.__name__):
        asyncio.run(scenario())
    assert caplog.text.count("policy reloaded") == 1
    assert decide._watcher is not None and decide._watcher.cancelled()


# --- the time limit: evaluation in a worker process ------------------------------------------------

LIMIT = 0.3
MARGIN = 1.0  # a loaded machine's scheduling, not the evaluation: that is stopped at LIMIT
EXCEEDED = Decision((POLICY_ERROR,), f"policy evaluation exceeded its time limit of {LIMIT:g} s")


def model_call(model: str, messages: int = 1) -> Call:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}] * messages}
    return call_of("openai", "POST", "/v1/chat/completions", body)


def runaway_policy(tmp_path: Path, timeout: float = LIMIT) -> Policy:
    return Policy([write(tmp_path / "runaway.rego", RUNAWAY)], timeout)


async def in_worker(policy: Policy, call: Call) -> Decision:
    decision = policy.decide(CALL_DECISION, input_facts(call))
    return decision if isinstance(decision, Decision) else await decision


async def gone(pid: int, timeout: float = 5.0) -> bool:
    """The process has exited (a zombie counts: it runs no more) within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.slow
def test_an_evaluation_past_the_time_limit_is_stopped_and_denied(tmp_path: Path) -> None:
    policy = runaway_policy(tmp_path)

    async def scenario() -> tuple[Decision, float, bool]:
        try:
            assert await in_worker(policy, model_call("gpt-4o")) == Decision(())  # the worker is up
            worker = policy.worker.pid
            assert worker is not None
            started = time.monotonic()
            decision = await in_worker(policy, model_call(PATHOLOGICAL))
            return decision, time.monotonic() - started, await gone(worker)
        finally:
            await policy.aclose()

    decision, took, killed = asyncio.run(scenario())
    assert decision == EXCEEDED and not decision.allowed
    assert LIMIT <= took < LIMIT + MARGIN
    assert killed, "the worker that exceeded the limit was killed"


@pytest.mark.slow
def test_after_a_timeout_a_new_worker_decides_and_equal_inputs_hit_the_cache(tmp_path: Path) -> None:
    policy = runaway_policy(tmp_path)

    async def scenario() -> None:
        try:
            assert await in_worker(policy, model_call(PATHOLOGICAL)) == EXCEEDED
            # A fresh evaluation is made by a new worker, the regex built-in working as before.
            assert await in_worker(policy, model_call("gpt-4o-mini")) == Decision(())
            assert await in_worker(policy, model_call("gpt-4o!")) == Decision(("bad model name",))
            assert policy.worker.pid is not None
            # Calls with the facts of decided ones are answered at once, without the worker: the
            # timed-out one too (it would take as long again); facts no rule reads do not matter.
            for model, decision in (
                ("gpt-4o-mini", Decision(())),
                ("gpt-4o!", Decision(("bad model name",))),
                (PATHOLOGICAL, EXCEEDED),
            ):
                assert policy.decide(CALL_DECISION, input_facts(model_call(model, messages=3))) == decision
        finally:
            await policy.aclose()

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_worker_that_dies_mid_evaluation_denies_that_call_and_is_replaced(tmp_path: Path) -> None:
    # As when the engine crashes the process it runs in: the proxy would have gone with it.
    policy = runaway_policy(tmp_path, timeout=60)

    async def scenario() -> None:
        try:
            assert await in_worker(policy, model_call("gpt-4o")) == Decision(())
            worker = policy.worker.pid
            hanging = asyncio.ensure_future(in_worker(policy, model_call(PATHOLOGICAL)))
            await asyncio.sleep(0.2)
            assert not hanging.done()
            os.kill(worker, signal.SIGKILL)
            decision = await asyncio.wait_for(hanging, 10)
            assert decision == Decision((POLICY_ERROR,), "policy evaluation failed: the policy worker exited")
            assert await in_worker(policy, model_call("gpt-4o!")) == Decision(("bad model name",))
            assert policy.worker.pid not in (None, worker)
        finally:
            await policy.aclose()

    asyncio.run(scenario())


@pytest.mark.slow
def test_while_an_evaluation_hangs_the_decide_stage_answers_cached_calls_at_once(tmp_path: Path, caplog) -> None:
    policy = runaway_policy(tmp_path)
    decide = Decide(shared_with(policy))
    bad, good = model_call(PATHOLOGICAL), model_call("gpt-4o")
    bad_flow, good_flow = flow_for(bad, decide.shared), flow_for(good, decide.shared)

    async def scenario() -> None:
        try:
            first = CallSteps(decide.handle).at_request(flow_for(model_call("gpt-4o"), decide.shared))
            assert first is not None  # not cached yet: the hook returns what mitmproxy awaits
            await first
            hanging = asyncio.ensure_future(CallSteps(decide.handle).at_request(bad_flow))
            await asyncio.sleep(0.05)
            assert CallSteps(decide.handle).at_request(good_flow) is None  # cached: decided in the hook itself
            assert not hanging.done() and bad_flow.response is None
            await asyncio.wait_for(hanging, LIMIT + MARGIN)
        finally:
            await decide.done()

    with caplog.at_level(logging.ERROR, logger=decide_module.__name__):
        asyncio.run(scenario())
    assert good_flow.response is None and good.verdict.decision == "allow"
    assert bad_flow.response is not None and bad_flow.response.status_code == 403
    assert bad_flow.response.headers["x-tollgate-error"] == "policy_denied"
    assert json.loads(bad_flow.response.content)["error"]["message"] == "Tollgate policy denied this call: policy error"
    record = audit_record(bad)
    assert (record["decision"], record["deny_reasons"], record["error"]) == (
        "deny",
        ["policy error"],
        f"policy evaluation exceeded its time limit of {LIMIT:g} s",
    )
    assert f"Tollgate: policy evaluation exceeded its time limit of {LIMIT:g} s" in caplog.text


@pytest.mark.slow
def test_a_reload_replaces_the_worker(tmp_path: Path) -> None:
    path = write(tmp_path / "live.rego", OPEN)
    shared = shared_with(Policy([path], timeout=LIMIT))
    decide = Decide(shared)

    async def scenario() -> None:
        try:
            decide.running()
            old = shared.loaded.policy
            await CallSteps(decide.handle).at_request(flow_for(model_call("gpt-4o"), shared))
            worker = old.worker.pid
            assert worker is not None
            write(path, CLOSED)
            bump_mtime(path, 1)
            await decide.reload(old)
            assert shared.loaded.policy is not old and shared.loaded.policy.timeout == LIMIT
            assert await gone(worker), "the old policy's worker was stopped"
            flow = flow_for(model_call("gpt-4o"), shared)
            await CallSteps(decide.handle).at_request(flow)
            assert flow.response is not None and flow.response.status_code == 403
            assert shared.loaded.policy.worker.pid not in (None, worker)
        finally:
            await decide.done()

    asyncio.run(scenario())


def test_a_policy_in_force_is_stopped_when_a_configuration_replaces_it(tmp_path: Path) -> None:
    from tollgate.records.audit.auditlog import AuditLog

    shared = shared_with(runaway_policy(tmp_path))
    old = shared.loaded.policy

    async def scenario() -> None:
        assert await in_worker(old, model_call("gpt-4o")) == Decision(())
        worker = old.worker.pid
        audit = AuditLog(str(tmp_path / "audit.jsonl"))
        shared.apply(Loaded.build(Config()), audit)
        assert worker is not None and await gone(worker)
        audit.close()
        await old.aclose()  # waits for the exit to be seen, before the event loop ends

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_start_up_that_fails_before_running_leaves_no_worker_to_wait_for(tmp_path: Path) -> None:
    # mitmproxy stops at start-up (a busy port) by raising SystemExit out of its event loop, after
    # `configure` and before `running`. asyncio then cancels every task, and waits for ever for one
    # cancelled while it makes a process (its pipes never connect): the proxy would never exit.
    script = (
        "import asyncio, sys\n"
        "from tollgate.configuration.config import Config\n"
        "from tollgate.governance.policy.policy import Policy\n"
        "from tollgate.configuration.runtime import Loaded\n"
        "from tollgate.proxy.state import Shared\n"
        "async def main():\n"
        "    Shared().apply(Loaded.build(Config(), Policy([sys.argv[1]], 1.0)), None)  # as configure does\n"
        "    await asyncio.sleep(0)\n"
        "    sys.exit(3)  # as mitmproxy's errorcheck does\n"
        "asyncio.run(main())\n"
    )
    path = write(tmp_path / "open.rego", OPEN)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            env={**os.environ, "PYTHONPATH": str(ADDONS)},
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the event loop never ended: a task waits for a worker process being made")
    assert done.returncode == 3, done.stderr


# --- python -m tollgate policy eval ----------------------------------------------------------------


def write_input(tmp_path: Path, document: dict, name: str = "input.json") -> Path:
    return write(tmp_path / name, json.dumps(document))


def run_eval(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main(["policy", "eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_allowed(tmp_path: Path, capsys) -> None:
    document = write_input(tmp_path, chat("gpt-4o-mini", client="sam", groups=("support",)))
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--input", document)
    assert code == 0
    assert json.loads(out) == {"allowed": True, "deny": []}
    assert err == ""


def test_cli_denied(tmp_path: Path, capsys) -> None:
    document = write_input(tmp_path, chat("gpt-4o", client="sam", groups=("support",)))
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--input", document)
    assert code == 1
    assert json.loads(out) == {"allowed": False, "deny": ['model gpt-4o is not allowed for groups ["support"]']}
    assert err == ""


def test_cli_several_policies(tmp_path: Path, capsys) -> None:
    document = write_input(tmp_path, chat("o3", max_tokens=9000, stream=True, client="bob", groups=("suspended",)))
    args = [a for f in ALL_EXAMPLES for a in ("--policy", f)]
    code, out, _ = run_eval(capsys, *args, "--input", document)
    assert code == 1
    assert json.loads(out) == {
        "allowed": False,
        "deny": [
            "client bob may not stream",
            "group suspended is blocked",
            over(9000),
            'model o3 is not allowed for groups ["suspended"]',
        ],
    }


MCP_POLICY = """
package tollgate.mcp
import rego.v1

deny contains sprintf("%s may not call %s", [input.client.name, input.mcp.tool]) if {
    input.mcp.method == "tools/call"
    input.mcp.tool == "delete_everything"
}
"""


def mcp_input(tool: str) -> dict:
    """What the proxy decides an MCP server's `tools/call` on (`mcp_input.request_input`)."""
    return {
        "client": {"name": "alice", "groups": ["research"], "auth": "virtual_key"},
        "mcp": {"server": "notes", "method": "tools/call", "tool": tool, "resource_scheme": None,
                "prompt": None, "session": None},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tool", "code", "deny"), [("delete_everything", 1, ["alice may not call delete_everything"]), ("add", 0, [])]
)
@pytest.mark.slow
def test_cli_decides_an_mcp_request_by_the_mcp_rules(tmp_path: Path, capsys, tool: str, code: int, deny: list) -> None:
    """An input with `mcp` is an MCP server's request: `data.tollgate.mcp.deny` decides it (the LLM
    calls' allowlist, which would deny an input without a model, does not), and what only LLM calls
    have is not named as lacking."""
    policy = write(tmp_path / "mcp.rego", MCP_POLICY)
    document = write_input(tmp_path, mcp_input(tool))
    assert run_eval(capsys, "--policy", ALLOWLIST, "--policy", policy, "--input", document) == (
        code,
        json.dumps({"allowed": not deny, "deny": deny}, indent=2) + "\n",
        "",
    )


EGRESS_POLICY = """
package tollgate.egress
import rego.v1

deny contains sprintf("%s may not reach %s", [input.client, input.service]) if {
    input.service == "huggingface"
    input.client != "research"
}
"""


@pytest.mark.parametrize(("client", "code"), [("alice", 1), ("research", 0)])
@pytest.mark.slow
def test_cli_decides_a_connection_by_the_egress_rules(tmp_path: Path, capsys, client: str, code: int) -> None:
    """With --egress the input is a connection: `data.tollgate.egress.deny` decides it (the LLM
    calls' allowlist, which would deny an input without a model, does not)."""
    policy = write(tmp_path / "egress.rego", EGRESS_POLICY)
    document = write_input(tmp_path, {
        "client": client, "auth": "proxyauth", "source": "10.0.0.7:51000", "host": "huggingface.co",
        "port": 443, "address": "13.35.1.1", "service": "huggingface",
    })  # fmt: skip
    deny = [] if code == 0 else ["alice may not reach huggingface"]
    assert run_eval(capsys, "--policy", ALLOWLIST, "--policy", policy, "--egress", "--input", document) == (
        code,
        json.dumps({"allowed": not deny, "deny": deny}, indent=2) + "\n",
        "",
    )


def test_cli_refuses_a_kind_of_decision_it_does_not_know(tmp_path: Path, capsys) -> None:
    document = write_input(tmp_path, chat("gpt-4o-mini"))
    assert run_eval(capsys, "--policy", ALLOWLIST, "--kind", "upload", "--input", document) == (
        2,
        "",
        "error: --kind upload: no such kind of decision (kinds: call, mcp, egress, tools)\n",
    )


@pytest.mark.slow
def test_cli_decides_a_connection_named_by_its_kind(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "egress.rego", EGRESS_POLICY)
    document = write_input(tmp_path, {
        "client": "alice", "auth": "proxyauth", "source": "10.0.0.7:51000", "host": "huggingface.co",
        "port": 443, "address": "13.35.1.1", "service": "huggingface",
    })  # fmt: skip
    assert run_eval(capsys, "--policy", policy, "--kind", "egress", "--input", document) == (
        1,
        json.dumps({"allowed": False, "deny": ["alice may not reach huggingface"]}, indent=2) + "\n",
        "",
    )


@pytest.mark.slow
def test_cli_names_what_a_connection_lacks_and_nothing_a_call_has(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "egress.rego", EGRESS_POLICY)
    document = write_input(tmp_path, {"client": "alice", "host": "huggingface.co", "port": 443})
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--policy", policy, "--egress", "--input", document)
    assert (code, json.loads(out)) == (0, {"allowed": True, "deny": []})
    assert err == (
        f"warning: {document} lacks what the policy reads: service; the proxy gives every connection these"
        " (rules that read them do not hold here)\n"
    )


@pytest.mark.parametrize(
    ("rule", "keyed"),
    [
        ('input.mcp.tool == "x"', False),
        ('input.client.name == "x"', False),
        ('input.mcp.session == "x"', True),
        ("input.mcp == {}", True),
        ('input["mcp"] == {}', True),  # input read otherwise than by a path of names
    ],
)
def test_an_mcp_session_keys_the_cache_only_where_a_rule_reads_it(tmp_path: Path, rule: str, keyed: bool) -> None:
    from tollgate.governance.policy.policy import Policy, reads_mcp_session

    source = f'package tollgate.mcp\nimport rego.v1\ndeny contains "no" if {{\n    {rule}\n}}\n'
    assert reads_mcp_session([source]) is keyed
    policy = Policy([write(tmp_path / "mcp.rego", source)])
    evaluated: list[dict] = []
    evaluate = policy._rules.evaluate
    policy._rules.evaluate = lambda doc, rule: evaluated.append(doc) or evaluate(doc, rule)  # type: ignore[method-assign]
    first, second = mcp_input("add"), mcp_input("add")
    first["mcp"]["session"], second["mcp"]["session"] = "session-1", "session-2"
    assert policy.decide(MCP_DECISION, first).allowed and policy.decide(MCP_DECISION, second).allowed
    assert evaluated == ([first, second] if keyed else [first])


def test_every_kind_of_decision_is_asked_one_way_in_process_and_in_the_worker(tmp_path: Path) -> None:
    """A kind of decision is declared once (its rule, its input document, its cache key): one
    declared here, for rules no kind of Tollgate's reads, is asked as the call's, MCP's and
    egress's are, and the worker evaluates each by its own rule."""
    from tollgate.governance.policy.policy import EGRESS_DECISION, DecisionKind, egress_facts

    def keyed(sources):
        return lambda facts: facts[0]

    files = DecisionKind("files", "data.tollgate.files.deny", lambda facts: {"path": facts[0]}, keyed)
    rules = {
        "calls": 'package tollgate\nimport rego.v1\ndeny contains "no tools" if input.request.has_tools\n',
        "mcp": 'package tollgate.mcp\nimport rego.v1\ndeny contains "no delete" if input.mcp.tool == "delete"\n',
        "egress": 'package tollgate.egress\nimport rego.v1\ndeny contains "no paste" if input.host == "pastebin.com"\n',
        "files": 'package tollgate.files\nimport rego.v1\ndeny contains "no secrets" if startswith(input.path, "/etc")\n',
    }
    paths = [write(tmp_path / f"{name}.rego", rule) for name, rule in rules.items()]
    asked = [
        (CALL_DECISION, input_facts(call_of("openai", "POST", "/v1/chat/completions", {"model": "m", "tools": [{}]}))),
        (MCP_DECISION, {"client": {"name": "sam"}, "mcp": {"method": "tools/call", "tool": "delete"}}),
        (EGRESS_DECISION, egress_facts(None, None, None, "pastebin.com", 443, None, None)),
        (files, ("/etc/shadow",)),
        (files, ("/tmp/x",)),
    ]
    expected = [("no tools",), ("no delete",), ("no paste",), ("no secrets",), ()]
    here = Policy(paths)
    assert [here.decide(kind, facts).deny_reasons for kind, facts in asked] == expected
    apart = Policy(paths, apart=True)

    async def in_worker() -> list[Decision]:
        try:
            decided = []
            for kind, facts in asked:
                decision = apart.decide(kind, facts)
                decided.append(decision if isinstance(decision, Decision) else await decision)
            return decided
        finally:
            await apart.aclose()

    assert [d.deny_reasons for d in asyncio.run(in_worker())] == expected
    # Each kind's decisions are kept apart: the same facts asked of another kind are not its hit.
    assert here.decide(files, ("/etc/shadow",)).deny_reasons == ("no secrets",)


def test_cli_an_llm_call_is_not_decided_by_the_mcp_rules(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "mcp.rego", MCP_POLICY)
    document = write_input(tmp_path, chat("gpt-4o-mini", client="sam", groups=("support",)))
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--policy", policy, "--input", document)
    assert (code, json.loads(out), err) == (0, {"allowed": True, "deny": []}, "")


def test_cli_runtime_policy_error_is_a_denial_with_the_error(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "p.rego", "package tollgate\nimport rego.v1\ndeny contains 7 if true\n")
    code, out, _ = run_eval(capsys, "--policy", policy, "--input", write_input(tmp_path, chat()))
    assert code == 1
    assert json.loads(out) == {
        "allowed": False,
        "deny": ["policy error"],
        "error": "data.tollgate.deny is not a set of strings",
    }


@pytest.mark.slow
def test_cli_stops_a_runaway_evaluation_at_the_time_limit(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "p.rego", RUNAWAY)
    document = write_input(tmp_path, {"model": PATHOLOGICAL})
    started = time.monotonic()
    code, out, err = run_eval(capsys, "--policy", policy, "--input", document, "--timeout", str(LIMIT))
    assert time.monotonic() - started < 5 + LIMIT  # starting the worker, then at most the limit
    assert (code, err) == (1, "")
    assert json.loads(out) == {"allowed": False, "deny": ["policy error"], "error": EXCEEDED.error}
    code, out, _ = run_eval(capsys, "--policy", policy, "--input", write_input(tmp_path, {"model": "gpt-4o!"}))
    assert (code, json.loads(out)) == (1, {"allowed": False, "deny": ["bad model name"]})


@pytest.mark.parametrize("timeout", ["0", "-1", "soon"])
def test_cli_timeout_must_be_a_positive_number(tmp_path: Path, capsys, timeout: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["policy", "eval", "--policy", str(ALLOWLIST), "--input", "x.json", "--timeout", timeout])
    assert info.value.code == 2
    assert f"argument --timeout: invalid positive value: {timeout!r}" in capsys.readouterr().err


def test_cli_broken_policy(tmp_path: Path, capsys) -> None:
    policy = write(tmp_path / "broken.rego", UNCLOSED)
    code, out, err = run_eval(capsys, "--policy", BLOCKED, "--policy", policy, "--input", write_input(tmp_path, chat()))
    assert code == 2
    assert err == f"error: {policy}:7: rego_parse_error: unexpected eof token\n"
    assert "allowed" not in out


def test_cli_broken_policy_prints_nothing_on_stdout(tmp_path: Path, capfd) -> None:
    policy = write(tmp_path / "broken.rego", UNCLOSED)
    code = main(["policy", "eval", "--policy", str(policy), "--input", str(write_input(tmp_path, chat()))])
    out, err = capfd.readouterr()
    assert code == 2 and f"{policy}:7: rego_parse_error: unexpected eof token" in err
    assert out == ""


def test_cli_missing_policy_file(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere.rego"
    code, out, err = run_eval(capsys, "--policy", missing, "--input", write_input(tmp_path, chat()))
    assert (code, out) == (2, "")
    assert err == f"error: {missing}: cannot read: No such file or directory\n"


@pytest.mark.parametrize(
    "text", ['{"client": ', "not json at all", "", "\xff"], ids=["truncated", "text", "empty", "not-utf8"]
)
def test_cli_bad_input_json(tmp_path: Path, capsys, text: str) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(text.encode("latin-1"))
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--input", path)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {path}: ")


def test_cli_missing_input_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "nowhere.json"
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--input", path)
    assert (code, out) == (2, "")
    assert err == f"error: {path}: [Errno 2] No such file or directory: '{path}'\n"


def test_cli_input_from_stdin(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(chat(stream=True, client="bob"))))
    code, out, _ = run_eval(capsys, "--policy", STREAMING, "--input", "-")
    assert code == 1
    assert json.loads(out) == {"allowed": False, "deny": ["client bob may not stream"]}


def test_cli_input_that_is_not_an_object_still_gets_a_decision(tmp_path: Path, capsys) -> None:
    # The input document is whatever JSON the file holds; rules that look into it do not match.
    code, out, _ = run_eval(capsys, "--policy", ALLOWLIST, "--input", write(tmp_path / "i.json", "[1, 2]"))
    assert code == 0 and json.loads(out) == {"allowed": True, "deny": []}


def test_cli_policy_eval_requires_policy_and_input(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["policy", "eval", "--input", "x.json"])
    assert info.value.code == 2
    assert "--policy" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_undefined_deny_does_not_abort(tmp_path: Path) -> None:
    policy = write(tmp_path / "typo.rego", UNDEFINED_DENY["package-typo"])
    document = write_input(tmp_path, chat())
    done = subprocess.run(
        [sys.executable, "-m", "tollgate", "policy", "eval", "--policy", str(policy), "--input", str(document)],
        cwd=ADDONS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # It aborted (SIGABRT, exit -6) when data.tollgate.deny was undefined.
    assert done.returncode in (0, 1, 2), f"exit {done.returncode}: {done.stderr[-500:]}"


def evaluations(policy) -> list[dict]:
    """The documents the policy evaluates from now on, in order (cache hits are not evaluated)."""
    calls: list[dict] = []
    evaluate = policy._evaluate
    policy._evaluate = lambda kind, doc: calls.append(doc) or evaluate(kind, doc)
    return calls


def test_equal_inputs_are_decided_once(tmp_path: Path) -> None:
    from tollgate.governance.policy.policy import Policy

    path = tmp_path / "p.rego"
    path.write_text('package tollgate\nimport rego.v1\ndeny contains "big" if input.request.max_tokens > 10\n')
    policy = Policy([path])
    calls = evaluations(policy)
    big, small = {"request": {"max_tokens": 11}}, {"request": {"max_tokens": 1}}
    assert [policy.decide(whole(CALL_DECISION), d).deny_reasons for d in (big, small, big, small)] == [
        ("big",),
        (),
        ("big",),
        (),
    ]
    assert calls == [big, small]


def test_a_call_is_decided_on_its_input_document_and_equal_calls_once(tmp_path: Path) -> None:
    from tollgate.governance.policy.policy import Policy

    path = tmp_path / "p.rego"
    path.write_text(
        'package tollgate\nimport rego.v1\ndeny contains "big" if input.request.max_tokens > 10\n'
        'deny contains "research" if "research" in input.client.groups\n'
    )
    policy = Policy([path])
    calls = evaluations(policy)
    big, small = (
        call_of("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "max_tokens": 11}),
        call_of("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "max_tokens": 1}, groups=("support",)),
    )
    decisions = [policy.decide(CALL_DECISION, input_facts(c)).deny_reasons for c in (big, small, big, small)]
    assert decisions == [("big", "research"), (), ("big", "research"), ()]
    assert calls == [policy_input(big), policy_input(small)]
    # A fact no rule reads makes no other decision; a fact one reads does.
    small.route.target = Target("openai", "gpt-4o-mini")
    assert policy.decide(CALL_DECISION, input_facts(small)).allowed
    assert len(calls) == 2
    small.caller.groups = ("research",)
    assert policy.decide(CALL_DECISION, input_facts(small)).deny_reasons == ("research",)
    assert len(calls) == 3 and calls[-1]["model"] == "gpt-4o-mini"


def test_the_overrides_model_is_read_by_a_policy_that_reads_the_model(tmp_path: Path) -> None:
    from tollgate.governance.policy.policy import Policy

    path = tmp_path / "p.rego"
    path.write_text('package tollgate\nimport rego.v1\ndeny contains "mini" if input.model == "gpt-4o-mini"\n')
    policy = Policy([path])
    calls = evaluations(policy)
    call = call_of("openai", "POST", "/v1/chat/completions", {"model": "gpt-4o", "max_tokens": 1})
    assert policy.decide(CALL_DECISION, input_facts(call)).allowed
    call.route.target = Target("openai", "gpt-4o-mini")
    assert policy.decide(CALL_DECISION, input_facts(call)).deny_reasons == ("mini",)
    assert [c["model"] for c in calls] == ["gpt-4o", "gpt-4o-mini"]


# --- which facts a policy reads: the decision cache's key ---------------------------------------


def test_facts_read_by_the_examples() -> None:
    def read(path: Path) -> list[str]:
        return [_fact_path(i) for i in facts_read([path.read_text()])]

    assert read(ALLOWLIST) == ["client.groups", "endpoint", "model", "unread"]
    assert read(BLOCKED) == ["client.groups"]
    assert read(CAP) == ["client.groups", "request.max_tokens"]
    assert read(STREAMING) == ["client.name", "request.stream"]
    assert facts_read(p.read_text() for p in ALL_EXAMPLES) == (0, 1, 7, 9, 13, 14, 15)


# Every fact beneath `input.request`, in the document's order.
REQUEST_FACTS = [
    "request.message_count",
    "request.has_system",
    "request.has_tools",
    "request.stream",
    "request.max_tokens",
    "request.service_tier",
    "request.speed",
    "request.batch",
    "request.mcp_servers",
]


@pytest.mark.parametrize(
    ("source", "read"),
    [
        pytest.param(
            "x := input.request",
            REQUEST_FACTS,
            id="a-path-reads-what-is-beneath",
        ),
        pytest.param("x := input.client.groups[_]", ["client.groups"], id="an-index-after-a-path"),
        pytest.param(
            'x := input.client["name"]', ["client.name", "client.groups", "client.auth"], id="a-key-after-a-path"
        ),
        pytest.param("x := input . model", ["model"], id="spaces-around-the-dot"),
        pytest.param("x := input.client.name.first", ["client.name"], id="beneath-a-leaf"),
        pytest.param("x := input.tenant", [], id="a-field-the-document-lacks"),
        pytest.param(
            "import input.request as r\nx := r.stream",
            REQUEST_FACTS,
            id="import-of-a-path",
        ),
        pytest.param('msg := "input.host"', ["host"], id="a-path-in-a-string-counts"),
        pytest.param("# input.host\nx := input.path", ["path"], id="a-comment-reads-nothing"),
        pytest.param("x := input_tokens", [], id="a-longer-name"),
        pytest.param("x := 1", [], id="no-input"),
    ],
)
def test_facts_read(source: str, read: list[str]) -> None:
    assert [_fact_path(i) for i in facts_read([source])] == sorted(read, key=_fact_index)


@pytest.mark.parametrize(
    "source",
    [
        "x := input",
        'x := input["model"]',
        "x := input[k]",
        "x := walk(input)",
        'x := object.get(input, ["request", "max_tokens"], 0)',
        "import input\nx := input.model",
        "import input as i",
        'deny contains "x" if { true with input as {} }',
        'msg := "bad input"',
        'msg := "a#b"; x := input',
        "x := `raw#` ; y := input",
    ],
)
def test_any_other_use_of_input_reads_every_fact(source: str) -> None:
    assert facts_read([source]) is None


def _fact_index(path: str) -> int:
    node: Any = INPUT_LAYOUT
    for name in path.split("."):
        node = node[name]
    return node


def _fact_path(index: int) -> str:
    def walk(node: dict, prefix: str) -> str | None:
        for name, child in node.items():
            found = walk(child, f"{prefix}{name}.") if isinstance(child, dict) else child == index and prefix + name
            if found:
                return found
        return None

    return walk(INPUT_LAYOUT, "") or f"?{index}"


@pytest.mark.parametrize(
    ("system", "tools", "stream"), [(True, False, False), (False, True, False), (False, False, True)]
)
def test_the_layout_is_where_the_input_document_puts_each_fact(system: bool, tools: bool, stream: bool) -> None:
    messages = [{"role": "system", "content": "s"}] * system + [{"role": "user", "content": "u"}]
    body = {
        "model": "gpt-4o",
        "max_tokens": 7,
        "stream": stream,
        "messages": messages,
        **({"tools": [{}]} if tools else {}),
    }
    call = call_of(
        "openai",
        "POST",
        "/v1/chat/completions",
        body,
        groups=("research", "support"),
        model="gpt-4o-mini",
        claims={"sub": "alice", "agent_role": "read-only"},
    )
    facts = input_facts(call)
    document = policy_input(call)
    assert call.caller.identity is not None
    document["identity"] = call.caller.identity  # the fact; the document holds its issuer and claims
    document["usage"] = list(call.ledger.usage_counters)  # likewise: the document holds them by limit and subject
    assert policy_input(call)["identity"] == {
        "issuer": "https://issuer.example",
        "claims": {"sub": "alice", "agent_role": "read-only"},
    }
    assert sorted(_fact_index(path) for path in map(_fact_path, range(len(facts)))) == list(range(len(facts)))
    for index, fact in enumerate(facts):
        value: Any = document
        for name in _fact_path(index).split("."):
            value = value[name]
        assert value == (list(fact) if isinstance(fact, tuple) else fact), _fact_path(index)


CALL_FACTS = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o", "gpt-4o-mini", "gpt-4.1", None]),
        "max_tokens": st.sampled_from([None, 1, 4096, 4097]),
        "stream": st.booleans(),
        "messages": st.integers(1, 3),
        "client": st.sampled_from(["alice", "chat-ui", "bob", None]),
        "groups": st.lists(st.sampled_from(["research", "support", "suspended"]), max_size=2, unique=True).map(tuple),
        "override": st.sampled_from([None, "gpt-4o-mini"]),
    }
)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(CALL_FACTS, min_size=1, max_size=12))
def test_a_cached_decision_is_the_decision_evaluated_anew(calls: list[dict]) -> None:
    # The same Policy across examples: its cache fills with keys of the facts it reads, so calls
    # that differ only in other facts meet decisions made for each other.
    for files in ((ALLOWLIST,), (CAP, STREAMING), ALL_EXAMPLES):
        policy = example(*files)
        for facts in calls:
            body = {
                "messages": [{"role": "user", "content": "hi"}] * facts["messages"],
                "stream": facts["stream"],
                **({"model": facts["model"]} if facts["model"] else {}),
                **({"max_tokens": facts["max_tokens"]} if facts["max_tokens"] is not None else {}),
            }
            call = call_of(
                "openai",
                "POST",
                "/v1/chat/completions",
                body,
                client=facts["client"],
                groups=facts["groups"],
                model=facts["override"],
            )
            assert policy.decide(CALL_DECISION, input_facts(call)) == policy._evaluate(
                CALL_DECISION, policy_input(call)
            )


def test_a_policy_that_reads_the_clock_is_evaluated_every_time(tmp_path: Path) -> None:
    from tollgate.governance.policy.policy import Policy

    path = tmp_path / "p.rego"
    path.write_text('package tollgate\nimport rego.v1\ndeny contains "late" if time.now_ns() < 0\n')
    policy = Policy([path])
    calls = evaluations(policy)
    for _ in range(3):
        assert policy.decide(whole(CALL_DECISION), {}).allowed
    assert len(calls) == 3


# --- docs/examples/policies/jwt_claims.rego: decisions on a JWT caller's claims -----------------------

JWT_CLAIMS = EXAMPLES / "jwt_claims.rego"
GITHUB = "https://token.actions.githubusercontent.com"


def test_jwt_claims_example_decides_on_a_claim() -> None:
    policy = example(JWT_CLAIMS)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    read_only = call_of("openai", "POST", "/v1/chat/completions", body, claims={"sub": "a", "agent_role": "read-only"})
    assert policy.decide(CALL_DECISION, input_facts(read_only)).deny_reasons == (
        "agent role read-only may not call chat.completions",
    )
    listing = call_of("openai", "GET", "/v1/models", None, claims={"sub": "a", "agent_role": "read-only"})
    assert policy.decide(CALL_DECISION, input_facts(listing)).allowed
    writer = call_of("openai", "POST", "/v1/chat/completions", body, claims={"sub": "a", "agent_role": "writer"})
    assert policy.decide(CALL_DECISION, input_facts(writer)).allowed
    branch = call_of(
        "openai", "POST", "/v1/chat/completions", body, issuer=GITHUB, claims={"sub": "repo:x", "ref": "refs/heads/dev"}
    )
    assert policy.decide(CALL_DECISION, input_facts(branch)).deny_reasons == (
        "workflows may call only from refs/heads/main, not refs/heads/dev",
    )
    main = call_of(
        "openai",
        "POST",
        "/v1/chat/completions",
        body,
        issuer=GITHUB,
        claims={"sub": "repo:x", "ref": "refs/heads/main"},
    )
    assert policy.decide(CALL_DECISION, input_facts(main)).allowed
    # Callers identified otherwise have no input.identity: neither rule applies.
    assert "identity" not in policy_input(call_of("openai", "POST", "/v1/chat/completions", body))
    assert policy.decide(CALL_DECISION, input_facts(call_of("openai", "POST", "/v1/chat/completions", body))).allowed


def test_a_rule_on_claims_reads_the_identity_fact() -> None:
    assert facts_read([JWT_CLAIMS.read_text()]) == (7, 16)


CLAIMS = st.fixed_dictionaries(
    {
        "endpoint": st.sampled_from(["/v1/chat/completions", "/v1/models"]),
        "issuer": st.sampled_from([GITHUB, "https://issuer.example"]),
        "claims": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"sub": st.sampled_from(["a", "b"])},
                optional={
                    "agent_role": st.sampled_from(["read-only", "writer", 7]),
                    "ref": st.sampled_from(["refs/heads/main", "refs/heads/dev"]),
                    "exp": st.integers(1, 3),
                },
            ),
        ),
    }
)


@settings(max_examples=examples(80), deadline=None)
@given(st.lists(CLAIMS, min_size=1, max_size=12))
def test_a_cached_decision_on_claims_is_the_decision_evaluated_anew(calls: list[dict]) -> None:
    # Calls that differ only in their claims (or issuer) must not meet each other's decisions.
    for files in ((JWT_CLAIMS,), (JWT_CLAIMS, ALLOWLIST)):
        policy = example(*files)
        for facts in calls:
            method = "GET" if facts["endpoint"] == "/v1/models" else "POST"
            body = {"model": "gpt-4o", "messages": []} if method == "POST" else None
            call = call_of("openai", method, facts["endpoint"], body, claims=facts["claims"], issuer=facts["issuer"])
            assert policy.decide(CALL_DECISION, input_facts(call)) == policy._evaluate(
                CALL_DECISION, policy_input(call)
            )


@pytest.mark.slow
def test_cli_names_what_the_policy_reads_that_the_input_lacks(tmp_path: Path, capsys) -> None:
    # The fields a hand-written input leaves out are undefined in Rego, so the rules reading them
    # do not hold: without its groups, sam's gpt-4o passes here, where the proxy would deny it.
    document = chat("gpt-4o", client="sam", groups=("support",))
    del document["unread"], document["request"]["max_tokens"]
    document["client"] = {"name": "sam"}
    path = write_input(tmp_path, document)
    code, out, err = run_eval(capsys, "--policy", ALLOWLIST, "--policy", CAP, "--input", path)
    assert (code, json.loads(out)) == (0, {"allowed": True, "deny": []})
    assert err == (
        f"warning: {path} lacks what the policy reads: client.groups, unread, request.max_tokens; the proxy"
        " gives every call these (rules that read them do not hold here)\n"
    )
    # Not lacking: `identity`, which only a JWT caller's call has, nor a path into a null value.
    policy = write(
        tmp_path / "p.rego",
        "package tollgate\nimport rego.v1\n"
        'deny contains "batch" if input.request.batch.requests > 1\n'
        'deny contains "jwt" if input.identity.claims.role == "x"\n',
    )
    code, out, err = run_eval(capsys, "--policy", policy, "--input", write_input(tmp_path, chat()))
    assert (code, json.loads(out), err) == (0, {"allowed": True, "deny": []}, "")


def test_the_docs_policy_eval_example_is_what_the_command_does(tmp_path: Path, capsys) -> None:
    readme = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    example = re.search(r"cat > input\.json <<'EOF'\n(.*?)\nEOF\n(tollgate policy eval [^\n]*)\n", readme, re.DOTALL)
    assert example is not None
    document = write(tmp_path / "input.json", example.group(1))
    args = [str(ROOT / a) if a.startswith("docs/") else a for a in example.group(2).split()[1:]]
    code = main([str(document) if a == "input.json" else a for a in args])
    out, err = capsys.readouterr()
    said = re.search(r"It prints `(.*?)`\s*\(indented\) and exits (\d)", readme, re.DOTALL)
    assert said is not None
    assert (code, json.loads(out), err) == (int(said.group(2)), json.loads(said.group(1).replace("\n", " ")), "")


def test_policy_input_names_the_target_a_fallback_takes_the_call_from() -> None:
    call = Call(Route(Target("openai", None), Target("openai", "o3")), "api.openai.com", "POST", "/v1/chat/completions")
    call.failover.fallback_of = ("openai", "gpt-4o")
    assert policy_input(call)["fallback_of"] == {"provider": "openai", "model": "gpt-4o"}
    assert facts_read(['input.fallback_of.model == "gpt-4o"']) == (23,)
