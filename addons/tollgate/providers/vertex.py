"""Vertex AI: aiplatform.googleapis.com and its regional (`us-central1-aiplatform…`) and
multi-regional (`aiplatform.eu.rep…`) hosts, their mTLS twins, Private Service Connect names
(`aiplatform-<endpoint>.p.googleapis.com`) and dedicated endpoints (`….prediction.vertexai.goog`).
Google's models speak the Gemini API's generateContent format, Claude's the Messages API's
(`rawPredict`), and `endpoints/openapi` is Vertex's OpenAI-compatible API. Tollgate's own
credential is an OAuth token for a project (`credentials`, `project`, `location`), or an
express-mode API key (`keys`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import Field

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.credentials.google_bearer import CLOUD_PLATFORM, QUOTA_PROJECT, BearerToken, GoogleTokens, load_tokens
from tollgate.credentials.header_key import HeaderKey
from tollgate.formats import ANTHROPIC_MESSAGES, CLAUDE_ON_VERTEX, GEMINI_GENERATE, anthropic_messages
from tollgate.formats.anthropic_messages import on_vertex
from tollgate.formats.bodies.exact import Unreadable, check_case, path_segments, request_model, words
from tollgate.formats.gemini_generate.facts import read_facts
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.providers import gemini, openai
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import (
    CallerKeys,
    Configuration,
    Credentials,
    KeyPlacement,
    Previous,
    UpstreamCredentials,
)
from tollgate.providers.models import Models
from tollgate.providers.routing import Routing

_VERSION = re.compile(r"v\d+(?:alpha|beta)?\d*")
# Project ids and numbers, locations, publishers: lower-case, as Google names them (a resource
# name in another case names another resource, or none).
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
# Model ids: Claude's carry their version after an '@' (claude-sonnet-4-5@20250929).
_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._@-]*")
_ENDPOINT_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
_METHOD = re.compile(r"[a-z][A-Za-z]*")
GOOGLE, ANTHROPIC = "google", "anthropic"
# Claude's methods on Vertex (`on_vertex.CALLS`), and its token count (a Messages body naming its
# model, at models/count-tokens:rawPredict).
_CLAUDE_CALLS = frozenset(on_vertex.CALLS)
_CLAUDE_COUNT = on_vertex.COUNT
WORDS = words(
    "projects", "locations", "publishers", "models", "endpoints", "openapi", "chat", "completions",
    "embeddings", "generateContent", "streamGenerateContent", "countTokens", "computeTokens",
    "embedContent", "predict", "rawPredict", "streamRawPredict", "predictLongRunning",
    "fetchPredictOperation", "cachedContents", "batchPredictionJobs", "tuningJobs", "operations", "google",
    "anthropic",
)  # fmt: skip
# /v1/projects/{project}/locations/{location}/…, as Tollgate moves a call to its own project.
_PROJECT_PATH = re.compile(r"^/(?P<version>[^/]+)/projects/[^/]+/locations/(?P<location>[^/]+)(?P<rest>/.*)?$")
# Where the SDKs send each location (google-genai's own choice of host).
_MULTI_REGIONS = frozenset(("us", "eu"))
_GEMINI = gemini.Gemini()
# Jobs a POST to a location's collection starts, their requests in a bucket or a BigQuery table.
_JOBS = frozenset(("batchPredictionJobs", "tuningJobs"))


def host_of(location: str) -> str:
    """Vertex AI's host for a location."""
    if location == "global":
        return "aiplatform.googleapis.com"
    if location in _MULTI_REGIONS:
        return f"aiplatform.{location}.rep.googleapis.com"
    return f"{location}-aiplatform.googleapis.com"


