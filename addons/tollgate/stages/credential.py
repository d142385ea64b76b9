"""The upstream credential: the caller's side header, else the provider's keys in turn, else the
anonymous caller's own; the caller's credential never goes upstream otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mitmproxy import http

from .. import sigv4
from ..call import Call, fingerprint
from ..keypool import retry_after_seconds
from ..providers import PROVIDERS
from ..providers.base import NO_UPSTREAM_CREDENTIAL
from ..providers.bedrock import region_of
from ..raw_headers import decoded
from ..sigv4 import CredentialSource
from .shared import CallStage, Shared, call_of, credentials_of, provider_of, refuse

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

# Statuses after which a pooled key rests for the provider's Retry-After.
RESTING_STATUSES = (401, 429)
# Side headers of the seed Bedrock proxy that would sign with SigV4 (not supported yet).
AWS_SIGNING_SIDE_HEADERS = ("X-AWS-Access-Key", "X-AWS-Secret-Key", "X-AWS-Session-Token", "X-AWS-Region")
# Every side header is removed from every call, whichever provider it names: a key sent to the
# wrong provider must not travel on, nor stay in a saved flow.
SIDE_HEADERS = (*(p.side_header for p in PROVIDERS.values()), *AWS_SIGNING_SIDE_HEADERS)
_SIDE_HEADER_NAMES = frozenset(h.lower().encode() for h in SIDE_HEADERS)
# What a request re-signed for Bedrock must not carry on: the caller's credential and signature.
_UNSIGNABLE = frozenset(h.encode() for h in (*PROVIDERS["bedrock"].positions, *sigv4.SIGNATURE_HEADERS))


class Credential(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        provider = provider_of(call)
        request = flow.request
        side = {name: value.strip() for name, value in decoded(call.headers, _SIDE_HEADER_NAMES).items()}
        key = side.get(provider.side_header.lower()) or None
        aws, region = self._aws_side_headers(side) if call.provider == "bedrock" else (None, None)
        if key is not None:
            aws = None  # a bearer token wins over keys to sign with, as in the seed proxy
        if side:
            request.headers.fields = tuple(
                [f for f in request.headers.fields if f[0].lower() not in _SIDE_HEADER_NAMES]
            )
        if key is None and aws is None:
            pool = call.loaded.pools[call.provider]
            key = pool.take()
            if key is not None:
                call.pooled_key = (pool, key)
        if key is None and aws is None and call.provider == "bedrock":
            key = call.loaded.config.providers.bedrock.bearer_token
            aws = None if key else call.loaded.runtimes[call.provider]
        if aws is not None:
            try:
                credentials = aws()  # the default chain may refresh, and that may fail
            except Exception as e:
                self._refuse(flow, call, f"Tollgate could not obtain AWS credentials to sign with: {type(e).__name__}")
                return
            self._sign(flow, call, credentials, region)
            return
        if key is None:
            self._pass_through(flow, call)
            return
        # The caller's credentials out and the upstream key in, again in one pass.
        name, value = provider.injected(key, call.classification)
        fields = [f for f in request.headers.fields if f[0].lower() not in provider.header_positions]
        fields.append((name.encode(), value.encode("utf-8", "surrogateescape")))
        request.headers.fields = tuple(fields)
        for parameter in provider.query_positions:
            request.query.pop(parameter, None)
        call.upstream_key = fingerprint(key)

    @staticmethod
    def _aws_side_headers(side: dict[str, str]) -> tuple[CredentialSource | None, str | None]:
        """The seed proxy's X-AWS-Access-Key + X-AWS-Secret-Key (+ session token, region)."""
        access, secret = side.get("x-aws-access-key", ""), side.get("x-aws-secret-key", "")
        region = side.get("x-aws-region") or None
        if not (access and secret):
            return None, region
        frozen = sigv4.frozen_credentials(access, secret, side.get("x-aws-session-token") or None)
        return (lambda: frozen), region

    def _sign(self, flow: http.HTTPFlow, call: Call, credentials: ReadOnlyCredentials, region: str | None) -> None:
        """SigV4 over the request as it will go, after every change Tollgate made to it."""
        request = flow.request
        if region and call.upstream == f"https://{call.host}" and region != region_of(call.host):
            # X-AWS-Region picks the region when no upstream is configured.
            request.host = call.host.replace(f".{region_of(call.host)}.", f".{region}.", 1)
            call.upstream = f"https://{request.host}"
        region = region or region_of(request.host) or region_of(call.host) or "us-east-1"
        host = request.host_header or request.host
        # One pass over the raw header fields (mitmproxy's per-name operations each scan them all):
        # drop the caller's credentials and signature, keep what the new signature covers.
        kept, signed = [], {"host": host}
        for name, value in request.headers.fields:
            lower = name.lower()
            if lower in _UNSIGNABLE:
                continue
            kept.append((name, value))
            if lower == b"content-type" or lower.startswith(b"x-amz-"):
                signed[lower.decode("latin-1")] = value.decode("latin-1")
        signature = sigv4.sign(
            method=request.method,
            url=f"{request.scheme}://{host}{request.path}",
            headers=signed,
            body=request.raw_content or b"",
            credentials=credentials,
            region=region,
            payload_hash=call.body_sha256,
        )
        kept.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in signature.items())
        request.headers.fields = tuple(kept)
        call.upstream_key = fingerprint(credentials.access_key)

    def _pass_through(self, flow: http.HTTPFlow, call: Call) -> None:
        """Only an anonymous caller's own credential goes upstream, and only to its own provider,
        and only on a request as the caller made it when that request is signed."""
        provider = provider_of(call)
        signed = call.headers.get(b"authorization", b"").startswith(b"AWS4-")
        extra = ", `bearer_token` or `credentials`" if call.provider == "bedrock" else ""
        setting = f"set providers.{call.provider}.keys{extra} in Tollgate's configuration"
        if call.auth != "anonymous" or call.requested_provider is not None:
            routed = f" (routed from {call.requested_provider})" if call.requested_provider else ""
            self._refuse(
                flow,
                call,
                f"Tollgate has no {call.provider} credential for this call{routed}: {setting},"
                f" or send your own key in the {provider.side_header} header.",
            )
        elif signed and call.model is not None:
            # A changed request must be signed anew; until Tollgate signs with SigV4 itself it is
            # never forwarded with a signature that no longer fits.
            self._refuse(
                flow, call, f"Tollgate changed this request (model override) and cannot re-sign it: {setting}."
            )
        elif signed:
            # The access key id tells callers apart (never the secret, which the request does not carry).
            key_id = _access_key_id(call.headers[b"authorization"])
            call.upstream_key = fingerprint(key_id) if key_id else None
            # A SigV4 signature covers the Host header: it goes upstream as signed, wherever it goes.
            flow.request.host_header = call.host
        else:
            own = provider.presented(*credentials_of(call, flow.request, provider))
            call.upstream_key = fingerprint(own[0].value) if own else None

    @staticmethod
    def _refuse(flow: http.HTTPFlow, call: Call, message: str) -> None:
        refuse(flow, call, NO_UPSTREAM_CREDENTIAL, message)
        call.error = "no upstream credential"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or call.pooled_key is None or flow.response is None:
            return
        if flow.response.status_code in RESTING_STATUSES:
            pool, key = call.pooled_key
            pool.rest(key, retry_after_seconds(flow.response.headers.get("retry-after")))


def _access_key_id(authorization: bytes) -> str | None:
    """The access key id of a SigV4 `Authorization` header's Credential=, or None when it has none."""
    try:
        return sigv4.parse_authorization(authorization.decode("utf-8", "surrogateescape")).access_key_id or None
    except sigv4.SignatureError:
        return None
