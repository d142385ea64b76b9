"""The upstream credential: the caller's side header, else the provider's keys in turn, else what
else the provider offers (`Provider.upstream_credential`), else the anonymous caller's own; the
caller's credential never goes upstream otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial

from mitmproxy import http

from tollgate.call import Call
from tollgate.formats.raw_headers import decoded
from tollgate.governance.failover import wait_for
from tollgate.providers.base import (
    NO_UPSTREAM_CREDENTIAL,
    CredentialUnavailable,
    OwnCredential,
    Provider,
    UpstreamCredential,
)
from tollgate.providers.keypool import KeyPool, retry_after_seconds
from tollgate.proxy.flows import call_of, credentials_of, provider_of, refuse, request_parts
from tollgate.proxy.state import Shared
from tollgate.upstream import RESTING_STATUSES, SIDE_HEADERS, credential_for, rest_key

# Every side header is removed from every call, whichever provider it names: a key sent to the
# wrong provider must not travel on, nor stay in a saved flow.
_SIDE_HEADER_NAMES = frozenset(h.lower().encode() for h in SIDE_HEADERS)


class Credential:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        provider = provider_of(call)
        request = flow.request
        side = self._side_headers_out(request, call)
        if call.requested_provider is not None:
            drop_credentials_of(call.registry[call.requested_provider], request)
        credential = credential_for(call.loaded, provider, call.sent(), side)
        if credential is None:
            self._pass_through(flow, call)
            return
        call.caller_credential = bool(side)
        try:
            self._apply(flow, call, credential)
        except CredentialUnavailable as e:
            self._refuse(flow, call, str(e))

    def _apply(self, flow: http.HTTPFlow, call: Call, credential: UpstreamCredential) -> None:
        provider = provider_of(call)
        request = flow.request
        if credential.pooled_key is not None:
            call.pooled_key = (call.loaded.pools[call.provider], credential.pooled_key)
        for parameter in provider.query_positions:
            request.query.pop(parameter, None)
        # The caller's credentials out and the upstream's in, in one pass over the header fields
        # (CredentialUnavailable when it cannot be had).
        applied = credential.apply(request.headers.fields, partial(request_parts, request, call))
        request.headers.fields = applied.fields
        if applied.path is not None:
            request.data.path = applied.path
        if applied.host is not None:
            request.host = applied.host  # its Host header and :authority follow, as signed
            call.upstream = f"https://{request.host}"
        call.upstream_key = applied.fingerprint

    @staticmethod
    def _side_headers_out(request: http.Request, call: Call) -> dict[str, str]:
        """The side headers the caller sent, taken out of the request."""
        side = {name: value.strip() for name, value in decoded(call.headers, _SIDE_HEADER_NAMES).items()}
        if side:
            request.headers.fields = tuple(
                [f for f in request.headers.fields if f[0].lower() not in _SIDE_HEADER_NAMES]
            )
        return side

    def own(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call outside the model API (`Classification.passthrough`): the caller's own credential
        goes as it came (a signed request with the Host it signed), never one of Tollgate's."""
        self._side_headers_out(flow.request, call)
        provider = provider_of(call)
        self._send_own(flow, call, provider.own_credential(call.headers, *credentials_of(call, flow.request, provider)))

    def _pass_through(self, flow: http.HTTPFlow, call: Call) -> None:
        """Only an anonymous caller's own credential goes upstream, and only to its own provider,
        and only on a request as the caller made it when that request is signed."""
        provider = provider_of(call)
        setting = f"set providers.{call.provider}.{provider.credential_settings} in Tollgate's configuration"
        if call.auth != "anonymous" or call.requested_provider is not None:
            routed = f" (routed from {call.requested_provider})" if call.requested_provider else ""
            self._refuse(
                flow,
                call,
                f"Tollgate has no {call.provider} credential for this call{routed}: {setting},"
                f" or send your own key in the {provider.side_header} header.",
            )
            return
        own = provider.own_credential(call.headers, *credentials_of(call, flow.request, provider))
        if own.signed and call.model is not None:
            # A changed request must be signed anew: it is never forwarded with a signature that
            # no longer fits.
            self._refuse(
                flow, call, f"Tollgate changed this request (model override) and cannot re-sign it: {setting}."
            )
            return
        self._send_own(flow, call, own)

    @staticmethod
    def _send_own(flow: http.HTTPFlow, call: Call, own: OwnCredential) -> None:
        if own.signed:
            # A signature covers the Host header: it goes upstream as signed, wherever it goes.
            flow.request.host_header = call.host
        call.upstream_key = own.fingerprint

    @staticmethod
    def _refuse(flow: http.HTTPFlow, call: Call, message: str) -> None:
        refuse(flow, call, NO_UPSTREAM_CREDENTIAL, message)
        call.error = "no upstream credential"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or call.pooled_key is None or flow.response is None:
            return
        self._rest_refused_key(flow.response, call.pooled_key)

    def _rest_refused_key(self, response: http.Response, pooled: tuple[KeyPool, str]) -> None:
        if response.status_code in RESTING_STATUSES:
            pool, key = pooled
            rest_key(pool, key, response.headers.get("retry-after"), self.shared.ledger)

    def again(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A failed attempt's call goes again (`UpstreamWatch.attempt_failed`): the key the provider
        refused rests, and the next credential goes on the request (a signature made anew over it),
        after the wait its Retry-After or the next key's rest asks; none past `retry.max_wait_s`."""
        call = call_of(flow)
        if call is None or not call.retrying:
            return None
        retry = call.loaded.providers[call.provider].retry
        assert retry is not None
        response = flow.response
        refused_key = response is not None and response.status_code in RESTING_STATUSES
        if call.pooled_key is not None and response is not None:
            self._rest_refused_key(response, call.pooled_key)
        credential = credential_for(call.loaded, provider_of(call), call.sent())
        rest_left = None
        if credential is not None and credential.pooled_key is not None:
            rest_left = call.loaded.pools[call.provider].rest_left(credential.pooled_key)
        retry_after = None
        if response is not None and "retry-after" in response.headers:
            retry_after = retry_after_seconds(response.headers["retry-after"])
        wait = wait_for(rest_left, retry_after, refused_key, retry.max_wait_s)
        if credential is None or wait is None:
            call.retrying = False
            return None
        try:
            self._apply(flow, call, credential)
        except CredentialUnavailable:  # the failed attempt's answer stands
            call.retrying = False
            return None
        return asyncio.sleep(wait) if wait > 0 else None


def drop_credentials_of(provider: Provider, request: http.Request) -> None:
    """A routed call carries no credential where the provider the client called keeps one (its
    virtual key, say, in `x-goog-api-key`), nor what picks an account there: the target's own
    positions are dropped as its credential goes in, these are not among them."""
    positions = provider.header_positions | provider.billing_headers
    if any(name.lower() in positions for name, _ in request.headers.fields):
        request.headers.fields = tuple(f for f in request.headers.fields if f[0].lower() not in positions)
    for parameter in provider.query_positions:
        if parameter in request.query:
            request.query.pop(parameter, None)
