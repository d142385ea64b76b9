"""Gemini API: generativelanguage.googleapis.com (its mTLS twin and Private Service Connect names
too), every API version, and its OpenAI-compatible endpoint."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

from pydantic import Field

from tollgate.common.config_base import ProviderConfig
from tollgate.credentials.base import UpstreamCredential
from tollgate.credentials.google_bearer import (
    CLOUD_PLATFORM,
    GENERATIVE_LANGUAGE,
    BearerToken,
    GoogleTokens,
    load_tokens,
)
from tollgate.formats import GEMINI_GENERATE, OPENAI_CHAT
from tollgate.formats.bodies.exact import (
    CACHED_CONTENT,
    UNREAD_BODY,
    Unreadable,
    check_case,
    path_segments,
    request_model,
    words,
)
from tollgate.formats.gemini_generate.facts import one_of, read_facts
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.providers import openai
from tollgate.providers.base import ChatLeg, Provider, client_cert_of
from tollgate.providers.cost import RESPONSE_HEADERS, ModelsPrefixed
from tollgate.providers.credentials import (
    CallerKeys,
    Configuration,
    Credentials,
    Headers,
    KeyPlacement,
    Previous,
    UpstreamCredentials,
)
from tollgate.providers.models import Models
from tollgate.providers.routing import Routing
from tollgate.providers.upstream import Upstream

# /v1beta/models/gemini-2.0-flash:generateContent, /v1/tunedModels/x:generateContent, …
_MODEL_CALL = re.compile(
    r"^/(?P<version>v\d+(?:alpha|beta)?\d*)/(?P<kind>models|tunedModels)/(?P<model>[^/:]+)(?::(?P<method>[A-Za-z]+))?$"
)
_VERSION = re.compile(r"v\d+(?:alpha|beta)?\d*")
_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_METHOD = re.compile(r"[a-z][A-Za-z]*")
# Gemini's fixed path words, in their letter case (its methods are lowerCamelCase).
WORDS = words(
    "upload", "openai", "models", "tunedModels", "files", "cachedContents", "batches", "operations",
    "corpora", "generatedFiles", "fileSearchStores", "permissions", "generateContent",
    "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents", "batchGenerateContent",
    "predict", "predictLongRunning", "generateAnswer", "asyncBatchEmbedContent", "auth_tokens",
)  # fmt: skip
# Where an ephemeral token is minted (the Live API's, `client.auth_tokens.create`): whoever holds
# one calls Gemini directly.
AUTH_TOKENS = "auth_tokens"


# Google's mTLS hosts (foo.mtls.googleapis.com) take only a client certificate's calls: Tollgate,
# which holds none, sends their calls to the host's twin without mTLS, which serves the same API.
_MTLS = ".mtls.googleapis.com"


def mtls_twin(host: str) -> str | None:
    """The host without mTLS that serves what a Google mTLS host does; None for another host."""
    return host.removesuffix(_MTLS) + ".googleapis.com" if host.endswith(_MTLS) else None


def is_mtls(host: str) -> bool:
    return host.endswith(_MTLS)


def read_openai_extensions(classification: Classification, data: dict[str, Any] | None) -> None:
    """What Google reads in an OpenAI-format body beside OpenAI's fields: its `google` extensions
    (as the OpenAI SDKs send them, `extra_body: {"google": {…}}`), of which a cached content may hold
    tools and a system instruction."""
    if data is None:
        return
    nested = data.get("extra_body")
    for google in (data.get("google"), nested.get("google") if isinstance(nested, dict) else None):
        if isinstance(google, dict) and one_of(google, "cachedContent", "cached_content") is not None:
            classification.facts.unseen(CACHED_CONTENT)


# Batch jobs started by a call to a model: its requests inline, or in a file.
BATCH_METHODS = frozenset(("batchGenerateContent", "asyncBatchEmbedContent"))
# Long-running model calls whose work is not counted in tokens (Veo's videos).
LONG_RUNNING = "predictLongRunning"


def job_of(action: str, model: str, data: dict[str, Any] | None) -> Batch | None:
    """The batch or long-running job a POST to a model's method starts, if any."""
    if action in BATCH_METHODS:
        return batch_of(data, model, embeds=action == "asyncBatchEmbedContent")
    return Batch(1) if action == LONG_RUNNING else None


