"""The upstream credential: the caller's side header, else the provider's keys in turn, else the
anonymous caller's own; the caller's credential never goes upstream otherwise."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from mitmproxy import http

from ..call import Call, fingerprint
from ..keypool import KeyPool, retry_after_seconds
from ..providers import PROVIDERS
from ..providers.base import NO_UPSTREAM_CREDENTIAL
from .shared import CallStage, Shared, provider_of, refuse

# Statuses after which a pooled key rests for the provider's Retry-After.
RESTING_STATUSES = (401, 429)
# Side headers of the seed Bedrock proxy that would sign with SigV4 (not supported yet).
AWS_SIGNING_SIDE_HEADERS = ("X-AWS-Access-Key", "X-AWS-Secret-Key", "X-AWS-Session-Token", "X-AWS-Region")
# Every side header is removed from every call, whichever provider it names: a key sent to the
# wrong provider must not travel on, nor stay in a saved flow.
SIDE_HEADERS = (*(p.side_header for p in PROVIDERS.values()), *AWS_SIGNING_SIDE_HEADERS)


class Credential(CallStage):
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._taken: WeakKeyDictionary[http.HTTPFlow, tuple[KeyPool, str]] = WeakKeyDictionary()

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        provider = provider_of(call)
        headers = flow.request.headers
        key = (headers.get(provider.side_header, "") or "").strip() or None
        signing = call.provider == "bedrock" and "X-AWS-Access-Key" in headers and "X-AWS-Secret-Key" in headers
        for name in SIDE_HEADERS:
            headers.pop(name, None)
        if key is None and signing:
            self._refuse(
                flow, call, "Tollgate cannot sign with X-AWS-Access-Key/X-AWS-Secret-Key yet; send X-AWS-Bearer-Token instead."
            )
            return
        if key is None:
            pool = self.shared.pools[call.provider]
            key = pool.take()
            if key is not None:
                self._taken[flow] = (pool, key)
        if key is None and call.provider == "bedrock":
            key = self.shared.config.providers.bedrock.bearer_token
        if key is None:
            self._pass_through(flow, call)
            return
        provider.remove_credentials(headers, flow.request.query)
        provider.inject(headers, key, call.classification)
        call.upstream_key = fingerprint(key)

    def _pass_through(self, flow: http.HTTPFlow, call: Call) -> None:
        """Only an anonymous caller's own credential goes upstream, and only to its own provider,
        and only on a request as the caller made it when that request is signed."""
        provider = provider_of(call)
        signed = flow.request.headers.get("authorization", "").startswith("AWS4-")
        extra = " or `bearer_token`" if call.provider == "bedrock" else ""
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
        else:
            own = provider.presented(flow.request.headers, flow.request.query)
            call.upstream_key = fingerprint(own[0].value) if own else None
            if signed:
                # A SigV4 signature covers the Host header: it goes upstream as signed, wherever it goes.
                flow.request.host_header = call.host

    @staticmethod
    def _refuse(flow: http.HTTPFlow, call: Call, message: str) -> None:
        refuse(flow, call, NO_UPSTREAM_CREDENTIAL, message)
        call.error = "no upstream credential"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        taken = self._taken.pop(flow, None)
        if taken is None or flow.response is None or flow.response.status_code not in RESTING_STATUSES:
            return
        pool, key = taken
        pool.rest(key, retry_after_seconds(flow.response.headers.get("retry-after")))
