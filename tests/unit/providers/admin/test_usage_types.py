"""A vendor's result, whatever JSON it holds, is read or refused by name (ValueError), never
anything else: a bucket not understood is named and the rest goes on."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from tollgate.providers.admin import anthropic, openai
from tollgate.providers.admin.usage_types import VendorUsage

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = ["api_key_id", "project_id", "model", "input_tokens", "input_cached_tokens", "output_tokens",
          "num_model_requests", "uncached_input_tokens", "cache_read_input_tokens", "cache_creation", "workspace_id"]  # fmt: skip
RESULTS = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8)
DAY = date(2026, 11, 20)


@given(RESULTS)
def test_an_openai_result_is_read_or_refused_by_name(result):
    try:
        usage = openai._usage(DAY, result)
    except ValueError as e:
        assert any(name in str(e) for name in FIELDS)
    else:
        assert isinstance(usage, VendorUsage) and usage.input_tokens >= 0


@given(RESULTS)
def test_an_anthropic_result_is_read_or_refused_by_name(result):
    try:
        usage = anthropic._usage(DAY, result, {})
    except ValueError as e:
        assert any(name in str(e) for name in [*FIELDS, "ephemeral"])
    else:
        assert usage.input_tokens == usage.cached_input_tokens + usage.cache_write_tokens + (
            result.get("uncached_input_tokens") or 0)  # fmt: skip


@given(JSON)
def test_an_amount_is_read_or_refused_by_name(amount):
    for read in (
        lambda: openai._amount(DAY, {"amount": {"value": amount}}),
        lambda: anthropic._amount(DAY, {"amount": amount}),
    ):
        try:
            got = read()
        except ValueError as e:
            assert "amount" in str(e)
        else:
            assert got.is_finite()
