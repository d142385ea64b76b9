"""A rule's `match:`, which override, roll-up, price and limit rules all take: the block itself,
whether it fits a call, and which providers a rule may name (the built-in ones and those its
file adds)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import ValidationInfo

from tollgate.common.config_base import Strict
from tollgate.providers import CASELESS_MODELS, PROVIDERS

PROVIDER_NAMES = tuple(PROVIDERS)
# The validation context's key for the names of the providers a file adds (`providers.<name>:
# {kind: …}`), which its rules may name (`config.parse_config` sets it).
CONFIGURED = "configured_providers"


class OverrideMatch(Strict):
    provider: str | None = None
    model: str | None = None
    client: str | None = None
    group: str | None = None


def matches(m: OverrideMatch, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]) -> bool:
    """Whether a rule's match (globs, all optional) fits the call; a glob never fits what is unknown.
    A provider's model names that ignore case (`CASELESS_MODELS`) are matched so."""
    if m.provider is not None and m.provider != provider:
        return False
    if m.model is not None:
        if model is None:
            return False
        if provider in CASELESS_MODELS:  # Azure's deployments: `GPT-4o` is `gpt-4o`
            if not fnmatchcase(model.lower(), m.model.lower()):
                return False
        elif not fnmatchcase(model, m.model):
            return False
    if m.client is not None and (client is None or not fnmatchcase(client, m.client)):
        return False
    return m.group is None or any(fnmatchcase(g, m.group) for g in groups)


def known_providers(info: ValidationInfo | None) -> tuple[str, ...]:
    """The providers a rule may name: the built-in ones and those the file adds."""
    context = info.context if info is not None else None
    return PROVIDER_NAMES + tuple((context or {}).get(CONFIGURED, ()))


def unknown_provider(name: str, known: tuple[str, ...]) -> str:
    return f"unknown provider {name!r}; one of {', '.join(known)}"
