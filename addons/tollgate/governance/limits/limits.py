"""The limits (`limits:`, whose rules are declared here): which apply to a call, the counters each
keeps for it, what the call reserves on them before it goes, and what it settles to once its usage
is known. Pure: the store that keeps the counters is `ledger/`, the step that asks it
`stages/limits/ledger.py`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import Field, ValidationInfo, model_validator

from tollgate.common.config_base import Count, Money, Strict
from tollgate.common.shape_memo import ShapeMemo
from tollgate.common.shown import nano_usd_text
from tollgate.governance.matching import OverrideMatch, known_providers, matches, unknown_provider
from tollgate.ledger.store import Charge, Store
from tollgate.ledger.windows import WINDOWS, window_bounds

if TYPE_CHECKING:
    from tollgate.formats.request_facts import Batch, RequestFacts

NANO = Decimal(1_000_000_000)  # nano-dollars in a dollar: what money is counted in
ANONYMOUS = "anonymous"  # the subject of every anonymous caller's per-client counters
BYTES_PER_TOKEN = 4  # a prompt's tokens, estimated from its body's size until its usage is read
METRICS = ("requests", "tokens", "usd")
# A limit's caps, by field name: `<metric>_per_<window>`, e.g. tokens_per_day.
LIMIT_FIELDS = tuple(f"{metric}_per_{window}" for metric in METRICS for window in WINDOWS)


class LimitRule(Strict):
    """`limits:` one entry: the caps on the calls it matches, counted per client, per group, or for
    all of them together, in fixed UTC windows."""

    name: str | None = Field(default=None, min_length=1)  # default: made from match and per
    match: OverrideMatch = OverrideMatch()
    per: Literal["client", "group", "all"] = "client"
    requests_per_minute: Count | None = None
    requests_per_day: Count | None = None
    requests_per_month: Count | None = None
    tokens_per_minute: Count | None = None
    tokens_per_day: Count | None = None
    tokens_per_month: Count | None = None
    usd_per_minute: Money | None = None
    usd_per_day: Money | None = None
    usd_per_month: Money | None = None
    # MCP servers' requests (`mcp.servers`), which no other cap counts, nor this one LLM calls.
    mcp_calls_per_minute: Count | None = None

    @property
    def label(self) -> str:
        """The limit's name: what refusals, the audit and the policy call it, and what its counters
        are kept under (a name that stays the same keeps its counts across edits)."""
        if self.name is not None:
            return self.name
        m = self.match
        parts = [f"{k}={v}" for k, v in (("provider", m.provider), ("model", m.model), ("client", m.client),
                                          ("group", m.group)) if v is not None]  # fmt: skip
        return f"{' '.join(parts) or 'every call'} per {self.per}"

    def caps(self) -> dict[str, int | Decimal]:
        """The caps set, by field name (`LIMIT_FIELDS`)."""
        return {name: value for name in LIMIT_FIELDS if (value := getattr(self, name)) is not None}

    @model_validator(mode="after")
    def _something_capped(self, info: ValidationInfo) -> LimitRule:
        if not self.caps() and self.mcp_calls_per_minute is None:
            raise ValueError(f"a limit must set at least one of {', '.join(LIMIT_FIELDS)}, mcp_calls_per_minute")
        if self.mcp_calls_per_minute is not None and (self.match.provider or self.match.model):
            raise ValueError("mcp_calls_per_minute counts MCP requests, which match no provider or model")
        known = known_providers(info)
        if self.match.provider is not None and self.match.provider not in known:
            raise ValueError(unknown_provider(self.match.provider, known))
        return self


class Counter(NamedTuple):
    """One counter a call charges: a limit's cap on one metric in one window, for one subject.
    (Tuples: a call makes several, and frozen dataclasses cost several times as much to make.)"""

    label: str  # the limit's name
    field: str  # e.g. tokens_per_day
    metric: str  # requests, tokens or usd
    window: str  # minute, day or month
    subject: str  # the client, the group, or "all"
    cap: int  # in the counter's unit: requests, tokens, nano-dollars
    end: int  # the window's end, epoch seconds
    key: str  # the store's name for it

    def amount(self, requests: int, tokens: int, nanousd: int) -> int:
        return requests if self.metric == "requests" else tokens if self.metric == "tokens" else nanousd

    def charged(self, estimate: Estimate) -> int:
        """What this counter is charged for the estimate: a batch or job counts on a minute window
        as one request, and its work on the day and month windows it runs in."""
        if estimate.job and self.window == "minute":
            return 1 if self.metric == "requests" else 0
        return self.amount(estimate.requests, estimate.tokens, estimate.nanousd or 0)

    def show(self, value: int) -> str:
        """A value of this counter as users read it: dollars for money."""
        return nano_usd_text(value) if self.metric == "usd" else str(value)


class Estimate(NamedTuple):
    """What a call may use, reserved before it goes: an upper bound where the request says one
    (its max_tokens times its answers), an estimate where it does not (its prompt's tokens)."""

    requests: int
    tokens: int
    nanousd: int | None  # None: the model's price is unknown
    job: bool = False  # a batch or asynchronous job's: charged whole to its day and month windows


NOTHING = Estimate(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Reserved:
    """What a call reserved, and where: settled in the same store even when a reload changes it."""

    store: Store
    counters: tuple[Counter, ...]
    estimate: Estimate

    def settle(self, spent: Estimate) -> bool:
        """Its counters set to what was `spent` in place of what was reserved; whether any changed."""
        changes = adjustments(self.counters, self.estimate, spent)
        if changes:
            self.store.adjust(changes)
        return bool(changes)

    def give_back(self) -> None:
        """Given back whole: the call used nothing of it (it never went)."""
        self.settle(NOTHING)


# A limit's caps as counters count them: (field, metric, window, cap in the counter's unit).
Caps = tuple[tuple[str, str, str, int], ...]


def caps_of(rule: LimitRule) -> Caps:
    caps = []
    for field, cap in rule.caps().items():
        metric, window = field.split("_per_")
        caps.append((field, metric, window, int(Decimal(cap) * NANO) if metric == "usd" else int(cap)))
    return tuple(caps)


class Limits:
    """The configured limits, with the ones applying to each call shape found once."""

    def __init__(self, rules: Sequence[LimitRule]) -> None:
        self.rules = tuple(rules)
        self._caps = {rule.label: caps_of(rule) for rule in self.rules}
        self.memo: ShapeMemo[tuple[tuple[LimitRule, Caps], ...]] = ShapeMemo(self._applying)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def applying(
        self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]
    ) -> tuple[tuple[LimitRule, Caps], ...]:
        """The limits that apply to a call, each with its caps."""
        shape = (provider, model, client, groups)
        return self.memo.get(shape, *shape)

    def _applying(
        self, provider: str, model: str | None, client: str | None, groups: tuple[str, ...]
    ) -> tuple[tuple[LimitRule, Caps], ...]:
        return tuple((r, self._caps[r.label]) for r in self.rules if matches(r.match, provider, model, client, groups))


def subjects(rule: LimitRule, client: str | None, groups: Iterable[str]) -> tuple[str, ...]:
    """Whose counters a call charges under a limit: its client's, each of its groups' that the
    limit matches (none for a caller in no group), or everyone's together."""
    if rule.per == "client":
        return (client or ANONYMOUS,)
    if rule.per == "all":
        return ("all",)
    if rule.match.group is None:
        return tuple(groups)
    return tuple(g for g in groups if fnmatchcase(g, rule.match.group))


def counters(
    applying: Iterable[tuple[LimitRule, Caps]], client: str | None, groups: tuple[str, ...], now: float
) -> list[Counter]:
    """Every counter the limits keep for a call made at `now`."""
    bounds: dict[str, tuple[int, int]] = {}
    found = []
    for rule, caps in applying:
        who = subjects(rule, client, groups)
        for field, metric, window, cap in caps:
            if window not in bounds:
                bounds[window] = window_bounds(window, now)
            start, end = bounds[window]
            for subject in who:
                key = f"{rule.label}|{rule.per}:{subject}|{metric}|{window}|{start}"
                found.append(Counter(rule.label, field, metric, window, subject, cap, end, key))
    return found


# Endpoints that generate without a conversation (their facts count no messages), each answer up
# to its bound, else its model's output: a legacy completion of a prompt (OpenAI's and every
# OpenAI-compatible `completions`, Azure's, Anthropic's Text Completions), an image's tokens, a
# Realtime session's response (its session's upgrade itself fetches: it generates nothing).
GENERATING_ENDPOINTS = frozenset(("completions", "images.generations", "realtime"))


def generates(endpoint: str | None, facts: RequestFacts) -> bool:
    """Whether a call writes an answer its output bound applies to: a conversation, a completion
    of a prompt, or an image."""
    return facts.message_count is not None or endpoint in GENERATING_ENDPOINTS


def answer_bound(max_tokens: int | None, model_max: int | None, reserve_output: int) -> int:
    """What one answer may hold: the request's bound, else its model's maximum output where
    known, else `ledger.reserve_output_tokens`."""
    if max_tokens is not None:
        return max(max_tokens, 0)
    return model_max if model_max is not None else reserve_output


def estimate_tokens(
    body_size: int, max_tokens: int | None, generates: bool, reserve_output: int, answers: int = 1,
    model_max: int | None = None,
) -> tuple[int, int]:  # fmt: skip
    """A call's prompt and answer tokens before it runs: its body's bytes over four (a token is about
    four bytes of English text; JSON's syntax makes the estimate high rather than low), and each of
    its answers' bound (`answer_bound`) times how many it asks for; none for a call that generates
    nothing."""
    answer = answer_bound(max_tokens, model_max, reserve_output) * answers if generates else 0
    return math.ceil(body_size / BYTES_PER_TOKEN), answer


def held_input_bound(prompt: int, window: int | None, reserve_input: int) -> int:
    """A prompt's tokens where the provider adds input it holds (`RequestFacts.input_held`): its
    model's context window (which bounds all of the input), else `ledger.reserve_input_tokens`;
    never less than the body's own estimate."""
    return max(prompt, window if window is not None else reserve_input)


def batch_output(batch: Batch, model_max: int | None, reserve_output: int) -> int:
    """What a batch whose requests Tollgate read may generate: their bounds, and each answer that
    sets none at its model's maximum output (else `reserve_output`)."""
    assert batch.output_tokens is not None
    return batch.output_tokens + batch.open_answers * answer_bound(None, model_max, reserve_output)


def unenforceable(found: Sequence[Counter]) -> Counter | None:
    """The first counter of tokens or money: a job whose use Tollgate cannot bound is not served
    under one."""
    return next((c for c in found if c.metric != "requests"), None)


def unenforceable_message(counter: Counter, endpoint: str, batch: Batch) -> str:
    why = (
        "its requests are in a file or a bucket, which Tollgate does not read"
        if batch.requests is None
        else "its work is not counted in tokens"
    )
    return (
        f"Tollgate limit {counter.label!r} caps {counter.field} for {counter.subject}, and this {endpoint} call"
        f" starts a job whose use Tollgate cannot bound ({why}): it is not served under a token or USD limit."
    )


def unenforceable_reason(counter: Counter, endpoint: str) -> str:
    return f"limit {counter.label!r}: {counter.field} cannot bound a {endpoint} job for {counter.subject}"


def charges(found: Sequence[Counter], estimate: Estimate) -> list[Charge]:
    return [Charge(c.key, c.charged(estimate), c.cap, c.end + EXPIRY_GRACE) for c in found]


# Counters are kept a while past their window's end, so that a call that ends after its window
# still settles a counter that exists (and the report's latest windows can be read).
EXPIRY_GRACE = 3600


def adjustments(found: Sequence[Counter], reserved: Estimate, used: Estimate) -> list[tuple[str, int, int]]:
    """What settles a call's reservation to what it used: (counter, delta, expires), zero deltas left out."""
    changes = []
    for c in found:
        delta = c.charged(used) - c.charged(reserved)
        if delta:
            changes.append((c.key, delta, c.end + EXPIRY_GRACE))
    return changes


def retry_after(counter: Counter, now: float) -> int:
    """Whole seconds until the counter's window ends (at least one)."""
    return max(1, math.ceil(counter.end - now))


def refusal_message(counter: Counter, used: int, needed: int, now: float) -> str:
    return (
        f"Tollgate limit {counter.label!r}: {counter.field} is {counter.show(counter.cap)} for {counter.subject};"
        f" {counter.show(used)} used, this call needs up to {counter.show(needed)}."
        f" The {counter.window} window ends in {retry_after(counter, now)} s."
    )


def deny_reason(counter: Counter) -> str:
    return f"limit {counter.label!r}: {counter.field} {counter.show(counter.cap)} reached for {counter.subject}"


# (limit, subject, field, used, cap, metric) per counter: `policy.usage_input` makes `input.usage` of it.
UsageFacts = tuple[tuple[str, str, str, int, int, str], ...]


def usage_facts(found: Sequence[Counter], values: Sequence[int]) -> UsageFacts:
    """The counters as the policy sees them (before this call), in a hashable form."""
    return tuple((c.label, c.subject, c.field, v, c.cap, c.metric) for c, v in zip(found, values, strict=True))
