"""Conversation roll-up (`rollup:`): a chat call whose conversation is past a rule's size goes
upstream with its earlier turns summarized into its system prompt. The summary is asked of the
rule's summarizer (any provider, in its own format, with Tollgate's credential for it) off the
event loop, and kept for the conversation's next call. A caller opts out with `X-Tollgate-Rollup: off`.
A summary that cannot be had leaves the call as it came: a roll-up saves tokens, it is not a gate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx, http

from tollgate.calls.call import Call, RolledUp
from tollgate.credentials.base import UpstreamCredential
from tollgate.credentials.errors import CredentialUnavailable
from tollgate.formats import OPENAI_CHAT
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.registry import wire_format
from tollgate.formats.translation import chat_format
from tollgate.formats.usage import Usage
from tollgate.governance.limits.rollup import (
    Plan,
    RollupRule,
    Size,
    Summaries,
    plan,
    roll_up,
    summary_of,
    summary_request,
)
from tollgate.governance.matching import matches
from tollgate.governance.routing.upstream import (
    Outgoing,
    Unreachable,
    credential_for,
    json_request,
    rest_refused_key,
    send,
)
from tollgate.proxy.flows import write_body
from tollgate.proxy.state import Shared

if TYPE_CHECKING:
    from tollgate.proxy.runner import CallSteps

logger = logging.getLogger(__name__)

OPT_OUT = b"x-tollgate-rollup"


class SummaryUnavailable(Exception):
    """The summarizer could not be asked, or gave no summary (the message names no content);
    `rest`: the pooled key an answer with an error came for, its status and its Retry-After."""

    def __init__(self, message: str, rest: tuple[str, int, str | None] | None = None) -> None:
        super().__init__(message)
        self.rest = rest


def conversation(call: Call) -> tuple[str | None, dict[str, Any] | None]:
    """The conversation a roll-up cuts, as its client sent it, and the chat format of its turns:
    the call's body, as its wire format keeps it (`WireFormat.conversation`: Claude's bodies on
    Bedrock and Vertex AI keep their turns as Anthropic's do); where a route translated it, the
    client's own body (`Call.request.client_body`)."""
    if call.route.translated is not None:
        return call.route.translated.source, call.request.client_body
    return wire_format(call.classification.wire_format).conversation(call.classification), call.request.body


class RollUp:
    def __init__(self, shared: Shared, translated_anew: CallSteps[Call]) -> None:
        self.shared = shared
        # What a routed call's rolled-up conversation goes through (the pipeline's `rolled_up`):
        # written in its target's format anew.
        self._translated_anew = translated_anew
        self._summaries: dict[RollupRule, Summaries] = {}  # a rule a reload keeps keeps its summaries

    def handle(self, flow: http.HTTPFlow, call: Call) -> Any:
        opt_out = call.request.headers.get(OPT_OUT)
        if opt_out is not None:
            flow.request.headers.fields = tuple(f for f in flow.request.headers.fields if f[0].lower() != OPT_OUT)
        rules = call.loaded.config.rollup
        off = opt_out is not None and opt_out.strip().lower() == b"off"
        if not rules or call.request.body is None or call.fetches or off:
            return None
        if call.caller.subscription is not None:
            return None  # a plan's call goes as its client made it (the vendor checks what its agent sends)
        if call.caller.auth == "anonymous" and call.request.headers.get(b"authorization", b"").startswith(b"AWS4-"):
            return None  # signed by the caller, and going upstream as signed: its body stays as it is
        fmt, body = conversation(call)
        model, called = (
            call.target_model,
            call.route.requested.provider,
        )  # rules match the provider called, as overrides do
        rule = next((r for r in rules if matches(r.match, called, model, call.caller.client, call.caller.groups)), None)
        if fmt is None or body is None or rule is None:
            return None
        summaries = self._summaries.get(rule)
        if summaries is None:  # a rule new to this configuration: those a reload dropped let go
            self._summaries = {r: s for r, s in self._summaries.items() if r in rules}
            summaries = self._summaries[rule] = Summaries(rule.cache_entries)
        summarizer = f"{rule.summarizer.provider}/{rule.summarizer.model}"
        size = Size(rule.above_messages, rule.above_tokens, rule.keep_last)
        rolled = plan(fmt, body, size, summarizer, summaries)
        if rolled is None:
            return None
        if rolled.summary is not None:
            kept = RolledUp(rolled.count, summarizer, cached=True)
            return self._apply(flow, call, body, rolled, rolled.summary, kept)
        return self._summarize(flow, call, body, rule, rolled, summaries)

    async def _summarize(
        self,
        flow: http.HTTPFlow,
        call: Call,
        body: dict[str, Any],
        rule: RollupRule,
        rolled: Plan,
        summaries: Summaries,
    ) -> None:
        verify = False if ctx.options.ssl_insecure else ctx.options.ssl_verify_upstream_trusted_ca or True
        summarizer = f"{rule.summarizer.provider}/{rule.summarizer.model}"
        try:
            request = summarizer_call(call, rule, rolled)
            summary, usage = await asyncio.to_thread(ask, request, verify)
        except Exception as e:  # the call goes as it came; another exception's message may quote it
            why = str(e) if isinstance(e, SummaryUnavailable) else f"asking {summarizer} failed: {type(e).__name__}"
            logger.warning("Tollgate: a conversation was not rolled up: %s", why)
            if isinstance(e, SummaryUnavailable) and e.rest is not None:
                # A pooled key the summarizer's provider refused rests, as after a call's.
                key, status, retry_after = e.rest
                pool = call.loaded.pools[rule.summarizer.provider]
                rest_refused_key(pool, key, status, retry_after, self.shared.ledger)
            return
        summaries.put(rolled.key, summary)
        cost = call.loaded.prices.cost(
            rule.summarizer.provider,
            rule.summarizer.model,
            call.caller.client,
            call.caller.groups,
            None,
            usage,
            time.time(),
        )
        rewritten = self._apply(flow, call, body, rolled, summary, RolledUp(rolled.count, summarizer, usage, cost))
        if rewritten is not None:
            await rewritten

    def _apply(
        self, flow: http.HTTPFlow, call: Call, body: dict[str, Any], rolled: Plan, summary: str, done: RolledUp
    ) -> Awaitable[None] | None:
        """The conversation rolled up into the request: the body as it is, or a routed call's
        client's body, then translated anew (`translated_anew`, which undoes the roll-up where it
        cannot be). A fallback written anew from the client's request rolls it up the same way
        (`Failover.rolled_up`)."""
        roll_up(body, rolled, summary)
        call.rolled_up = done
        if call.failover.client_request is not None:
            call.failover.rolled_up = (replace(rolled, earlier=None, turns=()), summary)
        if call.route.translated is None:
            write_body(flow.request, call)
            return None
        return self._translated_anew.run(flow, call)


