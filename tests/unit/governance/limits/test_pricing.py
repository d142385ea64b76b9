"""Prices: the configured rules over genai-prices' bundled table, and a call's cost, exact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from genai_prices import Usage as TableUsage
from genai_prices import calc_price
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.common.shown import nano_usd_text
from tollgate.configuration.config import OverrideMatch, PriceRule, parse_config
from tollgate.formats.usage import Usage
from tollgate.governance.limits.pricing import TABLE_IDS, Prices, Rate, cost_nanousd, table_rate
from tollgate.records.audit.audit_record import usd

PROPERTY = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
D = Decimal


def rules(*raw: dict) -> tuple[PriceRule, ...]:
    return parse_config({"prices": list(raw)}, {}).prices


def prices_of(rate: Rate | None) -> tuple[Decimal, ...] | None:
    return None if rate is None else (rate.input, rate.cached_input, rate.cache_write, rate.output, rate.reasoning)


# --- the table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "source", "prices"),
    [
        ("openai", "gpt-4o-mini", "openai/gpt-4o-mini", ("0.15", "0.075", "0.15", "0.6", "0.6")),
        ("openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini", ("0.15", "0.075", "0.15", "0.6", "0.6")),
        ("gemini", "gemini-2.0-flash", "google/gemini-2.0-flash", ("0.1", "0.025", "0.1", "0.4", "0.4")),
        ("gemini", "models/gemini-2.0-flash", "google/gemini-2.0-flash", ("0.1", "0.025", "0.1", "0.4", "0.4")),
        ("anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", ("3", "0.3", "3.75", "15", "15")),
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5", ("3", "0.3", "3.75", "15", "15")),
        # Bedrock: a global cross-region profile costs the provider's list price, a regional one
        # (in-region, or a geographic profile: us., eu., apac., jp., au.) 10% more.
        (
            "bedrock",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ("3", "0.3", "3.75", "15", "15"),
        ),
        *(
            (
                "bedrock",
                model,
                "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
                ("3.3", "0.33", "4.125", "16.5", "16.5"),
            )
            for model in (
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "jp.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            )
        ),
        (
            "bedrock",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "aws/regional.anthropic.claude-3-haiku-20240307-v1:0",
            ("0.25", "0.25", "0.25", "1.25", "1.25"),
        ),
        ("bedrock", "us.amazon.nova-lite-v1:0", "aws/amazon.nova-lite-v1:0", ("0.06", "0.015", "0.06", "0.24", "0.24")),
        # An embedding model has an input price only.
        ("openai", "text-embedding-3-small", "openai/text-embedding-3-small", ("0.02", "0.02", "0.02", "0", "0")),
    ],
)
def test_table_lookup(provider: str, model: str, source: str, prices: tuple[str, ...]) -> None:
    rate = Prices(()).rate(provider, model, "alice", ("research",), WHEN)
    assert rate is not None
    assert rate.source == f"genai-prices {source}"
    assert prices_of(rate) == tuple(map(D, prices))


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "ft:gpt-4o-mini:acme::abc123"),  # a fine-tuned model: only the configuration knows it
        ("openai", "no-such-model"),
        ("gemini", "tunedModels/mine"),
        ("bedrock", "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"),
        ("openai", None),
        ("openai", "dall-e-3"),  # priced per image, not per token
    ],
)
def test_unknown_price_is_none(provider: str, model: str | None) -> None:
    assert Prices(()).rate(provider, model, None, (), WHEN) is None
    usage = Usage(input_tokens=10, output_tokens=5)
    assert Prices(()).cost(provider, model, None, (), "chat.completions", usage, WHEN) is None


def test_table_prices_that_change_on_a_date() -> None:
    """o3's price fell on 2025-06-10 (UTC): a call is priced at its own date."""
    before = datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC).timestamp()
    after = datetime(2025, 6, 10, 0, 0, 0, tzinfo=UTC).timestamp()
    prices = Prices(())
    old, new = prices.rate("openai", "o3", None, (), before), prices.rate("openai", "o3", None, (), after)
    assert old is not None and new is not None
    assert (old.input, old.output, new.input, new.output) == (D(10), D(40), D(2), D(8))


