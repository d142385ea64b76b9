"""Vertex AI: classification, moving a call into Tollgate's project, usage; plain data in, plain data out."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tollgate.credentials.base import RequestParts
from tollgate.formats.bodies.exact import Unreadable
from tollgate.providers import vertex as vertex_mod
from tollgate.providers.vertex import VertexConfig, VertexProject

from .common import VERTEX, classify, headers, j

PROJECT_PATH = "/v1/projects/caller-1/locations/us-central1"
GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "generationConfig": {"maxOutputTokens": 64},
}
CLAUDE_BODY = {
    "anthropic_version": "vertex-2023-10-16",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 9,
}


@pytest.mark.parametrize("prefix", [PROJECT_PATH, "/v1beta1/projects/123456/locations/global", "/v1beta1"])
@pytest.mark.parametrize(("method", "stream"), [("generateContent", False), ("streamGenerateContent", True)])
def test_google_model_calls_read_as_the_gemini_api(prefix: str, method: str, stream: bool) -> None:
    c = classify(VERTEX, "POST", f"{prefix}/publishers/google/models/gemini-2.5-flash:{method}", j(GEMINI_BODY))
    assert (c.endpoint, c.model, c.wire_format) == (method, "gemini-2.5-flash", "gemini-generate")
    assert (c.facts.stream, c.facts.message_count, c.facts.has_system, c.facts.max_tokens) == (stream, 1, True, 64)


@pytest.mark.parametrize(("method", "stream"), [("rawPredict", False), ("streamRawPredict", True)])
def test_claude_calls_read_as_the_messages_api(method: str, stream: bool) -> None:
    path = f"{PROJECT_PATH}/publishers/anthropic/models/claude-sonnet-4-5@20250929:{method}"
    c = classify(VERTEX, "POST", path, j(CLAUDE_BODY))
    assert (c.endpoint, c.model, c.wire_format) == (method, "claude-sonnet-4-5@20250929", "anthropic-messages")
    assert (c.facts.stream, c.facts.message_count, c.facts.max_tokens) == (stream, 1, 9)


def test_a_claude_body_naming_another_model_than_its_path_is_refused() -> None:
    path = f"{PROJECT_PATH}/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    with pytest.raises(Unreadable, match="another model than the path"):
        classify(VERTEX, "POST", path, j({**CLAUDE_BODY, "model": "claude-opus-4-1@20250805"}))
    same = classify(VERTEX, "POST", path, j({**CLAUDE_BODY, "model": "claude-sonnet-4-5@20250929"}))
    assert same.model == "claude-sonnet-4-5@20250929"


def test_claudes_token_count_names_its_model_in_the_body() -> None:
    path = f"{PROJECT_PATH}/publishers/anthropic/models/count-tokens:rawPredict"
    c = classify(VERTEX, "POST", path, j({**CLAUDE_BODY, "model": "claude-sonnet-4-5@20250929"}))
    assert (c.endpoint, c.model) == ("count-tokens", "claude-sonnet-4-5@20250929")


def test_the_openai_compatible_endpoint() -> None:
    body = {"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    c = classify(VERTEX, "POST", f"{PROJECT_PATH}/endpoints/openapi/chat/completions", j(body))
    assert (c.endpoint, c.model, c.publisher, c.wire_format, c.facts.stream) == (
        "chat.completions", "gemini-2.5-flash", "google", "openai-api", True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic/claude-opus-4", ("claude-opus-4", "anthropic")),
        ("google/gemini-2.0-flash", ("gemini-2.0-flash", "google")),
        ("meta/llama-4-maverick-17b-128e-instruct-maas", ("llama-4-maverick-17b-128e-instruct-maas", "meta")),
        ("gemini-2.0-flash", ("gemini-2.0-flash", None)),  # no publisher named: the model as it came
    ],
)
def test_the_openai_compatible_endpoint_names_the_model_as_vertex_paths_do(model: str, expected: tuple) -> None:
    """Its `publisher/model` is the model's id, the publisher apart: rules, limits and prices on the id hold."""
    for endpoint in ("chat/completions", "embeddings"):
        c = classify(VERTEX, "POST", f"{PROJECT_PATH}/endpoints/openapi/{endpoint}", j({"model": model}))
        assert (c.model, c.publisher) == expected


@pytest.mark.parametrize("model", ["publishers/anthropic/models/claude-opus-4", "Anthropic/claude-opus-4", "/x", "a/"])
def test_a_model_the_openai_compatible_endpoint_does_not_name_so_is_refused(model: str) -> None:
    with pytest.raises(Unreadable, match="names a model as publisher/model") as info:
        classify(VERTEX, "POST", f"{PROJECT_PATH}/endpoints/openapi/chat/completions", j({"model": model}))
    assert info.value.endpoint == "chat.completions"


