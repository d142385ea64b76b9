"""Azure OpenAI: a resource's hosts (`{resource}.openai.azure.com`, and the Azure AI services hosts
`{resource}.cognitiveservices.azure.com` and `{resource}.services.ai.azure.com`, which serve other
products too; the first two in Azure Government's `.azure.us` and Azure in China's `.azure.cn`),
its deployments paths (`/openai/deployments/{deployment}/chat/completions`, whose model is the
deployment) and its paths that name the model in the body as OpenAI's do (`/openai/v1/…`, and
`/openai/responses`, `/openai/files`… as `AzureOpenAI` calls them). The wire format is OpenAI's
(`formats/openai_chat/`, `formats/openai_responses/`), read as `openai.py` reads it. Keys go in
`api-key`; Tollgate's own credential is a resource's key, the provider's, or an Entra ID token
(`credentials: default`, `entra_id.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from tollgate.common.config_base import ProviderConfig, Strict, base_url, keys_not_blank
from tollgate.credentials.base import UpstreamCredential
from tollgate.credentials.entra_id import EntraToken, EntraTokens, load_tokens
from tollgate.credentials.keypool import KeyPool
from tollgate.formats import OPENAI_API, OPENAI_CHAT
from tollgate.formats.bodies.exact import UNREAD_FACTS, Unreadable, check_case, path_segments, words
from tollgate.formats.openai_api import classify_body
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.providers import openai
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
from tollgate.providers.upstream import Upstream

# A resource's custom subdomain: lower-case letters, digits and hyphens.
_RESOURCE = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
# Where only the OpenAI API lives, and the Azure AI services hosts, which serve other products too:
# in Microsoft's public cloud, Azure Government (.azure.us) and Azure in China (.azure.cn).
OPENAI_SUFFIXES = ("openai.azure.com", "openai.azure.us", "openai.azure.cn")
_SUFFIXES = (
    *OPENAI_SUFFIXES,
    "cognitiveservices.azure.com", "cognitiveservices.azure.us", "cognitiveservices.azure.cn",
    "services.ai.azure.com",
)  # fmt: skip
_HOST = re.compile(rf"(?P<resource>{_RESOURCE})\.(?P<suffix>{'|'.join(re.escape(s) for s in _SUFFIXES)})")
# A deployment's name, as Azure allows it.
_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# What a deployment serves, by the path's segments after `/openai/deployments/{deployment}/`.
_DEPLOYMENT_ENDPOINTS = {
    ("chat", "completions"): "chat.completions",
    ("completions",): "completions",
    ("embeddings",): "embeddings",
    ("images", "generations"): "images.generations",
    ("images", "edits"): "images.edits",
    ("audio", "speech"): "audio.speech",
    ("audio", "transcriptions"): "audio.transcriptions",
    ("audio", "translations"): "audio.translations",
}
# The first segments of the APIs an Azure AI services host serves models at, in any letter case:
# the OpenAI API and the model inference API (`/models/…`) are read, Foundry's projects (`/api/…`,
# whose agents call models) are refused; every other path there is another product's.
_MODEL_APIS = frozenset(("openai", "models", "api"))
# The model inference API's endpoints in OpenAI's format, by the path's segments after `/models/`
# (its image embeddings and model info are not read).
_INFERENCE_ENDPOINTS = {("chat", "completions"): "chat.completions", ("embeddings",): "embeddings"}
# What the model inference API's `extra-parameters` header may say: refuse (its default) or drop the
# body's fields it does not define. `pass-through` hands them to the model, unread by Tollgate.
_EXTRA_PARAMETERS = frozenset((b"error", b"drop"))
WORDS = words("openai", "deployments", "v1", "realtimeapi")
# The Realtime API's preview paths (`/openai/realtimeapi/…`) that mint an ephemeral key a browser
# then calls the resource with directly; the v1 API's are OpenAI's (`openai.mints_credential`).
_REALTIMEAPI_MINTS = (("realtimeapi", "sessions"), ("realtimeapi", "transcription_sessions"),
                      ("realtimeapi", "client_secrets"))  # fmt: skip
_IN_PATH = re.compile(r"^/openai/deployments/(?P<model>[^/]+)/")


@dataclass(slots=True)
class ModelInference(Classification):
    """A call to the model inference API (`/models/chat/completions`), OpenAI's format with the
    deployment in the body's `model`: it takes no field it does not define (`stream_options`)."""


