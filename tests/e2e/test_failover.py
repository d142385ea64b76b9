"""Failover: a call whose attempt fails before its answer begins goes again on the next pooled key
(`providers.<name>.retry`), through the same proxy, and the client sees one answer."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.e2e.test_google_backends import PROJECT, FakeVertex, service_account
from tests.support import streams
from tests.support.attempts import attempt
from tests.support.aws import botocore_accepts
from tests.support.canned import provider_answers
from tests.support.clients import chat_calls, raw_chat
from tests.support.fake_upstream import Reply
from tests.support.h2 import H2Reply, H2Upstream
from tests.support.redis import redis_server

from tollgate.common.fingerprint import fingerprint
from tollgate.ledger.redis_store import REST, RESTS

K1, K2 = "sk-failover-key-one-111", "sk-failover-key-two-222"
ALICE = "tg-alice-failover-test"
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
RATE_LIMITED = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
CHAT = raw_chat(
    ALICE,
    'request_ids=raw.headers.get_list("x-tollgate-request-id"), content=answer.choices[0].message.content, '
    "tokens=answer.usage.total_tokens",
)
STREAM = f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0)
    try:
        with client.chat.completions.with_streaming_response.create(
                model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}], stream=True) as raw:
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"), content=text)
    except Exception as e:
        report(error=type(e).__name__, status=getattr(e, "status_code", None))
"""


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(
        lambda urls: {
            "providers": {
                "openai": {
                    "upstream": urls["openai"],
                    "keys": [K1, K2],
                    "retry": {"attempts": 3, "when": [429, 529, "5xx", "connect", "timeout"], "max_wait_s": 5},
                },
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
        },
        providers=("openai",),
    )


def keys_used(fake) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in fake.received]


def first_key_limited(stream: bool = False):
    """429 (Retry-After 1) to the key of the first request, whichever of the pool's it is; the other
    key answers."""
    limited: list[str] = []

    def answer(r):
        key = r.headers["authorization"]
        if not limited or key == limited[0]:
            limited.append(key)
            return Reply(429, RATE_LIMITED, {"retry-after": "1", "x-request-id": "req_limited"})
        if stream:
            return Reply(200, chunks=streams.openai_chat())
        return Reply(200, ANSWER, {"x-request-id": "req_answered"})

    return answer


def test_a_429_goes_again_on_the_next_key(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    fake.handler = first_key_limited()
    result = gw.run(CHAT)
    assert result == {"status": 200, "attempts": "2", "request_ids": [result["request_ids"][0]], "content": "hi",
                      "tokens": 7}  # fmt: skip
    first, second = keys_used(fake)
    assert {first, second} == {K1, K2}
    # The upstream saw the same request both times, with only its key changed.
    assert fake.received[0].body == fake.received[1].body
    strip = {"authorization"}
    assert {k: v for k, v in fake.received[0].headers.items() if k not in strip} == {
        k: v for k, v in fake.received[1].headers.items() if k not in strip
    }
    record = gw.last_audit()
    assert record["request_id"] == result["request_ids"][0]
    failed, answered = record["attempts"]
    assert failed == attempt("openai", "gpt-4o", 429, first, failed)
    assert answered == attempt("openai", "gpt-4o", 200, second, answered)
    assert 0 <= failed["latency_ms"] < 5000 and 0 <= answered["latency_ms"] < 5000
    assert (record["status"], record["upstream_key"], record["total_tokens"], record["error"]) == (
        200, fingerprint(second), 7, None,
    )  # fmt: skip
    assert [r["request_id"] for r in gw.audit()].count(record["request_id"]) == 1


def test_an_upload_streamed_unread_is_not_tried_again(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    fake.handler = lambda r: Reply(503, {"error": {"message": "overloaded", "type": "server_error"}})
    result = gw.run(f"""
        import io
        from openai import OpenAI, InternalServerError
        audio = io.BytesIO(bytes(range(256)) * (6 * 4096))  # 6 MiB: streamed upstream as it comes
        audio.name = "meeting.wav"
        try:
            OpenAI(api_key="{ALICE}", max_retries=0).audio.transcriptions.create(model="whisper-1", file=audio)
        except InternalServerError as e:
            report(status=e.status_code, attempts=e.response.headers.get("x-tollgate-attempts"))
    """)
    assert result == {"status": 503, "attempts": None}
    (sent,) = fake.received  # its body went by once: it cannot go again
    assert len(sent.body) > 6 * 1024 * 1024
    record = gw.last_audit()
    assert (record["endpoint"], record["status"], record["attempts"]) == ("audio.transcriptions", 503, None)


@pytest.fixture
def own_keys(start_gateway):
    """A gateway of its own, as `gw` is configured: the keys a test rests rest for no other."""
    return start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [K1, K2], "retry": {"attempts": 3, "when": [429], "max_wait_s": 5}}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
        },
        providers=("openai",),
    )  # fmt: skip