class VertexConfig(ProviderConfig):
    """`providers.vertex`: besides keys (express-mode API keys), Google credentials Tollgate asks
    OAuth tokens of (`default`: Application Default Credentials; else a credentials file), and the
    project and location its calls go to (the credentials' project, and the caller's location or
    `global`, where not set)."""

    credentials: str | None = Field(default=None, min_length=1)
    project: str | None = Field(default=None, pattern=_NAME.pattern)
    location: str | None = Field(default=None, pattern=_NAME.pattern)
    # A client certificate (and its key, in one PEM file) for its mTLS hosts, which then keep their calls.
    client_cert: str | None = Field(default=None, min_length=1)


@dataclass(frozen=True, slots=True)
class VertexProject:
    """Tollgate's own project on Vertex AI, and the credentials that call it."""

    tokens: GoogleTokens
    project: str
    location: str | None  # None: the location the caller names, else `global`

    def move(self, request: RequestParts) -> tuple[bytes | None, str | None]:
        """The request's path in Tollgate's project (an express-mode path, which names none, moved
        into it), and the location's host where the call goes to the public host the client called
        (or its twin): a private endpoint keeps its host."""
        raw, question, query = request.path.decode("utf-8", "surrogateescape").partition("?")
        m = _PROJECT_PATH.match(raw)
        if m is not None:
            version, location, rest = m["version"], self.location or m["location"], m["rest"] or ""
        else:
            version, _, rest = raw[1:].partition("/")
            location, rest = self.location or "global", f"/{rest}"
        path = f"/{version}/projects/{self.project}/locations/{location}{rest}{question}{query}"
        host = None
        if _goes_where_called(request) and _LOCATION_HOST.fullmatch(request.called_host):
            to = host_of(location)
            if gemini.is_mtls(request.host) and ".rep." not in to:  # an mTLS host kept (`client_cert`)
                to = to.removesuffix(".googleapis.com") + ".mtls.googleapis.com"
            host = to if to != request.host else None
        return path.encode("utf-8", "surrogateescape"), host


# Vertex AI's public hosts, each serving a location (and their mTLS twins).
_LOCATION_HOST = re.compile(
    r"(?:[a-z0-9-]+-)?aiplatform(?:\.mtls)?\.googleapis\.com|aiplatform\.[a-z0-9-]+\.rep\.googleapis\.com"
)


def _goes_where_called(request: RequestParts) -> bool:
    """Whether the call goes to the host the client called (or, for an mTLS host, its twin), no
    upstream configured."""
    twin = gemini.mtls_twin(request.called_host)
    return request.upstream in (f"https://{request.called_host}", f"https://{twin}")


# Where Vertex AI takes keys: a Bearer token, express mode's API key in its header or query.
KEY_POSITIONS = ("authorization", "x-goog-api-key", "query:key")


class VertexModels(Models):
    """Vertex AI's: a model named with its publisher (`anthropic/claude-opus-4`, the
    OpenAI-compatible endpoint's form) or by its resource name (`publishers/google/models/x`) is
    kept in that form, the model id replaced; a model given with its own publisher goes as it is."""

    __slots__ = ()

    def in_body(self, sent: object, model: str) -> str:
        if isinstance(sent, str) and "/" in sent and "/" not in model:
            return f"{sent.rpartition('/')[0]}/{model}"
        return model


