"""Sending to a provider's API, the target: where a request for it goes (`target_upstream`), the
headers its API needs beside the body (`Provider.routing.target_headers`), the credential Tollgate puts on
it (`credential_for`: a pooled key, a SigV4 signature or a Google access token, as the provider's
`upstream_credential` chooses) and the rest of a pooled key the provider refused (`rest_refused_key`).

Plain data, no mitmproxy. A client's call that the proxy forwards goes through it, and so does a
request Tollgate makes itself (a roll-up's summary: `json_request`, `Outgoing.with_credential`,
`send`, in a thread: it blocks)."""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import RequestParts, UpstreamCredential
from tollgate.credentials.keypool import KeyPool, retry_after_seconds
from tollgate.formats.framing import MAX_FRAME, Undecodable, decode_whole
from tollgate.formats.request_facts import Classification
from tollgate.governance.routing.failover import RESTING_STATUSES, model_circuit
from tollgate.providers import CONFIGURED_SIDE_HEADERS, PROVIDERS
from tollgate.providers.base import Provider

if TYPE_CHECKING:
    from tollgate.governance.routing.failover import Circuits
    from tollgate.ledger.store import Store

# The headers a caller sends its own upstream credential in, every provider's: each is removed from
# every call whichever provider it names (a key sent to the wrong provider must not travel on).
SIDE_HEADERS = (
    *(
        h
        for p in PROVIDERS.values()
        for h in (p.credentials.caller.side_header, *p.credentials.caller.extra_side_headers)
    ),
    *CONFIGURED_SIDE_HEADERS,
)
NO_SIDE: Mapping[str, str] = MappingProxyType({})
# What a rest shared through the ledger's store is named when it is a circuit's, not a key's.
CIRCUIT = "circuit:"


class Configured(Protocol):
    """What a loaded configuration holds for each provider: its settings, its key pool and what it
    loaded (`Credentials.load_runtime`)."""

    @property
    def providers(self) -> Mapping[str, ProviderConfig]: ...

    @property
    def pools(self) -> Mapping[str, KeyPool]: ...

    @property
    def runtimes(self) -> Mapping[str, Any]: ...


def target_upstream(
    provider: Provider,
    settings: ProviderConfig,
    override: str | None = None,
    routed: bool = True,
    classification: Classification | None = None,
) -> str | None:
    """Where a request for `provider` goes, scheme://host[:port]: an override rule's upstream, else
    the provider's configured one (for the call's `classification`: an Azure resource's own), else,
    for a request Tollgate sends there itself (a route's, a summary's), the provider's own host;
    None: the host the client called."""
    upstream = override or provider.upstream.configured(settings, classification)
    if upstream is None and routed:
        upstream = f"https://{provider.upstream.default_host}"
    return upstream


def credential_for(
    loaded: Configured,
    provider: Provider,
    classification: Classification,
    side: Mapping[str, str] = NO_SIDE,
    model: str | None = None,
) -> UpstreamCredential | None:
    """The credential Tollgate puts on a request for `provider` (`Credentials.upstream_credential`):
    the caller's side header's key, else a pooled key (taken now; none whose circuit is open for
    `model`), a signature or a token; None when it has none."""
    name = provider.name
    return provider.credentials.source.upstream_credential(
        classification, side, loaded.pools[name], loaded.providers[name], loaded.runtimes[name], model
    )


def open_circuit(
    pool: KeyPool | None,
    key: str | None,
    name: str,
    seconds: float,
    circuits: Circuits,
    ledger: Store | None,
    model: str | None = None,
) -> None:
    """A key (`pool`, `key`) or an upstream (`name`, `upstream_circuit`) failed too often in a row,
    for every model or for `model` (then `name` is its `model_circuit`): it rests `seconds`, here
    and, where a ledger's store is shared, in every process sharing it (announced as a rest named
    `CIRCUIT` + its fingerprint or name, and the model's)."""
    if pool is not None and key is not None:
        pool.open_circuit(key, seconds, model)
        name = fingerprint(key) if model is None else model_circuit(fingerprint(key), model)
    else:
        circuits.open(name, seconds)
    if ledger is not None:
        ledger.rest(CIRCUIT + name, time.time() + seconds)


