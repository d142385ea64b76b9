"""What a call's counters settle to when it ends (`limits.used`)."""

from __future__ import annotations

from tollgate.call import Call, Classification, Usage
from tollgate.config import parse_config
from tollgate.limits import Estimate, token_count, used
from tollgate.stages.shared import Loaded

RESERVED = Estimate(1, 500, 9_000)
PRICED = parse_config(
    {"prices": [{"match": {"model": "m"}, "input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}]}
)


def call(**fields) -> Call:
    made = Call("openai", "api.openai.com", "POST", "/v1/chat/completions", **fields)
    made.loaded = Loaded.build(PRICED)
    made.model = "m"
    return made


def record_of(c: Call) -> dict:
    return c.audit_record()


def test_a_call_refused_after_reserving_used_nothing():
    refused = call(answered_by_tollgate=True, status=403)
    assert used(refused, RESERVED, record_of(refused)) == Estimate(0, 0, 0)


def test_an_answer_whose_usage_was_not_read_keeps_its_reservation():
    cut = call(status=200)
    assert used(cut, RESERVED, record_of(cut)) == RESERVED


def test_an_upstream_error_is_one_request_and_no_tokens():
    failed = call(status=500)
    assert used(failed, RESERVED, record_of(failed)) == Estimate(1, 0, 0)


def test_a_call_with_usage_settles_to_its_tokens_and_exact_cost():
    done = call(status=200, usage=Usage(input_tokens=30, output_tokens=7, total_tokens=37))
    # 30 prompt tokens at $1 and 7 answer tokens at $2: $44, in nano-dollars.
    assert used(done, RESERVED, record_of(done)) == Estimate(1, 37, 44_000_000_000)


def test_a_call_that_generates_nothing_is_one_request_whatever_its_answer_says():
    counted = call(status=200, usage=Usage(input_tokens=4000), classification=Classification("messages.count_tokens"))
    fetched = Call("openai", "api.openai.com", "GET", "/v1/responses/resp_1", status=200, usage=Usage(input_tokens=31))
    fetched.loaded = Loaded.build(PRICED)
    uploaded = call(status=200, classification=Classification("files"))
    for c in (counted, fetched, uploaded):
        assert used(c, RESERVED, record_of(c)) == Estimate(1, 0, 0)


def test_the_tokens_a_limit_counts():
    assert token_count({"input_tokens": 3, "output_tokens": None, "total_tokens": 9}) == 3
    assert token_count({"input_tokens": None, "output_tokens": None, "total_tokens": 9}) == 9
    assert token_count({"input_tokens": None, "output_tokens": None, "total_tokens": None}) is None
