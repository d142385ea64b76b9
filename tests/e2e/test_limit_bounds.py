"""Limits that hold against any caller, end to end on both ledger stores: a reservation bounds every
answer a call asks for, a batch or job reserves what its requests may use together (or is refused
where Tollgate cannot read them), and a call whose request went upstream keeps its reservation
whatever its client does."""

from __future__ import annotations

import math
import re
import time

import pytest
from tests.support.canned import ANTHROPIC_MESSAGE, OPENAI_CHAT, provider_answers
from tests.support.fake_upstream import Reply
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
}
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
            "ledger": {"store": store},
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
    gateway = start_gateway(config(store), providers=PROVIDERS)
    assert gateway.config_path is not None
    (gateway.config_path.parent / "policy.rego").write_text(POLICY)
    gateway.reconfigure(config(store))  # now that the policy file is there
    return gateway


@pytest.fixture
def g(gw):
    gw.reset()
    return gw


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