def test_a_call_whose_client_left_during_its_wait_is_not_tried_again(own_keys):
    gw = own_keys
    fake = gw.fakes["openai"]
    fake.handler = lambda r: Reply(429, RATE_LIMITED, {"retry-after": "3"})
    result = gw.run(f"""
        from openai import OpenAI, APITimeoutError
        client = OpenAI(api_key="{ALICE}", max_retries=0, timeout=1.5)
        try:
            client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        except APITimeoutError as e:
            report(error=type(e).__name__)
    """)
    # It left while Tollgate waited for a key (each rests 3 s after its 429): no third attempt.
    assert result == {"error": "APITimeoutError"}
    record = gw.last_audit()
    first, second = keys_used(fake)
    assert {first, second} == {K1, K2}
    assert [(a["status"], a["upstream_key"]) for a in record["attempts"]] == [
        (429, fingerprint(first)), (429, fingerprint(second)),
    ]  # fmt: skip
    assert (record["status"], record["upstream_key"], record["error"]) == (
        429, fingerprint(second), "client disconnected",
    )  # fmt: skip
    time.sleep(0.5)  # the call ended once the wait was over: nothing went since
    assert len(fake.received) == 2


def test_a_stream_that_met_429_goes_again(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    fake.handler = first_key_limited(stream=True)
    result = gw.run(STREAM)
    assert result == {"status": 200, "attempts": "2", "content": "Hello"}
    first, second = keys_used(fake)
    assert {first, second} == {K1, K2}
    record = gw.last_audit()
    assert [(a["status"], a["upstream_key"]) for a in record["attempts"]] == [
        (429, fingerprint(first)), (200, fingerprint(second)),
    ]  # fmt: skip
    assert (record["stream"], record["status"], record["total_tokens"]) == (
        True, 200, streams.OPENAI_STREAM_USAGE["total_tokens"],
    )  # fmt: skip


def test_a_stream_broken_after_its_first_chunk_is_not_tried_again(gw):
    gw.reset()
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat(), reset_after=1)
    result = gw.run(STREAM)
    assert (result["error"], result["status"]) == ("APIConnectionError", None), result
    assert len(gw.fakes["openai"].received) == 1
    record = gw.last_audit()
    assert (record["attempts"], record["status"]) == (None, 200)
    assert record["error"].startswith("upstream broke off the response")


def test_a_400_is_not_tried_again(gw):
    gw.reset()
    bad = {"error": {"message": "bad", "type": "invalid_request_error", "code": None}}
    gw.fakes["openai"].handler = lambda r: Reply(400, bad)
    result = gw.run(CHAT)
    assert (result["error"], result["status"], result["attempts"]) == ("BadRequestError", 400, None)
    assert len(gw.fakes["openai"].received) == 1
    assert gw.last_audit()["attempts"] is None


def test_a_503_on_every_attempt_gives_the_last_answer(gw):
    gw.reset()
    down = {"error": {"message": "down", "type": "server_error", "code": None}}
    gw.fakes["openai"].handler = lambda r: Reply(503, down)
    result = gw.run(CHAT)
    assert (result["error"], result["status"], result["attempts"]) == ("InternalServerError", 503, "3")
    assert len(gw.fakes["openai"].received) == 3
    record = gw.last_audit()
    assert [a["status"] for a in record["attempts"]] == [503, 503, 503]
    assert record["status"] == 503


