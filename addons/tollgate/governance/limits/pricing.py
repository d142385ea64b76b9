"""What a call costs: its model's price (the configured `prices:` first, declared here, then the price
table that genai-prices bundles) applied to the usage the answer reported, exactly, in nano-dollars."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

# The bundled table only: genai-prices fetches newer prices only when asked (`UpdatePrices`),
# which Tollgate never does. The package's own lookup caches every model name it is asked for,
# without bound; the providers' model lists are searched here instead, with a bounded cache.
from genai_prices.data import providers as _TABLE_PROVIDERS
from genai_prices.types import ModelPrice, TieredPrices
from pydantic import ValidationInfo, field_validator

from tollgate.common.config_base import Money, Strict
from tollgate.common.shape_memo import ShapeMemo
from tollgate.governance.matching import OverrideMatch, known_providers, matches, unknown_provider
from tollgate.providers import PROVIDERS, Provider

if TYPE_CHECKING:
    from tollgate.formats.usage import Usage

# Tollgate's provider names, and genai-prices' ids for them (a configured provider names its own).
TABLE_IDS = {name: p.cost.price_table for name, p in PROVIDERS.items() if p.cost.price_table is not None}
_TABLES = {p.id: p for p in _TABLE_PROVIDERS}

# Endpoints that count a prompt's tokens without generating: free with every provider.
COUNTING_ENDPOINTS = frozenset(("messages.count_tokens", "count-tokens", "countTokens", "computeTokens"))
# Endpoints whose usage counts audio tokens with text ones. A model that prices audio apart (some
# 8x text) is priced exactly only from a usage that tells them apart (`Usage.by_modality`: a
# Realtime response's); from any other, not at all.
MIXED_MODALITY_ENDPOINTS = frozenset(("realtime", "audio.speech", "audio.transcriptions", "audio.translations"))
# genai-prices' price keys for tokens Tollgate counts apart; any other token price (audio, image,
# video) makes a model's price depend on what its usage does not say.
_TEXT_KEYS = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok", "output_reasoning_mtok")
# The price keys of the audio and images a usage may tell apart (`Usage.by_modality`: a Realtime
# response's), which the Rate prices apart.
_MODALITY_KEYS = (
    "input_audio_mtok", "cache_audio_read_mtok", "input_image_mtok", "cache_image_read_mtok", "output_audio_mtok",
)  # fmt: skip
_NOT_TOKENS = frozenset(("cache_write_1h_mtok", "web_searches_kcount", "storage_searches_kcount", "requests_kcount"))

_NANO_PER_USD_PER_MTOK = 1000  # a price per million tokens, per token, in nano-dollars
_DAY = 86_400


class PriceRule(Strict):
    """`prices:` one entry: US dollars per million tokens for the calls it matches, which wins over
    the maintained price table (negotiated rates, fine-tuned and private models)."""

    match: OverrideMatch = OverrideMatch()
    input_per_mtok: Money
    output_per_mtok: Money
    cached_input_per_mtok: Money | None = None  # default: input_per_mtok
    cache_write_per_mtok: Money | None = None  # default: input_per_mtok
    reasoning_per_mtok: Money | None = None  # default: output_per_mtok

    @field_validator("match")
    @classmethod
    def _provider_known(cls, value: OverrideMatch, info: ValidationInfo) -> OverrideMatch:
        known = known_providers(info)
        if value.provider is not None and value.provider not in known:
            raise ValueError(unknown_provider(value.provider, known))
        return value


@dataclass(frozen=True, slots=True)
class Rate:
    """US dollars per million tokens of each kind a call's usage tells apart. The cached input
    and cache writes are among the input, the reasoning among the output (as the audit counts)."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    # Price tiers by prompt size: a prompt of more than `start` tokens pays the tier's rate for
    # every token, input and output (genai-prices' tiers: Gemini 2.5 Pro's prompts over 200k
    # tokens, Claude's long context, GPT-5.4's over 272k). Ascending by start.
    tiers: tuple[tuple[int, Rate], ...] = ()
    source: str = ""  # "prices.0" (the configuration's) or "genai-prices aws/regional.anthropic…"
    # The table prices audio, image or video tokens apart from text for this model.
    other_modalities: bool = False
    # Those apart: each of them is one of the prices below (a usage that tells its audio and
    # images apart is priced exactly).
    modalities_known: bool = True
    # The prices of audio and image tokens where they differ from text's: None is the text price of
    # the same kind (a configured rule prices every modality alike).
    audio_input: Decimal | None = None
    audio_cached: Decimal | None = None
    image_input: Decimal | None = None
    image_cached: Decimal | None = None
    audio_output: Decimal | None = None
    # The ten prices as integers over one power of ten, for exact integer arithmetic per call.
    _scaled: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _denominator: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prices = (
            self.input, self.cached_input, self.cache_write, self.output, self.reasoning,
            _or(self.audio_input, self.input), _or(self.audio_cached, self.cached_input),
            _or(self.image_input, self.input), _or(self.image_cached, self.cached_input),
            _or(self.audio_output, self.output),
        )  # fmt: skip
        parts = [p.as_tuple() for p in prices]
        scale = max(0, *(-int(e.exponent) for e in parts))
        scaled = tuple(int("".join(map(str, e.digits)) or "0") * 10 ** (int(e.exponent) + scale) for e in parts)
        object.__setattr__(self, "_scaled", scaled)
        object.__setattr__(self, "_denominator", 10**scale)

    def for_prompt(self, input_tokens: int) -> Rate:
        """The rate a prompt of this many tokens pays."""
        rate = self
        for start, tier in self.tiers:
            if input_tokens <= start:
                break
            rate = tier
        return rate

    def highest(self) -> Rate:
        """Every input token at the highest input price of any modality, every output token at the
        highest output price: what bounds the cost of a call whose usage may be of any of them."""
        top_in = max(p for p in (self.input, self.audio_input, self.image_input) if p is not None)
        top_read = max(p for p in (self.cached_input, self.audio_cached, self.image_cached) if p is not None)
        top_out = max(p for p in (self.output, self.audio_output, self.reasoning) if p is not None)
        return Rate(
            input=top_in, cached_input=max(top_read, top_in), cache_write=max(self.cache_write, top_in),
            output=top_out, reasoning=top_out, source=self.source,
            tiers=tuple((start, tier.highest()) for start, tier in self.tiers),
        )  # fmt: skip


