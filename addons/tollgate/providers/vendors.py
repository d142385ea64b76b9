"""OpenAI-compatible vendors: APIs that speak OpenAI's formats (Chat Completions, and where they
offer them embeddings, Responses and legacy completions) under a base path of their own. Each is a
row (`Vendor`): the presets (`PRESET_ROWS`: Mistral, Groq, DeepSeek, xAI, OpenRouter, Together,
Fireworks, Cerebras, Perplexity) are built in, their hosts intercepted whether configured or not;
`providers.<name>: {kind: openai_compatible, hosts: [...]}` makes any other one a provider
(`OpenAICompatible.configured`).

The format is OpenAI's API's (`formats/openai_api/`), its paths read as OpenAI's provider reads them
(`providers/openai.py`); what is a vendor's own is its row: its hosts, its base paths, the endpoints
it offers there, whether it takes `stream_options`, which field bounds a chat's output (`max_tokens`
or OpenAI's newer `max_completion_tokens`), how it counts reasoning, and its price table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from genai_prices.data import providers as _TABLE_PROVIDERS
from pydantic import Field, field_validator, model_validator

from tollgate.common.config_base import ProviderConfig
from tollgate.common.host_globs import glob_pattern
from tollgate.formats import OPENAI_API, OPENAI_CHAT
from tollgate.formats.bodies.exact import Unreadable, check_case, path_segments
from tollgate.formats.request_facts import Classification
from tollgate.providers import openai
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.routing import Routing
from tollgate.providers.upstream import Upstream

# The endpoints of OpenAI's API a vendor may offer, as `openai.endpoint_of` names them. Any other
# path under a vendor's base path is refused: Tollgate reads only what it knows the vendor serves.
Endpoint = Literal["chat.completions", "embeddings", "responses", "completions", "models"]
CHAT: Endpoint = "chat.completions"
EMBEDDINGS: Endpoint = "embeddings"
RESPONSES: Endpoint = "responses"
COMPLETIONS: Endpoint = "completions"
MODELS: Endpoint = "models"
# The field that bounds a chat's output: the one every vendor's API takes, or OpenAI's newer one.
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]

# The paths (after the base path) of each endpoint, None standing for an id: no other path is read
# as one (a vendor may serve another endpoint at a path OpenAI's reading would take for it).
_SHAPES: tuple[tuple[tuple[str | None, ...], Endpoint], ...] = (
    (("chat", "completions"), CHAT),
    (("embeddings",), EMBEDDINGS),
    (("completions",), COMPLETIONS),
    (("models",), MODELS),
    (("models", None), MODELS),
    (("responses",), RESPONSES),
    (("responses", None), RESPONSES),
    (("responses", None, "input_items"), RESPONSES),
    (("responses", None, "cancel"), RESPONSES),
)

# What a name under `providers:` that is none and says no `kind` is (`config.py` adds the likely one).
UNKNOWN_PROVIDER = "not a provider Tollgate knows"


def endpoint_at(rest: Sequence[str]) -> Endpoint | None:
    """The endpoint a path's segments after the base path are, or None."""
    for shape, endpoint in _SHAPES:
        if len(shape) == len(rest) and all(w is None or w == s for w, s in zip(shape, rest, strict=True)):
            return endpoint
    return None


# The side header of every configured vendor (a preset has its own): a caller's own key for it.
CONFIGURED_SIDE_HEADER = "X-Vendor-Key"
# A configured vendor's name: what the audit, the policy, the metrics and `overrides:` call it.
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_BASE_PATH = re.compile(r"(?:/[a-z0-9._-]+)*")


def base_path(value: str) -> str:
    """A base path as a vendor's API serves it: "" (the root) or /segment/…, in lower case, without
    a trailing slash."""
    path = value.rstrip("/")
    if _BASE_PATH.fullmatch(path) is None:
        raise ValueError(f"{value!r} is not a base path such as /v1 or /openai/v1 (lower case, no query)")
    return path


class VendorSettings(ProviderConfig):
    """`providers.<preset>`: an OpenAI-compatible preset's settings, those of every provider;
    `kind: openai_compatible` may be said, and changes nothing."""

    kind: Literal["openai_compatible"] | None = None


