"""Limits that hold against any caller, end to end on both ledger stores: a reservation bounds every
answer a call asks for, a batch or job reserves what its requests may use together (or is refused
where Tollgate cannot read them), and a call whose request went upstream keeps its reservation
whatever its client does."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
from tests.support import streams
from tests.support.canned import ANTHROPIC_MESSAGE, OPENAI_CHAT, provider_answers
from tests.support.configs import with_policy
from tests.support.fake_upstream import Received, Reply
from tests.support.redis import redis_server

PROVIDERS = ("openai", "gemini", "anthropic", "bedrock", "vertex")
REAL = {
    "openai": "sk-real-openai-bounds-0001",
    "gemini": "AIza-real-gemini-bounds-0001",
    "anthropic": "sk-ant-real-bounds-0001",
    "bedrock": "ABSK-real-bedrock-bounds-0001",
    "vertex": "AQ.real-vertex-express-bounds-0001",
}
# name: its limit's caps
CLIENTS = {
    "many": {"tokens_per_day": 30_000},
    "candidates": {"tokens_per_day": 30_000},
    "unbounded": {"tokens_per_day": 16_000},
    "batcher": {"tokens_per_day": 100_000},
    "gbatcher": {"tokens_per_day": 1_000},
    "filer": {"tokens_per_day": 1_000_000},
    "spender": {"usd_per_month": 100},
    "counter": {"requests_per_day": 1000},
    "planner": {},
    "impatient": {"tokens_per_day": 100_000},
    "waited": {"tokens_per_day": 40_000},
    "in-a-row": {"tokens_per_day": 20_000},
    "streams-in-a-row": {"tokens_per_day": 20_000},
    "completer": {"tokens_per_day": 20_000},
    "prompter": {"tokens_per_minute": 20_000},
    "continuer": {"tokens_per_day": 100_000},
}
RESERVE_INPUT = 50_000  # ledger.reserve_input_tokens: a held input's bound where its model's window is unknown
TIMEOUT_S = 1  # Anthropic's: the upstream that answers later gets a 504


def key(name: str) -> str:
    return f"tg-{name}-bounds-key"


POLICY = """
package tollgate
import rego.v1

deny contains "a batch of more than two requests" if {
    input.client.name == "planner"
    is_number(input.request.batch.requests)
    input.request.batch.requests > 2
}

deny contains "a batch Tollgate cannot read" if {
    input.client.name == "planner"
    input.request.batch
    input.request.batch.requests == null
}
"""


def config(store: str):
    def build(urls: dict[str, str]) -> dict:
        providers = {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()}
        providers["anthropic"]["timeout"] = TIMEOUT_S
        return {
            "providers": providers,
            "clients": [{"name": name, "keys": [key(name)]} for name in CLIENTS],
            "limits": [{"name": name, "match": {"client": name}, **caps} for name, caps in CLIENTS.items() if caps],
            "prices": [{"match": {"model": "gpt-4o"}, "input_per_mtok": 2.5, "output_per_mtok": 10}],
            "ledger": {"store": store, "reserve_input_tokens": RESERVE_INPUT},
            "policy": {"rego": ["policy.rego"]},
        }

    return build


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def gw(request, start_gateway, tmp_path_factory):
    if request.param == "redis":
        server = redis_server(tmp_path_factory.mktemp("redis"))
        request.addfinalizer(server.stop)
        store = server.url
    else:
        store = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.sqlite'}"
    return with_policy(start_gateway(config(store), providers=PROVIDERS), config(store), POLICY)


def prompt_tokens(body: bytes) -> int:
    """The prompt as a reservation estimates it: the body's bytes over four."""
    return math.ceil(len(body) / 4)


NEEDED = re.compile(r"(\d+) used, this call needs up to (\d+)\.")


def used_and_needed(message: str) -> tuple[int, int]:
    found = NEEDED.search(message)
    assert found is not None, message
    return int(found[1]), int(found[2])


