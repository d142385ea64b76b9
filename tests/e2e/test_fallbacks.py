"""Fallback routes: an override rule's `fallbacks` take a call whose target failed (after its
retries) to another model of the same provider, each one the policy allows, through the same proxy;
the client sees one answer."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import chat_fakes, streams
from tests.support.attempts import attempt
from tests.support.clients import raw_chat
from tests.support.configs import with_policy
from tests.support.fake_upstream import Reply
from tests.support.proxy import free_port

from tollgate.common.fingerprint import fingerprint

KEY = "sk-fallback-key-one-111"
ALICE = "tg-alice-fallback-test"
BOB = "tg-bob-fallback-test"
CAROL = "tg-carol-fallback-test"
DAVE = "tg-dave-fallback-test"
OVERLOADED = {"error": {"message": "The server is overloaded", "type": "server_error", "code": None}}


def answer(model: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def chat(key: str, model: str = "gpt-4o") -> str:
    """A call to `model` with `key`: its status, attempts, answering model and tokens, or its error."""
    return raw_chat(key, "model=answer.model, tokens=answer.usage.total_tokens", model)


# Bob may not fall back to gpt-4o-mini, Carol to anything; nobody is denied anything else.
POLICY = """
package tollgate
import rego.v1

deny contains "bob may not fall back to gpt-4o-mini" if {
    input.client.name == "bob"
    input.model == "gpt-4o-mini"
    input.fallback_of == {"provider": "openai", "model": "gpt-4o"}
}

deny contains "carol may not fall back" if {
    input.client.name == "carol"
    input.fallback_of != null
}
"""


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {"openai": {"upstream": urls["openai"], "keys": [KEY]}},  # no `retry`
        "clients": [
            {"name": "alice", "keys": [ALICE]},
            {"name": "bob", "keys": [BOB]},
            {"name": "carol", "keys": [CAROL]},
        ],
        "overrides": [
            {
                "match": {"provider": "openai", "model": "gpt-4o"},
                "model": "gpt-4o",
                "fallbacks": [{"provider": "openai", "model": "gpt-4o-mini"}, {"provider": "openai", "model": "o3"}],
            }
        ],
        "policy": {"rego": ["policy.rego"]},
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return with_policy(start_gateway(config, providers=("openai",)), config, POLICY)


def gpt_4o_overloaded(r):
    model = r.json()["model"]
    if model == "gpt-4o":
        return Reply(503, OVERLOADED, {"x-request-id": "req_overloaded"})
    return Reply(200, answer(model), {"x-request-id": "req_answered"})


def chat_through(gateway, handler, key: str = ALICE) -> tuple:
    """One chat call as `key` through a gateway reset for it, its OpenAI upstream answering with
    `handler`; the fake upstream and the call's result."""
    gateway.reset()
    fake = gateway.fakes["openai"]
    fake.handler = handler
    return fake, gateway.run(chat(key))


def models_asked(fake) -> list[str]:
    return [r.json()["model"] for r in fake.received]


def test_a_503_falls_back_to_the_rules_next_model(gw):
    fake, result = chat_through(gw, gpt_4o_overloaded)
    assert result == {"status": 200, "attempts": "2", "model": "gpt-4o-mini", "tokens": 7}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o-mini"]
    # The same request both times, with only its model changed.
    first, second = (r.json() for r in fake.received)
    assert {**first, "model": "gpt-4o-mini"} == second
    assert fake.received[1].headers["content-length"] == str(len(fake.received[1].body))
    record = gw.last_audit()
    failed, answered = record["attempts"]
    assert failed == attempt("openai", "gpt-4o", 503, KEY, failed)
    assert answered == attempt("openai", "gpt-4o-mini", 200, KEY, answered)
    assert (record["status"], record["provider"], record["model"], record["total_tokens"], record["decision"]) == (
        200, "openai", "gpt-4o-mini", 7, "allow",
    )  # fmt: skip