def test_a_retry_on_the_limits_counts_a_request_of_its_own(start_gateway):
    """A retry reserves on the limits as it is decided; once it has gone, what it used is settled
    there like any attempt's: the failed attempt and its retry each count one request."""
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [K1, K2], "retry": {"attempts": 2, "when": [503]}}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "limits": [{"name": "day", "requests_per_day": 4}],
        },
        providers=("openai",),
    )  # fmt: skip
    down = {"error": {"message": "down", "type": "server_error", "code": None}}
    gw.fakes["openai"].handler = first_fails(lambda r: Reply(200, ANSWER), Reply(503, down), [])
    first = gw.run(CHAT)
    assert (first["status"], first["attempts"]) == (200, "2")
    # Two of the day's four requests spent: two more calls go, the third is refused.
    assert [gw.run(CHAT)["status"] for _ in range(3)] == [200, 200, 429]
    assert len(gw.fakes["openai"].received) == 4


def test_an_unreachable_upstream_is_tried_again(gw):
    gw.reset()
    fake = gw.fakes["openai"]
    calls = {"n": 0}

    def answer(r):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionAbortedError("the fake closes the connection before any answer")
        return Reply(200, ANSWER)

    fake.handler = answer
    result = gw.run(CHAT)
    assert (result["status"], result["content"], result["attempts"]) == (200, "hi", "2")
    record = gw.last_audit()
    assert [a["status"] for a in record["attempts"]] == [None, 200]
    assert record["attempts"][0]["error"].startswith("upstream unreachable")


# Bedrock signed with Tollgate's AWS credentials, Vertex AI with its Google token, and OpenAI with a
# short timeout: each call's second attempt goes with a credential applied anew.
VIRTUAL = ("TGALICE0000000000000", "alice-virtual-SECRET-0000")
REAL = ("AKIAREAL000000000000", "real-aws-SECRET-key-0000", "real-session-TOKEN-0000")
DOWN = {"message": "fake Bedrock: service unavailable"}
CONVERSE = f"""
    import boto3
    from botocore.config import Config
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{VIRTUAL[0]}",
        aws_secret_access_key="{VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
    r = client.converse(modelId="amazon.nova-lite-v1:0", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
    report(total=r["usage"]["totalTokens"])
"""
GENAI = f"""
    import google.oauth2.credentials
    from google import genai
    client = genai.Client(vertexai=True, project="caller-proj", location="europe-west4",
        credentials=google.oauth2.credentials.Credentials(token="{ALICE}"),
        http_options={{"retry_options": {{"attempts": 1}}}})
    r = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    report(total=r.usage_metadata.total_token_count)
"""


@pytest.fixture(scope="module")
def clouds(start_gateway, tmp_path_factory, upstream_ca_pem):
    directory = tmp_path_factory.mktemp("google")
    vertex = FakeVertex()

    def config(urls):
        return {
            "providers": {
                "openai": {
                    "upstream": urls["openai"],
                    "keys": [K1, K2],
                    "timeout": 1,
                    "retry": {"attempts": 2, "when": ["timeout"]},
                },
                "bedrock": {
                    "upstream": urls["bedrock"],
                    "credentials": {"access_key_id": REAL[0], "secret_access_key": REAL[1], "session_token": REAL[2]},
                    "retry": {"attempts": 2, "when": ["5xx"]},
                },
                "vertex": {
                    "upstream": urls["vertex"],
                    "credentials": str(service_account(directory, f"{urls['vertex']}/token")),
                    "location": "us-central1",
                    "retry": {"attempts": 2, "when": [429]},
                },
            },
            "clients": [
                {
                    "name": "alice",
                    "keys": [ALICE],
                    "aws_credentials": [{"access_key_id": VIRTUAL[0], "secret_access_key": VIRTUAL[1]}],
                }
            ],
        }

    gw = start_gateway(
        config, env={"REQUESTS_CA_BUNDLE": str(upstream_ca_pem)}, providers=("openai", "bedrock", "vertex")
    )
    gw.vertex = vertex
    return gw


def first_fails(then, failed: Reply, calls: list):
    """`failed` to the first model call, `then`'s answer to the others; `calls` gets each."""

    def answer(r):
        if r.path.split("?", 1)[0] == "/token":
            return then(r)
        calls.append(r)
        return failed if len(calls) == 1 else then(r)

    return answer