@dataclass(slots=True)
class SummarizerCall:
    """One request to the summarizer, made on the event loop (its key taken from the pool there),
    sent in a thread (`ask`): its credential may wait for a token, its answer for the model."""

    name: str  # provider/model
    format: str  # the wire format it is written in, and its answer read in
    request: Outgoing
    credential: UpstreamCredential
    timeout: float
    billed: Callable[[Usage], Usage]  # its usage as read, counted as its provider bills it


def summarizer_call(call: Call, rule: RollupRule, rolled: Plan) -> SummarizerCall:
    """The summarizer's request for the rolled-up turns: its provider's own chat API, in its format,
    with Tollgate's credential for it (its key, token or signature)."""
    loaded, name, model = call.loaded, rule.summarizer.provider, rule.summarizer.model
    provider, settings = loaded.registry[name], loaded.providers[name]
    leg = provider.native_chat(model, False, OPENAI_CHAT)
    body, extra = chat_format(leg.format).write_request(summary_request(model, rolled))
    provider.fit_chat_body(body)
    classification = provider.classify("POST", leg.path, body, "")
    credential = credential_for(loaded, provider, classification)
    if credential is None:
        raise SummaryUnavailable(f"Tollgate has no {name} credential for the summarizer (providers.{name})")
    request = json_request(provider, settings, leg.path, encode_json(body), extra)
    billed = partial(provider.cost.billed_usage, classification)
    return SummarizerCall(f"{name}/{model}", leg.format, request, credential, settings.timeout, billed)


def ask(summarizer: SummarizerCall, verify: bool | str) -> tuple[str, Usage]:
    """The summary, and the summarizer's usage; in a thread. SummaryUnavailable says why not, and
    with which pooled key, status and Retry-After the provider answered (`rest_refused_key`)."""
    try:
        request = summarizer.request.with_credential(summarizer.credential)
    except CredentialUnavailable as e:
        raise SummaryUnavailable(str(e)) from None
    try:
        answer = send(request, summarizer.timeout, verify)
    except Unreachable as e:
        raise SummaryUnavailable(f"the summarizer ({summarizer.name}) could not be reached: {e}") from None
    if answer.status != 200:
        key = summarizer.credential.pooled_key
        rest = None if key is None else (key, answer.status, answer.headers.get("retry-after"))
        raise SummaryUnavailable(f"the summarizer ({summarizer.name}) answered HTTP {answer.status}", rest)
    data = parse_json(answer.body)
    try:
        if data is None:
            raise ValueError("not a JSON object")
        response = chat_format(summarizer.format).read_response(data)
        summary = summary_of(response)
    except Exception as e:  # never its message: it may quote the answer
        raise SummaryUnavailable(f"the summarizer's answer could not be read: {type(e).__name__}") from None
    return summary, summarizer.billed(response.usage)