def test_a_fallback_the_policy_denies_is_skipped(gw):
    fake, result = chat_through(gw, gpt_4o_overloaded, BOB)
    assert result == {"status": 200, "attempts": "2", "model": "o3", "tokens": 7}
    assert models_asked(fake) == ["gpt-4o", "o3"]  # gpt-4o-mini never asked
    record = gw.last_audit()
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("gpt-4o", 503), ("o3", 200)]
    assert (record["status"], record["model"], record["decision"]) == (200, "o3", "allow")


def test_when_every_target_fails_the_last_answer_stands(gw):
    fake, result = chat_through(gw, lambda r: Reply(503, OVERLOADED))
    assert result == {"error": "InternalServerError", "status": 503, "attempts": "3"}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o-mini", "o3"]
    record = gw.last_audit()
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [
        ("gpt-4o", 503), ("gpt-4o-mini", 503), ("o3", 503),
    ]  # fmt: skip
    assert (record["status"], record["model"]) == (503, "o3")


def test_a_denied_fallback_is_skipped_when_the_next_fails_too(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    # o3 fails too for bob, whose policy denies gpt-4o-mini: the last answer is o3's 503.
    fake.handler = lambda r: Reply(503, OVERLOADED)
    result = gw.run(chat(BOB))
    assert result == {"error": "InternalServerError", "status": 503, "attempts": "2"}
    assert models_asked(fake) == ["gpt-4o", "o3"]
    record = gw.last_audit()
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("gpt-4o", 503), ("o3", 503)]


def test_every_fallback_denied_leaves_the_first_answer(gw):
    fake, result = chat_through(gw, gpt_4o_overloaded, CAROL)
    assert result == {"error": "InternalServerError", "status": 503, "attempts": None}
    assert models_asked(fake) == ["gpt-4o"]
    record = gw.last_audit()
    assert (record["status"], record["model"], record["attempts"], record["decision"]) == (503, "gpt-4o", None, "allow")