@pytest.mark.parametrize(
    ("path", "publisher"),
    [
        ("/publishers/google/models/gemini-2.5-flash:generateContent", "google"),
        ("/publishers/google/models/gemini-2.5-flash", "google"),
        ("/publishers/meta/models/llama-4", "meta"),
        ("/publishers/anthropic/models/claude-opus-4:rawPredict", "anthropic"),
        ("/publishers/anthropic/models/count-tokens:rawPredict", "anthropic"),
        ("/endpoints/4567:generateContent", None),
    ],
)
def test_the_publisher_of_a_model_path(path: str, publisher: str | None) -> None:
    body = j({**CLAUDE_BODY, "model": "claude-opus-4"}) if "count-tokens" in path else j(CLAUDE_BODY)
    assert classify(VERTEX, "POST", PROJECT_PATH + path, body).publisher == publisher


def test_an_override_writes_the_model_back_with_its_publisher() -> None:
    assert VERTEX.models.in_body("anthropic/claude-opus-4", "claude-sonnet-4-5") == "anthropic/claude-sonnet-4-5"
    assert VERTEX.models.in_body("anthropic/claude-opus-4", "google/gemini-2.5-pro") == "google/gemini-2.5-pro"
    assert VERTEX.models.in_body("models/gemini-2.5-flash", "gemini-2.5-pro") == "models/gemini-2.5-pro"


def test_a_deployed_endpoint_is_its_model() -> None:
    c = classify(VERTEX, "POST", f"{PROJECT_PATH}/endpoints/4567:streamGenerateContent", j(GEMINI_BODY))
    assert (c.endpoint, c.model, c.facts.stream, c.facts.max_tokens) == (
        "streamGenerateContent",
        "endpoints/4567",
        True,
        64,
    )


def test_resources_name_their_model_by_resource_name() -> None:
    model = "projects/caller-1/locations/us-central1/publishers/google/models/gemini-2.5-flash"
    c = classify(VERTEX, "POST", f"{PROJECT_PATH}/cachedContents", j({"model": model}))
    assert (c.endpoint, c.model) == ("cachedContents", "gemini-2.5-flash")
    assert VERTEX.models.in_body(model, "gemini-2.5-pro") == model.replace("2.5-flash", "2.5-pro")
    assert VERTEX.models.in_body("gemini-2.5-flash", "gemini-2.5-pro") == "gemini-2.5-pro"


def test_an_override_rewrites_the_model_in_the_path() -> None:
    path = f"{PROJECT_PATH}/publishers/google/models/gemini-2.5-flash:generateContent?alt=sse"
    assert VERTEX.models.path_with_model(path, "gemini-2.5-pro") == path.replace("2.5-flash", "2.5-pro")


@pytest.mark.parametrize(
    ("path", "fault"),
    [
        ("/v1/projects/caller-1/publishers/google/models/m:generateContent", "a project's path is"),
        ("/v1/projects/Caller/locations/us-central1/publishers/google/models/m:generateContent", "a project's path is"),
        ("/v1/Projects/c/locations/l/publishers/google/models/m:generateContent", "'Projects' is not written"),
        ("/v1/publishers/google/models/m:GenerateContent", "'GenerateContent' is not written"),
        ("/v1/publishers/google/models/Gemini:generateContent", "lower-case"),
        ("/v1/publishers/meta/models/llama-4:generateContent", "publishers google and anthropic"),
        ("/v1/publishers/anthropic/models/claude:generateContent", "publishers google and anthropic"),
        ("/v1/projects/c/locations/l", "names no endpoint"),
        ("/models/m:generateContent", "start with a version"),
        ("/v1/publishers/google/models/m%3AgenerateContent", "percent-encoded"),
    ],
)
def test_what_is_not_read_exactly_is_refused(path: str, fault: str) -> None:
    with pytest.raises(Unreadable, match=fault):
        classify(VERTEX, "POST", path, j(GEMINI_BODY))


@pytest.mark.parametrize("query", ["fields=candidates", "alt=proto", "%24httpMethod=GET", "callback=f"])
@pytest.mark.parametrize("path", ["publishers/google/models/m:generateContent", "endpoints/openapi/chat/completions"])
def test_queries_that_change_the_answer_or_the_request_are_refused(query: str, path: str) -> None:
    with pytest.raises(Unreadable):
        classify(VERTEX, "POST", f"{PROJECT_PATH}/{path}?{query}", j({"model": "google/gemini-2.5-flash"}))


