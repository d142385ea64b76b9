"""Fallback routes: a call whose target failed (after its retries) goes to the next of its override
rule's `fallbacks` the policy allows (`input.fallback_of` names the target it falls back from):
another model of the same provider, the request as it was sent with its model changed; or another
provider, the request written anew from what the client sent (`call.failover.client_request`), translated
where the formats differ, with that provider's upstream and credential. A denied fallback is
skipped, never answered: the failed attempt's answer stands when none is left.

Each fallback is an attempt: a call that goes through the pipeline's `failover` steps (`retarget`
first, then translated, routed, reserved, decided and given its credential as a call is), on a flow
made for it that holds the call's request. The first step that refuses it skips it: the call is put
back as it was, and the next fallback is tried."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mitmproxy import http

from tollgate.calls.call import Call, Route, Target
from tollgate.calls.routes import fallback_route, translation_for
from tollgate.calls.settlement import settle_attempt
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.bodies.json_codec import encode_json, read_request_json
from tollgate.formats.bodies.raw_headers import header_index, with_header
from tollgate.formats.refusals import BAD_REQUEST
from tollgate.governance.limits.limits import Reserved
from tollgate.governance.limits.rollup import roll_up
from tollgate.governance.routing.overrides import fitted_for
from tollgate.proxy.flows import CALL, call_of, provider_of, refuse
from tollgate.proxy.state import Shared

if TYPE_CHECKING:
    from tollgate.proxy.runner import CallSteps

logger = logging.getLogger(__name__)

# The headers of the failed attempt's request a fallback written anew keeps: its trace context.
_CARRIED = (b"traceparent", b"tracestate")
# Where an attempt's flow holds its `_Attempt`: the target it calls and the call as it was.
_ATTEMPT = "tollgate.fallback_attempt"


@dataclass(slots=True)
class _Before:
    """What a fallback's steps change of a call, kept to be put back when it is skipped."""

    route: Route
    usage_asked: bool
    fallback_of: tuple[str, str | None] | None
    usage_counters: tuple[tuple[str, str, str, int, int, str], ...]
    reserved: Reserved | None
    # What a refusal of the attempt writes on the call: its answer, its decision.
    answered_by_tollgate: bool
    refused: str | None
    error: str | None
    decision: Literal["allow", "deny"]
    deny_reasons: tuple[str, ...]
    carried: list[tuple[bytes, bytes]]  # the failed attempt's trace context
    data: http.RequestData | None = None  # the request as the failed attempt sent it, when rewritten

    @classmethod
    def of(cls, call: Call, request: http.Request) -> _Before:
        r, answer = call.route, call.answer
        route = Route(r.requested, r.target, r.upstream, r.translated, r.upstream_classification)
        carried = [f for f in request.headers.fields if f[0].lower() in _CARRIED]
        verdict = call.verdict
        return cls(
            route, call.request.usage_asked, call.failover.fallback_of, call.ledger.usage_counters,
            call.ledger.reserved, answer.answered_by_tollgate, answer.refused, answer.error, verdict.decision,
            verdict.deny_reasons, carried,
        )  # fmt: skip

    def restore(self, flow: http.HTTPFlow, call: Call) -> None:
        call.route, call.request.usage_asked = self.route, self.usage_asked
        call.failover.fallback_of, call.ledger.usage_counters = self.fallback_of, self.usage_counters
        call.request.body, call.request.client_body, call.request.headers = None, None, {}
        answer = call.answer
        answer.answered_by_tollgate, answer.refused, answer.error = self.answered_by_tollgate, self.refused, self.error
        call.verdict.decision, call.verdict.deny_reasons = self.decision, self.deny_reasons
        skipped, call.ledger.reserved = call.ledger.reserved, self.reserved
        if skipped is not None and skipped is not self.reserved:
            skipped.give_back()
        if self.data is not None:
            flow.request.data = self.data


@dataclass(slots=True)
class _Attempt:
    target: tuple[str, str]  # (provider, model)
    before: _Before