STREAM = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}], stream=True) as raw:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"), content=text)
"""


def test_a_stream_falls_back_before_its_answer_begins(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    fake.handler = lambda r: (
        Reply(503, OVERLOADED) if r.json()["model"] == "gpt-4o" else Reply(200, chunks=streams.openai_chat())
    )
    result = gw.run(STREAM.format(key=ALICE))
    assert result == {"status": 200, "attempts": "2", "content": "Hello"}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o-mini"]
    assert all(r.json()["stream"] is True for r in fake.received)
    record = gw.last_audit()
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("gpt-4o", 503), ("gpt-4o-mini", 200)]
    assert (record["status"], record["model"], record["stream"]) == (200, "gpt-4o-mini", True)


K1, K2 = "sk-fallback-pool-one-111", "sk-fallback-pool-two-222"


@pytest.fixture(scope="module")
def retrying(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [K1, K2], "retry": {"attempts": 2, "when": ["5xx"]}}
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "overrides": [
                {"match": {"provider": "openai"}, "fallbacks": [{"provider": "openai", "model": "gpt-4o-mini"}]}
            ],
        },
        providers=("openai",),
    )


def test_a_fallback_comes_after_the_targets_retries(retrying):
    fake, result = chat_through(retrying, gpt_4o_overloaded)
    assert result == {"status": 200, "attempts": "3", "model": "gpt-4o-mini", "tokens": 7}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    keys = [r.headers["authorization"].removeprefix("Bearer ") for r in fake.received]
    assert {keys[0], keys[1]} == {K1, K2}  # the retry went on the other key
    record = retrying.last_audit()
    assert [(a["model"], a["status"], a["upstream_key"]) for a in record["attempts"]] == [
        ("gpt-4o", 503, fingerprint(keys[0])), ("gpt-4o", 503, fingerprint(keys[1])),
        ("gpt-4o-mini", 200, fingerprint(keys[2])),
    ]  # fmt: skip


def test_a_fallback_that_fails_has_its_own_retries(retrying):
    fake, result = chat_through(retrying, lambda r: Reply(503, OVERLOADED))
    assert result == {"error": "InternalServerError", "status": 503, "attempts": "4"}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert [(a["model"], a["status"]) for a in retrying.last_audit()["attempts"]] == [
        ("gpt-4o", 503), ("gpt-4o", 503), ("gpt-4o-mini", 503), ("gpt-4o-mini", 503),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def limited(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [KEY]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "overrides": [
                {
                    "match": {"provider": "openai", "model": "gpt-4o"},
                    "fallbacks": [
                        {"provider": "openai", "model": "gpt-4o-mini"},
                        {"provider": "openai", "model": "o3"},
                    ],
                }
            ],
            "limits": [
                {"name": "first", "match": {"model": "gpt-4o"}, "requests_per_day": 5},
                {"name": "mini", "match": {"model": "gpt-4o-mini"}, "requests_per_day": 1},
            ],
        },
        providers=("openai",),
    )


def test_the_limits_count_the_fallback_that_answered(limited):
    fake, first = chat_through(limited, gpt_4o_overloaded)
    assert first == {"status": 200, "attempts": "2", "model": "gpt-4o-mini", "tokens": 7}
    # The one call gpt-4o-mini may take a day went to it: the next call's fallback skips it.
    second = limited.run(chat(ALICE))
    assert second == {"status": 200, "attempts": "2", "model": "o3", "tokens": 7}
    assert models_asked(fake) == ["gpt-4o", "gpt-4o-mini", "gpt-4o", "o3"]
    record = limited.last_audit()
    assert [(a["model"], a["status"]) for a in record["attempts"]] == [("gpt-4o", 503), ("o3", 200)]
    # gpt-4o's limit kept one request of each failed attempt (its request went upstream): three
    # calls that it answers still go.
    fake.handler = lambda r: Reply(200, answer(r.json()["model"]))
    results = [limited.run(chat(ALICE)) for _ in range(3)]
    assert [r["status"] for r in results] == [200] * 3
    assert limited.run(chat(ALICE))["status"] == 429


# Fallbacks to another provider: the call as its client sent it, translated into the fallback's
# own format, goes to that provider's upstream with its credential; the answer comes back in the
# client's format.
ANT_KEY = "sk-ant-fallback-real-333"
AWS_REAL = ("AKIAFALLBACKREAL0000", "fallback-real-aws-SECRET-0000")
AWS_VIRTUAL = ("TGFALLBACKALICE00000", "alice-fallback-virtual-SECRET-00")
CLAUDE = "claude-haiku-4-5"
NOVA = "amazon.nova-lite-v1:0"


ELSEWHERE_METRICS = f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def elsewhere(start_gateway):
    gateway = start_gateway(
        lambda urls: {
            "metrics": {"listen": ELSEWHERE_METRICS},
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [KEY]},
                "anthropic": {"upstream": urls["anthropic"], "keys": [ANT_KEY]},
                "bedrock": {
                    "upstream": urls["bedrock"],
                    "credentials": {"access_key_id": AWS_REAL[0], "secret_access_key": AWS_REAL[1]},
                },
            },
            "clients": [
                {
                    "name": "alice",
                    "keys": [ALICE],
                    "aws_credentials": [{"access_key_id": AWS_VIRTUAL[0], "secret_access_key": AWS_VIRTUAL[1]}],
                }
            ],
            "overrides": [
                {
                    "match": {"provider": "openai", "model": "gpt-4o"},
                    "fallbacks": [{"provider": "anthropic", "model": CLAUDE}],
                },
                {"match": {"provider": "bedrock"}, "fallbacks": [{"provider": "anthropic", "model": CLAUDE}]},
                {
                    "match": {"provider": "openai", "model": "gpt-4o-then-nova"},
                    "fallbacks": [{"provider": "bedrock", "model": NOVA}],
                },
            ],
        },
        providers=("openai", "anthropic", "bedrock"),
    )
    return gateway


def unavailable(r):
    return Reply(503, OVERLOADED)


CHAT_ELSEWHERE = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=100, messages=[{{"role": "user", "content": "Capital of France?"}}])
    answer = raw.parse()
    u = answer.usage
    report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"), model=answer.model,
           text=answer.choices[0].message.content, finish=answer.choices[0].finish_reason,
           usage=[u.prompt_tokens, u.completion_tokens, u.total_tokens])
"""