class VertexCredentials(UpstreamCredentials[VertexProject]):
    """Vertex AI's: express mode's API keys, a caller's own OAuth token in its side header, and
    bearer tokens of Tollgate's Google credentials for their project."""

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[VertexProject] | None
    ) -> VertexProject | None:
        """The credentials Tollgate asks tokens of and the project they call, kept from `previous`
        while the settings that make them are unchanged."""
        assert isinstance(settings, VertexConfig)
        if settings.credentials is None:
            if settings.project is not None or settings.location is not None:
                raise ValueError("credentials: project and location apply to Tollgate's credentials: set them too")
            return None
        if previous is not None:
            old, runtime = previous
            same = ("credentials", "project", "location")
            if isinstance(old, VertexConfig) and all(getattr(old, f) == getattr(settings, f) for f in same):
                return runtime
        tokens = load_tokens(settings.credentials, (CLOUD_PLATFORM,))
        project = settings.project or tokens.project
        if project is None:
            raise ValueError("project: the credentials name no project: set the project Tollgate's calls go to")
        return VertexProject(tokens, project, settings.location)

    def side_credential(
        self, classification: Classification, side: Mapping[str, str], settings: ProviderConfig
    ) -> UpstreamCredential | None:
        """The caller's own OAuth access token in X-Vertex-Token (the provider's keys are express
        mode's API keys: the path goes as it came)."""
        token = side.get(self.caller.side_name)
        if not token:
            return None
        return HeaderKey(b"authorization", f"Bearer {token}".encode(), self.caller.header_positions, fingerprint(token))

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: VertexProject | None,
    ) -> UpstreamCredential | None:
        """Tollgate's credentials, the call moved into their project (`runtime`)."""
        return None if runtime is None else BearerToken(runtime.tokens, self.caller.header_positions, runtime.move)