PRIORITY = (("service_tier", "priority"),)


def test_a_service_tier_the_table_prices_apart() -> None:
    """gpt-4.1 at OpenAI's priority tier: 1.75x the standard rate; a tier the table does not know
    pays the standard one, and a configured rule prices every tier alike."""
    prices = Prices(())
    standard, priority = (prices.rate("openai", "gpt-4.1", None, (), WHEN, c) for c in ((), PRIORITY))
    assert standard is not None and priority is not None
    assert (standard.input, standard.output, priority.input, priority.output) == (D(2), D(8), D("3.5"), D(14))
    assert prices.rate("openai", "gpt-4.1", None, (), WHEN, (("service_tier", "no-such-tier"),)) == standard
    usage = Usage(input_tokens=1000, output_tokens=100, service_tier="priority")
    assert prices.cost("openai", "gpt-4.1", None, (), "chat.completions", usage, WHEN) == 1000 * 3500 + 100 * 14_000
    rule = PriceRule(match=OverrideMatch(model="gpt-4.1"), input_per_mtok=D(1), output_per_mtok=D(2))
    assert (
        Prices((rule,)).cost("openai", "gpt-4.1", None, (), "chat.completions", usage, WHEN) == 1000 * 1000 + 100 * 2000
    )


def test_anthropic_fast_mode_is_priced_apart() -> None:
    usage = Usage(input_tokens=1000, output_tokens=100, service_tier="standard", speed="fast")
    assert usage.price_context() == (("service_tier", "standard"), ("speed", "fast"))
    cost = Prices(()).cost("anthropic", "claude-opus-5", None, (), "messages", usage, WHEN)
    assert cost == 1000 * 10_000 + 100 * 50_000  # $10 and $50 per Mtok; standard speed: $5 and $25
    usage.speed = "standard"
    assert (
        Prices(()).cost("anthropic", "claude-opus-5", None, (), "messages", usage, WHEN) == 1000 * 5000 + 100 * 25_000
    )


def test_tiers_by_prompt_size() -> None:
    """Gemini 2.5 Pro: a prompt of more than 200k tokens pays the higher rate for every token."""
    rate = table_rate("gemini", "gemini-2.5-pro", WHEN)
    assert rate is not None and [start for start, _ in rate.tiers] == [200_000]
    at, above = Usage(input_tokens=200_000, output_tokens=1000), Usage(input_tokens=200_001, output_tokens=1000)
    assert cost_nanousd(rate, at) == 200_000 * 1250 + 1000 * 10_000
    assert cost_nanousd(rate, above) == 200_001 * 2500 + 1000 * 15_000


def test_tiers_of_cache_prices() -> None:
    rate = table_rate("anthropic", "claude-sonnet-4-5", WHEN)
    assert rate is not None
    usage = Usage(input_tokens=300_000, cached_tokens=100_000, cache_write_tokens=50_000, output_tokens=10)
    # Above 200k: input 6, cache reads 0.6, writes 7.5, output 22.5 per Mtok.
    assert cost_nanousd(rate, usage) == 150_000 * 6000 + 100_000 * 600 + 50_000 * 7500 + 10 * 22_500


TABLE_MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-5"),
    ("openai", "gpt-5.4"),
    ("gemini", "gemini-2.5-pro"),
    ("gemini", "gemini-2.5-flash"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("bedrock", "amazon.nova-pro-v1:0"),
]


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(st.integers(0, 2_000_000))
    read = draw(st.integers(0, prompt))
    written = draw(st.integers(0, prompt - read))
    output = draw(st.integers(0, 200_000))
    reasoning = draw(st.integers(0, output))
    return Usage(
        input_tokens=prompt, cached_tokens=read, cache_write_tokens=written, output_tokens=output,
        reasoning_tokens=reasoning,
    )  # fmt: skip


