"""Model overrides: which rule applies to a call (where a routed call then goes: `routes.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tollgate.common.config_base import Strict, base_url
from tollgate.common.shape_memo import ShapeMemo
from tollgate.governance.matching import PROVIDER_NAMES, OverrideMatch, known_providers, matches, unknown_provider
from tollgate.providers import OPENAI_COMPATIBLE_SOURCE, PROVIDERS, Provider

# The providers whose OpenAI-compatible API takes OpenAI's calls as they are (`api: openai_compatible`).
OPENAI_COMPATIBLE_TARGETS = tuple(
    name for name, p in PROVIDERS.items() if p.routing.openai_compatible_prefix is not None
)


class FallbackRule(Strict):
    """One of an override rule's `fallbacks`: where its call goes when its target fails."""

    provider: str
    model: str = Field(min_length=1)


class Override(Strict):
    match: OverrideMatch = OverrideMatch()
    model: str | None = Field(default=None, min_length=1)
    provider: str | None = None
    upstream: str | None = None
    # How a route reaches its provider: `openai_compatible` sends an OpenAI call as it is to the
    # provider's OpenAI-compatible API; `native` translates it into the provider's own format. By
    # default, the OpenAI-compatible API where it offers the endpoint called, else the native one.
    api: Literal["native", "openai_compatible"] | None = None
    # Tried in order when the target fails as its provider's `retry.when` says (after its retries).
    fallbacks: tuple[FallbackRule, ...] = ()

    _upstream = field_validator("upstream")(classmethod(lambda cls, value: base_url(value)))

    @model_validator(mode="after")
    def _a_route_reaches_its_provider(self, info: ValidationInfo) -> Override:
        if self.model is None and self.provider is None and self.upstream is None and not self.fallbacks:
            raise ValueError("a rule must set model, provider, upstream or fallbacks")
        known = known_providers(info)
        for name in (self.match.provider, self.provider):
            if name is not None and name not in known:
                raise ValueError(unknown_provider(name, known))
        if self.api is not None and (self.provider is None or self.provider == self.match.provider):
            raise ValueError("api: applies to a route (provider: another provider than match.provider)")
        if self.api == "openai_compatible":
            # Every provider a file adds is an OpenAI-compatible API.
            if self.provider not in OPENAI_COMPATIBLE_TARGETS and self.provider not in known[len(PROVIDER_NAMES) :]:
                raise ValueError(f"{self.provider} has no OpenAI-compatible API: use api: native")
            if self.match.provider != OPENAI_COMPATIBLE_SOURCE:
                raise ValueError("api: openai_compatible takes OpenAI's calls: set match.provider: openai")
        self._fallbacks_reachable(known)
        return self

    def _fallbacks_reachable(self, known: tuple[str, ...]) -> None:
        """A fallback names a provider Tollgate knows. One to another provider than the rule's is
        translated from the call as its client sent it (a chat call; another call skips it)."""
        target = self.provider or self.match.provider
        for i, fallback in enumerate(self.fallbacks):
            where = f"fallbacks[{i}].provider"
            if fallback.provider not in known:
                raise ValueError(f"{where}: {unknown_provider(fallback.provider, known)}")
            if target is None:
                raise ValueError(f"{where}: a rule with fallbacks names its provider (provider or match.provider)")


def find_rule(
    rules: Sequence[Override],
    provider: str,
    model: str | None,
    client: str | None,
    groups: Iterable[str],
    endpoint: str | None,
    registry: Mapping[str, Provider] = PROVIDERS,
) -> Override | None:
    """The first rule whose match (globs, all optional) fits the call. A route applies only to
    calls it can take to its provider (`route_api`; `registry`: the providers by name)."""
    groups = tuple(groups)
    for rule in rules:
        if not matches(rule.match, provider, model, client, groups):
            continue
        if rule.provider not in (None, provider) and route_api(rule, provider, endpoint, registry) is None:
            continue
        return rule
    return None


def route_api(
    rule: Override, provider: str, endpoint: str | None, registry: Mapping[str, Provider] = PROVIDERS
) -> Literal["native", "openai_compatible"] | None:
    """How a route takes a call to `provider`'s `endpoint` to its own provider: an OpenAI call as it
    is to the target's OpenAI-compatible API, or a chat call translated into the target's own
    format (`rule.api` may insist on one); None where neither can. `registry`: the providers by name."""
    assert rule.provider is not None
    target = registry[rule.provider]
    compatible = (
        provider == OPENAI_COMPATIBLE_SOURCE
        and target.routing.openai_compatible_prefix is not None
        and endpoint in target.routing.openai_compatible_endpoints
    )
    if compatible and rule.api != "native":
        return "openai_compatible"
    if endpoint in registry[provider].routing.chat_formats and rule.api != "openai_compatible":
        return "native"
    return None


class RuleBook:
    """The configured rules, with each call shape (provider, model, client, groups, endpoint)
    matched against them once."""

    def __init__(self, rules: Sequence[Override], registry: Mapping[str, Provider] = PROVIDERS) -> None:
        self.rules = tuple(rules)
        self.registry = registry
        self.memo: ShapeMemo[Override | None] = ShapeMemo(partial(find_rule, self.rules, registry=registry))

    def find(
        self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...], endpoint: str | None
    ) -> Override | None:
        shape = (provider, model, client, groups, endpoint)
        return self.memo.get(shape, *shape)


def routed_path(target: Provider, path: str) -> str:
    """An OpenAI API path (`/v1/chat/completions?…`) on the target's OpenAI-compatible API."""
    assert target.routing.openai_compatible_prefix is not None
    rest = path.removeprefix("/v1/") if path.startswith("/v1/") else path.lstrip("/")
    return target.routing.openai_compatible_prefix + rest


def fitted_for(target: Provider, endpoint: str | None, body: dict[str, Any] | None) -> bool:
    """A chat body its client wrote for another provider's API, going to `target`'s as it came (a
    route to its OpenAI-compatible API, or to the path of its own that speaks the call's format; a
    fallback's): made what `target`'s API takes (`Provider.fit_chat_body`: a vendor's `max_tokens`
    for OpenAI's `max_completion_tokens`); whether it changed. The call's facts keep the client's
    reading, which the ledger bounds the output by."""
    if body is None or endpoint not in target.routing.chat_formats:
        return False
    before = dict(body)
    target.fit_chat_body(body)
    return body != before
