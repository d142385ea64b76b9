"""The ledger: a call that a limit applies to reserves what it may use on the limit's counters
before it goes (429 when one has no room), and settles them to what it used when it ends; every
call's usage is recorded for the report. The counters live in the store (`ledger/`): SQLite's in
this process's memory, written behind to the file; Redis's shared by every process that uses it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

from mitmproxy import http

from tollgate.call import Call
from tollgate.formats.refusals import (
    BUDGET_EXCEEDED,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    POLICY_DENIED,
    RATE_LIMITED,
)
from tollgate.formats.usage import Usage
from tollgate.governance.limits import (
    NOTHING,
    Counter,
    Estimate,
    Reserved,
    batch_output,
    charges,
    counters,
    deny_reason,
    estimate_tokens,
    generates,
    held_input_bound,
    refusal_message,
    retry_after,
    unenforceable,
    unenforceable_message,
    unenforceable_reason,
    usage_facts,
)
from tollgate.governance.max_output import max_output_tokens
from tollgate.governance.pricing import MIXED_MODALITY_ENDPOINTS, cost_nanousd
from tollgate.governance.settlement import attempt_used, spends_nothing, used
from tollgate.proxy.flows import call_of, refuse
from tollgate.proxy.state import Shared
from tollgate.records.ledger.store import Charge, Reservation, Store, StoreError

logger = logging.getLogger(__name__)

# The audit record's fields the ledger keeps of every call, for the usage report.
ROW_FIELDS = (
    "client", "groups", "provider", "requested_provider", "model", "endpoint", "status", "decision",
    "input_tokens", "output_tokens", "total_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost_usd",
)  # fmt: skip


class Ledger:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        limits = call.loaded.limits
        if not limits or call.classification.service:  # the provider's own service: no limit counts it
            return None
        model = call.target_model
        applying = limits.applying(call.route.target.provider, model, call.caller.client, call.caller.groups)
        if not applying:
            return None
        now = time.time()
        found = counters(applying, call.caller.client, call.caller.groups, now)
        if not found:  # limits per group, and a caller in none of their groups
            return None
        batch = call.classification.facts.batch
        if batch is not None and not batch.bounded and (counter := unenforceable(found)) is not None:
            endpoint = call.classification.endpoint or call.path
            call.verdict.deny_reasons = (unenforceable_reason(counter, endpoint),)
            refuse(flow, call, LIMIT_UNENFORCEABLE, unenforceable_message(counter, endpoint, batch))
            return None
        estimate = self._estimate(flow, call, model)
        if estimate.nanousd is None and any(c.metric == "usd" for c in found):
            # Spending that cannot be counted is not let go past a cap on it.
            unpriced = next(c for c in found if c.metric == "usd")
            call.verdict.deny_reasons = (
                f"limit {unpriced.label!r}: no price known for {call.route.target.provider}/{model}",
            )
            refuse(
                flow,
                call,
                POLICY_DENIED,
                f"Tollgate limit {unpriced.label!r} caps spending, and no price is known for"
                f" {call.route.target.provider} model {model!r}: add it under prices: in Tollgate's configuration.",
            )
            return None
        store = self.shared.ledger
        if store is None:
            return None
        wanted = charges(found, estimate)
        try:
            reservation = store.reserve_now(wanted)
        except StoreError as e:
            self._store_failed(flow, call, str(e))
            return None
        if reservation is None:  # asked over the network
            return self._reserve(flow, call, store, wanted, found, estimate, now)
        self._reserved(flow, call, store, reservation, found, estimate, now)
        return None

    def _estimate(self, flow: http.HTTPFlow, call: Call, model: str | None) -> Estimate:
        """What the call may use: its prompt (its body's size), and each answer's bound times the
        answers it asks for; a batch's, all its requests' together."""
        if spends_nothing(call):
            return Estimate(1, 0, 0)  # one request, priced or not
        classification = call.classification
        facts = classification.facts
        body_size = 0 if call.request.streamed_upload else len(flow.request.raw_content or b"")
        reserve_output = call.loaded.config.ledger.reserve_output_tokens
        batch = facts.batch
        if batch is not None:  # bounded: an unbounded one was refused, or no token or USD cap applies
            prompt = estimate_tokens(body_size, None, False, reserve_output)[0]
            answer = batch_output(batch, max_output_tokens(model), reserve_output) if batch.bounded else 0
            requests = batch.requests or 1
        else:
            prompt, answer = estimate_tokens(
                body_size,
                facts.max_tokens,
                generates(classification.endpoint, facts),
                reserve_output,
                facts.answers,
                None if facts.max_tokens is not None else max_output_tokens(model),
            )
            if facts.input_held:  # the provider adds what it holds to the input: up to the whole window
                window = call.loaded.prices.context_window(call.route.target.provider, model)
                prompt = held_input_bound(prompt, window, call.loaded.config.ledger.reserve_input_tokens)
            requests = 1
        rate = call.loaded.prices.rate(
            call.route.target.provider, model, call.caller.client, call.caller.groups, None, facts.price_context()
        )
        if rate is not None and classification.endpoint in MIXED_MODALITY_ENDPOINTS:
            rate = rate.highest()  # its tokens may be audio, priced above text
        nanousd = None if rate is None else cost_nanousd(rate, Usage(input_tokens=prompt, output_tokens=answer))
        return Estimate(requests, prompt + answer, nanousd, job=batch is not None)

    async def _reserve(
        self,
        flow: http.HTTPFlow,
        call: Call,
        store: Store,
        wanted: list[Charge],
        found: list[Counter],
        estimate: Estimate,
        now: float,
    ) -> None:
        try:
            reservation = await store.reserve(wanted)
        except StoreError as e:
            self._store_failed(flow, call, str(e))
            return
        self._reserved(flow, call, store, reservation, found, estimate, now)

    def _reserved(
        self,
        flow: http.HTTPFlow,
        call: Call,
        store: Store,
        reservation: Reservation,
        found: list[Counter],
        estimate: Estimate,
        now: float,
    ) -> None:
        """The call goes, its reservation kept, or is refused with the limit that had no room."""
        if not reservation.granted:
            assert reservation.refused is not None
            full = found[reservation.refused]
            needed = full.charged(estimate)
            reason = RATE_LIMITED if full.window == "minute" else BUDGET_EXCEEDED
            call.verdict.deny_reasons = (deny_reason(full),)
            refuse(
                flow,
                call,
                reason,
                refusal_message(full, reservation.values[reservation.refused], needed, now),
                {"retry-after": str(retry_after(full, now))},
            )
            return
        call.ledger.reserved = Reserved(store, tuple(found), estimate)
        call.ledger.usage_counters = usage_facts(found, reservation.values)

    def retry(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """In `attempt_failed`, between `Credential.again` and `Credential.retry`: a retry reserves
        anew on the limits that apply, once the failed attempt is settled (`settle_attempt`);
        without room it is not made (a fallback may be next)."""
        call = call_of(flow)
        if call is None or not call.failover.retrying or not call.loaded.limits:
            return None
        return self._reserve_retry(flow, call)

    async def _reserve_retry(self, flow: http.HTTPFlow, call: Call) -> None:
        self.settle_attempt(flow, call)
        reserved = await self.reserve_again(flow, call)
        if reserved is False:
            call.failover.retrying = False
            logger.info(f"Tollgate: retry of a {call.route.target.provider} call not made: a limit has no room for it")
            return
        assert reserved is not True
        call.ledger.reserved = reserved

    def fallback(self, flow: http.HTTPFlow) -> None:
        """In `attempt_failed`, after `Credential.retry`, before `Fallback`: a failed target with no
        retry left, whose fallbacks go next, has its attempt settled (`settle_attempt`). Each
        fallback then reserves anew as a call does (`handle`, in the pipeline's `failover`)."""
        call = call_of(flow)
        if call is not None and call.failover.falling_back and not call.failover.retrying:
            self.settle_attempt(flow, call)

    def settle_attempt(self, flow: http.HTTPFlow, call: Call) -> None:
        """A failed attempt's reservation, as its call goes again: kept once its request went
        upstream (one request where the upstream answered, all of it where it did not), given back
        where it never left (`limits.attempt_used`)."""
        reserved, call.ledger.reserved = call.ledger.reserved, None
        if reserved is None:
            return
        status = flow.response.status_code if flow.response is not None else None
        spent = attempt_used(call, reserved.estimate, status)
        call.ledger.summary_counted = call.rolled_up is not None
        reserved.settle(spent)

    async def reserve_again(self, flow: http.HTTPFlow, call: Call) -> Reserved | bool | None:
        """A retry's own reservation, on the limits its model matches: the new one (None: no limit
        applies), or False when it is not to be made (a limit without room, a USD cap without a
        price, a job it cannot bound, the store failed under `on_store_error: deny`). Nothing is
        refused: the failed attempt's answer stands if nothing goes again."""
        limits = call.loaded.limits
        store = self.shared.ledger
        if not limits or call.classification.service or store is None:
            return None
        model = call.target_model
        who = call.caller
        found = counters(
            limits.applying(call.route.target.provider, model, who.client, who.groups),
            who.client,
            who.groups,
            time.time(),
        )
        if not found:
            return None
        batch = call.classification.facts.batch
        if batch is not None and not batch.bounded and unenforceable(found) is not None:
            return False
        estimate = self._estimate(flow, call, model)
        if estimate.nanousd is None and any(c.metric == "usd" for c in found):
            return False
        wanted = charges(found, estimate)
        try:
            reservation = store.reserve_now(wanted)
            if reservation is None:
                reservation = await store.reserve(wanted)
        except StoreError as e:
            call.ledger.error = str(e)
            logger.error(f"Tollgate: ledger store failed on a retry: {e}")
            return None if call.loaded.config.ledger.on_store_error == "allow" else False
        if not reservation.granted:
            return False
        call.ledger.usage_counters = usage_facts(found, reservation.values)
        return Reserved(store, tuple(found), estimate)

    def _store_failed(self, flow: http.HTTPFlow, call: Call, error: str) -> None:
        call.ledger.error = error
        if call.loaded.config.ledger.on_store_error == "allow":
            logger.error(f"Tollgate: LEDGER STORE FAILED, call let through unlimited (on_store_error: allow): {error}")
            return
        logger.error(f"Tollgate: ledger store failed, call refused (on_store_error: deny): {error}")
        call.answer.error = "ledger unavailable"
        refuse(flow, call, LEDGER_UNAVAILABLE, "Tollgate cannot reach its ledger, so it serves no limited calls.")

    def done(self) -> Awaitable[None] | None:
        """After the audit's `done`, which ends the calls still live: what the store holds is written."""
        store, self.shared.ledger = self.shared.ledger, None
        return None if store is None else store.aclose()

    def settle(self, call: Call, record: dict[str, Any]) -> None:
        """At the call's end, with its audit record: its reservation settled to what it used, its
        usage recorded. The store that got the settlement is kept (`settled_in`): the answer's end
        waits for it to be written (`StreamTap.response`, `flushed`)."""
        self.settle_reservation(call, record)
        store = self.shared.ledger
        if store is not None:
            row = {name: record[name] for name in ROW_FIELDS}
            row["ts"] = call.started
            store.record(row)

    def settle_reservation(self, call: Call, record: dict[str, Any]) -> None:
        """The call's reservation settled to what it used (its record's tokens, its cost), no row
        recorded: a Realtime response's usage is in its session's row."""
        store = self.shared.ledger
        reserved = call.ledger.reserved
        if reserved is not None:
            call.ledger.reserved = None
            spent = call.ledger.spent = used(call, reserved.estimate, record)
            if store is not None and store is not reserved.store:
                # A reload replaced the store while the call ran: the one closing would lose the
                # settlement, and the new one never held the reservation. It counts what was used.
                reserved = Reserved(store, reserved.counters, NOTHING)
            if reserved.settle(spent):
                call.ledger.settled_in = reserved.store

    def charge_unreserved(self, call: Call) -> None:
        """A call refused once it had begun (a Realtime response the server began on its own, with
        no room left): what it uses until it stops is charged when it ends, with nothing reserved."""
        limits, store = call.loaded.limits, self.shared.ledger
        if not limits or store is None or call.ledger.reserved is not None:
            return
        who = call.caller
        applying = limits.applying(call.route.target.provider, call.target_model, who.client, who.groups)
        found = counters(applying, who.client, who.groups, time.time())
        if found:
            call.ledger.reserved = Reserved(store, tuple(found), NOTHING)