class AzureResource(Strict):
    """`providers.azure.resources.<resource>`: the resource's own keys, and where its calls go."""

    keys: tuple[str, ...] = ()
    upstream: str | None = None

    _upstream = field_validator("upstream")(classmethod(lambda cls, value: base_url(value)))

    _keys = field_validator("keys")(classmethod(lambda cls, value: keys_not_blank(value)))


class AzureConfig(ProviderConfig):
    """`providers.azure`: besides keys (sent to every resource without keys of its own), each
    resource's keys and upstream (`resources`), an Entra ID credential Tollgate asks tokens of
    (`default`: azure-identity's DefaultAzureCredential), and the model each deployment runs
    (`deployments`), which prices, limits and the policy go by."""

    credentials: Literal["default"] | None = None
    resources: dict[str, AzureResource] = Field(default_factory=dict)
    deployments: dict[str, str] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _resource_names(cls, value: dict[str, AzureResource]) -> dict[str, AzureResource]:
        for name in value:
            if not re.fullmatch(_RESOURCE, name):
                raise ValueError(
                    f"{name!r} is not a resource's name as its host names it ({{resource}}.openai.azure.com:"
                    " lower-case letters, digits and hyphens)"
                )
        return value

    @field_validator("deployments")
    @classmethod
    def _deployment_names(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name, model in value.items():
            if not _DEPLOYMENT.fullmatch(name):
                raise ValueError(f"{name!r} is not a deployment's name (letters, digits, '.', '_' and '-')")
            if not model.strip():
                raise ValueError(f"{name}: the model is empty")
            if name.lower() in seen:
                raise ValueError(f"{name!r} and {seen[name.lower()]!r} are one deployment (Azure ignores case)")
            seen[name.lower()] = name
        return value


@dataclass(frozen=True, slots=True)
class AzureRuntime:
    """What Azure's settings load: each configured resource's key pool, and the Entra ID tokens."""

    pools: dict[str, KeyPool] = field(default_factory=dict)
    tokens: EntraTokens | None = None


def resource_of(host: str) -> tuple[str, str] | None:
    """The resource an Azure host (lower case) names, and its suffix; None for a host it does not."""
    m = _HOST.fullmatch(host)
    return None if m is None else (m["resource"], m["suffix"])


def _first_segment(path: str) -> str:
    return path[1:].partition("/")[0]


class AzureUpstream(Upstream):
    """Azure's: a resource may have an upstream of its own."""

    __slots__ = ()

    def configured(self, settings: ProviderConfig, classification: Classification | None) -> str | None:
        """A resource's own upstream for a call to its host, else the provider's."""
        assert isinstance(settings, AzureConfig)
        resource = settings.resources.get(classification.resource or "") if classification is not None else None
        return resource.upstream if resource is not None and resource.upstream else settings.upstream


class AzureModels(Models):
    """Azure's: a deployment names the model, in any case."""

    __slots__ = ()

    def names(self, settings: ProviderConfig) -> Callable[[str], str] | None:
        """A deployment's model (`deployments`), else the deployment's name in lower case: Azure
        ignores its case, and so must every rule, limit, price and the policy."""
        assert isinstance(settings, AzureConfig)
        names = {name.lower(): model for name, model in settings.deployments.items()}
        if not names:
            return str.lower
        return lambda deployment: names.get(deployment.lower()) or deployment.lower()


class EntraCredentials(UpstreamCredentials[AzureRuntime]):
    """Azure's: keys, each resource's own pool of keys, and Entra ID tokens of Tollgate's."""

    def load_runtime(
        self, config: Configuration, settings: ProviderConfig, previous: Previous[AzureRuntime] | None
    ) -> AzureRuntime | None:
        """Each resource's key pool (keeping the rests of `previous`'s), and the Entra ID tokens, kept
        from `previous` while `credentials` is unchanged."""
        assert isinstance(settings, AzureConfig)
        old = previous[1] if previous is not None else None
        old_settings = previous[0] if previous is not None else None
        if not settings.resources and settings.credentials is None:
            return None
        pools = {
            name: old.pools[name].renewed(r.keys) if old is not None and name in old.pools else KeyPool(r.keys)
            for name, r in settings.resources.items()
            if r.keys
        }
        tokens = None
        if settings.credentials is not None:
            kept = isinstance(old_settings, AzureConfig) and old_settings.credentials == settings.credentials
            if kept and old is not None and old.tokens is not None:
                tokens = old.tokens
            else:
                tokens = load_tokens(settings.credentials)
        return AzureRuntime(pools, tokens)

    def own_pools(self, runtime: AzureRuntime | None) -> Mapping[str, KeyPool]:
        return runtime.pools if runtime is not None else {}

    def held_credential(
        self,
        classification: Classification,
        side: Mapping[str, str],
        settings: ProviderConfig,
        runtime: AzureRuntime | None,
    ) -> UpstreamCredential | None:
        """An Entra ID token of Tollgate's, after the caller's key in X-Azure-Key, the resource's
        keys in turn (`own_pools`, for a call to a resource that has some) and the provider's."""
        return (
            EntraToken(runtime.tokens, self.caller.header_positions) if runtime is not None and runtime.tokens else None
        )


class Azure(Provider):
    name = "azure"
    semconv_name = "azure.ai.openai"
    host_pattern = _HOST.pattern.replace("?P<resource>", "?:").replace("?P<suffix>", "?:")
    host_globs = tuple(f"*.{suffix}" for suffix in _SUFFIXES)
    # AzureOpenAI(api_key=…) sends `api-key`; the OpenAI SDK on `/openai/v1/`, and an Entra ID
    # token, `Authorization: Bearer`; Azure AI services also read a resource's key from
    # `Ocp-Apim-Subscription-Key` (the Speech and Language SDKs send it there) and from the
    # `subscription-key` query parameter. Its key goes in `api-key` whatever the path: the v1 API
    # takes it there too.
    credentials = Credentials(
        CallerKeys("X-Azure-Key", ("api-key", "authorization", "ocp-apim-subscription-key", "query:subscription-key")),
        KeyPlacement("api-key", key_by_format=False),
        EntraCredentials("keys, `resources` or `credentials`"),
    )
    upstream = AzureUpstream(hint="your resource's https://RESOURCE.openai.azure.com")
    routing = Routing(
        openai_compatible_prefix="/openai/v1/",
        openai_compatible_endpoints=frozenset(("chat.completions", "embeddings", "responses")),
        chat_formats={"chat.completions": OPENAI_CHAT},
    )
    settings_model = AzureConfig
    # genai-prices' Azure table, which falls back on OpenAI's for the models it does not list.
    cost = Cost("azure", free_endpoints=openai.OpenAI.cost.free_endpoints)
    # A deployment's name ignores case, as Azure reads it.
    models = AzureModels(_IN_PATH, ignore_case=True)
    error_format = OPENAI_API

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        # The v1 API names the deployment in the body, as OpenAI names the model.
        return ChatLeg("/openai/v1/chat/completions", OPENAI_CHAT)

    def classify_at(
        self, host: str, method: str, path: str, data: dict[str, Any] | None, query: str = ""
    ) -> Classification:
        """A call read by its resource's host. An Azure AI services host serves other products too: a
        path outside its model APIs goes on with the caller's own credential."""
        found = resource_of(host)
        resource = found[0] if found is not None else None
        if found is not None and found[1] not in OPENAI_SUFFIXES:
            first = _first_segment(path)
            path_segments(path, percent=True)  # canonical, as the server will read it
            if "%" in first:
                raise Unreadable("the path's first segment is percent-encoded")
            if first.lower() not in _MODEL_APIS:
                return Classification(wire_format=OPENAI_API, resource=resource, passthrough=True)
            if first == "models":
                return _model_inference(method, path, data, resource)
            if first != "openai":
                check_case((first,), WORDS)
                raise Unreadable(
                    "Tollgate reads Azure's OpenAI API (/openai/…) and the model inference API (/models/…)"
                    " only, not this API of its models"
                )
        classification = self.classify(method, path, data, query)
        classification.resource = resource
        return classification

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        segments = path_segments(path)
        check_case(segments[:2], WORDS)
        if segments[0] != "openai":
            raise Unreadable("Azure OpenAI's paths start with /openai/")
        rest = segments[1:]
        if not rest:
            raise Unreadable("the path names no endpoint")
        tail = rest[1:] if rest[0] == "v1" else rest
        check_case(tail[:1], WORDS)
        if tail[:1] == ["realtimeapi"]:
            if tuple(tail) in _REALTIMEAPI_MINTS:  # whatever the method
                return Classification(".".join(tail), wire_format=OPENAI_API, mints_credential=True)
            raise Unreadable("Tollgate does not relay Azure OpenAI's WebSockets (Realtime, Responses)")
        if tail[:1] == ["realtime"] and not openai.mints_credential(tail):
            raise Unreadable("Tollgate does not relay Azure OpenAI's WebSockets (Realtime, Responses)")
        if rest[0] == "deployments":
            classification = _deployment_call(method, rest[1:], data)
        else:
            # `/openai/v1/…`, or `/openai/…` as AzureOpenAI calls what names its model in the body.
            classification = openai.classify_request(method, tail, data, query)
        endpoint = classification.endpoint or ""
        if classification.mints_credential:
            return classification
        if classification.session or endpoint == "realtime" or endpoint.startswith("realtime."):
            raise Unreadable("Tollgate does not relay Azure OpenAI's WebSockets (Realtime, Responses)").at(endpoint)
        return classification

    def streams_unread(self, method: str, path: str) -> bool:
        segments = path[1:].split("/")
        if segments[0] != "openai" or len(segments) < 2:
            return False
        if segments[1] == "deployments":
            return len(segments) > 3 and openai.is_upload(method, segments[3:])
        tail = segments[2:] if segments[1] == "v1" else segments[1:]
        return bool(tail) and openai.is_upload(method, tail)

    def read_headers(self, headers: Mapping[bytes, bytes], classification: Classification) -> None:
        if isinstance(classification, ModelInference):
            extra = headers.get(b"extra-parameters")
            if extra is not None and extra.strip().lower() not in _EXTRA_PARAMETERS:
                raise Unreadable(
                    "extra-parameters hands the model fields Tollgate does not read; send error or drop"
                ).at(classification.endpoint)

    def may_ask_usage(self, classification: Classification, index: Mapping[bytes, bytes]) -> bool:
        # Every chat stream, the deployments' too; not the model inference API's, which refuses a
        # field it does not define.
        return not isinstance(classification, ModelInference)


def _deployment_call(method: str, parts: list[str], data: dict[str, Any] | None) -> Classification:
    """`/openai/deployments/{deployment}/{endpoint}`: the model is the deployment, whatever the
    body's `model` says (Azure reads the path)."""
    if len(parts) < 2:
        raise Unreadable("deployment paths are /openai/deployments/{deployment}/{endpoint}")
    deployment, tail = parts[0], parts[1:]
    if not _DEPLOYMENT.fullmatch(deployment):
        raise Unreadable("the deployment's name holds characters Azure's do not")
    endpoint = _post_endpoint(
        _DEPLOYMENT_ENDPOINTS,
        tail,
        method,
        "not an endpoint of an Azure OpenAI deployment",
        "an Azure OpenAI deployment",
    )
    if openai.is_upload(method, tail):
        return Classification(endpoint, deployment, RequestFacts(), OPENAI_API, unread=UNREAD_FACTS)
    classification = _body_at(endpoint, method, data)
    classification.model = deployment  # the path's: an override rewrites the path (`Models.in_path`)
    return classification


def _post_endpoint(
    endpoints: Mapping[tuple[str, ...], str], tail: list[str], method: str, unknown: str, api: str
) -> str:
    """The endpoint of `endpoints` that `tail` (a path's segments) names, which takes POST only;
    `Unreadable` (`unknown` where it names none) otherwise."""
    check_case(tail, openai.WORDS)
    endpoint = endpoints.get(tuple(tail))
    if endpoint is None:
        raise Unreadable(unknown)
    if method != "POST":
        raise Unreadable(f"{api}'s endpoints take POST").at(endpoint)
    return endpoint


def _body_at(endpoint: str, method: str, data: dict[str, Any] | None) -> Classification:
    """A call's body read as OpenAI's, an `Unreadable` one told at its endpoint."""
    try:
        return classify_body(endpoint, method, data)
    except Unreadable as e:
        raise e.at(endpoint) from None


def _model_inference(method: str, path: str, data: dict[str, Any] | None, resource: str | None) -> ModelInference:
    """`/models/chat/completions` or `/models/embeddings` (any `api-version`): OpenAI's format, the
    deployment named by the body's `model`, which must be there (the policy and prices go by it)."""
    tail = path_segments(path)[1:]
    unknown = "Tollgate reads the model inference API's chat/completions and embeddings only"
    endpoint = _post_endpoint(_INFERENCE_ENDPOINTS, tail, method, unknown, "the model inference API")
    read = _body_at(endpoint, method, data)
    if read.model is None:
        raise Unreadable("a call to the model inference API names its deployment in the body's model").at(endpoint)
    return ModelInference(endpoint, read.model, read.facts, OPENAI_API, resource=resource)