def _or(price: Decimal | None, otherwise: Decimal) -> Decimal:
    return otherwise if price is None else price


def cost_nanousd(rate: Rate, usage: Usage) -> int:
    """What the usage costs at this rate, in nano-dollars: exact, rounded half up once, on the
    total. Counts an answer could make inconsistent (negative, or cache reads above the prompt)
    are held within the prompt and the output, so that no part is priced twice or below zero.
    Audio and images, where the usage tells them apart, pay their own prices."""
    prompt = max(usage.input_tokens or 0, 0)
    read = _within(usage.cached_tokens, prompt)
    written = _within(usage.cache_write_tokens, prompt - read)
    output = max(usage.output_tokens or 0, 0)
    reasoning = _within(usage.reasoning_tokens, output)
    # Of the prompt, its audio and images (each of them partly read from the cache), and of the
    # output, its audio: what is left of each is text.
    audio_in = _within(usage.audio_input_tokens, prompt)
    image_in = _within(usage.image_input_tokens, prompt - audio_in)
    audio_read = _within(usage.audio_cached_tokens, min(read, audio_in))
    image_read = _within(usage.image_cached_tokens, min(read - audio_read, image_in))
    audio_out = _within(usage.audio_output_tokens, output - reasoning)
    text_read = read - audio_read - image_read
    text_in = max(0, prompt - read - written - (audio_in - audio_read) - (image_in - image_read))
    rate = rate.for_prompt(prompt)
    p_input, p_read, p_write, p_output, p_reasoning, p_audio, p_audio_read, p_image, p_image_read, p_audio_out = (
        rate._scaled
    )
    numerator = _NANO_PER_USD_PER_MTOK * (
        text_in * p_input
        + text_read * p_read
        + written * p_write
        + (audio_in - audio_read) * p_audio
        + audio_read * p_audio_read
        + (image_in - image_read) * p_image
        + image_read * p_image_read
        + (output - reasoning - audio_out) * p_output
        + audio_out * p_audio_out
        + reasoning * p_reasoning
    )
    return (2 * numerator + rate._denominator) // (2 * rate._denominator)


