"""A compacted conversation read by the answer guardrails (`governance/guardrails/compaction_answer.py`):
Codex's `responses/compact` signed in with ChatGPT, a model call whose JSON answer (Responses output
items, one a `compaction` whose `encrypted_content` only OpenAI reads) is redacted in place or
refused; what is of a shape not known is refused unread; its usage is read as a response's."""

from __future__ import annotations

import json

import pytest

from support.answer_guards import compiled
from support.guardrail_samples import AWS_KEY_ID
from support.usage import responses_usage
from tollgate.formats import OPENAI_COMPACTION
from tollgate.formats.openai_responses.compaction_guard import guard_compaction_json
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, answer_format_of
from tollgate.providers.chatgpt import ChatGPT

KIND = "secrets.aws_access_key_id"
TEXT = f"deploy with the key {AWS_KEY_ID} today"
# Opaque to Codex as to Tollgate: it goes back to OpenAI as it came, whatever it looks like.
OPAQUE = "gAAAAB" + AWS_KEY_ID
COMPACTION = {"type": "compaction", "id": "cmp_1", "encrypted_content": OPAQUE}
USAGE = responses_usage(41000, 900, cached=1024, reasoning=600)


def message(text: str, role: str = "user", part: str = "input_text") -> dict:
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


def compacted(*items: dict, **fields: object) -> bytes:
    """A compacted conversation as OpenAI answers it."""
    answer = {"id": "cmp_resp_1", "object": "response.compaction", "created_at": 1764300000, "output": list(items),
              "usage": USAGE, **fields}  # fmt: skip
    return json.dumps(answer).encode()


def test_a_value_in_a_kept_message_is_redacted_the_compaction_as_it_came() -> None:
    body = compacted(message(TEXT), message(f"I used {AWS_KEY_ID}.", "assistant", "output_text"), COMPACTION)
    sent, denied, counts = guard_compaction_json(compiled("redact"), body)
    assert (denied, counts) == (None, {KIND: 2})
    redacted = json.loads(sent)
    assert redacted["output"] == [
        message(TEXT.replace(AWS_KEY_ID, f"[REDACTED:{KIND}]")),
        message(f"I used [REDACTED:{KIND}].", "assistant", "output_text"),
        COMPACTION,  # its encrypted content is not text: as it came
    ]
    assert {k: v for k, v in redacted.items() if k != "output"} == {
        k: v for k, v in json.loads(body).items() if k != "output"
    }


def test_a_value_to_deny_refuses_the_answer() -> None:
    body = compacted(message(TEXT), COMPACTION)
    assert guard_compaction_json(compiled("deny"), body) == (body, KIND, {KIND: 1})


def test_a_clean_answer_goes_byte_for_byte() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": OPAQUE}
    call = {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":["ls"]}'}
    output = {"type": "function_call_output", "call_id": "call_1", "output": "README.md"}
    body = compacted(message("fix the tests"), reasoning, call, output, COMPACTION)
    assert guard_compaction_json(compiled("deny"), body) == (body, None, {})


@pytest.mark.parametrize(
    "body",
    [
        compacted(message("hi"), {"type": "summary_v3", "text": TEXT}),  # an item of a type not known
        compacted(message("hi"), {"type": "summary_v3", "text": "nothing"}),
        compacted(message("hi"), {"text": "no type"}),
        compacted(message("hi"), "an item that is no object"),
        compacted(COMPACTION, note=TEXT),  # a field not known
        compacted(COMPACTION, usage={"input_tokens": 1, "note": "words"}),
        compacted(COMPACTION, created_at="yesterday"),
        compacted(COMPACTION, id={"text": "words"}),
        json.dumps({"output": {"type": "compaction"}}).encode(),
        json.dumps({"id": "cmp_resp_1"}).encode(),
        b"[]",
        b"not json",
    ],
)
def test_what_is_of_a_shape_not_known_is_refused_unread(body: bytes) -> None:
    assert guard_compaction_json(compiled("redact"), body) == (body, "unread", {})


def test_codexs_compaction_is_a_model_call_whose_json_answer_is_read() -> None:
    body = {"model": "gpt-5.1-codex", "input": [message("hi")], "instructions": "You are Codex."}
    classification = ChatGPT().classify("POST", "/backend-api/codex/responses/compact", body)
    assert (classification.endpoint, classification.model, classification.service) == (
        "responses.compact", "gpt-5.1-codex", False)  # fmt: skip
    assert answer_format_of(classification, "gpt-5.1-codex") == OPENAI_COMPACTION
    assert not ANSWER_FORMATS[OPENAI_COMPACTION].streams("text/event-stream", True)


def test_a_compactions_usage_is_read_as_a_responses() -> None:
    classification = ChatGPT().classify("POST", "/backend-api/codex/responses/compact", {"model": "m", "input": []})
    usage = ChatGPT.cost.usage(classification, {b"content-type": b"application/json"}, compacted(COMPACTION))
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens) == (
        41000, 900, 1024, 600)  # fmt: skip
