"""Failover: a call whose attempt fails before its answer begins goes again on the next pooled key
(`providers.<name>.retry`), through the same proxy, and the client sees one answer."""

from __future__ import annotations

import pytest
from tests.support import streams
from tests.support.fake_upstream import Reply

from tollgate.fingerprint import fingerprint

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
CHAT = f"""
    from openai import OpenAI
    client = OpenAI(api_key="{ALICE}", max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
        answer = raw.parse()
        report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"),
               request_ids=raw.headers.get_list("x-tollgate-request-id"), content=answer.choices[0].message.content,
               tokens=answer.usage.total_tokens)
    except Exception as e:
        report(error=type(e).__name__, status=getattr(e, "status_code", None),
               attempts=e.response.headers.get("x-tollgate-attempts") if hasattr(e, "response") else None)
"""
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
    assert failed == {
        "provider": "openai", "model": "gpt-4o", "status": 429, "upstream_key": fingerprint(first),
        "error": "upstream answered 429", "latency_ms": failed["latency_ms"],
    }  # fmt: skip
    assert answered == {
        "provider": "openai", "model": "gpt-4o", "status": 200, "upstream_key": fingerprint(second),
        "error": None, "latency_ms": answered["latency_ms"],
    }  # fmt: skip
    assert 0 <= failed["latency_ms"] < 5000 and 0 <= answered["latency_ms"] < 5000
    assert (record["status"], record["upstream_key"], record["total_tokens"], record["error"]) == (
        200, fingerprint(second), 7, None,
    )  # fmt: skip
    assert [r["request_id"] for r in gw.audit()].count(record["request_id"]) == 1


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
