"""The part of a provider that says where its calls go when no rule routes them elsewhere: its
default host, what an upstream configured for it should be, and which of its hosts are mTLS
hosts. Plain Python that knows nothing of mitmproxy."""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.common.config_base import ProviderConfig
from tollgate.formats.request_facts import Classification


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a provider's calls go, which every provider declares as its `upstream`.

    `default_host`: where a call routed here goes when no upstream is configured (None: one must
    be, and `hint` says where it should point)."""

    default_host: str | None = None
    hint: str = ""

    def configured(self, settings: ProviderConfig, classification: Classification | None) -> str | None:
        """The upstream the settings give a call (scheme://host[:port]), or None. Default: `upstream`;
        Azure's a resource's own, for a call to that resource's host."""
        return settings.upstream

    def host(self, host: str, settings: ProviderConfig) -> str | None:
        """Where a call to `host` (lower case) goes when no upstream is configured: None for that
        host itself. Default: itself (Google's mTLS hosts go to their twins)."""
        return None

    def is_mtls_host(self, host: str) -> bool:
        """Whether `host` (lower case, no trailing dot) is one of its mTLS hosts, where a client
        certificate (`client_cert`) is presented."""
        return False
