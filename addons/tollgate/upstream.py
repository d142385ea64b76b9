"""Sending to a provider's API, the target: where a request for it goes (`target_upstream`), the
headers its API needs beside the body (`TARGET_HEADERS`), the credential Tollgate puts on it
(`credential_for`: a pooled key, a SigV4 signature or a Google access token, as the provider's
`upstream_credential` chooses) and the rest of a pooled key the provider refused (`rest_key`).

Plain data, no mitmproxy: what sends a request to a provider calls it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from .call import Classification, fingerprint
from .keypool import KeyPool, retry_after_seconds
from .providers import PROVIDERS
from .providers.base import Provider, UpstreamCredential
from .raw_headers import Fields
from .settings_models import ProviderConfig

if TYPE_CHECKING:
    from .ledger.store import Store

# Statuses after which a pooled key rests for the provider's Retry-After.
RESTING_STATUSES = (401, 429)
# What a target's API needs beside the body.
TARGET_HEADERS: dict[str, Fields] = {"anthropic": ((b"anthropic-version", b"2023-06-01"),)}
# The headers a caller sends its own upstream credential in, every provider's: each is removed from
# every call whichever provider it names (a key sent to the wrong provider must not travel on).
SIDE_HEADERS = tuple(h for p in PROVIDERS.values() for h in (p.side_header, *p.extra_side_headers))
NO_SIDE: Mapping[str, str] = MappingProxyType({})


class Configured(Protocol):
    """What a loaded configuration holds for each provider: its settings, its key pool and what it
    loaded (`Provider.load_runtime`)."""

    @property
    def providers(self) -> Mapping[str, ProviderConfig]: ...

    @property
    def pools(self) -> Mapping[str, KeyPool]: ...

    @property
    def runtimes(self) -> Mapping[str, Any]: ...


def target_upstream(
    provider: Provider, settings: ProviderConfig, override: str | None = None, routed: bool = True
) -> str | None:
    """Where a request for `provider` goes, scheme://host[:port]: an override rule's upstream, else
    the provider's configured one, else, for a request Tollgate sends there itself (a route's, a
    summary's), the provider's own host; None: the host the client called."""
    upstream = override or settings.upstream
    if upstream is None and routed:
        upstream = f"https://{provider.default_host}"
    return upstream


def credential_for(
    loaded: Configured, provider: Provider, classification: Classification, side: Mapping[str, str] = NO_SIDE
) -> UpstreamCredential | None:
    """The credential Tollgate puts on a request for `provider` (`Provider.upstream_credential`):
    the caller's side header's key, else a pooled key (taken now), a signature or a token; None
    when it has none."""
    name = provider.name
    return provider.upstream_credential(
        classification, side, loaded.pools[name], loaded.providers[name], loaded.runtimes[name]
    )


def rest_key(pool: KeyPool, key: str, retry_after: str | None, ledger: Store | None) -> None:
    """A pooled key its provider refused (`RESTING_STATUSES`) rests for the answer's Retry-After, in
    its pool and, where a ledger's store is shared, in every process sharing it."""
    seconds = retry_after_seconds(retry_after)
    pool.rest(key, seconds)
    if ledger is not None:
        ledger.rest(fingerprint(key), time.time() + seconds)
