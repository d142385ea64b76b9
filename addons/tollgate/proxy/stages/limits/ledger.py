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

from tollgate.calls.call import Call
from tollgate.calls.settlement import estimate_use, used
from tollgate.formats.refusals import (
    BUDGET_EXCEEDED,
    LEDGER_UNAVAILABLE,
    LIMIT_UNENFORCEABLE,
    POLICY_DENIED,
    RATE_LIMITED,
)
from tollgate.governance.limits.limits import (
    NOTHING,
    Counter,
    Estimate,
    Reserved,
    charges,
    counters,
    deny_reason,
    refusal_message,
    retry_after,
    unenforceable,
    unenforceable_message,
    unenforceable_reason,
    usage_facts,
)
from tollgate.ledger.store import Charge, Reservation, Store, StoreError
from tollgate.proxy.flows import body_size, refuse
from tollgate.proxy.state import Shared

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
        estimate = estimate_use(call, body_size(flow, call), model)
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
