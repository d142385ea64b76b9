"""AWS Signature Version 4: verifying a caller's signature (Tollgate's own code, over the request
exactly as it arrived), and Tollgate's own AWS credentials (`credential_source`) signing the final
request (`SigV4Signature`, with botocore's `SigV4Auth`)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

from tollgate.common.config_base import AwsCredentials
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import Applied, RequestParts, UpstreamCredential
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.formats.bodies.raw_headers import Fields

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
# HTTP/2's (and HTTP/3's) pseudo-header naming the host. A client may sign it in place of `host`
# (the AWS SDK for JavaScript does over HTTP/2): its canonical line is `:authority:<value>`, the
# value the request's :authority carries, as for any other header.
AUTHORITY = ":authority"
MAX_SKEW = timedelta(minutes=5)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_SPACES = re.compile(r"\s+")


class SignatureError(Exception):
    """Why a signature does not hold; `code` is the AWS error type to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


UNKNOWN_KEY = "UnrecognizedClientException"
BAD_SIGNATURE = "InvalidSignatureException"


@dataclass(frozen=True, slots=True)
class Authorization:
    access_key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> Authorization:
    m = _AUTHORIZATION.match(value.strip())
    if not m:
        raise SignatureError(BAD_SIGNATURE, "Authorization header is not a well-formed AWS4-HMAC-SHA256 signature")
    parts = m["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError(BAD_SIGNATURE, "Credential should be scoped to a valid region, service and aws4_request")
    signed = tuple(m["signed"].split(";"))
    return Authorization(parts[0], parts[1], parts[2], parts[3], signed, m["signature"])


_KEY_ID = re.compile(rb"Credential=([^/,\s]+)/")


def signing_key_id(index: Mapping[bytes, bytes], query: Mapping[str, str]) -> str | None:
    """The access key id a SigV4 request is signed with, in its Authorization header or its query
    (a presigned URL), read however the rest of the signature looks; None when it is not signed."""
    authorization = index.get(b"authorization", b"")
    if authorization.startswith(b"AWS4-"):
        m = _KEY_ID.search(authorization)
        return m[1].decode("utf-8", "surrogateescape") if m else None
    credential = query.get("X-Amz-Credential")
    return credential.partition("/")[0] or None if credential else None


def _encode(value: str) -> str:
    # mitmproxy keeps undecodable bytes as surrogates: they are encoded back to the bytes sent.
    return quote(value, safe="-_.~", errors="surrogateescape")


def _decode(value: str) -> str:
    return unquote(value, errors="surrogateescape")


def canonical_uri(raw_path: str) -> str:
    """The path as sent, normalised (no `.`, `..` or empty segments) and each segment encoded once
    more: services other than S3 double-encode, as botocore signs for them."""
    from botocore.utils import remove_dot_segments

    path = remove_dot_segments(raw_path.split("?", 1)[0] or "/")
    return "/".join(_encode(segment) for segment in path.split("/"))


def canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else ():
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_encode(_decode(key)), _encode(_decode(value))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: Iterable[tuple[str, str]], signed: tuple[str, ...]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(_SPACES.sub(" ", value.strip()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    signed: tuple[str, ...],
    payload_hash: str,
) -> str:
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash,
        )
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, amz_date: str, auth: Authorization, canonical: str) -> str:
    to_sign = "\n".join((ALGORITHM, amz_date, auth.scope, hashlib.sha256(canonical.encode()).hexdigest()))
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Verified:
    authorization: Authorization
    payload_hash: str | None  # SHA-256 of the body as it arrived, when signed (re-signing reuses it)


