"""Model overrides and routes: the first matching rule sets the model actually called, and may
send the call to another provider: an OpenAI-format call as it is to that provider's
OpenAI-compatible API, any chat call translated into its own format (`Translate`)."""

from __future__ import annotations

from mitmproxy import http

from tollgate.calls.call import Call, Target
from tollgate.calls.routes import client_request, own_api_path, translation_for
from tollgate.governance.routing.overrides import fitted_for, route_api, routed_path
from tollgate.governance.routing.upstream import SIDE_HEADERS
from tollgate.providers import Provider
from tollgate.proxy.flows import provider_of, write_body
from tollgate.proxy.state import Shared

_SIDE_HEADER_NAMES = frozenset(h.lower().encode() for h in SIDE_HEADERS)


class Overriding:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> None:
        rules = call.loaded.rules
        c, route = call.classification, call.route
        # Listings and other GETs carry no model to change and go as they came; so does a call made
        # with a plan's token: what it may call is the plan's, and its vendor checks what it sends.
        called, asked = route.requested.provider, route.requested.model
        if not rules.rules or asked is None or flow.request.method != "POST" or call.caller.subscription is not None:
            return
        rule = rules.find(called, asked, call.caller.client, call.caller.groups, c.endpoint)
        if rule is None:
            return
        if rule.fallbacks:
            self._keep_for_fallbacks(flow, call, rule.provider or called, rule.fallbacks)
        if rule.provider is not None and rule.provider != called:
            target = call.registry[rule.provider]
            if route_api(rule, called, c.endpoint, call.registry) != "native":
                flow.request.path = routed_path(target, flow.request.path)
                self._fit(flow, call, target)
            elif (own := own_api_path(call, rule.provider)) is not None:
                flow.request.path = own  # the target speaks the caller's format: nothing to translate
                self._fit(flow, call, target)
            else:
                # Translated into the target's own format, the model written where that format keeps it
                route.translated = translation_for(call, flow.request.query.get("alt"))
            route.target = Target(rule.provider, route.target.model)
        if rule.upstream is not None:
            route.upstream = rule.upstream
        if rule.fallbacks:
            call.failover.fallbacks = tuple((f.provider, f.model) for f in rule.fallbacks)
        if rule.model is not None and rule.model != asked:
            if route.translated is not None:
                route.target = Target(route.target.provider, rule.model)
            else:
                self._call_model(flow, call, rule.model)

    @staticmethod
    def _fit(flow: http.HTTPFlow, call: Call, target: Provider) -> None:
        """A chat call going as it came to another provider's API: its body made what that API
        takes (a vendor's `max_tokens`), written back only where that changed it."""
        if fitted_for(target, call.classification.endpoint, call.request.body):
            write_body(flow.request, call)

    @staticmethod
    def _keep_for_fallbacks(flow: http.HTTPFlow, call: Call, target: str, fallbacks: tuple) -> None:
        """A call routed elsewhere, or whose fallbacks go to another provider, keeps its request as
        the client sent it: a fallback is written from it (translated where the formats differ).
        No other call keeps anything."""
        if call.request.body is None:  # no JSON body: never translated, nor a fallback to another provider
            return
        if target == call.route.requested.provider and all(f.provider == target for f in fallbacks):
            return
        request = flow.request
        content = request.raw_content or b""
        if b"content-encoding" in call.request.headers:
            content = request.get_content(strict=False) or b""
        call.failover.client_request = client_request(
            provider_of(call),
            (request.scheme, request.host, request.port),
            request.path,
            request.headers.fields,
            content,
            _SIDE_HEADER_NAMES,
        )

    def _call_model(self, flow: http.HTTPFlow, call: Call, model: str) -> None:
        path = provider_of(call).models.path_with_model(flow.request.path, model)
        if path is not None:
            flow.request.path = path
            call.route.target = Target(call.route.target.provider, model)
            return
        field = provider_of(call).models.field(call.classification)
        if call.request.body is None or field is None:
            return  # no JSON body, or no field of it, to rewrite: the call goes as asked, and the audit says so
        call.request.body[field] = provider_of(call).models.in_body(call.request.body.get(field), model)
        write_body(flow.request, call)
        call.route.target = Target(call.route.target.provider, model)
