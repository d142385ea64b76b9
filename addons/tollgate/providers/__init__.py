"""The providers Tollgate knows; adding one means adding its module here. The OpenAI-compatible
vendors' presets are built in; a configuration adds others (`configured`), which a loaded
configuration's registry holds beside these (`runtime.Loaded.registry`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from tollgate.common.host_globs import glob_pattern
from tollgate.providers.anthropic import Anthropic
from tollgate.providers.azure import Azure
from tollgate.providers.base import Provider
from tollgate.providers.bedrock import Bedrock
from tollgate.providers.chatgpt import ChatGPT
from tollgate.providers.code_assist import CodeAssist
from tollgate.providers.copilot import Copilot
from tollgate.providers.gemini import Gemini
from tollgate.providers.openai import OpenAI
from tollgate.providers.vendors import (
    CONFIGURED_SIDE_HEADER,
    PRESETS,
    UNKNOWN_PROVIDER,
    ConfiguredVendorSettings,
    OpenAICompatible,
)
from tollgate.providers.vertex import Vertex

_BUILT_IN: tuple[Provider, ...] = (
    OpenAI(), Gemini(), Anthropic(), Bedrock(), Vertex(), Azure(), ChatGPT(), CodeAssist(), Copilot(), *PRESETS
)  # fmt: skip
PROVIDERS: dict[str, Provider] = {p.name: p for p in _BUILT_IN}

# gen_ai.provider.name per provider, as metrics and traces name it.
SEMCONV_NAMES = {name: p.semconv_name for name, p in PROVIDERS.items()}

# `ConfiguredVendorSettings` is what `providers.<name>` of a provider the configuration adds holds
# (`kind: openai_compatible`); a caller sends its own key for one in these headers.
CONFIGURED_SIDE_HEADERS = (CONFIGURED_SIDE_HEADER,)
__all__ = [
    "PROVIDERS",
    "UNKNOWN_PROVIDER",
    "ConfiguredVendorSettings",
    "Hosts",
    "Provider",
    "configured",
    "provider_for",
    "semconv_name",
]


def semconv_name(provider: str) -> str:
    """gen_ai.provider.name of a provider: a configured one's is its name."""
    return SEMCONV_NAMES.get(provider, provider)


def configured(settings: Mapping[str, ConfiguredVendorSettings]) -> dict[str, Provider]:
    """The providers a configuration adds, by name (`providers.<name>: {kind: …}`)."""
    return {name: OpenAICompatible.configured(name, s) for name, s in settings.items()}


# The provider whose calls an OpenAI-compatible API takes as they are (`api: openai_compatible`).
(OPENAI_COMPATIBLE_SOURCE,) = (name for name, p in PROVIDERS.items() if p.routing.openai_compatible_source)
# The providers whose model names ignore letter case (Azure's deployments): every rule, limit,
# price and the policy match them so.
CASELESS_MODELS = frozenset(name for name, p in PROVIDERS.items() if p.models.ignore_case)

_BY_HOST = [(re.compile(p.host_pattern), p) for p in PROVIDERS.values()]


def host_name(host: str) -> str:
    """A host as DNS reads it: letter case and one trailing dot make no difference."""
    return host.lower().removesuffix(".")


@lru_cache(maxsize=1024)
def provider_for(host: str) -> Provider | None:
    """The provider whose API lives at this host, on any port, or None for every other host (a few
    hosts recur on every call: matched once)."""
    name = host_name(host)
    for pattern, provider in _BY_HOST:
        if pattern.fullmatch(name):
            return provider
    return None


def allow_hosts(ungoverned: frozenset[str] = frozenset()) -> list[str]:
    """mitmproxy `allow_hosts` patterns over "host:port": only these connections are decrypted,
    on any port, the host in any case and with or without a trailing dot (mitmproxy ignores case).
    `ungoverned`: providers whose hosts are left tunnelled (`subscriptions.<vendor>.govern: false`)."""
    return [_allowed(p.host_pattern) for name, p in PROVIDERS.items() if name not in ungoverned]


def _allowed(pattern: str) -> str:
    return rf"^(?:{pattern})\.?:\d+$"


class Hosts:
    """Which provider serves a host: a provider's own hosts (`host_pattern`), else the ones a
    configuration adds (`providers.<name>.hosts`, globs), which never take a host from the provider
    it is one of. The hosts added are looked at only for a host no provider owns: they cost the
    providers' own hosts nothing."""

    _CACHED = 1024  # hosts whose lookup is kept (a few recur on every call)

    def __init__(
        self,
        added: Mapping[str, Sequence[str]] | None = None,
        registry: Mapping[str, Provider] = PROVIDERS,
        ungoverned: frozenset[str] = frozenset(),
    ) -> None:
        self.added = {name: tuple(globs) for name, globs in (added or {}).items() if globs}
        # Built-in providers whose hosts are left tunnelled, as if no provider's (`govern: false`).
        self.ungoverned = ungoverned
        self.registry = registry  # the providers by name: the built-in ones and those configured
        # A group per provider, named by its place (a configured provider's name may hold a "-").
        self._names = tuple(self.added)
        alternatives = [
            f"(?P<p{i}>{'|'.join(glob_pattern(g) for g in globs)})" for i, globs in enumerate(self.added.values())
        ]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None
        self._found: dict[str, Provider | None] = {}
        # The provider whose API lives at a host, on any port, or None: with no hosts added, the
        # providers' own lookup itself (it runs on every call).
        self.provider_for: Callable[[str], Provider | None] = (
            provider_for if self._pattern is None and not ungoverned else self._either
        )

    def _either(self, host: str) -> Provider | None:
        provider = provider_for(host)
        if provider is not None and provider.name in self.ungoverned:
            return None
        if provider is not None or self._pattern is None:
            return provider
        return self._added_for(host_name(host))

    def _added_for(self, name: str) -> Provider | None:
        try:
            return self._found[name]
        except KeyError:
            pass
        assert self._pattern is not None
        m = self._pattern.fullmatch(name)
        found = m.lastgroup if m is not None else None
        provider = self.registry[self._names[int(found[1:])]] if found is not None else None
        if len(self._found) < self._CACHED:
            self._found[name] = provider
        return provider

    def allow_hosts(self) -> list[str]:
        """`allow_hosts()`, and a pattern for each host glob added."""
        added = [_allowed(glob_pattern(g)) for globs in self.added.values() for g in globs]
        return allow_hosts(self.ungoverned) + added


# The providers' own hosts alone: what a configuration that adds none has.
BUILT_IN_HOSTS = Hosts()