class Vertex(Provider):
    name = "vertex"
    semconv_name = "gcp.vertex_ai"
    # The global host, a region's (us-central1-aiplatform…), a multi-region's (aiplatform.eu.rep…),
    # the mTLS twins of the first two, their Private Service Connect names, and dedicated endpoints'
    # own names ({endpoint}.{region}-{uid}.prediction.vertexai.goog).
    host_pattern = "|".join(
        (
            r"aiplatform\.googleapis\.com",
            r"[a-z0-9-]+-aiplatform\.googleapis\.com",
            r"aiplatform\.[a-z0-9-]+\.rep\.googleapis\.com",
            r"(?:[a-z0-9-]+-)?aiplatform\.mtls\.googleapis\.com",
            r"(?:[a-z0-9-]+-)?aiplatform-[a-z0-9]+\.p\.googleapis\.com",
            r"(?:[a-z0-9-]+\.)+prediction\.vertexai\.goog",
        )
    )
    host_globs = (
        "aiplatform.googleapis.com",
        "*-aiplatform.googleapis.com",
        "aiplatform.*.rep.googleapis.com",
        "aiplatform.mtls.googleapis.com",
        "*-aiplatform.mtls.googleapis.com",
        "aiplatform-*.p.googleapis.com",
        "*-aiplatform-*.p.googleapis.com",
        "**.prediction.vertexai.goog",
    )
    # Its side header holds a caller's own OAuth access token; its key, an API key, goes in its
    # header whatever the call's wire format. The project whose quota a call counts against (a
    # billing header) goes only with a caller's own credential.
    credentials = Credentials(
        CallerKeys("X-Vertex-Token", KEY_POSITIONS, positions=(*KEY_POSITIONS, *gemini.OAUTH_QUERY)),
        KeyPlacement("x-goog-api-key", key_by_format=False, billing_headers=frozenset((QUOTA_PROJECT,))),
        VertexCredentials("keys or `credentials`"),
    )
    upstream = gemini.GoogleUpstream("aiplatform.googleapis.com")
    settings_model = VertexConfig
    models = VertexModels(
        re.compile(
            r"^/[^/]+/(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/(?P<model>[^/:]+)(?::[A-Za-z]+)?$"
        )
    )
    # Google's models speak the Gemini API's, and OpenAI's.
    routing = Routing(chat_formats=gemini.Gemini.routing.chat_formats)
    error_format = GEMINI_GENERATE  # Google's error shape, as the Gemini API's
    cost = Cost("google", reasoning_in_completion=gemini.Gemini.cost.reasoning_in_completion)

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        """Claude's models by rawPredict, Google's by generateContent; at express mode's path, which
        Tollgate's credentials move into their project (`VertexProject.move`)."""
        model_id = quote(model, safe="-_.~@")
        if model.startswith("claude"):
            method = "streamRawPredict" if stream else "rawPredict"
            return ChatLeg(f"/v1/publishers/{ANTHROPIC}/models/{model_id}:{method}", CLAUDE_ON_VERTEX)
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return ChatLeg(f"/v1/publishers/{GOOGLE}/models/{model_id}:{method}", GEMINI_GENERATE)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        gemini.check_request_overrides(query)
        segments = path_segments(path)
        check_case(segments, WORDS)
        if not _VERSION.fullmatch(segments[0]):
            raise Unreadable("Vertex AI paths start with a version (/v1/…)")
        rest = segments[1:]
        if rest[:1] == ["projects"]:
            if len(rest) < 4 or rest[2] != "locations" or not (_NAME.fullmatch(rest[1]) and _NAME.fullmatch(rest[3])):
                raise Unreadable("a project's path is /{version}/projects/{project}/locations/{location}/…")
            rest = rest[4:]
        if not rest:
            raise Unreadable("the path names no endpoint")
        if rest[:2] == ["endpoints", "openapi"]:
            gemini.check_system_parameters(query)  # Google's front end reads them on every path
            classification = openai.classify_request(method, rest[2:], data, query)
            gemini.read_openai_extensions(classification, data)
            return by_publisher(classification)
        if rest[0] == "publishers" and len(rest) == 4 and rest[2] == "models":
            gemini.check_system_parameters(query)  # a model call's answer is read for its usage
            return self._model_call(method, rest[1], rest[3], data)
        if rest[0] == "endpoints" and len(rest) == 2 and ":" in rest[1]:
            gemini.check_system_parameters(query)
            return self._endpoint_call(method, rest[1], data)
        if rest[0] == "endpoints" and rest[2:] == ["chat", "completions"]:
            # A model deployed to an endpoint (a dedicated one's own host, say), called in OpenAI's
            # format: the endpoint's model is what runs, whatever the body names.
            gemini.check_system_parameters(query)
            if not _ENDPOINT_ID.fullmatch(rest[1]):
                raise Unreadable("an endpoint's chat completions are at endpoints/{id}/chat/completions")
            classification = openai.classify_request(method, rest[2:], data, query)
            classification.model = f"endpoints/{rest[1]}"
            classification.unread = tuple(u for u in classification.unread if u != "model")
            return classification
        # Listings, cached contents, batch prediction jobs, operations…: named by their first segment.
        model = request_model(data) if data is not None and method == "POST" else None
        facts = RequestFacts()
        if method == "POST" and len(rest) == 1 and rest[0] in _JOBS:
            facts.batch = Batch(None)  # its requests (its training data) in a bucket or a table
        return Classification(rest[0], model_id(model) if model else model, facts, GEMINI_GENERATE)

    @staticmethod
    def _model_call(method: str, publisher: str, resource: str, data: dict[str, Any] | None) -> Classification:
        """publishers/{publisher}/models/{model}[:{method}]: a model, or a call to one."""
        model, colon, action = resource.partition(":")
        if not _NAME.fullmatch(publisher) or not _MODEL_ID.fullmatch(model):
            raise Unreadable(
                "Vertex AI's publishers and model ids are lower-case letters, digits, '.', '_', '@' and '-'"
            )
        if not colon:
            return Classification("models.get", model, wire_format=GEMINI_GENERATE, publisher=publisher)
        check_case((action,), WORDS)
        if not _METHOD.fullmatch(action):
            raise Unreadable("the path's method is not one Vertex AI names (e.g. :generateContent)")
        if publisher == ANTHROPIC and action in _CLAUDE_CALLS:
            classification = _claude_call(method, model, action, data)
            classification.publisher = ANTHROPIC
            return classification
        if publisher != GOOGLE:
            raise Unreadable(
                f"Tollgate reads the models of Vertex AI's publishers {GOOGLE} and {ANTHROPIC}; call"
                " other publishers' models through endpoints/openapi/chat/completions"
            )
        facts = RequestFacts(stream=action == "streamGenerateContent")
        try:
            if data is not None and method == "POST":
                read_facts(data, facts)
        except Unreadable as e:
            raise e.at(action) from None
        facts.batch = _long_running(method, action)
        return Classification(action, model, facts, GEMINI_GENERATE, publisher=GOOGLE)

    @staticmethod
    def _endpoint_call(method: str, resource: str, data: dict[str, Any] | None) -> Classification:
        """endpoints/{id}:{method}: a model deployed to an endpoint (a tuned Gemini model, say),
        named `endpoints/{id}`."""
        endpoint_id, _, action = resource.partition(":")
        check_case((action,), WORDS)
        if not _ENDPOINT_ID.fullmatch(endpoint_id) or not _METHOD.fullmatch(action):
            raise Unreadable("an endpoint's call is endpoints/{id}:{method}")
        facts = RequestFacts(stream=action == "streamGenerateContent")
        if (
            action in ("generateContent", "streamGenerateContent", "countTokens")
            and data is not None
            and method == "POST"
        ):
            try:
                read_facts(data, facts)
            except Unreadable as e:
                raise e.at(action) from None
        facts.batch = _long_running(method, action)
        return Classification(action, f"endpoints/{endpoint_id}", facts, GEMINI_GENERATE)

    def check_headers(self, headers: Mapping[bytes, bytes]) -> None:
        _GEMINI.check_headers(headers)