def batch_of(data: dict[str, Any] | None, model: str, embeds: bool) -> Batch:
    """A batch job (`:batchGenerateContent`, `:asyncBatchEmbedContent`): its requests given inline
    (`batch.inputConfig.requests.requests[].request`), which are read and bounded, or in a file
    (`batch.inputConfig.fileName`), which is not. A request naming another model than the path is
    refused: which one Google would run is not Tollgate's to guess."""
    batch = (data or {}).get("batch")
    if not isinstance(batch, dict):
        raise Unreadable("'batch' is not an object")
    config = one_of(batch, "inputConfig", "input_config")
    if not isinstance(config, dict):
        raise Unreadable("'batch.inputConfig' is not an object")
    inline, file = config.get("requests"), one_of(config, "fileName", "file_name")
    if inline is None:
        return Batch(None)  # in a file (or nowhere, which Google refuses)
    if file is not None:
        raise Unreadable("the batch gives both a file and inline requests")
    items = inline.get("requests") if isinstance(inline, dict) else None
    if not isinstance(items, list):
        raise Unreadable("'batch.inputConfig.requests.requests' is not a list")
    bounded = unbounded = 0
    for item in items:
        request = item.get("request") if isinstance(item, dict) else None
        if not isinstance(request, dict):
            raise Unreadable("a batch's request is not an object")
        named = request_model(request)
        if named is not None and named.removeprefix("models/") != model:
            raise Unreadable("a batch's request names another model than the path")
        if embeds:
            continue  # an embedding generates nothing
        facts = RequestFacts()
        read_facts(request, facts)
        if facts.max_tokens is None:
            unbounded += facts.answers
        else:
            bounded += max(facts.max_tokens, 0) * facts.answers
    return Batch(len(items), bounded, unbounded)


# The tier a call ran at (`standard`, `flex`, `priority`): a priority call over its limit runs at standard.
_SERVICE_TIER_HEADER = "x-gemini-service-tier"


class GeminiConfig(ProviderConfig):
    """`providers.gemini`: besides keys, Google credentials Tollgate asks OAuth tokens of, sent in
    place of a key (`default`: Application Default Credentials; else a credentials file)."""

    credentials: str | None = Field(default=None, min_length=1)
    # A client certificate (and its key, in one PEM file) for its mTLS host, which then keeps its calls.
    client_cert: str | None = Field(default=None, min_length=1)


class GeminiCost(ModelsPrefixed):
    """The Gemini API's: the service tier a call ran at is in its answer's header."""

    __slots__ = ()

    def answer_service_tier(self, headers: Headers) -> str | None:
        return headers.get(_SERVICE_TIER_HEADER) or None


# Where the Gemini API takes keys: its header, a Bearer token, the `key` query parameter.
KEY_POSITIONS = ("x-goog-api-key", "authorization", "query:key")
# Google's front end also takes an OAuth token from these query parameters, as `Authorization`.
OAUTH_QUERY = ("query:access_token", "query:oauth_token")


class GoogleUpstream(Upstream):
    """Google's: an mTLS host's call goes to its twin without mTLS, unless a `client_cert` is set."""

    __slots__ = ()

    def is_mtls_host(self, host: str) -> bool:
        return is_mtls(host)

    def host(self, host: str, settings: ProviderConfig) -> str | None:
        return None if client_cert_of(settings) else mtls_twin(host)


class GeminiModels(Models):
    """The Gemini API's: a resource names its model `models/{model}` (cachedContents, batches)."""

    __slots__ = ()

    def in_body(self, sent: object, model: str) -> str:
        # Kept in that form.
        if isinstance(sent, str) and sent.startswith("models/") and not model.startswith("models/"):
            return f"models/{model}"
        return model