@PROPERTY
@given(model=st.sampled_from(TABLE_MODELS), usage=usages())
def test_table_costs_agree_with_genai_prices_own_calculation(model: tuple[str, str], usage: Usage) -> None:
    """The rates read from the table (tiers included) cost what genai-prices' own `calc_price`
    says, which is some 100 times slower per call."""
    provider, name = model
    rate = Prices(()).rate(provider, name, None, (), WHEN)
    assert rate is not None
    theirs = calc_price(
        TableUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
        ),
        name,
        provider_id=TABLE_IDS[provider],
        genai_request_timestamp=datetime.fromtimestamp(WHEN, UTC),
    ).total_price
    assert cost_nanousd(rate, usage) == int((theirs * 10**9).quantize(D(1), ROUND_HALF_UP))


# --- the configuration's rules ------------------------------------------------------------------


RULES = rules(
    {"match": {"provider": "openai", "model": "ft:gpt-4o-mini:*"}, "input_per_mtok": 0.30,
     "cached_input_per_mtok": 0.15, "output_per_mtok": 1.20},
    {"match": {"provider": "openai", "model": "gpt-4o*", "group": "negotiated"}, "input_per_mtok": "0.1",
     "output_per_mtok": "0.4"},
    {"match": {"client": "ci-*"}, "input_per_mtok": 0, "output_per_mtok": 0},
    {"match": {"model": "my-private-*"}, "input_per_mtok": 1, "cached_input_per_mtok": "0.5",
     "cache_write_per_mtok": 2, "output_per_mtok": 3, "reasoning_per_mtok": 4},
)  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "model", "client", "groups", "source"),
    [
        ("openai", "ft:gpt-4o-mini:acme::abc123", "alice", (), "prices.0"),
        ("openai", "gpt-4o-mini", "alice", ("x", "negotiated"), "prices.1"),  # wins over the table
        ("openai", "gpt-4o-mini", "alice", ("x",), "genai-prices openai/gpt-4o-mini"),
        ("openai", "gpt-4o-mini", None, (), "genai-prices openai/gpt-4o-mini"),  # no client: no group
        ("gemini", "gpt-4o-mini", "alice", ("negotiated",), None),  # the provider must match
        ("bedrock", "amazon.nova-lite-v1:0", "ci-nightly", (), "prices.2"),
        ("openai", "ft:gpt-4o-mini:acme::abc123", "ci-nightly", (), "prices.0"),  # the first match wins
        ("anthropic", "my-private-llm", None, (), "prices.3"),
        ("anthropic", "My-private-llm", None, (), None),  # globs are case-sensitive, as overrides'
    ],
)
def test_configured_rules_first(
    provider: str, model: str, client: str | None, groups: tuple[str, ...], source: str | None
) -> None:
    rate = Prices(RULES).rate(provider, model, client, groups, WHEN)
    assert (rate.source if rate is not None else None) == source


def test_configured_defaults() -> None:
    """Unset: cached input and cache writes at the input price, reasoning at the output price."""
    assert prices_of(Prices(RULES).rate("openai", "ft:gpt-4o-mini:a", None, (), WHEN)) == tuple(
        map(D, ("0.30", "0.15", "0.30", "1.20", "1.20"))
    )
    assert prices_of(Prices(RULES).rate("openai", "gpt-4o", None, ("negotiated",), WHEN)) == tuple(
        map(D, ("0.1", "0.1", "0.1", "0.4", "0.4"))
    )


def test_cache_reads_writes_and_reasoning_priced_apart() -> None:
    rate = Prices(RULES).rate("anthropic", "my-private-llm", None, (), WHEN)
    assert rate is not None
    usage = Usage(input_tokens=1000, cached_tokens=300, cache_write_tokens=200, output_tokens=100, reasoning_tokens=40)
    # fresh 500 x 1, reads 300 x 0.5, writes 200 x 2, visible output 60 x 3, reasoning 40 x 4 ($ per Mtok)
    assert cost_nanousd(rate, usage) == (500 * 1 + 150 + 400 + 180 + 160) * 1000
    assert usd(cost_nanousd(rate, usage)) == 0.00139