def test_a_503_falls_back_to_another_provider_translated(elsewhere):
    elsewhere.reset()
    openai, anthropic = elsewhere.fakes["openai"], elsewhere.fakes["anthropic"]
    openai.handler, anthropic.handler = unavailable, chat_fakes.answer
    result = elsewhere.run(CHAT_ELSEWHERE.format(key=ALICE))
    assert result == {
        # the model the fake Anthropic names in its answer
        "status": 200, "attempts": "2", "model": "claude-sonnet-4-5", "text": "Paris is the capital.", "finish": "stop",
        "usage": [21, 7, 28],
    }  # fmt: skip
    assert models_asked(openai) == ["gpt-4o"]
    (sent,) = anthropic.received
    assert sent.path == "/v1/messages"
    body = sent.json()
    assert (body["model"], body["max_tokens"], body["messages"]) == (
        CLAUDE, 100, [{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}],
    )  # fmt: skip
    # Anthropic's own credential, nothing of the client's nor OpenAI's
    assert sent.headers["x-api-key"] == ANT_KEY
    assert "authorization" not in sent.headers
    assert sent.headers["anthropic-version"]
    record = elsewhere.last_audit()
    assert [(a["provider"], a["model"], a["status"], a["upstream_key"]) for a in record["attempts"]] == [
        ("openai", "gpt-4o", 503, fingerprint(KEY)), ("anthropic", CLAUDE, 200, fingerprint(ANT_KEY)),
    ]  # fmt: skip
    assert (
        record["provider"], record["requested_provider"], record["model"], record["requested_model"],
        record["upstream_endpoint"], record["status"], record["upstream_key"],
    ) == ("anthropic", "openai", CLAUDE, "gpt-4o", "messages", 200, fingerprint(ANT_KEY))  # fmt: skip
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (21, 7, 5)
    # Priced as Claude Haiku 4.5: 16 input tokens at $1/M, 5 cache reads at $0.10/M, 7 output at $5/M
    assert record["cost_usd"] == 0.0000515


STREAM_ELSEWHERE = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o", max_tokens=100, messages=[{{"role": "user", "content": "Capital of France?"}}],
            stream=True, stream_options={{"include_usage": True}}) as raw:
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [[c.usage.prompt_tokens, c.usage.completion_tokens] for c in chunks if c.usage]
    report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"),
           type=raw.headers.get("content-type"), text=text, usage=usage)
"""


def test_a_stream_falls_back_to_another_provider_translated(elsewhere):
    elsewhere.reset()
    elsewhere.fakes["openai"].handler = unavailable
    elsewhere.fakes["anthropic"].handler = chat_fakes.answer
    result = elsewhere.run(STREAM_ELSEWHERE.format(key=ALICE))
    assert result == {
        "status": 200, "attempts": "2", "type": "text/event-stream", "text": "Paris is the capital.",
        "usage": [[21, 7]],
    }  # fmt: skip
    (sent,) = elsewhere.fakes["anthropic"].received
    assert (sent.path, sent.json()["stream"], sent.json()["model"]) == ("/v1/messages", True, CLAUDE)
    record = elsewhere.last_audit()
    assert [(a["provider"], a["status"]) for a in record["attempts"]] == [("openai", 503), ("anthropic", 200)]
    assert (record["provider"], record["model"], record["stream"], record["input_tokens"], record["output_tokens"]) == (
        "anthropic", CLAUDE, True, 21, 7,
    )  # fmt: skip


CONVERSE_ELSEWHERE = f"""
    import boto3
    from botocore.config import Config
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{AWS_VIRTUAL[0]}",
        aws_secret_access_key="{AWS_VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
    r = client.converse(modelId="{NOVA}", inferenceConfig={{"maxTokens": 100}},
        messages=[{{"role": "user", "content": [{{"text": "Capital of France?"}}]}}])
    report(text=r["output"]["message"]["content"][0]["text"], stop=r["stopReason"], usage=r["usage"],
           attempts=r["ResponseMetadata"]["HTTPHeaders"].get("x-tollgate-attempts"))
