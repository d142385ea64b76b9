"""What every kind of upstream credential is: something Tollgate puts into a request it forwards
(`UpstreamCredential.apply`), over the request as plain data (`RequestParts`), giving the header
fields it then carries (`Applied`). Plain Python, knowing nothing of mitmproxy nor of any provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollgate.formats.bodies.raw_headers import Fields

if TYPE_CHECKING:
    from tollgate.credentials.keypool import KeyPool


@dataclass(slots=True)
class RequestParts:
    """A request as plain data, raw as the proxy holds it, for the hooks that read or sign it whole."""

    method: bytes
    scheme: bytes
    host: str  # where it goes
    authority: str  # HTTP/2's :authority (its Host); "" for HTTP/1, whose Host is a header field
    path: bytes  # as it will be sent, with the query
    fields: Fields  # the header fields as they are now
    body: bytes
    index: Mapping[bytes, bytes]  # the header fields as the client sent them, by lower-case name
    called_host: str  # the host the client called
    upstream: str | None  # where it goes, scheme://host[:port]; None until routed
    payload_hash: str | None = None  # the body's SHA-256 when known (verifying the caller found it)


@dataclass(slots=True)
class Applied:
    """A request with the upstream credential in and the caller's out."""

    fields: tuple[tuple[bytes, bytes], ...]  # its header fields
    fingerprint: str | None  # tells the credential apart in the audit
    host: str | None = None  # another host to send it to (same scheme and port), or None
    path: bytes | None = None  # another path to send it to (with its query), or None


class UpstreamCredential:
    """A credential for the upstream and how it goes into the request."""

    __slots__ = ()
    # A key taken from the provider's pool, which rests when the provider refuses it.
    pooled_key: str | None
    # The pool it was taken from, where that is not the provider's own (a resource's: Azure's).
    pool: KeyPool | None = None

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        """The credential put into the request as it will go (after every change Tollgate made),
        in one pass over its header `fields`. `request()` gives the whole request, for a credential
        that covers more than headers (a signature): most need only the fields, and the whole
        request is not read for them."""
        raise NotImplementedError
