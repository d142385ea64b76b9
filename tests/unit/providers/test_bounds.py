"""What bounds the work a call starts, as each provider reads it: how many answers it asks for
(`n`, `best_of`, `candidateCount`, …), and the batch or asynchronous job it starts, with what its
requests may generate together where they are all in the body."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import examples

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Batch
from tollgate.governance.limits.max_output import max_output_tokens

from .common import ANTHROPIC, BEDROCK, GEMINI, OPENAI, VERTEX

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("provider", "path", "body", "answers", "max_tokens"),
    [
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": 100, "max_tokens": 500}, 100, 500),
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": "3"}, 3, None),
        (OPENAI, "/v1/chat/completions", {"model": "gpt-4o", "messages": HI, "n": None}, 1, None),
        (OPENAI, "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "n": 2, "best_of": 5}, 10, None),
        (OPENAI, "/v1/completions", {"prompt": "x", "best_of": 10, "max_tokens": 4000}, 10, 4000),
        (OPENAI, "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "n": 4}, 4, None),
        # Every prompt of a list is answered: n of best_of each.
        (OPENAI, "/v1/completions", {"prompt": ["a", "b", "c"], "max_tokens": 500}, 3, 500),
        (OPENAI, "/v1/completions", {"prompt": ["a"] * 2000, "max_tokens": 500}, 2000, 500),
        (OPENAI, "/v1/completions", {"prompt": ["a", "b"], "n": 2, "best_of": 3}, 12, None),
        (OPENAI, "/v1/completions", {"prompt": [[1, 2], [3], [4, 5, 6]], "n": 2}, 6, None),
        (OPENAI, "/v1/completions", {"prompt": [1, 2, 3], "n": 2}, 2, None),  # one prompt as tokens
        (OPENAI, "/v1/completions", {"prompt": ["a", [1, 2]], "best_of": 2}, 4, None),
        (OPENAI, "/v1/completions", {"prompt": [], "n": 2}, 2, None),
        (ANTHROPIC, "/v1/complete", {"model": "claude-2.1", "prompt": "x", "max_tokens_to_sample": 9}, 1, 9),
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


_PROMPT = st.text(max_size=5) | st.lists(st.integers(0, 100_000), min_size=1, max_size=4)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(_PROMPT, min_size=1, max_size=30),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 5000),
)
def test_a_legacy_completion_asks_for_each_prompts_answers(
    prompts: list, n: int, best_of: int, max_tokens: int
) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": prompts, "n": n, "best_of": best_of, "max_tokens": max_tokens}
    facts = OPENAI.classify("POST", "/v1/completions", body).facts
    assert (facts.answers, facts.max_tokens) == (len(prompts) * n * best_of, max_tokens)
    # One prompt, as a string or as tokens, is one.
    for one in prompts:
        assert OPENAI.classify("POST", "/v1/completions", {**body, "prompt": one}).facts.answers == n * best_of


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


def anthropic_batch(*bounds: int | None) -> dict:
    return {
        "requests": [
            {"custom_id": str(i), "params": {"model": "claude-haiku-4-5", "messages": HI}}
            | ({} if bound is None else {"params": {"model": "claude-haiku-4-5", "messages": HI, "max_tokens": bound}})
            for i, bound in enumerate(bounds)
        ]
    }


def gemini_batch(*configs: dict | None, model: str | None = None) -> dict:
    requests = []
    for config in configs:
        request: dict[str, Any] = {"contents": [{"parts": [{"text": "hi"}]}]}
        if config is not None:
            request["generationConfig"] = config
        if model is not None:
            request["model"] = model
        requests.append({"request": request, "metadata": {"key": "k"}})
    return {"batch": {"displayName": "b", "inputConfig": {"requests": {"requests": requests}}}}


@pytest.mark.parametrize(
    ("provider", "path", "body", "batch"),
    [
        # Every request in the body: what they may generate together.
        (ANTHROPIC, "/v1/messages/batches", anthropic_batch(64000, 64000, 10), Batch(3, 128010, 0)),
        (ANTHROPIC, "/v1/messages/batches", anthropic_batch(5, None), Batch(2, 5, 1)),
        (ANTHROPIC, "/v1/messages/batches", {"requests": []}, Batch(0, 0, 0)),
        (ANTHROPIC, "/v1/messages/batches", {"requests": "not a list"}, Batch(None)),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
         gemini_batch({"maxOutputTokens": 100, "candidateCount": 3}, None, {"max_output_tokens": 7}), Batch(3, 307, 1)),
        (GEMINI, "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
         gemini_batch({"candidateCount": 2}, model="models/gemini-2.5-flash"), Batch(1, 0, 2)),
        (GEMINI, "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent",
         {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"content": {}}}] * 4}}}}, Batch(4, 0, 0)),
        # In a file or a bucket: not read.
        (GEMINI, "/v1beta/models/gemini-2.5-flash:batchGenerateContent",
         {"batch": {"input_config": {"file_name": "files/abc"}}}, Batch(None)),
        (OPENAI, "/v1/batches", {"input_file_id": "file-1", "endpoint": "/v1/chat/completions"}, Batch(None)),
        (GEMINI, "/v1beta/openai/batches", {"input_file_id": "files/x", "endpoint": "/v1/chat/completions"}, Batch(None)),
        (VERTEX, "/v1/projects/p/locations/us-central1/batchPredictionJobs",
         {"model": "publishers/google/models/gemini-2.5-flash",
          "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}}}, Batch(None)),
        # Fine-tuning jobs, Assistants' and evals' runs, videos: not counted in tokens.
        (OPENAI, "/v1/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": "file-1"}, Batch(None)),
        (OPENAI, "/v1/threads/runs", {"assistant_id": "asst_1"}, Batch(None)),
        (OPENAI, "/v1/threads/thread_1/runs", {"assistant_id": "asst_1"}, Batch(None)),
        (OPENAI, "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", {"tool_outputs": []}, Batch(None)),
        (OPENAI, "/v1/evals/eval_1/runs", {"data_source": {}}, Batch(None)),
        (OPENAI, "/v1/videos/video_1/remix", {"prompt": "x"}, Batch(1)),
        (VERTEX, "/v1/projects/p/locations/us-central1/tuningJobs", {"baseModel": "gemini-2.5-flash"}, Batch(None)),
        (GEMINI, "/v1beta/tunedModels", {"baseModel": "models/gemini-1.5-flash-001-tuning"}, Batch(None)),
        (GEMINI, "/v1beta/models/veo-3.0-generate-001:predictLongRunning", {"instances": [{"prompt": "x"}]}, Batch(1)),
        (VERTEX, "/v1/projects/p/locations/l/publishers/google/models/veo-3.0-generate-001:predictLongRunning",
         {"instances": [{"prompt": "x"}]}, Batch(1)),
        (BEDROCK, "/async-invoke", {"modelId": "amazon.nova-reel-v1:0", "modelInput": {}}, Batch(1)),
    ],
)  # fmt: skip
def test_a_batch_or_job_is_one_call_that_starts_many_requests_work(
    provider: Any, path: str, body: dict, batch: Batch
) -> None:
    assert provider.classify("POST", path, body).facts.batch == batch


def test_an_openai_video_is_a_job_though_its_body_goes_unread() -> None:
    c = OPENAI.classify("POST", "/v1/videos", None)
    assert (c.endpoint, c.unread, c.facts.batch) == ("videos", ("model", "request"), Batch(1))


@pytest.mark.parametrize(
    ("provider", "method", "path"),
    [
        (OPENAI, "GET", "/v1/batches/batch_1"),
        (OPENAI, "POST", "/v1/batches/batch_1/cancel"),
        (OPENAI, "GET", "/v1/fine_tuning/jobs"),
        (OPENAI, "POST", "/v1/files"),
        (ANTHROPIC, "POST", "/v1/messages/batches/msgbatch_1/cancel"),
        (ANTHROPIC, "GET", "/v1/messages/batches"),
        (GEMINI, "POST", "/v1beta/batches/b1:cancel"),
        (VERTEX, "GET", "/v1/projects/p/locations/l/batchPredictionJobs"),
        (VERTEX, "POST", "/v1/projects/p/locations/l/batchPredictionJobs/1:cancel"),
        (BEDROCK, "GET", "/async-invoke"),
    ],
)
def test_reading_or_cancelling_a_job_starts_none(provider: Any, method: str, path: str) -> None:
    assert provider.classify(method, path, {} if method == "POST" else None).facts.batch is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"batch": "x"}, "'batch' is not an object"),
        ({"contents": []}, "'batch' is not an object"),
        ({"batch": {}}, r"'batch.inputConfig' is not an object"),
        ({"batch": {"inputConfig": {"requests": {"requests": []}, "fileName": "files/x"}}}, "both a file and inline"),
        ({"batch": {"inputConfig": {"requests": []}}}, r"'batch.inputConfig.requests.requests' is not a list"),
        ({"batch": {"inputConfig": {"requests": {"requests": ["x"]}}}}, "a batch's request is not an object"),
        (gemini_batch({"maxOutputTokens": "lots"}), r"'generationConfig.maxOutputTokens' is not an integer"),
        (gemini_batch({"candidateCount": -1}), r"'generationConfig.candidateCount' is out of range"),
        # Which model Google would run is not Tollgate's to guess.
        (gemini_batch(None, model="models/gemini-2.5-pro"), "names another model than the path"),
    ],
)
def test_a_gemini_batch_that_cannot_be_read_exactly_is_refused(body: dict, message: str) -> None:
    with pytest.raises(Unreadable, match=message):
        GEMINI.classify("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent", body)


def test_an_anthropic_batch_bound_that_cannot_be_read_exactly_is_refused() -> None:
    body = {"requests": [{"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": "many"}}]}
    with pytest.raises(Unreadable, match="'max_tokens' is not an integer") as raised:
        ANTHROPIC.classify("POST", "/v1/messages/batches", body)
    assert raised.value.endpoint == "messages.batches"


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


def test_anthropics_text_completions_bound_their_answer_by_max_tokens_to_sample():
    body = {"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 300}
    classification = ANTHROPIC.classify("POST", "/v1/complete", body)
    assert (classification.endpoint, classification.model) == ("completions", "claude-2.1")
    facts = classification.facts
    assert (facts.answers, facts.max_tokens, facts.message_count, facts.has_tools) == (1, 300, None, False)
