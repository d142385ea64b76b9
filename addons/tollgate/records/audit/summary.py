"""What is shown of a call: a one-line summary, the flow's comment in mitmweb and, with its
latency, the call's line on the console (`console_line`); and mitmweb's marker for a call Tollgate
refused or that failed. Metadata only: never a key, a token or the prompt's text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollgate.common.shown import caller_name, nano_usd_text
from tollgate.records.audit.audit_record import NO_USAGE, answer_redacted
from tollgate.records.audit.bounded import ENTRIES, cut

if TYPE_CHECKING:
    from tollgate.calls.call import Call

# mitmproxy's marker names (mitmproxy.utils.emoji); mitmweb shows each as its emoji by the flow.
REFUSED_MARKER = ":no_entry:"
FAILED_MARKER = ":warning:"


def summary(call: Call, latency: str | None = None) -> str:
    """The one line mitmweb shows as the flow's comment. Its column is narrow, so what matters
    comes first: who called (a short name), then a refusal and its reason, a failure, else the
    tokens and cost; then what was called (and, given, how long it took), and what the guardrails
    found in the request and in the answer (kinds and counts); last the policy's reasons or the error, in words.
    What it takes from a caller, a policy or an upstream is cut as the audit cuts it (`bounded.cut`)."""
    head, detail = _outcome(call)
    model, target = call.target_model, call.route.target
    endpoint = call.classification.endpoint or "?"
    what = f"{target.provider}/{cut(model)}" if model else f"{target.provider} {cut(endpoint)}"
    line = f"{cut(caller_name(call.caller.client))} · {head} · {what}"
    if latency is not None:
        line += f" · {latency}"
    if found := call.request.findings:
        line += f" · found {_found(found, call.request.redacted)}"
    if found := call.answer.findings:
        line += f" · answer found {_found(found, answer_redacted(found, call.answer.finding_actions))}"
    return f"{line} · {cut(detail)}" if detail else line


def _found(findings: dict[str, int], redacted: int | None) -> str:
    """What the guardrails found, by kind and count (never a value), and how many were redacted."""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(findings.items()))
    return kinds + (f" ({redacted} redacted)" if redacted else "")


def console_line(call: Call, latency_ms: float) -> str:
    """The call's line on the console, as it ends: mitmweb's summary with how long the call took
    (its audit record's `latency_ms`)."""
    return f"Tollgate: {summary(call, latency_text(latency_ms))}"


def latency_text(ms: float) -> str:
    """`412 ms`, `12.3 s`: milliseconds below ten seconds, else seconds."""
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _outcome(call: Call) -> tuple[str, str | None]:
    a = call.answer
    if a.failure is not None:
        return f"⚠ {a.failure.value}", a.error
    if a.refused is not None:
        reasons = "; ".join(r for r in call.verdict.deny_reasons[:ENTRIES] if r != a.refused)
        return f"⛔ {a.refused}", reasons or a.error
    if a.status is not None and a.status >= 500:
        return f"⚠ {a.status}", a.error
    u = a.usage or NO_USAGE
    if u.input_tokens is None and u.output_tokens is None:
        return "no tokens", a.error
    head, cost = f"{u.input_tokens or 0}→{u.output_tokens or 0}", call.cost_nanousd()
    return (head if cost is None else f"{head} {nano_usd_text(cost)}"), a.error


def flow_marker(call: Call) -> str:
    """How mitmweb marks the flow: refused by Tollgate, failed, or not at all. Failed is a call
    that did not get to its end: its upstream unreachable, timed out, broken off or answering
    with a server error (5xx), or its client gone. An upstream's 4xx is the provider's answer."""
    a = call.answer
    if a.failure is not None:
        return FAILED_MARKER
    if a.answered_by_tollgate:
        return REFUSED_MARKER
    if a.status is not None and a.status >= 500:
        return FAILED_MARKER
    return ""