class Fallbacks:
    def __init__(self, shared: Shared, steps: CallSteps[Call]) -> None:
        self.shared = shared
        # What each fallback goes through (the pipeline's `failover`): retargeted, translated,
        # routed, prepared, reserved, decided, given its credential.
        self._steps = steps

    def forget(self, flow: http.HTTPFlow) -> None:
        """At the answer's headers or the call's error: no fallback is left to write, and the
        request the client sent (a prompt) is let go."""
        call = call_of(flow)
        if call is not None:
            call.failover.client_request = None

    async def next(self, flow: http.HTTPFlow, call: Call) -> bool:
        """A failed target with no retry left (`Attempts`): its fallbacks tried in turn, each
        through the pipeline's `failover` steps, until one goes (True) or none is left (False: the
        failed attempt's answer stands)."""
        failover = call.failover
        # The failed attempt's reservation, were it still held, would be replaced by the
        # fallback's: settled first, as a failed attempt's (`next_step` has settled it already).
        settle_attempt(call, flow.response.status_code if flow.response is not None else None)
        while failover.fallbacks:
            (provider, model), failover.fallbacks = failover.fallbacks[0], failover.fallbacks[1:]
            before = _Before.of(call, flow.request)
            failover.fallback_of = (call.route.target.provider, call.target_model)
            attempt = _attempt_flow(flow, call, _Attempt((provider, model), before))
            pending = self._steps.run(attempt, call)
            if pending is not None:
                await pending
            if attempt.response is None:
                call.request.body, call.request.client_body, call.request.headers = None, None, {}
                return True
            logger.info(f"Tollgate: fallback to {provider} {model} skipped: {_why(call)}")
            before.restore(flow, call)
        return False


def _attempt_flow(flow: http.HTTPFlow, call: Call, attempt: _Attempt) -> http.HTTPFlow:
    """The flow a fallback's steps run on: the call's own request (what they write is what goes),
    and a response of its own (a refusal skips the fallback; the failed attempt's answer stands)."""
    made = http.HTTPFlow(flow.client_conn, flow.server_conn)
    made.request = flow.request
    made.metadata[CALL] = call
    made.metadata[_ATTEMPT] = attempt
    return made


def _why(call: Call) -> str:
    """Why an attempt's steps refused it: its reasons, else its error or reason."""
    reasons = call.verdict.deny_reasons
    if reasons and reasons != (call.answer.refused,):
        return "; ".join(reasons)
    return call.answer.error or call.answer.refused or "refused"


def retarget(flow: http.HTTPFlow, call: Call) -> None:
    """A call step of a failover attempt, first: the request that calls its fallback. Another model
    of the same provider: the request as sent, its model changed. Another provider: the client's
    request written anew (its roll-up applied again), for the target's API where it speaks the
    client's format (`Translate` writes it in the target's where not). Refused where it cannot be."""
    attempt: _Attempt = flow.metadata[_ATTEMPT]
    why = _retargeted(flow, call, *attempt.target, attempt.before)
    if why is not None:
        call.verdict.deny_reasons = (why,)
        refuse(flow, call, BAD_REQUEST, f"Tollgate: {why}.")


def _retargeted(flow: http.HTTPFlow, call: Call, provider: str, model: str, before: _Before) -> str | None:
    """The request made to call the fallback: None, else why it cannot be."""
    route = call.route
    if provider == route.target.provider and not route.rerouted:
        route.target = Target(provider, model)
        return None if _call_model(flow, call, model) else "its request names no model to change"
    sent = call.failover.client_request
    if sent is None:
        return "the client's request was not kept"
    body = _json_object(sent.content)
    if body is None:
        return "the client's request is no JSON object"
    # From here on the call is its client's as it came: the provider it called, its own format.
    request = flow.request
    before.data = request.copy().data  # the failed attempt's request, to go back to
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
        return "only a chat call goes to another provider"
    how, path = way
    if how == "native":
        route.translated = translation_for(call, request.query.get("alt"))
    route.target = Target(provider, model)
    if how == "native":
        return None
    if path is not None:
        request.path = path
    if how == "own":  # the client's body to another provider's API that speaks its format
        fitted_for(call.registry[provider], call.classification.endpoint, body)
    return None if _call_model(flow, call, model, body) else "its request names no model to change"


def keep_trace_context(flow: http.HTTPFlow, call: Call) -> None:
    """A call step of a failover attempt, after `Translate`: a request written anew goes with the
    trace context (`traceparent`, `tracestate`) its failed attempt went with."""
    before = flow.metadata[_ATTEMPT].before
    if before.data is None:  # the same request, its model changed
        return
    request = flow.request
    for name, value in before.carried:
        request.headers.fields = with_header(request.headers.fields, name.lower(), value)


def _call_model(flow: http.HTTPFlow, call: Call, model: str, body: dict[str, Any] | None = None) -> bool:
    """The request calling `model`: its path, else its body's model field (`body`, else read
    again: the call's parsed body was let go once it was decided). False where neither names it."""
    provider = provider_of(call)
    request = flow.request
    path = provider.models.path_with_model(request.path, model)
    if path is not None:
        request.path = path
        if body is not None:  # the request written anew: its body too
            _write(request, body)
        return True
    field = provider.models.field(call.classification)
    rewritten = body is not None
    if body is None:
        body = _json_object(request.content or b"")
    if body is None or field is None:
        return False
    body[field] = provider.models.in_body(body.get(field), model)
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