def test_the_issue_example() -> None:
    rate = Prices(RULES).rate("openai", "ft:gpt-4o-mini:org:custom:id", "bob", (), WHEN)
    assert rate is not None
    usage = Usage(input_tokens=1_000_000, cached_tokens=400_000, output_tokens=100_000)
    assert cost_nanousd(rate, usage) == 180_000_000 + 60_000_000 + 120_000_000  # $0.36


# --- cost and rounding --------------------------------------------------------------------------


def flat(input_: str, output: str, cached: str | None = None, write: str | None = None) -> Rate:
    return Rate(D(input_), D(cached or input_), D(write or input_), D(output), D(output))


def test_rounding_half_up_once_on_the_total() -> None:
    half = flat("0.0005", "0.0005")  # half a nano-dollar per token
    assert cost_nanousd(half, Usage(input_tokens=1, output_tokens=0)) == 1  # 0.5 rounds up
    assert cost_nanousd(half, Usage(input_tokens=3, output_tokens=0)) == 2  # 1.5 too
    # Two halves: rounded once, on the total (rounding each part would give 2).
    assert cost_nanousd(half, Usage(input_tokens=1, output_tokens=1)) == 1
    assert cost_nanousd(flat("0.0004", "0"), Usage(input_tokens=1, output_tokens=0)) == 0
    assert cost_nanousd(flat("0.0006", "0"), Usage(input_tokens=1, output_tokens=0)) == 1


def test_inconsistent_counts_are_held_within_the_prompt() -> None:
    rate = flat("1", "2", cached="0.5", write="4")
    # More cache reads than prompt tokens: all of the prompt priced as read, none twice.
    assert cost_nanousd(rate, Usage(input_tokens=10, cached_tokens=50, output_tokens=0)) == 10 * 500
    assert cost_nanousd(rate, Usage(input_tokens=10, cached_tokens=6, cache_write_tokens=9)) == 6 * 500 + 4 * 4000
    assert cost_nanousd(rate, Usage(input_tokens=-5, output_tokens=-1, reasoning_tokens=7)) == 0
    assert cost_nanousd(rate, Usage(input_tokens=0, output_tokens=3, reasoning_tokens=7)) == 3 * 2000


@st.composite
def money(draw: st.DrawFn) -> Decimal:
    return D(draw(st.integers(0, 10**15))).scaleb(-draw(st.integers(0, 18)))


