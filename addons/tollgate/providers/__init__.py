"""The providers Tollgate knows; adding one means adding its module here."""

from __future__ import annotations

import re
from functools import lru_cache

from .anthropic import Anthropic
from .base import Provider
from .bedrock import Bedrock
from .gemini import Gemini
from .openai import OpenAI

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAI(), Gemini(), Anthropic(), Bedrock())}

_BY_HOST = [(re.compile(p.host_pattern, re.IGNORECASE), p) for p in PROVIDERS.values()]


@lru_cache(maxsize=1024)
def provider_for(host: str, port: int) -> Provider | None:
    """The provider whose API lives at host:port, or None for every other host (a few hosts
    recur on every call: matched once)."""
    address = f"{host}:{port}"
    for pattern, provider in _BY_HOST:
        if pattern.match(address):
            return provider
    return None


def allow_hosts() -> list[str]:
    """mitmproxy `allow_hosts` patterns: only these connections are decrypted."""
    return [p.host_pattern for p in PROVIDERS.values()]
