"""`providers.<name>.timeout`: an upstream that has not sent its response headers in time ends
that call, and only that call, with a 504 in the provider's shape; a call whose headers arrived is
never a timeout."""

from __future__ import annotations

import json
import time

import h2.errors
import pytest
from tests.support import streams
from tests.support.canned import OPENAI_CHAT
from tests.support.fake_upstream import Reply
from tests.support.h2 import H2Reply, H2Request, H2Upstream, h2_calls
from tests.support.stall import SilentServer

KEY = "sk-real-key-for-timeout-tests"
STALL_MODEL = "gpt-stall"


@pytest.fixture(scope="module")
def silent():
    server = SilentServer()
    yield server
    server.close()


def test_upstream_that_never_completes_tls_is_a_504_in_time(start_gateway, silent):
    gw = start_gateway(
        lambda urls: {
            "providers": {
                "openai": {"upstream": silent.url, "keys": [KEY], "timeout": 1},
                "gemini": {"upstream": urls["gemini"], "keys": [KEY]},
            }
        }
    )
    # Twice on one client connection: mitmproxy would fail the second at once with the first's
    # connection error; it gets its own try.
    result = gw.run("""
        import openai, time
        client = openai.OpenAI(api_key="sk-own", max_retries=0, timeout=30)
        answers = []
        for _ in range(2):
            started = time.monotonic()
            try:
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            except openai.APIStatusError as e:
                answers.append(dict(error=type(e).__name__, status=e.status_code, body=e.body,
                                    tollgate=e.response.headers.get("x-tollgate-error"),
                                    seconds=time.monotonic() - started))
        report(answers=answers)
    """)
    answers = result.get("answers")
    assert answers is not None and len(answers) == 2, str(result)
    for answer in answers:
        assert (answer["error"], answer["status"], answer["tollgate"]) == (
            "InternalServerError",
            504,
            "upstream_timeout",
        ), str(answer)
        assert (answer["body"]["code"], answer["body"]["type"]) == ("upstream_timeout", "server_error")
        assert 1 <= answer["seconds"] < 5
    for record in gw.new_audit(2):
        assert (record["status"], record["error"]) == (504, "upstream timeout: no response within 1 s")
    # The connection was abandoned, not left open.
    deadline = time.monotonic() + 5
    while silent.hung_up < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (silent.accepted, silent.hung_up) == (2, 2)

    result = gw.run("""
        from google import genai
        client = genai.Client(api_key="AIza-own")
        report(text=client.models.generate_content(model="gemini-2.0-flash", contents="hi").text)
    """)
    assert result == {"text": "Hello!"}


@pytest.fixture(scope="module")
def h2_upstream(upstream_ca):
    def answer(received):
        if received.json()["model"] == STALL_MODEL:
            return H2Reply(delay=None)
        # Headers at once, the body over 2.5 s: the stream is still running when the other times out.
        return H2Reply(200, {"content-type": "text/event-stream"}, streams.openai_chat(), interval=0.5)

    server = H2Upstream(upstream_ca, answer)
    yield server
    server.close()


def chat(model: str) -> H2Request:
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    return H2Request(
        "/v1/chat/completions",
        json.dumps(body).encode(),
        {"content-type": "application/json", "authorization": "Bearer sk-own"},
    )


def test_a_timeout_ends_only_its_own_stream_of_a_shared_http2_connection(start_gateway, h2_upstream, bundle):
    openai = {"upstream": h2_upstream.url, "keys": [KEY], "timeout": 1}
    gw = start_gateway({"providers": {"openai": openai}}, "--set", "flow_detail=4", "--set", "termlog_verbosity=debug")
    stalled, streamed = h2_calls(gw.proxy.port, bundle, "api.openai.com", [chat(STALL_MODEL), chat("gpt-4o-mini")], 10)

    assert sorted(r.json()["model"] for r in h2_upstream.received) == ["gpt-4o-mini", STALL_MODEL]
    assert {r.connection for r in h2_upstream.received} == {0}, "the proxy did not share one upstream connection"
    assert (streamed.status, streamed.reset, streamed.body) == (200, None, b"".join(streams.openai_chat()))
    assert (stalled.status, stalled.reset, stalled.headers.get("x-tollgate-error")) == (504, None, "upstream_timeout")
    assert stalled.json()["error"]["code"] == "upstream_timeout"
    assert stalled.seconds is not None and 1 <= stalled.seconds < 5
    stalled_upstream = next(r for r in h2_upstream.received if r.json()["model"] == STALL_MODEL)
    assert h2_upstream.resets == [(0, stalled_upstream.stream_id, h2.errors.ErrorCodes.CANCEL)]

    records = {r["model"]: r for r in gw.wait_audit(2)}
    assert (records[STALL_MODEL]["status"], records[STALL_MODEL]["error"]) == (
        504,
        "upstream timeout: no response within 1 s",
    )
    assert (records["gpt-4o-mini"]["status"], records["gpt-4o-mini"]["error"]) == (200, None)
    assert records["gpt-4o-mini"]["output_tokens"] == streams.OPENAI_STREAM_USAGE["completion_tokens"]
    console = gw.proxy.console()
    assert "/v1/chat/completions" in console and KEY not in console and "sk-own" not in console