class GoogleKeys(UpstreamCredentials[GoogleTokens]):
    """The Gemini API's: API keys, and bearer tokens of Tollgate's Google credentials."""

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[GoogleTokens] | None
    ) -> GoogleTokens | None:
        """The credentials Tollgate asks tokens of, kept from `previous` while `credentials` is unchanged."""
        assert isinstance(settings, GeminiConfig)
        if settings.credentials is None:
            return None
        if previous is not None:
            old, runtime = previous
            if isinstance(old, GeminiConfig) and old.credentials == settings.credentials:
                return runtime
        return load_tokens(settings.credentials, (CLOUD_PLATFORM, GENERATIVE_LANGUAGE))

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: GoogleTokens | None,
    ) -> UpstreamCredential | None:
        """A token of Tollgate's credentials (`runtime`), after the caller's key in X-Gemini-Key
        and the provider's keys."""
        return None if runtime is None else BearerToken(runtime, self.caller.header_positions)


class Gemini(Provider):
    name = "gemini"
    semconv_name = "gcp.gemini"  # the Gemini API (AI Studio)
    host_globs = (
        "generativelanguage.googleapis.com",
        "generativelanguage.mtls.googleapis.com",
        # A Private Service Connect endpoint's name (generativelanguage-<endpoint>.p.googleapis.com).
        "generativelanguage-*.p.googleapis.com",
    )
    credentials = Credentials(
        CallerKeys("X-Gemini-Key", KEY_POSITIONS, positions=(*KEY_POSITIONS, *OAUTH_QUERY)),
        KeyPlacement("x-goog-api-key"),
        GoogleKeys("keys or `credentials`"),
    )
    models = GeminiModels(_MODEL_CALL)
    settings_model = GeminiConfig
    upstream = GoogleUpstream("generativelanguage.googleapis.com")
    routing = Routing(
        openai_compatible_prefix="/v1beta/openai/",
        openai_compatible_endpoints=frozenset(("chat.completions", "embeddings")),
        chat_formats={
            "generateContent": GEMINI_GENERATE,
            "streamGenerateContent": GEMINI_GENERATE,
            "chat.completions": OPENAI_CHAT,
        },
    )
    error_format = GEMINI_GENERATE
    # Its OpenAI-compatible chat answers report the thoughts beside `completion_tokens`
    # (`completion_tokens_details.reasoning_tokens`, in `total_tokens`): output, as Gemini bills them.
    cost = GeminiCost(
        "google",
        free_endpoints=frozenset(("files.upload",)),
        reasoning_in_completion=False,
        response_headers=RESPONSE_HEADERS | {_SERVICE_TIER_HEADER.encode()},
    )

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        # The SDKs' own choice: server-sent events rather than one JSON array.
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return ChatLeg(f"/v1beta/models/{quote(model, safe='-_.~')}:{method}", GEMINI_GENERATE)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        check_request_overrides(query)
        segments = path_segments(path)
        check_case(segments, WORDS)
        if segments[0] == "upload":
            if len(segments) != 3 or not _VERSION.fullmatch(segments[1]) or segments[2] != "files":
                raise Unreadable("Gemini uploads go to /upload/{version}/files")
            return Classification(endpoint="files.upload", wire_format=GEMINI_GENERATE, unread=UNREAD_BODY)
        if not _VERSION.fullmatch(segments[0]):
            raise Unreadable("Gemini API paths start with a version (/v1beta/…)")
        if len(segments) == 1:
            raise Unreadable("the path names no endpoint")
        kind = segments[1]
        if kind == "openai":
            check_system_parameters(query)  # Google's front end reads them on every path
            classification = openai.classify_request(method, segments[2:], data, query)
            read_openai_extensions(classification, data)
            return classification
        if kind in ("models", "tunedModels") and len(segments) == 3:
            check_system_parameters(query)  # a model call's answer is read for its usage
            return self._model_call(method, segments[2], data)
        if kind.replace("_", "").lower() == "authtokens" and kind != AUTH_TOKENS:
            raise Unreadable(f"'{kind}' is not written '{AUTH_TOKENS}'")
        # Listings, files, cached contents, batches, operations…: named by their first segment.
        model = request_model(data) if data is not None and method == "POST" else None
        facts = RequestFacts()
        if kind == "tunedModels" and len(segments) == 2 and method == "POST":
            facts.batch = Batch(None)  # a tuning job: its training data is not counted in tokens here
        return Classification(
            endpoint=kind,
            model=model.removeprefix("models/") if model else model,
            facts=facts,
            wire_format=GEMINI_GENERATE,
            mints_credential=kind == AUTH_TOKENS,  # whatever the method
        )

    @staticmethod
    def _model_call(method: str, resource: str, data: dict[str, Any] | None) -> Classification:
        """models/{model}[:{method}]: a model, or a call to one."""
        model, colon, action = resource.partition(":")
        if not _MODEL_ID.fullmatch(model):
            raise Unreadable("Gemini model ids are lower-case letters, digits, '.', '_' and '-'")
        if not colon:
            return Classification("models.get", model, wire_format=GEMINI_GENERATE)
        check_case((action,), WORDS)
        if not _METHOD.fullmatch(action):
            raise Unreadable("the path's method is not one Gemini names (e.g. :generateContent)")
        facts = RequestFacts(stream=action == "streamGenerateContent")
        try:
            if data is not None and method == "POST":
                read_facts(data, facts)
            if method == "POST":
                facts.batch = job_of(action, model, data)
        except Unreadable as e:
            raise e.at(action) from None
        return Classification(action, model, facts, GEMINI_GENERATE)

    def check_headers(self, headers: Mapping[bytes, bytes]) -> None:
        if b"x-goog-fieldmask" in headers:
            raise Unreadable("X-Goog-FieldMask asks for a partial answer, which may leave out its usage")
        # Google's front end reads a body declared protobuf as protobuf: not the JSON Tollgate read.
        if b"proto" in headers.get(b"content-type", b"").lower():
            raise Unreadable("the body is declared protobuf (Content-Type), which Tollgate does not read")

    def streams_unread(self, method: str, path: str) -> bool:
        upload = path.startswith("/upload/") and path.endswith("/files") and path.count("/") == 3
        return upload and method in ("POST", "PUT")