def _within(count: int | None, most: int) -> int:
    return min(max(count or 0, 0), max(most, 0))


def configured_rate(rule: PriceRule, source: str) -> Rate:
    """A `prices:` rule's rate: cached input and cache writes at the input price, reasoning at the
    output price, unless set."""
    return Rate(
        input=rule.input_per_mtok,
        cached_input=rule.input_per_mtok if rule.cached_input_per_mtok is None else rule.cached_input_per_mtok,
        cache_write=rule.input_per_mtok if rule.cache_write_per_mtok is None else rule.cache_write_per_mtok,
        output=rule.output_per_mtok,
        reasoning=rule.output_per_mtok if rule.reasoning_per_mtok is None else rule.reasoning_per_mtok,
        source=source,
    )


def table_rate(
    provider: str,
    model: str,
    when: float,
    context: tuple[tuple[str, str], ...] = (),
    registry: Mapping[str, Provider] = PROVIDERS,
) -> Rate | None:
    """The model's rate in genai-prices' bundled table, at the UTC date of `when` (some prices
    change on a date) and how the call ran (`Usage.price_context`: the table prices OpenAI's `flex`
    and `priority` tiers and Anthropic's fast mode apart); None when the table does not know the
    model or prices it by anything but tokens. Bedrock's regional, cross-region (`us.`, `eu.`,
    `global.`…) and ARN model ids are the table's own concern: it knows that a `global.` profile
    costs less than a regional one."""
    priced = registry.get(provider)
    if priced is None:
        return None
    model = priced.cost.priced_model(model)
    # Its own table first, then those of the vendors whose models it serves (Copilot's table does
    # not price every model it serves: the model's vendor's does).
    for name in (priced.cost.price_table, *priced.cost.price_fallbacks):
        table = _TABLES.get(name or "")
        info = table.find_model(model, all_providers=_TABLE_PROVIDERS) if table is not None else None
        if table is None or info is None:
            continue
        # genai-prices' table starts a price at a UTC date; naive datetimes are UTC to it.
        prices = info.get_prices(datetime.fromtimestamp(when, UTC), dict(context))
        if isinstance(prices.input_mtok, Decimal | TieredPrices):  # not per image, second of audio, request…
            return _rate_of(prices, f"genai-prices {table.id}/{info.id}")
    return None


def table_context_window(provider: str, model: str, registry: Mapping[str, Provider] = PROVIDERS) -> int | None:
    """The most input the model takes (its context window), as genai-prices' table gives it; None
    where the table does not know the model or its window."""
    priced = registry.get(provider)
    table = _TABLES.get(priced.cost.price_table or "") if priced is not None else None
    if priced is None or table is None:
        return None
    info = table.find_model(priced.cost.priced_model(model), all_providers=_TABLE_PROVIDERS)
    return None if info is None else info.context_window