def test_every_answer_is_reserved_and_parallel_calls_cannot_pass_the_limit(g):
    # Held upstream, so that every call reserves before any settles.
    g.fakes["openai"].handler = lambda r: Reply(200, OPENAI_CHAT, delay=1.5)
    result = g.run(f"""
        from concurrent.futures import ThreadPoolExecutor
        from openai import OpenAI
        client = OpenAI(api_key="{key("many")}", max_retries=0)
        def call(_):
            try:
                client.chat.completions.create(model="gpt-4o-mini", n=20, max_tokens=500,
                                               messages=[{{"role": "user", "content": "hi"}}])
                return 200
            except Exception as e:
                return [type(e).__name__, e.status_code, e.message]
        with ThreadPoolExecutor(20) as pool:
            report(outcomes=list(pool.map(call, range(20))))
    """)
    outcomes = result["outcomes"]
    # 20 answers of up to 500 tokens each: two such calls fit in 30 000 tokens, the third does not.
    assert outcomes.count(200) == 2 and len(g.fakes["openai"].received) == 2
    (body,) = {r.body for r in g.fakes["openai"].received}
    needed = 20 * 500 + prompt_tokens(body)
    refused = [o for o in outcomes if o != 200]
    assert len(refused) == 18
    for name, status, message in refused:
        assert (name, status) == ("RateLimitError", 429)
        assert used_and_needed(message) == (2 * needed, needed)


def test_gemini_reserves_every_candidate(g):
    code = f"""
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{key("candidates")}")
        outcomes = []
        for count in (1, 8):
            try:
                r = client.models.generate_content(model="gemini-2.5-flash", contents="hi",
                    config=types.GenerateContentConfig(candidate_count=count, max_output_tokens=10000))
                outcomes.append(r.usage_metadata.total_token_count)
            except Exception as e:
                outcomes.append([type(e).__name__, e.code, e.status, e.message])
        report(outcomes=outcomes)
    """
    one, eight = g.run(code)["outcomes"]
    assert one == 15
    assert eight[:3] == ["ClientError", 429, "RESOURCE_EXHAUSTED"]
    (body,) = [r.body for r in g.fakes["gemini"].received]  # the same size with 8 as with 1
    assert used_and_needed(eight[3]) == (15, 8 * 10_000 + prompt_tokens(body))


def test_a_call_without_a_bound_reserves_its_models_maximum_output(g):
    result = g.run(f"""
        from openai import OpenAI
        try:
            OpenAI(api_key="{key("unbounded")}", max_retries=0).chat.completions.create(
                model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
            report(outcome=200)
        except Exception as e:
            report(outcome=[e.status_code, e.message])
    """)
    status, message = result["outcome"]
    used, needed = used_and_needed(message)
    # gpt-4o writes up to 16 384 tokens: more than the 16 000 a day, whatever the prompt.
    assert status == 429 and used == 0 and 16_384 < needed < 16_384 + 40
    assert g.fakes["openai"].received == []