class ConfiguredVendorSettings(VendorSettings):
    """`providers.<name>` of a vendor the presets lack: its hosts (at least one), its base path
    (`/v1` unless said), the endpoints it offers there, whether it takes OpenAI's `stream_options`
    (else its streams must report usage unasked, or their usage is unknown), the field that bounds
    a chat's output in what a route or roll-up writes for it, and its price table in genai-prices,
    if it has one (else `prices:` prices it)."""

    base_path: str | tuple[str, ...] = "/v1"
    endpoints: tuple[Endpoint, ...] = (CHAT, EMBEDDINGS, MODELS)
    stream_options: bool = True
    max_tokens_field: MaxTokensField = "max_tokens"
    price_table: str | None = Field(default=None, min_length=1)

    @property
    def base_paths(self) -> tuple[str, ...]:
        return (self.base_path,) if isinstance(self.base_path, str) else self.base_path

    @field_validator("base_path")
    @classmethod
    def _base_paths(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str):
            return base_path(value)
        if not value:
            raise ValueError("name at least one base path, e.g. /v1")
        return tuple(base_path(v) for v in value)

    @field_validator("price_table")
    @classmethod
    def _table_known(cls, value: str | None) -> str | None:
        if value is not None and value not in price_table_ids():
            raise ValueError(f"{value!r} is not a provider of genai-prices' table (e.g. groq, mistral, together)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _a_kind(cls, data: Any) -> Any:
        # Said first: a misspelt provider's name is not taken for a vendor missing its hosts.
        if isinstance(data, dict) and "kind" not in data:
            raise ValueError(f"{UNKNOWN_PROVIDER}; add an OpenAI-compatible one with kind: openai_compatible")
        return data

    @model_validator(mode="after")
    def _a_vendor(self) -> ConfiguredVendorSettings:
        if not self.hosts:
            raise ValueError("hosts: name the hosts of its API, e.g. [api.example.com]")
        if not self.endpoints:
            raise ValueError("endpoints: name at least one, e.g. [chat.completions]")
        return self

    @property
    def default_host(self) -> str | None:
        """Where a call routed to it goes when it has no `upstream`: its first host without a
        wildcard, else none."""
        return next((h for h in self.hosts if "*" not in h), None)


def price_table_ids() -> frozenset[str]:
    """The provider ids of genai-prices' bundled table."""
    return frozenset(p.id for p in _TABLE_PROVIDERS)


@dataclass(frozen=True, slots=True)
class Vendor:
    """An OpenAI-compatible vendor, as a row of `PRESET_ROWS` says it (or a configuration's
    `providers.<name>`): its hosts (globs; the first without a wildcard is where a call routed to it
    goes), the side header a caller sends its own key in, its base paths and the endpoints it offers
    there, its price table in genai-prices, whether it takes OpenAI's `stream_options`, which field
    bounds a chat's output on its API, whether its chat answers' `completion_tokens` count their
    reasoning, and whether its hosts' other paths (a web site) pass with the caller's own credential."""

    name: str
    hosts: tuple[str, ...]
    side_header: str
    base_paths: tuple[str, ...]
    endpoints: frozenset[Endpoint]
    price_table: str | None
    semconv_name: str | None = None  # its gen_ai.provider.name, where that is not its name
    takes_stream_options: bool = True
    max_tokens_field: MaxTokensField = "max_tokens"
    reasoning_in_completion: bool = True
    site_passes: bool = False


class OpenAICompatible(Provider):
    """An API in OpenAI's formats under `base_paths` on its hosts, offering `endpoints` there. Each
    vendor is one of these made from its row (`from_row`)."""

    error_format = OPENAI_API
    settings_model: ClassVar[type[ProviderConfig]] = VendorSettings
    # Its base paths, longest first as matched ("" is the root), and the endpoints it offers there.
    base_paths: ClassVar[tuple[str, ...]] = ("/v1",)
    endpoints: ClassVar[frozenset[str]] = frozenset((CHAT, EMBEDDINGS, MODELS))
    routing = Routing(chat_formats={CHAT: OPENAI_CHAT})
    # Whether it takes OpenAI's `stream_options` (`audit.stream_usage: inject` asks a stream for
    # usage with it); one that refuses fields it does not know reports a stream's usage unasked.
    takes_stream_options: ClassVar[bool] = True
    # The field that bounds a chat's output on its API, in what Tollgate writes for it (a route's
    # translation, a roll-up's summary request): `max_tokens`, which they all take, unless its API
    # takes OpenAI's `max_completion_tokens` (a vendor that refuses a field it does not know, or
    # ignores it and so leaves the output unbounded, must not be sent that one).
    max_tokens_field: ClassVar[MaxTokensField] = "max_tokens"
    # Whether the paths of its hosts outside its API (a web site) go as they came, with the caller's
    # own credential (`Classification.passthrough`), rather than being refused.
    site_passes: ClassVar[bool] = False
    # Its base paths' segments, in the order `base_paths` are matched.
    _bases: ClassVar[tuple[tuple[str, ...], ...]] = (("v1",),)

    @classmethod
    def from_row(cls, row: Vendor, configured: bool = False) -> OpenAICompatible:
        """The provider a row describes. A preset intercepts its hosts whether configured or not
        (`host_pattern`); a vendor the configuration adds (`configured`) is found by the hosts its
        settings give (`Hosts`), takes its callers' own keys in `CONFIGURED_SIDE_HEADER`, and names
        itself in the metrics and traces."""
        base_paths = tuple(sorted(row.base_paths, key=len, reverse=True))
        default_host = next((h for h in row.hosts if "*" not in h), None)
        vendor = type(
            f"{'Configured' if configured else 'Preset'}_{row.name}",
            (cls,),
            {
                "name": row.name,
                "semconv_name": row.semconv_name or row.name,
                # A configured vendor's pattern matches no host: its hosts are those configured.
                "host_pattern": r"(?!)" if configured else "|".join(glob_pattern(h) for h in row.hosts),
                "host_globs": () if configured else row.hosts,
                "credentials": Credentials(
                    CallerKeys(CONFIGURED_SIDE_HEADER if configured else row.side_header, ("authorization",)),
                    KeyPlacement("authorization"),
                ),
                "upstream": Upstream(default_host, f"the scheme://host of {row.name}'s API" if configured else ""),
                "base_paths": base_paths,
                "endpoints": frozenset(row.endpoints),
                "routing": Routing(
                    openai_compatible_prefix=f"{base_paths[-1]}/",
                    openai_compatible_endpoints=frozenset(row.endpoints) - {MODELS},
                    chat_formats={CHAT: OPENAI_CHAT},
                ),
                "_bases": tuple(tuple(p.split("/")[1:]) if p else () for p in base_paths),
                "takes_stream_options": row.takes_stream_options,
                "max_tokens_field": row.max_tokens_field,
                "site_passes": row.site_passes,
                "cost": Cost(row.price_table, reasoning_in_completion=row.reasoning_in_completion),
                "settings_model": ConfiguredVendorSettings if configured else VendorSettings,
            },
        )
        return vendor()

    @classmethod
    def configured(cls, name: str, settings: ConfiguredVendorSettings) -> OpenAICompatible:
        """A vendor the configuration adds (`providers.<name>: {kind: openai_compatible, …}`)."""
        row = Vendor(
            name,
            settings.hosts,
            CONFIGURED_SIDE_HEADER,
            settings.base_paths,
            frozenset(settings.endpoints),
            settings.price_table,
            takes_stream_options=settings.stream_options,
            max_tokens_field=settings.max_tokens_field,
        )
        return cls.from_row(row, configured=True)

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg(f"{self.routing.openai_compatible_prefix}chat/completions", OPENAI_CHAT)

    def fit_chat_body(self, body: dict[str, Any]) -> None:
        """OpenAI's Chat Completions as written for OpenAI (`max_completion_tokens`, a stream asked
        for its usage), made what this vendor takes."""
        if self.max_tokens_field != "max_completion_tokens" and "max_completion_tokens" in body:
            body[self.max_tokens_field] = body.pop("max_completion_tokens")
        if not self.takes_stream_options:
            body.pop("stream_options", None)

    def api_segments(self, segments: Sequence[str]) -> list[str] | None:
        """The path's segments after its base path, or None where it is under none of them."""
        for base in self._bases:
            if tuple(segments[: len(base)]) == base and len(segments) > len(base):
                return list(segments[len(base) :])
        return None

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        if path == "/" and self.site_passes:
            return Classification(wire_format=OPENAI_API, passthrough=True)
        segments = path_segments(path)
        rest = self.api_segments(segments)
        if rest is None:
            if self.site_passes:
                return Classification(wire_format=OPENAI_API, passthrough=True)
            bases = " or ".join(f"{b}/" for b in self.base_paths)
            raise Unreadable(f"{self.name}'s API paths start with {bases}")
        check_case([*segments[: len(segments) - len(rest)], *rest], openai.WORDS)
        endpoint = endpoint_at(rest)
        if endpoint not in self.endpoints:
            if self.site_passes:
                return Classification(wire_format=OPENAI_API, passthrough=True)
            raise Unreadable(f"{method} {path} is not an endpoint of {self.name} that Tollgate reads")
        classification = openai.classify_request(method, rest, data, query)
        if classification.session:
            raise Unreadable(f"{self.name} offers no Responses WebSocket that Tollgate reads")
        return classification

    def may_ask_usage(self, classification: Classification, index: Mapping[bytes, bytes]) -> bool:
        return self.takes_stream_options


# The presets: each vendor Tollgate knows without a configuration saying so, a row each.
PRESET_ROWS = (
    # Its API refuses a field it does not know; its streams end in a chunk with the usage unasked.
    Vendor("mistral", ("api.mistral.ai",), "X-Mistral-Key", ("/v1",), frozenset((CHAT, EMBEDDINGS, MODELS)), "mistral",
           semconv_name="mistral_ai", takes_stream_options=False),
    Vendor("groq", ("api.groq.com",), "X-Groq-Key", ("/openai/v1",), frozenset((CHAT, RESPONSES, MODELS)), "groq",
           max_tokens_field="max_completion_tokens"),
    Vendor("deepseek", ("api.deepseek.com",), "X-DeepSeek-Key", ("", "/v1"), frozenset((CHAT, MODELS)), "deepseek"),
    # Its reasoning tokens are billed as output beside `completion_tokens`, which leave them out.
    Vendor("xai", ("api.x.ai",), "X-XAI-Key", ("/v1",), frozenset((CHAT, RESPONSES, MODELS)), "x-ai",
           semconv_name="x_ai", max_tokens_field="max_completion_tokens", reasoning_in_completion=False),
    # Its web site and its account API share the host: they go with the caller's own credential.
    # Its streams report usage unasked (it ignores `stream_options`).
    Vendor("openrouter", ("openrouter.ai",), "X-OpenRouter-Key", ("/api/v1",),
           frozenset((CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MODELS)), "openrouter", site_passes=True,
           takes_stream_options=False),
    Vendor("together", ("api.together.xyz",), "X-Together-Key", ("/v1",),
           frozenset((CHAT, COMPLETIONS, EMBEDDINGS, MODELS)), "together"),
    Vendor("fireworks", ("api.fireworks.ai",), "X-Fireworks-Key", ("/inference/v1",),
           frozenset((CHAT, COMPLETIONS, EMBEDDINGS, MODELS)), "fireworks"),
    Vendor("cerebras", ("api.cerebras.ai",), "X-Cerebras-Key", ("/v1",), frozenset((CHAT, COMPLETIONS, MODELS)),
           "cerebras", max_tokens_field="max_completion_tokens"),
    # Chat completions at the root.
    Vendor("perplexity", ("api.perplexity.ai",), "X-Perplexity-Key", ("",), frozenset((CHAT,)), "perplexity"),
)  # fmt: skip

PRESETS: tuple[OpenAICompatible, ...] = tuple(OpenAICompatible.from_row(row) for row in PRESET_ROWS)
