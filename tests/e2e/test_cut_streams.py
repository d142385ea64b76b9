"""A streamed answer cut by an answer rule (`action: deny`) while its upstream keeps sending: what
comes after the cut is dropped, with no exception in the proxy, and the client's connection goes
on. With the official openai SDK through mitmdump, over HTTP/1.1 and HTTP/2 (a sibling stream on
the same HTTP/2 connection comes whole); the proxy's output is read for tracebacks."""

from __future__ import annotations

import json
import time

import pytest
from tests.support.answers import AWS, KINDS, TEXT, pieces
from tests.support.fake_upstream import Received, Reply
from tests.support.h2 import H2Received, H2Reply, H2Upstream
from tests.support.streams import sse

VIRTUAL = "tg-cut-streams-alice-0001"
DENIED = 3  # denied streams in a run
AFTER_CUT = 200  # events the upstream sends after the denied value, all at once


def chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    event = {"id": "chatcmpl-c", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o"}
    return sse({**event, "choices": [choice]})


def denied_events() -> list[bytes]:
    """The text with the key, then AFTER_CUT more events: the upstream sends them all at once."""
    events = [chunk(""), *(chunk(p) for p in pieces(TEXT, 5))]
    events += [chunk(" more") for _ in range(AFTER_CUT)]
    return [*events, chunk(finish="stop"), sse("[DONE]")]


SIBLING_TEXT = ("A sibling ", "stream ", "that comes ", "whole, ", "slowly, ", "to its ", "very end.")


def sibling_events() -> list[bytes]:
    return [chunk(""), *(chunk(p) for p in SIBLING_TEXT), chunk(finish="stop"), sse("[DONE]")]


def config(url: str) -> dict:
    return {
        "providers": {"openai": {"upstream": url, "keys": ["sk-real-cut-streams-0001"]}},
        "clients": [{"name": "alice", "keys": [VIRTUAL]}],
        "guardrails": [{"on": ["answer"], "detect": KINDS, "action": "deny"}],
    }


def no_traceback(gw) -> None:
    console = gw.proxy.console()
    assert "Traceback" not in console and "AssertionError" not in console, console[-4000:]


def model_of(body: bytes) -> str:
    return str(json.loads(body)["model"])


# A denied stream read with the SDK (`client`'s): the text that came, and the error it ended with.
READ_DENIED = """
def read_denied():
    text = ""
    try:
        for event in client.chat.completions.create(
            model="gpt-denied", messages=[{"role": "user", "content": "key"}], stream=True
        ):
            for choice in event.choices:
                text += choice.delta.content or ""
        return [text, None]
    except Exception as e:
        return [text, type(e).__name__]
"""
# Each thread's stream read with the SDK: a denied one raises; the sibling's raw bytes kept whole.
# The sibling goes first and the denied ones start once its first bytes came, so that all share
# the connection it opened.
HTTP2_RUN = f"""
import threading
from openai import OpenAI, DefaultHttpxClient
client = OpenAI(api_key="{VIRTUAL}", max_retries=0, http_client=DefaultHttpxClient(http2=True))
began = threading.Event()
results = {{}}

def sibling():
    with client.chat.completions.with_streaming_response.create(
        model="gpt-sibling", messages=[{{"role": "user", "content": "hi"}}], stream=True
    ) as r:
        raw = b""
        for piece in r.iter_bytes():
            raw += piece
            began.set()
    results["sibling"] = [r.http_version, raw.decode()]
    began.set()

{READ_DENIED}
def denied(i):
    results[i] = read_denied()

first = threading.Thread(target=sibling)
first.start()
began.wait(20)
others = [threading.Thread(target=denied, args=(i,)) for i in range({DENIED})]
for t in others:
    t.start()
for t in [first, *others]:
    t.join(40)
http = client._client  # the connections its pools hold: the proxy's transport's (HTTPS_PROXY) and any other
pools = [t._pool for t in [http._transport, *http._mounts.values()] if t is not None]
report(results={{str(k): v for k, v in results.items()}}, connections=sum(len(p.connections) for p in pools))
"""


@pytest.fixture(scope="module")
def h2_upstream(upstream_ca):
    def answer(received: H2Received) -> H2Reply:
        headers = {"content-type": "text/event-stream"}
        if model_of(received.body) == "gpt-sibling":
            return H2Reply(200, headers, sibling_events(), interval=0.3)
        return H2Reply(200, headers, denied_events())  # all at once: most of it after the cut

    upstream = H2Upstream(upstream_ca, answer)
    yield upstream
    upstream.close()


def assert_http2_run(gw) -> None:
    """The sibling came whole and each denied stream raised after the text before the key, all on
    one HTTP/2 connection of the SDK's; audited; no traceback in the proxy's output."""
    run = gw.run(HTTP2_RUN)
    result = run["results"]
    assert result["sibling"] == ["HTTP/2", b"".join(sibling_events()).decode()]
    assert [result[str(i)] for i in range(DENIED)] == [[TEXT[: TEXT.index(AWS)], "APIError"]] * DENIED
    assert run["connections"] == 1
    records = gw.new_audit(1 + DENIED)
    assert sorted((r["model"], r["error"]) for r in records) == [("gpt-denied", "content_denied")] * DENIED + [
        ("gpt-sibling", None)
    ]
    no_traceback(gw)


def test_over_http2_denied_streams_end_cleanly_and_a_sibling_stream_comes_whole(start_gateway, h2_upstream):
    gw = start_gateway(config(h2_upstream.url), providers=())
    assert_http2_run(gw)
    # One client connection upstream too: the upstream's streams all came on one of the proxy's.
    assert sorted({r.connection for r in h2_upstream.received}) == [0]
    assert len(h2_upstream.received) == 1 + DENIED


def http1_answer(received: Received) -> Reply:
    """Over HTTP/1.1: the sibling slowly, a denied stream each event a chunk of its own, written one
    after the other (most of it after the cut)."""
    headers = {"content-type": "text/event-stream"}
    if model_of(received.body) == "gpt-sibling":
        return Reply(200, chunks=sibling_events(), headers=headers, gate=lambda i: time.sleep(0.3))
    return Reply(200, chunks=denied_events(), headers=headers)


def test_over_http2_to_an_http1_upstream_denied_streams_end_cleanly_and_a_sibling_comes_whole(start_gateway):
    gw = start_gateway(lambda urls: config(urls["openai"]), providers=("openai",))
    gw.fakes["openai"].handler = http1_answer
    assert_http2_run(gw)


HTTP1_RUN = f"""
from openai import OpenAI
client = OpenAI(api_key="{VIRTUAL}", max_retries=0)
{READ_DENIED}
denied = [read_denied() for _ in range({DENIED})]
with client.chat.completions.with_streaming_response.create(
    model="gpt-sibling", messages=[{{"role": "user", "content": "hi"}}], stream=True
) as r:
    raw = b"".join(r.iter_bytes())
report(denied=denied, after=[r.http_version, raw.decode()])
"""


def test_over_http1_denied_streams_end_cleanly_and_the_next_call_comes_whole(start_gateway):
    gw = start_gateway(lambda urls: config(urls["openai"]), providers=("openai",))
    gw.fakes["openai"].handler = http1_answer
    result = gw.run(HTTP1_RUN)
    assert result["denied"] == [[TEXT[: TEXT.index(AWS)], "APIError"]] * DENIED
    assert result["after"] == ["HTTP/1.1", b"".join(sibling_events()).decode()]
    records = gw.new_audit(1 + DENIED)
    assert [(r["model"], r["error"]) for r in records] == [("gpt-denied", "content_denied")] * DENIED + [
        ("gpt-sibling", None)
    ]
    no_traceback(gw)