BATCH = {
    "id": "msgbatch_01", "type": "message_batch", "processing_status": "in_progress",
    "request_counts": {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2026-11-25T10:00:00Z", "expires_at": "2026-11-26T10:00:00Z", "ended_at": None,
    "cancel_initiated_at": None, "archived_at": None, "results_url": None,
}  # fmt: skip


def test_an_anthropic_batch_reserves_all_its_requests_and_is_never_settled(g):
    def answers(r: Received) -> Reply:
        return Reply(200, BATCH) if r.path == "/v1/messages/batches" else provider_answers(r)

    g.fakes["anthropic"].handler = answers
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{key("batcher")}", max_retries=0)
        def batch(count, max_tokens):
            return [{{"custom_id": f"r{{i}}", "params": {{"model": "claude-haiku-4-5", "max_tokens": max_tokens,
                      "messages": [{{"role": "user", "content": "hi"}}]}}}} for i in range(count)]
        outcomes = []
        for count, max_tokens in ((3, 30000), (1, 20000)):
            try:
                outcomes.append(client.messages.batches.create(requests=batch(count, max_tokens)).id)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.message])
        # An ordinary call still fits in what is left.
        outcomes.append(client.messages.create(model="claude-haiku-4-5", max_tokens=10,
                        messages=[{{"role": "user", "content": "hi"}}]).usage.output_tokens)
        report(outcomes=outcomes)
    """)
    created, refused, message = result["outcomes"]
    assert created == "msgbatch_01"
    batch_body = g.fakes["anthropic"].received[0].body
    reserved = 3 * 30_000 + prompt_tokens(batch_body)
    assert refused[:2] == ["RateLimitError", 429]
    used, needed = used_and_needed(refused[2])
    assert used == reserved and 20_000 < needed < 20_100
    assert message == ANTHROPIC_MESSAGE["usage"]["output_tokens"]
    made, denied, called = g.new_audit(3)
    assert (made["endpoint"], made["status"], made["decision"]) == ("messages.batches", 200, "allow")
    assert (denied["status"], denied["deny_reasons"]) == (
        429,
        ["limit 'batcher': tokens_per_day 100000 reached for batcher"],
    )
    assert called["status"] == 200
    assert [r.path for r in g.fakes["anthropic"].received] == ["/v1/messages/batches", "/v1/messages"]


def test_a_gemini_batch_of_inline_requests_is_reserved_and_one_in_a_file_refused(g):
    g.fakes["gemini"].handler = lambda r: Reply(
        200, {"name": "batches/b1", "metadata": {"name": "batches/b1", "state": "BATCH_STATE_PENDING"}}
    )
    result = g.run(f"""
        from google import genai
        client = genai.Client(api_key="{key("gbatcher")}")
        request = {{"contents": [{{"parts": [{{"text": "hi"}}], "role": "user"}}],
                    "config": {{"max_output_tokens": 100, "candidate_count": 2}}}}
        outcomes = []
        for src in ([request] * 3, [request] * 3, "files/requests-jsonl"):
            try:
                outcomes.append(client.batches.create(model="gemini-2.5-flash", src=src).name)
            except Exception as e:
                outcomes.append([type(e).__name__, e.code, e.status, e.message])
        report(outcomes=outcomes)
    """)
    created, refused, filed = result["outcomes"]
    assert created == "batches/b1"
    (sent,) = g.fakes["gemini"].received
    assert sent.path == "/v1/models/gemini-2.5-flash:batchGenerateContent"
    reserved = 3 * 2 * 100 + prompt_tokens(sent.body)
    assert refused[:3] == ["ClientError", 429, "RESOURCE_EXHAUSTED"]
    assert used_and_needed(refused[3]) == (reserved, reserved)
    assert filed[:3] == ["ClientError", 403, "PERMISSION_DENIED"]
    assert filed[3] == (
        "Tollgate limit 'gbatcher' caps tokens_per_day for gbatcher, and this batchGenerateContent call starts a"
        " job whose use Tollgate cannot bound (its requests are in a file or a bucket, which Tollgate does not"
        " read): it is not served under a token or USD limit."
    )
    record = g.new_audit(3)[2]
    assert (record["status"], record["decision"], record["deny_reasons"]) == (
        403,
        "deny",
        ["limit 'gbatcher': tokens_per_day cannot bound a batchGenerateContent job for gbatcher"],
    )


UNBOUNDED_JOBS = {
    "openai": """
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        try:
            client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h")
        except Exception as e:
            report(error=[type(e).__name__, e.status_code, e.response.headers.get("x-tollgate-error"), e.body["message"]])
    """,
    "bedrock": """
        import boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={{"total_max_attempts": 1}}))
        try:
            client.start_async_invoke(modelId="amazon.nova-reel-v1:0", modelInput={{"taskType": "TEXT_VIDEO"}},
                                      outputDataConfig={{"s3OutputDataConfig": {{"s3Uri": "s3://bucket/out/"}}}})
        except Exception as e:
            meta = e.response["ResponseMetadata"]
            report(error=[type(e).__name__, meta["HTTPStatusCode"], meta["HTTPHeaders"].get("x-tollgate-error"),
                          e.response["Error"]["Message"]])
    """,
    "vertex": """
        from google import genai
        client = genai.Client(vertexai=True, api_key="{key}")
        try:
            client.batches.create(model="gemini-2.5-flash", src="gs://bucket/requests.jsonl")
        except Exception as e:
            report(error=[type(e).__name__, e.code, e.status, e.message])
    """,
}
UNBOUNDED = {
    "openai": ("PermissionDeniedError", 403, "limit_unenforceable", "batches", "in a file or a bucket"),
    "bedrock": ("AccessDeniedException", 403, "limit_unenforceable", "async-invoke", "not counted in tokens"),
    "vertex": ("ClientError", 403, "PERMISSION_DENIED", "batchPredictionJobs", "in a file or a bucket"),
}


@pytest.mark.parametrize("provider", list(UNBOUNDED_JOBS))
def test_a_job_tollgate_cannot_bound_is_refused_under_a_token_or_usd_limit(g, provider):
    for client in ("filer", "spender"):
        env = {"AWS_BEARER_TOKEN_BEDROCK": key(client)} if provider == "bedrock" else None
        error = g.run(UNBOUNDED_JOBS[provider].format(key=key(client)), env=env)["error"]
        name, status, reason, endpoint, why = UNBOUNDED[provider]
        assert error[:3] == [name, status, reason]
        field = "tokens_per_day" if client == "filer" else "usd_per_month"
        assert error[3].startswith(f"Tollgate limit '{client}' caps {field} for {client}, and this {endpoint} call")
        assert why in error[3]
        record = g.last_audit()
        assert (record["status"], record["decision"], record["endpoint"]) == (403, "deny", endpoint)
    assert g.fakes[provider].received == []


def test_a_job_goes_under_a_requests_limit_alone_and_is_refused_under_a_token_limit(g):
    g.fakes["openai"].handler = lambda r: Reply(200, {"id": "batch_1", "object": "batch", "status": "validating"})
    code = """
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        try:
            made = client.batches.create(input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h")
            report(outcome=made.id)
        except Exception as e:
            report(outcome=[e.status_code, e.response.headers.get("x-tollgate-error")])
    """
    assert g.run(code.format(key=key("counter")))["outcome"] == "batch_1"
    assert g.run(code.format(key=key("filer")))["outcome"] == [403, "limit_unenforceable"]
    assert len(g.fakes["openai"].received) == 1


def test_the_policy_sees_a_batch_as_one_call_of_many_requests(g):
    g.fakes["anthropic"].handler = lambda r: Reply(200, BATCH)
    g.fakes["openai"].handler = lambda r: Reply(200, {"id": "batch_1", "object": "batch", "status": "validating"})
    result = g.run(f"""
        import anthropic
        from openai import OpenAI
        client = anthropic.Anthropic(api_key="{key("planner")}", max_retries=0)
        def batch(count):
            return [{{"custom_id": f"r{{i}}", "params": {{"model": "claude-haiku-4-5", "max_tokens": 5,
                      "messages": [{{"role": "user", "content": "hi"}}]}}}} for i in range(count)]
        outcomes = []
        for count in (2, 3):
            try:
                outcomes.append(client.messages.batches.create(requests=batch(count)).id)
            except Exception as e:
                outcomes.append([e.status_code, e.body["error"]["message"]])
        try:
            OpenAI(api_key="{key("planner")}", max_retries=0).batches.create(
                input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h")
        except Exception as e:
            outcomes.append([e.status_code, e.body["message"]])
        report(outcomes=outcomes)
    """)
    assert result["outcomes"] == [
        "msgbatch_01",
        [403, "Tollgate policy denied this call: a batch of more than two requests"],
        [403, "Tollgate policy denied this call: a batch Tollgate cannot read"],
    ]
    assert len(g.fakes["anthropic"].received) == 1 and g.fakes["openai"].received == []


def test_a_client_that_leaves_before_the_answer_keeps_its_reservation(g):
    # The upstream answers after the client has given up, as an SDK's timeout does.
    g.fakes["openai"].handler = lambda r: Reply(200, OPENAI_CHAT, delay=1.5)
    left = g.run(f"""
        import openai
        client = openai.OpenAI(api_key="{key("impatient")}", max_retries=0, timeout=0.7)
        try:
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=20000,
                                           messages=[{{"role": "user", "content": "hi"}}])
        except Exception as e:
            report(error=type(e).__name__)
    """)
    assert left == {"error": "APITimeoutError"}
    (record,) = g.new_audit(1)
    assert (record["status"], record["error"], record["input_tokens"]) == (None, "client disconnected", None)
    (sent,) = g.fakes["openai"].received
    reserved = 20_000 + prompt_tokens(sent.body)
    time.sleep(1.2)  # the upstream has answered the call its client left
    g.fakes["openai"].handler = provider_answers
    result = g.run(f"""
        import openai
        client = openai.OpenAI(api_key="{key("impatient")}", max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=90000,
                                           messages=[{{"role": "user", "content": "hi"}}])
            report(outcome=200)
        except Exception as e:
            report(outcome=[e.status_code, e.message])
    """)
    status, message = result["outcome"]
    assert status == 429 and used_and_needed(message)[0] == reserved


def test_a_call_that_timed_out_upstream_keeps_its_reservation(g):
    g.fakes["anthropic"].handler = lambda r: Reply(200, ANTHROPIC_MESSAGE, delay=TIMEOUT_S + 1.5)
    result = g.run(f"""
        import anthropic
        client = anthropic.Anthropic(api_key="{key("waited")}", max_retries=0)
        outcomes = []
        for max_tokens in (20000, 21000):  # the SDK wants a stream past about 21 333
            try:
                client.messages.create(model="claude-haiku-4-5", max_tokens=max_tokens,
                                       messages=[{{"role": "user", "content": "hi"}}])
                outcomes.append(200)
            except Exception as e:
                outcomes.append([e.status_code, e.message])
        report(outcomes=outcomes)
    """)
    timed_out, refused = result["outcomes"]
    assert timed_out[0] == 504
    (sent,) = g.fakes["anthropic"].received
    assert refused[0] == 429 and used_and_needed(refused[1])[0] == 20_000 + prompt_tokens(sent.body)
    record = g.new_audit(2)[0]
    assert (record["status"], record["error"]) == (504, f"upstream timeout: no response within {TIMEOUT_S} s")


# Each answer reports far more input than its request shows (as a prompt with images by URL does):
# 5 000 in and 1 000 out, where the call reserves about 1 015.
BIG_USAGE = {"prompt_tokens": 5_000, "completion_tokens": 1_000, "total_tokens": 6_000}


def big_answer(r: Received) -> Reply:
    if not r.json().get("stream"):
        return Reply(200, {**OPENAI_CHAT, "usage": BIG_USAGE})
    pieces = streams.openai_chat()
    usage = json.loads(pieces[-2].removeprefix(b"data: "))  # the usage-only chunk, before [DONE]
    pieces[-2] = streams.sse({**usage, "usage": BIG_USAGE})
    # The stream's body ends a while after its `data: [DONE]`, where OpenAI's SDK stops reading.
    return Reply(200, headers={"content-type": "text/event-stream"}, chunks=pieces, end_delay=0.5)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_calls_in_a_row_each_find_the_last_ones_usage_counted(g, stream):
    # 6 000 tokens a call: after three (18 000) a fourth still fits its reservation, and then no
    # call does. A call whose client has its whole answer is counted before the next reserves.
    g.fakes["openai"].handler = big_answer
    name = "streams-in-a-row" if stream else "in-a-row"
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key(name)}", max_retries=0)
        streaming = {{"stream": True, "stream_options": {{"include_usage": True}}}} if {stream} else {{}}
        outcomes = []
        for _ in range(8):
            try:
                answer = client.chat.completions.create(model="gpt-4o-mini", max_tokens=1000,
                                                        messages=[{{"role": "user", "content": "hi"}}], **streaming)
                if streaming:
                    answer = [chunk for chunk in answer][-1]
                outcomes.append(answer.usage.total_tokens)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.message])
        report(outcomes=outcomes)
    """)
    outcomes = result["outcomes"]
    assert outcomes[:4] == [6_000] * 4 and len(g.fakes["openai"].received) == 4
    for name_, status, message in outcomes[4:]:
        assert (name_, status) == ("RateLimitError", 429)
        assert used_and_needed(message)[0] == 24_000