def test_a_sigv4_signed_call_is_signed_again(clouds):
    clouds.reset()
    calls: list = []

    def signed(r):
        if not botocore_accepts(r, *REAL):
            return Reply(403, {"message": "bad signature"}, {"x-amzn-errortype": "InvalidSignatureException"})
        return provider_answers(r)

    clouds.fakes["bedrock"].handler = first_fails(
        signed, Reply(503, DOWN, {"x-amzn-errortype": "ServiceUnavailableException", "retry-after": "1"}), calls
    )
    result = clouds.run(CONVERSE)
    assert result == {"total": 23}, result
    first, second = calls
    # Both attempts went signed with Tollgate's credentials, over the request as it went; the second
    # signed anew, a second later (its Retry-After).
    assert botocore_accepts(first, *REAL) and botocore_accepts(second, *REAL)
    assert second.headers["x-amz-date"] > first.headers["x-amz-date"]
    assert second.headers["authorization"] != first.headers["authorization"]
    assert second.headers["x-amz-security-token"] == REAL[2]
    assert VIRTUAL[0] not in str(second.headers) and first.body == second.body
    record = clouds.last_audit()
    assert [(a["provider"], a["status"], a["error"]) for a in record["attempts"]] == [
        ("bedrock", 503, "upstream answered 503"), ("bedrock", 200, None),
    ]  # fmt: skip
    assert record["attempts"][0]["upstream_key"] == record["attempts"][1]["upstream_key"] == fingerprint(REAL[0])
    assert (record["auth"], record["status"], record["total_tokens"]) == ("sigv4", 200, 23)


def test_a_vertex_token_call_goes_again_with_a_fresh_token(clouds):
    clouds.reset()
    calls: list = []
    given: dict[str, float] = {}

    def vertex(r):
        if r.path.split("?", 1)[0] == "/token":  # each token lasts a second: every call asks for one
            token = f"ya29.failover-token-{len(given)}"
            given[token] = time.time() + 1
            return Reply(200, {"access_token": token, "expires_in": 1, "token_type": "Bearer"})
        token = r.headers.get("authorization", "").removeprefix("Bearer ")
        if given.get(token, 0) <= time.time():
            return Reply(401, {"error": {"code": 401, "message": "expired token", "status": "UNAUTHENTICATED"}})
        return clouds.vertex(r)

    quota = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    clouds.fakes["vertex"].handler = first_fails(vertex, Reply(429, quota, {"retry-after": "1"}), calls)
    result = clouds.run(GENAI)
    assert result == {"total": 15}, result
    first, second = calls
    path = (
        f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert first.path == second.path == path
    # The second attempt went with the token current then, not the first attempt's.
    assert first.headers["authorization"] != second.headers["authorization"] == f"Bearer {list(given)[-1]}"
    assert ALICE not in str(second.headers) and first.body == second.body
    record = clouds.last_audit()
    assert [(a["provider"], a["status"]) for a in record["attempts"]] == [("vertex", 429), ("vertex", 200)]
    assert (record["status"], record["total_tokens"]) == (200, 15)


def test_a_call_that_timed_out_goes_again(clouds):
    clouds.reset()
    calls: list = []
    clouds.fakes["openai"].handler = first_fails(lambda r: Reply(200, ANSWER), Reply(200, ANSWER, delay=3), calls)
    result = clouds.run(CHAT)
    assert (result["status"], result["content"], result["attempts"]) == (200, "hi", "2"), result
    first, second = calls
    assert {first.headers["authorization"], second.headers["authorization"]} == {f"Bearer {K1}", f"Bearer {K2}"}
    record = clouds.last_audit()
    timed_out, answered = record["attempts"]
    assert (timed_out["status"], timed_out["error"]) == (None, "upstream timeout: no response within 1 s")
    assert 1000 <= timed_out["latency_ms"] < 2000
    assert (answered["status"], answered["error"], record["status"], record["total_tokens"]) == (200, None, 200, 7)


# Circuit breaking: a key, or an upstream called with no pooled key, that failed 3 calls in a row
# rests 2 s.
# A rest long enough that a loaded machine's next call still finds the circuit open.
CIRCUIT = {"failures": 3, "rest_s": 5}
OWN_ANTHROPIC_KEY = "sk-ant-callers-own-key-0001"
DOWN_OPENAI = {"error": {"message": "down", "type": "server_error", "code": None}}
DOWN_ANTHROPIC = {"type": "error", "error": {"type": "api_error", "message": "down"}}


def circuit_config(store: str | None = None, rest_s: float = CIRCUIT["rest_s"]):
    def build(urls):
        config = {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [K1], "circuit": {**CIRCUIT, "rest_s": rest_s}},
                "anthropic": {"upstream": urls["anthropic"], "circuit": CIRCUIT},
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
        }
        if store is not None:
            config["ledger"] = {"store": store}
        return config

    return build