"""


def test_a_bedrock_converse_call_falls_back_to_anthropic(elsewhere):
    elsewhere.reset()
    bedrock, anthropic = elsewhere.fakes["bedrock"], elsewhere.fakes["anthropic"]
    bedrock.handler = lambda r: Reply(503, {"message": "fake Bedrock: service unavailable"})
    anthropic.handler = chat_fakes.answer
    result = elsewhere.run(CONVERSE_ELSEWHERE)
    assert result["text"] == "Paris is the capital."
    assert (result["stop"], result["attempts"]) == ("end_turn", "2")
    # Converse counts its input without cache reads, as Anthropic does
    usage = result["usage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["cacheReadInputTokens"]) == (16, 7, 5)
    (signed,) = bedrock.received
    assert AWS_REAL[0] in signed.headers["authorization"]  # Tollgate's own signature on the first
    (sent,) = anthropic.received
    assert sent.path == "/v1/messages"
    assert (sent.json()["model"], sent.json()["max_tokens"]) == (CLAUDE, 100)
    assert sent.headers["x-api-key"] == ANT_KEY
    assert "authorization" not in sent.headers and not any(h.startswith("x-amz") for h in sent.headers)
    record = elsewhere.last_audit()
    assert [(a["provider"], a["model"], a["status"]) for a in record["attempts"]] == [
        ("bedrock", NOVA, 503), ("anthropic", CLAUDE, 200),
    ]  # fmt: skip
    assert (record["provider"], record["requested_provider"], record["model"], record["upstream_endpoint"]) == (
        "anthropic", "bedrock", CLAUDE, "messages",
    )  # fmt: skip
    assert (record["input_tokens"], record["output_tokens"], record["status"]) == (21, 7, 200)


# Each attempt reserves anew on the limits; a failed attempt whose request went upstream keeps
# its reservation (one request where the upstream answered), one that never left gives it back.
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ledgered(start_gateway):
    down = f"https://127.0.0.1:{closed_port()}"
    return start_gateway(
        lambda urls: {
            "providers": {
                "openai": {
                    "upstream": urls["openai"], "keys": [K1, K2], "retry": {"attempts": 2, "when": ["5xx", "connect"]},
                },
                "anthropic": {"upstream": urls["anthropic"], "keys": [ANT_KEY]},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}, {"name": "bob", "keys": [BOB]}, {"name": "carol", "keys": [CAROL]},
                        {"name": "dave", "keys": [DAVE]}],
            "overrides": [
                {
                    "match": {"provider": "openai", "model": "gpt-4o-down"}, "upstream": down,
                    "fallbacks": [{"provider": "anthropic", "model": CLAUDE}],
                },
                {"match": {"provider": "openai", "model": "gpt-4o"}, "fallbacks": [{"provider": "anthropic", "model": CLAUDE}]},
            ],
            "limits": [
                {"name": "alice", "match": {"client": "alice"}, "requests_per_day": 3},
                {"name": "bob", "match": {"client": "bob"}, "requests_per_day": 2},
                {"name": "carol", "match": {"client": "carol"}, "requests_per_day": 3},
                {"name": "dave", "match": {"client": "dave"}, "requests_per_day": 1},
            ],
        },
        providers=("openai", "anthropic"),
    )  # fmt: skip


CALLS = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    outcomes = []
    for _ in range({n}):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="{model}", max_tokens=100, messages=[{{"role": "user", "content": "Capital of France?"}}])
            outcomes.append([raw.status_code, raw.headers.get("x-tollgate-attempts")])
        except Exception as e:
            outcomes.append([e.status_code, e.body["message"] if isinstance(e.body, dict) else str(e.body)])
    report(outcomes=outcomes)
"""


def used_message(name: str, cap: int, used: int) -> str:
    return f"Tollgate limit '{name}': requests_per_day is {cap} for {name}; {used} used, this call needs up to 1."