def test_a_legacy_completion_reserves_every_answers_bound(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("completer")}", max_retries=0)
        outcomes = []
        for best_of, max_tokens in ((10, 4000), (2, 100)):
            try:
                r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", best_of=best_of,
                                              max_tokens=max_tokens)
                outcomes.append(r.usage.total_tokens)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.response.headers.get("x-tollgate-error"),
                                 e.message])
        report(outcomes=outcomes)
    """)
    refused, answered = result["outcomes"]
    # best_of 10 answers of up to 4 000 tokens each: twice the 20 000 a day, whatever the prompt.
    assert refused[:3] == ["RateLimitError", 429, "budget_exceeded"]
    used, needed = used_and_needed(refused[3])
    assert used == 0 and 40_000 < needed < 40_000 + 40
    assert answered == 154
    (sent,) = g.fakes["openai"].received
    assert (sent.path, sent.json()["best_of"]) == ("/v1/completions", 2)
    denied, called = g.new_audit(2)
    assert (denied["endpoint"], denied["status"], denied["decision"]) == ("completions", 429, "deny")
    assert denied["deny_reasons"] == ["limit 'completer': tokens_per_day 20000 reached for completer"]
    assert (called["status"], called["total_tokens"]) == (200, 154)


def test_a_legacy_completion_reserves_every_prompts_answers(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("prompter")}", max_retries=0)
        outcomes = []
        calls = [
            dict(prompt=["Say hi."] * 2000, max_tokens=500),  # 1 000 000 tokens of answers
            dict(prompt=[[9906, 1917]] * 50, max_tokens=500),  # prompts as tokens: 25 000
            dict(prompt=["a", "b", "c"], max_tokens=100, n=2, best_of=3),  # 1 800
            dict(prompt=["a", "b"], max_tokens=9_950),  # 19 900, over what the minute has left
        ]
        for call in calls:
            try:
                r = client.completions.create(model="gpt-3.5-turbo-instruct", **call)
                outcomes.append(r.usage.total_tokens)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.response.headers.get("x-tollgate-error"),
                                 e.message])
        report(outcomes=outcomes)
    """)
    listed, tokens, answered, over = result["outcomes"]
    # The reservation (what "this call needs up to" says): each prompt's answers at their bound,
    # and the prompt's bytes over four.
    for refused, answers in ((listed, 1_000_000), (tokens, 25_000)):
        assert refused[:3] == ["RateLimitError", 429, "rate_limited"]
        used, needed = used_and_needed(refused[3])
        assert used == 0 and answers < needed < answers + 10_000
    assert answered == 154
    used, needed = used_and_needed(over[3])
    assert used == 154 and 19_900 < needed < 19_900 + 100
    (sent,) = g.fakes["openai"].received
    assert (sent.path, sent.json()["prompt"], sent.json()["n"]) == ("/v1/completions", ["a", "b", "c"], 2)
    first, second, called, last = g.new_audit(4)
    for denied in (first, second, last):
        assert (denied["endpoint"], denied["status"], denied["decision"]) == ("completions", 429, "deny")
        assert denied["deny_reasons"] == ["limit 'prompter': tokens_per_minute 20000 reached for prompter"]
    assert (called["status"], called["decision"], called["total_tokens"]) == (200, "allow", 154)


