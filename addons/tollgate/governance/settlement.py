"""What a call used, as its counters settle when it ends (or as a failed attempt's settle when it
goes again): the tokens, requests and cost a limit counts, from its answer and record. Plain
logic, no mitmproxy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollgate.governance.limits import Estimate
from tollgate.governance.pricing import COUNTING_ENDPOINTS

if TYPE_CHECKING:
    from tollgate.call import Call


def spends_nothing(call: Call) -> bool:
    """Whether a call generates nothing, and so costs nothing whatever its model: a request other
    than a POST (which fetches what was made before), a count of a prompt's tokens, or a call to
    one of its provider's free endpoints (a file's upload)."""
    endpoint = call.classification.endpoint
    return (
        call.fetches
        or endpoint in COUNTING_ENDPOINTS
        or endpoint in call.registry[call.route.target.provider].free_endpoints
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
    """What a call used upstream: nothing when its request never went there (refused, or the
    upstream unreachable); one request when it generates nothing (a fetch, a count of tokens) or
    the upstream refused it; a batch or job, all it reserved (Tollgate never sees what it used);
    its usage as read; and when none was read, what it reserved: the provider may bill work it
    started whatever became of the answer (a client that left, a timeout, a stream broken off
    before its usage)."""
    if not call.answer.request_sent:
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
    if not call.answer.request_sent:
        return Estimate(0, 0, 0)
    if spends_nothing(call):
        return Estimate(1, 0, 0)
    if status is not None:
        return Estimate(1, 0, 0, job=reserved.job)
    return reserved


def token_count(record: dict[str, Any]) -> int | None:
    """The tokens a limit counts: prompt and answer; the total where only it is known."""
    inputs, outputs = record.get("input_tokens"), record.get("output_tokens")
    if inputs is None and outputs is None:
        return record.get("total_tokens")
    return (inputs or 0) + (outputs or 0)
