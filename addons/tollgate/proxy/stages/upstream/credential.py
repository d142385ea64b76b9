"""The upstream credential: the caller's side header, else the provider's keys in turn, else what
else the provider offers (`Credentials.upstream_credential`), else the anonymous caller's own; the
caller's credential never goes upstream otherwise."""

from __future__ import annotations

import math

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.calls.next_attempt import circuit_model, upstream_rest_left
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.credentials.keypool import CircuitOpen
from tollgate.formats.bodies.raw_headers import decoded, with_pinned_header
from tollgate.formats.refusals import CIRCUIT_OPEN, NO_UPSTREAM_CREDENTIAL
from tollgate.governance.routing.upstream import SIDE_HEADERS, credential_for
from tollgate.providers.base import Provider
from tollgate.providers.credentials import OwnCredential
from tollgate.proxy.flows import apply_credential, credentials_of, provider_of, refuse
from tollgate.proxy.state import Shared

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
            self._plan(flow, call)
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
            apply_credential(flow, call, credential)
        except CredentialUnavailable as e:
            self._refuse(flow, call, str(e))
            return
        if credential.pooled_key is None:
            self._upstream_rests(flow, call)

    def _plan(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call made with a plan's token: the token goes upstream as it came, never removed nor
        replaced (Tollgate holds no key for a plan; a side header's is ignored), audited by the
        fingerprint Identify kept of it (`Caller.plan_token`)."""
        if self._upstream_rests(flow, call):
            return
        call.caller.caller_credential = True  # failover never tries a key of Tollgate's in its place
        kept = call.caller.plan_token
        call.answer.upstream_key = None if kept is None else kept.upstream_key

    def _upstream_rests(self, flow: http.HTTPFlow, call: Call) -> bool:
        """A call with no pooled key is refused while its upstream's circuit is open, for every
        model or for the call's."""
        left = upstream_rest_left(call, self.shared.circuits)
        if left <= 0:
            return False
        self._circuit_open(flow, call, left)
        return True

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
            flow,
            call,
            provider.credentials.check.own_credential(
                call.request.headers, *credentials_of(call, flow.request, provider)
            ),
        )

    def _pass_through(self, flow: http.HTTPFlow, call: Call) -> None:
        """Only an anonymous caller's own credential goes upstream, and only to its own provider,
        and only on a request as the caller made it when that request is signed."""
        provider = provider_of(call)
        settings = provider.credentials.source.settings
        setting = f"set providers.{call.route.target.provider}.{settings} in Tollgate's configuration"
        route = call.route
        if call.caller.auth != "anonymous" or route.rerouted:
            routed = f" (routed from {route.requested.provider})" if route.rerouted else ""
            self._refuse(
                flow,
                call,
                f"Tollgate has no {call.route.target.provider} credential for this call{routed}: {setting},"
                f" or send your own key in the {provider.credentials.caller.side_header} header.",
            )
            return
        own = provider.credentials.check.own_credential(
            call.request.headers, *credentials_of(call, flow.request, provider)
        )
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
            apply_credential(flow, call, credential)
        except CredentialUnavailable as e:
            self._refuse(flow, call, str(e))


def pin_tenant(request: http.Request, call: Call) -> None:
    """The tenant header of the provider the call goes to (`subscriptions:`), whatever its
    credential, in place of any the client sent."""
    pin = call.loaded.tenant_pins.get(call.route.target.provider)
    if pin is not None:
        request.headers.fields = with_pinned_header(request.headers.fields, *pin)


def drop_credentials_of(provider: Provider, request: http.Request) -> None:
    """A routed call carries no credential where the provider the client called keeps one (its
    virtual key, say, in `x-goog-api-key`), nor what picks an account there: the target's own
    positions are dropped as its credential goes in, these are not among them."""
    positions = provider.credentials.caller.header_positions | provider.credentials.key.billing_headers
    if any(name.lower() in positions for name, _ in request.headers.fields):
        request.headers.fields = tuple(f for f in request.headers.fields if f[0].lower() not in positions)
    for parameter in provider.credentials.caller.query_positions:
        if parameter in request.query:
            request.query.pop(parameter, None)
