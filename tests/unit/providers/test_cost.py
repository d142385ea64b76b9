"""The cost part alone (`providers/cost.py`): price tables, free endpoints and usage counted as a
provider bills it, without a provider around it."""

import json

import pytest

from tollgate.formats.request_facts import Classification
from tollgate.formats.usage_reading import Counted, WholeBodyReader
from tollgate.providers import PROVIDERS
from tollgate.providers.bedrock import BedrockCost
from tollgate.providers.cost import RESPONSE_HEADERS, Cost, ModelsPrefixed
from tollgate.providers.gemini import GeminiCost

CHAT = Classification(endpoint="chat.completions", wire_format="openai-api")
# An OpenAI-compatible answer whose reasoning is reported beside its completion (Gemini's, xAI's).
ANSWER = json.dumps(
    {
        "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "total_tokens": 20,
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }
).encode()
JSON = {"content-type": "application/json"}


def test_a_plain_cost_prices_nothing_and_reads_what_the_format_reads() -> None:
    cost = Cost()
    assert (cost.price_table, cost.price_fallbacks, cost.free_endpoints) == (None, (), frozenset())
    assert cost.response_headers == RESPONSE_HEADERS == {b"content-type", b"content-encoding"}
    assert cost.priced_model("models/x") == "models/x"
    assert (cost.answer_service_tier({"x": "y"}), cost.answer_speed({"x": "y"})) == (None, None)
    assert cost.usage(CHAT, JSON, ANSWER).output_tokens == 4


def test_reasoning_beside_the_completion_is_billed_as_output() -> None:
    apart = Cost(reasoning_in_completion=False)
    assert apart.usage(CHAT, JSON, ANSWER).output_tokens == 10
    read = Cost().usage(CHAT, JSON, ANSWER)
    assert apart.billed_usage(CHAT, read).output_tokens == 10
    assert Cost().billed_usage(CHAT, read) is read


@pytest.mark.parametrize(("reasoning_in_completion", "kind"), [(True, "plain"), (False, Counted)])
def test_a_streamed_answers_reader_counts_as_billed(reasoning_in_completion: bool, kind: object) -> None:
    reader = Cost(reasoning_in_completion=reasoning_in_completion).usage_reader(
        CHAT, {"content-type": "text/event-stream"}
    )
    assert isinstance(reader, Counted) is (kind is Counted)
    assert not isinstance(reader, WholeBodyReader)


def test_a_whole_answer_is_read_whole() -> None:
    assert isinstance(Cost().usage_reader(CHAT, JSON), WholeBodyReader)


def test_a_models_prefixed_cost_names_the_tables_model() -> None:
    assert ModelsPrefixed("google").priced_model("models/gemini-2.5-pro") == "gemini-2.5-pro"


def test_the_answer_header_hooks_of_bedrock_and_gemini() -> None:
    bedrock = BedrockCost()
    assert bedrock.answer_service_tier({"x-amzn-bedrock-service-tier": "priority"}) == "priority"
    assert bedrock.answer_speed({"x-amzn-bedrock-performanceconfig-latency": "optimized"}) == "optimized"
    assert GeminiCost().answer_service_tier({"x-gemini-service-tier": "flex"}) == "flex"
    assert GeminiCost().answer_speed({"x-gemini-service-tier": "flex"}) is None


@pytest.mark.parametrize(
    ("name", "table", "reasoning_in_completion"),
    [
        ("openai", "openai", True),
        ("azure", "azure", True),
        ("anthropic", "anthropic", True),
        ("bedrock", "aws", True),
        ("gemini", "google", False),
        ("vertex", "google", False),
        ("code_assist", "google", True),
        ("copilot", "github-copilot", True),
        ("chatgpt", "openai", True),
    ],
)
def test_each_provider_declares_its_cost(name: str, table: str, reasoning_in_completion: bool) -> None:
    cost = PROVIDERS[name].cost
    assert (cost.price_table, cost.reasoning_in_completion) == (table, reasoning_in_completion)


def test_azure_calls_free_what_openai_does() -> None:
    assert PROVIDERS["azure"].cost.free_endpoints == PROVIDERS["openai"].cost.free_endpoints
    assert "moderations" in PROVIDERS["openai"].cost.free_endpoints