def outcomes(gw, count: int, ready: Path | None = None, go: Path | None = None) -> list:
    """`count` OpenAI SDK calls: 200, or the error's type, status, X-Tollgate-Error and Retry-After. With `ready`
    and `go`: the client, its SDK imported, touches `ready` and calls once `go` exists."""
    wait = ""
    if ready is not None and go is not None:
        wait = f"""
    import pathlib, time
    pathlib.Path("{ready}").touch()
    deadline = time.monotonic() + 30
    while not pathlib.Path("{go}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    """
    code = chat_calls(ALICE, "gpt-4o", count, ("type", "status", "error", "retry_after"), first=wait)
    return gw.run(code)["outcomes"]


@pytest.fixture(scope="module")
def breaker(start_gateway):
    return start_gateway(circuit_config(), providers=("openai", "anthropic"))


def test_a_keys_circuit_opens_after_3_failures_and_closes_after_its_rest(breaker):
    breaker.reset()
    fake = breaker.fakes["openai"]
    fake.handler = lambda r: Reply(503, DOWN_OPENAI)
    failing = ["InternalServerError", 503, None, None]
    assert outcomes(breaker, 4) == [failing, failing, failing, ["InternalServerError", 503, "circuit_open", "5"]]
    opened = time.monotonic()  # no later than the circuit opened
    assert len(fake.received) == 3  # the fourth call never went upstream
    refused = breaker.new_audit(4)[-1]
    assert (refused["status"], refused["decision"], refused["deny_reasons"]) == (503, "deny", ["circuit_open"])
    assert "failed 3 calls in a row: it rests 5 s" in breaker.proxy.console()
    time.sleep(max(0.0, opened + 5.1 - time.monotonic()))
    fake.handler = lambda r: Reply(200, ANSWER)
    assert outcomes(breaker, 2) == [200, 200]
    assert len(fake.received) == 5
    assert breaker.last_audit()["decision"] == "allow"


def test_an_answer_between_failures_keeps_the_circuit_closed(breaker):
    breaker.reset()
    answers = iter([503, 503, 200, 503, 503, 200])
    breaker.fakes["openai"].handler = lambda r: (
        Reply(200, ANSWER) if (s := next(answers)) == 200 else Reply(s, DOWN_OPENAI)
    )
    failing = ["InternalServerError", 503, None, None]
    assert outcomes(breaker, 6) == [failing, failing, 200, failing, failing, 200]


def test_an_upstream_called_with_no_pooled_key_rests_too(breaker):
    breaker.reset()
    fake = breaker.fakes["anthropic"]
    fake.handler = lambda r: Reply(503, DOWN_ANTHROPIC)
    result = breaker.run(f"""
    import anthropic
    client = anthropic.Anthropic(api_key="{ALICE}", max_retries=0,
                                 default_headers={{"X-Anthropic-Key": "{OWN_ANTHROPIC_KEY}"}})
    outcomes = []
    for _ in range(4):
        try:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{{"role": "user", "content": "hi"}}])
            outcomes.append(200)
        except anthropic.APIStatusError as e:
            outcomes.append([type(e).__name__, e.status_code, e.response.headers.get("x-tollgate-error"),
                             e.body["error"]["type"]])
    report(outcomes=outcomes)
    """)
    failing = ["ServiceUnavailableError", 503, None, "api_error"]
    assert result["outcomes"] == [
        failing,
        failing,
        failing,
        ["ServiceUnavailableError", 503, "circuit_open", "api_error"],
    ]
    assert len(fake.received) == 3
    assert {r.headers["x-api-key"] for r in fake.received} == {OWN_ANTHROPIC_KEY}


