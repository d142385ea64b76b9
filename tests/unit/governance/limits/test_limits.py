"""Which limits apply to a call, the counters each keeps for it, reservations and settlements."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tollgate.calls.call import Answer, Call, RolledUp, Route
from tollgate.calls.settlement import attempt_used, used
from tollgate.configuration.config import LimitRule, parse_config
from tollgate.formats.request_facts import Batch, Classification, RequestFacts
from tollgate.formats.usage import Usage
from tollgate.governance.limits.limits import (
    Estimate,
    Limits,
    adjustments,
    batch_output,
    caps_of,
    charges,
    counters,
    deny_reason,
    estimate_tokens,
    generates,
    held_input_bound,
    refusal_message,
    retry_after,
    subjects,
    usage_facts,
)
from tollgate.governance.policy.policy import usage_input
from tollgate.providers import PROVIDERS


def rule(**fields) -> LimitRule:
    return parse_config({"limits": [fields]}).limits[0]


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_every_matching_limit_applies_not_only_the_first():
    limits = Limits(
        [
            rule(name="a", match={"provider": "openai"}, requests_per_minute=1),
            rule(name="b", match={"group": "in*"}, requests_per_day=1),
            rule(name="c", match={"model": "claude-*"}, requests_per_day=1),
        ]
    )
    assert [r.label for r, _ in limits.applying("openai", "gpt-4o", "alice", ("interns",))] == ["a", "b"]
    assert [r.label for r, _ in limits.applying("anthropic", "claude-x", None, ())] == ["c"]
    assert limits.applying("gemini", "gemini-2.0-flash", "bob", ("staff",)) == ()


def test_a_limit_is_named_by_its_match_and_per_unless_named():
    assert rule(match={"group": "interns"}, per="client", requests_per_day=1).label == "group=interns per client"
    assert rule(requests_per_day=1).label == "every call per client"
    assert rule(name="daily", requests_per_day=1).label == "daily"


@pytest.mark.parametrize(
    ("fields", "client", "groups", "expected"),
    [
        ({"per": "client"}, "alice", ("a", "b"), ("alice",)),
        ({"per": "client"}, None, (), ("anonymous",)),
        ({"per": "all"}, "alice", ("a",), ("all",)),
        ({"per": "group"}, "alice", ("a", "b"), ("a", "b")),
        ({"per": "group", "match": {"group": "team-*"}}, "alice", ("team-x", "staff", "team-y"), ("team-x", "team-y")),
        ({"per": "group"}, "alice", (), ()),
    ],
)
def test_whose_counters_a_call_charges(fields, client, groups, expected):
    assert subjects(rule(requests_per_day=1, **fields), client, groups) == expected


def test_counters_per_cap_and_subject_in_their_utc_windows():
    limit = rule(name="interns", per="group", requests_per_minute=30, tokens_per_day=1000, usd_per_month="5.5")
    now = at("2026-02-28T23:59:30")
    found = counters([(limit, caps_of(limit))], "alice", ("x", "y"), now)
    assert [(c.field, c.subject, c.cap) for c in found] == [
        ("requests_per_minute", "x", 30),
        ("requests_per_minute", "y", 30),
        ("tokens_per_day", "x", 1000),
        ("tokens_per_day", "y", 1000),
        ("usd_per_month", "x", 5_500_000_000),  # nano-dollars
        ("usd_per_month", "y", 5_500_000_000),
    ]
    ends = {c.window: c.end for c in found}
    assert ends == {"minute": at("2026-03-01T00:00:00"), "day": at("2026-03-01T00:00:00"), "month": at("2026-03-01")}
    # A counter's key names its limit, subject, metric and window: the next window is another counter.
    later = counters([(limit, caps_of(limit))], "alice", ("x",), at("2026-03-01T00:00:00"))
    assert not {c.key for c in found} & {c.key for c in later}
    assert len({c.key for c in found}) == 6


def test_the_estimate_is_the_prompts_bytes_over_four_and_the_answers_bound():
    assert estimate_tokens(400, 50, True, 4096) == (100, 50)
    assert estimate_tokens(401, None, True, 4096) == (101, 4096)
    assert estimate_tokens(0, None, False, 4096) == (0, 0)  # a listing generates nothing
    assert estimate_tokens(10, 0, True, 4096) == (3, 0)


def test_charges_and_settlement():
    limit = rule(name="l", requests_per_day=10, tokens_per_day=1000, usd_per_day=1)
    found = counters([(limit, caps_of(limit))], "alice", (), at("2026-11-23T10:00:00"))
    reserved = Estimate(1, 300, 2_000)
    assert [(c.amount, c.cap) for c in charges(found, reserved)] == [(1, 10), (300, 1000), (2_000, 1_000_000_000)]
    assert all(c.expires > at("2026-11-24T00:00:00") for c in charges(found, reserved))
    # Used less than reserved: the difference given back; the request stays counted.
    changes = adjustments(found, reserved, Estimate(1, 120, 1_500))
    assert [(delta) for _, delta, _ in changes] == [-180, -500]
    # Refused after reserving: everything given back.
    assert [delta for _, delta, _ in adjustments(found, reserved, Estimate(0, 0, 0))] == [-1, -300, -2_000]
    assert adjustments(found, reserved, reserved) == []


def test_refusals_say_which_cap_what_is_used_and_when_it_resets():
    limit = rule(name="spend", usd_per_day="60")
    now = at("2026-11-23T23:59:58.5")
    (counter,) = counters([(limit, caps_of(limit))], "spender", (), now)
    assert retry_after(counter, now) == 2
    assert refusal_message(counter, 32_500_000_000, 30_000_000_000, now) == (
        "Tollgate limit 'spend': usd_per_day is $60.00 for spender; $32.50 used, this call needs up to $30.00."
        " The day window ends in 2 s."
    )
    assert deny_reason(counter) == "limit 'spend': usd_per_day $60.00 reached for spender"


def test_the_policy_sees_counters_by_limit_subject_and_cap():
    limit = rule(name="interns", per="group", requests_per_minute=30, usd_per_day=Decimal("5"))
    found = counters([(limit, caps_of(limit))], "alice", ("a",), at("2026-11-23T10:00:00"))
    facts = usage_facts(found, [12, 1_250_000_000])
    assert hash(facts)  # a cache key
    assert usage_input(facts) == {
        "interns": {
            "a": {"requests_per_minute": {"used": 12, "limit": 30}, "usd_per_day": {"used": 1.25, "limit": 5.0}}
        }
    }
    assert usage_input(()) == {}


def test_a_rolled_up_call_uses_its_summary_too() -> None:
    call = Call(
        Route.as_called("openai"),
        "api.openai.com",
        "POST",
        "/v1/chat/completions",
        answer=Answer(status=200, request_sent=True),
    )
    call.classified(Classification("chat.completions", "gpt-4o"))
    record = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
    assert used(call, Estimate(1, 500, 9), record) == Estimate(1, 120, 0)
    call.rolled_up = RolledUp(8, "openai/gpt-4o-mini", Usage(input_tokens=21, output_tokens=7), 6975)
    assert used(call, Estimate(1, 500, 9), record) == Estimate(1, 148, 6975)
    call.rolled_up = RolledUp(8, "openai/gpt-4o-mini", cached=True)  # a summary made before costs nothing now
    assert used(call, Estimate(1, 500, 9), record) == Estimate(1, 120, 0)


def test_a_failed_attempt_keeps_its_reservation_once_its_request_went_upstream() -> None:
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    call.classified(Classification("chat.completions", "gpt-4o"))
    reserved = Estimate(1, 500, 9)
    assert attempt_used(call, reserved, None) == Estimate(0, 0, 0)  # never left: given back
    call.answer.request_sent = True
    assert attempt_used(call, reserved, 503) == Estimate(1, 0, 0)  # the upstream answered an error
    assert attempt_used(call, reserved, None) == reserved  # sent, never answered (a timeout): kept


def test_a_rolled_up_calls_summary_counts_once_with_its_first_attempt_settled() -> None:
    call = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    call.classified(Classification("chat.completions", "gpt-4o"))
    call.rolled_up = RolledUp(8, "openai/gpt-4o-mini", Usage(input_tokens=21, output_tokens=7), 6975)
    call.answer.request_sent = True
    assert attempt_used(call, Estimate(1, 500, 9), 503) == Estimate(1, 28, 6975)
    call.ledger.summary_counted = True  # as `Ledger.settle_attempt` notes it
    assert attempt_used(call, Estimate(1, 500, 9), 503) == Estimate(1, 0, 0)
    call.answer.status = 200
    assert used(call, Estimate(1, 500, 9), {"input_tokens": 100, "output_tokens": 20}) == Estimate(1, 120, 0)


def test_each_answer_a_call_asks_for_is_reserved_at_its_bound():
    # n=100 answers of up to 500 tokens: 50 000, not 500.
    assert estimate_tokens(92, 500, True, 4096, answers=100) == (23, 50_000)
    # No bound set: the model's maximum output where known, else reserve_output_tokens.
    assert estimate_tokens(0, None, True, 4096, answers=8, model_max=65_536) == (0, 524_288)
    assert estimate_tokens(0, None, True, 4096, answers=2) == (0, 8192)
    assert estimate_tokens(0, 500, False, 4096, answers=3) == (0, 0)  # generates nothing


def test_a_legacy_completion_and_an_image_generate_without_messages():
    assert generates("completions", RequestFacts())
    assert generates("images.generations", RequestFacts())
    assert not generates("embeddings", RequestFacts())
    assert generates("embeddings", RequestFacts(message_count=0))  # a conversation's, whatever its endpoint


def test_an_input_held_upstream_reserves_the_models_context_window_else_the_configured_bound():
    assert held_input_bound(12, 128_000, 50_000) == 128_000
    assert held_input_bound(12, None, 50_000) == 50_000
    assert held_input_bound(200_000, 128_000, 50_000) == 200_000  # never less than the body itself


def test_the_responses_fields_that_hold_input_upstream_are_read():
    openai = PROVIDERS["openai"]
    for held in ({"previous_response_id": "resp_1"}, {"conversation": "conv_1"}, {"prompt": {"id": "pmpt_1"}}):
        assert openai.classify("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi", **held}).facts.input_held
    assert not openai.classify("POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"}).facts.input_held
    assert not openai.classify("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": []}).facts.input_held


def test_a_batch_is_charged_whole_to_its_day_and_month_and_as_one_request_to_its_minute():
    limit = rule(name="l", requests_per_minute=5, tokens_per_minute=100, requests_per_day=5000, tokens_per_day=10**9)
    found = counters([(limit, caps_of(limit))], "alice", (), at("2026-11-23T10:00:00"))
    job = Estimate(1000, 64_000_000, 0, job=True)
    assert [(c.field, c.charged(job)) for c in found] == [
        ("requests_per_minute", 1),
        ("requests_per_day", 1000),
        ("tokens_per_minute", 0),
        ("tokens_per_day", 64_000_000),
    ]
    assert [c.amount for c in charges(found, job)] == [1, 1000, 0, 64_000_000]
    # Its creation refused by the upstream: one request stays counted, its work given back.
    back = adjustments(found, job, Estimate(1, 0, 0, job=True))
    assert [delta for _, delta, _ in back] == [-999, -64_000_000]


def test_a_batchs_output_is_its_requests_bounds_and_each_open_answer_at_its_models_maximum():
    assert batch_output(Batch(3, 1500, 0), None, 4096) == 1500
    assert batch_output(Batch(3, 1500, 2), 8192, 4096) == 1500 + 2 * 8192
    assert batch_output(Batch(3, 1500, 2), None, 4096) == 1500 + 2 * 4096
