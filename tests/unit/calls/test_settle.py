"""What a call's counters settle to when it ends (`limits.used`)."""

from __future__ import annotations

from tollgate.calls.call import Answer, Call, Route, Target
from tollgate.calls.settlement import token_count, used
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.formats.request_facts import Classification
from tollgate.formats.usage import Usage
from tollgate.governance.limits.limits import Estimate
from tollgate.records.audit.audit_record import audit_record

RESERVED = Estimate(1, 500, 9_000)
PRICED = parse_config(
    {"prices": [{"match": {"model": "m"}, "input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}]}
)


def call(**fields) -> Call:
    """A call whose request went upstream, unless `request_sent=False` says otherwise."""
    classification = fields.pop("classification", Classification())
    made = Call(Route.as_called("openai"), "api.openai.com", "POST", "/v1/chat/completions")
    made.classified(classification)
    made.route.target = Target("openai", "m")
    made.answer = Answer(**{"request_sent": True, **fields})
    made.loaded = Loaded.build(PRICED)
    return made


def record_of(c: Call) -> dict:
    return audit_record(c)


def test_a_call_refused_after_reserving_used_nothing():
    refused = call(answered_by_tollgate=True, status=403, request_sent=False)
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
    fetched = Call(Route.as_called("openai"), "api.openai.com", "GET", "/v1/responses/resp_1", answer=Answer(status=200, usage=Usage(input_tokens=31), request_sent=True))  # fmt: skip
    fetched.loaded = Loaded.build(PRICED)
    uploaded = call(status=200, classification=Classification("files"))
    for c in (counted, fetched, uploaded):
        assert used(c, RESERVED, record_of(c)) == Estimate(1, 0, 0)


def test_the_tokens_a_limit_counts():
    assert token_count({"input_tokens": 3, "output_tokens": None, "total_tokens": 9}) == 3
    assert token_count({"input_tokens": None, "output_tokens": None, "total_tokens": 9}) == 9
    assert token_count({"input_tokens": None, "output_tokens": None, "total_tokens": None}) is None


def test_a_call_whose_request_went_upstream_keeps_its_reservation_whatever_its_client_does():
    # The client left before the answer's headers (an SDK's timeout): no status, no usage.
    left = call(status=None, error="client disconnected")
    assert used(left, RESERVED, record_of(left)) == RESERVED
    # Tollgate gave up waiting for the answer (504) after the request had gone.
    timed_out = call(status=504, answered_by_tollgate=True)
    assert used(timed_out, RESERVED, record_of(timed_out)) == RESERVED


def test_a_call_whose_request_never_reached_the_upstream_gives_it_all_back():
    unreachable = call(status=502, answered_by_tollgate=True, request_sent=False)
    assert used(unreachable, RESERVED, record_of(unreachable)) == Estimate(0, 0, 0)
    left = call(status=None, request_sent=False)  # the client left while its call was decided
    assert used(left, RESERVED, record_of(left)) == Estimate(0, 0, 0)


JOB = Estimate(1000, 64_000_000, 9_000, job=True)


def test_a_batch_keeps_its_whole_reservation_unless_the_upstream_refused_its_creation():
    # Its creation's answer says nothing of what its requests will use (or zeros): never settled.
    created = call(status=200, usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))
    assert used(created, JOB, record_of(created)) == JOB
    refused = call(status=400)
    assert used(refused, JOB, record_of(refused)) == Estimate(1, 0, 0, job=True)
    never = call(status=502, answered_by_tollgate=True, request_sent=False)
    assert used(never, JOB, record_of(never)) == Estimate(0, 0, 0)