@PROPERTY
@given(prices=st.tuples(money(), money(), money(), money(), money()), usage=usages(), big=st.integers(0, 10**30))
def test_cost_is_the_exact_decimal_sum_rounded_half_up(prices: tuple[Decimal, ...], usage: Usage, big: int) -> None:
    rate = Rate(*prices)
    for u in (usage, Usage(input_tokens=big, cached_tokens=big // 3, output_tokens=big, reasoning_tokens=big // 7)):
        prompt, read, written = u.input_tokens or 0, u.cached_tokens or 0, u.cache_write_tokens or 0
        output, reasoning = u.output_tokens or 0, u.reasoning_tokens or 0
        # Decimal's default context (28 digits) would round these products: an exact one.
        with localcontext() as ctx:
            ctx.prec = 200
            exact = sum(
                (
                    (prompt - read - written) * rate.input,
                    read * rate.cached_input,
                    written * rate.cache_write,
                    (output - reasoning) * rate.output,
                    reasoning * rate.reasoning,
                ),
                D(0),
            ).scaleb(3)  # $ per Mtok -> nano-dollars per token
            assert cost_nanousd(rate, u) == int(exact.quantize(D(1), ROUND_HALF_UP))


@PROPERTY
@given(usage=usages(), more=st.integers(0, 10**6))
def test_more_output_never_costs_less(usage: Usage, more: int) -> None:
    rate = Prices(()).rate("gemini", "gemini-2.5-pro", None, (), WHEN)
    assert rate is not None
    larger = Usage(**{**{f: getattr(usage, f) for f in Usage.__slots__}, "output_tokens": usage.output_tokens + more})  # type: ignore[operator]
    assert 0 <= cost_nanousd(rate, usage) <= cost_nanousd(rate, larger)


def test_cost_of_a_call() -> None:
    prices = Prices(RULES)
    usage = Usage(input_tokens=21, cached_tokens=5, output_tokens=7, reasoning_tokens=2)
    # gpt-4o-mini: 16 x 0.15 + 5 x 0.075 + 7 x 0.6 $/Mtok
    assert prices.cost("openai", "gpt-4o-mini", "alice", (), "chat.completions", usage, WHEN) == 6975
    assert prices.cost("openai", "gpt-4o-mini", "alice", (), "chat.completions", None, WHEN) is None
    no_prompt = Usage(output_tokens=7, total_tokens=28)
    assert prices.cost("openai", "gpt-4o-mini", "alice", (), "chat.completions", no_prompt, WHEN) is None
    # Counting tokens is free, whatever the model.
    counted = Usage(input_tokens=42)
    for provider, endpoint in (("anthropic", "messages.count_tokens"), ("bedrock", "count-tokens"),
                               ("gemini", "countTokens")):  # fmt: skip
        assert prices.cost(provider, "unknown-model", None, (), endpoint, counted, WHEN) == 0


def test_audio_mixed_with_text_is_not_guessed() -> None:
    """A Realtime session's usage counts audio tokens with text ones; the table prices them
    apart (8x for gpt-4o-realtime-preview), so the cost is unknown, unless configured."""
    usage = Usage(input_tokens=250, output_tokens=50)
    model = "gpt-4o-realtime-preview"
    assert Prices(()).cost("openai", model, None, (), "realtime", usage, WHEN) is None
    assert Prices(()).cost("openai", model, None, (), "chat.completions", usage, WHEN) == 250 * 5000 + 50 * 20_000
    configured = Prices(rules({"match": {"model": "gpt-4o-realtime-*"}, "input_per_mtok": 40, "output_per_mtok": 80}))
    assert configured.cost("openai", model, None, (), "realtime", usage, WHEN) == 250 * 40_000 + 50 * 80_000


def test_lookups_are_cached_per_shape_and_day() -> None:
    prices = Prices(RULES)
    first = prices.rate("openai", "gpt-4o-mini", "alice", ("x",), WHEN)
    assert prices.rate("openai", "gpt-4o-mini", "alice", ("x",), WHEN + 60) is first
    assert len(prices.memo.found) == 1
    prices.rate("openai", "gpt-4o-mini", "alice", ("x",), WHEN + 86_400)  # the next UTC day: looked up again
    assert len(prices.memo.found) == 2
    prices.memo.limit = 2
    prices.rate("openai", "gpt-4o", "alice", ("x",), WHEN)
    assert len(prices.memo.found) == 1  # full: started afresh


def test_money_as_text() -> None:
    assert usd(6975) == 0.000006975
    assert usd(1_234_567_890_123) == 1234.567890123
    assert (nano_usd_text(123_456), nano_usd_text(500), nano_usd_text(0)) == ("$0.000123456", "$0.0000005", "$0.00")
    assert nano_usd_text(12_345_678_901) == "$12.345678901"


def test_a_models_context_window_is_the_tables() -> None:
    prices = Prices([])
    assert prices.context_window("openai", "gpt-4o") == 128_000
    assert prices.context_window("openai", "gpt-realtime") == 32_000
    assert prices.context_window("openai", "a-model-of-our-own") is None
    assert prices.context_window("openai", None) is None
