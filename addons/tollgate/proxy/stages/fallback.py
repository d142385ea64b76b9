"""Fallback routes: a call whose target failed (after its retries) goes to the next of its override
rule's `fallbacks` the policy allows (`input.fallback_of` names the target it falls back from):
another model of the same provider, the request as it was sent with its model changed; or another
provider, the request written anew from what the client sent (`call.failover.client_request`),
translated where the formats differ, with that provider's upstream and credential. A denied
fallback is skipped, never answered: the failed attempt's answer stands when none is left."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from tollgate.call import Call, Route, Target
from tollgate.formats.exact import Unreadable
from tollgate.formats.json_codec import encode_json, read_request_json
from tollgate.formats.raw_headers import header_index, with_header
from tollgate.governance.limits import Reserved
from tollgate.governance.overrides import fallback_route, fitted_for, translation_for
from tollgate.governance.policy import Decision
from tollgate.governance.rollup import roll_up
from tollgate.proxy.flows import call_of, provider_of
from tollgate.proxy.state import Shared

logger = logging.getLogger(__name__)

# The headers of the failed attempt's request a fallback written anew keeps: its trace context.
_CARRIED = (b"traceparent", b"tracestate")


@dataclass(slots=True)
class _Before:
    """What a fallback changes of a call, kept to be put back when it is skipped."""

    route: Route
    usage_asked: bool
    fallback_of: tuple[str, str | None] | None
    usage_counters: tuple[tuple[str, str, str, int, int, str], ...]
    data: http.RequestData | None  # the request as the failed attempt sent it, when rewritten

    @classmethod
    def of(cls, call: Call) -> _Before:
        r = call.route
        route = Route(r.requested, r.target, r.upstream, r.translated, r.upstream_classification)
        return cls(route, call.request.usage_asked, call.failover.fallback_of, call.ledger.usage_counters, None)

    def restore(self, flow: http.HTTPFlow, call: Call) -> None:
        call.route, call.request.usage_asked = self.route, self.usage_asked
        call.failover.fallback_of, call.ledger.usage_counters = self.fallback_of, self.usage_counters
        call.request.body, call.request.client_body, call.request.headers = None, None, {}
        if self.data is not None:
            flow.request.data = self.data


class Fallback:
    def __init__(
        self,
        shared: Shared,
        apply_credential: Callable[[http.HTTPFlow, Call], bool],
        settle: Callable[[http.HTTPFlow, Call], None],
        reserve: Callable[[http.HTTPFlow, Call], Awaitable[Reserved | bool | None]],
        release: Callable[[Reserved | None], None],
        translate: Callable[[http.HTTPFlow, Call], tuple[str, str, str | None] | None],
        route: Callable[[http.HTTPFlow, Call], None],
        prepare: Callable[[http.HTTPFlow, Call], None],
    ) -> None:
        self.shared = shared
        self._apply_credential = apply_credential  # `Credential.fall_back`
        # `Ledger.settle_attempt`, `Ledger.reserve_again`, `Ledger.release`
        self._settle, self._reserve, self._release = settle, reserve, release
        # For a fallback to another provider: `Translate.rewrite`, `Route.handle`, `AskForUsage.handle`.
        self._translate, self._route, self._prepare = translate, route, prepare

    def attempt_failed(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """After `Credential.retry`, before `UpstreamWatch.go_again`: a failed target with no retry
        left (none configured, the last made, or none that can be made)."""
        call = call_of(flow)
        if call is None or not call.failover.falling_back:
            return None
        call.failover.falling_back = False
        return None if call.failover.retrying else self._next(flow, call)

    def forget(self, flow: http.HTTPFlow) -> None:
        """At the answer's headers or the call's error: no fallback is left to write, and the
        request the client sent (a prompt) is let go."""
        call = call_of(flow)
        if call is not None:
            call.failover.client_request = None

    async def _next(self, flow: http.HTTPFlow, call: Call) -> None:
        self._settle(flow, call)  # the failed attempt's reservation: kept if it went upstream
        failover = call.failover
        while failover.fallbacks:
            (provider, model), failover.fallbacks = failover.fallbacks[0], failover.fallbacks[1:]
            before = _Before.of(call)
            failover.fallback_of = (call.route.target.provider, call.target_model)
            if self._retarget(flow, call, provider, model, before):
                # Its own reservation first: the policy sees its counters.
                reserved = await self._reserve(flow, call)
                if reserved is not False:
                    assert reserved is not True
                    if await self._allowed(call) and self._apply_credential(flow, call):
                        call.ledger.reserved = reserved
                        assert failover.attempts is not None
                        failover.target_attempts_from = len(failover.attempts)
                        failover.retrying = True
                        call.request.body, call.request.client_body, call.request.headers = None, None, {}
                        return
                    self._release(reserved)
            before.restore(flow, call)

    def _retarget(self, flow: http.HTTPFlow, call: Call, provider: str, model: str, before: _Before) -> bool:
        """The request made to call the fallback: False where it cannot be."""
        route = call.route
        if provider == route.target.provider and not route.rerouted:
            route.target = Target(provider, model)
            return self._call_model(flow, call, model)
        sent = call.failover.client_request
        if sent is None:
            return False
        body = _json_object(sent.content)
        if body is None:
            return False
        # From here on the call is its client's as it came: the provider it called, its own format.
        request = flow.request
        before.data = request.copy().data  # the failed attempt's request, to go back to
        carried = [f for f in request.headers.fields if f[0].lower() in _CARRIED]
        data = request.data
        data.scheme, data.host, data.port = sent.scheme.encode(), sent.host, sent.port
        data.path = sent.path.encode("utf-8", "surrogateescape")
        request.headers.fields = sent.fields
        call.request.body_sha256 = None
        call.route = route = Route.as_called(route.requested.provider, route.requested.model)
        call.request.usage_asked = False
        call.request.body, call.request.headers = body, header_index(sent.fields)
        if call.failover.rolled_up is not None:  # the summary the first target's request had
            roll_up(body, *call.failover.rolled_up)
        way = fallback_route(call, provider, model)
        if way is None:
            logger.info(f"Tollgate: fallback to {provider} {model} skipped: only a chat call goes to another provider")
            return False
        how, path = way
        if how == "native":
            route.translated = translation_for(call, request.query.get("alt"))
        route.target = Target(provider, model)
        if how == "native":
            refusal = self._translate(flow, call)
            if refusal is not None:
                logger.info(f"Tollgate: fallback to {provider} {model} skipped: {refusal[1]}")
                return False
        else:
            if path is not None:
                request.path = path
            if how == "own":  # the client's body to another provider's API that speaks its format
                fitted_for(call.registry[provider], call.classification.endpoint, body)
            if not self._call_model(flow, call, model, body):
                return False
        for name, value in carried:
            request.headers.fields = with_header(request.headers.fields, name.lower(), value)
        self._route(flow, call)
        self._prepare(flow, call)
        return True

    async def _allowed(self, call: Call) -> bool:
        policy = call.loaded.policy
        if policy is None:
            return True
        decision = policy.decide_call_in_worker(call)
        if type(decision) is not Decision:
            decision = await decision  # type: ignore[misc]
        if not decision.allowed:
            logger.info(
                f"Tollgate: fallback to {call.route.target.provider} {call.route.target.model} skipped,"
                " the policy denied it: " + "; ".join(decision.deny_reasons)
            )
        return decision.allowed

    @staticmethod
    def _call_model(flow: http.HTTPFlow, call: Call, model: str, body: dict[str, Any] | None = None) -> bool:
        """The request calling `model`: its path, else its body's model field (`body`, else read
        again: the call's parsed body was let go once it was decided). False where neither names it."""
        provider = provider_of(call)
        request = flow.request
        path = provider.path_with_model(request.path, model)
        if path is not None:
            request.path = path
            if body is not None:  # the request written anew: its body too
                _write(request, body)
            return True
        field = provider.model_field(call.classification)
        rewritten = body is not None
        if body is None:
            body = _json_object(request.content or b"")
        if body is None or field is None:
            return False
        body[field] = provider.model_in_body(body.get(field), model)
        if rewritten:
            _write(request, body)
        else:
            request.content = encode_json(body)  # the setter keeps its encoding and Content-Length
        call.request.body_sha256 = None
        return True


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = read_request_json(content)
    except (Unreadable, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _write(request: http.Request, body: dict[str, Any]) -> None:
    content = encode_json(body)
    request.raw_content = content
    request.headers.fields = with_header(request.headers.fields, b"content-length", str(len(content)).encode())
