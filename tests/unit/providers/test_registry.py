"""What holds for every provider: hosts, refusals in each error shape, credential positions, and
robustness (nothing a client or upstream sends raises)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.addons.next_layer import NextLayer
from mitmproxy.connection import Client, Server
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons
from tests.support.examples import examples

from tollgate.common.host_globs import globs_overlap
from tollgate.formats import refusals as refusals_mod
from tollgate.formats.anthropic_messages import errors as anthropic_errors
from tollgate.formats.bedrock_converse import errors as bedrock_errors
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.gemini_generate import errors as gemini_errors
from tollgate.formats.openai_chat import errors as openai_errors
from tollgate.formats.refusals import STATUS
from tollgate.formats.registry import WIRE_FORMATS
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.usage import Usage
from tollgate.providers import BUILT_IN_HOSTS, PROVIDERS, Hosts, allow_hosts, provider_for

from .common import (
    ALL_ENDPOINTS,
    ANTHROPIC,
    BEDROCK,
    GEMINI,
    OPENAI,
    PATHS,
    REASONS,
    VENDORS,
    classify,
    header_texts,
    headers,
    json_bodies,
)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.openai.com", 443, "openai"),
        ("API.OpenAI.com", 443, "openai"),
        ("generativelanguage.googleapis.com", 443, "gemini"),
        ("api.anthropic.com", 443, "anthropic"),
        ("bedrock-runtime.us-east-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime.eu-central-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-runtime-fips.us-east-1.amazonaws.com", 443, "bedrock"),
        ("api.openai.com", 80, "openai"),  # refused as plain HTTP, not passed by
        ("api.openai.com", 8443, "openai"),
        ("api.openai.com.", 443, "openai"),
        ("API.OPENAI.COM.", 443, "openai"),
        ("Bedrock-Runtime.US-East-1.amazonaws.com.", 443, "bedrock"),
        ("api.openai.com..", 443, None),
        # Data residency: each region's host is OpenAI's API too.
        ("eu.api.openai.com", 443, "openai"),
        ("us.api.openai.com", 443, "openai"),
        ("EU.API.OpenAI.com.", 443, "openai"),
        ("jp.api.openai.com", 443, "openai"),
        ("x.eu.api.openai.com", 443, None),
        ("eu.api.openai.com.evil.example", 443, None),
        ("euapi.openai.com", 443, None),
        ("api.openai.com.evil.example", 443, None),
        ("evilapi.openai.com", 443, None),
        ("xapi.anthropic.com", 443, None),
        ("files.openai.com", 443, None),
        ("bedrock.us-east-1.amazonaws.com", 443, "bedrock"),  # the control plane: its jobs
        ("bedrock-agent-runtime.us-east-1.amazonaws.com", 443, "bedrock"),
        ("bedrock-agent.us-east-1.amazonaws.com", 443, None),  # where agents are built, no model runs
        ("bedrock-runtime.us-east-1.amazonaws.com.evil.example", 443, None),
        ("s3.amazonaws.com", 443, None),
        ("example.com", 443, None),
        ("aiplatform.googleapis.com", 443, "vertex"),
        ("us-central1-aiplatform.googleapis.com", 443, "vertex"),
        ("aiplatform.eu.rep.googleapis.com", 443, "vertex"),
        ("AIPlatform.GoogleAPIs.com.", 443, "vertex"),
        ("aiplatform.googleapis.com.evil.example", 443, None),
        ("xaiplatform.googleapis.com", 443, None),
        ("-aiplatform.googleapis.com", 443, None),
        ("aiplatform.eu.rep.googleapis.com.evil.example", 443, None),
        ("ml.googleapis.com", 443, None),
        ("my-res.openai.azure.com", 443, "azure"),
        ("My-Res.OpenAI.Azure.com.", 443, "azure"),
        ("my-res.cognitiveservices.azure.com", 443, "azure"),
        ("my-res.services.ai.azure.com", 443, "azure"),
        ("a.b.openai.azure.com", 443, None),
        ("-res.openai.azure.com", 443, None),
        ("openai.azure.com", 443, None),
        ("management.azure.com", 443, None),
        ("my-res.openai.azure.com.evil.example", 443, None),
        # Azure Government and Azure in China
        ("my-res.openai.azure.us", 443, "azure"),
        ("my-res.cognitiveservices.azure.us", 443, "azure"),
        ("My-Res.OpenAI.Azure.cn.", 443, "azure"),
        ("my-res.cognitiveservices.azure.cn", 443, "azure"),
        ("management.usgovcloudapi.net", 443, None),
        ("my-res.openai.azure.us.evil.example", 443, None),
    ],
)
def test_provider_for(host: str, port: int, expected: str | None) -> None:
    provider = provider_for(host)
    assert (provider.name if provider else None) == expected
    # Its own hosts' globs, which no other provider's configured hosts may overlap, take it too.
    if expected is not None:
        name = host.lower().removesuffix(".")
        assert any(globs_overlap(name, g) for g in PROVIDERS[expected].host_globs), host


@pytest.mark.parametrize(
    ("address", "decrypted"),
    [
        ("api.openai.com:443", True),
        ("API.OpenAI.com.:443", True),
        ("api.openai.com:80", True),
        ("generativelanguage.googleapis.com:8443", True),
        ("bedrock-runtime-fips.us-east-1.amazonaws.com.:443", True),
        ("api.anthropic.com:443", True),
        ("cloudcode-pa.googleapis.com:443", True),
        ("my-res.openai.azure.com:443", True),
        ("my-res.cognitiveservices.azure.com:443", True),
        ("my-res.services.ai.azure.com:443", True),
        ("my-res.openai.azure.us:443", True),
        ("my-res.cognitiveservices.azure.cn:443", True),
        ("api.openai.com.evil.example:443", False),
        ("my-res.openai.azure.com.evil.example:443", False),
        ("openai.azure.com:443", False),
        ("evilapi.openai.com:443", False),
        ("example.com:443", False),
        ("chatgpt.com:443", True),
        ("ab.chatgpt.com:443", False),
        ("api.githubcopilot.com:443", True),
        ("API.Business.GithubCopilot.com.:443", True),
        ("proxy.individual.githubcopilot.com:443", True),  # inline completions
        ("proxy.other.githubcopilot.com:443", False),
        ("copilot-proxy.githubusercontent.com:443", True),  # the older inline completions host
        ("raw.githubusercontent.com:443", False),
    ],
)
def test_allow_hosts_decrypt_every_provider_host_on_any_port(address: str, decrypted: bool) -> None:
    assert mitmproxy_decrypts(allow_hosts(), address) is decrypted
    assert sorted(PROVIDERS) == [
        "anthropic", "azure", "bedrock", "cerebras", "chatgpt", "code_assist", "copilot", "deepseek", "fireworks",
        "gemini", "groq",
        "mistral", "openai",
        "openrouter", "perplexity", "together", "vertex", "xai",
    ]  # fmt: skip


def mitmproxy_decrypts(patterns: list[str], address: str) -> bool:
    """Whether mitmproxy, given these `allow_hosts`, decrypts a connection to `address` (host:port),
    by its own test (next_layer's), not one of the tests' own."""
    host, _, port = address.rpartition(":")
    layer = NextLayer()
    with taddons.context(layer) as tctx:
        tctx.configure(layer, allow_hosts=patterns)
        context = Context(Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080)), tctx.options)
        context.server = Server(address=(host, int(port)))
        context.layers = []
        return not layer._ignore_connection(context, b"", b"")


# Hosts every provider's API is served at, which a caller may pick: each one decrypted and read as
# its provider's.
EVERY_HOST_FORM = {
    "eu.api.openai.com": "openai",
    "us.api.openai.com": "openai",
    # Google's mTLS hosts, Private Service Connect names and Vertex AI's dedicated endpoints.
    "generativelanguage.mtls.googleapis.com": "gemini",
    "generativelanguage-corp1.p.googleapis.com": "gemini",
    "aiplatform.mtls.googleapis.com": "vertex",
    "us-central1-aiplatform.mtls.googleapis.com": "vertex",
    "aiplatform-corp1.p.googleapis.com": "vertex",
    "europe-west4-aiplatform-corp1.p.googleapis.com": "vertex",
    "1234567890.us-central1-987654321.prediction.vertexai.goog": "vertex",
    "1234567890.europe-west4-fasttryout.prediction.vertexai.goog": "vertex",
    # Bedrock's agent runtime and control plane, dual-stack, FIPS, other partitions, VPC endpoints.
    "bedrock-agent-runtime.us-east-1.amazonaws.com": "bedrock",
    "bedrock-agent-runtime-fips.us-east-1.amazonaws.com": "bedrock",
    "bedrock.eu-west-1.amazonaws.com": "bedrock",
    "bedrock-fips.us-gov-west-1.amazonaws.com": "bedrock",
    "bedrock-runtime.us-east-1.api.aws": "bedrock",
    "bedrock-runtime-fips.us-east-1.api.aws": "bedrock",
    "bedrock-agent-runtime.eu-west-1.api.aws": "bedrock",
    "bedrock-runtime.cn-north-1.amazonaws.com.cn": "bedrock",
    "bedrock-runtime.eusc-de-east-1.amazonaws.eu": "bedrock",
    "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.bedrock-runtime.us-east-1.vpce.amazonaws.com": "bedrock",
    "vpce-0a1b2c3d4e5f6a7b8-abcdefgh-us-east-1a.bedrock-runtime.us-east-1.vpce.amazonaws.com": "bedrock",
    "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.bedrock-agent-runtime.us-east-1.vpce.amazonaws.com": "bedrock",
    "vpce-0a1b2c3d4e5f6a7b8-abcdefgh.bedrock.us-east-1.vpce.amazonaws.com": "bedrock",
}
# Names that look like them and are not a provider's.
NOT_A_PROVIDERS = (
    "generativelanguage.mtls.googleapis.com.evil.example",
    "storage-corp1.p.googleapis.com",
    "generativelanguage-corp1.p.googleapis.com.evil.example",
    "aiplatform-corp1.googleapis.com",
    "prediction.vertexai.goog",
    "x.prediction.vertexai.goog.evil.example",
    "mtls.googleapis.com",
    "storage.mtls.googleapis.com",
    "bedrock-runtime.us-east-1.amazonaws.com.evil.example",
    "bedrock-runtime.us-east-1.example.com",
    "vpce-x.bedrock-runtime.us-east-1.amazonaws.com",
    "vpce-x.s3.us-east-1.vpce.amazonaws.com",
    "bedrock-agentcore.us-east-1.amazonaws.com",
)


@pytest.mark.parametrize("host", NOT_A_PROVIDERS)
def test_names_like_a_providers_hosts_are_tunnelled(host: str) -> None:
    assert provider_for(host) is None
    assert not mitmproxy_decrypts(allow_hosts(), f"{host}:443")


@pytest.mark.parametrize(("host", "provider"), EVERY_HOST_FORM.items())
def test_every_host_of_every_provider_is_decrypted_and_read_as_its_providers(host: str, provider: str) -> None:
    assert mitmproxy_decrypts(allow_hosts(), f"{host}:443")
    assert mitmproxy_decrypts(allow_hosts(), f"{host.upper()}.:8443")
    found = provider_for(host)
    assert found is not None and found.name == provider


ADDED = Hosts({"vertex": ("aiplatform-*.llm.corp.example", "vertex.corp.example"), "openai": ("gpt.corp.example",)})


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("aiplatform-eu.llm.corp.example", "vertex"),
        ("AIPlatform-EU.llm.corp.example.", "vertex"),
        ("aiplatform-.llm.corp.example", "vertex"),
        ("vertex.corp.example", "vertex"),
        ("gpt.corp.example", "openai"),
        ("api.openai.com", "openai"),  # a provider's own hosts stay its own
        ("eu.api.openai.com", "openai"),
        ("x.aiplatform-eu.llm.corp.example", None),  # a '*' is within one label
        ("aiplatform.llm.corp.example", None),
        ("gpt.corp.example.evil.example", None),
        ("corp.example", None),
    ],
)
def test_hosts_a_configuration_adds_are_its_providers(host: str, expected: str | None) -> None:
    provider = ADDED.provider_for(host)
    assert (provider.name if provider else None) == expected
    assert mitmproxy_decrypts(ADDED.allow_hosts(), f"{host}:443") is (expected is not None)
    assert mitmproxy_decrypts(BUILT_IN_HOSTS.allow_hosts(), f"{host}:443") is (
        expected == "openai" and "corp" not in host
    )


def test_a_configured_host_glob_never_takes_a_providers_own_host() -> None:
    greedy = Hosts({"anthropic": ("*.openai.com",)})
    assert [greedy.provider_for(h).name for h in ("api.openai.com", "eu.api.openai.com", "chat.openai.com")] == [
        "openai",
        "openai",
        "anthropic",
    ]


def test_side_headers() -> None:
    assert OPENAI.credentials.caller.side_header == "X-OpenAI-Key"
    assert GEMINI.credentials.caller.side_header == "X-Gemini-Key"
    assert ANTHROPIC.credentials.caller.side_header == "X-Anthropic-Key"
    assert BEDROCK.credentials.caller.side_header == "X-AWS-Bearer-Token"


def test_status_per_reason() -> None:
    assert STATUS == {
        refusals_mod.UNAUTHENTICATED: 401,
        refusals_mod.POLICY_DENIED: 403,
        refusals_mod.NO_UPSTREAM_CREDENTIAL: 500,
        refusals_mod.MISCONFIGURED: 500,
        refusals_mod.INVALID_SIGNATURE: 403,
        refusals_mod.INTERNAL_ERROR: 500,
        refusals_mod.UPSTREAM_UNREACHABLE: 502,
        refusals_mod.UPSTREAM_TIMEOUT: 504,
        refusals_mod.BAD_REQUEST: 400,
        refusals_mod.AUDIT_UNAVAILABLE: 503,
        refusals_mod.RATE_LIMITED: 429,
        refusals_mod.BUDGET_EXCEEDED: 429,
        refusals_mod.LEDGER_UNAVAILABLE: 503,
        refusals_mod.LIMIT_UNENFORCEABLE: 403,
        refusals_mod.HEADERS_TOO_LARGE: 431,
        refusals_mod.CIRCUIT_OPEN: 503,
        refusals_mod.MISDIRECTED: 421,
        refusals_mod.MINTS_CREDENTIAL: 403,
        refusals_mod.CONTENT_DENIED: 403,
        refusals_mod.TENANT_DENIED: 403,
    }


def test_every_reason_has_a_status_and_a_kind_every_providers_error_table_writes() -> None:
    """A table keyed by a literal string instead of the constant drifts from it when the constant
    changes, and a refusal for that reason then fails with a KeyError instead of answering."""
    defined = {
        value
        for name, value in vars(refusals_mod).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str) and re.fullmatch("[a-z_]+", value)
    }
    assert defined == set(STATUS) == set(REASONS) == set(refusals_mod.KIND)
    tables = {
        "openai": openai_errors.REFUSAL_TYPES,
        "gemini": gemini_errors.REFUSAL_TYPES,
        "anthropic": anthropic_errors.REFUSAL_TYPES,
        "bedrock": bedrock_errors.REFUSAL_TYPES,
        "vertex": gemini_errors.REFUSAL_TYPES,  # Google's error shape, as the Gemini API's
        "code_assist": gemini_errors.REFUSAL_TYPES,
        "azure": openai_errors.REFUSAL_TYPES,  # OpenAI's error shape
        "chatgpt": openai_errors.REFUSAL_TYPES,  # the Responses API's: OpenAI's error shape
        "copilot": openai_errors.REFUSAL_TYPES,  # OpenAI's error shape, Anthropic's on its Messages
        # The OpenAI-compatible vendors answer in OpenAI's error shape.
        **{vendor.name: openai_errors.REFUSAL_TYPES for vendor in VENDORS},
    }
    assert tables.keys() == PROVIDERS.keys()
    for name, table in tables.items():
        assert set(table) == refusals_mod.KINDS, name


@pytest.mark.parametrize("provider", [OPENAI, GEMINI, ANTHROPIC])
@pytest.mark.parametrize("reason", REASONS)
def test_sdk_retry_hint(provider: Any, reason: str) -> None:
    # Refusals and a missing credential do not heal by retrying; an unreachable upstream may, and a
    # full minute window does once its Retry-After has passed.
    r = provider.refusal(reason, "m")
    if STATUS[reason] < 502 and reason != refusals_mod.RATE_LIMITED:
        assert r.headers["x-should-retry"] == "false"
    else:
        assert "x-should-retry" not in r.headers


@pytest.mark.parametrize("provider", list(PROVIDERS.values()), ids=list(PROVIDERS))
@pytest.mark.parametrize("reason", REASONS)
def test_refusal_body_is_json_and_keeps_any_message(provider: Any, reason: str) -> None:
    message = 'quote " backslash \\ newline \n unicode é ✓'
    body = json.loads(provider.refusal(reason, message).body)
    found = body["message"] if provider is BEDROCK else body["error"]["message"]
    assert found == message


def test_positions() -> None:
    assert OPENAI.credentials.caller.key_positions == OPENAI.credentials.caller.positions == ("authorization",)
    assert GEMINI.credentials.caller.key_positions == ("x-goog-api-key", "authorization", "query:key")
    assert GEMINI.credentials.caller.positions == (
        *GEMINI.credentials.caller.key_positions,
        "query:access_token",
        "query:oauth_token",
    )
    assert (
        ANTHROPIC.credentials.caller.key_positions
        == ANTHROPIC.credentials.caller.positions
        == ("x-api-key", "authorization")
    )
    assert BEDROCK.credentials.caller.key_positions == ("authorization",)
    assert BEDROCK.credentials.caller.positions == (
        "authorization",
        "x-amz-security-token",
        "query:X-Amz-Signature",
        "query:X-Amz-Security-Token",
    )


def test_credential_positions_as_headers_and_query_parameters() -> None:
    assert GEMINI.credentials.caller.header_positions == {b"x-goog-api-key", b"authorization"}
    assert GEMINI.credentials.caller.query_positions == ("key", "access_token", "oauth_token")
    assert BEDROCK.credentials.caller.header_positions == {b"authorization", b"x-amz-security-token"}
    assert BEDROCK.credentials.caller.query_positions == ("X-Amz-Signature", "X-Amz-Security-Token")
    assert (
        ANTHROPIC.credentials.caller.header_positions == {b"x-api-key", b"authorization"}
        and ANTHROPIC.credentials.caller.query_positions == ()
    )
    assert OPENAI.credentials.caller.header_positions == {b"authorization"}


def test_injected_header_follows_the_wire_format() -> None:
    compat = Classification(wire_format="openai-api")
    assert OPENAI.credentials.key.injected("sk-real", compat) == ("authorization", "Bearer sk-real")
    assert GEMINI.credentials.key.injected("AIza-real", Classification(wire_format="gemini-generate")) == (
        "x-goog-api-key",
        "AIza-real",
    )
    assert GEMINI.credentials.key.injected("AIza-real", compat) == ("authorization", "Bearer AIza-real")
    native = Classification(wire_format="anthropic-messages")
    assert ANTHROPIC.credentials.key.injected("sk-ant-real", native) == ("x-api-key", "sk-ant-real")
    assert ANTHROPIC.credentials.key.injected("sk-ant-real", compat) == ("authorization", "Bearer sk-ant-real")
    assert BEDROCK.credentials.key.injected("ABSK-real", Classification(wire_format="bedrock-converse")) == (
        "authorization",
        "Bearer ABSK-real",
    )


def one_per_implementation(method: str) -> list[str]:
    """The first provider of each implementation of `method`: the providers that inherit one run
    the same code on the same drawn inputs (the OpenAI-format answers' `usage` reads no attribute
    of its provider), so drawing for each again finds nothing new. A provider that overrides it
    gets a case of its own."""
    seen: set[object] = set()
    names = []
    for name, provider in PROVIDERS.items():
        implementation = getattr(type(provider), method)
        if implementation not in seen:
            seen.add(implementation)
            names.append(name)
    return names


# The vendors share `OpenAICompatible.classify`: their own part is the path (base paths, endpoints,
# the site that passes); the body goes to `openai.classify_request`, which openai's and azure's cases
# draw for in full. Each vendor's case draws fewer.
_OWN_CLASSIFY = [name for name, p in PROVIDERS.items() if p not in VENDORS]


@pytest.mark.parametrize("name", _OWN_CLASSIFY)
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), body=json_bodies, method=st.sampled_from(["POST", "GET", "PUT"]))
@pytest.mark.slow
def test_classify_reads_or_refuses(name: str, data: st.DataObject, body: bytes | None, method: str) -> None:
    check_classify(name, data, body, method)


@pytest.mark.parametrize("name", [p.name for p in VENDORS])
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), body=json_bodies, method=st.sampled_from(["POST", "GET", "PUT"]))
@pytest.mark.slow
def test_a_vendor_classifies_or_refuses(name: str, data: st.DataObject, body: bytes | None, method: str) -> None:
    check_classify(name, data, body, method)


def check_classify(name: str, data: st.DataObject, body: bytes | None, method: str) -> None:
    provider = PROVIDERS[name]
    path = data.draw(st.sampled_from(PATHS[name]) | st.text(max_size=40).map(lambda s: "/" + s))
    try:
        c = classify(provider, method, path, body)
    except Unreadable:
        return
    assert isinstance(c, Classification)
    assert c.wire_format in WIRE_FORMATS  # every call names the format it speaks
    assert isinstance(c.facts, RequestFacts)
    assert c.model is None or isinstance(c.model, str)
    for value in (c.facts.message_count, c.facts.max_tokens):
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    for value in (c.facts.has_system, c.facts.has_tools, c.facts.stream):
        assert value is None or isinstance(value, bool)


# Usage is read by the call's wire format, whichever provider: each format's reading is drawn for,
# through a provider that bills reasoning reported apart (its counting runs too).
@pytest.mark.parametrize("wire", sorted(WIRE_FORMATS))
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=json_bodies,
    endpoint=st.sampled_from(ALL_ENDPOINTS),
    header_pairs=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "x-amzn-bedrock-input-token-count",
                    "x-amzn-bedrock-output-token-count",
                    "x-amzn-bedrock-cache-read-input-token-count",
                    "x-amzn-bedrock-cache-write-input-token-count",
                    "content-type",
                ]
            ),
            header_texts,
        ),
        max_size=3,
    ),
)
@pytest.mark.slow
def test_usage_never_raises(
    wire: str, body: bytes | None, endpoint: str | None, header_pairs: list[tuple[str, str]]
) -> None:
    provider = GEMINI
    u = provider.cost.usage(Classification(endpoint=endpoint, wire_format=wire), headers(*header_pairs), body)
    assert isinstance(u, Usage)
    for value in (
        u.input_tokens, u.output_tokens, u.total_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens
    ):  # fmt: skip
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    assert u.finish_reason is None or isinstance(u.finish_reason, str)