def test_a_circuit_opened_in_one_process_rests_in_another_sharing_redis(start_gateway, tmp_path):
    redis = redis_server(tmp_path / "redis")
    try:
        a = start_gateway(circuit_config(redis.url, rest_s=6), providers=("openai", "anthropic"))
        b = start_gateway(circuit_config(redis.url, rest_s=6), providers=("openai", "anthropic"))
        # Both listen for the rests announced: one published before b listened would reach b only
        # when it next subscribed.
        redis.wait_subscribers(RESTS, 2)
        a.fakes["openai"].handler = lambda r: Reply(503, DOWN_OPENAI)
        # b's client starts meanwhile and calls on a sign: the 6 s rest is not spent on its start-up.
        ready, go = tmp_path / "ready", tmp_path / "go"
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(outcomes, b, 1, ready, go)
            try:
                failing = ["InternalServerError", 503, None, None]
                assert outcomes(a, 3) == [failing, failing, failing]
                opened = time.monotonic()
                # Announced in the transaction that stores the rest: once it is stored, b has the news.
                redis.wait_keys(REST + "*")
                deadline = time.monotonic() + 30
                while not ready.exists() and not later.done() and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                go.touch()  # b's client does not wait out its 30 s when this test has failed
            ((error, status, reason, retry_after),) = later.result(timeout=60)
        assert (error, status, reason) == ("InternalServerError", 503, "circuit_open")
        assert 1 <= int(retry_after) <= 6
        assert b.fakes["openai"].received == []
        time.sleep(max(0.0, opened + 6.2 - time.monotonic()))  # the rest itself
        assert outcomes(b, 1) == [200]
        assert len(b.fakes["openai"].received) == 1
    finally:
        redis.stop()


BOB = "tg-bob-failover-test"


def model_calls(gw, key: str, model: str, count: int) -> list:
    """`count` OpenAI SDK calls to `model` with the virtual key `key`: 200, or the status and
    X-Tollgate-Error of the error."""
    return gw.run(chat_calls(key, model, count, ("status", "error")))["outcomes"]


def test_one_callers_failing_model_rests_that_model_not_the_keys(start_gateway):
    """bob's calls to a model whose upstream answers 503 rest that model on both pooled keys;
    alice's calls to another model still go, on both keys. A 429 rests the key for every model."""
    gw = start_gateway(
        lambda urls: {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [K1, K2], "circuit": {"failures": 2, "rest_s": 60}}
            },
            "clients": [{"name": "alice", "keys": [ALICE]}, {"name": "bob", "keys": [BOB]}],
        },
        providers=("openai",),
    )
    fake = gw.fakes["openai"]

    def answer(r):
        model = r.json()["model"]
        if model == "gpt-broken":
            return Reply(503, DOWN_OPENAI)
        if model == "gpt-limited" and r.headers["authorization"] == f"Bearer {K1}":
            return Reply(429, RATE_LIMITED, {"retry-after": "0"})
        return Reply(200, ANSWER)

    fake.handler = answer
    failing = [503, None]
    assert model_calls(gw, BOB, "gpt-broken", 5) == [failing, failing, failing, failing, [503, "circuit_open"]]
    assert keys_used(fake) == [K1, K2, K1, K2]
    refused = gw.new_audit(5)[-1]
    assert (refused["client"], refused["status"], refused["deny_reasons"]) == ("bob", 503, ["circuit_open"])
    assert "failed 2 calls in a row: it rests 60 s" in gw.proxy.console()
    fake.received.clear()
    assert model_calls(gw, ALICE, "gpt-4o-mini", 2) == [200, 200]
    assert sorted(keys_used(fake)) == sorted([K1, K2])
    assert [r["decision"] for r in gw.new_audit(2)] == ["allow", "allow"]
    # Two 429s in a row on K1 (each a call of its own, K2 answering between): K1 rests for every model.
    fake.received.clear()
    assert model_calls(gw, ALICE, "gpt-limited", 4) == [[429, None], 200, [429, None], 200]
    fake.received.clear()
    assert model_calls(gw, ALICE, "gpt-4o-mini", 2) == [200, 200]
    assert keys_used(fake) == [K2, K2]
    assert "(model 'gpt-broken') failed 2 calls in a row" in gw.proxy.console()