def test_under_load_only_the_calls_that_timed_out_are_audited_as_timeouts(start_gateway):
    """Streamed calls that all succeed, beside calls to an upstream slow to shake hands and calls to
    one slow to answer, each with a small timeout: each audit record says what its client saw."""

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [KEY], "timeout": 30},
                "anthropic": {"upstream": urls["anthropic"], "keys": [KEY], "timeout": 0.5},
                "gemini": {"upstream": urls["gemini"], "keys": [KEY], "timeout": 0.5},
            }
        }

    gw = start_gateway(config)
    gw.fakes["openai"].handler = lambda r: Reply(200, chunks=streams.openai_chat())
    gw.fakes["anthropic"].handshake_delay = 1.5  # then it answers at once
    gw.fakes["gemini"].handler = lambda r: Reply(200, OPENAI_CHAT, delay=2)
    result = gw.run(
        """
        import concurrent.futures, anthropic, openai
        fast = openai.OpenAI(api_key="sk-own", max_retries=0, timeout=60)
        slow_to_connect = anthropic.Anthropic(api_key="sk-ant-own", max_retries=0, timeout=60)
        slow_to_answer = openai.OpenAI(api_key="AIza-own", max_retries=0, timeout=60,
                                       base_url="https://generativelanguage.googleapis.com/v1beta/openai/")
        messages = [{"role": "user", "content": "hi"}]

        def streamed(_):
            with fast.chat.completions.with_streaming_response.create(model="gpt-4o-mini", stream=True,
                    stream_options={"include_usage": True}, messages=messages) as r:
                body = b"".join(r.iter_bytes())
                return "streamed", r.headers["x-tollgate-request-id"], r.status_code, body.endswith(b"[DONE]\\n\\n")

        def connecting(_):
            try:
                r = slow_to_connect.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=5,
                                                                     messages=messages)
                return "connecting", r.headers["x-tollgate-request-id"], r.status_code, True
            except anthropic.APIStatusError as e:
                return "connecting", e.response.headers.get("x-tollgate-request-id"), e.status_code, False

        def answering(_):
            try:
                r = slow_to_answer.chat.completions.with_raw_response.create(model="gemini-2.0-flash",
                                                                              messages=messages)
                return "answering", r.headers["x-tollgate-request-id"], r.status_code, True
            except openai.APIStatusError as e:
                return "answering", e.response.headers.get("x-tollgate-request-id"), e.status_code, False

        calls = [streamed] * 100 + [connecting] * 8 + [answering] * 8
        calls = calls[::3] + calls[1::3] + calls[2::3]  # the slow ones spread among the streams
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            report(outcomes=list(pool.map(lambda f: f(None), calls)))
    """,
        timeout=120,
    )
    outcomes = result["outcomes"]
    records = {r["request_id"]: r for r in gw.new_audit(len(outcomes))}
    assert len(records) == len(outcomes) == 116

    for kind, request_id, status, complete in outcomes:
        record = records[request_id]
        if kind == "streamed":
            assert (status, complete, record["status"], record["error"]) == (200, True, 200, None), record
        else:
            assert (status, record["status"]) == (504, 504), json.dumps([kind, record])
            assert record["error"].startswith("upstream timeout"), record
    timeouts = [r for r in records.values() if (r["error"] or "").startswith("upstream timeout")]
    assert len(timeouts) == 16