def test_a_protobuf_body_is_refused() -> None:
    with pytest.raises(Unreadable, match="protobuf"):
        VERTEX.check_headers({b"content-type": b"application/x-protobuf"})


def request(path: str, called_host: str, upstream: str | None = None) -> RequestParts:
    upstream = upstream or f"https://{called_host}"
    return RequestParts(
        method=b"POST", scheme=b"https", host=upstream.partition("://")[2].partition(":")[0], authority="",
        path=path.encode(), fields=(), body=b"", index={}, called_host=called_host, upstream=upstream,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("location", "path", "called", "moved", "host"),
    [
        # The caller's project replaced, its location kept where Tollgate sets none.
        (None, f"{PROJECT_PATH}/publishers/google/models/m:generateContent?alt=sse", "us-central1-aiplatform.googleapis.com",
         "/v1/projects/tg/locations/us-central1/publishers/google/models/m:generateContent?alt=sse", None),
        # Express mode: no project in the path, which goes to the global location.
        (None, "/v1beta1/publishers/google/models/m:generateContent", "aiplatform.googleapis.com",
         "/v1beta1/projects/tg/locations/global/publishers/google/models/m:generateContent", None),
        # Tollgate's location, and that location's host.
        ("europe-west4", f"{PROJECT_PATH}/endpoints/openapi/chat/completions", "us-central1-aiplatform.googleapis.com",
         "/v1/projects/tg/locations/europe-west4/endpoints/openapi/chat/completions", "europe-west4-aiplatform.googleapis.com"),
        ("eu", "/v1/publishers/google/models/m:countTokens", "aiplatform.googleapis.com",
         "/v1/projects/tg/locations/eu/publishers/google/models/m:countTokens", "aiplatform.eu.rep.googleapis.com"),
        ("global", f"{PROJECT_PATH}/publishers/google/models/m:generateContent", "us-central1-aiplatform.googleapis.com",
         "/v1/projects/tg/locations/global/publishers/google/models/m:generateContent", "aiplatform.googleapis.com"),
    ],
)  # fmt: skip
def test_a_call_moves_into_tollgates_project(
    location: str | None, path: str, called: str, moved: str, host: str | None
) -> None:
    project = VertexProject(tokens=None, project="tg", location=location)  # type: ignore[arg-type]
    assert project.move(request(path, called)) == (moved.encode(), host)


@pytest.mark.parametrize(
    ("location", "called", "upstream", "host"),
    [
        # An mTLS host's call goes to its twin, and from there to Tollgate's location's host.
        ("europe-west4", "us-central1-aiplatform.mtls.googleapis.com", "https://us-central1-aiplatform.googleapis.com",
         "europe-west4-aiplatform.googleapis.com"),
        (None, "us-central1-aiplatform.mtls.googleapis.com", "https://us-central1-aiplatform.googleapis.com", None),
        ("global", "aiplatform.mtls.googleapis.com", "https://aiplatform.googleapis.com", None),
        # An mTLS host its client certificate keeps: the location's mTLS host (a multi-region has none).
        ("europe-west4", "us-central1-aiplatform.mtls.googleapis.com", None, "europe-west4-aiplatform.mtls.googleapis.com"),
        ("global", "us-central1-aiplatform.mtls.googleapis.com", None, "aiplatform.mtls.googleapis.com"),
        ("eu", "aiplatform.mtls.googleapis.com", None, "aiplatform.eu.rep.googleapis.com"),
        # A private endpoint keeps its host, wherever Tollgate's location is.
        ("europe-west4", "us-central1-aiplatform-corp.p.googleapis.com", None, None),
        ("europe-west4", "aiplatform-corp.p.googleapis.com", None, None),
        ("europe-west4", "123.us-central1-456.prediction.vertexai.goog", None, None),
    ],
)  # fmt: skip
def test_a_call_moved_into_tollgates_location_leaves_no_private_endpoint(
    location: str | None, called: str, upstream: str | None, host: str | None
) -> None:
    project = VertexProject(tokens=None, project="tg", location=location)  # type: ignore[arg-type]
    path, moved_to = project.move(request(f"{PROJECT_PATH}/endpoints/123:predict", called, upstream))
    assert (path.startswith(b"/v1/projects/tg/locations/"), moved_to) == (True, host)  # type: ignore[union-attr]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_an_endpoints_chat_completions_are_read_in_openais_format_as_its_model(version: str) -> None:
    path = f"/{version}/projects/p/locations/us-central1/endpoints/1234567/chat/completions"
    body = {"model": "whatever-the-body-says", "max_tokens": 9, "stream": True, "messages": [{"role": "user"}]}
    c = classify(VERTEX, "POST", path, j(body))
    assert (c.endpoint, c.model, c.wire_format, c.facts.max_tokens, c.facts.stream, c.unread) == (
        "chat.completions",
        "endpoints/1234567",
        "openai-api",
        9,
        True,
        (),
    )
    with pytest.raises(Unreadable, match="endpoints/"):
        classify(VERTEX, "POST", f"/{version}/projects/p/locations/l/endpoints/Bad_Id/chat/completions", j(body))


