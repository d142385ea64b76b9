"""Token usage: what an answer reports it used, in one shape whatever its wire format.

Plain data, importing nothing of Tollgate: the providers' usage readers, the format translators,
the audit, the ledger, pricing and the metrics all read and write this one type. Counts follow one
convention whatever the format: `input_tokens` counts every prompt token (cache reads and writes
among them), `output_tokens` every generated one (reasoning among them); a format that counts
otherwise (Anthropic's input without its cache, Gemini's prompt without its tools' prompts and its
candidates without thoughts) converts on reading and writing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


def price_context(service_tier: str | None, speed: str | None) -> tuple[tuple[str, str], ...]:
    """How a call runs, as the price table's variants are chosen by (genai-prices' keys and values:
    Gemini's `SERVICE_TIER_PRIORITY` is `priority` there)."""
    if service_tier is not None:
        service_tier = service_tier.lower().removeprefix("service_tier_")
    return tuple((k, v) for k, v in (("service_tier", service_tier), ("speed", speed)) if v is not None)


@dataclass(slots=True, kw_only=True)  # by name: a field added must not shift the others
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    # The total as the provider reported it (None where it reported none), which may differ from
    # input plus output (`counted_total`).
    total_tokens: int | None = None
    cached_tokens: int | None = None  # cache reads, among input_tokens
    # Cache writes, among input_tokens too: Anthropic and Bedrock price them apart (above input).
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None  # among output_tokens
    # Where an answer tells them (a Realtime response): the tokens of audio and images among
    # input_tokens, of them those among cached_tokens, and the audio among output_tokens. Models
    # that take them are priced for each apart from text.
    audio_input_tokens: int | None = None
    image_input_tokens: int | None = None
    audio_cached_tokens: int | None = None
    image_cached_tokens: int | None = None
    audio_output_tokens: int | None = None
    finish_reason: str | None = None
    # How the provider says it ran the call, which some models are priced by: its processing tier
    # (`service_tier`: OpenAI's `default`, `flex`, `priority`…; Anthropic's `standard`, `priority`;
    # Gemini's, from a header; Bedrock's) and its `speed` (Anthropic's `fast`, `standard`; Bedrock's
    # latency, `optimized`, `standard`).
    service_tier: str | None = None
    speed: str | None = None

    @property
    def counted_total(self) -> int | None:
        """Input plus output, None where either is unknown: the total where the provider reported
        none, and the one a translated answer writes whatever its upstream reported."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int | None:
        """The input less its cache reads and writes, as Anthropic and Bedrock count their input."""
        if self.input_tokens is None:
            return None
        return max(0, self.input_tokens - (self.cached_tokens or 0) - (self.cache_write_tokens or 0))

    def update(self, later: Usage) -> None:
        """Takes a later report's values over these, field by field (None keeps the earlier one)."""
        for name in _FIELDS:
            value = getattr(later, name)
            if value is not None:
                setattr(self, name, value)

    def price_context(self) -> tuple[tuple[str, str], ...]:
        """What the price table's variants are chosen by."""
        return price_context(self.service_tier, self.speed)

    @property
    def by_modality(self) -> bool:
        """Whether it tells its audio apart from its text, in and out (what pricing them apart needs)."""
        return self.audio_input_tokens is not None and self.audio_output_tokens is not None


_FIELDS = tuple(f.name for f in fields(Usage))
