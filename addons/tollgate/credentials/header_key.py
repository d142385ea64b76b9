"""A key in a header: an API key or a bearer token, the caller's own (sent in a side header) or one
of Tollgate's (a pooled key, a configured token), in place of the credentials the caller put there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import Applied, RequestParts, UpstreamCredential
from tollgate.formats.bodies.raw_headers import Fields

if TYPE_CHECKING:
    from tollgate.credentials.keypool import KeyPool


@dataclass(slots=True)  # made on every call: not frozen (twice as dear to make)
class HeaderKey(UpstreamCredential):
    """A key in a header (`Credentials.injected`), the provider's credential positions dropped."""

    name: bytes
    value: bytes
    drop: frozenset[bytes]
    fingerprint: str
    pooled_key: str | None = None
    pool: KeyPool | None = None

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        kept = [f for f in fields if f[0].lower() not in self.drop]
        kept.append((self.name, self.value))
        return Applied(tuple(kept), self.fingerprint)


def header_key(name: str, value: str, key: str, drop: frozenset[bytes], pooled: bool = False) -> HeaderKey:
    """`key` as the header `name: value` carries it, `drop` (the caller's credentials) out; a
    pooled key is named, so that it rests when the provider refuses it."""
    return HeaderKey(
        name.encode(), value.encode("utf-8", "surrogateescape"), drop, fingerprint(key), key if pooled else None
    )