def _rate_of(prices: ModelPrice, source: str) -> Rate:
    """genai-prices' prices as a Rate: cache reads and writes the table does not price apart pay
    the input price, reasoning the output price (as genai-prices counts them); tiers made one
    Rate per tier start, every price at what it is above that start."""
    values = {key: getattr(prices, key, None) for key in (*_TEXT_KEYS, *_MODALITY_KEYS)}
    starts = sorted({t.start for v in values.values() if isinstance(v, TieredPrices) for t in v.tiers})
    apart = {
        key
        for key, value in vars(prices).items()
        if not key.startswith("_") and value is not None and key not in _NOT_TOKENS and key not in _TEXT_KEYS
    }
    others, known = bool(apart), apart <= set(_MODALITY_KEYS)

    def at(key: str, start: int | None) -> Decimal | None:
        value = values[key]
        if not isinstance(value, TieredPrices):
            return value
        price = value.base
        for tier in value.tiers:  # sorted by start
            if start is not None and tier.start <= start:
                price = tier.price
        return price

    def flat(start: int | None) -> Rate:
        input_ = at("input_mtok", start) or Decimal(0)
        output = at("output_mtok", start) or Decimal(0)  # an embedding model's: it has no output
        read, write, reasoning = (
            at("cache_read_mtok", start),
            at("cache_write_mtok", start),
            at("output_reasoning_mtok", start),
        )
        return Rate(
            input=input_,
            cached_input=input_ if read is None else read,
            cache_write=input_ if write is None else write,
            output=output,
            reasoning=output if reasoning is None else reasoning,
            source=source,
            other_modalities=others,
            modalities_known=known,
            audio_input=at("input_audio_mtok", start),
            audio_cached=at("cache_audio_read_mtok", start),
            image_input=at("input_image_mtok", start),
            image_cached=at("cache_image_read_mtok", start),
            audio_output=at("output_audio_mtok", start),
        )

    base = flat(None)
    if not starts:
        return base
    return dataclasses.replace(base, tiers=tuple((start, flat(start)) for start in starts))


class Prices:
    """The configured price rules, then the table; each call shape (provider, model, client,
    groups, UTC day) looked up once: calls repeat their shapes, and a table search costs some
    100 µs where a call's whole overhead is about 1 ms."""

    def __init__(self, rules: Sequence[PriceRule], registry: Mapping[str, Provider] = PROVIDERS) -> None:
        self.rules = tuple(rules)
        self.registry = registry  # the providers by name, whose price tables the table's rates come from
        self._rates = tuple(configured_rate(rule, f"prices.{i}") for i, rule in enumerate(self.rules))
        self.memo: ShapeMemo[Rate | None] = ShapeMemo(self._find)
        self._windows: ShapeMemo[int | None] = ShapeMemo(self._window)

    def context_window(self, provider: str, model: str | None) -> int | None:
        """The most input the model takes, where the price table knows it."""
        return self._windows.get((provider, model), provider, model)

    def _window(self, provider: str, model: str | None) -> int | None:
        return None if model is None else table_context_window(provider, model, self.registry)

    def rate(
        self,
        provider: str,
        model: str | None,
        client: str | None,
        groups: tuple[str, ...],
        when: float | None = None,
        context: tuple[tuple[str, str], ...] = (),
    ) -> Rate | None:
        """The rate of a call made at `when` (default: now), run as `context` says
        (`Usage.price_context`; a configured rule prices every way alike); None when its price is
        unknown."""
        when = time.time() if when is None else when
        return self.memo.get(
            (provider, model, client, groups, int(when // _DAY), context),
            provider,
            model,
            client,
            groups,
            when,
            context,
        )

    def _find(
        self,
        provider: str,
        model: str | None,
        client: str | None,
        groups: tuple[str, ...],
        when: float,
        context: tuple[tuple[str, str], ...],
    ) -> Rate | None:
        for rule, rate in zip(self.rules, self._rates, strict=True):
            if matches(rule.match, provider, model, client, groups):
                return rate
        return None if model is None else table_rate(provider, model, when, context, self.registry)

    def cost(
        self,
        provider: str,
        model: str | None,
        client: str | None,
        groups: tuple[str, ...],
        endpoint: str | None,
        usage: Usage | None,
        when: float,
    ) -> int | None:
        """What a call cost, in nano-dollars; None when unknown: no usage read (or no prompt count
        in it), no price for the model, or usage that does not say what the price depends on."""
        if usage is None or usage.input_tokens is None:
            return None
        if endpoint in COUNTING_ENDPOINTS:
            return 0
        rate = self.rate(provider, model, client, groups, when, usage.price_context())
        if rate is None:
            return None
        mixed = rate.other_modalities and endpoint in MIXED_MODALITY_ENDPOINTS
        if mixed and not (usage.by_modality and rate.modalities_known):
            return None  # audio priced apart from text: exact only where the usage tells them apart
        return cost_nanousd(rate, usage)