def rest_refused_key(
    pool: KeyPool, key: str, status: int | None, retry_after: str | None, ledger: Store | None
) -> None:
    """The one rule for a pooled key its provider refused (`RESTING_STATUSES`: 401, 429), after a
    client's call, a failed attempt or a summarizer's request alike: it rests for the answer's
    Retry-After header (`retry_after`, as it came; 60 s where none is read), in its pool and, where
    a ledger's store is shared, in every process sharing it. Any other answer rests nothing."""
    if status not in RESTING_STATUSES:
        return
    seconds = retry_after_seconds(retry_after)
    pool.rest(key, seconds)
    if ledger is not None:
        ledger.rest(fingerprint(key), time.time() + seconds)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request Tollgate makes itself (a client's call goes as mitmproxy forwards it)."""

    upstream: str  # scheme://host[:port]
    path: str  # with its query
    fields: tuple[tuple[bytes, bytes], ...]  # with its Host
    body: bytes
    method: bytes = b"POST"

    def parts(self) -> RequestParts:
        target = urlsplit(self.upstream)
        host = target.hostname or ""
        return RequestParts(
            self.method, target.scheme.encode(), host, "", self.path.encode(), self.fields, self.body, {}, host,
            self.upstream,
        )  # fmt: skip

    def with_credential(self, credential: UpstreamCredential) -> Outgoing:
        """The request with `credential` put in, as it then goes (a credential may move it to
        another host or path, as a call's). CredentialUnavailable when it cannot be had."""
        applied = credential.apply(self.fields, self.parts)
        fields, upstream = applied.fields, self.upstream
        if applied.host is not None:  # same scheme: the default port, as a URL naming only the host
            upstream = f"{urlsplit(upstream).scheme}://{applied.host}"
            fields = tuple((k, applied.host.encode()) if k.lower() == b"host" else (k, v) for k, v in fields)
        path = applied.path.decode() if applied.path is not None else self.path
        return Outgoing(upstream, path, fields, self.body, self.method)


def json_request(
    provider: Provider, settings: ProviderConfig, path: str, body: bytes, extra: Mapping[str, str]
) -> Outgoing:
    """A JSON POST to `provider`'s own API, with the headers it needs (`extra`: those its format's
    writer added), and no credential yet."""
    upstream = target_upstream(provider, settings)
    assert upstream is not None
    fields = (
        (b"host", urlsplit(upstream).netloc.encode()),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        *provider.routing.target_headers,
        *((k.encode(), v.encode()) for k, v in extra.items()),
    )
    return Outgoing(upstream, path, fields, body)


class Unreachable(Exception):
    """The request could not be sent, or its answer not read; the message is the failure's kind."""


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes  # its Content-Encoding undone


def send(request: Outgoing, timeout: float, verify: bool | str) -> UpstreamAnswer:
    """Send a request and read its whole answer, with the standard library; it blocks (run it in a
    thread). `verify` as mitmproxy's upstream options say: False (`ssl_insecure`), the path of the
    CAs to trust (`ssl_verify_upstream_trusted_ca`), or True for certifi's, which mitmproxy trusts
    by default. No proxy is used, whatever the environment says (it may name Tollgate itself).
    Unreachable when it cannot be sent or its answer cannot be read (past 16 MiB decoded, say)."""
    target = urlsplit(request.upstream)
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(
            target.hostname or "", target.port, timeout=timeout, context=_tls_context(verify)
        )
    else:
        connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=timeout)
    try:
        # Exactly the header fields given (a signature covers them), with the body's length.
        connection.putrequest(request.method.decode(), request.path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.fields:
            connection.putheader(name, value)
        connection.putheader(b"content-length", str(len(request.body)).encode())
        connection.endheaders(request.body)
        response = connection.getresponse()
        content = response.read(MAX_FRAME + 1)
        headers = {k.lower(): v for k, v in response.getheaders()}
        if len(content) > MAX_FRAME:
            raise Undecodable("the answer is larger than Tollgate reads")
        body = decode_whole(content, headers.get("content-encoding", "identity"), MAX_FRAME)
    except (OSError, http.client.HTTPException, Undecodable) as e:  # never its message: it may quote the answer
        raise Unreachable(type(e).__name__) from None
    finally:
        connection.close()
    return UpstreamAnswer(response.status, headers, body)


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context(cafile=verify)


def timeout_message(timeout: float) -> str:
    """A call's error when its upstream sent no response headers within `timeout` seconds."""
    return f"upstream timeout: no response within {timeout:g} s"