def verify_request(
    *,
    method: str,
    raw_path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    secrets: Mapping[str, str],
    service: str,
    region: str | None,
    now: datetime | None = None,
) -> Verified:
    """Check a request's SigV4 signature as it arrived, or raise SignatureError with the AWS error
    code to answer with. `headers` are the request's fields, with its `:authority` where it has
    one (HTTP/2, HTTP/3): the host is signed as `host` or as `:authority`."""
    lookup = {name.lower(): value for name, value in headers}
    auth = parse_authorization(lookup.get("authorization", ""))
    secret = secrets.get(auth.access_key_id)
    if secret is None:
        raise SignatureError(UNKNOWN_KEY, "The security token included in the request is invalid.")
    if "host" not in auth.signed_headers and AUTHORITY not in auth.signed_headers:
        raise SignatureError(BAD_SIGNATURE, "'Host' must be a signed header")
    if AUTHORITY in auth.signed_headers and AUTHORITY not in lookup:
        # Only HTTP/2 and HTTP/3 carry one: signed over HTTP/1.1, the host would go unsigned.
        raise SignatureError(BAD_SIGNATURE, "':authority' is signed but the request has none (HTTP/1.1 signs 'host')")
    amz_date = lookup.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(BAD_SIGNATURE, "X-Amz-Date is missing or not in ISO 8601 basic format") from None
    if auth.date != amz_date[:8]:
        raise SignatureError(BAD_SIGNATURE, f"Credential date {auth.date} does not match X-Amz-Date {amz_date}")
    if auth.service != service:
        raise SignatureError(BAD_SIGNATURE, f"Credential should be scoped to correct service: '{service}'.")
    if region is not None and auth.region != region:
        raise SignatureError(BAD_SIGNATURE, f"Credential should be scoped to a valid region, not '{auth.region}'.")
    now = now or datetime.now(UTC)
    if abs(now - signed_at) > MAX_SKEW:
        raise SignatureError(
            BAD_SIGNATURE,
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_SKEW):%Y%m%dT%H%M%SZ}"
            if signed_at < now
            else f"Signature not yet current: {amz_date} is still later than {(now + MAX_SKEW):%Y%m%dT%H%M%SZ}",
        )
    claimed = lookup.get("x-amz-content-sha256")
    payload_hash = hashlib.sha256(body).hexdigest() if claimed != UNSIGNED_PAYLOAD else claimed
    if claimed is not None and claimed != payload_hash:
        raise SignatureError(BAD_SIGNATURE, "The provided x-amz-content-sha256 does not match what was computed.")
    path, _, query = raw_path.partition("?")
    try:
        canonical = canonical_request(method, path, query, headers, auth.signed_headers, payload_hash)
    except (ValueError, UnicodeError) as e:
        raise SignatureError(BAD_SIGNATURE, f"The request cannot be canonicalised: {type(e).__name__}") from None
    expected = signature(secret, amz_date, auth, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError(
            BAD_SIGNATURE,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return Verified(auth, None if payload_hash == UNSIGNED_PAYLOAD else payload_hash)


def load_botocore() -> None:
    """Import what of botocore Tollgate uses. It is imported on first need, not with Tollgate: a
    proxy that never sees Bedrock is spared its ~11 k objects (which every full collection of the
    garbage collector walks), 136 modules and ~0.3 s of start-up. `Bedrock.load_runtime` calls this
    when the configuration mentions Bedrock, so that no call waits for the import."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import botocore.eventstream
    import botocore.session
    import botocore.utils  # noqa: F401


@cache
def _signer() -> type:
    from botocore.auth import SigV4Auth

    class KnownPayloadSigV4Auth(SigV4Auth):
        """botocore's signer, spared hashing a body whose hash is already known."""

        def __init__(
            self, credentials: ReadOnlyCredentials, service: str, region: str, payload_hash: str | None
        ) -> None:
            super().__init__(credentials, service, region)
            self._payload_hash = payload_hash

        def payload(self, request: object) -> str:
            return self._payload_hash or super().payload(request)

    return KnownPayloadSigV4Auth


# Headers that must not reach the upstream under a new signature: the old signature's, and the
# ones a proxy adds or that mean nothing upstream.
SIGNATURE_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


def sign(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: ReadOnlyCredentials,
    region: str,
    service: str,
    payload_hash: str | None = None,
) -> dict[str, str]:
    """The headers that sign the request anew (Authorization, X-Amz-Date, and the session token).

    `url` carries the path exactly as it will be sent (already percent-encoded, as botocore sends
    it); botocore encodes it once more for the canonical request, as AWS expects."""
    path, _, query = url.partition("?")
    if query:
        # botocore takes a URL's query pairs as they are encoded; AWS canonicalises them (decode,
        # then encode): hand botocore the canonical encoding, the bytes sent stay as they are.
        pairs = (p.partition("=") for p in query.split("&") if p)
        path += "?" + "&".join(f"{_encode(_decode(k))}={_encode(_decode(v))}" for k, _, v in pairs)
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=path, data=body, headers=dict(headers))
    _signer()(credentials, service, region, payload_hash).add_auth(request)
    return {
        name: request.headers[name]
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        if name in request.headers
    }


CredentialSource = Callable[[], "ReadOnlyCredentials"]


def credential_source(setting: Literal["default"] | AwsCredentials | None) -> CredentialSource | None:
    """What signs Tollgate's requests: `"default"` is botocore's credential chain (environment,
    shared config and profiles, SSO, container and instance metadata, assume-role), refreshed
    before expiry; or static keys with an optional session token."""
    if setting is None:
        return None
    if setting == "default":
        import botocore.session

        credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise ValueError(
                "default: botocore's credential chain found no credentials"
                " (environment, shared config and profiles, SSO, container or instance metadata)"
            )
        return credentials.get_frozen_credentials
    frozen = frozen_credentials(setting.access_key_id, setting.secret_access_key, setting.session_token)
    return lambda: frozen


def frozen_credentials(access_key_id: str, secret_access_key: str, session_token: str | None) -> ReadOnlyCredentials:
    from botocore.credentials import ReadOnlyCredentials

    return ReadOnlyCredentials(access_key_id, secret_access_key, session_token)


# Where a signed request goes and the region its signature is for, given the request: another host
# to send it to (or None: where it goes) and the region.
Placement = Callable[[RequestParts], tuple[str | None, str]]


class SigV4Signature(UpstreamCredential):
    """AWS credentials Tollgate signs the request with (SigV4) for `service`, over the request as it
    will go: the header fields in `drop` (the caller's credential and signature) out, the host and
    region `place` says."""

    __slots__ = ("_drop", "_place", "_service", "_source", "pooled_key")

    def __init__(self, source: CredentialSource, service: str, place: Placement, drop: frozenset[bytes]) -> None:
        self._source = source
        self._service = service
        self._place = place
        self._drop = drop
        self.pooled_key = None

    def apply(self, fields: Fields, request_of: Callable[[], RequestParts]) -> Applied:
        request = request_of()
        try:
            credentials = self._source()  # the default chain may refresh, and that may fail
        except Exception as e:
            raise CredentialUnavailable(
                f"Tollgate could not obtain AWS credentials to sign with: {type(e).__name__}"
            ) from None
        moved_to, region = self._place(request)
        host = moved_to if moved_to is not None else request.host
        # One pass over the raw header fields: drop the caller's credentials and signature, keep
        # what the new signature covers, and find the Host it is signed for.
        kept: list[tuple[bytes, bytes]] = []
        hosts: list[bytes] = []
        signed = {"host": ""}
        for name, sent in fields:
            lower, value = name.lower(), sent
            if lower in self._drop:
                continue
            if lower == b"host":
                if moved_to is not None:
                    if hosts:
                        continue  # one Host field, as mitmproxy's setter leaves it
                    value = moved_to.encode()
                hosts.append(value)
            kept.append((name, value))
            if lower == b"content-type" or lower.startswith(b"x-amz-"):
                signed[lower.decode("latin-1")] = value.decode("latin-1")
        # The Host header as the request carries it (HTTP/2: its :authority first), else its host.
        authority = moved_to if moved_to is not None and request.authority else request.authority
        host_header = authority or b", ".join(hosts).decode("utf-8", "surrogateescape")
        signed["host"] = host_header or host
        path = request.path.decode("utf-8", "surrogateescape")
        signature = sign(
            method=request.method.decode("utf-8", "surrogateescape").upper(),
            url=f"{request.scheme.decode('utf-8', 'surrogateescape')}://{signed['host']}{path}",
            headers=signed,
            body=request.body,
            credentials=credentials,
            region=region,
            service=self._service,
            payload_hash=request.payload_hash,
        )
        kept.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in signature.items())
        return Applied(tuple(kept), fingerprint(credentials.access_key), moved_to)
