"""What bounds the work a call starts, as each provider reads it: how many answers it asks for
(`n`, `best_of`, `candidateCount`, …), and the most each may hold where it sets no bound."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.exact_reading import Unreadable
from tollgate.max_output import max_output_tokens

from .common import ANTHROPIC, BEDROCK, GEMINI, OPENAI, VERTEX

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("provider", "path", "body", "answers", "max_tokens"),
    [
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": 100, "max_tokens": 500}, 100, 500),
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": "3"}, 3, None),
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": None}, 1, None),
        (OPENAI, "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "n": 2, "best_of": 5}, 5, None),
        (OPENAI, "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "n": 4}, 4, None),
        (OPENAI, "/v1/images/generations", {"model": "gpt-image-1", "prompt": "x", "n": 10}, 10, None),
        # Every OpenAI-compatible endpoint reads the body as OpenAI does.
        (GEMINI, "/v1beta/openai/chat/completions", {"model": "gemini-2.5-flash", "messages": HI, "n": 8}, 8, None),
        (ANTHROPIC, "/v1/chat/completions", {"model": "claude-haiku-4-5", "messages": HI, "n": 2}, 2, None),
        (BEDROCK, "/openai/v1/chat/completions", {"model": "openai.gpt-oss-20b-1:0", "messages": HI, "n": 6}, 6, None),
        (VERTEX, "/v1/projects/p/locations/l/endpoints/openapi/chat/completions",
         {"model": "google/gemini-2.5-flash", "messages": HI, "n": 7}, 7, None),
        # Gemini's candidateCount, in either spelling; on Vertex AI too.
        (GEMINI, "/v1beta/models/gemini-2.5-flash:generateContent",
         {"contents": [], "generationConfig": {"candidateCount": 8, "maxOutputTokens": 10000}}, 8, 10000),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
         {"contents": [], "generation_config": {"candidate_count": 4}}, 4, None),
        (VERTEX, "/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:generateContent",
         {"contents": [], "generationConfig": {"candidateCount": 3, "maxOutputTokens": 7}}, 3, 7),
        # Bedrock: the model families' own fields, and Converse's fields passed to the model.
        (BEDROCK, "/model/cohere.command-text-v14/invoke", {"prompt": "x", "num_generations": 5, "max_tokens": 9}, 5, 9),
        (BEDROCK, "/model/ai21.jamba-1-5-large-v1:0/invoke", {"messages": HI, "n": 16, "max_tokens": 9}, 16, 9),
        (BEDROCK, "/model/ai21.j2-ultra-v1/invoke", {"prompt": "x", "numResults": 3, "maxTokens": 40}, 3, 40),
        (BEDROCK, "/model/openai.gpt-oss-120b-1:0/invoke", {"messages": HI, "max_completion_tokens": 70}, 1, 70),
        (BEDROCK, "/model/ai21.jamba-1-5-large-v1:0/converse",
         {"messages": [], "inferenceConfig": {"maxTokens": 9}, "additionalModelRequestFields": {"n": 4}}, 4, 9),
    ],
)  # fmt: skip
def test_the_answers_a_call_asks_for_are_read(provider: Any, path: str, body: dict, answers: int, max_tokens) -> None:
    facts = provider.classify("POST", path, body).facts
    assert (facts.answers, facts.max_tokens, facts.batch) == (answers, max_tokens, None)


@pytest.mark.parametrize(
    ("provider", "path", "body", "message"),
    [
        (OPENAI, "/v1/chat/completions", {"messages": HI, "n": 0}, "'n' is out of range"),
        (OPENAI, "/v1/chat/completions", {"messages": HI, "n": -3}, "'n' is out of range"),
        (OPENAI, "/v1/chat/completions", {"messages": HI, "n": 2.5}, "'n' is not an integer"),
        (OPENAI, "/v1/chat/completions", {"messages": HI, "n": True}, "'n' is not an integer"),
        (OPENAI, "/v1/completions", {"prompt": "x", "best_of": "many"}, "'best_of' is not an integer"),
        (OPENAI, "/v1/images/generations", {"prompt": "x", "n": 2**64}, "'n' is out of range"),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:generateContent",
         {"generationConfig": {"candidateCount": 0}}, "'generationConfig.candidateCount' is out of range"),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:generateContent",
         {"generationConfig": {"candidateCount": 2, "candidate_count": 2}}, "both 'candidateCount' and 'candidate_count'"),
        (BEDROCK, "/model/cohere.command-text-v14/invoke", {"prompt": "x", "num_generations": "5x"},
         "'num_generations' is not an integer"),
        (BEDROCK, "/model/ai21.jamba-1-5-large-v1:0/converse",
         {"messages": [], "additionalModelRequestFields": {"n": 0}}, "'additionalModelRequestFields.n' is out of range"),
    ],
)  # fmt: skip
def test_a_count_of_answers_that_cannot_be_read_exactly_is_refused(
    provider: Any, path: str, body: dict, message: str
) -> None:
    with pytest.raises(Unreadable, match=message):
        provider.classify("POST", path, body)


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gpt-4o", 16_384),
        ("gpt-4o-mini-2024-07-18", 16_384),
        ("gpt-4o-2024-05-13", 4_096),
        ("gpt-4.1-nano", 32_768),
        ("gpt-5", 128_000),
        ("o3-mini-2025-01-31", 100_000),
        ("claude-sonnet-4-5-20250929", 64_000),
        ("claude-opus-4-1@20250805", 32_000),  # Vertex AI's
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 128_000),  # Bedrock's
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0", 8_192),
        ("models/gemini-2.5-flash", 65_536),
        ("gemini-2.0-flash-001", 8_192),
        ("gpt-4.9", None),  # not gpt-4's
        ("gpt-5.7", None),  # not gpt-5's
        ("my-fine-tune", None),
        (None, None),
    ],
)
def test_a_models_maximum_output_is_known_by_its_family(model: str | None, tokens: int | None) -> None:
    assert max_output_tokens(model) == tokens
