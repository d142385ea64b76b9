"""The upstream credential: the caller's side header, else the provider's keys in turn, else what
else the provider offers (`Provider.upstream_credential`), else the anonymous caller's own; the
caller's credential never goes upstream otherwise."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from functools import partial

from mitmproxy import http

from tollgate.call import Call, Failure
from tollgate.credentials.base import UpstreamCredential
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.credentials.keypool import CircuitOpen, KeyPool, retry_after_seconds
from tollgate.fingerprint import fingerprint
from tollgate.formats.raw_headers import decoded, with_header
from tollgate.formats.refusals import CIRCUIT_OPEN, NO_UPSTREAM_CREDENTIAL
from tollgate.governance.failover import (
    CONNECT,
    DEFAULT_WHEN,
    TIMEOUT,
    failed,
    fails_the_key,
    model_circuit,
    upstream_circuit,
    wait_for,
)
from tollgate.governance.subscriptions import plan_token
from tollgate.providers.base import OwnCredential, Provider
from tollgate.proxy.flows import call_of, credentials_of, provider_of, refuse, request_parts
from tollgate.proxy.state import Shared
from tollgate.upstream import RESTING_STATUSES, SIDE_HEADERS, credential_for, open_circuit, rest_key

logger = logging.getLogger(__name__)

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
        pin_tenant(request, call)
        if call.caller.subscription is not None:
            self._plan(flow, call, provider)
            return
        if call.route.rerouted:
            drop_credentials_of(call.registry[call.route.requested.provider], request)
        try:
            credential = credential_for(call.loaded, provider, call.sent(), side, circuit_model(call))
        except CircuitOpen as e:
            self._circuit_open(flow, call, e.rest_left)
            return
        if credential is None:
            if not self._upstream_rests(flow, call):
                self._pass_through(flow, call)
            return
        call.caller.caller_credential = bool(side)
        try:
            self._apply(flow, call, credential)
        except CredentialUnavailable as e:
            self._refuse(flow, call, str(e))
            return
        if credential.pooled_key is None:
            self._upstream_rests(flow, call)

    def _plan(self, flow: http.HTTPFlow, call: Call, provider: Provider) -> None:
        """A call made with a plan's token: the token goes upstream as it came, never removed nor
        replaced (Tollgate holds no key for a plan; a side header's is ignored), audited by its
        fingerprint."""
        if self._upstream_rests(flow, call):
            return
        prefix = provider.plan_token_prefix
        assert prefix is not None
        token = plan_token(provider.presented(*credentials_of(call, flow.request, provider)), prefix)
        call.caller.caller_credential = True  # failover never tries a key of Tollgate's in its place
        call.answer.upstream_key = None if token is None else fingerprint(token.value)

    def _upstream_rests(self, flow: http.HTTPFlow, call: Call) -> bool:
        """A call with no pooled key is refused while its upstream's circuit is open, for every
        model or for the call's."""
        left = self._upstream_rest_left(call)
        if left <= 0:
            return False
        self._circuit_open(flow, call, left)
        return True

    def _upstream_rest_left(self, call: Call) -> float:
        model = circuit_model(call)
        if model is None:
            return 0.0
        circuits, whole = self.shared.circuits, upstream_circuit(call.route.target.provider, call.route.upstream)
        return max(circuits.rest_left(whole), circuits.rest_left(model_circuit(whole, model)))

    @staticmethod
    def _circuit_open(flow: http.HTTPFlow, call: Call, rest_left: float) -> None:
        refuse(
            flow,
            call,
            CIRCUIT_OPEN,
            f"Tollgate: every {call.route.target.provider} key or upstream for this call (model"
            f" {call.route.target.model!r}) failed too often in a row and rests ({math.ceil(rest_left)} s left)",
            {"retry-after": str(max(1, math.ceil(rest_left)))},
        )

    def _apply(self, flow: http.HTTPFlow, call: Call, credential: UpstreamCredential) -> None:
        provider = provider_of(call)
        request = flow.request
        if credential.pooled_key is not None:
            pool = credential.pool if credential.pool is not None else call.loaded.pools[call.route.target.provider]
            call.answer.pooled_key = (pool, credential.pooled_key)
        elif call.answer.pooled_key is not None:  # a fallback to a provider without a pool: not the last key's
            call.answer.pooled_key = None
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
            call.route.upstream = f"https://{request.host}"
        call.answer.upstream_key = applied.fingerprint

    @staticmethod
    def _side_headers_out(request: http.Request, call: Call) -> dict[str, str]:
        """The side headers the caller sent, taken out of the request."""
        side = {name: value.strip() for name, value in decoded(call.request.headers, _SIDE_HEADER_NAMES).items()}
        if side:
            request.headers.fields = tuple(
                [f for f in request.headers.fields if f[0].lower() not in _SIDE_HEADER_NAMES]
            )
        return side

    def own(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call outside the model API (`Classification.passthrough`): the caller's own credential
        goes as it came (a signed request with the Host it signed), never one of Tollgate's."""
        self._side_headers_out(flow.request, call)
        pin_tenant(flow.request, call)
        provider = provider_of(call)
        self._send_own(
            flow, call, provider.own_credential(call.request.headers, *credentials_of(call, flow.request, provider))
        )

    def _pass_through(self, flow: http.HTTPFlow, call: Call) -> None:
        """Only an anonymous caller's own credential goes upstream, and only to its own provider,
        and only on a request as the caller made it when that request is signed."""
        provider = provider_of(call)
        setting = (
            f"set providers.{call.route.target.provider}.{provider.credential_settings} in Tollgate's configuration"
        )
        route = call.route
        if call.caller.auth != "anonymous" or route.rerouted:
            routed = f" (routed from {route.requested.provider})" if route.rerouted else ""
            self._refuse(
                flow,
                call,
                f"Tollgate has no {call.route.target.provider} credential for this call{routed}: {setting},"
                f" or send your own key in the {provider.side_header} header.",
            )
            return
        own = provider.own_credential(call.request.headers, *credentials_of(call, flow.request, provider))
        if own.signed and call.route.target.model != call.route.requested.model:
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
        call.answer.upstream_key = own.fingerprint

    @staticmethod
    def _refuse(flow: http.HTTPFlow, call: Call, message: str) -> None:
        refuse(flow, call, NO_UPSTREAM_CREDENTIAL, message)
        call.answer.error = "no upstream credential"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = call_of(flow)
        if call is None or flow.response is None or call.answer.answered_by_tollgate:
            return
        if call.answer.pooled_key is not None:
            self._rest_refused_key(flow.response, call.answer.pooled_key)
        self._count(call, flow.response.status_code, None)

    def error(self, flow: http.HTTPFlow) -> None:
        """After `UpstreamWatch.error`: an upstream unreachable or late counts for its circuit."""
        call = call_of(flow)
        if call is not None and call.answer.failure in (Failure.UPSTREAM_UNREACHABLE, Failure.UPSTREAM_TIMEOUT):
            self._count(call, None, self._failure_kind(call))

    def _count(self, call: Call, status: int | None, kind: str | None) -> None:
        """The attempt's outcome for its key's or upstream's circuits (`providers.<name>.circuit`):
        a failure as `retry.when` says (else `DEFAULT_WHEN`) counts for the key or upstream when it
        is the key's (429, a failed connection: `fails_the_key`), else for the model the call asked
        for there, which alone then rests on that key or upstream; any other answer closes both."""
        settings = call.loaded.providers[call.route.target.provider]
        circuit = settings.circuit
        model = circuit_model(call)
        if circuit is None or model is None or call.failover.circuit_counted:
            return
        call.failover.circuit_counted = True
        pooled = call.answer.pooled_key
        whole = (
            call.answer.upstream_key
            if pooled is not None
            else upstream_circuit(call.route.target.provider, call.route.upstream)
        )
        assert whole is not None
        circuits, for_model = self.shared.circuits, model_circuit(whole, model)
        if not failed(status, kind, settings.retry.when if settings.retry is not None else DEFAULT_WHEN):
            circuits.succeeded(whole)
            circuits.succeeded(for_model)
            return
        of_key = fails_the_key(status, kind)
        name = whole if of_key else for_model
        if circuits.failed(name, circuit.failures):
            pool, key = pooled if pooled is not None else (None, None)
            rested = None if of_key else model
            open_circuit(pool, key, name, circuit.rest_s, circuits, self.shared.ledger, rested)
            what = f"key {whole}" if pooled is not None else f"upstream {call.route.upstream}"
            if not of_key:
                what += f" (model {model!r})"
            rest = f"{circuit.rest_s:g} s"
            provider = call.route.target.provider
            logger.warning(f"Tollgate: {provider} {what} failed {circuit.failures} calls in a row: it rests {rest}")

    def _rest_refused_key(self, response: http.Response, pooled: tuple[KeyPool, str]) -> None:
        if response.status_code in RESTING_STATUSES:
            pool, key = pooled
            rest_key(pool, key, response.headers.get("retry-after"), self.shared.ledger)

    def again(self, flow: http.HTTPFlow) -> None:
        """A failed attempt's call goes again (`UpstreamWatch.attempt_failed`): the key the provider
        refused rests, and the next credential is chosen, with the wait its Retry-After or its rest
        asks (none past `retry.max_wait_s`: no retry). It goes on the request in `retry`, once the
        ledger has room for the retry: until then the call's key is the failed attempt's."""
        call = call_of(flow)
        if call is None or not (call.failover.retrying or call.failover.falling_back):
            return
        response = flow.response
        refused_key = response is not None and response.status_code in RESTING_STATUSES
        if call.answer.pooled_key is not None and response is not None:
            self._rest_refused_key(response, call.answer.pooled_key)
        status = response.status_code if response is not None else None
        self._count(call, status, None if status is not None else self._failure_kind(call))
        retry = call.loaded.providers[call.route.target.provider].retry
        if not call.failover.retrying or retry is None:
            return  # no retry left: a fallback, if any, is next (`Fallback`)
        try:
            credential = credential_for(call.loaded, provider_of(call), call.sent(), model=circuit_model(call))
        except CircuitOpen:  # every key rests: the failed attempt's answer stands
            call.failover.retrying = False
            return
        if credential is not None and credential.pooled_key is None and self._upstream_circuit_open(call):
            call.failover.retrying = False
            return
        rest_left = None
        if credential is not None and credential.pooled_key is not None:
            pool = credential.pool if credential.pool is not None else call.loaded.pools[call.route.target.provider]
            rest_left = pool.rest_left(credential.pooled_key)
        retry_after = None
        if response is not None and "retry-after" in response.headers:
            retry_after = retry_after_seconds(response.headers["retry-after"])
        wait = wait_for(rest_left, retry_after, refused_key, retry.max_wait_s)
        if credential is None or wait is None:
            call.failover.retrying = False
            return
        call.failover.next_credential = (credential, wait)

    def retry(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """After `Ledger.retry`: the credential `again` chose goes on the request once its wait is
        over (a signature made anew over it, a token current then); a retry not made takes none."""
        call = call_of(flow)
        if call is None or call.failover.next_credential is None:
            return None
        (credential, wait), call.failover.next_credential = call.failover.next_credential, None
        if not call.failover.retrying:
            return None
        if wait > 0:
            return self._apply_after(flow, call, credential, wait)
        self._apply_again(flow, call, credential)
        return None

    def fallback(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call step of a failover attempt, last: its fallback target's credential on the request,
        one of Tollgate's (never the caller's); refused when none can be had, so it is skipped."""
        pin_tenant(flow.request, call)
        try:
            credential = credential_for(call.loaded, provider_of(call), call.sent(), model=circuit_model(call))
        except CircuitOpen as e:
            self._circuit_open(flow, call, e.rest_left)
            return
        if credential is None:
            self._refuse(flow, call, f"Tollgate has no {call.route.target.provider} credential for this fallback.")
            return
        if credential.pooled_key is None and self._upstream_rests(flow, call):
            return
        try:
            self._apply(flow, call, credential)
        except CredentialUnavailable as e:
            self._refuse(flow, call, str(e))

    @staticmethod
    def _failure_kind(call: Call) -> str:
        return TIMEOUT if call.answer.failure is Failure.UPSTREAM_TIMEOUT else CONNECT

    def _upstream_circuit_open(self, call: Call) -> bool:
        return self._upstream_rest_left(call) > 0

    async def _apply_after(self, flow: http.HTTPFlow, call: Call, credential: UpstreamCredential, wait: float) -> None:
        # Applied once the wait is over: a signature is dated, and a token may expire meanwhile.
        await asyncio.sleep(wait)
        if not flow.client_conn.connected:  # its client left meanwhile: nothing goes again
            call.failover.retrying = False
            return
        self._apply_again(flow, call, credential)

    def _apply_again(self, flow: http.HTTPFlow, call: Call, credential: UpstreamCredential) -> None:
        try:
            self._apply(flow, call, credential)
        except CredentialUnavailable:  # the failed attempt's answer stands
            call.failover.retrying = False


def pin_tenant(request: http.Request, call: Call) -> None:
    """The tenant header of the provider the call goes to (`subscriptions:`), whatever its
    credential, in place of any the client sent."""
    pin = call.loaded.tenant_pins.get(call.route.target.provider)
    if pin is not None:
        request.headers.fields = with_header(request.headers.fields, *pin)


def circuit_model(call: Call) -> str | None:
    """The model a call's circuits count it for: the name sent upstream, in lower case where the
    provider reads names so (Azure's deployments), "" for a call naming none; None when its
    provider has no `circuit`."""
    target = call.route.target
    if call.loaded.providers[target.provider].circuit is None:
        return None
    model = target.model or ""
    return model.lower() if call.registry[target.provider].models_ignore_case else model


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