def test_a_configured_upstream_keeps_its_host() -> None:
    project = VertexProject(tokens=None, project="tg", location="europe-west4")  # type: ignore[arg-type]
    moved = project.move(
        request(f"{PROJECT_PATH}/cachedContents", "us-central1-aiplatform.googleapis.com", "https://127.0.0.1:8443")
    )
    assert moved == (b"/v1/projects/tg/locations/europe-west4/cachedContents", None)


def test_usage_of_google_and_claude_answers() -> None:
    gemini = classify(VERTEX, "POST", f"{PROJECT_PATH}/publishers/google/models/m:generateContent", j(GEMINI_BODY))
    answer = {
        "candidates": [{"finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
    }
    u = VERTEX.cost.usage(gemini, headers(("content-type", "application/json")), j(answer))
    assert (u.input_tokens, u.output_tokens, u.total_tokens, u.finish_reason) == (4, 2, 6, "STOP")
    grounded = {**answer, "usageMetadata": {**answer["usageMetadata"], "toolUsePromptTokenCount": 90}}
    grounded["usageMetadata"]["totalTokenCount"] = 96
    u = VERTEX.cost.usage(gemini, headers(("content-type", "application/json")), j(grounded))
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (94, 2, 96)  # the tools' prompts are input
    claude = classify(
        VERTEX, "POST", f"{PROJECT_PATH}/publishers/anthropic/models/claude-x@1:rawPredict", j(CLAUDE_BODY)
    )
    answer = {"stop_reason": "end_turn", "usage": {"input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 2}}
    u = VERTEX.cost.usage(claude, headers(("content-type", "application/json")), j(answer))
    assert (u.input_tokens, u.cached_tokens, u.output_tokens, u.finish_reason) == (8, 3, 2, "end_turn")


def test_claudes_stream_is_read_as_anthropics() -> None:
    claude = classify(
        VERTEX, "POST", f"{PROJECT_PATH}/publishers/anthropic/models/claude-x@1:streamRawPredict", j(CLAUDE_BODY)
    )
    reader = VERTEX.cost.usage_reader(claude, headers(("content-type", "text/event-stream")))
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}},
    ]
    for event in events:
        reader.feed(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    u = reader.result()
    assert (u.input_tokens, u.output_tokens, u.finish_reason) == (7, 9, "max_tokens")


def load(settings: VertexConfig):
    return VERTEX.credentials.source.load_runtime(SimpleNamespace(clients=(), overrides=()), settings, None)


def test_project_and_location_apply_to_credentials_only() -> None:
    assert load(VertexConfig()) is None
    with pytest.raises(ValueError, match=r"^credentials: project and location apply"):
        load(VertexConfig(project="tg"))


def test_credentials_that_cannot_be_read_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^credentials: .*missing.json cannot be read: No such file"):
        load(VertexConfig(credentials=str(tmp_path / "missing.json")))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account"}))
    with pytest.raises(ValueError, match=r"^credentials: .*missing fields"):
        load(VertexConfig(credentials=str(broken)))
    other = tmp_path / "federated.json"
    other.write_text(json.dumps({"type": "external_account", "audience": "a"}))
    with pytest.raises(ValueError, match=r"^credentials: .*set `default` and point GOOGLE_APPLICATION_CREDENTIALS"):
        load(VertexConfig(credentials=str(other)))


def test_credentials_without_a_project_need_one(tmp_path: Path) -> None:
    user = tmp_path / "user.json"
    # A token asked for ahead of the first call fails at once: nothing listens on port 9.
    token_uri = "https://127.0.0.1:9/token"
    user.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
                "token_uri": token_uri,
            }
        )
    )
    with pytest.raises(ValueError, match=r"^project: the credentials name no project"):
        load(VertexConfig(credentials=str(user)))
    runtime = load(VertexConfig(credentials=str(user), project="tg", location="us-east5"))
    assert (runtime.project, runtime.location) == ("tg", "us-east5")


def test_host_of_each_kind_of_location() -> None:
    assert [vertex_mod.host_of(loc) for loc in ("global", "us", "asia-northeast1")] == [
        "aiplatform.googleapis.com", "aiplatform.us.rep.googleapis.com", "asia-northeast1-aiplatform.googleapis.com",
    ]  # fmt: skip
