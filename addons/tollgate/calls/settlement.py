"""What a call may use, as it reserves on its limits' counters (`estimate_use`, and a retry's
reservation, `reserve_again`), and what it used, as its counters settle when it ends (or as a
failed attempt's settle when it goes again, `settle_attempt`): the tokens, requests and cost a
limit counts, from its request, its answer and its record. Plain logic, no mitmproxy."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from tollgate.formats.usage import Usage
from tollgate.governance.limits.limits import (
    Estimate,
    Reserved,
    batch_output,
    charges,
    counters,
    estimate_tokens,
    generates,
    held_input_bound,
    unenforceable,
    usage_facts,
)
from tollgate.governance.limits.max_output import max_output_tokens
from tollgate.governance.limits.pricing import COUNTING_ENDPOINTS, MIXED_MODALITY_ENDPOINTS, cost_nanousd
from tollgate.ledger.store import Store, StoreError

if TYPE_CHECKING:
    from tollgate.calls.call import Call

logger = logging.getLogger(__name__)


def spends_nothing(call: Call) -> bool:
    """Whether a call generates nothing, and so costs nothing whatever its model: a request other
    than a POST (which fetches what was made before), a count of a prompt's tokens, or a call to
    one of its provider's free endpoints (a file's upload)."""
    endpoint = call.classification.endpoint
    return (
        call.fetches
        or endpoint in COUNTING_ENDPOINTS
        or endpoint in call.registry[call.route.target.provider].cost.free_endpoints
    )


def used(call: Call, reserved: Estimate, record: dict[str, Any]) -> Estimate:
    """What a call used, as its counters are settled (`_used_upstream`), and the summary its
    conversation's roll-up asked for (`rollup:`), which its caller spent too."""
    return with_summary(call, _used_upstream(call, reserved, record))


def with_summary(call: Call, spent: Estimate) -> Estimate:
    """`spent` and the tokens and cost of the summary the call's roll-up asked for, unless a failed
    attempt's settlement counted them already (`LedgerState.summary_counted`)."""
    rolled = call.rolled_up
    if rolled is None or rolled.usage is None or call.ledger.summary_counted:
        return spent
    summary = (rolled.usage.input_tokens or 0) + (rolled.usage.output_tokens or 0)
    return spent._replace(tokens=spent.tokens + summary, nanousd=(spent.nanousd or 0) + (rolled.cost_nanousd or 0))


def _used_upstream(call: Call, reserved: Estimate, record: dict[str, Any]) -> Estimate:
    """What a call used upstream: nothing when its request never went there (refused, the upstream
    unreachable, or a retry reserved and not made: `went_upstream`); one request when it generates
    nothing (a fetch, a count of tokens) or the upstream refused it; a batch or job, all it
    reserved (Tollgate never sees what it used); its usage as read; and when none was read, what it
    reserved: the provider may bill work it started whatever became of the answer (a client that
    left, a timeout, a stream broken off before its usage)."""
    if not went_upstream(call):
        return Estimate(0, 0, 0)
    if spends_nothing(call):
        return Estimate(1, 0, 0)
    refused_upstream = (
        not call.answer.answered_by_tollgate and call.answer.status is not None and call.answer.status >= 400
    )
    if reserved.job:
        return Estimate(1, 0, 0, job=True) if refused_upstream else reserved
    tokens = token_count(record)
    if tokens is None:
        return Estimate(1, 0, 0) if refused_upstream else reserved
    return Estimate(1, tokens, call.cost_nanousd() or 0)


def attempt_used(call: Call, reserved: Estimate, status: int | None) -> Estimate:
    """What a failed attempt of a call that goes again used, settled as a call ending with it
    would be: nothing when its request never went upstream (its connection failed); one request
    when the upstream answered it (with an error); else, a request sent and not answered (a
    timeout), all it reserved: the provider may bill work it started. The summary of its roll-up
    counts with the first attempt settled: the call may end with no other reservation."""
    return with_summary(call, _attempt_used_upstream(call, reserved, status))


def _attempt_used_upstream(call: Call, reserved: Estimate, status: int | None) -> Estimate:
    if not went_upstream(call):
        return Estimate(0, 0, 0)
    if spends_nothing(call):
        return Estimate(1, 0, 0)
    if status is not None:
        return Estimate(1, 0, 0, job=reserved.job)
    return reserved


def went_upstream(call: Call) -> bool:
    """Whether the request the call's reservation is for went upstream: its answer says so, unless
    the reservation is a retry's that has not gone (`LedgerState.awaits_retry`): the answer is
    then the failed attempt's, settled already (`settle_attempt`)."""
    return call.answer.request_sent and not call.ledger.awaits_retry


def token_count(record: dict[str, Any]) -> int | None:
    """The tokens a limit counts: prompt and answer; the total where only it is known."""
    inputs, outputs = record.get("input_tokens"), record.get("output_tokens")
    if inputs is None and outputs is None:
        return record.get("total_tokens")
    return (inputs or 0) + (outputs or 0)


def estimate_use(call: Call, body_size: int, model: str | None) -> Estimate:
    """What the call may use: its prompt (its body's size, `body_size` bytes), and each answer's
    bound times the answers it asks for; a batch's, all its requests' together."""
    if spends_nothing(call):
        return Estimate(1, 0, 0)  # one request, priced or not
    classification = call.classification
    facts = classification.facts
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


def settle_attempt(call: Call, status: int | None) -> None:
    """A failed attempt's reservation, as its call goes again: kept once its request went
    upstream (one request where the upstream answered, all of it where it did not), given back
    where it never left (`attempt_used`); a retry's not made, where a fallback goes instead, given
    back whole (`went_upstream`)."""
    ledger = call.ledger
    reserved, ledger.reserved = ledger.reserved, None
    if reserved is not None:
        spent = attempt_used(call, reserved.estimate, status)
        ledger.summary_counted = call.rolled_up is not None
        reserved.settle(spent)
    ledger.awaits_retry = False  # the next reservation is the next attempt's


async def reserve_again(call: Call, store: Store | None, body_size: int) -> Reserved | bool | None:
    """A retry's own reservation, on the limits its model matches: the new one (None: no limit
    applies), or False when it is not to be made (a limit without room, a USD cap without a
    price, a job it cannot bound, the store failed under `on_store_error: deny`). Nothing is
    refused: the failed attempt's answer stands if nothing goes again."""
    limits = call.loaded.limits
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
    estimate = estimate_use(call, body_size, model)
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