# Google's system parameters that change what an answer holds: a partial one (`fields`) may leave
# its usage out; another format (`alt=proto`, `alt=media`, a JSONP `callback`) is not one Tollgate reads.
_PARTIAL = frozenset(("fields", "$fields"))
_FORMAT = frozenset(("alt", "$alt"))
_CALLBACK = frozenset(("callback", "$callback"))
_ALTS_READ = frozenset(("json", "sse"))
# And those that change how the request is read: as another method, or its body as another type.
_OVERRIDES = {
    "$httpmethod": "the query asks Google to take the request for another method ('$httpMethod')",
    "$ct": "the query asks Google to read the body as another Content-Type ('$ct')",
}


def system_parameters(query: str) -> Iterator[tuple[str, str]]:
    """The query's parameters as Google's front end may read them: names decoded and in lower case,
    split at ";" as well as "&" (as some servers split them; `$alt=json;enum-encoding=int` reads
    so too). Values stay encoded."""
    for parameter in re.split("[&;]", query) if query else ():
        name, _, value = parameter.partition("=")
        yield unquote_plus(name, errors="replace").lower(), value


def check_request_overrides(query: str) -> None:
    """`Unreadable` where the query asks Google to read the request otherwise than it was sent."""
    for name, _ in system_parameters(query):
        if name in _OVERRIDES:
            raise Unreadable(_OVERRIDES[name])


def check_system_parameters(query: str) -> None:
    """`Unreadable` where the query asks Google for an answer Tollgate could not read its usage from."""
    for name, value in system_parameters(query):
        if name in _PARTIAL:
            raise Unreadable("the query asks for a partial answer ('fields'), which may leave out its usage")
        if name in _CALLBACK:
            raise Unreadable("the query asks for a JSONP answer ('callback'), which Tollgate does not read")
        if name in _FORMAT and unquote_plus(value, errors="replace").lower().partition(";")[0] not in _ALTS_READ:
            raise Unreadable("the query asks for an answer format ('alt') Tollgate does not read")