def test_a_retry_reserves_anew_and_the_failed_attempt_keeps_its_request(ledgered):
    ledgered.reset()
    seen: list = []

    def first_fails(r):
        seen.append(r)
        return Reply(503, OVERLOADED) if len(seen) == 1 else Reply(200, answer("gpt-4o"))

    ledgered.fakes["openai"].handler = first_fails
    result = ledgered.run(CALLS.format(key=ALICE, n=3, model="gpt-4o"))
    # The first call's two attempts went upstream (2 requests), the second's one (3): the third has no room.
    (first, second, third) = result["outcomes"]
    assert (first, second) == ([200, "2"], [200, None])
    assert third[0] == 429 and third[1].startswith(used_message("alice", 3, 3)), third
    assert len(seen) == 3


def test_a_fallback_reserves_anew_and_the_failed_attempts_keep_theirs(ledgered):
    ledgered.reset()
    ledgered.fakes["openai"].handler = unavailable
    ledgered.fakes["anthropic"].handler = chat_fakes.answer
    result = ledgered.run(CALLS.format(key=CAROL, n=2, model="gpt-4o"))
    # Two attempts at OpenAI answered 503 and one at Anthropic answered: 3 requests.
    first, second = result["outcomes"]
    assert first == [200, "3"]
    assert second[0] == 429 and second[1].startswith(used_message("carol", 3, 3)), second
    assert len(ledgered.fakes["openai"].received) == 2 and len(ledgered.fakes["anthropic"].received) == 1


def test_a_retry_without_room_leaves_the_failed_attempts_key_named(ledgered):
    ledgered.reset()
    ledgered.fakes["openai"].handler = unavailable
    result = ledgered.run(CALLS.format(key=DAVE, n=1, model="gpt-4o"))
    # The failed attempt used Dave's one request: no retry, no fallback; its 503 stands.
    assert result["outcomes"] == [[503, "The server is overloaded"]]
    (sent,) = ledgered.fakes["openai"].received
    key = sent.headers["authorization"].removeprefix("Bearer ")
    record = ledgered.last_audit()
    assert (record["status"], record["upstream_key"], record["attempts"]) == (503, fingerprint(key), None)
    assert not ledgered.fakes["anthropic"].received


def test_attempts_that_never_left_give_their_reservation_back(ledgered):
    ledgered.reset()
    ledgered.fakes["anthropic"].handler = chat_fakes.answer
    result = ledgered.run(CALLS.format(key=BOB, n=3, model="gpt-4o-down"))
    # Each call's two attempts at an OpenAI upstream that cannot be reached count nothing; its
    # fallback to Anthropic one request: the third call has no room.
    first, second, third = result["outcomes"]
    assert (first, second) == ([200, "3"], [200, "3"])
    assert third[0] == 429 and third[1].startswith(used_message("bob", 2, 2)), third
    assert len(ledgered.fakes["anthropic"].received) == 2
    record = ledgered.new_audit(3)[1]
    assert [(a["provider"], a["status"], a["error"] is not None) for a in record["attempts"]] == [
        ("openai", None, True), ("openai", None, True), ("anthropic", 200, False),
    ]  # fmt: skip


def test_a_fallback_refused_by_a_provider_without_a_pool_rests_no_key_of_the_first(elsewhere):
    elsewhere.reset()
    openai, bedrock = elsewhere.fakes["openai"], elsewhere.fakes["bedrock"]
    openai.handler = unavailable
    bedrock.handler = lambda r: Reply(
        429, {"message": "Too many requests"}, {"x-amzn-errortype": "ThrottlingException", "retry-after": "30"}
    )
    result = elsewhere.run(chat(ALICE, "gpt-4o-then-nova"))
    assert (result["error"], result["status"], result["attempts"]) == ("RateLimitError", 429, "2")
    assert [r.path for r in bedrock.received] == ["/model/amazon.nova-lite-v1%3A0/converse"]
    # Bedrock's 429 rests none of OpenAI's keys (the attempt that went on one answered 503).
    with urllib.request.urlopen(f"http://{ELSEWHERE_METRICS}/metrics", timeout=10) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    resting = {s.labels["provider"]: s.value for s in families["tollgate_pool_keys_resting"].samples}
    assert resting["openai"] == 0
