"""Azure OpenAI: its hosts and paths, the deployments as models, its settings, its upstream
credential and refusals; plain data in, plain data out."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tollgate.calls.call import Call, Route
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import Config, ConfigError, OverrideMatch, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.credentials.entra_id import authority_scope, scope_for
from tollgate.credentials.header_key import HeaderKey
from tollgate.credentials.keypool import KeyPool
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification
from tollgate.governance.matching import matches
from tollgate.governance.routing.upstream import target_upstream
from tollgate.providers import PROVIDERS
from tollgate.providers.azure import AzureConfig, AzureRuntime
from tollgate.proxy.stages.records.metrics_server import Metrics
from tollgate.proxy.state import Shared

from .common import headers, j

AZURE = PROVIDERS["azure"]
CHAT = {"model": "ignored-by-azure", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9, "stream": True}
RES = "my-res"


def at(host: str, method: str, target: str, body: Any = None) -> Classification:
    path, _, query = target.partition("?")
    return AZURE.classify_at(host, method, path, body, query)


# (host, method, path with query, body) → (endpoint, model, wire format); the table of what is read.
READ = [
    ("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", CHAT,
     ("chat.completions", "gpt4o-prod", "openai-api")),
    ("/openai/deployments/gpt4o-prod/completions?api-version=2024-10-21", {"prompt": "x"},
     ("completions", "gpt4o-prod", "openai-api")),
    ("/openai/deployments/emb.small_1/embeddings?api-version=2024-10-21", {"input": "x"},
     ("embeddings", "emb.small_1", "openai-api")),
    ("/openai/deployments/dalle/images/generations?api-version=2024-10-21", {"prompt": "x"},
     ("images.generations", "dalle", "openai-api")),
    ("/openai/deployments/tts/audio/speech?api-version=2024-10-21", {"input": "x"}, ("audio.speech", "tts", "openai-api")),
    ("/openai/responses?api-version=2025-03-01-preview", {"model": "gpt4o-prod", "input": "hi"},
     ("responses", "gpt4o-prod", "openai-api")),
    ("/openai/v1/chat/completions", {**CHAT, "model": "gpt4o-prod"}, ("chat.completions", "gpt4o-prod", "openai-api")),
    ("/openai/v1/responses?api-version=preview", {"model": "gpt4o-prod", "input": "hi"},
     ("responses", "gpt4o-prod", "openai-api")),
    ("/openai/v1/embeddings", {"model": "emb", "input": "x"}, ("embeddings", "emb", "openai-api")),
    ("/openai/files?api-version=2024-10-21", None, ("files", None, "openai-api")),
    ("/openai/v1/models", None, ("models", None, "openai-api")),
]  # fmt: skip


SUFFIXES = [
    "openai.azure.com", "cognitiveservices.azure.com", "services.ai.azure.com",
    "openai.azure.us", "cognitiveservices.azure.us", "openai.azure.cn", "cognitiveservices.azure.cn",
]  # fmt: skip


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(("target", "body", "expected"), READ)
def test_the_model_api_is_read_on_every_host_of_a_resource(
    suffix: str, target: str, body: Any, expected: tuple[Any, ...]
) -> None:
    c = at(f"{RES}.{suffix}", "POST" if body is not None else "GET", target, body)
    assert (c.endpoint, c.model, c.wire_format) == expected
    assert c.resource == RES and not c.passthrough


def test_a_deployments_chat_reads_the_body_and_the_model_is_the_deployment() -> None:
    c = at(f"{RES}.openai.azure.com", "POST", "/openai/deployments/gpt4o-prod/chat/completions", CHAT)
    assert (c.model, c.facts.message_count, c.facts.max_tokens, c.facts.stream) == ("gpt4o-prod", 1, 9, True)


def test_a_deployments_upload_is_unread_and_its_model_is_the_deployment() -> None:
    path = "/openai/deployments/whisper/audio/transcriptions"
    assert AZURE.streams_unread("POST", path)
    assert AZURE.streams_unread("POST", "/openai/v1/audio/transcriptions")
    assert AZURE.streams_unread("POST", "/openai/files")
    assert not AZURE.streams_unread("POST", "/openai/deployments/d/chat/completions")
    assert not AZURE.streams_unread("POST", "/openai")
    c = at(f"{RES}.openai.azure.com", "POST", path)
    # Its facts are unread, not its model: the path names it.
    assert (c.endpoint, c.model, c.unread) == ("audio.transcriptions", "whisper", ("request",))


REFUSED = [
    "/openai/deployments/gpt4o-prod/chat/completion",  # unknown endpoint
    "/openai/deployments/gpt4o-prod/extensions/chat/completions",  # "on your data": not read
    "/openai/deployments/gpt4o-prod",
    "/openai/deployments",
    "/openai/deployments/gpt4o prod/chat/completions",
    "/openai/deployments/gpt%34o/chat/completions",
    "/openai/deployments/gpt4o-prod/Chat/completions",
    "/OpenAI/deployments/gpt4o-prod/chat/completions",
    "/openai/Deployments/gpt4o-prod/chat/completions",
    "/openai/deployments/gpt4o-prod/chat/completions/",
    "/openai//deployments/gpt4o-prod/chat/completions",
    "/openai/deployments/./gpt4o-prod/chat/completions",
    "/openai/V1/chat/completions",
    "/openai",
    "/openai/realtime",
    "/openai/v1/realtime",
]


@pytest.mark.parametrize("path", REFUSED)
def test_what_is_not_read_exactly_is_refused(path: str) -> None:
    with pytest.raises(Unreadable):
        at(f"{RES}.openai.azure.com", "POST", path, CHAT)
    with pytest.raises(Unreadable):
        at(f"{RES}.cognitiveservices.azure.com", "POST", path, CHAT)


def test_a_deployments_endpoint_takes_only_post_and_a_websocket_is_refused() -> None:
    with pytest.raises(Unreadable, match="take POST"):
        at(f"{RES}.openai.azure.com", "GET", "/openai/deployments/d/chat/completions")
    with pytest.raises(Unreadable, match="WebSockets"):
        at(f"{RES}.openai.azure.com", "GET", "/openai/realtime?deployment=gpt-realtime")
    with pytest.raises(Unreadable, match="WebSockets"):
        at(f"{RES}.openai.azure.com", "GET", "/openai/v1/responses")  # the Responses API's WebSocket


def test_a_bad_body_is_refused_at_its_endpoint() -> None:
    with pytest.raises(Unreadable) as e:
        at(f"{RES}.openai.azure.com", "POST", "/openai/deployments/d/chat/completions", {**CHAT, "max_tokens": "x"})
    assert e.value.endpoint == "chat.completions"


@pytest.mark.parametrize(
    "suffix",
    [
        "cognitiveservices.azure.com",
        "services.ai.azure.com",
        "cognitiveservices.azure.us",
        "cognitiveservices.azure.cn",
    ],
)
@pytest.mark.parametrize(
    "path", ["/language/:analyze-text", "/speechtotext/v3.2/transcriptions", "/contentsafety/text:analyze"]
)
def test_other_products_on_an_ai_services_host_pass_through(suffix: str, path: str) -> None:
    c = at(f"{RES}.{suffix}", "POST", path, {})
    assert (c.passthrough, c.endpoint, c.model, c.resource) == (True, None, None, RES)


@pytest.mark.parametrize(
    "path",
    [
        "/Models/chat/completions",
        "/models/Chat/completions",
        "/models/images/embeddings",  # the model inference API's endpoints Tollgate does not read
        "/models/info",
        "/api/projects/p1/threads/runs",  # Foundry's agents
        "/API/projects/p1/openai/responses",
        "/OpenAI/v1/chat/completions",
        "/%6Fpenai/v1/chat/completions",
        "//openai/v1/chat/completions",
        "/x/../openai/v1/chat/completions",
    ],
)
def test_the_model_apis_never_pass_through(path: str) -> None:
    with pytest.raises(Unreadable):
        at(f"{RES}.services.ai.azure.com", "POST", path, CHAT)


@pytest.mark.parametrize("suffix", ["services.ai.azure.com", "cognitiveservices.azure.com"])
def test_the_model_inference_api_is_read_as_openais_with_the_deployment_in_the_body(suffix: str) -> None:
    c = at(f"{RES}.{suffix}", "POST", "/models/chat/completions?api-version=2024-05-01-preview", CHAT)
    assert (c.endpoint, c.model, c.wire_format, c.resource) == (
        "chat.completions",
        "ignored-by-azure",
        "openai-api",
        RES,
    )
    assert (c.facts.message_count, c.facts.max_tokens, c.facts.stream) == (1, 9, True)
    e = at(
        f"{RES}.{suffix}", "POST", "/models/embeddings?api-version=2024-05-01-preview", {"model": "emb", "input": "x"}
    )
    assert (e.endpoint, e.model) == ("embeddings", "emb")


def test_the_model_inference_api_is_refused_where_it_is_not_read_exactly() -> None:
    host = f"{RES}.services.ai.azure.com"
    with pytest.raises(Unreadable, match="names its deployment") as e:
        at(host, "POST", "/models/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert e.value.endpoint == "chat.completions"
    with pytest.raises(Unreadable, match="take POST"):
        at(host, "GET", "/models/chat/completions")
    c = at(host, "POST", "/models/chat/completions", CHAT)
    for value in (b"pass-through", b"anything"):
        with pytest.raises(Unreadable, match="extra-parameters"):
            AZURE.read_headers({b"extra-parameters": value}, c)
    AZURE.read_headers({b"extra-parameters": b"drop"}, c)
    AZURE.read_headers({b"extra-parameters": b"error"}, c)
    # Its streams are not asked for usage: it refuses a field it does not define.
    body = {**CHAT}
    assert not AZURE.prepare(c, body, {}, inject_usage=True)
    assert "stream_options" not in body


@pytest.mark.parametrize("path", ["/language/:analyze-text", "/v1/chat/completions", "/chat/completions"])
@pytest.mark.parametrize("suffix", ["openai.azure.com", "openai.azure.us", "openai.azure.cn"])
def test_the_openai_host_has_nothing_to_pass_through(path: str, suffix: str) -> None:
    with pytest.raises(Unreadable, match="start with /openai/"):
        at(f"{RES}.{suffix}", "POST", path, {})


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("my-res.openai.azure.com", "https://cognitiveservices.azure.com/.default"),
        ("my-res.services.ai.azure.com", "https://cognitiveservices.azure.com/.default"),
        ("my-res.openai.azure.us", "https://cognitiveservices.azure.us/.default"),
        ("my-res.cognitiveservices.azure.us", "https://cognitiveservices.azure.us/.default"),
        ("my-res.openai.azure.cn", "https://cognitiveservices.azure.cn/.default"),
        ("127.0.0.1", None),
        ("aoai.internal.example", None),
    ],
)
def test_an_entra_id_token_is_for_the_cloud_of_its_host(host: str, scope: str | None) -> None:
    assert scope_for(host) == scope


@pytest.mark.parametrize(
    ("authority", "scope"),
    [
        ("", "https://cognitiveservices.azure.com/.default"),
        ("https://login.microsoftonline.com/", "https://cognitiveservices.azure.com/.default"),
        ("login.microsoftonline.us", "https://cognitiveservices.azure.us/.default"),
        ("https://login.microsoftonline.us", "https://cognitiveservices.azure.us/.default"),
        ("https://login.chinacloudapi.cn/", "https://cognitiveservices.azure.cn/.default"),
        ("https://login.partner.microsoftonline.cn", "https://cognitiveservices.azure.cn/.default"),
        ("https://127.0.0.1:8443", "https://cognitiveservices.azure.com/.default"),
    ],
)
def test_a_host_of_no_cloud_takes_the_authoritys_clouds_scope(authority: str, scope: str) -> None:
    assert authority_scope(authority) == scope


def test_a_host_the_configuration_adds_is_read_without_a_resource() -> None:
    c = at("aoai.internal.example", "POST", "/openai/deployments/d/chat/completions", CHAT)
    assert (c.model, c.resource, c.passthrough) == ("d", None, False)


# --- settings ---------------------------------------------------------------------------------------


def azure(**settings: Any) -> AzureConfig:
    config = parse_config({"providers": {"azure": settings}})
    assert isinstance(config.providers.azure, AzureConfig)
    return config.providers.azure


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"resources": {"My_Res": {"keys": ["k"]}}}, "providers.azure.resources"),
        ({"resources": {"r": {"upstream": "https://x/openai"}}}, "providers.azure.resources.r.upstream"),
        ({"resources": {"r": {"keys": [" "]}}}, "providers.azure.resources.r.keys"),
        ({"resources": {"r": {"key": "k"}}}, "providers.azure.resources.r.key"),
        ({"deployments": {"gpt4o": ""}}, "providers.azure.deployments"),
        ({"deployments": {"a/b": "gpt-4o"}}, "providers.azure.deployments"),
        ({"deployments": {"Prod": "gpt-4o", "prod": "gpt-4o-mini"}}, "providers.azure.deployments"),
        ({"credentials": "managed"}, "providers.azure.credentials"),
    ],
)
def test_bad_settings_name_their_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"providers": {"azure": settings}})
    assert message in str(e.value)


def test_deployments_name_models_for_prices_limits_and_the_policy_whatever_their_case() -> None:
    config = parse_config({"providers": {"azure": {"deployments": {"Prod-4o": "gpt-4o"}}}})
    loaded = Loaded.build(config)
    call = Call(
        Route.as_called("azure"), f"{RES}.openai.azure.com", "POST", "/openai/deployments/prod-4o/chat/completions"
    )
    call.loaded = loaded
    call.classified(Classification("chat.completions", "prod-4o"))
    assert (call.route.target.model, call.target_model) == ("prod-4o", "gpt-4o")
    call.classified(Classification("chat.completions", "Other"))
    assert call.target_model == "other"
    # Without deployments, too, a deployment is named in lower case, as Azure reads it.
    assert Loaded.build(Config()).model_names == {"azure": str.lower}


def test_rules_limits_and_prices_match_a_deployment_in_any_case() -> None:
    rule = OverrideMatch(model="secret-*")
    assert matches(rule, "azure", "SECRET-DEP", None, ())
    assert matches(OverrideMatch(model="GPT-4o"), "azure", "gpt-4o", None, ())
    assert not matches(rule, "openai", "SECRET-DEP", None, ())  # OpenAI's model ids are case-sensitive


def test_a_resources_upstream_and_keys_are_its_own() -> None:
    settings = azure(
        upstream="https://gateway.example",
        keys=["provider-key"],
        resources={RES: {"keys": ["res-key-1", "res-key-2"], "upstream": "https://res.example:8443"}, "bare": {}},
    )
    runtime = AzureRuntime(pools={RES: KeyPool(["res-key-1", "res-key-2"])})
    mine = Classification("chat.completions", "d", resource=RES)
    other = Classification("chat.completions", "d", resource="elsewhere")
    assert target_upstream(AZURE, settings, routed=False, classification=mine) == "https://res.example:8443"
    assert target_upstream(AZURE, settings, routed=False, classification=other) == "https://gateway.example"
    assert target_upstream(AZURE, settings, routed=False) == "https://gateway.example"
    provider_pool = KeyPool(settings.keys)
    first = AZURE.credentials.source.upstream_credential(mine, {}, provider_pool, settings, runtime)
    second = AZURE.credentials.source.upstream_credential(mine, {}, provider_pool, settings, runtime)
    assert isinstance(first, HeaderKey) and isinstance(second, HeaderKey)
    assert (first.name, first.value, first.pooled_key, first.pool) == (
        b"api-key",
        b"res-key-1",
        "res-key-1",
        runtime.pools[RES],
    )
    assert second.value == b"res-key-2"
    elsewhere = AZURE.credentials.source.upstream_credential(other, {}, provider_pool, settings, runtime)
    assert isinstance(elsewhere, HeaderKey)
    assert (elsewhere.value, elsewhere.pool) == (b"provider-key", None)
    # The caller's own key in X-Azure-Key wins; it goes in api-key too, whatever the path.
    side = AZURE.credentials.source.upstream_credential(mine, {"x-azure-key": "own"}, provider_pool, settings, runtime)
    assert isinstance(side, HeaderKey) and (side.name, side.value, side.pooled_key) == (b"api-key", b"own", None)
    assert side.drop == {b"api-key", b"authorization", b"ocp-apim-subscription-key"}
    assert AZURE.credentials.source.upstream_credential(mine, {}, KeyPool(()), azure(), None) is None


def test_load_runtime_keeps_the_rests_of_a_resources_keys() -> None:
    settings = azure(resources={RES: {"keys": ["a", "b"]}})
    first = AZURE.credentials.source.load_runtime(Config(), settings, None)
    assert isinstance(first, AzureRuntime) and first.tokens is None
    first.pools[RES].rest("a", 60)
    again = AZURE.credentials.source.load_runtime(
        Config(), azure(resources={RES: {"keys": ["a", "c"]}}), (settings, first)
    )
    assert isinstance(again, AzureRuntime)
    assert again.pools[RES].rest_left("a") > 0
    assert AZURE.credentials.source.load_runtime(Config(), azure(), None) is None


def test_refusals_are_in_openais_shape() -> None:
    refusal = AZURE.refusal("policy_denied", "no")
    assert refusal.status == 403
    assert json.loads(refusal.body) == {
        "error": {"message": "no", "type": "permission_denied", "param": None, "code": "policy_denied"}
    }
    assert refusal.headers["x-tollgate-error"] == "policy_denied"


def test_an_override_rewrites_the_deployment_in_the_path() -> None:
    assert AZURE.models.path_with_model("/openai/deployments/a/chat/completions?api-version=1", "b") == (
        "/openai/deployments/b/chat/completions?api-version=1"
    )
    assert AZURE.models.path_with_model("/openai/v1/chat/completions", "b") is None


def test_a_stream_asks_for_its_usage_on_every_path() -> None:
    for target in ("/openai/deployments/d/chat/completions", "/openai/v1/chat/completions"):
        body = {**CHAT, "model": "d"}
        c = at(f"{RES}.openai.azure.com", "POST", target, body)
        assert AZURE.prepare(c, body, {}, inject_usage=True)
        assert body["stream_options"] == {"include_usage": True}


def test_usage_is_read_as_openais() -> None:
    body = j({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, "choices": []})
    u = AZURE.cost.usage(Classification("chat.completions", "d", wire_format="openai-api"), headers(), body)
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (3, 4, 7)


def test_a_caller_presents_keys_in_api_key_or_as_a_bearer() -> None:
    found = AZURE.credentials.caller.presented(headers(("api-key", "vk-1"), ("authorization", "Bearer tok")), {})
    assert [(p.value, p.position) for p in found] == [("vk-1", "api-key"), ("tok", "authorization")]


def test_a_resources_key_rested_by_another_process_rests_here_and_its_keys_are_counted() -> None:
    config = parse_config({"providers": {"azure": {"keys": ["p1"], "resources": {RES: {"keys": ["r1", "r2"]}}}}})
    runtime = AZURE.credentials.source.load_runtime(config, config.providers.azure, None)
    assert isinstance(runtime, AzureRuntime)
    shared = Shared()
    shared.loaded = Loaded.build(config, runtimes={"azure": runtime})
    # Another process sharing the ledger's store rested r1 (a rest is announced by fingerprint).
    shared.rest_elsewhere(fingerprint("r1"), time.time() + 60)
    pool = runtime.pools[RES]
    assert pool.rest_left("r1") > 0 and pool.rest_left("r2") == 0
    assert [pool.take(), pool.take()] == ["r2", "r2"]
    # The pool gauges count the provider's keys and its resources' together.
    counted = Metrics(shared)._pools()["azure"]
    assert (len(counted), counted.resting()) == (3, 1)