def test_a_call_whose_connection_timed_out_goes_again(clouds):
    clouds.reset()
    fake = clouds.fakes["openai"]
    fake.handler = lambda r: Reply(200, ANSWER)
    # The first connection's handshake outlasts the 1 s timeout; the next one shakes hands at once.
    fake.handshake_delays = [3]
    try:
        result = clouds.run(CHAT)
    finally:
        fake.handshake_delays = []
    assert (result["status"], result["content"], result["attempts"]) == (200, "hi", "2"), result
    assert len(fake.received) == 1
    timed_out, answered = clouds.last_audit()["attempts"]
    assert (timed_out["status"], timed_out["error"]) == (None, "upstream timeout: no response within 1 s")
    assert (answered["status"], answered["error"]) == (200, None)


def test_an_attempt_is_listed_once_when_every_key_rests(gw):
    # Last of the module's tests on `gw`: both keys rest 30 s once it has run.
    gw.reset()
    fake = gw.fakes["openai"]
    fake.handler = lambda r: Reply(429, RATE_LIMITED, {"retry-after": "30"})
    result = gw.run(CHAT)
    assert result == {"error": "RateLimitError", "status": 429, "attempts": "2"}
    assert sorted(keys_used(fake)) == sorted([K1, K2])
    record = gw.last_audit()
    assert [(a["status"], a["upstream_key"]) for a in record["attempts"]] == [
        (429, fingerprint(k)) for k in keys_used(fake)
    ]
    assert (record["status"], record["upstream_key"]) == (429, fingerprint(keys_used(fake)[-1]))


# A user who turns HTTP/2 on (`httpx2[http2]` installed): the SDK's own client with `http2=True`.
CHAT_OVER_HTTP2 = f"""
    import openai
    client = openai.OpenAI(api_key="{ALICE}", max_retries=0, http_client=openai.DefaultHttpxClient(http2=True))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
    answer = raw.parse()
    report(status=raw.status_code, http_version=raw.http_version, attempts=raw.headers.get("x-tollgate-attempts"),
           request_ids=raw.headers.get_list("x-tollgate-request-id"), content=answer.choices[0].message.content,
           tokens=answer.usage.total_tokens)
"""


def test_a_retry_goes_again_over_an_http2_upstream(start_gateway, upstream_ca):
    """The OpenAI SDK speaks HTTP/2 to Tollgate, and Tollgate to an HTTP/2-only upstream (mitmproxy
    offers the upstream the client's protocol): the retry is another stream to the upstream, with the
    other key, and the client gets one answer."""

    def answer(received):
        if len(upstream.received) == 1:
            limited = json.dumps(RATE_LIMITED).encode()
            return H2Reply(429, {"content-type": "application/json", "retry-after": "1"}, [limited])
        return H2Reply(200, {"content-type": "application/json"}, [json.dumps(ANSWER).encode()])

    upstream = H2Upstream(upstream_ca, answer)
    try:
        gw = start_gateway(
            {
                "providers": {
                    "openai": {"upstream": upstream.url, "keys": [K1, K2], "retry": {"attempts": 2, "when": [429]}}
                },
                "clients": [{"name": "alice", "keys": [ALICE]}],
            },
            providers=(),
        )
        result = gw.run(CHAT_OVER_HTTP2)
        record = gw.last_audit()
        assert result == {"status": 200, "http_version": "HTTP/2", "attempts": "2",
                          "request_ids": [record["request_id"]], "content": "hi", "tokens": 7}  # fmt: skip
        # The upstream speaks only HTTP/2 (ALPN h2): both attempts came to it as streams.
        first, second = upstream.received
        keys = [r.headers["authorization"].removeprefix("Bearer ") for r in (first, second)]
        assert sorted(keys) == sorted([K1, K2])
        assert first.body == second.body
        assert json.loads(first.body) == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        assert (first.headers[":method"], first.headers[":path"]) == ("POST", "/v1/chat/completions")
        assert first.stream_id != second.stream_id
        assert [(a["status"], a["upstream_key"]) for a in record["attempts"]] == [
            (429, fingerprint(keys[0])), (200, fingerprint(keys[1])),
        ]  # fmt: skip
        assert (record["status"], record["upstream_key"], record["total_tokens"]) == (200, fingerprint(keys[1]), 7)
    finally:
        upstream.close()