def _long_running(method: str, action: str) -> Batch | None:
    """A long-running prediction (Veo's videos): a job whose work is not counted in tokens."""
    return Batch(1) if method == "POST" and action == gemini.LONG_RUNNING else None


def _claude_call(method: str, model: str, action: str, data: dict[str, Any] | None) -> Classification:
    """Claude on Vertex AI: a Messages body at models/{model}:rawPredict (whole) or
    :streamRawPredict; its token count at models/count-tokens:rawPredict, naming the model it counts for."""
    if model == _CLAUDE_COUNT:
        counted = request_model(data) if data is not None and method == "POST" else None
        return Classification(endpoint=_CLAUDE_COUNT, model=counted, wire_format=ANTHROPIC_MESSAGES)
    if data is None or method != "POST":
        return Classification(endpoint=action, model=model, wire_format=ANTHROPIC_MESSAGES)
    try:
        named = request_model(data)
        if named is not None and named != model:
            # Which of the two Vertex AI would call is not Tollgate's to guess.
            raise Unreadable("the body names another model than the path")
        facts = RequestFacts()
        anthropic_messages.read_facts(data, facts)
    except Unreadable as e:
        raise e.at(action) from None
    if action == "streamRawPredict":
        facts.stream = True
    return Classification(endpoint=action, model=model, facts=facts, wire_format=ANTHROPIC_MESSAGES)


def by_publisher(classification: Classification) -> Classification:
    """An OpenAI-compatible call's model as Vertex AI names it in its own paths: the endpoint's
    `publisher/model` (`anthropic/claude-opus-4`) read as the model's id and its publisher apart, so
    that rules, limits and prices on the model's id hold whichever way it is called. A name of more
    parts, or a publisher not in lower case, is refused: which model Vertex AI would call is not
    Tollgate's to guess."""
    model = classification.model
    if model is None or "/" not in model:
        return classification
    publisher, _, model_id = model.partition("/")
    if not _NAME.fullmatch(publisher) or not model_id or "/" in model_id:
        problem = "Vertex AI's OpenAI-compatible endpoint names a model as publisher/model, in lower case"
        raise Unreadable(problem).at(classification.endpoint)
    classification.model, classification.publisher = model_id, publisher
    return classification


def model_id(name: str) -> str:
    """A model as a body names it by its resource name (`projects/…/publishers/google/models/x`,
    `publishers/google/models/x`, `models/x`): its id."""
    return name.rpartition("models/")[2] if name.startswith(("projects/", "publishers/", "models/")) else name