def test_a_responses_call_whose_input_is_held_upstream_reserves_its_models_context_window(g):
    result = g.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{key("continuer")}", max_retries=0)
        calls = [
            ("gpt-4o", {{}}),
            ("a-model-of-our-own", {{"conversation": "conv_1"}}),  # no window known: 50 000
            ("gpt-4o", {{"previous_response_id": "resp_0"}}),  # its window: 128 000
            ("gpt-4o", {{"prompt": {{"id": "pmpt_1", "version": "2"}}}}),
        ]
        outcomes = []
        for model, held in calls:
            try:
                r = client.responses.create(model=model, input="hi", max_output_tokens=100, **held)
                outcomes.append(r.usage.total_tokens)
            except Exception as e:
                outcomes.append([type(e).__name__, e.status_code, e.message])
        report(outcomes=outcomes)
    """)
    plain, conversation, previous, prompt = result["outcomes"]
    assert plain == conversation == 40  # settled to its usage, whatever it reserved
    sent = g.fakes["openai"].received
    assert [r.json().get("conversation") for r in sent] == [None, "conv_1"]
    for refused in (previous, prompt):
        assert refused[:2] == ["RateLimitError", 429]
        # gpt-4o's window bounds its whole input, the body's among it; and its answer's bound.
        assert used_and_needed(refused[2]) == (80, 128_000 + 100)
    records = g.new_audit(4)
    assert [r["status"] for r in records] == [200, 200, 429, 429]
