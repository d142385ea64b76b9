"""An image generation's answer read by the answer guardrails (`governance/guardrails/images_answer.py`):
each image's `revised_prompt` redacted in place or the answer denied; the images as they came; what
is no JSON object, or images of another shape, refused as unread."""

from __future__ import annotations

import json

import pytest

from support.answer_guards import compiled
from support.guardrail_samples import AWS_KEY_ID
from tollgate.formats import OPENAI_API, OPENAI_IMAGES
from tollgate.formats.answer_reading.events import UnreadStream
from tollgate.formats.openai_api.images_guard import guard_images_json
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS, answer_format_of

TEXT = f"A cat reading the key {AWS_KEY_ID} aloud."
IMAGE = {"b64_json": "iVBORw0K" + AWS_KEY_ID}  # base64 of an image: no text


def answer(*images: dict) -> bytes:
    return json.dumps({"created": 1, "data": list(images)}).encode()


def test_a_revised_prompt_is_redacted_in_place_the_images_as_they_came() -> None:
    body = answer({**IMAGE, "revised_prompt": TEXT}, {"url": "https://img.example/1.png"})
    sent, denied, counts = guard_images_json(compiled("redact"), body)
    assert (denied, counts) == (None, {"secrets.aws_access_key_id": 1})
    assert json.loads(sent)["data"] == [
        {**IMAGE, "revised_prompt": TEXT.replace(AWS_KEY_ID, "[REDACTED:secrets.aws_access_key_id]")},
        {"url": "https://img.example/1.png"},
    ]


def test_a_revised_prompt_with_a_value_to_deny_denies_the_answer() -> None:
    body = answer({**IMAGE, "revised_prompt": TEXT})
    assert guard_images_json(compiled("deny"), body) == (
        body,
        "secrets.aws_access_key_id",
        {"secrets.aws_access_key_id": 1},
    )


def test_a_clean_answer_goes_as_it_came() -> None:
    body = answer({**IMAGE, "revised_prompt": "A cat."}, IMAGE)
    assert guard_images_json(compiled("redact"), body) == (body, None, {})


@pytest.mark.parametrize(
    "body",
    [b"[1]", b'"a cat"', b"not json", json.dumps({"data": "a cat"}).encode(), json.dumps({"data": ["a cat"]}).encode(),
     answer({"revised_prompt": ["a", "cat"]})],
)  # fmt: skip
def test_what_is_of_another_shape_is_unread(body: bytes) -> None:
    assert guard_images_json(compiled("redact"), body) == (body, "unread", {})


def test_only_a_json_generation_is_read_a_stream_stops_unread() -> None:
    asked = Classification("images.generations", "dall-e-3", wire_format=OPENAI_API)
    streamed = Classification("images.generations", "gpt-image-1", RequestFacts(stream=True), OPENAI_API)
    assert (answer_format_of(asked, "dall-e-3"), answer_format_of(streamed, "gpt-image-1")) == (OPENAI_IMAGES, None)
    assert not ANSWER_FORMATS[OPENAI_IMAGES].streams("text/event-stream", True)
    guard = UnreadStream(compiled("redact"))
    assert (guard.feed(b"data: {}\n\n"), guard.denied, guard.counts) == (b"", "unread", {})


@pytest.mark.parametrize(
    "where",
    [{"id": AWS_KEY_ID}, {"x": {"type": AWS_KEY_ID}}, {"data": [{**IMAGE, "x": {"signature": AWS_KEY_ID}}]}],
)
def test_every_other_string_is_read_but_the_images_and_counts(where: dict) -> None:
    body = json.dumps({"created": 1, "data": [IMAGE], **where}).encode()
    sent, denied, counts = guard_images_json(compiled("redact"), body)
    assert sent.count(AWS_KEY_ID.encode()) == 1  # the image's base64 alone, as it came
    assert (denied, counts) == (None, {"secrets.aws_access_key_id": 1})
    assert b"[REDACTED:secrets.aws_access_key_id]" in sent
    assert guard_images_json(compiled("deny"), body)[1] == "secrets.aws_access_key_id"


def test_an_answer_with_its_own_members_goes_as_it_came() -> None:
    body = json.dumps({"created": 1, "background": "opaque", "output_format": "png", "quality": "high",
                       "size": "1024x1024", "data": [{**IMAGE, "url": "https://img.example/a.png?sig=Xk3R9mQ2vL8pT5"}],
                       "usage": {"input_tokens": 9, "output_tokens": 4160}}).encode()  # fmt: skip
    assert guard_images_json(compiled("redact"), body) == (body, None, {})
