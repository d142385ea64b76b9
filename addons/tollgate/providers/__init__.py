"""The providers Tollgate knows; adding one means adding its module here."""

from __future__ import annotations

import re
from functools import lru_cache

from .anthropic import Anthropic
from .base import Provider
from .bedrock import Bedrock
from .gemini import Gemini
from .openai import OpenAI
from .vertex import Vertex

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAI(), Gemini(), Anthropic(), Bedrock(), Vertex())}

# gen_ai.provider.name per provider, as metrics and traces name it.
SEMCONV_NAMES = {name: p.semconv_name for name, p in PROVIDERS.items()}

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


def allow_hosts() -> list[str]:
    """mitmproxy `allow_hosts` patterns over "host:port": only these connections are decrypted,
    on any port, the host in any case and with or without a trailing dot (mitmproxy ignores case)."""
    return [rf"^(?:{p.host_pattern})\.?:\d+$" for p in PROVIDERS.values()]
