"""A Realtime session's responses as the limits read them: a client's `response.create` (its
output bound, read exactly), the server events that begin and end a response or refuse a client
event, and the usage each reports, priced with its audio apart from its text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.openai_realtime.events import response_done_usage, summed
from tollgate.formats.openai_realtime.responses import realtime_error, response_create, server_event
from tollgate.formats.usage import Usage
from tollgate.governance.limits.pricing import Prices, Rate, cost_nanousd

WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()


def message(event: dict) -> bytes:
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("response", "bound"),
    [
        (None, None),
        ({"max_output_tokens": 500}, 500),
        ({"max_output_tokens": "inf"}, None),
        ({"max_response_output_tokens": 300}, 300),  # the beta's name
        ({"max_output_tokens": 900, "max_response_output_tokens": 300}, 300),
    ],
)
def test_a_response_create_is_read_for_its_answers_bound(response, bound):
    event = {"type": "response.create", "event_id": "ev_1"}
    if response is not None:
        event["response"] = response
    create = response_create(message(event))
    assert create is not None
    assert (create.facts.max_tokens, create.facts.input_held, create.event_id) == (bound, True, "ev_1")


def test_other_messages_are_not_responses_and_audio_is_never_parsed():
    assert response_create(message({"type": "conversation.item.create", "item": {"text": "response.create"}})) is None
    assert response_create(b'{"type": "input_audio_buffer.append", "audio": "' + b"A" * 1000 + b'"}') is None
    assert response_create(b"not json, and no response.create in it") is None


@pytest.mark.parametrize(
    "raw",
    [
        # An escape may spell the type: read whole, and a response.create all the same.
        b'{"type": "response\\u002ecreate", "response": {"max_output_tokens": 7}}',
        b'{"type": "\\u0072esponse.create"}',
    ],
)
def test_a_response_create_spelled_with_escapes_is_one(raw):
    assert response_create(raw) is not None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "response.create", "response": {"max_output_tokens": "lots"}}',
        b'{"type": "response.create", "response": []}',
        b'{"type": "response.create", "type": "response.create"}',
        b'{"type": "response.create"',
    ],
)
def test_a_response_create_that_cannot_be_read_exactly_is_refused(raw):
    with pytest.raises(Unreadable):
        response_create(raw)


def test_the_server_events_that_begin_end_or_refuse():
    created = server_event(message({"type": "response.created", "response": {"id": "resp_1"}}))
    assert created is not None and (created.kind, created.response_id) == ("created", "resp_1")
    done = server_event(
        message(
            {
                "type": "response.done",
                "response": {"id": "resp_1", "status": "completed", "usage": {"input_tokens": 10, "output_tokens": 5}},
            }
        )
    )
    assert done is not None and (done.kind, done.response_id) == ("done", "resp_1")
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (10, 5)
    error = server_event(
        message({"type": "error", "error": {"type": "invalid_request_error", "code": "busy", "event_id": "ev_9"}})
    )
    assert error is not None and (error.kind, error.event_id, error.error) == ("error", "ev_9", "busy")
    assert server_event(message({"type": "response.output_text.delta", "delta": "response.done"})) is None


def test_a_refusal_is_an_error_event_naming_the_client_event():
    body = {"error": {"message": "no room", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
    event = realtime_error(body, {"x-tollgate-error": "budget_exceeded"}, "ev_1")
    assert event == {
        "type": "error",
        "error": {
            "message": "no room",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
            "event_id": "ev_1",
            "headers": {"x-tollgate-error": "budget_exceeded"},
        },
    }


AUDIO_USAGE = {
    "total_tokens": 1_500,
    "input_tokens": 1_000,
    "output_tokens": 500,
    "input_token_details": {
        "text_tokens": 300,
        "audio_tokens": 600,
        "image_tokens": 100,
        "cached_tokens": 400,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 250, "image_tokens": 50},
    },
    "output_token_details": {"text_tokens": 100, "audio_tokens": 400},
}


def test_a_responses_usage_tells_its_audio_and_images_apart_and_sums_over_the_session():
    usage = response_done_usage(message({"type": "response.done", "response": {"id": "r", "usage": AUDIO_USAGE}}))
    assert usage is not None and usage.by_modality
    assert (usage.audio_input_tokens, usage.image_input_tokens, usage.audio_output_tokens) == (600, 100, 400)
    assert (usage.audio_cached_tokens, usage.image_cached_tokens) == (250, 50)
    twice = summed(usage, usage)
    assert (twice.input_tokens, twice.audio_input_tokens, twice.audio_cached_tokens) == (2_000, 1_200, 500)


def test_audio_and_images_pay_their_own_prices():
    d = Decimal
    rate = Rate(
        input=d(4), cached_input=d("0.4"), cache_write=d(4), output=d(16), reasoning=d(16),
        audio_input=d(32), audio_cached=d("0.4"), image_input=d(5), image_cached=d("0.5"), audio_output=d(64),
    )  # fmt: skip
    usage = response_done_usage(message({"type": "response.done", "response": {"id": "r", "usage": AUDIO_USAGE}}))
    assert usage is not None
    # text: 200 uncached at 4, 100 cached at 0.4; audio: 350 uncached at 32, 250 cached at 0.4;
    # images: 50 uncached at 5, 50 cached at 0.5; out: 100 text at 16, 400 audio at 64 ($ a million).
    dollars = 200 * 4 + 100 * 0.4 + 350 * 32 + 250 * 0.4 + 50 * 5 + 50 * 0.5 + 100 * 16 + 400 * 64
    assert cost_nanousd(rate, usage) == round(dollars * 1000)
    # A call that may be any of them is bounded at the highest prices.
    bound = rate.highest()
    assert cost_nanousd(bound, Usage(input_tokens=1_000, output_tokens=500)) == (1_000 * 32 + 500 * 64) * 1000


def test_a_realtime_models_usage_is_priced_from_the_table_only_where_it_tells_audio_apart():
    prices = Prices([])
    by_modality = Usage(input_tokens=1_000, output_tokens=100, audio_input_tokens=1_000, audio_output_tokens=100)
    text_only = Usage(input_tokens=1_000, output_tokens=100)
    args = ("openai", "gpt-realtime", None, (), "realtime")
    # gpt-realtime: audio $32 in and $64 out a million.
    assert prices.cost(*args, by_modality, WHEN) == (1_000 * 32 + 100 * 64) * 1000
    assert prices.cost(*args, text_only, WHEN) is None
